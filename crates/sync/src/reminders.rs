//! Reminders to the notification service: the planner, which writes due
//! reminders into the transactional outbox `juy_store::reminders`, and the
//! dispatchers, which deliver them over HTTP at least once.
//!
//! The planner runs every `plan_interval` on one replica at a time (an
//! advisory lock): it reconciles the reminders falling due within the
//! look-ahead with the synced events and the users' channel switches
//! (`juy_store::reminders::plan`). A reminder whose due time passed more than
//! `grace` ago when it is first seen (after an outage, or an event synced
//! late) is never planned, so a long outage does not end in a burst of stale
//! reminders.
//!
//! A dispatcher leases due rows, reads the event again (a delivery whose
//! event is gone, cancelled, declined or moved, whose reminder was removed or
//! whose channel was switched off is withdrawn, not sent), and POSTs a JSON
//! [`ReminderMessage`] to the endpoint with an `Idempotency-Key` (stable per
//! event instance, reminder and channel) and an HMAC-SHA256 signature
//! ([`sign`]). 2xx is delivered; 408, 429, 5xx and transport failures are
//! retried with exponential backoff (never sooner than `Retry-After`) up to
//! `max_attempts`; other statuses fail for good. The outcome is recorded
//! fenced by the lease, so a dispatcher that died mid-request leaves the row
//! to be sent again with the same key once its lease runs out: with the
//! receiver's de-duplication by key, exactly one effect.
//!
//! Titles and locations go to the notification service only: never into a
//! log, an error or the outbox rows.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use hmac::{Hmac, KeyInit as _, Mac as _};
use juy_domain::{EventStatus, Reminder, ResponseStatus};
use juy_store::reminders::{self, Channel, DeliveryEvent, DeliveryOutcome, LeasedDelivery, PlanReport};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use crate::engine::Engine;

/// The header carrying the signature: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "x-juy-signature";
/// The header carrying the idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// Where and how reminders are delivered.
#[derive(Clone)]
pub struct ReminderConfig {
    /// The notification service's endpoint (https, or http on a loopback address).
    pub endpoint: String,
    /// The HMAC-SHA256 key of the signature.
    pub secret: Zeroizing<Vec<u8>>,
    /// Dispatchers per replica (0: this replica plans but sends nothing).
    pub dispatchers: usize,
    /// How often the planner runs.
    pub plan_interval: Duration,
    /// How often an idle dispatcher looks for due deliveries.
    pub poll_interval: Duration,
    /// How far ahead the planner writes due reminders.
    pub lookahead: chrono::Duration,
    /// A reminder first seen this long after its due time is not planned.
    pub grace: chrono::Duration,
    /// How long a dispatcher holds a delivery (longer than `request_timeout`).
    pub lease_for: chrono::Duration,
    /// The limit of one request to the endpoint.
    pub request_timeout: Duration,
    /// The first retry delay; doubled with each further failed attempt.
    pub backoff_base: chrono::Duration,
    /// The longest retry delay (a longer `Retry-After` still wins).
    pub backoff_max: chrono::Duration,
    /// After this many attempts a delivery fails for good.
    pub max_attempts: i32,
    /// Finished rows are deleted this long after their due time.
    pub retention: chrono::Duration,
}

impl ReminderConfig {
    /// The defaults, delivering to `endpoint` signed with `secret`.
    pub fn new(endpoint: String, secret: Zeroizing<Vec<u8>>) -> Self {
        Self {
            endpoint,
            secret,
            dispatchers: 1,
            plan_interval: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            lookahead: chrono::Duration::minutes(15),
            grace: chrono::Duration::minutes(10),
            lease_for: chrono::Duration::seconds(60),
            request_timeout: Duration::from_secs(10),
            backoff_base: chrono::Duration::seconds(5),
            backoff_max: chrono::Duration::minutes(30),
            max_attempts: 12,
            retention: chrono::Duration::days(7),
        }
    }
}

impl std::fmt::Debug for ReminderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReminderConfig")
            .field("endpoint", &self.endpoint)
            .field("secret", &"<redacted>")
            .field("dispatchers", &self.dispatchers)
            .field("plan_interval", &self.plan_interval)
            .field("lookahead", &self.lookahead)
            .field("grace", &self.grace)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

/// The JSON body sent to the notification service (schema: `docs/reminders.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderMessage {
    /// Stable per (event instance, reminder, channel); also the `Idempotency-Key` header.
    pub idempotency_key: String,
    /// The Juy user to remind.
    pub user_id: String,
    /// `push`, `email` or `sms`.
    pub channel: String,
    /// `google`, `microsoft` or `caldav`.
    pub provider: String,
    /// The event.
    pub event: MessageEvent,
    /// The reminder.
    pub reminder: MessageReminder,
    /// When the reminder fell due (RFC 3339, UTC).
    pub due_time: DateTime<Utc>,
}

/// The event of a [`ReminderMessage`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageEvent {
    /// Its resource name, `events/{uuid}`.
    pub name: String,
    /// Title, when it has one.
    pub title: Option<String>,
    /// Location, when it has one.
    pub location: Option<String>,
    /// Start (RFC 3339, UTC).
    pub start_time: DateTime<Utc>,
    /// End (RFC 3339, UTC).
    pub end_time: DateTime<Utc>,
    /// Whether it is an all-day event.
    pub all_day: bool,
    /// An all-day event's first day.
    pub start_date: Option<NaiveDate>,
    /// An all-day event's day after its last.
    pub end_date: Option<NaiveDate>,
    /// Its IANA zone, when known.
    pub time_zone: Option<String>,
}

impl std::fmt::Debug for MessageEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Texts stay out of Debug, so no log line can carry them.
        f.debug_struct("MessageEvent")
            .field("name", &self.name)
            .field("start_time", &self.start_time)
            .field("end_time", &self.end_time)
            .field("all_day", &self.all_day)
            .finish_non_exhaustive()
    }
}

/// The reminder of a [`ReminderMessage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageReminder {
    /// Minutes before the start (negative: after it).
    pub minutes_before: i32,
    /// How the provider would have delivered it: `popup` or `email`.
    pub method: String,
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    #[allow(clippy::expect_used)] // HMAC takes keys of any length: this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature header's value for `body` sent at `timestamp` (Unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    let hex: String = tag.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// Whether `header` is a valid signature of `body` with `secret`, made no
/// further than `tolerance` from `now` (constant-time comparison): what a
/// receiver checks.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: DateTime<Utc>, tolerance: chrono::Duration) -> bool {
    let mut timestamp = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => tags.push(value),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else {
        return false;
    };
    if (now.timestamp() - timestamp).abs() > tolerance.num_seconds() {
        return false;
    }
    tags.into_iter()
        .any(|tag| decode_hex(tag).is_some_and(|bytes| mac(secret, timestamp, body).verify_slice(&bytes).is_ok()))
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| text.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect()
}

/// The reminders' metrics, labelled by channel only.
struct Metrics {
    planned: Counter<u64>,
    withdrawn: Counter<u64>,
    delivered: Counter<u64>,
    retried: Counter<u64>,
    failed: Counter<u64>,
}

impl Metrics {
    fn new() -> Self {
        let meter = opentelemetry::global::meter("juy-calendar");
        Self {
            planned: meter
                .u64_counter("juy.reminders.planned")
                .with_description("Reminder deliveries written into the outbox by the planner")
                .build(),
            withdrawn: meter
                .u64_counter("juy.reminders.withdrawn")
                .with_description("Reminder deliveries withdrawn because the event or the user's settings changed")
                .build(),
            delivered: meter
                .u64_counter("juy.reminders.delivered")
                .with_description("Reminders the notification service accepted, by channel")
                .build(),
            retried: meter
                .u64_counter("juy.reminders.retried")
                .with_description("Reminder attempts that failed and will be retried, by channel")
                .build(),
            failed: meter
                .u64_counter("juy.reminders.failed")
                .with_description("Reminders given up, by channel")
                .build(),
        }
    }

    fn outcome(&self, channel: Channel, outcome: &DeliveryOutcome) {
        let labels = [KeyValue::new("channel", channel.as_str())];
        match outcome {
            DeliveryOutcome::Delivered => self.delivered.add(1, &labels),
            DeliveryOutcome::Retry { .. } => self.retried.add(1, &labels),
            DeliveryOutcome::Failed { .. } => self.failed.add(1, &labels),
            DeliveryOutcome::Withdrawn { .. } => self.withdrawn.add(1, &labels),
        }
    }
}

/// The dispatchers' HTTP side: the endpoint, the key, a client with timeouts and no redirects.
pub struct Sender {
    config: ReminderConfig,
    http: reqwest::Client,
    metrics: Metrics,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// A sender for `config` (its HTTP client uses the process's default rustls provider).
    pub fn new(config: ReminderConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            config,
            http,
            metrics: Metrics::new(),
        })
    }

    /// The configuration it sends with.
    pub fn config(&self) -> &ReminderConfig {
        &self.config
    }
}

/// One planning pass over `[now - grace, now + lookahead]`, then a bounded
/// deletion of rows past their retention.
pub async fn plan_once(engine: &Engine, config: &ReminderConfig) -> Result<PlanReport, juy_store::StoreError> {
    let now = engine.clock().now();
    let mut conn = engine.store().conn().await?;
    let report = reminders::plan(&mut conn, now - config.grace, now + config.lookahead, now).await?;
    if report.ran {
        reminders::delete_due_before(&mut conn, now - config.retention, 1000).await?;
    }
    Ok(report)
}

/// What one pass of a dispatcher did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DispatchReport {
    /// Accepted by the notification service.
    pub delivered: usize,
    /// To be tried again.
    pub retried: usize,
    /// Given up.
    pub failed: usize,
    /// Withdrawn at send time.
    pub withdrawn: usize,
}

/// Leases up to `limit` due deliveries for `owner`, sends them and records the outcomes.
pub async fn dispatch_once(
    engine: &Engine,
    sender: &Sender,
    owner: &str,
    limit: i64,
) -> Result<DispatchReport, juy_store::StoreError> {
    let config = &sender.config;
    let leased = {
        let mut conn = engine.store().conn().await?;
        reminders::lease_due(&mut conn, owner, engine.clock().now(), config.lease_for, limit).await?
    };
    let mut report = DispatchReport::default();
    for lease in leased {
        let outcome = deliver(engine, sender, &lease).await?;
        sender.metrics.outcome(lease.channel, &outcome);
        match &outcome {
            DeliveryOutcome::Delivered => report.delivered += 1,
            DeliveryOutcome::Retry { .. } => report.retried += 1,
            DeliveryOutcome::Failed { .. } => report.failed += 1,
            DeliveryOutcome::Withdrawn { .. } => report.withdrawn += 1,
        }
        let mut conn = engine.store().conn().await?;
        if !reminders::finish_delivery(&mut conn, &lease, &outcome, engine.clock().now()).await? {
            tracing::warn!(
                key = %lease.idempotency_key,
                "a reminder delivery outlived its lease; its outcome was not recorded"
            );
        }
    }
    Ok(report)
}

/// Why a delivery must not be sent, judged on the event as it is now.
fn withdrawal(lease: &LeasedDelivery, event: &DeliveryEvent) -> Option<&'static str> {
    if event.status == EventStatus::Cancelled {
        return Some("the event was cancelled");
    }
    if event.start != lease.event_start {
        return Some("the event moved");
    }
    if event.self_response == ResponseStatus::Declined {
        return Some("the event was declined");
    }
    if !event
        .reminders
        .iter()
        .any(|reminder| reminder.minutes_before == lease.reminder.minutes_before)
    {
        return Some("the reminder was removed");
    }
    if !lease.channel.enabled_in(&event.channels) {
        return Some("the channel was switched off");
    }
    None
}

async fn deliver(
    engine: &Engine,
    sender: &Sender,
    lease: &LeasedDelivery,
) -> Result<DeliveryOutcome, juy_store::StoreError> {
    let event = {
        let mut conn = engine.store().conn().await?;
        let key = engine.store().data_key(&mut conn, &lease.user_id).await?;
        reminders::delivery_event(&mut conn, &key, &lease.user_id, lease.event_id).await?
    };
    let Some(event) = event else {
        return Ok(withdrawn(lease, "the event was deleted"));
    };
    if let Some(reason) = withdrawal(lease, &event) {
        return Ok(withdrawn(lease, reason));
    }
    let now = engine.clock().now();
    if now >= event.end {
        tracing::warn!(key = %lease.idempotency_key, "a reminder was given up: its event is over");
        return Ok(DeliveryOutcome::Failed {
            error: "the event ended before the reminder could be delivered".into(),
        });
    }
    let message = message(lease, &event);
    // A struct of strings, numbers and dates always serialises.
    let body = serde_json::to_vec(&message).unwrap_or_default();
    let signature = sign(&sender.config.secret, now.timestamp(), &body);
    let sent = sender
        .http
        .post(&sender.config.endpoint)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(IDEMPOTENCY_HEADER, &lease.idempotency_key)
        .header(SIGNATURE_HEADER, signature)
        .body(body)
        .send()
        .await;
    let outcome = match sent {
        Ok(response) if response.status().is_success() => {
            tracing::info!(
                key = %lease.idempotency_key,
                channel = %lease.channel,
                event = %lease.event_id,
                attempt = lease.attempt,
                "reminder delivered"
            );
            DeliveryOutcome::Delivered
        }
        Ok(response) => {
            let status = response.status();
            let retry_after = retry_after(response.headers(), now);
            let reason = format!("the notification service answered HTTP {}", status.as_u16());
            let retryable = status.is_server_error()
                || status == reqwest::StatusCode::REQUEST_TIMEOUT
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
            if retryable {
                retry(engine, sender, lease, reason, retry_after)
            } else {
                tracing::warn!(key = %lease.idempotency_key, status = status.as_u16(), "a reminder was refused");
                DeliveryOutcome::Failed { error: reason }
            }
        }
        Err(error) => {
            let what = if error.is_timeout() {
                "timed out"
            } else if error.is_connect() {
                "could not connect"
            } else {
                "failed"
            };
            retry(
                engine,
                sender,
                lease,
                format!("the request to the notification service {what}"),
                None,
            )
        }
    };
    Ok(outcome)
}

fn withdrawn(lease: &LeasedDelivery, reason: &str) -> DeliveryOutcome {
    tracing::info!(key = %lease.idempotency_key, reason, "reminder withdrawn");
    DeliveryOutcome::Withdrawn {
        reason: reason.to_owned(),
    }
}

/// A retry with exponential backoff (never sooner than `Retry-After`), or the
/// end when the attempts are used up.
fn retry(
    engine: &Engine,
    sender: &Sender,
    lease: &LeasedDelivery,
    reason: String,
    retry_after: Option<chrono::Duration>,
) -> DeliveryOutcome {
    let config = &sender.config;
    tracing::warn!(key = %lease.idempotency_key, attempt = lease.attempt, error = %reason, "reminder delivery failed");
    if lease.attempt >= config.max_attempts {
        return DeliveryOutcome::Failed {
            error: format!("gave up after {} attempts: {reason}", lease.attempt),
        };
    }
    let exponent = u32::try_from(lease.attempt.saturating_sub(1)).unwrap_or(0).min(20);
    let delay = (config.backoff_base * 2_i32.pow(exponent)).min(config.backoff_max);
    let delay = retry_after.map_or(delay, |after| delay.max(after));
    DeliveryOutcome::Retry {
        error: reason,
        at: engine.clock().now() + delay,
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap, now: DateTime<Utc>) -> Option<chrono::Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u32>() {
        return Some(chrono::Duration::seconds(i64::from(seconds)));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    Some((at - now).max(chrono::Duration::zero()))
}

fn message(lease: &LeasedDelivery, event: &DeliveryEvent) -> ReminderMessage {
    let reminder: Reminder = lease.reminder;
    ReminderMessage {
        idempotency_key: lease.idempotency_key.clone(),
        user_id: lease.user_id.as_str().to_owned(),
        channel: lease.channel.as_str().to_owned(),
        provider: event.provider.as_str().to_owned(),
        event: MessageEvent {
            name: format!("events/{}", event.id.0),
            title: event.title.clone(),
            location: event.location.clone(),
            start_time: event.start,
            end_time: event.end,
            all_day: event.all_day.is_some(),
            start_date: event.all_day.map(|dates| dates.start),
            end_date: event.all_day.map(|dates| dates.end),
            time_zone: event.time_zone.clone(),
        },
        reminder: MessageReminder {
            minutes_before: reminder.minutes_before,
            method: reminder.method.as_str().to_owned(),
        },
        due_time: lease.due_at,
    }
}

/// Starts this replica's planner and `config.dispatchers` dispatchers named
/// `{replica}/reminders/{n}`; nothing when the HTTP client cannot be built
/// (logged).
pub(crate) fn spawn(
    engine: Arc<Engine>,
    config: &ReminderConfig,
    replica: &str,
    stopped: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let sender = match Sender::new(config.clone()) {
        Ok(sender) => Arc::new(sender),
        Err(error) => {
            tracing::error!(error = %error.without_url(), "reminders are off: the HTTP client could not be built");
            return Vec::new();
        }
    };
    tracing::info!(dispatchers = config.dispatchers, "reminders on");
    let mut tasks = vec![spawn_planner(Arc::clone(&engine), config.clone(), stopped.clone())];
    for n in 0..config.dispatchers {
        tasks.push(spawn_dispatcher(
            Arc::clone(&engine),
            Arc::clone(&sender),
            format!("{replica}/reminders/{n}"),
            stopped.clone(),
        ));
    }
    tasks
}

fn spawn_planner(engine: Arc<Engine>, config: ReminderConfig, mut stopped: watch::Receiver<bool>) -> JoinHandle<()> {
    let metrics = Metrics::new();
    tokio::spawn(async move {
        loop {
            if *stopped.borrow() {
                break;
            }
            match plan_once(&engine, &config).await {
                Ok(report) => {
                    if report.planned > 0 {
                        metrics.planned.add(report.planned, &[]);
                    }
                    if report.withdrawn > 0 {
                        metrics.withdrawn.add(report.withdrawn, &[]);
                        tracing::info!(withdrawn = report.withdrawn, "pending reminders withdrawn");
                    }
                }
                Err(error) => tracing::warn!(error = %error, "could not plan reminders"),
            }
            tokio::select! {
                _ = tokio::time::sleep(config.plan_interval) => {}
                _ = stopped.changed() => break,
            }
        }
    })
}

fn spawn_dispatcher(
    engine: Arc<Engine>,
    sender: Arc<Sender>,
    owner: String,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if *stopped.borrow() {
                break;
            }
            // Stopping drops a delivery at its next await: its lease runs out and
            // it is sent again (same key) by whichever dispatcher leases it next.
            let pass = tokio::select! {
                pass = dispatch_once(&engine, &sender, &owner, 10) => pass,
                _ = stopped.changed() => break,
            };
            match pass {
                Ok(report) if report != DispatchReport::default() => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(owner, error = %error, "could not deliver reminders"),
            }
            tokio::select! {
                _ = tokio::time::sleep(sender.config.poll_interval) => {}
                _ = stopped.changed() => break,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use juy_domain::{CalendarId, EventId, NotificationChannels, Provider, ReminderMethod, UserId};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn signatures_verify_only_for_the_same_key_body_and_a_recent_time() {
        let now = Utc::now();
        let body = br#"{"idempotency_key":"k"}"#;
        let header = sign(SECRET, now.timestamp(), body);
        assert!(header.starts_with(&format!("t={},v1=", now.timestamp())));
        let tolerance = chrono::Duration::minutes(5);
        assert!(verify(SECRET, &header, body, now, tolerance));
        assert!(!verify(
            b"another key of thirty-two bytes!",
            &header,
            body,
            now,
            tolerance
        ));
        assert!(!verify(SECRET, &header, br#"{"idempotency_key":"x"}"#, now, tolerance));
        assert!(!verify(
            SECRET,
            &header,
            body,
            now + chrono::Duration::minutes(6),
            tolerance
        ));
        assert!(!verify(SECRET, "v1=00", body, now, tolerance));
        assert!(!verify(SECRET, "", body, now, tolerance));
        // The timestamp is signed: moving it breaks the signature.
        let moved = header.replacen(
            &format!("t={}", now.timestamp()),
            &format!("t={}", now.timestamp() + 1),
            1,
        );
        assert!(!verify(SECRET, &moved, body, now, tolerance));
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date() {
        let now = DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let headers = |value: &str| {
            let mut map = reqwest::header::HeaderMap::new();
            map.insert(reqwest::header::RETRY_AFTER, value.parse().unwrap());
            map
        };
        assert_eq!(retry_after(&headers("7"), now), Some(chrono::Duration::seconds(7)));
        assert_eq!(
            retry_after(&headers("Mon, 02 Mar 2026 10:01:00 GMT"), now),
            Some(chrono::Duration::seconds(60))
        );
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&reqwest::header::HeaderMap::new(), now), None);
    }

    #[test]
    fn a_delivery_is_withdrawn_when_its_event_changed_since_it_was_planned() {
        let start = Utc::now();
        let reminder = Reminder {
            minutes_before: 10,
            method: ReminderMethod::Popup,
        };
        let lease = LeasedDelivery {
            user_id: UserId::new("u").unwrap(),
            idempotency_key: "k".repeat(64),
            calendar_id: CalendarId(uuid::Uuid::nil()),
            event_id: EventId(uuid::Uuid::nil()),
            provider: Provider::Google,
            event_start: start,
            reminder,
            channel: Channel::Email,
            due_at: start - chrono::Duration::minutes(10),
            attempt: 1,
            owner: "d".into(),
            expires_at: start,
        };
        let event = DeliveryEvent {
            id: lease.event_id,
            calendar_id: lease.calendar_id,
            provider: Provider::Google,
            title: None,
            location: None,
            start,
            end: start + chrono::Duration::hours(1),
            all_day: None,
            time_zone: None,
            status: EventStatus::Confirmed,
            self_response: ResponseStatus::Accepted,
            reminders: vec![reminder],
            channels: NotificationChannels {
                provider: Provider::Google,
                push: false,
                email: true,
                sms: false,
            },
        };
        assert_eq!(withdrawal(&lease, &event), None);
        let changed = |change: &dyn Fn(&mut DeliveryEvent)| {
            let mut event = event.clone();
            change(&mut event);
            withdrawal(&lease, &event)
        };
        assert_eq!(
            changed(&|e| e.status = EventStatus::Cancelled),
            Some("the event was cancelled")
        );
        assert_eq!(
            changed(&|e| e.start += chrono::Duration::minutes(1)),
            Some("the event moved")
        );
        assert_eq!(
            changed(&|e| e.self_response = ResponseStatus::Declined),
            Some("the event was declined")
        );
        assert_eq!(changed(&|e| e.reminders.clear()), Some("the reminder was removed"));
        assert_eq!(
            changed(&|e| e.channels.email = false),
            Some("the channel was switched off")
        );
    }

    #[test]
    fn the_message_keeps_its_texts_out_of_debug() {
        let event = MessageEvent {
            name: "events/x".into(),
            title: Some("Secret title".into()),
            location: Some("Secret room".into()),
            start_time: Utc::now(),
            end_time: Utc::now(),
            all_day: false,
            start_date: None,
            end_date: None,
            time_zone: None,
        };
        let shown = format!("{event:?}");
        assert!(!shown.contains("Secret"), "{shown}");
    }
}
