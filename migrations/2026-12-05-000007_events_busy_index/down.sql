DROP INDEX user_calendar_events_range_idx;
CREATE INDEX user_calendar_events_range_idx
    ON user_calendar_events (user_id, start_at, id) INCLUDE (end_at);
