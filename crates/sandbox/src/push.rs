//! Push notifications, as PROVIDERS.md describes them.
//!
//! Google: `POST /calendars/{id}/events/watch` opens a channel (a `ttl` of at
//! most a week, measured on the sandbox clock; `expiration` in milliseconds
//! since the epoch, as a string) and `POST /channels/stop` closes it. A new
//! channel gets a `sync` message, then every change to the calendar's events
//! an `exists` message: an empty `POST` with the `X-Goog-*` headers and an
//! increasing `X-Goog-Message-Number`.
//!
//! Graph: `POST /subscriptions` first checks the notification URL (and the
//! lifecycle URL, if given) with `?validationToken=…`, which must be echoed
//! as `200 text/plain` within 10 s; `expirationDateTime` may lie at most
//! 10080 minutes ahead. `PATCH /subscriptions/{id}` renews, `DELETE` ends
//! it. Every created, updated or deleted event is posted as
//! `{"value": [{subscriptionId, clientState, changeType, resource, resourceData, …}]}`;
//! lifecycle notifications are fired by tests ([`Sandbox::fire_graph_lifecycle`]).
//!
//! Notifications are sent by spawned tasks, never under the state mutex,
//! with a short timeout; failures are recorded, never retried. Channels and
//! subscriptions that expired on the sandbox clock get nothing.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::{Provider, Sandbox, SandboxError, api_caller, enc};

/// The longest a Google channel lives (and its default `ttl`): a week.
const GOOGLE_MAX_TTL_SECONDS: i64 = 7 * 24 * 3600;
/// The farthest ahead a Graph subscription on Outlook events may expire.
const GRAPH_MAX_MINUTES: i64 = 10080;
/// How long a receiver has to answer a notification.
const DELIVERY_TIMEOUT: StdDuration = StdDuration::from_secs(5);
/// How long a receiver has to echo Graph's validation token.
const VALIDATION_TIMEOUT: StdDuration = StdDuration::from_secs(10);
/// The Microsoft tenant every sandbox mailbox belongs to.
const TENANT_ID: &str = "5a4d0b00-0000-4000-8000-00000000a11e";
/// Graph's change types.
const CHANGE_TYPES: &[&str] = &["created", "updated", "deleted"];

/// A Graph lifecycle notification ([`Sandbox::fire_graph_lifecycle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// The subscription's access must be renewed (`reauthorizationRequired`).
    ReauthorizationRequired,
    /// Graph removed the subscription (`subscriptionRemoved`); the sandbox forgets it.
    SubscriptionRemoved,
    /// Notifications were lost (`missed`): resynchronise.
    Missed,
}

impl LifecycleEvent {
    /// Graph's name of the event.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReauthorizationRequired => "reauthorizationRequired",
            Self::SubscriptionRemoved => "subscriptionRemoved",
            Self::Missed => "missed",
        }
    }

    /// The event named `name`, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::ReauthorizationRequired, Self::SubscriptionRemoved, Self::Missed]
            .into_iter()
            .find(|e| e.as_str() == name)
    }
}

/// A live Google channel or Graph subscription, as [`Sandbox::push_watches`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// Google or Microsoft.
    pub provider: Provider,
    /// The Google channel id or the Graph subscription id.
    pub id: String,
    /// Google's `resourceId`; `None` for Graph.
    pub resource_id: Option<String>,
    /// The account that opened it.
    pub account: String,
    /// The watched calendar; `None` for a Graph subscription on `me/events`.
    pub calendar: Option<String>,
    /// Where notifications go.
    pub address: String,
    /// Graph's `lifecycleNotificationUrl`.
    pub lifecycle_address: Option<String>,
    /// When it expires (sandbox clock).
    pub expires_at: DateTime<Utc>,
    /// Google's channel token or Graph's `clientState`.
    pub secret: Option<String>,
}

/// One notification the sandbox sent or tried to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushDelivery {
    /// Google or Microsoft.
    pub provider: Provider,
    /// The Google channel id or the Graph subscription id (for a Graph
    /// validation: the subscription being created has no id yet, so empty).
    pub channel_id: String,
    /// Google's resource state (`sync`, `exists`), Graph's change type
    /// (`created`, `updated`, `deleted`), a lifecycle event, or `validation`.
    pub kind: String,
    /// Where it was posted.
    pub url: String,
    /// Google's `X-Goog-Message-Number`.
    pub message_number: Option<u64>,
    /// The changed event, for Graph change notifications.
    pub event_id: Option<String>,
    /// The receiver's status; `None` when no answer came.
    pub status: Option<u16>,
    /// Why it failed: no answer, or (validation) a wrong echo.
    pub error: Option<String>,
    /// When it finished (sandbox clock).
    pub at: DateTime<Utc>,
}

impl PushDelivery {
    /// Whether the receiver accepted it (2xx, and for a validation the right echo).
    pub fn accepted(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

#[derive(Debug, Clone)]
struct GoogleChannel {
    id: String,
    resource_id: String,
    resource_uri: String,
    token: Option<String>,
    address: String,
    account: String,
    calendar: String,
    expiration: DateTime<Utc>,
    /// The last `X-Goog-Message-Number` sent.
    messages: u64,
}

#[derive(Debug, Clone)]
struct GraphSubscription {
    id: String,
    account: String,
    /// `None`: every calendar of the account (`me/events`).
    calendar: Option<String>,
    resource: String,
    change_type: String,
    notification_url: String,
    lifecycle_url: Option<String>,
    expiration: DateTime<Utc>,
    client_state: Option<String>,
}

impl GraphSubscription {
    fn wants(&self, kind: &str) -> bool {
        self.change_type.split(',').any(|t| t.trim() == kind)
    }

    fn resource_json(&self) -> Value {
        json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity",
            "id": self.id,
            "resource": self.resource,
            "changeType": self.change_type,
            "notificationUrl": self.notification_url,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": graph_instant(self.expiration),
            "clientState": self.client_state,
            "latestSupportedTlsVersion": "v1_2",
        })
    }
}

/// A change to a Graph calendar's events, waiting to be notified.
#[derive(Debug, Clone)]
pub(crate) struct GraphChange {
    pub(crate) calendar: String,
    pub(crate) event: String,
    /// `created`, `updated` or `deleted`.
    pub(crate) kind: &'static str,
}

/// Push state inside the sandbox.
#[derive(Debug, Default)]
pub(crate) struct PushState {
    google: Vec<GoogleChannel>,
    graph: Vec<GraphSubscription>,
    deliveries: Vec<PushDelivery>,
    /// Woken whenever a delivery is recorded.
    recorded: Arc<tokio::sync::Notify>,
    /// Built on first use.
    http: Option<reqwest::Client>,
}

/// A notification to send once the state lock is released.
#[derive(Debug)]
struct Outgoing {
    provider: Provider,
    channel_id: String,
    kind: String,
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Option<Value>,
    message_number: Option<u64>,
    event_id: Option<String>,
}

/// The notification client: plain http. TLS is configured with an explicit
/// provider and no trusted roots, so nothing is installed process-wide and
/// no https receiver can be reached (tests and dev runs listen on http).
fn build_client() -> Result<reqwest::Client, String> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| format!("building the notification client: {e}"))
}

/// Graph's instant format (UTC, fractional seconds).
fn graph_instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Google's `resourceId`: opaque, the same for every channel on one calendar.
fn google_resource_id(calendar: &str) -> String {
    let digest = Sha256::digest(format!("events:{calendar}").as_bytes());
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// An absolute `http`/`https` URL without credentials.
fn callback_url(text: &str) -> Option<reqwest::Url> {
    let url = reqwest::Url::parse(text).ok()?;
    (matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none())
    .then_some(url)
}

fn google_error(status: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message,
        "errors": [{"domain": "global", "reason": reason, "message": message}]}});
    (status, axum::Json(body)).into_response()
}

fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message, "innerError": {}}});
    (status, axum::Json(body)).into_response()
}

fn object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(fields)) => Some(fields),
        _ => None,
    }
}

fn text<'a>(fields: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    fields.get(key).and_then(Value::as_str)
}

/// The sandbox's own Google API base as the caller reached it.
fn google_base(h: &HeaderMap) -> String {
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1");
    format!("http://{host}{}", crate::GOOGLE_API)
}

/// A Google channel's `ttl` parameter (seconds, sent as a string or a number).
fn ttl_seconds(fields: &Map<String, Value>) -> Result<i64, ()> {
    let Some(ttl) = fields.get("params").and_then(|p| p.get("ttl")) else {
        return Ok(GOOGLE_MAX_TTL_SECONDS);
    };
    let seconds = match ttl {
        Value::String(s) => s.trim().parse::<i64>().map_err(|_| ())?,
        Value::Number(n) => n.as_i64().ok_or(())?,
        _ => return Err(()),
    };
    if seconds < 1 {
        return Err(());
    }
    Ok(seconds.min(GOOGLE_MAX_TTL_SECONDS))
}

/// `events.watch`: opens a channel on a calendar the caller can see and sends its `sync` message.
pub(crate) async fn google_watch(
    State(sb): State<Sandbox>,
    Path(calendar): Path<String>,
    m: Method,
    u: Uri,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let account = match api_caller(&sb, Provider::Google, &m, &u, &h).await {
        Ok(account) => account,
        Err(r) => return *r,
    };
    let Some(fields) = object(&body) else {
        return google_error(StatusCode::BAD_REQUEST, "parseError", "Parse Error");
    };
    let id = match text(&fields, "id") {
        Some(id)
            if (1..=64).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_+/=".contains(&b)) =>
        {
            id.to_owned()
        }
        _ => return google_error(StatusCode::BAD_REQUEST, "invalid", "Invalid channel id."),
    };
    if !matches!(text(&fields, "type"), Some("web_hook" | "webhook")) {
        return google_error(StatusCode::BAD_REQUEST, "invalid", "Invalid channel type.");
    }
    let Some(address) = text(&fields, "address").and_then(callback_url) else {
        return google_error(StatusCode::BAD_REQUEST, "invalid", "Invalid address.");
    };
    let token = match fields.get("token") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if t.len() <= 256 => Some(t.clone()),
        Some(_) => return google_error(StatusCode::BAD_REQUEST, "invalid", "Invalid channel token."),
    };
    let Ok(ttl) = ttl_seconds(&fields) else {
        return google_error(StatusCode::BAD_REQUEST, "invalid", "Invalid ttl.");
    };
    let (channel, sync) = {
        let mut g = sb.lock();
        let now = g.now();
        let visible = g
            .google
            .calendars
            .iter()
            .any(|c| c.id == calendar && c.account == account.id);
        if !visible {
            return google_error(StatusCode::NOT_FOUND, "notFound", "Not Found");
        }
        if g.push.google.iter().any(|c| c.id == id) {
            return google_error(StatusCode::BAD_REQUEST, "channelIdNotUnique", "Channel id not unique.");
        }
        let mut channel = GoogleChannel {
            resource_id: google_resource_id(&calendar),
            resource_uri: format!("{}/calendars/{}/events?alt=json", google_base(&h), enc(&calendar)),
            id,
            token,
            address: address.to_string(),
            account: account.id.clone(),
            calendar,
            expiration: now + Duration::seconds(ttl),
            messages: 0,
        };
        let sync = google_message(&mut channel, "sync");
        g.push.google.push(channel.clone());
        (channel, sync)
    };
    sb.send_all(vec![sync]);
    let mut answer = json!({
        "kind": "api#channel",
        "id": channel.id,
        "resourceId": channel.resource_id,
        "resourceUri": channel.resource_uri,
        "expiration": channel.expiration.timestamp_millis().to_string(),
    });
    if let Some(token) = &channel.token {
        answer["token"] = json!(token);
    }
    axum::Json(answer).into_response()
}

/// `channels.stop`: 204; 404 for a channel the caller does not hold.
pub(crate) async fn google_stop(State(sb): State<Sandbox>, m: Method, u: Uri, h: HeaderMap, body: Bytes) -> Response {
    let account = match api_caller(&sb, Provider::Google, &m, &u, &h).await {
        Ok(account) => account,
        Err(r) => return *r,
    };
    let Some(fields) = object(&body) else {
        return google_error(StatusCode::BAD_REQUEST, "parseError", "Parse Error");
    };
    let (Some(id), Some(resource_id)) = (text(&fields, "id"), text(&fields, "resourceId")) else {
        return google_error(
            StatusCode::BAD_REQUEST,
            "required",
            "Required parameter: id, resourceId",
        );
    };
    let mut g = sb.lock();
    let before = g.push.google.len();
    g.push
        .google
        .retain(|c| !(c.id == id && c.resource_id == resource_id && c.account == account.id));
    if g.push.google.len() == before {
        return google_error(
            StatusCode::NOT_FOUND,
            "notFound",
            &format!("Channel '{id}' not found for project"),
        );
    }
    StatusCode::NO_CONTENT.into_response()
}

/// The next message of a Google channel (its number counted on).
fn google_message(channel: &mut GoogleChannel, state: &str) -> Outgoing {
    channel.messages += 1;
    let mut headers = vec![
        ("X-Goog-Channel-ID", channel.id.clone()),
        ("X-Goog-Resource-ID", channel.resource_id.clone()),
        ("X-Goog-Resource-URI", channel.resource_uri.clone()),
        ("X-Goog-Resource-State", state.to_owned()),
        ("X-Goog-Message-Number", channel.messages.to_string()),
        (
            "X-Goog-Channel-Expiration",
            channel.expiration.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        ),
    ];
    if let Some(token) = &channel.token {
        headers.push(("X-Goog-Channel-Token", token.clone()));
    }
    Outgoing {
        provider: Provider::Google,
        channel_id: channel.id.clone(),
        kind: state.to_owned(),
        url: channel.address.clone(),
        headers,
        body: None,
        message_number: Some(channel.messages),
        event_id: None,
    }
}

/// The calendar a subscription `resource` names: `me/calendars/{id}/events`
/// (`Some(id)`) or `me/events` (`None`, every calendar); `Err` for others.
fn subscribed_calendar(resource: &str) -> Result<Option<String>, ()> {
    let path = resource.trim_start_matches('/');
    if path.eq_ignore_ascii_case("me/events") {
        return Ok(None);
    }
    let id = path
        .strip_prefix("me/calendars/")
        .and_then(|rest| rest.strip_suffix("/events"))
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .ok_or(())?;
    Ok(Some(id.to_owned()))
}

/// A subscription's `expirationDateTime`: in the future, at most 10080
/// minutes ahead; `Err` with Graph's message otherwise.
fn subscription_expiry(fields: &Map<String, Value>, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let at = text(fields, "expirationDateTime")
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or("expirationDateTime is required and must be an ISO 8601 time.")?;
    if at <= now {
        return Err("Subscription expiration must be in the future.".into());
    }
    if at > now + Duration::minutes(GRAPH_MAX_MINUTES) {
        return Err(format!(
            "Subscription expiration can only be {GRAPH_MAX_MINUTES} minutes in the future."
        ));
    }
    Ok(at)
}

/// `POST /subscriptions`: checked, then validated with the receiver, then created (201).
pub(crate) async fn graph_subscribe(
    State(sb): State<Sandbox>,
    m: Method,
    u: Uri,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let account = match api_caller(&sb, Provider::Microsoft, &m, &u, &h).await {
        Ok(account) => account,
        Err(r) => return *r,
    };
    let Some(fields) = object(&body) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Unable to read JSON request payload.",
        );
    };
    let invalid = |message: &str| graph_error(StatusCode::BAD_REQUEST, "InvalidRequest", message);
    let change_type = text(&fields, "changeType").unwrap_or_default();
    let kinds: Vec<&str> = change_type.split(',').map(str::trim).collect();
    if change_type.is_empty() || kinds.iter().any(|k| !CHANGE_TYPES.contains(k)) {
        return invalid("changeType must be a comma-separated list of created, updated, deleted.");
    }
    let Some(notification_url) = text(&fields, "notificationUrl").and_then(callback_url) else {
        return invalid("notificationUrl must be an absolute http(s) URL.");
    };
    let lifecycle_url = match fields.get("lifecycleNotificationUrl") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_str().and_then(callback_url) {
            Some(url) => Some(url),
            None => return invalid("lifecycleNotificationUrl must be an absolute http(s) URL."),
        },
    };
    let resource = text(&fields, "resource").unwrap_or_default().to_owned();
    let Ok(calendar) = subscribed_calendar(&resource) else {
        return invalid("resource must be me/events or me/calendars/{id}/events.");
    };
    let client_state = match fields.get("clientState") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() <= 128 => Some(s.clone()),
        Some(_) => return invalid("clientState must be a string of at most 128 characters."),
    };
    let (client, expiration) = {
        let mut g = sb.lock();
        let now = g.now();
        let expiration = match subscription_expiry(&fields, now) {
            Ok(at) => at,
            Err(message) => return invalid(&message),
        };
        if let Some(calendar) = &calendar
            && !g
                .graph
                .calendars
                .iter()
                .any(|c| c.id == *calendar && c.account == account.id)
        {
            return graph_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                "The resource of the subscription was not found.",
            );
        }
        (g.push.client(), expiration)
    };
    let client = match client {
        Ok(client) => client,
        Err(e) => return graph_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", &e),
    };
    // Graph checks the receivers before it answers, outside the state lock.
    for url in std::iter::once(&notification_url).chain(lifecycle_url.as_ref()) {
        let outcome = validate(&client, url.clone()).await;
        let failed = outcome.error.is_some();
        sb.record(outcome);
        if failed {
            return graph_error(
                StatusCode::BAD_REQUEST,
                "ValidationError",
                "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request.",
            );
        }
    }
    let subscription = GraphSubscription {
        id: uuid::Uuid::new_v4().to_string(),
        account: account.id,
        calendar,
        resource,
        change_type: kinds.join(","),
        notification_url: notification_url.to_string(),
        lifecycle_url: lifecycle_url.map(|u| u.to_string()),
        expiration,
        client_state,
    };
    let answer = subscription.resource_json();
    sb.lock().push.graph.push(subscription);
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

/// Posts `?validationToken=…` to `url` and checks the echo (200, `text/plain`, the token).
async fn validate(client: &reqwest::Client, mut url: reqwest::Url) -> PushDelivery {
    let token = format!(
        "Validation: Testing client application reachability for subscription Request-Id: {}",
        uuid::Uuid::new_v4()
    );
    let target = url.to_string();
    url.query_pairs_mut().append_pair("validationToken", &token);
    let (status, error) = match client
        .post(url)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .timeout(VALIDATION_TIMEOUT)
        .send()
        .await
    {
        Err(e) => (None, Some(e.without_url().to_string())),
        Ok(response) => {
            let status = response.status().as_u16();
            let plain = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/plain"));
            let error = match response.text().await {
                Err(e) => Some(e.without_url().to_string()),
                Ok(_) if status != 200 => Some(format!("answered {status}, not 200")),
                Ok(_) if !plain => Some("the echo is not text/plain".to_owned()),
                Ok(echo) if echo != token => Some("the echo is not the validation token".to_owned()),
                Ok(_) => None,
            };
            (Some(status), error)
        }
    };
    PushDelivery {
        provider: Provider::Microsoft,
        channel_id: String::new(),
        kind: "validation".into(),
        url: target,
        message_number: None,
        event_id: None,
        status,
        error,
        at: Utc::now(),
    }
}

/// `PATCH /subscriptions/{id}`: a new `expirationDateTime` for a live subscription of the caller.
pub(crate) async fn graph_renew(
    State(sb): State<Sandbox>,
    Path(id): Path<String>,
    m: Method,
    u: Uri,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let account = match api_caller(&sb, Provider::Microsoft, &m, &u, &h).await {
        Ok(account) => account,
        Err(r) => return *r,
    };
    let Some(fields) = object(&body) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Unable to read JSON request payload.",
        );
    };
    let mut g = sb.lock();
    let now = g.now();
    let Some(subscription) = g
        .push
        .graph
        .iter_mut()
        .find(|s| s.id == id && s.account == account.id && s.expiration > now)
    else {
        return subscription_not_found(&id);
    };
    match subscription_expiry(&fields, now) {
        Ok(at) => subscription.expiration = at,
        Err(message) => return graph_error(StatusCode::BAD_REQUEST, "InvalidRequest", &message),
    }
    axum::Json(subscription.resource_json()).into_response()
}

/// `DELETE /subscriptions/{id}`: 204; 404 for a subscription the caller does not hold.
pub(crate) async fn graph_unsubscribe(
    State(sb): State<Sandbox>,
    Path(id): Path<String>,
    m: Method,
    u: Uri,
    h: HeaderMap,
) -> Response {
    let account = match api_caller(&sb, Provider::Microsoft, &m, &u, &h).await {
        Ok(account) => account,
        Err(r) => return *r,
    };
    let mut g = sb.lock();
    let now = g.now();
    let before = g.push.graph.len();
    g.push
        .graph
        .retain(|s| !(s.id == id && s.account == account.id && s.expiration > now));
    if g.push.graph.len() == before {
        return subscription_not_found(&id);
    }
    StatusCode::NO_CONTENT.into_response()
}

fn subscription_not_found(id: &str) -> Response {
    graph_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        &format!("The object '{id}' was not found."),
    )
}

impl PushState {
    /// The notification client, built on first use.
    fn client(&mut self) -> Result<reqwest::Client, String> {
        if let Some(client) = &self.http {
            return Ok(client.clone());
        }
        let client = build_client()?;
        self.http = Some(client.clone());
        Ok(client)
    }
}

impl Sandbox {
    /// Notifies the watchers of every change stored since the last call:
    /// an `exists` message per changed Google calendar and channel, a Graph
    /// notification per changed event and subscription. Call it after
    /// releasing the state lock.
    pub(crate) fn notify_changes(&self) {
        let outgoing = {
            let mut g = self.lock();
            let now = g.now();
            let google: BTreeSet<String> = std::mem::take(&mut g.google.changed).into_iter().collect();
            let graph = std::mem::take(&mut g.graph.changed);
            if google.is_empty() && graph.is_empty() {
                return;
            }
            let mut outgoing = Vec::new();
            for channel in g.push.google.iter_mut() {
                if channel.expiration > now && google.contains(&channel.calendar) {
                    outgoing.push(google_message(channel, "exists"));
                }
            }
            let inner = &*g;
            for change in &graph {
                let owners: Vec<&str> = inner
                    .graph
                    .calendars
                    .iter()
                    .filter(|c| c.id == change.calendar)
                    .map(|c| c.account.as_str())
                    .collect();
                for subscription in &inner.push.graph {
                    let watched = match &subscription.calendar {
                        Some(calendar) => *calendar == change.calendar,
                        None => owners.contains(&subscription.account.as_str()),
                    };
                    if watched && subscription.expiration > now && subscription.wants(change.kind) {
                        outgoing.push(graph_message(subscription, change));
                    }
                }
            }
            outgoing
        };
        self.send_all(outgoing);
    }

    /// Sends each message from its own task; without a runtime, records the failure.
    fn send_all(&self, outgoing: Vec<Outgoing>) {
        if outgoing.is_empty() {
            return;
        }
        let client = self.lock().push.client();
        let runtime = tokio::runtime::Handle::try_current();
        for message in outgoing {
            let failure = match (&client, &runtime) {
                (Ok(client), Ok(runtime)) => {
                    let (sb, client) = (self.clone(), client.clone());
                    runtime.spawn(async move {
                        let delivery = deliver(&client, message).await;
                        sb.record(delivery);
                    });
                    continue;
                }
                (Err(e), _) => e.clone(),
                (_, Err(_)) => "no async runtime to send from".to_owned(),
            };
            self.record(message.failed(failure));
        }
    }

    /// Records a finished delivery and wakes whoever waits for one.
    fn record(&self, mut delivery: PushDelivery) {
        let recorded = {
            let mut g = self.lock();
            delivery.at = g.now();
            g.push.deliveries.push(delivery);
            Arc::clone(&g.push.recorded)
        };
        recorded.notify_waiters();
    }

    /// Every live Google channel and Graph subscription, expired ones included.
    pub fn push_watches(&self) -> Vec<Watch> {
        let g = self.lock();
        let google = g.push.google.iter().map(|c| Watch {
            provider: Provider::Google,
            id: c.id.clone(),
            resource_id: Some(c.resource_id.clone()),
            account: c.account.clone(),
            calendar: Some(c.calendar.clone()),
            address: c.address.clone(),
            lifecycle_address: None,
            expires_at: c.expiration,
            secret: c.token.clone(),
        });
        let graph = g.push.graph.iter().map(|s| Watch {
            provider: Provider::Microsoft,
            id: s.id.clone(),
            resource_id: None,
            account: s.account.clone(),
            calendar: s.calendar.clone(),
            address: s.notification_url.clone(),
            lifecycle_address: s.lifecycle_url.clone(),
            expires_at: s.expiration,
            secret: s.client_state.clone(),
        });
        google.chain(graph).collect()
    }

    /// Every notification sent or tried so far, in the order they finished.
    pub fn push_deliveries(&self) -> Vec<PushDelivery> {
        self.lock().push.deliveries.clone()
    }

    /// Forgets the recorded deliveries.
    pub fn clear_push_deliveries(&self) {
        self.lock().push.deliveries.clear();
    }

    /// Waits until at least `count` deliveries are recorded or `timeout`
    /// passes, and returns what is recorded then.
    pub async fn wait_for_push_deliveries(&self, count: usize, timeout: StdDuration) -> Vec<PushDelivery> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let recorded = Arc::clone(&self.lock().push.recorded);
            let notified = recorded.notified();
            tokio::pin!(notified);
            // Registered before looking, so a delivery recorded in between still wakes us.
            notified.as_mut().enable();
            let deliveries = self.push_deliveries();
            if deliveries.len() >= count {
                return deliveries;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.push_deliveries();
            }
        }
    }

    /// Sends a Graph lifecycle notification for `subscription` to its
    /// `lifecycleNotificationUrl` (asynchronously, like every notification).
    /// `subscriptionRemoved` also ends the subscription.
    pub fn fire_graph_lifecycle(&self, subscription: &str, event: LifecycleEvent) -> Result<(), SandboxError> {
        let message = {
            let mut g = self.lock();
            let Some(position) = g.push.graph.iter().position(|s| s.id == subscription) else {
                return Err(SandboxError::UnknownSubscription(subscription.to_owned()));
            };
            let s = &g.push.graph[position];
            let Some(url) = s.lifecycle_url.clone() else {
                return Err(SandboxError::NoLifecycleUrl(subscription.to_owned()));
            };
            let body = json!({"value": [{
                "subscriptionId": s.id,
                "subscriptionExpirationDateTime": graph_instant(s.expiration),
                "clientState": s.client_state,
                "lifecycleEvent": event.as_str(),
                "tenantId": TENANT_ID,
            }]});
            let message = Outgoing {
                provider: Provider::Microsoft,
                channel_id: s.id.clone(),
                kind: event.as_str().to_owned(),
                url,
                headers: Vec::new(),
                body: Some(body),
                message_number: None,
                event_id: None,
            };
            if event == LifecycleEvent::SubscriptionRemoved {
                g.push.graph.remove(position);
            }
            message
        };
        self.send_all(vec![message]);
        Ok(())
    }
}

/// A Graph change notification of one event for one subscription.
fn graph_message(subscription: &GraphSubscription, change: &GraphChange) -> Outgoing {
    let resource = format!("me/events/{}", change.event);
    let body = json!({"value": [{
        "subscriptionId": subscription.id,
        "subscriptionExpirationDateTime": graph_instant(subscription.expiration),
        "clientState": subscription.client_state,
        "changeType": change.kind,
        "resource": resource,
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Event",
            "@odata.id": resource,
            "id": change.event,
        },
        "tenantId": TENANT_ID,
    }]});
    Outgoing {
        provider: Provider::Microsoft,
        channel_id: subscription.id.clone(),
        kind: change.kind.to_owned(),
        url: subscription.notification_url.clone(),
        headers: Vec::new(),
        body: Some(body),
        message_number: None,
        event_id: Some(change.event.clone()),
    }
}

impl Outgoing {
    /// The record of this message, not sent or unanswered.
    fn failed(self, error: String) -> PushDelivery {
        self.finished(None, Some(error))
    }

    fn finished(self, status: Option<u16>, error: Option<String>) -> PushDelivery {
        PushDelivery {
            provider: self.provider,
            channel_id: self.channel_id,
            kind: self.kind,
            url: self.url,
            message_number: self.message_number,
            event_id: self.event_id,
            status,
            error,
            at: Utc::now(),
        }
    }
}

/// Posts one notification; the answer's body is not read.
async fn deliver(client: &reqwest::Client, message: Outgoing) -> PushDelivery {
    let mut request = client.post(&message.url).timeout(DELIVERY_TIMEOUT);
    for (name, value) in &message.headers {
        request = request.header(*name, value);
    }
    request = match &message.body {
        Some(body) => request.json(body),
        None => request.header(header::CONTENT_LENGTH, "0"),
    };
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            message.finished(Some(status), None)
        }
        Err(e) => {
            let error = e.without_url().to_string();
            message.failed(error)
        }
    }
}
