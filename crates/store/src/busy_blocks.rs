//! Busy blocks: each user's busy time merged ahead of reading
//! (`juy_availability::blocks`), so that free/busy reads a few hundred
//! blocks a user instead of every event.
//!
//! Blocks are a cache that is never trusted blindly:
//!
//! - Every change to a user's events and every change to which synced event
//!   is a meeting's copy leaves a row in `busy_dirty`, in the changing
//!   transaction itself: updates and deletions (whoever runs them: sync,
//!   expiry, erasure, a calendar's cascade) by triggers; inserts, which only
//!   the page upsert makes, by that statement itself (a trigger refuses an
//!   insert that did not mark; migration 000011 says why).
//! - [`rebuild_user`] recomputes a user's blocks from their events in one
//!   REPEATABLE READ snapshot and deletes exactly the dirty rows that snapshot
//!   saw; a change committed after it leaves its row, so the user stays
//!   dirty.
//! - [`read_blocks`] answers a user from blocks only when, in the same
//!   statement's snapshot, no dirty row exists and the blocks were built for
//!   the zone the user has now (all-day events are placed in it). Anyone
//!   else is answered from their events, as before, so an answer is never
//!   older than the data.
//!
//! Nothing here reads or writes a sealed column: blocks hold times, kinds
//! and event ids.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Bool, Bytea, Int2, Int8, Nullable, Text, Timestamptz};
use diesel::{QueryableByName, sql_query};
use diesel_async::{AnsiTransactionManager, AsyncPgConnection, RunQueryDsl, TransactionManager as _};
use juy_availability::blocks::{self, Block, BlockMember, day_start};
use juy_availability::{busy_kind, busy_span, owner_zone};
use juy_domain::UserId;

use crate::StoreError;
use crate::availability::{busy_events_all, calendar_health, settings_of};

/// The advisory lock key of a user's blocks: one rebuild at a time, and an
/// erasure waits for a rebuild in flight.
const LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended('juy.busy_blocks:' || $1, 0))";
const TRY_LOCK: &str = "SELECT pg_try_advisory_xact_lock(hashtextextended('juy.busy_blocks:' || $1, 0)) AS ok";

/// How a user's blocks stand for one read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlocksRead {
    /// Up to date: the blocks overlapping the range (members only for the
    /// user asked to be explained).
    Fresh(Vec<Block>),
    /// A change is waiting for a rebuild.
    Dirty,
    /// Never built, or built for another zone, and nothing waiting: the
    /// reader should [`mark_dirty`] them.
    Unbuilt,
}

#[derive(QueryableByName)]
struct ReadRow {
    /// The user's position in the list asked for, from 1.
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = Bool)]
    dirty: bool,
    /// The zone the blocks were built for; `None`: never built.
    #[diesel(sql_type = Nullable<Text>)]
    zone: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    start_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    end_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Int2>)]
    kind: Option<i16>,
    #[diesel(sql_type = Nullable<Bytea>)]
    members: Option<Vec<u8>>,
}

/// The blocks of `users` (each with the zone they are answered in now)
/// overlapping `[from, to)`, one answer per user in the order given; for
/// `explain` (a position in `users`) every block from the range's first UTC
/// midnight, with members (`juy_availability::blocks::members_overlapping`).
/// One statement, one snapshot: a user is `Fresh` only if no change to their
/// events is waiting and their blocks were built for that zone.
pub async fn read_blocks(
    conn: &mut AsyncPgConnection,
    users: &[(&UserId, &str)],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    explain: Option<usize>,
) -> Result<Vec<BlocksRead>, StoreError> {
    let names: Vec<UserId> = users.iter().map(|(u, _)| (*u).clone()).collect();
    let built = read_built_blocks(conn, &names, from, to, explain).await?;
    Ok(built
        .into_iter()
        .zip(users)
        .map(|(built, (_, zone))| built.for_zone(zone))
        .collect())
}

/// How a user's blocks stand, whatever zone they were built for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltBlocks {
    /// The zone the blocks were built for (`None`: never built).
    pub zone: Option<String>,
    /// `Fresh` if built and nothing is waiting, whatever the zone.
    pub read: BlocksRead,
}

impl BuiltBlocks {
    /// The answer for a user answered in `zone` now: blocks built for
    /// another zone count as unbuilt.
    pub fn for_zone(self, zone: &str) -> BlocksRead {
        match self.read {
            BlocksRead::Fresh(_) if self.zone.as_deref() != Some(zone) => BlocksRead::Unbuilt,
            read => read,
        }
    }
}

/// [`read_blocks`] before the zone check, which the caller makes with
/// [`BuiltBlocks::for_zone`], so that this read need not wait for the
/// users' settings and calendars: the query is sent when this is called and
/// the future does not hold the connection, so a free/busy answer pipelines
/// it with its other reads (`futures::try_join!`).
pub async fn read_built_blocks(
    conn: &AsyncPgConnection,
    users: &[UserId],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    explain: Option<usize>,
) -> Result<Vec<BuiltBlocks>, StoreError> {
    let mut conn = conn;
    let count = users.len();
    let names: Vec<String> = users.iter().map(|u| u.as_str().to_owned()).collect();
    let explain = explain.map_or(0, |i| i as i64 + 1);
    // The two halves of the lateral union are gated by one-time filters on
    // the user's position: other users' blocks are an index-only scan of the
    // primary key (which includes end and kind); only the explained user's
    // rows are fetched from the heap for their members, every block from the
    // range's first UTC midnight (a span is a member of the first block of
    // each day it overlaps, which may end before the range starts). No block
    // crosses a UTC midnight, so none overlapping the range starts earlier.
    let rows = sql_query(
        "SELECT u.n, d.dirty, s.zone, b.start_at, b.end_at, b.kind, b.members \
         FROM unnest($1::text[]) WITH ORDINALITY AS u(user_id, n) \
         LEFT JOIN busy_state s ON s.user_id = u.user_id \
         CROSS JOIN LATERAL (SELECT EXISTS (SELECT 1 FROM busy_dirty x WHERE x.user_id = u.user_id) AS dirty) d \
         LEFT JOIN LATERAL ( \
           SELECT b.start_at, b.end_at, b.kind, NULL::bytea AS members FROM busy_blocks b \
           WHERE u.n <> $5 AND NOT d.dirty AND s.zone IS NOT NULL AND b.user_id = u.user_id \
             AND b.start_at >= $4 AND b.start_at < $3 AND b.end_at > $2 \
           UNION ALL \
           SELECT b.start_at, b.end_at, b.kind, b.members FROM busy_blocks b \
           WHERE u.n = $5 AND NOT d.dirty AND s.zone IS NOT NULL AND b.user_id = u.user_id \
             AND b.start_at >= $4 AND b.start_at < $3 \
         ) b ON true \
         ORDER BY u.n, b.start_at",
    )
    .bind::<Array<Text>, _>(names)
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .bind::<Timestamptz, _>(day_start(from))
    .bind::<Int8, _>(explain)
    .load::<ReadRow>(&mut conn);
    {
        let mut answers: Vec<BuiltBlocks> = vec![
            BuiltBlocks {
                zone: None,
                read: BlocksRead::Unbuilt,
            };
            count
        ];
        for row in rows.await? {
            let answer = usize::try_from(row.n - 1)
                .ok()
                .and_then(|i| answers.get_mut(i))
                .ok_or_else(|| StoreError::Database(format!("busy blocks: no user at position {}", row.n)))?;
            if row.dirty {
                answer.read = BlocksRead::Dirty;
                continue;
            }
            let Some(zone) = row.zone else { continue };
            if !matches!(answer.read, BlocksRead::Fresh(_)) {
                answer.read = BlocksRead::Fresh(Vec::new());
                answer.zone = Some(zone);
            }
            let (Some(start), Some(end), Some(kind)) = (row.start_at, row.end_at, row.kind) else {
                continue; // Built and clean, with no block in the range.
            };
            let corrupt = || StoreError::Corrupt(format!("a busy block at {start} is not valid"));
            let kind = u8::try_from(kind)
                .ok()
                .and_then(blocks::kind_from_code)
                .ok_or_else(corrupt)?;
            let members = match row.members {
                Some(bytes) => blocks::unpack_members(&bytes).ok_or_else(corrupt)?,
                None => Vec::new(),
            };
            if let BlocksRead::Fresh(list) = &mut answer.read {
                list.push(Block {
                    start,
                    end,
                    kind,
                    members,
                });
            }
        }
        Ok(answers)
    }
}

/// Records that these users' blocks need building (users the reader found
/// unbuilt, or built for a zone they no longer have).
pub async fn mark_dirty(conn: &mut AsyncPgConnection, users: &[&UserId]) -> Result<(), StoreError> {
    if users.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = users.iter().map(|u| u.as_str()).collect();
    sql_query("INSERT INTO busy_dirty (user_id) SELECT unnest($1::text[])")
        .bind::<Array<Text>, _>(&names)
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(QueryableByName)]
struct DirtyUser {
    #[diesel(sql_type = Text)]
    user_id: String,
}

/// Users with changes waiting, oldest first, at most `limit`: those whose
/// last change is at least `settle` old (a sync still writing pages is left
/// to finish), or whose first waiting change is at least `max_wait` old
/// (however busy their syncs). Ages are measured on the database's clock.
pub async fn dirty_users(
    conn: &mut AsyncPgConnection,
    settle: std::time::Duration,
    max_wait: std::time::Duration,
    limit: i64,
) -> Result<Vec<UserId>, StoreError> {
    let rows: Vec<DirtyUser> = sql_query(
        "SELECT user_id FROM busy_dirty GROUP BY user_id \
         HAVING max(marked_at) <= clock_timestamp() - make_interval(secs => $1) \
             OR min(marked_at) <= clock_timestamp() - make_interval(secs => $2) \
         ORDER BY min(marked_at) LIMIT $3",
    )
    .bind::<diesel::sql_types::Double, _>(settle.as_secs_f64())
    .bind::<diesel::sql_types::Double, _>(max_wait.as_secs_f64())
    .bind::<BigInt, _>(limit.max(1))
    .load(conn)
    .await?;
    rows.into_iter()
        .map(|row| UserId::new(row.user_id).map_err(|_| StoreError::Corrupt("a stored user id is not valid".into())))
        .collect()
}

/// What one rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rebuilt {
    /// Busy events read.
    pub events: usize,
    /// Blocks written.
    pub blocks: usize,
    /// Waiting changes it accounted for.
    pub changes: usize,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    ok: bool,
}

#[derive(QueryableByName)]
struct DirtyId {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Rebuilds `user`'s blocks from their events, in one REPEATABLE READ
/// transaction, and clears the changes that snapshot saw. `None`: another
/// rebuild of the same user holds it (that one will do).
pub async fn rebuild_user(conn: &mut AsyncPgConnection, user: &UserId) -> Result<Option<Rebuilt>, StoreError> {
    AnsiTransactionManager::begin_transaction(conn).await?;
    let result = rebuild_in_transaction(conn, user).await;
    match &result {
        Ok(Some(_)) => AnsiTransactionManager::commit_transaction(conn).await?,
        _ => {
            // Nothing written, or a failure: a failed rollback leaves the
            // connection broken, and the pool drops it.
            let _ = AnsiTransactionManager::rollback_transaction(conn).await;
        }
    }
    result
}

async fn rebuild_in_transaction(conn: &mut AsyncPgConnection, user: &UserId) -> Result<Option<Rebuilt>, StoreError> {
    sql_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(conn)
        .await?;
    let locked: Locked = sql_query(TRY_LOCK)
        .bind::<Text, _>(user.as_str())
        .get_result(conn)
        .await?;
    if !locked.ok {
        return Ok(None);
    }
    let seen: Vec<DirtyId> = sql_query("SELECT id FROM busy_dirty WHERE user_id = $1")
        .bind::<Text, _>(user.as_str())
        .load(conn)
        .await?;
    let users = std::slice::from_ref(user);
    let calendars = calendar_health(conn, users).await?;
    let settings = settings_of(conn, users).await?.remove(user).unwrap_or_default();
    let zone = owner_zone(
        settings.time_zone.as_deref(),
        calendars.iter().map(|c| (c.is_primary, c.time_zone.as_deref())),
    );
    let events = busy_events_all(conn, user).await?;
    let spans: Vec<BlockMember> = events
        .iter()
        .filter_map(|event| {
            let kind = busy_kind(&event.facts)?;
            let (start, end) = busy_span(&event.facts, zone);
            Some(BlockMember {
                event: event.id,
                start,
                end,
                kind,
            })
        })
        .collect();
    let built = blocks::build_blocks(&spans);

    // A rebuild that committed between this snapshot and the lock makes
    // these writes fail (its rows are not visible here): it did the work.
    let cleared = sql_query("DELETE FROM busy_blocks WHERE user_id = $1")
        .bind::<Text, _>(user.as_str())
        .execute(conn)
        .await;
    if concurrent(&cleared) {
        return Ok(None);
    }
    cleared?;
    let starts: Vec<DateTime<Utc>> = built.iter().map(|b| b.start).collect();
    let ends: Vec<DateTime<Utc>> = built.iter().map(|b| b.end).collect();
    let kinds: Vec<i16> = built.iter().map(|b| i16::from(blocks::kind_code(b.kind))).collect();
    let members: Vec<Vec<u8>> = built.iter().map(|b| blocks::pack_members(&b.members)).collect();
    let inserted = sql_query(
        "INSERT INTO busy_blocks (user_id, start_at, end_at, kind, members) \
         SELECT $1, * FROM unnest($2::timestamptz[], $3::timestamptz[], $4::int2[], $5::bytea[])",
    )
    .bind::<Text, _>(user.as_str())
    .bind::<Array<Timestamptz>, _>(&starts)
    .bind::<Array<Timestamptz>, _>(&ends)
    .bind::<Array<Int2>, _>(&kinds)
    .bind::<Array<Bytea>, _>(&members)
    .execute(conn)
    .await;
    if concurrent(&inserted) {
        return Ok(None);
    }
    inserted?;
    let state = sql_query(
        "INSERT INTO busy_state (user_id, zone, built_at) VALUES ($1, $2, now()) \
         ON CONFLICT (user_id) DO UPDATE SET zone = excluded.zone, built_at = excluded.built_at",
    )
    .bind::<Text, _>(user.as_str())
    .bind::<Text, _>(zone.name())
    .execute(conn)
    .await;
    if concurrent(&state) {
        return Ok(None);
    }
    state?;
    let ids: Vec<i64> = seen.iter().map(|d| d.id).collect();
    let cleared = sql_query("DELETE FROM busy_dirty WHERE id = ANY($1)")
        .bind::<Array<BigInt>, _>(&ids)
        .execute(conn)
        .await;
    if concurrent(&cleared) {
        return Ok(None);
    }
    cleared?;
    Ok(Some(Rebuilt {
        events: spans.len(),
        blocks: built.len(),
        changes: ids.len(),
    }))
}

/// Whether a write failed because a concurrent rebuild committed the same rows.
fn concurrent<T>(result: &Result<T, diesel::result::Error>) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    matches!(
        result,
        Err(Error::DatabaseError(
            DatabaseErrorKind::SerializationFailure | DatabaseErrorKind::UniqueViolation,
            _
        ))
    )
}

/// Waits for a rebuild of `user` in flight, inside the caller's transaction
/// (the erasure takes it before deleting the user's rows, so a rebuild
/// cannot write blocks after them).
pub(crate) async fn lock_user(conn: &mut AsyncPgConnection, user: &str) -> Result<(), StoreError> {
    sql_query(LOCK).bind::<Text, _>(user).execute(conn).await?;
    Ok(())
}
