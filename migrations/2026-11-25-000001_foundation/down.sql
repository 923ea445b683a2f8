-- Reverses up.sql, dependants first.
DROP TABLE notification_settings;
DROP TABLE user_calendar_events;
DROP TABLE calendars;
DROP TABLE connected_accounts;
DROP TABLE user_data_keys;
