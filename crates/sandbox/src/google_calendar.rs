//! Google Calendar API v3, as PROVIDERS.md describes it: `calendarList` and
//! `events.list` with `maxResults`/`pageToken` paging (deliberately short
//! pages while more remain), `nextSyncToken` on the last page only,
//! incremental listings by `syncToken` that include deletions as
//! `{"id", "status": "cancelled"}`, and `410 fullSyncRequired` for an expired
//! or unknown sync token.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};

use crate::{Provider, Sandbox, api_caller};

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
}

impl GoogleState {
    fn token(&mut self, prefix: &str) -> String {
        self.next_token += 1;
        format!("{prefix}{:016x}", self.next_token.wrapping_mul(0x9e37_79b9_7f4a_7c15))
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
fn instant(value: &Value) -> Option<DateTime<Utc>> {
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
        }
    };

    let mut matching: Vec<&GoogleEvent> = state
        .events
        .iter()
        .filter(|e| e.calendar == calendar && e.seq <= listing.snapshot)
        .filter(|e| match listing.since {
            None => !e.deleted && in_window(&e.resource, listing.time_min, listing.time_max),
            Some(since) => e.seq > since,
        })
        .collect();
    matching.sort_by(|a, b| a.id.cmp(&b.id));
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
        .map(|e| {
            if e.deleted {
                json!({"kind": "calendar#event", "id": e.id, "status": "cancelled"})
            } else {
                e.resource.clone()
            }
        })
        .collect();
    let mut body = json!({"kind": "calendar#events", "summary": calendar, "timeZone": "Europe/Berlin",
        "defaultReminders": [{"method": "popup", "minutes": 10}], "items": items});
    if listing.offset + take < matching.len() {
        let token = state.token("pg");
        state.listings.insert(
            token.clone(),
            Listing {
                offset: listing.offset + take,
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

impl Sandbox {
    /// Adds a Google calendar to `account` (`access_role`: owner, writer, reader, freeBusyReader).
    pub fn add_google_calendar(&self, account: &str, id: &str, summary: &str, access_role: &str, primary: bool) {
        self.lock().google.calendars.push(GoogleCalendar {
            account: account.into(),
            id: id.into(),
            summary: summary.into(),
            access_role: access_role.into(),
            primary,
        });
    }

    /// Creates or replaces the event `resource["id"]` in `calendar`; sets its `etag` and `updated`.
    /// Returns the new etag.
    pub fn put_google_event(&self, calendar: &str, mut resource: Value) -> String {
        let mut g = self.lock();
        let now = g.now();
        let state = &mut g.google;
        state.seq += 1;
        let seq = state.seq;
        let id = resource
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let etag = format!("\"{seq}\"");
        resource["etag"] = json!(etag);
        resource["updated"] = json!(now.to_rfc3339());
        resource["kind"] = json!("calendar#event");
        if resource.get("status").is_none() {
            resource["status"] = json!("confirmed");
        }
        state.events.retain(|e| !(e.calendar == calendar && e.id == id));
        state.events.push(GoogleEvent {
            calendar: calendar.into(),
            id,
            resource,
            seq,
            deleted: false,
        });
        etag
    }

    /// Deletes an event: incremental listings report it as cancelled.
    pub fn delete_google_event(&self, calendar: &str, id: &str) {
        let mut g = self.lock();
        let state = &mut g.google;
        state.seq += 1;
        let seq = state.seq;
        for event in state.events.iter_mut().filter(|e| e.calendar == calendar && e.id == id) {
            event.deleted = true;
            event.seq = seq;
        }
    }

    /// Invalidates every Google sync token (the next incremental listing answers 410).
    pub fn expire_google_sync_tokens(&self) {
        self.lock().google.sync_tokens.clear();
    }
}
