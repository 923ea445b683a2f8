//! The operations behind both surfaces. gRPC handlers and REST routes parse
//! their wire format into these inputs, call the same function, and render
//! the same result: there is no second implementation.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};

use juy_domain::{
    AccountStatus, Calendar, CalendarEvent, CalendarId, CalendarMode, ConnectedAccount, EventId, NotificationChannels,
    Provider, TimeRange, UserId,
};
use juy_store::Store;
use juy_store::accounts::{self, AdminAccountFilter, AdminAccountRow, AdminCursor};
use juy_store::{calendars, events, settings};

use crate::auth::Caller;
use crate::error::{ApiError, FieldViolation};
use crate::names;
use crate::paging::{self, Page};

/// The longest time range one `ListEvents` call may ask for.
pub const MAX_RANGE_DAYS: i64 = 400;

/// The service state shared by every request.
#[derive(Clone)]
pub struct CalendarService {
    pub(crate) store: Store,
    pub(crate) integrations: std::sync::Arc<crate::connect::Integrations>,
}

impl std::fmt::Debug for CalendarService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CalendarService").finish_non_exhaustive()
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
        Self { store, integrations }
    }

    /// The store, for readiness checks.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The caller's events from every connected calendar in a time range.
    pub async fn list_events(&self, caller: &Caller, input: ListEventsInput) -> Result<Page<CalendarEvent>, ApiError> {
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
        let mut items = events::list_events(&mut conn, &key, &query).await?;
        let next_page_token = if items.len() > size {
            items.truncate(size);
            items
                .last()
                .map(|e| {
                    paging::encode_token(
                        fingerprint,
                        &EventCursor {
                            s: e.start.timestamp_micros(),
                            i: e.id.0,
                        },
                    )
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Page { items, next_page_token })
    }

    /// The caller's connections, oldest first.
    pub async fn list_connections(
        &self,
        caller: &Caller,
        page_size: i32,
        page_token: &str,
    ) -> Result<Page<ConnectedAccount>, ApiError> {
        let size = paging::page_size(page_size)?;
        let mut conn = self.store.conn().await?;
        let key = self.store.data_key(&mut conn, &caller.user_id).await?;
        let items = accounts::list_accounts(&mut conn, &key, &caller.user_id).await?;
        paging::page_in_memory(
            items,
            |a| format!("{:020}/{}", a.connected_at.timestamp_micros(), a.id),
            size,
            page_token,
            paging::fingerprint(&["connections"]),
        )
    }

    /// The calendars of the caller's connections (of one, with `connection` set).
    pub async fn list_calendars(
        &self,
        caller: &Caller,
        connection: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<Page<Calendar>, ApiError> {
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
        paging::page_in_memory(
            items,
            |c| format!("{}/{}/{}", c.account_id, u8::from(!c.is_primary), c.id),
            size,
            page_token,
            paging::fingerprint(&["calendars", connection]),
        )
    }

    /// The caller's settings.
    pub async fn get_settings(&self, caller: &Caller, name: &str) -> Result<Settings, ApiError> {
        names::check_settings_name("name", name, &caller.user_id)?;
        let mut conn = self.store.conn().await?;
        let key = self.store.data_key(&mut conn, &caller.user_id).await?;
        let calendars = calendars::list_calendars(&mut conn, &key, &caller.user_id, None).await?;
        let channels = settings::notification_settings(&mut conn, &caller.user_id).await?;
        Ok(Settings {
            calendar_modes: calendars.iter().map(|c| (c.id, c.mode)).collect(),
            notification_channels: channels,
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
        if !violations.is_empty() {
            return Err(ApiError::invalid_fields(violations));
        }
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
        let (_, channels) = settings::update_settings(&mut conn, &key, &caller.user_id, &modes, &channels)
            .await
            .map_err(|e| match e {
                juy_store::StoreError::NotFound { what: _, id } => ApiError::not_found(format!("calendars/{id}")),
                other => ApiError::from(other),
            })?;
        // The answer is the whole settings resource, not only what changed.
        let calendars = calendars::list_calendars(&mut conn, &key, &caller.user_id, None).await?;
        Ok(Settings {
            calendar_modes: calendars.iter().map(|c| (c.id, c.mode)).collect(),
            notification_channels: channels,
        })
    }

    /// Every user's connections with their sync health, for admins.
    pub async fn admin_list_connections(&self, input: AdminListInput) -> Result<Page<AdminAccountRow>, ApiError> {
        let user = if input.user_id.is_empty() {
            None
        } else {
            Some(UserId::new(input.user_id.clone()).map_err(|e| ApiError::invalid("user_id", e.to_string()))?)
        };
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
        Ok(Page { items, next_page_token })
    }
}
