//! One sync run of one leased calendar: plan the round, stream its pages,
//! write each page with its checkpoint in one transaction, and release the
//! lease with the outcome.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use futures::StreamExt as _;
use juy_crypto::DataKey;
use juy_domain::{CalendarEvent, Clock, Provider, TimeRange};
use juy_normalizer::{CalendarContext, Change, Normalized};
use juy_providers::{CalendarProvider, EventPage, ProviderError, RawEvent};
use juy_store::calendars::NewCalendar;
use juy_store::sync_jobs::{self, JobPhase};
use juy_store::sync_state::{self, Lease};
use juy_store::{AsyncPgConnection, Store, accounts, calendars, events};
use rand::Rng as _;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::cursor::{FullReason, Round, SyncCursor};
use crate::metrics::Metrics;
use crate::{ClientSource, SyncConfig, SyncError};

/// The longest provider or external id a row may carry (PostgreSQL btree
/// entries are limited to about 2.7 kB; real ids are far shorter).
const MAX_ID_BYTES: usize = 2048;

/// What the user is told when the provider no longer accepts the credentials.
const REAUTH_REASON: &str = "The provider no longer accepts this connection's credentials; link the account again.";

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Pages committed.
    pub pages: u64,
    /// Events inserted or updated.
    pub written: u64,
    /// Events deleted (including the sweep).
    pub deleted: u64,
    /// Events deleted by the sweep that ended a full listing: rows the
    /// provider no longer has although no change told us (drift repaired).
    pub swept: u64,
    /// Rows a reconciliation listing found missing, or stored with another
    /// etag than the provider's, and rewrote (drift repaired, with `swept`).
    pub repaired: u64,
    /// Items skipped because they could not be normalised or stored.
    pub rejected: u64,
    /// Why the run listed in full, if it did.
    pub full: Option<FullReason>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// The calendar is in sync; the next periodic run is at `next_sync_at`.
    Synced {
        /// What the run did.
        stats: RunStats,
        /// When the calendar is due again.
        next_sync_at: DateTime<Utc>,
    },
    /// The run failed and was recorded; it is retried at `retry_at`.
    Failed {
        /// The reason shown to the user.
        reason: String,
        /// When it is retried.
        retry_at: DateTime<Utc>,
    },
    /// The account needs to be linked again; its calendars are parked.
    ReauthRequired,
    /// The lease was lost (taken over or cancelled): nothing was released.
    LeaseLost,
}

/// Syncs leased calendars. Cheap to share; one per replica.
pub struct Engine {
    store: Store,
    clients: Arc<dyn ClientSource>,
    clock: Arc<dyn Clock>,
    config: SyncConfig,
    metrics: Metrics,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// How a round step failed.
enum StepError {
    /// A run error.
    Run(SyncError),
    /// The resume token was refused on the first page: start the round over.
    ResumeRefused,
}

impl<E: Into<SyncError>> From<E> for StepError {
    fn from(error: E) -> Self {
        StepError::Run(error.into())
    }
}

impl Engine {
    /// An engine writing through `store`, reaching providers through `clients`.
    pub fn new(store: Store, clients: Arc<dyn ClientSource>, clock: Arc<dyn Clock>, config: SyncConfig) -> Self {
        Self {
            store,
            clients,
            clock,
            config,
            metrics: Metrics::new(),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    /// Where it gets provider clients.
    pub fn clients(&self) -> &Arc<dyn ClientSource> {
        &self.clients
    }

    /// The store it writes to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Its clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The sync window at `now` (at least a day long, whatever the configuration says).
    pub fn window_at(&self, now: DateTime<Utc>) -> TimeRange {
        let start = now.checked_sub_signed(self.config.window_past).unwrap_or(now);
        let end = now
            .checked_add_signed(self.config.window_future.max(chrono::Duration::days(1)))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        TimeRange::new(start, end).unwrap_or_else(|_| whole_time())
    }

    /// Syncs the calendar of `lease` and releases the lease (unless it was lost).
    pub async fn run(&self, lease: Lease) -> RunOutcome {
        let started = Instant::now();
        let provider = lease.provider;
        let mut conn = match self.store.conn().await {
            Ok(conn) => conn,
            Err(error) => {
                // Without a connection nothing can be recorded; the lease runs out and the calendar is retried.
                tracing::warn!(calendar_id = %lease.calendar_id, error = %error, "sync run without a database connection");
                self.metrics.error(provider, "store");
                return RunOutcome::LeaseLost;
            }
        };
        let now = self.clock.now();
        let last_synced_at = lease.last_synced_at;
        let mut run = match Run::start(self, &mut conn, lease, now).await {
            Ok(run) => run,
            Err((lease, error)) => return self.finish_failed(&mut conn, &lease, &[], error, started).await,
        };
        if let Some(last) = last_synced_at {
            self.metrics.lag(provider, (now - last).to_std().unwrap_or_default());
        }
        let result = run.execute(&mut conn).await;
        if result.is_ok()
            && let Some(push) = &self.config.push
        {
            crate::push::ensure_channel(push, &mut conn, &run.lease, &*run.client, self.clock.now()).await;
        }
        let Run {
            lease,
            cursor,
            jobs,
            stats,
            ..
        } = run;
        match result {
            Ok(()) => {
                let now = self.clock.now();
                let next = self.next_periodic(now);
                let encoded = cursor.encode();
                match sync_state::release_success(&mut conn, &lease, Some(&encoded), next, now).await {
                    Ok(true) => {}
                    Ok(false) => return RunOutcome::LeaseLost,
                    Err(error) => {
                        return self
                            .finish_failed(&mut conn, &lease, &jobs, SyncError::Store(error), started)
                            .await;
                    }
                }
                if let Err(error) =
                    sync_jobs::finish(&mut conn, &lease.user_id, lease.calendar_id, &jobs, None, now).await
                {
                    tracing::warn!(calendar_id = %lease.calendar_id, error = %error, "could not finish sync jobs");
                }
                self.metrics.synced(provider, &stats, started.elapsed());
                tracing::info!(
                    calendar_id = %lease.calendar_id,
                    provider = %provider,
                    full = stats.full.map(FullReason::as_str).unwrap_or("no"),
                    pages = stats.pages,
                    written = stats.written,
                    deleted = stats.deleted,
                    swept = stats.swept,
                    rejected = stats.rejected,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "calendar synced"
                );
                RunOutcome::Synced {
                    stats,
                    next_sync_at: next,
                }
            }
            Err(error) => self.finish_failed(&mut conn, &lease, &jobs, error, started).await,
        }
    }

    /// When a calendar synced at `now` is due again: the interval, jittered.
    fn next_periodic(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let interval = self.config.interval.num_milliseconds().max(1) as f64;
        let jitter = self.config.jitter.clamp(0.0, 0.9);
        let factor = 1.0 + rand::rng().random_range(-jitter..=jitter);
        now + chrono::Duration::milliseconds((interval * factor) as i64)
    }

    /// The delay before retry number `failures` (1 = the first), with jitter,
    /// never shorter than what the provider asked for.
    fn backoff(&self, failures: i32, asked: Option<std::time::Duration>) -> chrono::Duration {
        let base = self.config.backoff_base.num_milliseconds().max(1);
        let max = self.config.backoff_max.num_milliseconds().max(base);
        let exponent = u32::try_from(failures.saturating_sub(1)).unwrap_or(0).min(30);
        let full = base.saturating_mul(1_i64 << exponent).min(max);
        // "Equal jitter": half fixed, half random, so retries spread but never come too soon.
        let delay = full / 2 + rand::rng().random_range(0..=full / 2);
        let asked = asked
            .and_then(|asked| chrono::Duration::from_std(asked).ok())
            .unwrap_or_else(chrono::Duration::zero);
        chrono::Duration::milliseconds(delay).max(asked)
    }

    async fn finish_failed(
        &self,
        conn: &mut AsyncPgConnection,
        lease: &Lease,
        jobs: &[Uuid],
        error: SyncError,
        started: Instant,
    ) -> RunOutcome {
        let provider = lease.provider;
        let now = self.clock.now();
        let failures = lease.consecutive_failures.saturating_add(1);
        let (reason, kind, retry_after) = match &error {
            SyncError::LeaseLost => {
                tracing::info!(calendar_id = %lease.calendar_id, "sync run stopped: the lease was lost");
                self.metrics.error(provider, "lease_lost");
                return RunOutcome::LeaseLost;
            }
            SyncError::Provider(ProviderError::ReauthRequired(_) | ProviderError::Unauthorized) => {
                self.metrics.error(provider, "auth");
                // OAuth grants refused at refresh are marked by the token manager already; a
                // credential refused after a refresh (or a CalDAV password) is marked here.
                if let Err(error) =
                    accounts::mark_reauth_required(conn, &lease.user_id, lease.account_id, REAUTH_REASON).await
                {
                    tracing::warn!(account_id = %lease.account_id, error = %error, "could not mark the account for re-authorisation");
                }
                if let Err(error) = sync_jobs::skip_account(conn, &lease.user_id, lease.account_id, now).await {
                    tracing::warn!(account_id = %lease.account_id, error = %error, "could not skip sync jobs");
                }
                tracing::info!(calendar_id = %lease.calendar_id, account_id = %lease.account_id, "sync stopped: the account must be linked again");
                return RunOutcome::ReauthRequired;
            }
            SyncError::Provider(ProviderError::Retryable { retry_after, status }) => {
                self.metrics.throttled(provider);
                (
                    format!("The provider is throttling or unavailable (HTTP {status}); retrying automatically."),
                    "throttled",
                    *retry_after,
                )
            }
            SyncError::Provider(ProviderError::Network(_)) => (
                "The provider could not be reached; retrying automatically.".to_owned(),
                "network",
                None,
            ),
            SyncError::Provider(ProviderError::NotFound) => (
                "The calendar no longer exists at the provider, or the account lost access to it.".to_owned(),
                "not_found",
                None,
            ),
            SyncError::Provider(other) => (format!("Sync failed: {other}."), "provider", None),
            SyncError::Store(store) => {
                tracing::error!(calendar_id = %lease.calendar_id, error = %store, "sync run failed in the store");
                (
                    "An internal error stopped the sync; retrying automatically.".to_owned(),
                    "store",
                    None,
                )
            }
        };
        self.metrics.error(provider, kind);
        let retry_at = now + self.backoff(failures, retry_after);
        if let Some(asked) = retry_after.and_then(|asked| chrono::Duration::from_std(asked).ok()) {
            // The provider throttles the account: its other calendars wait too.
            if let Err(error) = sync_state::defer_account(conn, &lease.user_id, lease.account_id, now + asked).await {
                tracing::warn!(account_id = %lease.account_id, error = %error, "could not defer the account's calendars");
            }
        }
        match sync_state::release_failure(conn, lease, &reason, retry_at).await {
            Ok(true) => {}
            Ok(false) => return RunOutcome::LeaseLost,
            Err(error) => {
                tracing::error!(calendar_id = %lease.calendar_id, error = %error, "could not record a failed sync");
                return RunOutcome::LeaseLost;
            }
        }
        if let Err(error) = sync_jobs::finish(conn, &lease.user_id, lease.calendar_id, jobs, Some(&reason), now).await {
            tracing::warn!(calendar_id = %lease.calendar_id, error = %error, "could not finish sync jobs");
        }
        tracing::warn!(
            calendar_id = %lease.calendar_id,
            provider = %provider,
            kind,
            failures,
            retry_in_s = (retry_at - now).num_seconds(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            error = %error,
            "calendar sync failed"
        );
        RunOutcome::Failed { reason, retry_at }
    }
}

/// All of chrono's time: only used if `now` sits at the very edge of its calendar.
fn whole_time() -> TimeRange {
    match TimeRange::new(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC) {
        Ok(range) => range,
        Err(_) => whole_time(),
    }
}

/// One run in progress.
struct Run<'e> {
    engine: &'e Engine,
    lease: Lease,
    key: DataKey,
    client: Arc<dyn CalendarProvider>,
    cursor: SyncCursor,
    jobs: Vec<Uuid>,
    stats: RunStats,
    self_emails: Vec<String>,
}

impl<'e> Run<'e> {
    async fn start(
        engine: &'e Engine,
        conn: &mut AsyncPgConnection,
        lease: Lease,
        now: DateTime<Utc>,
    ) -> Result<Run<'e>, (Lease, SyncError)> {
        let key = match engine.store.existing_data_key(conn, &lease.user_id).await {
            Ok(key) => key,
            Err(error) => return Err((lease, error.into())),
        };
        let client = match engine.clients.client_for(&lease) {
            Ok(client) => Arc::from(client),
            Err(error) => return Err((lease, error.into())),
        };
        let cursor = plan(engine, &lease, now);
        let phase = match cursor.round {
            Round::Full { .. } => JobPhase::Listing,
            _ => JobPhase::Changes,
        };
        let jobs = match sync_jobs::attach(conn, &lease.user_id, lease.calendar_id, phase, now).await {
            Ok(jobs) => jobs,
            Err(error) => return Err((lease, error.into())),
        };
        let self_emails = if lease.account_external_id.contains('@') {
            vec![lease.account_external_id.to_lowercase()]
        } else {
            Vec::new()
        };
        let stats = RunStats {
            full: match cursor.round {
                Round::Full { reason, .. } => Some(reason),
                _ => None,
            },
            ..RunStats::default()
        };
        Ok(Run {
            engine,
            lease,
            key,
            client,
            cursor,
            jobs,
            stats,
            self_emails,
        })
    }

    /// Runs rounds until the calendar is in sync.
    async fn execute(&mut self, conn: &mut AsyncPgConnection) -> Result<(), SyncError> {
        self.discover(conn).await?;
        let mut retries = 0;
        let mut resyncs = 0;
        loop {
            let error = match self.round(conn).await {
                Ok(()) => return Ok(()),
                Err(StepError::ResumeRefused) => {
                    tracing::info!(calendar_id = %self.lease.calendar_id, "the provider refused a resume token; restarting the round");
                    self.restart_round();
                    continue;
                }
                Err(StepError::Run(error)) => error,
            };
            match error {
                SyncError::Provider(ProviderError::FullResyncRequired) if resyncs == 0 => {
                    resyncs += 1;
                    let now = self.engine.clock.now();
                    tracing::info!(calendar_id = %self.lease.calendar_id, "the provider invalidated its cursor; listing in full");
                    self.engine.metrics.error(self.lease.provider, "resync_required");
                    self.cursor.window = self.engine.window_at(now);
                    self.cursor.round = Round::Full {
                        mark: sweep_mark(now),
                        reason: FullReason::ResyncRequired,
                        resume: None,
                    };
                    self.stats.full = Some(FullReason::ResyncRequired);
                }
                SyncError::Provider(ref provider_error)
                    if provider_error.is_retryable() && retries < self.engine.config.inline_retries =>
                {
                    let wait = provider_error
                        .retry_after()
                        .unwrap_or_else(|| std::time::Duration::from_millis(500 << retries.min(5)));
                    if wait > self.engine.config.inline_retry_max {
                        return Err(error);
                    }
                    retries += 1;
                    if matches!(provider_error, ProviderError::Retryable { .. }) {
                        self.engine.metrics.throttled(self.lease.provider);
                    }
                    tracing::info!(
                        calendar_id = %self.lease.calendar_id,
                        wait_ms = wait.as_millis() as u64,
                        error = %provider_error,
                        "waiting before retrying the page"
                    );
                    tokio::time::sleep(wait).await;
                }
                error => return Err(error),
            }
        }
    }

    /// Starts the current round over (its resume token was refused).
    fn restart_round(&mut self) {
        match &mut self.cursor.round {
            Round::Full { resume, .. } | Round::Changes { resume, .. } => *resume = None,
            Round::Idle { .. } => {}
        }
    }

    /// Lists the account's calendars now and then, storing new ones (due at once) and refreshing the others.
    async fn discover(&mut self, conn: &mut AsyncPgConnection) -> Result<(), SyncError> {
        let now = self.engine.clock.now();
        if self
            .cursor
            .discovered_at
            .is_some_and(|at| now - at < self.engine.config.discover_every)
        {
            return Ok(());
        }
        match self.client.list_calendars().await {
            Ok(remote) => {
                let found: Vec<NewCalendar> = remote
                    .into_iter()
                    .map(|calendar| NewCalendar {
                        account_id: self.lease.account_id,
                        provider: self.lease.provider,
                        provider_calendar_id: calendar.id,
                        name: calendar.name,
                        color: calendar.color,
                        time_zone: calendar.time_zone,
                        is_primary: calendar.is_primary,
                        can_write: calendar.can_write,
                    })
                    .collect();
                calendars::upsert_calendars(conn, &self.key, &self.lease.user_id, &found).await?;
                self.cursor.discovered_at = Some(now);
                Ok(())
            }
            Err(error @ (ProviderError::ReauthRequired(_) | ProviderError::Unauthorized)) => Err(error.into()),
            Err(error) => {
                // Discovery is a side job: the calendar's own sync goes on.
                tracing::info!(account_id = %self.lease.account_id, error = %error, "could not list the account's calendars");
                Ok(())
            }
        }
    }

    /// Runs the current round to its end.
    async fn round(&mut self, conn: &mut AsyncPgConnection) -> Result<(), StepError> {
        let calendar = self.lease.provider_calendar_id.clone();
        let (resumed, full) = match &self.cursor.round {
            Round::Full { resume, .. } => (resume.clone(), true),
            Round::Changes { resume, .. } => (resume.clone(), false),
            Round::Idle { .. } => return Ok(()),
        };
        let window = self.cursor.window;
        let from_token = match &self.cursor.round {
            Round::Changes { token, .. } => Some(token.clone()),
            _ => None,
        };
        let source = match (&resumed, from_token) {
            (Some(token), _) => Source::Resume(token.clone()),
            (None, None) => Source::List(window),
            (None, Some(token)) => Source::Changes(token),
        };
        let sorter = Sorter {
            user_id: self.lease.user_id.clone(),
            calendar_id: self.lease.calendar_id,
            provider: self.lease.provider,
            time_zone: self.lease.time_zone.clone(),
            self_emails: self.self_emails.clone(),
            window,
            defaults: self.cursor.defaults.clone(),
            full,
        };
        let mut pages = Prefetch::start(Arc::clone(&self.client), calendar, source, sorter);
        let mut writer = PageWriter {
            engine: self.engine,
            lease: &mut self.lease,
            key: &self.key,
            cursor: &mut self.cursor,
            jobs: &self.jobs,
            stats: &mut self.stats,
        };
        writer.keep_lease(conn).await?;
        let mut next = pages.next().await;
        let mut first = true;
        loop {
            let page = match next {
                None => break,
                Some(Ok(page)) => page,
                Some(Err(error)) => {
                    let refused = matches!(
                        error,
                        ProviderError::Malformed(_)
                            | ProviderError::FullResyncRequired
                            | ProviderError::NotFound
                            | ProviderError::Rejected { .. }
                            | ProviderError::UrlNotAllowed(_)
                    );
                    if first && resumed.is_some() && refused {
                        return Err(StepError::ResumeRefused);
                    }
                    return Err(error.into());
                }
            };
            first = false;
            let last = page.next_cursor.is_some();
            // The next page is fetched and parsed by the prefetch task while this one is written.
            writer.write(conn, page, last).await?;
            if last {
                return Ok(());
            }
            writer.keep_lease(conn).await?;
            next = pages.next().await;
        }
        // The feed ended without a cursor for the next round: record that the next round lists in full.
        writer.write(conn, SortedPage::default(), true).await?;
        Ok(())
    }
}

/// Where a round's pages come from.
enum Source {
    /// The whole window.
    List(TimeRange),
    /// The changes since a cursor.
    Changes(String),
    /// The rest of a round from a page's resume token.
    Resume(String),
}

/// A round's pages, fetched, parsed and normalised by a task of their own
/// while the run writes the previous page, so the provider's latency, the
/// parsing and the normalising use the other core instead of adding to the
/// database's time. At most one page waits in the channel (bounded memory);
/// the task ends with the feed, at its first error, or when the round drops
/// this (the requests stop with the round, and a revoked account's client
/// refuses every request anyway).
///
/// The feed's end is an explicit `Ok(None)`: a task that stopped without it
/// (a panic) is an error, never taken for the end of a listing, whose last
/// page would sweep every row the listing had not reached yet.
struct Prefetch {
    pages: tokio::sync::mpsc::Receiver<Result<Option<SortedPage>, ProviderError>>,
    task: tokio::task::JoinHandle<()>,
}

impl Prefetch {
    fn start(client: Arc<dyn CalendarProvider>, calendar: String, source: Source, mut sorter: Sorter) -> Self {
        let (tx, pages) = tokio::sync::mpsc::channel(1);
        let task = tokio::spawn(
            async move {
                let mut stream = match &source {
                    Source::List(window) => client.list_events(&calendar, *window),
                    Source::Changes(token) => client.changes(&calendar, token),
                    Source::Resume(token) => client.resume(&calendar, token),
                };
                while let Some(page) = stream.next().await {
                    let failed = page.is_err();
                    let page = page.map(|page| Some(sorter.sort(page)));
                    if tx.send(page).await.is_err() || failed {
                        return;
                    }
                }
                let _ = tx.send(Ok(None)).await;
            }
            .in_current_span(),
        );
        Self { pages, task }
    }

    /// The next page; `None` when the feed ended.
    async fn next(&mut self) -> Option<Result<SortedPage, ProviderError>> {
        match self.pages.recv().await {
            Some(Ok(Some(page))) => Some(Ok(page)),
            Some(Ok(None)) => None,
            Some(Err(error)) => Some(Err(error)),
            None => Some(Err(ProviderError::Network(
                "the page reader stopped before the feed ended".into(),
            ))),
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Normalises a round's pages and sorts them into what the store is asked
/// to do; runs in the prefetch task.
struct Sorter {
    user_id: juy_domain::UserId,
    calendar_id: juy_domain::CalendarId,
    provider: Provider,
    /// The calendar's zone as last listed (Google's list defaults win).
    time_zone: Option<String>,
    self_emails: Vec<String>,
    window: TimeRange,
    /// Google's calendar-level defaults, from the cursor or the latest page.
    defaults: Option<serde_json::Value>,
    full: bool,
}

/// A page ready to write.
#[derive(Default)]
struct SortedPage {
    changes: PageChanges,
    resume: Option<String>,
    next_cursor: Option<String>,
    calendar_defaults: Option<serde_json::Value>,
}

impl Sorter {
    fn context(&self) -> CalendarContext {
        let defaults = self.defaults.as_ref();
        CalendarContext {
            user_id: self.user_id.clone(),
            calendar_id: self.calendar_id,
            provider: self.provider,
            time_zone: defaults
                .and_then(juy_normalizer::google::calendar_time_zone)
                .or_else(|| self.time_zone.clone()),
            default_reminders: defaults
                .map(juy_normalizer::google::default_reminders)
                .unwrap_or_default(),
            self_emails: self.self_emails.to_vec(),
        }
    }

    /// Normalises a page and sorts it into upserts and deletions.
    fn sort(&mut self, mut page: EventPage) -> SortedPage {
        let calendar_defaults = page.calendar_defaults.take();
        if let Some(defaults) = &calendar_defaults {
            self.defaults = Some(defaults.clone());
        }
        let ctx = self.context();
        let window = self.window;
        let full = self.full;
        let resume = page.resume.take();
        let next_cursor = page.next_cursor.take();
        let mut out = PageChanges::default();
        let mut normalized = Normalized::default();
        let caldav = self.provider == Provider::Caldav;
        let mut google = Vec::new();
        let mut graph = Vec::new();
        for item in page.items {
            match item {
                RawEvent::Google(value) => google.push(value),
                RawEvent::Graph(value) => graph.push(value),
                RawEvent::ICal { href, etag, data } => {
                    let object = juy_normalizer::ical::normalize_object(&ctx, &href, etag.as_deref(), &data, window);
                    // A resource that could not be read at all keeps its stored rows.
                    if object.changes.is_empty() && !object.rejected.is_empty() {
                        normalized.extend(object);
                        continue;
                    }
                    if !full {
                        out.resources.push(href);
                    }
                    normalized.extend(object);
                }
            }
        }
        if !google.is_empty() {
            normalized.extend(juy_normalizer::google::normalize(&ctx, &google));
        }
        if !graph.is_empty() {
            normalized.extend(juy_normalizer::graph::normalize(&ctx, &graph));
        }
        out.rejected += normalized.log_rejected(&ctx) as u64;
        for change in normalized.changes {
            match change {
                Change::Upsert(event) => {
                    if let Some(problem) = unstorable(&event) {
                        tracing::warn!(
                            calendar_id = %ctx.calendar_id,
                            provider = %ctx.provider,
                            problem,
                            "skipped an event that cannot be stored"
                        );
                        out.rejected += 1;
                    } else if window.overlaps(event.start, event.end) {
                        out.upserts.push(*event);
                    } else if !caldav {
                        // Moved out of the window (or changed outside it): not ours to keep.
                        out.deletes.push(event.external_id);
                    }
                }
                Change::Delete { external_id } => out.deletes.push(external_id),
            }
        }
        if caldav {
            out.removed_resources = page.removed;
        } else {
            out.deletes.extend(page.removed);
        }
        SortedPage {
            changes: out,
            resume,
            next_cursor,
            calendar_defaults,
        }
    }
}

/// Writes pages of one run.
struct PageWriter<'r> {
    engine: &'r Engine,
    lease: &'r mut Lease,
    key: &'r DataKey,
    cursor: &'r mut SyncCursor,
    jobs: &'r [Uuid],
    stats: &'r mut RunStats,
}

/// One page, normalised and sorted into what the store is asked to do.
#[derive(Default)]
struct PageChanges {
    upserts: Vec<CalendarEvent>,
    deletes: Vec<String>,
    /// CalDAV resources whose occurrences become exactly those in `upserts` (change feeds).
    resources: Vec<String>,
    /// CalDAV resources removed.
    removed_resources: Vec<String>,
    rejected: u64,
}

impl PageWriter<'_> {
    async fn keep_lease(&mut self, conn: &mut AsyncPgConnection) -> Result<(), SyncError> {
        let now = self.engine.clock.now();
        let lease_for = self.engine.config.lease_for;
        if self.lease.expires_at - now < lease_for / 2 && !sync_state::renew(conn, self.lease, now, lease_for).await? {
            return Err(SyncError::LeaseLost);
        }
        Ok(())
    }

    /// Writes one page and the checkpoint after it in one transaction.
    /// `last`: the round ends with this page (it carries the next cursor, or
    /// the feed ended without one).
    async fn write(&mut self, conn: &mut AsyncPgConnection, page: SortedPage, last: bool) -> Result<(), SyncError> {
        let SortedPage {
            changes,
            resume,
            next_cursor,
            calendar_defaults,
        } = page;
        if let Some(defaults) = calendar_defaults {
            self.cursor.defaults = Some(defaults);
        }
        let now = self.engine.clock.now();
        let mut after = self.cursor.clone();
        let mark = match &after.round {
            Round::Full { mark, .. } => Some(*mark),
            _ => None,
        };
        // A reconciliation counts what it repairs: rows stored with another
        // etag, and rows missing although they start before the far edge the
        // window had at the previous full listing (later ones scrolled in).
        let reconciling = matches!(
            after.round,
            Round::Full {
                reason: FullReason::Reconcile,
                ..
            }
        );
        let known_before = self
            .cursor
            .last_full
            .map_or(DateTime::<Utc>::MIN_UTC, |at| self.engine.window_at(at).end());
        if last {
            if mark.is_some() {
                after.last_full = Some(now);
            }
            after.round = Round::Idle { token: next_cursor };
        } else if let Some(token) = resume {
            match &mut after.round {
                Round::Full { resume, .. } | Round::Changes { resume, .. } => *resume = Some(token),
                Round::Idle { .. } => {}
            }
        }
        // Rows a full listing confirms must sort at or after its mark, whatever this replica's clock says.
        let synced_at = mark.map_or(now, |mark| now.max(mark));
        let ttl = self.engine.config.event_ttl;
        let encoded = after.encode();
        let lease = &*self.lease;
        let key = self.key;
        let jobs = self.jobs;
        let phase = if mark.is_some() {
            JobPhase::Listing
        } else {
            JobPhase::Changes
        };
        let (written, deleted, swept, repaired) = conn
            .transaction(async |conn| {
                if !sync_state::checkpoint(conn, lease, Some(&encoded)).await? {
                    // Rolled back by the caller seeing `None`: nothing of the page stays.
                    return Err(LeaseLostInTx::Lost);
                }
                let user = &lease.user_id;
                let calendar = lease.calendar_id;
                let mut deleted = 0;
                let mut repaired = 0;
                if reconciling && !changes.upserts.is_empty() {
                    let ids: Vec<&str> = changes.upserts.iter().map(|e| e.external_id.as_str()).collect();
                    let stored = events::stored_etags(conn, user, calendar, &ids).await?;
                    repaired = changes
                        .upserts
                        .iter()
                        .filter(|event| match stored.get(&event.external_id) {
                            Some(etag) => *etag != event.etag,
                            None => event.start < known_before,
                        })
                        .count() as u64;
                }
                if !changes.resources.is_empty() {
                    deleted += events::replace_resources_events(
                        conn,
                        key,
                        user,
                        calendar,
                        &changes.resources,
                        &changes.upserts,
                        synced_at,
                        ttl,
                    )
                    .await?;
                } else {
                    events::upsert_events(conn, key, &changes.upserts, synced_at, ttl).await?;
                }
                deleted += events::delete_events_by_external_id(conn, user, calendar, &changes.deletes).await?;
                deleted += events::delete_caldav_resources(conn, user, calendar, &changes.removed_resources).await?;
                let swept = match (last, mark) {
                    (true, Some(mark)) => events::sweep_unconfirmed(conn, user, calendar, mark).await?,
                    _ => 0,
                };
                let written = changes.upserts.len() as u64;
                sync_jobs::record_progress(conn, user, calendar, jobs, phase, written, deleted + swept).await?;
                Ok::<_, LeaseLostInTx>((written, deleted, swept, repaired))
            })
            .await
            .map_err(|error| match error {
                LeaseLostInTx::Lost => SyncError::LeaseLost,
                LeaseLostInTx::Store(error) => SyncError::Store(error),
            })?;
        *self.cursor = after;
        self.stats.pages += 1;
        self.stats.written += written;
        self.stats.deleted += deleted + swept;
        self.stats.swept += swept;
        self.stats.repaired += repaired;
        self.stats.rejected += changes.rejected;
        Ok(())
    }
}

/// A page transaction's error: the lease was lost (roll back), or the store failed.
enum LeaseLostInTx {
    Lost,
    Store(juy_store::StoreError),
}

impl<E: Into<juy_store::StoreError>> From<E> for LeaseLostInTx {
    fn from(error: E) -> Self {
        LeaseLostInTx::Store(error.into())
    }
}

/// Why an event cannot be stored, if it cannot: text PostgreSQL refuses
/// (NUL characters) or ids too long to index. Event texts are sealed, so
/// only the plaintext columns matter.
fn unstorable(event: &CalendarEvent) -> Option<&'static str> {
    let plain = [
        Some(event.external_id.as_str()),
        event.ical_uid.as_deref(),
        event.series_id.as_deref(),
        event.time_zone.as_deref(),
        event.etag.as_deref(),
    ];
    if plain.iter().flatten().any(|text| text.contains('\0')) {
        return Some("a plaintext field contains a NUL character");
    }
    if plain.iter().flatten().any(|text| text.len() > MAX_ID_BYTES) {
        return Some("an id is longer than 2048 bytes");
    }
    if event.external_id.is_empty() {
        return Some("the event has no id");
    }
    None
}

/// The sweep mark of a full listing starting at `now`: just after it (the
/// store keeps microseconds), so rows confirmed at `now` by an earlier run
/// are not taken for confirmed by this listing.
fn sweep_mark(now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::microseconds(1)
}

/// The round a run of `lease` starts with.
fn plan(engine: &Engine, lease: &Lease, now: DateTime<Utc>) -> SyncCursor {
    let desired = engine.window_at(now);
    let full = |reason: FullReason, previous: Option<&SyncCursor>| SyncCursor {
        round: Round::Full {
            mark: sweep_mark(now),
            reason,
            resume: None,
        },
        window: desired,
        last_full: previous.and_then(|cursor| cursor.last_full),
        discovered_at: previous.and_then(|cursor| cursor.discovered_at),
        defaults: previous.and_then(|cursor| cursor.defaults.clone()),
    };
    let Some(cursor) = lease.sync_cursor.as_deref().and_then(SyncCursor::decode) else {
        if lease.sync_cursor.is_some() {
            tracing::info!(calendar_id = %lease.calendar_id, "the stored sync cursor is unreadable; listing in full");
        }
        return full(FullReason::Initial, None);
    };
    match &cursor.round {
        // A round in progress goes on from its checkpoint.
        Round::Full { .. } | Round::Changes { .. } => cursor,
        Round::Idle { token: None } => full(FullReason::ResyncRequired, Some(&cursor)),
        Round::Idle { token: Some(token) } => {
            // A reconciliation lists the whole current window, so it serves a roll too.
            if cursor
                .last_full
                .is_none_or(|last| now - last >= engine.config.reconcile_every)
            {
                full(FullReason::Reconcile, Some(&cursor))
            } else if desired.start() - cursor.window.start() >= engine.config.window_roll {
                full(FullReason::WindowRolled, Some(&cursor))
            } else {
                let token = token.clone();
                SyncCursor {
                    round: Round::Changes { token, resume: None },
                    ..cursor
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use async_trait::async_trait;
    use futures::stream::BoxStream;
    use juy_domain::{CalendarId, UserId};
    use juy_providers::{EventWrite, RemoteCalendar, WrittenEvent};

    use super::*;

    /// A provider whose listing yields one empty page, then panics.
    struct Panicking;

    #[async_trait]
    impl CalendarProvider for Panicking {
        fn provider(&self) -> Provider {
            Provider::Google
        }
        async fn list_calendars(&self) -> Result<Vec<RemoteCalendar>, ProviderError> {
            Ok(Vec::new())
        }
        fn list_events<'a>(
            &'a self,
            _calendar_id: &'a str,
            _window: TimeRange,
        ) -> BoxStream<'a, Result<EventPage, ProviderError>> {
            futures::stream::iter(0..2)
                .map(|n| {
                    assert!(n == 0, "a bug in the client");
                    Ok(EventPage::default())
                })
                .boxed()
        }
        fn changes<'a>(&'a self, _: &'a str, _: &'a str) -> BoxStream<'a, Result<EventPage, ProviderError>> {
            futures::stream::empty().boxed()
        }
        fn resume<'a>(&'a self, _: &'a str, _: &'a str) -> BoxStream<'a, Result<EventPage, ProviderError>> {
            futures::stream::empty().boxed()
        }
        async fn create_event(&self, _: &str, _: &str, _: &EventWrite) -> Result<WrittenEvent, ProviderError> {
            Err(ProviderError::NotFound)
        }
        async fn update_event(
            &self,
            _: &str,
            _: &str,
            _: Option<&str>,
            _: &EventWrite,
        ) -> Result<WrittenEvent, ProviderError> {
            Err(ProviderError::NotFound)
        }
        async fn delete_event(&self, _: &str, _: &str, _: Option<&str>) -> Result<(), ProviderError> {
            Err(ProviderError::NotFound)
        }
    }

    fn sorter(window: TimeRange) -> Sorter {
        Sorter {
            user_id: UserId::new("ada").unwrap(),
            calendar_id: CalendarId::new(),
            provider: Provider::Google,
            time_zone: None,
            self_emails: Vec::new(),
            window,
            defaults: None,
            full: true,
        }
    }

    #[tokio::test]
    async fn a_page_reader_that_dies_is_an_error_never_the_end_of_the_feed() {
        let window = whole_time();
        let mut pages = Prefetch::start(Arc::new(Panicking), "cal".into(), Source::List(window), sorter(window));
        assert!(matches!(pages.next().await, Some(Ok(_))), "the first page arrives");
        assert!(
            matches!(pages.next().await, Some(Err(ProviderError::Network(_)))),
            "a dead reader is not the end of the listing (its last page would sweep)"
        );
    }

    #[tokio::test]
    async fn a_feed_that_ends_ends() {
        let mut pages = Prefetch::start(
            Arc::new(Panicking),
            "cal".into(),
            Source::Changes("token".into()),
            sorter(whole_time()),
        );
        assert!(pages.next().await.is_none());
    }
}
