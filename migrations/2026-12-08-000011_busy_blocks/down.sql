DROP TRIGGER meetings_busy_copy ON meetings;
DROP FUNCTION busy_mark_meeting();
DROP TRIGGER user_calendar_events_busy_delete ON user_calendar_events;
DROP TRIGGER user_calendar_events_busy_update ON user_calendar_events;
DROP TRIGGER user_calendar_events_busy_insert ON user_calendar_events;
DROP FUNCTION busy_mark_events();
DROP TABLE busy_dirty;
DROP TABLE busy_state;
DROP TABLE busy_blocks;
