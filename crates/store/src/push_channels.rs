//! Push channels: the live Google channel or Graph subscription of each
//! calendar (at most one), so the sync engine knows what to renew and stop,
//! and the webhooks can check that a notification names a channel we opened
//! and carries its secret. Only a SHA-256 of the secret (Google channel
//! token, Graph `clientState`) is stored, and it is compared in constant time.
//!
//! Renewals and stops of one calendar's channel are expected to be serialised
//! by the caller (e.g. done under the calendar's sync lease).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Bytea, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use juy_domain::{AccountId, AccountStatus, CalendarId, Provider, UserId};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::StoreError;
use crate::schema::{connected_accounts as a, push_channels as p};

const TABLE: &str = "push_channels";

/// Where a verified notification points: the calendar to sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelTarget {
    /// The calendar's owner.
    pub user_id: UserId,
    /// The calendar.
    pub calendar_id: CalendarId,
    /// Its account.
    pub account_id: AccountId,
    /// Google or Microsoft.
    pub provider: Provider,
    /// When the channel expires (or was marked expired).
    pub expires_at: DateTime<Utc>,
}

/// What checking a notification's channel and secret found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// A channel of ours, and the right secret.
    Valid(ChannelTarget),
    /// A channel of ours, but not its secret: a forgery.
    WrongSecret,
    /// No such channel (never ours, or replaced or deleted since).
    Unknown,
}

/// A stored channel, as the sync engine needs it to renew or stop it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChannel {
    /// The calendar's owner.
    pub user_id: UserId,
    /// The calendar.
    pub calendar_id: CalendarId,
    /// Its account.
    pub account_id: AccountId,
    /// Google or Microsoft.
    pub provider: Provider,
    /// The Google channel id or the Graph subscription id.
    pub channel_id: String,
    /// Google's `resourceId`.
    pub resource_id: Option<String>,
    /// When the provider stops sending.
    pub expires_at: DateTime<Utc>,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

#[derive(Queryable)]
struct ChannelRow {
    user_id: String,
    calendar_id: Uuid,
    account_id: Uuid,
    provider: String,
    channel_id: String,
    resource_id: Option<String>,
    expires_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
}

type ChannelColumns = (
    p::user_id,
    p::calendar_id,
    p::account_id,
    p::provider,
    p::channel_id,
    p::resource_id,
    p::expires_at,
    p::created_at,
);

const CHANNEL_COLUMNS: ChannelColumns = (
    p::user_id,
    p::calendar_id,
    p::account_id,
    p::provider,
    p::channel_id,
    p::resource_id,
    p::expires_at,
    p::created_at,
);

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("{TABLE}: {what}"))
}

fn decode_user(user_id: String) -> Result<UserId, StoreError> {
    UserId::new(user_id).map_err(|_| corrupt("bad user id"))
}

fn decode_provider(provider: &str) -> Result<Provider, StoreError> {
    provider.parse().map_err(|_| corrupt("unknown provider"))
}

impl ChannelRow {
    fn decode(self) -> Result<StoredChannel, StoreError> {
        Ok(StoredChannel {
            user_id: decode_user(self.user_id)?,
            calendar_id: CalendarId(self.calendar_id),
            account_id: AccountId(self.account_id),
            provider: decode_provider(&self.provider)?,
            channel_id: self.channel_id,
            resource_id: self.resource_id,
            expires_at: self.expires_at,
            created_at: self.created_at,
        })
    }
}

fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Whether two hashes are equal, looking at every byte whatever differs.
fn same_hash(stored: &[u8], presented: &[u8]) -> bool {
    if stored.len() != presented.len() {
        return false;
    }
    let difference = stored.iter().zip(presented).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

/// Stores the channel opened for `calendar`, replacing the calendar's
/// previous one (whose notifications then no longer verify). The calendar
/// must be `user`'s, of `account` and `provider` ([`StoreError::NotFound`]
/// otherwise); only Google and Microsoft have push.
#[allow(clippy::too_many_arguments)] // one column each; a struct would only rename them
pub async fn save(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    calendar: CalendarId,
    account: AccountId,
    provider: Provider,
    channel_id: &str,
    resource_id: Option<&str>,
    secret: &str,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    if !matches!(provider, Provider::Google | Provider::Microsoft) {
        return Err(StoreError::InvalidInput(format!("{provider} has no push channels")));
    }
    if channel_id.is_empty() {
        return Err(StoreError::InvalidInput("a channel id must not be empty".into()));
    }
    let saved = diesel::sql_query(
        "INSERT INTO push_channels \
             (user_id, calendar_id, account_id, provider, channel_id, resource_id, secret_hash, expires_at) \
         SELECT c.user_id, c.id, c.account_id, c.provider, $5, $6, $7, $8 \
         FROM calendars c \
         WHERE c.user_id = $1 AND c.id = $2 AND c.account_id = $3 AND c.provider = $4 \
         ON CONFLICT (user_id, calendar_id) DO UPDATE \
         SET account_id = excluded.account_id, provider = excluded.provider, \
             channel_id = excluded.channel_id, resource_id = excluded.resource_id, \
             secret_hash = excluded.secret_hash, expires_at = excluded.expires_at, created_at = now()",
    )
    .bind::<Text, _>(user.as_str())
    .bind::<diesel::sql_types::Uuid, _>(calendar.0)
    .bind::<diesel::sql_types::Uuid, _>(account.0)
    .bind::<Text, _>(provider.as_str())
    .bind::<Text, _>(channel_id)
    .bind::<Nullable<Text>, _>(resource_id)
    .bind::<Bytea, _>(hash(secret))
    .bind::<Timestamptz, _>(expires_at)
    .execute(conn)
    .await?;
    if saved == 0 {
        return Err(StoreError::NotFound {
            what: "calendar",
            id: calendar.to_string(),
        });
    }
    Ok(())
}

/// Checks a notification: the channel it names and the secret it carries.
pub async fn check(
    conn: &mut AsyncPgConnection,
    channel_id: &str,
    presented_secret: &str,
) -> Result<Verification, StoreError> {
    #[derive(Queryable)]
    struct Row {
        user_id: String,
        calendar_id: Uuid,
        account_id: Uuid,
        provider: String,
        secret_hash: Vec<u8>,
        expires_at: DateTime<Utc>,
    }
    let row: Option<Row> = p::table
        .filter(p::channel_id.eq(channel_id))
        .select((
            p::user_id,
            p::calendar_id,
            p::account_id,
            p::provider,
            p::secret_hash,
            p::expires_at,
        ))
        .first(conn)
        .await
        .optional()?;
    let Some(row) = row else {
        return Ok(Verification::Unknown);
    };
    if !same_hash(&row.secret_hash, &hash(presented_secret)) {
        return Ok(Verification::WrongSecret);
    }
    Ok(Verification::Valid(ChannelTarget {
        user_id: decode_user(row.user_id)?,
        calendar_id: CalendarId(row.calendar_id),
        account_id: AccountId(row.account_id),
        provider: decode_provider(&row.provider)?,
        expires_at: row.expires_at,
    }))
}

/// [`check`] for many notifications at once (Graph batches them), in one
/// query; the answers come in the order of `presented` (channel id, secret).
pub async fn check_many(
    conn: &mut AsyncPgConnection,
    presented: &[(&str, &str)],
) -> Result<Vec<Verification>, StoreError> {
    if presented.is_empty() {
        return Ok(Vec::new());
    }
    #[derive(Queryable)]
    struct Row {
        channel_id: String,
        user_id: String,
        calendar_id: Uuid,
        account_id: Uuid,
        provider: String,
        secret_hash: Vec<u8>,
        expires_at: DateTime<Utc>,
    }
    let ids: Vec<&str> = presented.iter().map(|(channel, _)| *channel).collect();
    let rows: Vec<Row> = p::table
        .filter(p::channel_id.eq_any(&ids))
        .select((
            p::channel_id,
            p::user_id,
            p::calendar_id,
            p::account_id,
            p::provider,
            p::secret_hash,
            p::expires_at,
        ))
        .load(conn)
        .await?;
    presented
        .iter()
        .map(|(channel, secret)| {
            let Some(row) = rows.iter().find(|row| row.channel_id == *channel) else {
                return Ok(Verification::Unknown);
            };
            if !same_hash(&row.secret_hash, &hash(secret)) {
                return Ok(Verification::WrongSecret);
            }
            Ok(Verification::Valid(ChannelTarget {
                user_id: decode_user(row.user_id.clone())?,
                calendar_id: CalendarId(row.calendar_id),
                account_id: AccountId(row.account_id),
                provider: decode_provider(&row.provider)?,
                expires_at: row.expires_at,
            }))
        })
        .collect()
}

/// The calendar a notification points to, if it names a channel of ours and
/// carries its secret; `None` for an unknown channel or a wrong secret
/// ([`check`] tells the two apart).
pub async fn verify(
    conn: &mut AsyncPgConnection,
    channel_id: &str,
    presented_secret: &str,
) -> Result<Option<ChannelTarget>, StoreError> {
    Ok(match check(conn, channel_id, presented_secret).await? {
        Verification::Valid(target) => Some(target),
        Verification::WrongSecret | Verification::Unknown => None,
    })
}

/// The calendar's channel, if it has one.
pub async fn get_for_calendar(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    calendar: CalendarId,
) -> Result<Option<StoredChannel>, StoreError> {
    let row: Option<ChannelRow> = p::table
        .filter(p::user_id.eq(user.as_str()))
        .filter(p::calendar_id.eq(calendar.0))
        .select(CHANNEL_COLUMNS)
        .first(conn)
        .await
        .optional()?;
    row.map(ChannelRow::decode).transpose()
}

/// Up to `limit` channels expiring at or before `before`, soonest first
/// (expired ones included), of accounts that can still sync: the channels
/// to renew (or, once expired, to open again).
pub async fn due_for_renewal(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<StoredChannel>, StoreError> {
    if limit < 1 {
        return Err(StoreError::InvalidInput("limit must be at least 1".into()));
    }
    let syncable: Vec<&str> = [AccountStatus::Pending, AccountStatus::Active, AccountStatus::Error]
        .iter()
        .map(|status| status.as_str())
        .collect();
    let rows: Vec<ChannelRow> = p::table
        .inner_join(a::table.on(a::user_id.eq(p::user_id).and(a::id.eq(p::account_id))))
        .filter(p::expires_at.le(before))
        .filter(a::status.eq_any(syncable))
        .order(p::expires_at)
        .limit(limit)
        .select(CHANNEL_COLUMNS)
        .load(conn)
        .await?;
    rows.into_iter().map(ChannelRow::decode).collect()
}

/// Deletes the calendar's channel (after stopping it, or when it is gone at
/// the provider) and returns what was stored.
pub async fn delete_for_calendar(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    calendar: CalendarId,
) -> Result<Option<StoredChannel>, StoreError> {
    let row: Option<ChannelRow> = diesel::delete(
        p::table
            .filter(p::user_id.eq(user.as_str()))
            .filter(p::calendar_id.eq(calendar.0)),
    )
    .returning(CHANNEL_COLUMNS)
    .get_result(conn)
    .await
    .optional()?;
    row.map(ChannelRow::decode).transpose()
}

/// Every channel of an account's calendars, to stop at the provider before
/// the account is revoked (revoking deletes the calendars, and their
/// channels with them).
pub async fn list_for_account(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    account: AccountId,
) -> Result<Vec<StoredChannel>, StoreError> {
    let rows: Vec<ChannelRow> = p::table
        .filter(p::user_id.eq(user.as_str()))
        .filter(p::account_id.eq(account.0))
        .order(p::calendar_id)
        .select(CHANNEL_COLUMNS)
        .load(conn)
        .await?;
    rows.into_iter().map(ChannelRow::decode).collect()
}

/// Marks a channel expired at `now` (it never moves a sooner expiry later),
/// e.g. after Graph's `reauthorizationRequired` or `subscriptionRemoved`,
/// so the renewal scan picks it up at once. `false` if there is no such channel.
pub async fn mark_expired(
    conn: &mut AsyncPgConnection,
    channel_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let updated =
        diesel::sql_query("UPDATE push_channels SET expires_at = least(expires_at, $2) WHERE channel_id = $1")
            .bind::<Text, _>(channel_id)
            .bind::<Timestamptz, _>(now)
            .execute(conn)
            .await?;
    Ok(updated == 1)
}

/// Records a renewal that kept the channel and its secret (a Graph
/// subscription renewed in place): its new expiry. `false` if the
/// calendar's channel is no longer `channel_id`.
pub async fn set_expiry(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    calendar: CalendarId,
    channel_id: &str,
    expires_at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let updated = diesel::update(
        p::table
            .filter(p::user_id.eq(user.as_str()))
            .filter(p::calendar_id.eq(calendar.0))
            .filter(p::channel_id.eq(channel_id)),
    )
    .set(p::expires_at.eq(expires_at))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_compare_equal_only_when_equal() {
        let stored = hash("secret");
        assert!(same_hash(&stored, &hash("secret")));
        assert!(!same_hash(&stored, &hash("secret ")));
        assert!(!same_hash(&stored, &stored[..31]));
        assert_eq!(stored.len(), 32);
    }
}
