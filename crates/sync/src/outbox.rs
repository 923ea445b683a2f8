//! The meeting write-back dispatcher: delivers the transactional outbox of
//! `juy_store::meetings` to the providers.
//!
//! Each dispatcher leases due deliveries, writes the meeting's latest version
//! to its calendar and records the outcome under the lease. Retries are
//! idempotent end to end: a create names its event by a key derived from the
//! meeting id (`juy_domain::provider_key`: Google event id, Graph
//! `transactionId`, CalDAV resource name), so a create retried after a
//! timeout, or after a crash between the provider's answer and our commit,
//! finds the event the first attempt made instead of making a second.
//! A calendar that is not in Write mode is never written: the check is made
//! here, at the moment of writing, whatever was true when the meeting was
//! created.

use std::sync::Arc;
use std::time::Duration;

use juy_domain::{AccountStatus, CalendarMode, Meeting, MeetingStatus};
use juy_providers::{CalendarProvider, EventWrite, ProviderError};
use juy_store::meetings::{self, DeliveryOutcome, DeliveryTarget, LeasedDelivery};
use juy_store::sync_state::Lease;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::engine::Engine;
use crate::worker::Wakeup;

/// How the dispatcher behaves.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Dispatchers per replica (0: this replica delivers nothing).
    pub dispatchers: usize,
    /// How often an idle dispatcher looks for due deliveries (a wake-up comes sooner).
    pub poll_interval: Duration,
    /// How long a delivery's lease lasts (longer than a provider call can take).
    pub lease_for: chrono::Duration,
    /// The first retry delay; doubled with each further failed attempt.
    pub backoff_base: chrono::Duration,
    /// The longest retry delay.
    pub backoff_max: chrono::Duration,
    /// After this many failed attempts of one version, the delivery fails for good.
    pub max_attempts: i32,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            dispatchers: 1,
            poll_interval: Duration::from_secs(1),
            lease_for: chrono::Duration::minutes(2),
            backoff_base: chrono::Duration::seconds(5),
            backoff_max: chrono::Duration::minutes(30),
            max_attempts: 12,
        }
    }
}

/// What one pass of a dispatcher did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DispatchReport {
    /// Deliveries the provider confirmed.
    pub delivered: usize,
    /// Deliveries to try again later.
    pub retried: usize,
    /// Deliveries given up.
    pub failed: usize,
}

/// Leases up to `limit` due deliveries for `owner` and runs them; returns what happened.
pub async fn dispatch_once(engine: &Engine, owner: &str, limit: i64) -> Result<DispatchReport, juy_store::StoreError> {
    let config = &engine.config().outbox;
    let leased = {
        let mut conn = engine.store().conn().await?;
        meetings::lease_due(&mut conn, owner, engine.clock().now(), config.lease_for, limit).await?
    };
    let mut report = DispatchReport::default();
    for lease in leased {
        let outcome = deliver(engine, &lease).await?;
        match &outcome {
            DeliveryOutcome::Delivered { .. } => report.delivered += 1,
            DeliveryOutcome::Retry { .. } => report.retried += 1,
            DeliveryOutcome::Failed { .. } => report.failed += 1,
        }
        let mut conn = engine.store().conn().await?;
        if !meetings::finish_delivery(&mut conn, &lease, &outcome, engine.clock().now()).await? {
            tracing::warn!(meeting = %lease.id, "a meeting delivery outlived its lease; its outcome was not recorded");
        }
        let entry = juy_store::audit::NewAuditEvent {
            actor: "system/outbox".into(),
            actor_roles: Vec::new(),
            action: "meeting.write_back".into(),
            subject: Some(lease.user_id.clone()),
            target: Some(format!("meetings/{}", lease.id)),
            result: match &outcome {
                DeliveryOutcome::Delivered { .. } => "OK",
                DeliveryOutcome::Retry { .. } => "UNAVAILABLE",
                DeliveryOutcome::Failed { .. } => "FAILED_PRECONDITION",
            }
            .into(),
            request_id: None,
        };
        if let Err(error) = juy_store::audit::record(&mut conn, &entry).await {
            tracing::error!(meeting = %lease.id, error = %error, "could not write the audit entry of a write-back");
        }
    }
    Ok(report)
}

async fn deliver(engine: &Engine, lease: &LeasedDelivery) -> Result<DeliveryOutcome, juy_store::StoreError> {
    let (meeting, target) = {
        let mut conn = engine.store().conn().await?;
        let key = engine.store().existing_data_key(&mut conn, &lease.user_id).await?;
        let meeting = match meetings::get_meeting(&mut conn, &key, &lease.user_id, lease.id).await {
            Ok(meeting) => meeting,
            Err(juy_store::StoreError::NotFound { .. }) => {
                return Ok(DeliveryOutcome::Failed {
                    error: "the meeting no longer exists".into(),
                });
            }
            Err(other) => return Err(other),
        };
        let target = match meeting.calendar_id {
            Some(calendar) => meetings::delivery_target(&mut conn, &lease.user_id, calendar).await?,
            None => None,
        };
        (meeting, target)
    };
    let Some(target) = target else {
        return Ok(DeliveryOutcome::Failed {
            error: "the calendar is no longer connected".into(),
        });
    };
    if target.mode != CalendarMode::Write {
        // US-04: a Read-only calendar is never written, whatever the meeting asked for.
        return Ok(DeliveryOutcome::Failed {
            error: "the calendar is read-only: switch it to Write mode to add meetings to it".into(),
        });
    }
    if matches!(
        target.account_status,
        AccountStatus::Revoked | AccountStatus::ReauthRequired
    ) {
        return Ok(DeliveryOutcome::Failed {
            error: "the calendar's connection must be linked again".into(),
        });
    }
    let client = match engine.clients().client_for(&lease_of(lease, &target)) {
        Ok(client) => client,
        Err(error) => return Ok(classify(engine, lease, &error)),
    };
    let result = write(client.as_ref(), lease, &meeting, &target).await;
    Ok(match result {
        Ok(outcome) => {
            tracing::info!(meeting = %meeting.id, provider = %target.provider, version = lease.version, "meeting delivered");
            outcome
        }
        Err(error) => classify(engine, lease, &error),
    })
}

/// The provider calls for the meeting's state.
async fn write(
    client: &dyn CalendarProvider,
    lease: &LeasedDelivery,
    meeting: &Meeting,
    target: &DeliveryTarget,
) -> Result<DeliveryOutcome, ProviderError> {
    let calendar = target.provider_calendar_id.as_str();
    let event = EventWrite {
        title: meeting.title.clone(),
        description: meeting.description.clone(),
        location: meeting.location.clone(),
        start: meeting.start,
        end: meeting.end,
        time_zone: meeting.time_zone.clone(),
        attendees: meeting.attendee_emails.clone(),
    };
    let key = meeting.provider_key();
    match (meeting.status, meeting.delivery.external_id.as_deref()) {
        (MeetingStatus::Scheduled, None) => {
            let written = client.create_event(calendar, &key, &event).await?;
            Ok(DeliveryOutcome::Delivered {
                external_id: Some(written.external_id),
                etag: written.etag,
            })
        }
        (MeetingStatus::Scheduled, Some(external_id)) => {
            // Our version wins over edits made at the provider: the meeting is Juy's.
            let written = client.update_event(calendar, external_id, None, &event).await?;
            Ok(DeliveryOutcome::Delivered {
                external_id: Some(written.external_id),
                etag: written.etag,
            })
        }
        (MeetingStatus::Cancelled, Some(external_id)) => {
            client.delete_event(calendar, external_id, None).await?;
            Ok(DeliveryOutcome::Delivered {
                external_id: None,
                etag: None,
            })
        }
        (MeetingStatus::Cancelled, None) if lease.create_attempted => {
            // A create was sent but its answer never recorded: the event may
            // exist. The idempotent create finds it (or makes it), then it goes.
            match client.create_event(calendar, &key, &event).await {
                Ok(written) => client.delete_event(calendar, &written.external_id, None).await?,
                // Created and already deleted at the provider: nothing left to remove.
                Err(ProviderError::AlreadyExists) => {}
                Err(other) => return Err(other),
            }
            Ok(DeliveryOutcome::Delivered {
                external_id: None,
                etag: None,
            })
        }
        (MeetingStatus::Cancelled, None) => Ok(DeliveryOutcome::Delivered {
            external_id: None,
            etag: None,
        }),
    }
}

/// A provider failure as an outcome: retried with backoff when it may pass,
/// given up when it will not.
fn classify(engine: &Engine, lease: &LeasedDelivery, error: &ProviderError) -> DeliveryOutcome {
    let config = &engine.config().outbox;
    let reason = match error {
        ProviderError::NotFound => "the event or calendar no longer exists at the provider".to_owned(),
        other => other.to_string(),
    };
    tracing::warn!(meeting = %lease.id, attempt = lease.attempt, error = %error, "meeting delivery failed");
    let retryable = error.is_retryable() || matches!(error, ProviderError::Network(_));
    if !retryable || lease.attempt >= config.max_attempts {
        return DeliveryOutcome::Failed { error: reason };
    }
    let exponent = u32::try_from(lease.attempt.saturating_sub(1)).unwrap_or(0).min(20);
    let mut delay = config.backoff_base * 2_i32.pow(exponent);
    if delay > config.backoff_max {
        delay = config.backoff_max;
    }
    if let Some(after) = error
        .retry_after()
        .and_then(|after| chrono::Duration::from_std(after).ok())
    {
        delay = delay.max(after);
    }
    DeliveryOutcome::Retry {
        error: reason,
        at: engine.clock().now() + delay,
    }
}

/// The client source speaks in calendar leases; a delivery borrows the shape.
fn lease_of(delivery: &LeasedDelivery, target: &DeliveryTarget) -> Lease {
    Lease {
        owner: delivery.owner.clone(),
        expires_at: delivery.expires_at,
        user_id: delivery.user_id.clone(),
        calendar_id: target.calendar_id,
        account_id: target.account_id,
        provider: target.provider,
        provider_calendar_id: target.provider_calendar_id.clone(),
        server_url: target.server_url.clone(),
        sync_cursor: None,
        consecutive_failures: 0,
        time_zone: target.time_zone.clone(),
        last_synced_at: None,
        account_external_id: target.account_external_id.clone(),
    }
}

/// Starts a dispatcher loop named `owner`.
pub(crate) fn spawn_dispatcher(
    engine: Arc<Engine>,
    owner: String,
    wakeup: Option<Wakeup>,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if *stopped.borrow() {
                break;
            }
            match dispatch_once(&engine, &owner, 10).await {
                Ok(report) if report != DispatchReport::default() => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(owner, error = %error, "could not deliver meetings"),
            }
            let poll = tokio::time::sleep(engine.config().outbox.poll_interval);
            match &wakeup {
                Some(wakeup) => {
                    tokio::select! {
                        _ = poll => {}
                        _ = wakeup() => {}
                        _ = stopped.changed() => break,
                    }
                }
                None => {
                    tokio::select! {
                        _ = poll => {}
                        _ = stopped.changed() => break,
                    }
                }
            }
        }
    })
}
