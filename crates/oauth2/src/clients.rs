//! The OAuth protocol with Google and Microsoft: authorisation URL, code
//! exchange, refresh, identity and revocation.

use std::time::Duration;

use chrono::{DateTime, Utc};
use juy_domain::Provider;
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet, HttpRequest,
    HttpResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    TokenResponse as _, TokenUrl,
};
use serde::Deserialize;
use url::Url;
use zeroize::Zeroizing;

/// Google's endpoints.
pub mod google {
    /// Authorisation endpoint.
    pub const AUTHORIZE_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";
    /// Token endpoint.
    pub const TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
    /// RFC 7009 revocation endpoint.
    pub const REVOKE_URL: &str = "https://oauth2.googleapis.com/revoke";
    /// OpenID userinfo.
    pub const USERINFO_URL: &str = "https://openidconnect.googleapis.com/v1/userinfo";
    /// Linking: identity and reading calendars and events.
    pub const READ_SCOPES: &[&str] = &["openid", "email", "https://www.googleapis.com/auth/calendar.readonly"];
    /// Added when the user lets Juy write events.
    pub const WRITE_SCOPES: &[&str] = &["https://www.googleapis.com/auth/calendar.events"];
}

/// Microsoft's endpoints (the `common` tenant).
pub mod microsoft {
    /// Authorisation endpoint.
    pub const AUTHORIZE_URL: &str = "https://login.microsoftonline.com/common/oauth2/v2.0/authorize";
    /// Token endpoint.
    pub const TOKEN_URL: &str = "https://login.microsoftonline.com/common/oauth2/v2.0/token";
    /// Graph `/me`, the identity of the signed-in account.
    pub const USERINFO_URL: &str = "https://graph.microsoft.com/v1.0/me";
    /// Linking: identity, a refresh token and reading calendars.
    pub const READ_SCOPES: &[&str] = &["openid", "email", "offline_access", "User.Read", "Calendars.Read"];
    /// Asked for when the user lets Juy write events (replaces `Calendars.Read`).
    pub const WRITE_SCOPES: &[&str] = &["Calendars.ReadWrite"];
}

/// One provider's OAuth client registration and endpoints.
#[derive(Clone)]
pub struct ProviderEndpoints {
    /// The OAuth client id.
    pub client_id: String,
    /// The OAuth client secret (web applications have one).
    pub client_secret: Option<Zeroizing<String>>,
    /// Authorisation endpoint.
    pub authorize_url: String,
    /// Token endpoint.
    pub token_url: String,
    /// RFC 7009 revocation endpoint (Google); `None` where there is none (Microsoft).
    pub revoke_url: Option<String>,
    /// Where the account's identity is read (OpenID userinfo, Graph `/me`).
    pub userinfo_url: String,
}

impl std::fmt::Debug for ProviderEndpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderEndpoints")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .field("authorize_url", &self.authorize_url)
            .field("token_url", &self.token_url)
            .field("revoke_url", &self.revoke_url)
            .field("userinfo_url", &self.userinfo_url)
            .finish()
    }
}

impl ProviderEndpoints {
    /// The real Google endpoints for a client registration.
    pub fn google(client_id: String, client_secret: Option<Zeroizing<String>>) -> Self {
        Self {
            client_id,
            client_secret,
            authorize_url: google::AUTHORIZE_URL.into(),
            token_url: google::TOKEN_URL.into(),
            revoke_url: Some(google::REVOKE_URL.into()),
            userinfo_url: google::USERINFO_URL.into(),
        }
    }

    /// The real Microsoft endpoints for a client registration.
    pub fn microsoft(client_id: String, client_secret: Option<Zeroizing<String>>) -> Self {
        Self {
            client_id,
            client_secret,
            authorize_url: microsoft::AUTHORIZE_URL.into(),
            token_url: microsoft::TOKEN_URL.into(),
            revoke_url: None,
            userinfo_url: microsoft::USERINFO_URL.into(),
        }
    }
}

/// What the user lets Juy do with a linked account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    /// Read calendars and events (linking asks for this only).
    #[default]
    Read,
    /// Also create, change and delete events (asked for when a calendar is switched to Write).
    Write,
}

/// The scopes to ask `provider` for.
pub fn scopes_for(provider: Provider, access: Access) -> Vec<String> {
    let (read, write): (&[&str], &[&str]) = match provider {
        Provider::Google => (google::READ_SCOPES, google::WRITE_SCOPES),
        Provider::Microsoft => (microsoft::READ_SCOPES, microsoft::WRITE_SCOPES),
        Provider::Caldav => (&[], &[]),
    };
    let mut scopes: Vec<String> = read.iter().map(|s| (*s).to_owned()).collect();
    if access == Access::Write {
        if provider == Provider::Microsoft {
            scopes.retain(|s| s != "Calendars.Read");
        }
        scopes.extend(write.iter().map(|s| (*s).to_owned()));
    }
    scopes
}

/// Whether granted `scopes` let Juy write events at `provider`.
pub fn scopes_allow_write(provider: Provider, scopes: &[String]) -> bool {
    match provider {
        Provider::Google => scopes.iter().any(|s| google::WRITE_SCOPES.contains(&s.as_str())),
        Provider::Microsoft => scopes
            .iter()
            .any(|s| microsoft::WRITE_SCOPES.iter().any(|w| w.eq_ignore_ascii_case(s))),
        Provider::Caldav => true,
    }
}

/// How an OAuth exchange failed. Never carries a token, code or secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// No client registration is configured for the provider.
    #[error("{0} accounts cannot be linked: no OAuth client is configured")]
    NotConfigured(Provider),
    /// The provider refused the grant (code used, expired or revoked; refresh token revoked).
    #[error("the provider refused the grant ({0})")]
    InvalidGrant(String),
    /// The provider answered with another OAuth error.
    #[error("the provider answered `{0}`")]
    Rejected(String),
    /// The provider could not be reached or timed out.
    #[error("could not reach the provider: {0}")]
    Network(String),
    /// The provider's answer could not be understood.
    #[error("the provider's answer could not be understood: {0}")]
    Malformed(String),
    /// A configured URL is not a valid URL.
    #[error("invalid {0} URL in the configuration")]
    BadConfig(&'static str),
}

/// A started authorisation: send the user to `url`; keep `state` and
/// `pkce_verifier` (the store keeps them, bound to the user) for the callback.
pub struct AuthorizationRequest {
    /// Where to send the user.
    pub url: String,
    /// The single-use `state`.
    pub state: Zeroizing<String>,
    /// The PKCE code verifier.
    pub pkce_verifier: Zeroizing<String>,
    /// The scopes asked for.
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for AuthorizationRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationRequest")
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Tokens from a code exchange or a refresh.
pub struct TokenSet {
    /// The access token.
    pub access_token: Zeroizing<String>,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// A refresh token, when the provider issued one (a rotated one replaces the old).
    pub refresh_token: Option<Zeroizing<String>>,
    /// The scopes granted; when the provider does not say, those asked for.
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Who a linked account is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The provider's stable id (OpenID `sub`, Graph `id`).
    pub external_id: String,
    /// Its email address, when the provider says.
    pub email: Option<String>,
}

/// A failure of our HTTP transport, as the `oauth2` crate sees it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Transport(String);

/// The OAuth clients of the configured providers.
#[derive(Clone)]
pub struct OAuthClients {
    http: reqwest::Client,
    google: Option<ProviderEndpoints>,
    microsoft: Option<ProviderEndpoints>,
}

impl std::fmt::Debug for OAuthClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClients")
            .field("google", &self.google)
            .field("microsoft", &self.microsoft)
            .finish_non_exhaustive()
    }
}

/// Longest wait for any OAuth endpoint.
const TIMEOUT: Duration = Duration::from_secs(20);
/// The largest answer read from an OAuth endpoint.
const MAX_BODY: usize = 1 << 20;

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

impl OAuthClients {
    /// Clients for the configured providers. `http` must not follow redirects
    /// (token endpoints must not be redirected; see the `oauth2` crate's advice).
    pub fn new(
        http: reqwest::Client,
        google: Option<ProviderEndpoints>,
        microsoft: Option<ProviderEndpoints>,
    ) -> Result<Self, OAuthError> {
        for endpoints in google.iter().chain(microsoft.iter()) {
            Url::parse(&endpoints.authorize_url).map_err(|_| OAuthError::BadConfig("authorize"))?;
            Url::parse(&endpoints.token_url).map_err(|_| OAuthError::BadConfig("token"))?;
            Url::parse(&endpoints.userinfo_url).map_err(|_| OAuthError::BadConfig("userinfo"))?;
            if let Some(revoke) = &endpoints.revoke_url {
                Url::parse(revoke).map_err(|_| OAuthError::BadConfig("revoke"))?;
            }
        }
        Ok(Self {
            http,
            google,
            microsoft,
        })
    }

    /// A `reqwest` client fit for OAuth endpoints: no redirects, a timeout.
    pub fn default_http() -> Result<reqwest::Client, OAuthError> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| OAuthError::Network(e.to_string()))
    }

    /// Whether `provider` can be linked (it is configured).
    pub fn is_configured(&self, provider: Provider) -> bool {
        self.endpoints(provider).is_ok()
    }

    fn endpoints(&self, provider: Provider) -> Result<&ProviderEndpoints, OAuthError> {
        match provider {
            Provider::Google => self.google.as_ref(),
            Provider::Microsoft => self.microsoft.as_ref(),
            Provider::Caldav => None,
        }
        .ok_or(OAuthError::NotConfigured(provider))
    }

    fn client(&self, provider: Provider, redirect_uri: Option<&str>) -> Result<Client, OAuthError> {
        let e = self.endpoints(provider)?;
        let mut client = BasicClient::new(ClientId::new(e.client_id.clone()))
            .set_auth_uri(AuthUrl::new(e.authorize_url.clone()).map_err(|_| OAuthError::BadConfig("authorize"))?)
            .set_token_uri(TokenUrl::new(e.token_url.clone()).map_err(|_| OAuthError::BadConfig("token"))?)
            // Both providers accept the client credentials in the form body; Microsoft requires it.
            .set_auth_type(oauth2::AuthType::RequestBody);
        if let Some(secret) = &e.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.to_string()));
        }
        if let Some(redirect) = redirect_uri {
            client = client.set_redirect_uri(
                RedirectUrl::new(redirect.to_owned())
                    .map_err(|_| OAuthError::Rejected("invalid redirect_uri".into()))?,
            );
        }
        Ok(client)
    }

    /// Starts a flow: the authorisation URL with a fresh `state`, a PKCE S256
    /// challenge and the scopes for `access`. `login_hint` preselects an account.
    pub fn authorization_request(
        &self,
        provider: Provider,
        redirect_uri: &str,
        access: Access,
        login_hint: Option<&str>,
    ) -> Result<AuthorizationRequest, OAuthError> {
        let client = self.client(provider, Some(redirect_uri))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let scopes = scopes_for(provider, access);
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge);
        match provider {
            // A refresh token every time, and incremental consent: the grant
            // keeps scopes given earlier.
            Provider::Google => {
                request = request
                    .add_extra_param("access_type", "offline")
                    .add_extra_param("prompt", "consent")
                    .add_extra_param("include_granted_scopes", "true");
            }
            Provider::Microsoft => {
                request = request.add_extra_param("response_mode", "query");
            }
            Provider::Caldav => {}
        }
        if let Some(hint) = login_hint {
            request = request.add_extra_param("login_hint", hint.to_owned());
        }
        let (url, state) = request.url();
        Ok(AuthorizationRequest {
            url: url.to_string(),
            state: Zeroizing::new(state.secret().clone()),
            pkce_verifier: Zeroizing::new(verifier.secret().clone()),
            scopes,
        })
    }

    /// Exchanges an authorisation code (with its PKCE verifier and the same
    /// redirect URI) for tokens.
    pub async fn exchange_code(
        &self,
        provider: Provider,
        code: &str,
        pkce_verifier: &str,
        redirect_uri: &str,
        scopes_asked: &[String],
        now: DateTime<Utc>,
    ) -> Result<TokenSet, OAuthError> {
        let client = self.client(provider, Some(redirect_uri))?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&HttpClient(self.http.clone()))
            .await
            .map_err(token_error)?;
        Ok(token_set(&response, scopes_asked, now))
    }

    /// Refreshes an access token. A rotated refresh token comes back in the
    /// result and must replace the old one.
    pub async fn refresh(
        &self,
        provider: Provider,
        refresh_token: &str,
        now: DateTime<Utc>,
    ) -> Result<TokenSet, OAuthError> {
        let client = self.client(provider, None)?;
        let refresh = RefreshToken::new(refresh_token.to_owned());
        let response = client
            .exchange_refresh_token(&refresh)
            .request_async(&HttpClient(self.http.clone()))
            .await
            .map_err(token_error)?;
        Ok(token_set(&response, &[], now))
    }

    /// Reads who the account is (OpenID userinfo for Google, Graph `/me` for Microsoft).
    pub async fn identity(&self, provider: Provider, access_token: &str) -> Result<Identity, OAuthError> {
        #[derive(Deserialize)]
        struct UserInfo {
            sub: Option<String>,
            id: Option<String>,
            email: Option<String>,
            mail: Option<String>,
            #[serde(rename = "userPrincipalName")]
            user_principal_name: Option<String>,
        }
        let e = self.endpoints(provider)?;
        let response = self
            .http
            .get(&e.userinfo_url)
            .bearer_auth(access_token)
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|err| OAuthError::Network(transport_message(&err)))?;
        let status = response.status();
        let body = read_capped(response).await?;
        if !status.is_success() {
            return Err(OAuthError::Rejected(format!(
                "identity endpoint answered HTTP {}",
                status.as_u16()
            )));
        }
        let info: UserInfo =
            serde_json::from_slice(&body).map_err(|_| OAuthError::Malformed("identity is not JSON".into()))?;
        let external_id = match provider {
            Provider::Google => info.sub,
            _ => info.id,
        }
        .filter(|id| !id.is_empty())
        .ok_or_else(|| OAuthError::Malformed("identity without an account id".into()))?;
        let email = info
            .email
            .or(info.mail)
            .or(info.user_principal_name)
            .filter(|e| !e.is_empty());
        Ok(Identity { external_id, email })
    }

    /// Revokes a token at the provider (RFC 7009; revoking a Google refresh
    /// token revokes the whole grant). Returns `false` where the provider has
    /// no revocation endpoint (Microsoft): deleting our tokens is all there is.
    pub async fn revoke(&self, provider: Provider, token: &str) -> Result<bool, OAuthError> {
        let e = self.endpoints(provider)?;
        let Some(url) = &e.revoke_url else {
            return Ok(false);
        };
        let form: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .finish();
        let response = self
            .http
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|err| OAuthError::Network(transport_message(&err)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(true);
        }
        // An already invalid token is as revoked as it gets.
        let body = read_capped(response).await.unwrap_or_default();
        let code = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned));
        match code.as_deref() {
            Some("invalid_token") | Some("invalid_grant") => Ok(true),
            Some(other) => Err(OAuthError::Rejected(other.to_owned())),
            None => Err(OAuthError::Rejected(format!("HTTP {}", status.as_u16()))),
        }
    }
}

/// Our `reqwest` client as the `oauth2` crate's transport (a named type: the
/// crate's closure impl makes futures that are not `Send` enough for tokio).
struct HttpClient(reqwest::Client);

impl<'c> oauth2::AsyncHttpClient<'c> for HttpClient {
    type Error = Transport;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<HttpResponse, Transport>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(send(self.0.clone(), request))
    }
}

async fn send(client: reqwest::Client, request: HttpRequest) -> Result<HttpResponse, Transport> {
    let (parts, body) = request.into_parts();
    let response = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .timeout(TIMEOUT)
        .send()
        .await
        .map_err(|err| Transport(transport_message(&err)))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = read_capped(response).await.map_err(|e| Transport(e.to_string()))?;
    let mut out = http::Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

/// A transport error's description without its URL (which may carry a query).
fn transport_message(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timed out".into()
    } else if err.is_connect() {
        "could not connect".into()
    } else {
        let text = err.to_string();
        match err.url() {
            Some(url) => text.replace(url.as_str(), "<url>"),
            None => text,
        }
    }
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, OAuthError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| OAuthError::Network(transport_message(&err)))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(OAuthError::Malformed("answer too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn token_error(err: RequestTokenError<Transport, oauth2::StandardErrorResponse<BasicErrorResponseType>>) -> OAuthError {
    match err {
        RequestTokenError::ServerResponse(response) => match response.error() {
            BasicErrorResponseType::InvalidGrant => OAuthError::InvalidGrant("invalid_grant".into()),
            other => OAuthError::Rejected(other.to_string()),
        },
        RequestTokenError::Request(Transport(message)) => OAuthError::Network(message),
        RequestTokenError::Parse(..) => OAuthError::Malformed("the token response is not valid".into()),
        RequestTokenError::Other(_) => OAuthError::Malformed("unexpected token response".into()),
    }
}

fn token_set(response: &oauth2::basic::BasicTokenResponse, scopes_asked: &[String], now: DateTime<Utc>) -> TokenSet {
    // Without `expires_in`, assume the usual hour less a margin.
    let lifetime = response.expires_in().unwrap_or(Duration::from_secs(3000));
    let lifetime = chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::seconds(3000));
    // Without a (non-empty) `scope`, the grant is what was asked for (RFC 6749 §5.1).
    let granted: Vec<String> = response
        .scopes()
        .map(|scopes| scopes.iter().map(|s| s.to_string()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let scopes = if granted.is_empty() {
        scopes_asked.to_vec()
    } else {
        granted
    };
    TokenSet {
        access_token: Zeroizing::new(response.access_token().secret().clone()),
        expires_at: now + lifetime,
        refresh_token: response.refresh_token().map(|t| Zeroizing::new(t.secret().clone())),
        scopes,
    }
}
