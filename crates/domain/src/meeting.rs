//! Meetings organised in Juy, and the state of their write-back to an
//! external calendar.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{CalendarId, MeetingId, UserId, named_enum};

/// Whether a meeting takes place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeetingStatus {
    /// It takes place.
    #[default]
    Scheduled,
    /// The organiser cancelled it.
    Cancelled,
}

named_enum!(MeetingStatus, "meeting status", {
    Scheduled => "scheduled",
    Cancelled => "cancelled",
});

/// Where a meeting's write-back to the organiser's external calendar stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not written to any external calendar (not asked for).
    #[default]
    NotRequested,
    /// A change waits to be written (or is being retried).
    Pending,
    /// The provider has the latest version.
    Delivered,
    /// Given up on; `last_error` says why (e.g. the calendar is no longer in Write mode).
    Failed,
}

named_enum!(DeliveryState, "delivery state", {
    NotRequested => "not_requested",
    Pending => "pending",
    Delivered => "delivered",
    Failed => "failed",
});

/// How a meeting's copy in an external calendar is doing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delivery {
    /// Where it stands.
    pub state: DeliveryState,
    /// The provider's id of the event, once created (CalDAV: its URL).
    pub external_id: Option<String>,
    /// Attempts made for the version being delivered.
    pub attempts: i32,
    /// Why the last attempt failed (never event text or secrets).
    pub last_error: Option<String>,
    /// When the provider last confirmed a write.
    pub delivered_at: Option<DateTime<Utc>>,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// A meeting organised in Juy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meeting {
    /// Our id for it.
    pub id: MeetingId,
    /// The organiser.
    pub organizer: UserId,
    /// Title (stored encrypted).
    pub title: String,
    /// Description (stored encrypted).
    pub description: Option<String>,
    /// Location (stored encrypted).
    pub location: Option<String>,
    /// Email addresses written to the provider's event as attendees (stored encrypted).
    pub attendee_emails: Vec<String>,
    /// Start instant.
    pub start: DateTime<Utc>,
    /// End instant, after `start`.
    pub end: DateTime<Utc>,
    /// The IANA zone it is shown in.
    pub time_zone: String,
    /// The Juy users invited.
    pub invitees: Vec<UserId>,
    /// Whether it takes place.
    pub status: MeetingStatus,
    /// Raised by every change.
    pub version: i32,
    /// The organiser's Write-mode calendar it is written to, when asked.
    pub calendar_id: Option<CalendarId>,
    /// The write-back.
    pub delivery: Delivery,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl Meeting {
    /// The provider-side idempotency key derived from the meeting id: its 128
    /// bits in lowercase base32hex (`0-9a-v`, 26 characters), which Google
    /// accepts as an event id, Graph as a `transactionId` and CalDAV as a
    /// resource name. A retried create, or one after a crash between the
    /// provider's answer and our commit, names the same event.
    pub fn provider_key(&self) -> String {
        provider_key(self.id)
    }
}

/// See [`Meeting::provider_key`].
pub fn provider_key(id: MeetingId) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let bits = id.0.as_u128();
    (0..26)
        .rev()
        .map(|i| ALPHABET[((bits >> (i * 5)) & 31) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_keys_are_stable_distinct_and_in_googles_alphabet() {
        let a = MeetingId(uuid::Uuid::from_u128(0));
        let b = MeetingId(uuid::Uuid::from_u128(u128::MAX));
        assert_eq!(provider_key(a), "0".repeat(26));
        assert_eq!(provider_key(b).len(), 26);
        assert_ne!(provider_key(a), provider_key(b));
        let id = MeetingId::new();
        let key = provider_key(id);
        assert_eq!(key, provider_key(id));
        assert!(key.chars().all(|c| c.is_ascii_digit() || ('a'..='v').contains(&c)));
    }
}
