//! Test support (feature `testing`): every test gets its own database, cloned
//! from a template that is migrated once per schema version.
//!
//! ```no_run
//! # async fn example() -> Result<(), juy_store::StoreError> {
//! let db = juy_store::testing::TestDatabase::create().await?;
//! let store = db.store();
//! store.ping().await?;
//! // `db` drops its database when it goes out of scope.
//! # Ok(()) }
//! ```
//!
//! The server is taken from `JUY_TEST_DATABASE_URL`, else `DATABASE_URL`, else
//! `postgres://postgres@127.0.0.1:5432/postgres`; that role must be allowed to
//! create databases. The template is named `juy_tmpl_<hash of the migrations>`,
//! so changing a migration makes a new one; it is built under an advisory lock
//! because nextest runs every test in its own process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use juy_crypto::{MasterKey, MasterKeyring};
use uuid::Uuid;

use crate::{PoolConfig, Store, StoreError, run_migrations};

/// Serialises template creation across test processes (an arbitrary constant: "juy-tmpl").
const TEMPLATE_LOCK: i64 = 0x6a75_792d_746d_706c;

/// Set once this process has seen the template ready.
static TEMPLATE_READY: AtomicBool = AtomicBool::new(false);

/// A database of its own for one test, migrated, dropped on drop.
#[derive(Debug)]
pub struct TestDatabase {
    /// Its URL.
    pub url: String,
    name: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates a fresh, migrated database cloned from the template (building the template if needed).
    pub async fn create() -> Result<TestDatabase, StoreError> {
        let admin_url = admin_url();
        let template = template_name();
        let mut admin = AsyncPgConnection::establish(&admin_url).await?;
        // Called as a function: diesel's `RunQueryDsl::load` would shadow the method.
        if !AtomicBool::load(&TEMPLATE_READY, Ordering::Acquire) {
            ensure_template(&mut admin, &admin_url, &template).await?;
            TEMPLATE_READY.store(true, Ordering::Release);
        }
        let name = format!("juy_test_{}", Uuid::new_v4().simple());
        diesel::sql_query(format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""))
            .execute(&mut admin)
            .await?;
        let url = with_database(&admin_url, &name)?;
        Ok(TestDatabase { url, name, admin_url })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A [`Store`] on this database with a fresh random master key (version 1).
    pub fn store(&self) -> Store {
        // Infallible: version 1 is a valid version and the ring is not empty.
        #[allow(clippy::expect_used)]
        let keyring = MasterKeyring::new([(1, MasterKey::generate())]).expect("a one-key ring is valid");
        self.store_with_keyring(keyring)
    }

    /// A [`Store`] on this database with the given master keyring.
    pub fn store_with_keyring(&self, keyring: MasterKeyring) -> Store {
        let config = PoolConfig {
            database_url: self.url.clone(),
            max_connections: 4,
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
            application_name: "juy-store-tests".into(),
        };
        // Infallible: `connect` only refuses a zero pool size or connect timeout.
        #[allow(clippy::expect_used)]
        Store::connect(&config, keyring).expect("a valid test pool configuration")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs synchronously, maybe inside a runtime: use a blocking
        // connection on a thread of its own rather than the runtime.
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            use diesel::Connection as _;
            let mut conn = diesel::PgConnection::establish(&admin_url).map_err(|err| err.to_string())?;
            diesel::RunQueryDsl::execute(diesel::sql_query(sql), &mut conn).map_err(|err| err.to_string())?;
            Ok(())
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(database = %self.name, error = %err, "could not drop a test database")
            }
            Err(_) => tracing::warn!(database = %self.name, "dropping a test database panicked"),
        }
    }
}

fn admin_url() -> String {
    std::env::var("JUY_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn template_name() -> String {
    let hash = env!("JUY_MIGRATIONS_HASH");
    format!("juy_tmpl_{}", &hash[..12.min(hash.len())])
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Makes sure the migrated template exists, building it under an advisory lock.
async fn ensure_template(admin: &mut AsyncPgConnection, admin_url: &str, template: &str) -> Result<(), StoreError> {
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(TEMPLATE_LOCK)
        .execute(admin)
        .await?;
    let built = build_template_unless_present(admin, admin_url, template).await;
    let unlocked = diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(TEMPLATE_LOCK)
        .execute(admin)
        .await;
    built?;
    unlocked?;
    Ok(())
}

async fn build_template_unless_present(
    admin: &mut AsyncPgConnection,
    admin_url: &str,
    template: &str,
) -> Result<(), StoreError> {
    let ready = diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1 AND datistemplate")
        .bind::<Text, _>(template)
        .get_result::<Count>(admin)
        .await?;
    if ready.n > 0 {
        return Ok(());
    }
    // Only a finished template is marked `datistemplate`; anything else is a
    // leftover of a run that died half-way.
    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{template}\" WITH (FORCE)"))
        .execute(admin)
        .await?;
    diesel::sql_query(format!("CREATE DATABASE \"{template}\""))
        .execute(admin)
        .await?;
    run_migrations(&with_database(admin_url, template)?).await?;
    diesel::sql_query(format!("ALTER DATABASE \"{template}\" IS_TEMPLATE true"))
        .execute(admin)
        .await?;
    tracing::info!(template, "built the test template database");
    Ok(())
}

/// `url` pointing at database `name` instead.
fn with_database(url: &str, name: &str) -> Result<String, StoreError> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base
        .find("://")
        .map(|index| index + 3)
        .ok_or_else(|| StoreError::InvalidInput("the test database URL must be a postgres:// URL".into()))?;
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |index| authority_start + index);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_swap_only_the_database_name() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1").unwrap(),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@db/x?sslmode=disable", "t2").unwrap(),
            "postgres://u:p@db/t2?sslmode=disable"
        );
        assert_eq!(with_database("postgresql://db", "t3").unwrap(), "postgresql://db/t3");
        assert!(with_database("host=db", "t4").is_err());
    }

    #[test]
    fn the_template_is_named_after_the_migrations() {
        let name = template_name();
        assert!(name.starts_with("juy_tmpl_"));
        assert_eq!(name.len(), "juy_tmpl_".len() + 12);
    }
}
