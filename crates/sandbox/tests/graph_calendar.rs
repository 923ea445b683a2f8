//! Microsoft Graph calendars and calendarView/delta against the real HTTP
//! sandbox: maxpagesize pages chained by nextLink, a deltaLink on the last
//! page, changes with @removed, Windows zone names unless UTC is preferred,
//! and 410 syncStateNotFound.
#![allow(clippy::unwrap_used, missing_docs)]

use juy_sandbox::{Provider, RunningSandbox, Sandbox, start};
use serde_json::{Value, json};

mod support;
use support::*;

async fn token(sb: &RunningSandbox) -> String {
    let code = get_code(&sb.microsoft_authorize_url()).await;
    let (status, body) = exchange(&sb.microsoft_token_url(), &code, VERIFIER).await;
    assert_eq!(status, 200);
    body["access_token"].as_str().unwrap().to_owned()
}

fn event(id: &str, day: u32) -> Value {
    json!({"id": id, "subject": format!("event {id}"), "isAllDay": false, "showAs": "busy",
        "start": {"dateTime": format!("2026-01-{day:02}T09:00:00.0000000"), "timeZone": "UTC"},
        "end": {"dateTime": format!("2026-01-{day:02}T10:00:00.0000000"), "timeZone": "UTC"}})
}

async fn setup(events: usize) -> (RunningSandbox, String) {
    let sandbox = Sandbox::new();
    sandbox.add_account(Provider::Microsoft, "ms-1", "bob@example.com");
    sandbox.add_graph_calendar("ms-1", "AAMk-cal", "Calendar", true, true);
    for i in 0..events {
        sandbox.put_graph_event("AAMk-cal", event(&format!("ev{i:03}"), 1 + (i % 28) as u32));
    }
    let running = start(sandbox).await.unwrap();
    let token = token(&running).await;
    (running, token)
}

async fn get(url: &str, token: &str, prefer: &str) -> (u16, Value) {
    let response = client()
        .get(url)
        .bearer_auth(token)
        .header("prefer", prefer)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Follows nextLinks verbatim to the deltaLink; returns the items, the deltaLink and the page count.
async fn round(first: &str, token: &str, prefer: &str) -> (Vec<Value>, String, usize) {
    let mut items = Vec::new();
    let mut url = first.to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = get(&url, token, prefer).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        items.extend(page["value"].as_array().unwrap().clone());
        match (page.get("@odata.nextLink"), page.get("@odata.deltaLink")) {
            (Some(next), None) => url = next.as_str().unwrap().to_owned(),
            (None, Some(delta)) => return (items, delta.as_str().unwrap().to_owned(), pages),
            other => panic!("a page must carry exactly one of nextLink / deltaLink: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_delta_round_pages_by_maxpagesize_and_ends_with_a_delta_link() {
    let (sb, token) = setup(12).await;
    let first = format!(
        "{}/me/calendars/AAMk-cal/calendarView/delta?startDateTime=2026-01-01T00:00:00Z&endDateTime=2026-02-01T00:00:00Z",
        sb.graph_api_base()
    );
    let (items, _, pages) = round(&first, &token, "odata.maxpagesize=5, outlook.timezone=\"UTC\"").await;
    assert_eq!(items.len(), 12);
    assert_eq!(pages, 3);
    assert_eq!(items[0]["start"]["timeZone"], "UTC");

    // Without the UTC preference, times come in the calendar's Windows zone, with no offset.
    let (items, _, _) = round(&first, &token, "odata.maxpagesize=50").await;
    let first_event = items.iter().find(|e| e["id"] == "ev000").unwrap();
    assert_eq!(first_event["start"]["timeZone"], "W. Europe Standard Time");
    assert_eq!(first_event["start"]["dateTime"], "2026-01-01T10:00:00.0000000");

    let (status, calendars) = get(&format!("{}/me/calendars", sb.graph_api_base()), &token, "").await;
    assert_eq!(status, 200);
    assert_eq!(calendars["value"][0]["id"], "AAMk-cal");
    sb.stop().await;
}

#[tokio::test]
async fn the_next_round_brings_changes_and_removals_then_410_when_expired() {
    let (sb, token) = setup(3).await;
    let first = format!(
        "{}/me/calendars/AAMk-cal/calendarView/delta?startDateTime=2026-01-01T00:00:00Z&endDateTime=2026-02-01T00:00:00Z",
        sb.graph_api_base()
    );
    let (_, delta_link, _) = round(&first, &token, "odata.maxpagesize=2").await;
    sb.sandbox.put_graph_event(
        "AAMk-cal",
        json!({"id": "ev001", "subject": "moved",
        "start": {"dateTime": "2026-01-09T09:00:00.0000000", "timeZone": "UTC"},
        "end": {"dateTime": "2026-01-09T10:00:00.0000000", "timeZone": "UTC"}}),
    );
    sb.sandbox.delete_graph_event("AAMk-cal", "ev002");
    let (changes, next_delta, _) = round(&delta_link, &token, "odata.maxpagesize=2").await;
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes.iter().find(|e| e["id"] == "ev001").unwrap()["subject"], "moved");
    assert_eq!(
        changes.iter().find(|e| e["id"] == "ev002").unwrap()["@removed"]["reason"],
        "deleted"
    );

    let (nothing, _, _) = round(&next_delta, &token, "").await;
    assert!(nothing.is_empty());

    sb.sandbox.expire_graph_delta_tokens();
    let (status, body) = get(&next_delta, &token, "").await;
    assert_eq!(status, 410);
    assert_eq!(body["error"]["code"], "syncStateNotFound");
    let (status, _) = get(
        &format!("{}/me/calendars/AAMk-cal/calendarView/delta", sb.graph_api_base()),
        &token,
        "",
    )
    .await;
    assert_eq!(status, 400, "a first round needs its window");
    sb.stop().await;
}
