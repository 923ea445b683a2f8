-- The audit trail (AC-07, US-07): who did what to whose calendar data, when,
-- with what result. Append-only: a trigger refuses every UPDATE, DELETE and
-- TRUNCATE, whoever the role, except the deletions of audit_erase_user (a
-- user's erasure, GDPR), which runs as its own role and records itself.
-- No event text and no secret is ever written here: actors and subjects are
-- pseudonymous user ids, targets are resource names.

-- Roles are cluster-wide: another database of the cluster may have made it,
-- even at the same moment.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'juy_audit_eraser') THEN
        CREATE ROLE juy_audit_eraser NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

CREATE TABLE audit_events (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    id uuid NOT NULL,
    occurred_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- A user id, or `system/{component}` for the service's own work.
    actor text NOT NULL,
    actor_roles text[] NOT NULL DEFAULT '{}',
    action text NOT NULL,
    -- Whose data the action touched, when it touched one user's.
    subject_user_id text,
    -- A resource name (`connections/{uuid}`, `meetings/{uuid}`, ...), when one.
    target text,
    -- The gRPC status code name of the outcome: OK, PERMISSION_DENIED, ...
    result text NOT NULL,
    request_id text,
    CONSTRAINT audit_events_pkey PRIMARY KEY (seq),
    CONSTRAINT audit_events_id_key UNIQUE (id),
    CONSTRAINT audit_events_action_check CHECK (action ~ '^[a-z_]+(\.[a-z_]+)+$'),
    CONSTRAINT audit_events_result_check CHECK (result ~ '^[A-Z_]+$')
);

CREATE INDEX audit_events_time_idx ON audit_events (occurred_at, seq);
CREATE INDEX audit_events_actor_idx ON audit_events (actor, seq);
CREATE INDEX audit_events_subject_idx ON audit_events (subject_user_id, seq) WHERE subject_user_id IS NOT NULL;

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_user = 'juy_audit_eraser' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the audit trail is append-only: % is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- Erases a user's entries and records the erasure (holding only the
-- pseudonymous id); returns how many entries went.
CREATE FUNCTION audit_erase_user(p_user text, p_request_id text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    erased bigint;
BEGIN
    DELETE FROM public.audit_events WHERE actor = p_user OR subject_user_id = p_user;
    GET DIAGNOSTICS erased = ROW_COUNT;
    INSERT INTO public.audit_events (id, actor, action, subject_user_id, result, request_id)
    VALUES (gen_random_uuid(), p_user, 'data.erase', p_user, 'OK', p_request_id);
    RETURN erased;
END
$$;

GRANT SELECT, INSERT, DELETE ON audit_events TO juy_audit_eraser;
ALTER FUNCTION audit_erase_user(text, text) OWNER TO juy_audit_eraser;
