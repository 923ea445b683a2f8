//! The audit trail, the admin downloads and the data subject's rights, end to
//! end through the public API: an entry for every action (refusals too),
//! none alterable and none holding event text or secrets; the connections
//! CSV read back by Python's `csv`; the export matching what is stored
//! (100,000 events in bounded memory); the erasure leaving nothing but its
//! own audit entry.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] functions

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, Utc};
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl as _;
use futures::StreamExt as _;
use juy_api::pb::v1 as pb;
use juy_domain::{Provider, UserId};
use juy_integration_tests::providers::{self, sandbox_env};
use juy_integration_tests::sync::link_oauth;
use juy_integration_tests::{TestServer, authed, http, ts};
use juy_sandbox::{RunningSandbox, Sandbox};
use juy_store::audit::{AuditEvent, AuditFilter};
use serde_json::Value;

const GOOGLE_SUB: &str = "google-sub-zoe";

/// Users whose ids contain no hexadecimal letters, so a search for them in
/// a row's text cannot match the hex rendering of ciphertext.
const ZOE: &str = "zoe-juy-7";
const MIKO: &str = "miko-juy-9";

async fn sandbox() -> RunningSandbox {
    let sandbox = Sandbox::new();
    sandbox.add_account(juy_sandbox::Provider::Google, GOOGLE_SUB, "zoe@gmail.test");
    sandbox.add_google_calendar(GOOGLE_SUB, "zoe@gmail.test", "Zoe", "owner", true);
    juy_sandbox::start(sandbox).await.unwrap()
}

/// Links Zoe's Google account through the OAuth flow (so revoking it reaches the sandbox).
async fn link_google(server: &TestServer, token: &str) -> pb::Connection {
    let mut client = server.calendar().await;
    let url = client
        .start_connect(authed(
            pb::StartConnectRequest {
                provider: pb::Provider::Google.into(),
                ..Default::default()
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
        .authorization_url;
    let redirect = providers::authorize(&url).await;
    client
        .complete_connect(authed(
            pb::CompleteConnectRequest {
                state: redirect.state,
                code: redirect.code,
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
        .connection
        .unwrap()
}

/// Sets the caller's availability time zone.
async fn set_time_zone(server: &TestServer, token: &str, zone: &str) {
    server
        .calendar()
        .await
        .update_calendar_settings(authed(
            pb::UpdateCalendarSettingsRequest {
                settings: Some(pb::CalendarSettings {
                    time_zone: zone.into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["time_zone".into()],
                }),
            },
            token,
        ))
        .await
        .unwrap();
}

/// Creates a meeting (conflicts allowed) as `token`'s user.
async fn create_meeting(server: &TestServer, token: &str, meeting: pb::Meeting) -> pb::Meeting {
    server
        .calendar()
        .await
        .create_meeting(authed(
            pb::CreateMeetingRequest {
                meeting: Some(meeting),
                allow_conflicts: true,
                ..Default::default()
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
        .meeting
        .unwrap()
}

async fn trail(server: &TestServer, filter: AuditFilter) -> Vec<AuditEvent> {
    let mut conn = server.store.conn().await.unwrap();
    juy_store::audit::list(&mut conn, &filter, 10_000).await.unwrap()
}

async fn scalar(server: &TestServer, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = server.store.conn().await.unwrap();
    let rows: Vec<N> = diesel::sql_query(sql).load(&mut *conn).await.unwrap();
    rows[0].n
}

/// Every base table of the public schema.
async fn tables(server: &TestServer) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct T {
        #[diesel(sql_type = Text)]
        name: String,
    }
    let mut conn = server.store.conn().await.unwrap();
    let rows: Vec<T> = diesel::sql_query(
        "SELECT table_name AS name FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .load(&mut *conn)
    .await
    .unwrap();
    rows.into_iter().map(|t| t.name).collect()
}

/// Rows of every table whose text rendering contains `needle`, by table.
async fn rows_containing(server: &TestServer, needle: &str) -> BTreeMap<String, i64> {
    let mut found = BTreeMap::new();
    for table in tables(server).await {
        let literal = needle.replace('\'', "''");
        let n = scalar(
            server,
            &format!("SELECT count(*) AS n FROM {table} t WHERE strpos(t::text, '{literal}') > 0"),
        )
        .await;
        if n > 0 {
            found.insert(table, n);
        }
    }
    found
}

#[tokio::test]
async fn every_action_is_audited_with_its_outcome_and_no_entry_can_be_altered() {
    let sandbox = sandbox().await;
    let server = TestServer::start_with(sandbox_env(&sandbox)).await;
    let zoe = server.token(ZOE, &[]);
    let admin = server.token("root-juy", &["admin"]);
    let seeded = server.seed(ZOE).await;
    let google = link_google(&server, &zoe).await;
    let mut calendar = server.calendar().await;

    // Reads, a settings change, a sync, a meeting, a revocation: gRPC and REST.
    calendar
        .list_events(authed(
            pb::ListEventsRequest {
                start_time: Some(ts(Utc::now() - Duration::days(30))),
                end_time: Some(ts(Utc::now() + Duration::days(60))),
                ..Default::default()
            },
            &zoe,
        ))
        .await
        .unwrap();
    let range = format!(
        "{}/{}",
        (Utc::now() - Duration::days(30)).format("%Y-%m-%dT%H:%M:%SZ"),
        (Utc::now() + Duration::days(60)).format("%Y-%m-%dT%H:%M:%SZ")
    );
    let listed = http()
        .get(server.rest(&format!("/v1/calendar/events?range={range}")))
        .bearer_auth(&zoe)
        .header("x-request-id", "req-zoe-events-1")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status().as_u16(), 200);
    let bad = http()
        .get(server.rest(&format!("/v1/calendar/events?range={range}&page_size=-1")))
        .bearer_auth(&zoe)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    calendar
        .get_calendar_settings(authed(pb::GetCalendarSettingsRequest::default(), &zoe))
        .await
        .unwrap();
    set_time_zone(&server, &zoe, "Europe/Berlin").await;
    let mut job = calendar
        .sync_now(authed(pb::SyncNowRequest::default(), &zoe))
        .await
        .unwrap()
        .into_inner();
    let job_name = job.next().await.unwrap().unwrap().job.unwrap().name;
    let start = Utc::now() + Duration::days(40);
    let meeting = create_meeting(
        &server,
        &zoe,
        pb::Meeting {
            title: "Secret merger talk".into(),
            start_time: Some(ts(start)),
            end_time: Some(ts(start + Duration::hours(1))),
            time_zone: "Europe/Berlin".into(),
            ..Default::default()
        },
    )
    .await;
    calendar
        .revoke_connection(authed(
            pb::RevokeConnectionRequest {
                name: google.name.clone(),
            },
            &zoe,
        ))
        .await
        .unwrap();
    // Another user's meeting is NOT_FOUND for Miko, and recorded as such.
    let denied = calendar
        .get_meeting(authed(
            pb::GetMeetingRequest {
                name: meeting.name.clone(),
            },
            &server.token(MIKO, &[]),
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::NotFound);
    // Miko is no admin: refused on both surfaces, and recorded.
    let mut admin_client = server.admin().await;
    let refused = admin_client
        .list_audit_events(authed(pb::ListAuditEventsRequest::default(), &server.token(MIKO, &[])))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let refused = http()
        .get(server.rest("/v1/admin/connections.csv"))
        .bearer_auth(server.token(MIKO, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    // An administrator reads Zoe's connections and the trail.
    admin_client
        .list_connections(authed(
            pb::AdminListConnectionsRequest {
                user_id: ZOE.into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap();

    let about_zoe = admin_client
        .list_audit_events(authed(
            pb::ListAuditEventsRequest {
                user_id: ZOE.into(),
                page_size: 1000,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    let seen: BTreeSet<(&str, &str, &str)> = about_zoe
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str(), e.result.as_str()))
        .collect();
    for expected in [
        (ZOE, "events.list", "OK"),
        (ZOE, "events.list", "INVALID_ARGUMENT"),
        (ZOE, "settings.get", "OK"),
        (ZOE, "settings.update", "OK"),
        (ZOE, "connection.start", "OK"),
        (ZOE, "connection.connect", "OK"),
        (ZOE, "sync.trigger", "OK"),
        (ZOE, "meeting.create", "OK"),
        (ZOE, "connection.revoke", "OK"),
        ("root-juy", "admin.connections.list", "OK"),
    ] {
        assert!(seen.contains(&expected), "{expected:?} missing from {seen:#?}");
    }
    // Targets and request ids.
    let by_action = |action: &str| {
        about_zoe
            .iter()
            .find(|e| e.action == action && e.result == "OK")
            .unwrap()
    };
    assert_eq!(by_action("connection.revoke").target, google.name);
    assert_eq!(by_action("connection.connect").target, google.name);
    assert_eq!(by_action("meeting.create").target, meeting.name);
    assert_eq!(by_action("sync.trigger").target, job_name);
    assert_eq!(by_action("admin.connections.list").subject_user_id, ZOE);
    assert_eq!(by_action("admin.connections.list").actor_roles, ["admin"]);
    assert!(
        about_zoe
            .iter()
            .any(|e| e.action == "events.list" && e.request_id == "req-zoe-events-1"),
        "the gateway's request id is kept"
    );
    // Refusals of other users are recorded under them.
    let by_miko = trail(
        &server,
        AuditFilter {
            actor: Some(MIKO.into()),
            ..Default::default()
        },
    )
    .await;
    let miko: BTreeSet<(&str, &str)> = by_miko.iter().map(|e| (e.action.as_str(), e.result.as_str())).collect();
    assert_eq!(
        miko,
        BTreeSet::from([
            ("meeting.get", "NOT_FOUND"),
            ("admin.audit.list", "PERMISSION_DENIED"),
            ("admin.connections.export", "PERMISSION_DENIED"),
        ])
    );
    // Paging: newest first, pages do not overlap (each listing is recorded
    // after it was served; a later page is not shifted by it).
    let snapshot = trail(
        &server,
        AuditFilter {
            user: Some(UserId::new(ZOE).unwrap()),
            ..Default::default()
        },
    )
    .await;
    let first = admin_client
        .list_audit_events(authed(
            pb::ListAuditEventsRequest {
                user_id: ZOE.into(),
                page_size: 3,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let second = admin_client
        .list_audit_events(authed(
            pb::ListAuditEventsRequest {
                user_id: ZOE.into(),
                page_size: 3,
                page_token: first.next_page_token.clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = first
        .audit_events
        .iter()
        .chain(&second.audit_events)
        .map(|e| e.name.as_str())
        .collect();
    let expected: Vec<String> = snapshot
        .iter()
        .take(6)
        .map(|e| format!("auditEvents/{}", e.id))
        .collect();
    assert_eq!(names, expected);
    let bad_filter = admin_client
        .list_audit_events(authed(
            pb::ListAuditEventsRequest {
                action: "Connection Revoke".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_filter.code(), tonic::Code::InvalidArgument);

    // No event text and no secret in any entry.
    let all = trail(&server, AuditFilter::default()).await;
    let rendered = format!("{all:?}");
    for text in seeded.events.iter().filter_map(|e| e.title.as_deref()).chain([
        "Secret merger talk",
        zoe.as_str(),
        admin.as_str(),
    ]) {
        assert!(!rendered.contains(text), "{text:?} is in the audit trail");
    }

    // The service's database role cannot alter or remove an entry.
    let mut conn = server.store.conn().await.unwrap();
    for statement in [
        "UPDATE audit_events SET result = 'OK' WHERE result <> 'OK'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events CASCADE",
    ] {
        let error = diesel::sql_query(statement).execute(&mut *conn).await.unwrap_err();
        assert!(error.to_string().contains("append-only"), "{statement}: {error}");
    }
    drop(conn);
    assert_eq!(trail(&server, AuditFilter::default()).await.len(), all.len());

    // The REST listing and the CSV download agree with the trail.
    let page: Value = http()
        .get(server.rest(&format!(
            "/v1/admin/audit-events?user_id={ZOE}&action=connection&page_size=100"
        )))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: BTreeSet<&str> = page["audit_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        BTreeSet::from(["connection.connect", "connection.revoke", "connection.start"])
    );
    let csv = http()
        .get(server.rest(&format!("/v1/admin/audit-events.csv?user_id={ZOE}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status().as_u16(), 200);
    let rows = python_csv(&csv.text().await.unwrap());
    assert_eq!(rows[0][0], "time");
    let at_download = trail(
        &server,
        AuditFilter {
            user: Some(UserId::new(ZOE).unwrap()),
            ..Default::default()
        },
    )
    .await;
    // A download is recorded as it starts: it holds its own entry.
    assert_eq!(
        (at_download[0].action.as_str(), at_download[0].result.as_str()),
        ("admin.audit.export", "OK")
    );
    let csv_names: Vec<&str> = rows[1..].iter().map(|r| r[8].as_str()).collect();
    let stored: Vec<String> = at_download.iter().map(|e| format!("auditEvents/{}", e.id)).collect();
    assert_eq!(csv_names, stored);
    server.stop().await;
    sandbox.stop().await;
}

/// Parses CSV text with Python's `csv` module; returns the rows.
fn python_csv(text: &str) -> Vec<Vec<String>> {
    use std::io::Write as _;
    let mut child = std::process::Command::new(juy_integration_tests::caldav::python())
        .args([
            "-c",
            "import csv, io, json, sys\n\
             data = sys.stdin.buffer.read().decode('utf-8')\n\
             print(json.dumps(list(csv.reader(io.StringIO(data, newline=''), strict=True))))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python csv failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn connections_csv_round_trips_tricky_values_through_pythons_csv_and_grpc_streams_every_batch() {
    let server = TestServer::start().await;
    let tricky = ["Müller, \"Jo\"", "ünï ✓ 東京", "plain", "a;b,c"];
    for (i, user) in tricky.iter().enumerate() {
        link_oauth(
            &server,
            user,
            Provider::Google,
            &format!("user{i}@example.test"),
            "token",
            &[("primary", "Main", true)],
        )
        .await;
    }
    // A reason with a comma, quotes and a line break.
    let mut conn = server.store.conn().await.unwrap();
    diesel::sql_query(
        "UPDATE connected_accounts SET status = 'error', \
         status_reason = E'Provider said: \"no\",\\nthen, again' WHERE user_id = 'plain'",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    // Enough more connections for several export batches.
    diesel::sql_query(
        "INSERT INTO connected_accounts (user_id, id, provider, external_account_id, status) \
         SELECT 'bulk-' || n, gen_random_uuid(), 'caldav', 'principal-' || n, 'active' FROM generate_series(1, 1100) n",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    drop(conn);
    let admin = server.token("root-juy", &["admin"]);

    let response = http()
        .get(server.rest("/v1/admin/connections.csv"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let rows = python_csv(&response.text().await.unwrap());
    assert_eq!(
        rows[0],
        [
            "user_id",
            "connection",
            "provider",
            "state",
            "state_reason",
            "connect_time",
            "last_sync_time",
            "last_error",
            "calendar_count",
            "calendars_in_error"
        ]
    );
    assert_eq!(rows.len(), 1 + tricky.len() + 1100);
    assert!(rows.iter().all(|r| r.len() == 10));
    let users: BTreeSet<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    for user in tricky {
        assert!(users.contains(user), "{user:?} did not round-trip: {users:?}");
    }
    let plain = rows.iter().find(|r| r[0] == "plain").unwrap();
    assert_eq!(plain[3], "error");
    assert_eq!(plain[4], "Provider said: \"no\",\nthen, again");
    let muller = rows.iter().find(|r| r[0] == "Müller, \"Jo\"").unwrap();
    assert_eq!((muller[2].as_str(), muller[8].as_str()), ("google", "1"));

    // Filters apply; a bad one is a problem naming it, not an empty file.
    let filtered = python_csv(
        &http()
            .get(server.rest("/v1/admin/connections.csv?provider=google&state=error"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(filtered.len(), 2);
    let bad = http()
        .get(server.rest("/v1/admin/connections.csv?state=sleepy"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let problem: Value = bad.json().await.unwrap();
    assert_eq!(problem["violations"][0]["field"], "state");

    // gRPC: the same connections in batches, oldest first.
    let mut stream = server
        .admin()
        .await
        .export_connections(authed(pb::ExportConnectionsRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        batches.push(batch.unwrap().connections);
    }
    assert!(batches.len() >= 3, "{} batches", batches.len());
    let streamed: Vec<String> = batches.iter().flatten().map(|c| c.name.clone()).collect();
    let from_csv: Vec<String> = rows[1..].iter().map(|r| r[1].clone()).collect();
    assert_eq!(streamed, from_csv);
    // Non-admins get nothing.
    let refused = server
        .admin()
        .await
        .export_connections(authed(
            pb::ExportConnectionsRequest::default(),
            &server.token("plain", &[]),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    server.stop().await;
}

async fn export_over_grpc(server: &TestServer, token: &str) -> Value {
    let mut stream = server
        .calendar()
        .await
        .export_my_data(authed(pb::ExportMyDataRequest {}, token))
        .await
        .unwrap()
        .into_inner();
    let mut document = Vec::new();
    while let Some(chunk) = stream.next().await {
        document.extend(chunk.unwrap().chunk);
    }
    serde_json::from_slice(&document).unwrap()
}

#[tokio::test]
async fn the_export_holds_exactly_what_is_stored_about_the_caller_and_no_secret() {
    let server = TestServer::start().await;
    let seeded = server.seed(ZOE).await;
    server.seed(MIKO).await;
    let zoe = server.token(ZOE, &[]);
    let start = Utc::now() + Duration::days(3);
    let meeting = create_meeting(
        &server,
        &zoe,
        pb::Meeting {
            title: "Zoe's planning".into(),
            description: "Bring the \"numbers\"".into(),
            start_time: Some(ts(start)),
            end_time: Some(ts(start + Duration::minutes(30))),
            time_zone: "Europe/Berlin".into(),
            invitees: vec![format!("users/{MIKO}")],
            ..Default::default()
        },
    )
    .await;

    let document = export_over_grpc(&server, &zoe).await;
    assert_eq!(document["format"], "juy.calendar.export/v1");
    assert_eq!(document["user"], format!("users/{ZOE}"));
    assert_eq!(document["complete"], true);
    // Events: every stored one, decrypted, no other user's.
    let mut exported: Vec<(String, String)> = document["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["title"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    exported.sort();
    let mut stored: Vec<(String, String)> = seeded
        .events
        .iter()
        .map(|e| (format!("events/{}", e.id), e.title.clone().unwrap_or_default()))
        .collect();
    stored.sort();
    assert_eq!(exported, stored);
    assert_eq!(
        document["connections"].as_array().unwrap().len(),
        2,
        "the seeded Google and Microsoft accounts"
    );
    assert_eq!(document["calendars"].as_array().unwrap().len(), seeded.calendars.len());
    assert_eq!(document["meetings"][0]["name"], meeting.name);
    assert_eq!(document["meetings"][0]["description"], "Bring the \"numbers\"");
    assert!(document["settings"]["notification_channels"].is_array());
    assert!(
        document["reminders"].is_array(),
        "no reminder endpoint here: none planned"
    );
    // Its audit entries: the meeting's creation, and the export itself (recorded as it starts).
    let audit: Vec<&str> = document["audit_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(audit.contains(&"meeting.create"), "{audit:?}");
    assert_eq!(audit[0], "data.export", "{audit:?}");
    // No secret: the seeded accounts' credentials never appear.
    let text = document.to_string();
    assert!(!text.contains("not a real token"));
    assert!(
        !text.contains(MIKO) || text.matches(MIKO).count() == 1,
        "Miko appears only as the invitee"
    );

    // REST: the same document as a download.
    let response = http()
        .get(server.rest("/v1/calendar/me/export"))
        .bearer_auth(&zoe)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let over_rest: Value = response.json().await.unwrap();
    assert_eq!(over_rest["events"], document["events"]);
    assert_eq!(over_rest["meetings"], document["meetings"]);
    server.stop().await;
}

/// The process's resident set now and at its peak since the last reset (kB).
fn rss_kb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test]
async fn an_export_of_100k_events_streams_in_bounded_memory() {
    let server = TestServer::start().await;
    let seeded = server.seed(ZOE).await;
    let calendar = &seeded.calendars[0];
    let user = UserId::new(ZOE).unwrap();
    {
        let mut conn = server.store.conn().await.unwrap();
        let key = server.store.data_key(&mut conn, &user).await.unwrap();
        let base = Utc::now();
        for page in 0..100 {
            let events: Vec<juy_domain::CalendarEvent> = (0..1000)
                .map(|i| {
                    let n = page * 1000 + i;
                    let mut e = seeded.events[0].clone();
                    e.calendar_id = calendar.id;
                    e.provider = calendar.provider;
                    e.external_id = format!("bulk-{n}");
                    e.id = juy_domain::EventId(juy_store::events::event_row_id(&user, calendar.id, &e.external_id));
                    e.title = Some(format!("Bulk event number {n} with a title of ordinary length"));
                    e.description = Some("A description of a few words, like most have.".into());
                    e.start = base + Duration::minutes(n);
                    e.end = e.start + Duration::minutes(30);
                    e.all_day = None;
                    e.series_id = None;
                    e.instance_start = None;
                    e
                })
                .collect();
            juy_store::events::upsert_events(&mut conn, &key, &events, base, Duration::days(30))
                .await
                .unwrap();
        }
    }
    let total = seeded.events.len() + 100_000;

    // Reset the peak, then read the download chunk by chunk without keeping it.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let (before, _) = rss_kb();
    let response = http()
        .get(server.rest("/v1/calendar/me/export"))
        .bearer_auth(server.token(ZOE, &[]))
        .timeout(std::time::Duration::from_secs(600))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut response = response;
    let (mut bytes, mut events, mut tail) = (0usize, 0usize, Vec::new());
    let needle = b"{\"name\":\"events/";
    let mut carry: Vec<u8> = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        bytes += chunk.len();
        carry.extend_from_slice(&chunk);
        events += carry.windows(needle.len()).filter(|w| w == needle).count();
        let keep = carry.len().min(needle.len() - 1);
        carry = carry[carry.len() - keep..].to_vec();
        tail.extend_from_slice(&chunk);
        if tail.len() > 64 {
            tail.drain(..tail.len() - 64);
        }
    }
    let (_, peak) = rss_kb();
    assert_eq!(events, total);
    assert!(String::from_utf8_lossy(&tail).ends_with("\"complete\":true}"));
    let grown_mb = peak.saturating_sub(before) / 1024;
    let document_mb = bytes / (1024 * 1024);
    println!("export: {document_mb} MB document, peak RSS grew by {grown_mb} MB");
    assert!(document_mb >= 50, "the document is {document_mb} MB");
    assert!(
        grown_mb < 64,
        "memory grew by {grown_mb} MB for a {document_mb} MB document: not bounded"
    );
    server.stop().await;
}

#[tokio::test]
async fn erasure_revokes_at_the_provider_and_leaves_nothing_but_its_own_audit_entry() {
    let sandbox = sandbox().await;
    let server = TestServer::start_with(sandbox_env(&sandbox)).await;
    let zoe = server.token(ZOE, &[]);
    let miko = server.token(MIKO, &[]);
    let seeded = server.seed(ZOE).await;
    let miko_seeded = server.seed(MIKO).await;
    link_google(&server, &zoe).await;
    let mut calendar = server.calendar().await;
    let start = Utc::now() + Duration::days(5);
    let meeting = |title: &str, invitee: &str| pb::Meeting {
        title: title.into(),
        start_time: Some(ts(start)),
        end_time: Some(ts(start + Duration::hours(1))),
        time_zone: "Europe/Berlin".into(),
        invitees: vec![format!("users/{invitee}")],
        ..Default::default()
    };
    create_meeting(&server, &zoe, meeting("Zoe's own meeting", MIKO)).await;
    let mikos = create_meeting(&server, &miko, meeting("Miko invites Zoe", ZOE)).await;
    set_time_zone(&server, &zoe, "Europe/Berlin").await;
    // A sync job (its runs may still be going on at the erasure: work leased
    // before it must not bring anything of Zoe's back).
    let mut job = calendar
        .sync_now(authed(pb::SyncNowRequest::default(), &zoe))
        .await
        .unwrap()
        .into_inner();
    job.next().await.unwrap().unwrap();
    drop(job);
    assert!(!rows_containing(&server, ZOE).await.is_empty());

    // Without confirmation nothing happens.
    let refused = calendar
        .delete_my_data(authed(pb::DeleteMyDataRequest { confirm: false }, &zoe))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let before = rows_containing(&server, ZOE).await;
    assert!(before.contains_key("user_data_keys"));

    let mark = sandbox.sandbox.request_log().len();
    let done = calendar
        .delete_my_data(authed(pb::DeleteMyDataRequest { confirm: true }, &zoe))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        done.connections_revoked, 3,
        "Google (linked) and the two seeded: {done:?}"
    );
    assert!(done.revocation_failures.is_empty());
    assert!(done.meetings_deleted == 1 && done.audit_events_deleted > 0, "{done:?}");
    let revoked_at_google = sandbox.sandbox.request_log()[mark..]
        .iter()
        .filter(|r| r.path.ends_with("/revoke"))
        .count();
    assert_eq!(revoked_at_google, 1, "the linked Google grant was revoked at Google");

    // The table scan: Zoe's id only in the erasure's own entry.
    let left = rows_containing(&server, ZOE).await;
    assert_eq!(left, BTreeMap::from([("audit_events".to_owned(), 1)]), "{left:?}");
    let entry = trail(
        &server,
        AuditFilter {
            user: Some(UserId::new(ZOE).unwrap()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(entry.len(), 1);
    assert_eq!(
        (
            entry[0].actor.as_str(),
            entry[0].action.as_str(),
            entry[0].target.as_deref()
        ),
        (ZOE, "data.erase", None)
    );
    // No known plaintext of Zoe's anywhere (nor the ciphertext: its rows are gone).
    for title in seeded.events.iter().filter_map(|e| e.title.as_deref()) {
        let found = rows_containing(&server, title).await;
        assert!(found.is_empty(), "{title:?} still in {found:?}");
    }
    // Miko keeps his data, his meeting without Zoe among its invitees.
    let mikos_now = calendar
        .get_meeting(authed(
            pb::GetMeetingRequest {
                name: mikos.name.clone(),
            },
            &miko,
        ))
        .await
        .unwrap()
        .into_inner()
        .meeting
        .unwrap();
    assert!(mikos_now.invitees.is_empty(), "{:?}", mikos_now.invitees);
    let miko_events = scalar(
        &server,
        &format!("SELECT count(*) AS n FROM user_calendar_events WHERE user_id = '{MIKO}'"),
    )
    .await;
    assert_eq!(miko_events as usize, miko_seeded.events.len());

    // Erasing again finds nothing and succeeds.
    let again = calendar
        .delete_my_data(authed(pb::DeleteMyDataRequest { confirm: true }, &zoe))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.connections_revoked, again.events_deleted), (0, 0));
    // Over REST, `confirm` is required as well.
    let response = http()
        .delete(server.rest("/v1/calendar/me/data"))
        .bearer_auth(&miko)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["violations"][0]["field"], "confirm");
    server.stop().await;
    sandbox.stop().await;
}

/// An audit service: checks each request's signature, answers 503 to the
/// first `fail_first` requests, and keeps the entries it accepted.
struct AuditSink {
    url: String,
    accepted: std::sync::Arc<std::sync::Mutex<Vec<juy_sync::audit_forward::ForwardedEntry>>>,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

const SINK_SECRET: &str = "audit-sink-secret-0123456789abcdef-0123";

impl AuditSink {
    async fn start(fail_first: usize) -> Self {
        use std::sync::atomic::Ordering;
        let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (kept, counted) = (accepted.clone(), requests.clone());
        let handler = move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (kept, counted) = (kept.clone(), counted.clone());
            async move {
                let signature = headers
                    .get(juy_sync::reminders::SIGNATURE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if !juy_sync::reminders::verify(
                    SINK_SECRET.as_bytes(),
                    signature,
                    &body,
                    Utc::now(),
                    Duration::minutes(5),
                ) {
                    return axum::http::StatusCode::UNAUTHORIZED;
                }
                if counted.fetch_add(1, Ordering::SeqCst) < fail_first {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                let batch: juy_sync::audit_forward::ForwardBatch = serde_json::from_slice(&body).unwrap();
                assert_eq!(batch.format, "juy.calendar.audit/v1");
                kept.lock().unwrap().extend(batch.audit_events);
                axum::http::StatusCode::OK
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/audit", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/audit", axum::routing::post(handler));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url,
            accepted,
            requests,
        }
    }
}

#[tokio::test]
async fn the_trail_is_forwarded_signed_to_the_audit_service_after_its_failures() {
    let sink = AuditSink::start(2).await;
    let server = TestServer::start_with(
        [
            ("JUY_AUDIT__FORWARD_ENDPOINT", sink.url.as_str()),
            ("JUY_AUDIT__FORWARD_SECRET", SINK_SECRET),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec(),
    )
    .await;
    let zoe = server.token(ZOE, &[]);
    server.seed(ZOE).await;
    set_time_zone(&server, &zoe, "Europe/Berlin").await;
    let refused = server
        .admin()
        .await
        .list_audit_events(authed(pb::ListAuditEventsRequest::default(), &server.token(MIKO, &[])))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    http()
        .delete(server.rest("/v1/calendar/me/data?confirm=true"))
        .bearer_auth(&zoe)
        .send()
        .await
        .unwrap();
    set_time_zone(&server, &server.token(MIKO, &[]), "Asia/Tokyo").await;

    // Every entry reaches the audit service, signed, despite its first two 503s.
    let stored: BTreeSet<uuid::Uuid> = trail(&server, AuditFilter::default())
        .await
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(stored.len(), 3, "the erasure's entry and Miko's two: {stored:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let got: BTreeSet<uuid::Uuid> = sink.accepted.lock().unwrap().iter().map(|e| e.id).collect();
        // (Entries about Zoe forwarded before her erasure stay with the audit
        // service, which learns of the erasure from its entry.)
        if got.is_superset(&stored) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "forwarded {got:?}, stored {stored:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let requests: &std::sync::atomic::AtomicUsize = &sink.requests;
    assert!(requests.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    let accepted = sink.accepted.lock().unwrap().clone();
    let erasure = accepted.iter().find(|e| e.action == "data.erase").unwrap();
    assert_eq!(erasure.subject_user_id.as_deref(), Some(ZOE));
    assert!(
        accepted
            .iter()
            .any(|e| e.action == "admin.audit.list" && e.result == "PERMISSION_DENIED")
    );
    let mut conn = server.store.conn().await.unwrap();
    assert_eq!(juy_store::audit::forward_backlog(&mut conn).await.unwrap().0, 0);
    drop(conn);
    server.stop().await;
}
