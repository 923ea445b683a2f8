//! The sync engine: keeps each connected calendar's stored copy equal to the
//! provider's, within a rolling window.
//!
//! Workers ([`worker`]) of any number of replicas lease due calendars
//! (`juy_store::sync_state`), and [`engine::Engine::run`] syncs one leased
//! calendar: a full listing (initial, after the provider invalidated its
//! cursor, when the window rolled, or as the periodic reconciliation) or an
//! incremental round from the provider's cursor. Every page is normalised,
//! encrypted and written in one transaction together with the checkpoint
//! from which the next page starts, so a run that dies resumes where it
//! stopped and memory stays flat whatever the calendar's size. A full
//! listing converges: what it does not confirm is swept when its last page
//! commits. A cleanup loop deletes rows whose TTL ran out.
//!
//! It knows providers only through `juy_providers::CalendarProvider` (the
//! caller supplies clients through [`ClientSource`]) and storage only through
//! `juy_store`; it never logs event text or secrets.
#![forbid(unsafe_code)]

pub mod audit_forward;
pub mod busy_blocks;
pub mod cursor;
pub mod engine;
mod metrics;
pub mod outbox;
pub mod push;
pub mod reminders;
pub mod worker;

use std::time::Duration;

use juy_providers::{CalendarProvider, ProviderError};
use juy_store::sync_state::Lease;

pub use engine::{Engine, RunOutcome};
pub use worker::{Wakeup, Workers, cleanup_once, spawn_cleanup, spawn_workers};

/// Where the engine gets a provider client for a leased calendar's account.
/// The server builds them from its OAuth token manager and CalDAV passwords;
/// a revoked account's client must fail every request from then on.
pub trait ClientSource: Send + Sync {
    /// A client for the account of `lease`.
    fn client_for(&self, lease: &Lease) -> Result<Box<dyn CalendarProvider>, ProviderError>;
}

impl<F> ClientSource for F
where
    F: Fn(&Lease) -> Result<Box<dyn CalendarProvider>, ProviderError> + Send + Sync,
{
    fn client_for(&self, lease: &Lease) -> Result<Box<dyn CalendarProvider>, ProviderError> {
        self(lease)
    }
}

/// How the engine, its workers and the cleanup job behave.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Workers per replica (0: this replica does not sync).
    pub workers: usize,
    /// How often an idle worker looks for due calendars (a wake-up comes sooner).
    pub poll_interval: Duration,
    /// How long a lease lasts; renewed between pages while it has less than half left.
    pub lease_for: chrono::Duration,
    /// Time between periodic syncs of a calendar.
    pub interval: chrono::Duration,
    /// Each periodic delay is moved by up to this fraction either way, so calendars spread out.
    pub jitter: f64,
    /// The window: from this long ago...
    pub window_past: chrono::Duration,
    /// ...to this far ahead.
    pub window_future: chrono::Duration,
    /// Once the window's start has moved this far past the start of the
    /// window the provider cursor covers, the calendar is listed in full again
    /// with the new window (events that scrolled in are fetched; Graph delta
    /// rounds, whose window is fixed, start over).
    pub window_roll: chrono::Duration,
    /// How often a calendar is listed in full and compared with the store,
    /// repairing drift (missed notifications, provider bugs).
    pub reconcile_every: chrono::Duration,
    /// How often the account's calendar list is read, to find new calendars.
    pub discover_every: chrono::Duration,
    /// How long after the sync that last confirmed it an event row expires.
    pub event_ttl: chrono::Duration,
    /// The first retry delay after a failure; doubled with each further failure.
    pub backoff_base: chrono::Duration,
    /// The longest retry delay.
    pub backoff_max: chrono::Duration,
    /// A `Retry-After` up to this long is waited out within the run.
    pub inline_retry_max: Duration,
    /// How many times one run waits and retries.
    pub inline_retries: u32,
    /// How often the cleanup job runs.
    pub cleanup_interval: Duration,
    /// The most rows one cleanup statement deletes.
    pub cleanup_batch: i64,
    /// How long finished "sync now" jobs are kept.
    pub job_retention: chrono::Duration,
    /// Push notifications (Google watch channels, Graph subscriptions);
    /// `None`: calendars are only polled.
    pub push: Option<push::PushConfig>,
    /// The meeting write-back dispatcher.
    pub outbox: outbox::OutboxConfig,
    /// Reminders to the notification service; `None` (no endpoint): none are planned or sent.
    pub reminders: Option<reminders::ReminderConfig>,
    /// Forwarding of the audit trail to an external audit service; `None`: not forwarded.
    pub audit_forward: Option<audit_forward::AuditForwardConfig>,
    /// How old a calendar's last successful sync may be before free/busy
    /// calls its owner's busy time incomplete (read by the API).
    pub stale_after: chrono::Duration,
    /// Rebuilding users' busy blocks after their events change.
    pub busy_blocks: busy_blocks::BusyBlocksConfig,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            poll_interval: Duration::from_secs(1),
            lease_for: chrono::Duration::minutes(2),
            interval: chrono::Duration::minutes(5),
            jitter: 0.1,
            window_past: chrono::Duration::days(30),
            window_future: chrono::Duration::days(365),
            window_roll: chrono::Duration::days(1),
            reconcile_every: chrono::Duration::days(7),
            discover_every: chrono::Duration::hours(1),
            event_ttl: chrono::Duration::days(30),
            backoff_base: chrono::Duration::seconds(30),
            backoff_max: chrono::Duration::hours(1),
            inline_retry_max: Duration::from_secs(10),
            inline_retries: 3,
            cleanup_interval: Duration::from_secs(60),
            cleanup_batch: 5000,
            job_retention: chrono::Duration::days(1),
            push: None,
            outbox: outbox::OutboxConfig::default(),
            reminders: None,
            audit_forward: None,
            stale_after: chrono::Duration::hours(1),
            busy_blocks: busy_blocks::BusyBlocksConfig::default(),
        }
    }
}

/// Why a sync run stopped without finishing.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The provider failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] juy_store::StoreError),
    /// The lease was lost (expired and taken over, or cancelled by a revocation).
    #[error("the calendar's lease was lost")]
    LeaseLost,
}
