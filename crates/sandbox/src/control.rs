//! The HTTP control API under `/_sandbox`: the operations tests call as
//! methods on [`Sandbox`] (accounts, calendars, events, series, faults, the
//! clock, the request log, token revocation, push channels and their
//! deliveries, Graph lifecycle notifications), for a sandbox running as its
//! own process and driven with curl. JSON in, JSON out; a bad body answers
//! 400 naming the field. Control routes never go through the API preamble:
//! they are not logged, need no token and never consume a fault.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post, put};
use chrono::{DateTime, Duration, NaiveTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::{
    Fault, Frequency, GOOGLE_API, GOOGLE_AUTHORIZE, GOOGLE_REVOKE, GOOGLE_TOKEN, GOOGLE_USERINFO, GRAPH_API,
    LifecycleEvent, LoggedRequest, MICROSOFT_AUTHORIZE, MICROSOFT_TOKEN, Provider, PushDelivery, Recurrence, Sandbox,
    SandboxError, Watch, google_calendar, graph_calendar, pkey,
};

/// Where the control API lives.
pub(crate) const ROOT: &str = "/_sandbox";

/// Google's calendar access roles.
const ACCESS_ROLES: &[&str] = &["owner", "writer", "reader", "freeBusyReader"];
/// Longest occurrence of a control-made series: two weeks.
const MAX_DURATION_MINUTES: u64 = 14 * 24 * 60;
/// Most occurrences of a control-made series (each listing expands them all).
const MAX_OCCURRENCES: u64 = 1000;
/// Longest injectable latency: a minute.
const MAX_LATENCY_MS: u64 = 60_000;
/// Most faults queued by one request.
const MAX_FAULT_COUNT: u64 = 100;
/// Farthest the clock moves in one request: ten years.
const MAX_ADVANCE_SECONDS: u64 = 10 * 366 * 24 * 3600;
/// Longest wait for push deliveries in one request: thirty seconds.
const MAX_WAIT_MS: u64 = 30_000;
/// Query parameters whose values the request log shows only as a fingerprint.
const SECRET_PARAMS: &[&str] = &[
    "access_token",
    "refresh_token",
    "code",
    "client_secret",
    "code_verifier",
];

/// Every control route (method, path, body, what it does), as `GET /_sandbox` lists them.
const ROUTES: &[(&str, &str, &str, &str)] = &[
    ("GET", "/_sandbox", "", "this index"),
    (
        "GET",
        "/_sandbox/accounts",
        "",
        "accounts with their calendars and event counts",
    ),
    (
        "POST",
        "/_sandbox/accounts",
        r#"{"provider": "google"|"microsoft", "id", "email"}"#,
        "add an account (same id: replaced)",
    ),
    (
        "POST",
        "/_sandbox/accounts/{id}/access-token",
        "",
        "mint an access token for the account (an hour of sandbox time)",
    ),
    (
        "POST",
        "/_sandbox/accounts/{id}/revoke-tokens",
        "",
        "revoke every token of the account",
    ),
    (
        "POST",
        "/_sandbox/google/calendars",
        r#"{"account", "id", "summary"?, "access_role"?: "owner"|"writer"|"reader"|"freeBusyReader", "primary"?}"#,
        "add a Google calendar to an account",
    ),
    (
        "PUT",
        "/_sandbox/google/calendars/{calendar}/events",
        r#"a Google event resource with "id", "start" and "end""#,
        "create or replace an event; answers its etag",
    ),
    (
        "POST",
        "/_sandbox/google/calendars/{calendar}/series",
        r#"{"id", "first_start": RFC 3339, "duration_minutes", "freq": "daily"|"weekly", "count", "fields"?: {...}}"#,
        "create or replace a recurring series",
    ),
    (
        "DELETE",
        "/_sandbox/google/calendars/{calendar}/events/{id}",
        "",
        "delete an event or series (incremental listings show it cancelled)",
    ),
    (
        "POST",
        "/_sandbox/google/expire-sync-tokens",
        "",
        "the next incremental listing answers 410",
    ),
    (
        "POST",
        "/_sandbox/microsoft/calendars",
        r#"{"account", "id", "name"?, "can_edit"?, "default"?}"#,
        "add a Graph calendar to an account",
    ),
    (
        "PUT",
        "/_sandbox/microsoft/calendars/{calendar}/events",
        r#"a Graph event resource with "id", "start" and "end" ({"dateTime": "2026-01-05T09:00:00", "timeZone": "UTC" or an IANA zone})"#,
        "create or replace an event; answers its @odata.etag",
    ),
    (
        "POST",
        "/_sandbox/microsoft/calendars/{calendar}/series",
        r#"{"id", "first_start": RFC 3339, "duration_minutes", "freq": "daily"|"weekly", "count", "fields"?: {...}}"#,
        "create or replace a recurring series",
    ),
    (
        "DELETE",
        "/_sandbox/microsoft/calendars/{calendar}/events/{id}",
        "",
        "delete an event or series (the next delta round shows it @removed)",
    ),
    (
        "POST",
        "/_sandbox/microsoft/expire-delta-tokens",
        "",
        "the next delta or skip token answers 410",
    ),
    ("GET", "/_sandbox/faults", "", "faults waiting, per provider"),
    (
        "POST",
        "/_sandbox/faults",
        r#"{"provider", one of "status" (+ "retry_after"?), "latency_ms", "late_answer_ms", "kind": "truncated"|"malformed"; "count"?}"#,
        "queue faults for the next API requests of a provider (OAuth endpoints are exempt)",
    ),
    ("DELETE", "/_sandbox/faults", "", "drop every waiting fault"),
    ("GET", "/_sandbox/clock", "", "the sandbox time"),
    (
        "POST",
        "/_sandbox/clock/advance",
        r#"{"seconds"}"#,
        "move the sandbox clock forward",
    ),
    (
        "GET",
        "/_sandbox/requests",
        "",
        "the request log (bearer tokens as fingerprints)",
    ),
    ("DELETE", "/_sandbox/requests", "", "empty the request log"),
    (
        "GET",
        "/_sandbox/push",
        "",
        "Google channels and Graph subscriptions (secrets as fingerprints) and the push deliveries so far",
    ),
    (
        "GET",
        "/_sandbox/push/deliveries?min={n}&timeout_ms={ms}",
        "",
        "the push deliveries, once at least `min` are recorded or `timeout_ms` (at most 30000) passed",
    ),
    (
        "DELETE",
        "/_sandbox/push/deliveries",
        "",
        "forget the recorded push deliveries",
    ),
    (
        "POST",
        "/_sandbox/microsoft/subscriptions/{id}/lifecycle",
        r#"{"event": "reauthorizationRequired"|"subscriptionRemoved"|"missed"}"#,
        "post a lifecycle notification to the subscription's lifecycleNotificationUrl (subscriptionRemoved also ends it)",
    ),
];

/// The control routes, to merge into the sandbox's router.
pub(crate) fn routes() -> Router<Sandbox> {
    Router::new()
        .route(ROOT, get(index))
        .route("/_sandbox/accounts", get(list_accounts).post(add_account))
        .route("/_sandbox/accounts/{id}/access-token", post(mint_token))
        .route("/_sandbox/accounts/{id}/revoke-tokens", post(revoke_tokens))
        .route("/_sandbox/google/calendars", post(add_google_calendar))
        .route("/_sandbox/google/calendars/{calendar}/events", put(put_google_event))
        .route("/_sandbox/google/calendars/{calendar}/series", post(put_google_series))
        .route(
            "/_sandbox/google/calendars/{calendar}/events/{id}",
            delete(delete_google_event),
        )
        .route("/_sandbox/google/expire-sync-tokens", post(expire_google))
        .route("/_sandbox/microsoft/calendars", post(add_graph_calendar))
        .route("/_sandbox/microsoft/calendars/{calendar}/events", put(put_graph_event))
        .route(
            "/_sandbox/microsoft/calendars/{calendar}/series",
            post(put_graph_series),
        )
        .route(
            "/_sandbox/microsoft/calendars/{calendar}/events/{id}",
            delete(delete_graph_event),
        )
        .route("/_sandbox/microsoft/expire-delta-tokens", post(expire_graph))
        .route(
            "/_sandbox/faults",
            get(list_faults).post(add_faults).delete(clear_faults),
        )
        .route("/_sandbox/clock", get(clock))
        .route("/_sandbox/clock/advance", post(advance))
        .route("/_sandbox/requests", get(requests).delete(clear_requests))
        .route("/_sandbox/push", get(push))
        .route(
            "/_sandbox/push/deliveries",
            get(push_deliveries).delete(clear_push_deliveries),
        )
        .route("/_sandbox/microsoft/subscriptions/{id}/lifecycle", post(fire_lifecycle))
        .route("/_sandbox/", get(index))
        .route("/_sandbox/{*rest}", any(unknown))
        .method_not_allowed_fallback(wrong_method)
}

/// A control API error: its status, the body field at fault (if one is) and a message.
#[derive(Debug)]
struct Problem {
    status: StatusCode,
    field: Option<String>,
    message: String,
}

impl Problem {
    /// 400 naming the bad field.
    fn field(field: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }
    /// 400 about the body as a whole.
    fn body(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            field: None,
            message: message.into(),
        }
    }
    /// 404 for a path naming something the sandbox does not hold.
    fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            field: None,
            message: message.into(),
        }
    }
    /// 409: the field clashes with what the sandbox holds.
    fn conflict(field: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let error = match self.status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "conflict",
            _ => "error",
        };
        let mut body = json!({"error": error, "message": self.message});
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        (self.status, axum::Json(body)).into_response()
    }
}

type Answer = Result<Response, Problem>;

/// A control request's JSON object body, read field by field so that every
/// error names its field.
struct Body {
    fields: Map<String, Value>,
}

impl Body {
    /// The body as a JSON object (an empty body counts as `{}`).
    fn object(bytes: &[u8]) -> Result<Map<String, Value>, Problem> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(fields)) => Ok(fields),
            Ok(_) => Err(Problem::body("the body must be a JSON object")),
            Err(e) => Err(Problem::body(format!("the body is not JSON: {e}"))),
        }
    }

    /// The body, refusing any field not in `allowed` (typos fail loudly).
    fn parse(bytes: &[u8], allowed: &[&str]) -> Result<Self, Problem> {
        let fields = Self::object(bytes)?;
        if let Some(unknown) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(Problem::field(
                unknown,
                format!("unknown field `{unknown}`; expected one of: {}", allowed.join(", ")),
            ));
        }
        Ok(Self { fields })
    }

    /// The field's value, `None` when absent or `null`.
    fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key).filter(|v| !v.is_null())
    }

    fn opt_text(&self, key: &str) -> Result<Option<String>, Problem> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(text)) if text.trim().is_empty() => {
                Err(Problem::field(key, format!("`{key}` must not be empty")))
            }
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(Problem::field(key, format!("`{key}` must be a string"))),
        }
    }

    fn text(&self, key: &str) -> Result<String, Problem> {
        self.opt_text(key)?
            .ok_or_else(|| Problem::field(key, format!("missing field `{key}`")))
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>, Problem> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(_) => Err(Problem::field(key, format!("`{key}` must be true or false"))),
        }
    }

    /// A whole number in `range`, if present.
    fn opt_number(&self, key: &str, range: RangeInclusive<u64>) -> Result<Option<u64>, Problem> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        match value.as_u64() {
            Some(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(Problem::field(
                key,
                format!(
                    "`{key}` must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    fn number(&self, key: &str, range: RangeInclusive<u64>) -> Result<u64, Problem> {
        self.opt_number(key, range)?
            .ok_or_else(|| Problem::field(key, format!("missing field `{key}`")))
    }

    /// One of `choices`, if present.
    fn opt_choice(&self, key: &str, choices: &[&'static str]) -> Result<Option<&'static str>, Problem> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let text = value.as_str().unwrap_or_default();
        match choices.iter().find(|c| **c == text) {
            Some(choice) => Ok(Some(*choice)),
            None => Err(Problem::field(
                key,
                format!("`{key}` must be one of: {}", choices.join(", ")),
            )),
        }
    }

    fn choice(&self, key: &str, choices: &[&'static str]) -> Result<&'static str, Problem> {
        self.opt_choice(key, choices)?
            .ok_or_else(|| Problem::field(key, format!("missing field `{key}`")))
    }

    fn instant(&self, key: &str) -> Result<DateTime<Utc>, Problem> {
        let text = self.text(key)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                Problem::field(
                    key,
                    format!("`{key}` must be an RFC 3339 time such as 2026-01-05T09:00:00Z"),
                )
            })
    }

    fn opt_object(&self, key: &str) -> Result<Option<Value>, Problem> {
        match self.get(key) {
            None => Ok(None),
            Some(value @ Value::Object(_)) => Ok(Some(value.clone())),
            Some(_) => Err(Problem::field(key, format!("`{key}` must be a JSON object"))),
        }
    }
}

fn provider_named(name: &str) -> Provider {
    if name == "google" {
        Provider::Google
    } else {
        Provider::Microsoft
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn answer(status: StatusCode, body: Value) -> Answer {
    Ok((status, axum::Json(body)).into_response())
}

fn created_or_replaced(created: bool) -> StatusCode {
    if created { StatusCode::CREATED } else { StatusCode::OK }
}

/// The sandbox's own address as the caller reached it.
fn base_of(h: &HeaderMap) -> String {
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1");
    format!("http://{host}")
}

async fn index(State(sb): State<Sandbox>, h: HeaderMap) -> Answer {
    let base = base_of(&h);
    let routes: Vec<Value> = ROUTES
        .iter()
        .map(|(method, path, body, does)| {
            let mut route = json!({"method": method, "path": path, "does": does});
            if !body.is_empty() {
                route["body"] = json!(body);
            }
            route
        })
        .collect();
    answer(
        StatusCode::OK,
        json!({
            "now": rfc3339(sb.now()),
            "google": {
                "authorize_url": format!("{base}{GOOGLE_AUTHORIZE}"),
                "token_url": format!("{base}{GOOGLE_TOKEN}"),
                "revoke_url": format!("{base}{GOOGLE_REVOKE}"),
                "userinfo_url": format!("{base}{GOOGLE_USERINFO}"),
                "api_base": format!("{base}{GOOGLE_API}"),
            },
            "microsoft": {
                "authorize_url": format!("{base}{MICROSOFT_AUTHORIZE}"),
                "token_url": format!("{base}{MICROSOFT_TOKEN}"),
                "userinfo_url": format!("{base}{GRAPH_API}/me"),
                "api_base": format!("{base}{GRAPH_API}"),
            },
            "control": routes,
        }),
    )
}

async fn unknown(method: Method, uri: Uri) -> Problem {
    Problem::not_found(format!(
        "no control route `{method} {}`; GET {ROOT} lists them",
        uri.path()
    ))
}

async fn wrong_method(method: Method, uri: Uri) -> Response {
    let body = json!({"error": "method_not_allowed",
        "message": format!("`{method} {}` is not a control route; GET {ROOT} lists them", uri.path())});
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}

async fn list_accounts(State(sb): State<Sandbox>) -> Answer {
    let g = sb.lock();
    let accounts: Vec<Value> = g
        .accounts
        .iter()
        .map(|a| {
            let calendars: Vec<Value> = match a.provider {
                Provider::Google => g
                    .google
                    .calendars
                    .iter()
                    .filter(|c| c.account == a.id)
                    .map(|c| {
                        let events = g
                            .google
                            .events
                            .iter()
                            .filter(|e| e.calendar == c.id && !e.deleted)
                            .count();
                        json!({"id": c.id, "summary": c.summary, "access_role": c.access_role,
                            "primary": c.primary, "events": events})
                    })
                    .collect(),
                Provider::Microsoft => g
                    .graph
                    .calendars
                    .iter()
                    .filter(|c| c.account == a.id)
                    .map(|c| {
                        let events = g
                            .graph
                            .events
                            .iter()
                            .filter(|e| e.calendar == c.id && !e.deleted)
                            .count();
                        json!({"id": c.id, "name": c.name, "can_edit": c.can_edit,
                            "default": c.default, "events": events})
                    })
                    .collect(),
            };
            json!({"provider": pkey(a.provider), "id": a.id, "email": a.email, "calendars": calendars})
        })
        .collect();
    answer(StatusCode::OK, json!({"accounts": accounts}))
}

async fn add_account(State(sb): State<Sandbox>, bytes: Bytes) -> Answer {
    let body = Body::parse(&bytes, &["provider", "id", "email"])?;
    let provider = provider_named(body.choice("provider", &["google", "microsoft"])?);
    let id = body.text("id")?;
    let email = body.text("email")?;
    if !email.contains('@') {
        return Err(Problem::field("email", "`email` must be an email address"));
    }
    let created = {
        let g = sb.lock();
        match g.accounts.iter().find(|a| a.id == id) {
            Some(existing) if existing.provider != provider => {
                return Err(Problem::conflict(
                    "id",
                    format!("`{id}` is already a {} account", pkey(existing.provider)),
                ));
            }
            Some(_) => false,
            None => true,
        }
    };
    sb.add_account(provider, &id, &email);
    answer(
        created_or_replaced(created),
        json!({"provider": pkey(provider), "id": id, "email": email}),
    )
}

/// The account `id`'s provider, or 404.
fn account_provider(sb: &Sandbox, id: &str) -> Result<Provider, Problem> {
    sb.lock()
        .accounts
        .iter()
        .find(|a| a.id == id)
        .map(|a| a.provider)
        .ok_or_else(|| Problem::not_found(format!("no account `{id}`")))
}

async fn mint_token(State(sb): State<Sandbox>, Path(id): Path<String>) -> Answer {
    account_provider(&sb, &id)?;
    let token = sb.mint_access_token(&id);
    answer(
        StatusCode::CREATED,
        json!({"account": id, "access_token": token, "token_type": "Bearer", "expires_in": 3600}),
    )
}

async fn revoke_tokens(State(sb): State<Sandbox>, Path(id): Path<String>) -> Answer {
    account_provider(&sb, &id)?;
    let grants = {
        let g = sb.lock();
        let grants: BTreeSet<u64> = g
            .access
            .values()
            .filter(|t| t.account == id)
            .map(|t| t.grant_id)
            .chain(g.refresh.values().filter(|r| r.0 == id).map(|r| r.1))
            .collect();
        grants.len()
    };
    sb.revoke_account_tokens(&id);
    answer(StatusCode::OK, json!({"account": id, "revoked_grants": grants}))
}

/// `Ok` when `account` exists and belongs to `provider`; 400 naming `account` otherwise.
fn account_of(sb: &Sandbox, account: &str, provider: Provider) -> Result<(), Problem> {
    let g = sb.lock();
    match g.accounts.iter().find(|a| a.id == account) {
        Some(a) if a.provider == provider => Ok(()),
        Some(a) => Err(Problem::field(
            "account",
            format!("`{account}` is a {} account", pkey(a.provider)),
        )),
        None => Err(Problem::field(
            "account",
            format!("no {} account `{account}`; POST {ROOT}/accounts first", pkey(provider)),
        )),
    }
}

/// A series from a control body (`first_start`, `duration_minutes`, `freq`, `count`).
fn recurrence(body: &Body) -> Result<Recurrence, Problem> {
    let first_start = body.instant("first_start")?;
    let minutes = body.number("duration_minutes", 1..=MAX_DURATION_MINUTES)?;
    let duration = i64::try_from(minutes)
        .ok()
        .and_then(Duration::try_minutes)
        .ok_or_else(|| Problem::field("duration_minutes", "`duration_minutes` is out of range"))?;
    let freq = match body.choice("freq", &["daily", "weekly"])? {
        "daily" => Frequency::Daily,
        _ => Frequency::Weekly,
    };
    let count = u32::try_from(body.number("count", 1..=MAX_OCCURRENCES)?)
        .map_err(|_| Problem::field("count", "`count` is out of range"))?;
    Ok(Recurrence {
        first_start,
        duration,
        freq,
        count,
    })
}

/// The `id` of an event resource: a non-empty string of at most 1024 characters.
fn event_id(resource: &Map<String, Value>) -> Result<String, Problem> {
    match resource.get("id") {
        None | Some(Value::Null) => Err(Problem::field("id", "missing field `id`")),
        Some(Value::String(id)) if id.trim().is_empty() || id.len() > 1024 => {
            Err(Problem::field("id", "`id` must be 1 to 1024 characters"))
        }
        Some(Value::String(id)) => Ok(id.clone()),
        Some(_) => Err(Problem::field("id", "`id` must be a string")),
    }
}

/// Refuses `recurrence` in an event resource: series have their own route.
fn no_recurrence(resource: &Map<String, Value>, provider: &str, calendar: &str) -> Result<(), Problem> {
    if resource.contains_key("recurrence") {
        return Err(Problem::field(
            "recurrence",
            format!("recurring events go to POST {ROOT}/{provider}/calendars/{calendar}/series"),
        ));
    }
    Ok(())
}

/// 400 naming `end` when it comes before `start`.
fn ordered(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<(), Problem> {
    if end < start {
        return Err(Problem::field("end", "`end` comes before `start`"));
    }
    Ok(())
}

async fn add_google_calendar(State(sb): State<Sandbox>, bytes: Bytes) -> Answer {
    let body = Body::parse(&bytes, &["account", "id", "summary", "access_role", "primary"])?;
    let account = body.text("account")?;
    let id = body.text("id")?;
    let summary = body.opt_text("summary")?.unwrap_or_else(|| id.clone());
    let access_role = body.opt_choice("access_role", ACCESS_ROLES)?.unwrap_or("owner");
    let primary = body.opt_bool("primary")?.unwrap_or(false);
    account_of(&sb, &account, Provider::Google)?;
    let created = !sb
        .lock()
        .google
        .calendars
        .iter()
        .any(|c| c.account == account && c.id == id);
    sb.add_google_calendar(&account, &id, &summary, access_role, primary);
    answer(
        created_or_replaced(created),
        json!({"account": account, "id": id, "summary": summary, "access_role": access_role, "primary": primary}),
    )
}

/// 404 unless some account holds the Google calendar.
fn google_calendar_exists(sb: &Sandbox, calendar: &str) -> Result<(), Problem> {
    if sb.lock().google.calendars.iter().any(|c| c.id == calendar) {
        Ok(())
    } else {
        Err(Problem::not_found(format!("no google calendar `{calendar}`")))
    }
}

/// Whether a live (not deleted) Google event `id` is stored in `calendar`.
fn google_live(sb: &Sandbox, calendar: &str, id: &str) -> bool {
    sb.lock().google.stored(calendar, id).is_some_and(|e| !e.deleted)
}

/// A Google `start`/`end`: `{"dateTime": RFC 3339}` or `{"date": "YYYY-MM-DD"}`.
fn google_time(resource: &Map<String, Value>, key: &str) -> Result<DateTime<Utc>, Problem> {
    let value = resource
        .get(key)
        .ok_or_else(|| Problem::field(key, format!("missing field `{key}`")))?;
    google_calendar::instant(value).ok_or_else(|| {
        Problem::field(
            key,
            format!(r#"`{key}` must be {{"dateTime": "2026-01-05T09:00:00Z"}} (RFC 3339) or {{"date": "2026-01-05"}}"#),
        )
    })
}

async fn put_google_event(State(sb): State<Sandbox>, Path(calendar): Path<String>, bytes: Bytes) -> Answer {
    google_calendar_exists(&sb, &calendar)?;
    let resource = Body::object(&bytes)?;
    let id = event_id(&resource)?;
    no_recurrence(&resource, "google", &calendar)?;
    let start = google_time(&resource, "start")?;
    let end = google_time(&resource, "end")?;
    ordered(start, end)?;
    let created = !google_live(&sb, &calendar, &id);
    let etag = sb.put_google_event(&calendar, Value::Object(resource));
    answer(
        created_or_replaced(created),
        json!({"calendar": calendar, "id": id, "etag": etag}),
    )
}

async fn put_google_series(State(sb): State<Sandbox>, Path(calendar): Path<String>, bytes: Bytes) -> Answer {
    google_calendar_exists(&sb, &calendar)?;
    let body = Body::parse(
        &bytes,
        &["id", "first_start", "duration_minutes", "freq", "count", "fields"],
    )?;
    let id = body.text("id")?;
    let series = recurrence(&body)?;
    let fields = body.opt_object("fields")?.unwrap_or_else(|| json!({}));
    let created = !google_live(&sb, &calendar, &id);
    let etag = sb.put_google_recurring_event(&calendar, &id, series, fields);
    answer(
        created_or_replaced(created),
        json!({"calendar": calendar, "id": id, "etag": etag}),
    )
}

async fn delete_google_event(
    State(sb): State<Sandbox>,
    Path((calendar, id)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    google_calendar_exists(&sb, &calendar)?;
    if !google_live(&sb, &calendar, &id) {
        return Err(Problem::not_found(format!(
            "no live event `{id}` in google calendar `{calendar}`"
        )));
    }
    sb.delete_google_event(&calendar, &id);
    Ok(StatusCode::NO_CONTENT)
}

async fn expire_google(State(sb): State<Sandbox>) -> StatusCode {
    sb.expire_google_sync_tokens();
    StatusCode::NO_CONTENT
}

async fn add_graph_calendar(State(sb): State<Sandbox>, bytes: Bytes) -> Answer {
    let body = Body::parse(&bytes, &["account", "id", "name", "can_edit", "default"])?;
    let account = body.text("account")?;
    let id = body.text("id")?;
    let name = body.opt_text("name")?.unwrap_or_else(|| id.clone());
    let can_edit = body.opt_bool("can_edit")?.unwrap_or(true);
    let default = body.opt_bool("default")?.unwrap_or(false);
    account_of(&sb, &account, Provider::Microsoft)?;
    let created = !sb
        .lock()
        .graph
        .calendars
        .iter()
        .any(|c| c.account == account && c.id == id);
    sb.add_graph_calendar(&account, &id, &name, can_edit, default);
    answer(
        created_or_replaced(created),
        json!({"account": account, "id": id, "name": name, "can_edit": can_edit, "default": default}),
    )
}

/// 404 unless some account holds the Graph calendar.
fn graph_calendar_exists(sb: &Sandbox, calendar: &str) -> Result<(), Problem> {
    if sb.lock().graph.calendars.iter().any(|c| c.id == calendar) {
        Ok(())
    } else {
        Err(Problem::not_found(format!("no microsoft calendar `{calendar}`")))
    }
}

/// Whether the live Graph event `id` exists in `calendar`; 409 naming `id`
/// when it lives in another calendar (Graph ids are unique in a mailbox).
fn graph_live(sb: &Sandbox, calendar: &str, id: &str) -> Result<bool, Problem> {
    let g = sb.lock();
    match g.graph.events.iter().find(|e| e.id == id && !e.deleted) {
        None => Ok(false),
        Some(e) if e.calendar == calendar => Ok(true),
        Some(e) => Err(Problem::conflict(
            "id",
            format!("event `{id}` already lives in microsoft calendar `{}`", e.calendar),
        )),
    }
}

/// A written Graph `start`/`end` in the stored UTC form, with its instant.
fn graph_written_time(
    resource: &Map<String, Value>,
    key: &str,
    all_day: bool,
) -> Result<(Value, DateTime<Utc>), Problem> {
    let bad = || {
        Problem::field(
            key,
            format!(
                r#"`{key}` must be {{"dateTime": "2026-01-05T09:00:00", "timeZone": "UTC"}} (the zone may be an IANA name or "W. Europe Standard Time")"#
            ),
        )
    };
    let value = resource
        .get(key)
        .ok_or_else(|| Problem::field(key, format!("missing field `{key}`")))?;
    if value.get("timeZone").is_some_and(|z| !z.is_string()) {
        return Err(bad());
    }
    let at = graph_calendar::written_instant(value, all_day).ok_or_else(bad)?;
    if all_day && at.time() != NaiveTime::MIN {
        return Err(Problem::field(
            key,
            format!("`{key}` of an all-day event must be midnight"),
        ));
    }
    Ok((graph_calendar::graph_time(at), at))
}

async fn put_graph_event(State(sb): State<Sandbox>, Path(calendar): Path<String>, bytes: Bytes) -> Answer {
    graph_calendar_exists(&sb, &calendar)?;
    let mut resource = Body::object(&bytes)?;
    let id = event_id(&resource)?;
    no_recurrence(&resource, "microsoft", &calendar)?;
    let all_day = match resource.get("isAllDay") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(flag)) => *flag,
        Some(_) => return Err(Problem::field("isAllDay", "`isAllDay` must be true or false")),
    };
    let (start, start_at) = graph_written_time(&resource, "start", all_day)?;
    let (end, end_at) = graph_written_time(&resource, "end", all_day)?;
    ordered(start_at, end_at)?;
    resource.insert("start".into(), start);
    resource.insert("end".into(), end);
    let created = !graph_live(&sb, &calendar, &id)?;
    let etag = sb.put_graph_event(&calendar, Value::Object(resource));
    answer(
        created_or_replaced(created),
        json!({"calendar": calendar, "id": id, "etag": etag}),
    )
}

async fn put_graph_series(State(sb): State<Sandbox>, Path(calendar): Path<String>, bytes: Bytes) -> Answer {
    graph_calendar_exists(&sb, &calendar)?;
    let body = Body::parse(
        &bytes,
        &["id", "first_start", "duration_minutes", "freq", "count", "fields"],
    )?;
    let id = body.text("id")?;
    let series = recurrence(&body)?;
    let fields = body.opt_object("fields")?.unwrap_or_else(|| json!({}));
    let created = !graph_live(&sb, &calendar, &id)?;
    let etag = sb.put_graph_recurring_event(&calendar, &id, series, fields);
    answer(
        created_or_replaced(created),
        json!({"calendar": calendar, "id": id, "etag": etag}),
    )
}

async fn delete_graph_event(
    State(sb): State<Sandbox>,
    Path((calendar, id)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    graph_calendar_exists(&sb, &calendar)?;
    if !matches!(graph_live(&sb, &calendar, &id), Ok(true)) {
        return Err(Problem::not_found(format!(
            "no live event `{id}` in microsoft calendar `{calendar}`"
        )));
    }
    sb.delete_graph_event(&calendar, &id);
    Ok(StatusCode::NO_CONTENT)
}

async fn expire_graph(State(sb): State<Sandbox>) -> StatusCode {
    sb.expire_graph_delta_tokens();
    StatusCode::NO_CONTENT
}

fn fault_json(fault: &Fault) -> Value {
    match fault {
        Fault::Status { code, retry_after } => json!({"status": code, "retry_after": retry_after}),
        Fault::Latency(ms) => json!({"latency_ms": ms}),
        Fault::LateAnswer(ms) => json!({"late_answer_ms": ms}),
        Fault::TruncatedBody => json!({"kind": "truncated"}),
        Fault::MalformedBody => json!({"kind": "malformed"}),
    }
}

fn pending_faults(sb: &Sandbox, provider: Provider) -> Vec<Value> {
    sb.lock()
        .faults
        .get(pkey(provider))
        .map(|queue| queue.iter().map(fault_json).collect())
        .unwrap_or_default()
}

async fn list_faults(State(sb): State<Sandbox>) -> Answer {
    answer(
        StatusCode::OK,
        json!({"google": pending_faults(&sb, Provider::Google),
            "microsoft": pending_faults(&sb, Provider::Microsoft)}),
    )
}

async fn add_faults(State(sb): State<Sandbox>, bytes: Bytes) -> Answer {
    let body = Body::parse(
        &bytes,
        &[
            "provider",
            "status",
            "retry_after",
            "latency_ms",
            "late_answer_ms",
            "kind",
            "count",
        ],
    )?;
    let provider = provider_named(body.choice("provider", &["google", "microsoft"])?);
    let given: Vec<&str> = ["status", "latency_ms", "late_answer_ms", "kind"]
        .into_iter()
        .filter(|k| body.get(k).is_some())
        .collect();
    match given.as_slice() {
        [] => {
            return Err(Problem::field(
                "status",
                "one of `status`, `latency_ms`, `late_answer_ms` or `kind` is required",
            ));
        }
        [first, second, ..] => {
            return Err(Problem::field(
                second,
                format!("`{second}` cannot be combined with `{first}`: queue them as separate faults"),
            ));
        }
        [_] => {}
    }
    if body.get("retry_after").is_some() && body.get("status").is_none() {
        return Err(Problem::field("retry_after", "`retry_after` goes with `status`"));
    }
    let fault = if let Some(code) = body.opt_number("status", 400..=599)? {
        let code = u16::try_from(code).map_err(|_| Problem::field("status", "`status` is out of range"))?;
        Fault::Status {
            code,
            retry_after: body.opt_number("retry_after", 0..=86_400)?,
        }
    } else if let Some(ms) = body.opt_number("latency_ms", 1..=MAX_LATENCY_MS)? {
        Fault::Latency(ms)
    } else if let Some(ms) = body.opt_number("late_answer_ms", 1..=MAX_LATENCY_MS)? {
        Fault::LateAnswer(ms)
    } else if body.choice("kind", &["truncated", "malformed"])? == "truncated" {
        Fault::TruncatedBody
    } else {
        Fault::MalformedBody
    };
    let count = body.opt_number("count", 1..=MAX_FAULT_COUNT)?.unwrap_or(1);
    for _ in 0..count {
        sb.push_fault(provider, fault.clone());
    }
    answer(
        StatusCode::CREATED,
        json!({"provider": pkey(provider), "queued": count, "pending": pending_faults(&sb, provider)}),
    )
}

async fn clear_faults(State(sb): State<Sandbox>) -> StatusCode {
    sb.lock().faults.clear();
    StatusCode::NO_CONTENT
}

async fn clock(State(sb): State<Sandbox>) -> Answer {
    answer(StatusCode::OK, json!({"now": rfc3339(sb.now())}))
}

async fn advance(State(sb): State<Sandbox>, bytes: Bytes) -> Answer {
    let body = Body::parse(&bytes, &["seconds"])?;
    let seconds = body.number("seconds", 0..=MAX_ADVANCE_SECONDS)?;
    let by = i64::try_from(seconds)
        .ok()
        .and_then(Duration::try_seconds)
        .ok_or_else(|| Problem::field("seconds", "`seconds` is out of range"))?;
    sb.advance(by);
    answer(StatusCode::OK, json!({"now": rfc3339(sb.now())}))
}

/// A secret shown only by its first characters, so a shared log leaks nothing usable.
fn fingerprint(secret: &str) -> String {
    if secret.chars().count() > 12 {
        format!("{}…", secret.chars().take(6).collect::<String>())
    } else {
        "…".to_owned()
    }
}

/// The query string with the values of secret-bearing parameters fingerprinted.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) if SECRET_PARAMS.contains(&name) => format!("{name}={}", fingerprint(value)),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn logged_json(r: &LoggedRequest) -> Value {
    json!({
        "provider": pkey(r.provider),
        "method": r.method,
        "path": r.path,
        "query": r.query.as_deref().map(redact_query),
        "bearer": r.bearer.as_deref().map(fingerprint),
        "at": rfc3339(r.at),
    })
}

async fn requests(State(sb): State<Sandbox>) -> Answer {
    let log: Vec<Value> = sb.request_log().iter().map(logged_json).collect();
    answer(StatusCode::OK, json!({"requests": log}))
}

async fn clear_requests(State(sb): State<Sandbox>) -> StatusCode {
    sb.clear_log();
    StatusCode::NO_CONTENT
}

fn watch_json(w: &Watch) -> Value {
    json!({
        "provider": pkey(w.provider),
        "id": w.id,
        "resource_id": w.resource_id,
        "account": w.account,
        "calendar": w.calendar,
        "address": w.address,
        "lifecycle_address": w.lifecycle_address,
        "expires_at": rfc3339(w.expires_at),
        "secret": w.secret.as_deref().map(fingerprint),
    })
}

fn delivery_json(d: &PushDelivery) -> Value {
    json!({
        "provider": pkey(d.provider),
        "channel_id": d.channel_id,
        "kind": d.kind,
        "url": d.url,
        "message_number": d.message_number,
        "event_id": d.event_id,
        "status": d.status,
        "error": d.error,
        "accepted": d.accepted(),
        "at": rfc3339(d.at),
    })
}

async fn push(State(sb): State<Sandbox>) -> Answer {
    let watches = sb.push_watches();
    let of = |provider: Provider| -> Vec<Value> {
        watches
            .iter()
            .filter(|w| w.provider == provider)
            .map(watch_json)
            .collect()
    };
    let deliveries: Vec<Value> = sb.push_deliveries().iter().map(delivery_json).collect();
    answer(
        StatusCode::OK,
        json!({"google_channels": of(Provider::Google), "microsoft_subscriptions": of(Provider::Microsoft),
            "deliveries": deliveries}),
    )
}

/// A whole number query parameter in `range`, if present.
fn query_number(
    query: &std::collections::HashMap<String, String>,
    key: &str,
    range: RangeInclusive<u64>,
) -> Result<Option<u64>, Problem> {
    let Some(text) = query.get(key) else {
        return Ok(None);
    };
    match text.parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(Problem::field(
            key,
            format!(
                "`{key}` must be a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        )),
    }
}

async fn push_deliveries(
    State(sb): State<Sandbox>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Answer {
    if let Some(unknown) = query.keys().find(|k| !matches!(k.as_str(), "min" | "timeout_ms")) {
        return Err(Problem::field(
            unknown,
            format!("unknown parameter `{unknown}`; expected min, timeout_ms"),
        ));
    }
    let min = query_number(&query, "min", 0..=100_000)?.unwrap_or(0);
    let wait = query_number(&query, "timeout_ms", 0..=MAX_WAIT_MS)?.unwrap_or(0);
    let count = usize::try_from(min).map_err(|_| Problem::field("min", "`min` is out of range"))?;
    let deliveries = sb
        .wait_for_push_deliveries(count, std::time::Duration::from_millis(wait))
        .await;
    let listed: Vec<Value> = deliveries.iter().map(delivery_json).collect();
    answer(
        StatusCode::OK,
        json!({"deliveries": listed, "complete": deliveries.len() >= count}),
    )
}

async fn clear_push_deliveries(State(sb): State<Sandbox>) -> StatusCode {
    sb.clear_push_deliveries();
    StatusCode::NO_CONTENT
}

async fn fire_lifecycle(State(sb): State<Sandbox>, Path(id): Path<String>, bytes: Bytes) -> Answer {
    let body = Body::parse(&bytes, &["event"])?;
    let event = body.choice("event", &["reauthorizationRequired", "subscriptionRemoved", "missed"])?;
    let event = LifecycleEvent::from_name(event).ok_or_else(|| Problem::field("event", "unknown event"))?;
    match sb.fire_graph_lifecycle(&id, event) {
        Ok(()) => answer(
            StatusCode::ACCEPTED,
            json!({"subscription": id, "event": event.as_str()}),
        ),
        Err(SandboxError::NoLifecycleUrl(_)) => Err(Problem::conflict(
            "event",
            format!("subscription `{id}` has no lifecycleNotificationUrl"),
        )),
        Err(_) => Err(Problem::not_found(format!("no microsoft subscription `{id}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_show_six_characters_of_long_secrets_and_nothing_of_short_ones() {
        assert_eq!(fingerprint("at-0123456789abcdef"), "at-012…");
        assert_eq!(fingerprint("short"), "…");
    }

    #[test]
    fn redacted_queries_keep_harmless_parameters() {
        assert_eq!(
            redact_query("syncToken=sy1&access_token=at-0123456789abcdef&code=x"),
            "syncToken=sy1&access_token=at-012…&code=…"
        );
    }

    #[test]
    fn every_listed_route_is_under_the_root() {
        assert!(ROUTES.iter().all(|(_, path, _, _)| path.starts_with(ROOT)));
    }
}
