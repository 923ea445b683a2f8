//! The data subject's rights (AC-08): `ExportMyData` streams one JSON
//! document of everything stored about the caller (`docs/export-format.md`),
//! read in one consistent snapshot and written in chunks, so memory stays
//! bounded however many events there are; `DeleteMyData` revokes every
//! connection at its provider and then erases every row about the caller,
//! their data keys and their audit entries in one transaction
//! (`juy_store::erasure`).

use bytes::Bytes;
use chrono::Utc;
use futures::{Stream, StreamExt as _};
use serde::Serialize;
use tokio::sync::mpsc;

use juy_domain::{AccountStatus, UserId};
use juy_store::audit::{self, AuditEvent, AuditFilter};
use juy_store::{StoreError, accounts, calendars, events, meetings, settings};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::names;
use crate::rest::{CalendarJson, ConnectionJson, EventJson, SettingsJson};
use crate::rest_meetings::MeetingJson;
use crate::service::{CalendarService, Settings};

/// The export document's format name; a new version changes it.
pub const EXPORT_FORMAT: &str = "juy.calendar.export/v1";

/// A chunk is sent once it holds this many bytes.
const CHUNK_BYTES: usize = 64 * 1024;

/// Rows read per query while exporting.
const EXPORT_PAGE: i64 = 500;

/// Chunks waiting for a slow reader before the export pauses.
const CHUNKS_IN_FLIGHT: usize = 4;

/// One audit entry, in the export and the admin REST listing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEventJson {
    /// `auditEvents/{uuid}`.
    pub name: String,
    /// When it was recorded.
    pub time: chrono::DateTime<Utc>,
    /// A user id, or `system/{component}`.
    pub actor: String,
    /// The actor's roles.
    pub actor_roles: Vec<String>,
    /// What was done, e.g. `events.list`.
    pub action: String,
    /// Whose data it touched.
    pub subject_user_id: Option<String>,
    /// The resource acted on.
    pub target: Option<String>,
    /// A gRPC status code name.
    pub result: String,
    /// The request's id.
    pub request_id: Option<String>,
}

impl From<&AuditEvent> for AuditEventJson {
    fn from(e: &AuditEvent) -> Self {
        Self {
            name: format!("auditEvents/{}", e.id),
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

/// One reminder delivery in the export (no event text is stored with it).
#[derive(Debug, Serialize)]
struct ReminderJson {
    event: String,
    calendar: String,
    provider: &'static str,
    event_start_time: chrono::DateTime<Utc>,
    minutes_before: i32,
    method: &'static str,
    channel: &'static str,
    due_time: chrono::DateTime<Utc>,
    state: &'static str,
    attempts: i32,
    last_error: Option<String>,
    deliver_time: Option<chrono::DateTime<Utc>>,
    idempotency_key: String,
}

impl From<&juy_store::reminders::ReminderDelivery> for ReminderJson {
    fn from(r: &juy_store::reminders::ReminderDelivery) -> Self {
        Self {
            event: names::event(r.event_id),
            calendar: names::calendar(r.calendar_id),
            provider: r.provider.as_str(),
            event_start_time: r.event_start,
            minutes_before: r.reminder.minutes_before,
            method: r.reminder.method.as_str(),
            channel: r.channel.as_str(),
            due_time: r.due_at,
            state: r.state.as_str(),
            attempts: r.attempts,
            last_error: r.last_error.clone(),
            deliver_time: r.delivered_at,
            idempotency_key: r.idempotency_key.clone(),
        }
    }
}

/// What `DeleteMyData` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ErasureJson {
    /// Connections revoked at their providers.
    pub connections_revoked: i32,
    /// Connections whose provider could not be told; their tokens are deleted anyway.
    pub revocation_failures: Vec<String>,
    /// Events deleted.
    pub events_deleted: i64,
    /// Meetings deleted.
    pub meetings_deleted: i32,
    /// Audit entries by or about the caller deleted (the erasure's own entry is then added).
    pub audit_events_deleted: i64,
}

/// Why an export stopped early.
enum Stop {
    Store(StoreError),
    /// The reader went away: nothing more to do.
    ReaderGone,
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// Writes the document into chunks for the reader.
struct Writer {
    buffer: Vec<u8>,
    out: mpsc::Sender<Result<Bytes, ApiError>>,
}

impl Writer {
    fn raw(&mut self, text: &str) {
        self.buffer.extend_from_slice(text.as_bytes());
    }

    fn value<T: Serialize>(&mut self, value: &T) -> Result<(), Stop> {
        serde_json::to_writer(&mut self.buffer, value)
            .map_err(|e| Stop::Store(StoreError::Corrupt(format!("export: {e}"))))
    }

    /// A `"key":` with the key JSON-quoted.
    fn key(&mut self, key: &str) -> Result<(), Stop> {
        self.value(&key)?;
        self.raw(":");
        Ok(())
    }

    async fn flush_if_full(&mut self) -> Result<(), Stop> {
        if self.buffer.len() >= CHUNK_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Stop> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buffer));
        self.out.send(Ok(chunk)).await.map_err(|_| Stop::ReaderGone)
    }

    /// Opens `"key":[`.
    fn open_array(&mut self, key: &str) -> Result<(), Stop> {
        self.raw(",");
        self.key(key)?;
        self.raw("[");
        Ok(())
    }

    /// Writes one page of an array's items (`first`: nothing written yet).
    async fn items<T: Serialize>(&mut self, items: impl Iterator<Item = T>, first: &mut bool) -> Result<(), Stop> {
        for item in items {
            if !*first {
                self.raw(",");
            }
            *first = false;
            self.value(&item)?;
            self.flush_if_full().await?;
        }
        Ok(())
    }
}

impl CalendarService {
    /// `ExportMyData`: the caller's export document, in chunks. The document
    /// is read in one REPEATABLE READ snapshot. A failure midway ends the
    /// stream with the error; a complete document ends with `"complete":true}`.
    pub fn export_my_data(&self, caller: &Caller) -> impl Stream<Item = Result<Bytes, ApiError>> + Send + 'static {
        let service = self.clone();
        let user = caller.user_id.clone();
        // Nothing is read until the stream is first polled, that is after the
        // audit entry of this export was written: the export holds its own entry.
        futures::stream::once(async move {
            let (out, chunks) = mpsc::channel(CHUNKS_IN_FLIGHT);
            tokio::spawn(async move {
                let failed = out.clone();
                let mut writer = Writer {
                    buffer: Vec::with_capacity(CHUNK_BYTES * 2),
                    out,
                };
                match service.write_export(&user, &mut writer).await {
                    Ok(()) => {}
                    Err(Stop::ReaderGone) => {}
                    Err(Stop::Store(error)) => {
                        tracing::error!(error = %error, "an export failed midway");
                        let _ = failed.send(Err(ApiError::from(error))).await;
                    }
                }
            });
            tokio_stream::wrappers::ReceiverStream::new(chunks)
        })
        .flatten()
    }

    async fn write_export(&self, user: &UserId, w: &mut Writer) -> Result<(), Stop> {
        let store = self.store().clone();
        let mut conn = store.conn().await?;
        let key = store.data_key(&mut conn, user).await?;
        let user_name = names::user(user);
        let now = self.now();
        juy_store::in_snapshot(&mut conn, async |conn| {
            w.raw("{");
            w.key("format")?;
            w.value(&EXPORT_FORMAT)?;
            w.raw(",");
            w.key("user")?;
            w.value(&user_name)?;
            w.raw(",");
            w.key("export_time")?;
            w.value(&now)?;

            let connections: Vec<ConnectionJson> = accounts::list_accounts(conn, &key, user)
                .await?
                .iter()
                .map(ConnectionJson::from)
                .collect();
            w.raw(",");
            w.key("connections")?;
            w.value(&connections)?;

            let calendars = calendars::list_calendars(conn, &key, user, None).await?;
            let calendar_json: Vec<CalendarJson> = calendars.iter().map(CalendarJson::from).collect();
            w.raw(",");
            w.key("calendars")?;
            w.value(&calendar_json)?;

            let availability = juy_store::availability::settings_of(conn, std::slice::from_ref(user))
                .await?
                .remove(user)
                .unwrap_or_default();
            let settings = Settings {
                calendar_modes: calendars.iter().map(|c| (c.id, c.mode)).collect(),
                notification_channels: settings::notification_settings(conn, user).await?,
                time_zone: availability.time_zone,
                working_hours: availability.working_hours.unwrap_or_default(),
            };
            w.raw(",");
            w.key("settings")?;
            w.value(&SettingsJson::from(&settings))?;
            w.flush_if_full().await?;

            w.open_array("events")?;
            let (mut first, mut after) = (true, None);
            loop {
                let page = events::export_events(conn, &key, user, after, EXPORT_PAGE).await?;
                after = page.last().map(|e| e.id);
                w.items(page.iter().map(EventJson::from), &mut first).await?;
                if (page.len() as i64) < EXPORT_PAGE {
                    break;
                }
            }
            w.raw("]");

            w.open_array("meetings")?;
            let (mut first, mut after) = (true, None);
            loop {
                let page = meetings::export_meetings(conn, &key, user, after, EXPORT_PAGE).await?;
                after = page.last().map(|m| m.id);
                w.items(page.iter().map(MeetingJson::from), &mut first).await?;
                if (page.len() as i64) < EXPORT_PAGE {
                    break;
                }
            }
            w.raw("]");

            // Rows live from shortly before their due time until a week
            // after it: a user has few, read at once.
            let reminders = juy_store::reminders::list_user_deliveries(conn, user).await?;
            w.open_array("reminders")?;
            let mut first = true;
            w.items(reminders.iter().map(ReminderJson::from), &mut first).await?;
            w.raw("]");

            w.open_array("audit_events")?;
            let mut first = true;
            let mut filter = AuditFilter {
                user: Some(user.clone()),
                ..AuditFilter::default()
            };
            loop {
                let page = audit::list(conn, &filter, EXPORT_PAGE).await?;
                filter.before_seq = page.last().map(|e| e.seq);
                w.items(page.iter().map(AuditEventJson::from), &mut first).await?;
                if (page.len() as i64) < EXPORT_PAGE {
                    break;
                }
            }
            w.raw("]");
            w.raw(",");
            w.key("complete")?;
            w.raw("true}");
            w.flush().await
        })
        .await
    }

    /// `DeleteMyData`: revokes every live connection at its provider, then
    /// erases everything about the caller (rows, data keys, audit entries) in
    /// one transaction. The erasure records its own audit entry.
    pub async fn delete_my_data(&self, caller: &Caller, confirm: bool) -> Result<ErasureJson, ApiError> {
        if !confirm {
            return Err(ApiError::invalid("confirm", "must be true: erasure cannot be undone"));
        }
        let user = &caller.user_id;
        // Plaintext columns only: nothing is decrypted, and no data key is made
        // for a user who has none (erasing twice).
        let live: Vec<juy_domain::AccountId> = {
            let mut conn = self.store().conn().await?;
            let mine = accounts::AdminAccountFilter {
                user_id: Some(user.clone()),
                provider: None,
                status: None,
            };
            // A user has a handful of accounts: one read finds them all.
            accounts::admin_list_accounts(&mut conn, &mine, None, 10_000)
                .await?
                .into_iter()
                .filter(|a| a.status != AccountStatus::Revoked)
                .map(|a| a.account_id)
                .collect()
        };
        let mut outcome = ErasureJson::default();
        for account in live {
            match self.revoke_for_erasure(user, account).await {
                Ok(true) => outcome.connections_revoked += 1,
                Ok(false) => outcome.revocation_failures.push(names::connection(account)),
                Err(error) => {
                    // Nothing was erased yet: the user can try again.
                    tracing::warn!(account_id = %account, error = %error, "erasure: revoking a connection failed");
                    return Err(error);
                }
            }
        }
        let mut conn = self.store().conn().await?;
        let report = juy_store::erasure::erase_user(&mut conn, user, Some(&caller.request_id)).await?;
        caller.audit.recorded_by_store();
        tracing::info!(
            events = report.events,
            connections = report.connections,
            meetings = report.meetings,
            keys = report.keys,
            "erased a user's data"
        );
        outcome.events_deleted = i64::try_from(report.events).unwrap_or(i64::MAX);
        outcome.meetings_deleted = i32::try_from(report.meetings).unwrap_or(i32::MAX);
        outcome.audit_events_deleted = i64::try_from(report.audit_events).unwrap_or(i64::MAX);
        Ok(outcome)
    }
}
