//! Calendars of connected accounts: discovery upserts, listing, write modes.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::dsl::{case_when, now};
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use juy_crypto::{Aad, DataKey};
use juy_domain::{AccountId, AccountStatus, Calendar, CalendarId, CalendarMode, Provider, SyncStatus, UserId};
use uuid::Uuid;

use crate::StoreError;
use crate::schema::{calendars as c, connected_accounts as a};

const TABLE: &str = "calendars";

/// A calendar as a provider lists it, to insert or refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCalendar {
    /// The account it belongs to.
    pub account_id: AccountId,
    /// Where it lives.
    pub provider: Provider,
    /// The provider's id of it; with the account, what identifies it.
    pub provider_calendar_id: String,
    /// Its name (stored encrypted).
    pub name: String,
    /// Its colour as `#rrggbb`.
    pub color: Option<String>,
    /// Its IANA time zone.
    pub time_zone: Option<String>,
    /// Whether it is the account's main calendar.
    pub is_primary: bool,
    /// Whether the provider lets the account write to it.
    pub can_write: bool,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = c)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct CalendarRow {
    user_id: String,
    id: Uuid,
    account_id: Uuid,
    provider: String,
    provider_calendar_id: String,
    name_enc: Vec<u8>,
    color: Option<String>,
    time_zone: Option<String>,
    is_primary: bool,
    can_write: bool,
    mode: String,
    sync_status: String,
    last_synced_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
}

impl CalendarRow {
    fn decode(self, key: &DataKey) -> Result<Calendar, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("calendar {}: {what}", self.id));
        let name = key
            .open_string(&self.name_enc, &name_aad(&self.user_id, self.id))
            .map_err(|_| corrupt("name could not be decrypted"))?;
        Ok(Calendar {
            id: CalendarId(self.id),
            user_id: UserId::new(self.user_id.clone()).map_err(|_| corrupt("bad user id"))?,
            account_id: AccountId(self.account_id),
            provider: self.provider.parse().map_err(|_| corrupt("unknown provider"))?,
            mode: self.mode.parse().map_err(|_| corrupt("unknown mode"))?,
            sync_status: self.sync_status.parse().map_err(|_| corrupt("unknown sync status"))?,
            provider_calendar_id: self.provider_calendar_id,
            name,
            color: self.color,
            time_zone: self.time_zone,
            is_primary: self.is_primary,
            can_write: self.can_write,
            last_synced_at: self.last_synced_at,
            last_error: self.last_error,
        })
    }
}

fn name_aad(user_id: &str, id: Uuid) -> Aad {
    Aad::new(TABLE, "name_enc", &[user_id, &id.to_string()])
}

#[derive(Insertable)]
#[diesel(table_name = c)]
struct CalendarInsert<'a> {
    user_id: &'a str,
    id: Uuid,
    account_id: Uuid,
    provider: &'static str,
    provider_calendar_id: &'a str,
    name_enc: Vec<u8>,
    color: Option<&'a str>,
    time_zone: Option<&'a str>,
    is_primary: bool,
    can_write: bool,
}

/// Inserts or refreshes `user`'s calendars in one statement and returns them
/// as stored, in the order given (a calendar listed twice counts once, the
/// last listing winning).
///
/// A refreshed calendar keeps its id and its mode, except that a calendar no
/// longer writable falls back to read-only. Every account must be `user`'s,
/// else [`StoreError::NotFound`] and nothing changes.
pub async fn upsert_calendars(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    user: &UserId,
    calendars: &[NewCalendar],
) -> Result<Vec<Calendar>, StoreError> {
    if calendars.is_empty() {
        return Ok(Vec::new());
    }
    // Later listings of the same calendar replace earlier ones: one statement
    // may not update a row twice.
    let mut order: Vec<(AccountId, &str)> = Vec::new();
    let mut latest: HashMap<(AccountId, &str), &NewCalendar> = HashMap::new();
    for calendar in calendars {
        let natural = (calendar.account_id, calendar.provider_calendar_id.as_str());
        if latest.insert(natural, calendar).is_none() {
            order.push(natural);
        }
    }
    conn.transaction(async |conn| {
        check_accounts_owned(conn, user, order.iter().map(|(account, _)| *account)).await?;
        let mut stored: HashMap<(AccountId, String), Calendar> = HashMap::new();
        let mut pending: Vec<&NewCalendar> = order
            .iter()
            .filter_map(|natural| latest.get(natural).copied())
            .collect();
        // Ciphertexts are bound to the row id, so existing rows keep theirs and
        // names are sealed for it; rows whose id changed under us (a concurrent
        // insert) are left alone by the statement and sealed again.
        for _ in 0..3 {
            if pending.is_empty() {
                break;
            }
            let ids = existing_calendar_ids(conn, user, &pending).await?;
            let rows: Vec<CalendarInsert<'_>> = pending
                .iter()
                .map(|calendar| {
                    let id = ids
                        .get(&(calendar.account_id.0, calendar.provider_calendar_id.clone()))
                        .copied()
                        .unwrap_or_else(|| CalendarId::new().0);
                    CalendarInsert {
                        user_id: user.as_str(),
                        id,
                        account_id: calendar.account_id.0,
                        provider: calendar.provider.as_str(),
                        provider_calendar_id: &calendar.provider_calendar_id,
                        name_enc: key.seal_str(&calendar.name, &name_aad(user.as_str(), id)),
                        color: calendar.color.as_deref(),
                        time_zone: calendar.time_zone.as_deref(),
                        is_primary: calendar.is_primary,
                        can_write: calendar.can_write,
                    }
                })
                .collect();
            let upsert = diesel::insert_into(c::table)
                .values(&rows)
                .on_conflict((c::user_id, c::account_id, c::provider_calendar_id))
                .do_update()
                .set((
                    c::provider.eq(excluded(c::provider)),
                    c::name_enc.eq(excluded(c::name_enc)),
                    c::color.eq(excluded(c::color)),
                    c::time_zone.eq(excluded(c::time_zone)),
                    c::is_primary.eq(excluded(c::is_primary)),
                    c::can_write.eq(excluded(c::can_write)),
                    c::mode.eq(case_when(excluded(c::can_write), c::mode).otherwise(CalendarMode::ReadOnly.as_str())),
                    c::updated_at.eq(now),
                ));
            // `ON CONFLICT … DO UPDATE … WHERE`: only a row that kept its id is updated.
            let returned: Vec<CalendarRow> =
                diesel::query_dsl::methods::FilterDsl::filter(upsert, c::id.eq(excluded(c::id)))
                    .returning(CalendarRow::as_returning())
                    .get_results(conn)
                    .await?;
            for row in returned {
                let calendar = row.decode(key)?;
                stored.insert((calendar.account_id, calendar.provider_calendar_id.clone()), calendar);
            }
            pending
                .retain(|calendar| !stored.contains_key(&(calendar.account_id, calendar.provider_calendar_id.clone())));
        }
        if !pending.is_empty() {
            return Err(StoreError::Database("calendars changed concurrently; try again".into()));
        }
        Ok(order
            .iter()
            .filter_map(|(account, provider_id)| stored.remove(&(*account, (*provider_id).to_owned())))
            .collect())
    })
    .await
}

async fn check_accounts_owned(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    accounts: impl Iterator<Item = AccountId>,
) -> Result<(), StoreError> {
    let mut wanted: Vec<Uuid> = accounts.map(|account| account.0).collect();
    wanted.sort_unstable();
    wanted.dedup();
    // A revoked account takes no calendars (a sync that read the calendar list
    // before a revocation must not bring purged calendars back). The key-share
    // lock holds the account until the calendars are written, and is taken
    // before them: the order revocation uses.
    let found: Vec<Uuid> = a::table
        .filter(a::user_id.eq(user.as_str()))
        .filter(a::id.eq_any(&wanted))
        .filter(a::status.ne(AccountStatus::Revoked.as_str()))
        .select(a::id)
        .for_key_share()
        .load(conn)
        .await?;
    match wanted.into_iter().find(|id| !found.contains(id)) {
        Some(missing) => Err(StoreError::NotFound {
            what: "account",
            id: missing.to_string(),
        }),
        None => Ok(()),
    }
}

async fn existing_calendar_ids(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    calendars: &[&NewCalendar],
) -> Result<HashMap<(Uuid, String), Uuid>, StoreError> {
    let accounts: Vec<Uuid> = calendars.iter().map(|calendar| calendar.account_id.0).collect();
    let provider_ids: Vec<&str> = calendars
        .iter()
        .map(|calendar| calendar.provider_calendar_id.as_str())
        .collect();
    // The two ANY filters may also match pairs not asked for; the map lookup ignores them.
    let rows: Vec<(Uuid, String, Uuid)> = c::table
        .filter(c::user_id.eq(user.as_str()))
        .filter(c::account_id.eq_any(&accounts))
        .filter(c::provider_calendar_id.eq_any(&provider_ids))
        .select((c::account_id, c::provider_calendar_id, c::id))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(account, provider_id, id)| ((account, provider_id), id))
        .collect())
}

/// `user`'s calendars, of one account or all, ordered by (account, primary first, id).
pub async fn list_calendars(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    user: &UserId,
    account: Option<AccountId>,
) -> Result<Vec<Calendar>, StoreError> {
    let mut query = c::table
        .filter(c::user_id.eq(user.as_str().to_owned()))
        .order((c::account_id, c::is_primary.desc(), c::id))
        .select(CalendarRow::as_select())
        .into_boxed();
    if let Some(account) = account {
        query = query.filter(c::account_id.eq(account.0));
    }
    let rows: Vec<CalendarRow> = query.load(conn).await?;
    rows.into_iter().map(|row| row.decode(key)).collect()
}

/// Sets the write mode of some of `user`'s calendars in one transaction and
/// returns them, ordered as [`list_calendars`] orders.
///
/// Nothing changes if any id is not `user`'s ([`StoreError::NotFound`]) or if
/// write mode is asked for a calendar the provider does not let us write to
/// ([`StoreError::CalendarNotWritable`]).
pub async fn set_calendar_modes(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    user: &UserId,
    modes: &[(CalendarId, CalendarMode)],
) -> Result<Vec<Calendar>, StoreError> {
    conn.transaction(async |conn| apply_calendar_modes(conn, key, user, modes).await)
        .await
}

/// [`set_calendar_modes`] inside the caller's transaction.
pub(crate) async fn apply_calendar_modes(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    user: &UserId,
    modes: &[(CalendarId, CalendarMode)],
) -> Result<Vec<Calendar>, StoreError> {
    if modes.is_empty() {
        return Ok(Vec::new());
    }
    let mut wanted: HashMap<Uuid, CalendarMode> = HashMap::new();
    let mut ids: Vec<Uuid> = Vec::new();
    for (id, mode) in modes {
        if wanted.insert(id.0, *mode).is_none() {
            ids.push(id.0);
        }
    }
    let writable: HashMap<Uuid, bool> = c::table
        .filter(c::user_id.eq(user.as_str()))
        .filter(c::id.eq_any(&ids))
        .select((c::id, c::can_write))
        .for_update()
        .load::<(Uuid, bool)>(conn)
        .await?
        .into_iter()
        .collect();
    for id in &ids {
        match writable.get(id) {
            None => {
                return Err(StoreError::NotFound {
                    what: "calendar",
                    id: id.to_string(),
                });
            }
            Some(false) if wanted.get(id) == Some(&CalendarMode::Write) => {
                return Err(StoreError::CalendarNotWritable {
                    calendar_id: CalendarId(*id),
                });
            }
            Some(_) => {}
        }
    }
    let write_ids: Vec<Uuid> = ids
        .iter()
        .copied()
        .filter(|id| wanted.get(id) == Some(&CalendarMode::Write))
        .collect();
    let mut rows: Vec<CalendarRow> =
        diesel::update(c::table.filter(c::user_id.eq(user.as_str())).filter(c::id.eq_any(&ids)))
            .set((
                c::mode.eq(case_when(
                    c::id.eq_any(&write_ids),
                    CalendarMode::Write.as_str().into_sql::<Text>(),
                )
                .otherwise(CalendarMode::ReadOnly.as_str().into_sql::<Text>())),
                c::updated_at.eq(now),
            ))
            .returning(CalendarRow::as_returning())
            .get_results(conn)
            .await?;
    rows.sort_by_key(|row| (row.account_id, !row.is_primary, row.id));
    rows.into_iter().map(|row| row.decode(key)).collect()
}

/// How current one calendar's synced data is, for users' and admins' listings:
/// the outcome of its last run and when the next one comes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncHealth {
    /// Its owner.
    pub user_id: UserId,
    /// The calendar.
    pub calendar_id: CalendarId,
    /// Its account.
    pub account_id: AccountId,
    /// Whether it is the account's main calendar.
    pub is_primary: bool,
    /// How its last run went.
    pub sync_status: SyncStatus,
    /// When a run last succeeded.
    pub last_synced_at: Option<DateTime<Utc>>,
    /// Why its last run failed, if it did.
    pub last_error: Option<String>,
    /// When its next run is due (one never synced is due since it was
    /// created); `None` while parked because its account cannot sync.
    /// While leased, this is the lease's expiry.
    pub next_sync_at: Option<DateTime<Utc>>,
    /// Until when a worker holds it; an expiry in the past is a dead worker's.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// When its push channel expires; `None` without one (push channels are
    /// not stored yet, so always `None` for now).
    pub push_channel_expires_at: Option<DateTime<Utc>>,
}

#[derive(QueryableByName)]
struct SyncHealthRow {
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    account_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    is_primary: bool,
    #[diesel(sql_type = Text)]
    sync_status: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    last_synced_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    next_sync_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    lease_expires_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    push_expires_at: Option<DateTime<Utc>>,
}

impl SyncHealthRow {
    fn decode(self) -> Result<SyncHealth, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("calendar {}: {what}", self.id));
        Ok(SyncHealth {
            user_id: UserId::new(self.user_id.clone()).map_err(|_| corrupt("bad user id"))?,
            calendar_id: CalendarId(self.id),
            account_id: AccountId(self.account_id),
            is_primary: self.is_primary,
            sync_status: self.sync_status.parse().map_err(|_| corrupt("unknown sync status"))?,
            last_synced_at: self.last_synced_at,
            last_error: self.last_error,
            next_sync_at: self.next_sync_at,
            lease_expires_at: self.lease_expires_at,
            push_channel_expires_at: self.push_expires_at,
        })
    }
}

/// The columns of [`SyncHealthRow`]. A parked calendar's `'infinity'` (which
/// chrono cannot hold) becomes NULL; a never-synced one's NULL, its creation.
const SYNC_HEALTH_COLUMNS: &str = "\
    user_id, id, account_id, is_primary, sync_status, last_synced_at, last_error, \
    CASE WHEN next_sync_at IS NULL THEN created_at \
         WHEN isfinite(next_sync_at) THEN next_sync_at END AS next_sync_at, \
    lease_expires_at, \
    (SELECT p.expires_at FROM push_channels p WHERE p.user_id = calendars.user_id AND p.calendar_id = calendars.id) \
        AS push_expires_at";

/// The sync health of `user`'s calendars, of one account or all, ordered as
/// [`list_calendars`] orders.
pub async fn list_sync_health(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    account: Option<AccountId>,
) -> Result<Vec<SyncHealth>, StoreError> {
    let rows: Vec<SyncHealthRow> = diesel::sql_query(format!(
        "SELECT {SYNC_HEALTH_COLUMNS} FROM calendars \
         WHERE user_id = $1 AND ($2::uuid IS NULL OR account_id = $2) \
         ORDER BY account_id, is_primary DESC, id"
    ))
    .bind::<Text, _>(user.as_str())
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Uuid>, _>(account.map(|account| account.0))
    .load(conn)
    .await?;
    rows.into_iter().map(SyncHealthRow::decode).collect()
}

/// The sync health of the calendars of some accounts of any users (an admin
/// page), in one statement, ordered by (user, account, primary first, id).
pub async fn sync_health_of_accounts(
    conn: &mut AsyncPgConnection,
    accounts: &[(UserId, AccountId)],
) -> Result<Vec<SyncHealth>, StoreError> {
    if accounts.is_empty() {
        return Ok(Vec::new());
    }
    let users: Vec<&str> = accounts.iter().map(|(user, _)| user.as_str()).collect();
    let ids: Vec<Uuid> = accounts.iter().map(|(_, account)| account.0).collect();
    let rows: Vec<SyncHealthRow> = diesel::sql_query(format!(
        "SELECT {SYNC_HEALTH_COLUMNS} FROM calendars \
         WHERE (user_id, account_id) IN (SELECT * FROM unnest($1::text[], $2::uuid[])) \
         ORDER BY user_id, account_id, is_primary DESC, id"
    ))
    .bind::<diesel::sql_types::Array<Text>, _>(&users)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(&ids)
    .load(conn)
    .await?;
    rows.into_iter().map(SyncHealthRow::decode).collect()
}
