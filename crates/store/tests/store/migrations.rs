//! Every migration goes up, down and up again, and down really reverses up.

use std::process::Command;

use diesel::{Connection, PgConnection};
use diesel_migrations::MigrationHarness;
use juy_store::testing::TestDatabase;
use juy_store::{MIGRATIONS, run_migrations};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The schema as `pg_dump` prints it, without comments and session settings.
fn schema(url: &str) -> String {
    let pg_dump = ["/usr/lib/postgresql/15/bin/pg_dump", "pg_dump"]
        .into_iter()
        .find(|path| !path.starts_with('/') || std::path::Path::new(path).exists())
        .unwrap();
    let output = Command::new(pg_dump)
        .args(["--schema-only", "--no-owner", "--no-privileges", "--dbname", url])
        .output()
        .expect("pg_dump runs");
    assert!(
        output.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|line| {
            !(line.is_empty()
                || line.starts_with("--")
                || line.starts_with("SET ")
                || line.starts_with("SELECT pg_catalog.set_config")
                || line.starts_with("\\restrict")
                || line.starts_with("\\unrestrict"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_migration_goes_up_down_and_up_again_leaving_the_same_schema() {
    let runtime = runtime();
    let db = runtime.block_on(TestDatabase::create()).unwrap();
    let migrated = schema(&db.url);
    assert!(
        migrated.contains("CREATE TABLE public.user_calendar_events"),
        "{migrated}"
    );

    let mut conn = PgConnection::establish(&db.url).unwrap();
    let reverted = conn.revert_all_migrations(MIGRATIONS).unwrap();
    assert!(!reverted.is_empty());
    let empty = schema(&db.url);
    assert!(
        !empty.contains("user_calendar_events"),
        "down left tables behind:\n{empty}"
    );

    while conn.has_pending_migration(MIGRATIONS).unwrap() {
        let before = schema(&db.url);
        let version = conn.run_next_migration(MIGRATIONS).unwrap().as_owned();
        let after = schema(&db.url);
        assert_ne!(before, after, "migration {version} changes nothing");
        conn.revert_last_migration(MIGRATIONS).unwrap();
        assert_eq!(schema(&db.url), before, "down of {version} does not reverse its up");
        conn.run_next_migration(MIGRATIONS).unwrap();
        assert_eq!(
            schema(&db.url),
            after,
            "up of {version} is not repeatable after its down"
        );
    }
    assert_eq!(schema(&db.url), migrated);
}

#[test]
fn run_migrations_applies_pending_versions_once() {
    let runtime = runtime();
    let db = runtime.block_on(TestDatabase::create()).unwrap();
    assert_eq!(runtime.block_on(run_migrations(&db.url)).unwrap(), Vec::<String>::new());

    let mut conn = PgConnection::establish(&db.url).unwrap();
    let reverted = conn.revert_all_migrations(MIGRATIONS).unwrap().len();
    drop(conn);
    let applied = runtime.block_on(run_migrations(&db.url)).unwrap();
    assert_eq!(applied.len(), reverted);
    assert!(applied.contains(&"20261125000001".to_owned()), "{applied:?}");
}
