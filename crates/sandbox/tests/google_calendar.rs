//! Google Calendar v3 listings against the real HTTP sandbox: short pages,
//! sync tokens on the last page only, incremental changes with deletions,
//! and 410 fullSyncRequired.
#![allow(clippy::unwrap_used, missing_docs)]

use juy_sandbox::{Provider, RunningSandbox, Sandbox, start};
use serde_json::{Value, json};

mod support;
use support::*;

async fn token(sb: &RunningSandbox) -> String {
    let code = get_code(&sb.google_oauth_authorize_url()).await;
    let (status, body) = exchange(&sb.google_token_url(), &code, VERIFIER).await;
    assert_eq!(status, 200);
    body["access_token"].as_str().unwrap().to_owned()
}

fn event(id: &str, day: u32) -> Value {
    json!({"id": id, "summary": format!("event {id}"),
        "start": {"dateTime": format!("2026-01-{day:02}T09:00:00Z")},
        "end": {"dateTime": format!("2026-01-{day:02}T10:00:00Z")}})
}

async fn setup(events: usize) -> (RunningSandbox, String) {
    let sandbox = Sandbox::new();
    sandbox.add_account(Provider::Google, "g-sub-1", "ann@example.com");
    sandbox.add_account(Provider::Google, "g-sub-2", "other@example.com");
    sandbox.add_google_calendar("g-sub-1", "primary-ann", "Ann", "owner", true);
    sandbox.add_google_calendar("g-sub-2", "primary-other", "Other", "owner", true);
    for i in 0..events {
        sandbox.put_google_event("primary-ann", event(&format!("ev{i:03}"), 1 + (i % 28) as u32));
    }
    let running = start(sandbox).await.unwrap();
    let token = token(&running).await;
    (running, token)
}

async fn get(url: &str, token: &str) -> (u16, Value) {
    let response = client().get(url).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Follows a listing to its end; returns the items and the final sync token.
async fn list_all(base: &str, token: &str, query: &str) -> (Vec<Value>, String, usize) {
    let mut items = Vec::new();
    let mut url = format!("{base}/calendars/primary-ann/events?{query}");
    let mut pages = 0;
    loop {
        let (status, page) = get(&url, token).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        items.extend(page["items"].as_array().unwrap().clone());
        match (page.get("nextPageToken"), page.get("nextSyncToken")) {
            (Some(next), None) => {
                url = format!(
                    "{base}/calendars/primary-ann/events?maxResults=5&pageToken={}",
                    next.as_str().unwrap()
                )
            }
            (None, Some(sync)) => return (items, sync.as_str().unwrap().to_owned(), pages),
            other => panic!("a page must carry exactly one of nextPageToken / nextSyncToken: {other:?}"),
        }
    }
}

#[tokio::test]
async fn full_sync_pages_are_sometimes_short_and_only_the_last_carries_the_sync_token() {
    let (sb, token) = setup(23).await;
    let (items, _, pages) = list_all(&sb.google_api_base(), &token, "maxResults=5&singleEvents=true").await;
    let mut ids: Vec<&str> = items.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 23, "every event exactly once");
    ids.dedup();
    assert_eq!(ids.len(), 23);
    assert!(pages > 23 / 5, "short pages while more remain: {pages} pages");

    let (status, windowed) = get(
        &format!(
            "{}/calendars/primary-ann/events?timeMin=2026-01-05T00:00:00Z&timeMax=2026-01-06T00:00:00Z",
            sb.google_api_base()
        ),
        &token,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        windowed["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["start"]["dateTime"].as_str().unwrap().starts_with("2026-01-05"))
    );
    sb.stop().await;
}

#[tokio::test]
async fn incremental_sync_returns_changes_and_deletions_then_410_when_expired() {
    let (sb, token) = setup(3).await;
    let base = sb.google_api_base();
    let (_, sync, _) = list_all(&base, &token, "maxResults=5").await;

    sb.sandbox.put_google_event(
        "primary-ann",
        json!({"id": "ev001", "summary": "moved",
        "start": {"dateTime": "2026-01-09T09:00:00Z"}, "end": {"dateTime": "2026-01-09T10:00:00Z"}}),
    );
    sb.sandbox.delete_google_event("primary-ann", "ev002");
    sb.sandbox.put_google_event("primary-ann", event("ev100", 20));
    let (changes, next_sync, _) = list_all(&base, &token, &format!("syncToken={sync}")).await;
    let by_id = |id: &str| changes.iter().find(|e| e["id"] == id).unwrap().clone();
    assert_eq!(changes.len(), 3, "{changes:?}");
    assert_eq!(by_id("ev001")["summary"], "moved");
    assert_eq!(
        by_id("ev002"),
        json!({"kind": "calendar#event", "id": "ev002", "status": "cancelled"})
    );
    assert_eq!(by_id("ev100")["status"], "confirmed");

    let (nothing, _, _) = list_all(&base, &token, &format!("syncToken={next_sync}")).await;
    assert!(nothing.is_empty(), "nothing changed since");

    let (status, body) = get(
        &format!("{base}/calendars/primary-ann/events?syncToken={next_sync}&timeMin=2026-01-01T00:00:00Z"),
        &token,
    )
    .await;
    assert_eq!(status, 400, "{body}");

    sb.sandbox.expire_google_sync_tokens();
    let (status, body) = get(
        &format!("{base}/calendars/primary-ann/events?syncToken={next_sync}"),
        &token,
    )
    .await;
    assert_eq!(status, 410);
    assert_eq!(body["error"]["errors"][0]["reason"], "fullSyncRequired");
    sb.stop().await;
}

#[tokio::test]
async fn calendars_are_listed_per_account_and_others_are_not_found() {
    let (sb, token) = setup(0).await;
    let base = sb.google_api_base();
    let (status, list) = get(&format!("{base}/users/me/calendarList"), &token).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["primary-ann"]);
    let (status, _) = get(&format!("{base}/calendars/primary-other/events"), &token).await;
    assert_eq!(status, 404);
    let (status, body) = get(&format!("{base}/calendars/primary-ann/events"), "not-a-token").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["errors"][0]["reason"], "authError");
    let (status, _) = get(&format!("{base}/calendars/primary-ann/events?maxResults=5000"), &token).await;
    assert_eq!(status, 400);
    sb.stop().await;
}
