//! Google Calendar API v3, as PROVIDERS.md describes it: `calendarList` and
//! `events.list` with `maxResults`/`pageToken` paging (deliberately short
//! pages while more remain), `nextSyncToken` on the last page only,
//! incremental listings by `syncToken` that include deletions as
//! `{"id", "status": "cancelled"}`, and `410 fullSyncRequired` for an expired
//! or unknown sync token. Writes: `events.insert` with a client-chosen id
//! (`a-v0-9`, 5–1024 characters; 409 `duplicate` when taken), `events.get`,
//! `events.patch` and `events.delete` guarded by `If-Match` (412
//! `conditionNotMet`); deleting twice answers 410 `deleted`. Recurring series
//! are expanded into instances by `singleEvents=true` (ids
//! `{seriesId}_{YYYYMMDDTHHMMSSZ}`, with `recurringEventId` and
//! `originalStartTime`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::{Account, Frequency, Provider, Recurrence, Sandbox, api_caller, instance_stamp};

/// A calendar of a Google account in the sandbox.
#[derive(Debug, Clone)]
pub(crate) struct GoogleCalendar {
    pub(crate) account: String,
    pub(crate) id: String,
    pub(crate) summary: String,
    pub(crate) access_role: String,
    pub(crate) primary: bool,
}

/// An event as stored: its JSON resource, the change sequence that last
/// touched it, and whether it was deleted.
#[derive(Debug, Clone)]
pub(crate) struct GoogleEvent {
    pub(crate) calendar: String,
    pub(crate) id: String,
    pub(crate) resource: Value,
    pub(crate) seq: u64,
    pub(crate) deleted: bool,
    /// Set for a series master: how `singleEvents=true` expands it.
    pub(crate) series: Option<Recurrence>,
}

/// Where a listing stands between pages.
#[derive(Debug, Clone)]
pub(crate) struct Listing {
    calendar: String,
    /// `None` for a full listing; the sequence a sync token stood for otherwise.
    since: Option<u64>,
    /// The change sequence when the listing began: what its sync token will stand for.
    snapshot: u64,
    /// Ids already served, in order.
    offset: usize,
    time_min: Option<DateTime<Utc>>,
    time_max: Option<DateTime<Utc>>,
    /// `singleEvents=true`: series come as their instances.
    single_events: bool,
    /// What the listing serves, sorted, as of `snapshot`: taken on its first
    /// page, so a page costs O(page) and later changes wait for the sync token.
    items: Option<Arc<Vec<(String, Value)>>>,
}

/// Google Calendar state inside the sandbox.
#[derive(Debug, Default)]
pub(crate) struct GoogleState {
    pub(crate) calendars: Vec<GoogleCalendar>,
    pub(crate) events: Vec<GoogleEvent>,
    pub(crate) seq: u64,
    /// Sync token → (calendar, sequence it stands for).
    pub(crate) sync_tokens: HashMap<String, (String, u64)>,
    pub(crate) listings: HashMap<String, Listing>,
    pub(crate) next_token: u64,
    /// Calendars whose events changed since their watchers were last notified.
    pub(crate) changed: Vec<String>,
}

impl GoogleState {
    fn token(&mut self, prefix: &str) -> String {
        self.next_token += 1;
        format!("{prefix}{:016x}", self.next_token.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// Stores `resource` as the new version of its event: bumps the change
    /// sequence, sets `etag`, `updated`, `kind` and a default `status`.
    fn store(&mut self, now: DateTime<Utc>, calendar: &str, mut resource: Value, series: Option<Recurrence>) -> Value {
        self.seq += 1;
        let seq = self.seq;
        let id = resource
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        resource["etag"] = json!(format!("\"{seq}\""));
        resource["updated"] = json!(now.to_rfc3339_opts(SecondsFormat::Millis, true));
        resource["kind"] = json!("calendar#event");
        if resource.get("status").is_none() {
            resource["status"] = json!("confirmed");
        }
        if resource.get("iCalUID").is_none() {
            resource["iCalUID"] = json!(format!("{id}@google.com"));
        }
        self.events.retain(|e| !(e.calendar == calendar && e.id == id));
        self.changed.push(calendar.into());
        self.events.push(GoogleEvent {
            calendar: calendar.into(),
            id,
            resource: resource.clone(),
            seq,
            deleted: false,
            series,
        });
        resource
    }

    /// Marks an event deleted: incremental listings report it as cancelled.
    fn delete(&mut self, calendar: &str, id: &str) {
        self.seq += 1;
        let seq = self.seq;
        for event in self.events.iter_mut().filter(|e| e.calendar == calendar && e.id == id) {
            event.deleted = true;
            event.seq = seq;
        }
        self.changed.push(calendar.into());
    }

    /// The stored event (series masters included, deleted ones too).
    pub(crate) fn stored(&self, calendar: &str, id: &str) -> Option<&GoogleEvent> {
        self.events.iter().find(|e| e.calendar == calendar && e.id == id)
    }

    /// The calendar, if `account` can see it.
    fn calendar(&self, account: &str, calendar: &str) -> Option<&GoogleCalendar> {
        self.calendars.iter().find(|c| c.id == calendar && c.account == account)
    }

    /// `Ok` when `account` may write events to `calendar`; the provider's error otherwise.
    fn writable(&self, account: &str, calendar: &str) -> Result<(), Box<Response>> {
        match self.calendar(account, calendar) {
            None => Err(Box::new(error(StatusCode::NOT_FOUND, "notFound", "Not Found"))),
            Some(c) if c.access_role == "owner" || c.access_role == "writer" => Ok(()),
            Some(_) => Err(Box::new(error(
                StatusCode::FORBIDDEN,
                "requiredAccessLevel",
                "You need to have writer access to this calendar.",
            ))),
        }
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn cancelled(id: &str) -> Value {
    json!({"kind": "calendar#event", "id": id, "status": "cancelled"})
}

/// One instance of a series master, as `singleEvents=true` lists it.
fn instance(master: &GoogleEvent, series: &Recurrence, start: DateTime<Utc>) -> Value {
    let mut resource = master.resource.clone();
    if let Some(fields) = resource.as_object_mut() {
        fields.remove("recurrence");
    }
    let zone = master
        .resource
        .pointer("/start/timeZone")
        .cloned()
        .unwrap_or_else(|| json!("UTC"));
    let end = start.checked_add_signed(series.duration).unwrap_or(start);
    resource["id"] = json!(format!("{}_{}", master.id, instance_stamp(start)));
    resource["recurringEventId"] = json!(master.id);
    resource["originalStartTime"] = json!({"dateTime": rfc3339(start), "timeZone": zone});
    resource["start"] = json!({"dateTime": rfc3339(start), "timeZone": zone});
    resource["end"] = json!({"dateTime": rfc3339(end), "timeZone": zone});
    resource
}

/// The resource `events.get` shows for `id`: a stored event (deleted ones as
/// cancelled) or one instance of a stored series.
fn lookup(state: &GoogleState, calendar: &str, id: &str) -> Option<Value> {
    if let Some(event) = state.stored(calendar, id) {
        let mut resource = event.resource.clone();
        if event.deleted {
            resource["status"] = json!("cancelled");
        }
        return Some(resource);
    }
    let (master_id, stamp) = id.rsplit_once('_')?;
    let master = state.stored(calendar, master_id)?;
    let series = master.series.as_ref()?;
    let start = series.starts().into_iter().find(|s| instance_stamp(*s) == stamp)?;
    let mut resource = instance(master, series, start);
    if master.deleted {
        resource["status"] = json!("cancelled");
    }
    Some(resource)
}

/// Google's event ids: `a-v` and `0-9` (base32hex), 5 to 1024 characters.
fn valid_event_id(id: &str) -> bool {
    (5..=1024).contains(&id.len()) && id.bytes().all(|b| matches!(b, b'a'..=b'v' | b'0'..=b'9'))
}

/// A JSON object request body, or Google's `parseError`.
fn object_body(body: &[u8]) -> Result<Map<String, Value>, Box<Response>> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        _ => Err(Box::new(error(StatusCode::BAD_REQUEST, "parseError", "Parse Error"))),
    }
}

/// 412 `conditionNotMet` when `If-Match` names another version than `etag`.
fn precondition(h: &HeaderMap, resource: &Value) -> Result<(), Box<Response>> {
    let Some(wanted) = h.get(header::IF_MATCH) else {
        return Ok(());
    };
    let current = resource.get("etag").and_then(Value::as_str).unwrap_or_default();
    match wanted.to_str() {
        Ok("*") => Ok(()),
        Ok(w) if w == current => Ok(()),
        _ => Err(Box::new(error(
            StatusCode::PRECONDITION_FAILED,
            "conditionNotMet",
            "Precondition Failed",
        ))),
    }
}

/// Both `start` and `end` name a time (`dateTime` or `date`), or Google's `required`.
fn times_present(resource: &Value) -> Result<(), Box<Response>> {
    if resource.get("start").and_then(instant).is_some() && resource.get("end").and_then(instant).is_some() {
        Ok(())
    } else {
        Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "required",
            "Missing start or end time.",
        )))
    }
}

fn error(status: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message,
        "errors": [{"domain": "global", "reason": reason, "message": message}]}});
    (status, axum::Json(body)).into_response()
}

/// `maxResults` (default 250, at most 2500); `None` when out of range.
fn page_size(q: &HashMap<String, String>) -> Option<usize> {
    match q.get("maxResults").map(|v| v.parse::<usize>()) {
        None => Some(250),
        Some(Ok(n)) if (1..=2500).contains(&n) => Some(n),
        Some(_) => None,
    }
}

/// The instant a `start`/`end` object names (a `date` counts from midnight UTC).
pub(crate) fn instant(value: &Value) -> Option<DateTime<Utc>> {
    if let Some(text) = value.get("dateTime").and_then(Value::as_str) {
        return DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc));
    }
    let date = value.get("date").and_then(Value::as_str)?;
    NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .ok()?
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
}

fn in_window(resource: &Value, min: Option<DateTime<Utc>>, max: Option<DateTime<Utc>>) -> bool {
    let (Some(start), Some(end)) = (
        resource.get("start").and_then(instant),
        resource.get("end").and_then(instant),
    ) else {
        return true;
    };
    min.is_none_or(|min| end > min) && max.is_none_or(|max| start < max)
}

/// An RFC 3339 query parameter; `Err` when present but unreadable.
fn parse_time(q: &HashMap<String, String>, key: &str) -> Result<Option<DateTime<Utc>>, ()> {
    q.get(key)
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| ())
        })
        .transpose()
}

pub(crate) async fn calendar_list(
    State(sb): State<Sandbox>,
    m: Method,
    u: Uri,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let account = match api_caller(&sb, Provider::Google, &m, &u, &h).await {
        Ok(account) => account,
        Err(r) => return *r,
    };
    let Some(size) = page_size(&q) else {
        return error(StatusCode::BAD_REQUEST, "invalid", "Invalid maxResults");
    };
    let start: usize = q
        .get("pageToken")
        .and_then(|t| t.strip_prefix("cl"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let g = sb.lock();
    let mine: Vec<&GoogleCalendar> = g.google.calendars.iter().filter(|c| c.account == account.id).collect();
    let items: Vec<Value> = mine
        .iter()
        .skip(start)
        .take(size)
        .map(|c| {
            json!({"kind": "calendar#calendarListEntry", "id": c.id, "summary": c.summary, "timeZone": "Europe/Berlin",
                "backgroundColor": "#1a73e8", "accessRole": c.access_role, "primary": c.primary})
        })
        .collect();
    let mut body = json!({"kind": "calendar#calendarList", "items": items});
    if start + size < mine.len() {
        body["nextPageToken"] = json!(format!("cl{}", start + size));
    }
    axum::Json(body).into_response()
}

pub(crate) async fn events_list(
    State(sb): State<Sandbox>,
    Path(calendar): Path<String>,
    m: Method,
    u: Uri,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let account = match api_caller(&sb, Provider::Google, &m, &u, &h).await {
        Ok(account) => account,
        Err(r) => return *r,
    };
    let Some(size) = page_size(&q) else {
        return error(StatusCode::BAD_REQUEST, "invalid", "Invalid maxResults");
    };
    let (Ok(time_min), Ok(time_max)) = (parse_time(&q, "timeMin"), parse_time(&q, "timeMax")) else {
        return error(StatusCode::BAD_REQUEST, "invalid", "Bad Request");
    };
    let mut g = sb.lock();
    let state = &mut g.google;
    if !state
        .calendars
        .iter()
        .any(|c| c.id == calendar && c.account == account.id)
    {
        return error(StatusCode::NOT_FOUND, "notFound", "Not Found");
    }
    let listing = if let Some(page_token) = q.get("pageToken") {
        match state.listings.get(page_token) {
            Some(listing) if listing.calendar == calendar => listing.clone(),
            _ => return error(StatusCode::BAD_REQUEST, "invalid", "Invalid page token"),
        }
    } else if let Some(sync_token) = q.get("syncToken") {
        if time_min.is_some() || time_max.is_some() || q.contains_key("orderBy") || q.contains_key("q") {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid",
                "syncToken cannot be combined with these filters",
            );
        }
        match state.sync_tokens.get(sync_token) {
            Some((cal, since)) if *cal == calendar => Listing {
                calendar: calendar.clone(),
                since: Some(*since),
                snapshot: state.seq,
                offset: 0,
                time_min: None,
                time_max: None,
                single_events: q.get("singleEvents").is_some_and(|v| v == "true"),
                items: None,
            },
            _ => {
                return error(
                    StatusCode::GONE,
                    "fullSyncRequired",
                    "Sync token is no longer valid, a full sync is required.",
                );
            }
        }
    } else {
        Listing {
            calendar: calendar.clone(),
            since: None,
            snapshot: state.seq,
            offset: 0,
            time_min,
            time_max,
            single_events: q.get("singleEvents").is_some_and(|v| v == "true"),
            items: None,
        }
    };
    let matching = match &listing.items {
        Some(items) => Arc::clone(items),
        None => Arc::new(listing_items(state, &calendar, &listing)),
    };
    let remaining = matching.len().saturating_sub(listing.offset);
    // Real listings return short pages while more remain: never trust a short page to be the last.
    let take = if remaining > size {
        size.saturating_sub(1).max(1)
    } else {
        remaining
    };
    let items: Vec<Value> = matching
        .iter()
        .skip(listing.offset)
        .take(take)
        .map(|(_, item)| item.clone())
        .collect();
    let mut body = json!({"kind": "calendar#events", "summary": calendar, "timeZone": "Europe/Berlin",
        "defaultReminders": [{"method": "popup", "minutes": 10}], "items": items});
    if listing.offset + take < matching.len() {
        let token = state.token("pg");
        state.listings.insert(
            token.clone(),
            Listing {
                offset: listing.offset + take,
                items: Some(matching),
                ..listing
            },
        );
        body["nextPageToken"] = json!(token);
    } else {
        let token = state.token("sy");
        state.sync_tokens.insert(token.clone(), (calendar, listing.snapshot));
        body["nextSyncToken"] = json!(token);
    }
    axum::Json(body).into_response()
}

/// Everything `listing` serves, sorted by id: live events (or changes since
/// its sync token), series expanded when it asks for single events.
fn listing_items(state: &GoogleState, calendar: &str, listing: &Listing) -> Vec<(String, Value)> {
    let full = listing.since.is_none();
    let mut matching: Vec<(String, Value)> = Vec::new();
    for e in state
        .events
        .iter()
        .filter(|e| e.calendar == calendar && e.seq <= listing.snapshot)
        .filter(|e| match listing.since {
            None => !e.deleted,
            Some(since) => e.seq > since,
        })
    {
        match (&e.series, listing.single_events) {
            (Some(series), true) => {
                for start in series.starts() {
                    let item = instance(e, series, start);
                    if full && !in_window(&item, listing.time_min, listing.time_max) {
                        continue;
                    }
                    let id = item["id"].as_str().unwrap_or_default().to_owned();
                    let item = if e.deleted { cancelled(&id) } else { item };
                    matching.push((id, item));
                }
            }
            (series, _) => {
                let inside = match series {
                    Some(series) => {
                        listing.time_min.is_none_or(|min| series.last_end() > min)
                            && listing.time_max.is_none_or(|max| series.first_start < max)
                    }
                    None => in_window(&e.resource, listing.time_min, listing.time_max),
                };
                if full && !inside {
                    continue;
                }
                let item = if e.deleted {
                    cancelled(&e.id)
                } else {
                    e.resource.clone()
                };
                matching.push((e.id.clone(), item));
            }
        }
    }
    matching.sort_by(|a, b| a.0.cmp(&b.0));
    matching
}

/// The caller's account, or the response to send instead.
async fn caller(sb: &Sandbox, m: &Method, u: &Uri, h: &HeaderMap) -> Result<Account, Box<Response>> {
    api_caller(sb, Provider::Google, m, u, h).await
}

/// `events.insert`: the client may choose the id (`a-v0-9`, 5–1024 characters); 409 when taken.
pub(crate) async fn events_insert(
    State(sb): State<Sandbox>,
    Path(calendar): Path<String>,
    m: Method,
    u: Uri,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let account = match caller(&sb, &m, &u, &h).await {
        Ok(account) => account,
        Err(r) => return *r,
    };
    let mut fields = match object_body(&body) {
        Ok(fields) => fields,
        Err(r) => return *r,
    };
    let mut g = sb.lock();
    let now = g.now();
    if let Err(r) = g.google.writable(&account.id, &calendar) {
        return *r;
    }
    let id = match fields.get("id") {
        None => uuid::Uuid::new_v4().simple().to_string(),
        Some(Value::String(id)) if valid_event_id(id) => id.clone(),
        Some(_) => return error(StatusCode::BAD_REQUEST, "invalid", "Invalid resource id value."),
    };
    if g.google.stored(&calendar, &id).is_some() {
        return error(
            StatusCode::CONFLICT,
            "duplicate",
            "The requested identifier already exists.",
        );
    }
    for server_owned in ["etag", "updated", "kind", "recurringEventId", "originalStartTime"] {
        fields.remove(server_owned);
    }
    fields.insert("id".into(), json!(id));
    fields.insert(
        "created".into(),
        json!(now.to_rfc3339_opts(SecondsFormat::Millis, true)),
    );
    fields.insert("creator".into(), json!({"email": account.email, "self": true}));
    fields.insert("organizer".into(), json!({"email": account.email, "self": true}));
    let resource = Value::Object(fields);
    if let Err(r) = times_present(&resource) {
        return *r;
    }
    let stored = g.google.store(now, &calendar, resource, None);
    drop(g);
    sb.notify_changes();
    axum::Json(stored).into_response()
}

/// `events.get`: stored events, instances of series, deleted ones as cancelled.
pub(crate) async fn events_get(
    State(sb): State<Sandbox>,
    Path((calendar, event)): Path<(String, String)>,
    m: Method,
    u: Uri,
    h: HeaderMap,
) -> Response {
    let account = match caller(&sb, &m, &u, &h).await {
        Ok(account) => account,
        Err(r) => return *r,
    };
    let g = sb.lock();
    if g.google.calendar(&account.id, &calendar).is_none() {
        return error(StatusCode::NOT_FOUND, "notFound", "Not Found");
    }
    match lookup(&g.google, &calendar, &event) {
        Some(resource) => axum::Json(resource).into_response(),
        None => error(StatusCode::NOT_FOUND, "notFound", "Not Found"),
    }
}

/// `events.patch`: top-level fields replace (`null` removes), guarded by `If-Match`.
/// Single instances of a series cannot be patched in the sandbox (404).
pub(crate) async fn events_patch(
    State(sb): State<Sandbox>,
    Path((calendar, event)): Path<(String, String)>,
    m: Method,
    u: Uri,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let account = match caller(&sb, &m, &u, &h).await {
        Ok(account) => account,
        Err(r) => return *r,
    };
    let patch = match object_body(&body) {
        Ok(fields) => fields,
        Err(r) => return *r,
    };
    let mut g = sb.lock();
    let now = g.now();
    if let Err(r) = g.google.writable(&account.id, &calendar) {
        return *r;
    }
    let Some(existing) = g.google.stored(&calendar, &event).cloned() else {
        return error(StatusCode::NOT_FOUND, "notFound", "Not Found");
    };
    if existing.deleted {
        return error(StatusCode::GONE, "deleted", "Resource has been deleted");
    }
    if let Err(r) = precondition(&h, &existing.resource) {
        return *r;
    }
    let mut resource = existing.resource.clone();
    if let Some(fields) = resource.as_object_mut() {
        for (key, value) in patch {
            if matches!(key.as_str(), "id" | "etag" | "updated" | "kind" | "iCalUID") {
                continue;
            }
            if value.is_null() {
                fields.remove(&key);
            } else {
                fields.insert(key, value);
            }
        }
    }
    if let Err(r) = times_present(&resource) {
        return *r;
    }
    let stored = g.google.store(now, &calendar, resource, existing.series);
    drop(g);
    sb.notify_changes();
    axum::Json(stored).into_response()
}

/// `events.delete`: 204; 410 `deleted` when already deleted; guarded by `If-Match`.
pub(crate) async fn events_delete(
    State(sb): State<Sandbox>,
    Path((calendar, event)): Path<(String, String)>,
    m: Method,
    u: Uri,
    h: HeaderMap,
) -> Response {
    let account = match caller(&sb, &m, &u, &h).await {
        Ok(account) => account,
        Err(r) => return *r,
    };
    let mut g = sb.lock();
    if let Err(r) = g.google.writable(&account.id, &calendar) {
        return *r;
    }
    let Some(existing) = g.google.stored(&calendar, &event) else {
        return error(StatusCode::NOT_FOUND, "notFound", "Not Found");
    };
    if existing.deleted {
        return error(StatusCode::GONE, "deleted", "Resource has been deleted");
    }
    if let Err(r) = precondition(&h, &existing.resource) {
        return *r;
    }
    g.google.delete(&calendar, &event);
    drop(g);
    sb.notify_changes();
    StatusCode::NO_CONTENT.into_response()
}

impl Sandbox {
    /// Adds a Google calendar to `account` (`access_role`: owner, writer, reader, freeBusyReader);
    /// the same calendar of the same account is replaced.
    pub fn add_google_calendar(&self, account: &str, id: &str, summary: &str, access_role: &str, primary: bool) {
        let calendar = GoogleCalendar {
            account: account.into(),
            id: id.into(),
            summary: summary.into(),
            access_role: access_role.into(),
            primary,
        };
        let calendars = &mut self.lock().google.calendars;
        match calendars.iter_mut().find(|c| c.account == account && c.id == id) {
            Some(existing) => *existing = calendar,
            None => calendars.push(calendar),
        }
    }

    /// Creates or replaces the event `resource["id"]` in `calendar`; sets its `etag` and `updated`.
    /// Returns the new etag. All-day events carry `start.date`/`end.date` (end exclusive).
    pub fn put_google_event(&self, calendar: &str, resource: Value) -> String {
        let stored = {
            let mut g = self.lock();
            let now = g.now();
            g.google.store(now, calendar, resource, None)
        };
        self.notify_changes();
        stored["etag"].as_str().unwrap_or_default().to_owned()
    }

    /// Creates or replaces the recurring series `id` in `calendar`: a master with
    /// `recurrence: ["RRULE:…"]` and the first occurrence's `start`/`end` (UTC),
    /// plus `fields` (summary, attendees…). `singleEvents=true` listings expand
    /// it into instances `{id}_{YYYYMMDDTHHMMSSZ}`. Returns the new etag.
    pub fn put_google_recurring_event(
        &self,
        calendar: &str,
        id: &str,
        recurrence: Recurrence,
        fields: Value,
    ) -> String {
        let mut resource = match fields {
            Value::Object(fields) => Value::Object(fields),
            _ => json!({}),
        };
        let freq = match recurrence.freq {
            Frequency::Daily => "DAILY",
            Frequency::Weekly => "WEEKLY",
        };
        let end = recurrence
            .first_start
            .checked_add_signed(recurrence.duration)
            .unwrap_or(recurrence.first_start);
        resource["id"] = json!(id);
        resource["start"] = json!({"dateTime": rfc3339(recurrence.first_start), "timeZone": "UTC"});
        resource["end"] = json!({"dateTime": rfc3339(end), "timeZone": "UTC"});
        resource["recurrence"] = json!([format!("RRULE:FREQ={freq};COUNT={}", recurrence.count)]);
        let stored = {
            let mut g = self.lock();
            let now = g.now();
            g.google.store(now, calendar, resource, Some(recurrence))
        };
        self.notify_changes();
        stored["etag"].as_str().unwrap_or_default().to_owned()
    }

    /// Deletes an event: incremental listings report it as cancelled.
    pub fn delete_google_event(&self, calendar: &str, id: &str) {
        self.lock().google.delete(calendar, id);
        self.notify_changes();
    }

    /// The stored resource of a Google event (instances of series too); deleted ones
    /// show `status: cancelled`. `None` if it never existed.
    pub fn google_event(&self, calendar: &str, id: &str) -> Option<Value> {
        lookup(&self.lock().google, calendar, id)
    }

    /// How many events (series count once) `calendar` holds, deleted ones excluded.
    pub fn google_event_count(&self, calendar: &str) -> usize {
        self.lock()
            .google
            .events
            .iter()
            .filter(|e| e.calendar == calendar && !e.deleted)
            .count()
    }

    /// Invalidates every Google sync token (the next incremental listing answers 410).
    pub fn expire_google_sync_tokens(&self) {
        self.lock().google.sync_tokens.clear();
    }
}
