//! Linking and revoking accounts: the OAuth flow for Google and Microsoft,
//! app-password linking for CalDAV servers (Apple iCloud and others), and
//! revocation by the user or an admin.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use juy_domain::{AccountId, AccountStatus, Calendar, Clock, ConnectedAccount, Provider, UserId};
use juy_oauth2::{Access, OAuthClients, OAuthError, ProviderEndpoints, StoredCredentials, TokenManager};
use juy_providers::{CalendarProvider, Credential, ProviderError, RemoteCalendar, StaticAuthorizer, UrlPolicy};
use juy_store::accounts::{self, AdminAccountFilter, AdminAccountRow, NewAccount};
use juy_store::calendars::NewCalendar;
use juy_store::oauth_states::{self, NewOAuthState, Taken};
use zeroize::Zeroizing;

use crate::auth::Caller;
use crate::error::{ApiError, FieldViolation};
use crate::names;
use crate::service::CalendarService;

/// Apple iCloud's CalDAV server, the default of `ConnectCalDav`.
pub const ICLOUD_CALDAV_URL: &str = "https://caldav.icloud.com";

/// How linking reaches the providers: every endpoint is configuration.
#[derive(Clone)]
pub struct IntegrationsConfig {
    /// Google's OAuth client and endpoints; `None` disables linking Google accounts.
    pub google: Option<ProviderEndpoints>,
    /// Google Calendar API base URL.
    pub google_api_base: String,
    /// Microsoft's OAuth client and endpoints; `None` disables linking Microsoft accounts.
    pub microsoft: Option<ProviderEndpoints>,
    /// Microsoft Graph base URL.
    pub graph_api_base: String,
    /// The redirect URIs registered with the providers; `StartConnect` accepts
    /// only these, and uses the first when none is given.
    pub redirect_uris: Vec<String>,
    /// How long an OAuth `state` is accepted.
    pub state_ttl: StdDuration,
    /// The CalDAV server used when `ConnectCalDav` names none.
    pub caldav_default_server: String,
    /// Hosts (`host` or `host:port`) exempt from the CalDAV URL rules (https
    /// only, no private addresses): for operators' own servers and tests.
    pub caldav_allow_list: Vec<String>,
    /// Timeout of each provider request.
    pub provider_timeout: StdDuration,
}

impl std::fmt::Debug for IntegrationsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntegrationsConfig")
            .field("google", &self.google)
            .field("google_api_base", &self.google_api_base)
            .field("microsoft", &self.microsoft)
            .field("graph_api_base", &self.graph_api_base)
            .field("redirect_uris", &self.redirect_uris)
            .field("caldav_default_server", &self.caldav_default_server)
            .field("caldav_allow_list", &self.caldav_allow_list)
            .finish_non_exhaustive()
    }
}

impl Default for IntegrationsConfig {
    fn default() -> Self {
        Self {
            google: None,
            google_api_base: juy_providers::google::DEFAULT_BASE_URL.into(),
            microsoft: None,
            graph_api_base: juy_providers::graph::DEFAULT_BASE_URL.into(),
            redirect_uris: Vec::new(),
            state_ttl: StdDuration::from_secs(600),
            caldav_default_server: ICLOUD_CALDAV_URL.into(),
            caldav_allow_list: Vec::new(),
            provider_timeout: StdDuration::from_secs(30),
        }
    }
}

/// The provider side of the service: OAuth clients, token manager, HTTP clients.
pub struct Integrations {
    config: IntegrationsConfig,
    tokens: Arc<TokenManager>,
    api_http: reqwest::Client,
    caldav_http: reqwest::Client,
    policy: UrlPolicy,
    clock: Arc<dyn Clock>,
    /// Accounts being revoked or revoked by this process: no credential is
    /// handed out for them, so in-flight work stops at its next request.
    blocked: Arc<Mutex<HashSet<(UserId, AccountId)>>>,
}

impl std::fmt::Debug for Integrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Integrations")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The integrations could not be set up (a bad configured URL, no TLS provider).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct IntegrationsError(String);

impl Integrations {
    /// Builds the clients. The rustls crypto provider must be installed.
    pub fn new(
        config: IntegrationsConfig,
        store: juy_store::Store,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, IntegrationsError> {
        let oauth_http = OAuthClients::default_http().map_err(|e| IntegrationsError(e.to_string()))?;
        let oauth = OAuthClients::new(oauth_http, config.google.clone(), config.microsoft.clone())
            .map_err(|e| IntegrationsError(e.to_string()))?;
        let api_http = reqwest::Client::builder()
            .timeout(config.provider_timeout)
            .connect_timeout(StdDuration::from_secs(10))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| IntegrationsError(format!("building the provider HTTP client: {e}")))?;
        let policy = UrlPolicy::new(config.caldav_allow_list.iter().cloned());
        let caldav_http = policy
            .build_client(config.provider_timeout)
            .map_err(|e| IntegrationsError(format!("building the CalDAV HTTP client: {e}")))?;
        Ok(Self {
            tokens: TokenManager::new(store, oauth, Arc::clone(&clock)),
            config,
            api_http,
            caldav_http,
            policy,
            clock,
            blocked: Arc::default(),
        })
    }

    /// The clock the service asks what time it is.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The token manager (for the sync engine).
    pub fn tokens(&self) -> &Arc<TokenManager> {
        &self.tokens
    }

    /// Whether work on `account` must stop (it is being revoked here).
    pub fn is_blocked(&self, user: &UserId, account: AccountId) -> bool {
        self.blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(user.clone(), account))
    }

    fn set_blocked(&self, user: &UserId, account: AccountId, blocked: bool) {
        let mut set = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        if blocked {
            set.insert((user.clone(), account));
        } else {
            set.remove(&(user.clone(), account));
        }
    }

    /// A client for one linked account, authorised through the token manager
    /// (OAuth) or its stored password (CalDAV). `home_url` is the CalDAV
    /// calendar home.
    pub fn client_for(
        &self,
        user: &UserId,
        account: AccountId,
        provider: Provider,
        home_url: Option<&str>,
    ) -> Result<Box<dyn CalendarProvider>, ProviderError> {
        if self.is_blocked(user, account) {
            return Err(ProviderError::ReauthRequired("the connection was revoked".into()));
        }
        let authorizer = Arc::new(GatedAuthorizer {
            inner: self.tokens.authorizer(user.clone(), account),
            blocked: Arc::clone(&self.blocked),
            key: (user.clone(), account),
        });
        self.client(provider, authorizer, home_url)
    }

    fn client(
        &self,
        provider: Provider,
        authorizer: Arc<dyn juy_providers::Authorizer>,
        home_url: Option<&str>,
    ) -> Result<Box<dyn CalendarProvider>, ProviderError> {
        Ok(match provider {
            Provider::Google => Box::new(juy_providers::google::GoogleCalendarClient::new(
                self.api_http.clone(),
                &self.config.google_api_base,
                authorizer,
                juy_providers::google::GoogleOptions {
                    timeout: self.config.provider_timeout,
                    clock: Arc::clone(&self.clock),
                    ..Default::default()
                },
            )?),
            Provider::Microsoft => Box::new(juy_providers::graph::GraphCalendarClient::new(
                self.api_http.clone(),
                &self.config.graph_api_base,
                authorizer,
                juy_providers::graph::GraphOptions {
                    timeout: self.config.provider_timeout,
                    clock: Arc::clone(&self.clock),
                    ..Default::default()
                },
            )?),
            Provider::Caldav => {
                let home = home_url.ok_or_else(|| ProviderError::Malformed("no calendar home is stored".into()))?;
                Box::new(juy_providers::caldav::CalDavClient::new(
                    self.caldav_http.clone(),
                    self.policy.clone(),
                    home,
                    authorizer,
                )?)
            }
        })
    }
}

/// Refuses credentials for accounts blocked by a revocation in progress.
struct GatedAuthorizer {
    inner: Arc<dyn juy_providers::Authorizer>,
    blocked: Arc<Mutex<HashSet<(UserId, AccountId)>>>,
    key: (UserId, AccountId),
}

impl GatedAuthorizer {
    fn check(&self) -> Result<(), ProviderError> {
        if self
            .blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&self.key)
        {
            return Err(ProviderError::ReauthRequired("the connection was revoked".into()));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl juy_providers::Authorizer for GatedAuthorizer {
    async fn credential(&self) -> Result<Credential, ProviderError> {
        self.check()?;
        let credential = self.inner.credential().await?;
        self.check()?;
        Ok(credential)
    }

    async fn credential_rejected(&self, rejected: &Credential) -> Result<Credential, ProviderError> {
        self.check()?;
        let credential = self.inner.credential_rejected(rejected).await?;
        self.check()?;
        Ok(credential)
    }
}

/// `StartConnect` as parsed from either surface.
#[derive(Debug, Clone, Default)]
pub struct StartConnectInput {
    /// The provider; `None` when unspecified.
    pub provider: Option<Provider>,
    /// Where to come back to; empty for the configured default.
    pub redirect_uri: String,
    /// What to ask for.
    pub access: Access,
    /// An account to preselect.
    pub login_hint: String,
}

/// A started flow.
#[derive(Debug, Clone)]
pub struct StartedConnect {
    /// Where to send the user.
    pub authorization_url: String,
    /// When the flow's state stops being accepted.
    pub expire_time: DateTime<Utc>,
}

/// `ConnectCalDav` as parsed from either surface.
#[derive(Clone, Default)]
pub struct ConnectCalDavInput {
    /// The server; empty for iCloud.
    pub server_url: String,
    /// The user name.
    pub username: String,
    /// The app-specific password.
    pub app_specific_password: Zeroizing<String>,
}

impl std::fmt::Debug for ConnectCalDavInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectCalDavInput")
            .field("server_url", &self.server_url)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A linked account and its calendars.
#[derive(Debug, Clone)]
pub struct Linked {
    /// The account.
    pub connection: ConnectedAccount,
    /// Its calendars.
    pub calendars: Vec<Calendar>,
}

const MAX_TEXT: usize = 2048;

fn provider_unavailable(provider: Provider, err: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(%provider, error = %err, "provider unavailable during linking");
    ApiError {
        reason: Some("PROVIDER_UNAVAILABLE"),
        ..ApiError::unavailable(format!("{provider} could not be reached: {err}; retry later"))
    }
}

fn oauth_error(provider: Provider, err: OAuthError) -> ApiError {
    match err {
        OAuthError::NotConfigured(_) => ApiError::failed_precondition(
            "PROVIDER_NOT_CONFIGURED",
            format!("{provider} accounts cannot be linked on this server: no OAuth client is configured"),
        ),
        OAuthError::InvalidGrant(_) => ApiError::invalid(
            "code",
            "was refused by the provider (expired, already used, or issued for another flow); start linking again",
        ),
        OAuthError::Network(_) => provider_unavailable(provider, &err),
        OAuthError::Rejected(_) | OAuthError::Malformed(_) | OAuthError::BadConfig(_) => {
            tracing::warn!(%provider, error = %err, "provider refused linking");
            ApiError::failed_precondition("PROVIDER_REJECTED", format!("{provider} refused the request: {err}"))
        }
    }
}

fn list_error(provider: Provider, err: ProviderError) -> ApiError {
    match err {
        ProviderError::Network(_) | ProviderError::Retryable { .. } => provider_unavailable(provider, &err),
        other => {
            tracing::warn!(%provider, error = %other, "listing calendars failed during linking");
            ApiError::failed_precondition(
                "PROVIDER_REJECTED",
                format!("{provider} did not list the account's calendars: {other}"),
            )
        }
    }
}

fn new_calendars(provider: Provider, remote: Vec<RemoteCalendar>) -> Vec<NewCalendar> {
    remote
        .into_iter()
        .map(|c| NewCalendar {
            // Replaced by the linked account's id when stored.
            account_id: AccountId(uuid::Uuid::nil()),
            provider,
            provider_calendar_id: c.id,
            name: c.name,
            color: c.color,
            time_zone: c.time_zone,
            is_primary: c.is_primary,
            can_write: c.can_write,
        })
        .collect()
}

impl CalendarService {
    fn integrations(&self) -> &Integrations {
        &self.integrations
    }

    /// Starts linking a Google or Microsoft account.
    pub async fn start_connect(&self, caller: &Caller, input: StartConnectInput) -> Result<StartedConnect, ApiError> {
        let int = self.integrations();
        let mut violations = Vec::new();
        let provider = match input.provider {
            None => {
                violations.push(FieldViolation {
                    field: "provider".into(),
                    description: "is required".into(),
                });
                None
            }
            Some(Provider::Caldav) => {
                violations.push(FieldViolation {
                    field: "provider".into(),
                    description: "must be google or microsoft; CalDAV accounts are linked with ConnectCalDav".into(),
                });
                None
            }
            Some(p) => Some(p),
        };
        let redirect_uri = if input.redirect_uri.is_empty() {
            int.config.redirect_uris.first().cloned()
        } else if int.config.redirect_uris.iter().any(|r| r == &input.redirect_uri) {
            Some(input.redirect_uri.clone())
        } else {
            violations.push(FieldViolation {
                field: "redirect_uri".into(),
                description: "is not one of the redirect URIs this service is registered with".into(),
            });
            None
        };
        if input.login_hint.len() > 320 {
            violations.push(FieldViolation {
                field: "login_hint".into(),
                description: "must be at most 320 characters".into(),
            });
        }
        if !violations.is_empty() {
            return Err(ApiError::invalid_fields(violations));
        }
        let (Some(provider), Some(redirect_uri)) = (provider, redirect_uri) else {
            return Err(ApiError::failed_precondition(
                "NO_REDIRECT_URI",
                "no OAuth redirect URI is configured on this server",
            ));
        };
        let hint = Some(input.login_hint.as_str()).filter(|h| !h.is_empty());
        let request = int
            .tokens
            .oauth()
            .authorization_request(provider, &redirect_uri, input.access, hint)
            .map_err(|e| oauth_error(provider, e))?;
        let now = int.clock.now();
        let expire_time = now + Duration::from_std(int.config.state_ttl).unwrap_or(Duration::minutes(10));
        let mut conn = self.store.conn().await?;
        let key = self.store.data_key(&mut conn, &caller.user_id).await?;
        oauth_states::insert(
            &mut conn,
            &key,
            &NewOAuthState {
                user_id: &caller.user_id,
                state: &request.state,
                provider,
                redirect_uri: &redirect_uri,
                pkce_verifier: &request.pkce_verifier,
                scopes: &request.scopes,
                expires_at: expire_time,
            },
        )
        .await?;
        tracing::info!(%provider, access = ?input.access, "started linking an account");
        Ok(StartedConnect {
            authorization_url: request.url,
            expire_time,
        })
    }

    /// Finishes linking a Google or Microsoft account.
    pub async fn complete_connect(&self, caller: &Caller, state: &str, code: &str) -> Result<Linked, ApiError> {
        let int = self.integrations();
        let mut violations = Vec::new();
        for (field, value) in [("state", state), ("code", code)] {
            if value.is_empty() {
                violations.push(FieldViolation {
                    field: field.into(),
                    description: "is required".into(),
                });
            } else if value.len() > MAX_TEXT {
                violations.push(FieldViolation {
                    field: field.into(),
                    description: format!("must be at most {MAX_TEXT} characters"),
                });
            }
        }
        if !violations.is_empty() {
            return Err(ApiError::invalid_fields(violations));
        }
        let now = int.clock.now();
        let mut conn = self.store.conn().await?;
        let key = self.store.data_key(&mut conn, &caller.user_id).await?;
        let flow = match oauth_states::take(&mut conn, &key, &caller.user_id, state, now).await? {
            Taken::Valid(flow) => flow,
            Taken::Expired => {
                return Err(ApiError::invalid("state", "has expired; start linking again"));
            }
            Taken::Unknown => {
                return Err(ApiError::invalid(
                    "state",
                    "is unknown, already used, or belongs to another user; start linking again",
                ));
            }
        };
        // The connection goes back to the pool while the provider is called.
        drop(conn);
        let provider = flow.provider;
        let oauth = int.tokens.oauth();
        let tokens = oauth
            .exchange_code(
                provider,
                code,
                &flow.pkce_verifier,
                &flow.redirect_uri,
                &flow.scopes,
                now,
            )
            .await
            .map_err(|e| oauth_error(provider, e))?;
        let identity = oauth
            .identity(provider, &tokens.access_token)
            .await
            .map_err(|e| oauth_error(provider, e))?;
        let bearer = Credential::Bearer(Arc::new(Zeroizing::new(tokens.access_token.to_string())));
        let client = int
            .client(provider, Arc::new(StaticAuthorizer(bearer)), None)
            .map_err(|e| list_error(provider, e))?;
        let remote = client.list_calendars().await.map_err(|e| list_error(provider, e))?;
        let credentials = StoredCredentials::OAuth {
            access_token: tokens.access_token.to_string(),
            expires_at: tokens.expires_at,
            refresh_token: tokens.refresh_token.as_ref().map(|t| t.to_string()),
        };
        let account = NewAccount {
            user_id: caller.user_id.clone(),
            provider,
            external_account_id: identity.external_id,
            display_name: identity.email,
            status: AccountStatus::Pending,
            scopes: tokens.scopes.clone(),
            server_url: None,
            credentials: Some(credentials.to_bytes().to_vec()),
        };
        let mut conn = self.store.conn().await?;
        let (connection, calendars) =
            accounts::link_account(&mut conn, &key, &account, new_calendars(provider, remote)).await?;
        int.set_blocked(&caller.user_id, connection.id, false);
        tracing::info!(%provider, account_id = %connection.id, calendars = calendars.len(), "linked an account");
        caller.audit.target(names::connection(connection.id));
        // The new calendars are due at once: wake this replica's workers.
        self.wakeup().notify();
        Ok(Linked { connection, calendars })
    }

    /// Links a CalDAV account (Apple iCloud by default) with an app-specific password.
    pub async fn connect_caldav(&self, caller: &Caller, input: ConnectCalDavInput) -> Result<Linked, ApiError> {
        let int = self.integrations();
        let mut violations = Vec::new();
        let server = if input.server_url.is_empty() {
            int.config.caldav_default_server.clone()
        } else {
            input.server_url.clone()
        };
        let server_url = match url::Url::parse(&server) {
            Ok(url) if matches!(url.scheme(), "https" | "http") && url.host().is_some() => Some(url),
            _ => {
                violations.push(FieldViolation {
                    field: "server_url".into(),
                    description: "must be an https:// URL".into(),
                });
                None
            }
        };
        if let Some(url) = &server_url
            && (!url.username().is_empty() || url.password().is_some())
        {
            violations.push(FieldViolation {
                field: "server_url".into(),
                description: "must not contain credentials; give username and app_specific_password".into(),
            });
        }
        if input.username.trim().is_empty() {
            violations.push(FieldViolation {
                field: "username".into(),
                description: "is required".into(),
            });
        } else if input.username.len() > 320 {
            violations.push(FieldViolation {
                field: "username".into(),
                description: "must be at most 320 characters".into(),
            });
        }
        if input.app_specific_password.is_empty() {
            violations.push(FieldViolation {
                field: "app_specific_password".into(),
                description: "is required".into(),
            });
        } else if input.app_specific_password.len() > 1024 {
            violations.push(FieldViolation {
                field: "app_specific_password".into(),
                description: "must be at most 1024 characters".into(),
            });
        }
        let (Some(server_url), true) = (server_url, violations.is_empty()) else {
            return Err(ApiError::invalid_fields(violations));
        };
        let username = input.username.trim().to_owned();
        let discovery = juy_providers::caldav::discover(
            &int.caldav_http,
            &int.policy,
            server_url.as_str(),
            &username,
            &input.app_specific_password,
        )
        .await
        .map_err(|e| match e {
            ProviderError::Unauthorized | ProviderError::ReauthRequired(_) => ApiError::invalid(
                "app_specific_password",
                "was rejected by the server together with the user name",
            ),
            ProviderError::UrlNotAllowed(why) => ApiError::invalid("server_url", format!("is not allowed: {why}")),
            ProviderError::Network(why) => ApiError {
                reason: Some("CALDAV_UNREACHABLE"),
                ..ApiError::unavailable(format!("the CalDAV server at server_url could not be reached: {why}"))
            },
            ProviderError::Retryable { status, .. } => ApiError {
                reason: Some("CALDAV_UNAVAILABLE"),
                ..ApiError::unavailable(format!("the CalDAV server answered HTTP {status}; retry later"))
            },
            other => ApiError::invalid("server_url", format!("is not a usable CalDAV server: {other}")),
        })?;
        let credentials = StoredCredentials::Password {
            username: username.clone(),
            password: input.app_specific_password.to_string(),
        };
        let account = NewAccount {
            user_id: caller.user_id.clone(),
            provider: Provider::Caldav,
            external_account_id: discovery.principal_url.clone(),
            display_name: Some(username),
            status: AccountStatus::Pending,
            scopes: Vec::new(),
            server_url: Some(discovery.home_url.clone()),
            credentials: Some(credentials.to_bytes().to_vec()),
        };
        let mut conn = self.store.conn().await?;
        let key = self.store.data_key(&mut conn, &caller.user_id).await?;
        let (connection, calendars) = accounts::link_account(
            &mut conn,
            &key,
            &account,
            new_calendars(Provider::Caldav, discovery.calendars),
        )
        .await?;
        int.set_blocked(&caller.user_id, connection.id, false);
        tracing::info!(account_id = %connection.id, calendars = calendars.len(), "linked a CalDAV account");
        caller.audit.target(names::connection(connection.id));
        // The new calendars are due at once: wake this replica's workers.
        self.wakeup().notify();
        Ok(Linked { connection, calendars })
    }

    /// Revokes one of the caller's connections.
    pub async fn revoke_connection(&self, caller: &Caller, name: &str) -> Result<ConnectedAccount, ApiError> {
        let account = names::parse_connection("name", name)?;
        caller.audit.target(names::connection(account));
        self.revoke(&caller.user_id, account, "Revoked by the user.").await
    }

    /// Revokes a user's connection on their behalf (admins).
    pub async fn admin_revoke_connection(
        &self,
        caller: &Caller,
        user_id: &str,
        connection: &str,
    ) -> Result<AdminAccountRow, ApiError> {
        let mut violations = Vec::new();
        let user = match UserId::new(user_id.to_owned()) {
            Ok(user) => Some(user),
            Err(e) => {
                violations.push(FieldViolation {
                    field: "user_id".into(),
                    description: e.to_string(),
                });
                None
            }
        };
        let account = match names::parse_connection("connection", connection) {
            Ok(account) => Some(account),
            Err(e) => {
                violations.extend(e.violations);
                None
            }
        };
        let (Some(user), Some(account), true) = (user, account, violations.is_empty()) else {
            return Err(ApiError::invalid_fields(violations));
        };
        caller.audit.subject(user.clone());
        caller.audit.target(names::connection(account));
        self.revoke(&user, account, "Revoked by an administrator.").await?;
        let mut conn = self.store.conn().await?;
        let filter = AdminAccountFilter {
            user_id: Some(user),
            provider: None,
            status: None,
        };
        // A user has few accounts: one page finds it.
        accounts::admin_list_accounts(&mut conn, &filter, None, 1000)
            .await?
            .into_iter()
            .find(|row| row.account_id == account)
            .ok_or_else(|| ApiError::not_found(connection))
    }

    async fn stop_channels(
        &self,
        user: &UserId,
        account: AccountId,
        provider: Provider,
        channels: &[juy_store::push_channels::StoredChannel],
    ) {
        let int = self.integrations();
        let client = match int.client(provider, int.tokens.authorizer(user.clone(), account), None) {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(account_id = %account, error = %e, "cannot stop the account's push channels");
                return;
            }
        };
        for channel in channels {
            let open = juy_providers::push::PushChannel {
                channel_id: channel.channel_id.clone(),
                resource_id: channel.resource_id.clone(),
                expires_at: channel.expires_at,
            };
            match client.stop_watch(&open).await {
                Ok(()) => {
                    tracing::info!(account_id = %account, calendar_id = %channel.calendar_id, "stopped a push channel")
                }
                Err(e) => tracing::warn!(account_id = %account, calendar_id = %channel.calendar_id, error = %e,
                    "could not stop a push channel; it lapses at its expiry"),
            }
        }
    }

    async fn revoke(&self, user: &UserId, account: AccountId, reason: &str) -> Result<ConnectedAccount, ApiError> {
        Ok(self.revoke_and_report(user, account, reason).await?.0)
    }

    /// Revokes a connection for the erasure of its user's data; returns
    /// false when the provider's revocation endpoint failed (our copy of the
    /// tokens is deleted anyway).
    pub(crate) async fn revoke_for_erasure(&self, user: &UserId, account: AccountId) -> Result<bool, ApiError> {
        Ok(self
            .revoke_and_report(user, account, "Revoked for the erasure of the user's data.")
            .await?
            .1)
    }

    async fn revoke_and_report(
        &self,
        user: &UserId,
        account: AccountId,
        reason: &str,
    ) -> Result<(ConnectedAccount, bool), ApiError> {
        let int = self.integrations();
        let mut provider_told = true;
        let mut conn = self.store.conn().await?;
        let key = self.store.data_key(&mut conn, user).await?;
        let Some(current) = accounts::read_credentials(&mut conn, &key, user, account, false).await? else {
            return Err(ApiError::not_found(names::connection(account)));
        };
        let channels = juy_store::push_channels::list_for_account(&mut conn, user, account).await?;
        drop(conn);
        // From here on this process hands out no credential for the account.
        int.set_blocked(user, account, true);
        // Stop its push channels while its token still works (only channel
        // stops, never event reads; failures are logged: channels lapse anyway).
        if !channels.is_empty() {
            self.stop_channels(user, account, current.provider, &channels).await;
        }
        // Revoke the grant at the provider where it has an endpoint (Google):
        // the refresh token revokes the whole grant.
        let stored = current.credentials.as_ref().map(|c| StoredCredentials::from_bytes(c));
        if let Some(Ok(StoredCredentials::OAuth {
            access_token,
            refresh_token,
            ..
        })) = &stored
            && current.provider != Provider::Caldav
            && int.tokens.oauth().is_configured(current.provider)
        {
            let token = refresh_token.as_deref().unwrap_or(access_token.as_str());
            match int.tokens.oauth().revoke(current.provider, token).await {
                Ok(true) => {
                    tracing::info!(provider = %current.provider, account_id = %account, "revoked the grant at the provider")
                }
                Ok(false) => {}
                // Our copy is deleted below either way; the grant lapses at the provider.
                Err(e) => {
                    provider_told = false;
                    tracing::warn!(provider = %current.provider, account_id = %account, error = %e,
                        "the provider's revocation endpoint failed; deleting our tokens anyway");
                }
            }
        }
        let mut conn = self.store.conn().await?;
        let purged = accounts::revoke_account(&mut conn, user, account, reason).await?;
        tracing::info!(account_id = %account, calendars = purged.calendars, events = purged.events,
            "revoked a connection and purged its data");
        let revoked = accounts::get_account(&mut conn, &key, user, account)
            .await?
            .ok_or_else(|| ApiError::not_found(names::connection(account)))?;
        Ok((revoked, provider_told))
    }
}
