//! Microsoft Graph calendars and `calendarView/delta`, as PROVIDERS.md
//! describes them: `Prefer: odata.maxpagesize` pages chained by
//! `@odata.nextLink`, an `@odata.deltaLink` on the last page, changes since a
//! delta link with removed events as `{"id", "@removed": {"reason": "deleted"}}`,
//! `410 syncStateNotFound` for an expired or unknown token, and times in the
//! calendar's Windows zone unless `Prefer: outlook.timezone="UTC"`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, TimeZone as _, Utc};
use serde_json::{Value, json};

use crate::{Provider, Sandbox, api_caller};

/// Every sandbox Graph calendar lives in this zone (Windows name, IANA zone).
const ZONE: (&str, chrono_tz::Tz) = ("W. Europe Standard Time", chrono_tz::Europe::Berlin);
const GRAPH_TIME: &str = "%Y-%m-%dT%H:%M:%S%.f";

#[derive(Debug, Clone)]
pub(crate) struct GraphCalendar {
    account: String,
    id: String,
    name: String,
    can_edit: bool,
    default: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct GraphEvent {
    calendar: String,
    id: String,
    /// The resource with start/end in UTC.
    resource: Value,
    seq: u64,
    deleted: bool,
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
}

/// Graph state inside the sandbox.
#[derive(Debug, Default)]
pub(crate) struct GraphState {
    calendars: Vec<GraphCalendar>,
    events: Vec<GraphEvent>,
    seq: u64,
    skip_tokens: HashMap<String, Round>,
    delta_tokens: HashMap<String, Round>,
    next_token: u64,
}

impl GraphState {
    fn token(&mut self) -> String {
        self.next_token += 1;
        format!("{:016x}", self.next_token.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message, "innerError": {}}})),
    )
        .into_response()
}

fn utc_of(resource: &Value, key: &str) -> Option<DateTime<Utc>> {
    let text = resource.get(key)?.get("dateTime")?.as_str()?;
    NaiveDateTime::parse_from_str(text, GRAPH_TIME)
        .ok()
        .map(|t| t.and_utc())
}

fn render_time(at: DateTime<Utc>, utc: bool) -> Value {
    if utc {
        json!({"dateTime": format!("{}.0000000", at.format("%Y-%m-%dT%H:%M:%S")), "timeZone": "UTC"})
    } else {
        let local = ZONE.1.from_utc_datetime(&at.naive_utc());
        json!({"dateTime": format!("{}.0000000", local.format("%Y-%m-%dT%H:%M:%S")), "timeZone": ZONE.0})
    }
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

pub(crate) async fn calendars(State(sb): State<Sandbox>, m: Method, u: Uri, h: HeaderMap) -> Response {
    let account = match api_caller(&sb, Provider::Microsoft, &m, &u, &h).await {
        Ok(account) => account,
        Err(r) => return *r,
    };
    let g = sb.lock();
    let value: Vec<Value> = g
        .graph
        .calendars
        .iter()
        .filter(|c| c.account == account.id)
        .map(|c| {
            json!({"id": c.id, "name": c.name, "hexColor": "#d13438", "canEdit": c.can_edit,
                "isDefaultCalendar": c.default, "owner": {"name": account.email, "address": account.email}})
        })
        .collect();
    axum::Json(json!({"value": value})).into_response()
}

pub(crate) async fn delta(
    State(sb): State<Sandbox>,
    Path(calendar): Path<String>,
    m: Method,
    u: Uri,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let account = match api_caller(&sb, Provider::Microsoft, &m, &u, &h).await {
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
    if !state
        .calendars
        .iter()
        .any(|c| c.id == calendar && c.account == account.id)
    {
        return error(
            StatusCode::NOT_FOUND,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        );
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
        }
    };

    let mut matching: Vec<&GraphEvent> = state
        .events
        .iter()
        .filter(|e| e.calendar == calendar && e.seq <= round.snapshot)
        .filter(|e| {
            let inside = match (utc_of(&e.resource, "start"), utc_of(&e.resource, "end")) {
                (Some(s), Some(en)) => s < round.end && en > round.start,
                _ => true,
            };
            match round.since {
                None => !e.deleted && inside,
                Some(since) => e.seq > since && (inside || e.deleted),
            }
        })
        .collect();
    matching.sort_by(|a, b| a.id.cmp(&b.id));
    let value: Vec<Value> = matching
        .iter()
        .skip(round.offset)
        .take(size)
        .map(|e| {
            if e.deleted {
                return json!({"id": e.id, "@removed": {"reason": "deleted"}});
            }
            let mut resource = e.resource.clone();
            for key in ["start", "end"] {
                if let Some(at) = utc_of(&e.resource, key) {
                    resource[key] = render_time(at, utc);
                }
            }
            resource
        })
        .collect();
    let base = format!("http://{host}/microsoft/v1.0/me/calendars/{calendar}/calendarView/delta");
    let mut body =
        json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(event)", "value": value});
    if round.offset + size < matching.len() {
        let token = state.token();
        state.skip_tokens.insert(
            token.clone(),
            Round {
                offset: round.offset + size,
                ..round
            },
        );
        body["@odata.nextLink"] = json!(format!("{base}?$skiptoken={token}"));
    } else {
        let token = state.token();
        state.delta_tokens.insert(token.clone(), round);
        body["@odata.deltaLink"] = json!(format!("{base}?$deltatoken={token}"));
    }
    axum::Json(body).into_response()
}

impl Sandbox {
    /// Adds a Graph calendar to `account`.
    pub fn add_graph_calendar(&self, account: &str, id: &str, name: &str, can_edit: bool, default: bool) {
        self.lock().graph.calendars.push(GraphCalendar {
            account: account.into(),
            id: id.into(),
            name: name.into(),
            can_edit,
            default,
        });
    }

    /// Creates or replaces the event `resource["id"]` in `calendar`. `start`/`end` are
    /// `{dateTime, timeZone: "UTC"}`; `changeKey` and `lastModifiedDateTime` are set here.
    pub fn put_graph_event(&self, calendar: &str, mut resource: Value) {
        let mut g = self.lock();
        let now = g.now();
        let state = &mut g.graph;
        state.seq += 1;
        let seq = state.seq;
        let id = resource
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        resource["changeKey"] = json!(format!("ck{seq}"));
        resource["lastModifiedDateTime"] = json!(now.to_rfc3339());
        if resource.get("type").is_none() {
            resource["type"] = json!("singleInstance");
        }
        state.events.retain(|e| !(e.calendar == calendar && e.id == id));
        state.events.push(GraphEvent {
            calendar: calendar.into(),
            id,
            resource,
            seq,
            deleted: false,
        });
    }

    /// Deletes an event: the next delta round reports it as `@removed`.
    pub fn delete_graph_event(&self, calendar: &str, id: &str) {
        let mut g = self.lock();
        let state = &mut g.graph;
        state.seq += 1;
        let seq = state.seq;
        for event in state.events.iter_mut().filter(|e| e.calendar == calendar && e.id == id) {
            event.deleted = true;
            event.seq = seq;
        }
    }

    /// Forgets every delta and skip token (the next use answers 410 `syncStateNotFound`).
    pub fn expire_graph_delta_tokens(&self) {
        let mut g = self.lock();
        g.graph.delta_tokens.clear();
        g.graph.skip_tokens.clear();
    }
}
