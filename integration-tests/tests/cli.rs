//! The `juy-calendar` command line as an operator uses it: help, start-up
//! errors that name the setting, migrate, keygen and key rotation.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] functions

use std::path::PathBuf;
use std::process::{Command, Output};

use juy_integration_tests::{monday, new_master_keys, test_env};
use juy_store::testing::TestDatabase;

fn run(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(juy_integration_tests::calendar_binary())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().cloned())
        .output()
        .expect("run juy-calendar")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["serve", "migrate", "keygen", "rotate-keys", "dev", "sandbox"] {
        let output = run(&[sub, "--help"], &[]);
        assert!(output.status.success(), "{sub}: {}", text(&output));
        assert!(text(&output).contains("Usage"), "{sub}");
    }
}

#[test]
fn a_missing_or_bad_setting_stops_the_start_and_names_it() {
    let env = test_env("postgres://postgres@127.0.0.1:1/none", &new_master_keys());
    let without = |name: &str| env.iter().filter(|(k, _)| k != name).cloned().collect::<Vec<_>>();
    for (missing, named) in [
        ("JUY_DATABASE__URL", "database.url"),
        ("JUY_CRYPTO__MASTER_KEYS", "crypto.master_keys"),
        ("JUY_AUTH__AUDIENCE", "auth.audience"),
    ] {
        let output = run(&["serve"], &without(missing));
        assert!(!output.status.success());
        assert!(text(&output).contains(named), "{missing}: {}", text(&output));
    }
    let mut bad = env.clone();
    bad.push(("JUY_SERVER__GRPC_ADDR".into(), "everywhere".into()));
    let output = run(&["serve"], &bad);
    assert!(!output.status.success());
    assert!(text(&output).contains("server.grpc_addr"), "{}", text(&output));
    // An unreachable database is a clear start-up error, not a hang or a panic.
    let output = run(&["serve"], &env);
    assert!(!output.status.success());
    assert!(!text(&output).contains("panicked"), "{}", text(&output));
}

#[test]
fn keygen_prints_a_usable_master_key() {
    let output = run(&["keygen"], &[]);
    assert!(output.status.success());
    let key = String::from_utf8(output.stdout).unwrap();
    assert!(juy_crypto::MasterKey::from_base64(key.trim()).is_ok(), "{key}");
}

#[tokio::test]
async fn migrate_is_idempotent_and_rotate_keys_rewraps_every_data_key() {
    let db = TestDatabase::create().await.unwrap();
    let old = new_master_keys();
    let env = test_env(&db.url, &old);
    // The test database is cloned from a migrated template: nothing is pending.
    let output = run(&["migrate"], &env);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("applied 0 migration(s)"), "{}", text(&output));

    let store = juy_integration_tests::store_for(&db.url, &old);
    for user in ["ann", "ben"] {
        juy_calendar::dev::seed(
            &store,
            &juy_domain::UserId::new(user).unwrap(),
            monday(),
            chrono::Duration::days(30),
        )
        .await
        .unwrap();
    }

    let new = format!("2:{}", *juy_crypto::MasterKey::generate().to_base64());
    let both = format!("{new},{old}");
    let mut rotate_env = env.clone();
    rotate_env.retain(|(k, _)| k != "JUY_CRYPTO__MASTER_KEYS");
    rotate_env.push(("JUY_CRYPTO__MASTER_KEYS".into(), both));
    let output = run(&["rotate-keys"], &rotate_env);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("re-wrapped 2 data key(s) under master key version 2"),
        "{}",
        text(&output)
    );

    // With the old master key gone, the data still decrypts.
    let only_new = juy_integration_tests::store_for(&db.url, &new);
    let mut conn = only_new.conn().await.unwrap();
    let user = juy_domain::UserId::new("ann").unwrap();
    let key = only_new.data_key(&mut conn, &user).await.unwrap();
    let calendars = juy_store::calendars::list_calendars(&mut conn, &key, &user, None)
        .await
        .unwrap();
    assert!(calendars.iter().any(|c| c.name == "Work"));
}

#[test]
fn every_library_crate_says_what_it_is_for_and_forbids_unsafe() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut libs: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path().join("src/lib.rs"))
        .filter(|p| p.exists())
        .collect();
    libs.push(root.join("integration-tests/src/lib.rs"));
    assert!(libs.len() >= 5);
    for lib in libs {
        let source = std::fs::read_to_string(&lib).unwrap();
        assert!(
            source.starts_with("//!"),
            "{} must open with a //! paragraph",
            lib.display()
        );
        assert!(
            source.contains("#![forbid(unsafe_code)]"),
            "{} must forbid unsafe code",
            lib.display()
        );
    }
}

#[tokio::test]
async fn the_sandbox_subcommand_serves_the_fake_providers_and_their_control_api() {
    use std::io::BufRead as _;
    let mut child = Command::new(juy_integration_tests::calendar_binary())
        .args(["sandbox", "--addr", "127.0.0.1:0"])
        .env_clear()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let base = first
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap()
        .to_owned();
    let printed: Vec<String> = lines.by_ref().take(15).map(Result::unwrap).collect();
    assert!(
        printed.iter().any(|l| l.contains("JUY_GOOGLE__TOKEN_URL")),
        "{printed:?}"
    );
    let client = juy_integration_tests::http();
    let index: serde_json::Value = client
        .get(format!("{base}/_sandbox"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(index.to_string().contains("/_sandbox/accounts"), "{index}");
    // The dev world is seeded: its accounts are listed.
    let accounts = client
        .get(format!("{base}/_sandbox/accounts"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(accounts.contains("dev-user@gmail.test") && accounts.contains("dev-user@outlook.test"));
    child.kill().unwrap();
    child.wait().unwrap();
}
