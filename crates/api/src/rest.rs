//! The REST bridge for the API gateway: thin axum routes that parse query
//! strings and JSON, call the same [`CalendarService`] as gRPC, and answer
//! JSON or RFC 9457 problems. The OpenAPI 3.1 document is generated from
//! these handlers and types.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::{FromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use juy_domain::{AccountStatus, Attendee, Calendar, CalendarEvent, CalendarMode, ConnectedAccount, Provider};
use juy_store::accounts::AdminAccountRow;
use juy_store::sync_jobs::SyncJob;

use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::names;
use crate::service::{
    AdminCalendar, AdminConnection, AdminListInput, CalendarService, ChannelsPatch, ListEventsInput, ListedCalendar,
    ListedConnection, ListedEvent, Settings, SettingsPatch,
};

/// The authenticated caller, put in the request by the auth middleware.
pub struct AuthedCaller(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for AuthedCaller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .map(Self)
            .ok_or_else(|| ApiError::unauthenticated("a bearer token is required"))
    }
}

/// Query parameters as `(name, value)` pairs; repeated names and comma-separated values both work.
pub(crate) struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    pub(crate) fn parse(raw: Option<String>, allowed: &[&str]) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if let Some((unknown, _)) = pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            return Err(ApiError::invalid(
                unknown.clone(),
                format!("is not a parameter of this endpoint (known: {})", allowed.join(", ")),
            ));
        }
        Ok(Self(pairs))
    }

    pub(crate) fn one(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::invalid(name, "must be given at most once"));
        }
        Ok(first)
    }

    fn many(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    }

    pub(crate) fn page_size(&self) -> Result<i32, ApiError> {
        self.one("page_size")?
            .map(|v| {
                v.parse::<i32>()
                    .map_err(|_| ApiError::invalid("page_size", "must be an integer"))
            })
            .transpose()
            .map(Option::unwrap_or_default)
    }

    pub(crate) fn provider(name: &str, value: &str) -> Result<Provider, ApiError> {
        value
            .parse()
            .map_err(|_| ApiError::invalid(name, "must be one of google, microsoft, caldav"))
    }
}

/// A JSON body parsed by hand so that malformed JSON gets a problem naming where it broke.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if matches!(path.as_str(), "." | "?" | "") {
            "body".to_owned()
        } else {
            path
        };
        // serde's message can quote input values; keep only its category and position.
        let what = match inner.classify() {
            serde_json::error::Category::Syntax => "is not valid JSON",
            serde_json::error::Category::Eof => "ends too early",
            serde_json::error::Category::Data => "has a value of the wrong type or an unknown field",
            serde_json::error::Category::Io => "could not be read",
        };
        ApiError::invalid(
            field,
            format!("{what} (line {}, column {})", inner.line(), inner.column()),
        )
    })
}

/// An attendee.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttendeeJson {
    /// Email address.
    pub email: String,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `none|organizer|needs_action|accepted|tentative|declined`.
    pub response_status: String,
    /// Whether this is the calendar's owner.
    pub is_self: bool,
    /// Whether attendance is optional.
    pub optional: bool,
}

impl From<&Attendee> for AttendeeJson {
    fn from(a: &Attendee) -> Self {
        Self {
            email: a.email.clone(),
            display_name: a.name.clone(),
            response_status: a.response.as_str().to_owned(),
            is_self: a.is_self,
            optional: a.optional,
        }
    }
}

/// A reminder.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReminderJson {
    /// Minutes before the start.
    pub minutes_before: i32,
    /// `popup|email`.
    pub method: String,
}

/// An event, the same fields as the gRPC `Event`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventJson {
    /// `events/{uuid}`.
    pub name: String,
    /// `calendars/{uuid}`.
    pub calendar: String,
    /// `google|microsoft|caldav`.
    pub provider: String,
    /// The provider's id of the event.
    pub external_id: String,
    /// iCalendar UID.
    pub ical_uid: Option<String>,
    /// Title.
    pub title: Option<String>,
    /// Location.
    pub location: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Start instant.
    pub start_time: DateTime<Utc>,
    /// End instant (exclusive).
    pub end_time: DateTime<Utc>,
    /// IANA time zone.
    pub time_zone: Option<String>,
    /// Whether it is an all-day event.
    pub all_day: bool,
    /// All-day: the first day.
    pub start_date: Option<NaiveDate>,
    /// All-day: the day after the last day.
    pub end_date: Option<NaiveDate>,
    /// `confirmed|tentative|cancelled`.
    pub status: String,
    /// `opaque|transparent`.
    pub transparency: String,
    /// The owner's answer.
    pub self_response: String,
    /// `default|out_of_office|focus_time|working_elsewhere`.
    pub kind: String,
    /// The organiser.
    pub organizer: Option<AttendeeJson>,
    /// The attendees.
    pub attendees: Vec<AttendeeJson>,
    /// For an occurrence: its series' provider id.
    pub series_id: Option<String>,
    /// For an occurrence: its original start.
    pub instance_start_time: Option<DateTime<Utc>>,
    /// Reminders.
    pub reminders: Vec<ReminderJson>,
    /// Provider version tag.
    pub etag: Option<String>,
    /// When the provider last changed it.
    pub update_time: Option<DateTime<Utc>>,
    /// Set when it is a Juy meeting the caller organised, `meetings/{uuid}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meeting: Option<String>,
}

impl From<&ListedEvent> for EventJson {
    fn from(item: &ListedEvent) -> Self {
        match item {
            ListedEvent::Synced(event) => Self::from(event),
            ListedEvent::Meeting { meeting, provider } => Self {
                name: names::event(juy_domain::EventId(meeting.id.0)),
                calendar: meeting.calendar_id.map(names::calendar).unwrap_or_default(),
                provider: provider.map(|p| p.as_str().to_owned()).unwrap_or_default(),
                external_id: meeting.delivery.external_id.clone().unwrap_or_default(),
                ical_uid: None,
                title: Some(meeting.title.clone()),
                location: meeting.location.clone(),
                description: meeting.description.clone(),
                start_time: meeting.start,
                end_time: meeting.end,
                time_zone: Some(meeting.time_zone.clone()),
                all_day: false,
                start_date: None,
                end_date: None,
                status: "confirmed".into(),
                transparency: "opaque".into(),
                self_response: "organizer".into(),
                kind: "default".into(),
                organizer: None,
                attendees: meeting
                    .attendee_emails
                    .iter()
                    .map(|email| AttendeeJson {
                        email: email.clone(),
                        display_name: None,
                        response_status: "needs_action".into(),
                        is_self: false,
                        optional: false,
                    })
                    .collect(),
                series_id: None,
                instance_start_time: None,
                reminders: Vec::new(),
                etag: None,
                update_time: Some(meeting.updated_at),
                meeting: Some(names::meeting(meeting.id)),
            },
        }
    }
}

impl From<&CalendarEvent> for EventJson {
    fn from(e: &CalendarEvent) -> Self {
        Self {
            name: names::event(e.id),
            calendar: names::calendar(e.calendar_id),
            provider: e.provider.as_str().to_owned(),
            external_id: e.external_id.clone(),
            ical_uid: e.ical_uid.clone(),
            title: e.title.clone(),
            location: e.location.clone(),
            description: e.description.clone(),
            start_time: e.start,
            end_time: e.end,
            time_zone: e.time_zone.clone(),
            all_day: e.all_day.is_some(),
            start_date: e.all_day.map(|d| d.start),
            end_date: e.all_day.map(|d| d.end),
            status: e.status.as_str().to_owned(),
            transparency: e.transparency.as_str().to_owned(),
            self_response: e.self_response.as_str().to_owned(),
            kind: e.kind.as_str().to_owned(),
            organizer: e.organizer.as_ref().map(AttendeeJson::from),
            attendees: e.attendees.iter().map(AttendeeJson::from).collect(),
            series_id: e.series_id.clone(),
            instance_start_time: e.instance_start,
            reminders: e
                .reminders
                .iter()
                .map(|r| ReminderJson {
                    minutes_before: r.minutes_before,
                    method: r.method.as_str().to_owned(),
                })
                .collect(),
            etag: e.etag.clone(),
            update_time: e.updated,
            meeting: None,
        }
    }
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    /// The events, by start time then name.
    pub events: Vec<EventJson>,
    /// Token of the next page; empty on the last.
    pub next_page_token: String,
}

/// A connection.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionJson {
    /// `connections/{uuid}`.
    pub name: String,
    /// `google|microsoft|caldav`.
    pub provider: String,
    /// What the user recognises it by.
    pub account_display_name: Option<String>,
    /// `pending|active|error|reauth_required|revoked`.
    pub state: String,
    /// Why it is in that state.
    pub state_reason: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// When it was linked.
    pub connect_time: DateTime<Utc>,
    /// When it last synced.
    pub last_sync_time: Option<DateTime<Utc>>,
    /// Last sync error.
    pub last_error: Option<String>,
    /// Its calendars with their sync freshness; only in the connections listing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calendars: Option<Vec<CalendarJson>>,
}

impl From<&ConnectedAccount> for ConnectionJson {
    fn from(a: &ConnectedAccount) -> Self {
        Self {
            name: names::connection(a.id),
            provider: a.provider.as_str().to_owned(),
            account_display_name: a.display_name.clone(),
            state: a.status.as_str().to_owned(),
            state_reason: a.status_reason.clone(),
            scopes: a.scopes.clone(),
            connect_time: a.connected_at,
            last_sync_time: a.last_sync_at,
            last_error: a.last_error.clone(),
            calendars: None,
        }
    }
}

impl From<&ListedConnection> for ConnectionJson {
    fn from(listed: &ListedConnection) -> Self {
        Self {
            calendars: Some(listed.calendars.iter().map(CalendarJson::from).collect()),
            ..Self::from(&listed.connection)
        }
    }
}

/// A page of connections.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionPage {
    /// The connections, oldest first.
    pub connections: Vec<ConnectionJson>,
    /// Token of the next page; empty on the last.
    pub next_page_token: String,
}

/// A calendar.
#[derive(Debug, Serialize, ToSchema)]
pub struct CalendarJson {
    /// `calendars/{uuid}`.
    pub name: String,
    /// `connections/{uuid}`.
    pub connection: String,
    /// `google|microsoft|caldav`.
    pub provider: String,
    /// Its name at the provider.
    pub display_name: String,
    /// `#rrggbb`.
    pub color: Option<String>,
    /// IANA time zone.
    pub time_zone: Option<String>,
    /// Whether it is the account's main calendar.
    pub primary: bool,
    /// Whether the provider allows writing to it.
    pub writable: bool,
    /// `read_only|write`.
    pub mode: String,
    /// `pending|ok|error`.
    pub sync_status: String,
    /// When it last synced.
    pub last_sync_time: Option<DateTime<Utc>>,
    /// Last sync error.
    pub last_error: Option<String>,
    /// When its next sync is due (in the past: due now, waiting for a
    /// worker); null while `syncing` or when its connection cannot sync.
    /// Set in listings.
    pub next_sync_time: Option<DateTime<Utc>>,
    /// Whether a worker is syncing it now.
    pub syncing: bool,
    /// When its push channel expires; null when it has none.
    pub push_channel_expire_time: Option<DateTime<Utc>>,
}

impl From<&Calendar> for CalendarJson {
    fn from(c: &Calendar) -> Self {
        Self {
            name: names::calendar(c.id),
            connection: names::connection(c.account_id),
            provider: c.provider.as_str().to_owned(),
            display_name: c.name.clone(),
            color: c.color.clone(),
            time_zone: c.time_zone.clone(),
            primary: c.is_primary,
            writable: c.can_write,
            mode: c.mode.as_str().to_owned(),
            sync_status: c.sync_status.as_str().to_owned(),
            last_sync_time: c.last_synced_at,
            last_error: c.last_error.clone(),
            next_sync_time: None,
            syncing: false,
            push_channel_expire_time: None,
        }
    }
}

impl From<&ListedCalendar> for CalendarJson {
    fn from(listed: &ListedCalendar) -> Self {
        Self {
            next_sync_time: listed.schedule.next_sync_at,
            syncing: listed.schedule.syncing,
            push_channel_expire_time: listed.schedule.push_channel_expires_at,
            ..Self::from(&listed.calendar)
        }
    }
}

/// A page of calendars.
#[derive(Debug, Serialize, ToSchema)]
pub struct CalendarPage {
    /// The calendars.
    pub calendars: Vec<CalendarJson>,
    /// Token of the next page; empty on the last.
    pub next_page_token: String,
}

/// One calendar's mode.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarModeJson {
    /// `calendars/{uuid}`.
    pub calendar: String,
    /// `read_only|write`.
    pub mode: String,
}

/// One provider's reminder channels.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelsJson {
    /// `google|microsoft|caldav`.
    pub provider: String,
    /// Push notifications.
    #[serde(default)]
    pub push: bool,
    /// Email.
    #[serde(default)]
    pub email: bool,
    /// SMS.
    #[serde(default)]
    pub sms: bool,
}

/// The caller's settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsJson {
    /// `users/me/calendarSettings`.
    pub name: String,
    /// Every calendar's mode.
    pub calendar_modes: Vec<CalendarModeJson>,
    /// Every provider's channels.
    pub notification_channels: Vec<ChannelsJson>,
    /// The availability zone (IANA); absent: the primary calendar's, else UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// The working week; empty: Monday to Friday 09:00-17:00.
    pub working_hours: Vec<crate::rest_meetings::WorkingPeriodJson>,
}

impl From<&Settings> for SettingsJson {
    fn from(s: &Settings) -> Self {
        Self {
            name: names::MY_SETTINGS.to_owned(),
            calendar_modes: s
                .calendar_modes
                .iter()
                .map(|(id, mode)| CalendarModeJson {
                    calendar: names::calendar(*id),
                    mode: mode.as_str().to_owned(),
                })
                .collect(),
            notification_channels: s
                .notification_channels
                .iter()
                .map(|c| ChannelsJson {
                    provider: c.provider.as_str().to_owned(),
                    push: c.push,
                    email: c.email,
                    sms: c.sms,
                })
                .collect(),
            time_zone: s.time_zone.clone(),
            working_hours: s
                .working_hours
                .iter()
                .map(crate::rest_meetings::WorkingPeriodJson::from)
                .collect(),
        }
    }
}

/// A settings change: the keys present are changed, absent ones are kept.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatchJson {
    /// New modes for the listed calendars.
    pub calendar_modes: Option<Vec<CalendarModeJson>>,
    /// New channels for the listed providers.
    pub notification_channels: Option<Vec<ChannelsJson>>,
    /// A new availability zone (IANA); `""` resets it.
    pub time_zone: Option<String>,
    /// A new working week (replaces the whole list); `[]` resets it.
    pub working_hours: Option<Vec<crate::rest_meetings::WorkingPeriodJson>>,
}

/// One connection as admins see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminConnectionJson {
    /// `connections/{uuid}`.
    pub name: String,
    /// The owner's Juy user id.
    pub user_id: String,
    /// `google|microsoft|caldav`.
    pub provider: String,
    /// Its state.
    pub state: String,
    /// Why it is in that state.
    pub state_reason: Option<String>,
    /// When it was linked.
    pub connect_time: DateTime<Utc>,
    /// When it last synced.
    pub last_sync_time: Option<DateTime<Utc>>,
    /// Last sync error.
    pub last_error: Option<String>,
    /// How many calendars it has.
    pub calendar_count: i64,
    /// Its calendars' sync health; only in the listing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calendars: Option<Vec<AdminCalendarJson>>,
}

/// One calendar's sync health as admins see it: no name, no event data.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminCalendarJson {
    /// `calendars/{uuid}`.
    pub name: String,
    /// Whether it is the account's main calendar.
    pub primary: bool,
    /// `pending|ok|error`.
    pub sync_status: String,
    /// When it last synced.
    pub last_sync_time: Option<DateTime<Utc>>,
    /// Last sync error.
    pub last_error: Option<String>,
    /// When its next sync is due; null while `syncing` or when its connection cannot sync.
    pub next_sync_time: Option<DateTime<Utc>>,
    /// Whether a worker is syncing it now.
    pub syncing: bool,
    /// When its push channel expires; null when it has none.
    pub push_channel_expire_time: Option<DateTime<Utc>>,
}

impl From<&AdminCalendar> for AdminCalendarJson {
    fn from(c: &AdminCalendar) -> Self {
        Self {
            name: names::calendar(c.health.calendar_id),
            primary: c.health.is_primary,
            sync_status: c.health.sync_status.as_str().to_owned(),
            last_sync_time: c.health.last_synced_at,
            last_error: c.health.last_error.clone(),
            next_sync_time: c.schedule.next_sync_at,
            syncing: c.schedule.syncing,
            push_channel_expire_time: c.schedule.push_channel_expires_at,
        }
    }
}

impl From<&AdminConnection> for AdminConnectionJson {
    fn from(c: &AdminConnection) -> Self {
        Self {
            calendars: Some(c.calendars.iter().map(AdminCalendarJson::from).collect()),
            ..Self::from(&c.row)
        }
    }
}

impl From<&AdminAccountRow> for AdminConnectionJson {
    fn from(r: &AdminAccountRow) -> Self {
        Self {
            name: names::connection(r.account_id),
            user_id: r.user_id.as_str().to_owned(),
            provider: r.provider.as_str().to_owned(),
            state: r.status.as_str().to_owned(),
            state_reason: r.status_reason.clone(),
            connect_time: r.connected_at,
            last_sync_time: r.last_sync_at,
            last_error: r.last_error.clone(),
            calendar_count: r.calendar_count,
            calendars: None,
        }
    }
}

/// A page of admin connection rows.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminConnectionPage {
    /// The rows, oldest first.
    pub connections: Vec<AdminConnectionJson>,
    /// Token of the next page; empty on the last.
    pub next_page_token: String,
}

/// The body of `POST /v1/calendar/sync`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncNowJson {
    /// The calendars to sync, `calendars/{uuid}`; omitted or empty for all.
    #[serde(default)]
    pub calendars: Option<Vec<String>>,
}

/// One calendar of a sync job.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncJobCalendarJson {
    /// `calendars/{uuid}`.
    pub calendar: String,
    /// `queued|running|done|failed|skipped`.
    pub state: String,
    /// `listing|changes`; null until it starts.
    pub phase: Option<String>,
    /// Pages committed so far.
    pub pages: i32,
    /// Events written (added or changed) so far.
    pub events_written: i32,
    /// Events deleted so far.
    pub events_deleted: i32,
    /// Why it failed or was skipped.
    pub error: Option<String>,
    /// When its sync started.
    pub start_time: Option<DateTime<Utc>>,
    /// When it ended.
    pub end_time: Option<DateTime<Utc>>,
}

/// A "sync now" job, the same fields as the gRPC `SyncJob`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncJobJson {
    /// `syncJobs/{uuid}`.
    pub name: String,
    /// When it was asked for.
    pub create_time: DateTime<Utc>,
    /// Whether every calendar has ended (done, failed or skipped).
    pub done: bool,
    /// Its calendars, by name.
    pub calendars: Vec<SyncJobCalendarJson>,
}

impl From<&SyncJob> for SyncJobJson {
    fn from(job: &SyncJob) -> Self {
        Self {
            name: names::sync_job(job.id),
            create_time: job.created_at,
            done: job.is_finished(),
            calendars: job
                .calendars
                .iter()
                .map(|c| SyncJobCalendarJson {
                    calendar: names::calendar(c.calendar_id),
                    state: c.state.as_str().to_owned(),
                    phase: c.phase.map(|phase| phase.as_str().to_owned()),
                    pages: c.pages,
                    events_written: c.events_written,
                    events_deleted: c.events_deleted,
                    error: c.error.clone(),
                    start_time: c.started_at,
                    end_time: c.finished_at,
                })
                .collect(),
        }
    }
}

/// REST names for the proto fields a violation may name.
fn rest_field(field: &str) -> Option<String> {
    match field {
        "start_time" | "end_time" => Some("range".to_owned()),
        f if f.starts_with("calendars[") => Some("calendar".to_owned()),
        f if f.starts_with("providers[") => Some("provider".to_owned()),
        f => f.strip_prefix("settings.").map(str::to_owned),
    }
}

/// Lists the caller's events in a time range from every connected calendar.
#[utoipa::path(
    get,
    path = "/v1/calendar/events",
    tag = "calendar",
    params(
        ("range" = String, Query, description = "`START/END`, RFC 3339 instants, END after START", example = "2026-01-05T00:00:00Z/2026-01-12T00:00:00Z"),
        ("provider" = Option<String>, Query, description = "only these providers (`google`, `microsoft`, `caldav`); repeat or comma-separate"),
        ("calendar" = Option<String>, Query, description = "only these calendars (`calendars/{uuid}`); repeat or comma-separate"),
        ("page_size" = Option<i32>, Query, description = "1-1000, default 100"),
        ("page_token" = Option<String>, Query, description = "`next_page_token` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of events", body = EventPage),
        (status = 400, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "A calendar that is not the caller's", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_events(
    State(service): State<CalendarService>,
    AuthedCaller(caller): AuthedCaller,
    RawQuery(query): RawQuery,
) -> Result<Json<EventPage>, ApiError> {
    let run = async {
        let params = QueryParams::parse(query, &["range", "provider", "calendar", "page_size", "page_token"])?;
        let (start_time, end_time) = match params.one("range")? {
            None => {
                return Err(ApiError::invalid(
                    "range",
                    "is required: START/END as RFC 3339 instants",
                ));
            }
            Some(range) => {
                let (start, end) = range
                    .split_once('/')
                    .ok_or_else(|| ApiError::invalid("range", "must be START/END as RFC 3339 instants"))?;
                let instant = |s: &str| {
                    DateTime::parse_from_rfc3339(s.trim())
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|_| ApiError::invalid("range", "must be START/END as RFC 3339 instants"))
                };
                (Some(instant(start)?), Some(instant(end)?))
            }
        };
        let providers = params
            .many("provider")
            .into_iter()
            .map(|p| QueryParams::provider("provider", p))
            .collect::<Result<Vec<_>, _>>()?;
        let input = ListEventsInput {
            start_time,
            end_time,
            providers,
            calendars: params.many("calendar").into_iter().map(str::to_owned).collect(),
            page_size: params.page_size()?,
            page_token: params.one("page_token")?.unwrap_or_default().to_owned(),
        };
        service.list_events(&caller, input).await
    };
    let page = run.await.map_err(|e| e.rename_fields(rest_field))?;
    Ok(Json(EventPage {
        events: page.items.iter().map(EventJson::from).collect(),
        next_page_token: page.next_page_token,
    }))
}

/// Lists the caller's connections.
#[utoipa::path(
    get,
    path = "/v1/calendar/connections",
    tag = "calendar",
    params(
        ("page_size" = Option<i32>, Query, description = "1-1000, default 100"),
        ("page_token" = Option<String>, Query, description = "`next_page_token` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of connections", body = ConnectionPage),
        (status = 400, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_connections(
    State(service): State<CalendarService>,
    AuthedCaller(caller): AuthedCaller,
    RawQuery(query): RawQuery,
) -> Result<Json<ConnectionPage>, ApiError> {
    let params = QueryParams::parse(query, &["page_size", "page_token"])?;
    let page = service
        .list_connections(
            &caller,
            params.page_size()?,
            params.one("page_token")?.unwrap_or_default(),
        )
        .await?;
    Ok(Json(ConnectionPage {
        connections: page.items.iter().map(ConnectionJson::from).collect(),
        next_page_token: page.next_page_token,
    }))
}

/// Lists the calendars of the caller's connections.
#[utoipa::path(
    get,
    path = "/v1/calendar/calendars",
    tag = "calendar",
    params(
        ("connection" = Option<String>, Query, description = "only this connection's calendars (`connections/{uuid}`)"),
        ("page_size" = Option<i32>, Query, description = "1-1000, default 100"),
        ("page_token" = Option<String>, Query, description = "`next_page_token` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of calendars", body = CalendarPage),
        (status = 400, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "A connection that is not the caller's", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_calendars(
    State(service): State<CalendarService>,
    AuthedCaller(caller): AuthedCaller,
    RawQuery(query): RawQuery,
) -> Result<Json<CalendarPage>, ApiError> {
    let params = QueryParams::parse(query, &["connection", "page_size", "page_token"])?;
    let page = service
        .list_calendars(
            &caller,
            params.one("connection")?.unwrap_or_default(),
            params.page_size()?,
            params.one("page_token")?.unwrap_or_default(),
        )
        .await?;
    Ok(Json(CalendarPage {
        calendars: page.items.iter().map(CalendarJson::from).collect(),
        next_page_token: page.next_page_token,
    }))
}

/// Reads the caller's settings.
#[utoipa::path(
    get,
    path = "/v1/calendar/settings",
    tag = "calendar",
    responses(
        (status = 200, description = "The settings", body = SettingsJson),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_settings(
    State(service): State<CalendarService>,
    AuthedCaller(caller): AuthedCaller,
) -> Result<Json<SettingsJson>, ApiError> {
    let settings = service.get_settings(&caller, "").await?;
    Ok(Json(SettingsJson::from(&settings)))
}

/// Changes calendar modes (read-only / write) and notification channels, all or nothing.
#[utoipa::path(
    patch,
    path = "/v1/calendar/settings",
    tag = "calendar",
    request_body(content = SettingsPatchJson, content_type = "application/json"),
    responses(
        (status = 200, description = "The settings after the change", body = SettingsJson),
        (status = 400, description = "Malformed body or bad value", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "A calendar that is not the caller's", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Write mode on a calendar the provider does not let us write", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn update_settings(
    State(service): State<CalendarService>,
    AuthedCaller(caller): AuthedCaller,
    body: Bytes,
) -> Result<Json<SettingsJson>, ApiError> {
    let run = async {
        let patch: SettingsPatchJson = parse_json(&body)?;
        let mut violations = Vec::new();
        let calendar_modes = patch.calendar_modes.map(|modes| {
            modes
                .into_iter()
                .enumerate()
                .map(|(i, m)| {
                    let mode = m.mode.parse::<CalendarMode>().ok();
                    if mode.is_none() {
                        violations.push(crate::error::FieldViolation {
                            field: format!("calendar_modes[{i}].mode"),
                            description: "must be read_only or write".into(),
                        });
                    }
                    (m.calendar, mode)
                })
                .collect()
        });
        let notification_channels = patch.notification_channels.map(|channels| {
            channels
                .into_iter()
                .map(|c| ChannelsPatch {
                    provider: c.provider.parse::<Provider>().ok(),
                    push: c.push,
                    email: c.email,
                    sms: c.sms,
                })
                .collect()
        });
        if !violations.is_empty() {
            return Err(ApiError::invalid_fields(violations));
        }
        let working_hours = patch.working_hours.map(|periods| {
            periods
                .into_iter()
                .map(crate::rest_meetings::WorkingPeriodJson::into_input)
                .collect()
        });
        let patch = SettingsPatch {
            name: String::new(),
            calendar_modes,
            notification_channels,
            time_zone: patch.time_zone,
            working_hours,
        };
        service.update_settings(&caller, patch).await
    };
    let settings = run.await.map_err(|e| e.rename_fields(rest_field))?;
    Ok(Json(SettingsJson::from(&settings)))
}

/// Syncs calendars now: answers at once with the job, which `GET
/// /v1/calendar/sync/{id}` (the `Location`) then reports.
#[utoipa::path(
    post,
    path = "/v1/calendar/sync",
    tag = "calendar",
    request_body(content = SyncNowJson, content_type = "application/json", description = "optional; no body syncs every calendar"),
    responses(
        (status = 202, description = "The job, queued", body = SyncJobJson,
            headers(("Location" = String, description = "`/v1/calendar/sync/{id}`, where the job is reported"))),
        (status = 400, description = "Malformed body or calendar name", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "A calendar that is not the caller's", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn sync_now(
    State(service): State<CalendarService>,
    AuthedCaller(caller): AuthedCaller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: SyncNowJson = if body.is_empty() {
        SyncNowJson::default()
    } else {
        parse_json(&body)?
    };
    let job = service
        .sync_now(&caller, &request.calendars.unwrap_or_default())
        .await?;
    let location = format!("/v1/calendar/sync/{}", job.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(SyncJobJson::from(&job)),
    )
        .into_response())
}

/// Reports a "sync now" job of the caller's.
#[utoipa::path(
    get,
    path = "/v1/calendar/sync/{id}",
    tag = "calendar",
    params(("id" = String, Path, description = "the job's id (a UUID), as in the `Location` of `POST /v1/calendar/sync`")),
    responses(
        (status = 200, description = "The job", body = SyncJobJson),
        (status = 400, description = "Not a job id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job of the caller's", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_sync_job(
    State(service): State<CalendarService>,
    AuthedCaller(caller): AuthedCaller,
    Path(id): Path<String>,
) -> Result<Json<SyncJobJson>, ApiError> {
    let id: uuid::Uuid = id
        .parse()
        .map_err(|_| ApiError::invalid("id", "must be a sync job id (a UUID)"))?;
    let job = service.get_sync_job(&caller, &names::sync_job(id)).await?;
    Ok(Json(SyncJobJson::from(&job)))
}

/// Lists every user's connections with their sync health (admin role).
#[utoipa::path(
    get,
    path = "/v1/admin/connections",
    tag = "admin",
    params(
        ("user_id" = Option<String>, Query, description = "only this user's"),
        ("provider" = Option<String>, Query, description = "only this provider's"),
        ("state" = Option<String>, Query, description = "only this state (`pending|active|error|reauth_required|revoked`)"),
        ("page_size" = Option<i32>, Query, description = "1-1000, default 100"),
        ("page_token" = Option<String>, Query, description = "`next_page_token` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of connections", body = AdminConnectionPage),
        (status = 400, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn admin_list_connections(
    State(service): State<CalendarService>,
    AuthedCaller(caller): AuthedCaller,
    RawQuery(query): RawQuery,
) -> Result<Json<AdminConnectionPage>, ApiError> {
    let params = QueryParams::parse(query, &["user_id", "provider", "state", "page_size", "page_token"])?;
    let input = AdminListInput {
        page_size: params.page_size()?,
        page_token: params.one("page_token")?.unwrap_or_default().to_owned(),
        ..admin_filters(&params)?
    };
    let page = service.admin_list_connections(&caller, input).await?;
    Ok(Json(AdminConnectionPage {
        connections: page.items.iter().map(AdminConnectionJson::from).collect(),
        next_page_token: page.next_page_token,
    }))
}

/// The admin connection filters (`user_id`, `provider`, `state`) of a query, without paging.
pub(crate) fn admin_filters(params: &QueryParams) -> Result<AdminListInput, ApiError> {
    let provider = params
        .one("provider")?
        .map(|p| QueryParams::provider("provider", p))
        .transpose()?;
    let status = params
        .one("state")?
        .map(|s| {
            s.parse::<AccountStatus>()
                .map_err(|_| ApiError::invalid("state", "must be pending, active, error, reauth_required or revoked"))
        })
        .transpose()?;
    Ok(AdminListInput {
        user_id: params.one("user_id")?.unwrap_or_default().to_owned(),
        provider,
        status,
        page_size: 0,
        page_token: String::new(),
    })
}

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: the database answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready"),
        (status = 503, description = "The database is unreachable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn readyz(State(service): State<CalendarService>) -> Response {
    match service.store().ping().await {
        Ok(()) => Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(error) => {
            tracing::warn!(error = %error, "readiness check failed");
            ApiError::unavailable("the database is unreachable").into_response()
        }
    }
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document of the REST bridge.
#[derive(OpenApi)]
#[openapi(
    info(title = "Juy Calendar Service REST API", description = "The REST bridge of the Calendar Service. Errors are RFC 9457 problem documents whose `code` is the gRPC status name."),
    paths(list_events, list_connections, list_calendars, get_settings, update_settings, sync_now, get_sync_job,
        admin_list_connections, crate::rest_admin::connections_csv, crate::rest_admin::list_audit_events,
        crate::rest_admin::audit_events_csv, crate::rest_admin::export_my_data, crate::rest_admin::delete_my_data,
        crate::rest_meetings::query_free_busy, crate::rest_meetings::find_slots,
        crate::rest_meetings::create_meeting, crate::rest_meetings::get_meeting,
        crate::rest_meetings::update_meeting, crate::rest_meetings::cancel_meeting,
        crate::rest_connect::start_connect, crate::rest_connect::oauth_callback, crate::rest_connect::connect_caldav,
        crate::rest_connect::revoke_connection, crate::rest_connect::admin_revoke_connection, healthz, readyz,
        crate::rest_webhooks::google, crate::rest_webhooks::microsoft, crate::rest_webhooks::microsoft_lifecycle),
    components(schemas(Problem, crate::error::FieldViolation, crate::error::ConflictDetail)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

async fn openapi_json() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

async fn not_found() -> ApiError {
    ApiError::not_found("this path")
}

/// The REST routes (without auth and telemetry layers, which `router` adds).
pub fn routes(service: CalendarService) -> Router {
    Router::new()
        .route("/v1/calendar/events", get(list_events))
        .route("/v1/calendar/connections", get(list_connections))
        .route("/v1/calendar/calendars", get(list_calendars))
        .route("/v1/calendar/settings", get(get_settings).patch(update_settings))
        .route("/v1/calendar/sync", post(sync_now))
        .route("/v1/calendar/sync/{id}", get(get_sync_job))
        .route("/v1/admin/connections", get(admin_list_connections))
        .route("/v1/admin/connections.csv", get(crate::rest_admin::connections_csv))
        .route("/v1/admin/audit-events", get(crate::rest_admin::list_audit_events))
        .route("/v1/admin/audit-events.csv", get(crate::rest_admin::audit_events_csv))
        .route("/v1/calendar/me/export", get(crate::rest_admin::export_my_data))
        .route(
            "/v1/calendar/me/data",
            axum::routing::delete(crate::rest_admin::delete_my_data),
        )
        .route("/v1/calendar/freebusy", post(crate::rest_meetings::query_free_busy))
        .route("/v1/calendar/slots", post(crate::rest_meetings::find_slots))
        .route("/v1/calendar/meetings", post(crate::rest_meetings::create_meeting))
        .route(
            "/v1/calendar/meetings/{id}",
            get(crate::rest_meetings::get_meeting)
                .patch(crate::rest_meetings::update_meeting)
                .delete(crate::rest_meetings::cancel_meeting),
        )
        .route(
            "/v1/calendar/connections/{custom}",
            axum::routing::post(crate::rest_connect::connection_action),
        )
        .route("/v1/calendar/oauth/callback", get(crate::rest_connect::oauth_callback))
        .route(
            "/v1/admin/users/{user_id}/connections/{custom}",
            axum::routing::post(crate::rest_connect::admin_revoke_connection),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/openapi.json", get(openapi_json))
        .fallback(not_found)
        .with_state(service)
}
