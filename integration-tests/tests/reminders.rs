//! Reminders to the notification service, end to end: the real
//! `juy-calendar serve` process syncing a Google calendar from the provider
//! sandbox into PostgreSQL, planning the events' reminders and delivering
//! them to a receiver written here (a real HTTP server that checks the
//! HMAC signature on its own, de-duplicates by idempotency key as a real
//! notification service would, and can be told to fail or to hold a
//! request). Events start a minute or so ahead, so their reminders fall due
//! within seconds; the tests poll with deadlines and assert on what the
//! receiver saw and on the outbox rows, never on durations.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] functions

use std::collections::BTreeSet;
use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};
use chrono::{DateTime, Duration, DurationRound as _, Utc};
use hmac::{Hmac, KeyInit as _, Mac as _};
use juy_domain::{NotificationChannels, Provider, UserId};
use juy_integration_tests::providers::sandbox_env;
use juy_integration_tests::sync::{Linked, link_oauth_until};
use juy_integration_tests::{calendar_binary, new_master_keys, store_for, test_env};
use juy_sandbox::{RunningSandbox, Sandbox};
use juy_store::reminders::{Channel, DeliveryState, ReminderDelivery};
use juy_store::testing::TestDatabase;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Notify;

const ACCOUNT: &str = "google-sub-rem";
const CALENDAR: &str = "rem@gmail.test";
const USER: &str = "remi";
/// The key the server signs with, and the receiver checks with.
const SECRET: &str = "reminder-test-secret-0123456789abcdef";
/// How long a test waits for something the server does.
const PATIENCE: StdDuration = StdDuration::from_secs(40);

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Seen {
    key: String,
    channel: String,
    body: Value,
}

#[derive(Default)]
struct ReceiverState {
    /// Every request with a valid signature, in order.
    seen: Vec<Seen>,
    /// Keys whose effect was applied (once each: the receiver's de-duplication).
    applied: BTreeSet<String>,
    /// How many times an effect was applied (counts each key once).
    effects: usize,
    /// Requests refused for their signature or a key that does not match the body.
    forged: usize,
    /// Answers for the next requests (status, Retry-After), consumed in order; then 200.
    failures: Vec<(u16, Option<&'static str>)>,
    /// Apply the next request's effect, then never answer it (the answer is "lost").
    hold_next: bool,
}

/// The notification service as the tests play it.
#[derive(Clone)]
struct Receiver {
    url: String,
    state: Arc<Mutex<ReceiverState>>,
    held: Arc<Notify>,
}

impl Receiver {
    async fn start() -> Self {
        let state: Arc<Mutex<ReceiverState>> = Arc::default();
        let held = Arc::new(Notify::new());
        let handler = {
            let state = Arc::clone(&state);
            let held = Arc::clone(&held);
            move |headers: HeaderMap, body: Bytes| {
                let state = Arc::clone(&state);
                let held = Arc::clone(&held);
                async move { receive(&state, &held, &headers, &body).await }
            }
        };
        let app = axum::Router::new().route("/notify/reminders", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/notify/reminders", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, state, held }
    }

    fn with<T>(&self, f: impl FnOnce(&mut ReceiverState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    fn seen(&self) -> Vec<Seen> {
        self.with(|state| state.seen.clone())
    }
}

fn signature_is_valid(headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(header) = headers.get("x-juy-signature").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut timestamp = None;
    let mut tag = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => tag = Some(value.to_owned()),
            _ => {}
        }
    }
    let (Some(timestamp), Some(tag)) = (timestamp, tag) else {
        return false;
    };
    if (Utc::now().timestamp() - timestamp).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    expected == tag
}

async fn receive(state: &Mutex<ReceiverState>, held: &Notify, headers: &HeaderMap, body: &[u8]) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    let body_key = parsed.as_ref().and_then(|b| b["idempotency_key"].as_str());
    let Some(parsed) = parsed
        .clone()
        .filter(|_| signature_is_valid(headers, body) && key.is_some() && key == body_key)
    else {
        state.lock().unwrap().forged += 1;
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let key = key.unwrap_or_default().to_owned();
    let hold = {
        let mut state = state.lock().unwrap();
        state.seen.push(Seen {
            key: key.clone(),
            channel: parsed["channel"].as_str().unwrap_or_default().to_owned(),
            body: parsed,
        });
        if !state.failures.is_empty() {
            // Failed: nothing applied.
            let (status, retry_after) = state.failures.remove(0);
            let status = StatusCode::from_u16(status).unwrap();
            return match retry_after {
                Some(seconds) => (status, [("retry-after", seconds)]).into_response(),
                None => status.into_response(),
            };
        }
        if state.applied.insert(key) {
            state.effects += 1;
        }
        std::mem::take(&mut state.hold_next)
    };
    if hold {
        held.notify_one();
        // Never answered: the server is killed while it waits.
        std::future::pending::<()>().await;
    }
    StatusCode::OK.into_response()
}

/// Kills the child when the test ends, however it ends.
struct Server(Child, tempfile::TempDir);

impl Server {
    fn start(env: &[(String, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let stdout = std::fs::File::create(dir.path().join("stdout")).unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let child = Command::new(calendar_binary())
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start juy-calendar serve");
        Self(child, dir)
    }

    /// What it logged (stdout) and printed on errors (stderr).
    fn output(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.1.path().join(name)).unwrap_or_default();
        read("stdout") + &read("stderr")
    }

    fn kill(&mut self) {
        self.0.kill().unwrap(); // SIGKILL: no shutdown, no release of leases
        self.0.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct World {
    sandbox: Sandbox,
    _running: RunningSandbox,
    receiver: Receiver,
    store: juy_store::Store,
    user: UserId,
    _linked: Linked,
    env: Vec<(String, String)>,
    server: Option<Server>,
    _db: TestDatabase,
}

async fn world() -> World {
    let sandbox = Sandbox::new();
    sandbox.add_account(juy_sandbox::Provider::Google, ACCOUNT, "rem@gmail.test");
    sandbox.add_google_calendar(ACCOUNT, CALENDAR, "Remi", "owner", true);
    let running = juy_sandbox::start(sandbox.clone()).await.unwrap();
    let receiver = Receiver::start().await;
    let db = TestDatabase::create().await.unwrap();
    let keys = new_master_keys();
    let mut env = test_env(&db.url, &keys);
    env.extend(sandbox_env(&running));
    env.extend(
        [
            ("JUY_TELEMETRY__LOG_FILTER", "info"),
            ("JUY_SYNC__WORKERS", "1"),
            ("JUY_SYNC__INTERVAL_SECS", "1"),
            ("JUY_SYNC__JITTER", "0"),
            ("JUY_SYNC__POLL_INTERVAL_MS", "100"),
            ("JUY_REMINDERS__ENDPOINT", receiver.url.as_str()),
            ("JUY_REMINDERS__SECRET", SECRET),
            ("JUY_REMINDERS__PLAN_INTERVAL_MS", "200"),
            ("JUY_REMINDERS__POLL_INTERVAL_MS", "100"),
            ("JUY_REMINDERS__BACKOFF_BASE_SECS", "1"),
            ("JUY_REMINDERS__REQUEST_TIMEOUT_SECS", "5"),
            ("JUY_REMINDERS__LEASE_SECS", "6"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let store = store_for(&db.url, &keys);
    let linked = link_oauth_until(
        &store,
        USER,
        Provider::Google,
        "rem@gmail.test",
        &sandbox.mint_access_token(ACCOUNT),
        Utc::now() + Duration::days(1),
        &[(CALENDAR, "Remi", true)],
    )
    .await;
    World {
        sandbox,
        _running: running,
        receiver,
        store,
        user: UserId::new(USER).unwrap(),
        _linked: linked,
        env,
        server: None,
        _db: db,
    }
}

impl World {
    fn serve(&mut self) {
        self.server = Some(Server::start(&self.env));
    }

    fn output(&self) -> String {
        self.server.as_ref().map(Server::output).unwrap_or_default()
    }

    /// Puts a Google event starting at `start` with one popup reminder `minutes` before it.
    fn put_event(&self, id: &str, start: DateTime<Utc>, minutes: i64) {
        self.sandbox.put_google_event(
            CALENDAR,
            json!({
                "id": id,
                "summary": format!("Confidential board meeting {id}"),
                "location": "Room Kepler",
                "start": {"dateTime": start.to_rfc3339(), "timeZone": "UTC"},
                "end": {"dateTime": (start + Duration::minutes(30)).to_rfc3339(), "timeZone": "UTC"},
                "reminders": {"useDefault": false, "overrides": [{"method": "popup", "minutes": minutes}]},
            }),
        );
    }

    async fn deliveries(&self) -> Vec<ReminderDelivery> {
        let mut conn = self.store.conn().await.unwrap();
        juy_store::reminders::list_user_deliveries(&mut conn, &self.user)
            .await
            .unwrap()
    }

    /// Polls `check` over the outbox rows until it holds.
    async fn until_rows(&self, what: &str, check: impl Fn(&[ReminderDelivery]) -> bool) -> Vec<ReminderDelivery> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let rows = self.deliveries().await;
            if check(&rows) {
                return rows;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not reached in time; rows {rows:?}; receiver saw {:?}\n{}",
                self.receiver.seen(),
                self.output()
            );
            tokio::time::sleep(StdDuration::from_millis(100)).await;
        }
    }

    /// Asserts the server logged neither event texts nor the secret.
    fn assert_logs_clean(&self) {
        let output = self.output();
        assert!(output.contains("reminder delivered"), "the log is read: {output}");
        for secret in ["Confidential board meeting", "Room Kepler", SECRET] {
            assert!(!output.contains(secret), "the log carries {secret:?}:\n{output}");
        }
    }
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not reached in time"))
}

/// A start whose one-minute reminder falls due `lead` from now (whole seconds).
fn start_due_in(lead: Duration) -> DateTime<Utc> {
    Utc::now().duration_trunc(Duration::seconds(1)).unwrap() + Duration::minutes(1) + lead
}

fn delivered(rows: &[ReminderDelivery]) -> bool {
    rows.iter().any(|row| row.state == DeliveryState::Delivered)
}

#[tokio::test]
async fn a_restart_between_due_and_delivered_delivers_it_once() {
    let mut w = world().await;
    w.receiver.with(|state| state.hold_next = true);
    w.put_event("standup", start_due_in(Duration::seconds(3)), 1);
    w.serve();

    // The first attempt reaches the receiver, which applies it and never answers; the server dies.
    within("the first attempt", w.receiver.held.notified()).await;
    w.server.as_mut().unwrap().kill();
    let rows = w.deliveries().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].state, rows[0].attempts),
        (DeliveryState::Leased, 1),
        "the dead dispatcher's lease stays"
    );

    // A new process takes the delivery over when the lease runs out and sends it again, same key.
    w.serve();
    let rows = w.until_rows("delivered after the restart", delivered).await;
    assert_eq!((rows.len(), rows[0].attempts), (1, 2));
    let seen = w.receiver.seen();
    assert_eq!(seen.len(), 2, "sent twice: at least once");
    let keys: BTreeSet<&str> = seen.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(
        keys,
        BTreeSet::from([rows[0].idempotency_key.as_str()]),
        "one idempotency key"
    );
    assert_eq!(
        w.receiver.with(|state| (state.effects, state.forged)),
        (1, 0),
        "one effect"
    );
    w.assert_logs_clean();
}

#[tokio::test]
async fn a_receiver_failing_three_times_then_succeeding_gets_it_once() {
    let mut w = world().await;
    w.receiver.with(|state| {
        state.failures = vec![(503, None), (429, Some("1")), (500, None)];
    });
    let start = start_due_in(Duration::seconds(3));
    w.put_event("review", start, 1);
    w.serve();

    let rows = w.until_rows("delivered after three failures", delivered).await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!((row.attempts, row.last_error.as_deref()), (4, None));
    assert_eq!(
        row.channel,
        Channel::Push,
        "a user who never set channels gets push only"
    );
    let seen = w.receiver.seen();
    assert_eq!(seen.len(), 4, "four attempts seen");
    assert!(seen.iter().all(|s| s.key == row.idempotency_key && s.channel == "push"));
    assert_eq!(w.receiver.with(|state| state.effects), 1);

    // The body as documented in docs/reminders.md.
    let body = &seen[3].body;
    assert_eq!(body["user_id"], USER);
    assert_eq!(body["provider"], "google");
    assert_eq!(body["event"]["name"], format!("events/{}", row.event_id.0));
    assert_eq!(body["event"]["title"], "Confidential board meeting review");
    assert_eq!(body["event"]["location"], "Room Kepler");
    assert_eq!(body["event"]["all_day"], false);
    assert_eq!(
        body["event"]["start_time"]
            .as_str()
            .map(|t| DateTime::parse_from_rfc3339(t).unwrap()),
        Some(start.into())
    );
    assert_eq!(body["reminder"], json!({"minutes_before": 1, "method": "popup"}));
    assert_eq!(
        body["due_time"]
            .as_str()
            .map(|t| DateTime::parse_from_rfc3339(t).unwrap()),
        Some((start - Duration::minutes(1)).into())
    );
    w.assert_logs_clean();
}

#[tokio::test]
async fn moving_an_event_moves_its_reminder() {
    let mut w = world().await;
    // Due in four minutes: planned (within the look-ahead), not yet sent.
    w.put_event("offsite", start_due_in(Duration::minutes(4)), 1);
    w.serve();
    let planned = w
        .until_rows("the first reminder planned", |rows| {
            rows.iter().any(|row| row.state == DeliveryState::Pending)
        })
        .await;
    let old = planned[0].clone();

    let moved = start_due_in(Duration::seconds(3));
    w.put_event("offsite", moved, 1);
    let rows = w.until_rows("the moved reminder delivered", delivered).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let old_row = rows
        .iter()
        .find(|row| row.idempotency_key == old.idempotency_key)
        .unwrap();
    assert_eq!(old_row.state, DeliveryState::Withdrawn, "the old reminder is withdrawn");
    let new_row = rows.iter().find(|row| row.state == DeliveryState::Delivered).unwrap();
    assert_eq!(new_row.due_at, moved - Duration::minutes(1));
    assert_eq!(new_row.event_id, old.event_id);

    let seen = w.receiver.seen();
    assert_eq!(seen.len(), 1, "the receiver gets only the new reminder");
    assert_eq!(seen[0].key, new_row.idempotency_key);
    assert_eq!(
        seen[0].body["due_time"]
            .as_str()
            .map(|t| DateTime::parse_from_rfc3339(t).unwrap()),
        Some((moved - Duration::minutes(1)).into())
    );
}

#[tokio::test]
async fn a_channel_switched_off_gets_nothing() {
    let mut w = world().await;
    {
        let mut conn = w.store.conn().await.unwrap();
        let key = w.store.data_key(&mut conn, &w.user).await.unwrap();
        let email_only = NotificationChannels {
            provider: Provider::Google,
            push: false,
            email: true,
            sms: false,
        };
        juy_store::settings::update_settings(
            &mut conn,
            &key,
            &w.user,
            &[],
            &[email_only],
            juy_store::settings::AvailabilityPatch::default(),
        )
        .await
        .unwrap();
    }
    w.put_event("one-on-one", start_due_in(Duration::seconds(3)), 1);
    w.serve();

    let rows = w.until_rows("the email reminder delivered", delivered).await;
    assert_eq!(
        rows.iter().map(|row| row.channel).collect::<Vec<_>>(),
        [Channel::Email],
        "push is off: the planner wrote no push reminder in the pass that wrote the email one"
    );
    let channels: Vec<String> = w.receiver.seen().into_iter().map(|s| s.channel).collect();
    assert_eq!(channels, ["email"]);
}

#[tokio::test]
async fn a_deleted_event_withdraws_its_pending_reminder() {
    let mut w = world().await;
    w.put_event("cancelled-lunch", start_due_in(Duration::minutes(4)), 1);
    w.serve();
    w.until_rows("the reminder planned", |rows| {
        rows.iter().any(|row| row.state == DeliveryState::Pending)
    })
    .await;

    // Deleted at Google: the next incremental sync lists it as cancelled.
    w.sandbox.delete_google_event(CALENDAR, "cancelled-lunch");
    let rows = w
        .until_rows("the reminder withdrawn", |rows| {
            rows.iter().all(|row| row.state == DeliveryState::Withdrawn)
        })
        .await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].last_error.is_some());
    assert!(w.receiver.seen().is_empty());
}
