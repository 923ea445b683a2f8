//! The real binary, over TLS, driven by an independent client generated from
//! `proto/` (Python grpcio): the gRPC contract, reflection without .proto
//! files, health, TLS 1.2+, graceful shutdown on SIGTERM, and logs free of
//! secrets and event text.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] functions

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use juy_integration_tests::{SECRET, monday, new_master_keys, test_env, token};
use juy_store::testing::TestDatabase;
use serde_json::json;

fn python() -> PathBuf {
    let python: PathBuf = std::env::var_os("JUY_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/juy-calendar/venv/bin/python")
    });
    assert!(
        python.exists(),
        "{} is missing: run `scripts/install-test-tools` or `cargo xtask test`",
        python.display()
    );
    python
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tls_client(ca_pem: &str, versions: &[&'static rustls::SupportedProtocolVersion]) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    let cert = rustls::pki_types::pem::PemObject::from_pem_slice(ca_pem.as_bytes()).unwrap();
    roots.add(cert).unwrap();
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_binary_serves_the_contract_over_tls_and_shuts_down_gracefully() {
    let db = TestDatabase::create().await.unwrap();
    let keys = new_master_keys();
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let (grpc_port, rest_port) = (free_port(), free_port());
    let log_file = dir.path().join("server.log");

    let mut env = test_env(&db.url, &keys);
    env.extend(
        [
            ("JUY_TLS__ENABLED", "true".to_owned()),
            ("JUY_TLS__CERT_FILE", cert_file.display().to_string()),
            ("JUY_TLS__KEY_FILE", key_file.display().to_string()),
            ("JUY_SERVER__GRPC_ADDR", format!("127.0.0.1:{grpc_port}")),
            ("JUY_SERVER__REST_ADDR", format!("127.0.0.1:{rest_port}")),
            ("JUY_TELEMETRY__LOG_FILTER", "info".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let mut child = Command::new(juy_integration_tests::calendar_binary())
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .stdout(std::fs::File::create(&log_file).unwrap())
        .stderr(std::fs::File::options().append(true).open(&log_file).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();

    let ca = cert.cert.pem();
    let client = tls_client(&ca, &[&rustls::version::TLS13, &rustls::version::TLS12]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match client.get(format!("https://127.0.0.1:{rest_port}/readyz")).send().await {
            Ok(r) if r.status() == 200 => break,
            _ if Instant::now() > deadline => {
                let _ = child.kill();
                panic!(
                    "server not ready in time: {}",
                    std::fs::read_to_string(&log_file).unwrap_or_default()
                );
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }

    // Seed through the store layer with the same keys, as a sync would.
    let store = juy_integration_tests::store_for(&db.url, &keys);
    let alice = juy_calendar::dev::seed(
        &store,
        &juy_domain::UserId::new("alice").unwrap(),
        monday(),
        chrono::Duration::days(30),
    )
    .await
    .unwrap();
    let bob = juy_calendar::dev::seed(
        &store,
        &juy_domain::UserId::new("bob").unwrap(),
        monday(),
        chrono::Duration::days(30),
    )
    .await
    .unwrap();
    let alice_token = token("alice", &[]);
    let accounts: std::collections::BTreeSet<String> = alice
        .calendars
        .iter()
        .map(|c| format!("connections/{}", c.account_id))
        .collect();
    let fixture = json!({
        "target": format!("127.0.0.1:{grpc_port}"),
        "ca_cert": dir.path().join("cert.pem"),
        "proto_dir": PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proto"),
        "user_token": alice_token,
        "other_user_token": token("bob", &[]),
        "admin_token": token("root", &["admin"]),
        "range_start": format!("{}T00:00:00Z", monday()),
        "range_end": format!("{}T00:00:00Z", monday() + chrono::Duration::days(7)),
        "expected_event_names": alice.events.iter().map(|e| format!("events/{}", e.id)).collect::<Vec<_>>(),
        "expected_event_titles": alice.events.iter().map(|e| e.title.clone().unwrap_or_default()).collect::<Vec<_>>(),
        "calendars": alice.calendars.iter().map(|c| format!("calendars/{}", c.id)).collect::<Vec<_>>(),
        "connections": accounts,
        "other_user_calendar": format!("calendars/{}", bob.calendars[0].id),
        "writable_calendar": format!("calendars/{}", alice.calendars.iter().find(|c| c.can_write).unwrap().id),
        "read_only_only_calendar": format!("calendars/{}", alice.calendars.iter().find(|c| !c.can_write).unwrap().id),
    });
    let fixture_file = dir.path().join("fixture.json");
    std::fs::write(&fixture_file, serde_json::to_vec_pretty(&fixture).unwrap()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/contract_test.py");
    let output = tokio::process::Command::new(python())
        .arg(script)
        .arg("--fixture")
        .arg(&fixture_file)
        .output()
        .await
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{report}");
    assert!(output.status.success(), "python contract test failed:\n{report}");

    // REST over TLS 1.2 only works too; plaintext to a TLS port does not.
    let tls12 = tls_client(&ca, &[&rustls::version::TLS12]);
    let url = format!(
        "https://127.0.0.1:{rest_port}/v1/calendar/events?range={}T00:00:00Z/{}T00:00:00Z",
        monday(),
        monday() + chrono::Duration::days(7)
    );
    let response = tls12.get(&url).bearer_auth(token("alice", &[])).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let plain = juy_integration_tests::http()
        .get(format!("http://127.0.0.1:{rest_port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);

    // SIGTERM: the process drains and exits 0.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "server did not stop after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert!(exit.success(), "exit {exit:?}\n{log}");

    // The log has one line per request and nothing secret or private.
    assert!(log.contains("request finished"), "{log}");
    for secret in [
        SECRET,
        &alice_token,
        &keys[2..],
        "Dentist",
        "Main Street 1",
        "Bring the insurance card",
        "sam@example.com",
    ] {
        if !secret.is_empty() {
            assert!(!log.contains(secret), "the log leaks `{secret}`");
        }
    }
}
