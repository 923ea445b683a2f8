//! The `/_sandbox` HTTP control API against the real HTTP sandbox: every
//! route, 400s naming the bad field, control-made data served by the Google
//! and Graph routes, faults injected over HTTP hitting the next API call,
//! control calls kept out of the request log and away from faults, `serve_on`,
//! and `seed_dev` being idempotent.
#![allow(clippy::unwrap_used, missing_docs)]

use juy_sandbox::{RunningSandbox, Sandbox, SandboxError, serve_on, start};
use reqwest::Method;
use serde_json::{Value, json};

mod support;
use support::client;

/// Sends `body` verbatim (so tests can send broken JSON); answers status and JSON body.
async fn call(method: Method, url: &str, body: Option<&str>) -> (u16, Value) {
    let mut request = client().request(method, url);
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_owned());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post(url: &str, body: Value) -> (u16, Value) {
    call(Method::POST, url, Some(&body.to_string())).await
}

async fn put(url: &str, body: Value) -> (u16, Value) {
    call(Method::PUT, url, Some(&body.to_string())).await
}

async fn api_get(url: &str, token: &str, prefer: Option<&str>) -> reqwest::Response {
    let mut request = client().get(url).bearer_auth(token);
    if let Some(prefer) = prefer {
        request = request.header("prefer", prefer);
    }
    request.send().await.unwrap()
}

async fn api_json(url: &str, token: &str, prefer: Option<&str>) -> (u16, Value) {
    let response = api_get(url, token, prefer).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The 400 body's `field`, asserting the status.
fn field_of(answer: &(u16, Value)) -> &str {
    assert_eq!(answer.0, 400, "{}", answer.1);
    assert_eq!(answer.1["error"], "bad_request", "{}", answer.1);
    assert!(answer.1["message"].as_str().is_some_and(|m| !m.is_empty()));
    answer.1["field"].as_str().unwrap_or("<none>")
}

fn ids(items: &Value) -> Vec<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A sandbox with a Google account `g-1` and a Microsoft account `ms-1`, both made over HTTP.
async fn running() -> (RunningSandbox, String) {
    let run = start(Sandbox::new()).await.unwrap();
    let control = run.control_url();
    let (status, _) = post(
        &format!("{control}/accounts"),
        json!({"provider": "google", "id": "g-1", "email": "ann@example.test"}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = post(
        &format!("{control}/accounts"),
        json!({"provider": "microsoft", "id": "ms-1", "email": "bob@example.test"}),
    )
    .await;
    assert_eq!(status, 201);
    (run, control)
}

async fn token(control: &str, account: &str) -> String {
    let (status, body) = call(
        Method::POST,
        &format!("{control}/accounts/{account}/access-token"),
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn index_lists_routes_and_provider_urls() {
    let (run, control) = running().await;
    let (status, index) = call(Method::GET, &control, None).await;
    assert_eq!(status, 200);
    assert_eq!(index["google"]["api_base"], run.google_api_base());
    assert_eq!(index["google"]["token_url"], run.google_token_url());
    assert_eq!(index["google"]["authorize_url"], run.google_oauth_authorize_url());
    assert_eq!(index["microsoft"]["api_base"], run.graph_api_base());
    assert_eq!(index["microsoft"]["token_url"], run.microsoft_token_url());
    let routes = index["control"].as_array().unwrap();
    assert!(routes.len() > 15);
    assert!(
        routes
            .iter()
            .any(|r| r["method"] == "POST" && r["path"] == "/_sandbox/faults")
    );
    let (status, body) = call(Method::GET, &format!("{control}/nope"), None).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, body) = call(Method::DELETE, &format!("{control}/clock"), None).await;
    assert_eq!((status, body["error"].as_str()), (405, Some("method_not_allowed")));
    assert_eq!(call(Method::GET, &format!("{control}/"), None).await.0, 200);
    // The provider routes keep their own answers.
    assert_eq!(call(Method::GET, &run.google_token_url(), None).await.0, 405);
    run.stop().await;
}

#[tokio::test]
async fn accounts_are_added_listed_and_checked_field_by_field() {
    let (run, control) = running().await;
    let accounts = format!("{control}/accounts");
    // The same account again replaces it.
    let (status, body) = post(
        &accounts,
        json!({"provider": "google", "id": "g-1", "email": "ann2@example.test"}),
    )
    .await;
    assert_eq!((status, body["email"].as_str()), (200, Some("ann2@example.test")));
    let (status, body) = post(
        &accounts,
        json!({"provider": "microsoft", "id": "g-1", "email": "x@example.test"}),
    )
    .await;
    assert_eq!((status, body["field"].as_str()), (409, Some("id")));

    let bad = [
        (json!({"provider": "yahoo", "id": "y", "email": "a@b.test"}), "provider"),
        (json!({"id": "y", "email": "a@b.test"}), "provider"),
        (json!({"provider": "google", "email": "a@b.test"}), "id"),
        (json!({"provider": "google", "id": 7, "email": "a@b.test"}), "id"),
        (json!({"provider": "google", "id": "y"}), "email"),
        (
            json!({"provider": "google", "id": "y", "email": "not-an-address"}),
            "email",
        ),
        (
            json!({"provider": "google", "id": "y", "email": "a@b.test", "mail": "x"}),
            "mail",
        ),
    ];
    for (body, field) in bad {
        assert_eq!(field_of(&post(&accounts, body.clone()).await), field, "{body}");
    }
    for broken in ["{", "[1, 2]", "\"text\"", "null"] {
        let answer = call(Method::POST, &accounts, Some(broken)).await;
        assert_eq!(field_of(&answer), "<none>", "{broken}");
    }
    // An empty body reports the first missing field.
    assert_eq!(field_of(&call(Method::POST, &accounts, None).await), "provider");

    let (status, listed) = call(Method::GET, &accounts, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        listed["accounts"],
        json!([{"provider": "google", "id": "g-1", "email": "ann2@example.test", "calendars": []},
            {"provider": "microsoft", "id": "ms-1", "email": "bob@example.test", "calendars": []}])
    );
    let (status, _) = call(Method::POST, &format!("{accounts}/nobody/access-token"), None).await;
    assert_eq!(status, 404);
    run.stop().await;
}

#[tokio::test]
async fn google_calendars_events_and_series_made_over_http_are_served_by_the_api() {
    let (run, control) = running().await;
    let calendars = format!("{control}/google/calendars");
    let (status, body) = post(
        &calendars,
        json!({"account": "g-1", "id": "ann@example.test", "summary": "Ann", "primary": true}),
    )
    .await;
    assert_eq!((status, body["access_role"].as_str()), (201, Some("owner")));
    assert_eq!(
        field_of(&post(&calendars, json!({"account": "nobody", "id": "c"})).await),
        "account"
    );
    assert_eq!(
        field_of(&post(&calendars, json!({"account": "ms-1", "id": "c"})).await),
        "account"
    );
    assert_eq!(
        field_of(&post(&calendars, json!({"account": "g-1", "id": "c", "access_role": "admin"})).await),
        "access_role"
    );
    assert_eq!(
        field_of(&post(&calendars, json!({"account": "g-1", "id": "c", "primary": "yes"})).await),
        "primary"
    );

    let events = format!("{control}/google/calendars/ann%40example.test/events");
    let event = json!({"id": "abcde01", "summary": "Planning",
        "start": {"dateTime": "2026-01-07T09:00:00Z"}, "end": {"dateTime": "2026-01-07T10:00:00Z"}});
    let (status, body) = put(&events, event.clone()).await;
    assert_eq!(status, 201, "{body}");
    let etag = body["etag"].as_str().unwrap().to_owned();
    let (status, body) = put(&events, event.clone()).await;
    assert_eq!(status, 200);
    assert_ne!(body["etag"].as_str().unwrap(), etag);

    let bad = [
        (
            json!({"summary": "no id", "start": {"date": "2026-01-07"}, "end": {"date": "2026-01-08"}}),
            "id",
        ),
        (
            json!({"id": "", "start": {"date": "2026-01-07"}, "end": {"date": "2026-01-08"}}),
            "id",
        ),
        (json!({"id": "abcde02", "end": {"date": "2026-01-08"}}), "start"),
        (
            json!({"id": "abcde02", "start": {"date": "7 Jan"}, "end": {"date": "2026-01-08"}}),
            "start",
        ),
        (
            json!({"id": "abcde02", "start": {"date": "2026-01-07"}, "end": "tomorrow"}),
            "end",
        ),
        (
            json!({"id": "abcde02", "start": {"date": "2026-01-08"}, "end": {"date": "2026-01-07"}}),
            "end",
        ),
        (
            json!({"id": "abcde02", "start": {"date": "2026-01-07"}, "end": {"date": "2026-01-08"},
            "recurrence": ["RRULE:FREQ=DAILY"]}),
            "recurrence",
        ),
    ];
    for (body, field) in bad {
        assert_eq!(field_of(&put(&events, body.clone()).await), field, "{body}");
    }
    let (status, body) = put(&format!("{control}/google/calendars/nope/events"), event.clone()).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));

    let series = format!("{control}/google/calendars/ann%40example.test/series");
    let (status, body) = post(
        &series,
        json!({"id": "weekly01", "first_start": "2026-01-05T08:00:00Z", "duration_minutes": 30,
            "freq": "weekly", "count": 3, "fields": {"summary": "Standup"}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let good = json!({"id": "s1abc", "first_start": "2026-01-05T08:00:00Z", "duration_minutes": 30,
        "freq": "daily", "count": 3});
    for (key, value) in [
        ("first_start", json!("Monday")),
        ("duration_minutes", json!(0)),
        ("duration_minutes", json!(-5)),
        ("freq", json!("monthly")),
        ("count", json!(0)),
        ("count", json!(1_000_000)),
        ("fields", json!([1])),
        ("interval", json!(2)),
    ] {
        let mut body = good.clone();
        body[key] = value;
        assert_eq!(field_of(&post(&series, body).await), key);
    }

    let token = token(&control, "g-1").await;
    let list = format!(
        "{}/calendars/ann%40example.test/events?singleEvents=true",
        run.google_api_base()
    );
    let (status, page) = api_json(&list, &token, None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        ids(&page["items"]),
        [
            "abcde01",
            "weekly01_20260105T080000Z",
            "weekly01_20260112T080000Z",
            "weekly01_20260119T080000Z"
        ]
    );
    assert_eq!(page["items"][1]["summary"], "Standup");
    let sync = page["nextSyncToken"].as_str().unwrap().to_owned();

    let one = format!("{control}/google/calendars/ann%40example.test/events/abcde01");
    let (status, _) = call(Method::DELETE, &one, None).await;
    assert_eq!(status, 204);
    let (status, body) = call(Method::DELETE, &one, None).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let changes = format!(
        "{}/calendars/ann%40example.test/events?syncToken={sync}",
        run.google_api_base()
    );
    let (status, page) = api_json(&changes, &token, None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        page["items"],
        json!([{"kind": "calendar#event", "id": "abcde01", "status": "cancelled"}])
    );

    let (status, _) = call(Method::POST, &format!("{control}/google/expire-sync-tokens"), None).await;
    assert_eq!(status, 204);
    let (status, _) = api_json(&changes, &token, None).await;
    assert_eq!(status, 410);

    let (_, listed) = call(Method::GET, &format!("{control}/accounts"), None).await;
    assert_eq!(listed["accounts"][0]["calendars"][0]["events"], 1);
    run.stop().await;
}

#[tokio::test]
async fn graph_calendars_events_and_series_made_over_http_are_served_by_the_api() {
    let (run, control) = running().await;
    let calendars = format!("{control}/microsoft/calendars");
    let (status, body) = post(
        &calendars,
        json!({"account": "ms-1", "id": "AAMk-main", "name": "Calendar", "default": true}),
    )
    .await;
    assert_eq!((status, body["can_edit"].as_bool()), (201, Some(true)));
    let (status, _) = post(&calendars, json!({"account": "ms-1", "id": "AAMk-other"})).await;
    assert_eq!(status, 201);
    assert_eq!(
        field_of(&post(&calendars, json!({"account": "g-1", "id": "AAMk-x"})).await),
        "account"
    );
    assert_eq!(
        field_of(&post(&calendars, json!({"account": "ms-1", "id": "AAMk-x", "can_edit": 1})).await),
        "can_edit"
    );

    let events = format!("{control}/microsoft/calendars/AAMk-main/events");
    let event = json!({"id": "AAMk-ev1", "subject": "Review", "isAllDay": false,
        "start": {"dateTime": "2026-01-07T10:00:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2026-01-07T11:00:00.0000000", "timeZone": "W. Europe Standard Time"}});
    let (status, body) = put(&events, event.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert!(body["etag"].as_str().unwrap().starts_with("W/\""));
    let (status, body) = put(
        &format!("{control}/microsoft/calendars/AAMk-other/events"),
        event.clone(),
    )
    .await;
    assert_eq!((status, body["field"].as_str()), (409, Some("id")));

    let time = |t: &str| json!({"dateTime": t, "timeZone": "UTC"});
    let bad = [
        (
            json!({"start": time("2026-01-07T10:00:00"), "end": time("2026-01-07T11:00:00")}),
            "id",
        ),
        (
            json!({"id": "e2", "start": time("2026-01-07T10:00:00Z"), "end": time("2026-01-07T11:00:00")}),
            "start",
        ),
        (
            json!({"id": "e2", "start": {"dateTime": "2026-01-07T10:00:00", "timeZone": "Mars/Olympus"},
            "end": time("2026-01-07T11:00:00")}),
            "start",
        ),
        (json!({"id": "e2", "start": time("2026-01-07T10:00:00")}), "end"),
        (
            json!({"id": "e2", "start": time("2026-01-07T10:00:00"), "end": time("2026-01-07T09:00:00")}),
            "end",
        ),
        (
            json!({"id": "e2", "isAllDay": true, "start": time("2026-01-07T10:00:00"),
            "end": time("2026-01-08T00:00:00")}),
            "start",
        ),
        (
            json!({"id": "e2", "isAllDay": "no", "start": time("2026-01-07T10:00:00"),
            "end": time("2026-01-08T00:00:00")}),
            "isAllDay",
        ),
        (
            json!({"id": "e2", "recurrence": {}, "start": time("2026-01-07T10:00:00"),
            "end": time("2026-01-07T11:00:00")}),
            "recurrence",
        ),
    ];
    for (body, field) in bad {
        assert_eq!(field_of(&put(&events, body.clone()).await), field, "{body}");
    }

    let (status, body) = post(
        &format!("{control}/microsoft/calendars/AAMk-main/series"),
        json!({"id": "AAMk-series", "first_start": "2026-01-06T14:00:00Z", "duration_minutes": 60,
            "freq": "daily", "count": 2, "fields": {"subject": "Daily"}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let token = token(&control, "ms-1").await;
    let view = format!(
        "{}/me/calendars/AAMk-main/calendarView/delta?startDateTime=2026-01-01T00:00:00Z&endDateTime=2026-02-01T00:00:00Z",
        run.graph_api_base()
    );
    let (status, page) = api_json(&view, &token, Some("outlook.timezone=\"UTC\"")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        ids(&page["value"]),
        [
            "AAMk-ev1",
            "AAMk-series_20260106T140000Z",
            "AAMk-series_20260107T140000Z"
        ]
    );
    // Written in Berlin time, served in UTC.
    assert_eq!(page["value"][0]["start"]["dateTime"], "2026-01-07T09:00:00.0000000");
    assert_eq!(page["value"][0]["end"]["dateTime"], "2026-01-07T10:00:00.0000000");
    let delta = page["@odata.deltaLink"].as_str().unwrap().to_owned();

    let one = format!("{control}/microsoft/calendars/AAMk-main/events/AAMk-ev1");
    assert_eq!(call(Method::DELETE, &one, None).await.0, 204);
    assert_eq!(call(Method::DELETE, &one, None).await.0, 404);
    let (status, page) = api_json(&delta, &token, None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        page["value"],
        json!([{"id": "AAMk-ev1", "@removed": {"reason": "deleted"}}])
    );

    let (status, _) = call(Method::POST, &format!("{control}/microsoft/expire-delta-tokens"), None).await;
    assert_eq!(status, 204);
    let (status, _) = api_json(page["@odata.deltaLink"].as_str().unwrap(), &token, None).await;
    assert_eq!(status, 410);
    run.stop().await;
}

#[tokio::test]
async fn faults_posted_over_http_hit_the_next_api_call_and_control_calls_never_take_them() {
    let (run, control) = running().await;
    let faults = format!("{control}/faults");
    let google_token = token(&control, "g-1").await;
    let ms_token = token(&control, "ms-1").await;
    let (status, body) = post(&faults, json!({"provider": "google", "status": 429, "retry_after": 7})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["pending"], json!([{"status": 429, "retry_after": 7}]));
    let (status, _) = post(
        &faults,
        json!({"provider": "microsoft", "kind": "truncated", "count": 2}),
    )
    .await;
    assert_eq!(status, 201);

    // Control calls in between leave the faults waiting.
    let (_, listed) = call(Method::GET, &faults, None).await;
    assert_eq!(listed["google"].as_array().unwrap().len(), 1);
    assert_eq!(listed["microsoft"].as_array().unwrap().len(), 2);
    assert_eq!(call(Method::GET, &format!("{control}/accounts"), None).await.0, 200);

    let response = api_get(&run.google_userinfo_url(), &google_token, None).await;
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    let (status, me) = api_json(&run.google_userinfo_url(), &google_token, None).await;
    assert_eq!((status, me["sub"].as_str()), (200, Some("g-1")));

    let me_url = format!("{}/me", run.graph_api_base());
    for _ in 0..2 {
        let response = api_get(&me_url, &ms_token, None).await;
        assert_eq!(response.status().as_u16(), 200);
        assert!(response.json::<Value>().await.is_err(), "a truncated body");
    }
    assert_eq!(api_json(&me_url, &ms_token, None).await.0, 200);

    let (status, _) = post(&faults, json!({"provider": "google", "latency_ms": 5})).await;
    assert_eq!(status, 201);
    assert_eq!(call(Method::DELETE, &faults, None).await.0, 204);
    assert_eq!(
        call(Method::GET, &faults, None).await.1,
        json!({"google": [], "microsoft": []})
    );

    let bad = [
        (json!({"status": 503}), "provider"),
        (json!({"provider": "google"}), "status"),
        (json!({"provider": "google", "status": 200}), "status"),
        (json!({"provider": "google", "status": "503"}), "status"),
        (
            json!({"provider": "google", "status": 503, "kind": "truncated"}),
            "kind",
        ),
        (
            json!({"provider": "google", "retry_after": 3, "kind": "malformed"}),
            "retry_after",
        ),
        (json!({"provider": "google", "kind": "slow"}), "kind"),
        (json!({"provider": "google", "latency_ms": 3_600_000}), "latency_ms"),
        (json!({"provider": "google", "status": 503, "count": 0}), "count"),
        (
            json!({"provider": "google", "status": 503, "retry_after": -1}),
            "retry_after",
        ),
    ];
    for (body, field) in bad {
        assert_eq!(field_of(&post(&faults, body.clone()).await), field, "{body}");
    }
    assert_eq!(
        call(Method::GET, &faults, None).await.1,
        json!({"google": [], "microsoft": []})
    );
    run.stop().await;
}

#[tokio::test]
async fn the_request_log_leaves_out_control_calls_and_shows_only_token_fingerprints() {
    let (run, control) = running().await;
    let token = token(&control, "g-1").await;
    assert_eq!(
        api_json(&format!("{}?x=1", run.google_userinfo_url()), &token, None)
            .await
            .0,
        200
    );
    let (status, log) = call(Method::GET, &format!("{control}/requests"), None).await;
    assert_eq!(status, 200);
    let requests = log["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "{log}");
    assert_eq!(requests[0]["provider"], "google");
    assert_eq!(requests[0]["method"], "GET");
    assert_eq!(requests[0]["path"], "/google/oauth2/v3/userinfo");
    assert_eq!(requests[0]["query"], "x=1");
    let fingerprint = requests[0]["bearer"].as_str().unwrap();
    assert_eq!(fingerprint, format!("{}…", &token[..6]));
    assert!(!log.to_string().contains(&token));
    assert_eq!(run.sandbox.request_log().len(), 1);

    assert_eq!(call(Method::DELETE, &format!("{control}/requests"), None).await.0, 204);
    assert_eq!(
        call(Method::GET, &format!("{control}/requests"), None).await.1,
        json!({"requests": []})
    );
    run.stop().await;
}

#[tokio::test]
async fn the_clock_advances_and_tokens_are_revoked_over_http() {
    let (run, control) = running().await;
    let google_token = token(&control, "g-1").await;
    let (_, before) = call(Method::GET, &format!("{control}/clock"), None).await;
    let before: chrono::DateTime<chrono::Utc> = before["now"].as_str().unwrap().parse().unwrap();
    let advance = format!("{control}/clock/advance");
    let (status, after) = post(&advance, json!({"seconds": 3601})).await;
    assert_eq!(status, 200);
    let after: chrono::DateTime<chrono::Utc> = after["now"].as_str().unwrap().parse().unwrap();
    assert!(after - before >= chrono::Duration::seconds(3601));
    // The hour-long token has expired in sandbox time.
    assert_eq!(api_json(&run.google_userinfo_url(), &google_token, None).await.0, 401);
    for body in [
        json!({}),
        json!({"seconds": -1}),
        json!({"seconds": 1.5}),
        json!({"seconds": "60"}),
    ] {
        assert_eq!(field_of(&post(&advance, body.clone()).await), "seconds", "{body}");
    }

    let ms_token = token(&control, "ms-1").await;
    let me = format!("{}/me", run.graph_api_base());
    assert_eq!(api_json(&me, &ms_token, None).await.0, 200);
    let (status, body) = call(Method::POST, &format!("{control}/accounts/ms-1/revoke-tokens"), None).await;
    assert_eq!((status, body["revoked_grants"].as_u64()), (200, Some(1)));
    assert_eq!(api_json(&me, &ms_token, None).await.0, 401);
    let (status, _) = call(Method::POST, &format!("{control}/accounts/nobody/revoke-tokens"), None).await;
    assert_eq!(status, 404);
    run.stop().await;
}

#[tokio::test]
async fn no_input_makes_a_control_route_fail_other_than_cleanly() {
    let (run, control) = running().await;
    let _ = post(
        &format!("{control}/google/calendars"),
        json!({"account": "g-1", "id": "cal"}),
    )
    .await;
    let _ = post(
        &format!("{control}/microsoft/calendars"),
        json!({"account": "ms-1", "id": "cal"}),
    )
    .await;
    let routes = [
        (Method::POST, "accounts"),
        (Method::POST, "google/calendars"),
        (Method::PUT, "google/calendars/cal/events"),
        (Method::POST, "google/calendars/cal/series"),
        (Method::POST, "microsoft/calendars"),
        (Method::PUT, "microsoft/calendars/cal/events"),
        (Method::POST, "microsoft/calendars/cal/series"),
        (Method::POST, "faults"),
        (Method::POST, "clock/advance"),
    ];
    let bodies = [
        "",
        "{",
        "[]",
        "42",
        "{\"id\": null}",
        "{\"id\": {\"deep\": [1, 2, 3]}}",
        "{\"id\": \"x\", \"start\": [], \"end\": 5}",
        "{\"id\": \"x\", \"start\": {\"dateTime\": 5}, \"end\": {\"date\": null}}",
        "{\"id\": \"x\", \"start\": {\"dateTime\": \"2026-01-07T10:00:00\", \"timeZone\": 3}, \"end\": {}}",
        "{\"provider\": \"google\", \"status\": 18446744073709551616}",
        "{\"seconds\": 1e300}",
        "{\"id\": \"x\", \"first_start\": \"9999-12-31T23:59:59Z\", \"duration_minutes\": 20160, \"freq\": \"daily\", \"count\": 1000}",
    ];
    for (method, path) in &routes {
        for body in bodies {
            let url = format!("{control}/{path}");
            let (status, answer) = call(method.clone(), &url, Some(body)).await;
            assert!(
                matches!(status, 200 | 201 | 400),
                "{method} {path} {body}: {status} {answer}"
            );
            if status == 400 {
                assert_eq!(answer["error"], "bad_request");
            }
        }
    }
    // Still serving.
    assert_eq!(call(Method::GET, &control, None).await.0, 200);
    run.stop().await;
}

#[tokio::test]
async fn serve_on_binds_the_given_address_and_reports_a_taken_one() {
    let run = serve_on(Sandbox::new(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    assert_eq!(call(Method::GET, &run.control_url(), None).await.0, 200);
    let taken = run.local_addr();
    match serve_on(Sandbox::new(), taken).await {
        Err(SandboxError::Bind { addr, .. }) => assert_eq!(addr, taken),
        other => panic!("expected a bind error, got {other:?}"),
    }
    run.stop().await;
}

#[tokio::test]
async fn seed_dev_builds_a_dev_world_once_however_often_it_runs() {
    let sandbox = Sandbox::new();
    sandbox.seed_dev();
    let run = start(sandbox.clone()).await.unwrap();
    let control = run.control_url();
    let (_, before) = call(Method::GET, &format!("{control}/accounts"), None).await;
    let accounts = before["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 2);
    assert_eq!(accounts[0]["id"], "dev-google");
    assert_eq!(accounts[0]["email"], "dev-user@gmail.test");
    assert_eq!(accounts[1]["id"], "dev-microsoft");
    assert_eq!(accounts[1]["email"], "dev-user@outlook.test");
    let events = |account: &Value| -> u64 {
        account["calendars"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["events"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(accounts[0]["calendars"].as_array().unwrap().len(), 2);
    assert_eq!(accounts[1]["calendars"].as_array().unwrap().len(), 2);
    assert!(events(&accounts[0]) >= 14, "{before}");
    assert!(events(&accounts[1]) >= 9, "{before}");

    let google = token(&control, "dev-google").await;
    let list = format!(
        "{}/calendars/dev-user%40gmail.test/events?singleEvents=true&maxResults=2500",
        run.google_api_base()
    );
    let (status, page) = api_json(&list, &google, None).await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    assert!(items.iter().any(|e| e["recurringEventId"] == "devgseries01"));
    assert!(items.iter().any(|e| e["start"]["date"].is_string()));
    assert!(
        items
            .iter()
            .any(|e| e["attendees"].as_array().is_some_and(|a| a.len() > 1))
    );
    let sync = page["nextSyncToken"].as_str().unwrap().to_owned();
    let graph = token(&control, "dev-microsoft").await;
    let now = sandbox.now();
    let view = format!(
        "{}/me/calendars/AAMkAGdev-calendar/calendarView/delta?startDateTime={}&endDateTime={}",
        run.graph_api_base(),
        (now - chrono::Duration::days(8)).format("%Y-%m-%dT%H:%M:%SZ"),
        (now + chrono::Duration::days(15)).format("%Y-%m-%dT%H:%M:%SZ"),
    );
    let (status, page) = api_json(&view, &graph, None).await;
    assert_eq!(status, 200, "{page}");
    assert!(page["value"].as_array().unwrap().len() >= 8, "{page}");
    let delta = page["@odata.deltaLink"].as_str().unwrap().to_owned();

    sandbox.seed_dev();
    sandbox.seed_dev();
    let (_, after) = call(Method::GET, &format!("{control}/accounts"), None).await;
    assert_eq!(before, after);
    // Nothing changed for a syncing client either.
    let (status, page) = api_json(
        &format!(
            "{}/calendars/dev-user%40gmail.test/events?syncToken={sync}",
            run.google_api_base()
        ),
        &google,
        None,
    )
    .await;
    assert_eq!((status, page["items"].clone()), (200, json!([])));
    let (status, page) = api_json(&delta, &graph, None).await;
    assert_eq!((status, page["value"].clone()), (200, json!([])));
    run.stop().await;
}
