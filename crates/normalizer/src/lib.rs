//! Turns provider payloads into the one [`CalendarEvent`]:
//! Google Calendar v3 event resources ([`google`]), Microsoft Graph event
//! resources ([`graph`]) and iCalendar objects from CalDAV servers ([`ical`]).
//!
//! Every function here is pure: no I/O. An item that cannot be normalised is
//! returned as a [`Rejected`] with a reason that never quotes the item's text
//! (titles, descriptions, attendees are personal data); the rest of the input
//! is kept.

#![forbid(unsafe_code)]

pub mod google;
pub mod graph;
pub mod ical;
mod json;
pub mod zones;

use juy_domain::{CalendarEvent, CalendarId, Provider, Reminder, UserId};

/// What the normaliser needs to know about the calendar a payload came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarContext {
    /// The calendar's owner.
    pub user_id: UserId,
    /// Our id of the calendar.
    pub calendar_id: CalendarId,
    /// Where the calendar lives.
    pub provider: Provider,
    /// The calendar's IANA zone, when known: the zone of floating times and
    /// of all-day events' instants. `None` means UTC.
    pub time_zone: Option<String>,
    /// The calendar's default reminders (Google `defaultReminders`), used by
    /// events that say `useDefault`.
    pub default_reminders: Vec<Reminder>,
    /// The account owner's email addresses (lowercase), to find "self" among
    /// attendees where the payload has no `self` flag (Graph, iCalendar).
    pub self_emails: Vec<String>,
}

/// One change to apply to the stored copy of a calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Insert or replace the event with this `external_id`. The event's `id`
    /// is a fresh UUIDv7: the store keeps the existing row's id on upsert.
    Upsert(Box<CalendarEvent>),
    /// The event with this external id is gone (deleted or cancelled at the provider).
    Delete {
        /// The provider's id of the event.
        external_id: String,
    },
}

/// Why an item was skipped. Never quotes event text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// The payload is not the shape the provider documents (e.g. not an object, not iCalendar).
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// A required field is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field has a value that cannot be understood.
    #[error("invalid field `{field}`: {problem}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong, without the value's text.
        problem: String,
    },
    /// The event ends before it starts.
    #[error("the event ends before it starts")]
    EndsBeforeStart,
}

/// An item that could not be normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The provider's id of the item, when it could be read.
    pub external_id: Option<String>,
    /// Why.
    pub reason: RejectReason,
}

/// The result of normalising a page of items.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Normalized {
    /// The changes, in input order.
    pub changes: Vec<Change>,
    /// The items skipped, in input order.
    pub rejected: Vec<Rejected>,
}

impl Normalized {
    /// Appends another result.
    pub fn extend(&mut self, other: Normalized) {
        self.changes.extend(other.changes);
        self.rejected.extend(other.rejected);
    }

    /// Logs each rejected item (its id and reason, never its text) and returns how many there were.
    pub fn log_rejected(&self, ctx: &CalendarContext) -> usize {
        for rejected in &self.rejected {
            tracing::warn!(
                calendar_id = %ctx.calendar_id,
                provider = %ctx.provider,
                external_id = rejected.external_id.as_deref().unwrap_or("-"),
                reason = %rejected.reason,
                "skipped an event that could not be normalised"
            );
        }
        self.rejected.len()
    }
}
