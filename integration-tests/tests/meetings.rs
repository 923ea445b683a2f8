//! AC-04 and AC-05 end to end: three users whose calendars live at the
//! Google sandbox, the Microsoft sandbox and a real CalDAV server
//! (Radicale), synced by the engine; team free/busy and slot finding over
//! gRPC and REST; meetings refused over conflicts; meetings written back to
//! Write-mode calendars exactly once even when the provider's first answer
//! is lost to a timeout; Read-only calendars never written; and no title of
//! another user in any answer.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound as _, Utc};
use juy_api::pb::v1 as pb;
use juy_domain::{Clock as _, FixedClock, Provider, UserId};
use juy_integration_tests::caldav::{CalDavFront, Radicale};
use juy_integration_tests::providers::sandbox_env;
use juy_integration_tests::sync::{self, Linked, link_writable, sync_due};
use juy_integration_tests::{TestServer, authed, token, ts};
use juy_sandbox::{Fault, Sandbox};
use juy_sync::SyncConfig;
use juy_sync::outbox::{DispatchReport, dispatch_once};
use serde_json::{Value, json};
use tonic_types::StatusExt as _;

const ALICE: &str = "alice";
const BOB: &str = "bob";
const CAROL: &str = "carol";
const GOOGLE_SUB: &str = "g-alice";
const GOOGLE_CAL: &str = "alice-primary";
const GOOGLE_READ_CAL: &str = "alice-team";
const GRAPH_ID: &str = "m-bob";
const GRAPH_CAL: &str = "bob-calendar";
const CALDAV_USER: &str = "carol";
const CALDAV_PASSWORD: &str = "carol-app-password";

/// Texts that must never reach another user.
const SECRETS: &[&str] = &[
    "Alice secret standup",
    "Bob private review",
    "Carol dentist",
    "Alice declined",
];

struct World {
    server: TestServer,
    sandbox: Sandbox,
    running: juy_sandbox::RunningSandbox,
    _radicale: Radicale,
    front: CalDavFront,
    clock: Arc<FixedClock>,
    engine: Arc<juy_sync::Engine>,
    alice: Linked,
    bob: Linked,
    carol: Linked,
    collection: String,
    day: DateTime<Utc>,
}

fn at(day: DateTime<Utc>, hour: i64, minute: i64) -> DateTime<Utc> {
    day + Duration::hours(hour) + Duration::minutes(minute)
}

fn google(id: &str, title: &str, start: DateTime<Utc>, end: DateTime<Utc>, extra: Value) -> Value {
    let mut event = json!({
        "id": id,
        "summary": title,
        "start": {"dateTime": start.to_rfc3339(), "timeZone": "UTC"},
        "end": {"dateTime": end.to_rfc3339(), "timeZone": "UTC"},
    });
    if let (Some(event), Some(extra)) = (event.as_object_mut(), extra.as_object()) {
        event.extend(extra.clone());
    }
    event
}

fn graph(id: &str, title: &str, start: DateTime<Utc>, end: DateTime<Utc>, show_as: &str) -> Value {
    let fmt = |at: DateTime<Utc>| at.format("%Y-%m-%dT%H:%M:%S.0000000").to_string();
    json!({
        "id": id,
        "subject": title,
        "showAs": show_as,
        "start": {"dateTime": fmt(start), "timeZone": "UTC"},
        "end": {"dateTime": fmt(end), "timeZone": "UTC"},
    })
}

fn ical(uid: &str, title: &str, start: DateTime<Utc>, end: DateTime<Utc>, extra: &str) -> String {
    let fmt = |at: DateTime<Utc>| at.format("%Y%m%dT%H%M%SZ").to_string();
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Juy//Test//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{}\r\nDTEND:{}\r\nSUMMARY:{title}\r\n{extra}END:VEVENT\r\nEND:VCALENDAR\r\n",
        fmt(start),
        fmt(end)
    )
}

async fn caldav(method: &str, url: &str, body: Option<String>) -> (u16, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut request = reqwest::Client::new()
        .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url)
        .basic_auth(CALDAV_USER, Some(CALDAV_PASSWORD));
    if let Some(body) = body {
        request = request.header("content-type", "text/calendar").body(body);
    }
    let answer = request.send().await.unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

/// How many events in the CalDAV collection have the title `title`, read
/// straight from Radicale with a `calendar-query`.
async fn caldav_events_titled(collection: &str, title: &str) -> usize {
    let body = r#"<?xml version="1.0" encoding="utf-8"?>
<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">
  <d:prop><c:calendar-data/></d:prop>
  <c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"/></c:comp-filter></c:filter>
</c:calendar-query>"#;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let answer = reqwest::Client::new()
        .request(reqwest::Method::from_bytes(b"REPORT").unwrap(), collection)
        .basic_auth(CALDAV_USER, Some(CALDAV_PASSWORD))
        .header("depth", "1")
        .header("content-type", "application/xml")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 207);
    let text = answer.text().await.unwrap();
    text.matches(&format!("SUMMARY:{title}")).count()
}

async fn world() -> World {
    let sandbox = Sandbox::new();
    sandbox.add_account(juy_sandbox::Provider::Google, GOOGLE_SUB, "alice@gmail.test");
    sandbox.add_google_calendar(GOOGLE_SUB, GOOGLE_CAL, "Alice", "owner", true);
    sandbox.add_google_calendar(GOOGLE_SUB, GOOGLE_READ_CAL, "Team", "owner", false);
    sandbox.add_account(juy_sandbox::Provider::Microsoft, GRAPH_ID, "bob@outlook.test");
    sandbox.add_graph_calendar(GRAPH_ID, GRAPH_CAL, "Calendar", true, true);
    let running = juy_sandbox::start(sandbox.clone()).await.unwrap();

    let radicale = Radicale::start(&[(CALDAV_USER, CALDAV_PASSWORD)]);
    let front = CalDavFront::start(&radicale.base_url).await;
    let home = format!("{}/{CALDAV_USER}/", front.base_url);
    let collection = format!("{home}work/");
    assert_eq!(caldav("MKCALENDAR", &collection, None).await.0, 201);

    // A day three days ahead, well inside the sync window.
    let day = (Utc::now() + Duration::days(3))
        .duration_trunc(Duration::days(1))
        .unwrap();

    // Alice (Google): busy 09:00-10:00; a declined invitation 13:00-14:00 (free).
    sandbox.put_google_event(
        GOOGLE_CAL,
        google(
            "astandup",
            "Alice secret standup",
            at(day, 9, 0),
            at(day, 10, 0),
            json!({}),
        ),
    );
    sandbox.put_google_event(
        GOOGLE_CAL,
        google(
            "adeclined",
            "Alice declined",
            at(day, 13, 0),
            at(day, 14, 0),
            json!({"attendees": [{"email": "alice@gmail.test", "self": true, "responseStatus": "declined"}]}),
        ),
    );
    // Bob (Graph): busy 09:30-11:00, tentative 15:00-16:00, free 16:00-17:00.
    sandbox.put_graph_event(
        GRAPH_CAL,
        graph("breview", "Bob private review", at(day, 9, 30), at(day, 11, 0), "busy"),
    );
    sandbox.put_graph_event(
        GRAPH_CAL,
        graph("bmaybe", "Bob maybe", at(day, 15, 0), at(day, 16, 0), "tentative"),
    );
    sandbox.put_graph_event(
        GRAPH_CAL,
        graph("bfree", "Bob free", at(day, 16, 0), at(day, 17, 0), "free"),
    );
    // Carol (CalDAV): busy 11:00-12:00; transparent 12:00-12:30 (free).
    let put = caldav(
        "PUT",
        &format!("{collection}dentist.ics"),
        Some(ical("dentist", "Carol dentist", at(day, 11, 0), at(day, 12, 0), "")),
    )
    .await;
    assert!(put.0 < 300, "{put:?}");
    let put = caldav(
        "PUT",
        &format!("{collection}focus.ics"),
        Some(ical(
            "focus",
            "Carol reading",
            at(day, 12, 0),
            at(day, 12, 30),
            "TRANSP:TRANSPARENT\r\n",
        )),
    )
    .await;
    assert!(put.0 < 300, "{put:?}");

    // The next two days hold one event for each row of the busy policy, per provider.
    let next = day + Duration::days(1);
    let date = |d: DateTime<Utc>| d.format("%Y-%m-%d").to_string();
    for (id, title, hour, extra) in [
        ("gooo", "Alice away", 9, json!({"eventType": "outOfOffice"})),
        (
            "gwhere",
            "Alice at home",
            10,
            json!({"eventType": "workingLocation", "transparency": "transparent"}),
        ),
        ("gfree", "Alice free", 11, json!({"transparency": "transparent"})),
        (
            "gask",
            "Alice unanswered",
            12,
            json!({"attendees": [{"email": "alice@gmail.test", "self": true, "responseStatus": "needsAction"}]}),
        ),
    ] {
        sandbox.put_google_event(
            GOOGLE_CAL,
            google(id, title, at(next, hour, 0), at(next, hour + 1, 0), extra),
        );
    }
    sandbox.put_google_event(
        GOOGLE_CAL,
        json!({"id": "gallday", "summary": "Alice offsite",
            "start": {"date": date(next + Duration::days(1))}, "end": {"date": date(next + Duration::days(2))}}),
    );
    for (id, hour, show_as, response) in [
        ("mooo", 9, "oof", "organizer"),
        ("mwhere", 10, "workingElsewhere", "organizer"),
        ("mdeclined", 11, "busy", "declined"),
        ("mask", 12, "busy", "notResponded"),
    ] {
        let mut event = graph(id, "Bob policy", at(next, hour, 0), at(next, hour + 1, 0), show_as);
        event["responseStatus"] = json!({"response": response});
        sandbox.put_graph_event(GRAPH_CAL, event);
    }
    for (uid, hour, extra) in [
        ("ctentative", 9, "STATUS:TENTATIVE\r\n"),
        ("ccancelled", 10, "STATUS:CANCELLED\r\n"),
    ] {
        let put = caldav(
            "PUT",
            &format!("{collection}{uid}.ics"),
            Some(ical(
                uid,
                "Carol policy",
                at(next, hour, 0),
                at(next, hour + 1, 0),
                extra,
            )),
        )
        .await;
        assert!(put.0 < 300, "{put:?}");
    }
    let all_day = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Juy//Test//EN\r\nBEGIN:VEVENT\r\nUID:callday\r\nDTSTAMP:20260101T000000Z\r\nDTSTART;VALUE=DATE:{}\r\nDTEND;VALUE=DATE:{}\r\nSUMMARY:Carol offsite\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        (next + Duration::days(1)).format("%Y%m%d"),
        (next + Duration::days(2)).format("%Y%m%d")
    );
    assert!(
        caldav("PUT", &format!("{collection}callday.ics"), Some(all_day))
            .await
            .0
            < 300
    );

    let mut env = sandbox_env(&running);
    env.extend(
        [
            ("JUY_CALDAV__ALLOW_LIST", format!("[\"127.0.0.1:{}\"]", front.port())),
            // Provider calls time out after a second, so a late answer is a lost one.
            ("JUY_CALDAV__REQUEST_TIMEOUT_SECS", "1".to_owned()),
            // The test drives deliveries itself.
            ("JUY_SYNC__OUTBOX_DISPATCHERS", "0".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let server = TestServer::start_with(env).await;
    let alice = link_writable(
        &server,
        ALICE,
        Provider::Google,
        GOOGLE_SUB,
        &sandbox.mint_access_token(GOOGLE_SUB),
        None,
        &[(GOOGLE_CAL, "Alice", true), (GOOGLE_READ_CAL, "Team", false)],
    )
    .await;
    let bob = link_writable(
        &server,
        BOB,
        Provider::Microsoft,
        GRAPH_ID,
        &sandbox.mint_access_token(GRAPH_ID),
        None,
        &[(GRAPH_CAL, "Calendar", true)],
    )
    .await;
    let carol = link_writable(
        &server,
        CAROL,
        Provider::Caldav,
        CALDAV_USER,
        CALDAV_PASSWORD,
        Some(&home),
        &[(&collection, "Work", true)],
    )
    .await;
    let clock = sync::clock_now();
    let engine = sync::engine(&server, clock.clone(), SyncConfig::default());
    let outcomes = sync_due(&engine, "w/0").await;
    assert_eq!(outcomes.len(), 4, "{outcomes:?}");
    for outcome in &outcomes {
        assert!(
            matches!(outcome, juy_sync::RunOutcome::Synced { .. }),
            "every calendar syncs: {outcome:?}"
        );
    }
    World {
        server,
        sandbox,
        running,
        _radicale: radicale,
        front,
        clock,
        engine,
        alice,
        bob,
        carol,
        collection,
        day,
    }
}

/// Switches the caller's calendar to `mode` through the API.
async fn set_mode(w: &World, user: &str, calendar: juy_domain::CalendarId, mode: pb::CalendarMode) {
    w.server
        .calendar()
        .await
        .update_calendar_settings(authed(
            pb::UpdateCalendarSettingsRequest {
                settings: Some(pb::CalendarSettings {
                    calendar_modes: vec![pb::CalendarModeSetting {
                        calendar: format!("calendars/{calendar}"),
                        mode: mode.into(),
                    }],
                    ..Default::default()
                }),
                update_mask: None,
            },
            &token(user, &[]),
        ))
        .await
        .unwrap();
}

fn interval(b: &pb::BusyInterval) -> (DateTime<Utc>, DateTime<Utc>, pb::BusyKind) {
    let time = |t: &Option<prost_types::Timestamp>| {
        let t = t.as_ref().unwrap();
        DateTime::from_timestamp(t.seconds, 0).unwrap()
    };
    (time(&b.start_time), time(&b.end_time), b.kind())
}

async fn free_busy(w: &World, caller: &str, users: &[&str]) -> pb::QueryFreeBusyResponse {
    w.server
        .availability()
        .await
        .query_free_busy(authed(
            pb::QueryFreeBusyRequest {
                users: users.iter().map(|u| format!("users/{u}")).collect(),
                start_time: Some(ts(w.day)),
                end_time: Some(ts(w.day + Duration::days(1))),
            },
            &token(caller, &[]),
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn slots(w: &World, caller: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> pb::FindSlotsResponse {
    let invitee = |user: &str| pb::SlotInvitee {
        user: format!("users/{user}"),
        ignore_working_hours: true,
        ..Default::default()
    };
    w.server
        .availability()
        .await
        .find_slots(authed(
            pb::FindSlotsRequest {
                invitees: vec![invitee(ALICE), invitee(BOB), invitee(CAROL)],
                duration: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
                start_time: Some(ts(from)),
                end_time: Some(ts(to)),
                granularity: Some(prost_types::Duration {
                    seconds: 1800,
                    nanos: 0,
                }),
                time_zone: "UTC".into(),
                max_results: 100,
                ..Default::default()
            },
            &token(caller, &[]),
        ))
        .await
        .unwrap()
        .into_inner()
}

fn slot_starts(found: &pb::FindSlotsResponse) -> Vec<DateTime<Utc>> {
    found
        .slots
        .iter()
        .map(|s| DateTime::from_timestamp(s.start_time.as_ref().unwrap().seconds, 0).unwrap())
        .collect()
}

fn meeting(title: &str, start: DateTime<Utc>, end: DateTime<Utc>, invitees: &[&str]) -> pb::Meeting {
    pb::Meeting {
        title: title.into(),
        start_time: Some(ts(start)),
        end_time: Some(ts(end)),
        time_zone: "Europe/Berlin".into(),
        invitees: invitees.iter().map(|u| format!("users/{u}")).collect(),
        ..Default::default()
    }
}

/// A create request for a meeting written to the organiser's external calendar.
fn external(title: &str, start: DateTime<Utc>, end: DateTime<Utc>, invitees: &[&str]) -> pb::CreateMeetingRequest {
    pb::CreateMeetingRequest {
        meeting: Some(pb::Meeting {
            add_to_external_calendar: true,
            ..meeting(title, start, end, invitees)
        }),
        ..Default::default()
    }
}

/// The fields a problem document's violations name.
fn violated_fields(problem: &Value) -> BTreeSet<&str> {
    problem["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["field"].as_str().unwrap())
        .collect()
}

async fn create(w: &World, caller: &str, request: pb::CreateMeetingRequest) -> Result<pb::Meeting, tonic::Status> {
    w.server
        .calendar()
        .await
        .create_meeting(authed(request, &token(caller, &[])))
        .await
        .map(|r| r.into_inner().meeting.unwrap())
}

async fn get(w: &World, caller: &str, name: &str) -> pb::Meeting {
    w.server
        .calendar()
        .await
        .get_meeting(authed(pb::GetMeetingRequest { name: name.into() }, &token(caller, &[])))
        .await
        .unwrap()
        .into_inner()
        .meeting
        .unwrap()
}

/// One dispatcher pass at the test clock, first brought up to the real now
/// (the API stamps deliveries with the real time).
async fn dispatch(w: &World) -> DispatchReport {
    let behind = Utc::now() - w.clock.now();
    if behind > Duration::zero() {
        w.clock.advance(behind);
    }
    dispatch_once(&w.engine, "outbox/test", 10).await.unwrap()
}

/// Runs deliveries until none is left, moving the clock past each retry's
/// backoff first; returns every pass's report.
async fn deliver_all(w: &World) -> Vec<DispatchReport> {
    let mut reports = Vec::new();
    for _ in 0..10 {
        w.clock.advance(Duration::minutes(31));
        let report = dispatch(w).await;
        if report == DispatchReport::default() {
            return reports;
        }
        reports.push(report);
    }
    panic!("deliveries never settled: {reports:?}");
}

async fn list_events(w: &World, caller: &str) -> Vec<pb::Event> {
    w.server
        .calendar()
        .await
        .list_events(authed(
            pb::ListEventsRequest {
                start_time: Some(ts(w.day)),
                end_time: Some(ts(w.day + Duration::days(1))),
                page_size: 1000,
                ..Default::default()
            },
            &token(caller, &[]),
        ))
        .await
        .unwrap()
        .into_inner()
        .events
}

#[tokio::test]
async fn team_free_busy_and_slots_across_three_providers_hold_only_busy_time_and_no_titles() {
    let w = world().await;
    let day = w.day;

    let answer = free_busy(&w, ALICE, &[ALICE, BOB, CAROL]).await;
    assert_eq!(answer.users.len(), 3);
    for user in &answer.users {
        assert_eq!(user.state(), pb::AvailabilityState::Known, "{user:?}");
    }
    let busy = |i: usize| answer.users[i].busy.iter().map(interval).collect::<Vec<_>>();
    // Alice: the standup only (her declined invitation is free).
    assert_eq!(busy(0), vec![(at(day, 9, 0), at(day, 10, 0), pb::BusyKind::Busy)]);
    // Bob: busy, then tentative; "show as free" is free.
    assert_eq!(
        busy(1),
        vec![
            (at(day, 9, 30), at(day, 11, 0), pb::BusyKind::Busy),
            (at(day, 15, 0), at(day, 16, 0), pb::BusyKind::Tentative),
        ]
    );
    // Carol: the dentist; the transparent event is free.
    assert_eq!(busy(2), vec![(at(day, 11, 0), at(day, 12, 0), pb::BusyKind::Busy)]);
    // Alice's own interval is explained by her event; other users' never are.
    assert_eq!(answer.users[0].busy[0].events.len(), 1);
    assert!(
        answer.users[1]
            .busy
            .iter()
            .chain(&answer.users[2].busy)
            .all(|b| b.events.is_empty())
    );
    let text = format!("{answer:?}");
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    // Bob asking sees Alice's time as intervals only.
    let bobs_view = free_busy(&w, BOB, &[ALICE]).await;
    assert!(
        bobs_view.users[0]
            .busy
            .iter()
            .all(|b| b.events.is_empty() && b.meetings.is_empty())
    );

    // Slots: only truly free hours (tentative blocks by default).
    let found = slots(&w, ALICE, at(day, 8, 0), at(day, 17, 0)).await;
    let expected: Vec<DateTime<Utc>> = [(8, 0), (12, 0), (12, 30), (13, 0), (13, 30), (14, 0), (16, 0)]
        .iter()
        .map(|&(h, m)| at(day, h, m))
        .collect();
    assert_eq!(slot_starts(&found), expected);
    // Every slot is free for everyone by the free/busy answer (an independent check).
    let all_busy: Vec<_> = (0..3).flat_map(busy).collect();
    for start in slot_starts(&found) {
        let end = start + Duration::hours(1);
        assert!(
            all_busy.iter().all(|(s, e, _)| *e <= start || *s >= end),
            "{start} overlaps busy time"
        );
    }
    // Nothing fits 09:00-12:00: the conflicts say who is busy when, intervals only.
    let none = slots(&w, ALICE, at(day, 9, 0), at(day, 12, 0)).await;
    assert!(none.slots.is_empty());
    let conflicting: BTreeSet<&str> = none.conflicts.iter().map(|c| c.user.as_str()).collect();
    assert_eq!(
        conflicting,
        ["users/alice", "users/bob", "users/carol"].into_iter().collect()
    );
    assert!(!format!("{none:?}").contains("events/"), "conflicts name no events");

    // The same over REST, with a problem for bad input.
    let http = juy_integration_tests::http();
    let rest: Value = http
        .post(w.server.rest("/v1/calendar/freebusy"))
        .bearer_auth(token(CAROL, &[]))
        .json(&json!({"users": ["users/alice", "users/bob", "users/me"],
            "start_time": day.to_rfc3339(), "end_time": (day + Duration::days(1)).to_rfc3339()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["users"][1]["busy"][1]["kind"], "tentative", "{rest}");
    assert!(rest["users"][0]["busy"][0].get("events").is_none(), "{rest}");
    assert!(
        rest["users"][2]["busy"][0]["events"][0]
            .as_str()
            .unwrap()
            .starts_with("events/")
    );
    let text = rest.to_string();
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let rest_slots: Value = http
        .post(w.server.rest("/v1/calendar/slots"))
        .bearer_auth(token(ALICE, &[]))
        .json(&json!({
            "invitees": [{"user": "users/alice", "ignore_working_hours": true},
                         {"user": "users/bob", "ignore_working_hours": true},
                         {"user": "users/carol", "ignore_working_hours": true}],
            "duration_minutes": 60, "granularity_minutes": 30, "time_zone": "UTC", "max_results": 100,
            "start_time": at(day, 8, 0).to_rfc3339(), "end_time": at(day, 17, 0).to_rfc3339()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        rest_slots["slots"].as_array().unwrap().len(),
        expected.len(),
        "{rest_slots}"
    );
    let bad = http
        .post(w.server.rest("/v1/calendar/slots"))
        .bearer_auth(token(ALICE, &[]))
        .json(&json!({"invitees": [{"user": "users/bob"}], "duration_minutes": 2,
            "start_time": day.to_rfc3339(), "end_time": (day + Duration::days(90)).to_rfc3339()}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    assert_eq!(bad.headers()["content-type"], "application/problem+json");
    let problem: Value = bad.json().await.unwrap();
    let fields = violated_fields(&problem);
    assert_eq!(
        fields,
        ["duration_minutes", "end_time"].into_iter().collect(),
        "{problem}"
    );
    w.server.stop().await;
}

#[tokio::test]
async fn a_meeting_over_busy_time_is_refused_with_the_conflicts_unless_allowed() {
    let w = world().await;
    let day = w.day;
    let refused = create(
        &w,
        ALICE,
        pb::CreateMeetingRequest {
            meeting: Some(meeting("Planning", at(day, 9, 30), at(day, 10, 30), &[BOB, CAROL])),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    let details = refused.get_error_details();
    assert_eq!(details.error_info().unwrap().reason, "MEETING_CONFLICTS");
    let violations = &details.precondition_failure().unwrap().violations;
    let subjects: BTreeSet<&str> = violations.iter().map(|v| v.subject.as_str()).collect();
    // Alice (09:00-10:00) and Bob (09:30-11:00) are busy; Carol is free then.
    assert_eq!(
        subjects,
        ["users/alice", "users/bob"].into_iter().collect(),
        "{violations:?}"
    );
    let message = format!("{refused:?}");
    for secret in SECRETS {
        assert!(!message.contains(secret), "{secret} leaked: {message}");
    }

    // REST: 409 with the conflicts as intervals.
    let http = juy_integration_tests::http();
    let answer = http
        .post(w.server.rest("/v1/calendar/meetings"))
        .bearer_auth(token(ALICE, &[]))
        .json(&json!({"title": "Planning", "start_time": at(day, 9, 30).to_rfc3339(),
            "end_time": at(day, 10, 30).to_rfc3339(), "invitees": ["users/bob", "users/carol"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 409);
    let problem: Value = answer.json().await.unwrap();
    assert_eq!(problem["reason"], "MEETING_CONFLICTS");
    assert_eq!(problem["conflicts"][1]["user"], "users/bob", "{problem}");
    assert_eq!(
        problem["conflicts"][1]["start_time"],
        at(day, 9, 30).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );

    // Allowed on purpose: stored, and busy for every invitee from then on.
    let forced = create(
        &w,
        ALICE,
        pb::CreateMeetingRequest {
            meeting: Some(meeting("Planning", at(day, 9, 30), at(day, 10, 30), &[BOB, CAROL])),
            allow_conflicts: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(forced.delivery.unwrap().state(), pb::DeliveryState::NotRequested);
    let answer = free_busy(&w, CAROL, &[CAROL]).await;
    let carol: Vec<_> = answer.users[0].busy.iter().map(interval).collect();
    assert_eq!(carol[0], (at(day, 9, 30), at(day, 10, 30), pb::BusyKind::Busy));
    assert_eq!(answer.users[0].busy[0].meetings, vec![forced.name.clone()]);
    // Another meeting for Carol then is refused because of the first.
    let second = create(
        &w,
        BOB,
        pb::CreateMeetingRequest {
            meeting: Some(meeting("Sync", at(day, 10, 0), at(day, 10, 15), &[CAROL])),
            allow_conflicts: false,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(second.code(), tonic::Code::FailedPrecondition);
    w.server.stop().await;
}

#[tokio::test]
async fn write_mode_meetings_reach_each_provider_exactly_once_even_when_the_first_answer_is_lost() {
    let w = world().await;
    let day = w.day;
    let alice_cal = w.alice.calendars[GOOGLE_CAL];
    let bob_cal = w.bob.calendars[GRAPH_CAL];
    let carol_cal = w.carol.calendars[&w.collection];
    set_mode(&w, ALICE, alice_cal, pb::CalendarMode::Write).await;
    set_mode(&w, BOB, bob_cal, pb::CalendarMode::Write).await;
    set_mode(&w, CAROL, carol_cal, pb::CalendarMode::Write).await;

    // Google: the first insert is made but its answer comes after our timeout.
    let google_before = w.sandbox.google_event_count(GOOGLE_CAL);
    let request = pb::CreateMeetingRequest {
        meeting: Some(pb::Meeting {
            add_to_external_calendar: true,
            ..meeting("Quarterly review", at(day, 12, 0), at(day, 13, 0), &[BOB, CAROL])
        }),
        request_id: "req-google-1".into(),
        ..Default::default()
    };
    let created = create(&w, ALICE, request.clone()).await.unwrap();
    assert_eq!(created.calendar, format!("calendars/{alice_cal}"));
    assert_eq!(created.delivery.as_ref().unwrap().state(), pb::DeliveryState::Pending);
    // The client retries its request: the same meeting, nothing new.
    let again = create(&w, ALICE, request).await.unwrap();
    assert_eq!(again.name, created.name);
    // In the organiser's merged view at once.
    let listed = list_events(&w, ALICE).await;
    assert_eq!(listed.iter().filter(|e| e.meeting == created.name).count(), 1);

    w.sandbox
        .push_fault(juy_sandbox::Provider::Google, Fault::LateAnswer(2_500));
    let first = dispatch(&w).await;
    assert_eq!((first.delivered, first.retried), (0, 1), "the lost answer is retried");
    let pending = get(&w, ALICE, &created.name).await;
    assert_eq!(pending.delivery.as_ref().unwrap().state(), pb::DeliveryState::Pending);
    assert!(!pending.delivery.as_ref().unwrap().last_error.is_empty());
    assert_eq!(
        w.sandbox.google_event_count(GOOGLE_CAL),
        google_before + 1,
        "the lost insert was made"
    );
    deliver_all(&w).await;
    let delivered = get(&w, ALICE, &created.name).await;
    let delivery = delivered.delivery.unwrap();
    assert_eq!(delivery.state(), pb::DeliveryState::Delivered, "{delivery:?}");
    assert_eq!(
        w.sandbox.google_event_count(GOOGLE_CAL),
        google_before + 1,
        "exactly once"
    );
    // The audit trail has both creates (the client's retry too) and each write-back attempt.
    let trail = {
        let mut conn = w.server.store.conn().await.unwrap();
        let filter = juy_store::audit::AuditFilter {
            user: Some(UserId::new(ALICE).unwrap()),
            ..Default::default()
        };
        juy_store::audit::list(&mut conn, &filter, 1000).await.unwrap()
    };
    let about_it: Vec<(&str, &str, &str)> = trail
        .iter()
        .filter(|e| e.target.as_deref() == Some(created.name.as_str()))
        .map(|e| (e.actor.as_str(), e.action.as_str(), e.result.as_str()))
        .rev()
        .collect();
    assert_eq!(
        about_it,
        [
            (ALICE, "meeting.create", "OK"),
            (ALICE, "meeting.create", "OK"),
            ("system/outbox", "meeting.write_back", "UNAVAILABLE"),
            (ALICE, "meeting.get", "OK"),
            ("system/outbox", "meeting.write_back", "OK"),
            (ALICE, "meeting.get", "OK"),
        ],
        "{trail:#?}"
    );
    let at_google = w.sandbox.google_event(GOOGLE_CAL, &delivery.external_id).unwrap();
    assert_eq!(at_google["summary"], "Quarterly review");

    // Synced back, the copy is not listed twice: the meeting stands for it.
    sync::make_due(&w.server, &w.alice.user, alice_cal, w.clock.now()).await;
    sync_due(&w.engine, "w/0").await;
    let stored = sync::stored_events(&w.server, &w.alice.user, alice_cal).await;
    assert!(
        stored.contains_key(&delivery.external_id),
        "the copy is synced: {stored:?}"
    );
    let listed = list_events(&w, ALICE).await;
    let noon: Vec<_> = listed
        .iter()
        .filter(|e| e.start_time.as_ref().unwrap().seconds == at(day, 12, 0).timestamp())
        .collect();
    assert_eq!(noon.len(), 1, "{noon:?}");
    assert_eq!(noon[0].meeting, created.name);

    // Graph: the same, deduplicated by the transactionId.
    let graph_before = w.sandbox.graph_event_count(GRAPH_CAL);
    let bobs = create(&w, BOB, external("Bob's sync", at(day, 14, 0), at(day, 14, 30), &[]))
        .await
        .unwrap();
    w.sandbox
        .push_fault(juy_sandbox::Provider::Microsoft, Fault::LateAnswer(2_500));
    let report = dispatch(&w).await;
    assert_eq!(report.retried, 1, "{report:?}: {:?}", get(&w, BOB, &bobs.name).await);
    deliver_all(&w).await;
    let bobs = get(&w, BOB, &bobs.name).await;
    assert_eq!(bobs.delivery.as_ref().unwrap().state(), pb::DeliveryState::Delivered);
    assert_eq!(
        w.sandbox.graph_event_count(GRAPH_CAL),
        graph_before + 1,
        "exactly once at Graph"
    );
    let at_graph = w.sandbox.graph_event(&bobs.delivery.unwrap().external_id).unwrap();
    assert_eq!(at_graph["subject"], "Bob's sync");

    // CalDAV (Radicale): the PUT is made, its answer held past the timeout.
    let carols = create(
        &w,
        CAROL,
        external("Carol one-to-one", at(day, 16, 0), at(day, 16, 30), &[]),
    )
    .await
    .unwrap();
    w.front.answer_next_put_late(2_500);
    assert_eq!(dispatch(&w).await.retried, 1);
    assert_eq!(caldav_events_titled(&w.collection, "Carol one-to-one").await, 1);
    deliver_all(&w).await;
    let carols = get(&w, CAROL, &carols.name).await;
    assert_eq!(carols.delivery.as_ref().unwrap().state(), pb::DeliveryState::Delivered);
    assert_eq!(
        caldav_events_titled(&w.collection, "Carol one-to-one").await,
        1,
        "exactly once in Radicale"
    );
    // Synced back from Radicale, the copy hides behind the meeting as well.
    sync::make_due(&w.server, &w.carol.user, carol_cal, w.clock.now()).await;
    sync_due(&w.engine, "w/0").await;
    let key = juy_domain::provider_key(juy_domain::MeetingId(
        carols.name.trim_start_matches("meetings/").parse().unwrap(),
    ));
    let stored = sync::stored_events(&w.server, &w.carol.user, carol_cal).await;
    assert_eq!(
        stored.keys().filter(|href| href.contains(&key)).count(),
        1,
        "the copy is synced: {stored:?}"
    );
    let four: Vec<_> = list_events(&w, CAROL)
        .await
        .into_iter()
        .filter(|e| e.start_time.as_ref().unwrap().seconds == at(day, 16, 0).timestamp())
        .collect();
    assert_eq!(four.len(), 1, "{four:?}");
    assert_eq!(four[0].meeting, carols.name);

    // Update and cancel propagate.
    let moved = w
        .server
        .calendar()
        .await
        .update_meeting(authed(
            pb::UpdateMeetingRequest {
                meeting: Some(pb::Meeting {
                    name: delivered.name.clone(),
                    title: "Quarterly review (moved)".into(),
                    start_time: Some(ts(at(day, 13, 0))),
                    end_time: Some(ts(at(day, 14, 0))),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["title".into(), "start_time".into(), "end_time".into()],
                }),
                allow_conflicts: true,
            },
            &token(ALICE, &[]),
        ))
        .await
        .unwrap()
        .into_inner()
        .meeting
        .unwrap();
    assert_eq!(moved.delivery.as_ref().unwrap().state(), pb::DeliveryState::Pending);
    deliver_all(&w).await;
    let at_google = w.sandbox.google_event(GOOGLE_CAL, &delivery.external_id).unwrap();
    assert_eq!(at_google["summary"], "Quarterly review (moved)");
    assert_eq!(
        at_google["start"]["dateTime"]
            .as_str()
            .map(|s| DateTime::parse_from_rfc3339(s).unwrap().to_utc()),
        Some(at(day, 13, 0))
    );
    w.server
        .calendar()
        .await
        .cancel_meeting(authed(
            pb::CancelMeetingRequest {
                name: carols.name.clone(),
            },
            &token(CAROL, &[]),
        ))
        .await
        .unwrap();
    deliver_all(&w).await;
    assert_eq!(caldav_events_titled(&w.collection, "Carol one-to-one").await, 0);
    let cancelled = get(&w, CAROL, &carols.name).await;
    assert_eq!(cancelled.state(), pb::MeetingState::Cancelled);
    assert_eq!(cancelled.delivery.unwrap().state(), pb::DeliveryState::Delivered);
    w.server.stop().await;
}

#[tokio::test]
async fn a_read_only_calendar_is_never_written() {
    let w = world().await;
    let day = w.day;
    let alice_cal = w.alice.calendars[GOOGLE_CAL];
    let team_cal = w.alice.calendars[GOOGLE_READ_CAL];

    // Asked for, refused: no calendar of Alice's is in Write mode.
    let refused = create(&w, ALICE, external("Nope", at(day, 12, 0), at(day, 12, 30), &[]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        refused.get_error_details().error_info().unwrap().reason,
        "NO_WRITE_CALENDAR"
    );
    // Naming the Read-only calendar is refused too.
    set_mode(&w, ALICE, alice_cal, pb::CalendarMode::Write).await;
    let refused = create(
        &w,
        ALICE,
        pb::CreateMeetingRequest {
            meeting: Some(pb::Meeting {
                add_to_external_calendar: true,
                calendar: format!("calendars/{team_cal}"),
                ..meeting("Nope", at(day, 12, 0), at(day, 12, 30), &[])
            }),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        refused.get_error_details().error_info().unwrap().reason,
        "CALENDAR_READ_ONLY"
    );

    // Created while in Write mode, then switched to Read-only before delivery:
    // the dispatcher checks again and writes nothing.
    let created = create(&w, ALICE, external("Late switch", at(day, 12, 0), at(day, 12, 30), &[]))
        .await
        .unwrap();
    set_mode(&w, ALICE, alice_cal, pb::CalendarMode::ReadOnly).await;
    w.sandbox.clear_log();
    let report = dispatch(&w).await;
    assert_eq!(report.failed, 1, "{report:?}");
    let failed = get(&w, ALICE, &created.name).await;
    let delivery = failed.delivery.clone().unwrap();
    assert_eq!(delivery.state(), pb::DeliveryState::Failed);
    assert!(delivery.last_error.contains("read-only"), "{}", delivery.last_error);
    let writes: Vec<_> = w
        .sandbox
        .request_log()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    assert!(writes.is_empty(), "nothing is written: {writes:?}");
    // The meeting itself stands in Juy.
    assert_eq!(failed.state(), pb::MeetingState::Scheduled);
    w.server.stop().await;
}

#[tokio::test]
async fn free_busy_flags_users_without_calendars_or_with_stale_ones_instead_of_showing_them_free() {
    let w = world().await;
    // Dave has no calendar; Bob's calendar has not synced within the stale threshold.
    {
        let mut conn = w.server.store.conn().await.unwrap();
        diesel_async::RunQueryDsl::execute(
            diesel::sql_query("UPDATE calendars SET last_synced_at = now() - interval '3 hours' WHERE user_id = 'bob'"),
            &mut *conn,
        )
        .await
        .unwrap();
    }
    let answer = free_busy(&w, ALICE, &["dave", BOB, ALICE]).await;
    assert_eq!(answer.users[0].state(), pb::AvailabilityState::NoCalendars);
    assert_eq!(answer.users[1].state(), pb::AvailabilityState::Unknown);
    assert!(!answer.users[1].state_reason.is_empty());
    assert_eq!(answer.users[2].state(), pb::AvailabilityState::Known);
    // Unknown users are still reported with what is known, never silently as free.
    assert!(!answer.users[1].busy.is_empty());
    let _ = UserId::new(BOB).unwrap();
    w.server.stop().await;
}

#[tokio::test]
async fn meetings_and_working_hours_over_rest() {
    let w = world().await;
    let day = w.day;
    let http = juy_integration_tests::http();
    let alice = token(ALICE, &[]);

    // Bob works 14:00-18:00 UTC on every weekday and weekend day.
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let hours: Vec<Value> = days
        .iter()
        .map(|d| json!({"day": d, "start_time": "14:00", "end_time": "18:00"}))
        .collect();
    let settings = http
        .patch(w.server.rest("/v1/calendar/settings"))
        .bearer_auth(token(BOB, &[]))
        .json(&json!({"time_zone": "UTC", "working_hours": hours}))
        .send()
        .await
        .unwrap();
    assert_eq!(settings.status().as_u16(), 200);
    let settings: Value = settings.json().await.unwrap();
    assert_eq!(settings["time_zone"], "UTC");
    assert_eq!(settings["working_hours"].as_array().unwrap().len(), 7);
    // A bad period is refused, naming it, and nothing changes.
    let bad = http
        .patch(w.server.rest("/v1/calendar/settings"))
        .bearer_auth(token(BOB, &[]))
        .json(&json!({"time_zone": "Mars/Olympus", "working_hours": [{"day": "mon", "start_time": "18:00", "end_time": "09:00"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let problem: Value = bad.json().await.unwrap();
    let fields = violated_fields(&problem);
    assert_eq!(
        fields,
        ["time_zone", "working_hours[0].end_time"].into_iter().collect(),
        "{problem}"
    );
    // Slots for Alice and Bob now honour Bob's setting (Alice's hours ignored).
    let found: Value = http
        .post(w.server.rest("/v1/calendar/slots"))
        .bearer_auth(&alice)
        .json(&json!({
            "invitees": [{"user": "users/alice", "ignore_working_hours": true}, {"user": "users/bob"}],
            "duration_minutes": 60, "granularity_minutes": 60, "time_zone": "UTC", "max_results": 100,
            "start_time": at(day, 8, 0).to_rfc3339(), "end_time": at(day, 20, 0).to_rfc3339()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let starts: Vec<&str> = found["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["start_time"].as_str().unwrap())
        .collect();
    // 14:00 free, 15:00 Bob tentative, 16:00 and 17:00 free; 18:00 is after his hours.
    let expected: Vec<String> = [14, 16, 17]
        .iter()
        .map(|&h| at(day, h, 0).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .collect();
    assert_eq!(starts, expected, "{found}");

    // Create, read, change and cancel a meeting over REST.
    let created = http
        .post(w.server.rest("/v1/calendar/meetings"))
        .bearer_auth(&alice)
        .json(
            &json!({"title": "Design review", "start_time": at(day, 14, 0).to_rfc3339(),
            "end_time": at(day, 15, 0).to_rfc3339(), "invitees": ["users/bob"],
            "attendee_emails": ["bob@outlook.test"], "request_id": "rest-1"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["delivery"]["state"], "not_requested");
    assert_eq!(created["invitees"], json!(["users/bob"]));
    // The retried request answers 200 with the same meeting.
    let retried = http
        .post(w.server.rest("/v1/calendar/meetings"))
        .bearer_auth(&alice)
        .json(
            &json!({"title": "Design review", "start_time": at(day, 14, 0).to_rfc3339(),
            "end_time": at(day, 15, 0).to_rfc3339(), "invitees": ["users/bob"], "request_id": "rest-1"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status().as_u16(), 200);
    assert_eq!(retried.json::<Value>().await.unwrap()["name"], created["name"]);
    let read: Value = http
        .get(w.server.rest(&location))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["title"], "Design review");
    // Bob cannot read Alice's meeting.
    let foreign = http
        .get(w.server.rest(&location))
        .bearer_auth(token(BOB, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status().as_u16(), 404);
    // Moving it onto Bob's tentative hour is refused; a bad field is named.
    let refused = http
        .patch(w.server.rest(&location))
        .bearer_auth(&alice)
        .json(&json!({"start_time": at(day, 15, 0).to_rfc3339(), "end_time": at(day, 16, 0).to_rfc3339()}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 409);
    assert_eq!(refused.json::<Value>().await.unwrap()["reason"], "MEETING_CONFLICTS");
    let invalid = http
        .patch(w.server.rest(&location))
        .bearer_auth(&alice)
        .json(&json!({"end_time": at(day, 13, 0).to_rfc3339()}))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status().as_u16(), 400);
    assert_eq!(
        invalid.json::<Value>().await.unwrap()["violations"][0]["field"],
        "end_time"
    );
    let changed: Value = http
        .patch(w.server.rest(&location))
        .bearer_auth(&alice)
        .json(&json!({"title": "Design review II", "location": ""}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (changed["title"].as_str(), changed["version"].as_i64()),
        (Some("Design review II"), Some(2))
    );
    // Bob is busy at 14:00 by the meeting now.
    let bob = free_busy(&w, BOB, &[BOB]).await;
    assert!(
        bob.users[0]
            .busy
            .iter()
            .map(interval)
            .any(|(s, e, k)| s == at(day, 14, 0) && e == at(day, 15, 0) && k == pb::BusyKind::Busy)
    );
    let cancelled = http
        .delete(w.server.rest(&location))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status().as_u16(), 200);
    assert_eq!(cancelled.json::<Value>().await.unwrap()["state"], "cancelled");
    // Cancelled: free again, and no longer in the merged view.
    let bob = free_busy(&w, BOB, &[BOB]).await;
    assert!(
        !bob.users[0]
            .busy
            .iter()
            .map(interval)
            .any(|(s, _, _)| s == at(day, 14, 0))
    );
    assert!(list_events(&w, ALICE).await.iter().all(|e| e.meeting.is_empty()));
    let again = http
        .patch(w.server.rest(&location))
        .bearer_auth(&alice)
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 409);
    w.server.stop().await;
}

#[tokio::test]
async fn the_busy_policy_holds_for_every_provider_and_all_day_events_follow_the_owners_zone() {
    use chrono::TimeZone as _;
    let w = world().await;
    let next = w.day + Duration::days(1);
    // Alice lives in Berlin: her all-day event runs from Berlin midnight to Berlin midnight.
    let settings = juy_integration_tests::http()
        .patch(w.server.rest("/v1/calendar/settings"))
        .bearer_auth(token(ALICE, &[]))
        .json(&json!({"time_zone": "Europe/Berlin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(settings.status().as_u16(), 200);
    let berlin_midnight = |d: DateTime<Utc>| {
        chrono_tz::Europe::Berlin
            .from_local_datetime(&d.date_naive().and_hms_opt(0, 0, 0).unwrap())
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    };
    let answer = w
        .server
        .availability()
        .await
        .query_free_busy(authed(
            pb::QueryFreeBusyRequest {
                users: vec!["users/alice".into(), "users/bob".into(), "users/carol".into()],
                start_time: Some(ts(next)),
                end_time: Some(ts(next + Duration::days(2))),
            },
            &token(ALICE, &[]),
        ))
        .await
        .unwrap()
        .into_inner();
    let busy = |i: usize| answer.users[i].busy.iter().map(interval).collect::<Vec<_>>();
    assert_eq!(answer.users[0].time_zone, "Europe/Berlin");
    // Google: out of office; working location, transparent: free; unanswered: tentative; all-day: busy.
    assert_eq!(
        busy(0),
        vec![
            (at(next, 9, 0), at(next, 10, 0), pb::BusyKind::OutOfOffice),
            (at(next, 12, 0), at(next, 13, 0), pb::BusyKind::Tentative),
            (
                berlin_midnight(next + Duration::days(1)),
                berlin_midnight(next + Duration::days(2)),
                pb::BusyKind::Busy
            ),
        ]
    );
    // Graph: oof; working elsewhere and declined: free; not responded: tentative.
    assert_eq!(
        busy(1),
        vec![
            (at(next, 9, 0), at(next, 10, 0), pb::BusyKind::OutOfOffice),
            (at(next, 12, 0), at(next, 13, 0), pb::BusyKind::Tentative),
        ]
    );
    // CalDAV: tentative; cancelled: free; all-day in Carol's zone (UTC: she set none).
    assert_eq!(
        busy(2),
        vec![
            (at(next, 9, 0), at(next, 10, 0), pb::BusyKind::Tentative),
            (next + Duration::days(1), next + Duration::days(2), pb::BusyKind::Busy),
        ]
    );
    w.server.stop().await;
}

#[tokio::test]
async fn meetings_racing_for_one_persons_time_cannot_both_be_booked() {
    let w = world().await;
    let day = w.day;
    // Six organisers at once want Carol for the same free half hour.
    let organisers = ["dora", "emil", "fred", "gina", "hugo", "ines"];
    let attempts = organisers.iter().map(|organiser| {
        create(
            &w,
            organiser,
            pb::CreateMeetingRequest {
                meeting: Some(meeting("Grab Carol", at(day, 14, 0), at(day, 14, 30), &[CAROL])),
                ..Default::default()
            },
        )
    });
    let results = futures::future::join_all(attempts).await;
    let booked = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(booked, 1, "{results:?}");
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    }
    let carol = free_busy(&w, CAROL, &[CAROL]).await;
    let at_two: Vec<_> = carol.users[0]
        .busy
        .iter()
        .filter(|b| interval(b).0 == at(day, 14, 0))
        .collect();
    assert_eq!(at_two.len(), 1);
    assert_eq!(at_two[0].meetings.len(), 1, "one meeting holds the slot");
    w.server.stop().await;
}

/// What a dispatcher that died right after the provider's answer left behind:
/// it leased the delivery, and the provider made the event under the
/// meeting's key; nothing of the answer reached our database.
async fn die_after_the_provider_call(w: &World, meeting_name: &str, calendar: &str) {
    let id = juy_domain::MeetingId(meeting_name.trim_start_matches("meetings/").parse().unwrap());
    {
        let mut conn = w.server.store.conn().await.unwrap();
        let leased = juy_store::meetings::lease_due(&mut conn, "dead/0", Utc::now(), Duration::minutes(2), 10)
            .await
            .unwrap();
        assert_eq!(leased.len(), 1);
    }
    let event = json!({
        "id": juy_domain::provider_key(id),
        "summary": "made by the dead dispatcher",
        "start": {"dateTime": at(w.day, 17, 0).to_rfc3339()},
        "end": {"dateTime": at(w.day, 17, 30).to_rfc3339()},
    });
    let made = juy_integration_tests::http()
        .post(format!("{}/calendars/{calendar}/events", w.running.google_api_base()))
        .bearer_auth(w.sandbox.mint_access_token(GOOGLE_SUB))
        .json(&event)
        .send()
        .await
        .unwrap();
    assert!(made.status().is_success(), "{}", made.status());
}

#[tokio::test]
async fn a_dispatcher_dying_between_the_provider_call_and_our_commit_never_makes_a_second_event() {
    let w = world().await;
    let day = w.day;
    let alice_cal = w.alice.calendars[GOOGLE_CAL];
    set_mode(&w, ALICE, alice_cal, pb::CalendarMode::Write).await;
    let before = w.sandbox.google_event_count(GOOGLE_CAL);

    // Retried after the dead dispatcher's lease ran out: the same event.
    let created = create(&w, ALICE, external("Crash test", at(day, 17, 0), at(day, 17, 30), &[]))
        .await
        .unwrap();
    die_after_the_provider_call(&w, &created.name, GOOGLE_CAL).await;
    assert_eq!(w.sandbox.google_event_count(GOOGLE_CAL), before + 1);
    assert_eq!(
        dispatch(&w).await,
        DispatchReport::default(),
        "leased by the dead dispatcher"
    );
    deliver_all(&w).await;
    let delivered = get(&w, ALICE, &created.name).await;
    assert_eq!(
        delivered.delivery.as_ref().unwrap().state(),
        pb::DeliveryState::Delivered
    );
    assert_eq!(w.sandbox.google_event_count(GOOGLE_CAL), before + 1, "no second event");

    // Cancelled before any answer was recorded: the event is found by its key and removed.
    let doomed = create(
        &w,
        ALICE,
        external("Crash and cancel", at(day, 18, 0), at(day, 18, 30), &[]),
    )
    .await
    .unwrap();
    w.clock.advance(Duration::minutes(5));
    die_after_the_provider_call(&w, &doomed.name, GOOGLE_CAL).await;
    assert_eq!(w.sandbox.google_event_count(GOOGLE_CAL), before + 2);
    w.server
        .calendar()
        .await
        .cancel_meeting(authed(
            pb::CancelMeetingRequest {
                name: doomed.name.clone(),
            },
            &token(ALICE, &[]),
        ))
        .await
        .unwrap();
    deliver_all(&w).await;
    let cancelled = get(&w, ALICE, &doomed.name).await;
    assert_eq!(cancelled.delivery.unwrap().state(), pb::DeliveryState::Delivered);
    assert_eq!(
        w.sandbox.google_event_count(GOOGLE_CAL),
        before + 1,
        "the orphan is gone"
    );
    w.server.stop().await;
}
