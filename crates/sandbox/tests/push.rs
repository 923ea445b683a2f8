//! Push notifications against the real HTTP sandbox and a real receiver:
//! Google channels (`sync` first, then `exists` per change with increasing
//! message numbers, ttl capped at a week, stop, expiry on the sandbox clock),
//! Graph subscriptions (validation handshake before creation, 10080-minute
//! limit, created/updated/deleted notifications, renew, delete), lifecycle
//! notifications, recorded failures, and the `/_sandbox/push` control routes.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use juy_sandbox::{LifecycleEvent, Provider, PushDelivery, RunningSandbox, Sandbox, SandboxError, start};
use reqwest::Method;
use serde_json::{Value, json};

mod support;
use support::client;

const WAIT: Duration = Duration::from_secs(10);
/// How long to wait for a notification that must not come.
const QUIET: Duration = Duration::from_millis(300);

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn validation_token(&self) -> Option<String> {
        let query = self.query.as_deref()?;
        form_pairs(query)
            .into_iter()
            .find(|(k, _)| k == "validationToken")
            .map(|(_, v)| v)
    }
}

fn form_pairs(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{query}"))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// A webhook receiver: records every request; echoes Graph validation
/// tokens except under `/mute`; answers 202 otherwise.
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start() -> (Self, String) {
        let receiver = Self::default();
        let app = Router::new().fallback(receive).with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, base)
    }

    fn seen(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }
}

async fn receive(State(receiver): State<Receiver>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let received = Received {
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body,
    };
    let token = received.validation_token();
    let mute = received.path == "/mute";
    receiver.seen.lock().unwrap().push(received);
    match token {
        Some(_) if mute => StatusCode::NOT_FOUND.into_response(),
        Some(token) => (StatusCode::OK, [("content-type", "text/plain")], token).into_response(),
        None => StatusCode::ACCEPTED.into_response(),
    }
}

async fn send(method: Method, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = client().request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn google_event(id: &str) -> Value {
    json!({"id": id, "summary": "one", "start": {"dateTime": "2026-01-07T09:00:00Z"},
        "end": {"dateTime": "2026-01-07T10:00:00Z"}})
}

fn graph_event(id: &str) -> Value {
    json!({"id": id, "subject": "one",
        "start": {"dateTime": "2026-01-07T09:00:00.0000000", "timeZone": "UTC"},
        "end": {"dateTime": "2026-01-07T10:00:00.0000000", "timeZone": "UTC"}})
}

fn kinds(deliveries: &[PushDelivery]) -> Vec<&str> {
    deliveries.iter().map(|d| d.kind.as_str()).collect()
}

async fn google() -> (RunningSandbox, String) {
    let sandbox = Sandbox::new();
    sandbox.add_account(Provider::Google, "g-1", "ann@example.com");
    sandbox.add_google_calendar("g-1", "ann@example.com", "Ann", "owner", true);
    sandbox.add_google_calendar("g-1", "other@example.com", "Other", "owner", false);
    let token = sandbox.mint_access_token("g-1");
    (start(sandbox).await.unwrap(), token)
}

fn watch_url(sb: &RunningSandbox, calendar: &str) -> String {
    format!("{}/calendars/{calendar}/events/watch", sb.google_api_base())
}

#[tokio::test]
async fn a_google_channel_gets_sync_then_exists_for_every_change_until_stopped() {
    let (sb, token) = google().await;
    let (receiver, base) = Receiver::start().await;
    let address = format!("{base}/google");
    let (status, channel) = send(
        Method::POST,
        &watch_url(&sb, "ann%40example.com"),
        &token,
        Some(
            json!({"id": "ch-1", "type": "web_hook", "address": address, "token": "tok-1",
            "params": {"ttl": "3600"}}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{channel}");
    assert_eq!(channel["kind"], "api#channel");
    assert_eq!(channel["id"], "ch-1");
    assert_eq!(channel["token"], "tok-1");
    let resource_id = channel["resourceId"].as_str().unwrap().to_owned();
    assert!(
        channel["resourceUri"]
            .as_str()
            .unwrap()
            .contains("/calendars/ann%40example.com/events")
    );
    let expiration: i64 = channel["expiration"].as_str().unwrap().parse().unwrap();
    let expected = (sb.sandbox.now() + chrono::Duration::hours(1)).timestamp_millis();
    assert!((expiration - expected).abs() < 5_000, "ttl 3600 s");

    let deliveries = sb.sandbox.wait_for_push_deliveries(1, WAIT).await;
    assert_eq!(kinds(&deliveries), ["sync"]);
    assert!(deliveries[0].accepted(), "{deliveries:?}");
    assert_eq!(deliveries[0].message_number, Some(1));
    let sync = &receiver.seen()[0];
    assert_eq!(sync.path, "/google");
    assert!(sync.body.is_empty());
    assert_eq!(sync.header("x-goog-channel-id"), Some("ch-1"));
    assert_eq!(sync.header("x-goog-channel-token"), Some("tok-1"));
    assert_eq!(sync.header("x-goog-resource-id"), Some(resource_id.as_str()));
    assert_eq!(sync.header("x-goog-resource-state"), Some("sync"));
    assert_eq!(sync.header("x-goog-message-number"), Some("1"));
    assert!(sync.header("x-goog-resource-uri").is_some());
    assert!(sync.header("x-goog-channel-expiration").unwrap().ends_with(" GMT"));

    // API writes and control-made changes all notify; another calendar's do not.
    let events = format!("{}/calendars/ann%40example.com/events", sb.google_api_base());
    let (status, _) = send(Method::POST, &events, &token, Some(google_event("evt00001"))).await;
    assert_eq!(status, 200);
    sb.sandbox.put_google_event("ann@example.com", google_event("evt00002"));
    sb.sandbox
        .put_google_event("other@example.com", google_event("evt00003"));
    sb.sandbox.delete_google_event("ann@example.com", "evt00002");
    let (status, _) = send(Method::DELETE, &format!("{events}/evt00001"), &token, None).await;
    assert_eq!(status, 204);
    let deliveries = sb.sandbox.wait_for_push_deliveries(5, WAIT).await;
    assert_eq!(kinds(&deliveries), ["sync", "exists", "exists", "exists", "exists"]);
    assert!(deliveries.iter().all(PushDelivery::accepted));
    let mut numbers: Vec<u64> = deliveries.iter().filter_map(|d| d.message_number).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, [1, 2, 3, 4, 5], "message numbers count up");
    assert!(
        receiver.seen()[1..]
            .iter()
            .all(|r| r.header("x-goog-resource-state") == Some("exists") && r.body.is_empty())
    );
    assert_eq!(
        sb.sandbox.wait_for_push_deliveries(6, QUIET).await.len(),
        5,
        "nothing for the other calendar"
    );

    // Stopping needs the channel's resource id; afterwards nothing is sent.
    let stop = format!("{}/channels/stop", sb.google_api_base());
    let (status, body) = send(
        Method::POST,
        &stop,
        &token,
        Some(json!({"id": "ch-1", "resourceId": "nope"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["errors"][0]["reason"].as_str()),
        (404, Some("notFound"))
    );
    let (status, _) = send(
        Method::POST,
        &stop,
        &token,
        Some(json!({"id": "ch-1", "resourceId": resource_id})),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = send(
        Method::POST,
        &stop,
        &token,
        Some(json!({"id": "ch-1", "resourceId": resource_id})),
    )
    .await;
    assert_eq!(status, 404, "stopped once");
    sb.sandbox.put_google_event("ann@example.com", google_event("evt00004"));
    assert_eq!(sb.sandbox.wait_for_push_deliveries(6, QUIET).await.len(), 5);
    assert!(sb.sandbox.push_watches().is_empty());
    assert!(
        sb.sandbox
            .request_log()
            .iter()
            .any(|r| r.path.ends_with("/events/watch") && r.bearer.as_deref() == Some(token.as_str()))
    );
    sb.stop().await;
}

#[tokio::test]
async fn google_channels_are_capped_at_a_week_unique_and_silent_once_expired() {
    let (sb, token) = google().await;
    let (_receiver, base) = Receiver::start().await;
    let watch = |id: &str, ttl: Option<&str>| {
        let mut body = json!({"id": id, "type": "web_hook", "address": format!("{base}/google")});
        if let Some(ttl) = ttl {
            body["params"] = json!({"ttl": ttl});
        }
        body
    };
    let url = watch_url(&sb, "ann%40example.com");
    let (status, channel) = send(Method::POST, &url, &token, Some(watch("ch-long", Some("99999999")))).await;
    assert_eq!(status, 200, "{channel}");
    assert!(channel.get("token").is_none(), "no token asked for, none echoed");
    let expiration: i64 = channel["expiration"].as_str().unwrap().parse().unwrap();
    let week = (sb.sandbox.now() + chrono::Duration::days(7)).timestamp_millis();
    assert!((expiration - week).abs() < 5_000, "capped at a week");
    let (status, channel) = send(Method::POST, &url, &token, Some(watch("ch-default", None))).await;
    assert_eq!(status, 200);
    let expiration: i64 = channel["expiration"].as_str().unwrap().parse().unwrap();
    assert!((expiration - week).abs() < 5_000, "a week by default");

    let (status, body) = send(Method::POST, &url, &token, Some(watch("ch-long", None))).await;
    assert_eq!(
        (status, body["error"]["errors"][0]["reason"].as_str()),
        (400, Some("channelIdNotUnique"))
    );
    for bad in [
        json!({"id": "x", "type": "email", "address": format!("{base}/google")}),
        json!({"id": "x", "type": "web_hook", "address": "not a url"}),
        json!({"id": "", "type": "web_hook", "address": format!("{base}/google")}),
        json!({"id": "x", "type": "web_hook", "address": format!("{base}/google"), "params": {"ttl": "-1"}}),
    ] {
        assert_eq!(
            send(Method::POST, &url, &token, Some(bad.clone())).await.0,
            400,
            "{bad}"
        );
    }
    let (status, _) = send(
        Method::POST,
        &watch_url(&sb, "nobody%40example.com"),
        &token,
        Some(watch("ch-x", None)),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        send(Method::POST, &url, "bad-token", Some(watch("ch-y", None))).await.0,
        401
    );
    sb.sandbox.push_fault(
        Provider::Google,
        juy_sandbox::Fault::Status {
            code: 503,
            retry_after: None,
        },
    );
    assert_eq!(send(Method::POST, &url, &token, Some(watch("ch-z", None))).await.0, 503);

    let synced = sb.sandbox.wait_for_push_deliveries(2, WAIT).await;
    assert_eq!(kinds(&synced), ["sync", "sync"]);
    // A day later both channels are live; eight days later neither is.
    sb.sandbox.advance(chrono::Duration::days(1));
    sb.sandbox.put_google_event("ann@example.com", google_event("evt00001"));
    assert_eq!(
        kinds(&sb.sandbox.wait_for_push_deliveries(4, WAIT).await)[2..],
        ["exists", "exists"]
    );
    sb.sandbox.advance(chrono::Duration::days(7));
    sb.sandbox.put_google_event("ann@example.com", google_event("evt00002"));
    assert_eq!(sb.sandbox.wait_for_push_deliveries(5, QUIET).await.len(), 4);
    sb.stop().await;
}

async fn graph() -> (RunningSandbox, String) {
    let sandbox = Sandbox::new();
    sandbox.add_account(Provider::Microsoft, "ms-1", "bob@example.com");
    sandbox.add_graph_calendar("ms-1", "AAMk-cal", "Calendar", true, true);
    sandbox.add_graph_calendar("ms-1", "AAMk-other", "Other", true, false);
    sandbox.add_account(Provider::Microsoft, "ms-2", "eve@example.com");
    sandbox.add_graph_calendar("ms-2", "AAMk-eve", "Eve", true, true);
    let token = sandbox.mint_access_token("ms-1");
    (start(sandbox).await.unwrap(), token)
}

fn in_minutes(sb: &RunningSandbox, minutes: i64) -> String {
    (sb.sandbox.now() + chrono::Duration::minutes(minutes)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn subscription(base: &str, resource: &str, expiration: &str) -> Value {
    json!({"changeType": "created,updated,deleted", "notificationUrl": format!("{base}/graph"),
        "lifecycleNotificationUrl": format!("{base}/lifecycle"), "resource": resource,
        "expirationDateTime": expiration, "clientState": "cs-secret"})
}

#[tokio::test]
async fn a_graph_subscription_is_validated_then_told_of_created_updated_and_deleted_events() {
    let (sb, token) = graph().await;
    let (receiver, base) = Receiver::start().await;
    let subscriptions = format!("{}/subscriptions", sb.graph_api_base());
    let (status, created) = send(
        Method::POST,
        &subscriptions,
        &token,
        Some(subscription(
            &base,
            "me/calendars/AAMk-cal/events",
            &in_minutes(&sb, 60),
        )),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["resource"], "me/calendars/AAMk-cal/events");
    assert_eq!(created["changeType"], "created,updated,deleted");
    assert_eq!(created["clientState"], "cs-secret");
    assert_eq!(created["notificationUrl"], format!("{base}/graph"));
    let expires: DateTime<Utc> = created["expirationDateTime"].as_str().unwrap().parse().unwrap();
    assert!(
        (expires - sb.sandbox.now() - chrono::Duration::minutes(60))
            .num_seconds()
            .abs()
            < 5
    );

    // Both URLs were validated before the answer, with a token to echo.
    let validations = receiver.seen();
    assert_eq!(
        validations.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        ["/graph", "/lifecycle"]
    );
    assert!(
        validations
            .iter()
            .all(|r| r.validation_token().is_some_and(|t| t.contains(' ')))
    );
    let recorded = sb.sandbox.push_deliveries();
    assert_eq!(kinds(&recorded), ["validation", "validation"]);
    assert!(recorded.iter().all(PushDelivery::accepted));
    sb.sandbox.clear_push_deliveries();

    let events = format!("{}/me/calendars/AAMk-cal/events", sb.graph_api_base());
    let (status, made) = send(Method::POST, &events, &token, Some(graph_event("ignored"))).await;
    assert_eq!(status, 201);
    let made = made["id"].as_str().unwrap().to_owned();
    let event_url = format!("{}/me/events/{made}", sb.graph_api_base());
    assert_eq!(
        send(Method::PATCH, &event_url, &token, Some(json!({"subject": "moved"})))
            .await
            .0,
        200
    );
    assert_eq!(send(Method::DELETE, &event_url, &token, None).await.0, 204);
    sb.sandbox.put_graph_event("AAMk-other", graph_event("elsewhere"));
    sb.sandbox.put_graph_event("AAMk-cal", graph_event("seeded"));
    let deliveries = sb.sandbox.wait_for_push_deliveries(4, WAIT).await;
    let mut seen: Vec<(String, String)> = deliveries
        .iter()
        .map(|d| (d.kind.clone(), d.event_id.clone().unwrap()))
        .collect();
    seen.sort();
    let mut expected = vec![
        ("created".to_owned(), made.clone()),
        ("updated".to_owned(), made.clone()),
        ("deleted".to_owned(), made.clone()),
        ("created".to_owned(), "seeded".to_owned()),
    ];
    expected.sort();
    assert_eq!(seen, expected);
    assert!(deliveries.iter().all(|d| d.accepted() && d.channel_id == id));
    assert_eq!(
        sb.sandbox.wait_for_push_deliveries(5, QUIET).await.len(),
        4,
        "not for another calendar"
    );

    let notification = receiver
        .seen()
        .into_iter()
        .find(|r| {
            r.path == "/graph" && r.validation_token().is_none() && r.json()["value"][0]["changeType"] == "deleted"
        })
        .unwrap();
    let item = &notification.json()["value"][0];
    assert_eq!(item["subscriptionId"], id.as_str());
    assert_eq!(item["clientState"], "cs-secret");
    assert_eq!(item["resource"], format!("me/events/{made}"));
    assert_eq!(item["resourceData"]["id"], made.as_str());
    assert_eq!(item["resourceData"]["@odata.type"], "#Microsoft.Graph.Event");
    assert!(item["tenantId"].is_string());
    assert!(item["subscriptionExpirationDateTime"].is_string());
    assert_eq!(
        notification.header("content-type"),
        Some("application/json"),
        "notifications are JSON"
    );

    // Renewing moves the expiry; more than 10080 minutes is refused; delete ends it.
    let one = format!("{subscriptions}/{id}");
    let (status, renewed) = send(
        Method::PATCH,
        &one,
        &token,
        Some(json!({"expirationDateTime": in_minutes(&sb, 10000)})),
    )
    .await;
    assert_eq!(status, 200, "{renewed}");
    assert_eq!(renewed["id"], id.as_str());
    let (status, body) = send(
        Method::PATCH,
        &one,
        &token,
        Some(json!({"expirationDateTime": in_minutes(&sb, 10090)})),
    )
    .await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("InvalidRequest")));
    let eve = sb.sandbox.mint_access_token("ms-2");
    let (status, body) = send(Method::DELETE, &one, &eve, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("ResourceNotFound")),
        "not Eve's"
    );
    assert_eq!(send(Method::DELETE, &one, &token, None).await.0, 204);
    assert_eq!(send(Method::DELETE, &one, &token, None).await.0, 404);
    let (status, body) = send(
        Method::PATCH,
        &one,
        &token,
        Some(json!({"expirationDateTime": in_minutes(&sb, 60)})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("ResourceNotFound"))
    );
    sb.sandbox.put_graph_event("AAMk-cal", graph_event("after"));
    assert_eq!(sb.sandbox.wait_for_push_deliveries(5, QUIET).await.len(), 4);
    sb.stop().await;
}

#[tokio::test]
async fn graph_refuses_subscriptions_it_cannot_validate_or_that_live_too_long() {
    let (sb, token) = graph().await;
    let (receiver, base) = Receiver::start().await;
    let subscriptions = format!("{}/subscriptions", sb.graph_api_base());
    let post = |body: Value| send(Method::POST, &subscriptions, &token, Some(body));

    let mut mute = subscription(&base, "me/calendars/AAMk-cal/events", &in_minutes(&sb, 60));
    mute["notificationUrl"] = json!(format!("{base}/mute"));
    let (status, body) = post(mute).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("ValidationError")));
    assert_eq!(receiver.seen().len(), 1, "validated once, then refused");
    let failed = sb.sandbox.push_deliveries();
    assert_eq!(kinds(&failed), ["validation"]);
    assert!(!failed[0].accepted());
    assert_eq!(failed[0].status, Some(404));

    let (status, body) = post(subscription(
        &base,
        "me/calendars/AAMk-cal/events",
        &in_minutes(&sb, 10081),
    ))
    .await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("InvalidRequest")));
    let (status, _) = post(subscription(
        &base,
        "me/calendars/AAMk-cal/events",
        &in_minutes(&sb, -1),
    ))
    .await;
    assert_eq!(status, 400, "in the past");
    let (status, _) = post(subscription(
        &base,
        "me/calendars/AAMk-eve/events",
        &in_minutes(&sb, 60),
    ))
    .await;
    assert_eq!(status, 404, "another mailbox's calendar");
    let (status, _) = post(subscription(&base, "me/contacts", &in_minutes(&sb, 60))).await;
    assert_eq!(status, 400);
    let mut bad_type = subscription(&base, "me/events", &in_minutes(&sb, 60));
    bad_type["changeType"] = json!("created,moved");
    assert_eq!(post(bad_type).await.0, 400);
    assert_eq!(receiver.seen().len(), 1, "nothing validated for refused requests");
    assert!(sb.sandbox.push_watches().is_empty());

    // Unreachable receivers fail validation too.
    let (status, body) = post(subscription(
        "http://127.0.0.1:9",
        "me/calendars/AAMk-cal/events",
        &in_minutes(&sb, 60),
    ))
    .await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("ValidationError")));
    let failed = sb.sandbox.push_deliveries();
    assert_eq!(failed.last().unwrap().status, None);
    assert!(failed.last().unwrap().error.is_some());
    sb.stop().await;
}

#[tokio::test]
async fn change_types_filter_notifications_and_me_events_watches_every_calendar() {
    let (sb, token) = graph().await;
    let (_receiver, base) = Receiver::start().await;
    let subscriptions = format!("{}/subscriptions", sb.graph_api_base());
    let mut deletions = subscription(&base, "me/events", &in_minutes(&sb, 60));
    deletions["changeType"] = json!("deleted");
    deletions.as_object_mut().unwrap().remove("lifecycleNotificationUrl");
    let (status, created) = send(Method::POST, &subscriptions, &token, Some(deletions)).await;
    assert_eq!(status, 201, "{created}");
    sb.sandbox.clear_push_deliveries();

    sb.sandbox.put_graph_event("AAMk-other", graph_event("e1"));
    sb.sandbox.put_graph_event("AAMk-other", graph_event("e1"));
    sb.sandbox.put_graph_event("AAMk-eve", graph_event("e2"));
    sb.sandbox.delete_graph_event("AAMk-eve", "e2");
    sb.sandbox.delete_graph_event("AAMk-other", "e1");
    let deliveries = sb.sandbox.wait_for_push_deliveries(1, WAIT).await;
    assert_eq!(sb.sandbox.wait_for_push_deliveries(2, QUIET).await.len(), 1);
    assert_eq!(kinds(&deliveries), ["deleted"]);
    assert_eq!(
        deliveries[0].event_id.as_deref(),
        Some("e1"),
        "only the account's own calendars"
    );

    // Expired subscriptions are told nothing.
    sb.sandbox.put_graph_event("AAMk-cal", graph_event("e3"));
    sb.sandbox.advance(chrono::Duration::minutes(61));
    sb.sandbox.delete_graph_event("AAMk-cal", "e3");
    assert_eq!(sb.sandbox.wait_for_push_deliveries(2, QUIET).await.len(), 1);
    sb.stop().await;
}

#[tokio::test]
async fn lifecycle_notifications_go_to_the_lifecycle_url_and_subscription_removed_ends_it() {
    let (sb, token) = graph().await;
    let (receiver, base) = Receiver::start().await;
    let (status, created) = send(
        Method::POST,
        &format!("{}/subscriptions", sb.graph_api_base()),
        &token,
        Some(subscription(
            &base,
            "me/calendars/AAMk-cal/events",
            &in_minutes(&sb, 60),
        )),
    )
    .await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap().to_owned();
    sb.sandbox.clear_push_deliveries();

    sb.sandbox
        .fire_graph_lifecycle(&id, LifecycleEvent::ReauthorizationRequired)
        .unwrap();
    let deliveries = sb.sandbox.wait_for_push_deliveries(1, WAIT).await;
    assert_eq!(kinds(&deliveries), ["reauthorizationRequired"]);
    assert!(deliveries[0].accepted());
    let lifecycle = receiver.seen().into_iter().last().unwrap();
    assert_eq!(lifecycle.path, "/lifecycle");
    let item = &lifecycle.json()["value"][0];
    assert_eq!(item["subscriptionId"], id.as_str());
    assert_eq!(item["clientState"], "cs-secret");
    assert_eq!(item["lifecycleEvent"], "reauthorizationRequired");
    assert!(item["tenantId"].is_string() && item["subscriptionExpirationDateTime"].is_string());
    assert_eq!(sb.sandbox.push_watches().len(), 1, "still there");

    // Over the control API: subscriptionRemoved ends the subscription.
    let control = sb.control_url();
    let control = control.as_str();
    let fire = |event: Value, id: String| async move {
        let response = client()
            .post(format!("{control}/microsoft/subscriptions/{id}/lifecycle"))
            .json(&event)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.unwrap_or(Value::Null))
    };
    let (status, body) = fire(json!({"event": "sometime"}), id.clone()).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("event")));
    let (status, _) = fire(json!({"event": "subscriptionRemoved"}), id.clone()).await;
    assert_eq!(status, 202);
    let deliveries = sb.sandbox.wait_for_push_deliveries(2, WAIT).await;
    assert_eq!(kinds(&deliveries), ["reauthorizationRequired", "subscriptionRemoved"]);
    assert!(sb.sandbox.push_watches().is_empty());
    let (status, _) = fire(json!({"event": "missed"}), id.clone()).await;
    assert_eq!(status, 404);
    assert!(matches!(
        sb.sandbox.fire_graph_lifecycle(&id, LifecycleEvent::Missed),
        Err(SandboxError::UnknownSubscription(_))
    ));
    sb.stop().await;
}

#[tokio::test]
async fn failed_deliveries_are_recorded_and_the_control_api_lists_push_state() {
    let (sb, token) = google().await;
    // Nobody listens on the discard port.
    let (status, _) = send(
        Method::POST,
        &watch_url(&sb, "ann%40example.com"),
        &token,
        Some(
            json!({"id": "ch-dead", "type": "web_hook", "address": "http://127.0.0.1:9/hook",
            "token": "tok-0123456789abcdef"}),
        ),
    )
    .await;
    assert_eq!(status, 200);
    let deliveries = sb.sandbox.wait_for_push_deliveries(1, WAIT).await;
    assert_eq!(deliveries[0].status, None);
    assert!(deliveries[0].error.is_some());
    assert!(!deliveries[0].accepted());

    let control = sb.control_url();
    let listed: Value = client()
        .get(format!("{control}/push"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let channel = &listed["google_channels"][0];
    assert_eq!(channel["id"], "ch-dead");
    assert_eq!(channel["calendar"], "ann@example.com");
    assert_eq!(channel["secret"], "tok-01…", "secrets as fingerprints");
    assert!(listed["microsoft_subscriptions"].as_array().unwrap().is_empty());
    assert_eq!(listed["deliveries"][0]["kind"], "sync");
    assert_eq!(listed["deliveries"][0]["accepted"], false);

    sb.sandbox.put_google_event("ann@example.com", google_event("evt00001"));
    let waited: Value = client()
        .get(format!("{control}/push/deliveries?min=2&timeout_ms=10000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(waited["complete"], true);
    assert_eq!(waited["deliveries"][1]["message_number"], 2);
    let response = client()
        .get(format!("{control}/push/deliveries?min=9&timeout_ms=99999999"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let response = client()
        .delete(format!("{control}/push/deliveries"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    assert!(sb.sandbox.push_deliveries().is_empty());
    sb.stop().await;
}

#[tokio::test]
async fn without_a_runtime_changes_are_recorded_as_undeliverable() {
    let (sb, token) = google().await;
    let (status, _) = send(
        Method::POST,
        &watch_url(&sb, "ann%40example.com"),
        &token,
        Some(json!({"id": "ch-1", "type": "web_hook", "address": "http://127.0.0.1:9/hook"})),
    )
    .await;
    assert_eq!(status, 200);
    sb.sandbox.wait_for_push_deliveries(1, WAIT).await;
    let sandbox = sb.sandbox.clone();
    std::thread::spawn(move || sandbox.put_google_event("ann@example.com", google_event("evt00001")))
        .join()
        .unwrap();
    let deliveries = sb.sandbox.push_deliveries();
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[1].kind, "exists");
    assert!(deliveries[1].error.as_deref().unwrap().contains("runtime"));
    sb.stop().await;
}
