DROP INDEX user_calendar_events_reminders_idx;
DROP FUNCTION juy_reminder_span(timestamptz, jsonb);
DROP TABLE reminder_deliveries;
