-- Reverses up.sql.
DROP TABLE sync_job_calendars;
DROP TABLE sync_jobs;
