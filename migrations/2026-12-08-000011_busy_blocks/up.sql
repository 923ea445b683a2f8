-- Busy blocks: each user's busy time merged ahead of reading, so that
-- free/busy reads a few hundred blocks a user instead of every event
-- (crates/store/src/busy_blocks.rs, docs/availability.md). A cache: a user
-- is answered from it only while no change waits in busy_dirty and it was
-- built for the zone the user has now.

-- Merged busy time cut at UTC midnights (so a block is at most a day long
-- and "blocks overlapping a range" is a bounded scan of the key). `kind`:
-- 0 tentative, 1 busy, 2 out of office. `members`: event spans (event id,
-- start and end in microseconds, kind), each in the first block of each UTC
-- day it overlaps, read only for the owner's own, explained answer. No text
-- of any event.
CREATE TABLE busy_blocks (
    user_id text NOT NULL,
    start_at timestamptz NOT NULL,
    end_at timestamptz NOT NULL,
    kind smallint NOT NULL,
    members bytea NOT NULL,
    CONSTRAINT busy_blocks_pkey PRIMARY KEY (user_id, start_at) INCLUDE (end_at, kind),
    CONSTRAINT busy_blocks_kind_check CHECK (kind BETWEEN 0 AND 2),
    CONSTRAINT busy_blocks_time_check CHECK (end_at > start_at AND end_at - start_at <= interval '1 day')
);

-- For whom blocks were built, in which zone (all-day events are placed in it).
CREATE TABLE busy_state (
    user_id text PRIMARY KEY,
    zone text NOT NULL,
    built_at timestamptz NOT NULL
);

-- Changes waiting for a rebuild: one row per changing statement, never
-- updated, so that writers never wait for each other here; a rebuild deletes
-- exactly the rows its snapshot saw.
CREATE TABLE busy_dirty (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id text NOT NULL,
    marked_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX busy_dirty_user_idx ON busy_dirty (user_id);

-- Any statement changing events marks their users: one row per user and
-- statement (a sync page is one statement), in the changing transaction.
-- Updates and deletions (sync deletions, expiry, erasure, a calendar's
-- cascade, reconciliation) are marked by triggers reading their transition
-- tables. Inserts come only from the store's page upsert, which marks its
-- user itself in the same statement (a transition table would copy every
-- inserted row, 1.5 kB each, for the trigger to read one user id). A
-- statement trigger checks that every insert did mark, so a new insert path
-- that forgets fails at once.
CREATE FUNCTION busy_mark_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO busy_dirty (user_id) SELECT DISTINCT user_id FROM busy_changed;
    RETURN NULL;
END $$;

CREATE FUNCTION busy_require_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('juy.busy_marked', true), '') <> 'on' THEN
        RAISE EXCEPTION 'events were inserted without marking busy_dirty in the same statement'
            USING HINT = 'mark the user as juy_store::events::insert_rows does (crates/store/src/busy_blocks.rs)';
    END IF;
    PERFORM set_config('juy.busy_marked', 'off', true);
    RETURN NULL;
END $$;

CREATE TRIGGER user_calendar_events_busy_insert AFTER INSERT ON user_calendar_events
    FOR EACH STATEMENT EXECUTE FUNCTION busy_require_mark();
CREATE TRIGGER user_calendar_events_busy_update AFTER UPDATE ON user_calendar_events
    REFERENCING NEW TABLE AS busy_changed FOR EACH STATEMENT EXECUTE FUNCTION busy_mark_events();
CREATE TRIGGER user_calendar_events_busy_delete AFTER DELETE ON user_calendar_events
    REFERENCING OLD TABLE AS busy_changed FOR EACH STATEMENT EXECUTE FUNCTION busy_mark_events();

-- A synced event that is a meeting's external copy is left out of busy time
-- (the meeting counts instead): a meeting gaining, losing or moving its copy
-- marks its organiser.
CREATE FUNCTION busy_mark_meeting() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.external_id IS NOT DISTINCT FROM OLD.external_id
        AND NEW.calendar_id IS NOT DISTINCT FROM OLD.calendar_id AND NEW.user_id = OLD.user_id THEN
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' AND OLD.external_id IS NOT NULL THEN
        INSERT INTO busy_dirty (user_id) VALUES (OLD.user_id);
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.external_id IS NOT NULL THEN
        INSERT INTO busy_dirty (user_id) VALUES (NEW.user_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER meetings_busy_copy AFTER INSERT OR UPDATE OR DELETE ON meetings
    FOR EACH ROW EXECUTE FUNCTION busy_mark_meeting();
