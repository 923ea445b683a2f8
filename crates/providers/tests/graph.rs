//! `GraphCalendarClient` against the sandbox over real HTTP: delta rounds in
//! maxpagesize pages, delta links, syncStateNotFound, token refresh on 401,
//! throttling, broken answers, transactionId creates, etag-guarded updates and
//! deletes, occurrences of series.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use juy_domain::TimeRange;
use juy_providers::graph::{GraphCalendarClient, GraphOptions};
use juy_providers::{CalendarProvider, EventWrite, ProviderError, RemoteCalendar};
use juy_sandbox::{Fault, Frequency, Provider, Recurrence, RunningSandbox, Sandbox, start};
use serde_json::{Value, json};

mod sandbox_support;
use sandbox_support::*;

const ACCOUNT: &str = "ms-1";
const CAL: &str = "AAMkAGI2-cal=";

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, day, hour, 0, 0).unwrap()
}

fn january() -> TimeRange {
    TimeRange::new(at(1, 0), Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap()).unwrap()
}

fn event(id: &str, day: u32) -> Value {
    json!({"id": id, "subject": format!("event {id}"), "isAllDay": false, "showAs": "busy",
        "start": {"dateTime": format!("2026-01-{day:02}T09:00:00.0000000"), "timeZone": "UTC"},
        "end": {"dateTime": format!("2026-01-{day:02}T10:00:00.0000000"), "timeZone": "UTC"}})
}

fn write(title: &str) -> EventWrite {
    EventWrite {
        title: title.into(),
        description: Some("agenda".into()),
        location: Some("room 4".into()),
        start: at(12, 9),
        end: at(12, 10),
        time_zone: "Europe/Berlin".into(),
        attendees: vec!["ann@example.com".into()],
    }
}

struct Setup {
    sb: RunningSandbox,
    auth: Arc<SandboxAuthorizer>,
    client: GraphCalendarClient,
}

async fn setup(events: usize, options: GraphOptions) -> Setup {
    let sandbox = Sandbox::new();
    sandbox.add_account(Provider::Microsoft, ACCOUNT, "bob@example.com");
    sandbox.add_graph_calendar(ACCOUNT, CAL, "Calendar", true, true);
    sandbox.add_graph_calendar(ACCOUNT, "AAMk-shared", "Shared", false, false);
    for i in 0..events {
        sandbox.put_graph_event(CAL, event(&format!("ev{i:03}"), 1 + (i % 28) as u32));
    }
    let sb = start(sandbox).await.unwrap();
    let auth = SandboxAuthorizer::new(&sb.sandbox, ACCOUNT);
    let client = GraphCalendarClient::new(client(), &sb.graph_api_base(), auth.clone(), options).unwrap();
    Setup { sb, auth, client }
}

fn pages_of(size: u32) -> GraphOptions {
    GraphOptions {
        page_size: size,
        ..GraphOptions::default()
    }
}

#[tokio::test]
async fn a_delta_round_returns_every_event_once_in_utc_and_ends_with_the_delta_link() {
    let s = setup(12, pages_of(5)).await;
    s.sb.sandbox.put_graph_event(
        CAL,
        json!({"id": "feb", "start": {"dateTime": "2026-02-10T09:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2026-02-10T10:00:00", "timeZone": "UTC"}}),
    );
    let pages = pages(s.client.list_events(CAL, january())).await.unwrap();
    assert_eq!(pages.len(), 3, "maxpagesize=5 over 12 events");
    let listed = items(&pages);
    let mut ids = ids(&listed);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 12, "every event in the window exactly once");
    assert!(
        listed.iter().all(|e| e["start"]["timeZone"] == "UTC"),
        "outlook.timezone=UTC was asked for"
    );
    let delta = cursor(&pages);
    assert!(delta.contains("$deltatoken="), "{delta}");

    let log = s.sb.sandbox.request_log();
    assert_eq!(
        log[0].path,
        "/microsoft/v1.0/me/calendars/AAMkAGI2-cal%3D/calendarView/delta"
    );
    let query = log[0].query.clone().unwrap();
    assert!(query.contains("startDateTime=2026-01-01T00%3A00%3A00Z"), "{query}");
    assert!(
        log[1].query.clone().unwrap().starts_with("$skiptoken="),
        "nextLink followed verbatim"
    );
}

#[tokio::test]
async fn changes_bring_updates_and_removals_then_a_full_resync_once_the_token_expires() {
    let s = setup(3, pages_of(2)).await;
    let delta = cursor(&pages(s.client.list_events(CAL, january())).await.unwrap());

    s.client
        .update_event(CAL, "ev001", None, &write("moved"))
        .await
        .unwrap();
    s.client.delete_event(CAL, "ev002", None).await.unwrap();
    let changes = pages(s.client.changes(CAL, &delta)).await.unwrap();
    let changed = items(&changes);
    assert_eq!(ids(&changed), ["ev001"]);
    assert_eq!(changed[0]["subject"], "moved");
    assert_eq!(changed[0]["body"]["content"], "agenda");
    let removed: Vec<&String> = changes.iter().flat_map(|p| &p.removed).collect();
    assert_eq!(removed, ["ev002"]);
    let next = cursor(&changes);

    let quiet = pages(s.client.changes(CAL, &next)).await.unwrap();
    assert!(items(&quiet).is_empty() && quiet.iter().all(|p| p.removed.is_empty()));

    s.sb.sandbox.expire_graph_delta_tokens();
    let err = pages(s.client.changes(CAL, &cursor(&quiet))).await.unwrap_err();
    assert_eq!(err, ProviderError::FullResyncRequired);
    let err = pages(s.client.changes(CAL, "not a delta link")).await.unwrap_err();
    assert_eq!(err, ProviderError::FullResyncRequired);
    let err = pages(
        s.client
            .changes(CAL, "https://evil.example/v1.0/me/delta?$deltatoken=x"),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        ProviderError::FullResyncRequired,
        "a foreign link never gets our token"
    );
    assert!(
        s.sb.sandbox.request_log().iter().all(|r| r.bearer.is_some()),
        "every request carried the token"
    );
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_request_retried() {
    let s = setup(2, GraphOptions::default()).await;
    let stale = s.auth.token();
    s.sb.sandbox.advance(chrono::Duration::seconds(3601));
    let listed = items(&pages(s.client.list_events(CAL, january())).await.unwrap());
    assert_eq!(listed.len(), 2);
    assert_eq!(s.auth.rejections(), 1);
    let bearers: Vec<Option<String>> = s.sb.sandbox.request_log().into_iter().map(|r| r.bearer).collect();
    assert_eq!(bearers, [Some(stale), Some(s.auth.token())]);

    let stuck = SandboxAuthorizer::with_refresh(&s.sb.sandbox, ACCOUNT, false);
    let client =
        GraphCalendarClient::new(client(), &s.sb.graph_api_base(), stuck.clone(), GraphOptions::default()).unwrap();
    s.sb.sandbox.advance(chrono::Duration::seconds(3601));
    s.sb.sandbox.clear_log();
    assert_eq!(client.list_calendars().await.unwrap_err(), ProviderError::Unauthorized);
    assert_eq!(stuck.rejections(), 1);
    assert_eq!(s.sb.sandbox.request_log().len(), 2);
}

#[tokio::test]
async fn throttling_and_outages_are_retryable_with_the_providers_delay() {
    let s = setup(1, GraphOptions::default()).await;
    for (code, retry_after, expected) in [
        (429, Some(11), Some(Duration::from_secs(11))),
        (503, Some(1), Some(Duration::from_secs(1))),
        (504, None, None),
        (502, Some(5), None),
    ] {
        s.sb.sandbox
            .push_fault(Provider::Microsoft, Fault::Status { code, retry_after });
        let err = pages(s.client.list_events(CAL, january())).await.unwrap_err();
        assert_eq!(
            err,
            ProviderError::Retryable {
                status: code,
                retry_after: expected
            }
        );
    }
    // A 403 from Graph is not a rate limit.
    s.sb.sandbox.push_fault(
        Provider::Microsoft,
        Fault::Status {
            code: 403,
            retry_after: None,
        },
    );
    let err = s.client.list_calendars().await.unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { status: 403, .. }), "{err:?}");
}

#[tokio::test]
async fn broken_answers_are_malformed_and_slow_ones_time_out() {
    let s = setup(
        3,
        GraphOptions {
            timeout: Duration::from_millis(300),
            ..GraphOptions::default()
        },
    )
    .await;
    for fault in [Fault::TruncatedBody, Fault::MalformedBody] {
        s.sb.sandbox.push_fault(Provider::Microsoft, fault);
        let err = pages(s.client.list_events(CAL, january())).await.unwrap_err();
        assert!(matches!(err, ProviderError::Malformed(_)), "{err:?}");
    }
    let delta = cursor(&pages(s.client.list_events(CAL, january())).await.unwrap());
    s.sb.sandbox.push_fault(Provider::Microsoft, Fault::Latency(2_000));
    let err = pages(s.client.changes(CAL, &delta)).await.unwrap_err();
    let ProviderError::Network(message) = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("timed out"), "{message}");
    assert!(!message.contains("deltatoken"), "no query in errors: {message}");
}

#[tokio::test]
async fn calendars_are_listed_across_pages() {
    let s = setup(0, GraphOptions::default()).await;
    for i in 0..11 {
        s.sb.sandbox
            .add_graph_calendar(ACCOUNT, &format!("AAMk-extra-{i:02}"), "Extra", true, false);
    }
    let calendars = s.client.list_calendars().await.unwrap();
    assert_eq!(calendars.len(), 13, "Graph pages calendars by 10");
    assert_eq!(
        calendars[0],
        RemoteCalendar {
            id: CAL.into(),
            name: "Calendar".into(),
            color: Some("#d13438".into()),
            time_zone: None,
            is_primary: true,
            can_write: true,
        }
    );
    assert!(!calendars[1].can_write && !calendars[1].is_primary);
    let requests =
        s.sb.sandbox
            .request_log()
            .iter()
            .filter(|r| r.path.ends_with("/calendars"))
            .count();
    assert_eq!(requests, 2);
}

#[tokio::test]
async fn a_repeated_create_with_the_same_transaction_id_returns_the_first_event() {
    let s = setup(0, GraphOptions::default()).await;
    let first = s
        .client
        .create_event(CAL, "juvkey0001", &write("planning"))
        .await
        .unwrap();
    let again = s
        .client
        .create_event(CAL, "juvkey0001", &write("planning"))
        .await
        .unwrap();
    assert_eq!(again.external_id, first.external_id);
    assert_eq!(s.sb.sandbox.graph_event_count(CAL), 1);
    let other = s
        .client
        .create_event(CAL, "juvkey0002", &write("planning"))
        .await
        .unwrap();
    assert_ne!(other.external_id, first.external_id);
    assert_eq!(s.sb.sandbox.graph_event_count(CAL), 2);

    let stored = s.sb.sandbox.graph_event(&first.external_id).unwrap();
    assert_eq!(stored["subject"], "planning");
    assert_eq!(stored["transactionId"], "juvkey0001");
    assert_eq!(stored["body"], json!({"contentType": "text", "content": "agenda"}));
    assert_eq!(stored["location"]["displayName"], "room 4");
    assert_eq!(stored["start"]["dateTime"], "2026-01-12T09:00:00.0000000");
    assert_eq!(stored["start"]["timeZone"], "UTC");
    assert_eq!(stored["attendees"][0]["emailAddress"]["address"], "ann@example.com");
    assert!(first.etag.as_deref().unwrap().starts_with("W/\""));

    let err = s
        .client
        .create_event("AAMk-shared", "juvkey0003", &write("x"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProviderError::Rejected {
            status: 403,
            reason: "ErrorAccessDenied".into()
        }
    );
}

#[tokio::test]
async fn an_update_with_a_stale_etag_fails_and_a_delete_of_a_gone_event_succeeds() {
    let s = setup(0, GraphOptions::default()).await;
    let created = s.client.create_event(CAL, "juvkey0001", &write("one")).await.unwrap();
    let id = created.external_id.clone();
    let mut two = write("two");
    two.location = None;
    let updated = s
        .client
        .update_event(CAL, &id, created.etag.as_deref(), &two)
        .await
        .unwrap();
    assert_ne!(updated.etag, created.etag);
    let stored = s.sb.sandbox.graph_event(&id).unwrap();
    assert_eq!(stored["subject"], "two");
    assert_eq!(stored["location"]["displayName"], "", "cleared");

    let err = s
        .client
        .update_event(CAL, &id, created.etag.as_deref(), &write("three"))
        .await
        .unwrap_err();
    assert_eq!(err, ProviderError::PreconditionFailed);
    let err = s
        .client
        .delete_event(CAL, &id, created.etag.as_deref())
        .await
        .unwrap_err();
    assert_eq!(err, ProviderError::PreconditionFailed);
    let err = s
        .client
        .update_event(CAL, "AAMk-gone", None, &write("x"))
        .await
        .unwrap_err();
    assert_eq!(err, ProviderError::NotFound);

    s.client.delete_event(CAL, &id, updated.etag.as_deref()).await.unwrap();
    s.client.delete_event(CAL, &id, None).await.unwrap();
    assert_eq!(s.sb.sandbox.graph_event_count(CAL), 0);
}

#[tokio::test]
async fn series_come_as_occurrences_never_as_the_master() {
    let s = setup(0, pages_of(4)).await;
    s.sb.sandbox.put_graph_recurring_event(
        CAL,
        "AAMk-series",
        Recurrence {
            first_start: at(28, 8),
            duration: chrono::Duration::minutes(30),
            freq: Frequency::Daily,
            count: 7,
        },
        json!({"subject": "standup", "showAs": "busy"}),
    );
    s.sb.sandbox.put_graph_event(
        CAL,
        json!({"id": "AAMk-offsite", "subject": "offsite", "isAllDay": true,
            "start": {"dateTime": "2026-01-20T00:00:00.0000000", "timeZone": "UTC"},
            "end": {"dateTime": "2026-01-22T00:00:00.0000000", "timeZone": "UTC"}}),
    );
    let listed = items(&pages(s.client.list_events(CAL, january())).await.unwrap());
    let occurrences: Vec<&Value> = listed.iter().filter(|e| e["seriesMasterId"] == "AAMk-series").collect();
    // 28 to 31 January fall in the window.
    assert_eq!(occurrences.len(), 4, "{listed:?}");
    assert!(occurrences.iter().all(|e| e["type"] == "occurrence"));
    assert_eq!(occurrences[0]["start"]["dateTime"], "2026-01-28T08:00:00.0000000");
    assert_eq!(occurrences[0]["end"]["dateTime"], "2026-01-28T08:30:00.0000000");
    assert!(listed.iter().all(|e| e["type"] != "seriesMaster"), "never the master");
    let offsite = listed.iter().find(|e| e["id"] == "AAMk-offsite").unwrap();
    assert_eq!(offsite["isAllDay"], true);
    assert_eq!(offsite["start"]["dateTime"], "2026-01-20T00:00:00.0000000");
}
