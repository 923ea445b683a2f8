//! Benchmarks of the real sync pipeline: a provider over HTTP (the sandbox,
//! a real Radicale, or static Google pages) → provider client → normaliser →
//! encryption → PostgreSQL, driven by the sync engine as a worker drives it.
//!
//! `cargo xtask bench` runs this against a private PostgreSQL; by hand:
//! `JUY_TEST_DATABASE_URL=postgres://… cargo bench -p juy-integration-tests --bench sync -- [FILTER…] [--all] [--phases]`.
//! Results and what bounds them: BENCHMARKS.md.
//!
//! Each scenario runs in a process of its own (this binary re-executes
//! itself with `--scenario NAME`), so one scenario's memory never shows in
//! another's peak RSS. A scenario seeds its provider, then times exactly the
//! sync (lease → pages fetched, normalised, sealed and committed → release),
//! then checks that the stored rows equal the provider's events, so a broken
//! pipeline cannot report a fast time. Nothing here asserts on time.
//!
//! The `-static` scenarios serve Google pages rendered once, from a process
//! of their own (`--serve-google-pages`): the provider then costs O(page) per
//! request and no memory of the measured process, so they show the
//! pipeline's own speed and memory. The sandbox rebuilds and sorts its whole
//! listing for every page, which dominates its scenarios (BENCHMARKS.md).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark harness: a failed step must stop it loudly
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, DurationRound as _, Utc};
use futures::StreamExt as _;
use juy_api::connect::Integrations;
use juy_domain::{CalendarId, Clock as _, FixedClock, Provider, TimeRange, UserId};
use juy_integration_tests::TestServer;
use juy_integration_tests::caldav::Radicale;
use juy_integration_tests::providers::sandbox_env;
use juy_integration_tests::sync::{self, Linked, clock_now, link_caldav, link_oauth, make_due, stored_events};
use juy_providers::google::{GoogleCalendarClient, GoogleOptions};
use juy_providers::{CalendarProvider, Credential, EventPage, ProviderError, RawEvent, StaticAuthorizer};
use juy_sandbox::{RunningSandbox, Sandbox};
use juy_store::sync_state;
use juy_sync::engine::RunStats;
use juy_sync::{Engine, RunOutcome, SyncConfig};
use serde_json::{Value, json};

/// The line prefix a scenario process reports its result with.
use juy_integration_tests::bench::{RESULT, cpu_model, cpu_ns, pids_with, run_in_processes};
/// The line a page server announces its port with.
const LISTENING: &str = "LISTENING ";

const GOOGLE_ACCOUNT: &str = "google-sub-bench";
const GOOGLE_CAL: &str = "bench@gmail.test";
const MS_ACCOUNT: &str = "ms-id-bench";
const MS_CAL: &str = "AAMkBench";
const CALDAV_USER: &str = "bench";
const CALDAV_PASSWORD: &str = "bench-app-password";
const USER: &str = "bench-user";
/// The Google client's page size as the server configures it (`GoogleOptions` default).
const GOOGLE_PAGE: usize = juy_providers::google::DEFAULT_PAGE_SIZE as usize;

/// A benchmark scenario.
struct Scenario {
    name: &'static str,
    what: &'static str,
    /// Wall-time target in milliseconds, if the issue sets one.
    target_ms: Option<u64>,
    /// Peak RSS target in MB, if the issue sets one.
    target_rss_mb: Option<u64>,
    /// Runs only when named exactly or with `--all` (it takes minutes).
    slow: bool,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "google-initial-5k",
        what: "Google initial sync of 5,000 events, through the sandbox",
        target_ms: Some(500),
        target_rss_mb: None,
        slow: false,
    },
    Scenario {
        name: "google-initial-5k-static",
        what: "Google initial sync of 5,000 events, static pages",
        target_ms: Some(500),
        target_rss_mb: None,
        slow: false,
    },
    Scenario {
        name: "google-initial-100k",
        what: "Google initial sync of 100,000 events, through the sandbox (slow: the sandbox's listing is O(n) per page)",
        target_ms: Some(5000),
        target_rss_mb: Some(100),
        slow: true,
    },
    Scenario {
        name: "google-initial-100k-static",
        what: "Google initial sync of 100,000 events, static pages",
        target_ms: Some(5000),
        target_rss_mb: Some(100),
        slow: false,
    },
    Scenario {
        name: "google-initial-100k-static-p250",
        what: "as google-initial-100k-static, with Google's default page (maxResults=250) instead of the client's 1,000",
        target_ms: Some(5000),
        target_rss_mb: Some(100),
        slow: false,
    },
    Scenario {
        name: "google-incremental-10",
        what: "Google incremental sync of 10 changes (8 moved, 1 added, 1 deleted) on 5,000 events",
        target_ms: Some(50),
        target_rss_mb: None,
        slow: false,
    },
    Scenario {
        name: "google-incremental-none",
        what: "Google incremental sync with no change, 5,000 events",
        target_ms: Some(50),
        target_rss_mb: None,
        slow: false,
    },
    Scenario {
        name: "google-push-to-commit",
        what: "Google change → push notification → webhook → worker's incremental sync → row committed, on 5,000 events (median of 20)",
        target_ms: Some(1000),
        target_rss_mb: None,
        slow: false,
    },
    Scenario {
        name: "caldav-initial-5k",
        what: "CalDAV initial sync of 5,000 events from Radicale",
        target_ms: None,
        target_rss_mb: None,
        slow: false,
    },
    Scenario {
        name: "graph-initial-5k",
        what: "Microsoft Graph initial sync of 5,000 events, through the sandbox",
        target_ms: Some(500),
        target_rss_mb: None,
        slow: false,
    },
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg_after = |flag: &str| {
        args.iter().position(|a| a == flag).map(|at| {
            args.get(at + 1)
                .cloned()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        })
    };
    if let Some(name) = arg_after("--scenario") {
        let phases = args.iter().any(|a| a == "--phases");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let result = runtime.block_on(run_scenario(&name, phases));
        println!("{RESULT}{result}");
        return;
    }
    if let Some(n) = arg_after("--serve-google-pages") {
        let now = arg_after("--now").expect("--now RFC3339");
        let now = DateTime::parse_from_rfc3339(&now).expect("--now RFC3339").to_utc();
        serve_google_pages(n.parse().expect("a count"), now);
        return;
    }
    parent(&args);
}

/// Runs the selected scenarios, each in a process of its own, and prints the tables.
fn parent(args: &[String]) {
    if args.iter().any(|a| a == "--list") {
        for s in SCENARIOS {
            println!("{:<28} {}", s.name, s.what);
        }
        return;
    }
    let phases = args.iter().any(|a| a == "--phases");
    let all = args.iter().any(|a| a == "--all");
    // `cargo bench` passes `--bench`; words without dashes select scenarios by name.
    let filters: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    let selected: Vec<&Scenario> = SCENARIOS
        .iter()
        .filter(|s| filters.is_empty() || filters.iter().any(|f| s.name.contains(f)))
        .filter(|s| !s.slow || all || filters.contains(&s.name))
        .collect();
    assert!(
        !selected.is_empty(),
        "no scenario matches {filters:?}; scenarios: {}",
        SCENARIOS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
    );
    let names: Vec<&str> = selected.iter().map(|s| s.name).collect();
    let extra: &[&str] = if phases { &["--phases"] } else { &[] };
    for scenario in &selected {
        eprintln!("bench: {} ({})", scenario.name, scenario.what);
    }
    let results: Vec<(&Scenario, Value)> = selected.into_iter().zip(run_in_processes(&names, extra)).collect();
    print_results(&results);
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn print_results(results: &[(&Scenario, Value)]) {
    let first = results.first().map(|(_, v)| v);
    println!();
    println!(
        "machine: {} cores, {}; PostgreSQL {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        cpu_model(),
        first.and_then(|v| v["postgres"].as_str()).unwrap_or("?")
    );
    println!(
        "{:<32} {:>7} {:>5} {:>9} {:>8} {:>21} {:>8} {:>8} {:>8}  target",
        "scenario", "events", "pages", "wall", "events/s", "CPU ms: bench/prov/pg", "peak RSS", "before", "sync +"
    );
    for (scenario, v) in results {
        let wall_ms = v["wall_ms"].as_f64().unwrap_or_default();
        let events = v["events"].as_u64().unwrap_or_default();
        let peak = v["peak_rss_kb"].as_u64().unwrap_or_default();
        let before = v["rss_before_kb"].as_u64().unwrap_or_default();
        let rate = if v.get("max_ms").is_some() {
            // A latency scenario: `wall` is the median of its samples.
            "-".into()
        } else if wall_ms > 0.0 {
            format!("{:.0}", events as f64 / (wall_ms / 1000.0))
        } else {
            "-".into()
        };
        let cpu = |key: &str| {
            v["cpu_ms"][key]
                .as_f64()
                .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.0}"))
        };
        let mut target = Vec::new();
        if let Some(ms) = scenario.target_ms {
            let verdict = if wall_ms <= ms as f64 { "met" } else { "MISSED" };
            target.push(format!("≤ {ms} ms {verdict}"));
        }
        if let Some(limit) = scenario.target_rss_mb {
            let verdict = if mb(peak) <= limit as f64 { "met" } else { "MISSED" };
            target.push(format!("RSS ≤ {limit} MB {verdict}"));
        }
        if let Some(max) = v["max_ms"].as_f64() {
            target.push(format!("(median; max {max:.1} ms)"));
        }
        if v["load_1m"].as_f64().unwrap_or_default() > 0.5 {
            target.push(format!(
                "(load {:.1} at start)",
                v["load_1m"].as_f64().unwrap_or_default()
            ));
        }
        println!(
            "{:<32} {:>7} {:>5} {:>7.1}ms {:>8} {:>21} {:>6.1}MB {:>6.1}MB {:>6.1}MB  {}",
            scenario.name,
            events,
            v["pages"].as_u64().unwrap_or_default(),
            wall_ms,
            rate,
            format!("{}/{}/{}", cpu("bench"), cpu("provider"), cpu("postgres")),
            mb(peak),
            mb(before),
            mb(peak.saturating_sub(before)),
            if target.is_empty() {
                "-".to_owned()
            } else {
                target.join(", ")
            }
        );
    }
    println!(
        "events: rows stored and checked against the provider (incremental: changes applied). wall: lease → commit → \
         release. CPU: on-CPU time during the sync of this process (the in-process sandbox included), of the provider's \
         own process (static pages, Radicale), and of the database's backends. peak RSS: the whole process, during the \
         sync; before: its RSS when the sync starts; sync +: the difference, the pipeline's own share."
    );
    let with_phases: Vec<_> = results.iter().filter(|(_, v)| v.get("phases").is_some()).collect();
    if with_phases.is_empty() {
        return;
    }
    println!();
    println!(
        "phases, each run alone over the same calendar, in ms (the engine overlaps fetching the next page with writing):"
    );
    println!(
        "{:<32} {:>8} {:>8} {:>10} {:>8} {:>8} {:>8}",
        "scenario", "serve", "fetch", "normalise", "seal", "store", "SQL≈"
    );
    for (scenario, v) in with_phases {
        let f = |k: &str| v["phases"][k].as_f64();
        let show = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |x| format!("{x:.1}"));
        println!(
            "{:<32} {:>8} {:>8} {:>10} {:>8} {:>8} {:>8}",
            scenario.name,
            show(f("serve_ms")),
            show(f("fetch_ms")),
            show(f("normalise_ms")),
            show(f("seal_ms")),
            show(f("store_ms")),
            show(f("store_ms").zip(f("seal_ms")).map(|(a, b)| (a - b).max(0.0)))
        );
    }
    println!(
        "serve: the provider's pages over HTTP, unparsed; fetch: the provider client's pages, parsed; normalise: \
         payloads → events; seal: AES-256-GCM of the four sealed columns; store: juy_store::events::upsert_events, one \
         transaction per page, sealing included; SQL≈ store − seal."
    );
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

/// On-CPU nanoseconds of process `pid` from its `stat` (user + system time,
/// exited threads included, 10 ms resolution): for a provider that runs a
/// thread per request (Radicale), whose finished threads leave no `schedstat`.
fn cpu_ns_ticks(pid: u32) -> u64 {
    // USER_HZ is 100 on Linux, whatever the kernel's tick.
    const NS_PER_TICK: u64 = 10_000_000;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name (which may contain spaces): state is field 3, utime 14, stime 15.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) * NS_PER_TICK
}

fn load_1m() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or_default()
}

/// CPU counters sampled around the sync.
struct CpuProbe {
    provider: Option<u32>,
    postgres: Vec<u32>,
    at_start: (u64, u64, u64),
}

impl CpuProbe {
    fn start(database: &str, provider: Option<u32>) -> Self {
        let postgres = pids_with(database);
        let mut probe = Self {
            provider,
            postgres,
            at_start: (0, 0, 0),
        };
        probe.at_start = probe.sample();
        probe
    }

    fn sample(&self) -> (u64, u64, u64) {
        (
            cpu_ns(std::process::id()),
            self.provider.map(cpu_ns_ticks).unwrap_or(0),
            self.postgres.iter().map(|pid| cpu_ns(*pid)).sum(),
        )
    }

    fn finish(&self) -> Value {
        let end = self.sample();
        let ms = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / 1e6;
        json!({
            "bench": ms(self.at_start.0, end.0),
            "provider": self.provider.map(|_| ms(self.at_start.1, end.1)),
            "postgres": ms(self.at_start.2, end.2),
        })
    }
}

/// What one timed sync did.
struct Timed {
    wall: StdDuration,
    stats: RunStats,
    rss_before_kb: u64,
    sync_peak_kb: u64,
    cpu: Value,
}

/// Leases the one due calendar and syncs it, timed from the lease to the release.
async fn timed_sync(engine: &Engine, server: &TestServer, provider_pid: Option<u32>) -> Timed {
    let (rss_before_kb, _) = memory();
    reset_peak();
    let probe = CpuProbe::start(server.db.name(), provider_pid);
    let started = Instant::now();
    let leases = {
        let mut conn = engine.store().conn().await.unwrap();
        sync_state::lease_due(&mut conn, "bench", engine.clock().now(), engine.config().lease_for, 10)
            .await
            .unwrap()
    };
    assert_eq!(leases.len(), 1, "exactly the benchmarked calendar is due");
    let outcome = engine.run(leases.into_iter().next().unwrap()).await;
    let wall = started.elapsed();
    let cpu = probe.finish();
    let (_, sync_peak_kb) = memory();
    let stats = match outcome {
        RunOutcome::Synced { stats, .. } => stats,
        other => panic!("the sync did not finish: {other:?}"),
    };
    eprintln!(
        "  synced in {:.1} ms: {} pages, {} written, {} deleted",
        wall.as_secs_f64() * 1000.0,
        stats.pages,
        stats.written,
        stats.deleted
    );
    Timed {
        wall,
        stats,
        rss_before_kb,
        sync_peak_kb,
        cpu,
    }
}

fn report(timed: &Timed, events: usize, postgres: &str, load: f64) -> Value {
    json!({
        "wall_ms": timed.wall.as_secs_f64() * 1000.0,
        "events": events,
        "pages": timed.stats.pages,
        "rss_before_kb": timed.rss_before_kb,
        "peak_rss_kb": timed.sync_peak_kb,
        "cpu_ms": timed.cpu,
        "postgres": postgres,
        "load_1m": load,
    })
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
    let rows: Vec<Version> = diesel::sql_query(
        "SELECT current_setting('server_version') || ' (fsync=' || current_setting('fsync') || \
         ', synchronous_commit=' || current_setting('synchronous_commit') || ')' AS v",
    )
    .load(&mut *conn)
    .await
    .unwrap();
    rows.into_iter().next().map(|v| v.v).unwrap_or_default()
}

/// Checks that the stored rows are exactly `model` (external ids and starts).
async fn check_rows(
    server: &TestServer,
    linked: &Linked,
    calendar: CalendarId,
    model: &BTreeMap<String, DateTime<Utc>>,
) {
    let rows = stored_events(server, &linked.user, calendar).await;
    assert_eq!(rows.len(), model.len(), "stored rows vs the provider's events");
    assert!(rows == *model, "stored rows differ from the provider's events");
}

async fn run_scenario(name: &str, phases: bool) -> Value {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let load = load_1m();
    let mut result = match name {
        "google-initial-5k" => google_initial(5_000, phases).await,
        "google-initial-5k-static" => google_static(5_000, None, phases).await,
        "google-initial-100k" => google_initial(100_000, phases).await,
        "google-initial-100k-static" => google_static(100_000, None, phases).await,
        "google-initial-100k-static-p250" => google_static(100_000, Some(250), phases).await,
        "google-incremental-10" => google_incremental(10).await,
        "google-incremental-none" => google_incremental(0).await,
        "google-push-to-commit" => google_push(5_000, 20).await,
        "caldav-initial-5k" => caldav_initial(5_000).await,
        "graph-initial-5k" => graph_initial(5_000, phases).await,
        other => panic!("unknown scenario {other}"),
    };
    result["load_1m"] = json!(load);
    result
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

/// Seeds `n` Google events into the sandbox; returns the model: external id → start.
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

async fn link_google(server: &TestServer, token: &str) -> Linked {
    link_oauth(
        server,
        USER,
        Provider::Google,
        "bench@gmail.test",
        token,
        &[(GOOGLE_CAL, "Bench", true)],
    )
    .await
}

/// Google initial sync through the sandbox.
async fn google_initial(n: usize, phases: bool) -> Value {
    let (sandbox, running) = start_sandbox().await;
    let server = TestServer::start_with(sandbox_env(&running)).await;
    let postgres = postgres_version(&server).await;
    let token = sandbox.mint_access_token(GOOGLE_ACCOUNT);
    let linked = link_google(&server, &token).await;
    let calendar = linked.calendars[GOOGLE_CAL];
    let clock = clock_now();
    let model = seed_google(&sandbox, n, clock.now());
    let engine = sync::engine(&server, clock.clone(), SyncConfig::default());

    let timed = timed_sync(&engine, &server, None).await;
    assert_eq!(timed.stats.written as usize, n);
    assert_eq!(sandbox.google_event_count(GOOGLE_CAL), n);
    check_rows(&server, &linked, calendar, &model).await;
    let mut result = report(&timed, n, &postgres, 0.0);
    if phases {
        let base = running.google_api_base();
        result["phases"] = google_phases(&server, &engine, &clock, &linked, &base, &token).await;
    }
    server.stop().await;
    result
}

/// Google initial sync from static pages served by a process of their own;
/// `page_size`: a client asking for pages of that size instead of the one
/// the server builds (a what-if: everything else is the same engine and store).
async fn google_static(n: usize, page_size: Option<u32>, phases: bool) -> Value {
    let clock = clock_now();
    let pages = PageServer::start(n, clock.now());
    let base = format!("http://127.0.0.1:{}", pages.port);
    let env: Vec<(String, String)> = [
        ("JUY_GOOGLE__CLIENT_ID", "bench".to_owned()),
        ("JUY_GOOGLE__CLIENT_SECRET", "bench-secret".to_owned()),
        ("JUY_GOOGLE__AUTHORIZE_URL", format!("{base}/o/oauth2/v2/auth")),
        ("JUY_GOOGLE__TOKEN_URL", format!("{base}/token")),
        ("JUY_GOOGLE__REVOKE_URL", format!("{base}/revoke")),
        ("JUY_GOOGLE__USERINFO_URL", format!("{base}/userinfo")),
        ("JUY_GOOGLE__API_BASE_URL", format!("{base}/calendar/v3")),
        (
            "JUY_OAUTH__REDIRECT_URIS",
            "[\"https://app.juy.test/oauth/callback\"]".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let server = TestServer::start_with(env).await;
    let postgres = postgres_version(&server).await;
    let linked = link_google(&server, "static-token").await;
    let calendar = linked.calendars[GOOGLE_CAL];
    let model: BTreeMap<String, DateTime<Utc>> = starts(n, clock.now())
        .into_iter()
        .enumerate()
        .map(|(i, start)| (google_id(i), start))
        .collect();
    let engine = match page_size {
        None => sync::engine(&server, clock.clone(), SyncConfig::default()),
        Some(size) => {
            let http = reqwest::Client::builder()
                .timeout(StdDuration::from_secs(30))
                .build()
                .unwrap();
            let api = format!("{base}/calendar/v3");
            let client_clock: Arc<dyn juy_domain::Clock> = clock.clone();
            let clients = move |_: &sync_state::Lease| -> Result<Box<dyn CalendarProvider>, ProviderError> {
                let token = Credential::Bearer(Arc::new(zeroize::Zeroizing::new("static-token".to_owned())));
                let options = GoogleOptions {
                    page_size: size,
                    clock: Arc::clone(&client_clock),
                    ..GoogleOptions::default()
                };
                let client = GoogleCalendarClient::new(http.clone(), &api, Arc::new(StaticAuthorizer(token)), options)?;
                Ok(Box::new(client))
            };
            Arc::new(Engine::new(
                server.store.clone(),
                Arc::new(clients),
                clock.clone(),
                SyncConfig::default(),
            ))
        }
    };

    let timed = timed_sync(&engine, &server, Some(pages.child.id())).await;
    assert_eq!(timed.stats.written as usize, n);
    check_rows(&server, &linked, calendar, &model).await;
    let mut result = report(&timed, n, &postgres, 0.0);
    // The phases use the server's client (its default page size): not what a what-if page size measures.
    if phases && page_size.is_none() {
        let api = format!("{base}/calendar/v3");
        result["phases"] = google_phases(&server, &engine, &clock, &linked, &api, "static-token").await;
    }
    server.stop().await;
    drop(pages);
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
        model.insert(graph_id(i), start);
    }
    eprintln!("  seeded {n} Graph events in {:.1} s", started.elapsed().as_secs_f64());
    let engine = sync::engine(&server, clock.clone(), SyncConfig::default());

    let timed = timed_sync(&engine, &server, None).await;
    assert_eq!(timed.stats.written as usize, n);
    assert_eq!(sandbox.graph_event_count(MS_CAL), n);
    check_rows(&server, &linked, calendar, &model).await;
    let mut result = report(&timed, n, &postgres, 0.0);
    if phases {
        let window = engine.window_at(clock.now());
        let client = integrations(&server, &clock)
            .client_for(&linked.user, linked.account, Provider::Microsoft, None)
            .unwrap();
        result["phases"] = measure_phases(&server, &*client, MS_CAL, window, None, Provider::Microsoft).await;
    }
    server.stop().await;
    result
}

/// `changes` changes on a synced 5,000-event calendar (all but two moved an
/// hour with a new title, one added, one deleted), then the timed
/// incremental sync; `0`: no change at all.
async fn google_incremental(changes: usize) -> Value {
    const N: usize = 5_000;
    let (sandbox, running) = start_sandbox().await;
    let server = TestServer::start_with(sandbox_env(&running)).await;
    let postgres = postgres_version(&server).await;
    let token = sandbox.mint_access_token(GOOGLE_ACCOUNT);
    let linked = link_google(&server, &token).await;
    let calendar = linked.calendars[GOOGLE_CAL];
    let clock = clock_now();
    let mut model = seed_google(&sandbox, N, clock.now());
    let engine = sync::engine(&server, clock.clone(), SyncConfig::default());
    sync_all(&engine).await;
    check_rows(&server, &linked, calendar, &model).await;

    if changes > 0 {
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

    let timed = timed_sync(&engine, &server, None).await;
    assert_eq!(timed.stats.full, None, "an incremental round");
    assert_eq!(
        (timed.stats.written + timed.stats.deleted) as usize,
        changes,
        "every change applied, nothing else"
    );
    assert_eq!(sandbox.google_event_count(GOOGLE_CAL), model.len());
    check_rows(&server, &linked, calendar, &model).await;
    let result = report(&timed, changes, &postgres, 0.0);
    server.stop().await;
    result
}

/// The server as it runs: one sync worker polling once a minute, push
/// channels pointing at its own webhook. After the first sync (and its
/// channel), each round moves one event at the provider and times the
/// notification's way into the store: provider change → notification →
/// webhook verified → worker woken → incremental sync → row committed,
/// seen by polling the row every 2 ms.
async fn google_push(n: usize, rounds: usize) -> Value {
    let (sandbox, running) = start_sandbox().await;
    let server = sync::server_with_push(&running).await;
    let postgres = postgres_version(&server).await;
    let token = sandbox.mint_access_token(GOOGLE_ACCOUNT);
    let linked = link_google(&server, &token).await;
    let calendar = linked.calendars[GOOGLE_CAL];
    let now = Utc::now();
    let mut model = seed_google(&sandbox, n, now);
    server.wake_sync();
    let deadline = Instant::now() + StdDuration::from_secs(120);
    while !(stored_events(&server, &linked.user, calendar).await.len() == n
        && sandbox
            .push_watches()
            .iter()
            .any(|w| w.calendar.as_deref() == Some(GOOGLE_CAL)))
    {
        assert!(Instant::now() < deadline, "the first sync and its channel");
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    // Let the first run finish and release its lease.
    tokio::time::sleep(StdDuration::from_millis(500)).await;

    let all = starts(n, now);
    let mut samples = Vec::with_capacity(rounds);
    let (rss_before_kb, _) = memory();
    reset_peak();
    let probe = CpuProbe::start(server.db.name(), None);
    for round in 0..rounds {
        let i = (round * 7919) % n;
        let start = all[i] + Duration::minutes(15 * (round as i64 + 1));
        let started = Instant::now();
        sandbox.put_google_event(GOOGLE_CAL, google_event(i, start, round as u32 + 1));
        loop {
            if stored_start(&server, &linked.user, calendar, &google_id(i)).await == Some(start) {
                break;
            }
            assert!(
                started.elapsed() < StdDuration::from_secs(60),
                "the pushed change never arrived"
            );
            tokio::time::sleep(StdDuration::from_millis(2)).await;
        }
        samples.push(started.elapsed());
        model.insert(google_id(i), start);
        // The run that brought it in releases its lease right after the commit.
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    let cpu = probe.finish();
    let (_, peak) = memory();
    check_rows(&server, &linked, calendar, &model).await;
    let accepted = sandbox.push_deliveries().iter().filter(|d| d.accepted()).count();
    assert!(accepted >= rounds, "every change was pushed and accepted ({accepted})");
    samples.sort();
    let ms = |d: StdDuration| d.as_secs_f64() * 1000.0;
    let median = samples[samples.len() / 2];
    let max = *samples.last().unwrap();
    eprintln!(
        "  push → commit: median {:.1} ms, min {:.1} ms, max {:.1} ms over {rounds} changes",
        ms(median),
        ms(samples[0]),
        ms(max)
    );
    let result = json!({
        "wall_ms": ms(median),
        "max_ms": ms(max),
        "events": rounds,
        "pages": rounds,
        "rss_before_kb": rss_before_kb,
        "peak_rss_kb": peak,
        "cpu_ms": cpu,
        "postgres": postgres,
    });
    server.stop().await;
    result
}

/// The stored start of one event, or `None`.
async fn stored_start(
    server: &TestServer,
    user: &UserId,
    calendar: CalendarId,
    external_id: &str,
) -> Option<DateTime<Utc>> {
    #[derive(diesel::QueryableByName)]
    struct Start {
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        start_at: DateTime<Utc>,
    }
    use diesel_async::RunQueryDsl as _;
    let mut conn = server.store.conn().await.unwrap();
    let rows: Vec<Start> = diesel::sql_query(
        "SELECT start_at FROM user_calendar_events WHERE user_id = $1 AND calendar_id = $2 AND external_id = $3",
    )
    .bind::<diesel::sql_types::Text, _>(user.as_str())
    .bind::<diesel::sql_types::Uuid, _>(calendar.0)
    .bind::<diesel::sql_types::Text, _>(external_id)
    .load(&mut *conn)
    .await
    .unwrap();
    rows.into_iter().next().map(|row| row.start_at)
}

async fn caldav_initial(n: usize) -> Value {
    let radicale = Radicale::start(&[(CALDAV_USER, CALDAV_PASSWORD)]);
    let port = radicale.base_url.rsplit(':').next().unwrap().to_owned();
    let radicale_pid = pids_with("radicale")
        .into_iter()
        .find(|pid| parent_of(*pid) == Some(std::process::id()));
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
    // Radicale works out a collection's ctag and sync-token on first use: done before timing.
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

    let timed = timed_sync(&engine, &server, radicale_pid).await;
    assert_eq!(timed.stats.written as usize, n);
    let rows = stored_events(&server, &linked.user, calendar).await;
    assert_eq!(rows.len(), n, "stored rows vs Radicale's events");
    let mut stored_starts: Vec<DateTime<Utc>> = rows.values().copied().collect();
    stored_starts.sort();
    assert_eq!(stored_starts, all, "stored starts vs Radicale's events");
    let result = report(&timed, n, &postgres, 0.0);
    server.stop().await;
    drop(radicale);
    result
}

fn parent_of(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|n| n.trim().parse().ok())
}

fn integrations(server: &TestServer, clock: &Arc<FixedClock>) -> Integrations {
    let clock: Arc<dyn juy_domain::Clock> = clock.clone();
    Integrations::new(server.integrations.clone(), server.store.clone(), clock).unwrap()
}

/// Google static pages, from a process of their own so that neither their
/// memory nor their CPU counts as the pipeline's; stopped on drop.
struct PageServer {
    child: Child,
    port: u16,
}

impl PageServer {
    fn start(n: usize, now: DateTime<Utc>) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .args(["--serve-google-pages", &n.to_string(), "--now", &now.to_rfc3339()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the page server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("the page server's port");
        let port = line
            .trim()
            .strip_prefix(LISTENING)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the page server said {line:?}"));
        Self { child, port }
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves `n` Google events (as the sandbox renders them) as `events.list`
/// pages the way the sandbox pages them, rendered once; exits when its
/// standard input closes (the bench process ended).
fn serve_google_pages(n: usize, now: DateTime<Utc>) {
    let items: Arc<Vec<String>> = Arc::new(
        starts(n, now)
            .into_iter()
            .enumerate()
            .map(|(i, start)| {
                let mut event = google_event(i, start, 0);
                event["kind"] = json!("calendar#event");
                event["etag"] = json!(format!("\"{}\"", i + 1));
                event["updated"] = json!("2026-01-02T09:00:00.000Z");
                serde_json::to_string(&event).unwrap()
            })
            .collect(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let items = Arc::clone(&items);
            async move { google_page(&items, &uri) }
        });
        println!("{LISTENING}{port}");
        std::io::stdout().flush().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        // The bench process holds our standard input: when it ends, so do we.
        tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
            .await
            .ok();
    });
}

/// One answer of the static page server.
fn google_page(items: &[String], uri: &axum::http::Uri) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let query: BTreeMap<String, String> = url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let json = |body: String| ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response();
    if uri.path().ends_with("/calendarList") {
        return json(
            json!({"kind": "calendar#calendarList", "items": [{"kind": "calendar#calendarListEntry", "id": GOOGLE_CAL,
                "summary": "Bench", "timeZone": "Europe/Berlin", "accessRole": "owner", "primary": true}]})
            .to_string(),
        );
    }
    if !uri.path().ends_with("/events") {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    }
    let size: usize = query.get("maxResults").and_then(|m| m.parse().ok()).unwrap_or(250);
    let offset: usize = query
        .get("pageToken")
        .and_then(|t| t.strip_prefix('p'))
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    let remaining = items.len().saturating_sub(offset);
    // As the sandbox does: short pages while more remain.
    let take = if remaining > size {
        size.saturating_sub(1).max(1)
    } else {
        remaining
    };
    let mut body = String::with_capacity(take * 1500 + 256);
    body.push_str(
        r#"{"kind":"calendar#events","summary":"bench@gmail.test","timeZone":"Europe/Berlin","defaultReminders":[{"method":"popup","minutes":10}],"items":["#,
    );
    for (k, item) in items[offset..offset + take].iter().enumerate() {
        if k > 0 {
            body.push(',');
        }
        body.push_str(item);
    }
    body.push(']');
    if offset + take < items.len() {
        body.push_str(&format!(r#","nextPageToken":"p{}"}}"#, offset + take));
    } else {
        body.push_str(r#","nextSyncToken":"static-sync-token"}"#);
    }
    json(body)
}

/// The phases of a Google listing, each alone: the raw pages, then the pipeline's stages.
async fn google_phases(
    server: &TestServer,
    engine: &Engine,
    clock: &Arc<FixedClock>,
    linked: &Linked,
    api_base: &str,
    token: &str,
) -> Value {
    let window = engine.window_at(clock.now());
    let serve = serve_google_raw(api_base, token, window).await;
    let client = integrations(server, clock)
        .client_for(&linked.user, linked.account, Provider::Google, None)
        .unwrap();
    measure_phases(server, &*client, GOOGLE_CAL, window, Some(serve), Provider::Google).await
}

/// The Google listing's pages as raw HTTP answers, not parsed: what the provider side costs, in ms.
async fn serve_google_raw(api_base: &str, token: &str, window: TimeRange) -> f64 {
    let http = reqwest::Client::new();
    let url = format!("{api_base}/calendars/{GOOGLE_CAL}/events");
    let rfc = |at: DateTime<Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let started = Instant::now();
    let mut page_token: Option<String> = None;
    loop {
        let mut query = vec![
            ("singleEvents", "true".to_owned()),
            ("timeMin", rfc(window.start())),
            ("timeMax", rfc(window.end())),
            ("maxResults", GOOGLE_PAGE.to_string()),
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
    started.elapsed().as_secs_f64() * 1000.0
}

/// Each stage of the pipeline alone over the same calendar: fetch (the
/// client), normalise, seal, and the store's upsert into a second user's
/// fresh calendar, one transaction per page as an initial sync writes.
async fn measure_phases(
    server: &TestServer,
    client: &dyn CalendarProvider,
    calendar: &str,
    window: TimeRange,
    serve_ms: Option<f64>,
    provider: Provider,
) -> Value {
    let started = Instant::now();
    let mut pages: Vec<EventPage> = Vec::new();
    let mut stream = client.list_events(calendar, window);
    while let Some(page) = stream.next().await {
        pages.push(page.unwrap());
    }
    drop(stream);
    let fetch_ms = started.elapsed().as_secs_f64() * 1000.0;

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
    // The payloads are taken out of their pages first, untimed.
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

    // The four sealed columns of every event, as the store seals them.
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
        "events": normalized.iter().map(Vec::len).sum::<usize>(),
        "serve_ms": serve_ms,
        "fetch_ms": fetch_ms,
        "normalise_ms": normalise_ms,
        "seal_ms": seal_ms,
        "store_ms": store_ms,
    })
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
        "status": "confirmed",
        "iCalUID": format!("{}@google.com", google_id(n)),
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
    // Graph writes seven fraction digits.
    let fmt = |at: DateTime<Utc>| format!("{}.0000000", at.format("%Y-%m-%dT%H:%M:%S"));
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
        "id": graph_id(n),
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

fn graph_id(n: usize) -> String {
    format!("AAMkBenchEvent{n:07}")
}
