//! The operations behind both surfaces. gRPC handlers and REST routes parse
//! their wire format into these inputs, call the same function, and render
//! the same result: there is no second implementation.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use chrono::{DateTime, Duration, Utc};
use futures::Stream;

use juy_domain::{
    AccountId, AccountStatus, Calendar, CalendarEvent, CalendarId, CalendarMode, ConnectedAccount, EventId,
    NotificationChannels, Provider, TimeRange, UserId,
};
use juy_store::accounts::{self, AdminAccountFilter, AdminAccountRow, AdminCursor};
use juy_store::calendars::SyncHealth;
use juy_store::sync_jobs::{self, JobState, SyncJob};
use juy_store::{Store, StoreError};
use juy_store::{calendars, events, settings};

use crate::SyncWakeup;
use crate::auth::Caller;
use crate::error::{ApiError, FieldViolation};
use crate::names;
use crate::paging::{self, Page};

/// The longest time range one `ListEvents` call may ask for.
pub const MAX_RANGE_DAYS: i64 = 400;

/// The most calendars one "sync now" may name.
pub const MAX_SYNC_CALENDARS: usize = 1000;

/// How often a `SyncNow` stream reads its job.
pub const SYNC_NOW_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// The longest a `SyncNow` stream stays open; the job goes on after it.
pub const SYNC_NOW_STREAM_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

/// The service state shared by every request.
#[derive(Clone)]
pub struct CalendarService {
    pub(crate) store: Store,
    pub(crate) integrations: std::sync::Arc<crate::connect::Integrations>,
    wakeup: SyncWakeup,
    outbox_wakeup: SyncWakeup,
    sync_now_poll: std::time::Duration,
    sync_now_limit: std::time::Duration,
    stale_after: Duration,
}

impl std::fmt::Debug for CalendarService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CalendarService").finish_non_exhaustive()
    }
}

/// One item of the merged events view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListedEvent {
    /// An event synced from a connected calendar.
    Synced(CalendarEvent),
    /// A Juy meeting the caller organised.
    Meeting {
        /// The meeting.
        meeting: juy_domain::Meeting,
        /// The provider of the calendar it is written to, if any.
        provider: Option<Provider>,
    },
}

impl ListedEvent {
    /// The keyset order of the view: start, then id.
    pub fn key(&self) -> (DateTime<Utc>, uuid::Uuid) {
        match self {
            ListedEvent::Synced(event) => (event.start, event.id.0),
            ListedEvent::Meeting { meeting, .. } => (meeting.start, meeting.id.0),
        }
    }
}

/// `ListEvents` as parsed from either surface.
#[derive(Debug, Clone, Default)]
pub struct ListEventsInput {
    /// Range start (`start_time`).
    pub start_time: Option<DateTime<Utc>>,
    /// Range end (`end_time`).
    pub end_time: Option<DateTime<Utc>>,
    /// Provider filter; empty for all.
    pub providers: Vec<Provider>,
    /// Calendar names (`calendars/{uuid}`); empty for all.
    pub calendars: Vec<String>,
    /// Requested page size (0 for the default).
    pub page_size: i32,
    /// Page token from the previous page.
    pub page_token: String,
}

/// The caller's settings as one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Every calendar of the caller and its mode.
    pub calendar_modes: Vec<(CalendarId, CalendarMode)>,
    /// Every provider's channels.
    pub notification_channels: Vec<NotificationChannels>,
    /// The availability zone, when set.
    pub time_zone: Option<String>,
    /// The working week, when set (empty: the default week).
    pub working_hours: Vec<juy_availability::WorkingPeriod>,
}

/// A settings change; `None` parts are left as they are.
#[derive(Debug, Clone, Default)]
pub struct SettingsPatch {
    /// The settings' resource name (empty or `users/me/calendarSettings`).
    pub name: String,
    /// New modes, as `(calendar name, mode)`; `None` for a mode the client left unspecified.
    pub calendar_modes: Option<Vec<(String, Option<CalendarMode>)>>,
    /// New channels for the listed providers.
    pub notification_channels: Option<Vec<ChannelsPatch>>,
    /// A new availability zone; empty resets it.
    pub time_zone: Option<String>,
    /// A new working week; empty resets it to the default.
    pub working_hours: Option<Vec<crate::availability::WorkingPeriodInput>>,
}

/// One provider's new channels in a [`SettingsPatch`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ChannelsPatch {
    /// The provider; `None` when the client left it unspecified.
    pub provider: Option<Provider>,
    /// Push notifications.
    pub push: bool,
    /// Email.
    pub email: bool,
    /// SMS.
    pub sms: bool,
}

/// When a calendar syncs next, as users and admins see it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncSchedule {
    /// When its next sync is due (in the past: due now, waiting for a
    /// worker); `None` while `syncing` or when its account cannot sync.
    pub next_sync_at: Option<DateTime<Utc>>,
    /// Whether a worker holds it now.
    pub syncing: bool,
    /// When its push channel expires; `None` without one.
    pub push_channel_expires_at: Option<DateTime<Utc>>,
}

impl SyncSchedule {
    /// The schedule `health` shows at `now`. A leased calendar's
    /// `next_sync_at` is its lease's expiry, not a planned run, so it is
    /// shown as `syncing` instead.
    pub fn of(health: &SyncHealth, now: DateTime<Utc>) -> Self {
        let syncing = health.lease_expires_at.is_some_and(|until| until > now);
        Self {
            next_sync_at: if syncing { None } else { health.next_sync_at },
            syncing,
            push_channel_expires_at: health.push_channel_expires_at,
        }
    }
}

/// A calendar with its sync schedule, as the listings show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedCalendar {
    /// The calendar, with its last sync's outcome.
    pub calendar: Calendar,
    /// When it syncs next.
    pub schedule: SyncSchedule,
}

/// A connection with its calendars, as `ListConnections` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedConnection {
    /// The connection.
    pub connection: ConnectedAccount,
    /// Its calendars, primary first.
    pub calendars: Vec<ListedCalendar>,
}

/// One calendar's sync health as admins see it (no name, nothing decrypted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCalendar {
    /// The stored health.
    pub health: SyncHealth,
    /// When it syncs next.
    pub schedule: SyncSchedule,
}

/// A connection as admins see it, with its calendars' sync health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConnection {
    /// The connection.
    pub row: AdminAccountRow,
    /// Its calendars, primary first.
    pub calendars: Vec<AdminCalendar>,
}

/// One message of a followed "sync now" job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobProgress {
    /// The job as it stands.
    pub job: SyncJob,
    /// Set on the last message when following stopped before the job ended.
    pub still_running: bool,
}

/// The admin listing's filters, as parsed from either surface.
#[derive(Debug, Clone, Default)]
pub struct AdminListInput {
    /// Only this user's connections; empty for all.
    pub user_id: String,
    /// Only this provider's.
    pub provider: Option<Provider>,
    /// Only connections in this state.
    pub status: Option<AccountStatus>,
    /// Requested page size.
    pub page_size: i32,
    /// Page token.
    pub page_token: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct EventCursor {
    s: i64,
    i: uuid::Uuid,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct AdminToken {
    t: i64,
    u: String,
    a: uuid::Uuid,
}

impl CalendarService {
    /// A service over `store`, reaching providers through `integrations`.
    pub fn new(store: Store, integrations: std::sync::Arc<crate::connect::Integrations>) -> Self {
        Self {
            store,
            integrations,
            wakeup: SyncWakeup::new(),
            outbox_wakeup: SyncWakeup::new(),
            sync_now_poll: SYNC_NOW_POLL,
            sync_now_limit: SYNC_NOW_STREAM_LIMIT,
            stale_after: crate::availability::DEFAULT_STALE_AFTER,
        }
    }

    /// How old a calendar's last successful sync may be before free/busy
    /// stops counting its busy time as known (default
    /// [`crate::availability::DEFAULT_STALE_AFTER`]).
    pub fn with_stale_after(mut self, stale_after: Duration) -> Self {
        self.stale_after = stale_after;
        self
    }

    pub(crate) fn stale_after(&self) -> Duration {
        self.stale_after
    }

    /// Wakes this replica's sync workers through `wakeup` when "sync now"
    /// made calendars due (without it, they find them at their next poll).
    pub fn with_wakeup(mut self, wakeup: SyncWakeup) -> Self {
        self.wakeup = wakeup;
        self
    }

    /// Wakes this replica's meeting dispatchers through `wakeup` when a
    /// meeting change waits to be written (without it, they find it at their next poll).
    pub fn with_outbox_wakeup(mut self, wakeup: SyncWakeup) -> Self {
        self.outbox_wakeup = wakeup;
        self
    }

    pub(crate) fn outbox_wakeup(&self) -> &SyncWakeup {
        &self.outbox_wakeup
    }

    /// How often a `SyncNow` stream reads its job, and how long it may stay
    /// open (defaults: [`SYNC_NOW_POLL`], [`SYNC_NOW_STREAM_LIMIT`]).
    pub fn with_sync_now_stream(mut self, poll: std::time::Duration, limit: std::time::Duration) -> Self {
        self.sync_now_poll = poll;
        self.sync_now_limit = limit;
        self
    }

    /// The signal that wakes this replica's sync workers (for other routes
    /// that make calendars due, such as verified push notifications).
    pub fn wakeup(&self) -> &SyncWakeup {
        &self.wakeup
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.integrations.clock().now()
    }

    /// The store, for readiness checks.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The caller's events from every connected calendar in a time range.
    pub async fn list_events(&self, caller: &Caller, input: ListEventsInput) -> Result<Page<ListedEvent>, ApiError> {
        let mut violations = Vec::new();
        let mut violation = |field: &str, description: &str| {
            violations.push(FieldViolation {
                field: field.into(),
                description: description.into(),
            });
        };
        if input.start_time.is_none() {
            violation("start_time", "is required");
        }
        if input.end_time.is_none() {
            violation("end_time", "is required");
        }
        let range = match (input.start_time, input.end_time) {
            (Some(start), Some(end)) => match TimeRange::new(start, end) {
                Ok(range) if end - start > Duration::days(MAX_RANGE_DAYS) => {
                    violation(
                        "end_time",
                        &format!("must be at most {MAX_RANGE_DAYS} days after start_time"),
                    );
                    Some(range)
                }
                Ok(range) => Some(range),
                Err(_) => {
                    violation("end_time", "must be after start_time");
                    None
                }
            },
            _ => None,
        };
        let mut calendar_ids = Vec::with_capacity(input.calendars.len());
        for (i, name) in input.calendars.iter().enumerate() {
            match names::parse_calendar(&format!("calendars[{i}]"), name) {
                Ok(id) => calendar_ids.push(id),
                Err(e) => violations.extend(e.violations),
            }
        }
        let size = match paging::page_size(input.page_size) {
            Ok(size) => size,
            Err(e) => {
                violations.extend(e.violations);
                0
            }
        };
        let (Some(range), true) = (range, violations.is_empty()) else {
            return Err(ApiError::invalid_fields(violations));
        };

        let mut providers = input.providers.clone();
        providers.sort();
        providers.dedup();
        calendar_ids.sort();
        calendar_ids.dedup();
        let filter: Vec<String> = [range.start().to_rfc3339(), range.end().to_rfc3339()]
            .into_iter()
            .chain(providers.iter().map(|p| p.as_str().to_owned()))
            .chain(std::iter::once("|".to_owned()))
            .chain(calendar_ids.iter().map(ToString::to_string))
            .collect();
        let fingerprint = paging::fingerprint(&filter.iter().map(String::as_str).collect::<Vec<_>>());
        let after = paging::decode_token::<EventCursor>(&input.page_token, fingerprint)?
            .map(|c| {
                DateTime::<Utc>::from_timestamp_micros(c.s)
                    .map(|at| (at, EventId(c.i)))
                    .ok_or_else(|| ApiError::invalid("page_token", "is not a token this service issued"))
            })
            .transpose()?;

        let mut conn = self.store.conn().await?;
        let key = self.store.data_key(&mut conn, &caller.user_id).await?;
        if !calendar_ids.is_empty() {
            let owned: HashSet<CalendarId> = calendars::list_calendars(&mut conn, &key, &caller.user_id, None)
                .await?
                .into_iter()
                .map(|c| c.id)
                .collect();
            if let Some(missing) = calendar_ids.iter().find(|id| !owned.contains(id)) {
                return Err(ApiError::not_found(names::calendar(*missing)));
            }
        }
        let query = events::EventQuery {
            user_id: caller.user_id.clone(),
            range,
            providers,
            calendar_ids,
            after,
            limit: size as i64 + 1,
        };
        let synced = events::list_events(&mut conn, &key, &query).await?;
        // The caller's Juy meetings are part of the merged view at once, before
        // (and instead of) their copies in an external calendar.
        let mut meetings = juy_store::meetings::list_meetings(
            &mut conn,
            &key,
            &caller.user_id,
            range,
            after.map(|(at, id)| (at, id.0)),
            size as i64 + 1,
        )
        .await?;
        let filtered = !query.providers.is_empty() || !query.calendar_ids.is_empty();
        let mut providers_of: HashMap<CalendarId, Provider> = HashMap::new();
        if meetings.iter().any(|m| m.calendar_id.is_some()) {
            for calendar in calendars::list_calendars(&mut conn, &key, &caller.user_id, None).await? {
                providers_of.insert(calendar.id, calendar.provider);
            }
        }
        meetings.retain(|m| {
            !filtered
                || m.calendar_id.is_some_and(|c| {
                    (query.calendar_ids.is_empty() || query.calendar_ids.contains(&c))
                        && (query.providers.is_empty()
                            || providers_of.get(&c).is_some_and(|p| query.providers.contains(p)))
                })
        });
        let mut items: Vec<ListedEvent> = synced
            .into_iter()
            .map(ListedEvent::Synced)
            .chain(meetings.into_iter().map(|meeting| ListedEvent::Meeting {
                provider: meeting.calendar_id.and_then(|c| providers_of.get(&c).copied()),
                meeting,
            }))
            .collect();
        items.sort_by_key(|item| item.key());
        let next_page_token = if items.len() > size {
            items.truncate(size);
            items
                .last()
                .map(|e| {
                    let (start, id) = e.key();
                    paging::encode_token(
                        fingerprint,
                        &EventCursor {
                            s: start.timestamp_micros(),
                            i: id,
                        },
                    )
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Page { items, next_page_token })
    }

    /// The caller's connections, oldest first, each with its calendars and their freshness.
    pub async fn list_connections(
        &self,
        caller: &Caller,
        page_size: i32,
        page_token: &str,
    ) -> Result<Page<ListedConnection>, ApiError> {
        let size = paging::page_size(page_size)?;
        let mut conn = self.store.conn().await?;
        let key = self.store.data_key(&mut conn, &caller.user_id).await?;
        let items = accounts::list_accounts(&mut conn, &key, &caller.user_id).await?;
        let page = paging::page_in_memory(
            items,
            |a| format!("{:020}/{}", a.connected_at.timestamp_micros(), a.id),
            size,
            page_token,
            paging::fingerprint(&["connections"]),
        )?;
        let calendars = calendars::list_calendars(&mut conn, &key, &caller.user_id, None).await?;
        let health = calendars::list_sync_health(&mut conn, &caller.user_id, None).await?;
        let mut by_account: HashMap<AccountId, Vec<ListedCalendar>> = HashMap::new();
        for listed in with_schedules(calendars, health, self.now()) {
            by_account.entry(listed.calendar.account_id).or_default().push(listed);
        }
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|connection| ListedConnection {
                    calendars: by_account.remove(&connection.id).unwrap_or_default(),
                    connection,
                })
                .collect(),
            next_page_token: page.next_page_token,
        })
    }

    /// The calendars of the caller's connections (of one, with `connection` set).
    pub async fn list_calendars(
        &self,
        caller: &Caller,
        connection: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<Page<ListedCalendar>, ApiError> {
        let account = if connection.is_empty() {
            None
        } else {
            Some(names::parse_connection("connection", connection)?)
        };
        let size = paging::page_size(page_size)?;
        let mut conn = self.store.conn().await?;
        let key = self.store.data_key(&mut conn, &caller.user_id).await?;
        if let Some(account) = account
            && accounts::get_account(&mut conn, &key, &caller.user_id, account)
                .await?
                .is_none()
        {
            return Err(ApiError::not_found(connection));
        }
        let items = calendars::list_calendars(&mut conn, &key, &caller.user_id, account).await?;
        let health = calendars::list_sync_health(&mut conn, &caller.user_id, account).await?;
        paging::page_in_memory(
            with_schedules(items, health, self.now()),
            |c| {
                let c = &c.calendar;
                format!("{}/{}/{}", c.account_id, u8::from(!c.is_primary), c.id)
            },
            size,
            page_token,
            paging::fingerprint(&["calendars", connection]),
        )
    }

    /// "Sync now": records a job for some of the caller's calendars (names
    /// `calendars/{uuid}`; none for all), makes them due at once and wakes
    /// this replica's workers. Calendars whose connection cannot sync are
    /// recorded as skipped.
    pub async fn sync_now(&self, caller: &Caller, calendars: &[String]) -> Result<SyncJob, ApiError> {
        if calendars.len() > MAX_SYNC_CALENDARS {
            return Err(ApiError::invalid(
                "calendars",
                format!("must name at most {MAX_SYNC_CALENDARS} calendars"),
            ));
        }
        let mut violations = Vec::new();
        let mut ids = Vec::with_capacity(calendars.len());
        for (i, name) in calendars.iter().enumerate() {
            match names::parse_calendar(&format!("calendars[{i}]"), name) {
                Ok(id) => ids.push(id),
                Err(e) => violations.extend(e.violations),
            }
        }
        if !violations.is_empty() {
            return Err(ApiError::invalid_fields(violations));
        }
        ids.sort();
        ids.dedup();
        let now = self.now();
        let mut conn = self.store.conn().await?;
        let job = sync_jobs::create_job(&mut conn, &caller.user_id, &ids, now)
            .await
            .map_err(|e| match e {
                StoreError::NotFound { what: _, id } => ApiError::not_found(format!("calendars/{id}")),
                other => ApiError::from(other),
            })?;
        if job.calendars.iter().any(|c| c.state == JobState::Queued) {
            self.wakeup.notify();
        }
        tracing::info!(job_id = %job.id, calendars = job.calendars.len(), "sync now");
        caller.audit.target(names::sync_job(job.id));
        Ok(job)
    }

    /// One of the caller's "sync now" jobs, by name (`syncJobs/{uuid}` in `name`).
    pub async fn get_sync_job(&self, caller: &Caller, name: &str) -> Result<SyncJob, ApiError> {
        let id = names::parse_sync_job("name", name)?;
        caller.audit.target(names::sync_job(id));
        let mut conn = self.store.conn().await?;
        sync_jobs::get_job(&mut conn, &caller.user_id, id)
            .await?
            .ok_or_else(|| ApiError::not_found(name))
    }

    /// Follows `job` (just created for `caller`): yields it at once, then
    /// each time it changes, until it is finished or the stream has been open
    /// for its limit (then a last message says it is still running). Nothing
    /// runs between polls of the stream, so dropping it (the client left)
    /// stops the reading.
    pub fn follow_sync_job(
        &self,
        caller: &Caller,
        job: SyncJob,
    ) -> impl Stream<Item = Result<JobProgress, ApiError>> + Send + 'static {
        let store = self.store.clone();
        let user = caller.user_id.clone();
        let id = job.id;
        let read = move || {
            let store = store.clone();
            let user = user.clone();
            async move {
                let mut conn = store.conn().await?;
                Ok(sync_jobs::get_job(&mut conn, &user, id).await?)
            }
        };
        follow_job(job, read, self.sync_now_poll, self.sync_now_limit)
    }

    /// The caller's settings.
    pub async fn get_settings(&self, caller: &Caller, name: &str) -> Result<Settings, ApiError> {
        names::check_settings_name("name", name, &caller.user_id)?;
        let mut conn = self.store.conn().await?;
        let key = self.store.data_key(&mut conn, &caller.user_id).await?;
        let calendars = calendars::list_calendars(&mut conn, &key, &caller.user_id, None).await?;
        let channels = settings::notification_settings(&mut conn, &caller.user_id).await?;
        let availability = juy_store::availability::settings_of(&conn, std::slice::from_ref(&caller.user_id))
            .await?
            .remove(&caller.user_id)
            .unwrap_or_default();
        Ok(Settings {
            calendar_modes: calendars.iter().map(|c| (c.id, c.mode)).collect(),
            notification_channels: channels,
            time_zone: availability.time_zone,
            working_hours: availability.working_hours.unwrap_or_default(),
        })
    }

    /// Applies a settings change, all or nothing, and returns the settings after it.
    pub async fn update_settings(&self, caller: &Caller, patch: SettingsPatch) -> Result<Settings, ApiError> {
        names::check_settings_name("settings.name", &patch.name, &caller.user_id)?;
        let mut violations = Vec::new();
        let mut modes = Vec::new();
        let mut seen_calendars = HashSet::new();
        for (i, (name, mode)) in patch.calendar_modes.iter().flatten().enumerate() {
            let field = format!("settings.calendar_modes[{i}]");
            match names::parse_calendar(&format!("{field}.calendar"), name) {
                Ok(id) if !seen_calendars.insert(id) => violations.push(FieldViolation {
                    field: format!("{field}.calendar"),
                    description: "names a calendar listed twice".into(),
                }),
                Ok(id) => {
                    if let Some(mode) = mode {
                        modes.push((id, *mode));
                    }
                }
                Err(e) => violations.extend(e.violations),
            }
            if mode.is_none() {
                violations.push(FieldViolation {
                    field: format!("{field}.mode"),
                    description: "is required".into(),
                });
            }
        }
        let mut channels = Vec::new();
        let mut seen_providers = HashSet::new();
        for (i, patch) in patch.notification_channels.iter().flatten().enumerate() {
            let field = format!("settings.notification_channels[{i}].provider");
            match patch.provider {
                None => violations.push(FieldViolation {
                    field,
                    description: "is required".into(),
                }),
                Some(p) if !seen_providers.insert(p) => {
                    violations.push(FieldViolation {
                        field,
                        description: "names a provider listed twice".into(),
                    });
                }
                Some(p) => channels.push(NotificationChannels {
                    provider: p,
                    push: patch.push,
                    email: patch.email,
                    sms: patch.sms,
                }),
            }
        }
        if let Some(zone) = patch.time_zone.as_deref().filter(|zone| !zone.is_empty())
            && zone.parse::<chrono_tz::Tz>().is_err()
        {
            violations.push(FieldViolation {
                field: "settings.time_zone".into(),
                description: "must be an IANA time zone such as Europe/Berlin".into(),
            });
        }
        let working_hours = match patch.working_hours.as_deref() {
            Some(given) => match crate::availability::parse_periods("settings.working_hours", given) {
                Ok(periods) => Some(periods),
                Err(mut found) => {
                    violations.append(&mut found);
                    None
                }
            },
            None => None,
        };
        if !violations.is_empty() {
            return Err(ApiError::invalid_fields(violations));
        }
        let availability = settings::AvailabilityPatch {
            time_zone: patch
                .time_zone
                .as_deref()
                .map(|zone| (!zone.is_empty()).then_some(zone)),
            working_hours: working_hours
                .as_deref()
                .map(|periods| (!periods.is_empty()).then_some(periods)),
        };
        let mut conn = self.store.conn().await?;
        let key = self.store.data_key(&mut conn, &caller.user_id).await?;
        if modes.iter().any(|(_, mode)| *mode == CalendarMode::Write) {
            // Write needs the account's consent to write (incremental consent):
            // linking asked only for read scopes.
            let calendars = calendars::list_calendars(&mut conn, &key, &caller.user_id, None).await?;
            let accounts = accounts::list_accounts(&mut conn, &key, &caller.user_id).await?;
            for (id, _) in modes.iter().filter(|(_, mode)| *mode == CalendarMode::Write) {
                let Some(calendar) = calendars.iter().find(|c| c.id == *id) else {
                    continue; // the store reports it as not found
                };
                let Some(account) = accounts.iter().find(|a| a.id == calendar.account_id) else {
                    continue;
                };
                if calendar.can_write && !juy_oauth2::scopes_allow_write(account.provider, &account.scopes) {
                    return Err(ApiError::failed_precondition(
                        "WRITE_CONSENT_REQUIRED",
                        format!(
                            "{} cannot be switched to write: {} has not granted Juy write access; \
                             link it again with StartConnect access WRITE first",
                            names::calendar(*id),
                            names::connection(account.id)
                        ),
                    ));
                }
            }
        }
        let (_, channels) =
            settings::update_settings(&mut conn, &key, &caller.user_id, &modes, &channels, availability)
                .await
                .map_err(|e| match e {
                    juy_store::StoreError::NotFound { what: _, id } => ApiError::not_found(format!("calendars/{id}")),
                    other => ApiError::from(other),
                })?;
        // The answer is the whole settings resource, not only what changed.
        let stored = juy_store::availability::settings_of(&conn, std::slice::from_ref(&caller.user_id))
            .await?
            .remove(&caller.user_id)
            .unwrap_or_default();
        let calendars = calendars::list_calendars(&mut conn, &key, &caller.user_id, None).await?;
        Ok(Settings {
            calendar_modes: calendars.iter().map(|c| (c.id, c.mode)).collect(),
            notification_channels: channels,
            time_zone: stored.time_zone,
            working_hours: stored.working_hours.unwrap_or_default(),
        })
    }

    /// Every user's connections with their calendars' sync health, for admins.
    pub async fn admin_list_connections(
        &self,
        caller: &Caller,
        input: AdminListInput,
    ) -> Result<Page<AdminConnection>, ApiError> {
        let user = if input.user_id.is_empty() {
            None
        } else {
            Some(UserId::new(input.user_id.clone()).map_err(|e| ApiError::invalid("user_id", e.to_string()))?)
        };
        if let Some(user) = &user {
            caller.audit.subject(user.clone());
        }
        let size = paging::page_size(input.page_size)?;
        let fingerprint = paging::fingerprint(&[
            &input.user_id,
            input.provider.map_or("", Provider::as_str),
            input.status.map_or("", AccountStatus::as_str),
        ]);
        let after = paging::decode_token::<AdminToken>(&input.page_token, fingerprint)?
            .map(|t| -> Result<AdminCursor, ApiError> {
                let bad = || ApiError::invalid("page_token", "is not a token this service issued");
                Ok(AdminCursor {
                    connected_at: DateTime::<Utc>::from_timestamp_micros(t.t).ok_or_else(bad)?,
                    user_id: UserId::new(t.u).map_err(|_| bad())?,
                    account_id: juy_domain::AccountId(t.a),
                })
            })
            .transpose()?;
        let filter = AdminAccountFilter {
            user_id: user,
            provider: input.provider,
            status: input.status,
        };
        let mut conn = self.store.conn().await?;
        let mut items = accounts::admin_list_accounts(&mut conn, &filter, after, size as i64 + 1).await?;
        let next_page_token = if items.len() > size {
            items.truncate(size);
            items
                .last()
                .map(|r| {
                    paging::encode_token(
                        fingerprint,
                        &AdminToken {
                            t: r.connected_at.timestamp_micros(),
                            u: r.user_id.as_str().to_owned(),
                            a: r.account_id.0,
                        },
                    )
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        let wanted: Vec<(UserId, AccountId)> = items.iter().map(|r| (r.user_id.clone(), r.account_id)).collect();
        let now = self.now();
        let mut by_account: HashMap<(UserId, AccountId), Vec<AdminCalendar>> = HashMap::new();
        for health in calendars::sync_health_of_accounts(&mut conn, &wanted).await? {
            by_account
                .entry((health.user_id.clone(), health.account_id))
                .or_default()
                .push(AdminCalendar {
                    schedule: SyncSchedule::of(&health, now),
                    health,
                });
        }
        let items = items
            .into_iter()
            .map(|row| AdminConnection {
                calendars: by_account
                    .remove(&(row.user_id.clone(), row.account_id))
                    .unwrap_or_default(),
                row,
            })
            .collect();
        Ok(Page { items, next_page_token })
    }
}

/// Pairs calendars with their schedules (a calendar created between the
/// two reads has none yet and shows the default).
fn with_schedules(calendars: Vec<Calendar>, health: Vec<SyncHealth>, now: DateTime<Utc>) -> Vec<ListedCalendar> {
    let schedules: HashMap<CalendarId, SyncSchedule> = health
        .iter()
        .map(|h| (h.calendar_id, SyncSchedule::of(h, now)))
        .collect();
    calendars
        .into_iter()
        .map(|calendar| ListedCalendar {
            schedule: schedules.get(&calendar.id).copied().unwrap_or_default(),
            calendar,
        })
        .collect()
}

enum Following {
    First(SyncJob),
    Polling(SyncJob),
    Ended,
}

/// The stream behind [`CalendarService::follow_sync_job`]: `first`, then
/// `read` every `poll`, yielding only changes, until the job is finished,
/// gone (NOT_FOUND) or unreadable (the error), or `limit` has passed since
/// the start (a last message with `still_running`).
fn follow_job<R, F>(
    first: SyncJob,
    read: R,
    poll: std::time::Duration,
    limit: std::time::Duration,
) -> impl Stream<Item = Result<JobProgress, ApiError>> + Send + 'static
where
    R: FnMut() -> F + Send + 'static,
    F: Future<Output = Result<Option<SyncJob>, ApiError>> + Send,
{
    let deadline = tokio::time::Instant::now() + limit;
    let progress = |job: SyncJob, still_running: bool| Ok(JobProgress { job, still_running });
    futures::stream::unfold((Following::First(first), read), move |(state, mut read)| async move {
        match state {
            Following::Ended => None,
            Following::First(job) => {
                let next = if job.is_finished() {
                    Following::Ended
                } else {
                    Following::Polling(job.clone())
                };
                Some((progress(job, false), (next, read)))
            }
            Following::Polling(last) => loop {
                let wake = (tokio::time::Instant::now() + poll).min(deadline);
                tokio::time::sleep_until(wake).await;
                let job = match read().await {
                    Ok(Some(job)) => job,
                    Ok(None) => {
                        let gone = ApiError::not_found(names::sync_job(last.id));
                        return Some((Err(gone), (Following::Ended, read)));
                    }
                    Err(error) => return Some((Err(error), (Following::Ended, read))),
                };
                if job.is_finished() {
                    return Some((progress(job, false), (Following::Ended, read)));
                }
                if tokio::time::Instant::now() >= deadline {
                    return Some((progress(job, true), (Following::Ended, read)));
                }
                if job != last {
                    return Some((progress(job.clone(), false), (Following::Polling(job), read)));
                }
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::time::Duration as StdDuration;

    use futures::StreamExt as _;
    use juy_store::sync_jobs::{JobCalendar, JobPhase};

    use super::*;

    fn job(state: JobState, pages: i32) -> SyncJob {
        SyncJob {
            id: uuid::Uuid::nil(),
            user_id: UserId::new("u1").unwrap(),
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            calendars: vec![JobCalendar {
                calendar_id: CalendarId(uuid::Uuid::nil()),
                state,
                phase: (state != JobState::Queued).then_some(JobPhase::Listing),
                pages,
                events_written: pages * 10,
                events_deleted: 0,
                error: None,
                started_at: None,
                finished_at: None,
            }],
        }
    }

    /// A reader answering `answers` in turn, then the last one forever.
    fn reader(
        answers: Vec<Option<SyncJob>>,
    ) -> impl FnMut() -> futures::future::Ready<Result<Option<SyncJob>, ApiError>> + Send + 'static {
        let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
        move || {
            let mut answers = answers.lock().unwrap();
            let answer = if answers.len() > 1 {
                answers.pop_front().flatten()
            } else {
                answers.front().cloned().flatten()
            };
            futures::future::ready(Ok(answer))
        }
    }

    fn summary(progress: &Result<JobProgress, ApiError>) -> (JobState, i32, bool) {
        let progress = progress.as_ref().unwrap();
        let calendar = &progress.job.calendars[0];
        (calendar.state, calendar.pages, progress.still_running)
    }

    #[tokio::test]
    async fn a_followed_job_yields_only_changes_and_ends_when_finished() {
        let read = reader(vec![
            Some(job(JobState::Queued, 0)),
            Some(job(JobState::Running, 0)),
            Some(job(JobState::Running, 0)),
            Some(job(JobState::Running, 1)),
            Some(job(JobState::Done, 2)),
        ]);
        let stream = follow_job(
            job(JobState::Queued, 0),
            read,
            StdDuration::from_millis(1),
            StdDuration::from_secs(60),
        );
        let seen: Vec<_> = stream.collect::<Vec<_>>().await.iter().map(summary).collect();
        assert_eq!(
            seen,
            vec![
                (JobState::Queued, 0, false),
                (JobState::Running, 0, false),
                (JobState::Running, 1, false),
                (JobState::Done, 2, false),
            ]
        );
    }

    #[tokio::test]
    async fn a_finished_job_ends_after_its_first_message() {
        let stream = follow_job(
            job(JobState::Skipped, 0),
            reader(vec![None]),
            StdDuration::from_millis(1),
            StdDuration::from_secs(60),
        );
        let seen: Vec<_> = stream.collect::<Vec<_>>().await.iter().map(summary).collect();
        assert_eq!(seen, vec![(JobState::Skipped, 0, false)]);
    }

    #[tokio::test]
    async fn following_stops_at_the_limit_saying_the_job_still_runs() {
        let stream = follow_job(
            job(JobState::Queued, 0),
            reader(vec![Some(job(JobState::Running, 3))]),
            StdDuration::from_millis(1),
            StdDuration::from_millis(30),
        );
        let seen: Vec<_> = stream.collect::<Vec<_>>().await.iter().map(summary).collect();
        assert_eq!(seen.first(), Some(&(JobState::Queued, 0, false)));
        assert_eq!(seen.last(), Some(&(JobState::Running, 3, true)));
        assert!(seen.len() <= 3, "{seen:?}");
    }

    #[tokio::test]
    async fn a_job_that_vanished_ends_the_stream_with_not_found() {
        let stream = follow_job(
            job(JobState::Queued, 0),
            reader(vec![None]),
            StdDuration::from_millis(1),
            StdDuration::from_secs(60),
        );
        let seen = stream.collect::<Vec<_>>().await;
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].as_ref().unwrap_err().code, crate::error::ErrorCode::NotFound);
    }

    #[test]
    fn a_leased_calendar_shows_syncing_instead_of_its_lease_expiry() {
        let now = DateTime::<Utc>::UNIX_EPOCH + Duration::days(1);
        let mut health = SyncHealth {
            user_id: UserId::new("u1").unwrap(),
            calendar_id: CalendarId(uuid::Uuid::nil()),
            account_id: AccountId(uuid::Uuid::nil()),
            is_primary: true,
            sync_status: juy_domain::SyncStatus::Ok,
            last_synced_at: None,
            last_error: None,
            next_sync_at: Some(now + Duration::minutes(2)),
            lease_expires_at: Some(now + Duration::minutes(2)),
            push_channel_expires_at: None,
        };
        let leased = SyncSchedule::of(&health, now);
        assert_eq!((leased.syncing, leased.next_sync_at), (true, None));

        // A dead worker's lease: due again at its expiry.
        let expired = SyncSchedule::of(&health, now + Duration::minutes(3));
        assert_eq!(
            (expired.syncing, expired.next_sync_at),
            (false, Some(now + Duration::minutes(2)))
        );

        health.lease_expires_at = None;
        health.next_sync_at = None; // parked
        let parked = SyncSchedule::of(&health, now);
        assert_eq!((parked.syncing, parked.next_sync_at), (false, None));
    }
}
