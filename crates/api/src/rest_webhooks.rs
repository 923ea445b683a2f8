//! The providers' push notifications, as PROVIDERS.md describes them:
//! `POST /v1/calendar/webhooks/google` (channel messages: `X-Goog-*` headers,
//! empty body), `POST /v1/calendar/webhooks/microsoft` (Graph change
//! notifications) and `POST /v1/calendar/webhooks/microsoft/lifecycle`
//! (Graph lifecycle notifications), both Graph routes also answering the
//! `?validationToken=` handshake.
//!
//! These routes are called by Google and Microsoft, not by the gateway: they
//! carry no bearer token and sit outside the auth layer. What authenticates a
//! notification is the channel it names and the secret it echoes (Google
//! channel token, Graph `clientState`), checked against
//! `juy_store::push_channels`. A notification only says "something changed":
//! a verified one makes its calendar due ([`juy_store::sync_state::schedule_now`])
//! and wakes this replica's sync workers; the sync runs there, so the answer
//! comes at once (Graph wants it within 3 s). Forged or unknown
//! notifications schedule nothing and are logged without their secret.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use juy_domain::{CalendarId, Clock, Provider, UserId};
use juy_store::push_channels::{self, ChannelTarget, Verification};
use juy_store::{AsyncPgConnection, Store, StoreError, sync_state};
use serde_json::Value;

use crate::SyncWakeup;
use crate::error::ApiError;

/// Where Google posts channel messages.
pub const GOOGLE_PATH: &str = "/v1/calendar/webhooks/google";
/// Where Graph posts change notifications.
pub const MICROSOFT_PATH: &str = "/v1/calendar/webhooks/microsoft";
/// Where Graph posts lifecycle notifications.
pub const MICROSOFT_LIFECYCLE_PATH: &str = "/v1/calendar/webhooks/microsoft/lifecycle";

/// The longest validation token echoed.
pub const MAX_VALIDATION_TOKEN_CHARS: usize = 1024;
/// The most notifications one Graph request may carry.
pub const MAX_NOTIFICATIONS: usize = 1000;
/// The longest `X-Goog-*` header value read.
const MAX_HEADER_BYTES: usize = 1024;
/// Graph wants an answer within 3 s; the work here must end well before.
const ANSWER_WITHIN: Duration = Duration::from_millis(2500);

const GOOG_CHANNEL_ID: &str = "x-goog-channel-id";
const GOOG_CHANNEL_TOKEN: &str = "x-goog-channel-token";
const GOOG_RESOURCE_STATE: &str = "x-goog-resource-state";

/// What the webhooks need: the store, the workers' wake-up signal and a clock.
#[derive(Clone)]
pub struct WebhookState {
    store: Store,
    wakeup: SyncWakeup,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for WebhookState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookState").finish_non_exhaustive()
    }
}

impl WebhookState {
    /// Webhooks over `store` that wake the workers waiting on `wakeup`.
    pub fn new(store: Store, wakeup: SyncWakeup, clock: Arc<dyn Clock>) -> Self {
        Self { store, wakeup, clock }
    }
}

/// The webhook routes. They need no bearer token: merge them outside the
/// auth layer.
pub fn routes(state: WebhookState) -> Router {
    Router::new()
        .route(GOOGLE_PATH, post(google))
        .route(MICROSOFT_PATH, post(microsoft))
        .route(MICROSOFT_LIFECYCLE_PATH, post(microsoft_lifecycle))
        .with_state(state)
}

/// A Google channel message.
#[utoipa::path(
    post,
    path = "/v1/calendar/webhooks/google",
    tag = "webhooks",
    params(
        ("X-Goog-Channel-ID" = String, Header, description = "the channel"),
        ("X-Goog-Channel-Token" = Option<String>, Header, description = "the channel's secret"),
        ("X-Goog-Resource-State" = String, Header, description = "`sync` for a new channel, then `exists`/`not_exists`"),
    ),
    responses(
        (status = 200, description = "Accepted; for a change, the calendar is due for a sync"),
        (status = 400, description = "A required header is missing or too long", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token is not the channel's", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such channel", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn google(State(state): State<WebhookState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let resource_state = google_header(&headers, GOOG_RESOURCE_STATE)?
        .ok_or_else(|| ApiError::invalid("X-Goog-Resource-State", "is required"))?;
    if resource_state == "sync" {
        // A new channel's first message asks for nothing. It races the
        // watch call's answer, so its channel is usually not stored yet:
        // it is acknowledged without a lookup.
        return Ok(StatusCode::OK.into_response());
    }
    let channel = google_header(&headers, GOOG_CHANNEL_ID)?
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::invalid("X-Goog-Channel-ID", "is required"))?;
    let token = google_header(&headers, GOOG_CHANNEL_TOKEN)?.unwrap_or_default();
    within_time(async {
        let mut conn = state.store.conn().await?;
        match push_channels::check(&mut conn, channel, token).await? {
            Verification::Valid(target) if target.provider == Provider::Google => {
                if schedule(&mut conn, &state, &target.user_id, target.calendar_id).await? {
                    state.wakeup.notify();
                }
                Ok(StatusCode::OK.into_response())
            }
            Verification::WrongSecret => {
                tracing::warn!(provider = "google", "refused a channel message with a wrong token");
                Err(ApiError::permission_denied("the channel token is not this channel's"))
            }
            Verification::Valid(_) | Verification::Unknown => {
                tracing::info!(provider = "google", "refused a message for an unknown channel");
                Err(ApiError::not_found("push channel"))
            }
        }
    })
    .await
}

/// A Graph change notification batch, or the validation handshake.
#[utoipa::path(
    post,
    path = "/v1/calendar/webhooks/microsoft",
    tag = "webhooks",
    params(("validationToken" = Option<String>, Query, description = "set by Graph when it validates the URL: echoed as text/plain")),
    request_body(content = String, description = "`{\"value\": [{subscriptionId, clientState, changeType, resource, resourceData}]}`", content_type = "application/json"),
    responses(
        (status = 200, description = "The validation token, echoed", body = String, content_type = "text/plain"),
        (status = 202, description = "Accepted; the calendars of the notifications that verify are due for a sync"),
        (status = 400, description = "Not a notification batch, or a bad validation token", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn microsoft(
    State(state): State<WebhookState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    if let Some(token) = validation_token(query.as_deref())? {
        return Ok(echo(token));
    }
    let notifications = notifications(&body)?;
    within_time(async {
        let mut conn = state.store.conn().await?;
        let verified = verify_all(&mut conn, &notifications).await?;
        let calendars: BTreeSet<(&UserId, CalendarId)> = verified
            .iter()
            .map(|(_, target)| (&target.user_id, target.calendar_id))
            .collect();
        let mut scheduled = false;
        for (user, calendar) in calendars {
            scheduled |= schedule(&mut conn, &state, user, calendar).await?;
        }
        if scheduled {
            state.wakeup.notify();
        }
        Ok(StatusCode::ACCEPTED.into_response())
    })
    .await
}

/// A Graph lifecycle notification batch, or the validation handshake.
#[utoipa::path(
    post,
    path = "/v1/calendar/webhooks/microsoft/lifecycle",
    tag = "webhooks",
    params(("validationToken" = Option<String>, Query, description = "set by Graph when it validates the URL: echoed as text/plain")),
    request_body(content = String, description = "`{\"value\": [{subscriptionId, clientState, lifecycleEvent}]}`", content_type = "application/json"),
    responses(
        (status = 200, description = "The validation token, echoed", body = String, content_type = "text/plain"),
        (status = 202, description = "Accepted; `reauthorizationRequired` and `subscriptionRemoved` mark the subscription expired, and every verified event makes its calendar due"),
        (status = 400, description = "Not a notification batch, or a bad validation token", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn microsoft_lifecycle(
    State(state): State<WebhookState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    if let Some(token) = validation_token(query.as_deref())? {
        return Ok(echo(token));
    }
    let notifications = notifications(&body)?;
    within_time(async {
        let mut conn = state.store.conn().await?;
        let now = state.clock.now();
        let mut calendars: BTreeSet<(UserId, CalendarId)> = BTreeSet::new();
        for (notification, target) in verify_all(&mut conn, &notifications).await? {
            match notification.lifecycle_event.as_deref() {
                // The subscription is lapsing or gone: the sync engine renews
                // or recreates expired channels, and a sync catches up.
                Some("reauthorizationRequired" | "subscriptionRemoved") => {
                    push_channels::mark_expired(&mut conn, &notification.subscription_id, now).await?;
                }
                // Notifications were lost: a sync catches up.
                Some("missed") => {}
                _ => {
                    tracing::info!(
                        provider = "microsoft",
                        "ignored a lifecycle notification of an unknown kind"
                    );
                    continue;
                }
            }
            calendars.insert((target.user_id, target.calendar_id));
        }
        let mut scheduled = false;
        for (user, calendar) in &calendars {
            scheduled |= schedule(&mut conn, &state, user, *calendar).await?;
        }
        if scheduled {
            state.wakeup.notify();
        }
        Ok(StatusCode::ACCEPTED.into_response())
    })
    .await
}

/// An `X-Goog-*` header; 400 when it is not text or longer than we read.
fn google_header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, ApiError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(text) if text.len() <= MAX_HEADER_BYTES => Ok(Some(text.trim())),
        _ => Err(ApiError::invalid(
            name,
            format!("must be visible ASCII of at most {MAX_HEADER_BYTES} bytes"),
        )),
    }
}

/// Graph's `validationToken`, if the query has one. It comes from whoever
/// calls, so it is echoed only when short and free of control characters.
fn validation_token(query: Option<&str>) -> Result<Option<String>, ApiError> {
    let mut tokens = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(name, _)| name == "validationToken")
        .map(|(_, value)| value.into_owned());
    let Some(token) = tokens.next() else {
        return Ok(None);
    };
    if tokens.next().is_some() {
        return Err(ApiError::invalid("validationToken", "must be given at most once"));
    }
    if token.chars().count() > MAX_VALIDATION_TOKEN_CHARS {
        return Err(ApiError::invalid(
            "validationToken",
            format!("must be at most {MAX_VALIDATION_TOKEN_CHARS} characters"),
        ));
    }
    if token.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "validationToken",
            "must not contain control characters",
        ));
    }
    Ok(Some(token))
}

/// The handshake's answer: the token as plain text, never sniffed as anything else.
fn echo(token: String) -> Response {
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        token,
    )
        .into_response()
}

/// One Graph notification, as far as verifying and routing it needs.
#[derive(Debug)]
struct Notification {
    subscription_id: String,
    /// The secret it echoes; empty when absent (and then it cannot verify).
    client_state: String,
    lifecycle_event: Option<String>,
}

/// The `value` array of a Graph notification batch. Items that are not
/// objects with a `subscriptionId` cannot be ours and are dropped here.
fn notifications(body: &[u8]) -> Result<Vec<Notification>, ApiError> {
    let batch: Value =
        serde_json::from_slice(body).map_err(|_| ApiError::invalid("body", "is not a JSON notification batch"))?;
    let items = batch
        .get("value")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::invalid("value", "must be an array of notifications"))?;
    if items.len() > MAX_NOTIFICATIONS {
        return Err(ApiError::invalid(
            "value",
            format!("must hold at most {MAX_NOTIFICATIONS} notifications"),
        ));
    }
    let text = |item: &Value, key: &str| item.get(key).and_then(Value::as_str).map(str::to_owned);
    let parsed: Vec<Notification> = items
        .iter()
        .filter_map(|item| {
            Some(Notification {
                subscription_id: text(item, "subscriptionId").filter(|id| !id.is_empty())?,
                client_state: text(item, "clientState").unwrap_or_default(),
                lifecycle_event: text(item, "lifecycleEvent"),
            })
        })
        .collect();
    if parsed.len() < items.len() {
        tracing::warn!(
            provider = "microsoft",
            dropped = items.len() - parsed.len(),
            "ignored notifications without a subscription id"
        );
    }
    Ok(parsed)
}

/// The notifications that name a Graph subscription of ours and echo its
/// secret, with their calendars; the others are logged (counts only) and dropped.
async fn verify_all<'a>(
    conn: &mut AsyncPgConnection,
    notifications: &'a [Notification],
) -> Result<Vec<(&'a Notification, ChannelTarget)>, StoreError> {
    let presented: Vec<(&str, &str)> = notifications
        .iter()
        .map(|n| (n.subscription_id.as_str(), n.client_state.as_str()))
        .collect();
    let checked = push_channels::check_many(conn, &presented).await?;
    let (mut unknown, mut forged) = (0usize, 0usize);
    let mut verified = Vec::new();
    for (notification, verification) in notifications.iter().zip(checked) {
        match verification {
            Verification::Valid(target) if target.provider == Provider::Microsoft => {
                verified.push((notification, target));
            }
            Verification::WrongSecret => forged += 1,
            Verification::Valid(_) | Verification::Unknown => unknown += 1,
        }
    }
    if forged > 0 {
        tracing::warn!(
            provider = "microsoft",
            forged,
            "ignored notifications whose clientState is not their subscription's"
        );
    }
    if unknown > 0 {
        tracing::info!(
            provider = "microsoft",
            unknown,
            "ignored notifications of unknown subscriptions"
        );
    }
    Ok(verified)
}

/// Makes the calendar due now; `false` when its account cannot sync (or the
/// calendar went away meanwhile).
async fn schedule(
    conn: &mut AsyncPgConnection,
    state: &WebhookState,
    user: &UserId,
    calendar: CalendarId,
) -> Result<bool, StoreError> {
    match sync_state::schedule_now(conn, user, calendar, state.clock.now()).await {
        Ok(scheduled) => Ok(scheduled),
        Err(StoreError::NotFound { .. }) => Ok(false),
        Err(other) => Err(other),
    }
}

/// Runs a webhook's work, or answers 503 (the provider retries) when the
/// store is too slow for the provider's deadline.
async fn within_time(
    work: impl std::future::Future<Output = Result<Response, ApiError>>,
) -> Result<Response, ApiError> {
    match tokio::time::timeout(ANSWER_WITHIN, work).await {
        Ok(answer) => answer,
        Err(_) => {
            tracing::warn!("a webhook's store work took too long; answering 503");
            Err(ApiError::unavailable("the calendar store is too slow, retry later"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_tokens_are_echoed_only_when_short_and_printable() {
        let token = validation_token(Some("validationToken=Validation%3A+Testing+client+Request-Id%3A+42"));
        assert_eq!(
            token.unwrap().as_deref(),
            Some("Validation: Testing client Request-Id: 42")
        );
        assert_eq!(validation_token(None).unwrap(), None);
        assert_eq!(validation_token(Some("other=1")).unwrap(), None);
        assert!(validation_token(Some("validationToken=a%0Ab")).is_err());
        assert!(validation_token(Some("validationToken=a%00b")).is_err());
        assert!(validation_token(Some("validationToken=a&validationToken=b")).is_err());
        let long = format!("validationToken={}", "x".repeat(MAX_VALIDATION_TOKEN_CHARS + 1));
        assert!(validation_token(Some(&long)).is_err());
        let longest = format!("validationToken={}", "é".repeat(MAX_VALIDATION_TOKEN_CHARS));
        assert!(validation_token(Some(&longest)).unwrap().is_some());
    }

    #[test]
    fn notification_batches_keep_items_with_a_subscription_id() {
        let body = br#"{"value": [
            {"subscriptionId": "s1", "clientState": "c1", "changeType": "created"},
            {"clientState": "c2"},
            "junk",
            {"subscriptionId": "s3", "lifecycleEvent": "missed"}
        ]}"#;
        let parsed = notifications(body).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            (parsed[0].subscription_id.as_str(), parsed[0].client_state.as_str()),
            ("s1", "c1")
        );
        assert_eq!(parsed[1].client_state, "", "a missing clientState cannot verify");
        assert_eq!(parsed[1].lifecycle_event.as_deref(), Some("missed"));
        assert!(notifications(b"not json").is_err());
        assert!(notifications(br#"{"value": {}}"#).is_err());
        assert!(notifications(br#"[]"#).is_err());
    }

    #[tokio::test]
    async fn a_wakeup_reaches_a_worker_that_waits_later() {
        let wakeup = SyncWakeup::new();
        wakeup.notify();
        tokio::time::timeout(Duration::from_secs(5), wakeup.notified())
            .await
            .expect("the permit was kept");
    }
}
