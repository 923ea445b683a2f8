-- Sync leasing (juy_store::sync_state): workers of any replica lease due
-- calendars with `FOR UPDATE SKIP LOCKED`, ordered by when they fell due.
--
-- next_sync_at: NULL = never synced, due at once and first; while leased it
-- equals lease_expires_at (a leased calendar falls due again exactly when its
-- lease expires); 'infinity' = parked, because its account can no longer sync
-- (reauth_required); linking the account again sets it back to NULL.

-- Serves the due scan: `coalesce(next_sync_at, '-infinity') <= $now ORDER BY
-- coalesce(next_sync_at, '-infinity') LIMIT n` is one ordered range scan that
-- stops after n rows or at the first calendar not yet due, however many
-- calendars there are. Leased and parked calendars sort after `now` and are
-- never read. (A plain index on next_sync_at cannot bound
-- `next_sync_at IS NULL OR next_sync_at <= $now`: PostgreSQL falls back to a
-- bitmap scan and sorts every due row before applying the LIMIT.)
CREATE INDEX calendars_due_idx
    ON calendars ((coalesce(next_sync_at, '-infinity'::timestamptz)));

COMMENT ON COLUMN calendars.next_sync_at IS
    'NULL: never synced, due at once; while leased: = lease_expires_at; ''infinity'': parked (the account cannot sync)';
