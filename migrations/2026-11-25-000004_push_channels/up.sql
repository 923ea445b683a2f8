-- Push channels (juy_store::push_channels): the live Google channel or Graph
-- subscription of a calendar, at most one per calendar, so the sync engine
-- knows what to renew or stop and the webhooks can tell a real notification
-- from a forged one. Only a SHA-256 of the secret the provider echoes
-- (Google channel token, Graph clientState) is stored.
--
-- channel_id is unique on its own: a notification names only the channel,
-- not the user, so the webhook looks it up without a user_id.
CREATE TABLE push_channels (
    user_id text NOT NULL,
    calendar_id uuid NOT NULL,
    account_id uuid NOT NULL,
    provider text NOT NULL,
    channel_id text NOT NULL,
    resource_id text,
    secret_hash bytea NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT push_channels_pkey PRIMARY KEY (user_id, calendar_id),
    CONSTRAINT push_channels_channel_key UNIQUE (channel_id),
    CONSTRAINT push_channels_calendar_fkey FOREIGN KEY (user_id, calendar_id)
        REFERENCES calendars (user_id, id) ON DELETE CASCADE,
    CONSTRAINT push_channels_provider_check CHECK (provider IN ('google', 'microsoft')),
    CONSTRAINT push_channels_secret_hash_check CHECK (length(secret_hash) = 32)
);

-- Serves the renewal scan (channels expiring soonest first).
CREATE INDEX push_channels_expires_at_idx ON push_channels (expires_at);

-- Serves stopping an account's channels when it is revoked.
CREATE INDEX push_channels_account_idx ON push_channels (user_id, account_id);
