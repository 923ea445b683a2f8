-- Reminders to the notification service (juy_store::reminders, juy_sync::reminders).
--
-- `reminder_deliveries` is the transactional outbox of reminders: one row per
-- (event instance, reminder time, channel), keyed by a deterministic
-- idempotency key (hex SHA-256, see juy_store::reminders::idempotency_key):
-- the same reminder of an unmoved event always has the same key, a moved
-- event's reminder gets a new one. The planner inserts the rows falling due
-- within its look-ahead (ON CONFLICT DO NOTHING) and withdraws pending rows
-- no longer wanted; dispatchers lease due rows (FOR UPDATE SKIP LOCKED) and
-- record the outcome fenced by the lease.
--
-- No event text is stored here: the dispatcher decrypts the title and
-- location from the event row at send time. `last_error` is a short reason
-- made by the service (an HTTP status, "the event moved"), never a response
-- body or event text.
--
-- state: pending → leased → delivered | failed (for good) | pending (retry);
-- pending → withdrawn (no longer wanted; planned again if it becomes wanted
-- again while due). While leased, next_attempt_at = lease_expires_at, so a
-- dead dispatcher's row falls due again exactly when its lease runs out.
CREATE TABLE reminder_deliveries (
    user_id text NOT NULL,
    idempotency_key text NOT NULL,
    calendar_id uuid NOT NULL,
    -- The event row (user_calendar_events.id); no foreign key, so that
    -- writing and deleting events (sync, TTL cleanup) pays nothing for
    -- reminders: a deleted event's pending rows are withdrawn by the
    -- planner, and the dispatcher checks the event again before sending.
    event_id uuid NOT NULL,
    provider text NOT NULL,
    -- The instance's start the reminder was planned for (part of the key).
    event_start timestamptz NOT NULL,
    minutes_before integer NOT NULL,
    -- The provider's method (popup or email); informational.
    method text NOT NULL,
    channel text NOT NULL,
    due_at timestamptz NOT NULL,
    state text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    lease_owner text,
    lease_expires_at timestamptz,
    last_error text,
    delivered_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reminder_deliveries_pkey PRIMARY KEY (user_id, idempotency_key),
    -- Unlinking a calendar (revocation) or erasing a user removes their rows.
    CONSTRAINT reminder_deliveries_calendar_fkey FOREIGN KEY (user_id, calendar_id)
        REFERENCES calendars (user_id, id) ON DELETE CASCADE,
    CONSTRAINT reminder_deliveries_key_check CHECK (idempotency_key ~ '^[0-9a-f]{64}$'),
    CONSTRAINT reminder_deliveries_provider_check CHECK (provider IN ('google', 'microsoft', 'caldav')),
    CONSTRAINT reminder_deliveries_method_check CHECK (method IN ('popup', 'email')),
    CONSTRAINT reminder_deliveries_channel_check CHECK (channel IN ('push', 'email', 'sms')),
    CONSTRAINT reminder_deliveries_state_check
        CHECK (state IN ('pending', 'leased', 'delivered', 'failed', 'withdrawn')),
    CONSTRAINT reminder_deliveries_attempts_check CHECK (attempts >= 0),
    CONSTRAINT reminder_deliveries_due_check
        CHECK ((state IN ('pending', 'leased')) = (next_attempt_at IS NOT NULL)),
    CONSTRAINT reminder_deliveries_lease_check
        CHECK ((state = 'leased') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
);

-- Serves the dispatchers' scan for due rows (pending, or leased by a dispatcher whose lease ran out).
CREATE INDEX reminder_deliveries_due_idx
    ON reminder_deliveries (next_attempt_at) WHERE state IN ('pending', 'leased');
-- Serves the planner's withdrawals (pending rows in its window) and the retention cleanup.
CREATE INDEX reminder_deliveries_due_at_idx ON reminder_deliveries (due_at);
-- Serves the cascade from calendars.
CREATE INDEX reminder_deliveries_calendar_idx ON reminder_deliveries (user_id, calendar_id);

-- Where the planner finds events with a reminder due in its window, at
-- almost no cost to the sync's writes: the store writes each event's first
-- and last reminder due time (start - largest lead, start - smallest lead;
-- NULL without reminders) beside its `reminders`, and plain btree indexes
-- serve "first or last reminder due in [from, to]", which finds every event
-- with up to two reminders. An event with three or more (rare) may have
-- only a middle one in the window: a GiST index over its span of due times,
-- partial to those events, finds it. (A GiST index over every event's span
-- was measured at about three times the write cost of the events' insert
-- itself; no trigger is involved either way.)
ALTER TABLE user_calendar_events
    ADD COLUMN reminder_first_due timestamptz,
    ADD COLUMN reminder_last_due timestamptz;

-- Rows stored before this migration.
UPDATE user_calendar_events e
SET (reminder_first_due, reminder_last_due) = (
    SELECT e.start_at - make_interval(mins => max(lead)), e.start_at - make_interval(mins => min(lead))
    FROM (
        SELECT (r ->> 'minutes_before')::numeric::integer AS lead
        FROM jsonb_array_elements(e.reminders) AS r
        WHERE jsonb_typeof(r -> 'minutes_before') = 'number'
          AND (r ->> 'minutes_before')::numeric BETWEEN -5256000 AND 5256000
    ) AS leads
)
WHERE jsonb_typeof(e.reminders) = 'array' AND e.reminders <> '[]'::jsonb;

CREATE INDEX user_calendar_events_reminder_first_due_idx ON user_calendar_events (reminder_first_due)
    WHERE reminder_first_due IS NOT NULL AND status <> 'cancelled';
-- Only for events whose last reminder differs from their first: an event with
-- one reminder (the common case) is found by its first, and pays for one index.
CREATE INDEX user_calendar_events_reminder_last_due_idx ON user_calendar_events (reminder_last_due)
    WHERE reminder_last_due IS NOT NULL AND reminder_last_due <> reminder_first_due AND status <> 'cancelled';
CREATE INDEX user_calendar_events_reminder_span_idx
    ON user_calendar_events USING gist (tstzrange(reminder_first_due, reminder_last_due, '[]'))
    WHERE (reminders -> 2) IS NOT NULL AND reminder_first_due IS NOT NULL AND status <> 'cancelled';

COMMENT ON COLUMN user_calendar_events.reminder_first_due IS
    'start - the largest reminder lead (NULL: no reminders); written by the store, read by the reminder planner';
COMMENT ON COLUMN user_calendar_events.reminder_last_due IS
    'start - the smallest reminder lead (NULL: no reminders); written by the store, read by the reminder planner';
