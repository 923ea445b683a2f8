//! Access tokens for provider clients: refreshed before expiry and after a
//! 401, one refresh at a time per account, rotation stored atomically, and
//! `invalid_grant` turned into `reauth_required`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Duration;
use futures::FutureExt as _;
use juy_domain::{AccountId, AccountStatus, Clock, UserId};
use juy_providers::{Authorizer, Credential, ProviderError};
use juy_store::Store;
use juy_store::accounts::{self, AccountCredentials, CredentialUpdate};
use zeroize::Zeroizing;

use crate::{OAuthClients, OAuthError, StoredCredentials};

/// What the user is told when a provider refused an account's grant.
pub const REAUTH_REASON: &str = "The provider no longer accepts Juy's access to this account (the access was withdrawn or expired). Link the account again.";

/// A token is refreshed when it has less than this left.
const REFRESH_MARGIN_SECONDS: i64 = 120;

/// The lock one account's refreshers queue on.
type Flight = Arc<tokio::sync::Mutex<()>>;

/// Hands out access tokens for linked accounts.
pub struct TokenManager {
    store: Store,
    oauth: OAuthClients,
    clock: Arc<dyn Clock>,
    flights: Mutex<HashMap<(UserId, AccountId), Flight>>,
}

impl std::fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManager").finish_non_exhaustive()
    }
}

/// The outcome of looking at stored credentials.
enum Look {
    /// Use this credential.
    Use(Credential),
    /// The access token is stale (or was rejected): refresh.
    Refresh,
}

impl TokenManager {
    /// A manager reading and writing credentials in `store`.
    pub fn new(store: Store, oauth: OAuthClients, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Self {
            store,
            oauth,
            clock,
            flights: Mutex::new(HashMap::new()),
        })
    }

    /// The OAuth clients.
    pub fn oauth(&self) -> &OAuthClients {
        &self.oauth
    }

    /// An [`Authorizer`] for one account, for its provider client.
    pub fn authorizer(self: &Arc<Self>, user: UserId, account: AccountId) -> Arc<dyn Authorizer> {
        Arc::new(AccountAuthorizer {
            manager: Arc::clone(self),
            user,
            account,
        })
    }

    /// The credential to use for `account` now. `rejected` is the access
    /// token the provider just answered 401 to: it is never handed out again.
    ///
    /// Credentials are read from the database on every call, so a revoked
    /// account's credential is never used again once the revocation commits.
    pub async fn credential(
        &self,
        user: &UserId,
        account: AccountId,
        rejected: Option<&str>,
    ) -> Result<Credential, ProviderError> {
        let now = self.clock.now();
        let current = self.read(user, account).await?;
        if let Look::Use(credential) = look(&current, rejected, now)? {
            return Ok(credential);
        }
        // One refresh at a time per account in this process; the row lock
        // below does the same across replicas.
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            Arc::clone(flights.entry((user.clone(), account)).or_default())
        };
        let _guard = flight.lock().await;
        let result = self.refresh_locked(user, account, rejected).await;
        {
            let mut flights = self.flights.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            // The map holds one Arc, this function another: nobody else waits.
            if flights
                .get(&(user.clone(), account))
                .is_some_and(|f| Arc::strong_count(f) <= 2)
            {
                flights.remove(&(user.clone(), account));
            }
        }
        result
    }

    async fn read(&self, user: &UserId, account: AccountId) -> Result<AccountCredentials, ProviderError> {
        let mut conn = self.store.conn().await.map_err(store_error)?;
        let key = self.store.data_key(&mut conn, user).await.map_err(store_error)?;
        accounts::read_credentials(&mut conn, &key, user, account, false)
            .await
            .map_err(store_error)?
            .ok_or_else(|| ProviderError::ReauthRequired("the connection no longer exists".into()))
    }

    async fn refresh_locked(
        &self,
        user: &UserId,
        account: AccountId,
        rejected: Option<&str>,
    ) -> Result<Credential, ProviderError> {
        let mut conn = self.store.conn().await.map_err(store_error)?;
        let key = self.store.data_key(&mut conn, user).await.map_err(store_error)?;
        let oauth = self.oauth.clone();
        let clock = Arc::clone(&self.clock);
        let rejected = rejected.map(|r| Zeroizing::new(r.to_owned()));
        let outcome = accounts::update_credentials_locked(&mut conn, &key, user, account, move |current| {
            async move {
                let now = clock.now();
                // Another refresher may have finished while we waited for the lock.
                match look(&current, rejected.as_deref().map(|r| r.as_str()), now) {
                    Err(e) => return CredentialUpdate::Keep(Err(e)),
                    Ok(Look::Use(credential)) => return CredentialUpdate::Keep(Ok(credential)),
                    Ok(Look::Refresh) => {}
                }
                let stored = current.credentials.as_ref().map(|c| StoredCredentials::from_bytes(c));
                let Some(Ok(StoredCredentials::OAuth {
                    refresh_token: Some(refresh_token),
                    ..
                })) = &stored
                else {
                    return CredentialUpdate::ReauthRequired(
                        REAUTH_REASON.into(),
                        Err(ProviderError::ReauthRequired("no refresh token is stored".into())),
                    );
                };
                match oauth.refresh(current.provider, refresh_token, now).await {
                    Ok(tokens) => {
                        let stored = StoredCredentials::OAuth {
                            access_token: tokens.access_token.to_string(),
                            expires_at: tokens.expires_at,
                            // A rotated refresh token replaces the old one in this transaction.
                            refresh_token: Some(
                                tokens
                                    .refresh_token
                                    .as_ref()
                                    .map(|t| t.to_string())
                                    .unwrap_or_else(|| refresh_token.to_owned()),
                            ),
                        };
                        let credential = Credential::Bearer(Arc::new(Zeroizing::new(tokens.access_token.to_string())));
                        tracing::info!(account_id = %account, provider = %current.provider, "refreshed an access token");
                        CredentialUpdate::Replace(stored.to_bytes(), Ok(credential))
                    }
                    Err(OAuthError::InvalidGrant(_)) => {
                        tracing::warn!(account_id = %account, provider = %current.provider,
                            "the provider refused the refresh token; the account needs re-authorisation");
                        CredentialUpdate::ReauthRequired(
                            REAUTH_REASON.into(),
                            Err(ProviderError::ReauthRequired("the provider refused the grant".into())),
                        )
                    }
                    Err(OAuthError::Network(message)) => CredentialUpdate::Keep(Err(ProviderError::Network(message))),
                    Err(other) => CredentialUpdate::Keep(Err(ProviderError::Rejected {
                        status: 400,
                        reason: other.to_string(),
                    })),
                }
            }
            .boxed()
        })
        .await
        .map_err(store_error)?;
        outcome.unwrap_or_else(|| Err(ProviderError::ReauthRequired("the connection no longer exists".into())))
    }
}

/// Decides from stored credentials whether they can be used as they are.
fn look(
    current: &AccountCredentials,
    rejected: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Look, ProviderError> {
    match current.status {
        AccountStatus::Revoked => return Err(ProviderError::ReauthRequired("the connection was revoked".into())),
        AccountStatus::ReauthRequired => {
            return Err(ProviderError::ReauthRequired("the account must be linked again".into()));
        }
        AccountStatus::Pending | AccountStatus::Active | AccountStatus::Error => {}
    }
    let Some(bytes) = &current.credentials else {
        return Err(ProviderError::ReauthRequired("no credentials are stored".into()));
    };
    let stored = StoredCredentials::from_bytes(bytes)
        .map_err(|_| ProviderError::ReauthRequired("stored credentials are not readable".into()))?;
    match &stored {
        StoredCredentials::Password { username, password } => {
            if rejected.is_some() {
                return Err(ProviderError::Unauthorized);
            }
            Ok(Look::Use(Credential::Basic {
                username: username.clone(),
                password: Arc::new(Zeroizing::new(password.clone())),
            }))
        }
        StoredCredentials::OAuth {
            access_token,
            expires_at,
            ..
        } => {
            let fresh = *expires_at > now + Duration::seconds(REFRESH_MARGIN_SECONDS);
            if fresh && rejected != Some(access_token.as_str()) {
                Ok(Look::Use(Credential::Bearer(Arc::new(Zeroizing::new(
                    access_token.clone(),
                )))))
            } else {
                Ok(Look::Refresh)
            }
        }
    }
}

fn store_error(err: juy_store::StoreError) -> ProviderError {
    ProviderError::Network(format!("credential store: {err}"))
}

struct AccountAuthorizer {
    manager: Arc<TokenManager>,
    user: UserId,
    account: AccountId,
}

#[async_trait]
impl Authorizer for AccountAuthorizer {
    async fn credential(&self) -> Result<Credential, ProviderError> {
        self.manager.credential(&self.user, self.account, None).await
    }

    async fn credential_rejected(&self, rejected: &Credential) -> Result<Credential, ProviderError> {
        match rejected {
            Credential::Bearer(token) => {
                self.manager
                    .credential(&self.user, self.account, Some(token.as_str()))
                    .await
            }
            Credential::Basic { .. } => Err(ProviderError::Unauthorized),
        }
    }
}
