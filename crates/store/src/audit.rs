//! The audit trail (migration 000008): entries are appended, read back by
//! administrators and exports, and never changed. The database refuses every
//! UPDATE, DELETE and TRUNCATE of `audit_events` whatever the role, except the
//! deletions [`erase_user`] makes through `audit_erase_user`, which runs as
//! its own role and records the erasure. Entries hold pseudonymous user ids,
//! action names, resource names and status codes: never event text, never a
//! secret.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{QueryableByName, sql_query};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use juy_domain::UserId;
use uuid::Uuid;

use crate::StoreError;

/// An entry to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEvent {
    /// A user id, or `system/{component}` for the service's own work.
    pub actor: String,
    /// The actor's roles (from the bearer token).
    pub actor_roles: Vec<String>,
    /// What was done: dotted lower-case words, e.g. `connection.revoke`.
    pub action: String,
    /// Whose data it touched, when one user's.
    pub subject: Option<UserId>,
    /// The resource acted on, when one (`connections/{uuid}`, ...).
    pub target: Option<String>,
    /// The outcome as a gRPC status code name (`OK`, `PERMISSION_DENIED`, ...).
    pub result: String,
    /// The request's id (`x-request-id`), when it came from a request.
    pub request_id: Option<String>,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct AuditEvent {
    /// Its position in the trail: later entries have greater numbers.
    #[diesel(sql_type = BigInt)]
    pub seq: i64,
    /// Its id.
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    /// When it was recorded.
    #[diesel(sql_type = Timestamptz)]
    pub occurred_at: DateTime<Utc>,
    /// Who acted.
    #[diesel(sql_type = Text)]
    pub actor: String,
    /// Their roles.
    #[diesel(sql_type = Array<Text>)]
    pub actor_roles: Vec<String>,
    /// What was done.
    #[diesel(sql_type = Text)]
    pub action: String,
    /// Whose data.
    #[diesel(sql_type = Nullable<Text>)]
    pub subject_user_id: Option<String>,
    /// On what.
    #[diesel(sql_type = Nullable<Text>)]
    pub target: Option<String>,
    /// With what outcome.
    #[diesel(sql_type = Text)]
    pub result: String,
    /// In which request.
    #[diesel(sql_type = Nullable<Text>)]
    pub request_id: Option<String>,
}

const COLUMNS: &str = "seq, id, occurred_at, actor, actor_roles, action, subject_user_id, target, result, request_id";

/// Appends an entry, flushed to the WAL before this returns.
pub async fn record(conn: &mut AsyncPgConnection, event: &NewAuditEvent) -> Result<AuditEvent, StoreError> {
    record_with(conn, event, true).await
}

/// Appends an entry. Unless `durable`, the commit does not wait for the WAL
/// flush (`synchronous_commit = off` for this one statement's transaction):
/// the entry is lost only if the database itself crashes within a fraction of
/// a second. Must not be called inside a transaction when not `durable`
/// (the setting would hold for the whole transaction).
pub async fn record_with(
    conn: &mut AsyncPgConnection,
    event: &NewAuditEvent,
    durable: bool,
) -> Result<AuditEvent, StoreError> {
    let mut rows: Vec<AuditEvent> = sql_query(format!(
        "WITH commit_mode AS (SELECT set_config('synchronous_commit', CASE WHEN $9 THEN current_setting('synchronous_commit') ELSE 'off' END, true)) \
         INSERT INTO audit_events (id, actor, actor_roles, action, subject_user_id, target, result, request_id) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8 FROM commit_mode RETURNING {COLUMNS}"
    ))
    .bind::<SqlUuid, _>(Uuid::now_v7())
    .bind::<Text, _>(&event.actor)
    .bind::<Array<Text>, _>(&event.actor_roles)
    .bind::<Text, _>(&event.action)
    .bind::<Nullable<Text>, _>(event.subject.as_ref().map(UserId::as_str))
    .bind::<Nullable<Text>, _>(event.target.as_deref())
    .bind::<Text, _>(&event.result)
    .bind::<Nullable<Text>, _>(event.request_id.as_deref())
    .bind::<diesel::sql_types::Bool, _>(durable)
    .load(conn)
    .await?;
    rows.pop()
        .ok_or_else(|| StoreError::Database("audit: the insert returned no row".into()))
}

/// Which entries to list; unset fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Entries by this actor.
    pub actor: Option<String>,
    /// Entries about this user's data, or by them.
    pub user: Option<UserId>,
    /// Entries whose action is this one or starts with it and a dot
    /// (`connection` matches `connection.revoke`).
    pub action: Option<String>,
    /// Recorded at or after.
    pub since: Option<DateTime<Utc>>,
    /// Recorded before.
    pub until: Option<DateTime<Utc>>,
    /// Only entries older than this `seq` (the keyset cursor of the next page).
    pub before_seq: Option<i64>,
}

/// Up to `limit` entries matching `filter`, newest first.
pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: &AuditFilter,
    limit: i64,
) -> Result<Vec<AuditEvent>, StoreError> {
    Ok(sql_query(format!(
        "SELECT {COLUMNS} FROM audit_events \
         WHERE ($1::text IS NULL OR actor = $1) \
           AND ($2::text IS NULL OR subject_user_id = $2 OR actor = $2) \
           AND ($3::text IS NULL OR action = $3 OR starts_with(action, $3 || '.')) \
           AND ($4::timestamptz IS NULL OR occurred_at >= $4) \
           AND ($5::timestamptz IS NULL OR occurred_at < $5) \
           AND ($6::bigint IS NULL OR seq < $6) \
         ORDER BY seq DESC LIMIT $7"
    ))
    .bind::<Nullable<Text>, _>(filter.actor.as_deref())
    .bind::<Nullable<Text>, _>(filter.user.as_ref().map(UserId::as_str))
    .bind::<Nullable<Text>, _>(filter.action.as_deref())
    .bind::<Nullable<Timestamptz>, _>(filter.since)
    .bind::<Nullable<Timestamptz>, _>(filter.until)
    .bind::<Nullable<BigInt>, _>(filter.before_seq)
    .bind::<BigInt, _>(limit.clamp(1, 10_000))
    .load(conn)
    .await?)
}

#[derive(QueryableByName)]
struct Erased {
    #[diesel(sql_type = BigInt)]
    erased: i64,
}

/// Deletes every entry by or about `user` and records the erasure (an entry
/// holding only the pseudonymous id); returns how many entries went. The only
/// way entries leave the trail.
pub async fn erase_user(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    request_id: Option<&str>,
) -> Result<u64, StoreError> {
    let rows: Vec<Erased> = sql_query("SELECT audit_erase_user($1, $2) AS erased")
        .bind::<Text, _>(user.as_str())
        .bind::<Nullable<Text>, _>(request_id)
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .next()
        .map_or(0, |r| u64::try_from(r.erased).unwrap_or(0)))
}

/// Switches forwarding to the external audit service on or off (migration
/// 000009): while on, every new entry is queued for the forwarders in the
/// transaction that appends it. Set by the service at start from its configuration.
pub async fn set_forwarding(conn: &mut AsyncPgConnection, enabled: bool) -> Result<(), StoreError> {
    sql_query("UPDATE audit_forwarding SET enabled = $1, updated_at = now() WHERE enabled IS DISTINCT FROM $1")
        .bind::<diesel::sql_types::Bool, _>(enabled)
        .execute(conn)
        .await?;
    Ok(())
}

/// An entry leased for forwarding, with the attempts made so far (this one included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardLease {
    /// The entry.
    pub event: AuditEvent,
    /// Attempts so far, this one included.
    pub attempts: i32,
}

#[derive(QueryableByName)]
struct LeasedSeq {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    attempts: i32,
}

/// Leases up to `limit` queued entries that are due (oldest first) for
/// `owner` until `now + lease_for`, counting the attempt. Entries another
/// forwarder holds are skipped.
pub async fn lease_forward(
    conn: &mut AsyncPgConnection,
    owner: &str,
    now: DateTime<Utc>,
    lease_for: chrono::Duration,
    limit: i64,
) -> Result<Vec<ForwardLease>, StoreError> {
    let leased: Vec<LeasedSeq> = sql_query(
        "WITH due AS ( \
             SELECT seq FROM audit_forward_queue \
             WHERE next_attempt_at <= $2 AND (lease_expires_at IS NULL OR lease_expires_at <= $2) \
             ORDER BY next_attempt_at, seq LIMIT $4 FOR UPDATE SKIP LOCKED) \
         UPDATE audit_forward_queue q SET lease_owner = $1, lease_expires_at = $3, attempts = q.attempts + 1 \
         FROM due WHERE q.seq = due.seq RETURNING q.seq, q.attempts",
    )
    .bind::<Text, _>(owner)
    .bind::<Timestamptz, _>(now)
    .bind::<Timestamptz, _>(now + lease_for)
    .bind::<BigInt, _>(limit.max(1))
    .load(conn)
    .await?;
    if leased.is_empty() {
        return Ok(Vec::new());
    }
    let seqs: Vec<i64> = leased.iter().map(|l| l.seq).collect();
    let events: Vec<AuditEvent> = sql_query(format!(
        "SELECT {COLUMNS} FROM audit_events WHERE seq = ANY($1) ORDER BY seq"
    ))
    .bind::<Array<BigInt>, _>(&seqs)
    .load(conn)
    .await?;
    let attempts: std::collections::HashMap<i64, i32> = leased.iter().map(|l| (l.seq, l.attempts)).collect();
    Ok(events
        .into_iter()
        .map(|event| ForwardLease {
            attempts: attempts.get(&event.seq).copied().unwrap_or(1),
            event,
        })
        .collect())
}

/// The audit service confirmed these entries: they leave the queue (only
/// while `owner` still holds them). Returns how many left.
pub async fn forwarded(conn: &mut AsyncPgConnection, owner: &str, seqs: &[i64]) -> Result<u64, StoreError> {
    let deleted = sql_query("DELETE FROM audit_forward_queue WHERE seq = ANY($1) AND lease_owner = $2")
        .bind::<Array<BigInt>, _>(seqs)
        .bind::<Text, _>(owner)
        .execute(conn)
        .await?;
    Ok(deleted as u64)
}

/// Forwarding these entries failed: they are retried at `retry_at` (only
/// while `owner` still holds them). `error` names a status or a transport
/// failure, never entry content.
pub async fn forward_failed(
    conn: &mut AsyncPgConnection,
    owner: &str,
    seqs: &[i64],
    retry_at: DateTime<Utc>,
    error: &str,
) -> Result<(), StoreError> {
    let error: String = error.chars().take(crate::sync_state::MAX_ERROR_CHARS).collect();
    sql_query(
        "UPDATE audit_forward_queue SET lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = $3, \
         last_error = $4 WHERE seq = ANY($1) AND lease_owner = $2",
    )
    .bind::<Array<BigInt>, _>(seqs)
    .bind::<Text, _>(owner)
    .bind::<Timestamptz, _>(retry_at)
    .bind::<Text, _>(&error)
    .execute(conn)
    .await?;
    Ok(())
}

/// How many entries wait to be forwarded, and when the oldest was recorded.
pub async fn forward_backlog(conn: &mut AsyncPgConnection) -> Result<(i64, Option<DateTime<Utc>>), StoreError> {
    #[derive(QueryableByName)]
    struct Backlog {
        #[diesel(sql_type = BigInt)]
        n: i64,
        #[diesel(sql_type = Nullable<Timestamptz>)]
        oldest: Option<DateTime<Utc>>,
    }
    let rows: Vec<Backlog> = sql_query(
        "SELECT count(*) AS n, min(e.occurred_at) AS oldest FROM audit_forward_queue q JOIN audit_events e USING (seq)",
    )
    .load(conn)
    .await?;
    Ok(rows.into_iter().next().map_or((0, None), |b| (b.n, b.oldest)))
}
