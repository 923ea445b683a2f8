//! Event writes and recurring series against the real HTTP sandbox: Google
//! insert/get/patch/delete with client ids, If-Match and 409/410; Graph
//! create with transactionId, If-Match and delete; series expanded into
//! instances (Google `singleEvents=true`) and occurrences (Graph views).
#![allow(clippy::unwrap_used, missing_docs)]

use chrono::{TimeZone as _, Utc};
use juy_sandbox::{Frequency, Provider, Recurrence, RunningSandbox, Sandbox, start};
use serde_json::{Value, json};

mod support;
use support::client;

async fn send(
    method: reqwest::Method,
    url: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client().request(method, url).bearer_auth(token);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn weekly(count: u32) -> Recurrence {
    Recurrence {
        first_start: Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap(),
        duration: chrono::Duration::hours(1),
        freq: Frequency::Weekly,
        count,
    }
}

async fn google() -> (RunningSandbox, String, String) {
    let sandbox = Sandbox::new();
    sandbox.add_account(Provider::Google, "g-1", "ann@example.com");
    sandbox.add_google_calendar("g-1", "ann@example.com", "Ann", "owner", true);
    sandbox.add_google_calendar("g-1", "ro@example.com", "Read only", "reader", false);
    let token = sandbox.mint_access_token("g-1");
    let running = start(sandbox).await.unwrap();
    let events = format!("{}/calendars/ann%40example.com/events", running.google_api_base());
    (running, token, events)
}

fn timed(id: &str) -> Value {
    json!({"id": id, "summary": "one", "start": {"dateTime": "2026-01-07T09:00:00Z"},
        "end": {"dateTime": "2026-01-07T10:00:00Z"}})
}

#[tokio::test]
async fn google_inserts_with_client_ids_patch_and_delete_under_if_match() {
    use reqwest::Method;
    let (sb, token, events) = google().await;
    let (status, _) = send(Method::GET, &format!("{events}?maxResults=10"), &token, &[], None).await;
    assert_eq!(status, 200);
    let sync = {
        let (_, page) = send(Method::GET, &events, &token, &[], None).await;
        page["nextSyncToken"].as_str().unwrap().to_owned()
    };

    let (status, body) = send(Method::POST, &events, &token, &[], Some(timed("BAD_id"))).await;
    assert_eq!(
        (status, body["error"]["errors"][0]["reason"].as_str()),
        (400, Some("invalid"))
    );
    let (status, created) = send(Method::POST, &events, &token, &[], Some(timed("abcde01234"))).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["organizer"]["email"], "ann@example.com");
    let (status, body) = send(Method::POST, &events, &token, &[], Some(timed("abcde01234"))).await;
    assert_eq!(
        (status, body["error"]["errors"][0]["reason"].as_str()),
        (409, Some("duplicate"))
    );
    let (status, _) = send(
        Method::POST,
        &format!("{}/calendars/ro%40example.com/events", sb.google_api_base()),
        &token,
        &[],
        Some(timed("abcde99999")),
    )
    .await;
    assert_eq!(status, 403);

    let one = format!("{events}/abcde01234");
    let etag = created["etag"].as_str().unwrap().to_owned();
    let (status, _) = send(
        Method::PATCH,
        &one,
        &token,
        &[("if-match", "\"0\"")],
        Some(json!({"summary": "x"})),
    )
    .await;
    assert_eq!(status, 412);
    let (status, patched) = send(
        Method::PATCH,
        &one,
        &token,
        &[("if-match", &etag)],
        Some(json!({"summary": "two"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(patched["summary"], "two");
    assert_eq!(patched["start"], created["start"], "untouched fields stay");
    assert_ne!(patched["etag"], created["etag"]);
    let (_, fetched) = send(Method::GET, &one, &token, &[], None).await;
    assert_eq!(fetched, patched);

    let (status, _) = send(Method::DELETE, &one, &token, &[("if-match", &etag)], None).await;
    assert_eq!(status, 412, "stale etag");
    let (status, _) = send(Method::DELETE, &one, &token, &[], None).await;
    assert_eq!(status, 204);
    let (status, body) = send(Method::DELETE, &one, &token, &[], None).await;
    assert_eq!(
        (status, body["error"]["errors"][0]["reason"].as_str()),
        (410, Some("deleted"))
    );
    let (status, _) = send(Method::DELETE, &format!("{events}/nosuchevent"), &token, &[], None).await;
    assert_eq!(status, 404);

    let (_, changes) = send(Method::GET, &format!("{events}?syncToken={sync}"), &token, &[], None).await;
    assert_eq!(
        changes["items"],
        json!([{"kind": "calendar#event", "id": "abcde01234", "status": "cancelled"}])
    );
}

#[tokio::test]
async fn google_expands_series_only_for_single_events_and_reports_their_deletion() {
    use reqwest::Method;
    let (sb, token, events) = google().await;
    sb.sandbox
        .put_google_recurring_event("ann@example.com", "series01", weekly(3), json!({"summary": "weekly"}));
    let (_, masters) = send(Method::GET, &events, &token, &[], None).await;
    assert_eq!(masters["items"].as_array().unwrap().len(), 1);
    assert_eq!(masters["items"][0]["recurrence"], json!(["RRULE:FREQ=WEEKLY;COUNT=3"]));

    let (_, page) = send(Method::GET, &format!("{events}?singleEvents=true"), &token, &[], None).await;
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "series01_20260105T090000Z",
            "series01_20260112T090000Z",
            "series01_20260119T090000Z"
        ]
    );
    assert_eq!(page["items"][1]["recurringEventId"], "series01");
    assert_eq!(
        page["items"][1]["originalStartTime"]["dateTime"],
        "2026-01-12T09:00:00Z"
    );
    let (status, instance) = send(
        Method::GET,
        &format!("{events}/series01_20260112T090000Z"),
        &token,
        &[],
        None,
    )
    .await;
    assert_eq!((status, &instance["summary"]), (200, &json!("weekly")));

    let sync = page["nextSyncToken"].as_str().unwrap();
    sb.sandbox.delete_google_event("ann@example.com", "series01");
    let (_, changes) = send(
        Method::GET,
        &format!("{events}?singleEvents=true&syncToken={sync}"),
        &token,
        &[],
        None,
    )
    .await;
    let items = changes["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|e| e["status"] == "cancelled"));
}

#[tokio::test]
async fn graph_creates_once_per_transaction_id_and_guards_changes_with_the_etag() {
    use reqwest::Method;
    let sandbox = Sandbox::new();
    sandbox.add_account(Provider::Microsoft, "ms-1", "bob@example.com");
    sandbox.add_graph_calendar("ms-1", "cal", "Calendar", true, true);
    let token = sandbox.mint_access_token("ms-1");
    let sb = start(sandbox).await.unwrap();
    let base = sb.graph_api_base();
    let event = json!({"subject": "one", "transactionId": "tx-1",
        "start": {"dateTime": "2026-01-07T10:00:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2026-01-07T11:00:00", "timeZone": "W. Europe Standard Time"}});
    let utc = [("prefer", "outlook.timezone=\"UTC\"")];
    let (status, created) = send(
        Method::POST,
        &format!("{base}/me/calendars/cal/events"),
        &token,
        &utc,
        Some(event.clone()),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["start"]["dateTime"], "2026-01-07T09:00:00.0000000",
        "stored in UTC"
    );
    let (status, again) = send(
        Method::POST,
        &format!("{base}/me/calendars/cal/events"),
        &token,
        &utc,
        Some(event),
    )
    .await;
    assert_eq!((status, &again["id"]), (201, &created["id"]));
    assert_eq!(sb.sandbox.graph_event_count("cal"), 1);

    let one = format!("{base}/me/events/{}", created["id"].as_str().unwrap());
    let etag = created["@odata.etag"].as_str().unwrap().to_owned();
    let (status, body) = send(
        Method::PATCH,
        &one,
        &token,
        &[("if-match", "W/\"old\"")],
        Some(json!({"subject": "x"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (412, Some("ErrorIrresolvableConflict"))
    );
    let (status, patched) = send(
        Method::PATCH,
        &one,
        &token,
        &[("if-match", &etag)],
        Some(json!({"subject": "two"})),
    )
    .await;
    assert_eq!((status, &patched["subject"]), (200, &json!("two")));
    let (_, fetched) = send(Method::GET, &one, &token, &utc, None).await;
    assert_eq!(fetched["subject"], "two");

    let (status, _) = send(Method::DELETE, &one, &token, &[("if-match", &etag)], None).await;
    assert_eq!(status, 412);
    let (status, _) = send(Method::DELETE, &one, &token, &[], None).await;
    assert_eq!(status, 204);
    let (status, body) = send(Method::DELETE, &one, &token, &[], None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("ErrorItemNotFound"))
    );
}

#[tokio::test]
async fn graph_views_show_occurrences_and_keep_all_day_events_at_midnight() {
    use reqwest::Method;
    let sandbox = Sandbox::new();
    sandbox.add_account(Provider::Microsoft, "ms-1", "bob@example.com");
    sandbox.add_graph_calendar("ms-1", "cal", "Calendar", true, true);
    sandbox.put_graph_recurring_event("cal", "series", weekly(2), json!({"subject": "weekly"}));
    sandbox.put_graph_event(
        "cal",
        json!({"id": "holiday", "isAllDay": true,
            "start": {"dateTime": "2026-01-09T00:00:00.0000000", "timeZone": "UTC"},
            "end": {"dateTime": "2026-01-10T00:00:00.0000000", "timeZone": "UTC"}}),
    );
    let token = sandbox.mint_access_token("ms-1");
    let sb = start(sandbox).await.unwrap();
    let view = format!(
        "{}/me/calendars/cal/calendarView/delta?startDateTime=2026-01-01T00:00:00Z&endDateTime=2026-02-01T00:00:00Z",
        sb.graph_api_base()
    );
    let (_, page) = send(Method::GET, &view, &token, &[], None).await;
    let value = page["value"].as_array().unwrap();
    let ids: Vec<&str> = value.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["holiday", "series_20260105T090000Z", "series_20260112T090000Z"]);
    assert_eq!(value[1]["type"], "occurrence");
    assert_eq!(value[1]["seriesMasterId"], "series");
    assert_eq!(
        value[1]["start"]["dateTime"], "2026-01-05T10:00:00.0000000",
        "Berlin time"
    );
    assert_eq!(
        value[0]["start"]["dateTime"], "2026-01-09T00:00:00.0000000",
        "a date stays a date"
    );

    let (status, master) = send(
        Method::GET,
        &format!("{}/me/events/series", sb.graph_api_base()),
        &token,
        &[],
        None,
    )
    .await;
    assert_eq!((status, &master["type"]), (200, &json!("seriesMaster")));
    assert_eq!(master["recurrence"]["range"]["numberOfOccurrences"], 2);
}
