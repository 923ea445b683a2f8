-- The range index also covers what free/busy reads
-- (juy_store::availability::busy_events): the busy query becomes an
-- index-only scan per user and never visits the wide heap rows with their
-- sealed texts. Same key, so it still serves "one user's events in a range"
-- ordered and paged by (start_at, id); one index to maintain per write, as before.
DROP INDEX user_calendar_events_range_idx;
CREATE INDEX user_calendar_events_range_idx
    ON user_calendar_events (user_id, start_at, id)
    INCLUDE (end_at, all_day_start, all_day_end, status, transparency, self_response, kind);
