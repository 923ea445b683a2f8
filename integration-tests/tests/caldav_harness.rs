//! The Radicale harness gives a real CalDAV server: discovery answers,
//! credentials are checked, and a calendar can be created and listed.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] functions

use juy_integration_tests::caldav::Radicale;
use juy_integration_tests::http;

#[tokio::test]
async fn radicale_serves_caldav_with_basic_auth() {
    let server = Radicale::start(&[("alice", "app-specific-secret")]);
    let client = http();
    let propfind = reqwest::Method::from_bytes(b"PROPFIND").unwrap();
    let body =
        r#"<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:current-user-principal/></d:prop></d:propfind>"#;

    let wrong = client
        .request(propfind.clone(), format!("{}/", server.base_url))
        .basic_auth("alice", Some("wrong"))
        .header("depth", "0")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let mkcalendar = reqwest::Method::from_bytes(b"MKCALENDAR").unwrap();
    let created = client
        .request(mkcalendar, format!("{}/alice/work/", server.base_url))
        .basic_auth("alice", Some("app-specific-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    let principal = client
        .request(propfind, format!("{}/", server.base_url))
        .basic_auth("alice", Some("app-specific-secret"))
        .header("depth", "0")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(principal.status(), 207);
    assert!(principal.text().await.unwrap().contains("/alice/"));
}
