-- Availability and meetings (juy_store::availability, juy_store::meetings).
--
-- `availability_settings`: a user's own time zone and working hours, the
-- defaults of free/busy and slot finding (absent: the primary calendar's zone
-- or UTC, and Monday to Friday 09:00-17:00).
--
-- `meetings`: meetings organised in Juy. The row is also the transactional
-- outbox of its write-back: the change and the pending delivery commit in
-- one transaction; a dispatcher leases due rows (FOR UPDATE SKIP LOCKED),
-- calls the provider with an idempotency key derived from the meeting id,
-- and records the provider's id and the version delivered. Deliveries of
-- one meeting collapse: only its latest version is ever sent.
CREATE TABLE availability_settings (
    user_id text NOT NULL,
    time_zone text,
    -- [{"day": "mon", "start": "09:00", "end": "17:00"}, ...]; NULL: the default week.
    working_hours jsonb,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT availability_settings_pkey PRIMARY KEY (user_id)
);

CREATE TABLE meetings (
    -- The organiser.
    user_id text NOT NULL,
    id uuid NOT NULL,
    -- The client's idempotency key of the create request (AIP-155).
    request_id text,
    title_enc bytea NOT NULL,
    description_enc bytea,
    location_enc bytea,
    -- JSON list of attendee email addresses written to the provider.
    attendee_emails_enc bytea,
    start_at timestamptz NOT NULL,
    end_at timestamptz NOT NULL,
    time_zone text NOT NULL,
    -- Juy user ids of the invitees (pseudonymous ids, not personal text).
    invitees text[] NOT NULL DEFAULT '{}',
    status text NOT NULL DEFAULT 'scheduled',
    -- Raised by every change; the dispatcher delivers the latest.
    version integer NOT NULL DEFAULT 1,
    -- The organiser's Write-mode calendar it is written to, when asked.
    calendar_id uuid,
    delivery_state text NOT NULL DEFAULT 'not_requested',
    delivered_version integer NOT NULL DEFAULT 0,
    -- Set once a create was sent: a later cancel must find the event even
    -- if the provider's answer was lost.
    create_attempted boolean NOT NULL DEFAULT false,
    external_id text,
    external_etag text,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    lease_owner text,
    lease_expires_at timestamptz,
    -- A short reason for the user (never event text or secrets).
    last_error text,
    delivered_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT meetings_pkey PRIMARY KEY (user_id, id),
    CONSTRAINT meetings_request_key UNIQUE (user_id, request_id),
    CONSTRAINT meetings_calendar_fkey FOREIGN KEY (user_id, calendar_id)
        REFERENCES calendars (user_id, id) ON DELETE SET NULL (calendar_id),
    CONSTRAINT meetings_status_check CHECK (status IN ('scheduled', 'cancelled')),
    CONSTRAINT meetings_delivery_state_check
        CHECK (delivery_state IN ('not_requested', 'pending', 'delivered', 'failed')),
    CONSTRAINT meetings_time_check CHECK (end_at > start_at),
    CONSTRAINT meetings_version_check CHECK (version > 0 AND delivered_version >= 0 AND attempts >= 0)
);

-- Serves the merged events view and the organiser's free/busy.
CREATE INDEX meetings_range_idx ON meetings (user_id, start_at, id) INCLUDE (end_at);
-- Serves the invitees' free/busy.
CREATE INDEX meetings_invitees_idx ON meetings USING gin (invitees);
-- Serves the dispatcher's scan for due deliveries.
CREATE INDEX meetings_due_idx ON meetings (next_attempt_at) WHERE delivery_state = 'pending';
-- Serves hiding a meeting's synced provider copy behind the meeting.
CREATE INDEX meetings_external_idx ON meetings (user_id, calendar_id, external_id)
    WHERE external_id IS NOT NULL;
