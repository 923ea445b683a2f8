//! The Calendar Service's domain model: the normalised [`CalendarEvent`], the
//! ids of users, accounts, calendars and events, [`TimeRange`], [`Provider`]
//! and the small enums every other crate shares.
//!
//! This crate does no I/O at all (no SQL, no HTTP, no files) and knows nothing
//! of encryption or wire formats; it is the vocabulary the other crates speak.
#![forbid(unsafe_code)]

mod account;
mod clock;
mod event;
mod ids;
mod meeting;
mod range;

pub use account::{AccountStatus, Calendar, CalendarMode, ConnectedAccount, NotificationChannels, SyncStatus};
pub use clock::{Clock, FixedClock, SystemClock};
pub use event::{
    AllDayDates, Attendee, CalendarEvent, EventKind, EventStatus, Reminder, ReminderMethod, ResponseStatus,
    Transparency,
};
pub use ids::{AccountId, CalendarId, EventId, MeetingId, Provider, UserId};
pub use meeting::{Delivery, DeliveryState, Meeting, MeetingStatus, provider_key};
pub use range::TimeRange;

/// A value that does not fit the domain's rules, in the caller's terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A text value is not one of the known names of an enumeration.
    #[error("unknown {kind} `{value}`")]
    UnknownName {
        /// What was being parsed, e.g. `provider`.
        kind: &'static str,
        /// The value that was given.
        value: String,
    },
    /// A time range whose end is not after its start.
    #[error("the end of a time range must be after its start")]
    EmptyRange,
    /// A user id that is empty or too long.
    #[error("a user id must have 1 to {max} characters", max = UserId::MAX_LEN)]
    BadUserId,
}

/// Implements `as_str`, `Display` and `FromStr` for a fieldless enum with fixed names.
macro_rules! named_enum {
    ($ty:ident, $kind:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The stable lowercase name used in storage and on the wire.
            pub const fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::DomainError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    other => Err($crate::DomainError::UnknownName { kind: $kind, value: other.to_owned() }),
                }
            }
        }
    };
}
pub(crate) use named_enum;
