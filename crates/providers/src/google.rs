//! Google Calendar API v3 client ([`GoogleCalendarClient`]): `calendarList`,
//! `events.list` with `singleEvents=true` (full listings in a window,
//! incremental ones by sync token, both paged by `pageToken`), and event
//! insert/patch/delete. Inserts choose the event id from the caller's
//! idempotency key, so a retried insert finds its first attempt (409) instead
//! of creating a duplicate.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::SecondsFormat;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use juy_domain::{Clock, Provider, SystemClock, TimeRange};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http_util::{ApiBase, ApiRequest, DEFAULT_TIMEOUT, Dialect, HttpClient};
use crate::push::{self, PushChannel, WatchRequest};
use crate::{
    Authorizer, CalendarProvider, EventPage, EventWrite, ProviderError, RawEvent, RemoteCalendar, WrittenEvent,
};

/// The production API base URL.
pub const DEFAULT_BASE_URL: &str = "https://www.googleapis.com/calendar/v3";
/// The `maxResults` asked for by default: 1,000 of the 2,500 Google allows
/// (its own default is 250), a quarter of the requests and quota a large
/// calendar costs at 250, with pages small enough to keep a sync's memory
/// flat (BENCHMARKS.md measures both).
pub const DEFAULT_PAGE_SIZE: u32 = 1000;
/// The largest `maxResults` Google accepts for events (calendar lists: 250).
pub const MAX_PAGE_SIZE: u32 = 2500;
const MAX_CALENDAR_PAGE_SIZE: u32 = 250;

/// Settings of a [`GoogleCalendarClient`].
#[derive(Debug, Clone)]
pub struct GoogleOptions {
    /// Timeout of each HTTP request (connect, send, read the whole answer).
    pub timeout: Duration,
    /// Events per page (`maxResults`, clamped to 1–2500).
    pub page_size: u32,
    /// The clock `Retry-After` dates are measured against when the answer has no `Date`.
    pub clock: Arc<dyn Clock>,
}

impl Default for GoogleOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            page_size: DEFAULT_PAGE_SIZE,
            clock: Arc::new(SystemClock),
        }
    }
}

/// One Google account's calendars through Google Calendar API v3.
#[derive(Debug, Clone)]
pub struct GoogleCalendarClient {
    http: HttpClient,
    base: ApiBase,
    page_size: u32,
}

/// Where a paged listing stands.
enum Next {
    First,
    Page(String),
    Done,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CalendarListPage {
    #[serde(default)]
    items: Vec<Value>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CalendarListEntry {
    id: String,
    summary: Option<String>,
    summary_override: Option<String>,
    background_color: Option<String>,
    time_zone: Option<String>,
    #[serde(default)]
    primary: bool,
    access_role: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventsPage {
    #[serde(default)]
    items: Vec<Value>,
    next_page_token: Option<String>,
    next_sync_token: Option<String>,
    default_reminders: Option<Value>,
    time_zone: Option<String>,
}

impl GoogleCalendarClient {
    /// A client for the account `authorizer` speaks for, at `base_url`
    /// ([`DEFAULT_BASE_URL`] in production). `client` is shared and built by the caller.
    pub fn new(
        client: reqwest::Client,
        base_url: &str,
        authorizer: Arc<dyn Authorizer>,
        options: GoogleOptions,
    ) -> Result<Self, ProviderError> {
        Ok(Self {
            http: HttpClient::new(client, authorizer, options.timeout, Dialect::Google, options.clock),
            base: ApiBase::parse(base_url)?,
            page_size: options.page_size.clamp(1, MAX_PAGE_SIZE),
        })
    }

    /// Pages of `GET /calendars/{id}/events` with `query` (plus `pageToken`
    /// after the first), starting at `first_page` when resuming.
    fn event_pages<'a>(
        &'a self,
        calendar_id: &'a str,
        query: Vec<(String, String)>,
        first_page: Option<String>,
    ) -> BoxStream<'a, Result<EventPage, ProviderError>> {
        let start = match first_page {
            Some(token) => Next::Page(token),
            None => Next::First,
        };
        futures::stream::try_unfold(start, move |next| {
            let query = query.clone();
            async move {
                let page_token = match next {
                    Next::Done => return Ok(None),
                    Next::First => None,
                    Next::Page(token) => Some(token),
                };
                let mut url = self.base.url(&["calendars", calendar_id, "events"]);
                {
                    let mut pairs = url.query_pairs_mut();
                    for (key, value) in &query {
                        pairs.append_pair(key, value);
                    }
                    if let Some(token) = &page_token {
                        pairs.append_pair("pageToken", token);
                    }
                }
                let page: EventsPage = self.http.send_json(&ApiRequest::get(url)).await?;
                let next = match page.next_page_token {
                    Some(token) if page_token.as_ref() == Some(&token) => {
                        return Err(ProviderError::Malformed("the provider repeated a page token".into()));
                    }
                    Some(token) => Next::Page(token),
                    None => Next::Done,
                };
                let mut defaults = serde_json::Map::new();
                if let Some(reminders) = page.default_reminders {
                    defaults.insert("defaultReminders".into(), reminders);
                }
                if let Some(zone) = page.time_zone {
                    defaults.insert("timeZone".into(), Value::String(zone));
                }
                let resume = match &next {
                    Next::Page(token) => Some(resume_token(&query, token)),
                    _ => None,
                };
                let last = matches!(next, Next::Done);
                let out = EventPage {
                    items: page.items.into_iter().map(RawEvent::Google).collect(),
                    removed: Vec::new(),
                    calendar_defaults: (!defaults.is_empty()).then_some(Value::Object(defaults)),
                    // Only the last page carries the sync token; a short page is not the last.
                    next_cursor: if last { page.next_sync_token } else { None },
                    resume,
                };
                Ok(Some((out, next)))
            }
        })
        .boxed()
    }

    fn event_url(&self, calendar_id: &str, event_id: &str) -> url::Url {
        let mut url = self.base.url(&["calendars", calendar_id, "events", event_id]);
        url.query_pairs_mut().append_pair("sendUpdates", "none");
        url
    }

    async fn get_event(&self, calendar_id: &str, event_id: &str) -> Result<Value, ProviderError> {
        let url = self.base.url(&["calendars", calendar_id, "events", event_id]);
        self.http.send_json(&ApiRequest::get(url)).await
    }
}

/// Google event ids: `a-v` and `0-9` (base32hex), 5 to 1024 characters.
/// Query parameters a resume token may carry: those of a listing or change feed.
const RESUMABLE_PARAMS: &[&str] = &["singleEvents", "timeMin", "timeMax", "maxResults", "syncToken"];

/// A resume token: the listing's query and the next page's token, as a query string
/// (Google wants the same parameters with every `pageToken`).
fn resume_token(query: &[(String, String)], page_token: &str) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (key, value) in query {
        out.append_pair(key, value);
    }
    out.append_pair("pageToken", page_token);
    out.finish()
}

/// The query and page token of a [`resume_token`]; `None` if it is not one.
fn parse_resume_token(token: &str) -> Option<(Vec<(String, String)>, String)> {
    let mut query = Vec::new();
    let mut page_token = None;
    for (key, value) in form_urlencoded::parse(token.as_bytes()) {
        if key == "pageToken" {
            if page_token.replace(value.into_owned()).is_some() {
                return None;
            }
        } else if RESUMABLE_PARAMS.contains(&key.as_ref()) && !query.iter().any(|(k, _)| k == key.as_ref()) {
            query.push((key.into_owned(), value.into_owned()));
        } else {
            return None;
        }
    }
    page_token.filter(|token| !token.is_empty()).map(|token| (query, token))
}

fn valid_event_id(id: &str) -> bool {
    (5..=1024).contains(&id.len()) && id.bytes().all(|b| matches!(b, b'a'..=b'v' | b'0'..=b'9'))
}

fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The event resource for an insert or patch. On a patch, absent optional
/// fields are sent as `null` so they are cleared, not kept.
fn event_body(event: &EventWrite, clear_absent: bool) -> Value {
    let mut body = json!({
        "summary": event.title,
        "start": {"dateTime": rfc3339(event.start), "timeZone": event.time_zone},
        "end": {"dateTime": rfc3339(event.end), "timeZone": event.time_zone},
        "attendees": event.attendees.iter().map(|email| json!({"email": email})).collect::<Vec<_>>(),
    });
    for (key, value) in [("description", &event.description), ("location", &event.location)] {
        match value {
            Some(text) => body[key] = json!(text),
            None if clear_absent => body[key] = Value::Null,
            None => {}
        }
    }
    body
}

/// The written event as the caller needs it.
fn written(resource: Value) -> Result<WrittenEvent, ProviderError> {
    let id = resource
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::Malformed("the written event has no id".into()))?
        .to_owned();
    let etag = resource.get("etag").and_then(Value::as_str).map(str::to_owned);
    Ok(WrittenEvent {
        external_id: id,
        etag,
        raw: Some(RawEvent::Google(resource)),
    })
}

fn calendar_of(entry: Value) -> Option<RemoteCalendar> {
    let entry: CalendarListEntry = match serde_json::from_value(entry) {
        Ok(entry) => entry,
        Err(_) => {
            tracing::warn!("skipping a Google calendarList entry without a readable id");
            return None;
        }
    };
    let can_write = matches!(entry.access_role.as_deref(), Some("owner" | "writer"));
    Some(RemoteCalendar {
        name: entry
            .summary_override
            .or(entry.summary)
            .unwrap_or_else(|| entry.id.clone()),
        id: entry.id,
        color: entry.background_color.map(|c| c.to_ascii_lowercase()),
        time_zone: entry.time_zone,
        is_primary: entry.primary,
        can_write,
    })
}

#[async_trait]
impl CalendarProvider for GoogleCalendarClient {
    fn provider(&self) -> Provider {
        Provider::Google
    }

    async fn list_calendars(&self) -> Result<Vec<RemoteCalendar>, ProviderError> {
        let mut calendars = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut url = self.base.url(&["users", "me", "calendarList"]);
            {
                let mut pairs = url.query_pairs_mut();
                pairs.append_pair("maxResults", &self.page_size.min(MAX_CALENDAR_PAGE_SIZE).to_string());
                if let Some(token) = &page_token {
                    pairs.append_pair("pageToken", token);
                }
            }
            let page: CalendarListPage = self.http.send_json(&ApiRequest::get(url)).await?;
            calendars.extend(page.items.into_iter().filter_map(calendar_of));
            match page.next_page_token {
                Some(token) if page_token.as_ref() == Some(&token) => {
                    return Err(ProviderError::Malformed("the provider repeated a page token".into()));
                }
                Some(token) => page_token = Some(token),
                None => return Ok(calendars),
            }
        }
    }

    fn list_events<'a>(
        &'a self,
        calendar_id: &'a str,
        window: TimeRange,
    ) -> BoxStream<'a, Result<EventPage, ProviderError>> {
        let query = vec![
            ("singleEvents".to_owned(), "true".to_owned()),
            ("timeMin".to_owned(), rfc3339(window.start())),
            ("timeMax".to_owned(), rfc3339(window.end())),
            ("maxResults".to_owned(), self.page_size.to_string()),
        ];
        self.event_pages(calendar_id, query, None)
    }

    fn changes<'a>(&'a self, calendar_id: &'a str, cursor: &'a str) -> BoxStream<'a, Result<EventPage, ProviderError>> {
        // The same query as the full listing minus the window, which a sync token cannot be combined with.
        let query = vec![
            ("singleEvents".to_owned(), "true".to_owned()),
            ("maxResults".to_owned(), self.page_size.to_string()),
            ("syncToken".to_owned(), cursor.to_owned()),
        ];
        self.event_pages(calendar_id, query, None)
    }

    fn resume<'a>(&'a self, calendar_id: &'a str, token: &'a str) -> BoxStream<'a, Result<EventPage, ProviderError>> {
        match parse_resume_token(token) {
            Some((query, page_token)) => self.event_pages(calendar_id, query, Some(page_token)),
            None => futures::stream::once(async {
                Err(ProviderError::Malformed("not a resume token of this client".into()))
            })
            .boxed(),
        }
    }

    async fn create_event(
        &self,
        calendar_id: &str,
        idempotency_key: &str,
        event: &EventWrite,
    ) -> Result<WrittenEvent, ProviderError> {
        if !valid_event_id(idempotency_key) {
            return Err(ProviderError::Rejected {
                status: 400,
                reason: "invalidIdempotencyKey".into(),
            });
        }
        let mut url = self.base.url(&["calendars", calendar_id, "events"]);
        url.query_pairs_mut().append_pair("sendUpdates", "none");
        let mut body = event_body(event, false);
        body["id"] = json!(idempotency_key);
        let response = self.http.send(&ApiRequest::new(Method::POST, url).json(body)).await?;
        if response.status.is_success() {
            return written(response.json()?);
        }
        if response.status != StatusCode::CONFLICT {
            return Err(self.http.error(&response));
        }
        // The id is taken: an earlier attempt of this very create succeeded.
        let existing = match self.get_event(calendar_id, idempotency_key).await {
            Ok(existing) => existing,
            // Taken, yet not readable here: not ours to claim.
            Err(ProviderError::NotFound) => return Err(ProviderError::AlreadyExists),
            Err(other) => return Err(other),
        };
        if existing.get("status").and_then(Value::as_str) == Some("cancelled") {
            // Created, then deleted: Google never reuses the id, and reviving it is not ours to do.
            return Err(ProviderError::AlreadyExists);
        }
        written(existing)
    }

    async fn update_event(
        &self,
        calendar_id: &str,
        external_id: &str,
        etag: Option<&str>,
        event: &EventWrite,
    ) -> Result<WrittenEvent, ProviderError> {
        let request = ApiRequest::new(Method::PATCH, self.event_url(calendar_id, external_id))
            .if_match(etag)?
            .json(event_body(event, true));
        let response = self.http.send_ok(&request).await?;
        written(response.json()?)
    }

    async fn delete_event(
        &self,
        calendar_id: &str,
        external_id: &str,
        etag: Option<&str>,
    ) -> Result<(), ProviderError> {
        let request = ApiRequest::new(Method::DELETE, self.event_url(calendar_id, external_id)).if_match(etag)?;
        let response = self.http.send(&request).await?;
        match response.status {
            status if status.is_success() => Ok(()),
            // Already gone (410 `deleted`, or never there): the goal is reached.
            StatusCode::NOT_FOUND | StatusCode::GONE => Ok(()),
            _ => Err(self.http.error(&response)),
        }
    }

    async fn watch(&self, calendar_id: &str, request: &WatchRequest) -> Result<Option<PushChannel>, ProviderError> {
        push::google_watch(&self.http, &self.base, calendar_id, request)
            .await
            .map(Some)
    }

    async fn renew_watch(
        &self,
        calendar_id: &str,
        old: &PushChannel,
        request: &WatchRequest,
    ) -> Result<Option<PushChannel>, ProviderError> {
        push::google_renew(&self.http, &self.base, calendar_id, old, request)
            .await
            .map(Some)
    }

    async fn stop_watch(&self, channel: &PushChannel) -> Result<(), ProviderError> {
        push::google_stop(&self.http, &self.base, channel).await
    }
}
