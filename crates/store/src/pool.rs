//! The connection pool: diesel-async on deadpool, each connection prepared
//! with a statement timeout and an application name.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use diesel::sql_types::Text;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use juy_crypto::MasterKeyring;

use crate::StoreError;

/// A pooled connection; dereferences to [`AsyncPgConnection`].
pub type Conn = Object<AsyncPgConnection>;

/// How to reach the database and how to treat each connection.
#[derive(Clone)]
pub struct PoolConfig {
    /// A `postgres://` URL; its password is never printed.
    pub database_url: String,
    /// The most connections held open at once.
    pub max_connections: usize,
    /// How long to wait for a new connection, or for a free one from the pool.
    pub connect_timeout: Duration,
    /// PostgreSQL's `statement_timeout` for every statement on these connections.
    pub statement_timeout: Duration,
    /// PostgreSQL's `application_name`, shown in `pg_stat_activity`.
    pub application_name: String,
}

impl fmt::Debug for PoolConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolConfig")
            .field("database_url", &redact_url(&self.database_url))
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("application_name", &self.application_name)
            .finish()
    }
}

/// `url` with the password (in the user info or a `password=` parameter) replaced.
pub(crate) fn redact_url(url: &str) -> String {
    const REDACTED: &str = "<redacted>";
    let (before_query, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len());
    match before_query.split_once("://") {
        Some((scheme, rest)) => {
            out.push_str(scheme);
            out.push_str("://");
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            match authority.rsplit_once('@') {
                Some((user_info, host)) => {
                    match user_info.split_once(':') {
                        Some((user, _password)) => {
                            out.push_str(user);
                            out.push(':');
                            out.push_str(REDACTED);
                        }
                        None => out.push_str(user_info),
                    }
                    out.push('@');
                    out.push_str(host);
                }
                None => out.push_str(authority),
            }
            out.push_str(path);
        }
        // Not a URL (perhaps a `key=value` string): print nothing that could be a secret.
        None if before_query.contains("password") => return REDACTED.to_owned(),
        None => out.push_str(before_query),
    }
    if let Some(query) = query {
        out.push('?');
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((name, _)) if name.eq_ignore_ascii_case("password") => {
                    format!("{name}={REDACTED}")
                }
                _ => param.to_owned(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

/// The store: a connection pool and the master keyring that unlocks users' data keys.
#[derive(Clone)]
pub struct Store {
    pool: Pool<AsyncPgConnection>,
    keyring: Arc<MasterKeyring>,
    connect_timeout: Duration,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("pool", &self.pool.status())
            .field("keyring", &self.keyring)
            .finish()
    }
}

impl Store {
    /// Builds the pool; connections are opened lazily, so call [`Store::ping`] to check the database.
    pub fn connect(config: &PoolConfig, keyring: MasterKeyring) -> Result<Store, StoreError> {
        if config.max_connections == 0 {
            return Err(StoreError::InvalidInput("max_connections must be at least 1".into()));
        }
        if config.connect_timeout.is_zero() {
            return Err(StoreError::InvalidInput("connect_timeout must be positive".into()));
        }
        let setup = ConnectionSetup {
            connect_timeout: config.connect_timeout,
            statement_timeout_ms: config.statement_timeout.as_millis().to_string(),
            application_name: config.application_name.clone(),
        };
        let mut manager_config = ManagerConfig::default();
        manager_config.custom_setup = Box::new(move |url| setup.clone().establish(url.to_owned()));
        let manager =
            AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(&config.database_url, manager_config);
        // Timeouts are enforced in `conn` and `establish` with tokio's timer, so
        // deadpool needs no runtime and its builder has nothing left to refuse.
        let pool = Pool::builder(manager)
            .max_size(config.max_connections)
            .build()
            .map_err(|err| StoreError::InvalidInput(err.to_string()))?;
        Ok(Store {
            pool,
            keyring: Arc::new(keyring),
            connect_timeout: config.connect_timeout,
        })
    }

    /// A connection from the pool, or [`StoreError::Unavailable`] after `connect_timeout`.
    pub async fn conn(&self) -> Result<Conn, StoreError> {
        match tokio::time::timeout(self.connect_timeout, self.pool.get()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(err)) => Err(StoreError::Unavailable(err.to_string())),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no database connection within {} ms",
                self.connect_timeout.as_millis()
            ))),
        }
    }

    /// Checks that the database answers (`SELECT 1`), for readiness probes.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        diesel::sql_query("SELECT 1").execute(&mut *conn).await?;
        Ok(())
    }

    /// The master keyring.
    pub fn keyring(&self) -> &MasterKeyring {
        &self.keyring
    }
}

/// What every new connection runs before joining the pool.
#[derive(Clone)]
struct ConnectionSetup {
    connect_timeout: Duration,
    statement_timeout_ms: String,
    application_name: String,
}

impl ConnectionSetup {
    fn establish(self, url: String) -> BoxFuture<'static, diesel::ConnectionResult<AsyncPgConnection>> {
        async move {
            let mut conn = tokio::time::timeout(self.connect_timeout, AsyncPgConnection::establish(&url))
                .await
                .map_err(|_| {
                    diesel::ConnectionError::BadConnection(format!(
                        "connecting took longer than {} ms",
                        self.connect_timeout.as_millis()
                    ))
                })??;
            // set_config is SET with bind parameters, so no value needs quoting.
            diesel::sql_query(
                "SELECT set_config('statement_timeout', $1, false), set_config('application_name', $2, false)",
            )
            .bind::<Text, _>(&self.statement_timeout_ms)
            .bind::<Text, _>(&self.application_name)
            .execute(&mut conn)
            .await
            .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        }
        .boxed()
    }
}

/// Runs `section` in one read-only REPEATABLE READ transaction: every read
/// it makes sees the same snapshot (an export is consistent even while syncs
/// write). The transaction is rolled back at the end; nothing can be written.
pub async fn in_snapshot<T, E, F>(conn: &mut AsyncPgConnection, section: F) -> Result<T, E>
where
    E: From<StoreError>,
    F: AsyncFnOnce(&mut AsyncPgConnection) -> Result<T, E>,
{
    use diesel_async::{AnsiTransactionManager, TransactionManager as _};

    AnsiTransactionManager::begin_transaction(conn)
        .await
        .map_err(StoreError::from)?;
    let result = match diesel::sql_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(conn)
        .await
    {
        Ok(_) => section(conn).await,
        Err(error) => Err(StoreError::from(error).into()),
    };
    // Read only: rolling back loses nothing. A failed rollback leaves the
    // connection broken, and the pool drops it.
    let _ = AnsiTransactionManager::rollback_transaction(conn).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_print_without_passwords() {
        assert_eq!(
            redact_url("postgres://juy:s3cret@db.internal:5432/juy?sslmode=require"),
            "postgres://juy:<redacted>@db.internal:5432/juy?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://juy@db/juy?password=s3cret&application_name=x"),
            "postgres://juy@db/juy?password=<redacted>&application_name=x"
        );
        assert_eq!(redact_url("postgres://db/juy"), "postgres://db/juy");
        assert_eq!(redact_url("host=db password=s3cret"), "<redacted>");
    }

    #[test]
    fn pool_config_debug_hides_the_password() {
        let config = PoolConfig {
            database_url: "postgres://juy:s3cret@db/juy".into(),
            max_connections: 4,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            application_name: "juy-calendar".into(),
        };
        let text = format!("{config:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("juy:<redacted>@db/juy"), "{text}");
    }
}
