-- Reverses up.sql.
COMMENT ON COLUMN calendars.next_sync_at IS NULL;
DROP INDEX calendars_due_idx;
