-- "Sync now" jobs (juy_store::sync_jobs): a user asks for some calendars to
-- be synced at once and follows the job's progress, whichever replica's
-- worker runs each calendar. One row per job, one per (job, calendar); the
-- worker syncing a calendar attaches the calendar's queued job rows when its
-- run starts and writes their progress with each page it commits.
CREATE TABLE sync_jobs (
    user_id text NOT NULL,
    id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sync_jobs_pkey PRIMARY KEY (user_id, id)
);

CREATE TABLE sync_job_calendars (
    user_id text NOT NULL,
    job_id uuid NOT NULL,
    calendar_id uuid NOT NULL,
    -- queued → running → done | failed; skipped when the account cannot sync.
    state text NOT NULL DEFAULT 'queued',
    -- What the run is doing: listing (full) or changes (incremental).
    phase text,
    pages integer NOT NULL DEFAULT 0,
    events_written integer NOT NULL DEFAULT 0,
    events_deleted integer NOT NULL DEFAULT 0,
    -- A short user-presentable reason, never event text.
    error text,
    started_at timestamptz,
    finished_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sync_job_calendars_pkey PRIMARY KEY (user_id, job_id, calendar_id),
    CONSTRAINT sync_job_calendars_job_fkey FOREIGN KEY (user_id, job_id)
        REFERENCES sync_jobs (user_id, id) ON DELETE CASCADE,
    CONSTRAINT sync_job_calendars_calendar_fkey FOREIGN KEY (user_id, calendar_id)
        REFERENCES calendars (user_id, id) ON DELETE CASCADE,
    CONSTRAINT sync_job_calendars_state_check
        CHECK (state IN ('queued', 'running', 'done', 'failed', 'skipped')),
    CONSTRAINT sync_job_calendars_phase_check CHECK (phase IS NULL OR phase IN ('listing', 'changes')),
    CONSTRAINT sync_job_calendars_counts_check
        CHECK (pages >= 0 AND events_written >= 0 AND events_deleted >= 0)
);

-- Serves the attach at the start of every run: the calendar's unfinished job rows.
CREATE INDEX sync_job_calendars_open_idx
    ON sync_job_calendars (user_id, calendar_id) WHERE state IN ('queued', 'running');

-- Serves the cleanup of old jobs.
CREATE INDEX sync_jobs_created_idx ON sync_jobs (created_at);
