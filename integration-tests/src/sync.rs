//! Driving the sync engine in tests: a test server (no workers of its own)
//! whose store and provider settings an [`Engine`] shares, with an injected
//! clock (and, where a test needs many pages, small provider pages);
//! accounts linked straight into the store with sandbox-minted tokens;
//! provider events as the sandbox takes them; and views of the stored events
//! and of a calendar's sync state to compare with the provider's.

#![allow(clippy::unwrap_used)] // test helpers

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl as _;
use juy_api::connect::{Integrations, IntegrationsConfig};
use juy_domain::{AccountId, AccountStatus, CalendarId, Clock, FixedClock, Provider, UserId};
use juy_oauth2::StoredCredentials;
use juy_providers::CalendarProvider;
use juy_store::calendars::NewCalendar;
use juy_store::{Store, accounts, sync_state};
use juy_sync::{Engine, RunOutcome, SyncConfig};
use serde_json::json;

use crate::TestServer;

/// An engine over `server`'s store and provider settings, on `clock`.
pub fn engine(server: &TestServer, clock: Arc<dyn Clock>, config: SyncConfig) -> Arc<Engine> {
    engine_over(server.store.clone(), server.integrations.clone(), clock, config, None)
}

/// An engine like [`engine`] whose Google and Graph clients ask for pages of
/// `page_size` events (the sandbox then answers `page_size - 1` per page
/// while more remain), so a few dozen events make many pages.
pub fn engine_with_pages(
    server: &TestServer,
    clock: Arc<dyn Clock>,
    config: SyncConfig,
    page_size: u32,
) -> Arc<Engine> {
    engine_over(
        server.store.clone(),
        server.integrations.clone(),
        clock,
        config,
        Some(page_size),
    )
}

/// An engine over `store`, reaching providers as `integrations` says (as a
/// server with those settings would), with `page_size` events per Google
/// and Graph page (`None`: the clients' default).
pub fn engine_over(
    store: Store,
    integrations: IntegrationsConfig,
    clock: Arc<dyn Clock>,
    config: SyncConfig,
    page_size: Option<u32>,
) -> Arc<Engine> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let google_base = integrations.google_api_base.clone();
    let graph_base = integrations.graph_api_base.clone();
    let timeout = integrations.provider_timeout;
    let integrations = Arc::new(Integrations::new(integrations, store.clone(), Arc::clone(&clock)).unwrap());
    let http = reqwest::Client::builder().timeout(timeout).build().unwrap();
    let client_clock = Arc::clone(&clock);
    let clients = move |lease: &sync_state::Lease| -> Result<Box<dyn CalendarProvider>, juy_providers::ProviderError> {
        match (page_size, lease.provider) {
            (Some(page_size), Provider::Google) => Ok(Box::new(juy_providers::google::GoogleCalendarClient::new(
                http.clone(),
                &google_base,
                integrations
                    .tokens()
                    .authorizer(lease.user_id.clone(), lease.account_id),
                juy_providers::google::GoogleOptions {
                    timeout,
                    page_size,
                    clock: Arc::clone(&client_clock),
                },
            )?)),
            (Some(page_size), Provider::Microsoft) => Ok(Box::new(juy_providers::graph::GraphCalendarClient::new(
                http.clone(),
                &graph_base,
                integrations
                    .tokens()
                    .authorizer(lease.user_id.clone(), lease.account_id),
                juy_providers::graph::GraphOptions {
                    timeout,
                    page_size,
                    clock: Arc::clone(&client_clock),
                },
            )?)),
            _ => integrations.client_for(
                &lease.user_id,
                lease.account_id,
                lease.provider,
                lease.server_url.as_deref(),
            ),
        }
    };
    Arc::new(Engine::new(store, Arc::new(clients), clock, config))
}

/// A clock at the real now (the sandbox's clock is real time too, unless advanced).
pub fn clock_now() -> Arc<FixedClock> {
    Arc::new(FixedClock::new(Utc::now()))
}

/// A linked account and its calendars' ids, keyed by provider calendar id.
#[derive(Debug, Clone)]
pub struct Linked {
    /// The user.
    pub user: UserId,
    /// The account.
    pub account: AccountId,
    /// Calendar ids by provider calendar id.
    pub calendars: BTreeMap<String, CalendarId>,
}

/// A server as it runs with push: one sync worker polling only once a
/// minute (so a quick change can only come by push) and push channels
/// pointing at its own REST webhooks, on a free port, against `sandbox`.
pub async fn server_with_push(sandbox: &juy_sandbox::RunningSandbox) -> TestServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port");
    let mut env = crate::providers::sandbox_env(sandbox);
    env.extend(
        [
            ("JUY_SERVER__REST_ADDR", format!("127.0.0.1:{port}")),
            ("JUY_SYNC__WORKERS", "1".to_owned()),
            ("JUY_SYNC__POLL_INTERVAL_MS", "60000".to_owned()),
            ("JUY_SYNC__PUSH_BASE_URL", format!("http://127.0.0.1:{port}")),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    TestServer::start_with(env).await
}

/// Links an OAuth account straight into the store with `access_token`
/// (no refresh token: an expired token means re-authorisation) and the
/// given calendars `(provider id, name, primary)`.
pub async fn link_oauth(
    server: &TestServer,
    user: &str,
    provider: Provider,
    email: &str,
    access_token: &str,
    calendars: &[(&str, &str, bool)],
) -> Linked {
    let expires_at = Utc::now() + Duration::hours(1);
    link_oauth_until(
        &server.store,
        user,
        provider,
        email,
        access_token,
        expires_at,
        calendars,
    )
    .await
}

/// Links an OAuth account into `store` with `access_token`, stored as valid
/// until `expires_at` (tests that move their clock far ahead store a far
/// expiry, so the token manager never tries a refresh; the sandbox measures
/// the token's life on its own clock).
pub async fn link_oauth_until(
    store: &Store,
    user: &str,
    provider: Provider,
    email: &str,
    access_token: &str,
    expires_at: DateTime<Utc>,
    calendars: &[(&str, &str, bool)],
) -> Linked {
    let credentials = StoredCredentials::OAuth {
        access_token: access_token.to_owned(),
        expires_at,
        refresh_token: None,
    };
    let scopes = match provider {
        Provider::Google => vec!["https://www.googleapis.com/auth/calendar.readonly".to_owned()],
        _ => vec!["Calendars.Read".to_owned()],
    };
    link(store, user, provider, email, None, credentials, scopes, calendars).await
}

/// Links a CalDAV account (user name and password) whose calendar home is `home_url`.
pub async fn link_caldav(
    server: &TestServer,
    user: &str,
    home_url: &str,
    username: &str,
    password: &str,
    calendars: &[(&str, &str, bool)],
) -> Linked {
    let credentials = StoredCredentials::Password {
        username: username.to_owned(),
        password: password.to_owned(),
    };
    link(
        &server.store,
        user,
        Provider::Caldav,
        &format!("{home_url}#principal"),
        Some(home_url.to_owned()),
        credentials,
        Vec::new(),
        calendars,
    )
    .await
}

/// Links an account as the linking flow would after the user granted write
/// access: an access token `secret` (OAuth; stored as valid for 30 days, so
/// tests may move their clock ahead without a refresh — the sandbox measures
/// its life on its own clock) or a password (CalDAV, `home_url` given),
/// write scopes, and calendars the provider lets it write.
pub async fn link_writable(
    server: &TestServer,
    user: &str,
    provider: Provider,
    external_id: &str,
    secret: &str,
    home_url: Option<&str>,
    calendars: &[(&str, &str, bool)],
) -> Linked {
    let (credentials, scopes) = match provider {
        Provider::Caldav => (
            StoredCredentials::Password {
                username: external_id.to_owned(),
                password: secret.to_owned(),
            },
            Vec::new(),
        ),
        Provider::Google => (
            StoredCredentials::OAuth {
                access_token: secret.to_owned(),
                expires_at: Utc::now() + Duration::days(30),
                refresh_token: None,
            },
            vec!["https://www.googleapis.com/auth/calendar.events".to_owned()],
        ),
        Provider::Microsoft => (
            StoredCredentials::OAuth {
                access_token: secret.to_owned(),
                expires_at: Utc::now() + Duration::days(30),
                refresh_token: None,
            },
            vec!["Calendars.ReadWrite".to_owned()],
        ),
    };
    let linked = link(
        &server.store,
        user,
        provider,
        external_id,
        home_url.map(str::to_owned),
        credentials,
        scopes,
        calendars,
    )
    .await;
    let ids: Vec<uuid::Uuid> = linked.calendars.values().map(|c| c.0).collect();
    let mut conn = server.store.conn().await.unwrap();
    diesel::sql_query("UPDATE calendars SET can_write = true WHERE user_id = $1 AND id = ANY($2)")
        .bind::<Text, _>(linked.user.as_str())
        .bind::<diesel::sql_types::Array<SqlUuid>, _>(&ids)
        .execute(&mut *conn)
        .await
        .unwrap();
    linked
}

#[allow(clippy::too_many_arguments)]
async fn link(
    store: &Store,
    user: &str,
    provider: Provider,
    external_id: &str,
    server_url: Option<String>,
    credentials: StoredCredentials,
    scopes: Vec<String>,
    calendars: &[(&str, &str, bool)],
) -> Linked {
    let user = UserId::new(user).unwrap();
    let mut conn = store.conn().await.unwrap();
    let key = store.data_key(&mut conn, &user).await.unwrap();
    let account = accounts::NewAccount {
        user_id: user.clone(),
        provider,
        external_account_id: external_id.to_owned(),
        display_name: None,
        status: AccountStatus::Pending,
        scopes,
        server_url,
        credentials: Some(credentials.to_bytes().to_vec()),
    };
    let new: Vec<NewCalendar> = calendars
        .iter()
        .map(|(id, name, primary)| NewCalendar {
            account_id: AccountId(uuid::Uuid::nil()),
            provider,
            provider_calendar_id: (*id).to_owned(),
            name: (*name).to_owned(),
            color: None,
            time_zone: None,
            is_primary: *primary,
            can_write: false,
        })
        .collect();
    let (account, stored) = accounts::link_account(&mut conn, &key, &account, new).await.unwrap();
    Linked {
        user,
        account: account.id,
        calendars: stored.into_iter().map(|c| (c.provider_calendar_id, c.id)).collect(),
    }
}

/// Leases and runs due calendars with `engine` as worker `owner` until none
/// is due; returns the outcomes in order.
pub async fn sync_due(engine: &Engine, owner: &str) -> Vec<RunOutcome> {
    sync_due_by(engine, owner, 10).await
}

/// Like [`sync_due`], leasing at most `batch` calendars at a time (1: as a
/// worker does, so replicas running side by side interleave).
pub async fn sync_due_by(engine: &Engine, owner: &str, batch: i64) -> Vec<RunOutcome> {
    let mut outcomes = Vec::new();
    for _ in 0..100 {
        let leases = lease_due(engine, owner, batch).await;
        if leases.is_empty() {
            return outcomes;
        }
        for lease in leases {
            outcomes.push(engine.run(lease).await);
        }
    }
    panic!("calendars stayed due after 100 rounds: {outcomes:?}");
}

/// Leases up to `limit` due calendars to `owner` at the engine's now, as a worker does.
pub async fn lease_due(engine: &Engine, owner: &str, limit: i64) -> Vec<sync_state::Lease> {
    let mut conn = engine.store().conn().await.unwrap();
    sync_state::lease_due(&mut conn, owner, engine.clock().now(), engine.config().lease_for, limit)
        .await
        .unwrap()
}

/// Makes a calendar due now (as "sync now" does).
pub async fn make_due(server: &TestServer, user: &UserId, calendar: CalendarId, now: DateTime<Utc>) {
    let mut conn = server.store.conn().await.unwrap();
    assert!(sync_state::schedule_now(&mut conn, user, calendar, now).await.unwrap());
}

#[derive(diesel::QueryableByName)]
struct StoredRow {
    #[diesel(sql_type = Text)]
    external_id: String,
    #[diesel(sql_type = Timestamptz)]
    start_at: DateTime<Utc>,
}

/// The calendar's stored events: external id → start.
pub async fn stored_events(
    server: &TestServer,
    user: &UserId,
    calendar: CalendarId,
) -> BTreeMap<String, DateTime<Utc>> {
    stored_events_in(&server.store, user, calendar).await
}

/// The calendar's stored events in `store` (any store over the test's database), as [`stored_events`] reads them.
pub async fn stored_events_in(store: &Store, user: &UserId, calendar: CalendarId) -> BTreeMap<String, DateTime<Utc>> {
    let mut conn = store.conn().await.unwrap();
    let rows: Vec<StoredRow> = diesel::sql_query(
        "SELECT external_id, start_at FROM user_calendar_events WHERE user_id = $1 AND calendar_id = $2",
    )
    .bind::<Text, _>(user.as_str())
    .bind::<SqlUuid, _>(calendar.0)
    .load(&mut *conn)
    .await
    .unwrap();
    let count = rows.len();
    let map: BTreeMap<String, DateTime<Utc>> = rows.into_iter().map(|row| (row.external_id, row.start_at)).collect();
    assert_eq!(map.len(), count, "an event is stored twice");
    map
}

/// A calendar's sync state as the store keeps it.
#[derive(Debug, Clone, diesel::QueryableByName)]
pub struct SyncRow {
    /// The engine's cursor (JSON, `juy_sync::cursor::SyncCursor`).
    #[diesel(sql_type = Nullable<Text>)]
    pub sync_cursor: Option<String>,
    /// `ok`, `error`, ...
    #[diesel(sql_type = Text)]
    pub sync_status: String,
    /// The reason shown to the user.
    #[diesel(sql_type = Nullable<Text>)]
    pub last_error: Option<String>,
    /// The worker holding the lease.
    #[diesel(sql_type = Nullable<Text>)]
    pub lease_owner: Option<String>,
    /// Until when.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// When the calendar is due.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub next_sync_at: Option<DateTime<Utc>>,
    /// Failed runs in a row.
    #[diesel(sql_type = Integer)]
    pub consecutive_failures: i32,
    /// The last successful sync.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub last_synced_at: Option<DateTime<Utc>>,
}

impl SyncRow {
    /// The cursor, decoded.
    pub fn cursor(&self) -> Option<juy_sync::cursor::SyncCursor> {
        self.sync_cursor
            .as_deref()
            .and_then(juy_sync::cursor::SyncCursor::decode)
    }

    /// Whether a full listing stands between two pages: some page committed, more to come.
    pub fn mid_listing(&self) -> bool {
        matches!(
            self.cursor().map(|cursor| cursor.round),
            Some(juy_sync::cursor::Round::Full { resume: Some(_), .. })
        )
    }
}

/// The calendar's sync state; `None` when the calendar does not exist.
pub async fn sync_row(store: &Store, user: &UserId, calendar: CalendarId) -> Option<SyncRow> {
    let mut conn = store.conn().await.unwrap();
    diesel::sql_query(
        "SELECT sync_cursor, sync_status, last_error, lease_owner, lease_expires_at, next_sync_at, \
                consecutive_failures, last_synced_at \
         FROM calendars WHERE user_id = $1 AND id = $2",
    )
    .bind::<Text, _>(user.as_str())
    .bind::<SqlUuid, _>(calendar.0)
    .load::<SyncRow>(&mut *conn)
    .await
    .unwrap()
    .pop()
}

/// Overwrites the calendar's stored cursor (to play a provider cursor the provider will refuse).
pub async fn set_cursor(store: &Store, user: &UserId, calendar: CalendarId, cursor: &juy_sync::cursor::SyncCursor) {
    let mut conn = store.conn().await.unwrap();
    let updated = diesel::sql_query("UPDATE calendars SET sync_cursor = $3 WHERE user_id = $1 AND id = $2")
        .bind::<Text, _>(user.as_str())
        .bind::<SqlUuid, _>(calendar.0)
        .bind::<Text, _>(cursor.encode())
        .execute(&mut *conn)
        .await
        .unwrap();
    assert_eq!(updated, 1);
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// A number from SQL, e.g. `SELECT count(*) AS n FROM calendars` (the column must be named `n`).
pub async fn count(store: &Store, query: &str) -> i64 {
    let mut conn = store.conn().await.unwrap();
    diesel::sql_query(query)
        .get_result::<Count>(&mut *conn)
        .await
        .unwrap()
        .n
}

/// The user's calendars of `account`, as the store lists them.
pub async fn calendars_of(store: &Store, user: &UserId, account: AccountId) -> Vec<juy_domain::Calendar> {
    let mut conn = store.conn().await.unwrap();
    let key = store.data_key(&mut conn, user).await.unwrap();
    juy_store::calendars::list_calendars(&mut conn, &key, user, Some(account))
        .await
        .unwrap()
}

/// A Google event resource from `start`, 30 minutes long, in UTC.
pub fn google_event(id: &str, start: DateTime<Utc>) -> serde_json::Value {
    json!({
        "id": id,
        "summary": format!("event {id}"),
        "start": {"dateTime": start.to_rfc3339(), "timeZone": "UTC"},
        "end": {"dateTime": (start + Duration::minutes(30)).to_rfc3339(), "timeZone": "UTC"},
    })
}

/// A Graph event resource from `start`, 30 minutes long, in UTC.
pub fn graph_event(id: &str, start: DateTime<Utc>) -> serde_json::Value {
    let fmt = |at: DateTime<Utc>| at.format("%Y-%m-%dT%H:%M:%S.0000000").to_string();
    json!({
        "id": id,
        "subject": format!("event {id}"),
        "start": {"dateTime": fmt(start), "timeZone": "UTC"},
        "end": {"dateTime": fmt(start + Duration::minutes(30)), "timeZone": "UTC"},
    })
}
