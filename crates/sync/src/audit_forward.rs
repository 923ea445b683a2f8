//! Forwarding of the audit trail to an external audit service (AC-07: access
//! logs are written to the audit service).
//!
//! While forwarding is configured, the service switches the database's
//! forwarding on at start (`juy_store::audit::set_forwarding`) and every new
//! entry is queued in the transaction that appends it. Forwarders lease due
//! entries in batches (oldest first), POST them as one JSON document signed
//! like the reminders (`crate::reminders::sign`), and take them off the queue once
//! the audit service answered 2xx. Failures (transport errors, 408, 429,
//! 5xx and also other statuses: the trail must not lose entries) are retried
//! with exponential backoff, never sooner than `Retry-After`, without end: a
//! growing backlog (`juy.audit.forward_backlog`) is what an operator watches.
//!
//! Delivery is at least once: a forwarder that died after the audit service
//! took a batch but before the queue was updated sends it again. Each entry
//! carries its `id`, by which the receiver de-duplicates, and its `seq`, by
//! which it orders (retries may deliver later entries first).

use std::time::Duration;

use chrono::{DateTime, Utc};
use juy_store::audit::{self, AuditEvent};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use crate::reminders::{IDEMPOTENCY_HEADER, SIGNATURE_HEADER, retry_after, sign};

/// Where and how the trail is forwarded.
#[derive(Clone)]
pub struct AuditForwardConfig {
    /// The audit service's endpoint (https, or http on a loopback address).
    pub endpoint: String,
    /// The HMAC-SHA256 key of the signature.
    pub secret: Zeroizing<Vec<u8>>,
    /// Forwarders per replica (0: this replica forwards nothing).
    pub forwarders: usize,
    /// Entries per request.
    pub batch: i64,
    /// How often an idle forwarder looks for queued entries.
    pub poll_interval: Duration,
    /// The limit of one request.
    pub request_timeout: Duration,
    /// How long a forwarder holds a batch (longer than `request_timeout`).
    pub lease_for: chrono::Duration,
    /// The first retry delay; doubled with each further failed attempt.
    pub backoff_base: chrono::Duration,
    /// The longest retry delay (a longer `Retry-After` still wins).
    pub backoff_max: chrono::Duration,
}

impl AuditForwardConfig {
    /// The defaults, forwarding to `endpoint` signed with `secret`.
    pub fn new(endpoint: String, secret: Zeroizing<Vec<u8>>) -> Self {
        Self {
            endpoint,
            secret,
            forwarders: 1,
            batch: 100,
            poll_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            lease_for: chrono::Duration::seconds(60),
            backoff_base: chrono::Duration::seconds(2),
            backoff_max: chrono::Duration::minutes(10),
        }
    }
}

impl std::fmt::Debug for AuditForwardConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditForwardConfig")
            .field("endpoint", &self.endpoint)
            .field("secret", &"<redacted>")
            .field("forwarders", &self.forwarders)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

/// One entry as the audit service receives it (schema: `docs/admin-guide.md`, "Audit trail").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ForwardedEntry {
    /// The entry's id: the receiver de-duplicates by it.
    pub id: uuid::Uuid,
    /// Its position in the trail: the receiver orders by it.
    pub seq: i64,
    /// When it was recorded.
    pub time: DateTime<Utc>,
    /// A user id, or `system/{component}`.
    pub actor: String,
    /// The actor's roles.
    pub actor_roles: Vec<String>,
    /// What was done.
    pub action: String,
    /// Whose data.
    pub subject_user_id: Option<String>,
    /// On what.
    pub target: Option<String>,
    /// With what outcome (a gRPC code name).
    pub result: String,
    /// In which request.
    pub request_id: Option<String>,
}

impl From<&AuditEvent> for ForwardedEntry {
    fn from(e: &AuditEvent) -> Self {
        Self {
            id: e.id,
            seq: e.seq,
            time: e.occurred_at,
            actor: e.actor.clone(),
            actor_roles: e.actor_roles.clone(),
            action: e.action.clone(),
            subject_user_id: e.subject_user_id.clone(),
            target: e.target.clone(),
            result: e.result.clone(),
            request_id: e.request_id.clone(),
        }
    }
}

/// The body of one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ForwardBatch {
    /// `juy.calendar.audit/v1`.
    pub format: String,
    /// The entries, by `seq`.
    pub audit_events: Vec<ForwardedEntry>,
}

/// The forwarders' HTTP side.
pub struct Forwarder {
    config: AuditForwardConfig,
    http: reqwest::Client,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Forwarder {
    /// A forwarder for `config` (its HTTP client uses the process's default rustls provider).
    pub fn new(config: AuditForwardConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { config, http })
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ForwardReport {
    /// Entries the audit service confirmed.
    pub forwarded: usize,
    /// Entries to be tried again.
    pub retried: usize,
}

/// Leases one batch for `owner`, sends it, records the outcome.
pub async fn forward_once(
    store: &juy_store::Store,
    forwarder: &Forwarder,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<ForwardReport, juy_store::StoreError> {
    let config = &forwarder.config;
    let leased = {
        let mut conn = store.conn().await?;
        audit::lease_forward(&mut conn, owner, now, config.lease_for, config.batch).await?
    };
    let Some(first) = leased.first() else {
        return Ok(ForwardReport::default());
    };
    let seqs: Vec<i64> = leased.iter().map(|l| l.event.seq).collect();
    let attempts = leased.iter().map(|l| l.attempts).max().unwrap_or(1);
    let batch = ForwardBatch {
        format: "juy.calendar.audit/v1".into(),
        audit_events: leased.iter().map(|l| ForwardedEntry::from(&l.event)).collect(),
    };
    let body = serde_json::to_vec(&batch).map_err(|e| juy_store::StoreError::Corrupt(format!("audit batch: {e}")))?;
    let key = format!("audit-{}-{}", first.event.seq, seqs.len());
    let sent = forwarder
        .http
        .post(&config.endpoint)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, sign(&config.secret, now.timestamp(), &body))
        .header(IDEMPOTENCY_HEADER, key)
        .body(body)
        .send()
        .await;
    let failure = match sent {
        Ok(response) if response.status().is_success() => None,
        Ok(response) => Some((
            format!("the audit service answered HTTP {}", response.status().as_u16()),
            retry_after(response.headers(), now),
        )),
        Err(error) => Some((
            format!(
                "the audit service could not be reached ({})",
                if error.is_timeout() {
                    "timeout"
                } else if error.is_connect() {
                    "connect"
                } else {
                    "transport"
                }
            ),
            None,
        )),
    };
    let mut conn = store.conn().await?;
    match failure {
        None => {
            audit::forwarded(&mut conn, owner, &seqs).await?;
            Ok(ForwardReport {
                forwarded: seqs.len(),
                retried: 0,
            })
        }
        Some((reason, after)) => {
            let exponent = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0).min(20);
            let delay = config
                .backoff_base
                .checked_mul(1_i32.checked_shl(exponent).unwrap_or(i32::MAX))
                .unwrap_or(config.backoff_max)
                .min(config.backoff_max);
            let delay = after.map_or(delay, |after| delay.max(after));
            tracing::warn!(entries = seqs.len(), attempts, reason = %reason, "forwarding audit entries failed; retrying");
            audit::forward_failed(&mut conn, owner, &seqs, now + delay, &reason).await?;
            Ok(ForwardReport {
                forwarded: 0,
                retried: seqs.len(),
            })
        }
    }
}

/// Spawns `config.forwarders` forwarders until `stop` turns true.
pub fn spawn_forwarders(
    store: juy_store::Store,
    forwarder: std::sync::Arc<Forwarder>,
    replica: &str,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    (0..forwarder.config.forwarders)
        .map(|i| {
            let store = store.clone();
            let forwarder = std::sync::Arc::clone(&forwarder);
            let owner = format!("{replica}/audit-{i}");
            let mut stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    if *stop.borrow() {
                        return;
                    }
                    let busy = match forward_once(&store, &forwarder, &owner, Utc::now()).await {
                        Ok(report) => report.forwarded > 0,
                        Err(error) => {
                            tracing::warn!(error = %error, "an audit forwarder pass failed");
                            false
                        }
                    };
                    if busy {
                        continue;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(forwarder.config.poll_interval) => {}
                        _ = stop.changed() => {}
                    }
                }
            })
        })
        .collect()
}
