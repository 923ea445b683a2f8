//! The sync engine against the provider sandbox and a real PostgreSQL:
//! initial, incremental and convergent full syncs, resumption, throttling,
//! the window's edges, TTL cleanup and revocation.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] functions

use std::sync::Arc;

use chrono::{Duration, DurationRound as _, Utc};
use juy_domain::{Clock as _, Provider};
use juy_integration_tests::TestServer;
use juy_integration_tests::providers::sandbox_env;
use juy_integration_tests::sync::{self, clock_now, link_oauth, stored_events, sync_due};
use juy_sandbox::{Frequency, Recurrence, RunningSandbox, Sandbox};
use juy_sync::{RunOutcome, SyncConfig};
use serde_json::json;

const GOOGLE: &str = "google-sub-ada";
const GOOGLE_CAL: &str = "ada@gmail.test";
const MS: &str = "ms-id-ada";
const MS_CAL: &str = "AAMkCal1";

async fn sandbox() -> (Sandbox, RunningSandbox) {
    let sandbox = Sandbox::new();
    sandbox.add_account(juy_sandbox::Provider::Google, GOOGLE, "ada@gmail.test");
    sandbox.add_google_calendar(GOOGLE, GOOGLE_CAL, "Ada", "owner", true);
    sandbox.add_account(juy_sandbox::Provider::Microsoft, MS, "ada@outlook.test");
    sandbox.add_graph_calendar(MS, MS_CAL, "Calendar", true, true);
    let running = juy_sandbox::start(sandbox.clone()).await.unwrap();
    (sandbox, running)
}

fn google_event(id: &str, start: chrono::DateTime<Utc>) -> serde_json::Value {
    json!({
        "id": id,
        "summary": format!("event {id}"),
        "start": {"dateTime": start.to_rfc3339(), "timeZone": "UTC"},
        "end": {"dateTime": (start + Duration::minutes(30)).to_rfc3339(), "timeZone": "UTC"},
    })
}

fn graph_event(id: &str, start: chrono::DateTime<Utc>) -> serde_json::Value {
    let fmt = |at: chrono::DateTime<Utc>| at.format("%Y-%m-%dT%H:%M:%S.0000000").to_string();
    json!({
        "id": id,
        "subject": format!("event {id}"),
        "start": {"dateTime": fmt(start), "timeZone": "UTC"},
        "end": {"dateTime": fmt(start + Duration::minutes(30)), "timeZone": "UTC"},
    })
}

fn small_pages() -> SyncConfig {
    SyncConfig {
        inline_retry_max: std::time::Duration::from_secs(3),
        ..SyncConfig::default()
    }
}

#[tokio::test]
async fn google_initial_then_incremental_sync_matches_the_provider() {
    let (sandbox, running) = sandbox().await;
    let server = TestServer::start_with(sandbox_env(&running)).await;
    let token = sandbox.mint_access_token(GOOGLE);
    let linked = link_oauth(&server, "ada", Provider::Google, "ada@gmail.test", &token, &[(GOOGLE_CAL, "Ada", true)]).await;
    let calendar = linked.calendars[GOOGLE_CAL];
    let base = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    for n in 0..30 {
        sandbox.put_google_event(GOOGLE_CAL, google_event(&format!("ev{n:03}"), base + Duration::hours(n)));
    }
    sandbox.put_google_recurring_event(
        GOOGLE_CAL,
        "series1",
        Recurrence {
            first_start: base,
            duration: Duration::minutes(15),
            freq: Frequency::Daily,
            count: 5,
        },
        json!({"summary": "standup"}),
    );
    // Outside the window: never stored.
    sandbox.put_google_event(GOOGLE_CAL, google_event("far", base + Duration::days(500)));

    let clock = clock_now();
    let engine = sync::engine(&server, clock.clone(), small_pages());
    let outcomes = sync_due(&engine, "w1").await;
    assert!(matches!(outcomes.as_slice(), [RunOutcome::Synced { .. }]), "{outcomes:?}");
    let rows = stored_events(&server, &linked.user, calendar).await;
    assert_eq!(rows.len(), 35, "{:?}", rows.keys().collect::<Vec<_>>());
    assert!(!rows.contains_key("far"));

    // Changes: one moved, one deleted, one added, one moved out of the window.
    sandbox.put_google_event(GOOGLE_CAL, google_event("ev000", base + Duration::days(2)));
    sandbox.delete_google_event(GOOGLE_CAL, "ev001");
    sandbox.put_google_event(GOOGLE_CAL, google_event("new", base + Duration::hours(3)));
    sandbox.put_google_event(GOOGLE_CAL, google_event("ev002", base + Duration::days(400)));
    clock.advance(Duration::seconds(1));
    sync::make_due(&server, &linked.user, calendar, clock.now()).await;
    sandbox.clear_log();
    let outcomes = sync_due(&engine, "w1").await;
    let [RunOutcome::Synced { stats, .. }] = outcomes.as_slice() else {
        panic!("{outcomes:?}");
    };
    assert_eq!(stats.full, None, "an incremental round");
    let rows = stored_events(&server, &linked.user, calendar).await;
    assert_eq!(rows.len(), 34);
    assert_eq!(rows["ev000"], base + Duration::days(2));
    assert!(!rows.contains_key("ev001") && !rows.contains_key("ev002"));
    assert!(rows.contains_key("new"));
    let list_requests = sandbox
        .request_log()
        .iter()
        .filter(|r| r.path.ends_with("/events") && r.method == "GET")
        .count();
    assert_eq!(list_requests, 1, "one page of changes");
    server.stop().await;
}

#[tokio::test]
async fn graph_sync_then_an_expired_delta_converges_by_a_full_resync() {
    let (sandbox, running) = sandbox().await;
    let server = TestServer::start_with(sandbox_env(&running)).await;
    let token = sandbox.mint_access_token(MS);
    let linked = link_oauth(&server, "ada", Provider::Microsoft, "ada@outlook.test", &token, &[(MS_CAL, "Calendar", true)]).await;
    let calendar = linked.calendars[MS_CAL];
    let base = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    for n in 0..20 {
        sandbox.put_graph_event(MS_CAL, graph_event(&format!("g{n:03}"), base + Duration::hours(n)));
    }
    let clock = clock_now();
    let engine = sync::engine(&server, clock.clone(), small_pages());
    sync_due(&engine, "w1").await;
    assert_eq!(stored_events(&server, &linked.user, calendar).await.len(), 20);

    // The delta token expires while events change: the full resync deletes what is gone and duplicates nothing.
    sandbox.delete_graph_event(MS_CAL, "g000");
    sandbox.put_graph_event(MS_CAL, graph_event("g001", base + Duration::days(3)));
    sandbox.put_graph_event(MS_CAL, graph_event("h000", base + Duration::hours(1)));
    sandbox.expire_graph_delta_tokens();
    clock.advance(Duration::seconds(1));
    sync::make_due(&server, &linked.user, calendar, clock.now()).await;
    let outcomes = sync_due(&engine, "w1").await;
    let [RunOutcome::Synced { stats, .. }] = outcomes.as_slice() else {
        panic!("{outcomes:?}");
    };
    assert_eq!(stats.full, Some(juy_sync::cursor::FullReason::ResyncRequired));
    let rows = stored_events(&server, &linked.user, calendar).await;
    assert_eq!(rows.len(), 20, "{:?}", rows.keys().collect::<Vec<_>>());
    assert!(!rows.contains_key("g000"));
    assert_eq!(rows["g001"], base + Duration::days(3));
    assert!(rows.contains_key("h000"));
    let _ = Arc::clone(&engine);
    server.stop().await;
}
