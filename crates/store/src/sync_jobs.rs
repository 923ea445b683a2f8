//! "Sync now" jobs: which calendars a user asked to sync at once, and how
//! far each has got, readable from any replica while workers of any replica
//! run the calendars.
//!
//! [`create_job`] records the job and makes its calendars due at once; the
//! worker that leases a calendar [`attach`]es the calendar's unfinished job
//! rows when its run starts, [`record_progress`] with each committed page
//! and [`finish`]es them when the run ends. A run that dies is adopted by the
//! next run of the calendar (it attaches `running` rows too).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use juy_domain::{CalendarId, UserId};
use uuid::Uuid;

use crate::StoreError;
use crate::sync_state::MAX_ERROR_CHARS;

/// Where one calendar of a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for a worker.
    Queued,
    /// A worker is syncing it.
    Running,
    /// Synced.
    Done,
    /// The run failed; see the error.
    Failed,
    /// Not synced: its account cannot sync (revoked or awaiting re-authorisation).
    Skipped,
}

impl JobState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Skipped => "skipped",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            "skipped" => JobState::Skipped,
            _ => return None,
        })
    }

    /// Whether nothing more will happen to it.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Done | JobState::Failed | JobState::Skipped)
    }
}

/// What a run is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobPhase {
    /// A full listing of the window.
    Listing,
    /// Applying the provider's changes since the last run.
    Changes,
}

impl JobPhase {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobPhase::Listing => "listing",
            JobPhase::Changes => "changes",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "listing" => Some(JobPhase::Listing),
            "changes" => Some(JobPhase::Changes),
            _ => None,
        }
    }
}

/// One calendar of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCalendar {
    /// The calendar.
    pub calendar_id: CalendarId,
    /// Where it stands.
    pub state: JobState,
    /// What its run is doing, once started.
    pub phase: Option<JobPhase>,
    /// Pages committed.
    pub pages: i32,
    /// Events written (inserted or updated).
    pub events_written: i32,
    /// Events deleted.
    pub events_deleted: i32,
    /// Why it failed or was skipped.
    pub error: Option<String>,
    /// When its run started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A "sync now" job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncJob {
    /// Its id.
    pub id: Uuid,
    /// Whose.
    pub user_id: UserId,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// Its calendars, in id order.
    pub calendars: Vec<JobCalendar>,
}

impl SyncJob {
    /// Whether every calendar has ended.
    pub fn is_finished(&self) -> bool {
        self.calendars.iter().all(|calendar| calendar.state.is_final())
    }
}

#[derive(QueryableByName)]
struct JobCalendarRow {
    #[diesel(sql_type = SqlUuid)]
    calendar_id: Uuid,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Nullable<Text>)]
    phase: Option<String>,
    #[diesel(sql_type = Integer)]
    pages: i32,
    #[diesel(sql_type = Integer)]
    events_written: i32,
    #[diesel(sql_type = Integer)]
    events_deleted: i32,
    #[diesel(sql_type = Nullable<Text>)]
    error: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    started_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    finished_at: Option<DateTime<Utc>>,
}

impl JobCalendarRow {
    fn decode(self) -> Result<JobCalendar, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("sync job calendar {}: {what}", self.calendar_id));
        Ok(JobCalendar {
            calendar_id: CalendarId(self.calendar_id),
            state: JobState::parse(&self.state).ok_or_else(|| corrupt("unknown state"))?,
            phase: match self.phase.as_deref() {
                Some(phase) => Some(JobPhase::parse(phase).ok_or_else(|| corrupt("unknown phase"))?),
                None => None,
            },
            pages: self.pages,
            events_written: self.events_written,
            events_deleted: self.events_deleted,
            error: self.error,
            started_at: self.started_at,
            finished_at: self.finished_at,
        })
    }
}

#[derive(QueryableByName)]
struct CalendarSyncable {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    syncable: bool,
}

#[derive(QueryableByName)]
struct Created {
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct JobId {
    #[diesel(sql_type = SqlUuid)]
    job_id: Uuid,
}

/// What a skipped calendar's job row says.
pub const SKIPPED_REASON: &str = "the calendar's connection cannot sync: it was revoked or must be linked again";

/// Records a job syncing `calendars` of `user` (empty: all the user's
/// calendars) and makes them due at `now`, in one transaction. Calendars
/// whose account cannot sync are recorded as skipped. Any calendar that is
/// not `user`'s → [`StoreError::NotFound`] and nothing is recorded; a user
/// with no calendars gets a job with none (finished at once).
pub async fn create_job(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    calendars: &[CalendarId],
    now: DateTime<Utc>,
) -> Result<SyncJob, StoreError> {
    let wanted: Vec<Uuid> = calendars.iter().map(|calendar| calendar.0).collect();
    let id = Uuid::now_v7();
    conn.transaction(async |conn| {
        let found: Vec<CalendarSyncable> = diesel::sql_query(
            "SELECT c.id, a.status = ANY($3) AS syncable \
             FROM calendars c JOIN connected_accounts a ON a.user_id = c.user_id AND a.id = c.account_id \
             WHERE c.user_id = $1 AND (cardinality($2) = 0 OR c.id = ANY($2)) \
             ORDER BY c.id FOR NO KEY UPDATE OF c",
        )
        .bind::<Text, _>(user.as_str())
        .bind::<Array<SqlUuid>, _>(&wanted)
        .bind::<Array<Text>, _>(crate::sync_state::syncable())
        .load(conn)
        .await?;
        if let Some(missing) = wanted.iter().find(|id| !found.iter().any(|row| row.id == **id)) {
            return Err(StoreError::NotFound {
                what: "calendar",
                id: missing.to_string(),
            });
        }
        let created: Created = diesel::sql_query(
            "INSERT INTO sync_jobs (user_id, id, created_at) VALUES ($1, $2, $3) RETURNING created_at",
        )
        .bind::<Text, _>(user.as_str())
        .bind::<SqlUuid, _>(id)
        .bind::<Timestamptz, _>(now)
        .get_result(conn)
        .await?;
        let due: Vec<Uuid> = found.iter().filter(|row| row.syncable).map(|row| row.id).collect();
        let skipped: Vec<Uuid> = found.iter().filter(|row| !row.syncable).map(|row| row.id).collect();
        diesel::sql_query(
            "INSERT INTO sync_job_calendars (user_id, job_id, calendar_id, state, error, finished_at) \
             SELECT $1, $2, calendar_id, 'queued', NULL, NULL FROM unnest($3::uuid[]) AS calendar_id \
             UNION ALL \
             SELECT $1, $2, calendar_id, 'skipped', $5, $4 FROM unnest($6::uuid[]) AS calendar_id",
        )
        .bind::<Text, _>(user.as_str())
        .bind::<SqlUuid, _>(id)
        .bind::<Array<SqlUuid>, _>(&due)
        .bind::<Timestamptz, _>(now)
        .bind::<Text, _>(SKIPPED_REASON)
        .bind::<Array<SqlUuid>, _>(&skipped)
        .execute(conn)
        .await?;
        // Due now; a calendar never synced (NULL) is already due first.
        diesel::sql_query(
            "UPDATE calendars \
             SET next_sync_at = CASE WHEN next_sync_at IS NULL THEN NULL ELSE least(next_sync_at, $3) END \
             WHERE user_id = $1 AND id = ANY($2)",
        )
        .bind::<Text, _>(user.as_str())
        .bind::<Array<SqlUuid>, _>(&due)
        .bind::<Timestamptz, _>(now)
        .execute(conn)
        .await?;
        let calendars = load_calendars(conn, user, id).await?;
        Ok(SyncJob {
            id,
            user_id: user.clone(),
            created_at: created.created_at,
            calendars,
        })
    })
    .await
}

async fn load_calendars(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    job: Uuid,
) -> Result<Vec<JobCalendar>, StoreError> {
    let rows: Vec<JobCalendarRow> = diesel::sql_query(
        "SELECT calendar_id, state, phase, pages, events_written, events_deleted, error, started_at, finished_at \
         FROM sync_job_calendars WHERE user_id = $1 AND job_id = $2 ORDER BY calendar_id",
    )
    .bind::<Text, _>(user.as_str())
    .bind::<SqlUuid, _>(job)
    .load(conn)
    .await?;
    rows.into_iter().map(JobCalendarRow::decode).collect()
}

/// One of `user`'s jobs; `None` if there is no such job of theirs (or it was cleaned up).
pub async fn get_job(conn: &mut AsyncPgConnection, user: &UserId, job: Uuid) -> Result<Option<SyncJob>, StoreError> {
    let created: Option<Created> = diesel::sql_query("SELECT created_at FROM sync_jobs WHERE user_id = $1 AND id = $2")
        .bind::<Text, _>(user.as_str())
        .bind::<SqlUuid, _>(job)
        .get_result(conn)
        .await
        .optional()?;
    let Some(created) = created else {
        return Ok(None);
    };
    let calendars = load_calendars(conn, user, job).await?;
    Ok(Some(SyncJob {
        id: job,
        user_id: user.clone(),
        created_at: created.created_at,
        calendars,
    }))
}

/// Attaches the calendar's unfinished job rows to the run starting now
/// (state `running`, phase `phase`); returns their job ids.
pub async fn attach(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    calendar: CalendarId,
    phase: JobPhase,
    now: DateTime<Utc>,
) -> Result<Vec<Uuid>, StoreError> {
    let rows: Vec<JobId> = diesel::sql_query(
        "UPDATE sync_job_calendars \
         SET state = 'running', phase = $3, started_at = coalesce(started_at, $4), updated_at = now() \
         WHERE user_id = $1 AND calendar_id = $2 AND state IN ('queued', 'running') \
         RETURNING job_id",
    )
    .bind::<Text, _>(user.as_str())
    .bind::<SqlUuid, _>(calendar.0)
    .bind::<Text, _>(phase.as_str())
    .bind::<Timestamptz, _>(now)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|row| row.job_id).collect())
}

/// Adds one committed page's counts to the attached job rows and sets their phase.
pub async fn record_progress(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    calendar: CalendarId,
    jobs: &[Uuid],
    phase: JobPhase,
    written: u64,
    deleted: u64,
) -> Result<(), StoreError> {
    if jobs.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "UPDATE sync_job_calendars \
         SET pages = pages + 1, events_written = least(events_written::bigint + $5, 2147483647)::integer, \
             events_deleted = least(events_deleted::bigint + $6, 2147483647)::integer, \
             phase = $4, updated_at = now() \
         WHERE user_id = $1 AND calendar_id = $2 AND job_id = ANY($3) AND state = 'running'",
    )
    .bind::<Text, _>(user.as_str())
    .bind::<SqlUuid, _>(calendar.0)
    .bind::<Array<SqlUuid>, _>(jobs)
    .bind::<Text, _>(phase.as_str())
    .bind::<BigInt, _>(i64::try_from(written).unwrap_or(i64::MAX))
    .bind::<BigInt, _>(i64::try_from(deleted).unwrap_or(i64::MAX))
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends the attached job rows: done, or failed with `error` (a short,
/// user-presentable reason, cut to [`MAX_ERROR_CHARS`]).
pub async fn finish(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    calendar: CalendarId,
    jobs: &[Uuid],
    error: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let error: Option<String> = error.map(|error| error.chars().take(MAX_ERROR_CHARS).collect());
    let state = if error.is_some() {
        JobState::Failed
    } else {
        JobState::Done
    };
    diesel::sql_query(
        "UPDATE sync_job_calendars \
         SET state = $4, error = $5, finished_at = $6, updated_at = now() \
         WHERE user_id = $1 AND calendar_id = $2 AND job_id = ANY($3) AND state IN ('queued', 'running')",
    )
    .bind::<Text, _>(user.as_str())
    .bind::<SqlUuid, _>(calendar.0)
    .bind::<Array<SqlUuid>, _>(jobs)
    .bind::<Text, _>(state.as_str())
    .bind::<Nullable<Text>, _>(error)
    .bind::<Timestamptz, _>(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks the unfinished job rows of every calendar of an account skipped
/// (the account was revoked or needs re-authorisation); returns how many.
pub async fn skip_account(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    account: juy_domain::AccountId,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let skipped = diesel::sql_query(
        "UPDATE sync_job_calendars j SET state = 'skipped', error = $3, finished_at = $4, updated_at = now() \
         FROM calendars c \
         WHERE j.user_id = $1 AND c.user_id = j.user_id AND c.id = j.calendar_id AND c.account_id = $2 \
           AND j.state IN ('queued', 'running')",
    )
    .bind::<Text, _>(user.as_str())
    .bind::<SqlUuid, _>(account.0)
    .bind::<Text, _>(SKIPPED_REASON)
    .bind::<Timestamptz, _>(now)
    .execute(conn)
    .await?;
    Ok(skipped as u64)
}

/// Deletes at most `batch` jobs created before `before`; returns how many.
pub async fn delete_jobs_before(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
    batch: i64,
) -> Result<u64, StoreError> {
    if batch < 1 {
        return Err(StoreError::InvalidInput("batch must be at least 1".into()));
    }
    let deleted = diesel::sql_query(
        "DELETE FROM sync_jobs AS j USING ( \
             SELECT user_id, id FROM sync_jobs WHERE created_at < $1 ORDER BY created_at LIMIT $2 \
             FOR UPDATE SKIP LOCKED \
         ) AS old WHERE j.user_id = old.user_id AND j.id = old.id",
    )
    .bind::<Timestamptz, _>(before)
    .bind::<BigInt, _>(batch)
    .execute(conn)
    .await?;
    Ok(deleted as u64)
}
