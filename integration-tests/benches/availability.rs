//! Benchmarks of free/busy and slot finding over a real server and its
//! PostgreSQL: `QueryFreeBusy` and `FindSlots` for 10 users with 3 synced
//! calendars of 2,000 events each.
//!
//! `cargo xtask bench availability` runs this against a private PostgreSQL;
//! by hand: `JUY_TEST_DATABASE_URL=postgres://… cargo bench -p juy-integration-tests --bench availability -- [FILTER…]`.
//! Results and what bounds them: BENCHMARKS.md.
//!
//! Each scenario runs in a process of its own (this binary re-executes
//! itself with `--scenario NAME`) over a database of its own. It seeds the
//! events straight into the store (sealed, as a sync stores them), marks the
//! calendars synced, then times the service method in-process (the
//! server-side latency: `CalendarService::query_free_busy` / `find_slots`,
//! SQL included) and the same request over gRPC, and checks the answer
//! against a brute-force reading of the seeded events, so a wrong answer
//! cannot report a fast time. Dense scenarios then overwrite every sealed
//! column with garbage and ask again through a store whose master key cannot
//! open any data key: the answer must not change, which shows that
//! answering never decrypts anything. Nothing here asserts on time.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark harness: a failed step must stop it loudly
#![allow(missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::{
    DateTime, Datelike as _, Duration, DurationRound as _, NaiveDate, NaiveTime, TimeZone as _, Utc, Weekday,
};
use chrono_tz::Tz;
use diesel::sql_types::{Array, Text};
use diesel_async::RunQueryDsl as _;
use juy_api::auth::Caller;
use juy_api::availability::{AvailabilityState, BusySource, FreeBusyInput, SlotInviteeInput, SlotsInput, UserFreeBusy};
use juy_api::connect::Integrations;
use juy_api::pb::v1 as pb;
use juy_api::service::CalendarService;
use juy_availability::BusyKind;
use juy_domain::{
    AllDayDates, Attendee, CalendarEvent, CalendarId, EventId, EventKind, EventStatus, Provider, Reminder,
    ReminderMethod, ResponseStatus, SystemClock, Transparency, UserId,
};
use juy_integration_tests::sync::link_oauth;
use juy_integration_tests::{TestServer, authed, hold_busy_rebuilds, release_busy_rebuilds, token, ts};
use juy_store::busy_blocks::BlocksRead;
use serde_json::{Value, json};

/// The line prefix a scenario process reports its result with.
use juy_integration_tests::bench::{RESULT, cpu_model, cpu_ns, pids_with, run_in_processes};

const USERS: usize = 10;
const CALENDARS: usize = 3;
const EVENTS_PER_CALENDAR: usize = 2_000;
/// Timed calls after the warm-up.
const ITERATIONS: usize = 300;
const WARM_UP: usize = 30;
/// The zone of most users and of the caller (slots are aligned on its clock).
const BERLIN: Tz = chrono_tz::Europe::Berlin;
/// Every user's weekday lunch hour in Berlin, kept free of busy time so that
/// FindSlots over the dense data has something to find.
const LUNCH: (u32, u32) = (12, 13);

/// A benchmark scenario.
struct Scenario {
    name: &'static str,
    what: &'static str,
    /// The server-side p99 target in milliseconds.
    target_ms: f64,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "freebusy-10x3x2000",
        what: "QueryFreeBusy, 10 users x 3 calendars x 2,000 events, all 60,000 within the two weeks asked",
        target_ms: 10.0,
    },
    Scenario {
        name: "freebusy-10x3x2000-sparse",
        what: "QueryFreeBusy, 10 users x 3 calendars x 2,000 events spread over the sync window (a year), two weeks asked",
        target_ms: 10.0,
    },
    Scenario {
        name: "findslots-10x3x2000",
        what: "FindSlots, 10 required invitees, 30-minute meeting, 15-minute steps, default working hours, over the dense data",
        target_ms: 20.0,
    },
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|a| a == "--scenario") {
        let name = args.get(at + 1).expect("--scenario needs a value").clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        // On a worker thread, as the server runs a request (the database
        // connections' tasks run there too), not on the blocked main thread.
        let result = runtime
            .block_on(runtime.spawn(async move { run_scenario(&name).await }))
            .expect("the scenario task");
        println!("{RESULT}{result}");
        return;
    }
    parent(&args);
}

/// Runs the selected scenarios, each in a process of its own, and prints the table.
fn parent(args: &[String]) {
    if args.iter().any(|a| a == "--list") {
        for s in SCENARIOS {
            println!("{:<28} {}", s.name, s.what);
        }
        return;
    }
    // `cargo bench` passes `--bench`, `cargo xtask bench` may pass the sync
    // bench's options (`--all`, `--phases`): every option is ignored here;
    // words without dashes select scenarios by name.
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
        SCENARIOS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
    );
    for scenario in &selected {
        eprintln!("bench: {} ({})", scenario.name, scenario.what);
    }
    let names: Vec<&str> = selected.iter().map(|s| s.name).collect();
    let results: Vec<(&Scenario, Value)> = selected.into_iter().zip(run_in_processes(&names, &[])).collect();
    print_results(&results);
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
        "{:<27} {:>7} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>13} {:>17} {:>8}  target (server p99)",
        "scenario",
        "events",
        "blocks",
        "answer",
        "p50",
        "p99",
        "max",
        "gRPC p50",
        "gRPC p99",
        "read",
        "CPU b/pg",
        "events p50/p99",
        "rebuild"
    );
    for (scenario, v) in results {
        let f = |k: &str| v[k].as_f64().unwrap_or_default();
        let p99 = f("server_p99_ms");
        let verdict = if p99 <= scenario.target_ms { "met" } else { "MISSED" };
        let target = format!("≤ {} ms {verdict}", scenario.target_ms);
        println!(
            "{:<27} {:>7} {:>7} {:>9} {:>6.2}ms {:>6.2}ms {:>6.2}ms {:>6.2}ms {:>6.2}ms {:>6.2}ms {:>13} {:>17} {:>6.0}ms  {}",
            scenario.name,
            v["events"].as_u64().unwrap_or_default(),
            v["rows_read"].as_u64().unwrap_or_default(),
            v["answer"].as_str().unwrap_or_default(),
            f("server_p50_ms"),
            p99,
            f("server_max_ms"),
            f("grpc_p50_ms"),
            f("grpc_p99_ms"),
            f("store_p50_ms"),
            format!("{:.2}/{:.2}", f("cpu_bench_ms"), f("cpu_postgres_ms")),
            format!("{:.1}/{:.1} ms", f("from_events_p50_ms"), f("from_events_p99_ms")),
            f("rebuild_ms"),
            target
        );
    }
    println!(
        "events: seeded, all 10 users; blocks: busy blocks read for the range (the explained caller's also carry \
         their events' spans: members); answer: busy intervals (free/busy) or slots (FindSlots) answered, checked \
         against a brute-force reading of the seeded events. p50/p99/max: the service method in-process over \
         {ITERATIONS} calls after {WARM_UP} warm-up calls, every user's blocks up to date (checked before and after); \
         gRPC: the same request from a tonic client over loopback; read: p50 of the store's block read alone \
         (juy_store::busy_blocks::read_blocks). CPU b/pg: on-CPU ms per server-side call of this process and of the \
         database's backends. events p50/p99: the same calls while every user's blocks are out of date, so that \
         every event in the range is read (right after a sync, before the refresher has caught up); rebuild: \
         rebuilding all 10 users' blocks from their events after seeding."
    );
    for (scenario, v) in results {
        println!(
            "{}: blocks read {}, of which the caller's carry {} members; the busy query over events returns {} rows",
            scenario.name,
            v["rows_read"].as_u64().unwrap_or_default(),
            v["members_read"].as_u64().unwrap_or_default(),
            v["event_rows"].as_u64().unwrap_or_default()
        );
    }
    for (scenario, v) in results {
        if let Some(check) = v["no_decryption"].as_str() {
            println!("{}: {check}", scenario.name);
        }
    }
}

async fn postgres_version(server: &TestServer) -> String {
    #[derive(diesel::QueryableByName)]
    struct Version {
        #[diesel(sql_type = Text)]
        v: String,
    }
    let mut conn = server.store.conn().await.unwrap();
    let rows: Vec<Version> = diesel::sql_query(
        "SELECT current_setting('server_version') || ' (shared_buffers=' || current_setting('shared_buffers') || \
         ', jit=' || current_setting('jit') || ')' AS v",
    )
    .load(&mut *conn)
    .await
    .unwrap();
    rows.into_iter().next().map(|v| v.v).unwrap_or_default()
}

async fn run_scenario(name: &str) -> Value {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match name {
        "freebusy-10x3x2000" => freebusy(Spread::Dense).await,
        "freebusy-10x3x2000-sparse" => freebusy(Spread::Year).await,
        "findslots-10x3x2000" => findslots().await,
        other => panic!("unknown scenario {other}"),
    }
}

// ---------------------------------------------------------------------------
// The data

/// Where the events of a calendar lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spread {
    /// All within the two weeks asked.
    Dense,
    /// Over the default sync window (30 days back, 365 ahead), two weeks of it asked.
    Year,
}

/// The seeded world: users, their zones, the range asked, every event.
struct World {
    users: Vec<UserId>,
    zones: Vec<Tz>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    events: Vec<CalendarEvent>,
    /// How long rebuilding every user's busy blocks took after seeding.
    rebuild_ms: f64,
}

fn user_name(u: usize) -> String {
    format!("bench-user-{u:02}")
}

/// Most of the team in Berlin, three in London (whose working day, 10:00 to
/// 18:00 on a Berlin clock, still holds the Berlin lunch hour).
fn zone_of(u: usize) -> Tz {
    if u >= 7 { chrono_tz::Europe::London } else { BERLIN }
}

/// A small, fast, deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const DESCRIPTION: &str = "Weekly sync on the roadmap: status of each workstream, blockers, decisions needed, \
     and a look at next quarter's hiring plan. Notes and the agenda live in the shared document; please add your \
     items before the meeting. Dial-in details below.";

/// The next Monday, 00:00 in Berlin, at least a week ahead.
fn range_start(now: DateTime<Utc>) -> DateTime<Utc> {
    let mut day = now.with_timezone(&BERLIN).date_naive() + Duration::days(7);
    while day.weekday() != Weekday::Mon {
        day = day.succ_opt().unwrap();
    }
    local_midnight(BERLIN, day)
}

fn local_midnight(zone: Tz, day: NaiveDate) -> DateTime<Utc> {
    zone.from_local_datetime(&day.and_time(NaiveTime::MIN))
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

fn is_weekday(day: NaiveDate) -> bool {
    !matches!(day.weekday(), Weekday::Sat | Weekday::Sun)
}

/// The facts of event `i` of calendar `c` of user `u`: a realistic mix of
/// busy, tentative, unanswered, declined, transparent, cancelled, out of
/// office, focus time and working elsewhere, 15 minutes to 2 hours long,
/// overlapping freely, and some all-day events (most of them transparent:
/// holidays, birthdays, reminders). Nothing busy touches a weekday's Berlin
/// lunch hour; busy all-day events fall on weekends, except one user's day
/// out of office.
#[allow(clippy::too_many_arguments)]
fn event(
    user: &UserId,
    calendar: CalendarId,
    u: usize,
    c: usize,
    i: usize,
    span_from: DateTime<Utc>,
    span_minutes: i64,
    ooo_day: NaiveDate,
) -> CalendarEvent {
    let mut rng = Rng::new(((u as u64) << 40) ^ ((c as u64) << 32) ^ i as u64);
    let external_id = format!("bench-{u}-{c}-{i:05}");
    let mut status = EventStatus::Confirmed;
    let mut transparency = Transparency::Opaque;
    let mut self_response = if c == 2 {
        ResponseStatus::None
    } else {
        ResponseStatus::Accepted
    };
    let mut kind = EventKind::Default;
    match rng.below(100) {
        0..=4 => status = EventStatus::Tentative,
        5..=7 => self_response = ResponseStatus::Tentative,
        8..=11 => self_response = ResponseStatus::NeedsAction,
        12..=16 => self_response = ResponseStatus::Declined,
        17..=21 => transparency = Transparency::Transparent,
        22..=25 => status = EventStatus::Cancelled,
        26..=27 => kind = EventKind::OutOfOffice,
        28..=29 => kind = EventKind::WorkingElsewhere,
        30..=32 => kind = EventKind::FocusTime,
        _ => {}
    }
    let offset = Duration::minutes(rng.below(span_minutes as u64 / 5) as i64 * 5);
    let mut start = span_from + offset;
    let all_day_roll = rng.below(1000);
    let (mut end, all_day) = if u == USERS - 1 && c == 0 && i == 0 {
        // One user's day out of office, in the middle of the second week.
        start = ooo_day.and_time(NaiveTime::MIN).and_utc();
        kind = EventKind::OutOfOffice;
        (status, transparency, self_response) = (EventStatus::Confirmed, Transparency::Opaque, ResponseStatus::None);
        let next = ooo_day.succ_opt().unwrap();
        (next.and_time(NaiveTime::MIN).and_utc(), Some((ooo_day, next)))
    } else if all_day_roll < 6 {
        // About 12 all-day events per calendar and two weeks of the dense data.
        let mut day = start.with_timezone(&BERLIN).date_naive();
        if all_day_roll < 5 {
            transparency = Transparency::Transparent;
        } else {
            while is_weekday(day) {
                day = day.succ_opt().unwrap();
            }
        }
        let days = 1 + rng.below(2) as i64;
        let last = day + Duration::days(days);
        // Stored instants in the calendar's zone, as the normaliser stores them.
        start = local_midnight(BERLIN, day);
        (local_midnight(BERLIN, last), Some((day, last)))
    } else {
        const MINUTES: [i64; 9] = [15, 30, 30, 45, 60, 60, 60, 90, 120];
        let length = Duration::minutes(MINUTES[rng.below(MINUTES.len() as u64) as usize]);
        (start + length, None)
    };
    let facts = facts_of(start, end, all_day, status, transparency, self_response, kind);
    if all_day.is_none() && juy_availability::busy_kind(&facts).is_some() {
        // Keep the Berlin lunch hour free: a busy event touching it moves to its end.
        let local = start.with_timezone(&BERLIN);
        let day = local.date_naive();
        let lunch_start = local_at(day, LUNCH.0);
        let lunch_end = local_at(day, LUNCH.1);
        if is_weekday(day) && start < lunch_end && end > lunch_start {
            let length = end - start;
            start = lunch_end;
            end = start + length;
        }
    }
    let attendees: Vec<Attendee> = (0..4)
        .map(|k| Attendee {
            email: format!("person{k}.{}@example.test", i % 97),
            name: Some(format!("Person {k} of {i}")),
            response: [
                ResponseStatus::Accepted,
                ResponseStatus::NeedsAction,
                ResponseStatus::Tentative,
                ResponseStatus::Declined,
            ][k],
            optional: false,
            is_self: false,
        })
        .collect();
    CalendarEvent {
        id: EventId(juy_store::events::event_row_id(user, calendar, &external_id)),
        user_id: user.clone(),
        calendar_id: calendar,
        provider: Provider::Google,
        ical_uid: Some(format!("{external_id}@google.com")),
        external_id,
        title: Some(format!("Roadmap sync #{i}")),
        location: Some("Room 4.12, Kantstraße 21, Berlin".into()),
        description: Some(DESCRIPTION.into()),
        start,
        end,
        time_zone: Some("Europe/Berlin".into()),
        all_day: all_day.map(|(start, end)| AllDayDates { start, end }),
        status,
        transparency,
        self_response,
        kind,
        organizer: Some(Attendee {
            email: "organizer@example.test".into(),
            name: Some("The Organizer".into()),
            response: ResponseStatus::Accepted,
            optional: false,
            is_self: false,
        }),
        attendees,
        series_id: None,
        instance_start: None,
        reminders: vec![Reminder {
            minutes_before: 10,
            method: ReminderMethod::Popup,
        }],
        etag: Some("\"1\"".into()),
        updated: Some(span_from - Duration::days(30)),
    }
}

fn local_at(day: NaiveDate, hour: u32) -> DateTime<Utc> {
    BERLIN
        .from_local_datetime(&day.and_hms_opt(hour, 0, 0).unwrap())
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

fn facts_of(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    all_day: Option<(NaiveDate, NaiveDate)>,
    status: EventStatus,
    transparency: Transparency,
    self_response: ResponseStatus,
    kind: EventKind,
) -> juy_availability::BusyFacts {
    juy_availability::BusyFacts {
        start,
        end,
        all_day: all_day.map(|(start, end)| AllDayDates { start, end }),
        status,
        transparency,
        self_response,
        kind,
    }
}

/// Starts a server, links 10 users with 3 calendars each, seeds their events
/// (sealed, through the store, as a sync writes them), marks every calendar
/// synced a minute ago and lets PostgreSQL vacuum and analyse the table, as
/// autovacuum would after a sync.
async fn seed(spread: Spread) -> (TestServer, World) {
    let server = TestServer::start().await;
    let now = Utc::now();
    let from = range_start(now);
    let to = from + Duration::days(14);
    let (span_from, span_minutes) = match spread {
        Spread::Dense => (from, Duration::days(14).num_minutes()),
        // The sync window: 30 days back, 365 ahead (the range asked lies within it).
        Spread::Year => (
            (now - Duration::days(29)).duration_trunc(Duration::minutes(5)).unwrap(),
            Duration::days(388).num_minutes(),
        ),
    };
    let ooo_day = (from + Duration::days(9)).with_timezone(&BERLIN).date_naive();
    let started = Instant::now();
    let mut users = Vec::new();
    let mut events = Vec::new();
    for u in 0..USERS {
        let name = user_name(u);
        let calendars: Vec<(String, &str, bool)> = (0..CALENDARS)
            .map(|c| (format!("cal-{c}@bench.test"), ["Work", "Team", "Personal"][c], c == 0))
            .collect();
        let refs: Vec<(&str, &str, bool)> = calendars.iter().map(|(id, n, p)| (id.as_str(), *n, *p)).collect();
        let linked = link_oauth(
            &server,
            &name,
            Provider::Google,
            &format!("{name}@bench.test"),
            "unused",
            &refs,
        )
        .await;
        let mut mine = Vec::with_capacity(CALENDARS * EVENTS_PER_CALENDAR);
        for (c, (id, _, _)) in calendars.iter().enumerate() {
            let calendar = linked.calendars[id];
            for i in 0..EVENTS_PER_CALENDAR {
                mine.push(event(&linked.user, calendar, u, c, i, span_from, span_minutes, ooo_day));
            }
        }
        let mut conn = server.store.conn().await.unwrap();
        let key = server.store.data_key(&mut conn, &linked.user).await.unwrap();
        let stored = juy_store::events::upsert_events(&mut conn, &key, &mine, now, Duration::days(30))
            .await
            .unwrap();
        assert_eq!(stored, mine.len());
        events.extend(mine);
        users.push(linked.user);
    }
    let names: Vec<&str> = users.iter().map(UserId::as_str).collect();
    let mut conn = server.store.conn().await.unwrap();
    diesel::sql_query("UPDATE connected_accounts SET status = 'active' WHERE user_id = ANY($1)")
        .bind::<Array<Text>, _>(&names)
        .execute(&mut *conn)
        .await
        .unwrap();
    for (u, user) in users.iter().enumerate() {
        diesel::sql_query(
            "UPDATE calendars SET sync_status = 'ok', last_synced_at = now() - interval '1 minute', \
                 next_sync_at = now() + interval '10 minutes', time_zone = $2 \
             WHERE user_id = $1",
        )
        .bind::<Text, _>(user.as_str())
        .bind::<Text, _>(zone_of(u).name())
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    diesel::sql_query("VACUUM (ANALYZE) user_calendar_events")
        .execute(&mut *conn)
        .await
        .unwrap();
    diesel::sql_query("VACUUM (ANALYZE) calendars")
        .execute(&mut *conn)
        .await
        .unwrap();
    eprintln!(
        "  seeded {} events for {USERS} users in {:.1} s",
        events.len(),
        started.elapsed().as_secs_f64()
    );
    // The server's refresher would rebuild the busy blocks within a second
    // or two; here they are rebuilt at once, and the time it takes recorded.
    // (The server's refresher may have built some users' blocks while they
    // were being seeded, for the zone their calendars had before the update
    // above; reads would find those out of date and mark them. Marking every
    // user first makes this one rebuild the only one.)
    let everyone: Vec<&UserId> = users.iter().collect();
    juy_store::busy_blocks::mark_dirty(&mut conn, &everyone).await.unwrap();
    let rebuilding = Instant::now();
    juy_sync::busy_blocks::refresh_all(&server.store).await.unwrap();
    let rebuild_ms = rebuilding.elapsed().as_secs_f64() * 1000.0;
    diesel::sql_query("VACUUM (ANALYZE) busy_blocks")
        .execute(&mut *conn)
        .await
        .unwrap();
    eprintln!("  rebuilt the busy blocks of {USERS} users in {rebuild_ms:.0} ms");
    let zones = (0..USERS).map(zone_of).collect();
    (
        server,
        World {
            users,
            zones,
            from,
            to,
            events,
            rebuild_ms,
        },
    )
}

/// Fails unless every user's busy blocks are up to date, so that a timing
/// taken between two such checks measured answers read from blocks.
async fn assert_blocks_fresh(server: &TestServer, world: &World) {
    let reads = read_blocks(server, world, None).await;
    assert!(
        reads.iter().all(|r| matches!(r, BlocksRead::Fresh(_))),
        "busy blocks are not up to date: {reads:?}"
    );
}

async fn read_blocks(server: &TestServer, world: &World, explain: Option<usize>) -> Vec<BlocksRead> {
    let mut conn = server.store.conn().await.unwrap();
    let zones: Vec<(&UserId, &str)> = world
        .users
        .iter()
        .zip(&world.zones)
        .map(|(u, z)| (u, z.name()))
        .collect();
    juy_store::busy_blocks::read_blocks(&mut conn, &zones, world.from, world.to, explain)
        .await
        .unwrap()
}

/// Times `call` while every user's blocks are out of date (marked changed,
/// their rebuild held off by holding the rebuild lock), so each call reads
/// every event: what an answer costs right after a sync, before the refresher
/// has caught up.
async fn time_from_events<F, Fut>(server: &TestServer, world: &World, call: F) -> Timings
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let hold = hold_busy_rebuilds(&server.store, &world.users).await;
    assert!(
        read_blocks(server, world, None)
            .await
            .iter()
            .all(|r| *r == BlocksRead::Dirty)
    );
    let timings = time(server.db.name(), call).await;
    assert!(
        read_blocks(server, world, None)
            .await
            .iter()
            .all(|r| *r == BlocksRead::Dirty)
    );
    release_busy_rebuilds(hold).await;
    juy_sync::busy_blocks::refresh_all(&server.store).await.unwrap();
    assert_blocks_fresh(server, world).await;
    timings
}

/// A service over `store`, as the server builds its own (same provider settings, the real clock).
fn service_over(server: &TestServer, store: juy_store::Store) -> CalendarService {
    let integrations = Integrations::new(server.integrations.clone(), store.clone(), Arc::new(SystemClock)).unwrap();
    CalendarService::new(store, Arc::new(integrations))
}

fn caller(world: &World) -> Caller {
    Caller::new(world.users[0].clone(), Vec::new())
}

fn names(world: &World) -> Vec<String> {
    world.users.iter().map(|u| format!("users/{u}")).collect()
}

// ---------------------------------------------------------------------------
// Timing

/// Latencies of `ITERATIONS` calls after `WARM_UP`, and the CPU they cost.
struct Timings {
    samples_ms: Vec<f64>,
    cpu_bench_ms: f64,
    cpu_postgres_ms: f64,
}

impl Timings {
    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.samples_ms.clone();
        sorted.sort_by(f64::total_cmp);
        // Nearest rank.
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    fn max(&self) -> f64 {
        self.samples_ms.iter().copied().fold(0.0, f64::max)
    }
}

async fn time<F, Fut>(database: &str, mut call: F) -> Timings
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..WARM_UP {
        call().await;
    }
    let postgres = pids_with(database);
    let sample = || {
        (
            cpu_ns(std::process::id()),
            postgres.iter().map(|pid| cpu_ns(*pid)).sum::<u64>(),
        )
    };
    let (bench_before, pg_before) = sample();
    let mut samples_ms = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let started = Instant::now();
        call().await;
        samples_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let (bench_after, pg_after) = sample();
    let per_call = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1e6 / ITERATIONS as f64;
    Timings {
        samples_ms,
        cpu_bench_ms: per_call(bench_before, bench_after),
        cpu_postgres_ms: per_call(pg_before, pg_after),
    }
}

fn report(server_side: &Timings, grpc: &Timings, store: &Timings, from_events: &Timings, world: &World) -> Value {
    eprintln!(
        "  server-side p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; gRPC p50 {:.2} ms, p99 {:.2} ms; block read alone p50 {:.2} ms; \
         from events (blocks out of date) p50 {:.2} ms, p99 {:.2} ms",
        server_side.percentile(50.0),
        server_side.percentile(99.0),
        server_side.max(),
        grpc.percentile(50.0),
        grpc.percentile(99.0),
        store.percentile(50.0),
        from_events.percentile(50.0),
        from_events.percentile(99.0),
    );
    json!({
        "from_events_p50_ms": from_events.percentile(50.0),
        "from_events_p99_ms": from_events.percentile(99.0),
        "rebuild_ms": world.rebuild_ms,
        "server_p50_ms": server_side.percentile(50.0),
        "server_p99_ms": server_side.percentile(99.0),
        "server_max_ms": server_side.max(),
        "grpc_p50_ms": grpc.percentile(50.0),
        "grpc_p99_ms": grpc.percentile(99.0),
        "grpc_max_ms": grpc.max(),
        "cpu_bench_ms": server_side.cpu_bench_ms,
        "cpu_postgres_ms": server_side.cpu_postgres_ms,
        "store_p50_ms": store.percentile(50.0),
        "store_cpu_bench_ms": store.cpu_bench_ms,
        "store_cpu_postgres_ms": store.cpu_postgres_ms,
    })
}

/// The store's read of busy blocks alone (`juy_store::busy_blocks::read_blocks`), timed as the service is.
async fn time_busy_query(server: &TestServer, world: &World, explain: Option<usize>) -> Timings {
    let mut conn = server.store.conn().await.unwrap();
    let conn = tokio::sync::Mutex::new(&mut conn);
    let zones: Vec<(&UserId, &str)> = world
        .users
        .iter()
        .zip(&world.zones)
        .map(|(u, z)| (u, z.name()))
        .collect();
    time(server.db.name(), || async {
        let mut conn = conn.lock().await;
        let rows = juy_store::busy_blocks::read_blocks(&mut conn, &zones, world.from, world.to, explain)
            .await
            .unwrap();
        std::hint::black_box(rows);
    })
    .await
}

/// How many blocks (and, for the explained user, block members) the read returns for the range, and how many
/// event rows the busy query over events would.
async fn rows_read(server: &TestServer, world: &World, explain: Option<usize>) -> (usize, usize, usize) {
    let reads = read_blocks(server, world, explain).await;
    let blocks = reads
        .iter()
        .map(|r| match r {
            BlocksRead::Fresh(blocks) => blocks.len(),
            _ => 0,
        })
        .sum();
    let members = reads
        .iter()
        .map(|r| match r {
            BlocksRead::Fresh(blocks) => blocks.iter().map(|b| b.members.len()).sum(),
            _ => 0,
        })
        .sum();
    let mut conn = server.store.conn().await.unwrap();
    let events = juy_store::availability::busy_events(&mut conn, &world.users, world.from, world.to)
        .await
        .unwrap()
        .iter()
        .map(Vec::len)
        .sum();
    (blocks, members, events)
}

// ---------------------------------------------------------------------------
// Scenarios

async fn freebusy(spread: Spread) -> Value {
    let (server, world) = seed(spread).await;
    let postgres = postgres_version(&server).await;
    let service = service_over(&server, server.store.clone());
    let caller = caller(&world);
    let input = FreeBusyInput {
        users: names(&world),
        start_time: Some(world.from),
        end_time: Some(world.to),
    };

    let answer = service.query_free_busy(&caller, input.clone()).await.unwrap();
    check_free_busy(&world, &answer);
    let intervals: usize = answer.iter().map(|u| u.busy.len()).sum();
    eprintln!("  answer: {intervals} busy intervals over {USERS} users, as the brute-force reading");

    assert_blocks_fresh(&server, &world).await;
    let server_side = time(server.db.name(), || {
        let (service, caller, input) = (&service, &caller, input.clone());
        async move {
            std::hint::black_box(service.query_free_busy(caller, input).await.unwrap());
        }
    })
    .await;
    assert_blocks_fresh(&server, &world).await;
    let from_events = time_from_events(&server, &world, || {
        let (service, caller, input) = (&service, &caller, input.clone());
        async move {
            std::hint::black_box(service.query_free_busy(caller, input).await.unwrap());
        }
    })
    .await;
    let client = server.availability().await;
    let bearer = token(world.users[0].as_str(), &[]);
    let request = pb::QueryFreeBusyRequest {
        users: names(&world),
        start_time: Some(ts(world.from)),
        end_time: Some(ts(world.to)),
    };
    let grpc = time(server.db.name(), || {
        let mut client = client.clone();
        let request = authed(request.clone(), &bearer);
        async move {
            let response = client.query_free_busy(request).await.unwrap().into_inner();
            assert_eq!(response.users.len(), USERS);
        }
    })
    .await;

    let store = time_busy_query(&server, &world, Some(0)).await;
    let mut result = report(&server_side, &grpc, &store, &from_events, &world);
    result["events"] = json!(world.events.len());
    let (blocks, members, events) = rows_read(&server, &world, Some(0)).await;
    result["rows_read"] = json!(blocks);
    result["members_read"] = json!(members);
    result["event_rows"] = json!(events);
    result["answer"] = json!(format!("{intervals} int."));
    result["postgres"] = json!(postgres);
    if spread == Spread::Dense {
        let again = without_keys(&server, |service| {
            let (caller, input) = (caller.clone(), input.clone());
            async move { service.query_free_busy(&caller, input).await.unwrap() }
        })
        .await;
        // Which events an interval names is a set: their order follows the rows' order, which may differ.
        let sorted = |mut users: Vec<UserFreeBusy>| {
            for busy in users.iter_mut().flat_map(|u| &mut u.busy) {
                busy.sources.sort_by_key(|source| match source {
                    BusySource::Event(id) => (0, id.0),
                    BusySource::Meeting(id) => (1, id.0),
                });
            }
            users
        };
        assert!(
            sorted(again) == sorted(answer.clone()),
            "free/busy changed once the sealed columns were garbage"
        );
        result["no_decryption"] = json!(NO_DECRYPTION);
    }
    server.stop().await;
    result
}

fn slots_input(world: &World) -> SlotsInput {
    SlotsInput {
        invitees: names(world)
            .into_iter()
            .map(|user| SlotInviteeInput {
                user,
                ..SlotInviteeInput::default()
            })
            .collect(),
        duration: Some(Duration::minutes(30)),
        start_time: Some(world.from),
        end_time: Some(world.to),
        granularity: Some(Duration::minutes(15)),
        ..SlotsInput::default()
    }
}

async fn findslots() -> Value {
    let (server, world) = seed(Spread::Dense).await;
    let postgres = postgres_version(&server).await;
    let service = service_over(&server, server.store.clone());
    let caller = caller(&world);
    let input = slots_input(&world);

    let answer = service.find_slots(&caller, input.clone()).await.unwrap();
    let expected = brute_force_slots(&world);
    let found: Vec<DateTime<Utc>> = answer.slots.iter().map(|s| s.start).collect();
    assert_eq!(
        found,
        expected.iter().copied().take(10).collect::<Vec<_>>(),
        "FindSlots differs from the brute-force reading"
    );
    assert!(answer.conflicts.is_empty() && !answer.no_common_hours && answer.incomplete.is_empty());
    eprintln!(
        "  answer: the first 10 of {} common free half hours, as the brute-force reading",
        expected.len()
    );

    assert_blocks_fresh(&server, &world).await;
    let server_side = time(server.db.name(), || {
        let (service, caller, input) = (&service, &caller, input.clone());
        async move {
            std::hint::black_box(service.find_slots(caller, input).await.unwrap());
        }
    })
    .await;
    assert_blocks_fresh(&server, &world).await;
    let from_events = time_from_events(&server, &world, || {
        let (service, caller, input) = (&service, &caller, input.clone());
        async move {
            std::hint::black_box(service.find_slots(caller, input).await.unwrap());
        }
    })
    .await;
    let client = server.availability().await;
    let bearer = token(world.users[0].as_str(), &[]);
    let request = pb::FindSlotsRequest {
        invitees: names(&world)
            .into_iter()
            .map(|user| pb::SlotInvitee {
                user,
                ..pb::SlotInvitee::default()
            })
            .collect(),
        duration: Some(prost_types::Duration {
            seconds: 30 * 60,
            nanos: 0,
        }),
        start_time: Some(ts(world.from)),
        end_time: Some(ts(world.to)),
        granularity: Some(prost_types::Duration {
            seconds: 15 * 60,
            nanos: 0,
        }),
        ..pb::FindSlotsRequest::default()
    };
    let grpc = time(server.db.name(), || {
        let mut client = client.clone();
        let request = authed(request.clone(), &bearer);
        async move {
            let response = client.find_slots(request).await.unwrap().into_inner();
            assert_eq!(response.slots.len(), 10);
        }
    })
    .await;

    let store = time_busy_query(&server, &world, None).await;
    let mut result = report(&server_side, &grpc, &store, &from_events, &world);
    result["events"] = json!(world.events.len());
    let (blocks, members, events) = rows_read(&server, &world, None).await;
    result["rows_read"] = json!(blocks);
    result["members_read"] = json!(members);
    result["event_rows"] = json!(events);
    result["answer"] = json!(format!("{} slots", answer.slots.len()));
    result["postgres"] = json!(postgres);
    let again = without_keys(&server, |service| {
        let (caller, input) = (caller.clone(), input.clone());
        async move { service.find_slots(&caller, input).await.unwrap() }
    })
    .await;
    assert!(
        again == answer,
        "FindSlots changed once the sealed columns were garbage"
    );
    result["no_decryption"] = json!(NO_DECRYPTION);
    server.stop().await;
    result
}

const NO_DECRYPTION: &str = "same answer after every sealed column (event texts and attendees, calendar names) was \
     overwritten with garbage and through a store whose master key opens no data key";

/// Overwrites every sealed column with bytes no key opens, then asks `ask`
/// through a service whose store has another master key (checked: it cannot
/// open the users' data keys), so any decryption on the way would fail.
async fn without_keys<F, Fut, T>(server: &TestServer, ask: F) -> T
where
    F: FnOnce(CalendarService) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut conn = server.store.conn().await.unwrap();
    let garbage = "'\\x6e6f7420612063697068657274657874'::bytea";
    let updated = diesel::sql_query(format!(
        "UPDATE user_calendar_events SET title_enc = {garbage}, location_enc = {garbage}, \
             description_enc = {garbage}, attendees_enc = {garbage}"
    ))
    .execute(&mut *conn)
    .await
    .unwrap();
    assert_eq!(updated, USERS * CALENDARS * EVENTS_PER_CALENDAR);
    diesel::sql_query(format!("UPDATE calendars SET name_enc = {garbage}"))
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let keyring = juy_crypto::MasterKeyring::parse(&juy_integration_tests::new_master_keys()).unwrap();
    let foreign = server.db.store_with_keyring(keyring);
    {
        let mut conn = foreign.conn().await.unwrap();
        let user = UserId::new(user_name(0)).unwrap();
        assert!(
            foreign.data_key(&mut conn, &user).await.is_err(),
            "the foreign master key must not open the users' data keys"
        );
    }
    ask(service_over(server, foreign)).await
}

// ---------------------------------------------------------------------------
// Brute-force readings of the seeded events

/// Each user's busy spans `(start, end, kind, event)`, by the busy policy
/// written out again here: cancelled, transparent, declined and working
/// elsewhere are free; out of office; tentative or not answered; else busy.
/// All-day events run from local midnight to local midnight in the owner's zone.
/// A busy span of the brute-force reading: start, end, kind, the event.
type Span = (DateTime<Utc>, DateTime<Utc>, BusyKind, EventId);

fn busy_spans(world: &World) -> Vec<Vec<Span>> {
    let index: BTreeMap<&UserId, usize> = world.users.iter().enumerate().map(|(i, u)| (u, i)).collect();
    let mut spans = vec![Vec::new(); world.users.len()];
    for e in &world.events {
        if e.status == EventStatus::Cancelled
            || e.transparency == Transparency::Transparent
            || e.self_response == ResponseStatus::Declined
            || e.kind == EventKind::WorkingElsewhere
        {
            continue;
        }
        let kind = if e.kind == EventKind::OutOfOffice {
            BusyKind::OutOfOffice
        } else if e.status == EventStatus::Tentative
            || matches!(e.self_response, ResponseStatus::Tentative | ResponseStatus::NeedsAction)
        {
            BusyKind::Tentative
        } else {
            BusyKind::Busy
        };
        let u = index[&e.user_id];
        let (start, end) = match e.all_day {
            Some(dates) => (
                local_midnight(world.zones[u], dates.start),
                local_midnight(world.zones[u], dates.end),
            ),
            None => (e.start, e.end),
        };
        let (start, end) = (start.max(world.from), end.min(world.to));
        if start < end {
            spans[u].push((start, end, kind, e.id));
        }
    }
    spans
}

/// Merges by cutting the range at every boundary and taking, in each piece,
/// the greatest kind covering it.
fn brute_force_merge(spans: &[Span]) -> Vec<(DateTime<Utc>, DateTime<Utc>, BusyKind)> {
    let cuts: Vec<DateTime<Utc>> = spans
        .iter()
        .flat_map(|s| [s.0, s.1])
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let position = |at: DateTime<Utc>| cuts.binary_search(&at).unwrap();
    // Per kind, how many spans open minus close at each cut.
    let mut delta = vec![[0i64; 3]; cuts.len()];
    let rank = |kind: BusyKind| match kind {
        BusyKind::Tentative => 0,
        BusyKind::Busy => 1,
        BusyKind::OutOfOffice => 2,
    };
    for &(start, end, kind, _) in spans {
        delta[position(start)][rank(kind)] += 1;
        delta[position(end)][rank(kind)] -= 1;
    }
    let mut open = [0i64; 3];
    let mut merged: Vec<(DateTime<Utc>, DateTime<Utc>, BusyKind)> = Vec::new();
    for (k, pair) in cuts.windows(2).enumerate() {
        for r in 0..3 {
            open[r] += delta[k][r];
        }
        let kind = if open[2] > 0 {
            Some(BusyKind::OutOfOffice)
        } else if open[1] > 0 {
            Some(BusyKind::Busy)
        } else if open[0] > 0 {
            Some(BusyKind::Tentative)
        } else {
            None
        };
        let Some(kind) = kind else { continue };
        match merged.last_mut() {
            Some(last) if last.1 == pair[0] && last.2 == kind => last.1 = pair[1],
            _ => merged.push((pair[0], pair[1], kind)),
        }
    }
    merged
}

/// Checks every user's answer against the brute-force merge; the caller's
/// intervals must name exactly their busy events, nobody else's any.
fn check_free_busy(world: &World, answer: &[UserFreeBusy]) {
    let spans = busy_spans(world);
    assert_eq!(answer.len(), world.users.len());
    for (u, got) in answer.iter().enumerate() {
        assert_eq!(got.user, world.users[u]);
        assert_eq!(
            got.state,
            AvailabilityState::Known,
            "{}: {:?}",
            got.user,
            got.state_reason
        );
        assert_eq!(got.time_zone, world.zones[u].name());
        let expected = brute_force_merge(&spans[u]);
        let answered: Vec<(DateTime<Utc>, DateTime<Utc>, BusyKind)> =
            got.busy.iter().map(|b| (b.start, b.end, b.kind)).collect();
        assert!(
            answered == expected,
            "{}: {} intervals answered, {} expected; first difference at {:?}",
            got.user,
            answered.len(),
            expected.len(),
            answered.iter().zip(&expected).find(|(a, b)| a != b)
        );
        let sources: BTreeSet<EventId> = got
            .busy
            .iter()
            .flat_map(|b| &b.sources)
            .map(|s| match s {
                BusySource::Event(id) => *id,
                BusySource::Meeting(id) => panic!("no meeting was seeded, yet {id:?} is named"),
            })
            .collect();
        if u == 0 {
            let busy: BTreeSet<EventId> = spans[u].iter().map(|s| s.3).collect();
            assert!(
                sources == busy,
                "the caller's intervals must name exactly their busy events"
            );
        } else {
            assert!(sources.is_empty(), "another user's events are named");
        }
    }
}

/// Every start, 15 minutes apart on the Berlin clock, of a 30-minute meeting
/// inside everyone's working day (Monday to Friday, 09:00 to 17:00 in their
/// own zone) and free of everyone's busy time (tentative counts).
fn brute_force_slots(world: &World) -> Vec<DateTime<Utc>> {
    let spans = busy_spans(world);
    let length = Duration::minutes(30);
    let working = |zone: Tz, start: DateTime<Utc>, end: DateTime<Utc>| {
        let (a, b) = (start.with_timezone(&zone), end.with_timezone(&zone));
        let (nine, five) = (
            NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
            NaiveTime::from_hms_opt(17, 0, 0).unwrap(),
        );
        a.date_naive() == b.date_naive() && is_weekday(a.date_naive()) && a.time() >= nine && b.time() <= five
    };
    let mut slots = Vec::new();
    let mut start = world.from;
    while start + length <= world.to {
        let end = start + length;
        let fits = (0..world.users.len())
            .all(|u| working(world.zones[u], start, end) && !spans[u].iter().any(|s| s.0 < end && start < s.1));
        if fits {
            slots.push(start);
        }
        start += Duration::minutes(15);
    }
    slots
}
