//! "Sync now" and freshness through the public API, over real gRPC and HTTP
//! against a real PostgreSQL: jobs are created (queued, or skipped for a
//! connection that must be linked again) and make their calendars due; the
//! `SyncNow` stream reports each change a worker records and ends with the
//! job; bad and foreign names are refused; listings show each calendar's
//! sync status, last success, last error, next sync and whether it syncs now.
//!
//! The test servers run no sync workers: the tests play the worker through
//! the same store calls the workers make.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] functions

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, DurationRound as _, Utc};
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl as _;
use juy_api::pb::v1 as pb;
use juy_calendar::dev::SeedSummary;
use juy_domain::{Calendar, CalendarId, UserId};
use juy_integration_tests::{TestServer, authed, http, token};
use juy_store::{accounts, sync_jobs};
use serde_json::Value;
use tonic::Code;
use tonic_types::StatusExt as _;

/// How long a test waits for the stream to report something.
const PATIENCE: StdDuration = StdDuration::from_secs(10);

/// A number from SQL, e.g. `(SELECT count(*) FROM sync_jobs)`.
async fn scalar(server: &TestServer, expression: &str) -> i64 {
    let mut conn = server.store.conn().await.unwrap();
    diesel::select(diesel::dsl::sql::<BigInt>(expression))
        .get_result(&mut *conn)
        .await
        .unwrap()
}

async fn execute(server: &TestServer, statement: &str) -> usize {
    let mut conn = server.store.conn().await.unwrap();
    diesel::sql_query(statement).execute(&mut *conn).await.unwrap()
}

fn calendar<'a>(seeded: &'a SeedSummary, name: &str) -> &'a Calendar {
    seeded.calendars.iter().find(|c| c.name == name).unwrap()
}

fn name(calendar: &Calendar) -> String {
    format!("calendars/{}", calendar.id)
}

fn violation_fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

fn job_calendar<'a>(job: &'a pb::SyncJob, calendar: &Calendar) -> &'a pb::SyncJobCalendar {
    job.calendars.iter().find(|c| c.calendar == name(calendar)).unwrap()
}

fn state_of(job: &pb::SyncJob, calendar: &Calendar) -> pb::SyncJobState {
    job_calendar(job, calendar).state()
}

fn job_id(job: &pb::SyncJob) -> uuid::Uuid {
    job.name.strip_prefix("syncJobs/").unwrap().parse().unwrap()
}

async fn sync_now(
    server: &TestServer,
    bearer: &str,
    calendars: Vec<String>,
) -> Result<tonic::Streaming<pb::SyncNowResponse>, tonic::Status> {
    let mut client = server.calendar().await;
    client
        .sync_now(authed(pb::SyncNowRequest { calendars }, bearer))
        .await
        .map(tonic::Response::into_inner)
}

async fn next_message(stream: &mut tonic::Streaming<pb::SyncNowResponse>) -> Option<pb::SyncNowResponse> {
    tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("the stream answers in time")
        .unwrap()
}

/// Reads the stream until a message's job satisfies `wanted`.
async fn until(
    stream: &mut tonic::Streaming<pb::SyncNowResponse>,
    wanted: impl Fn(&pb::SyncJob) -> bool,
) -> pb::SyncNowResponse {
    loop {
        let message = next_message(stream).await.expect("the stream ended too early");
        if wanted(message.job.as_ref().unwrap()) {
            return message;
        }
    }
}

async fn get_job(server: &TestServer, bearer: &str, name: &str) -> Result<pb::SyncJob, tonic::Status> {
    let mut client = server.calendar().await;
    client
        .get_sync_job(authed(pb::GetSyncJobRequest { name: name.to_owned() }, bearer))
        .await
        .map(|response| response.into_inner().job.unwrap())
}

fn seconds(at: DateTime<Utc>) -> Option<i64> {
    Some(at.timestamp())
}

fn ts_seconds(at: Option<&prost_types::Timestamp>) -> Option<i64> {
    at.map(|t| t.seconds)
}

#[tokio::test]
async fn sync_now_queues_the_named_calendars_and_makes_them_due() {
    let server = TestServer::start().await;
    let seeded = server.seed("alice").await;
    let alice = token("alice", &[]);
    let work = calendar(&seeded, "Work");
    // Every calendar synced recently: none is due.
    execute(
        &server,
        "UPDATE calendars SET next_sync_at = now() + interval '1 hour' WHERE user_id = 'alice'",
    )
    .await;

    let response = http()
        .post(server.rest("/v1/calendar/sync"))
        .bearer_auth(&alice)
        .json(&serde_json::json!({"calendars": [name(work)]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let job: Value = response.json().await.unwrap();
    let id = job["name"]
        .as_str()
        .unwrap()
        .strip_prefix("syncJobs/")
        .unwrap()
        .to_owned();
    assert_eq!(location, format!("/v1/calendar/sync/{id}"));
    assert_eq!(job["done"], false);
    assert_eq!(job["calendars"].as_array().unwrap().len(), 1);
    assert_eq!(job["calendars"][0]["calendar"], name(work).as_str());
    assert_eq!(job["calendars"][0]["state"], "queued");
    assert_eq!(job["calendars"][0]["phase"], Value::Null);

    assert_eq!(
        scalar(
            &server,
            &format!(
                "(SELECT count(*) FROM calendars WHERE user_id = 'alice' AND next_sync_at <= now() AND id = '{}')",
                work.id
            ),
        )
        .await,
        1,
        "the named calendar is due now"
    );
    assert_eq!(
        scalar(
            &server,
            "(SELECT count(*) FROM calendars WHERE user_id = 'alice' AND next_sync_at > now())",
        )
        .await,
        2,
        "the others keep their schedule"
    );

    let reported = http()
        .get(server.rest(&location))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(reported.status(), 200);
    let reported: Value = reported.json().await.unwrap();
    assert_eq!(reported, job);

    let grpc = get_job(&server, &alice, &format!("syncJobs/{id}")).await.unwrap();
    assert_eq!(grpc.name, format!("syncJobs/{id}"));
    assert!(!grpc.done);
    assert_eq!(state_of(&grpc, work), pb::SyncJobState::Queued);
    assert_eq!(job_calendar(&grpc, work).phase(), pb::SyncJobPhase::Unspecified);

    // No body: every calendar of the caller.
    let all = http()
        .post(server.rest("/v1/calendar/sync"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(all.status(), 202);
    let all: Value = all.json().await.unwrap();
    let states: Vec<&str> = all["calendars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, vec!["queued"; 3]);
    assert_eq!(
        scalar(
            &server,
            "(SELECT count(*) FROM calendars WHERE user_id = 'alice' AND next_sync_at <= now())",
        )
        .await,
        3
    );
    server.stop().await;
}

#[tokio::test]
async fn a_calendar_whose_connection_must_be_linked_again_is_skipped() {
    let server = TestServer::start().await;
    let seeded = server.seed("alice").await;
    let alice = token("alice", &[]);
    let outlook = calendar(&seeded, "Calendar");
    let user = UserId::new("alice").unwrap();
    {
        let mut conn = server.store.conn().await.unwrap();
        assert!(
            accounts::mark_reauth_required(&mut conn, &user, outlook.account_id, "the grant was revoked")
                .await
                .unwrap()
        );
    }

    let mut stream = sync_now(&server, &alice, Vec::new()).await.unwrap();
    let first = next_message(&mut stream).await.unwrap();
    assert!(!first.still_running);
    let job = first.job.unwrap();
    assert_eq!(job.calendars.len(), 3);
    assert!(!job.done, "the other calendars are queued");
    let skipped = job_calendar(&job, outlook);
    assert_eq!(skipped.state(), pb::SyncJobState::Skipped);
    assert!(!skipped.error.is_empty());
    assert!(skipped.end_time.is_some());
    for other in seeded.calendars.iter().filter(|c| c.id != outlook.id) {
        assert_eq!(state_of(&job, other), pb::SyncJobState::Queued);
    }
    assert_eq!(
        scalar(
            &server,
            &format!(
                "(SELECT count(*) FROM calendars WHERE user_id = 'alice' AND id = '{}' AND next_sync_at = 'infinity')",
                outlook.id
            ),
        )
        .await,
        1,
        "the skipped calendar stays parked"
    );
    drop(stream);

    // Only the skipped calendar: the job is finished at once and the stream ends after it.
    let mut stream = sync_now(&server, &alice, vec![name(outlook)]).await.unwrap();
    let only = next_message(&mut stream).await.unwrap().job.unwrap();
    assert!(only.done);
    assert_eq!(state_of(&only, outlook), pb::SyncJobState::Skipped);
    assert!(next_message(&mut stream).await.is_none());
    server.stop().await;
}

#[tokio::test]
async fn the_stream_reports_each_change_a_worker_records_and_ends_with_the_job() {
    let server = TestServer::start().await;
    let seeded = server.seed("alice").await;
    let alice = token("alice", &[]);
    let user = UserId::new("alice").unwrap();
    let work = calendar(&seeded, "Work");
    let outlook = calendar(&seeded, "Calendar");

    let mut stream = sync_now(&server, &alice, vec![name(work), name(outlook)])
        .await
        .unwrap();
    let first = next_message(&mut stream).await.unwrap().job.unwrap();
    assert_eq!(first.calendars.len(), 2);
    assert!(first.calendars.iter().all(|c| c.state() == pb::SyncJobState::Queued));
    let id = job_id(&first);

    // A worker leases Work and starts a full listing.
    let started = Utc::now().duration_trunc(Duration::seconds(1)).unwrap();
    let attached = {
        let mut conn = server.store.conn().await.unwrap();
        sync_jobs::attach(&mut conn, &user, work.id, sync_jobs::JobPhase::Listing, started)
            .await
            .unwrap()
    };
    assert_eq!(attached, vec![id]);
    let running = until(&mut stream, |job| state_of(job, work) == pb::SyncJobState::Running)
        .await
        .job
        .unwrap();
    let running_work = job_calendar(&running, work);
    assert_eq!(running_work.phase(), pb::SyncJobPhase::Listing);
    assert_eq!(ts_seconds(running_work.start_time.as_ref()), seconds(started));
    assert_eq!(state_of(&running, outlook), pb::SyncJobState::Queued);

    // It commits two pages.
    for (written, deleted) in [(50, 0), (7, 2)] {
        let mut conn = server.store.conn().await.unwrap();
        sync_jobs::record_progress(
            &mut conn,
            &user,
            work.id,
            &attached,
            sync_jobs::JobPhase::Listing,
            written,
            deleted,
        )
        .await
        .unwrap();
    }
    let paged = until(&mut stream, |job| job_calendar(job, work).pages == 2)
        .await
        .job
        .unwrap();
    let paged_work = job_calendar(&paged, work);
    assert_eq!((paged_work.events_written, paged_work.events_deleted), (57, 2));

    // Work is done; Outlook's run fails.
    let ended = started + Duration::seconds(3);
    {
        let mut conn = server.store.conn().await.unwrap();
        sync_jobs::finish(&mut conn, &user, work.id, &attached, None, ended)
            .await
            .unwrap();
    }
    let done = until(&mut stream, |job| state_of(job, work) == pb::SyncJobState::Done)
        .await
        .job
        .unwrap();
    assert!(!done.done, "outlook is still queued");
    let outlook_jobs = {
        let mut conn = server.store.conn().await.unwrap();
        let jobs = sync_jobs::attach(&mut conn, &user, outlook.id, sync_jobs::JobPhase::Changes, ended)
            .await
            .unwrap();
        sync_jobs::finish(
            &mut conn,
            &user,
            outlook.id,
            &jobs,
            Some("microsoft graph answered 503 three times"),
            ended,
        )
        .await
        .unwrap();
        jobs
    };
    assert_eq!(outlook_jobs, vec![id]);
    let last = until(&mut stream, |job| job.done).await;
    assert!(!last.still_running);
    let last = last.job.unwrap();
    assert_eq!(state_of(&last, work), pb::SyncJobState::Done);
    assert_eq!(ts_seconds(job_calendar(&last, work).end_time.as_ref()), seconds(ended));
    let failed = job_calendar(&last, outlook);
    assert_eq!(failed.state(), pb::SyncJobState::Failed);
    assert_eq!(failed.error, "microsoft graph answered 503 three times");
    assert!(
        next_message(&mut stream).await.is_none(),
        "the stream ends with the job"
    );

    // Both surfaces report the finished job the same way.
    assert_eq!(get_job(&server, &alice, &last.name).await.unwrap(), last);
    let rest: Value = http()
        .get(server.rest(&format!("/v1/calendar/sync/{id}")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["done"], true);
    let rest_work = rest["calendars"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["calendar"] == name(work).as_str())
        .unwrap();
    assert_eq!(rest_work["state"], "done");
    assert_eq!(rest_work["phase"], "listing");
    assert_eq!(
        (rest_work["pages"].as_i64(), rest_work["events_written"].as_i64()),
        (Some(2), Some(57))
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_and_foreign_names_are_refused_on_both_surfaces() {
    let server = TestServer::start().await;
    let alice_seed = server.seed("alice").await;
    let bob_seed = server.seed("bob").await;
    let alice = token("alice", &[]);
    let bob = token("bob", &[]);
    let work = calendar(&alice_seed, "Work");
    let holidays = calendar(&alice_seed, "Team holidays");

    let malformed = sync_now(
        &server,
        &alice,
        vec![name(work), name(holidays), "calendars/not-a-uuid".into()],
    )
    .await
    .unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert_eq!(violation_fields(&malformed), vec!["calendars[2]"]);

    let bobs = sync_now(&server, &alice, vec![name(work), name(&bob_seed.calendars[0])])
        .await
        .unwrap_err();
    assert_eq!(bobs.code(), Code::NotFound);
    assert!(!bobs.message().contains("bob"));
    let unknown = sync_now(&server, &alice, vec![format!("calendars/{}", CalendarId::new())])
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(
        scalar(&server, "(SELECT count(*) FROM sync_jobs)").await,
        0,
        "a refused request records nothing"
    );

    let unauthenticated = server
        .calendar()
        .await
        .sync_now(tonic::Request::new(pb::SyncNowRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);

    let mut stream = sync_now(&server, &alice, vec![name(work)]).await.unwrap();
    let job = next_message(&mut stream).await.unwrap().job.unwrap();
    drop(stream);
    assert_eq!(
        get_job(&server, &bob, &job.name).await.unwrap_err().code(),
        Code::NotFound,
        "another user's job"
    );
    assert_eq!(
        get_job(&server, &alice, &format!("syncJobs/{}", uuid::Uuid::now_v7()))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    for bad in ["", "syncJobs/nope", &name(work)] {
        let status = get_job(&server, &alice, bad).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad}");
        assert_eq!(violation_fields(&status), vec!["name"], "{bad}");
    }

    // REST: the same answers as problem documents.
    let client = http();
    let problem = |response: reqwest::Response, status: u16| async move {
        assert_eq!(response.status(), status);
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        response.json::<Value>().await.unwrap()
    };
    let id = job_id(&job);
    let foreign = client
        .get(server.rest(&format!("/v1/calendar/sync/{id}")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(foreign, 404).await["code"], "NOT_FOUND");
    let unknown = client
        .get(server.rest(&format!("/v1/calendar/sync/{}", uuid::Uuid::now_v7())))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    problem(unknown, 404).await;
    let not_an_id = client
        .get(server.rest("/v1/calendar/sync/not-an-id"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(not_an_id, 400).await["violations"][0]["field"], "id");
    let no_token = client
        .get(server.rest(&format!("/v1/calendar/sync/{id}")))
        .send()
        .await
        .unwrap();
    problem(no_token, 401).await;

    let bad_name = client
        .post(server.rest("/v1/calendar/sync"))
        .bearer_auth(&alice)
        .json(&serde_json::json!({"calendars": ["calendars/nope"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(bad_name, 400).await["violations"][0]["field"], "calendars[0]");
    let bad_body = client
        .post(server.rest("/v1/calendar/sync"))
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .body(r#"{"calendar": []}"#)
        .send()
        .await
        .unwrap();
    problem(bad_body, 400).await;
    let foreign_calendar = client
        .post(server.rest("/v1/calendar/sync"))
        .bearer_auth(&alice)
        .json(&serde_json::json!({"calendars": [name(&bob_seed.calendars[0])]}))
        .send()
        .await
        .unwrap();
    problem(foreign_calendar, 404).await;
    assert_eq!(scalar(&server, "(SELECT count(*) FROM sync_jobs)").await, 1);
    server.stop().await;
}

#[tokio::test]
async fn listings_show_each_calendars_freshness() {
    let server = TestServer::start().await;
    let seeded = server.seed("alice").await;
    let alice = token("alice", &[]);
    let admin = token("root", &["admin"]);
    let user = UserId::new("alice").unwrap();
    let work = calendar(&seeded, "Work");
    let holidays = calendar(&seeded, "Team holidays");
    let outlook = calendar(&seeded, "Calendar");
    let mut client = server.calendar().await;

    // Never synced: pending, due since it was linked.
    let fresh = client
        .list_calendars(authed(pb::ListCalendarsRequest::default(), &alice))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fresh.calendars.len(), 3);
    for c in &fresh.calendars {
        assert_eq!(c.sync_status(), pb::SyncStatus::Pending);
        assert!(c.last_sync_time.is_none());
        assert!(!c.syncing);
        assert!(c.next_sync_time.as_ref().unwrap().seconds <= Utc::now().timestamp());
        assert!(c.push_channel_expire_time.is_none());
    }

    // Work synced an hour ago and is next due in four minutes; Team holidays
    // is being synced (its next_sync_at is the lease's expiry); Outlook's
    // last run failed and its connection must be linked again (parked).
    let now = Utc::now().duration_trunc(Duration::seconds(1)).unwrap();
    let synced = now - Duration::hours(1);
    let next = now + Duration::minutes(4);
    execute(
        &server,
        &format!(
            "UPDATE calendars SET sync_status = 'ok', last_synced_at = '{}', next_sync_at = '{}' \
             WHERE user_id = 'alice' AND id = '{}'",
            synced.to_rfc3339(),
            next.to_rfc3339(),
            work.id
        ),
    )
    .await;
    execute(
        &server,
        &format!(
            "UPDATE calendars SET lease_owner = 'replica-a/0', lease_expires_at = now() + interval '2 minutes', \
             next_sync_at = now() + interval '2 minutes' WHERE user_id = 'alice' AND id = '{}'",
            holidays.id
        ),
    )
    .await;
    execute(
        &server,
        &format!(
            "UPDATE calendars SET sync_status = 'error', last_error = 'the provider answered 500' \
             WHERE user_id = 'alice' AND id = '{}'",
            outlook.id
        ),
    )
    .await;
    {
        let mut conn = server.store.conn().await.unwrap();
        accounts::mark_reauth_required(&mut conn, &user, outlook.account_id, "the grant was revoked")
            .await
            .unwrap();
    }

    let check = |c: &pb::Calendar| {
        if c.name == name(work) {
            assert_eq!(c.sync_status(), pb::SyncStatus::Ok);
            assert_eq!(ts_seconds(c.last_sync_time.as_ref()), seconds(synced));
            assert_eq!(ts_seconds(c.next_sync_time.as_ref()), seconds(next));
            assert!(!c.syncing);
            assert!(c.last_error.is_empty());
        } else if c.name == name(holidays) {
            assert!(c.syncing);
            assert!(c.next_sync_time.is_none(), "a lease's expiry is no planned sync");
        } else {
            assert_eq!(c.name, name(outlook));
            assert_eq!(c.sync_status(), pb::SyncStatus::Error);
            assert_eq!(c.last_error, "the provider answered 500");
            assert!(c.next_sync_time.is_none(), "parked: no sync is scheduled");
            assert!(!c.syncing);
        }
        assert!(c.push_channel_expire_time.is_none());
    };

    let connections = client
        .list_connections(authed(pb::ListConnectionsRequest::default(), &alice))
        .await
        .unwrap()
        .into_inner()
        .connections;
    assert_eq!(connections.len(), 2);
    let mut listed = 0;
    for connection in &connections {
        for c in &connection.calendars {
            assert_eq!(c.connection, connection.name);
            assert!(!c.display_name.is_empty());
            check(c);
            listed += 1;
        }
    }
    assert_eq!(listed, 3, "every calendar under its connection");
    let google = connections
        .iter()
        .find(|c| c.name == format!("connections/{}", work.account_id))
        .unwrap();
    assert_eq!(google.calendars[0].name, name(work), "primary first");

    let calendars = client
        .list_calendars(authed(pb::ListCalendarsRequest::default(), &alice))
        .await
        .unwrap()
        .into_inner()
        .calendars;
    assert_eq!(calendars.len(), 3);
    calendars.iter().for_each(check);

    // REST shows the same.
    let rest: Value = http()
        .get(server.rest("/v1/calendar/connections"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rest_calendars: Vec<&Value> = rest["connections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["calendars"].as_array().unwrap())
        .collect();
    assert_eq!(rest_calendars.len(), 3);
    let rest_work = rest_calendars
        .iter()
        .find(|c| c["name"] == name(work).as_str())
        .unwrap();
    let instant = |v: &Value| DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().timestamp();
    assert_eq!(instant(&rest_work["last_sync_time"]), synced.timestamp());
    assert_eq!(instant(&rest_work["next_sync_time"]), next.timestamp());
    assert_eq!(rest_work["syncing"], false);
    assert_eq!(rest_work["push_channel_expire_time"], Value::Null);
    let rest_holidays = rest_calendars
        .iter()
        .find(|c| c["name"] == name(holidays).as_str())
        .unwrap();
    assert_eq!(
        (&rest_holidays["syncing"], &rest_holidays["next_sync_time"]),
        (&Value::Bool(true), &Value::Null)
    );

    // Admins see the same health, without calendar names.
    let rows = server
        .admin()
        .await
        .list_connections(authed(
            pb::AdminListConnectionsRequest {
                user_id: "alice".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .connections;
    assert_eq!(rows.len(), 2);
    let admin_calendars: Vec<&pb::AdminCalendar> = rows.iter().flat_map(|r| &r.calendars).collect();
    assert_eq!(admin_calendars.len(), 3);
    for row in &rows {
        assert_eq!(row.calendars.len(), row.calendar_count as usize);
    }
    let admin_work = admin_calendars.iter().find(|c| c.name == name(work)).unwrap();
    assert!(admin_work.primary);
    assert_eq!(admin_work.sync_status(), pb::SyncStatus::Ok);
    assert_eq!(ts_seconds(admin_work.last_sync_time.as_ref()), seconds(synced));
    assert_eq!(ts_seconds(admin_work.next_sync_time.as_ref()), seconds(next));
    let admin_holidays = admin_calendars.iter().find(|c| c.name == name(holidays)).unwrap();
    assert!(admin_holidays.syncing && admin_holidays.next_sync_time.is_none());
    let admin_outlook = admin_calendars.iter().find(|c| c.name == name(outlook)).unwrap();
    assert_eq!(admin_outlook.last_error, "the provider answered 500");
    assert!(admin_outlook.next_sync_time.is_none() && !admin_outlook.syncing);

    let rest_admin: Value = http()
        .get(server.rest("/v1/admin/connections?user_id=alice"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rest_admin_calendars: Vec<&Value> = rest_admin["connections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["calendars"].as_array().unwrap())
        .collect();
    assert_eq!(rest_admin_calendars.len(), 3);
    assert!(rest_admin_calendars.iter().all(|c| c.get("display_name").is_none()));
    server.stop().await;
}
