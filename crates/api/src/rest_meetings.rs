//! The REST routes of availability and meetings: `POST /v1/calendar/freebusy`,
//! `POST /v1/calendar/slots`, `POST /v1/calendar/meetings`, and `GET`,
//! `PATCH`, `DELETE /v1/calendar/meetings/{id}`. They parse JSON into the
//! same inputs the gRPC handlers build and render the same results.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc, Weekday};
use juy_availability::WorkingPeriod;
use juy_domain::Meeting;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::availability::{
    BusyOut, BusySource, FreeBusyInput, SlotInviteeInput, SlotsInput, UserFreeBusy, WorkingPeriodInput,
};
use crate::error::{ApiError, Problem};
use crate::meetings::{CreateMeetingInput, MeetingInput, UpdateMeetingInput, availability_state_name, busy_kind_name};
use crate::names;
use crate::rest::{AuthedCaller, parse_json};
use crate::service::CalendarService;

/// One working period of a weekday, in local time.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkingPeriodJson {
    /// `mon`, `tue`, `wed`, `thu`, `fri`, `sat` or `sun`.
    pub day: String,
    /// Local start, `HH:MM`.
    pub start_time: String,
    /// Local end, `HH:MM`, or `24:00` for the end of the day.
    pub end_time: String,
}

impl From<&WorkingPeriod> for WorkingPeriodJson {
    fn from(p: &WorkingPeriod) -> Self {
        Self {
            day: p.day.to_string().to_ascii_lowercase(),
            start_time: p.start.format("%H:%M").to_string(),
            end_time: if p.end == chrono::NaiveTime::MIN {
                "24:00".into()
            } else {
                p.end.format("%H:%M").to_string()
            },
        }
    }
}

impl WorkingPeriodJson {
    /// The service's input; an unknown day becomes "unspecified" (named in the error).
    pub fn into_input(self) -> WorkingPeriodInput {
        WorkingPeriodInput {
            day: self.day.parse::<Weekday>().ok(),
            start_time: self.start_time,
            end_time: self.end_time,
        }
    }
}

/// A `QueryFreeBusy` request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FreeBusyRequestJson {
    /// `users/{id}` (or `users/me`), 1 to 50.
    pub users: Vec<String>,
    /// Start of the range (RFC 3339).
    pub start_time: Option<DateTime<Utc>>,
    /// End of the range, at most 62 days after the start.
    pub end_time: Option<DateTime<Utc>>,
}

/// A merged busy interval.
#[derive(Debug, Serialize, ToSchema)]
pub struct BusyJson {
    /// Start.
    pub start_time: DateTime<Utc>,
    /// End.
    pub end_time: DateTime<Utc>,
    /// `busy`, `tentative` or `out_of_office`.
    pub kind: String,
    /// Only for the caller's own time: the events that caused it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Only for the caller's own time: the meetings that caused it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub meetings: Vec<String>,
}

impl From<&BusyOut> for BusyJson {
    fn from(b: &BusyOut) -> Self {
        let mut events = Vec::new();
        let mut meetings = Vec::new();
        for source in &b.sources {
            match source {
                BusySource::Event(id) => events.push(names::event(*id)),
                BusySource::Meeting(id) => meetings.push(names::meeting(*id)),
            }
        }
        Self {
            start_time: b.start,
            end_time: b.end,
            kind: busy_kind_name(b.kind).to_owned(),
            events,
            meetings,
        }
    }
}

/// One user's busy time.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserFreeBusyJson {
    /// `users/{id}`.
    pub user: String,
    /// `known`, `partial`, `unknown` or `no_calendars`.
    pub state: String,
    /// Why it is not `known`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// The busy intervals, sorted and disjoint.
    pub busy: Vec<BusyJson>,
    /// The user's IANA zone.
    pub time_zone: String,
    /// The oldest successful sync among the calendars that count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_time: Option<DateTime<Utc>>,
}

impl From<&UserFreeBusy> for UserFreeBusyJson {
    fn from(u: &UserFreeBusy) -> Self {
        Self {
            user: names::user(&u.user),
            state: availability_state_name(u.state).to_owned(),
            state_reason: u.state_reason.clone(),
            busy: u.busy.iter().map(BusyJson::from).collect(),
            time_zone: u.time_zone.clone(),
            data_time: u.data_time,
        }
    }
}

/// The answer of `POST /v1/calendar/freebusy`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FreeBusyJson {
    /// One entry per requested user, in request order.
    pub users: Vec<UserFreeBusyJson>,
}

/// Team free/busy: merged busy intervals of each user from every connected
/// calendar (intervals only for other users).
#[utoipa::path(
    post,
    path = "/v1/calendar/freebusy",
    tag = "availability",
    request_body(content = FreeBusyRequestJson, content_type = "application/json"),
    responses(
        (status = 200, description = "Busy time per user", body = FreeBusyJson),
        (status = 400, description = "Malformed body or bad value", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn query_free_busy(
    State(service): State<CalendarService>,
    AuthedCaller(caller): AuthedCaller,
    body: Bytes,
) -> Result<Json<FreeBusyJson>, ApiError> {
    let request: FreeBusyRequestJson = parse_json(&body)?;
    let users = service
        .query_free_busy(
            &caller,
            FreeBusyInput {
                users: request.users,
                start_time: request.start_time,
                end_time: request.end_time,
            },
        )
        .await?;
    Ok(Json(FreeBusyJson {
        users: users.iter().map(UserFreeBusyJson::from).collect(),
    }))
}

/// One invitee of a slot search.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlotInviteeJson {
    /// `users/{id}` or `users/me`.
    pub user: String,
    /// Need not be free; more free optional invitees rank a slot higher.
    #[serde(default)]
    pub optional: bool,
    /// IANA zone; absent: the user's setting.
    pub time_zone: Option<String>,
    /// Working hours; absent: the user's setting, else Mon-Fri 09:00-17:00.
    pub working_hours: Option<Vec<WorkingPeriodJson>>,
    /// Any time of day counts.
    #[serde(default)]
    pub ignore_working_hours: bool,
}

/// A `FindSlots` request. Durations are whole minutes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlotsRequestJson {
    /// The invitees (1 to 50).
    pub invitees: Vec<SlotInviteeJson>,
    /// The meeting's length in minutes (5 to 1,440).
    pub duration_minutes: Option<i64>,
    /// Slots start at or after this instant.
    pub start_time: Option<DateTime<Utc>>,
    /// Slots end at or before this instant (at most 62 days later).
    pub end_time: Option<DateTime<Utc>>,
    /// Start alignment in minutes (5 to 1,440; default 30).
    pub granularity_minutes: Option<i64>,
    /// Free minutes needed before (0 to 240).
    pub buffer_before_minutes: Option<i64>,
    /// Free minutes needed after (0 to 240).
    pub buffer_after_minutes: Option<i64>,
    /// The zone slot starts are aligned to; absent: the caller's.
    pub time_zone: Option<String>,
    /// At most this many slots (1 to 100; default 10).
    pub max_results: Option<i32>,
    /// Tentative time does not block a slot.
    #[serde(default)]
    pub tentative_is_free: bool,
}

/// A proposed slot.
#[derive(Debug, Serialize, ToSchema)]
pub struct SlotJson {
    /// Start.
    pub start_time: DateTime<Utc>,
    /// End.
    pub end_time: DateTime<Utc>,
    /// Optional invitees free then.
    pub optional_free: Vec<String>,
    /// Optional invitees not free then.
    pub optional_busy: Vec<String>,
}

/// A required invitee who blocks, and when.
#[derive(Debug, Serialize, ToSchema)]
pub struct SlotConflictJson {
    /// `users/{id}`.
    pub user: String,
    /// When they are busy.
    pub busy: Vec<BusyJson>,
}

/// An invitee whose busy time is not known in full.
#[derive(Debug, Serialize, ToSchema)]
pub struct InviteeAvailabilityJson {
    /// `users/{id}`.
    pub user: String,
    /// `partial`, `unknown` or `no_calendars`.
    pub state: String,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
}

/// The answer of `POST /v1/calendar/slots`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SlotsJson {
    /// Best first.
    pub slots: Vec<SlotJson>,
    /// When no slot fits: who conflicts when.
    pub conflicts: Vec<SlotConflictJson>,
    /// When no slot fits because working hours never overlap.
    pub no_common_working_hours: bool,
    /// Invitees whose busy time is incomplete.
    pub incomplete: Vec<InviteeAvailabilityJson>,
}

fn minutes(field: &str, value: Option<i64>) -> Result<Option<chrono::Duration>, ApiError> {
    value
        .map(|m| chrono::Duration::try_minutes(m).ok_or_else(|| ApiError::invalid(field, "is out of range")))
        .transpose()
}

/// Ranked free slots for a group; when none fits, who conflicts when.
#[utoipa::path(
    post,
    path = "/v1/calendar/slots",
    tag = "availability",
    request_body(content = SlotsRequestJson, content_type = "application/json"),
    responses(
        (status = 200, description = "Slots, or the conflicts", body = SlotsJson),
        (status = 400, description = "Malformed body or bad value", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn find_slots(
    State(service): State<CalendarService>,
    AuthedCaller(caller): AuthedCaller,
    body: Bytes,
) -> Result<Json<SlotsJson>, ApiError> {
    let request: SlotsRequestJson = parse_json(&body)?;
    let input = SlotsInput {
        invitees: request
            .invitees
            .into_iter()
            .map(|i| SlotInviteeInput {
                user: i.user,
                optional: i.optional,
                time_zone: i.time_zone.unwrap_or_default(),
                working_hours: i
                    .working_hours
                    .unwrap_or_default()
                    .into_iter()
                    .map(WorkingPeriodJson::into_input)
                    .collect(),
                ignore_working_hours: i.ignore_working_hours,
            })
            .collect(),
        duration: minutes("duration_minutes", request.duration_minutes)?,
        start_time: request.start_time,
        end_time: request.end_time,
        granularity: minutes("granularity_minutes", request.granularity_minutes)?,
        buffer_before: minutes("buffer_before_minutes", request.buffer_before_minutes)?,
        buffer_after: minutes("buffer_after_minutes", request.buffer_after_minutes)?,
        time_zone: request.time_zone.unwrap_or_default(),
        max_results: request.max_results.unwrap_or(0),
        tentative_is_free: request.tentative_is_free,
    };
    let rename = |field: &str| match field {
        "duration" | "granularity" | "buffer_before" | "buffer_after" => Some(format!("{field}_minutes")),
        _ => None,
    };
    let found = service
        .find_slots(&caller, input)
        .await
        .map_err(|e| e.rename_fields(rename))?;
    let user_name = |id: &String| format!("users/{id}");
    Ok(Json(SlotsJson {
        slots: found
            .slots
            .iter()
            .map(|s| SlotJson {
                start_time: s.start,
                end_time: s.end,
                optional_free: s.optional_free.iter().map(user_name).collect(),
                optional_busy: s.optional_busy.iter().map(user_name).collect(),
            })
            .collect(),
        conflicts: found
            .conflicts
            .iter()
            .map(|c| SlotConflictJson {
                user: names::user(&c.user),
                busy: c.busy.iter().map(BusyJson::from).collect(),
            })
            .collect(),
        no_common_working_hours: found.no_common_hours,
        incomplete: found
            .incomplete
            .iter()
            .map(|(user, state, reason)| InviteeAvailabilityJson {
                user: names::user(user),
                state: availability_state_name(*state).to_owned(),
                state_reason: reason.clone(),
            })
            .collect(),
    }))
}

/// A meeting in a create or update request.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MeetingRequestJson {
    /// Title (1 to 1,024 characters).
    pub title: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Location.
    pub location: Option<String>,
    /// Start.
    pub start_time: Option<DateTime<Utc>>,
    /// End (at most 24 hours after the start).
    pub end_time: Option<DateTime<Utc>>,
    /// IANA zone; absent: the organiser's.
    pub time_zone: Option<String>,
    /// Juy users invited, `users/{id}`.
    pub invitees: Option<Vec<String>>,
    /// Emails added as attendees to the external event.
    pub attendee_emails: Option<Vec<String>>,
    /// Create only: write it to an external calendar of the organiser's.
    pub add_to_external_calendar: Option<bool>,
    /// Create only: the Write-mode calendar, `calendars/{uuid}`.
    pub calendar: Option<String>,
    /// Create: create it over conflicts. Update: change it over conflicts.
    pub allow_conflicts: Option<bool>,
    /// Create only: an idempotency key.
    pub request_id: Option<String>,
}

/// A meeting's write-back.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryJson {
    /// `not_requested`, `pending`, `delivered` or `failed`.
    pub state: String,
    /// The provider's id of the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Attempts for the version being delivered.
    pub attempts: i32,
    /// Why the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the provider last confirmed a write.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliver_time: Option<DateTime<Utc>>,
    /// When the next attempt is due.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_time: Option<DateTime<Utc>>,
}

/// A meeting the caller organised.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeetingJson {
    /// `meetings/{uuid}`.
    pub name: String,
    /// Title.
    pub title: String,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Location.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Start.
    pub start_time: DateTime<Utc>,
    /// End.
    pub end_time: DateTime<Utc>,
    /// IANA zone.
    pub time_zone: String,
    /// Juy invitees.
    pub invitees: Vec<String>,
    /// Attendee emails on the external event.
    pub attendee_emails: Vec<String>,
    /// The calendar it is written to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
    /// `scheduled` or `cancelled`.
    pub state: String,
    /// The write-back.
    pub delivery: DeliveryJson,
    /// `users/{id}`.
    pub organizer: String,
    /// Raised by every change.
    pub version: i32,
    /// Created.
    pub create_time: DateTime<Utc>,
    /// Last changed.
    pub update_time: DateTime<Utc>,
}

impl From<&Meeting> for MeetingJson {
    fn from(m: &Meeting) -> Self {
        Self {
            name: names::meeting(m.id),
            title: m.title.clone(),
            description: m.description.clone(),
            location: m.location.clone(),
            start_time: m.start,
            end_time: m.end,
            time_zone: m.time_zone.clone(),
            invitees: m.invitees.iter().map(names::user).collect(),
            attendee_emails: m.attendee_emails.clone(),
            calendar: m.calendar_id.map(names::calendar),
            state: m.status.as_str().to_owned(),
            delivery: DeliveryJson {
                state: m.delivery.state.as_str().to_owned(),
                external_id: m.delivery.external_id.clone(),
                attempts: m.delivery.attempts,
                last_error: m.delivery.last_error.clone(),
                deliver_time: m.delivery.delivered_at,
                next_attempt_time: m.delivery.next_attempt_at,
            },
            organizer: names::user(&m.organizer),
            version: m.version,
            create_time: m.created_at,
            update_time: m.updated_at,
        }
    }
}

fn input_of(m: &MeetingRequestJson) -> MeetingInput {
    MeetingInput {
        title: m.title.clone().unwrap_or_default(),
        description: m.description.clone().unwrap_or_default(),
        location: m.location.clone().unwrap_or_default(),
        start_time: m.start_time,
        end_time: m.end_time,
        time_zone: m.time_zone.clone().unwrap_or_default(),
        invitees: m.invitees.clone().unwrap_or_default(),
        attendee_emails: m.attendee_emails.clone().unwrap_or_default(),
        add_to_external_calendar: m.add_to_external_calendar.unwrap_or(false),
        calendar: m.calendar.clone().unwrap_or_default(),
    }
}

/// REST bodies are the meeting itself: drop the proto's `meeting.` prefix.
fn rest_field(field: &str) -> Option<String> {
    field.strip_prefix("meeting.").map(str::to_owned)
}

/// Creates a meeting; refuses with 409 `MEETING_CONFLICTS` (and `conflicts`)
/// when invitees are busy, unless `allow_conflicts`.
#[utoipa::path(
    post,
    path = "/v1/calendar/meetings",
    tag = "meetings",
    request_body(content = MeetingRequestJson, content_type = "application/json"),
    responses(
        (status = 201, description = "The meeting", body = MeetingJson,
            headers(("Location" = String, description = "`/v1/calendar/meetings/{id}`"))),
        (status = 200, description = "A retry with a used `request_id`: the meeting it created", body = MeetingJson),
        (status = 400, description = "Malformed body or bad value", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "A calendar that is not the caller's", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflicts (`MEETING_CONFLICTS`), a read-only calendar (`CALENDAR_READ_ONLY`) or none in Write mode (`NO_WRITE_CALENDAR`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_meeting(
    State(service): State<CalendarService>,
    AuthedCaller(caller): AuthedCaller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: MeetingRequestJson = parse_json(&body)?;
    let input = CreateMeetingInput {
        meeting: input_of(&request),
        allow_conflicts: request.allow_conflicts.unwrap_or(false),
        request_id: request.request_id.clone().unwrap_or_default(),
    };
    let (meeting, created) = service
        .create_meeting(&caller, input)
        .await
        .map_err(|e| e.rename_fields(rest_field))?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let location = format!("/v1/calendar/meetings/{}", meeting.id);
    Ok((
        status,
        [(header::LOCATION, location)],
        Json(MeetingJson::from(&meeting)),
    )
        .into_response())
}

fn meeting_name(id: &str) -> String {
    format!("meetings/{id}")
}

/// Reads a meeting the caller organised, with its write-back state.
#[utoipa::path(
    get,
    path = "/v1/calendar/meetings/{id}",
    tag = "meetings",
    params(("id" = String, Path, description = "the meeting's id (a UUID)")),
    responses(
        (status = 200, description = "The meeting", body = MeetingJson),
        (status = 400, description = "Not a meeting id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such meeting of the caller's", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_meeting(
    State(service): State<CalendarService>,
    AuthedCaller(caller): AuthedCaller,
    Path(id): Path<String>,
) -> Result<Json<MeetingJson>, ApiError> {
    let meeting = service
        .get_meeting(&caller, &meeting_name(&id))
        .await
        .map_err(|e| e.rename_fields(|f| (f == "name").then(|| "id".to_owned())))?;
    Ok(Json(MeetingJson::from(&meeting)))
}

/// Changes a meeting: the keys present are changed (a new time is checked
/// for conflicts), and the change is written to the external calendar.
#[utoipa::path(
    patch,
    path = "/v1/calendar/meetings/{id}",
    tag = "meetings",
    params(("id" = String, Path, description = "the meeting's id (a UUID)")),
    request_body(content = MeetingRequestJson, content_type = "application/json"),
    responses(
        (status = 200, description = "The meeting after the change", body = MeetingJson),
        (status = 400, description = "Malformed body or bad value", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such meeting of the caller's", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflicts, or the meeting is cancelled or changed meanwhile", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn update_meeting(
    State(service): State<CalendarService>,
    AuthedCaller(caller): AuthedCaller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<MeetingJson>, ApiError> {
    let request: MeetingRequestJson = parse_json(&body)?;
    let mut invalid = Vec::new();
    for (field, given) in [
        ("add_to_external_calendar", request.add_to_external_calendar.is_some()),
        ("calendar", request.calendar.is_some()),
        ("request_id", request.request_id.is_some()),
    ] {
        if given {
            invalid.push(crate::error::FieldViolation {
                field: field.into(),
                description: "cannot be changed".into(),
            });
        }
    }
    if !invalid.is_empty() {
        return Err(ApiError::invalid_fields(invalid));
    }
    // The keys present are the mask, so a key may also clear a text (`""`).
    let mut mask = Vec::new();
    for (path, present) in [
        ("title", request.title.is_some()),
        ("description", request.description.is_some()),
        ("location", request.location.is_some()),
        ("start_time", request.start_time.is_some()),
        ("end_time", request.end_time.is_some()),
        ("time_zone", request.time_zone.is_some()),
        ("invitees", request.invitees.is_some()),
        ("attendee_emails", request.attendee_emails.is_some()),
    ] {
        if present {
            mask.push(path.to_owned());
        }
    }
    if mask.is_empty() {
        return Err(ApiError::invalid("body", "names no field to change"));
    }
    let input = UpdateMeetingInput {
        name: meeting_name(&id),
        meeting: input_of(&request),
        update_mask: mask,
        allow_conflicts: request.allow_conflicts.unwrap_or(false),
    };
    let meeting = service.update_meeting(&caller, input).await.map_err(|e| {
        e.rename_fields(|f| {
            if f == "meeting.name" {
                Some("id".into())
            } else {
                rest_field(f)
            }
        })
    })?;
    Ok(Json(MeetingJson::from(&meeting)))
}

/// Cancels a meeting; its external calendar's event is deleted.
#[utoipa::path(
    delete,
    path = "/v1/calendar/meetings/{id}",
    tag = "meetings",
    params(("id" = String, Path, description = "the meeting's id (a UUID)")),
    responses(
        (status = 200, description = "The meeting, cancelled", body = MeetingJson),
        (status = 400, description = "Not a meeting id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such meeting of the caller's", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn cancel_meeting(
    State(service): State<CalendarService>,
    AuthedCaller(caller): AuthedCaller,
    Path(id): Path<String>,
) -> Result<Json<MeetingJson>, ApiError> {
    let meeting = service
        .cancel_meeting(&caller, &meeting_name(&id))
        .await
        .map_err(|e| e.rename_fields(|f| (f == "name").then(|| "id".to_owned())))?;
    Ok(Json(MeetingJson::from(&meeting)))
}
