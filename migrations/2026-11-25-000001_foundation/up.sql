-- The foundation: data keys, connected accounts, calendars, their events and
-- the per-provider notification settings.
--
-- Every user-owned table is keyed by `user_id` first: it is the distribution
-- column if these tables are ever spread over Citus workers, so every primary
-- key, unique constraint and foreign key includes it.
--
-- Enumerations are text with CHECK constraints whose values are the domain's
-- `as_str()` names. Columns ending in `_enc` hold AES-256-GCM ciphertexts
-- sealed with the owner's data key; their plaintext never reaches SQL.

CREATE TABLE user_data_keys (
    user_id text NOT NULL,
    version integer NOT NULL,
    master_version integer NOT NULL,
    wrapped_key bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    rotated_at timestamptz,
    CONSTRAINT user_data_keys_pkey PRIMARY KEY (user_id, version),
    CONSTRAINT user_data_keys_version_check CHECK (version > 0),
    CONSTRAINT user_data_keys_master_version_check CHECK (master_version > 0)
);

-- Serves `rotate-keys`: finding the keys not yet under the active master key.
CREATE INDEX user_data_keys_master_version_idx ON user_data_keys (master_version);

CREATE TABLE connected_accounts (
    user_id text NOT NULL,
    id uuid NOT NULL,
    provider text NOT NULL,
    external_account_id text NOT NULL,
    display_name_enc bytea,
    status text NOT NULL,
    status_reason text,
    credentials_enc bytea,
    scopes text[] NOT NULL DEFAULT '{}',
    server_url text,
    connected_at timestamptz NOT NULL DEFAULT now(),
    last_sync_at timestamptz,
    last_error text,
    revoked_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT connected_accounts_pkey PRIMARY KEY (user_id, id),
    CONSTRAINT connected_accounts_external_key UNIQUE (user_id, provider, external_account_id),
    CONSTRAINT connected_accounts_provider_check
        CHECK (provider IN ('google', 'microsoft', 'caldav')),
    CONSTRAINT connected_accounts_status_check
        CHECK (status IN ('pending', 'active', 'error', 'reauth_required', 'revoked')),
    -- A revoked account keeps no credentials.
    CONSTRAINT connected_accounts_revoked_without_credentials_check
        CHECK (status <> 'revoked' OR credentials_enc IS NULL)
);

-- Serves the admin listing, paged by (connected_at, user_id, id).
CREATE INDEX connected_accounts_connected_at_idx
    ON connected_accounts (connected_at, user_id, id);

CREATE TABLE calendars (
    user_id text NOT NULL,
    id uuid NOT NULL,
    account_id uuid NOT NULL,
    provider text NOT NULL,
    provider_calendar_id text NOT NULL,
    name_enc bytea NOT NULL,
    color text,
    time_zone text,
    is_primary boolean NOT NULL DEFAULT false,
    can_write boolean NOT NULL DEFAULT false,
    mode text NOT NULL DEFAULT 'read_only',
    sync_status text NOT NULL DEFAULT 'pending',
    sync_cursor text,
    next_sync_at timestamptz,
    lease_owner text,
    lease_expires_at timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0,
    last_synced_at timestamptz,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT calendars_pkey PRIMARY KEY (user_id, id),
    CONSTRAINT calendars_account_fkey FOREIGN KEY (user_id, account_id)
        REFERENCES connected_accounts (user_id, id) ON DELETE CASCADE,
    CONSTRAINT calendars_provider_calendar_key
        UNIQUE (user_id, account_id, provider_calendar_id),
    CONSTRAINT calendars_provider_check
        CHECK (provider IN ('google', 'microsoft', 'caldav')),
    CONSTRAINT calendars_mode_check CHECK (mode IN ('read_only', 'write')),
    CONSTRAINT calendars_sync_status_check CHECK (sync_status IN ('pending', 'ok', 'error')),
    CONSTRAINT calendars_consecutive_failures_check CHECK (consecutive_failures >= 0),
    -- Juy writes only where the provider lets the account write.
    CONSTRAINT calendars_write_needs_can_write_check CHECK (mode <> 'write' OR can_write)
);

CREATE TABLE user_calendar_events (
    user_id text NOT NULL,
    id uuid NOT NULL,
    calendar_id uuid NOT NULL,
    provider text NOT NULL,
    external_id text NOT NULL,
    ical_uid text,
    series_id text,
    instance_start timestamptz,
    start_at timestamptz NOT NULL,
    end_at timestamptz NOT NULL,
    time_zone text,
    all_day_start date,
    all_day_end date,
    status text NOT NULL,
    transparency text NOT NULL,
    self_response text NOT NULL,
    kind text NOT NULL,
    reminders jsonb NOT NULL DEFAULT '[]',
    etag text,
    provider_updated_at timestamptz,
    title_enc bytea,
    location_enc bytea,
    description_enc bytea,
    -- JSON of {organizer, attendees}.
    attendees_enc bytea,
    synced_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT user_calendar_events_pkey PRIMARY KEY (user_id, id),
    CONSTRAINT user_calendar_events_external_key UNIQUE (user_id, calendar_id, external_id),
    CONSTRAINT user_calendar_events_calendar_fkey FOREIGN KEY (user_id, calendar_id)
        REFERENCES calendars (user_id, id) ON DELETE CASCADE,
    CONSTRAINT user_calendar_events_provider_check
        CHECK (provider IN ('google', 'microsoft', 'caldav')),
    CONSTRAINT user_calendar_events_status_check
        CHECK (status IN ('confirmed', 'tentative', 'cancelled')),
    CONSTRAINT user_calendar_events_transparency_check
        CHECK (transparency IN ('opaque', 'transparent')),
    CONSTRAINT user_calendar_events_self_response_check
        CHECK (self_response IN ('none', 'organizer', 'needs_action', 'accepted', 'tentative', 'declined')),
    CONSTRAINT user_calendar_events_kind_check
        CHECK (kind IN ('default', 'out_of_office', 'focus_time', 'working_elsewhere')),
    CONSTRAINT user_calendar_events_time_check CHECK (end_at > start_at),
    CONSTRAINT user_calendar_events_all_day_check
        CHECK ((all_day_start IS NULL) = (all_day_end IS NULL))
);

-- Serves "one user's events in a range", ordered and paged by (start_at, id).
CREATE INDEX user_calendar_events_range_idx
    ON user_calendar_events (user_id, start_at, id) INCLUDE (end_at);

-- Serves the TTL cleanup.
CREATE INDEX user_calendar_events_expires_at_idx ON user_calendar_events (expires_at);

CREATE TABLE notification_settings (
    user_id text NOT NULL,
    provider text NOT NULL,
    push boolean NOT NULL,
    email boolean NOT NULL,
    sms boolean NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notification_settings_pkey PRIMARY KEY (user_id, provider),
    CONSTRAINT notification_settings_provider_check
        CHECK (provider IN ('google', 'microsoft', 'caldav'))
);
