//! Connected accounts: linking, listing, credentials, and the admin listing.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::dsl::{now, sql};
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use juy_crypto::{Aad, DataKey};
use juy_domain::{AccountId, AccountStatus, ConnectedAccount, Provider, UserId};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::StoreError;
use crate::schema::{calendars as c, connected_accounts as a};

const TABLE: &str = "connected_accounts";

/// An account to link, or the new state of one already linked.
#[derive(Clone)]
pub struct NewAccount {
    /// Its owner.
    pub user_id: UserId,
    /// Where it lives.
    pub provider: Provider,
    /// The provider's stable id of the account; with the user and provider, what identifies it.
    pub external_account_id: String,
    /// What the user recognises it by (stored encrypted).
    pub display_name: Option<String>,
    /// Where it stands; `Revoked` drops the stored credentials.
    pub status: AccountStatus,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// The CalDAV server's URL, for CalDAV accounts.
    pub server_url: Option<String>,
    /// Serialised credentials (stored encrypted); `None` keeps those already stored.
    pub credentials: Option<Vec<u8>>,
}

impl std::fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAccount")
            .field("user_id", &self.user_id)
            .field("provider", &self.provider)
            .field("external_account_id", &self.external_account_id)
            .field("status", &self.status)
            .field("credentials", &self.credentials.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = a)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct AccountRow {
    user_id: String,
    id: Uuid,
    provider: String,
    external_account_id: String,
    display_name_enc: Option<Vec<u8>>,
    status: String,
    status_reason: Option<String>,
    scopes: Vec<Option<String>>,
    connected_at: DateTime<Utc>,
    last_sync_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
}

impl AccountRow {
    fn decode(self, key: &DataKey) -> Result<ConnectedAccount, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("account {}: {what}", self.id));
        let user_id = UserId::new(self.user_id.clone()).map_err(|_| corrupt("bad user id"))?;
        let display_name = match &self.display_name_enc {
            Some(sealed) => Some(
                key.open_string(sealed, &aad("display_name_enc", &self.user_id, self.id))
                    .map_err(|_| corrupt("display name could not be decrypted"))?,
            ),
            None => None,
        };
        Ok(ConnectedAccount {
            id: AccountId(self.id),
            provider: self.provider.parse().map_err(|_| corrupt("unknown provider"))?,
            status: self.status.parse().map_err(|_| corrupt("unknown status"))?,
            user_id,
            external_account_id: self.external_account_id,
            display_name,
            status_reason: self.status_reason,
            scopes: self.scopes.into_iter().flatten().collect(),
            connected_at: self.connected_at,
            last_sync_at: self.last_sync_at,
            last_error: self.last_error,
        })
    }
}

fn aad(column: &str, user_id: &str, id: Uuid) -> Aad {
    Aad::new(TABLE, column, &[user_id, &id.to_string()])
}

#[derive(AsChangeset)]
#[diesel(table_name = a)]
struct AccountChanges {
    // `Some(None)` sets NULL; an outer `None` leaves the column alone.
    display_name_enc: Option<Option<Vec<u8>>>,
    status: &'static str,
    scopes: Vec<String>,
    server_url: Option<Option<String>>,
    credentials_enc: Option<Option<Vec<u8>>>,
}

/// Links an account, or updates it when the user already linked the same
/// (provider, external account id); returns it as stored.
pub async fn upsert_account(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    account: &NewAccount,
) -> Result<ConnectedAccount, StoreError> {
    conn.transaction(async |conn| upsert_account_in_transaction(conn, key, account).await)
        .await
}

async fn upsert_account_in_transaction(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    account: &NewAccount,
) -> Result<ConnectedAccount, StoreError> {
    let user = account.user_id.as_str();
    let revoked = account.status == AccountStatus::Revoked;
    // Ciphertexts are bound to the row id, so an existing row keeps its id and
    // its values are sealed for that id. Two attempts cover losing an insert race.
    for _ in 0..2 {
        let existing: Option<Uuid> = a::table
            .filter(a::user_id.eq(user))
            .filter(a::provider.eq(account.provider.as_str()))
            .filter(a::external_account_id.eq(&account.external_account_id))
            .select(a::id)
            .for_update()
            .first(conn)
            .await
            .optional()?;
        let id = existing.unwrap_or_else(|| AccountId::new().0);
        let display_name_enc = account
            .display_name
            .as_ref()
            .map(|name| key.seal_str(name, &aad("display_name_enc", user, id)));
        let credentials_enc = match (&account.credentials, revoked) {
            (_, true) => Some(None),
            (Some(credentials), false) => Some(Some(key.seal(credentials, &aad("credentials_enc", user, id)))),
            (None, false) => None,
        };
        let changes = AccountChanges {
            display_name_enc: Some(display_name_enc),
            status: account.status.as_str(),
            scopes: account.scopes.clone(),
            server_url: Some(account.server_url.clone()),
            credentials_enc,
        };
        // A revoked account remembers when it was first revoked; any other status clears it.
        let revoked_at = sql::<Nullable<Timestamptz>>(if revoked { "coalesce(revoked_at, now())" } else { "NULL" });
        let row: Option<AccountRow> = if existing.is_some() {
            diesel::update(a::table.filter(a::user_id.eq(user)).filter(a::id.eq(id)))
                .set((
                    changes,
                    a::revoked_at.eq(revoked_at),
                    a::status_reason.eq(None::<String>),
                    a::updated_at.eq(now),
                ))
                .returning(AccountRow::as_returning())
                .get_result(conn)
                .await
                .optional()?
        } else {
            diesel::insert_into(a::table)
                .values((
                    a::user_id.eq(user),
                    a::id.eq(id),
                    a::provider.eq(account.provider.as_str()),
                    a::external_account_id.eq(&account.external_account_id),
                    a::display_name_enc.eq(changes.display_name_enc.flatten()),
                    a::status.eq(changes.status),
                    a::scopes.eq(&changes.scopes),
                    a::server_url.eq(&account.server_url),
                    a::credentials_enc.eq(changes.credentials_enc.flatten()),
                    a::revoked_at.eq(sql::<Nullable<Timestamptz>>(if revoked { "now()" } else { "NULL" })),
                ))
                .on_conflict_do_nothing()
                .returning(AccountRow::as_returning())
                .get_result(conn)
                .await
                .optional()?
        };
        if let Some(row) = row {
            if existing.is_some() {
                // Relinking wakes calendars parked while the account could not
                // sync; any other status parks them.
                if crate::sync_state::is_syncable(account.status) {
                    crate::sync_state::resume_account(conn, &account.user_id, AccountId(id)).await?;
                } else {
                    crate::sync_state::cancel_account_leases(conn, &account.user_id, AccountId(id)).await?;
                }
            }
            return row.decode(key);
        }
    }
    Err(StoreError::Database(
        "the account changed concurrently; try again".into(),
    ))
}

/// Every account of `user`, revoked ones included, ordered by (connected_at, id).
pub async fn list_accounts(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    user: &UserId,
) -> Result<Vec<ConnectedAccount>, StoreError> {
    let rows: Vec<AccountRow> = a::table
        .filter(a::user_id.eq(user.as_str()))
        .order((a::connected_at, a::id))
        .select(AccountRow::as_select())
        .load(conn)
        .await?;
    rows.into_iter().map(|row| row.decode(key)).collect()
}

/// One account of `user`, if it exists.
pub async fn get_account(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    user: &UserId,
    id: AccountId,
) -> Result<Option<ConnectedAccount>, StoreError> {
    let row: Option<AccountRow> = a::table
        .filter(a::user_id.eq(user.as_str()))
        .filter(a::id.eq(id.0))
        .select(AccountRow::as_select())
        .first(conn)
        .await
        .optional()?;
    row.map(|row| row.decode(key)).transpose()
}

/// The decrypted credentials of an account; `None` if it has none (or does not exist).
pub async fn load_credentials(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    user: &UserId,
    id: AccountId,
) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
    let sealed: Option<Option<Vec<u8>>> = a::table
        .filter(a::user_id.eq(user.as_str()))
        .filter(a::id.eq(id.0))
        .select(a::credentials_enc)
        .first(conn)
        .await
        .optional()?;
    let Some(sealed) = sealed.flatten() else {
        return Ok(None);
    };
    key.open(&sealed, &aad("credentials_enc", user.as_str(), id.0))
        .map(Some)
        .map_err(|_| StoreError::Corrupt(format!("account {id}: credentials could not be decrypted")))
}

/// One account as the admin listing shows it: no texts, nothing to decrypt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminAccountRow {
    /// Its owner.
    pub user_id: UserId,
    /// The account.
    pub account_id: AccountId,
    /// Where it lives.
    pub provider: Provider,
    /// Where it stands.
    pub status: AccountStatus,
    /// Why it stands there.
    pub status_reason: Option<String>,
    /// When it was linked.
    pub connected_at: DateTime<Utc>,
    /// When a sync last succeeded.
    pub last_sync_at: Option<DateTime<Utc>>,
    /// The last sync error.
    pub last_error: Option<String>,
    /// How many calendars it has.
    pub calendar_count: i64,
}

/// Which accounts the admin listing shows; `None` fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminAccountFilter {
    /// Only this user's accounts.
    pub user_id: Option<UserId>,
    /// Only accounts of this provider.
    pub provider: Option<Provider>,
    /// Only accounts in this status.
    pub status: Option<AccountStatus>,
}

/// Where a page of the admin listing ended: the last row's sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCursor {
    /// The last row's `connected_at`.
    pub connected_at: DateTime<Utc>,
    /// The last row's owner.
    pub user_id: UserId,
    /// The last row's account.
    pub account_id: AccountId,
}

impl AdminAccountRow {
    /// The cursor that continues the listing after this row.
    pub fn cursor(&self) -> AdminCursor {
        AdminCursor {
            connected_at: self.connected_at,
            user_id: self.user_id.clone(),
            account_id: self.account_id,
        }
    }
}

/// Accounts of all users for admins, ordered by (connected_at, user_id, id)
/// and paged by keyset: pass the previous page's last [`AdminCursor`] as `after`.
pub async fn admin_list_accounts(
    conn: &mut AsyncPgConnection,
    filter: &AdminAccountFilter,
    after: Option<AdminCursor>,
    limit: i64,
) -> Result<Vec<AdminAccountRow>, StoreError> {
    if limit < 1 {
        return Err(StoreError::InvalidInput("limit must be at least 1".into()));
    }
    let mut query = a::table
        .select((
            a::user_id,
            a::id,
            a::provider,
            a::status,
            a::status_reason,
            a::connected_at,
            a::last_sync_at,
            a::last_error,
        ))
        .order((a::connected_at, a::user_id, a::id))
        .limit(limit)
        .into_boxed();
    if let Some(user) = &filter.user_id {
        query = query.filter(a::user_id.eq(user.as_str().to_owned()));
    }
    if let Some(provider) = filter.provider {
        query = query.filter(a::provider.eq(provider.as_str()));
    }
    if let Some(status) = filter.status {
        query = query.filter(a::status.eq(status.as_str()));
    }
    if let Some(cursor) = after {
        let user = cursor.user_id.as_str().to_owned();
        query = query.filter(
            a::connected_at
                .gt(cursor.connected_at)
                .or(a::connected_at.eq(cursor.connected_at).and(
                    a::user_id
                        .gt(user.clone())
                        .or(a::user_id.eq(user).and(a::id.gt(cursor.account_id.0))),
                )),
        );
    }
    type Row = (
        String,
        Uuid,
        String,
        String,
        Option<String>,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        Option<String>,
    );
    let rows: Vec<Row> = query.load(conn).await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }

    // One grouped count for the whole page, matched back on (user_id, account_id).
    let user_ids: Vec<&str> = rows.iter().map(|row| row.0.as_str()).collect();
    let account_ids: Vec<Uuid> = rows.iter().map(|row| row.1).collect();
    let counts: Vec<(String, Uuid, i64)> = c::table
        .filter(c::user_id.eq_any(&user_ids))
        .filter(c::account_id.eq_any(&account_ids))
        .group_by((c::user_id, c::account_id))
        .select((c::user_id, c::account_id, diesel::dsl::count_star()))
        .load(conn)
        .await?;
    let counts: HashMap<(String, Uuid), i64> = counts
        .into_iter()
        .map(|(user, account, count)| ((user, account), count))
        .collect();

    rows.into_iter()
        .map(
            |(user_id, id, provider, status, status_reason, connected_at, last_sync_at, last_error)| {
                let corrupt = |what: &str| StoreError::Corrupt(format!("account {id}: {what}"));
                Ok(AdminAccountRow {
                    calendar_count: counts.get(&(user_id.clone(), id)).copied().unwrap_or(0),
                    user_id: UserId::new(user_id).map_err(|_| corrupt("bad user id"))?,
                    account_id: AccountId(id),
                    provider: provider.parse().map_err(|_| corrupt("unknown provider"))?,
                    status: status.parse().map_err(|_| corrupt("unknown status"))?,
                    status_reason,
                    connected_at,
                    last_sync_at,
                    last_error,
                })
            },
        )
        .collect()
}

/// An account's status and decrypted credentials.
pub struct AccountCredentials {
    /// Where the account stands.
    pub status: AccountStatus,
    /// The provider it lives at.
    pub provider: Provider,
    /// The CalDAV server's URL, for CalDAV accounts.
    pub server_url: Option<String>,
    /// The serialised credentials, if any are stored.
    pub credentials: Option<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for AccountCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountCredentials")
            .field("status", &self.status)
            .field("provider", &self.provider)
            .field("credentials", &self.credentials.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// Reads an account's status and credentials; with `for_update`, locks the
/// row until the surrounding transaction ends (the single-flight guard of a
/// token refresh across replicas). `None` if the account does not exist.
pub async fn read_credentials(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    user: &UserId,
    id: AccountId,
    for_update: bool,
) -> Result<Option<AccountCredentials>, StoreError> {
    let query = a::table
        .filter(a::user_id.eq(user.as_str()))
        .filter(a::id.eq(id.0))
        .select((a::status, a::provider, a::server_url, a::credentials_enc));
    type Row = (String, String, Option<String>, Option<Vec<u8>>);
    let row: Option<Row> = if for_update {
        query.for_update().first(conn).await.optional()?
    } else {
        query.first(conn).await.optional()?
    };
    let Some((status, provider, server_url, sealed)) = row else {
        return Ok(None);
    };
    let corrupt = |what: &str| StoreError::Corrupt(format!("account {id}: {what}"));
    let credentials = match sealed {
        Some(sealed) => Some(
            key.open(&sealed, &aad("credentials_enc", user.as_str(), id.0))
                .map_err(|_| corrupt("credentials could not be decrypted"))?,
        ),
        None => None,
    };
    Ok(Some(AccountCredentials {
        status: status.parse().map_err(|_| corrupt("unknown status"))?,
        provider: provider.parse().map_err(|_| corrupt("unknown provider"))?,
        server_url,
        credentials,
    }))
}

/// Replaces an account's credentials (a refreshed or rotated token), unless
/// the account was revoked or needs re-authorisation meanwhile; returns
/// whether it replaced them.
pub async fn replace_credentials(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    user: &UserId,
    id: AccountId,
    credentials: &[u8],
) -> Result<bool, StoreError> {
    let sealed = key.seal(credentials, &aad("credentials_enc", user.as_str(), id.0));
    let updated = diesel::update(
        a::table
            .filter(a::user_id.eq(user.as_str()))
            .filter(a::id.eq(id.0))
            .filter(a::status.ne_all([AccountStatus::Revoked.as_str(), AccountStatus::ReauthRequired.as_str()])),
    )
    .set((a::credentials_enc.eq(sealed), a::updated_at.eq(now)))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// Marks an account as needing the user to link it again (the provider
/// refused its grant): its credentials are dropped, `reason` is shown to the
/// user, and no work is done on it until it is linked again — its calendars'
/// sync leases are cancelled and the calendars parked
/// ([`crate::sync_state::cancel_account_leases`]). A revoked account stays revoked.
pub async fn mark_reauth_required(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    id: AccountId,
    reason: &str,
) -> Result<bool, StoreError> {
    conn.transaction(async |conn| {
        let updated = diesel::update(
            a::table
                .filter(a::user_id.eq(user.as_str()))
                .filter(a::id.eq(id.0))
                .filter(a::status.ne(AccountStatus::Revoked.as_str())),
        )
        .set((
            a::status.eq(AccountStatus::ReauthRequired.as_str()),
            a::status_reason.eq(reason),
            a::credentials_enc.eq(None::<Vec<u8>>),
            a::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
        if updated == 1 {
            crate::sync_state::cancel_account_leases(conn, user, id).await?;
        }
        Ok(updated == 1)
    })
    .await
}

/// What revoking an account removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked {
    /// Calendars deleted.
    pub calendars: u64,
    /// Synced events deleted.
    pub events: u64,
}

/// Revokes an account in one transaction: drops its credentials, marks it
/// revoked (remembering when) and purges everything synced from it (its
/// events and calendars). The row itself stays, for the user's and admins'
/// record. Revoking a revoked account changes nothing and succeeds.
pub async fn revoke_account(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    id: AccountId,
    reason: &str,
) -> Result<Revoked, StoreError> {
    use crate::schema::user_calendar_events as e;
    conn.transaction(async |conn| {
        let found: Option<Uuid> = a::table
            .filter(a::user_id.eq(user.as_str()))
            .filter(a::id.eq(id.0))
            .select(a::id)
            .for_update()
            .first(conn)
            .await
            .optional()?;
        if found.is_none() {
            return Err(StoreError::NotFound {
                what: "connection",
                id: id.to_string(),
            });
        }
        diesel::update(a::table.filter(a::user_id.eq(user.as_str())).filter(a::id.eq(id.0)))
            .set((
                a::status.eq(AccountStatus::Revoked.as_str()),
                a::status_reason.eq(reason),
                a::credentials_enc.eq(None::<Vec<u8>>),
                a::revoked_at.eq(sql::<Nullable<Timestamptz>>("coalesce(revoked_at, now())")),
                a::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
        let calendar_ids = c::table
            .filter(c::user_id.eq(user.as_str()))
            .filter(c::account_id.eq(id.0))
            .select(c::id);
        let events = diesel::delete(
            e::table
                .filter(e::user_id.eq(user.as_str()))
                .filter(e::calendar_id.eq_any(calendar_ids)),
        )
        .execute(conn)
        .await?;
        let calendars = diesel::delete(
            c::table
                .filter(c::user_id.eq(user.as_str()))
                .filter(c::account_id.eq(id.0)),
        )
        .execute(conn)
        .await?;
        Ok(Revoked {
            calendars: calendars as u64,
            events: events as u64,
        })
    })
    .await
}

/// What a credential update under lock decided.
pub enum CredentialUpdate<R> {
    /// Leave the stored credentials as they are.
    Keep(R),
    /// Store these credentials instead (a refreshed or rotated token).
    Replace(Zeroizing<Vec<u8>>, R),
    /// The provider refused the grant: mark the account `reauth_required`
    /// with this user-visible reason and drop its credentials.
    ReauthRequired(String, R),
}

/// Runs `decide` on an account's credentials while holding its row lock, and
/// applies its decision in the same transaction: the single-flight guard of
/// token refreshes across replicas (a second refresher waits, then sees the
/// first one's new token), and the atomic replacement of rotated refresh
/// tokens. `None` if the account does not exist.
pub async fn update_credentials_locked<R, F>(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    user: &UserId,
    id: AccountId,
    decide: F,
) -> Result<Option<R>, StoreError>
where
    R: Send,
    F: FnOnce(AccountCredentials) -> futures::future::BoxFuture<'static, CredentialUpdate<R>> + Send,
{
    conn.transaction(async |conn| {
        let Some(current) = read_credentials(conn, key, user, id, true).await? else {
            return Ok(None);
        };
        Ok(Some(match decide(current).await {
            CredentialUpdate::Keep(result) => result,
            CredentialUpdate::Replace(credentials, result) => {
                replace_credentials(conn, key, user, id, &credentials).await?;
                result
            }
            CredentialUpdate::ReauthRequired(reason, result) => {
                mark_reauth_required(conn, user, id, &reason).await?;
                result
            }
        }))
    })
    .await
}

/// Links an account and its calendars in one transaction (nothing is stored
/// if any part fails): [`upsert_account`], then the calendars under the
/// account's id (their `account_id` is overwritten), as
/// [`crate::calendars::upsert_calendars`] stores them.
pub async fn link_account(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    account: &NewAccount,
    calendars: Vec<crate::calendars::NewCalendar>,
) -> Result<(ConnectedAccount, Vec<juy_domain::Calendar>), StoreError> {
    conn.transaction(async |conn| {
        let linked = upsert_account_in_transaction(conn, key, account).await?;
        let calendars: Vec<crate::calendars::NewCalendar> = calendars
            .into_iter()
            .map(|mut calendar| {
                calendar.account_id = linked.id;
                calendar
            })
            .collect();
        let stored = crate::calendars::upsert_calendars(conn, key, &account.user_id, &calendars).await?;
        Ok((linked, stored))
    })
    .await
}
