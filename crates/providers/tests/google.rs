//! `GoogleCalendarClient` against the sandbox over real HTTP: short pages,
//! sync-token rounds, 410, token refresh on 401, throttling, broken answers,
//! idempotent creates, etag-guarded updates and deletes, recurring instances.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use futures::StreamExt as _;
use juy_domain::TimeRange;
use juy_providers::google::{GoogleCalendarClient, GoogleOptions};
use juy_providers::{CalendarProvider, EventWrite, ProviderError, RemoteCalendar};
use juy_sandbox::{Fault, Frequency, Provider, Recurrence, RunningSandbox, Sandbox, start};
use serde_json::{Value, json};

mod sandbox_support;
use sandbox_support::*;

const ACCOUNT: &str = "g-sub-1";
/// A real Google calendar id shape: `#` and `@` must be percent-encoded in paths.
const CAL: &str = "team#holidays@group.calendar.google.com";

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, day, hour, 0, 0).unwrap()
}

fn january() -> TimeRange {
    TimeRange::new(at(1, 0), Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap()).unwrap()
}

fn event(id: &str, day: u32) -> Value {
    json!({"id": id, "summary": format!("event {id}"),
        "start": {"dateTime": format!("2026-01-{day:02}T09:00:00Z")},
        "end": {"dateTime": format!("2026-01-{day:02}T10:00:00Z")}})
}

fn write(title: &str) -> EventWrite {
    EventWrite {
        title: title.into(),
        description: Some("agenda".into()),
        location: None,
        start: at(12, 9),
        end: at(12, 10),
        time_zone: "Europe/Berlin".into(),
        attendees: vec!["bob@example.com".into()],
    }
}

struct Setup {
    sb: RunningSandbox,
    auth: Arc<SandboxAuthorizer>,
    client: GoogleCalendarClient,
}

async fn setup(events: usize, options: GoogleOptions) -> Setup {
    let sandbox = Sandbox::new();
    sandbox.add_account(Provider::Google, ACCOUNT, "ann@example.com");
    sandbox.add_google_calendar(ACCOUNT, CAL, "Team", "owner", false);
    sandbox.add_google_calendar(ACCOUNT, "ann@example.com", "Ann", "owner", true);
    sandbox.add_google_calendar(ACCOUNT, "holidays@example.com", "Holidays", "reader", false);
    for i in 0..events {
        sandbox.put_google_event(CAL, event(&format!("ev{i:03}"), 1 + (i % 28) as u32));
    }
    let sb = start(sandbox).await.unwrap();
    let auth = SandboxAuthorizer::new(&sb.sandbox, ACCOUNT);
    let client = GoogleCalendarClient::new(client(), &sb.google_api_base(), auth.clone(), options).unwrap();
    Setup { sb, auth, client }
}

fn pages_of(size: u32) -> GoogleOptions {
    GoogleOptions {
        page_size: size,
        ..GoogleOptions::default()
    }
}

#[tokio::test]
async fn a_full_listing_returns_every_event_once_across_short_pages() {
    let s = setup(23, pages_of(5)).await;
    s.sb.sandbox.put_google_event(
        CAL,
        json!({"id": "february", "start": {"dateTime": "2026-02-10T09:00:00Z"},
            "end": {"dateTime": "2026-02-10T10:00:00Z"}}),
    );
    let pages = pages(s.client.list_events(CAL, january())).await.unwrap();
    let mut ids = ids(&items(&pages));
    assert_eq!(ids.len(), 23, "every event in the window, the February one not");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 23, "each exactly once");
    assert!(
        pages.len() > 23 / 5,
        "the sandbox sends short pages: {} pages",
        pages.len()
    );
    assert!(pages.iter().any(|p| p.items.len() < 5 && p.next_cursor.is_none()));
    cursor(&pages);
    let defaults = pages[0].calendar_defaults.clone().unwrap();
    assert_eq!(defaults["timeZone"], "Europe/Berlin");
    assert_eq!(defaults["defaultReminders"][0]["minutes"], 10);

    let log = s.sb.sandbox.request_log();
    let first = log.iter().find(|r| r.path.ends_with("/events")).unwrap();
    assert_eq!(
        first.path,
        "/google/calendar/v3/calendars/team%23holidays%40group.calendar.google.com/events"
    );
    let query = first.query.clone().unwrap();
    for part in ["singleEvents=true", "maxResults=5", "timeMin=2026-01-01T00%3A00%3A00Z"] {
        assert!(query.contains(part), "{query}");
    }
}

#[tokio::test]
async fn pages_are_fetched_only_when_asked_for() {
    let s = setup(12, pages_of(5)).await;
    let mut stream = s.client.list_events(CAL, january());
    let first = stream.next().await.unwrap().unwrap();
    assert!(!first.items.is_empty());
    drop(stream);
    let requests =
        s.sb.sandbox
            .request_log()
            .iter()
            .filter(|r| r.path.ends_with("/events"))
            .count();
    assert_eq!(requests, 1);
}

#[tokio::test]
async fn changes_bring_updates_and_deletions_then_a_full_resync_once_the_token_expires() {
    let s = setup(3, pages_of(2)).await;
    let full = pages(s.client.list_events(CAL, january())).await.unwrap();
    let token = cursor(&full);

    let etag = s.sb.sandbox.google_event(CAL, "ev001").unwrap()["etag"]
        .as_str()
        .unwrap()
        .to_owned();
    s.client
        .update_event(CAL, "ev001", Some(&etag), &write("moved"))
        .await
        .unwrap();
    s.client.delete_event(CAL, "ev002", None).await.unwrap();

    let changes = pages(s.client.changes(CAL, &token)).await.unwrap();
    let changed = items(&changes);
    assert_eq!(changed.len(), 2, "{changed:?}");
    let by_id = |id: &str| changed.iter().find(|e| e["id"] == id).unwrap().clone();
    assert_eq!(by_id("ev001")["summary"], "moved");
    assert_eq!(by_id("ev002")["status"], "cancelled");
    let next = cursor(&changes);
    let log = s.sb.sandbox.request_log();
    let incremental = log.iter().rfind(|r| r.path.ends_with("/events")).unwrap();
    assert!(
        !incremental.query.clone().unwrap().contains("timeMin"),
        "a sync token takes no window"
    );

    let quiet = pages(s.client.changes(CAL, &next)).await.unwrap();
    assert!(items(&quiet).is_empty());
    let after_quiet = cursor(&quiet);

    s.sb.sandbox.expire_google_sync_tokens();
    let err = pages(s.client.changes(CAL, &after_quiet)).await.unwrap_err();
    assert_eq!(err, ProviderError::FullResyncRequired);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_request_retried() {
    let s = setup(1, GoogleOptions::default()).await;
    let stale = s.auth.token();
    s.sb.sandbox.advance(chrono::Duration::seconds(3601));
    let calendars = s.client.list_calendars().await.unwrap();
    assert_eq!(calendars.len(), 3);
    assert_eq!(s.auth.rejections(), 1);
    let bearers: Vec<Option<String>> = s.sb.sandbox.request_log().into_iter().map(|r| r.bearer).collect();
    assert_eq!(bearers, [Some(stale), Some(s.auth.token())]);

    // A refresh that does not help: one retry, then Unauthorized.
    let stuck = SandboxAuthorizer::with_refresh(&s.sb.sandbox, ACCOUNT, false);
    let client = GoogleCalendarClient::new(
        client(),
        &s.sb.google_api_base(),
        stuck.clone(),
        GoogleOptions::default(),
    )
    .unwrap();
    s.sb.sandbox.advance(chrono::Duration::seconds(3601));
    s.sb.sandbox.clear_log();
    let err = pages(client.list_events(CAL, january())).await.unwrap_err();
    assert_eq!(err, ProviderError::Unauthorized);
    assert_eq!(stuck.rejections(), 1);
    assert_eq!(s.sb.sandbox.request_log().len(), 2);
}

#[tokio::test]
async fn throttling_and_outages_are_retryable_with_the_providers_delay() {
    let s = setup(1, GoogleOptions::default()).await;
    let cases = [
        (429, Some(7), Some(Duration::from_secs(7))),
        // The sandbox's Google faults carry reason rateLimitExceeded.
        (403, Some(2), Some(Duration::from_secs(2))),
        (503, None, None),
        (500, Some(9), None),
    ];
    for (code, retry_after, expected) in cases {
        s.sb.sandbox
            .push_fault(Provider::Google, Fault::Status { code, retry_after });
        let err = s.client.list_calendars().await.unwrap_err();
        assert_eq!(
            err,
            ProviderError::Retryable {
                status: code,
                retry_after: expected
            },
            "HTTP {code}"
        );
        assert!(err.is_retryable());
    }
}

#[tokio::test]
async fn broken_answers_are_malformed_and_slow_ones_time_out() {
    let s = setup(
        3,
        GoogleOptions {
            timeout: Duration::from_millis(300),
            ..GoogleOptions::default()
        },
    )
    .await;
    for fault in [Fault::TruncatedBody, Fault::MalformedBody] {
        s.sb.sandbox.push_fault(Provider::Google, fault);
        let err = pages(s.client.list_events(CAL, january())).await.unwrap_err();
        assert!(matches!(err, ProviderError::Malformed(_)), "{err:?}");
    }

    let full = pages(s.client.list_events(CAL, january())).await.unwrap();
    let token = cursor(&full);
    s.sb.sandbox.push_fault(Provider::Google, Fault::Latency(2_000));
    let err = pages(s.client.changes(CAL, &token)).await.unwrap_err();
    let ProviderError::Network(message) = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("timed out"), "{message}");
    assert!(
        !message.contains(&token) && !message.contains('?'),
        "no query in errors: {message}"
    );
    assert!(!message.contains(&s.auth.token()));
}

#[tokio::test]
async fn unknown_calendars_are_not_found_and_unreachable_hosts_are_network_errors() {
    let s = setup(0, GoogleOptions::default()).await;
    let err = pages(s.client.list_events("nobody@example.com", january()))
        .await
        .unwrap_err();
    assert_eq!(err, ProviderError::NotFound);

    let base = s.sb.google_api_base();
    s.sb.stop().await;
    let client = GoogleCalendarClient::new(client(), &base, s.auth.clone(), GoogleOptions::default()).unwrap();
    let err = client.list_calendars().await.unwrap_err();
    assert!(matches!(err, ProviderError::Network(_)), "{err:?}");
}

#[tokio::test]
async fn calendars_are_listed_across_pages_with_their_write_access() {
    let s = setup(0, pages_of(2)).await;
    let mut calendars = s.client.list_calendars().await.unwrap();
    calendars.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        calendars[0],
        RemoteCalendar {
            id: "ann@example.com".into(),
            name: "Ann".into(),
            color: Some("#1a73e8".into()),
            time_zone: Some("Europe/Berlin".into()),
            is_primary: true,
            can_write: true,
        }
    );
    assert_eq!(calendars[1].id, "holidays@example.com");
    assert!(!calendars[1].can_write, "reader");
    assert_eq!(calendars[2].id, CAL);
    let list_requests =
        s.sb.sandbox
            .request_log()
            .iter()
            .filter(|r| r.path.ends_with("calendarList"))
            .count();
    assert_eq!(list_requests, 2);
}

#[tokio::test]
async fn a_repeated_create_returns_the_first_event_instead_of_a_duplicate() {
    let s = setup(0, GoogleOptions::default()).await;
    let key = "juv0123456789abcdefuv";
    let first = s.client.create_event(CAL, key, &write("planning")).await.unwrap();
    let again = s.client.create_event(CAL, key, &write("planning")).await.unwrap();
    assert_eq!(first.external_id, key);
    assert_eq!(again.external_id, key);
    assert_eq!(again.etag, first.etag);
    assert_eq!(s.sb.sandbox.google_event_count(CAL), 1);

    let stored = s.sb.sandbox.google_event(CAL, key).unwrap();
    assert_eq!(stored["summary"], "planning");
    assert_eq!(stored["description"], "agenda");
    assert_eq!(stored["start"]["dateTime"], "2026-01-12T09:00:00Z");
    assert_eq!(stored["start"]["timeZone"], "Europe/Berlin");
    assert_eq!(stored["attendees"][0]["email"], "bob@example.com");
    let inserts: Vec<_> =
        s.sb.sandbox
            .request_log()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect();
    assert!(inserts.iter().all(|r| r.query.as_deref() == Some("sendUpdates=none")));

    let err = s.client.create_event(CAL, "UPPER-case", &write("x")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { status: 400, .. }), "{err:?}");
    let err = s
        .client
        .create_event("holidays@example.com", "abcdef0123", &write("x"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProviderError::Rejected {
            status: 403,
            reason: "requiredAccessLevel".into()
        }
    );
}

#[tokio::test]
async fn an_update_with_a_stale_etag_fails_and_a_delete_of_a_gone_event_succeeds() {
    let s = setup(0, GoogleOptions::default()).await;
    let created = s.client.create_event(CAL, "abcde12345", &write("one")).await.unwrap();
    let mut two = write("two");
    two.description = None;
    let updated = s
        .client
        .update_event(CAL, "abcde12345", created.etag.as_deref(), &two)
        .await
        .unwrap();
    assert_ne!(updated.etag, created.etag);
    let stored = s.sb.sandbox.google_event(CAL, "abcde12345").unwrap();
    assert_eq!(stored["summary"], "two");
    assert!(stored.get("description").is_none(), "cleared");

    let err = s
        .client
        .update_event(CAL, "abcde12345", created.etag.as_deref(), &write("three"))
        .await
        .unwrap_err();
    assert_eq!(err, ProviderError::PreconditionFailed);
    let err = s
        .client
        .delete_event(CAL, "abcde12345", created.etag.as_deref())
        .await
        .unwrap_err();
    assert_eq!(err, ProviderError::PreconditionFailed);
    let err = s
        .client
        .update_event(CAL, "nosuchevent", None, &write("x"))
        .await
        .unwrap_err();
    assert_eq!(err, ProviderError::NotFound);

    s.client
        .delete_event(CAL, "abcde12345", updated.etag.as_deref())
        .await
        .unwrap();
    s.client.delete_event(CAL, "abcde12345", None).await.unwrap();
    s.client.delete_event(CAL, "neverexisted", None).await.unwrap();
    assert_eq!(s.sb.sandbox.google_event_count(CAL), 0);

    // A retried create whose first attempt was since deleted cannot bring it back.
    let err = s
        .client
        .create_event(CAL, "abcde12345", &write("one"))
        .await
        .unwrap_err();
    assert_eq!(err, ProviderError::AlreadyExists);
}

#[tokio::test]
async fn recurring_series_are_listed_as_instances_and_all_day_events_as_dates() {
    let s = setup(0, pages_of(3)).await;
    s.sb.sandbox.put_google_recurring_event(
        CAL,
        "standup",
        Recurrence {
            first_start: at(5, 9),
            duration: chrono::Duration::minutes(15),
            freq: Frequency::Weekly,
            count: 10,
        },
        json!({"summary": "standup"}),
    );
    s.sb.sandbox.put_google_event(
        CAL,
        json!({"id": "offsite", "summary": "offsite", "start": {"date": "2026-01-20"}, "end": {"date": "2026-01-22"}}),
    );
    let listed = items(&pages(s.client.list_events(CAL, january())).await.unwrap());
    let instances: Vec<&Value> = listed.iter().filter(|e| e["recurringEventId"] == "standup").collect();
    // 5, 12, 19 and 26 January fall in the window.
    assert_eq!(instances.len(), 4, "{listed:?}");
    assert_eq!(instances[0]["id"], "standup_20260105T090000Z");
    assert_eq!(instances[0]["originalStartTime"]["dateTime"], "2026-01-05T09:00:00Z");
    assert_eq!(instances[3]["start"]["dateTime"], "2026-01-26T09:00:00Z");
    assert_eq!(instances[3]["end"]["dateTime"], "2026-01-26T09:15:00Z");
    assert!(instances.iter().all(|e| e.get("recurrence").is_none()));
    assert!(listed.iter().all(|e| e["id"] != "standup"), "never the master");
    let offsite = listed.iter().find(|e| e["id"] == "offsite").unwrap();
    assert_eq!(offsite["start"]["date"], "2026-01-20");
}
