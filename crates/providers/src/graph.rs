//! Microsoft Graph v1.0 client ([`GraphCalendarClient`]): `/me/calendars`,
//! `calendarView/delta` rounds (paged by `@odata.nextLink`, followed verbatim
//! but only on the API's own host; the `@odata.deltaLink` is the cursor of the
//! next round) and event create/update/delete. Creates carry the caller's
//! idempotency key as `transactionId`, so a retried create returns the event
//! of the first attempt.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use juy_domain::{Clock, Provider, SystemClock, TimeRange};
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use crate::http_util::{ApiBase, ApiRequest, DEFAULT_TIMEOUT, Dialect, HttpClient};
use crate::push::{self, PushChannel, WatchRequest};
use crate::{
    Authorizer, CalendarProvider, EventPage, EventWrite, ProviderError, RawEvent, RemoteCalendar, WrittenEvent,
};

/// The production API base URL.
pub const DEFAULT_BASE_URL: &str = "https://graph.microsoft.com/v1.0";
/// The default `Prefer: odata.maxpagesize` (a preference: Graph may send less).
pub const DEFAULT_PAGE_SIZE: u32 = 250;
/// The largest page size asked for.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Times in answers come in UTC instead of the calendar's (Windows-named) zone.
const PREFER_UTC: &str = "outlook.timezone=\"UTC\"";
/// The `Prefer` request header (RFC 7240).
const PREFER: HeaderName = HeaderName::from_static("prefer");

/// Settings of a [`GraphCalendarClient`].
#[derive(Debug, Clone)]
pub struct GraphOptions {
    /// Timeout of each HTTP request (connect, send, read the whole answer).
    pub timeout: Duration,
    /// Events per page (`Prefer: odata.maxpagesize`, clamped to 1–1000).
    pub page_size: u32,
    /// The clock `Retry-After` dates are measured against when the answer has no `Date`.
    pub clock: Arc<dyn Clock>,
}

impl Default for GraphOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            page_size: DEFAULT_PAGE_SIZE,
            clock: Arc::new(SystemClock),
        }
    }
}

/// One Microsoft account's calendars through Microsoft Graph.
#[derive(Debug, Clone)]
pub struct GraphCalendarClient {
    http: HttpClient,
    base: ApiBase,
    page_size: u32,
}

#[derive(Deserialize)]
struct CollectionPage {
    #[serde(default)]
    value: Vec<Value>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink")]
    delta_link: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphCalendarEntry {
    id: String,
    name: Option<String>,
    hex_color: Option<String>,
    #[serde(default)]
    can_edit: bool,
    #[serde(default)]
    is_default_calendar: bool,
}

impl GraphCalendarClient {
    /// A client for the account `authorizer` speaks for, at `base_url`
    /// ([`DEFAULT_BASE_URL`] in production). `client` is shared and built by the caller.
    pub fn new(
        client: reqwest::Client,
        base_url: &str,
        authorizer: Arc<dyn Authorizer>,
        options: GraphOptions,
    ) -> Result<Self, ProviderError> {
        Ok(Self {
            http: HttpClient::new(client, authorizer, options.timeout, Dialect::Graph, options.clock),
            base: ApiBase::parse(base_url)?,
            page_size: options.page_size.clamp(1, MAX_PAGE_SIZE),
        })
    }

    /// `Prefer` for delta pages: the page size and UTC times.
    fn prefer_delta(&self) -> HeaderValue {
        let text = format!("odata.maxpagesize={}, {PREFER_UTC}", self.page_size);
        // Only digits and fixed ASCII: always a valid header value.
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(PREFER_UTC))
    }

    /// One delta round from `first`: its pages, following `@odata.nextLink`s verbatim.
    fn delta_pages(&self, first: Url) -> BoxStream<'_, Result<EventPage, ProviderError>> {
        futures::stream::try_unfold(Some(first), move |next| async move {
            let Some(url) = next else {
                return Ok(None);
            };
            let request = ApiRequest::get(url.clone()).header(PREFER, self.prefer_delta());
            let page: CollectionPage = self.http.send_json(&request).await?;
            let mut out = EventPage::default();
            for item in page.value {
                if item.get("@removed").is_some() {
                    match item.get("id").and_then(Value::as_str) {
                        Some(id) => out.removed.push(id.to_owned()),
                        None => tracing::warn!("skipping a Graph @removed entry without an id"),
                    }
                } else {
                    out.items.push(RawEvent::Graph(item));
                }
            }
            let next = match page.next_link {
                Some(link) => {
                    let link = self.base.link(&link)?;
                    if link == url {
                        return Err(ProviderError::Malformed("the provider repeated a page link".into()));
                    }
                    Some(link)
                }
                None => {
                    out.next_cursor = page.delta_link;
                    None
                }
            };
            // A next link is the whole state of the round: following it later continues the round.
            out.resume = next.as_ref().map(Url::to_string);
            Ok(Some((out, next)))
        })
        .boxed()
    }

    fn event_url(&self, external_id: &str) -> Url {
        self.base.url(&["me", "events", external_id])
    }
}

/// `2026-01-05T09:00:00` (UTC, no offset: the zone travels beside it).
fn graph_time(at: chrono::DateTime<chrono::Utc>) -> Value {
    json!({"dateTime": at.format("%Y-%m-%dT%H:%M:%S%.f").to_string(), "timeZone": "UTC"})
}

/// The event resource for a create or update. Absent optional fields are sent
/// empty, so an update clears them.
fn event_body(event: &EventWrite) -> Value {
    json!({
        "subject": event.title,
        "body": {"contentType": "text", "content": event.description.as_deref().unwrap_or("")},
        "location": {"displayName": event.location.as_deref().unwrap_or("")},
        "start": graph_time(event.start),
        "end": graph_time(event.end),
        "attendees": event.attendees.iter()
            .map(|email| json!({"emailAddress": {"address": email}, "type": "required"}))
            .collect::<Vec<_>>(),
    })
}

/// The written event as the caller needs it; the etag is Graph's `@odata.etag`
/// (what `If-Match` takes), else the `changeKey`.
fn written(resource: Value) -> Result<WrittenEvent, ProviderError> {
    let id = resource
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::Malformed("the written event has no id".into()))?
        .to_owned();
    let etag = resource
        .get("@odata.etag")
        .or_else(|| resource.get("changeKey"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(WrittenEvent {
        external_id: id,
        etag,
        raw: Some(RawEvent::Graph(resource)),
    })
}

fn calendar_of(entry: Value) -> Option<RemoteCalendar> {
    let entry: GraphCalendarEntry = match serde_json::from_value(entry) {
        Ok(entry) => entry,
        Err(_) => {
            tracing::warn!("skipping a Graph calendar without a readable id");
            return None;
        }
    };
    Some(RemoteCalendar {
        name: entry.name.unwrap_or_else(|| entry.id.clone()),
        id: entry.id,
        // Graph sends "" for "no colour".
        color: entry
            .hex_color
            .filter(|c| !c.is_empty())
            .map(|c| c.to_ascii_lowercase()),
        time_zone: None,
        is_primary: entry.is_default_calendar,
        can_write: entry.can_edit,
    })
}

#[async_trait]
impl CalendarProvider for GraphCalendarClient {
    fn provider(&self) -> Provider {
        Provider::Microsoft
    }

    async fn list_calendars(&self) -> Result<Vec<RemoteCalendar>, ProviderError> {
        let mut calendars = Vec::new();
        let mut url = self.base.url(&["me", "calendars"]);
        loop {
            let page: CollectionPage = self.http.send_json(&ApiRequest::get(url.clone())).await?;
            calendars.extend(page.value.into_iter().filter_map(calendar_of));
            match page.next_link {
                Some(link) => {
                    let link = self.base.link(&link)?;
                    if link == url {
                        return Err(ProviderError::Malformed("the provider repeated a page link".into()));
                    }
                    url = link;
                }
                None => return Ok(calendars),
            }
        }
    }

    fn list_events<'a>(
        &'a self,
        calendar_id: &'a str,
        window: TimeRange,
    ) -> BoxStream<'a, Result<EventPage, ProviderError>> {
        let mut first = self
            .base
            .url(&["me", "calendars", calendar_id, "calendarView", "delta"]);
        first
            .query_pairs_mut()
            .append_pair(
                "startDateTime",
                &window.start().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )
            .append_pair(
                "endDateTime",
                &window.end().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            );
        self.delta_pages(first)
    }

    fn changes<'a>(
        &'a self,
        _calendar_id: &'a str,
        cursor: &'a str,
    ) -> BoxStream<'a, Result<EventPage, ProviderError>> {
        match self.base.link(cursor) {
            Ok(first) => self.delta_pages(first),
            Err(_) => {
                // Not a delta link of this API (garbled, or made for another base URL): only a new round helps.
                tracing::warn!("the stored Graph delta link is not a link of this API; a full resync is needed");
                futures::stream::once(async { Err(ProviderError::FullResyncRequired) }).boxed()
            }
        }
    }

    fn resume<'a>(&'a self, _calendar_id: &'a str, token: &'a str) -> BoxStream<'a, Result<EventPage, ProviderError>> {
        match self.base.link(token) {
            Ok(next) => self.delta_pages(next),
            Err(_) => futures::stream::once(async {
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
        let url = self.base.url(&["me", "calendars", calendar_id, "events"]);
        let mut body = event_body(event);
        body["transactionId"] = json!(idempotency_key);
        let request = ApiRequest::new(Method::POST, url)
            .header(PREFER, HeaderValue::from_static(PREFER_UTC))
            .json(body);
        written(self.http.send_json(&request).await?)
    }

    async fn update_event(
        &self,
        _calendar_id: &str,
        external_id: &str,
        etag: Option<&str>,
        event: &EventWrite,
    ) -> Result<WrittenEvent, ProviderError> {
        let request = ApiRequest::new(Method::PATCH, self.event_url(external_id))
            .header(PREFER, HeaderValue::from_static(PREFER_UTC))
            .if_match(etag)?
            .json(event_body(event));
        written(self.http.send_json(&request).await?)
    }

    async fn delete_event(
        &self,
        _calendar_id: &str,
        external_id: &str,
        etag: Option<&str>,
    ) -> Result<(), ProviderError> {
        let request = ApiRequest::new(Method::DELETE, self.event_url(external_id)).if_match(etag)?;
        let response = self.http.send(&request).await?;
        match response.status {
            status if status.is_success() => Ok(()),
            // Already gone: the goal is reached.
            StatusCode::NOT_FOUND => Ok(()),
            _ => Err(self.http.error(&response)),
        }
    }

    async fn watch(&self, calendar_id: &str, request: &WatchRequest) -> Result<Option<PushChannel>, ProviderError> {
        push::graph_watch(&self.http, &self.base, calendar_id, request)
            .await
            .map(Some)
    }

    async fn renew_watch(
        &self,
        _calendar_id: &str,
        old: &PushChannel,
        request: &WatchRequest,
    ) -> Result<Option<PushChannel>, ProviderError> {
        push::graph_renew(&self.http, &self.base, old, request).await.map(Some)
    }

    async fn stop_watch(&self, channel: &PushChannel) -> Result<(), ProviderError> {
        push::graph_stop(&self.http, &self.base, channel).await
    }
}
