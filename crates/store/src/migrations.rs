//! The embedded migrations and the one function that applies them.

use diesel::{Connection, PgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::StoreError;

/// Every migration of the repository's `migrations/` folder, compiled in.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Serialises migration runs across processes (an arbitrary constant: "juy-mig").
const MIGRATION_LOCK: i64 = 0x006a_7579_2d6d_6967;

/// Applies every pending migration and returns the versions applied, oldest first.
///
/// Runs on a blocking thread with a synchronous connection (diesel's migration
/// harness is synchronous) and holds an advisory lock meanwhile, so two
/// processes starting together do not race.
pub async fn run_migrations(database_url: &str) -> Result<Vec<String>, StoreError> {
    let url = database_url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&url)?;
        run_migrations_locked(&mut conn)
    })
    .await
    .map_err(|err| StoreError::Migration(format!("the migration task failed: {err}")))?
}

fn run_migrations_locked(conn: &mut PgConnection) -> Result<Vec<String>, StoreError> {
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK)
        .execute(conn)?;
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
        .map_err(|err| StoreError::Migration(err.to_string()));
    // The lock also ends with the session; unlocking explicitly frees it for a pooled caller.
    let unlocked = diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK)
        .execute(conn);
    let applied = applied?;
    unlocked?;
    if !applied.is_empty() {
        tracing::info!(versions = ?applied, "applied migrations");
    }
    Ok(applied)
}
