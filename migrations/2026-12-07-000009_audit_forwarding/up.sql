-- Forwarding of the audit trail to an external audit service (AC-07: access
-- logs are written to the audit service). While forwarding is switched on
-- (audit_forwarding.enabled, set by the service at start from its
-- configuration), every new entry is queued in the same transaction that
-- appends it; dispatchers lease queued entries, post them, and delete them
-- from the queue once the audit service confirmed. The queue holds only the
-- entry's position: the erasure of a user's entries removes theirs with them.

CREATE TABLE audit_forwarding (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    enabled boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO audit_forwarding (singleton, enabled) VALUES (true, false);

CREATE TABLE audit_forward_queue (
    seq bigint NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_owner text,
    lease_expires_at timestamptz,
    -- Why the last attempt failed (a status or a transport error; no entry content).
    last_error text,
    CONSTRAINT audit_forward_queue_pkey PRIMARY KEY (seq),
    CONSTRAINT audit_forward_queue_seq_fkey FOREIGN KEY (seq)
        REFERENCES audit_events (seq) ON DELETE CASCADE
);

-- Serves the dispatchers' lease: the due entries, oldest first.
CREATE INDEX audit_forward_queue_due_idx ON audit_forward_queue (next_attempt_at, seq);

CREATE FUNCTION audit_events_enqueue_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM audit_forwarding WHERE enabled) THEN
        INSERT INTO audit_forward_queue (seq) VALUES (NEW.seq);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER audit_events_forward AFTER INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_enqueue_forward();

-- audit_erase_user inserts its own entry as juy_audit_eraser: the trigger's
-- lookup and insert run with that role's privileges.
GRANT SELECT ON audit_forwarding TO juy_audit_eraser;
GRANT INSERT, DELETE ON audit_forward_queue TO juy_audit_eraser;
