//! The pool: per-connection settings, readiness, and failing fast.

use std::time::{Duration, Instant};

use juy_crypto::{MasterKey, MasterKeyring};
use juy_store::testing::TestDatabase;
use juy_store::{PoolConfig, Store, StoreError};

use crate::support::texts;

fn config(url: String, connect_timeout: Duration) -> PoolConfig {
    PoolConfig {
        database_url: url,
        max_connections: 2,
        connect_timeout,
        statement_timeout: Duration::from_millis(1500),
        application_name: "juy-pool-test".into(),
    }
}

fn keyring() -> MasterKeyring {
    MasterKeyring::new([(1, MasterKey::generate())]).unwrap()
}

#[tokio::test]
async fn connections_carry_the_statement_timeout_and_application_name() {
    let db = TestDatabase::create().await.unwrap();
    let store = Store::connect(&config(db.url.clone(), Duration::from_secs(5)), keyring()).unwrap();
    store.ping().await.unwrap();
    let mut conn = store.conn().await.unwrap();
    assert_eq!(
        texts(&mut conn, "SELECT current_setting('statement_timeout') AS value").await,
        vec!["1500ms"]
    );
    assert_eq!(
        texts(&mut conn, "SELECT current_setting('application_name') AS value").await,
        vec!["juy-pool-test"]
    );

    let err = diesel_async::RunQueryDsl::execute(diesel::sql_query("SELECT pg_sleep(5)"), &mut *conn)
        .await
        .unwrap_err();
    let err = StoreError::from(err);
    assert!(err.to_string().contains("statement timeout"), "{err}");
}

#[tokio::test]
async fn a_refusing_database_gives_an_error_not_a_hang() {
    // Nothing listens on port 1.
    let store = Store::connect(
        &config("postgres://postgres@127.0.0.1:1/x".into(), Duration::from_secs(2)),
        keyring(),
    )
    .unwrap();
    let started = Instant::now();
    let err = store.ping().await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_silent_database_times_out() {
    // A listener that accepts and never answers, like a hung server.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            sockets.push(socket);
        }
    });
    let url = format!("postgres://postgres@127.0.0.1:{port}/x");
    let store = Store::connect(&config(url, Duration::from_millis(500)), keyring()).unwrap();
    let started = Instant::now();
    let Err(err) = store.conn().await else {
        panic!("a connection from a silent server")
    };
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    held.abort();
}

#[test]
fn a_pool_of_no_connections_is_refused() {
    let err = Store::connect(&config("postgres://db/x".into(), Duration::from_secs(1)), keyring()).map(|_| ());
    assert!(err.is_ok());
    let mut zero = config("postgres://db/x".into(), Duration::from_secs(1));
    zero.max_connections = 0;
    assert!(matches!(
        Store::connect(&zero, keyring()),
        Err(StoreError::InvalidInput(_))
    ));
}
