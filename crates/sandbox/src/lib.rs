//! Provider sandbox: a local HTTP server that imitates Google OAuth and the
//! Microsoft identity platform (plus Google userinfo and Graph `/me`), Google
//! Calendar v3 and Graph calendars (listings, sync tokens, writes, recurring
//! series) as described in `PROVIDERS.md`, and their push notifications
//! (Google channels, Graph subscriptions, posted to the watchers' URLs), with
//! an advanceable clock, a request log and fault injection. Tests drive it through methods on
//! [`Sandbox`]; a sandbox running as its own process (`juy-calendar sandbox`)
//! is driven through the same operations over HTTP under `/_sandbox`, which
//! are neither logged nor subject to faults. It is test and dev-run
//! infrastructure only: it must never be linked into the production server,
//! and it must never panic on a request.
#![forbid(unsafe_code)]

mod control;
mod dev_world;
mod google_calendar;
mod graph_calendar;
mod push;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};

pub use push::{LifecycleEvent, PushDelivery, Watch};

/// Which provider a request or account belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Google (OAuth + userinfo).
    Google,
    /// Microsoft (identity platform + Graph).
    Microsoft,
}

/// One request received by the sandbox.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    /// Provider the route belongs to.
    pub provider: Provider,
    /// HTTP method.
    pub method: String,
    /// Path after the provider prefix.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Bearer token carried by the request, if any.
    pub bearer: Option<String>,
    /// Sandbox clock time of the request.
    pub at: DateTime<Utc>,
}

/// A fault applied to the next API request of a provider.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status; `retry_after` sets the `Retry-After` header (seconds).
    Status {
        /// HTTP status code.
        code: u16,
        /// Optional `Retry-After` seconds.
        retry_after: Option<u64>,
    },
    /// Delay the answer by this many milliseconds.
    Latency(u64),
    /// Carry out the request, then hold its answer this many milliseconds: a
    /// client that times out meanwhile never learns that its write was made
    /// (what a retried create must survive without a duplicate).
    LateAnswer(u64),
    /// Answer with a body cut in the middle.
    TruncatedBody,
    /// Answer with a body that is not JSON.
    MalformedBody,
}

/// How often a sandbox recurring series repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frequency {
    /// Every day.
    Daily,
    /// Every week, on the weekday of the first occurrence.
    Weekly,
}

/// A simple recurring series for the sandbox's control methods: `count`
/// occurrences, `freq` apart, the first starting at `first_start`, each
/// lasting `duration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recurrence {
    /// Start of the first occurrence.
    pub first_start: DateTime<Utc>,
    /// Length of every occurrence.
    pub duration: Duration,
    /// How often it repeats.
    pub freq: Frequency,
    /// How many occurrences there are.
    pub count: u32,
}

impl Recurrence {
    /// The start of every occurrence, in order.
    pub(crate) fn starts(&self) -> Vec<DateTime<Utc>> {
        let step = match self.freq {
            Frequency::Daily => Duration::days(1),
            Frequency::Weekly => Duration::weeks(1),
        };
        (0..self.count)
            .map_while(|k| {
                let offset = step.checked_mul(i32::try_from(k).ok()?)?;
                self.first_start.checked_add_signed(offset)
            })
            .collect()
    }

    /// The end of the last occurrence.
    pub(crate) fn last_end(&self) -> DateTime<Utc> {
        let last = self.starts().last().copied().unwrap_or(self.first_start);
        last.checked_add_signed(self.duration).unwrap_or(last)
    }
}

/// `YYYYMMDDTHHMMSSZ`, the suffix of an instance id.
pub(crate) fn instance_stamp(at: DateTime<Utc>) -> String {
    at.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Errors of the sandbox control API and server start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The listening address could not be bound (in use, not local, no permission).
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// Binding or serving failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// No Graph subscription has this id.
    #[error("no subscription `{0}`")]
    UnknownSubscription(String),
    /// The Graph subscription has no `lifecycleNotificationUrl`.
    #[error("subscription `{0}` has no lifecycle notification URL")]
    NoLifecycleUrl(String),
}

// Paths of the provider routes, shared by the router, `RunningSandbox`'s URL
// getters and the control API's index.
const GOOGLE_AUTHORIZE: &str = "/google/o/oauth2/v2/auth";
const GOOGLE_TOKEN: &str = "/google/token";
const GOOGLE_REVOKE: &str = "/google/revoke";
const GOOGLE_USERINFO: &str = "/google/oauth2/v3/userinfo";
const GOOGLE_API: &str = "/google/calendar/v3";
const MICROSOFT_AUTHORIZE: &str = "/microsoft/common/oauth2/v2.0/authorize";
const MICROSOFT_TOKEN: &str = "/microsoft/common/oauth2/v2.0/token";
const GRAPH_API: &str = "/microsoft/v1.0";

#[derive(Debug, Clone)]
struct Account {
    provider: Provider,
    id: String,
    email: String,
}

#[derive(Debug, Clone)]
struct CodeGrant {
    provider: Provider,
    account: String,
    client_id: String,
    redirect_uri: String,
    challenge: String,
    used: bool,
    grant_id: u64,
}

#[derive(Debug, Clone)]
struct AccessToken {
    account: String,
    grant_id: u64,
    expires: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct Inner {
    offset: Duration,
    accounts: Vec<Account>,
    log: Vec<LoggedRequest>,
    faults: HashMap<&'static str, VecDeque<Fault>>,
    codes: HashMap<String, CodeGrant>,
    access: HashMap<String, AccessToken>,
    refresh: HashMap<String, (String, u64, Provider)>,
    revoked_grants: Vec<u64>,
    next_grant: u64,
    /// The scopes the user consented to, per grant (returned by the token endpoint).
    grant_scopes: HashMap<u64, String>,
    google: google_calendar::GoogleState,
    graph: graph_calendar::GraphState,
    push: push::PushState,
}

impl Inner {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }
    fn kill_grant(&mut self, grant: u64) {
        self.revoked_grants.push(grant);
        self.access.retain(|_, t| t.grant_id != grant);
        self.refresh.retain(|_, r| r.1 != grant);
    }
}

fn pkey(p: Provider) -> &'static str {
    match p {
        Provider::Google => "google",
        Provider::Microsoft => "microsoft",
    }
}

/// Shared sandbox state; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    inner: Arc<Mutex<Inner>>,
}

impl Sandbox {
    /// An empty sandbox.
    pub fn new() -> Self {
        Self::default()
    }
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Add an account (Google `sub` or Microsoft `id`, plus its email); an
    /// account with the same id is replaced.
    pub fn add_account(&self, provider: Provider, id: &str, email: &str) {
        let account = Account {
            provider,
            id: id.into(),
            email: email.into(),
        };
        let mut g = self.lock();
        match g.accounts.iter_mut().find(|a| a.id == id) {
            Some(existing) => *existing = account,
            None => g.accounts.push(account),
        }
    }
    /// Current sandbox clock time.
    pub fn now(&self) -> DateTime<Utc> {
        self.lock().now()
    }
    /// Move the sandbox clock forward.
    pub fn advance(&self, by: Duration) {
        self.lock().offset += by;
    }
    /// A copy of the request log.
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.lock().log.clone()
    }
    /// Empty the request log.
    pub fn clear_log(&self) {
        self.lock().log.clear();
    }
    /// Queue a fault for the next API request of `provider`.
    pub fn push_fault(&self, provider: Provider, fault: Fault) {
        self.lock().faults.entry(pkey(provider)).or_default().push_back(fault);
    }
    /// Issues an access token for `account` directly (a new grant, valid for an
    /// hour of sandbox time), sparing tests the authorisation-code dance.
    pub fn mint_access_token(&self, account: &str) -> String {
        let mut g = self.lock();
        let now = g.now();
        g.next_grant += 1;
        let grant_id = g.next_grant;
        let access = format!("at-{}", uuid::Uuid::new_v4().simple());
        g.access.insert(
            access.clone(),
            AccessToken {
                account: account.into(),
                grant_id,
                expires: now + Duration::seconds(3600),
            },
        );
        access
    }
    /// Revoke every token of every grant of `account`.
    pub fn revoke_account_tokens(&self, account: &str) {
        let mut g = self.lock();
        let grants: Vec<u64> = g
            .access
            .values()
            .filter(|t| t.account == account)
            .map(|t| t.grant_id)
            .chain(g.refresh.values().filter(|r| r.0 == account).map(|r| r.1))
            .collect();
        for id in grants {
            g.kill_grant(id);
        }
    }
}

/// A running sandbox server.
#[derive(Debug)]
pub struct RunningSandbox {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    /// The state served.
    pub sandbox: Sandbox,
}

impl RunningSandbox {
    /// `http://127.0.0.1:port` (a wildcard bind address is shown as loopback).
    pub fn base(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}")
    }
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
    /// Root of the HTTP control API (`GET` it for an index of the routes).
    pub fn control_url(&self) -> String {
        format!("{}{}", self.base(), control::ROOT)
    }
    /// Google userinfo URL.
    pub fn google_userinfo_url(&self) -> String {
        format!("{}{GOOGLE_USERINFO}", self.base())
    }
    /// Google Calendar v3 base.
    pub fn google_api_base(&self) -> String {
        format!("{}{GOOGLE_API}", self.base())
    }
    /// Google authorize URL.
    pub fn google_oauth_authorize_url(&self) -> String {
        format!("{}{GOOGLE_AUTHORIZE}", self.base())
    }
    /// Google token URL.
    pub fn google_token_url(&self) -> String {
        format!("{}{GOOGLE_TOKEN}", self.base())
    }
    /// Google revoke URL.
    pub fn google_revoke_url(&self) -> String {
        format!("{}{GOOGLE_REVOKE}", self.base())
    }
    /// Graph base (`/me` is served).
    pub fn graph_api_base(&self) -> String {
        format!("{}{GRAPH_API}", self.base())
    }
    /// Microsoft authorize URL.
    pub fn microsoft_authorize_url(&self) -> String {
        format!("{}{MICROSOFT_AUTHORIZE}", self.base())
    }
    /// Microsoft token URL.
    pub fn microsoft_token_url(&self) -> String {
        format!("{}{MICROSOFT_TOKEN}", self.base())
    }
    /// Stop serving and wait for the server task.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Start the sandbox on 127.0.0.1 with an ephemeral port.
pub async fn start(sandbox: Sandbox) -> Result<RunningSandbox, SandboxError> {
    serve_on(sandbox, SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0))).await
}

/// Start the sandbox on `addr` (port 0 picks a free one): the provider routes
/// and the `/_sandbox` control API on one listener.
pub async fn serve_on(sandbox: Sandbox, addr: SocketAddr) -> Result<RunningSandbox, SandboxError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| SandboxError::Bind { addr, source })?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route(GOOGLE_AUTHORIZE, get(google_authorize))
        .route(GOOGLE_TOKEN, post(google_token))
        .route(GOOGLE_REVOKE, post(google_revoke))
        .route(GOOGLE_USERINFO, get(google_userinfo))
        .route(
            "/google/calendar/v3/users/me/calendarList",
            get(google_calendar::calendar_list),
        )
        .route(
            "/google/calendar/v3/calendars/{calendar}/events",
            get(google_calendar::events_list).post(google_calendar::events_insert),
        )
        .route(
            "/google/calendar/v3/calendars/{calendar}/events/watch",
            post(push::google_watch),
        )
        .route("/google/calendar/v3/channels/stop", post(push::google_stop))
        .route(
            "/google/calendar/v3/calendars/{calendar}/events/{event}",
            get(google_calendar::events_get)
                .patch(google_calendar::events_patch)
                .delete(google_calendar::events_delete),
        )
        .route(MICROSOFT_AUTHORIZE, get(ms_authorize))
        .route(MICROSOFT_TOKEN, post(ms_token))
        .route("/microsoft/v1.0/me", get(graph_me))
        .route("/microsoft/v1.0/me/calendars", get(graph_calendar::calendars))
        .route(
            "/microsoft/v1.0/me/calendars/{calendar}/calendarView/delta",
            get(graph_calendar::delta),
        )
        .route(
            "/microsoft/v1.0/me/calendars/{calendar}/events",
            post(graph_calendar::create_event),
        )
        .route(
            "/microsoft/v1.0/me/events/{event}",
            get(graph_calendar::get_event)
                .patch(graph_calendar::patch_event)
                .delete(graph_calendar::delete_event),
        )
        .route("/microsoft/v1.0/subscriptions", post(push::graph_subscribe))
        .route(
            "/microsoft/v1.0/subscriptions/{id}",
            patch(push::graph_renew).delete(push::graph_unsubscribe),
        )
        .layer(axum::middleware::from_fn_with_state(sandbox.clone(), late_answers))
        .merge(control::routes())
        .with_state(sandbox.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Ok(RunningSandbox {
        addr,
        stop: Some(tx),
        task,
        sandbox,
    })
}

/// Applies a queued [`Fault::LateAnswer`] to the provider API request it is
/// next for: the request is carried out, and its answer held back.
async fn late_answers(
    State(sb): State<Sandbox>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    let provider = if path.starts_with("/google/calendar/") {
        Some(Provider::Google)
    } else if path.starts_with("/microsoft/v1.0/") {
        Some(Provider::Microsoft)
    } else {
        None
    };
    let hold = provider.and_then(|p| {
        let mut g = sb.lock();
        let queue = g.faults.get_mut(pkey(p))?;
        match queue.front() {
            Some(Fault::LateAnswer(ms)) => {
                let ms = *ms;
                queue.pop_front();
                Some(ms)
            }
            _ => None,
        }
    });
    let response = next.run(request).await;
    if let Some(ms) = hold {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    response
}

fn bearer(h: &HeaderMap) -> Option<String> {
    h.get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

fn log(sb: &Sandbox, p: Provider, m: &Method, uri: &Uri, h: &HeaderMap) {
    let mut g = sb.lock();
    let at = g.now();
    g.log.push(LoggedRequest {
        provider: p,
        method: m.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        bearer: bearer(h),
        at,
    });
}

fn oauth_err(code: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": code}))).into_response()
}

fn authorize(sb: &Sandbox, p: Provider, q: &HashMap<String, String>) -> Response {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("response_type") != "code" || get("code_challenge_method") != "S256" || get("code_challenge").is_empty() {
        return oauth_err("invalid_request");
    }
    let redirect = get("redirect_uri");
    if redirect.is_empty() {
        return oauth_err("invalid_request");
    }
    let mut g = sb.lock();
    let hint = q.get("login_hint");
    let acct = g
        .accounts
        .iter()
        .filter(|a| a.provider == p)
        .find(|a| hint.is_none_or(|h| h == &a.email || h == &a.id))
        .map(|a| a.id.clone());
    let Some(account) = acct else {
        return oauth_err("access_denied");
    };
    g.next_grant += 1;
    let grant_id = g.next_grant;
    g.grant_scopes.insert(grant_id, get("scope"));
    let code = uuid::Uuid::new_v4().simple().to_string();
    g.codes.insert(
        code.clone(),
        CodeGrant {
            provider: p,
            account,
            client_id: get("client_id"),
            redirect_uri: redirect.clone(),
            challenge: get("code_challenge"),
            used: false,
            grant_id,
        },
    );
    let sep = if redirect.contains('?') { '&' } else { '?' };
    let loc = format!("{redirect}{sep}code={code}&state={}", enc(&get("state")));
    (StatusCode::FOUND, [(header::LOCATION, loc)]).into_response()
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn token(sb: &Sandbox, p: Provider, f: &HashMap<String, String>) -> Response {
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let mut g = sb.lock();
    let now = g.now();
    let (account, grant_id, old_refresh) = match get("grant_type").as_str() {
        "authorization_code" => {
            let Some(c) = g.codes.get(&get("code")).cloned() else {
                return oauth_err("invalid_grant");
            };
            if c.used {
                g.kill_grant(c.grant_id);
                return oauth_err("invalid_grant");
            }
            if let Some(c) = g.codes.get_mut(&get("code")) {
                c.used = true;
            }
            let digest = Sha256::digest(get("code_verifier").as_bytes());
            let chal = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_slice());
            if c.provider != p
                || c.redirect_uri != get("redirect_uri")
                || c.client_id != get("client_id")
                || chal != c.challenge
            {
                return oauth_err("invalid_grant");
            }
            (c.account, c.grant_id, None)
        }
        "refresh_token" => {
            let rt = get("refresh_token");
            match g.refresh.get(&rt) {
                Some((a, gid, prov)) if *prov == p => (a.clone(), *gid, Some(rt)),
                _ => return oauth_err("invalid_grant"),
            }
        }
        _ => return oauth_err("unsupported_grant_type"),
    };
    let access = format!("at-{}", uuid::Uuid::new_v4().simple());
    g.access.insert(
        access.clone(),
        AccessToken {
            account: account.clone(),
            grant_id,
            expires: now + Duration::seconds(3600),
        },
    );
    let refresh = match (p, old_refresh) {
        (Provider::Google, Some(old)) => old,
        (Provider::Microsoft, Some(old)) => {
            g.refresh.remove(&old);
            let r = format!("rt-{}", uuid::Uuid::new_v4().simple());
            g.refresh.insert(r.clone(), (account, grant_id, p));
            r
        }
        (_, None) => {
            let r = format!("rt-{}", uuid::Uuid::new_v4().simple());
            g.refresh.insert(r.clone(), (account, grant_id, p));
            r
        }
    };
    let scope = g.grant_scopes.get(&grant_id).cloned().unwrap_or_default();
    axum::Json(json!({
        "access_token": access, "token_type": "Bearer", "expires_in": 3600,
        "refresh_token": refresh, "scope": scope,
    }))
    .into_response()
}

/// Applies a queued fault, if any. Returns a response to send instead.
async fn fault(sb: &Sandbox, p: Provider) -> Option<Response> {
    let f = sb.lock().faults.get_mut(pkey(p)).and_then(VecDeque::pop_front)?;
    match f {
        Fault::Status { code, retry_after } => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let body = match p {
                Provider::Google => json!({"error": {"code": code, "message": "injected",
                    "errors": [{"domain": "usageLimits", "reason": "rateLimitExceeded", "message": "injected"}]}}),
                Provider::Microsoft => {
                    json!({"error": {"code": "TooManyRequests", "message": "injected", "innerError": {}}})
                }
            };
            let mut r = (status, axum::Json(body)).into_response();
            if let Some(s) = retry_after.and_then(|s| s.to_string().parse().ok()) {
                r.headers_mut().insert(header::RETRY_AFTER, s);
            }
            Some(r)
        }
        Fault::Latency(ms) => {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            None
        }
        // Taken off the queue by `late_answers` before the request reaches here.
        Fault::LateAnswer(_) => None,
        Fault::TruncatedBody => {
            Some(([(header::CONTENT_TYPE, "application/json")], "{\"items\": [{\"id\"").into_response())
        }
        Fault::MalformedBody => {
            Some(([(header::CONTENT_TYPE, "application/json")], "<html>oops</html>").into_response())
        }
    }
}

fn authed(sb: &Sandbox, h: &HeaderMap) -> Option<Account> {
    let g = sb.lock();
    let t = g.access.get(&bearer(h)?)?;
    if t.expires <= g.now() {
        return None;
    }
    g.accounts.iter().find(|a| a.id == t.account).cloned()
}

async fn google_authorize(
    State(sb): State<Sandbox>,
    m: Method,
    u: Uri,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    log(&sb, Provider::Google, &m, &u, &h);
    authorize(&sb, Provider::Google, &q)
}
async fn ms_authorize(
    State(sb): State<Sandbox>,
    m: Method,
    u: Uri,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    log(&sb, Provider::Microsoft, &m, &u, &h);
    authorize(&sb, Provider::Microsoft, &q)
}
async fn google_token(
    State(sb): State<Sandbox>,
    m: Method,
    u: Uri,
    h: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    log(&sb, Provider::Google, &m, &u, &h);
    token(&sb, Provider::Google, &f)
}
async fn ms_token(
    State(sb): State<Sandbox>,
    m: Method,
    u: Uri,
    h: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    log(&sb, Provider::Microsoft, &m, &u, &h);
    token(&sb, Provider::Microsoft, &f)
}
async fn google_revoke(
    State(sb): State<Sandbox>,
    m: Method,
    u: Uri,
    h: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    log(&sb, Provider::Google, &m, &u, &h);
    let t = f.get("token").cloned().unwrap_or_default();
    let mut g = sb.lock();
    let grant = g
        .access
        .get(&t)
        .map(|a| a.grant_id)
        .or_else(|| g.refresh.get(&t).map(|r| r.1));
    match grant {
        Some(id) => {
            g.kill_grant(id);
            StatusCode::OK.into_response()
        }
        None => oauth_err("invalid_token"),
    }
}
/// The preamble of every API route: log the request, apply a queued fault,
/// and check the bearer token (answering in the provider's error format).
async fn api_caller(sb: &Sandbox, p: Provider, m: &Method, u: &Uri, h: &HeaderMap) -> Result<Account, Box<Response>> {
    log(sb, p, m, u, h);
    if let Some(r) = fault(sb, p).await {
        return Err(Box::new(r));
    }
    authed(sb, h).ok_or_else(|| {
        let body = match p {
            Provider::Google => json!({"error": {"code": 401, "message": "Invalid Credentials",
                "errors": [{"domain": "global", "reason": "authError", "message": "Invalid Credentials"}]}}),
            Provider::Microsoft => json!({"error": {"code": "InvalidAuthenticationToken",
                "message": "Access token has expired or is not yet valid.", "innerError": {}}}),
        };
        Box::new((StatusCode::UNAUTHORIZED, axum::Json(body)).into_response())
    })
}

async fn google_userinfo(State(sb): State<Sandbox>, m: Method, u: Uri, h: HeaderMap) -> Response {
    match api_caller(&sb, Provider::Google, &m, &u, &h).await {
        Ok(a) => axum::Json(json!({"sub": a.id, "email": a.email, "email_verified": true})).into_response(),
        Err(r) => *r,
    }
}

async fn graph_me(State(sb): State<Sandbox>, m: Method, u: Uri, h: HeaderMap) -> Response {
    match api_caller(&sb, Provider::Microsoft, &m, &u, &h).await {
        Ok(a) => axum::Json(json!({"id": a.id, "mail": a.email, "userPrincipalName": a.email})).into_response(),
        Err(r) => *r,
    }
}
