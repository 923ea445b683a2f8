//! Harness for end-to-end tests: a server on free ports over its own
//! database (cloned from a migrated template), tokens, and clients.
#![forbid(unsafe_code)]

pub mod bench;
pub mod caldav;
pub mod providers;
pub mod sync;

use std::net::SocketAddr;

use chrono::NaiveDate;

use juy_api::pb::v1::admin_client::AdminClient;
use juy_api::pb::v1::calendar_sync_client::CalendarSyncClient;
use juy_calendar::config::{Settings, Sources};
use juy_calendar::dev::{self, SeedSummary};
use juy_calendar::server::{self, RunningServer};
use juy_domain::UserId;
use juy_store::testing::TestDatabase;
use tonic::transport::Channel;

/// The HS256 secret test tokens are signed with.
pub const SECRET: &str = "integration-test-secret-0123456789abcdef";
/// The issuer test servers accept.
pub const ISSUER: &str = "juy-test";
/// The audience test servers accept.
pub const AUDIENCE: &str = "juy-calendar";
/// The Monday the seeded week starts on.
pub const WEEK: (i32, u32, u32) = (2026, 1, 5);

/// The Monday of the seeded week.
pub fn monday() -> NaiveDate {
    NaiveDate::from_ymd_opt(WEEK.0, WEEK.1, WEEK.2).unwrap_or_default()
}

/// Settings for a test server over `database_url`, plaintext on free ports.
pub fn test_env(database_url: &str, master_keys: &str) -> Vec<(String, String)> {
    [
        ("JUY_DATABASE__URL", database_url),
        ("JUY_DATABASE__MAX_CONNECTIONS", "4"),
        ("JUY_TLS__ENABLED", "false"),
        ("JUY_SERVER__GRPC_ADDR", "127.0.0.1:0"),
        ("JUY_SERVER__REST_ADDR", "127.0.0.1:0"),
        ("JUY_SERVER__SHUTDOWN_GRACE_SECS", "5"),
        ("JUY_CRYPTO__MASTER_KEYS", master_keys),
        ("JUY_AUTH__ISSUER", ISSUER),
        ("JUY_AUTH__AUDIENCE", AUDIENCE),
        ("JUY_AUTH__HS256_SECRET", SECRET),
        ("JUY_AUTH__LEEWAY_SECS", "0"),
        ("JUY_TELEMETRY__LOG_FILTER", "warn"),
        // Tests that sync turn workers on; the others must see no provider traffic they did not cause.
        ("JUY_SYNC__WORKERS", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A fresh master keyring spec.
pub fn new_master_keys() -> String {
    format!("1:{}", *juy_crypto::MasterKey::generate().to_base64())
}

/// A server running in this process over its own database.
pub struct TestServer {
    /// Where gRPC is served.
    pub grpc_addr: SocketAddr,
    /// Where REST is served.
    pub rest_addr: SocketAddr,
    /// The server's store (same keys), for seeding and raw checks.
    pub store: juy_store::Store,
    /// The database; dropped after the server.
    pub db: TestDatabase,
    /// The provider settings the server runs with.
    pub integrations: juy_api::connect::IntegrationsConfig,
    running: Option<RunningServer>,
    // Dropped after the server stops, which flushes OTLP exports (when configured).
    telemetry: Option<juy_calendar::telemetry::TelemetryGuard>,
}

impl TestServer {
    /// Starts a plaintext server.
    pub async fn start() -> Self {
        Self::start_with(vec![]).await
    }

    /// Starts a server with extra settings (later entries win).
    pub async fn start_with(extra: Vec<(String, String)>) -> Self {
        let db = TestDatabase::create().await.expect("test database");
        let mut env = test_env(&db.url, &new_master_keys());
        env.extend(extra);
        let settings = Settings::load(&Sources { file: None, env }).expect("test settings");
        let telemetry = juy_calendar::telemetry::init(&settings.telemetry).ok();
        let integrations = settings.integrations.clone();
        let running = server::start(settings).await.expect("server starts");
        Self {
            grpc_addr: running.grpc_addr,
            rest_addr: running.rest_addr,
            store: running.store.clone(),
            db,
            integrations,
            running: Some(running),
            telemetry,
        }
    }

    /// Wakes the server's sync workers (as linking through the API does), for
    /// accounts linked straight into the store.
    pub fn wake_sync(&self) {
        if let Some(running) = &self.running {
            running.wakeup.notify();
        }
    }

    /// Stops the server gracefully.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await.expect("clean shutdown");
        }
        drop(self.telemetry.take());
    }

    /// Seeds the dev week for `user`.
    pub async fn seed(&self, user: &str) -> SeedSummary {
        dev::seed(
            &self.store,
            &UserId::new(user).expect("user id"),
            monday(),
            chrono::Duration::days(30),
        )
        .await
        .expect("seed")
    }

    /// A valid token for `user` with `roles`.
    pub fn token(&self, user: &str, roles: &[&str]) -> String {
        token(user, roles)
    }

    /// A gRPC CalendarSync client.
    pub async fn calendar(&self) -> CalendarSyncClient<Channel> {
        CalendarSyncClient::connect(format!("http://{}", self.grpc_addr))
            .await
            .expect("grpc connect")
    }

    /// A gRPC Availability client.
    pub async fn availability(&self) -> juy_api::pb::v1::availability_client::AvailabilityClient<Channel> {
        juy_api::pb::v1::availability_client::AvailabilityClient::connect(format!("http://{}", self.grpc_addr))
            .await
            .expect("grpc connect")
    }

    /// A gRPC Admin client.
    pub async fn admin(&self) -> AdminClient<Channel> {
        AdminClient::connect(format!("http://{}", self.grpc_addr))
            .await
            .expect("grpc connect")
    }

    /// The REST URL of `path_and_query`.
    pub fn rest(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.rest_addr, path_and_query)
    }
}

/// A valid token for `user` with `roles`, as the gateway would mint it.
pub fn token(user: &str, roles: &[&str]) -> String {
    juy_api::auth::sign_hs256(
        SECRET.as_bytes(),
        ISSUER,
        AUDIENCE,
        &UserId::new(user).expect("user id"),
        roles,
        std::time::Duration::from_secs(600),
    )
}

/// `message` with `authorization: Bearer token`.
pub fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().expect("ascii token"));
    request
}

/// A protobuf timestamp.
pub fn ts(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: 0,
    }
}

/// An HTTP client (ring as the TLS provider).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("client")
}

/// The `juy-calendar` binary: `JUY_CALENDAR_BIN` (set by `cargo xtask test`),
/// else the one beside this test's target directory.
pub fn calendar_binary() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("JUY_CALENDAR_BIN") {
        return path.into();
    }
    // target/debug/deps/<test> → target/debug/juy-calendar
    let exe = std::env::current_exe().expect("test binary path");
    let path = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("juy-calendar"))
        .unwrap_or_default();
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p juy-calendar` or `cargo xtask test`",
        path.display()
    );
    path
}

/// A store over `database_url` with the master keys `master_keys`, as a second process would open it.
pub fn store_for(database_url: &str, master_keys: &str) -> juy_store::Store {
    let pool = juy_store::PoolConfig {
        database_url: database_url.to_owned(),
        max_connections: 2,
        connect_timeout: std::time::Duration::from_secs(5),
        statement_timeout: std::time::Duration::from_secs(15),
        application_name: "integration-test".into(),
    };
    juy_store::Store::connect(
        &pool,
        juy_crypto::MasterKeyring::parse(master_keys).expect("master keys"),
    )
    .expect("store")
}

/// Marks `users`' busy blocks as changed and holds off every rebuild of them
/// (each user's rebuild lock, held in the returned connection's open
/// transaction), so that free/busy reads their events until
/// [`release_busy_rebuilds`].
pub async fn hold_busy_rebuilds(store: &juy_store::Store, users: &[UserId]) -> juy_store::Conn {
    use diesel_async::RunQueryDsl as _;
    let mut hold = store.conn().await.expect("connection");
    diesel::sql_query("BEGIN").execute(&mut *hold).await.expect("begin");
    for user in users {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended('juy.busy_blocks:' || $1, 0))")
            .bind::<diesel::sql_types::Text, _>(user.as_str())
            .execute(&mut *hold)
            .await
            .expect("rebuild lock");
    }
    let mut conn = store.conn().await.expect("connection");
    let users: Vec<&UserId> = users.iter().collect();
    juy_store::busy_blocks::mark_dirty(&mut conn, &users)
        .await
        .expect("mark changed");
    hold
}

/// Ends [`hold_busy_rebuilds`]: the refresher may rebuild them again.
pub async fn release_busy_rebuilds(mut hold: juy_store::Conn) {
    use diesel_async::RunQueryDsl as _;
    diesel::sql_query("COMMIT").execute(&mut *hold).await.expect("commit");
}
