DROP FUNCTION audit_erase_user(text, text);
DROP TABLE audit_events;
DROP FUNCTION audit_events_append_only();
-- The role juy_audit_eraser is cluster-wide and may serve other databases: left in place.
