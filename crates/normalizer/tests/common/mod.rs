//! Shared fixtures of the normaliser's tests.
#![allow(dead_code)] // each test file uses a part

use chrono::{DateTime, Utc};
use juy_domain::{CalendarEvent, CalendarId, Provider, Reminder, ReminderMethod, UserId};
use juy_normalizer::{CalendarContext, Change, Normalized};

/// A calendar of Alice's in Berlin, with a 10-minute pop-up default reminder.
pub fn ctx(provider: Provider) -> CalendarContext {
    CalendarContext {
        user_id: UserId::new("user-alice").expect("a valid user id"),
        calendar_id: CalendarId::new(),
        provider,
        time_zone: Some("Europe/Berlin".to_owned()),
        default_reminders: vec![Reminder {
            minutes_before: 10,
            method: ReminderMethod::Popup,
        }],
        self_emails: vec!["alice@example.com".to_owned()],
    }
}

pub fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("an RFC 3339 instant")
        .with_timezone(&Utc)
}

/// The one upserted event of a result that must hold exactly that.
pub fn only_event(result: &Normalized) -> &CalendarEvent {
    assert!(
        result.rejected.is_empty(),
        "unexpected rejections: {:?}",
        result.rejected
    );
    match result.changes.as_slice() {
        [Change::Upsert(event)] => event,
        other => panic!("expected one upsert, got {other:?}"),
    }
}

/// The upserted events, in order.
pub fn events(result: &Normalized) -> Vec<&CalendarEvent> {
    result
        .changes
        .iter()
        .filter_map(|change| match change {
            Change::Upsert(event) => Some(event.as_ref()),
            Change::Delete { .. } => None,
        })
        .collect()
}

/// Asserts that no rejection quotes any of `secrets` (titles, emails, ...).
pub fn assert_rejections_quote_nothing(result: &Normalized, secrets: &[&str]) {
    for rejected in &result.rejected {
        let shown = format!("{} {:?}", rejected.reason, rejected);
        for secret in secrets {
            assert!(!shown.contains(secret), "rejection {shown} quotes {secret}");
        }
    }
}
