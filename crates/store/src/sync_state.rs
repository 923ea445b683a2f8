//! Sync jobs and leases: which calendar is due, which worker syncs it now,
//! and what a sync run leaves behind (cursor, status, next run).
//!
//! Workers of any number of replicas lease due calendars with
//! `FOR UPDATE SKIP LOCKED`, so a calendar is leased to one worker at a time;
//! a dead worker's lease expires and another worker takes the calendar over.
//! Every write a lease holder makes is fenced: it names the owner *and* the
//! expiry it was granted, so a worker whose lease expired and was taken over
//! changes nothing (its calls return `false`). Owners must be unique per
//! worker (e.g. replica id and worker number), and replicas' clocks must agree
//! to well within a lease's length.
//!
//! `next_sync_at` is NULL for a calendar never synced (due at once, first);
//! while a calendar is leased it equals the lease's expiry, so the calendar
//! falls due again exactly when its lease runs out; a calendar whose account
//! can no longer sync is parked at `'infinity'` ([`cancel_account_leases`])
//! until the account is linked again.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use juy_domain::{AccountId, AccountStatus, CalendarId, Provider, SyncStatus, UserId};
use uuid::Uuid;

use crate::StoreError;
use crate::schema::{calendars as c, connected_accounts as a};

/// Account statuses whose calendars are synced; `reauth_required` and
/// `revoked` accounts' calendars are never leased.
const SYNCABLE: [AccountStatus; 3] = [AccountStatus::Pending, AccountStatus::Active, AccountStatus::Error];

/// The most characters of a failure's reason kept in `last_error`.
pub const MAX_ERROR_CHARS: usize = 500;

pub(crate) fn syncable() -> Vec<&'static str> {
    SYNCABLE.iter().map(|status| status.as_str()).collect()
}

/// A calendar leased to one worker for one sync run, with what the run needs
/// to start. `owner` and `expires_at` together are the fencing token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The worker holding it.
    pub owner: String,
    /// Until when it is held; [`renew`] moves it on.
    pub expires_at: DateTime<Utc>,
    /// The calendar's owner.
    pub user_id: UserId,
    /// The calendar.
    pub calendar_id: CalendarId,
    /// Its account.
    pub account_id: AccountId,
    /// Where it lives.
    pub provider: Provider,
    /// The provider's id of it.
    pub provider_calendar_id: String,
    /// The account's CalDAV server, for CalDAV accounts.
    pub server_url: Option<String>,
    /// Where the last run stopped (sync token, delta link, CalDAV token or a
    /// paging checkpoint; its encoding is the sync engine's); `None` = from scratch.
    pub sync_cursor: Option<String>,
    /// How many runs in a row failed before this one (for backoff).
    pub consecutive_failures: i32,
    /// The calendar's IANA zone, when known.
    pub time_zone: Option<String>,
    /// When the calendar last synced successfully.
    pub last_synced_at: Option<DateTime<Utc>>,
    /// The account's id at the provider (the email address for Google and Microsoft).
    pub account_external_id: String,
}

#[derive(QueryableByName)]
struct LeaseRow {
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    account_id: Uuid,
    #[diesel(sql_type = Text)]
    provider: String,
    #[diesel(sql_type = Text)]
    provider_calendar_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    sync_cursor: Option<String>,
    #[diesel(sql_type = Integer)]
    consecutive_failures: i32,
    #[diesel(sql_type = Timestamptz)]
    lease_expires_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Text>)]
    server_url: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    time_zone: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_synced_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Text)]
    external_account_id: String,
}

impl LeaseRow {
    fn decode(self, owner: &str) -> Result<Lease, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("calendar {}: {what}", self.id));
        Ok(Lease {
            owner: owner.to_owned(),
            expires_at: self.lease_expires_at,
            user_id: UserId::new(self.user_id.clone()).map_err(|_| corrupt("bad user id"))?,
            calendar_id: CalendarId(self.id),
            account_id: AccountId(self.account_id),
            provider: self.provider.parse().map_err(|_| corrupt("unknown provider"))?,
            provider_calendar_id: self.provider_calendar_id,
            server_url: self.server_url,
            sync_cursor: self.sync_cursor,
            consecutive_failures: self.consecutive_failures,
            time_zone: self.time_zone,
            last_synced_at: self.last_synced_at,
            account_external_id: self.external_account_id,
        })
    }
}

#[derive(QueryableByName)]
struct Expiry {
    #[diesel(sql_type = Timestamptz)]
    lease_expires_at: DateTime<Utc>,
}

/// `$1` now, `$2` owner, `$3` the new expiry, `$4` limit, `$5` syncable account statuses.
///
/// The CTE is materialised so the locking subquery runs exactly once (a
/// rescanned `LIMIT … SKIP LOCKED` subquery could yield other rows). A row
/// leased by a concurrent statement is either skipped (still locked) or
/// re-checked on its new version, whose lease is live and `next_sync_at` in
/// the future, so it is not leased twice.
const LEASE_DUE: &str = "\
WITH due AS MATERIALIZED (
    SELECT c.user_id, c.id, a.server_url, a.external_account_id
    FROM calendars c
    JOIN connected_accounts a ON a.user_id = c.user_id AND a.id = c.account_id
    WHERE coalesce(c.next_sync_at, '-infinity'::timestamptz) <= $1
      AND (c.lease_expires_at IS NULL OR c.lease_expires_at <= $1)
      AND a.status = ANY($5)
    ORDER BY coalesce(c.next_sync_at, '-infinity'::timestamptz)
    LIMIT $4
    FOR UPDATE OF c SKIP LOCKED
)
UPDATE calendars c
SET lease_owner = $2, lease_expires_at = $3, next_sync_at = $3
FROM due
WHERE c.user_id = due.user_id AND c.id = due.id
RETURNING c.user_id, c.id, c.account_id, c.provider, c.provider_calendar_id, c.sync_cursor,
          c.consecutive_failures, c.lease_expires_at, due.server_url, c.time_zone, c.last_synced_at, due.external_account_id";

/// Leases up to `limit` due calendars to `owner` until `now + lease_for`, in
/// one statement, the longest overdue first (never-synced ones before all).
///
/// Due: `next_sync_at` is NULL or not after `now`, no live lease (an expired
/// one is taken over), and the account is pending, active or in error — never
/// revoked or awaiting re-authorisation. Calendars locked by a concurrent
/// leaser are skipped, not waited for.
pub async fn lease_due(
    conn: &mut AsyncPgConnection,
    owner: &str,
    now: DateTime<Utc>,
    lease_for: Duration,
    limit: i64,
) -> Result<Vec<Lease>, StoreError> {
    if owner.is_empty() {
        return Err(StoreError::InvalidInput("a lease owner must not be empty".into()));
    }
    if limit < 1 {
        return Err(StoreError::InvalidInput("limit must be at least 1".into()));
    }
    let expires_at = lease_expiry(now, lease_for)?;
    let rows: Vec<LeaseRow> = diesel::sql_query(LEASE_DUE)
        .bind::<Timestamptz, _>(now)
        .bind::<Text, _>(owner)
        .bind::<Timestamptz, _>(expires_at)
        .bind::<BigInt, _>(limit)
        .bind::<Array<Text>, _>(syncable())
        .load(conn)
        .await?;
    rows.into_iter().map(|row| row.decode(owner)).collect()
}

fn lease_expiry(now: DateTime<Utc>, lease_for: Duration) -> Result<DateTime<Utc>, StoreError> {
    if lease_for <= Duration::zero() {
        return Err(StoreError::InvalidInput("a lease must last longer than zero".into()));
    }
    now.checked_add_signed(lease_for)
        .ok_or_else(|| StoreError::InvalidInput("now + lease_for is out of range".into()))
}

/// The fence every lease holder's write carries: `$1` user, `$2` calendar,
/// `$3` owner, `$4` the expiry the lease was granted.
const FENCE: &str = "user_id = $1 AND id = $2 AND lease_owner = $3 AND lease_expires_at = $4";

/// Extends `lease` to `now + lease_for` (never shortening it) and updates its
/// expiry; `false` if it was lost (taken over after expiring, or cancelled),
/// and then the worker must stop. A lease that expired but was not taken
/// over is renewed: nobody else has written meanwhile.
pub async fn renew(
    conn: &mut AsyncPgConnection,
    lease: &mut Lease,
    now: DateTime<Utc>,
    lease_for: Duration,
) -> Result<bool, StoreError> {
    let wanted = lease_expiry(now, lease_for)?;
    // `next_sync_at` follows the expiry unless a sync was asked for meanwhile.
    let renewed: Option<Expiry> = diesel::sql_query(format!(
        "UPDATE calendars \
         SET lease_expires_at = greatest(lease_expires_at, $5), \
             next_sync_at = CASE WHEN next_sync_at = lease_expires_at \
                            THEN greatest(lease_expires_at, $5) ELSE next_sync_at END \
         WHERE {FENCE} RETURNING lease_expires_at"
    ))
    .bind::<Text, _>(lease.user_id.as_str())
    .bind::<diesel::sql_types::Uuid, _>(lease.calendar_id.0)
    .bind::<Text, _>(&lease.owner)
    .bind::<Timestamptz, _>(lease.expires_at)
    .bind::<Timestamptz, _>(wanted)
    .get_result(conn)
    .await
    .optional()?;
    Ok(match renewed {
        Some(expiry) => {
            lease.expires_at = expiry.lease_expires_at;
            true
        }
        None => false,
    })
}

/// Stores a paging checkpoint (or clears the cursor, e.g. when a full resync
/// starts) while holding `lease`; `false` if the lease was lost, and nothing
/// changed.
///
/// Call it first in the transaction that writes the page's events and roll
/// back on `false`: it locks the calendar row, so from then on no other
/// worker can take the calendar over before the page commits.
pub async fn checkpoint(conn: &mut AsyncPgConnection, lease: &Lease, cursor: Option<&str>) -> Result<bool, StoreError> {
    let updated = diesel::sql_query(format!("UPDATE calendars SET sync_cursor = $5 WHERE {FENCE}"))
        .bind::<Text, _>(lease.user_id.as_str())
        .bind::<diesel::sql_types::Uuid, _>(lease.calendar_id.0)
        .bind::<Text, _>(&lease.owner)
        .bind::<Timestamptz, _>(lease.expires_at)
        .bind::<Nullable<Text>, _>(cursor)
        .execute(conn)
        .await?;
    Ok(updated == 1)
}

/// Ends a successful run: the calendar's cursor becomes exactly `new_cursor`
/// (`None` clears it), its status `ok`, `last_synced_at` `now`, failures 0,
/// no last error, no lease, next run at `next_sync_at` — or sooner, if a sync
/// was asked for during the run ([`schedule_now`]). Its account's
/// `last_sync_at` moves to `now` and a `pending` account becomes `active`.
/// `false` if the lease was lost, and nothing changed.
///
/// It locks the account row before the calendar row, the order revocation
/// uses, so do not call it in a transaction that has already written the
/// calendar (e.g. after [`checkpoint`]): that could deadlock with a revocation.
pub async fn release_success(
    conn: &mut AsyncPgConnection,
    lease: &Lease,
    new_cursor: Option<&str>,
    next_sync_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    conn.transaction(async |conn| {
        let account: Option<Uuid> = a::table
            .filter(a::user_id.eq(lease.user_id.as_str()))
            .filter(a::id.eq(lease.account_id.0))
            .select(a::id)
            .for_no_key_update()
            .first(conn)
            .await
            .optional()?;
        if account.is_none() {
            return Ok(false);
        }
        // While leased, next_sync_at = lease_expires_at; a difference means a
        // sync was asked for during the run, and it is kept.
        let accounts = diesel::sql_query(format!(
            "WITH released AS ( \
                 UPDATE calendars \
                 SET sync_cursor = $5, sync_status = $6, last_synced_at = $7, consecutive_failures = 0, \
                     last_error = NULL, lease_owner = NULL, lease_expires_at = NULL, \
                     next_sync_at = CASE WHEN next_sync_at IS DISTINCT FROM lease_expires_at \
                                    THEN least(next_sync_at, $8) ELSE $8 END \
                 WHERE {FENCE} \
                 RETURNING user_id, account_id \
             ) \
             UPDATE connected_accounts a \
             SET last_sync_at = greatest(a.last_sync_at, $7), \
                 status = CASE WHEN a.status = $9 THEN $10 ELSE a.status END, \
                 updated_at = CASE WHEN a.status = $9 THEN now() ELSE a.updated_at END \
             FROM released \
             WHERE a.user_id = released.user_id AND a.id = released.account_id"
        ))
        .bind::<Text, _>(lease.user_id.as_str())
        .bind::<diesel::sql_types::Uuid, _>(lease.calendar_id.0)
        .bind::<Text, _>(&lease.owner)
        .bind::<Timestamptz, _>(lease.expires_at)
        .bind::<Nullable<Text>, _>(new_cursor)
        .bind::<Text, _>(SyncStatus::Ok.as_str())
        .bind::<Timestamptz, _>(now)
        .bind::<Timestamptz, _>(next_sync_at)
        .bind::<Text, _>(AccountStatus::Pending.as_str())
        .bind::<Text, _>(AccountStatus::Active.as_str())
        .execute(conn)
        .await?;
        // The account exists (it is locked above), so it was updated iff the calendar was released.
        Ok(accounts == 1)
    })
    .await
}

/// Ends a failed run: failures + 1, status `error`, `last_error` = `reason`
/// (a short, user-presentable text chosen by the caller, cut to
/// [`MAX_ERROR_CHARS`]), no lease, next run at `next_sync_at` (the caller's
/// backoff, which wins over a sync asked for during the run). The cursor
/// stays, so the next run resumes from the last checkpoint. `false` if the
/// lease was lost, and nothing changed.
pub async fn release_failure(
    conn: &mut AsyncPgConnection,
    lease: &Lease,
    reason: &str,
    next_sync_at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let reason: String = reason.chars().take(MAX_ERROR_CHARS).collect();
    let updated = diesel::sql_query(format!(
        "UPDATE calendars \
         SET consecutive_failures = consecutive_failures + 1, sync_status = $5, last_error = $6, \
             lease_owner = NULL, lease_expires_at = NULL, next_sync_at = $7 \
         WHERE {FENCE}"
    ))
    .bind::<Text, _>(lease.user_id.as_str())
    .bind::<diesel::sql_types::Uuid, _>(lease.calendar_id.0)
    .bind::<Text, _>(&lease.owner)
    .bind::<Timestamptz, _>(lease.expires_at)
    .bind::<Text, _>(SyncStatus::Error.as_str())
    .bind::<Text, _>(reason)
    .bind::<Timestamptz, _>(next_sync_at)
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// "Sync now": makes one of `user`'s calendars due at `now` (a calendar
/// being synced is synced again right after the current run). `Ok(false)` if
/// its account cannot sync (revoked or awaiting re-authorisation);
/// [`StoreError::NotFound`] if the calendar is not `user`'s.
pub async fn schedule_now(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    calendar: CalendarId,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    // NULL (never synced) is already due first; least() would lose that.
    let updated = diesel::sql_query(
        "UPDATE calendars c \
         SET next_sync_at = CASE WHEN c.next_sync_at IS NULL THEN NULL ELSE least(c.next_sync_at, $3) END \
         FROM connected_accounts a \
         WHERE c.user_id = $1 AND c.id = $2 \
           AND a.user_id = c.user_id AND a.id = c.account_id AND a.status = ANY($4)",
    )
    .bind::<Text, _>(user.as_str())
    .bind::<diesel::sql_types::Uuid, _>(calendar.0)
    .bind::<Timestamptz, _>(now)
    .bind::<Array<Text>, _>(syncable())
    .execute(conn)
    .await?;
    if updated == 1 {
        return Ok(true);
    }
    let exists: Option<Uuid> = c::table
        .filter(c::user_id.eq(user.as_str()))
        .filter(c::id.eq(calendar.0))
        .select(c::id)
        .first(conn)
        .await
        .optional()?;
    match exists {
        Some(_) => Ok(false),
        None => Err(StoreError::NotFound {
            what: "calendar",
            id: calendar.to_string(),
        }),
    }
}

/// Puts off every calendar of an account that is not being synced until at
/// least `until` (the provider throttles the account, so its other calendars
/// should not hit it either); parked calendars stay parked. Returns how many moved.
pub async fn defer_account(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    account: AccountId,
    until: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let deferred = diesel::sql_query(
        "UPDATE calendars \
         SET next_sync_at = greatest(coalesce(next_sync_at, '-infinity'::timestamptz), $3) \
         WHERE user_id = $1 AND account_id = $2 AND lease_owner IS NULL \
           AND coalesce(next_sync_at, '-infinity'::timestamptz) < $3",
    )
    .bind::<Text, _>(user.as_str())
    .bind::<diesel::sql_types::Uuid, _>(account.0)
    .bind::<Timestamptz, _>(until)
    .execute(conn)
    .await?;
    Ok(deferred as u64)
}

/// Cancels the leases of an account's calendars and parks them, for an
/// account that can no longer sync (awaiting re-authorisation): in-flight
/// runs lose their lease (their next fenced call returns `false`) and the
/// calendars are not leased again until the account is linked again
/// ([`crate::accounts::upsert_account`] with a syncable status makes them due
/// at once). [`crate::accounts::mark_reauth_required`] calls it; revoked
/// accounts' calendars are deleted instead. Returns how many calendars it parked.
pub async fn cancel_account_leases(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    account: AccountId,
) -> Result<u64, StoreError> {
    let parked = diesel::sql_query(
        "UPDATE calendars \
         SET lease_owner = NULL, lease_expires_at = NULL, next_sync_at = 'infinity' \
         WHERE user_id = $1 AND account_id = $2",
    )
    .bind::<Text, _>(user.as_str())
    .bind::<diesel::sql_types::Uuid, _>(account.0)
    .execute(conn)
    .await?;
    Ok(parked as u64)
}

/// Makes an account's parked calendars due at once (the account was linked again).
pub(crate) async fn resume_account(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    account: AccountId,
) -> Result<u64, StoreError> {
    let resumed = diesel::sql_query(
        "UPDATE calendars SET next_sync_at = NULL \
         WHERE user_id = $1 AND account_id = $2 AND next_sync_at = 'infinity'",
    )
    .bind::<Text, _>(user.as_str())
    .bind::<diesel::sql_types::Uuid, _>(account.0)
    .execute(conn)
    .await?;
    Ok(resumed as u64)
}

/// Whether an account in `status` has its calendars synced.
pub(crate) fn is_syncable(status: AccountStatus) -> bool {
    SYNCABLE.contains(&status)
}
