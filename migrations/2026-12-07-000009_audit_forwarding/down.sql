REVOKE INSERT, DELETE ON audit_forward_queue FROM juy_audit_eraser;
REVOKE SELECT ON audit_forwarding FROM juy_audit_eraser;
DROP TRIGGER audit_events_forward ON audit_events;
DROP FUNCTION audit_events_enqueue_forward();
DROP TABLE audit_forward_queue;
DROP TABLE audit_forwarding;
