//! The public API over real gRPC and real HTTP against a real PostgreSQL.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] functions

use chrono::{Duration, TimeZone as _, Utc};
use juy_api::pb::v1 as pb;
use juy_integration_tests::{TestServer, authed, http, monday, token, ts};
use serde_json::Value;
use tonic::Code;
use tonic_types::StatusExt as _;

fn week_request() -> pb::ListEventsRequest {
    let start = Utc.from_utc_datetime(&monday().and_hms_opt(0, 0, 0).unwrap());
    pb::ListEventsRequest {
        start_time: Some(ts(start)),
        end_time: Some(ts(start + Duration::days(7))),
        ..Default::default()
    }
}

fn week_range() -> String {
    format!("{}T00:00:00Z/{}T00:00:00Z", monday(), monday() + Duration::days(7))
}

async fn get_json(url: impl reqwest::IntoUrl, bearer: impl std::fmt::Display) -> Value {
    let response = http().get(url).bearer_auth(bearer).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn violation_field(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .bad_request()
        .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
        .unwrap_or_default()
}

async fn grpc_events(server: &TestServer, user_token: &str, mut request: pb::ListEventsRequest) -> Vec<pb::Event> {
    let mut client = server.calendar().await;
    let mut events = Vec::new();
    loop {
        let page = client
            .list_events(authed(request.clone(), user_token))
            .await
            .unwrap()
            .into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return events;
        }
        request.page_token = page.next_page_token;
    }
}

#[tokio::test]
async fn grpc_and_rest_return_the_same_events_in_the_same_order() {
    let server = TestServer::start().await;
    let seeded = server.seed("alice").await;
    let alice = token("alice", &[]);

    let grpc = grpc_events(
        &server,
        &alice,
        pb::ListEventsRequest {
            page_size: 4,
            ..week_request()
        },
    )
    .await;
    let expected: Vec<String> = seeded.events.iter().map(|e| format!("events/{}", e.id)).collect();
    assert_eq!(grpc.iter().map(|e| e.name.clone()).collect::<Vec<_>>(), expected);

    let mut rest = Vec::new();
    let mut page_token = String::new();
    loop {
        let url = server.rest(&format!(
            "/v1/calendar/events?range={}&page_size=4&page_token={page_token}",
            week_range()
        ));
        let page: Value = get_json(url, &alice).await;
        rest.extend(page["events"].as_array().unwrap().clone());
        page_token = page["next_page_token"].as_str().unwrap().to_owned();
        if page_token.is_empty() {
            break;
        }
    }
    assert_eq!(rest.len(), grpc.len());
    for (r, g) in rest.iter().zip(&grpc) {
        assert_eq!(r["name"], g.name.as_str());
        assert_eq!(r["calendar"], g.calendar.as_str());
        assert_eq!(r["title"], g.title.as_str());
        let start = chrono::DateTime::parse_from_rfc3339(r["start_time"].as_str().unwrap()).unwrap();
        assert_eq!(start.timestamp(), g.start_time.unwrap().seconds);
        assert_eq!(r["all_day"], g.all_day);
        assert_eq!(r["attendees"].as_array().unwrap().len(), g.attendees.len());
    }
    let dentist = grpc.iter().find(|e| e.title == "Dentist").unwrap();
    assert_eq!(dentist.location, "Main Street 1", "texts are decrypted for their owner");
    server.stop().await;
}

#[tokio::test]
async fn filters_by_provider_and_calendar() {
    let server = TestServer::start().await;
    let seeded = server.seed("alice").await;
    let alice = token("alice", &[]);
    let outlook = grpc_events(
        &server,
        &alice,
        pb::ListEventsRequest {
            providers: vec![pb::Provider::Microsoft as i32],
            ..week_request()
        },
    )
    .await;
    assert!(!outlook.is_empty());
    assert!(outlook.iter().all(|e| e.provider == pb::Provider::Microsoft as i32));
    let expected = seeded
        .events
        .iter()
        .filter(|e| e.provider == juy_domain::Provider::Microsoft)
        .count();
    assert_eq!(outlook.len(), expected);

    let holidays = seeded.calendars.iter().find(|c| c.name == "Team holidays").unwrap();
    let url = server.rest(&format!(
        "/v1/calendar/events?range={}&calendar=calendars/{}",
        week_range(),
        holidays.id
    ));
    let page: Value = get_json(url, &alice).await;
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["all_day"], true);
    assert_eq!(events[0]["start_date"], (monday() + Duration::days(3)).to_string());
    server.stop().await;
}

#[tokio::test]
async fn grpc_auth_matrix() {
    let server = TestServer::start().await;
    server.seed("alice").await;
    let bob_seed = server.seed("bob").await;
    let mut client = server.calendar().await;

    let no_token = client
        .list_events(tonic::Request::new(week_request()))
        .await
        .unwrap_err();
    assert_eq!(no_token.code(), Code::Unauthenticated);
    let garbage = client
        .list_events(authed(week_request(), "not.a.jwt"))
        .await
        .unwrap_err();
    assert_eq!(garbage.code(), Code::Unauthenticated);
    let forged = juy_api::auth::sign_hs256(
        b"another-secret-another-secret-another",
        juy_integration_tests::ISSUER,
        juy_integration_tests::AUDIENCE,
        &juy_domain::UserId::new("alice").unwrap(),
        &["admin"],
        std::time::Duration::from_secs(60),
    );
    assert_eq!(
        client
            .list_events(authed(week_request(), &forged))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );

    // Alice never sees Bob's events, and naming Bob's calendar is NOT_FOUND.
    let alice = token("alice", &[]);
    let alice_events = grpc_events(&server, &alice, week_request()).await;
    let bob_names: Vec<String> = bob_seed.events.iter().map(|e| format!("events/{}", e.id)).collect();
    assert!(alice_events.iter().all(|e| !bob_names.contains(&e.name)));
    let bobs_calendar = format!("calendars/{}", bob_seed.calendars[0].id);
    let status = client
        .list_events(authed(
            pb::ListEventsRequest {
                calendars: vec![bobs_calendar.clone()],
                ..week_request()
            },
            &alice,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(!status.message().contains("bob"));

    let mut admin = server.admin().await;
    let denied = admin
        .list_connections(authed(pb::AdminListConnectionsRequest::default(), &alice))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let all = admin
        .list_connections(authed(
            pb::AdminListConnectionsRequest::default(),
            &token("root", &["admin"]),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.connections.len(), 4, "two accounts for each of alice and bob");
    let only_bob = admin
        .list_connections(authed(
            pb::AdminListConnectionsRequest {
                user_id: "bob".into(),
                page_size: 1,
                ..Default::default()
            },
            &token("root", &["admin"]),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(only_bob.connections.len(), 1);
    assert!(!only_bob.next_page_token.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn rest_auth_matrix_answers_problem_json() {
    let server = TestServer::start().await;
    let bob = server.seed("bob").await;
    let client = http();
    let url = server.rest(&format!("/v1/calendar/events?range={}", week_range()));

    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "UNAUTHENTICATED");
    assert_eq!(problem["status"], 401);

    assert_eq!(
        client.get(&url).bearer_auth("garbage").send().await.unwrap().status(),
        401
    );
    let alice = token("alice", &[]);
    let forbidden = client
        .get(server.rest("/v1/admin/connections"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
    assert_eq!(forbidden.json::<Value>().await.unwrap()["code"], "PERMISSION_DENIED");
    let admin = client
        .get(server.rest("/v1/admin/connections"))
        .bearer_auth(token("root", &["admin"]))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);

    let bobs = format!("{url}&calendar=calendars/{}", bob.calendars[0].id);
    let not_found = client.get(&bobs).bearer_auth(&alice).send().await.unwrap();
    assert_eq!(not_found.status(), 404);
    assert_eq!(not_found.json::<Value>().await.unwrap()["code"], "NOT_FOUND");
    let alice_sees: Value = get_json(&url, &alice).await;
    assert_eq!(alice_sees["events"].as_array().unwrap().len(), 0);
    server.stop().await;
}

#[tokio::test]
async fn grpc_bad_input_names_the_field() {
    let server = TestServer::start().await;
    server.seed("alice").await;
    let alice = token("alice", &[]);
    let mut client = server.calendar().await;
    let base = week_request();
    let cases = [
        (
            pb::ListEventsRequest {
                start_time: base.end_time,
                end_time: base.start_time,
                ..base.clone()
            },
            Code::InvalidArgument,
            "end_time",
        ),
        (
            pb::ListEventsRequest {
                end_time: None,
                ..base.clone()
            },
            Code::InvalidArgument,
            "end_time",
        ),
        (
            pb::ListEventsRequest {
                page_size: 1001,
                ..base.clone()
            },
            Code::InvalidArgument,
            "page_size",
        ),
        (
            pb::ListEventsRequest {
                page_size: -1,
                ..base.clone()
            },
            Code::InvalidArgument,
            "page_size",
        ),
        (
            pb::ListEventsRequest {
                page_token: "garbage".into(),
                ..base.clone()
            },
            Code::InvalidArgument,
            "page_token",
        ),
        (
            pb::ListEventsRequest {
                calendars: vec!["calendars/x".into()],
                ..base.clone()
            },
            Code::InvalidArgument,
            "calendars[0]",
        ),
        (
            pb::ListEventsRequest {
                providers: vec![0],
                ..base.clone()
            },
            Code::InvalidArgument,
            "providers[0]",
        ),
        (
            pb::ListEventsRequest {
                providers: vec![99],
                ..base.clone()
            },
            Code::InvalidArgument,
            "providers[0]",
        ),
        (
            pb::ListEventsRequest {
                start_time: Some(prost_types::Timestamp { seconds: 0, nanos: -5 }),
                ..base.clone()
            },
            Code::InvalidArgument,
            "start_time",
        ),
    ];
    for (request, code, field) in cases {
        let status = client.list_events(authed(request, &alice)).await.unwrap_err();
        assert_eq!(status.code(), code, "{field}: {status:?}");
        assert_eq!(violation_field(&status), field, "{status:?}");
    }
    let unknown = pb::ListEventsRequest {
        calendars: vec![format!("calendars/{}", uuid_zero())],
        ..base.clone()
    };
    assert_eq!(
        client.list_events(authed(unknown, &alice)).await.unwrap_err().code(),
        Code::NotFound
    );

    // A page token is bound to its query.
    let first = client
        .list_events(authed(
            pb::ListEventsRequest {
                page_size: 2,
                ..base.clone()
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    let other_query = pb::ListEventsRequest {
        page_size: 2,
        page_token: first.next_page_token,
        providers: vec![1],
        ..base
    };
    let status = client.list_events(authed(other_query, &alice)).await.unwrap_err();
    assert_eq!(violation_field(&status), "page_token");
    server.stop().await;
}

fn uuid_zero() -> &'static str {
    "00000000-0000-7000-8000-000000000000"
}

#[tokio::test]
async fn rest_bad_input_names_the_parameter() {
    let server = TestServer::start().await;
    let alice = token("alice", &[]);
    let client = http();
    let range = week_range();
    let inverted = {
        let (a, b) = range.split_once('/').unwrap();
        format!("{b}/{a}")
    };
    for (query, field) in [
        (String::new(), "range"),
        (format!("range={inverted}"), "range"),
        ("range=yesterday/today".to_owned(), "range"),
        (format!("range={range}&page_size=abc"), "page_size"),
        (format!("range={range}&page_size=0&page_size=1"), "page_size"),
        (format!("range={range}&page_size=5000"), "page_size"),
        (format!("range={range}&provider=yahoo"), "provider"),
        (format!("range={range}&calendar=nope"), "calendar"),
        (format!("range={range}&colour=blue"), "colour"),
    ] {
        let response = client
            .get(server.rest(&format!("/v1/calendar/events?{query}")))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "INVALID_ARGUMENT");
        assert_eq!(problem["violations"][0]["field"], field, "{query}: {problem}");
    }
    for (body, field) in [
        ("{not json", "body"),
        ("{\"calendar_modes\": 5}", "calendar_modes"),
        ("{\"surprise\": true}", "surprise"),
        (
            "{\"calendar_modes\": [{\"calendar\": \"calendars/x\", \"mode\": \"write\"}]}",
            "calendar_modes[0].calendar",
        ),
        (
            "{\"calendar_modes\": [{\"calendar\": \"calendars/x\", \"mode\": \"sometimes\"}]}",
            "calendar_modes[0].mode",
        ),
        (
            "{\"notification_channels\": [{\"provider\": \"yahoo\"}]}",
            "notification_channels[0].provider",
        ),
    ] {
        let response = client
            .patch(server.rest("/v1/calendar/settings"))
            .bearer_auth(&alice)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["violations"][0]["field"], field, "{body}: {problem}");
        assert!(
            !problem["detail"].as_str().unwrap().contains("sometimes"),
            "input values are not echoed"
        );
    }
    let missing = client
        .get(server.rest("/v1/nowhere"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn settings_changes_are_all_or_nothing_on_both_surfaces() {
    let server = TestServer::start().await;
    let alice_seed = server.seed("alice").await;
    let bob_seed = server.seed("bob").await;
    let alice = token("alice", &[]);
    let writable = alice_seed.calendars.iter().find(|c| c.can_write).unwrap();
    let read_only = alice_seed.calendars.iter().find(|c| !c.can_write).unwrap();
    let mut client = server.calendar().await;
    let mode = |calendar: &juy_domain::Calendar, mode: pb::CalendarMode| pb::CalendarModeSetting {
        calendar: format!("calendars/{}", calendar.id),
        mode: mode as i32,
    };
    let update = |modes: Vec<pb::CalendarModeSetting>| pb::UpdateCalendarSettingsRequest {
        settings: Some(pb::CalendarSettings {
            calendar_modes: modes,
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["calendar_modes".into()],
        }),
    };
    let before = client
        .get_calendar_settings(authed(pb::GetCalendarSettingsRequest::default(), &alice))
        .await
        .unwrap()
        .into_inner();

    let status = client
        .update_calendar_settings(authed(
            update(vec![
                mode(writable, pb::CalendarMode::Write),
                mode(read_only, pb::CalendarMode::Write),
            ]),
            &alice,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let status = client
        .update_calendar_settings(authed(
            update(vec![
                mode(writable, pb::CalendarMode::Write),
                mode(&bob_seed.calendars[0], pb::CalendarMode::Write),
            ]),
            &alice,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let after = client
        .get_calendar_settings(authed(pb::GetCalendarSettingsRequest::default(), &alice))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before, after, "nothing changed");

    let bad_mask = pb::UpdateCalendarSettingsRequest {
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["colour".into()],
        }),
        ..update(vec![])
    };
    let status = client
        .update_calendar_settings(authed(bad_mask, &alice))
        .await
        .unwrap_err();
    assert_eq!(violation_field(&status), "update_mask.paths[0]");

    let changed = client
        .update_calendar_settings(authed(update(vec![mode(writable, pb::CalendarMode::Write)]), &alice))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    let name = format!("calendars/{}", writable.id);
    assert!(
        changed
            .calendar_modes
            .iter()
            .any(|m| m.calendar == name && m.mode == pb::CalendarMode::Write as i32)
    );

    // REST: notification channels, then the conflict answers 409 problem+json.
    let response = http()
        .patch(server.rest("/v1/calendar/settings"))
        .bearer_auth(&alice)
        .json(&serde_json::json!({"notification_channels": [{"provider": "google", "push": false, "email": true, "sms": false}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let settings: Value = get_json(server.rest("/v1/calendar/settings"), &alice).await;
    let google = settings["notification_channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["provider"] == "google")
        .unwrap();
    assert_eq!(
        (google["push"].clone(), google["email"].clone()),
        (Value::Bool(false), Value::Bool(true))
    );
    let conflict = http()
        .patch(server.rest("/v1/calendar/settings"))
        .bearer_auth(&alice)
        .json(&serde_json::json!({"calendar_modes": [{"calendar": format!("calendars/{}", read_only.id), "mode": "write"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(conflict.status(), 409);
    assert_eq!(conflict.json::<Value>().await.unwrap()["code"], "FAILED_PRECONDITION");
    server.stop().await;
}

#[tokio::test]
async fn connections_and_calendars_are_listed_with_paging() {
    let server = TestServer::start().await;
    let seeded = server.seed("alice").await;
    let alice = token("alice", &[]);
    let mut client = server.calendar().await;
    let connections = client
        .list_connections(authed(pb::ListConnectionsRequest::default(), &alice))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(connections.connections.len(), 2);
    assert!(
        connections
            .connections
            .iter()
            .all(|c| c.state == pb::ConnectionState::Active as i32)
    );

    let mut names = Vec::new();
    let mut request = pb::ListCalendarsRequest {
        page_size: 1,
        ..Default::default()
    };
    loop {
        let page = client
            .list_calendars(authed(request.clone(), &alice))
            .await
            .unwrap()
            .into_inner();
        names.extend(page.calendars.into_iter().map(|c| c.name));
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    let mut expected: Vec<String> = seeded.calendars.iter().map(|c| format!("calendars/{}", c.id)).collect();
    names.sort();
    expected.sort();
    assert_eq!(names, expected);

    let one = client
        .list_calendars(authed(
            pb::ListCalendarsRequest {
                connection: connections.connections[0].name.clone(),
                ..Default::default()
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!one.calendars.is_empty());
    assert!(
        one.calendars
            .iter()
            .all(|c| c.connection == connections.connections[0].name)
    );
    let rest: Value = get_json(server.rest("/v1/calendar/connections"), &alice).await;
    assert_eq!(rest["connections"].as_array().unwrap().len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn health_readiness_reflection_and_openapi_need_no_token() {
    let server = TestServer::start().await;
    let client = http();
    assert_eq!(client.get(server.rest("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(client.get(server.rest("/readyz")).send().await.unwrap().status(), 200);
    let doc: Value = client
        .get(server.rest("/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/v1/calendar/events",
        "/v1/calendar/connections",
        "/v1/calendar/settings",
        "/v1/admin/connections",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    assert!(doc["components"]["securitySchemes"].get("bearer").is_some());
    let response = client
        .get(server.rest("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = TestServer::start().await;
    let alice = token("alice", &[]);
    let body = r#"{"notification_channels": [{"provider": "caldav", "push": true, "email": true, "sms": false}]}"#;
    let (first, rest) = body.split_at(20);
    let mut stream = tokio::net::TcpStream::connect(server.rest_addr).await.unwrap();
    let head = format!(
        "PATCH /v1/calendar/settings HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {alice}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{first}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // Half the body is sent: the request is in flight while shutdown starts.
    let rest_addr = server.rest_addr;
    let stopping = tokio::spawn(server.stop());
    // The listener closes for new connections while the old one is still served.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while tokio::net::TcpStream::connect(rest_addr).await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "the listener never closed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!stopping.is_finished(), "shutdown waits for the in-flight request");
    stream.write_all(rest.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    stopping.await.unwrap();
}
