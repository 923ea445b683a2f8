//! Pending OAuth authorisations (the `state` of an authorisation-code flow):
//! single-use, expiring, bound to the user who started the flow. Only a
//! SHA-256 of the state is stored, and the PKCE verifier is sealed with the
//! user's data key.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use juy_crypto::{Aad, DataKey};
use juy_domain::{Provider, UserId};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::StoreError;
use crate::schema::oauth_states as o;

const TABLE: &str = "oauth_states";

/// A flow being started.
pub struct NewOAuthState<'a> {
    /// Who started it; only they can complete it.
    pub user_id: &'a UserId,
    /// The random `state` sent to the provider.
    pub state: &'a str,
    /// Google or Microsoft.
    pub provider: Provider,
    /// Where the provider redirects back to.
    pub redirect_uri: &'a str,
    /// The PKCE code verifier (stored encrypted).
    pub pkce_verifier: &'a str,
    /// The scopes asked for.
    pub scopes: &'a [String],
    /// When the state stops being accepted.
    pub expires_at: DateTime<Utc>,
}

/// A pending flow, taken out of the store.
pub struct OAuthState {
    /// Google or Microsoft.
    pub provider: Provider,
    /// Where the provider redirects back to; the token request must repeat it.
    pub redirect_uri: String,
    /// The PKCE code verifier.
    pub pkce_verifier: Zeroizing<String>,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// When the flow started.
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for OAuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthState")
            .field("provider", &self.provider)
            .field("redirect_uri", &self.redirect_uri)
            .field("pkce_verifier", &"<redacted>")
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// What taking a state found.
#[derive(Debug)]
pub enum Taken {
    /// A valid state of this user; it is now used up.
    Valid(OAuthState),
    /// The state was this user's but had expired; it is now used up too.
    Expired,
    /// No such state for this user: unknown, already used, or another user's.
    Unknown,
}

#[derive(Queryable)]
struct StateRow {
    provider: String,
    redirect_uri: String,
    pkce_verifier_enc: Vec<u8>,
    scopes: Vec<Option<String>>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

fn hash(state: &str) -> Vec<u8> {
    Sha256::digest(state.as_bytes()).to_vec()
}

fn aad(user: &UserId, state_hash: &[u8]) -> Aad {
    let hex: String = state_hash.iter().map(|b| format!("{b:02x}")).collect();
    Aad::new(TABLE, "pkce_verifier_enc", &[user.as_str(), &hex])
}

/// Stores a flow being started.
pub async fn insert(conn: &mut AsyncPgConnection, key: &DataKey, new: &NewOAuthState<'_>) -> Result<(), StoreError> {
    if !matches!(new.provider, Provider::Google | Provider::Microsoft) {
        return Err(StoreError::InvalidInput(format!("{} has no OAuth flow", new.provider)));
    }
    let state_hash = hash(new.state);
    let sealed = key.seal_str(new.pkce_verifier, &aad(new.user_id, &state_hash));
    let scopes: Vec<Option<&str>> = new.scopes.iter().map(|s| Some(s.as_str())).collect();
    diesel::insert_into(o::table)
        .values((
            o::user_id.eq(new.user_id.as_str()),
            o::state_hash.eq(&state_hash),
            o::provider.eq(new.provider.as_str()),
            o::redirect_uri.eq(new.redirect_uri),
            o::pkce_verifier_enc.eq(&sealed),
            o::scopes.eq(&scopes),
            o::expires_at.eq(new.expires_at),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes `state` for `user`: deletes it in the same statement that reads it,
/// so a state works once, however many requests race with it.
pub async fn take(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    user: &UserId,
    state: &str,
    now: DateTime<Utc>,
) -> Result<Taken, StoreError> {
    let state_hash = hash(state);
    let row: Option<StateRow> = diesel::delete(
        o::table
            .filter(o::user_id.eq(user.as_str()))
            .filter(o::state_hash.eq(&state_hash)),
    )
    .returning((
        o::provider,
        o::redirect_uri,
        o::pkce_verifier_enc,
        o::scopes,
        o::created_at,
        o::expires_at,
    ))
    .get_result(conn)
    .await
    .optional()?;
    let Some(StateRow {
        provider,
        redirect_uri,
        pkce_verifier_enc: sealed,
        scopes,
        created_at,
        expires_at,
    }) = row
    else {
        return Ok(Taken::Unknown);
    };
    if expires_at <= now {
        return Ok(Taken::Expired);
    }
    let provider = provider
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("{TABLE}: unknown provider")))?;
    let verifier = key
        .open_string(&sealed, &aad(user, &state_hash))
        .map_err(|_| StoreError::Corrupt(format!("{TABLE}: a verifier does not decrypt")))?;
    Ok(Taken::Valid(OAuthState {
        provider,
        redirect_uri,
        pkce_verifier: Zeroizing::new(verifier),
        scopes: scopes.into_iter().flatten().collect(),
        created_at,
    }))
}

/// Deletes at most `batch` expired states.
pub async fn delete_expired(conn: &mut AsyncPgConnection, now: DateTime<Utc>, batch: i64) -> Result<u64, StoreError> {
    if batch < 1 {
        return Err(StoreError::InvalidInput("batch must be at least 1".into()));
    }
    let deleted = diesel::sql_query(
        "DELETE FROM oauth_states AS s USING ( \
             SELECT user_id, state_hash FROM oauth_states \
             WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED \
         ) AS expired \
         WHERE s.user_id = expired.user_id AND s.state_hash = expired.state_hash",
    )
    .bind::<Timestamptz, _>(now)
    .bind::<BigInt, _>(batch)
    .execute(conn)
    .await?;
    Ok(deleted as u64)
}
