//! Per-user data keys: created on first use, wrapped by the master keyring,
//! re-wrapped by key rotation, destroyed for crypto-shredding.

use diesel::prelude::*;
use diesel::sql_types::{Array, Bytea, Integer, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use juy_crypto::{Aad, DataKey, MasterKeyring};
use juy_domain::UserId;

use crate::schema::user_data_keys as k;
use crate::{Store, StoreError};

/// How many keys one rotation transaction re-wraps.
const ROTATION_BATCH: i64 = 500;

/// What [`Store::rotate_keys`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RotationReport {
    /// Data keys re-wrapped under the active master version.
    pub rewrapped: u64,
    /// Data keys that already were.
    pub already_current: u64,
}

/// The place a wrapped data key is bound to.
fn wrapped_key_aad(user_id: &str, version: i32) -> Aad {
    Aad::new("user_data_keys", "wrapped_key", &[user_id, &version.to_string()])
}

fn data_key_version(version: i32) -> Result<u32, StoreError> {
    u32::try_from(version).map_err(|_| StoreError::Corrupt(format!("data key version {version} is negative")))
}

fn master_version_column(keyring: &MasterKeyring) -> Result<i32, StoreError> {
    let version = keyring.active_version();
    i32::try_from(version)
        .map_err(|_| StoreError::InvalidInput(format!("master key version {version} is too large to store")))
}

impl Store {
    /// The user's newest data key, creating version 1 on first use.
    ///
    /// Concurrent first uses agree: the insert does nothing on conflict and
    /// everyone reads back the one row that won.
    pub async fn data_key(&self, conn: &mut AsyncPgConnection, user: &UserId) -> Result<DataKey, StoreError> {
        if let Some(key) = self.newest_data_key(conn, user).await? {
            return Ok(key);
        }
        let fresh = DataKey::generate(1);
        let wrapped = self.keyring().wrap(&fresh, &wrapped_key_aad(user.as_str(), 1));
        diesel::insert_into(k::table)
            .values((
                k::user_id.eq(user.as_str()),
                k::version.eq(1),
                k::master_version.eq(master_version_column(self.keyring())?),
                k::wrapped_key.eq(&wrapped.bytes),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        self.newest_data_key(conn, user)
            .await?
            .ok_or_else(|| StoreError::Database("the new data key was deleted concurrently".into()))
    }

    /// The user's newest data key, without creating one: background work
    /// (sync runs, deliveries) uses this, so that work leased before a user's
    /// erasure cannot bring a key of theirs back afterwards. A user without a
    /// key is [`StoreError::NotFound`].
    pub async fn existing_data_key(&self, conn: &mut AsyncPgConnection, user: &UserId) -> Result<DataKey, StoreError> {
        self.newest_data_key(conn, user)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "data key of user",
                id: user.as_str().to_owned(),
            })
    }

    async fn newest_data_key(
        &self,
        conn: &mut AsyncPgConnection,
        user: &UserId,
    ) -> Result<Option<DataKey>, StoreError> {
        let row: Option<(i32, Vec<u8>)> = k::table
            .filter(k::user_id.eq(user.as_str()))
            .order(k::version.desc())
            .select((k::version, k::wrapped_key))
            .first(conn)
            .await
            .optional()?;
        let Some((version, wrapped)) = row else {
            return Ok(None);
        };
        let key = self.keyring().unwrap(
            &wrapped,
            data_key_version(version)?,
            &wrapped_key_aad(user.as_str(), version),
        )?;
        Ok(Some(key))
    }

    /// Re-wraps every data key not under the active master version, 500 keys
    /// per transaction. The data keys, and so every ciphertext, stay the same.
    pub async fn rotate_keys(&self) -> Result<RotationReport, StoreError> {
        let mut conn = self.conn().await?;
        let active = master_version_column(self.keyring())?;
        let already_current: i64 = k::table
            .filter(k::master_version.eq(active))
            .count()
            .get_result(&mut *conn)
            .await?;
        let mut report = RotationReport {
            rewrapped: 0,
            already_current: already_current.unsigned_abs(),
        };
        // Walking in key order guarantees an end even if a row were left behind.
        let mut after: Option<(String, i32)> = None;
        loop {
            let cursor = after.clone();
            let keyring = self.keyring();
            let batch = conn
                .transaction(async |conn| rewrap_batch(conn, keyring, active, cursor).await)
                .await?;
            let Some((count, last)) = batch else { break };
            report.rewrapped += count;
            after = Some(last);
        }
        tracing::info!(
            rewrapped = report.rewrapped,
            already_current = report.already_current,
            "rotated data keys"
        );
        Ok(report)
    }
}

/// Re-wraps the next batch after `after`; `None` when there is nothing left.
async fn rewrap_batch(
    conn: &mut AsyncPgConnection,
    keyring: &MasterKeyring,
    active: i32,
    after: Option<(String, i32)>,
) -> Result<Option<(u64, (String, i32))>, StoreError> {
    // ("", 0) sorts before every key: version is positive.
    let (after_user, after_version) = after.unwrap_or_default();
    let query = k::table
        .filter(k::master_version.ne(active))
        .filter(
            k::user_id
                .gt(after_user.clone())
                .or(k::user_id.eq(after_user).and(k::version.gt(after_version))),
        )
        .select((k::user_id, k::version, k::wrapped_key))
        .order((k::user_id, k::version))
        .limit(ROTATION_BATCH)
        .for_update();
    let rows: Vec<(String, i32, Vec<u8>)> = query.load(conn).await?;
    let Some((last_user, last_version, _)) = rows.last() else {
        return Ok(None);
    };
    let last = (last_user.clone(), *last_version);

    let mut user_ids = Vec::with_capacity(rows.len());
    let mut versions = Vec::with_capacity(rows.len());
    let mut wrapped_keys = Vec::with_capacity(rows.len());
    for (user_id, version, wrapped) in rows {
        let aad = wrapped_key_aad(&user_id, version);
        let rewrapped = keyring.rewrap(&wrapped, data_key_version(version)?, &aad)?;
        user_ids.push(user_id);
        versions.push(version);
        wrapped_keys.push(rewrapped.bytes);
    }
    let updated = diesel::sql_query(
        "UPDATE user_data_keys AS k \
         SET wrapped_key = v.wrapped_key, master_version = $4, rotated_at = now() \
         FROM unnest($1, $2, $3) AS v(user_id, version, wrapped_key) \
         WHERE k.user_id = v.user_id AND k.version = v.version",
    )
    .bind::<Array<Text>, _>(&user_ids)
    .bind::<Array<Integer>, _>(&versions)
    .bind::<Array<Bytea>, _>(&wrapped_keys)
    .bind::<Integer, _>(active)
    .execute(conn)
    .await?;
    Ok(Some((updated as u64, last)))
}

/// Deletes every data key of `user`, making all their ciphertexts unreadable
/// for good, backups included; returns how many keys were destroyed.
pub async fn destroy_user_keys(conn: &mut AsyncPgConnection, user: &UserId) -> Result<u64, StoreError> {
    let deleted = diesel::delete(k::table.filter(k::user_id.eq(user.as_str())))
        .execute(conn)
        .await?;
    tracing::info!(keys = deleted, "destroyed a user's data keys");
    Ok(deleted as u64)
}
