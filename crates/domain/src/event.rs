//! The one normalised event every provider's payload becomes.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::{CalendarId, EventId, Provider, UserId, named_enum};

/// Whether an event takes place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// It takes place.
    #[default]
    Confirmed,
    /// It may take place.
    Tentative,
    /// It was cancelled.
    Cancelled,
}

named_enum!(EventStatus, "event status", {
    Confirmed => "confirmed",
    Tentative => "tentative",
    Cancelled => "cancelled",
});

/// Whether an event blocks time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transparency {
    /// It blocks time (busy).
    #[default]
    Opaque,
    /// It does not block time (free).
    Transparent,
}

named_enum!(Transparency, "transparency", {
    Opaque => "opaque",
    Transparent => "transparent",
});

/// The calendar owner's answer to an invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseStatus {
    /// Not an invitation, or the provider does not say.
    #[default]
    None,
    /// The owner organises it.
    Organizer,
    /// Not answered yet.
    NeedsAction,
    /// Accepted.
    Accepted,
    /// Tentatively accepted.
    Tentative,
    /// Declined.
    Declined,
}

named_enum!(ResponseStatus, "response status", {
    None => "none",
    Organizer => "organizer",
    NeedsAction => "needs_action",
    Accepted => "accepted",
    Tentative => "tentative",
    Declined => "declined",
});

/// What kind of time an event marks, for free/busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An ordinary event.
    #[default]
    Default,
    /// Out of office (Google `outOfOffice`, Graph `showAs: oof`).
    OutOfOffice,
    /// Focus time.
    FocusTime,
    /// Working elsewhere (Google `workingLocation`, Graph `workingElsewhere`).
    WorkingElsewhere,
}

named_enum!(EventKind, "event kind", {
    Default => "default",
    OutOfOffice => "out_of_office",
    FocusTime => "focus_time",
    WorkingElsewhere => "working_elsewhere",
});

/// How a reminder reaches the user at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReminderMethod {
    /// A pop-up or push alert.
    #[default]
    Popup,
    /// An email.
    Email,
}

named_enum!(ReminderMethod, "reminder method", {
    Popup => "popup",
    Email => "email",
});

/// A reminder some minutes before an event starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reminder {
    /// Minutes before the start (negative: after it).
    pub minutes_before: i32,
    /// How the provider would deliver it.
    pub method: ReminderMethod,
}

/// A participant of an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Attendee {
    /// Email address.
    pub email: String,
    /// Display name, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Their answer.
    #[serde(default)]
    pub response: ResponseStatus,
    /// Whether this attendee is the calendar's owner.
    #[serde(default)]
    pub is_self: bool,
    /// Whether attendance is optional.
    #[serde(default)]
    pub optional: bool,
}

/// The dates of an all-day event; `end` is exclusive (a one-day event on
/// 5 January has `start = 2026-01-05`, `end = 2026-01-06`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AllDayDates {
    /// The first day.
    pub start: NaiveDate,
    /// The day after the last day.
    pub end: NaiveDate,
}

/// One event (or one occurrence of a recurring series), normalised from any
/// provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarEvent {
    /// Our id for it.
    pub id: EventId,
    /// The owner of the calendar it is on.
    pub user_id: UserId,
    /// The calendar it is on.
    pub calendar_id: CalendarId,
    /// Where that calendar lives.
    pub provider: Provider,
    /// The provider's id of the event (for CalDAV: the resource href plus recurrence id).
    pub external_id: String,
    /// The iCalendar UID, shared by every occurrence of a series.
    pub ical_uid: Option<String>,
    /// Title (stored encrypted).
    pub title: Option<String>,
    /// Location (stored encrypted).
    pub location: Option<String>,
    /// Description (stored encrypted).
    pub description: Option<String>,
    /// Start instant (UTC). For all-day events, the start of the first day in the event's own zone,
    /// else the calendar's zone, else UTC (free/busy recomputes all-day time in the owner's zone).
    pub start: DateTime<Utc>,
    /// End instant (UTC), after `start`.
    pub end: DateTime<Utc>,
    /// The event's own IANA zone, when it has one.
    pub time_zone: Option<String>,
    /// Set for all-day events: the dates, which are what counts for them.
    pub all_day: Option<AllDayDates>,
    /// Whether it takes place.
    pub status: EventStatus,
    /// Whether it blocks time.
    pub transparency: Transparency,
    /// The owner's answer.
    pub self_response: ResponseStatus,
    /// What kind of time it marks.
    pub kind: EventKind,
    /// The organiser (stored encrypted).
    pub organizer: Option<Attendee>,
    /// The attendees (stored encrypted).
    pub attendees: Vec<Attendee>,
    /// For an occurrence: the provider's id of its series.
    pub series_id: Option<String>,
    /// For an occurrence: its original start (iCalendar RECURRENCE-ID).
    pub instance_start: Option<DateTime<Utc>>,
    /// Reminders set on it.
    pub reminders: Vec<Reminder>,
    /// The provider's version tag.
    pub etag: Option<String>,
    /// When the provider last changed it.
    pub updated: Option<DateTime<Utc>>,
}
