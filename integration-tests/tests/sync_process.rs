//! A `juy-calendar serve` process killed (SIGKILL) in the middle of a
//! calendar's initial sync: another worker takes the calendar over once the
//! dead worker's lease has run out, resumes from the last committed page, and
//! the stored rows end up equal to the provider's events, none lost, none
//! twice.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] functions

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, DurationRound as _, Utc};
use juy_calendar::config::{Settings, Sources};
use juy_domain::{FixedClock, Provider};
use juy_integration_tests::providers::sandbox_env;
use juy_integration_tests::sync::{self, google_event, link_oauth_until, stored_events_in, sync_row};
use juy_integration_tests::{calendar_binary, new_master_keys, store_for, test_env};
use juy_sandbox::{Fault, Sandbox};
use juy_store::testing::TestDatabase;
use juy_sync::cursor::FullReason;
use juy_sync::{RunOutcome, SyncConfig};

const ACCOUNT: &str = "google-sub-kill";
const CALENDAR: &str = "killcal";
/// Four full pages of the client's default 1,000 (the sandbox serves 999 while more remain) and a bit.
const EVENTS: usize = 4_000;

/// Kills the child when the test ends, however it ends.
struct Server(Child, tempfile::TempDir);

impl Server {
    fn output(&self) -> String {
        std::fs::read_to_string(self.1.path().join("stderr")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(env: &[(String, String)]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let child = Command::new(calendar_binary())
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start juy-calendar serve");
    Server(child, dir)
}

#[tokio::test]
async fn a_worker_killed_mid_sync_is_resumed_from_its_checkpoint_with_nothing_lost_or_doubled() {
    let sandbox = Sandbox::new();
    sandbox.add_account(juy_sandbox::Provider::Google, ACCOUNT, "kill@gmail.test");
    sandbox.add_google_calendar(ACCOUNT, CALENDAR, "Kill", "owner", true);
    let base = Utc::now().duration_trunc(Duration::hours(1)).unwrap() - Duration::days(20);
    let expected: BTreeMap<String, DateTime<Utc>> = (0..EVENTS)
        .map(|k| (format!("ev{k:05}"), base + Duration::minutes(30 * k as i64)))
        .collect();
    for (id, start) in &expected {
        sandbox.put_google_event(CALENDAR, google_event(id, *start));
    }
    let running = juy_sandbox::start(sandbox.clone()).await.unwrap();

    let db = TestDatabase::create().await.unwrap();
    let keys = new_master_keys();
    let mut env = test_env(&db.url, &keys);
    env.extend(sandbox_env(&running));
    let store = store_for(&db.url, &keys);
    let linked = link_oauth_until(
        &store,
        "kim",
        Provider::Google,
        "kim@gmail.test",
        &sandbox.mint_access_token(ACCOUNT),
        Utc::now() + Duration::days(1),
        &[(CALENDAR, "Kill", true)],
    )
    .await;
    let calendar = linked.calendars[CALENDAR];

    // The server's worker reads the calendar list and the first page at once; the second page hangs.
    sandbox.push_fault(juy_sandbox::Provider::Google, Fault::Latency(0));
    sandbox.push_fault(juy_sandbox::Provider::Google, Fault::Latency(0));
    sandbox.push_fault(juy_sandbox::Provider::Google, Fault::Latency(20_000));
    let mut worker_env = env.clone();
    worker_env.extend(
        [
            ("JUY_SYNC__WORKERS", "1"),
            ("JUY_SYNC__LEASE_SECS", "10"),
            ("JUY_SYNC__POLL_INTERVAL_MS", "100"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let mut server = serve(&worker_env);
    let deadline = Instant::now() + StdDuration::from_secs(30);
    loop {
        if sync_row(&store, &linked.user, calendar).await.unwrap().mid_listing() {
            break;
        }
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!("the server exited ({status}): {}", server.output());
        }
        assert!(
            Instant::now() < deadline,
            "no page was committed in time: {}",
            server.output()
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    server.0.kill().unwrap(); // SIGKILL: no shutdown, no release
    server.0.wait().unwrap();
    drop(server);

    let dead = sync_row(&store, &linked.user, calendar).await.unwrap();
    assert!(dead.mid_listing(), "killed mid-listing: {dead:?}");
    let dead_owner = dead.lease_owner.clone().expect("the dead worker's lease stays");
    let committed = stored_events_in(&store, &linked.user, calendar).await;
    assert!(
        !committed.is_empty() && committed.len() < EVENTS,
        "{} rows committed",
        committed.len()
    );

    // Another worker, with its clock past the dead worker's lease.
    let settings = Settings::load(&Sources { file: None, env }).unwrap();
    let clock = Arc::new(FixedClock::new(dead.lease_expires_at.unwrap() + Duration::seconds(1)));
    let engine = sync::engine_over(store.clone(), settings.integrations, clock, SyncConfig::default(), None);
    sandbox.clear_log();
    let leases = sync::lease_due(&engine, "replica-b/0", 10).await;
    assert_eq!(leases.len(), 1, "the dead worker's calendar is due again");
    assert_ne!(leases[0].owner, dead_owner);
    let outcome = engine.run(leases.into_iter().next().unwrap()).await;
    let RunOutcome::Synced { stats, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(stats.full, Some(FullReason::Initial), "the initial listing, continued");
    assert_eq!(
        stats.written as usize,
        EVENTS - committed.len(),
        "only what the dead worker had not committed is written"
    );

    let log = sandbox.request_log();
    assert!(!log.is_empty());
    assert!(
        log.iter()
            .all(|r| r.path.ends_with(&format!("/calendars/{CALENDAR}/events"))
                && r.query.as_deref().is_some_and(|q| q.contains("pageToken="))),
        "the takeover resumes from the checkpoint's page, never from the start: {log:?}"
    );
    assert_eq!(
        stored_events_in(&store, &linked.user, calendar).await,
        expected,
        "no event lost, none twice"
    );
    let done = sync_row(&store, &linked.user, calendar).await.unwrap();
    assert_eq!((done.sync_status.as_str(), done.lease_owner), ("ok", None));
}
