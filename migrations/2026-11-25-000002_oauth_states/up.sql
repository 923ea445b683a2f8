-- Pending OAuth authorisations: the `state` of an authorisation-code flow,
-- bound to the user who started it, with its PKCE verifier (sealed with that
-- user's data key), the redirect URI and scopes asked for, and an expiry.
-- Only a SHA-256 of the state is stored; a row is deleted when it is used.
CREATE TABLE oauth_states (
    user_id text NOT NULL,
    state_hash bytea NOT NULL,
    provider text NOT NULL,
    redirect_uri text NOT NULL,
    pkce_verifier_enc bytea NOT NULL,
    scopes text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    CONSTRAINT oauth_states_pkey PRIMARY KEY (user_id, state_hash),
    CONSTRAINT oauth_states_provider_check CHECK (provider IN ('google', 'microsoft')),
    CONSTRAINT oauth_states_state_hash_check CHECK (length(state_hash) = 32)
);

-- Serves the cleanup of expired states.
CREATE INDEX oauth_states_expires_at_idx ON oauth_states (expires_at);
