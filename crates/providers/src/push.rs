//! Push channels, as PROVIDERS.md describes them: Google `events.watch`
//! channels (renewed by opening a new channel and stopping the old one) and
//! Microsoft Graph change-notification subscriptions (renewed in place with
//! `PATCH`). The sync engine opens them through
//! [`CalendarProvider::watch`](crate::CalendarProvider::watch), stores them,
//! and verifies each notification with the secret it chose; the
//! notifications only say "something changed", so the answer to one is an
//! incremental sync. CalDAV has no push: its clients keep the trait's
//! defaults.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use crate::ProviderError;
use crate::http_util::{ApiBase, ApiRequest, HttpClient};

/// The longest a Google channel lives: a week (Google caps longer `ttl`s).
pub const GOOGLE_MAX_LIFETIME_SECONDS: i64 = 7 * 24 * 3600;
/// The longest a Graph subscription on Outlook events lives: 10080 minutes.
pub const GRAPH_MAX_LIFETIME_MINUTES: i64 = 10080;
/// Graph's change types we subscribe to.
const GRAPH_CHANGE_TYPES: &str = "created,updated,deleted";

/// A channel (Google) or subscription (Graph) to open or renew.
#[derive(Clone)]
pub struct WatchRequest {
    /// The channel's id (Google: the caller chooses it, unique per channel,
    /// at most 64 of `A-Za-z0-9-_+/=`, e.g. a UUID). Graph chooses its own
    /// subscription ids, so Graph ignores it.
    pub channel_id: String,
    /// Where notifications go: the `https` URL of our webhook.
    pub address: String,
    /// Where Graph sends lifecycle notifications; Google has none.
    pub lifecycle_address: Option<String>,
    /// Echoed in every notification (Google channel token, Graph
    /// `clientState`, at most 128 characters): only its hash is stored, to
    /// verify that a notification comes from the provider.
    pub secret: Zeroizing<String>,
    /// When the channel should expire. Google caps it at a week; Graph
    /// refuses more than 10080 minutes, so the client asks for at most a
    /// minute less. The provider's answer ([`PushChannel::expires_at`]) is what counts.
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for WatchRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchRequest")
            .field("channel_id", &self.channel_id)
            .field("address", &self.address)
            .field("lifecycle_address", &self.lifecycle_address)
            .field("secret", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// An open channel, as the provider answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushChannel {
    /// The Google channel id or the Graph subscription id: what notifications name.
    pub channel_id: String,
    /// Google's `resourceId` (needed to stop the channel); `None` for Graph.
    pub resource_id: Option<String>,
    /// When the provider will stop sending.
    pub expires_at: DateTime<Utc>,
}

/// A locally detected bad request, in the shape of a provider's refusal.
fn refused(reason: &str) -> ProviderError {
    ProviderError::Rejected {
        status: 400,
        reason: reason.into(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GoogleChannel {
    id: String,
    resource_id: Option<String>,
    /// Milliseconds since the epoch, as a string.
    expiration: Option<String>,
}

/// `POST /calendars/{id}/events/watch`: opens a channel on the calendar's events.
pub(crate) async fn google_watch(
    http: &HttpClient,
    base: &ApiBase,
    calendar_id: &str,
    request: &WatchRequest,
) -> Result<PushChannel, ProviderError> {
    let ttl = (request.expires_at - http.now()).num_seconds();
    if ttl < 1 {
        return Err(refused("expiryNotInTheFuture"));
    }
    let body = json!({
        "id": request.channel_id,
        "type": "web_hook",
        "address": request.address,
        "token": request.secret.as_str(),
        "params": {"ttl": ttl.min(GOOGLE_MAX_LIFETIME_SECONDS).to_string()},
    });
    let url = base.url(&["calendars", calendar_id, "events", "watch"]);
    let channel: GoogleChannel = http.send_json(&ApiRequest::new(Method::POST, url).json(body)).await?;
    let resource_id = channel
        .resource_id
        .ok_or_else(|| ProviderError::Malformed("the channel has no resourceId".into()))?;
    let expires_at = match channel.expiration {
        Some(ms) => ms
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| ProviderError::Malformed("the channel's expiration is not a time".into()))?,
        // Google always says; without it, the channel lives at most as long as asked.
        None => request.expires_at,
    };
    Ok(PushChannel {
        channel_id: channel.id,
        resource_id: Some(resource_id),
        expires_at,
    })
}

/// `POST /channels/stop`; a channel already gone counts as stopped.
pub(crate) async fn google_stop(http: &HttpClient, base: &ApiBase, channel: &PushChannel) -> Result<(), ProviderError> {
    let body = json!({"id": channel.channel_id, "resourceId": channel.resource_id});
    let request = ApiRequest::new(Method::POST, base.url(&["channels", "stop"])).json(body);
    let response = http.send(&request).await?;
    match response.status {
        status if status.is_success() => Ok(()),
        StatusCode::NOT_FOUND => Ok(()),
        _ => Err(http.error(&response)),
    }
}

/// Google channels cannot be extended: opens a new one, then stops `old`.
/// The new channel is returned even when stopping the old one fails (it
/// then lapses by itself, and its notifications no longer verify once the
/// new channel replaces it in the store).
pub(crate) async fn google_renew(
    http: &HttpClient,
    base: &ApiBase,
    calendar_id: &str,
    old: &PushChannel,
    request: &WatchRequest,
) -> Result<PushChannel, ProviderError> {
    if request.channel_id == old.channel_id {
        return Err(refused("channelIdNotUnique"));
    }
    let renewed = google_watch(http, base, calendar_id, request).await?;
    if let Err(error) = google_stop(http, base, old).await {
        tracing::warn!(%error, "could not stop the Google channel that was renewed; it will lapse");
    }
    Ok(renewed)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphSubscription {
    id: String,
    expiration_date_time: String,
}

impl GraphSubscription {
    fn expires_at(&self) -> Result<DateTime<Utc>, ProviderError> {
        DateTime::parse_from_rfc3339(&self.expiration_date_time)
            .map(|at| at.with_timezone(&Utc))
            .map_err(|_| ProviderError::Malformed("the subscription's expirationDateTime is not a time".into()))
    }
}

/// `expires_at` as Graph accepts it: in the future, and within its limit (minus a minute of clock skew).
fn graph_expiry(http: &HttpClient, expires_at: DateTime<Utc>) -> Result<String, ProviderError> {
    let now = http.now();
    if expires_at <= now {
        return Err(refused("expiryNotInTheFuture"));
    }
    let latest = now + Duration::minutes(GRAPH_MAX_LIFETIME_MINUTES - 1);
    Ok(expires_at.min(latest).to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// `POST /subscriptions` on the calendar's events. Graph calls the
/// notification (and lifecycle) URL to validate it before answering.
pub(crate) async fn graph_watch(
    http: &HttpClient,
    base: &ApiBase,
    calendar_id: &str,
    request: &WatchRequest,
) -> Result<PushChannel, ProviderError> {
    let mut body = json!({
        "changeType": GRAPH_CHANGE_TYPES,
        "notificationUrl": request.address,
        "resource": format!("me/calendars/{calendar_id}/events"),
        "expirationDateTime": graph_expiry(http, request.expires_at)?,
        "clientState": request.secret.as_str(),
    });
    if let Some(lifecycle) = &request.lifecycle_address {
        body["lifecycleNotificationUrl"] = json!(lifecycle);
    }
    let request = ApiRequest::new(Method::POST, base.url(&["subscriptions"])).json(body);
    let subscription: GraphSubscription = http.send_json(&request).await?;
    Ok(PushChannel {
        expires_at: subscription.expires_at()?,
        channel_id: subscription.id,
        resource_id: None,
    })
}

/// `PATCH /subscriptions/{id}`: a later expiry for the same subscription
/// (its id and `clientState` stay); [`ProviderError::NotFound`] when Graph
/// no longer has it.
pub(crate) async fn graph_renew(
    http: &HttpClient,
    base: &ApiBase,
    old: &PushChannel,
    request: &WatchRequest,
) -> Result<PushChannel, ProviderError> {
    let body = json!({"expirationDateTime": graph_expiry(http, request.expires_at)?});
    let request = ApiRequest::new(Method::PATCH, base.url(&["subscriptions", &old.channel_id])).json(body);
    let subscription: GraphSubscription = http.send_json(&request).await?;
    Ok(PushChannel {
        channel_id: old.channel_id.clone(),
        resource_id: None,
        expires_at: subscription.expires_at()?,
    })
}

/// `DELETE /subscriptions/{id}`; a subscription already gone counts as deleted.
pub(crate) async fn graph_stop(http: &HttpClient, base: &ApiBase, channel: &PushChannel) -> Result<(), ProviderError> {
    let request = ApiRequest::new(Method::DELETE, base.url(&["subscriptions", &channel.channel_id]));
    let response = http.send(&request).await?;
    match response.status {
        status if status.is_success() => Ok(()),
        StatusCode::NOT_FOUND => Ok(()),
        _ => Err(http.error(&response)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_request_never_shows_its_secret() {
        let request = WatchRequest {
            channel_id: "ch-1".into(),
            address: "https://example.test/hook".into(),
            lifecycle_address: None,
            secret: Zeroizing::new("s3cr3t-token".into()),
            expires_at: DateTime::UNIX_EPOCH,
        };
        let shown = format!("{request:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("ch-1") && shown.contains("<redacted>"));
    }
}
