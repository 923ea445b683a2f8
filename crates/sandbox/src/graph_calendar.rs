//! Microsoft Graph calendars and `calendarView/delta`, as PROVIDERS.md
//! describes them: `Prefer: odata.maxpagesize` pages chained by
//! `@odata.nextLink`, an `@odata.deltaLink` on the last page, changes since a
//! delta link with removed events as `{"id", "@removed": {"reason": "deleted"}}`,
//! `410 syncStateNotFound` for an expired or unknown token, and times in the
//! calendar's Windows zone unless `Prefer: outlook.timezone="UTC"` (all-day
//! events stay at midnight whatever the zone). Recurring series appear in a
//! view only as their occurrences (`type: occurrence`, `seriesMasterId`),
//! never as the master. Writes: `POST /me/calendars/{id}/events` (a repeated
//! `transactionId` returns the event it created), `GET`/`PATCH`/`DELETE
//! /me/events/{id}` guarded by `If-Match` with the `@odata.etag` (412).

use std::collections::HashMap;
use std::str::FromStr as _;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone as _, Utc};
use serde_json::{Map, Value, json};

use crate::{Account, Frequency, Provider, Recurrence, Sandbox, api_caller, instance_stamp};

/// Every sandbox Graph calendar lives in this zone (Windows name, IANA zone).
const ZONE: (&str, chrono_tz::Tz) = ("W. Europe Standard Time", chrono_tz::Europe::Berlin);
const GRAPH_TIME: &str = "%Y-%m-%dT%H:%M:%S%.f";
/// Graph's default page size for `/me/calendars`.
const CALENDAR_PAGE: usize = 10;

#[derive(Debug, Clone)]
pub(crate) struct GraphCalendar {
    pub(crate) account: String,
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) can_edit: bool,
    pub(crate) default: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct GraphEvent {
    pub(crate) calendar: String,
    pub(crate) id: String,
    /// The resource with start/end in UTC.
    pub(crate) resource: Value,
    seq: u64,
    pub(crate) deleted: bool,
    /// Set for a series master: the occurrences a view shows instead of it.
    series: Option<Recurrence>,
}

/// A delta round in progress or finished: its window and what it has seen.
#[derive(Debug, Clone)]
struct Round {
    calendar: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    since: Option<u64>,
    snapshot: u64,
    offset: usize,
    /// What the round serves, sorted, as of `snapshot` (`None`: removed):
    /// taken on its first page, so a page costs O(page) and later changes
    /// wait for the delta link.
    items: Option<Arc<Vec<RoundItem>>>,
}

/// One item of a round: the id, and the resource to show (`None`: removed).
type RoundItem = (String, Option<Value>);

/// Graph state inside the sandbox.
#[derive(Debug, Default)]
pub(crate) struct GraphState {
    pub(crate) calendars: Vec<GraphCalendar>,
    pub(crate) events: Vec<GraphEvent>,
    seq: u64,
    skip_tokens: HashMap<String, Round>,
    delta_tokens: HashMap<String, Round>,
    next_token: u64,
    /// Events changed since their subscribers were last notified.
    pub(crate) changed: Vec<crate::push::GraphChange>,
}

impl GraphState {
    fn token(&mut self) -> String {
        self.next_token += 1;
        format!("{:016x}", self.next_token.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// Stores `resource` as the new version of its event: bumps the change
    /// sequence, sets `changeKey`, `lastModifiedDateTime` and a default `type`.
    fn store(&mut self, now: DateTime<Utc>, calendar: &str, mut resource: Value, series: Option<Recurrence>) -> Value {
        self.seq += 1;
        let seq = self.seq;
        let id = resource
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        resource["changeKey"] = json!(format!("ck{seq}"));
        resource["lastModifiedDateTime"] = json!(now.to_rfc3339_opts(SecondsFormat::Secs, true));
        if resource.get("type").is_none() {
            resource["type"] = json!(if series.is_some() {
                "seriesMaster"
            } else {
                "singleInstance"
            });
        }
        if resource.get("iCalUId").is_none() {
            resource["iCalUId"] = json!(format!("{id}-ical"));
        }
        let existed = self
            .events
            .iter()
            .any(|e| e.calendar == calendar && e.id == id && !e.deleted);
        self.changed.push(crate::push::GraphChange {
            calendar: calendar.into(),
            event: id.clone(),
            kind: if existed { "updated" } else { "created" },
        });
        self.events.retain(|e| !(e.calendar == calendar && e.id == id));
        self.events.push(GraphEvent {
            calendar: calendar.into(),
            id,
            resource: resource.clone(),
            seq,
            deleted: false,
            series,
        });
        resource
    }

    /// Marks an event deleted: the next delta round reports it as `@removed`.
    fn delete(&mut self, id: &str) {
        self.seq += 1;
        let seq = self.seq;
        for event in self.events.iter_mut().filter(|e| e.id == id) {
            if !event.deleted {
                self.changed.push(crate::push::GraphChange {
                    calendar: event.calendar.clone(),
                    event: event.id.clone(),
                    kind: "deleted",
                });
            }
            event.deleted = true;
            event.seq = seq;
        }
    }

    /// The calendar, if `account` can see it.
    fn calendar(&self, account: &str, calendar: &str) -> Option<&GraphCalendar> {
        self.calendars.iter().find(|c| c.id == calendar && c.account == account)
    }

    /// The live (not deleted) stored event `id` in one of `account`'s calendars.
    fn live(&self, account: &str, id: &str) -> Option<&GraphEvent> {
        self.events
            .iter()
            .find(|e| e.id == id && !e.deleted && self.calendar(account, &e.calendar).is_some())
    }

    /// A stored event or one occurrence of a stored series, as a view shows it.
    fn lookup(&self, account: &str, id: &str) -> Option<Value> {
        if let Some(event) = self.live(account, id) {
            return Some(event.resource.clone());
        }
        let (master_id, stamp) = id.rsplit_once('_')?;
        let master = self.live(account, master_id)?;
        let series = master.series.as_ref()?;
        let start = series.starts().into_iter().find(|s| instance_stamp(*s) == stamp)?;
        Some(occurrence(master, series, start))
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message, "innerError": {}}})),
    )
        .into_response()
}

fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "ErrorItemNotFound",
        "The specified object was not found in the store.",
    )
}

fn utc_of(resource: &Value, key: &str) -> Option<DateTime<Utc>> {
    let text = resource.get(key)?.get("dateTime")?.as_str()?;
    NaiveDateTime::parse_from_str(text, GRAPH_TIME)
        .ok()
        .map(|t| t.and_utc())
}

/// The stored form of an instant: `{dateTime, timeZone: "UTC"}`.
pub(crate) fn graph_time(at: DateTime<Utc>) -> Value {
    json!({"dateTime": format!("{}.0000000", at.format("%Y-%m-%dT%H:%M:%S")), "timeZone": "UTC"})
}

fn render_time(at: DateTime<Utc>, utc: bool, all_day: bool) -> Value {
    if utc {
        graph_time(at)
    } else if all_day {
        // All-day events are dates: midnight in whatever zone they are shown in.
        json!({"dateTime": format!("{}.0000000", at.format("%Y-%m-%dT%H:%M:%S")), "timeZone": ZONE.0})
    } else {
        let local = ZONE.1.from_utc_datetime(&at.naive_utc());
        json!({"dateTime": format!("{}.0000000", local.format("%Y-%m-%dT%H:%M:%S")), "timeZone": ZONE.0})
    }
}

/// The resource as the API shows it: times in the preferred zone, `@odata.etag` set.
fn render(stored: &Value, utc: bool) -> Value {
    let mut resource = stored.clone();
    let all_day = stored.get("isAllDay").and_then(Value::as_bool).unwrap_or(false);
    for key in ["start", "end"] {
        if let Some(at) = utc_of(stored, key) {
            resource[key] = render_time(at, utc, all_day);
        }
    }
    if stored.get("changeKey").is_some_and(Value::is_string) {
        resource["@odata.etag"] = json!(odata_etag(stored));
    }
    resource
}

/// `W/"{changeKey}"`, the `@odata.etag` of a stored resource.
fn odata_etag(stored: &Value) -> String {
    let change_key = stored.get("changeKey").and_then(Value::as_str).unwrap_or_default();
    format!("W/\"{change_key}\"")
}

/// One occurrence of a series master, as a calendar view lists it.
fn occurrence(master: &GraphEvent, series: &Recurrence, start: DateTime<Utc>) -> Value {
    let mut resource = master.resource.clone();
    if let Some(fields) = resource.as_object_mut() {
        fields.remove("recurrence");
    }
    let end = start.checked_add_signed(series.duration).unwrap_or(start);
    resource["id"] = json!(format!("{}_{}", master.id, instance_stamp(start)));
    resource["type"] = json!("occurrence");
    resource["seriesMasterId"] = json!(master.id);
    resource["originalStart"] = json!(start.to_rfc3339_opts(SecondsFormat::Secs, true));
    resource["start"] = graph_time(start);
    resource["end"] = graph_time(end);
    resource
}

fn prefer(h: &HeaderMap) -> (usize, bool) {
    let mut size = 50;
    let mut utc = false;
    for value in h.get_all("prefer").iter().filter_map(|v| v.to_str().ok()) {
        for part in value.split(',').map(str::trim) {
            if let Some(n) = part.strip_prefix("odata.maxpagesize=").and_then(|n| n.parse().ok()) {
                size = n;
            }
            if part.eq_ignore_ascii_case("outlook.timezone=\"UTC\"") {
                utc = true;
            }
        }
    }
    (size.clamp(1, 1000), utc)
}

fn instant(q: &HashMap<String, String>, key: &str) -> Option<DateTime<Utc>> {
    let text = q.get(key)?;
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, GRAPH_TIME)
                .ok()
                .map(|t| t.and_utc())
        })
}

/// A written `{dateTime, timeZone}` (UTC, the sandbox's Windows zone or an IANA
/// name) as the stored UTC form; all-day times stay as written (dates).
fn written_time(value: &Value, all_day: bool) -> Option<Value> {
    written_instant(value, all_day).map(graph_time)
}

/// The instant a written `{dateTime, timeZone}` names (see [`written_time`]).
pub(crate) fn written_instant(value: &Value, all_day: bool) -> Option<DateTime<Utc>> {
    let local = NaiveDateTime::parse_from_str(value.get("dateTime")?.as_str()?, GRAPH_TIME).ok()?;
    let zone = value.get("timeZone").and_then(Value::as_str).unwrap_or("UTC");
    if all_day || zone == "UTC" {
        return Some(local.and_utc());
    }
    let tz = if zone == ZONE.0 {
        ZONE.1
    } else {
        chrono_tz::Tz::from_str(zone).ok()?
    };
    let at = tz.from_local_datetime(&local).earliest()?;
    Some(at.with_timezone(&Utc))
}

/// Normalises written `start`/`end` to UTC; `Err` with Graph's error when unreadable.
fn normalise_times(fields: &mut Map<String, Value>) -> Result<(), Box<Response>> {
    let all_day = fields.get("isAllDay").and_then(Value::as_bool).unwrap_or(false);
    for key in ["start", "end"] {
        if let Some(value) = fields.get(key) {
            let Some(utc) = written_time(value, all_day) else {
                return Err(Box::new(error(
                    StatusCode::BAD_REQUEST,
                    "ErrorInvalidRequest",
                    "The start or end time is not valid.",
                )));
            };
            fields.insert(key.into(), utc);
        }
    }
    Ok(())
}

/// A JSON object request body, or Graph's `RequestBodyRead`.
fn object_body(body: &[u8]) -> Result<Map<String, Value>, Box<Response>> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        _ => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "RequestBodyRead",
            "Cannot read the request body.",
        ))),
    }
}

/// 412 when `If-Match` names another version: the `@odata.etag`, quoted or bare change key.
fn precondition(h: &HeaderMap, resource: &Value) -> Result<(), Box<Response>> {
    let Some(wanted) = h.get(header::IF_MATCH) else {
        return Ok(());
    };
    let change_key = resource.get("changeKey").and_then(Value::as_str).unwrap_or_default();
    let matches = match wanted.to_str() {
        Ok("*") => true,
        Ok(w) => {
            let bare = w.strip_prefix("W/").unwrap_or(w);
            bare.trim_matches('"') == change_key
        }
        Err(_) => false,
    };
    if matches {
        Ok(())
    } else {
        Err(Box::new(error(
            StatusCode::PRECONDITION_FAILED,
            "ErrorIrresolvableConflict",
            "The change key passed in the request does not match the current change key for the item.",
        )))
    }
}

/// The caller's account, or the response to send instead.
async fn caller(sb: &Sandbox, m: &Method, u: &Uri, h: &HeaderMap) -> Result<Account, Box<Response>> {
    api_caller(sb, Provider::Microsoft, m, u, h).await
}

/// `GET /me/calendars`: `$top` (default 10) pages chained by `@odata.nextLink` with `$skip`.
pub(crate) async fn calendars(
    State(sb): State<Sandbox>,
    m: Method,
    u: Uri,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let account = match caller(&sb, &m, &u, &h).await {
        Ok(account) => account,
        Err(r) => return *r,
    };
    let top = q
        .get("$top")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(CALENDAR_PAGE)
        .clamp(1, 1000);
    let skip = q.get("$skip").and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let g = sb.lock();
    let mine: Vec<&GraphCalendar> = g.graph.calendars.iter().filter(|c| c.account == account.id).collect();
    let value: Vec<Value> = mine
        .iter()
        .skip(skip)
        .take(top)
        .map(|c| {
            json!({"id": c.id, "name": c.name, "hexColor": "#d13438", "canEdit": c.can_edit,
                "isDefaultCalendar": c.default, "owner": {"name": account.email, "address": account.email}})
        })
        .collect();
    let mut body = json!({"value": value});
    if skip.saturating_add(top) < mine.len() {
        body["@odata.nextLink"] = json!(format!(
            "http://{host}/microsoft/v1.0/me/calendars?$top={top}&$skip={}",
            skip + top
        ));
    }
    axum::Json(body).into_response()
}

pub(crate) async fn delta(
    State(sb): State<Sandbox>,
    Path(calendar): Path<String>,
    m: Method,
    u: Uri,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let account = match caller(&sb, &m, &u, &h).await {
        Ok(account) => account,
        Err(r) => return *r,
    };
    let (size, utc) = prefer(&h);
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let mut g = sb.lock();
    let state = &mut g.graph;
    if state.calendar(&account.id, &calendar).is_none() {
        return not_found();
    }
    let gone = || {
        error(
            StatusCode::GONE,
            "syncStateNotFound",
            "The sync state is not found or has expired.",
        )
    };
    let round = if let Some(skip) = q.get("$skiptoken") {
        match state.skip_tokens.get(skip) {
            Some(round) if round.calendar == calendar => round.clone(),
            _ => return gone(),
        }
    } else if let Some(delta) = q.get("$deltatoken") {
        match state.delta_tokens.get(delta) {
            Some(round) if round.calendar == calendar => Round {
                since: Some(round.snapshot),
                snapshot: state.seq,
                offset: 0,
                items: None,
                ..round.clone()
            },
            _ => return gone(),
        }
    } else {
        let (Some(start), Some(end)) = (instant(&q, "startDateTime"), instant(&q, "endDateTime")) else {
            return error(
                StatusCode::BAD_REQUEST,
                "ErrorInvalidParameter",
                "startDateTime and endDateTime are required for a calendar view",
            );
        };
        Round {
            calendar: calendar.clone(),
            start,
            end,
            since: None,
            snapshot: state.seq,
            offset: 0,
            items: None,
        }
    };
    let matching = match &round.items {
        Some(items) => Arc::clone(items),
        None => Arc::new(round_items(state, &calendar, &round)),
    };

    let value: Vec<Value> = matching
        .iter()
        .skip(round.offset)
        .take(size)
        .map(|(id, resource)| match resource {
            None => json!({"id": id, "@removed": {"reason": "deleted"}}),
            Some(resource) => render(resource, utc),
        })
        .collect();
    let base = format!(
        "http://{host}/microsoft/v1.0/me/calendars/{}/calendarView/delta",
        crate::enc(&calendar)
    );
    let mut body =
        json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(event)", "value": value});
    if round.offset + size < matching.len() {
        let token = state.token();
        state.skip_tokens.insert(
            token.clone(),
            Round {
                offset: round.offset + size,
                items: Some(matching),
                ..round
            },
        );
        body["@odata.nextLink"] = json!(format!("{base}?$skiptoken={token}"));
    } else {
        let token = state.token();
        state.delta_tokens.insert(token.clone(), Round { items: None, ..round });
        body["@odata.deltaLink"] = json!(format!("{base}?$deltatoken={token}"));
    }
    axum::Json(body).into_response()
}

/// Everything `round` serves, sorted by id: (id, resource to show; `None`
/// when removed). A view shows a series only as its occurrences.
fn round_items(state: &GraphState, calendar: &str, round: &Round) -> Vec<RoundItem> {
    let mut matching: Vec<RoundItem> = Vec::new();
    let mut consider = |id: String, resource: Option<&Value>, deleted: bool, seq: u64| {
        let inside = match resource.map(|r| (utc_of(r, "start"), utc_of(r, "end"))) {
            Some((Some(s), Some(en))) => s < round.end && en > round.start,
            _ => true,
        };
        match round.since {
            None if !deleted && inside => matching.push((id, resource.cloned())),
            None => {}
            // A change round reports what changed in its view; an event that
            // left the view (deleted, or moved out of the window) as removed.
            Some(since) if seq > since => {
                matching.push((id, if deleted || !inside { None } else { resource.cloned() }));
            }
            Some(_) => {}
        }
    };
    for e in state
        .events
        .iter()
        .filter(|e| e.calendar == calendar && e.seq <= round.snapshot)
    {
        match &e.series {
            // A view shows a series only as its occurrences, never the master.
            Some(series) => {
                for start in series.starts() {
                    let item = occurrence(e, series, start);
                    let id = item["id"].as_str().unwrap_or_default().to_owned();
                    consider(id, Some(&item), e.deleted, e.seq);
                }
            }
            None => consider(e.id.clone(), Some(&e.resource), e.deleted, e.seq),
        }
    }
    matching.sort_by(|a, b| a.0.cmp(&b.0));
    matching
}

/// `POST /me/calendars/{id}/events`: 201; a `transactionId` already used by a
/// live event of the mailbox returns that event instead of a duplicate.
pub(crate) async fn create_event(
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
    let (_, utc) = prefer(&h);
    let mut fields = match object_body(&body) {
        Ok(fields) => fields,
        Err(r) => return *r,
    };
    let mut g = sb.lock();
    let now = g.now();
    let state = &mut g.graph;
    match state.calendar(&account.id, &calendar) {
        None => return not_found(),
        Some(c) if !c.can_edit => {
            return error(StatusCode::FORBIDDEN, "ErrorAccessDenied", "Access is denied.");
        }
        Some(_) => {}
    }
    if let Some(transaction) = fields.get("transactionId").and_then(Value::as_str) {
        let earlier = state.events.iter().find(|e| {
            !e.deleted
                && e.resource.get("transactionId").and_then(Value::as_str) == Some(transaction)
                && state.calendar(&account.id, &e.calendar).is_some()
        });
        if let Some(earlier) = earlier {
            return (StatusCode::CREATED, axum::Json(render(&earlier.resource, utc))).into_response();
        }
    }
    if !(fields.contains_key("start") && fields.contains_key("end")) {
        return error(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRequest",
            "An event needs a start and an end.",
        );
    }
    if let Err(r) = normalise_times(&mut fields) {
        return *r;
    }
    for server_owned in [
        "id",
        "changeKey",
        "lastModifiedDateTime",
        "type",
        "seriesMasterId",
        "@odata.etag",
    ] {
        fields.remove(server_owned);
    }
    let id = format!("AAMkAGev{}", uuid::Uuid::new_v4().simple());
    fields.insert("id".into(), json!(id));
    fields.insert(
        "createdDateTime".into(),
        json!(now.to_rfc3339_opts(SecondsFormat::Secs, true)),
    );
    fields.entry("isAllDay").or_insert(json!(false));
    fields.entry("isCancelled").or_insert(json!(false));
    fields.entry("showAs").or_insert(json!("busy"));
    fields.insert(
        "organizer".into(),
        json!({"emailAddress": {"name": account.email, "address": account.email}}),
    );
    fields.insert("responseStatus".into(), json!({"response": "organizer"}));
    let stored = state.store(now, &calendar, Value::Object(fields), None);
    drop(g);
    sb.notify_changes();
    (StatusCode::CREATED, axum::Json(render(&stored, utc))).into_response()
}

/// `GET /me/events/{id}`: stored events and occurrences of series.
pub(crate) async fn get_event(
    State(sb): State<Sandbox>,
    Path(event): Path<String>,
    m: Method,
    u: Uri,
    h: HeaderMap,
) -> Response {
    let account = match caller(&sb, &m, &u, &h).await {
        Ok(account) => account,
        Err(r) => return *r,
    };
    let (_, utc) = prefer(&h);
    match sb.lock().graph.lookup(&account.id, &event) {
        Some(resource) => axum::Json(render(&resource, utc)).into_response(),
        None => not_found(),
    }
}

/// `PATCH /me/events/{id}`: given properties replace, guarded by `If-Match`.
/// Occurrences of a series cannot be changed in the sandbox (404).
pub(crate) async fn patch_event(
    State(sb): State<Sandbox>,
    Path(event): Path<String>,
    m: Method,
    u: Uri,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let account = match caller(&sb, &m, &u, &h).await {
        Ok(account) => account,
        Err(r) => return *r,
    };
    let (_, utc) = prefer(&h);
    let mut patch = match object_body(&body) {
        Ok(fields) => fields,
        Err(r) => return *r,
    };
    let mut g = sb.lock();
    let now = g.now();
    let state = &mut g.graph;
    let Some(existing) = state.live(&account.id, &event).cloned() else {
        return not_found();
    };
    if state
        .calendar(&account.id, &existing.calendar)
        .is_some_and(|c| !c.can_edit)
    {
        return error(StatusCode::FORBIDDEN, "ErrorAccessDenied", "Access is denied.");
    }
    if let Err(r) = precondition(&h, &existing.resource) {
        return *r;
    }
    if !patch.contains_key("isAllDay")
        && let Some(all_day) = existing.resource.get("isAllDay")
    {
        patch.insert("isAllDay".into(), all_day.clone());
    }
    if let Err(r) = normalise_times(&mut patch) {
        return *r;
    }
    let mut resource = existing.resource.clone();
    if let Some(fields) = resource.as_object_mut() {
        for (key, value) in patch {
            if matches!(
                key.as_str(),
                "id" | "changeKey" | "lastModifiedDateTime" | "type" | "@odata.etag" | "iCalUId"
            ) {
                continue;
            }
            fields.insert(key, value);
        }
    }
    let stored = state.store(now, &existing.calendar, resource, existing.series);
    drop(g);
    sb.notify_changes();
    axum::Json(render(&stored, utc)).into_response()
}

/// `DELETE /me/events/{id}`: 204; 404 when gone; guarded by `If-Match`.
pub(crate) async fn delete_event(
    State(sb): State<Sandbox>,
    Path(event): Path<String>,
    m: Method,
    u: Uri,
    h: HeaderMap,
) -> Response {
    let account = match caller(&sb, &m, &u, &h).await {
        Ok(account) => account,
        Err(r) => return *r,
    };
    let mut g = sb.lock();
    let state = &mut g.graph;
    let Some(existing) = state.live(&account.id, &event).cloned() else {
        return not_found();
    };
    if state
        .calendar(&account.id, &existing.calendar)
        .is_some_and(|c| !c.can_edit)
    {
        return error(StatusCode::FORBIDDEN, "ErrorAccessDenied", "Access is denied.");
    }
    if let Err(r) = precondition(&h, &existing.resource) {
        return *r;
    }
    state.delete(&event);
    drop(g);
    sb.notify_changes();
    StatusCode::NO_CONTENT.into_response()
}

impl Sandbox {
    /// Adds a Graph calendar to `account`; the same calendar of the same account is replaced.
    pub fn add_graph_calendar(&self, account: &str, id: &str, name: &str, can_edit: bool, default: bool) {
        let calendar = GraphCalendar {
            account: account.into(),
            id: id.into(),
            name: name.into(),
            can_edit,
            default,
        };
        let calendars = &mut self.lock().graph.calendars;
        match calendars.iter_mut().find(|c| c.account == account && c.id == id) {
            Some(existing) => *existing = calendar,
            None => calendars.push(calendar),
        }
    }

    /// Creates or replaces the event `resource["id"]` in `calendar`. `start`/`end` are
    /// `{dateTime, timeZone: "UTC"}`; `changeKey` and `lastModifiedDateTime` are set here.
    /// All-day events have `isAllDay: true` and midnight times (end exclusive).
    /// Returns the new `@odata.etag`.
    pub fn put_graph_event(&self, calendar: &str, resource: Value) -> String {
        let stored = {
            let mut g = self.lock();
            let now = g.now();
            g.graph.store(now, calendar, resource, None)
        };
        self.notify_changes();
        odata_etag(&stored)
    }

    /// Creates or replaces the recurring series `id` in `calendar`: a `seriesMaster`
    /// with a Graph `recurrence` (daily/weekly, numbered range) plus `fields`.
    /// Calendar views show only its occurrences (`type: occurrence`, `seriesMasterId`,
    /// ids `{id}_{YYYYMMDDTHHMMSSZ}`), never the master. Returns the new `@odata.etag`.
    pub fn put_graph_recurring_event(&self, calendar: &str, id: &str, recurrence: Recurrence, fields: Value) -> String {
        let mut resource = match fields {
            Value::Object(fields) => Value::Object(fields),
            _ => json!({}),
        };
        let first = recurrence.first_start;
        let end = first.checked_add_signed(recurrence.duration).unwrap_or(first);
        let pattern = match recurrence.freq {
            Frequency::Daily => json!({"type": "daily", "interval": 1}),
            Frequency::Weekly => json!({"type": "weekly", "interval": 1,
                "daysOfWeek": [first.format("%A").to_string().to_lowercase()], "firstDayOfWeek": "sunday"}),
        };
        resource["id"] = json!(id);
        resource["type"] = json!("seriesMaster");
        resource["start"] = graph_time(first);
        resource["end"] = graph_time(end);
        resource["recurrence"] = json!({"pattern": pattern, "range": {"type": "numbered",
            "startDate": first.format("%Y-%m-%d").to_string(), "numberOfOccurrences": recurrence.count,
            "recurrenceTimeZone": "UTC"}});
        let stored = {
            let mut g = self.lock();
            let now = g.now();
            g.graph.store(now, calendar, resource, Some(recurrence))
        };
        self.notify_changes();
        odata_etag(&stored)
    }

    /// Deletes an event: the next delta round reports it as `@removed`.
    pub fn delete_graph_event(&self, calendar: &str, id: &str) {
        {
            let mut g = self.lock();
            if g.graph.events.iter().any(|e| e.calendar == calendar && e.id == id) {
                g.graph.delete(id);
            }
        }
        self.notify_changes();
    }

    /// The stored resource of a live Graph event (start/end in UTC, no `@odata.etag`).
    pub fn graph_event(&self, id: &str) -> Option<Value> {
        let g = self.lock();
        g.graph
            .events
            .iter()
            .find(|e| e.id == id && !e.deleted)
            .map(|e| e.resource.clone())
    }

    /// How many live events (series count once) `calendar` holds.
    pub fn graph_event_count(&self, calendar: &str) -> usize {
        self.lock()
            .graph
            .events
            .iter()
            .filter(|e| e.calendar == calendar && !e.deleted)
            .count()
    }

    /// Forgets every delta and skip token (the next use answers 410 `syncStateNotFound`).
    pub fn expire_graph_delta_tokens(&self) {
        let mut g = self.lock();
        g.graph.delta_tokens.clear();
        g.graph.skip_tokens.clear();
    }
}
