//! The sync engine against the provider sandbox (over HTTP), Radicale and a
//! real PostgreSQL: initial, incremental and convergent full syncs; a run
//! dropped mid-listing resuming from its checkpoint; replicas side by side;
//! invalidated cursors; the window's edges; throttling; TTL cleanup;
//! revocation during a run; bad events; discovery of new calendars. Time
//! moves only through the injected clock; assertions are on rows, sync state
//! and the providers' request logs, never on durations.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] functions

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, DurationRound as _, Utc};
use juy_domain::{Clock as _, Provider, UserId};
use juy_integration_tests::TestServer;
use juy_integration_tests::caldav::{CalDavFront, Radicale};
use juy_integration_tests::providers::sandbox_env;
use juy_integration_tests::sync::{
    self, Linked, calendars_of, clock_now, count, google_event, graph_event, link_caldav, link_oauth, link_oauth_until,
    stored_events, sync_due, sync_row,
};
use juy_sandbox::{Fault, Frequency, LoggedRequest, Recurrence, RunningSandbox, Sandbox};
use juy_sync::cursor::{FullReason, Round};
use juy_sync::engine::RunStats;
use juy_sync::{RunOutcome, SyncConfig};
use serde_json::json;

const GOOGLE: &str = "google-sub-ada";
const GOOGLE_CAL: &str = "ada@gmail.test";
const MS: &str = "ms-id-ada";
const MS_CAL: &str = "AAMkCal1";

/// How long a test waits for something another task or process does.
const PATIENCE: StdDuration = StdDuration::from_secs(15);

async fn sandbox() -> (Sandbox, RunningSandbox) {
    let sandbox = Sandbox::new();
    sandbox.add_account(juy_sandbox::Provider::Google, GOOGLE, "ada@gmail.test");
    sandbox.add_google_calendar(GOOGLE, GOOGLE_CAL, "Ada", "owner", true);
    sandbox.add_account(juy_sandbox::Provider::Microsoft, MS, "ada@outlook.test");
    sandbox.add_graph_calendar(MS, MS_CAL, "Calendar", true, true);
    let running = juy_sandbox::start(sandbox.clone()).await.unwrap();
    (sandbox, running)
}

fn small_pages() -> SyncConfig {
    SyncConfig {
        inline_retry_max: std::time::Duration::from_secs(3),
        ..SyncConfig::default()
    }
}

/// The top of the current hour: event times the tests can compare exactly.
fn hour() -> DateTime<Utc> {
    Utc::now().duration_trunc(Duration::hours(1)).unwrap()
}

/// Polls `check` until it holds, failing after [`PATIENCE`].
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
}

/// A Google sandbox account `sub` with calendars `calendars` (the first primary), linked
/// for `user` with a token stored as valid for a year, so the clock can move far ahead.
async fn link_google(server: &TestServer, sandbox: &Sandbox, user: &str, sub: &str, calendars: &[&str]) -> Linked {
    let email = format!("{sub}@gmail.test");
    sandbox.add_account(juy_sandbox::Provider::Google, sub, &email);
    for (n, calendar) in calendars.iter().enumerate() {
        sandbox.add_google_calendar(sub, calendar, calendar, "owner", n == 0);
    }
    let token = sandbox.mint_access_token(sub);
    let listed: Vec<(&str, &str, bool)> = calendars.iter().enumerate().map(|(n, c)| (*c, *c, n == 0)).collect();
    link_oauth_until(
        &server.store,
        user,
        Provider::Google,
        &email,
        &token,
        Utc::now() + Duration::days(365),
        &listed,
    )
    .await
}

/// Like [`link_google`] for a Microsoft account.
async fn link_graph(server: &TestServer, sandbox: &Sandbox, user: &str, id: &str, calendars: &[&str]) -> Linked {
    let email = format!("{id}@outlook.test");
    sandbox.add_account(juy_sandbox::Provider::Microsoft, id, &email);
    for (n, calendar) in calendars.iter().enumerate() {
        sandbox.add_graph_calendar(id, calendar, calendar, true, n == 0);
    }
    let token = sandbox.mint_access_token(id);
    let listed: Vec<(&str, &str, bool)> = calendars.iter().enumerate().map(|(n, c)| (*c, *c, n == 0)).collect();
    link_oauth_until(
        &server.store,
        user,
        Provider::Microsoft,
        &email,
        &token,
        Utc::now() + Duration::days(365),
        &listed,
    )
    .await
}

/// Puts `n` Google events `{prefix}{k}` an hour apart from `from` into `calendar`; returns id → start.
fn put_google_events(
    sandbox: &Sandbox,
    calendar: &str,
    prefix: &str,
    n: usize,
    from: DateTime<Utc>,
) -> BTreeMap<String, DateTime<Utc>> {
    (0..n)
        .map(|k| {
            let id = format!("{prefix}{k:04}");
            let start = from + Duration::hours(k as i64);
            sandbox.put_google_event(calendar, google_event(&id, start));
            (id, start)
        })
        .collect()
}

/// The sandbox's listing requests of a Google calendar's events, in order.
fn google_listings(log: &[LoggedRequest], calendar: &str) -> Vec<LoggedRequest> {
    let path = format!("/calendars/{calendar}/events");
    log.iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&path))
        .cloned()
        .collect()
}

fn query_has(request: &LoggedRequest, parameter: &str) -> bool {
    request
        .query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|pair| pair.starts_with(&format!("{parameter}="))))
}

/// The one outcome of a `sync_due` that ran exactly one calendar, which synced.
fn synced_once(outcomes: &[RunOutcome]) -> RunStats {
    match outcomes {
        [RunOutcome::Synced { stats, .. }] => stats.clone(),
        other => panic!("expected one synced run, got {other:?}"),
    }
}

fn all_synced(outcomes: &[RunOutcome]) {
    assert!(
        outcomes.iter().all(|o| matches!(o, RunOutcome::Synced { .. })),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn google_initial_then_incremental_sync_matches_the_provider() {
    let (sandbox, running) = sandbox().await;
    let server = TestServer::start_with(sandbox_env(&running)).await;
    let token = sandbox.mint_access_token(GOOGLE);
    let linked = link_oauth(
        &server,
        "ada",
        Provider::Google,
        "ada@gmail.test",
        &token,
        &[(GOOGLE_CAL, "Ada", true)],
    )
    .await;
    let calendar = linked.calendars[GOOGLE_CAL];
    let base = hour();
    for n in 0..30 {
        sandbox.put_google_event(
            GOOGLE_CAL,
            google_event(&format!("ev{n:03}"), base + Duration::hours(n)),
        );
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
    assert!(
        matches!(outcomes.as_slice(), [RunOutcome::Synced { .. }]),
        "{outcomes:?}"
    );
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
    let stats = synced_once(&outcomes);
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
    let linked = link_oauth(
        &server,
        "ada",
        Provider::Microsoft,
        "ada@outlook.test",
        &token,
        &[(MS_CAL, "Calendar", true)],
    )
    .await;
    let calendar = linked.calendars[MS_CAL];
    let base = hour();
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
    let stats = synced_once(&outcomes);
    assert_eq!(stats.full, Some(FullReason::ResyncRequired));
    let rows = stored_events(&server, &linked.user, calendar).await;
    assert_eq!(rows.len(), 20, "{:?}", rows.keys().collect::<Vec<_>>());
    assert!(!rows.contains_key("g000"));
    assert_eq!(rows["g001"], base + Duration::days(3));
    assert!(rows.contains_key("h000"));
    server.stop().await;
}

#[tokio::test]
async fn a_run_dropped_mid_listing_is_resumed_by_another_worker_from_its_checkpoint() {
    let (sandbox, running) = sandbox().await;
    let server = TestServer::start_with(sandbox_env(&running)).await;
    let linked = link_google(&server, &sandbox, "ada", "g-resume", &["resume-cal"]).await;
    let calendar = linked.calendars["resume-cal"];
    let expected = put_google_events(&sandbox, "resume-cal", "ev", 150, hour() - Duration::days(3));
    let clock = clock_now();
    let engine = sync::engine_with_pages(&server, clock.clone(), SyncConfig::default(), 20);

    // The calendar list and the first page come at once; the second page hangs while worker a/0 dies.
    sandbox.push_fault(juy_sandbox::Provider::Google, Fault::Latency(0));
    sandbox.push_fault(juy_sandbox::Provider::Google, Fault::Latency(0));
    sandbox.push_fault(juy_sandbox::Provider::Google, Fault::Latency(5_000));
    let leases = sync::lease_due(&engine, "a/0", 1).await;
    assert_eq!(leases.len(), 1);
    let first = tokio::spawn({
        let engine = Arc::clone(&engine);
        let lease = leases.into_iter().next().unwrap();
        async move { engine.run(lease).await }
    });
    let store = server.store.clone();
    let user = linked.user.clone();
    wait_until("the first page is committed", || {
        let (store, user) = (store.clone(), user.clone());
        async move { sync_row(&store, &user, calendar).await.unwrap().mid_listing() }
    })
    .await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled(), "the run was still going");
    let committed = stored_events(&server, &linked.user, calendar).await;
    assert!(
        !committed.is_empty() && committed.len() < expected.len(),
        "{}",
        committed.len()
    );
    let state = sync_row(&server.store, &linked.user, calendar).await.unwrap();
    assert_eq!(state.lease_owner.as_deref(), Some("a/0"));

    // While a/0's lease lives nobody else takes the calendar; once it ran out, b/0 does.
    assert!(sync::lease_due(&engine, "b/0", 10).await.is_empty());
    clock.advance(engine.config().lease_for + Duration::seconds(1));
    sandbox.clear_log();
    let leases = sync::lease_due(&engine, "b/0", 10).await;
    assert_eq!(leases.len(), 1);
    let outcome = engine.run(leases.into_iter().next().unwrap()).await;
    let RunOutcome::Synced { stats, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(stats.full, Some(FullReason::Initial), "the same listing, continued");
    assert_eq!(
        stats.written as usize,
        expected.len() - committed.len(),
        "only what a/0 had not committed is written"
    );

    let log = sandbox.request_log();
    let listings = google_listings(&log, "resume-cal");
    assert!(
        log.first().is_some_and(|r| query_has(r, "pageToken")),
        "the resumed run starts from the checkpoint's page: {log:?}"
    );
    assert!(
        listings.iter().all(|r| query_has(r, "pageToken")),
        "the listing never starts over: {listings:?}"
    );
    assert!(listings.len() >= 2);
    assert_eq!(
        stored_events(&server, &linked.user, calendar).await,
        expected,
        "no loss, no duplicate"
    );
    let state = sync_row(&server.store, &linked.user, calendar).await.unwrap();
    assert_eq!(state.lease_owner, None);
    assert_eq!(state.sync_status, "ok");
    server.stop().await;
}

#[tokio::test]
async fn replicas_side_by_side_sync_every_calendar_exactly_once() {
    let (sandbox, running) = sandbox().await;
    let server = TestServer::start_with(sandbox_env(&running)).await;
    let base = hour();
    let mut expected: Vec<(Linked, String, BTreeMap<String, DateTime<Utc>>)> = Vec::new();
    for account in 0..3 {
        let names: Vec<String> = (0..3).map(|n| format!("acct{account}-cal{n}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let linked = link_google(
            &server,
            &sandbox,
            &format!("user{account}"),
            &format!("g-{account}"),
            &refs,
        )
        .await;
        for (n, name) in names.iter().enumerate() {
            let events = put_google_events(&sandbox, name, "ev", 5 + 7 * n, base);
            expected.push((linked.clone(), name.clone(), events));
        }
    }
    let linked = link_graph(&server, &sandbox, "user9", "ms-9", &["mscal0", "mscal1"]).await;
    for (n, name) in ["mscal0", "mscal1"].iter().enumerate() {
        let events: BTreeMap<String, DateTime<Utc>> = (0..(8 + 5 * n))
            .map(|k| (format!("m{n}-{k:03}"), base + Duration::hours(k as i64)))
            .collect();
        for (id, start) in &events {
            sandbox.put_graph_event(name, graph_event(id, *start));
        }
        expected.push((linked.clone(), (*name).to_owned(), events));
    }
    // Slow answers, so the two replicas' runs overlap.
    for _ in 0..60 {
        sandbox.push_fault(juy_sandbox::Provider::Google, Fault::Latency(40));
        sandbox.push_fault(juy_sandbox::Provider::Microsoft, Fault::Latency(40));
    }

    let clock = clock_now();
    let a = sync::engine_with_pages(&server, clock.clone(), SyncConfig::default(), 5);
    let b = sync::engine_with_pages(&server, clock.clone(), SyncConfig::default(), 5);
    let (ran_a, ran_b) = tokio::join!(sync::sync_due_by(&a, "a/0", 1), sync::sync_due_by(&b, "b/0", 1));
    all_synced(&ran_a);
    all_synced(&ran_b);
    assert!(!ran_a.is_empty() && !ran_b.is_empty(), "both replicas worked");
    assert_eq!(ran_a.len() + ran_b.len(), expected.len(), "a: {ran_a:?}, b: {ran_b:?}");

    let log = sandbox.request_log();
    for (linked, name, events) in &expected {
        let google_first_pages = google_listings(&log, name)
            .iter()
            .filter(|r| !query_has(r, "pageToken") && !query_has(r, "syncToken"))
            .count();
        let graph_first_pages = log
            .iter()
            .filter(|r| {
                r.path.ends_with(&format!("/calendars/{name}/calendarView/delta")) && query_has(r, "startDateTime")
            })
            .count();
        assert_eq!(google_first_pages + graph_first_pages, 1, "{name} was listed once");
        let calendar = linked.calendars[name];
        assert_eq!(&stored_events(&server, &linked.user, calendar).await, events, "{name}");
    }
    assert_eq!(
        count(
            &server.store,
            "SELECT count(*) AS n FROM calendars WHERE lease_owner IS NOT NULL OR lease_expires_at IS NOT NULL"
        )
        .await,
        0,
        "no calendar is left leased"
    );
    assert_eq!(
        count(
            &server.store,
            "SELECT count(*) AS n FROM calendars WHERE sync_status <> 'ok'"
        )
        .await,
        0
    );
    server.stop().await;
}

#[tokio::test]
async fn an_expired_google_sync_token_converges_by_a_full_resync_keeping_old_rows_until_it_ends() {
    let (sandbox, running) = sandbox().await;
    let server = TestServer::start_with(sandbox_env(&running)).await;
    let linked = link_google(&server, &sandbox, "ada", "g-410", &["cal410"]).await;
    let calendar = linked.calendars["cal410"];
    let base = hour();
    let mut expected = put_google_events(&sandbox, "cal410", "ev", 60, base);
    let clock = clock_now();
    let engine = sync::engine_with_pages(&server, clock.clone(), SyncConfig::default(), 10);
    synced_once(&sync_due(&engine, "w/0").await);
    assert_eq!(stored_events(&server, &linked.user, calendar).await, expected);

    // While the token is invalid: three deleted, one moved, two added.
    for id in ["ev0001", "ev0002", "ev0003"] {
        sandbox.delete_google_event("cal410", id);
        expected.remove(id);
    }
    sandbox.put_google_event("cal410", google_event("ev0010", base + Duration::days(9)));
    expected.insert("ev0010".into(), base + Duration::days(9));
    for id in ["new0001", "new0002"] {
        sandbox.put_google_event("cal410", google_event(id, base + Duration::days(1)));
        expected.insert(id.into(), base + Duration::days(1));
    }
    sandbox.expire_google_sync_tokens();
    for _ in 0..12 {
        sandbox.push_fault(juy_sandbox::Provider::Google, Fault::Latency(150));
    }
    clock.advance(Duration::seconds(1));
    sync::make_due(&server, &linked.user, calendar, clock.now()).await;
    sandbox.clear_log();
    let run = tokio::spawn({
        let engine = Arc::clone(&engine);
        async move { sync_due(&engine, "w/0").await }
    });
    // Between two committed pages of the resync, the rows it has not confirmed yet are all still there.
    let mid_listing = format!(
        "SELECT CASE WHEN (c.sync_cursor::jsonb -> 'round' ->> 'reason') = 'resync_required' \
                      AND (c.sync_cursor::jsonb -> 'round' ->> 'resume') IS NOT NULL \
                 THEN 1 + (SELECT count(*) FROM user_calendar_events e \
                           WHERE e.user_id = c.user_id AND e.calendar_id = c.id \
                             AND e.external_id IN ('ev0001', 'ev0002', 'ev0003')) \
                 ELSE 0 END AS n \
         FROM calendars c WHERE c.id = '{}'",
        calendar.0
    );
    let store = server.store.clone();
    let seen = Arc::new(Mutex::new(0));
    wait_until("the resync committed a page", || {
        let (store, query, seen) = (store.clone(), mid_listing.clone(), Arc::clone(&seen));
        async move {
            let n = count(&store, &query).await;
            *seen.lock().unwrap() = n;
            n > 0
        }
    })
    .await;
    assert_eq!(
        *seen.lock().unwrap(),
        4,
        "the deleted events stay visible until the listing commits"
    );

    let stats = synced_once(&run.await.unwrap());
    assert_eq!(stats.full, Some(FullReason::ResyncRequired));
    assert_eq!(stats.swept, 3, "what the listing did not confirm is swept");
    assert_eq!(stored_events(&server, &linked.user, calendar).await, expected);
    let log = sandbox.request_log();
    let listings = google_listings(&log, "cal410");
    assert!(query_has(&listings[0], "syncToken"), "{listings:?}");
    assert_eq!(
        listings
            .iter()
            .filter(|r| !query_has(r, "pageToken") && !query_has(r, "syncToken"))
            .count(),
        1,
        "one full listing: {listings:?}"
    );
    server.stop().await;
}

const CALDAV_USER: &str = "alice";
const CALDAV_PASSWORD: &str = "app-specific-secret";

fn ical(uid: &str, start: DateTime<Utc>) -> String {
    let fmt = |at: DateTime<Utc>| at.format("%Y%m%dT%H%M%SZ").to_string();
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Juy//Test//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{}\r\nDTEND:{}\r\nSUMMARY:{uid}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        fmt(start),
        fmt(start + Duration::minutes(30))
    )
}

async fn caldav_request(method: &str, url: &str, body: Option<String>) -> u16 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut request = reqwest::Client::new()
        .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url)
        .basic_auth(CALDAV_USER, Some(CALDAV_PASSWORD));
    if let Some(body) = body {
        request = request.header("content-type", "text/calendar").body(body);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn caldav_polls_cheaply_and_an_invalid_sync_token_converges_by_a_full_resync() {
    let radicale = Radicale::start(&[(CALDAV_USER, CALDAV_PASSWORD)]);
    let front = CalDavFront::start(&radicale.base_url).await;
    let home = format!("{}/{CALDAV_USER}/", front.base_url);
    let collection = format!("{home}work/");
    assert_eq!(caldav_request("MKCALENDAR", &collection, None).await, 201);
    let base = hour();
    let mut expected = BTreeMap::new();
    for k in 0..5 {
        let start = base + Duration::hours(3 * k);
        let href = format!("{collection}ev{k}.ics");
        assert!(caldav_request("PUT", &href, Some(ical(&format!("ev{k}"), start))).await < 300);
        expected.insert(href, start);
    }
    let server = TestServer::start_with(vec![(
        "JUY_CALDAV__ALLOW_LIST".to_owned(),
        format!("[\"127.0.0.1:{}\"]", front.port()),
    )])
    .await;
    let linked = link_caldav(
        &server,
        "ada",
        &home,
        CALDAV_USER,
        CALDAV_PASSWORD,
        &[(&collection, "Work", true)],
    )
    .await;
    let calendar = linked.calendars[&collection];
    let clock = clock_now();
    let engine = sync::engine(&server, clock.clone(), SyncConfig::default());
    let stats = synced_once(&sync_due(&engine, "w/0").await);
    assert_eq!(stats.full, Some(FullReason::Initial));
    assert_eq!(stored_events(&server, &linked.user, calendar).await, expected);

    // Nothing changed: one sync-collection report, nothing written.
    front.clear();
    clock.advance(Duration::seconds(1));
    sync::make_due(&server, &linked.user, calendar, clock.now()).await;
    let stats = synced_once(&sync_due(&engine, "w/0").await);
    assert_eq!((stats.full, stats.written, stats.deleted), (None, 0, 0), "{stats:?}");
    assert_eq!(
        front.requests(),
        vec![("REPORT".to_owned(), format!("/{CALDAV_USER}/work/"))],
        "a no-change poll is one request"
    );

    // Changes the server cannot report, since it refuses the stored token: one deleted, one moved, one added.
    assert!(caldav_request("DELETE", &format!("{collection}ev1.ics"), None).await < 300);
    expected.remove(&format!("{collection}ev1.ics"));
    let moved = base + Duration::days(4);
    assert!(caldav_request("PUT", &format!("{collection}ev2.ics"), Some(ical("ev2", moved))).await < 300);
    expected.insert(format!("{collection}ev2.ics"), moved);
    assert!(caldav_request("PUT", &format!("{collection}ev9.ics"), Some(ical("ev9", base))).await < 300);
    expected.insert(format!("{collection}ev9.ics"), base);
    let mut cursor = sync_row(&server.store, &linked.user, calendar)
        .await
        .unwrap()
        .cursor()
        .unwrap();
    assert!(matches!(cursor.round, Round::Idle { token: Some(_) }), "{cursor:?}");
    cursor.round = Round::Idle {
        token: Some("http://radicale.org/ns/sync/0123456789abcdef0123456789abcdef".into()),
    };
    sync::set_cursor(&server.store, &linked.user, calendar, &cursor).await;
    clock.advance(Duration::seconds(1));
    sync::make_due(&server, &linked.user, calendar, clock.now()).await;
    let stats = synced_once(&sync_due(&engine, "w/0").await);
    assert_eq!(stats.full, Some(FullReason::ResyncRequired));
    assert_eq!(stored_events(&server, &linked.user, calendar).await, expected);
    let cursor = sync_row(&server.store, &linked.user, calendar)
        .await
        .unwrap()
        .cursor()
        .unwrap();
    assert!(
        matches!(&cursor.round, Round::Idle { token: Some(token) } if !token.ends_with("0123456789abcdef")),
        "a fresh token: {cursor:?}"
    );
    server.stop().await;
    drop(radicale);
}

#[tokio::test]
async fn events_moving_across_the_window_edge_come_and_go() {
    let (sandbox, running) = sandbox().await;
    let server = TestServer::start_with(sandbox_env(&running)).await;
    let google = link_google(&server, &sandbox, "ada", "g-edge", &["edge"]).await;
    let graph = link_graph(&server, &sandbox, "ada", "ms-edge", &["msedge"]).await;
    let base = hour();
    sandbox.put_google_event("edge", google_event("inside", base + Duration::days(2)));
    sandbox.put_google_event("edge", google_event("outside", base + Duration::days(500)));
    sandbox.put_google_event("edge", google_event("stays", base + Duration::days(1)));
    sandbox.put_graph_event("msedge", graph_event("inside", base + Duration::days(2)));
    sandbox.put_graph_event("msedge", graph_event("outside", base + Duration::days(500)));
    sandbox.put_graph_event("msedge", graph_event("stays", base + Duration::days(1)));
    let clock = clock_now();
    let engine = sync::engine(&server, clock.clone(), SyncConfig::default());
    let outcomes = sync_due(&engine, "w/0").await;
    assert_eq!(outcomes.len(), 2);
    all_synced(&outcomes);
    let google_calendar = google.calendars["edge"];
    let graph_calendar = graph.calendars["msedge"];
    let before = BTreeMap::from([
        ("inside".to_owned(), base + Duration::days(2)),
        ("stays".to_owned(), base + Duration::days(1)),
    ]);
    assert_eq!(stored_events(&server, &google.user, google_calendar).await, before);
    assert_eq!(stored_events(&server, &graph.user, graph_calendar).await, before);

    // The one inside moves 400 days out; the one outside moves in.
    sandbox.put_google_event("edge", google_event("inside", base + Duration::days(400)));
    sandbox.put_google_event("edge", google_event("outside", base + Duration::days(3)));
    sandbox.put_graph_event("msedge", graph_event("inside", base + Duration::days(400)));
    sandbox.put_graph_event("msedge", graph_event("outside", base + Duration::days(3)));
    clock.advance(Duration::seconds(1));
    sync::make_due(&server, &google.user, google_calendar, clock.now()).await;
    sync::make_due(&server, &graph.user, graph_calendar, clock.now()).await;
    let outcomes = sync_due(&engine, "w/0").await;
    assert_eq!(outcomes.len(), 2);
    for outcome in &outcomes {
        let RunOutcome::Synced { stats, .. } = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(stats.full, None, "incremental rounds: {outcomes:?}");
    }
    let after = BTreeMap::from([
        ("outside".to_owned(), base + Duration::days(3)),
        ("stays".to_owned(), base + Duration::days(1)),
    ]);
    assert_eq!(
        stored_events(&server, &google.user, google_calendar).await,
        after,
        "google"
    );
    // Graph's delta round (whose window is fixed) reports the one that left it as removed.
    assert_eq!(
        stored_events(&server, &graph.user, graph_calendar).await,
        after,
        "graph"
    );
    // The next full listings agree.
    clock.advance(engine.config().reconcile_every);
    let outcomes = sync_due(&engine, "w/0").await;
    assert_eq!(outcomes.len(), 2);
    for outcome in &outcomes {
        let RunOutcome::Synced { stats, .. } = outcome else {
            panic!("{outcome:?}");
        };
        assert!(stats.full.is_some(), "full listings: {outcomes:?}");
    }
    assert_eq!(
        stored_events(&server, &google.user, google_calendar).await,
        after,
        "google"
    );
    assert_eq!(
        stored_events(&server, &graph.user, graph_calendar).await,
        after,
        "graph"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_short_retry_after_is_waited_out_and_the_page_retried_within_the_run() {
    let (sandbox, running) = sandbox().await;
    let server = TestServer::start_with(sandbox_env(&running)).await;
    let linked = link_google(&server, &sandbox, "ada", "g-429", &["cal429"]).await;
    let calendar = linked.calendars["cal429"];
    let expected = put_google_events(&sandbox, "cal429", "ev", 40, hour());
    let clock = clock_now();
    let engine = sync::engine_with_pages(&server, clock.clone(), SyncConfig::default(), 10);
    // The calendar list, the first page, then 429 on the second page.
    sandbox.push_fault(juy_sandbox::Provider::Google, Fault::Latency(0));
    sandbox.push_fault(juy_sandbox::Provider::Google, Fault::Latency(0));
    sandbox.push_fault(
        juy_sandbox::Provider::Google,
        Fault::Status {
            code: 429,
            retry_after: Some(1),
        },
    );
    let stats = synced_once(&sync_due(&engine, "w/0").await);
    assert_eq!(stored_events(&server, &linked.user, calendar).await, expected);
    let listings = google_listings(&sandbox.request_log(), "cal429");
    assert!(listings.len() >= 4, "{listings:?}");
    assert!(query_has(&listings[1], "pageToken"));
    assert_eq!(
        listings[1].query, listings[2].query,
        "the throttled page is asked for again"
    );
    assert_eq!(stats.pages as usize, listings.len() - 1, "every page committed once");
    let state = sync_row(&server.store, &linked.user, calendar).await.unwrap();
    assert_eq!((state.sync_status.as_str(), state.consecutive_failures), ("ok", 0));
    server.stop().await;
}

#[tokio::test]
async fn a_long_retry_after_fails_the_run_defers_the_account_and_a_later_run_completes() {
    let (sandbox, running) = sandbox().await;
    let server = TestServer::start_with(sandbox_env(&running)).await;
    let linked = link_google(&server, &sandbox, "ada", "g-slow", &["busy", "other"]).await;
    let (busy, other) = (linked.calendars["busy"], linked.calendars["other"]);
    let mut expected = put_google_events(&sandbox, "busy", "ev", 5, hour());
    put_google_events(&sandbox, "other", "ev", 3, hour());
    let clock = clock_now();
    let engine = sync::engine(&server, clock.clone(), SyncConfig::default());
    assert_eq!(sync_due(&engine, "w/0").await.len(), 2);

    sandbox.put_google_event("busy", google_event("late", hour() + Duration::hours(2)));
    expected.insert("late".into(), hour() + Duration::hours(2));
    clock.advance(Duration::seconds(1));
    sync::make_due(&server, &linked.user, busy, clock.now()).await;
    sandbox.push_fault(
        juy_sandbox::Provider::Google,
        Fault::Status {
            code: 429,
            retry_after: Some(3600),
        },
    );
    let now = clock.now();
    let outcomes = sync_due(&engine, "w/0").await;
    let [RunOutcome::Failed { reason, retry_at }] = outcomes.as_slice() else {
        panic!("{outcomes:?}");
    };
    assert!(*retry_at >= now + Duration::seconds(3600), "{retry_at} vs {now}");
    assert!(reason.contains("throttling"), "{reason}");
    let state = sync_row(&server.store, &linked.user, busy).await.unwrap();
    assert_eq!(state.sync_status, "error");
    assert!(state.last_error.as_deref().unwrap().contains("throttling"), "{state:?}");
    // The store keeps microseconds.
    assert!(
        (state.next_sync_at.unwrap() - *retry_at).abs() < Duration::milliseconds(1),
        "{state:?}"
    );
    assert_eq!(state.consecutive_failures, 1);
    let other_state = sync_row(&server.store, &linked.user, other).await.unwrap();
    assert!(
        // (The store keeps microseconds.)
        other_state.next_sync_at.unwrap() >= now + Duration::seconds(3600) - Duration::microseconds(1),
        "the account's other calendar waits too: {other_state:?}"
    );
    assert!(sync_due(&engine, "w/0").await.is_empty(), "nothing is due meanwhile");
    assert_eq!(
        stored_events(&server, &linked.user, busy).await.len(),
        5,
        "the old rows stay"
    );

    clock.advance(Duration::seconds(3601));
    let outcomes = sync_due(&engine, "w/0").await;
    assert_eq!(outcomes.len(), 2);
    all_synced(&outcomes);
    assert_eq!(stored_events(&server, &linked.user, busy).await, expected);
    let state = sync_row(&server.store, &linked.user, busy).await.unwrap();
    assert_eq!(
        (state.sync_status.as_str(), state.last_error, state.consecutive_failures),
        ("ok", None, 0)
    );
    server.stop().await;
}

#[tokio::test]
async fn cleanup_deletes_only_rows_no_sync_confirmed_within_their_ttl() {
    let (sandbox, running) = sandbox().await;
    let server = TestServer::start_with(sandbox_env(&running)).await;
    let stale = link_google(&server, &sandbox, "ada", "g-stale", &["stale"]).await;
    let fresh = link_google(&server, &sandbox, "ada", "g-fresh", &["fresh"]).await;
    let base = hour();
    put_google_events(&sandbox, "stale", "ev", 4, base + Duration::days(1));
    let fresh_events = put_google_events(&sandbox, "fresh", "ev", 6, base + Duration::days(1));
    let clock = clock_now();
    let engine = sync::engine(&server, clock.clone(), SyncConfig::default());
    assert_eq!(sync_due(&engine, "w/0").await.len(), 2);
    assert_eq!(juy_sync::cleanup_once(&engine).await.unwrap(), 0);

    // The stale calendar's account waits for re-authorisation, so nothing confirms its rows again.
    {
        let mut conn = server.store.conn().await.unwrap();
        assert!(
            juy_store::accounts::mark_reauth_required(&mut conn, &stale.user, stale.account, "test")
                .await
                .unwrap()
        );
    }
    clock.advance(Duration::days(20));
    let stats = synced_once(&sync_due(&engine, "w/0").await);
    // Twenty days on, the weekly reconciliation is due (it also rolls the window).
    assert_eq!(
        stats.full,
        Some(FullReason::Reconcile),
        "a full listing re-confirms every row"
    );
    assert_eq!(juy_sync::cleanup_once(&engine).await.unwrap(), 0, "nothing expired yet");
    assert_eq!(
        stored_events(&server, &stale.user, stale.calendars["stale"])
            .await
            .len(),
        4
    );

    clock.advance(Duration::days(11));
    assert_eq!(juy_sync::cleanup_once(&engine).await.unwrap(), 4);
    assert!(
        stored_events(&server, &stale.user, stale.calendars["stale"])
            .await
            .is_empty()
    );
    assert_eq!(
        stored_events(&server, &fresh.user, fresh.calendars["fresh"]).await,
        fresh_events
    );
    assert_eq!(juy_sync::cleanup_once(&engine).await.unwrap(), 0);
    server.stop().await;
}

/// Revokes `linked`'s account through the store, as `RevokeConnection` does.
async fn revoke(server: &TestServer, linked: &Linked) {
    let mut conn = server.store.conn().await.unwrap();
    juy_store::accounts::revoke_account(&mut conn, &linked.user, linked.account, "revoked by the user")
        .await
        .unwrap();
}

async fn rows_of_user(server: &TestServer, user: &UserId) -> i64 {
    count(
        &server.store,
        &format!(
            "SELECT count(*) AS n FROM user_calendar_events WHERE user_id = '{}'",
            user.as_str()
        ),
    )
    .await
}

async fn calendars_of_account(server: &TestServer, linked: &Linked) -> i64 {
    count(
        &server.store,
        &format!(
            "SELECT count(*) AS n FROM calendars WHERE account_id = '{}'",
            linked.account.0
        ),
    )
    .await
}

#[tokio::test]
async fn a_revocation_during_a_run_stops_it_before_its_next_request() {
    let (sandbox, running) = sandbox().await;
    let server = TestServer::start_with(sandbox_env(&running)).await;
    let linked = link_google(&server, &sandbox, "ada", "g-revoke", &["revoked"]).await;
    let calendar = linked.calendars["revoked"];
    put_google_events(&sandbox, "revoked", "ev", 100, hour());
    sandbox.push_fault(juy_sandbox::Provider::Google, Fault::Latency(0));
    for _ in 0..20 {
        sandbox.push_fault(juy_sandbox::Provider::Google, Fault::Latency(200));
    }
    let clock = clock_now();
    let engine = sync::engine_with_pages(&server, clock.clone(), SyncConfig::default(), 10);
    let run = tokio::spawn({
        let engine = Arc::clone(&engine);
        async move { sync_due(&engine, "w/0").await }
    });
    let store = server.store.clone();
    let user = linked.user.clone();
    wait_until("a page is committed", || {
        let (store, user) = (store.clone(), user.clone());
        async move { sync::stored_events_in(&store, &user, calendar).await.len() > 5 }
    })
    .await;
    revoke(&server, &linked).await;
    let revoked_at = sandbox.request_log().len();

    let outcomes = run.await.unwrap();
    assert!(
        matches!(
            outcomes.as_slice(),
            [RunOutcome::LeaseLost | RunOutcome::ReauthRequired]
        ),
        "{outcomes:?}"
    );
    let log = sandbox.request_log();
    assert!(
        log.len() <= revoked_at + 1,
        "at most the request already under way: {:?}",
        &log[revoked_at..]
    );
    assert_eq!(
        rows_of_user(&server, &linked.user).await,
        0,
        "nothing of the account is left"
    );
    assert_eq!(calendars_of_account(&server, &linked).await, 0);
    clock.advance(Duration::days(1));
    assert!(
        sync::lease_due(&engine, "w/1", 10).await.is_empty(),
        "never leased again"
    );
    assert_eq!(sandbox.request_log().len(), log.len());
    server.stop().await;
}

// Discovery reads the calendar list before the revocation commits and stores it after:
// `juy_store::calendars::upsert_calendars` refuses revoked accounts (under a lock on the
// account row), so the purged calendars do not come back.
#[tokio::test]
async fn a_revocation_while_the_calendar_list_is_read_leaves_no_calendar_behind() {
    let (sandbox, running) = sandbox().await;
    let server = TestServer::start_with(sandbox_env(&running)).await;
    let linked = link_google(&server, &sandbox, "ada", "g-revoke2", &["main", "second"]).await;
    put_google_events(&sandbox, "main", "ev", 3, hour());
    // The run's first request is the calendar list: it is answered only after the revocation.
    sandbox.push_fault(juy_sandbox::Provider::Google, Fault::Latency(1_500));
    let clock = clock_now();
    let engine = sync::engine(&server, clock.clone(), SyncConfig::default());
    let run = tokio::spawn({
        let engine = Arc::clone(&engine);
        async move { sync::sync_due_by(&engine, "w/0", 1).await }
    });
    wait_until("the calendar list is asked for", || {
        let log = sandbox.request_log();
        async move { log.iter().any(|r| r.path.ends_with("/calendarList")) }
    })
    .await;
    revoke(&server, &linked).await;
    let outcomes = run.await.unwrap();
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, RunOutcome::LeaseLost | RunOutcome::ReauthRequired)),
        "{outcomes:?}"
    );
    assert_eq!(rows_of_user(&server, &linked.user).await, 0);
    assert_eq!(
        calendars_of_account(&server, &linked).await,
        0,
        "the revocation purged the calendars; the late calendar list must not bring them back"
    );
    server.stop().await;
}

#[tokio::test]
async fn one_bad_event_is_skipped_and_the_calendar_still_syncs() {
    let (sandbox, running) = sandbox().await;
    let server = TestServer::start_with(sandbox_env(&running)).await;
    let linked = link_google(&server, &sandbox, "ada", "g-bad", &["mixed"]).await;
    let calendar = linked.calendars["mixed"];
    let expected = put_google_events(&sandbox, "mixed", "good", 5, hour());
    sandbox.put_google_event(
        "mixed",
        json!({
            "id": "bad0001",
            "summary": "broken",
            "start": {"dateTime": "next tuesday-ish"},
            "end": {"dateTime": "2026-13-45T99:00:00Z"},
        }),
    );
    let clock = clock_now();
    let engine = sync::engine(&server, clock.clone(), SyncConfig::default());
    let stats = synced_once(&sync_due(&engine, "w/0").await);
    assert!(stats.rejected >= 1, "{stats:?}");
    assert_eq!(stored_events(&server, &linked.user, calendar).await, expected);
    let state = sync_row(&server.store, &linked.user, calendar).await.unwrap();
    assert_eq!((state.sync_status.as_str(), state.last_error), ("ok", None));
    server.stop().await;
}

#[tokio::test]
async fn a_calendar_created_at_the_provider_is_discovered_and_synced() {
    let (sandbox, running) = sandbox().await;
    let server = TestServer::start_with(sandbox_env(&running)).await;
    let linked = link_google(&server, &sandbox, "ada", "g-disc", &["first"]).await;
    put_google_events(&sandbox, "first", "ev", 2, hour());
    let clock = clock_now();
    let engine = sync::engine(&server, clock.clone(), SyncConfig::default());
    synced_once(&sync_due(&engine, "w/0").await);

    sandbox.add_google_calendar("g-disc", "later", "Later", "owner", false);
    let later_events = put_google_events(&sandbox, "later", "lt", 4, hour() + Duration::days(1));
    // Within discover_every nothing looks for it.
    clock.advance(Duration::minutes(10));
    synced_once(&sync_due(&engine, "w/0").await);
    assert_eq!(calendars_of(&server.store, &linked.user, linked.account).await.len(), 1);

    clock.advance(engine.config().discover_every);
    let outcomes = sync_due(&engine, "w/0").await;
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    all_synced(&outcomes);
    let calendars = calendars_of(&server.store, &linked.user, linked.account).await;
    let later = calendars
        .iter()
        .find(|c| c.provider_calendar_id == "later")
        .unwrap_or_else(|| panic!("{calendars:?}"));
    assert_eq!(later.name, "Later");
    assert_eq!(stored_events(&server, &linked.user, later.id).await, later_events);
    assert_eq!(later.sync_status, juy_domain::SyncStatus::Ok);
    server.stop().await;
}

#[tokio::test]
async fn a_reconciliation_repairs_rows_that_drifted_and_counts_them() {
    use diesel_async::RunQueryDsl as _;
    let (sandbox, running) = sandbox().await;
    let server = TestServer::start_with(sandbox_env(&running)).await;
    let linked = link_google(&server, &sandbox, "ada", "g-drift", &["drift"]).await;
    let calendar = linked.calendars["drift"];
    let base = hour();
    let mut expected = BTreeMap::new();
    for n in 0..6 {
        let id = format!("d{n}");
        sandbox.put_google_event("drift", google_event(&id, base + Duration::hours(n)));
        expected.insert(id, base + Duration::hours(n));
    }
    let clock = clock_now();
    let engine = sync::engine(&server, clock.clone(), SyncConfig::default());
    let first = synced_once(&sync_due(&engine, "w/0").await);
    assert_eq!((first.full, first.repaired), (Some(FullReason::Initial), 0));

    // Drift no change feed reports (a lost notification, a provider bug):
    // one row gone, one stale, one that the provider no longer has.
    let mut conn = server.store.conn().await.unwrap();
    for sql in [
        "DELETE FROM user_calendar_events WHERE external_id = 'd1'",
        "UPDATE user_calendar_events SET etag = '\"stale\"', start_at = start_at + interval '3 hours', \
         end_at = end_at + interval '3 hours' WHERE external_id = 'd2'",
    ] {
        diesel::sql_query(sql).execute(&mut *conn).await.unwrap();
    }
    drop(conn);
    let ghost = juy_domain::CalendarEvent {
        external_id: "ghost".into(),
        ..google_row(&server, &linked.user, calendar).await
    };
    {
        let mut conn = server.store.conn().await.unwrap();
        let key = server.store.data_key(&mut conn, &linked.user).await.unwrap();
        juy_store::events::upsert_events(&mut conn, &key, &[ghost], clock.now(), Duration::days(30))
            .await
            .unwrap();
    }
    // An incremental round sees nothing (no change at the provider).
    sync::make_due(&server, &linked.user, calendar, clock.now()).await;
    let quiet = synced_once(&sync_due(&engine, "w/0").await);
    assert_eq!((quiet.full, quiet.written, quiet.repaired), (None, 0, 0));
    assert_ne!(stored_events(&server, &linked.user, calendar).await, expected);

    clock.advance(engine.config().reconcile_every);
    let reconciled = synced_once(&sync_due(&engine, "w/0").await);
    assert_eq!(reconciled.full, Some(FullReason::Reconcile));
    assert_eq!(
        (reconciled.repaired, reconciled.swept),
        (2, 1),
        "the missing and the stale rows rewritten, the ghost swept: {reconciled:?}"
    );
    assert_eq!(stored_events(&server, &linked.user, calendar).await, expected);
    server.stop().await;
}

/// One stored event of the calendar, decrypted.
async fn google_row(server: &TestServer, user: &UserId, calendar: juy_domain::CalendarId) -> juy_domain::CalendarEvent {
    let mut conn = server.store.conn().await.unwrap();
    let key = server.store.data_key(&mut conn, user).await.unwrap();
    let query = juy_store::events::EventQuery {
        user_id: user.clone(),
        range: juy_domain::TimeRange::new(Utc::now() - Duration::days(60), Utc::now() + Duration::days(400)).unwrap(),
        providers: Vec::new(),
        calendar_ids: vec![calendar],
        after: None,
        limit: 1,
    };
    let mut rows = juy_store::events::list_events(&mut conn, &key, &query).await.unwrap();
    rows.pop().expect("a stored event")
}
