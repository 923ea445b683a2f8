//! The gRPC surface: tonic services that parse protobuf requests, call
//! [`CalendarService`], and render domain results as protobuf messages.

use std::pin::Pin;

use chrono::{DateTime, Utc, Weekday};
use futures::{Stream, StreamExt as _};
use juy_availability::{BusyKind, WorkingPeriod};
use juy_domain::{DeliveryState, Meeting, MeetingStatus};
use tonic::{Request, Response, Status};

use juy_domain::{
    AccountStatus, Attendee, Calendar, CalendarEvent, CalendarMode, ConnectedAccount, EventKind, EventStatus,
    NotificationChannels, Provider, ReminderMethod, ResponseStatus, SyncStatus, Transparency,
};
use juy_store::accounts::AdminAccountRow;
use juy_store::sync_jobs::{JobPhase, JobState, SyncJob};

use juy_oauth2::Access;
use zeroize::Zeroizing;

use crate::auth::Caller;
use crate::availability::{
    AvailabilityState, BusyOut, BusySource, FreeBusyInput, SlotInviteeInput, SlotsInput, WorkingPeriodInput,
};
use crate::connect::{ConnectCalDavInput, StartConnectInput};
use crate::error::{ApiError, FieldViolation};
use crate::meetings::{CreateMeetingInput, MeetingInput, UpdateMeetingInput};
use crate::names;
use crate::pb::v1 as pb;
use crate::service::{
    AdminCalendar, AdminListInput, CalendarService, ChannelsPatch, JobProgress, ListEventsInput, ListedCalendar,
    ListedConnection, ListedEvent, Settings, SettingsPatch, SyncSchedule,
};

/// `juy.calendar.v1.CalendarSync`.
#[derive(Debug, Clone)]
pub struct CalendarSyncApi(pub CalendarService);

/// `juy.calendar.v1.Admin`.
#[derive(Debug, Clone)]
pub struct AdminApi(pub CalendarService);

fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| ApiError::unauthenticated("a bearer token is required").into())
}

fn timestamp(field: &str, value: Option<prost_types::Timestamp>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|t| {
            u32::try_from(t.nanos)
                .ok()
                .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos))
                .ok_or_else(|| ApiError::invalid(field, "is not a valid timestamp"))
        })
        .transpose()
}

/// A value parsed from one field, or `None` with the field's violations
/// added to `violations` (so every bad field of a request is named at once).
fn collected<T>(parsed: Result<Option<T>, ApiError>, violations: &mut Vec<FieldViolation>) -> Option<T> {
    parsed.unwrap_or_else(|e| {
        violations.extend(e.violations);
        None
    })
}

/// An optional start and end, as a request gave them.
type Bounds = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// A request's `start_time` and `end_time`, each optional; both are checked
/// and every bad one named.
fn start_and_end(
    start: Option<prost_types::Timestamp>,
    end: Option<prost_types::Timestamp>,
) -> Result<Bounds, ApiError> {
    let mut violations = Vec::new();
    let start_time = collected(timestamp("start_time", start), &mut violations);
    let end_time = collected(timestamp("end_time", end), &mut violations);
    if violations.is_empty() {
        Ok((start_time, end_time))
    } else {
        Err(ApiError::invalid_fields(violations))
    }
}

fn to_timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

/// Maps a protobuf provider to the domain's; unspecified or unknown is `None`.
pub fn provider_from_pb(value: i32) -> Option<Provider> {
    match pb::Provider::try_from(value).ok()? {
        pb::Provider::Google => Some(Provider::Google),
        pb::Provider::Microsoft => Some(Provider::Microsoft),
        pb::Provider::Caldav => Some(Provider::Caldav),
        pb::Provider::Unspecified => None,
    }
}

fn provider_to_pb(p: Provider) -> pb::Provider {
    match p {
        Provider::Google => pb::Provider::Google,
        Provider::Microsoft => pb::Provider::Microsoft,
        Provider::Caldav => pb::Provider::Caldav,
    }
}

fn state_to_pb(s: AccountStatus) -> pb::ConnectionState {
    match s {
        AccountStatus::Pending => pb::ConnectionState::Pending,
        AccountStatus::Active => pb::ConnectionState::Active,
        AccountStatus::Error => pb::ConnectionState::Error,
        AccountStatus::ReauthRequired => pb::ConnectionState::ReauthRequired,
        AccountStatus::Revoked => pb::ConnectionState::Revoked,
    }
}

fn state_from_pb(value: i32) -> Option<AccountStatus> {
    match pb::ConnectionState::try_from(value).ok()? {
        pb::ConnectionState::Pending => Some(AccountStatus::Pending),
        pb::ConnectionState::Active => Some(AccountStatus::Active),
        pb::ConnectionState::Error => Some(AccountStatus::Error),
        pb::ConnectionState::ReauthRequired => Some(AccountStatus::ReauthRequired),
        pb::ConnectionState::Revoked => Some(AccountStatus::Revoked),
        pb::ConnectionState::Unspecified => None,
    }
}

fn mode_to_pb(m: CalendarMode) -> pb::CalendarMode {
    match m {
        CalendarMode::ReadOnly => pb::CalendarMode::ReadOnly,
        CalendarMode::Write => pb::CalendarMode::Write,
    }
}

fn mode_from_pb(value: i32) -> Option<CalendarMode> {
    match pb::CalendarMode::try_from(value).ok()? {
        pb::CalendarMode::ReadOnly => Some(CalendarMode::ReadOnly),
        pb::CalendarMode::Write => Some(CalendarMode::Write),
        pb::CalendarMode::Unspecified => None,
    }
}

fn response_to_pb(r: ResponseStatus) -> pb::ResponseStatus {
    match r {
        ResponseStatus::None => pb::ResponseStatus::None,
        ResponseStatus::Organizer => pb::ResponseStatus::Organizer,
        ResponseStatus::NeedsAction => pb::ResponseStatus::NeedsAction,
        ResponseStatus::Accepted => pb::ResponseStatus::Accepted,
        ResponseStatus::Tentative => pb::ResponseStatus::Tentative,
        ResponseStatus::Declined => pb::ResponseStatus::Declined,
    }
}

fn attendee_to_pb(a: &Attendee) -> pb::Attendee {
    pb::Attendee {
        email: a.email.clone(),
        display_name: a.name.clone().unwrap_or_default(),
        response_status: response_to_pb(a.response).into(),
        self_: a.is_self,
        optional: a.optional,
    }
}

/// Renders a domain event.
pub fn event_to_pb(e: &CalendarEvent) -> pb::Event {
    pb::Event {
        name: names::event(e.id),
        calendar: names::calendar(e.calendar_id),
        provider: provider_to_pb(e.provider).into(),
        external_id: e.external_id.clone(),
        ical_uid: e.ical_uid.clone().unwrap_or_default(),
        title: e.title.clone().unwrap_or_default(),
        location: e.location.clone().unwrap_or_default(),
        description: e.description.clone().unwrap_or_default(),
        start_time: Some(to_timestamp(e.start)),
        end_time: Some(to_timestamp(e.end)),
        time_zone: e.time_zone.clone().unwrap_or_default(),
        all_day: e.all_day.is_some(),
        start_date: e.all_day.map(|d| d.start.to_string()).unwrap_or_default(),
        end_date: e.all_day.map(|d| d.end.to_string()).unwrap_or_default(),
        status: match e.status {
            EventStatus::Confirmed => pb::EventStatus::Confirmed,
            EventStatus::Tentative => pb::EventStatus::Tentative,
            EventStatus::Cancelled => pb::EventStatus::Cancelled,
        }
        .into(),
        transparency: match e.transparency {
            Transparency::Opaque => pb::Transparency::Opaque,
            Transparency::Transparent => pb::Transparency::Transparent,
        }
        .into(),
        self_response: response_to_pb(e.self_response).into(),
        kind: match e.kind {
            EventKind::Default => pb::EventKind::Default,
            EventKind::OutOfOffice => pb::EventKind::OutOfOffice,
            EventKind::FocusTime => pb::EventKind::FocusTime,
            EventKind::WorkingElsewhere => pb::EventKind::WorkingElsewhere,
        }
        .into(),
        organizer: e.organizer.as_ref().map(attendee_to_pb),
        attendees: e.attendees.iter().map(attendee_to_pb).collect(),
        series_id: e.series_id.clone().unwrap_or_default(),
        instance_start_time: e.instance_start.map(to_timestamp),
        reminders: e
            .reminders
            .iter()
            .map(|r| pb::Reminder {
                minutes_before: r.minutes_before,
                method: match r.method {
                    ReminderMethod::Popup => pb::ReminderMethod::Popup,
                    ReminderMethod::Email => pb::ReminderMethod::Email,
                }
                .into(),
            })
            .collect(),
        etag: e.etag.clone().unwrap_or_default(),
        update_time: e.updated.map(to_timestamp),
        meeting: String::new(),
    }
}

/// Renders one item of the merged events view.
pub fn listed_event_to_pb(item: &ListedEvent) -> pb::Event {
    match item {
        ListedEvent::Synced(event) => event_to_pb(event),
        ListedEvent::Meeting { meeting, provider } => pb::Event {
            name: names::event(juy_domain::EventId(meeting.id.0)),
            calendar: meeting.calendar_id.map(names::calendar).unwrap_or_default(),
            provider: provider.map(provider_to_pb).unwrap_or(pb::Provider::Unspecified).into(),
            external_id: meeting.delivery.external_id.clone().unwrap_or_default(),
            title: meeting.title.clone(),
            location: meeting.location.clone().unwrap_or_default(),
            description: meeting.description.clone().unwrap_or_default(),
            start_time: Some(to_timestamp(meeting.start)),
            end_time: Some(to_timestamp(meeting.end)),
            time_zone: meeting.time_zone.clone(),
            status: pb::EventStatus::Confirmed.into(),
            transparency: pb::Transparency::Opaque.into(),
            self_response: pb::ResponseStatus::Organizer.into(),
            kind: pb::EventKind::Default.into(),
            attendees: meeting
                .attendee_emails
                .iter()
                .map(|email| pb::Attendee {
                    email: email.clone(),
                    ..Default::default()
                })
                .collect(),
            update_time: Some(to_timestamp(meeting.updated_at)),
            meeting: names::meeting(meeting.id),
            ..Default::default()
        },
    }
}

/// Renders a meeting.
pub fn meeting_to_pb(m: &Meeting) -> pb::Meeting {
    pb::Meeting {
        name: names::meeting(m.id),
        title: m.title.clone(),
        description: m.description.clone().unwrap_or_default(),
        location: m.location.clone().unwrap_or_default(),
        start_time: Some(to_timestamp(m.start)),
        end_time: Some(to_timestamp(m.end)),
        time_zone: m.time_zone.clone(),
        invitees: m.invitees.iter().map(names::user).collect(),
        attendee_emails: m.attendee_emails.clone(),
        add_to_external_calendar: m.calendar_id.is_some(),
        calendar: m.calendar_id.map(names::calendar).unwrap_or_default(),
        state: match m.status {
            MeetingStatus::Scheduled => pb::MeetingState::Scheduled,
            MeetingStatus::Cancelled => pb::MeetingState::Cancelled,
        }
        .into(),
        delivery: Some(pb::MeetingDelivery {
            state: match m.delivery.state {
                DeliveryState::NotRequested => pb::DeliveryState::NotRequested,
                DeliveryState::Pending => pb::DeliveryState::Pending,
                DeliveryState::Delivered => pb::DeliveryState::Delivered,
                DeliveryState::Failed => pb::DeliveryState::Failed,
            }
            .into(),
            external_id: m.delivery.external_id.clone().unwrap_or_default(),
            attempts: m.delivery.attempts,
            last_error: m.delivery.last_error.clone().unwrap_or_default(),
            deliver_time: m.delivery.delivered_at.map(to_timestamp),
            next_attempt_time: m.delivery.next_attempt_at.map(to_timestamp),
        }),
        organizer: names::user(&m.organizer),
        version: m.version,
        create_time: Some(to_timestamp(m.created_at)),
        update_time: Some(to_timestamp(m.updated_at)),
    }
}

fn weekday_to_pb(day: Weekday) -> pb::DayOfWeek {
    match day {
        Weekday::Mon => pb::DayOfWeek::Monday,
        Weekday::Tue => pb::DayOfWeek::Tuesday,
        Weekday::Wed => pb::DayOfWeek::Wednesday,
        Weekday::Thu => pb::DayOfWeek::Thursday,
        Weekday::Fri => pb::DayOfWeek::Friday,
        Weekday::Sat => pb::DayOfWeek::Saturday,
        Weekday::Sun => pb::DayOfWeek::Sunday,
    }
}

fn weekday_from_pb(day: i32) -> Option<Weekday> {
    Some(match pb::DayOfWeek::try_from(day).ok()? {
        pb::DayOfWeek::Unspecified => return None,
        pb::DayOfWeek::Monday => Weekday::Mon,
        pb::DayOfWeek::Tuesday => Weekday::Tue,
        pb::DayOfWeek::Wednesday => Weekday::Wed,
        pb::DayOfWeek::Thursday => Weekday::Thu,
        pb::DayOfWeek::Friday => Weekday::Fri,
        pb::DayOfWeek::Saturday => Weekday::Sat,
        pb::DayOfWeek::Sunday => Weekday::Sun,
    })
}

fn period_to_pb(p: &WorkingPeriod) -> pb::WorkingPeriod {
    pb::WorkingPeriod {
        day: weekday_to_pb(p.day).into(),
        start_time: p.start.format("%H:%M").to_string(),
        end_time: if p.end == chrono::NaiveTime::MIN {
            "24:00".to_owned()
        } else {
            p.end.format("%H:%M").to_string()
        },
    }
}

fn period_from_pb(p: pb::WorkingPeriod) -> WorkingPeriodInput {
    WorkingPeriodInput {
        day: weekday_from_pb(p.day),
        start_time: p.start_time,
        end_time: p.end_time,
    }
}

fn meeting_input(m: pb::Meeting) -> Result<MeetingInput, ApiError> {
    let mut violations = Vec::new();
    let start_time = collected(timestamp("meeting.start_time", m.start_time), &mut violations);
    let end_time = collected(timestamp("meeting.end_time", m.end_time), &mut violations);
    if !violations.is_empty() {
        return Err(ApiError::invalid_fields(violations));
    }
    Ok(MeetingInput {
        title: m.title,
        description: m.description,
        location: m.location,
        start_time,
        end_time,
        time_zone: m.time_zone,
        invitees: m.invitees,
        attendee_emails: m.attendee_emails,
        add_to_external_calendar: m.add_to_external_calendar,
        calendar: m.calendar,
    })
}

fn busy_kind_to_pb(kind: BusyKind) -> pb::BusyKind {
    match kind {
        BusyKind::Tentative => pb::BusyKind::Tentative,
        BusyKind::Busy => pb::BusyKind::Busy,
        BusyKind::OutOfOffice => pb::BusyKind::OutOfOffice,
    }
}

fn availability_state_to_pb(state: AvailabilityState) -> pb::AvailabilityState {
    match state {
        AvailabilityState::Known => pb::AvailabilityState::Known,
        AvailabilityState::Partial => pb::AvailabilityState::Partial,
        AvailabilityState::Unknown => pb::AvailabilityState::Unknown,
        AvailabilityState::NoCalendars => pb::AvailabilityState::NoCalendars,
    }
}

fn busy_to_pb(b: &BusyOut) -> pb::BusyInterval {
    let mut events = Vec::new();
    let mut meetings = Vec::new();
    for source in &b.sources {
        match source {
            BusySource::Event(id) => events.push(names::event(*id)),
            BusySource::Meeting(id) => meetings.push(names::meeting(*id)),
        }
    }
    pb::BusyInterval {
        start_time: Some(to_timestamp(b.start)),
        end_time: Some(to_timestamp(b.end)),
        kind: busy_kind_to_pb(b.kind).into(),
        events,
        meetings,
    }
}

fn duration(field: &str, value: Option<prost_types::Duration>) -> Result<Option<chrono::Duration>, ApiError> {
    value
        .map(|d| {
            if d.nanos != 0 || d.seconds < 0 {
                return Err(ApiError::invalid(
                    field,
                    "must be a non-negative whole number of seconds",
                ));
            }
            chrono::Duration::try_seconds(d.seconds).ok_or_else(|| ApiError::invalid(field, "is too long"))
        })
        .transpose()
}

/// `juy.calendar.v1.Availability`.
#[derive(Debug, Clone)]
pub struct AvailabilityApi(pub CalendarService);

#[tonic::async_trait]
impl pb::availability_server::Availability for AvailabilityApi {
    async fn query_free_busy(
        &self,
        request: Request<pb::QueryFreeBusyRequest>,
    ) -> Result<Response<pb::QueryFreeBusyResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let (start_time, end_time) = start_and_end(req.start_time, req.end_time)?;
        let users = self
            .0
            .query_free_busy(
                &caller,
                FreeBusyInput {
                    users: req.users,
                    start_time,
                    end_time,
                },
            )
            .await?;
        Ok(Response::new(pb::QueryFreeBusyResponse {
            users: users
                .iter()
                .map(|u| pb::UserFreeBusy {
                    user: names::user(&u.user),
                    state: availability_state_to_pb(u.state).into(),
                    state_reason: u.state_reason.clone().unwrap_or_default(),
                    busy: u.busy.iter().map(busy_to_pb).collect(),
                    time_zone: u.time_zone.clone(),
                    data_time: u.data_time.map(to_timestamp),
                })
                .collect(),
        }))
    }

    async fn find_slots(
        &self,
        request: Request<pb::FindSlotsRequest>,
    ) -> Result<Response<pb::FindSlotsResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let mut violations = Vec::new();
        let start_time = collected(timestamp("start_time", req.start_time), &mut violations);
        let end_time = collected(timestamp("end_time", req.end_time), &mut violations);
        let mut durations = Vec::new();
        for (field, value) in [
            ("duration", req.duration),
            ("granularity", req.granularity),
            ("buffer_before", req.buffer_before),
            ("buffer_after", req.buffer_after),
        ] {
            durations.push(collected(duration(field, value), &mut violations));
        }
        if !violations.is_empty() {
            return Err(ApiError::invalid_fields(violations).into());
        }
        let input = SlotsInput {
            invitees: req
                .invitees
                .into_iter()
                .map(|i| SlotInviteeInput {
                    user: i.user,
                    optional: i.optional,
                    time_zone: i.time_zone,
                    working_hours: i.working_hours.into_iter().map(period_from_pb).collect(),
                    ignore_working_hours: i.ignore_working_hours,
                })
                .collect(),
            duration: durations[0],
            start_time,
            end_time,
            granularity: durations[1],
            buffer_before: durations[2],
            buffer_after: durations[3],
            time_zone: req.time_zone,
            max_results: req.max_results,
            tentative_is_free: req.tentative_is_free,
        };
        let found = self.0.find_slots(&caller, input).await?;
        let user_name = |id: &str| format!("users/{id}");
        Ok(Response::new(pb::FindSlotsResponse {
            slots: found
                .slots
                .iter()
                .map(|slot| pb::Slot {
                    start_time: Some(to_timestamp(slot.start)),
                    end_time: Some(to_timestamp(slot.end)),
                    optional_free: slot.optional_free.iter().map(|u| user_name(u)).collect(),
                    optional_busy: slot.optional_busy.iter().map(|u| user_name(u)).collect(),
                })
                .collect(),
            conflicts: found
                .conflicts
                .iter()
                .map(|c| pb::SlotConflict {
                    user: names::user(&c.user),
                    busy: c.busy.iter().map(busy_to_pb).collect(),
                })
                .collect(),
            no_common_working_hours: found.no_common_hours,
            incomplete: found
                .incomplete
                .iter()
                .map(|(user, state, reason)| pb::InviteeAvailability {
                    user: names::user(user),
                    state: availability_state_to_pb(*state).into(),
                    state_reason: reason.clone().unwrap_or_default(),
                })
                .collect(),
        }))
    }
}

/// Renders a domain account.
pub fn connection_to_pb(a: &ConnectedAccount) -> pb::Connection {
    pb::Connection {
        name: names::connection(a.id),
        provider: provider_to_pb(a.provider).into(),
        account_display_name: a.display_name.clone().unwrap_or_default(),
        state: state_to_pb(a.status).into(),
        state_reason: a.status_reason.clone().unwrap_or_default(),
        scopes: a.scopes.clone(),
        connect_time: Some(to_timestamp(a.connected_at)),
        last_sync_time: a.last_sync_at.map(to_timestamp),
        last_error: a.last_error.clone().unwrap_or_default(),
        calendars: Vec::new(),
    }
}

fn listed_connection_to_pb(listed: &ListedConnection) -> pb::Connection {
    pb::Connection {
        calendars: listed.calendars.iter().map(listed_calendar_to_pb).collect(),
        ..connection_to_pb(&listed.connection)
    }
}

fn sync_status_to_pb(s: SyncStatus) -> pb::SyncStatus {
    match s {
        SyncStatus::Pending => pb::SyncStatus::Pending,
        SyncStatus::Ok => pb::SyncStatus::Ok,
        SyncStatus::Error => pb::SyncStatus::Error,
    }
}

/// Renders a domain calendar.
pub fn calendar_to_pb(c: &Calendar) -> pb::Calendar {
    pb::Calendar {
        name: names::calendar(c.id),
        connection: names::connection(c.account_id),
        provider: provider_to_pb(c.provider).into(),
        display_name: c.name.clone(),
        color: c.color.clone().unwrap_or_default(),
        time_zone: c.time_zone.clone().unwrap_or_default(),
        primary: c.is_primary,
        writable: c.can_write,
        mode: mode_to_pb(c.mode).into(),
        sync_status: sync_status_to_pb(c.sync_status).into(),
        last_sync_time: c.last_synced_at.map(to_timestamp),
        last_error: c.last_error.clone().unwrap_or_default(),
        next_sync_time: None,
        syncing: false,
        push_channel_expire_time: None,
    }
}

fn listed_calendar_to_pb(listed: &ListedCalendar) -> pb::Calendar {
    let SyncSchedule {
        next_sync_at,
        syncing,
        push_channel_expires_at,
    } = listed.schedule;
    pb::Calendar {
        next_sync_time: next_sync_at.map(to_timestamp),
        syncing,
        push_channel_expire_time: push_channel_expires_at.map(to_timestamp),
        ..calendar_to_pb(&listed.calendar)
    }
}

fn job_state_to_pb(s: JobState) -> pb::SyncJobState {
    match s {
        JobState::Queued => pb::SyncJobState::Queued,
        JobState::Running => pb::SyncJobState::Running,
        JobState::Done => pb::SyncJobState::Done,
        JobState::Failed => pb::SyncJobState::Failed,
        JobState::Skipped => pb::SyncJobState::Skipped,
    }
}

/// Renders a "sync now" job.
pub fn sync_job_to_pb(job: &SyncJob) -> pb::SyncJob {
    pb::SyncJob {
        name: names::sync_job(job.id),
        create_time: Some(to_timestamp(job.created_at)),
        done: job.is_finished(),
        calendars: job
            .calendars
            .iter()
            .map(|c| pb::SyncJobCalendar {
                calendar: names::calendar(c.calendar_id),
                state: job_state_to_pb(c.state).into(),
                phase: match c.phase {
                    None => pb::SyncJobPhase::Unspecified,
                    Some(JobPhase::Listing) => pb::SyncJobPhase::Listing,
                    Some(JobPhase::Changes) => pb::SyncJobPhase::Changes,
                }
                .into(),
                pages: c.pages,
                events_written: c.events_written,
                events_deleted: c.events_deleted,
                error: c.error.clone().unwrap_or_default(),
                start_time: c.started_at.map(to_timestamp),
                end_time: c.finished_at.map(to_timestamp),
            })
            .collect(),
    }
}

fn settings_to_pb(s: &Settings) -> pb::CalendarSettings {
    pb::CalendarSettings {
        name: names::MY_SETTINGS.to_owned(),
        calendar_modes: s
            .calendar_modes
            .iter()
            .map(|(id, mode)| pb::CalendarModeSetting {
                calendar: names::calendar(*id),
                mode: mode_to_pb(*mode).into(),
            })
            .collect(),
        notification_channels: s.notification_channels.iter().map(channels_to_pb).collect(),
        time_zone: s.time_zone.clone().unwrap_or_default(),
        working_hours: s.working_hours.iter().map(period_to_pb).collect(),
    }
}

fn channels_to_pb(c: &NotificationChannels) -> pb::NotificationChannels {
    pb::NotificationChannels {
        provider: provider_to_pb(c.provider).into(),
        push: c.push,
        email: c.email,
        sms: c.sms,
    }
}

fn admin_calendar_to_pb(c: &AdminCalendar) -> pb::AdminCalendar {
    let h = &c.health;
    pb::AdminCalendar {
        name: names::calendar(h.calendar_id),
        primary: h.is_primary,
        sync_status: sync_status_to_pb(h.sync_status).into(),
        last_sync_time: h.last_synced_at.map(to_timestamp),
        last_error: h.last_error.clone().unwrap_or_default(),
        next_sync_time: c.schedule.next_sync_at.map(to_timestamp),
        syncing: c.schedule.syncing,
        push_channel_expire_time: c.schedule.push_channel_expires_at.map(to_timestamp),
    }
}

fn admin_row_to_pb(r: &AdminAccountRow, calendars: &[AdminCalendar]) -> pb::AdminConnection {
    pb::AdminConnection {
        name: names::connection(r.account_id),
        user_id: r.user_id.as_str().to_owned(),
        provider: provider_to_pb(r.provider).into(),
        state: state_to_pb(r.status).into(),
        state_reason: r.status_reason.clone().unwrap_or_default(),
        connect_time: Some(to_timestamp(r.connected_at)),
        last_sync_time: r.last_sync_at.map(to_timestamp),
        last_error: r.last_error.clone().unwrap_or_default(),
        calendar_count: i32::try_from(r.calendar_count).unwrap_or(i32::MAX),
        calendars: calendars.iter().map(admin_calendar_to_pb).collect(),
    }
}

/// The stream of `ExportMyData`.
pub type ExportMyDataStream = Pin<Box<dyn Stream<Item = Result<pb::ExportMyDataResponse, Status>> + Send + 'static>>;

/// The stream of `Admin.ExportConnections`.
pub type ExportConnectionsStream =
    Pin<Box<dyn Stream<Item = Result<pb::ExportConnectionsResponse, Status>> + Send + 'static>>;

fn audit_event_to_pb(e: &juy_store::audit::AuditEvent) -> pb::AuditEvent {
    pb::AuditEvent {
        name: format!("auditEvents/{}", e.id),
        time: Some(to_timestamp(e.occurred_at)),
        actor: e.actor.clone(),
        actor_roles: e.actor_roles.clone(),
        action: e.action.clone(),
        subject_user_id: e.subject_user_id.clone().unwrap_or_default(),
        target: e.target.clone().unwrap_or_default(),
        result: e.result.clone(),
        request_id: e.request_id.clone().unwrap_or_default(),
    }
}

fn admin_filters(user_id: String, provider: i32, state: i32) -> Result<AdminListInput, ApiError> {
    let provider = match provider {
        0 => None,
        p => Some(provider_from_pb(p).ok_or_else(|| ApiError::invalid("provider", "must be a known provider"))?),
    };
    let status = match state {
        0 => None,
        s => Some(state_from_pb(s).ok_or_else(|| ApiError::invalid("state", "must be a known state"))?),
    };
    Ok(AdminListInput {
        user_id,
        provider,
        status,
        page_size: 0,
        page_token: String::new(),
    })
}

/// The stream of `SyncNow`.
pub type SyncNowStream = Pin<Box<dyn Stream<Item = Result<pb::SyncNowResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::calendar_sync_server::CalendarSync for CalendarSyncApi {
    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let mut violations = Vec::new();
        let start_time = collected(timestamp("start_time", req.start_time), &mut violations);
        let end_time = collected(timestamp("end_time", req.end_time), &mut violations);
        let mut providers = Vec::new();
        for (i, p) in req.providers.iter().enumerate() {
            match provider_from_pb(*p) {
                Some(p) => providers.push(p),
                None => violations.push(FieldViolation {
                    field: format!("providers[{i}]"),
                    description: "must be a known provider".into(),
                }),
            }
        }
        if !violations.is_empty() {
            return Err(ApiError::invalid_fields(violations).into());
        }
        let input = ListEventsInput {
            start_time,
            end_time,
            providers,
            calendars: req.calendars,
            page_size: req.page_size,
            page_token: req.page_token,
        };
        let page = self.0.list_events(&caller, input).await?;
        Ok(Response::new(pb::ListEventsResponse {
            events: page.items.iter().map(listed_event_to_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn list_connections(
        &self,
        request: Request<pb::ListConnectionsRequest>,
    ) -> Result<Response<pb::ListConnectionsResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let page = self.0.list_connections(&caller, req.page_size, &req.page_token).await?;
        Ok(Response::new(pb::ListConnectionsResponse {
            connections: page.items.iter().map(listed_connection_to_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn list_calendars(
        &self,
        request: Request<pb::ListCalendarsRequest>,
    ) -> Result<Response<pb::ListCalendarsResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let page = self
            .0
            .list_calendars(&caller, &req.connection, req.page_size, &req.page_token)
            .await?;
        Ok(Response::new(pb::ListCalendarsResponse {
            calendars: page.items.iter().map(listed_calendar_to_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_calendar_settings(
        &self,
        request: Request<pb::GetCalendarSettingsRequest>,
    ) -> Result<Response<pb::GetCalendarSettingsResponse>, Status> {
        let caller = caller(&request)?;
        let settings = self.0.get_settings(&caller, &request.into_inner().name).await?;
        Ok(Response::new(pb::GetCalendarSettingsResponse {
            settings: Some(settings_to_pb(&settings)),
        }))
    }

    async fn update_calendar_settings(
        &self,
        request: Request<pb::UpdateCalendarSettingsRequest>,
    ) -> Result<Response<pb::UpdateCalendarSettingsResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let settings = req
            .settings
            .ok_or_else(|| ApiError::invalid("settings", "is required"))?;
        let paths: Vec<String> = match req.update_mask {
            Some(mask) if !mask.paths.is_empty() => mask.paths,
            // No mask: every part present in the message.
            _ => {
                let mut paths = Vec::new();
                if !settings.calendar_modes.is_empty() {
                    paths.push("calendar_modes".to_owned());
                }
                if !settings.notification_channels.is_empty() {
                    paths.push("notification_channels".to_owned());
                }
                if !settings.time_zone.is_empty() {
                    paths.push("time_zone".to_owned());
                }
                if !settings.working_hours.is_empty() {
                    paths.push("working_hours".to_owned());
                }
                paths
            }
        };
        for (i, path) in paths.iter().enumerate() {
            if !["calendar_modes", "notification_channels", "time_zone", "working_hours"].contains(&path.as_str()) {
                return Err(ApiError::invalid(
                    format!("update_mask.paths[{i}]"),
                    "must be `calendar_modes`, `notification_channels`, `time_zone` or `working_hours`",
                )
                .into());
            }
        }
        let has = |p: &str| paths.iter().any(|x| x == p);
        let patch = SettingsPatch {
            name: settings.name,
            calendar_modes: has("calendar_modes").then(|| {
                settings
                    .calendar_modes
                    .into_iter()
                    .map(|m| (m.calendar, mode_from_pb(m.mode)))
                    .collect()
            }),
            notification_channels: has("notification_channels").then(|| {
                settings
                    .notification_channels
                    .into_iter()
                    .map(|c| ChannelsPatch {
                        provider: provider_from_pb(c.provider),
                        push: c.push,
                        email: c.email,
                        sms: c.sms,
                    })
                    .collect()
            }),
            time_zone: has("time_zone").then(|| settings.time_zone.clone()),
            working_hours: has("working_hours")
                .then(|| settings.working_hours.iter().cloned().map(period_from_pb).collect()),
        };
        let settings = self.0.update_settings(&caller, patch).await?;
        Ok(Response::new(pb::UpdateCalendarSettingsResponse {
            settings: Some(settings_to_pb(&settings)),
        }))
    }

    async fn start_connect(
        &self,
        request: Request<pb::StartConnectRequest>,
    ) -> Result<Response<pb::StartConnectResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let access = match pb::ConnectAccess::try_from(req.access) {
            Ok(pb::ConnectAccess::Unspecified | pb::ConnectAccess::Read) => Access::Read,
            Ok(pb::ConnectAccess::Write) => Access::Write,
            Err(_) => return Err(ApiError::invalid("access", "must be a known access level").into()),
        };
        let started = self
            .0
            .start_connect(
                &caller,
                StartConnectInput {
                    provider: provider_from_pb(req.provider),
                    redirect_uri: req.redirect_uri,
                    access,
                    login_hint: req.login_hint,
                },
            )
            .await?;
        Ok(Response::new(pb::StartConnectResponse {
            authorization_url: started.authorization_url,
            expire_time: Some(to_timestamp(started.expire_time)),
        }))
    }

    async fn complete_connect(
        &self,
        request: Request<pb::CompleteConnectRequest>,
    ) -> Result<Response<pb::CompleteConnectResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let linked = self.0.complete_connect(&caller, &req.state, &req.code).await?;
        Ok(Response::new(pb::CompleteConnectResponse {
            connection: Some(connection_to_pb(&linked.connection)),
            calendars: linked.calendars.iter().map(calendar_to_pb).collect(),
        }))
    }

    async fn connect_cal_dav(
        &self,
        request: Request<pb::ConnectCalDavRequest>,
    ) -> Result<Response<pb::ConnectCalDavResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let linked = self
            .0
            .connect_caldav(
                &caller,
                ConnectCalDavInput {
                    server_url: req.server_url,
                    username: req.username,
                    app_specific_password: Zeroizing::new(req.app_specific_password),
                },
            )
            .await?;
        Ok(Response::new(pb::ConnectCalDavResponse {
            connection: Some(connection_to_pb(&linked.connection)),
            calendars: linked.calendars.iter().map(calendar_to_pb).collect(),
        }))
    }

    async fn revoke_connection(
        &self,
        request: Request<pb::RevokeConnectionRequest>,
    ) -> Result<Response<pb::RevokeConnectionResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let connection = self.0.revoke_connection(&caller, &req.name).await?;
        Ok(Response::new(pb::RevokeConnectionResponse {
            connection: Some(connection_to_pb(&connection)),
        }))
    }

    type SyncNowStream = SyncNowStream;

    async fn sync_now(&self, request: Request<pb::SyncNowRequest>) -> Result<Response<SyncNowStream>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let job = self.0.sync_now(&caller, &req.calendars).await?;
        let stream = self.0.follow_sync_job(&caller, job).map(|progress| {
            progress
                .map(|JobProgress { job, still_running }| pb::SyncNowResponse {
                    job: Some(sync_job_to_pb(&job)),
                    still_running,
                })
                .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_sync_job(
        &self,
        request: Request<pb::GetSyncJobRequest>,
    ) -> Result<Response<pb::GetSyncJobResponse>, Status> {
        let caller = caller(&request)?;
        let job = self.0.get_sync_job(&caller, &request.into_inner().name).await?;
        Ok(Response::new(pb::GetSyncJobResponse {
            job: Some(sync_job_to_pb(&job)),
        }))
    }

    type ExportMyDataStream = ExportMyDataStream;

    async fn export_my_data(
        &self,
        request: Request<pb::ExportMyDataRequest>,
    ) -> Result<Response<ExportMyDataStream>, Status> {
        let caller = caller(&request)?;
        let stream = self.0.export_my_data(&caller).map(|chunk| {
            chunk
                .map(|chunk| pb::ExportMyDataResponse { chunk: chunk.to_vec() })
                .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn delete_my_data(
        &self,
        request: Request<pb::DeleteMyDataRequest>,
    ) -> Result<Response<pb::DeleteMyDataResponse>, Status> {
        let caller = caller(&request)?;
        let done = self.0.delete_my_data(&caller, request.into_inner().confirm).await?;
        Ok(Response::new(pb::DeleteMyDataResponse {
            connections_revoked: done.connections_revoked,
            revocation_failures: done.revocation_failures,
            events_deleted: done.events_deleted,
            meetings_deleted: done.meetings_deleted,
            audit_events_deleted: done.audit_events_deleted,
        }))
    }

    async fn create_meeting(
        &self,
        request: Request<pb::CreateMeetingRequest>,
    ) -> Result<Response<pb::CreateMeetingResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let meeting = req.meeting.ok_or_else(|| ApiError::invalid("meeting", "is required"))?;
        let input = CreateMeetingInput {
            meeting: meeting_input(meeting)?,
            allow_conflicts: req.allow_conflicts,
            request_id: req.request_id,
        };
        let (meeting, _) = self.0.create_meeting(&caller, input).await?;
        Ok(Response::new(pb::CreateMeetingResponse {
            meeting: Some(meeting_to_pb(&meeting)),
        }))
    }

    async fn get_meeting(
        &self,
        request: Request<pb::GetMeetingRequest>,
    ) -> Result<Response<pb::GetMeetingResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let meeting = self.0.get_meeting(&caller, &req.name).await?;
        Ok(Response::new(pb::GetMeetingResponse {
            meeting: Some(meeting_to_pb(&meeting)),
        }))
    }

    async fn update_meeting(
        &self,
        request: Request<pb::UpdateMeetingRequest>,
    ) -> Result<Response<pb::UpdateMeetingResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let meeting = req.meeting.ok_or_else(|| ApiError::invalid("meeting", "is required"))?;
        let name = meeting.name.clone();
        let input = UpdateMeetingInput {
            name,
            meeting: meeting_input(meeting)?,
            update_mask: req.update_mask.map(|m| m.paths).unwrap_or_default(),
            allow_conflicts: req.allow_conflicts,
        };
        let meeting = self.0.update_meeting(&caller, input).await?;
        Ok(Response::new(pb::UpdateMeetingResponse {
            meeting: Some(meeting_to_pb(&meeting)),
        }))
    }

    async fn cancel_meeting(
        &self,
        request: Request<pb::CancelMeetingRequest>,
    ) -> Result<Response<pb::CancelMeetingResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let meeting = self.0.cancel_meeting(&caller, &req.name).await?;
        Ok(Response::new(pb::CancelMeetingResponse {
            meeting: Some(meeting_to_pb(&meeting)),
        }))
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminApi {
    async fn list_connections(
        &self,
        request: Request<pb::AdminListConnectionsRequest>,
    ) -> Result<Response<pb::AdminListConnectionsResponse>, Status> {
        // The auth middleware already required the admin role for this service.
        let caller = caller(&request)?;
        let req = request.into_inner();
        let input = AdminListInput {
            page_size: req.page_size,
            page_token: req.page_token,
            ..admin_filters(req.user_id, req.provider, req.state)?
        };
        let page = self.0.admin_list_connections(&caller, input).await?;
        Ok(Response::new(pb::AdminListConnectionsResponse {
            connections: page
                .items
                .iter()
                .map(|c| admin_row_to_pb(&c.row, &c.calendars))
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let (start_time, end_time) = start_and_end(req.start_time, req.end_time)?;
        let page = self
            .0
            .list_audit_events(
                &caller,
                crate::admin::AuditListInput {
                    actor: req.actor,
                    user_id: req.user_id,
                    action: req.action,
                    start_time,
                    end_time,
                    page_size: req.page_size,
                    page_token: req.page_token,
                },
            )
            .await?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            audit_events: page.items.iter().map(audit_event_to_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    type ExportConnectionsStream = ExportConnectionsStream;

    async fn export_connections(
        &self,
        request: Request<pb::ExportConnectionsRequest>,
    ) -> Result<Response<ExportConnectionsStream>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let input = admin_filters(req.user_id, req.provider, req.state)?;
        let stream = self.0.export_connections(&caller, input).await?.map(|batch| {
            batch
                .map(|batch| pb::ExportConnectionsResponse {
                    connections: batch.iter().map(|c| admin_row_to_pb(&c.row, &c.calendars)).collect(),
                })
                .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn revoke_connection(
        &self,
        request: Request<pb::AdminRevokeConnectionRequest>,
    ) -> Result<Response<pb::AdminRevokeConnectionResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let row = self
            .0
            .admin_revoke_connection(&caller, &req.user_id, &req.connection)
            .await?;
        Ok(Response::new(pb::AdminRevokeConnectionResponse {
            connection: Some(admin_row_to_pb(&row, &[])),
        }))
    }
}
