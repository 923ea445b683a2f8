//! Push end to end, with the server's own workers: a synced Google or
//! Microsoft calendar gets a channel pointing at the server's webhook; a
//! change at the provider → notification → verified → the calendar is due
//! and a worker is woken → the change is in the store. And "sync now"
//! through the API runs a job to its end.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] functions

use std::time::Duration as StdDuration;

use chrono::{Duration, DurationRound as _, Utc};
use juy_domain::Provider;
use juy_integration_tests::providers::sandbox_env;
use juy_integration_tests::sync::{link_oauth, server_with_push, stored_events};
use juy_integration_tests::{TestServer, http, token};
use juy_sandbox::Sandbox;
use serde_json::json;

const GOOGLE: &str = "google-sub-ada";
const GOOGLE_CAL: &str = "ada@gmail.test";
const MS: &str = "ms-id-ada";
const MS_CAL: &str = "AAMkCal1";

/// Polls `check` every 50 ms for up to 20 s (a deadline for a hung test, not a speed assertion).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn google_event(id: &str, start: chrono::DateTime<Utc>) -> serde_json::Value {
    json!({
        "id": id,
        "summary": "private title",
        "start": {"dateTime": start.to_rfc3339(), "timeZone": "UTC"},
        "end": {"dateTime": (start + Duration::minutes(30)).to_rfc3339(), "timeZone": "UTC"},
    })
}

#[tokio::test]
async fn a_google_notification_brings_the_change_in_without_waiting_for_a_poll() {
    let sandbox = Sandbox::new();
    sandbox.add_account(juy_sandbox::Provider::Google, GOOGLE, "ada@gmail.test");
    sandbox.add_google_calendar(GOOGLE, GOOGLE_CAL, "Ada", "owner", true);
    let base = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    sandbox.put_google_event(GOOGLE_CAL, google_event("first", base));
    let running = juy_sandbox::start(sandbox.clone()).await.unwrap();
    let server = server_with_push(&running).await;
    let access = sandbox.mint_access_token(GOOGLE);
    let linked = link_oauth(
        &server,
        "ada",
        Provider::Google,
        "ada@gmail.test",
        &access,
        &[(GOOGLE_CAL, "Ada", true)],
    )
    .await;
    let calendar = linked.calendars[GOOGLE_CAL];
    server.wake_sync();
    // The first sync is due at once (the worker polls once at start); the channel follows it.
    eventually("the first sync and its channel", || async {
        stored_events(&server, &linked.user, calendar)
            .await
            .contains_key("first")
            && sandbox
                .push_watches()
                .iter()
                .any(|w| w.calendar.as_deref() == Some(GOOGLE_CAL))
    })
    .await;

    // The worker polls once a minute: only the notification can bring this in quickly.
    sandbox.put_google_event(GOOGLE_CAL, google_event("second", base + Duration::hours(2)));
    eventually("the pushed change", || async {
        stored_events(&server, &linked.user, calendar)
            .await
            .contains_key("second")
    })
    .await;
    let deliveries = sandbox.push_deliveries();
    assert!(deliveries.iter().any(|d| d.accepted()), "{deliveries:?}");
    // Freshness shows the channel's expiry.
    let listed: serde_json::Value = http()
        .get(server.rest("/v1/calendar/calendars"))
        .bearer_auth(token("ada", &[]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let watch_expiry = sandbox.push_watches()[0].expires_at;
    let shown = listed.to_string();
    assert!(shown.contains("push_channel_expire_time"), "{shown}");
    assert!(
        shown.contains(&watch_expiry.format("%Y-%m-%dT%H:%M").to_string()),
        "{shown} lacks {watch_expiry}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_graph_subscription_is_validated_and_its_notifications_sync() {
    let sandbox = Sandbox::new();
    sandbox.add_account(juy_sandbox::Provider::Microsoft, MS, "ada@outlook.test");
    sandbox.add_graph_calendar(MS, MS_CAL, "Calendar", true, true);
    let running = juy_sandbox::start(sandbox.clone()).await.unwrap();
    let server = server_with_push(&running).await;
    let access = sandbox.mint_access_token(MS);
    let linked = link_oauth(
        &server,
        "ada",
        Provider::Microsoft,
        "ada@outlook.test",
        &access,
        &[(MS_CAL, "Calendar", true)],
    )
    .await;
    let calendar = linked.calendars[MS_CAL];
    server.wake_sync();
    eventually("the subscription", || async { !sandbox.push_watches().is_empty() }).await;
    let start = Utc::now().duration_trunc(Duration::hours(1)).unwrap() + Duration::hours(1);
    let fmt = |at: chrono::DateTime<Utc>| at.format("%Y-%m-%dT%H:%M:%S.0000000").to_string();
    sandbox.put_graph_event(
        MS_CAL,
        json!({"id": "pushed", "subject": "x", "start": {"dateTime": fmt(start), "timeZone": "UTC"},
               "end": {"dateTime": fmt(start + Duration::minutes(30)), "timeZone": "UTC"}}),
    );
    eventually("the pushed change", || async {
        stored_events(&server, &linked.user, calendar)
            .await
            .contains_key("pushed")
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn sync_now_over_rest_runs_the_job_to_its_end() {
    let sandbox = Sandbox::new();
    sandbox.add_account(juy_sandbox::Provider::Google, GOOGLE, "ada@gmail.test");
    sandbox.add_google_calendar(GOOGLE, GOOGLE_CAL, "Ada", "owner", true);
    let base = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    for n in 0..5 {
        sandbox.put_google_event(GOOGLE_CAL, google_event(&format!("e{n}"), base + Duration::hours(n)));
    }
    let running = juy_sandbox::start(sandbox.clone()).await.unwrap();
    let mut env = sandbox_env(&running);
    env.extend(
        [("JUY_SYNC__WORKERS", "1"), ("JUY_SYNC__POLL_INTERVAL_MS", "60000")]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let server = TestServer::start_with(env).await;
    let access = sandbox.mint_access_token(GOOGLE);
    let linked = link_oauth(
        &server,
        "ada",
        Provider::Google,
        "ada@gmail.test",
        &access,
        &[(GOOGLE_CAL, "Ada", true)],
    )
    .await;
    let calendar = linked.calendars[GOOGLE_CAL];
    server.wake_sync();
    eventually("the first sync", || async {
        stored_events(&server, &linked.user, calendar).await.len() == 5
    })
    .await;

    sandbox.put_google_event(GOOGLE_CAL, google_event("later", base + Duration::hours(9)));
    let bearer = token("ada", &[]);
    let created = http()
        .post(server.rest("/v1/calendar/sync"))
        .bearer_auth(&bearer)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 202);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let mut last = serde_json::Value::Null;
    for _ in 0..400 {
        last = http()
            .get(server.rest(&location))
            .bearer_auth(&bearer)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if last["done"] == json!(true) {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    assert_eq!(last["done"], json!(true), "{last}");
    let job_calendar = &last["calendars"][0];
    assert_eq!(job_calendar["state"], json!("done"), "{last}");
    assert!(job_calendar["pages"].as_i64().unwrap() >= 1, "{last}");
    assert!(
        stored_events(&server, &linked.user, calendar)
            .await
            .contains_key("later")
    );
    server.stop().await;
}
