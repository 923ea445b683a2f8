//! Benchmarks of the real sync pipeline: the provider sandbox (or a real
//! Radicale) over HTTP → provider client → normaliser → encryption →
//! PostgreSQL, driven by the sync engine exactly as a worker drives it.
//!
//! `cargo xtask bench` runs this with a private PostgreSQL; by hand:
//! `JUY_TEST_DATABASE_URL=postgres://… cargo bench -p juy-integration-tests --bench sync -- [FILTER…] [--phases]`.
//!
//! Each scenario runs in a process of its own (this binary re-executes
//! itself with `--scenario NAME`), so one scenario's memory never shows in
//! another's peak RSS. A scenario seeds its provider, then times exactly the
//! sync (lease → pages fetched, normalised, sealed and committed → release),
//! then checks that the stored rows equal the provider's events, so a broken
//! pipeline cannot report a fast time. Results go to BENCHMARKS.md; nothing
//! here asserts on time.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark harness: a failed step must stop it loudly
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, DurationRound as _, Utc};
use futures::StreamExt as _;
use juy_api::connect::Integrations;
use juy_domain::{CalendarId, Clock as _, Provider, UserId};
use juy_integration_tests::TestServer;
use juy_integration_tests::caldav::Radicale;
use juy_integration_tests::providers::sandbox_env;
use juy_integration_tests::sync::{self, Linked, clock_now, link_caldav, link_oauth, make_due, stored_events};
use juy_providers::{EventPage, RawEvent};
use juy_sandbox::{RunningSandbox, Sandbox};
use juy_store::sync_state;
use juy_sync::{Engine, RunOutcome, SyncConfig};
use serde_json::{Value, json};

/// The line prefix a scenario process reports its result with.
const RESULT: &str = "JUY-BENCH-RESULT ";

const GOOGLE_ACCOUNT: &str = "google-sub-bench";
const GOOGLE_CAL: &str = "bench@gmail.test";
const MS_ACCOUNT: &str = "ms-id-bench";
const MS_CAL: &str = "AAMkBench";
const CALDAV_USER: &str = "bench";
const CALDAV_PASSWORD: &str = "bench-app-password";
const USER: &str = "bench-user";

/// A benchmark scenario.
struct Scenario {
    name: &'static str,
    what: &'static str,
    /// Wall-time target in milliseconds, if the issue sets one.
    target_ms: Option<u64>,
    /// Peak RSS target in MB, if the issue sets one.
    target_rss_mb: Option<u64>,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "google-initial-5k",
        what: "Google initial sync, 5,000 events",
        target_ms: Some(500),
        target_rss_mb: None,
    },
    Scenario {
        name: "google-initial-100k",
        what: "Google initial sync, 100,000 events",
        target_ms: Some(5000),
        target_rss_mb: Some(100),
    },
    Scenario {
        name: "google-incremental-10",
        what: "Google incremental, 10 changes of 5,000",
        target_ms: Some(50),
        target_rss_mb: None,
    },
    Scenario {
        name: "google-incremental-none",
        what: "Google incremental, no change, 5,000",
        target_ms: Some(50),
        target_rss_mb: None,
    },
    Scenario {
        name: "caldav-initial-5k",
        what: "CalDAV (Radicale) initial sync, 5,000",
        target_ms: None,
        target_rss_mb: None,
    },
    Scenario {
        name: "graph-initial-5k",
        what: "Microsoft Graph initial sync, 5,000",
        target_ms: Some(500),
        target_rss_mb: None,
    },
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|a| a == "--scenario") {
        let name = args.get(at + 1).expect("--scenario NAME").clone();
        let phases = args.iter().any(|a| a == "--phases");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let result = runtime.block_on(run_scenario(&name, phases));
        println!("{RESULT}{result}");
        return;
    }
    parent(&args);
}

/// Runs the selected scenarios, each in a child process, and prints the tables.
fn parent(args: &[String]) {
    if args.iter().any(|a| a == "--list") {
        for s in SCENARIOS {
            println!("{:<24} {}", s.name, s.what);
        }
        return;
    }
    let phases = args.iter().any(|a| a == "--phases");
    // `cargo bench` passes `--bench`; anything else without dashes filters scenarios by name.
    let filters: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    let selected: Vec<&Scenario> = SCENARIOS
        .iter()
        .filter(|s| filters.is_empty() || filters.iter().any(|f| s.name.contains(f)))
        .collect();
    assert!(
        !selected.is_empty(),
        "no scenario matches {filters:?}; scenarios: {}",
        names()
    );
    let exe = std::env::current_exe().expect("own path");
    let mut results = Vec::new();
    for scenario in selected {
        eprintln!("bench: {} …", scenario.name);
        let mut command = Command::new(&exe);
        command.args(["--scenario", scenario.name]);
        if phases {
            command.arg("--phases");
        }
        let output = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .output()
            .expect("run the scenario process");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().find_map(|l| l.strip_prefix(RESULT));
        match (output.status.success(), line) {
            (true, Some(line)) => {
                let value: Value = serde_json::from_str(line).expect("a result line");
                results.push((scenario, value));
            }
            _ => {
                eprint!("{stdout}");
                panic!("scenario {} failed ({})", scenario.name, output.status);
            }
        }
    }
    print_results(&results);
}

fn names() -> String {
    SCENARIOS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn print_results(results: &[(&Scenario, Value)]) {
    println!();
    println!(
        "machine: {} cores, {}; PostgreSQL: {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        cpu_model(),
        results.first().and_then(|(_, v)| v["postgres"].as_str()).unwrap_or("?")
    );
    println!(
        "{:<24} {:>7} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9}  {}",
        "scenario", "events", "pages", "wall", "events/s", "peak RSS", "before", "sync +", "target"
    );
    for (scenario, v) in results {
        let wall_ms = v["wall_ms"].as_f64().unwrap_or_default();
        let events = v["events"].as_u64().unwrap_or_default();
        let peak = v["peak_rss_kb"].as_u64().unwrap_or_default();
        let before = v["rss_before_kb"].as_u64().unwrap_or_default();
        let sync_peak = v["sync_peak_rss_kb"].as_u64().unwrap_or_default();
        let rate = if wall_ms > 0.0 {
            format!("{:.0}", events as f64 / (wall_ms / 1000.0))
        } else {
            "-".into()
        };
        let mut target = Vec::new();
        if let Some(ms) = scenario.target_ms {
            let ok = wall_ms <= ms as f64;
            target.push(format!("≤ {} ms {}", ms, if ok { "met" } else { "MISSED" }));
        }
        if let Some(limit) = scenario.target_rss_mb {
            let ok = mb(peak) <= limit as f64;
            target.push(format!("RSS ≤ {limit} MB {}", if ok { "met" } else { "MISSED" }));
        }
        println!(
            "{:<24} {:>7} {:>5} {:>7.1}ms {:>9} {:>7.1}MB {:>7.1}MB {:>7.1}MB  {}",
            scenario.name,
            events,
            v["pages"].as_u64().unwrap_or_default(),
            wall_ms,
            rate,
            mb(peak),
            mb(before),
            mb(sync_peak.saturating_sub(before)),
            if target.is_empty() {
                "-".into()
            } else {
                target.join(", ")
            }
        );
    }
    println!(
        "(events: rows stored and checked against the provider, or changes applied for incremental runs; \
         peak RSS: the whole bench process, sandbox included; before: RSS when the sync starts; \
         sync +: peak during the sync minus before)"
    );
    let with_phases: Vec<_> = results.iter().filter(|(_, v)| v.get("phases").is_some()).collect();
    if with_phases.is_empty() {
        return;
    }
    println!();
    println!(
        "phases, each run alone over the same calendar (milliseconds; the engine overlaps fetching with writing):"
    );
    println!(
        "{:<24} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "scenario", "serve", "fetch", "normalise", "seal", "store", "SQL≈"
    );
    for (scenario, v) in with_phases {
        let p = &v["phases"];
        let f = |k: &str| p[k].as_f64().unwrap_or_default();
        println!(
            "{:<24} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            scenario.name,
            f("serve_ms"),
            f("fetch_ms"),
            f("normalise_ms"),
            f("seal_ms"),
            f("store_ms"),
            (f("store_ms") - f("seal_ms")).max(0.0)
        );
    }
    println!(
        "(serve: the raw HTTP pages alone, provider side; fetch: the provider client's pages, parsed; \
         normalise: payloads → events; seal: AES-256-GCM of the sealed columns; store: events::upsert_events \
         per page in its transaction, sealing included; SQL≈ store − seal)"
    );
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// `VmRSS` and `VmHWM` of this process, in kB.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets this process's peak RSS (`VmHWM`) to its current RSS (Linux ≥ 4.0).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// What one timed sync did.
struct Timed {
    wall: StdDuration,
    outcome: RunOutcome,
    rss_before_kb: u64,
    sync_peak_kb: u64,
    pre_peak_kb: u64,
}

/// Leases the one due calendar and syncs it, timed from the lease to the release.
async fn timed_sync(engine: &Engine) -> Timed {
    let (rss_before_kb, pre_peak_kb) = memory();
    reset_peak();
    let started = Instant::now();
    let leases = {
        let mut conn = engine.store().conn().await.unwrap();
        sync_state::lease_due(&mut conn, "bench", engine.clock().now(), engine.config().lease_for, 10)
            .await
            .unwrap()
    };
    assert_eq!(leases.len(), 1, "exactly the benchmarked calendar is due");
    let lease = leases.into_iter().next().unwrap();
    let outcome = engine.run(lease).await;
    let wall = started.elapsed();
    let (_, sync_peak_kb) = memory();
    Timed {
        wall,
        outcome,
        rss_before_kb,
        sync_peak_kb,
        pre_peak_kb,
    }
}

/// An untimed sync of whatever is due (the set-up of incremental scenarios).
async fn sync_all(engine: &Engine) {
    for outcome in sync::sync_due(engine, "setup").await {
        assert!(matches!(outcome, RunOutcome::Synced { .. }), "{outcome:?}");
    }
}

async fn postgres_version(server: &TestServer) -> String {
    #[derive(diesel::QueryableByName)]
    struct Version {
        #[diesel(sql_type = diesel::sql_types::Text)]
        v: String,
    }
    use diesel_async::RunQueryDsl as _;
    let mut conn = server.store.conn().await.unwrap();
    let settings: Vec<Version> = diesel::sql_query(
        "SELECT current_setting('server_version') || ' (fsync=' || current_setting('fsync') || \
         ', synchronous_commit=' || current_setting('synchronous_commit') || ')' AS v",
    )
    .load(&mut *conn)
    .await
    .unwrap();
    settings.into_iter().next().map(|v| v.v).unwrap_or_default()
}

/// The start times of `n` events spread over the default sync window
/// (30 days back to 365 ahead), all inside it.
fn starts(n: usize, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let first = (now - Duration::days(29)).duration_trunc(Duration::minutes(5)).unwrap();
    let span = Duration::days(388).num_minutes();
    (0..n)
        .map(|i| first + Duration::minutes(span * i as i64 / n as i64))
        .collect()
}

const DESCRIPTION: &str = "Weekly sync on the roadmap: status of each workstream, blockers, decisions needed, \
     and a look at next quarter's hiring plan. Notes and the agenda live in the shared document; please add your \
     items before the meeting. Dial-in details below.";

fn people(n: usize) -> Vec<(String, String)> {
    (0..4)
        .map(|k| {
            (
                format!("Person {k} of {n}"),
                format!("person{k}.{}@example.test", n % 97),
            )
        })
        .collect()
}

/// A Google event as the Calendar API returns it (about 1.3 kB of JSON).
fn google_event(n: usize, start: DateTime<Utc>, revision: u32) -> Value {
    let end = start + Duration::minutes(45);
    let attendees: Vec<Value> = people(n)
        .into_iter()
        .enumerate()
        .map(|(k, (name, email))| {
            let response = ["accepted", "needsAction", "tentative", "declined"][k % 4];
            json!({"email": email, "displayName": name, "responseStatus": response})
        })
        .chain(std::iter::once(
            json!({"email": "bench@gmail.test", "self": true, "responseStatus": "accepted"}),
        ))
        .collect();
    json!({
        "id": google_id(n),
        "summary": format!("Roadmap sync #{n} (rev {revision})"),
        "description": DESCRIPTION,
        "location": "Room 4.12, Kantstraße 21, Berlin",
        "htmlLink": format!("https://www.google.com/calendar/event?eid={}", google_id(n)),
        "created": "2026-01-02T09:00:00.000Z",
        "creator": {"email": "organizer@example.test", "displayName": "The Organizer"},
        "organizer": {"email": "organizer@example.test", "displayName": "The Organizer"},
        "start": {"dateTime": berlin(start), "timeZone": "Europe/Berlin"},
        "end": {"dateTime": berlin(end), "timeZone": "Europe/Berlin"},
        "transparency": "opaque",
        "visibility": "default",
        "sequence": revision,
        "attendees": attendees,
        "reminders": {"useDefault": false, "overrides": [{"method": "popup", "minutes": 10}]},
        "eventType": "default",
    })
}

fn google_id(n: usize) -> String {
    format!("bench{n:07}")
}

/// `at` in Europe/Berlin, RFC 3339 with its offset, as Google writes times.
fn berlin(at: DateTime<Utc>) -> String {
    use chrono::TimeZone as _;
    chrono_tz::Europe::Berlin
        .from_utc_datetime(&at.naive_utc())
        .to_rfc3339()
}

/// A Graph event as `calendarView/delta` returns it (times written in UTC).
fn graph_event(n: usize, start: DateTime<Utc>) -> Value {
    let fmt = |at: DateTime<Utc>| at.format("%Y-%m-%dT%H:%M:%S%.7f").to_string();
    let attendees: Vec<Value> = people(n)
        .into_iter()
        .enumerate()
        .map(|(k, (name, email))| {
            let response = ["accepted", "none", "tentativelyAccepted", "declined"][k % 4];
            json!({"type": "required", "status": {"response": response, "time": "0001-01-01T00:00:00Z"},
                "emailAddress": {"name": name, "address": email}})
        })
        .collect();
    json!({
        "id": format!("AAMkBenchEvent{n:07}"),
        "subject": format!("Roadmap sync #{n}"),
        "bodyPreview": &DESCRIPTION[..120],
        "body": {"contentType": "text", "content": DESCRIPTION},
        "location": {"displayName": "Room 4.12, Kantstraße 21, Berlin"},
        "start": {"dateTime": fmt(start), "timeZone": "UTC"},
        "end": {"dateTime": fmt(start + Duration::minutes(45)), "timeZone": "UTC"},
        "isAllDay": false,
        "isCancelled": false,
        "isOrganizer": false,
        "showAs": "busy",
        "sensitivity": "normal",
        "isReminderOn": true,
        "reminderMinutesBeforeStart": 15,
        "responseStatus": {"response": "accepted", "time": "2026-01-02T09:00:00Z"},
        "organizer": {"emailAddress": {"name": "The Organizer", "address": "organizer@example.test"}},
        "attendees": attendees,
        "webLink": format!("https://outlook.office365.com/owa/?itemid=AAMkBenchEvent{n:07}"),
    })
}

/// One iCalendar object (a VEVENT in its VCALENDAR) for Radicale.
fn ical_event(n: usize, start: DateTime<Utc>) -> String {
    let stamp = |at: DateTime<Utc>| at.format("%Y%m%dT%H%M%SZ").to_string();
    let attendees: String = people(n)
        .into_iter()
        .map(|(name, email)| format!("ATTENDEE;CN={name};PARTSTAT=ACCEPTED:mailto:{email}\r\n"))
        .collect();
    format!(
        "BEGIN:VEVENT\r\nUID:bench-{n:07}@juy.test\r\nDTSTAMP:20260102T090000Z\r\nDTSTART:{}\r\nDTEND:{}\r\n\
         SUMMARY:Roadmap sync #{n}\r\nLOCATION:Room 4.12\\, Kantstraße 21\\, Berlin\r\nDESCRIPTION:{}\r\n\
         ORGANIZER;CN=The Organizer:mailto:organizer@example.test\r\n{attendees}\
         BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:Reminder\r\nTRIGGER:-PT10M\r\nEND:VALARM\r\nEND:VEVENT\r\n",
        stamp(start),
        stamp(start + Duration::minutes(45)),
        DESCRIPTION.replace(',', "\\,").replace(';', "\\;"),
    )
}

async fn start_sandbox() -> (Sandbox, RunningSandbox) {
    let sandbox = Sandbox::new();
    sandbox.add_account(juy_sandbox::Provider::Google, GOOGLE_ACCOUNT, "bench@gmail.test");
    sandbox.add_google_calendar(GOOGLE_ACCOUNT, GOOGLE_CAL, "Bench", "owner", true);
    sandbox.add_account(juy_sandbox::Provider::Microsoft, MS_ACCOUNT, "bench@outlook.test");
    sandbox.add_graph_calendar(MS_ACCOUNT, MS_CAL, "Calendar", true, true);
    let running = juy_sandbox::start(sandbox.clone()).await.unwrap();
    (sandbox, running)
}

/// Seeds `n` Google events; returns the model: external id → start.
fn seed_google(sandbox: &Sandbox, n: usize, now: DateTime<Utc>) -> BTreeMap<String, DateTime<Utc>> {
    let started = Instant::now();
    let mut model = BTreeMap::new();
    for (i, start) in starts(n, now).into_iter().enumerate() {
        sandbox.put_google_event(GOOGLE_CAL, google_event(i, start, 0));
        model.insert(google_id(i), start);
    }
    eprintln!("  seeded {n} Google events in {:.1} s", started.elapsed().as_secs_f64());
    model
}

/// Checks that the stored rows are exactly `model` (ids and starts).
async fn check_rows(
    server: &TestServer,
    linked: &Linked,
    calendar: CalendarId,
    model: &BTreeMap<String, DateTime<Utc>>,
) {
    let rows = stored_events(server, &linked.user, calendar).await;
    assert_eq!(rows.len(), model.len(), "stored rows vs provider events");
    assert!(rows == *model, "stored rows differ from the provider's events");
}

fn synced_stats(outcome: &RunOutcome) -> &juy_sync::engine::RunStats {
    match outcome {
        RunOutcome::Synced { stats, .. } => stats,
        other => panic!("the sync did not finish: {other:?}"),
    }
}

async fn run_scenario(name: &str, phases: bool) -> Value {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match name {
        "google-initial-5k" => google_initial(5_000, phases).await,
        "google-initial-100k" => google_initial(100_000, phases).await,
        "google-incremental-10" => google_incremental(10).await,
        "google-incremental-none" => google_incremental(0).await,
        "caldav-initial-5k" => caldav_initial(5_000).await,
        "graph-initial-5k" => graph_initial(5_000, phases).await,
        other => panic!("unknown scenario {other}; scenarios: {}", names()),
    }
}

fn report(timed: &Timed, events: usize, pages: u64, postgres: &str) -> Value {
    json!({
        "wall_ms": timed.wall.as_secs_f64() * 1000.0,
        "events": events,
        "pages": pages,
        "rss_before_kb": timed.rss_before_kb,
        "sync_peak_rss_kb": timed.sync_peak_kb,
        "peak_rss_kb": timed.sync_peak_kb.max(timed.pre_peak_kb),
        "postgres": postgres,
    })
}

async fn google_initial(n: usize, phases: bool) -> Value {
    let (sandbox, running) = start_sandbox().await;
    let server = TestServer::start_with(sandbox_env(&running)).await;
    let postgres = postgres_version(&server).await;
    let token = sandbox.mint_access_token(GOOGLE_ACCOUNT);
    let linked = link_oauth(
        &server,
        USER,
        Provider::Google,
        "bench@gmail.test",
        &token,
        &[(GOOGLE_CAL, "Bench", true)],
    )
    .await;
    let calendar = linked.calendars[GOOGLE_CAL];
    let clock = clock_now();
    let model = seed_google(&sandbox, n, clock.now());
    let engine = sync::engine(&server, clock.clone(), SyncConfig::default());

    let timed = timed_sync(&engine).await;
    let stats = synced_stats(&timed.outcome).clone();
    assert_eq!(stats.written as usize, n);
    assert_eq!(sandbox.google_event_count(GOOGLE_CAL), n);
    check_rows(&server, &linked, calendar, &model).await;
    let mut result = report(&timed, n, stats.pages, &postgres);
    eprintln!(
        "  synced {n} events in {:.1} ms ({} pages)",
        timed.wall.as_secs_f64() * 1000.0,
        stats.pages
    );
    if phases {
        let integrations = integrations(&server, &clock);
        let window = engine.window_at(clock.now());
        let client = integrations
            .client_for(&linked.user, linked.account, Provider::Google, None)
            .unwrap();
        let serve = serve_google_raw(&running, &token, window).await;
        result["phases"] = measure_phases(&server, &*client, GOOGLE_CAL, window, serve, Provider::Google).await;
    }
    server.stop().await;
    result
}

async fn graph_initial(n: usize, phases: bool) -> Value {
    let (sandbox, running) = start_sandbox().await;
    let server = TestServer::start_with(sandbox_env(&running)).await;
    let postgres = postgres_version(&server).await;
    let token = sandbox.mint_access_token(MS_ACCOUNT);
    let linked = link_oauth(
        &server,
        USER,
        Provider::Microsoft,
        "bench@outlook.test",
        &token,
        &[(MS_CAL, "Calendar", true)],
    )
    .await;
    let calendar = linked.calendars[MS_CAL];
    let clock = clock_now();
    let started = Instant::now();
    let mut model = BTreeMap::new();
    for (i, start) in starts(n, clock.now()).into_iter().enumerate() {
        sandbox.put_graph_event(MS_CAL, graph_event(i, start));
        model.insert(format!("AAMkBenchEvent{i:07}"), start);
    }
    eprintln!("  seeded {n} Graph events in {:.1} s", started.elapsed().as_secs_f64());
    let engine = sync::engine(&server, clock.clone(), SyncConfig::default());

    let timed = timed_sync(&engine).await;
    let stats = synced_stats(&timed.outcome).clone();
    assert_eq!(stats.written as usize, n);
    assert_eq!(sandbox.graph_event_count(MS_CAL), n);
    check_rows(&server, &linked, calendar, &model).await;
    let mut result = report(&timed, n, stats.pages, &postgres);
    eprintln!(
        "  synced {n} events in {:.1} ms ({} pages)",
        timed.wall.as_secs_f64() * 1000.0,
        stats.pages
    );
    if phases {
        let integrations = integrations(&server, &clock);
        let window = engine.window_at(clock.now());
        let client = integrations
            .client_for(&linked.user, linked.account, Provider::Microsoft, None)
            .unwrap();
        result["phases"] = measure_phases(&server, &*client, MS_CAL, window, None, Provider::Microsoft).await;
    }
    server.stop().await;
    result
}

/// `changes` changes (updates, one insertion, one deletion) on a synced
/// 5,000-event calendar, then the timed incremental sync; `0` = no change.
async fn google_incremental(changes: usize) -> Value {
    const N: usize = 5_000;
    let (sandbox, running) = start_sandbox().await;
    let server = TestServer::start_with(sandbox_env(&running)).await;
    let postgres = postgres_version(&server).await;
    let token = sandbox.mint_access_token(GOOGLE_ACCOUNT);
    let linked = link_oauth(
        &server,
        USER,
        Provider::Google,
        "bench@gmail.test",
        &token,
        &[(GOOGLE_CAL, "Bench", true)],
    )
    .await;
    let calendar = linked.calendars[GOOGLE_CAL];
    let clock = clock_now();
    let mut model = seed_google(&sandbox, N, clock.now());
    let engine = sync::engine(&server, clock.clone(), SyncConfig::default());
    sync_all(&engine).await;
    check_rows(&server, &linked, calendar, &model).await;

    if changes > 0 {
        // All but two move by an hour (new title too), one is added, one deleted.
        let all = starts(N, clock.now());
        for k in 0..changes - 2 {
            let i = k * (N / changes);
            let start = all[i] + Duration::hours(1);
            sandbox.put_google_event(GOOGLE_CAL, google_event(i, start, 1));
            model.insert(google_id(i), start);
        }
        let added = N + 1;
        let start = all[N / 2] + Duration::minutes(5);
        sandbox.put_google_event(GOOGLE_CAL, google_event(added, start, 0));
        model.insert(google_id(added), start);
        let gone = N - 1;
        sandbox.delete_google_event(GOOGLE_CAL, &google_id(gone));
        model.remove(&google_id(gone));
    }
    make_due(&server, &linked.user, calendar, clock.now()).await;

    let timed = timed_sync(&engine).await;
    let stats = synced_stats(&timed.outcome).clone();
    assert_eq!(stats.full, None, "an incremental round");
    assert_eq!(
        (stats.written + stats.deleted) as usize,
        changes,
        "every change applied, nothing else"
    );
    assert_eq!(sandbox.google_event_count(GOOGLE_CAL), model.len());
    check_rows(&server, &linked, calendar, &model).await;
    eprintln!(
        "  applied {changes} changes in {:.1} ms",
        timed.wall.as_secs_f64() * 1000.0
    );
    let result = report(&timed, changes, stats.pages, &postgres);
    server.stop().await;
    result
}

async fn caldav_initial(n: usize) -> Value {
    let radicale = Radicale::start(&[(CALDAV_USER, CALDAV_PASSWORD)]);
    let port = radicale.base_url.rsplit(':').next().unwrap().to_owned();
    let home = format!("{}/{CALDAV_USER}/", radicale.base_url);
    let collection = format!("{home}bench/");
    let clock = clock_now();
    let all = starts(n, clock.now());
    // One PUT of a whole calendar: Radicale stores one resource per UID and fills its item cache.
    let started = Instant::now();
    let mut body = String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Juy//Bench//EN\r\n");
    for (i, start) in all.iter().enumerate() {
        body.push_str(&ical_event(i, *start));
    }
    body.push_str("END:VCALENDAR\r\n");
    let http = reqwest::Client::builder()
        .timeout(StdDuration::from_secs(300))
        .build()
        .unwrap();
    let put = http
        .put(&collection)
        .basic_auth(CALDAV_USER, Some(CALDAV_PASSWORD))
        .header("content-type", "text/calendar")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "PUT of the whole calendar: {}", put.status());
    // Radicale computes a collection's ctag and sync-token on first use: do that before timing.
    let propfind = r#"<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/"><d:prop><cs:getctag/><d:sync-token/></d:prop></d:propfind>"#;
    let warm = http
        .request(reqwest::Method::from_bytes(b"PROPFIND").unwrap(), &collection)
        .basic_auth(CALDAV_USER, Some(CALDAV_PASSWORD))
        .header("depth", "0")
        .body(propfind)
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status().as_u16(), 207);
    eprintln!("  seeded {n} CalDAV events in {:.1} s", started.elapsed().as_secs_f64());

    let server = TestServer::start_with(vec![(
        "JUY_CALDAV__ALLOW_LIST".to_owned(),
        format!("[\"127.0.0.1:{port}\"]"),
    )])
    .await;
    let postgres = postgres_version(&server).await;
    let linked = link_caldav(
        &server,
        USER,
        &home,
        CALDAV_USER,
        CALDAV_PASSWORD,
        &[(&collection, "Bench", false)],
    )
    .await;
    let calendar = linked.calendars[&collection];
    let engine = sync::engine(&server, clock.clone(), SyncConfig::default());

    let timed = timed_sync(&engine).await;
    let stats = synced_stats(&timed.outcome).clone();
    assert_eq!(stats.written as usize, n);
    let rows = stored_events(&server, &linked.user, calendar).await;
    assert_eq!(rows.len(), n, "stored rows vs Radicale's events");
    let mut stored_starts: Vec<DateTime<Utc>> = rows.values().copied().collect();
    stored_starts.sort();
    assert_eq!(stored_starts, all, "stored starts vs Radicale's events");
    eprintln!(
        "  synced {n} events in {:.1} ms ({} pages)",
        timed.wall.as_secs_f64() * 1000.0,
        stats.pages
    );
    let result = report(&timed, n, stats.pages, &postgres);
    server.stop().await;
    drop(radicale);
    result
}

fn integrations(server: &TestServer, clock: &Arc<juy_domain::FixedClock>) -> Integrations {
    let clock: Arc<dyn juy_domain::Clock> = clock.clone();
    Integrations::new(server.integrations.clone(), server.store.clone(), clock).unwrap()
}

/// The Google listing's pages as raw HTTP answers, not parsed: what the provider side costs.
async fn serve_google_raw(running: &RunningSandbox, token: &str, window: juy_domain::TimeRange) -> Option<f64> {
    let http = reqwest::Client::new();
    let url = format!("{}/calendars/{GOOGLE_CAL}/events", running.google_api_base());
    let rfc = |at: DateTime<Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let started = Instant::now();
    let mut page_token: Option<String> = None;
    loop {
        let mut query = vec![
            ("singleEvents", "true".to_owned()),
            ("timeMin", rfc(window.start())),
            ("timeMax", rfc(window.end())),
            ("maxResults", "250".to_owned()),
        ];
        if let Some(t) = &page_token {
            query.push(("pageToken", t.clone()));
        }
        let url = url::Url::parse_with_params(&url, &query).unwrap();
        let text = http
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        const KEY: &str = "\"nextPageToken\":\"";
        match text.find(KEY) {
            Some(at) => {
                let rest = &text[at + KEY.len()..];
                page_token = Some(rest[..rest.find('"').unwrap()].to_owned());
            }
            None => break,
        }
    }
    Some(started.elapsed().as_secs_f64() * 1000.0)
}

/// Each stage of the pipeline alone over the same calendar: fetch (client),
/// normalise, seal, and the store's upsert (into a second user's fresh calendar).
async fn measure_phases(
    server: &TestServer,
    client: &dyn juy_providers::CalendarProvider,
    calendar: &str,
    window: juy_domain::TimeRange,
    serve_ms: Option<f64>,
    provider: Provider,
) -> Value {
    // Fetch: the provider client's pages, parsed into raw events.
    let started = Instant::now();
    let mut pages: Vec<EventPage> = Vec::new();
    let mut stream = client.list_events(calendar, window);
    while let Some(page) = stream.next().await {
        pages.push(page.unwrap());
    }
    drop(stream);
    let fetch_ms = started.elapsed().as_secs_f64() * 1000.0;

    // A second user's fresh calendar, so the store stage inserts as an initial sync does.
    let phase_user = UserId::new("bench-phases").unwrap();
    let other = link_oauth(
        server,
        phase_user.as_str(),
        provider,
        "phases@bench.test",
        "unused",
        &[("phases", "Phases", true)],
    )
    .await;
    let ctx = juy_normalizer::CalendarContext {
        user_id: phase_user.clone(),
        calendar_id: other.calendars["phases"],
        provider,
        time_zone: Some("Europe/Berlin".into()),
        default_reminders: Vec::new(),
        self_emails: vec!["bench@gmail.test".into()],
    };

    // Normalise (the payloads are taken out of their pages first, untimed).
    let payloads: Vec<Vec<Value>> = pages
        .iter()
        .map(|page| {
            page.items
                .iter()
                .filter_map(|item| match item {
                    RawEvent::Google(v) | RawEvent::Graph(v) => Some(v.clone()),
                    RawEvent::ICal { .. } => None,
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    let mut normalized = Vec::new();
    for items in &payloads {
        let one = match provider {
            Provider::Microsoft => juy_normalizer::graph::normalize(&ctx, items),
            _ => juy_normalizer::google::normalize(&ctx, items),
        };
        let events: Vec<juy_domain::CalendarEvent> = one
            .changes
            .into_iter()
            .filter_map(|change| match change {
                juy_normalizer::Change::Upsert(event) => Some(*event),
                juy_normalizer::Change::Delete { .. } => None,
            })
            .collect();
        normalized.push(events);
    }
    let normalise_ms = started.elapsed().as_secs_f64() * 1000.0;
    let events: usize = normalized.iter().map(Vec::len).sum();

    // Seal: the four sealed columns of every event, as the store seals them.
    let mut conn = server.store.conn().await.unwrap();
    let key = server.store.data_key(&mut conn, &phase_user).await.unwrap();
    let started = Instant::now();
    for event in normalized.iter().flatten() {
        let id = event.id.0.to_string();
        let aad = |column: &str| juy_crypto::Aad::new("user_calendar_events", column, &[phase_user.as_str(), &id]);
        for (column, text) in [
            ("title_enc", &event.title),
            ("location_enc", &event.location),
            ("description_enc", &event.description),
        ] {
            if let Some(text) = text {
                std::hint::black_box(key.seal_str(text, &aad(column)));
            }
        }
        let people = serde_json::to_vec(&(&event.organizer, &event.attendees)).unwrap();
        std::hint::black_box(key.seal(&people, &aad("attendees_enc")));
    }
    let seal_ms = started.elapsed().as_secs_f64() * 1000.0;

    // Store: one transaction per page, as the engine writes them.
    let now = Utc::now();
    let started = Instant::now();
    for page in &normalized {
        juy_store::events::upsert_events(&mut conn, &key, page, now, Duration::days(30))
            .await
            .unwrap();
    }
    let store_ms = started.elapsed().as_secs_f64() * 1000.0;
    json!({
        "pages": pages.len(),
        "events": events,
        "serve_ms": serve_ms,
        "fetch_ms": fetch_ms,
        "normalise_ms": normalise_ms,
        "seal_ms": seal_ms,
        "store_ms": store_ms,
    })
}
