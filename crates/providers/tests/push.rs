//! Push channels against the sandbox over real HTTP, with a real webhook
//! receiver: Google channels (watch, ttl capped at a week, renew = new
//! channel + stop of the old one, stop idempotent), Graph subscriptions
//! (validation handshake, 10080-minute limit, renew in place, NotFound once
//! gone, delete idempotent), refusals, and CalDAV's "no push".
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use juy_providers::caldav::CalDavClient;
use juy_providers::google::{GoogleCalendarClient, GoogleOptions};
use juy_providers::graph::{GraphCalendarClient, GraphOptions};
use juy_providers::{CalendarProvider, ProviderError, PushChannel, UrlPolicy, WatchRequest};
use juy_sandbox::{Provider, RunningSandbox, Sandbox, start};
use serde_json::json;
use zeroize::Zeroizing;

mod sandbox_support;
use sandbox_support::*;

const WAIT: Duration = Duration::from_secs(10);

/// A webhook receiver on a free port: echoes Graph validation tokens (except
/// under `/mute`), answers 202 to everything else. Returns its base URL.
async fn receiver() -> String {
    async fn receive(uri: Uri, Query(query): Query<HashMap<String, String>>) -> Response {
        match query.get("validationToken").cloned() {
            Some(_) if uri.path() == "/mute" => StatusCode::NOT_FOUND.into_response(),
            Some(token) => (StatusCode::OK, [("content-type", "text/plain")], token).into_response(),
            None => StatusCode::ACCEPTED.into_response(),
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, Router::new().fallback(receive)).await.unwrap() });
    base
}

fn request(channel_id: &str, address: &str, secret: &str, expires_at: DateTime<Utc>) -> WatchRequest {
    WatchRequest {
        channel_id: channel_id.into(),
        address: address.into(),
        lifecycle_address: None,
        secret: Zeroizing::new(secret.into()),
        expires_at,
    }
}

fn near(a: DateTime<Utc>, b: DateTime<Utc>) -> bool {
    (a - b).num_seconds().abs() < 5
}

const GOOGLE_ACCOUNT: &str = "g-sub-1";
const GOOGLE_CAL: &str = "team#holidays@group.calendar.google.com";

async fn google() -> (RunningSandbox, GoogleCalendarClient) {
    let sandbox = Sandbox::new();
    sandbox.add_account(Provider::Google, GOOGLE_ACCOUNT, "ann@example.com");
    sandbox.add_google_calendar(GOOGLE_ACCOUNT, GOOGLE_CAL, "Team", "reader", false);
    let sb = start(sandbox).await.unwrap();
    let auth = SandboxAuthorizer::new(&sb.sandbox, GOOGLE_ACCOUNT);
    let client = GoogleCalendarClient::new(client(), &sb.google_api_base(), auth, GoogleOptions::default()).unwrap();
    (sb, client)
}

#[tokio::test]
async fn a_google_channel_is_opened_renewed_by_a_new_channel_and_stopped() {
    let (sb, client) = google().await;
    let hook = format!("{}/google", receiver().await);
    let now = sb.sandbox.now();

    let channel = client
        .watch(
            GOOGLE_CAL,
            &request("ch-1", &hook, "tok-1", now + chrono::Duration::hours(1)),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(channel.channel_id, "ch-1");
    assert!(channel.resource_id.is_some());
    assert!(near(channel.expires_at, now + chrono::Duration::hours(1)));
    let watches = sb.sandbox.push_watches();
    assert_eq!(watches.len(), 1);
    assert_eq!(
        watches[0].calendar.as_deref(),
        Some(GOOGLE_CAL),
        "percent-encoded path, real id"
    );
    assert_eq!(watches[0].secret.as_deref(), Some("tok-1"));
    assert_eq!(watches[0].address, hook);
    // The channel works: its sync message and a change reach the receiver.
    sb.sandbox.put_google_event(
        GOOGLE_CAL,
        json!({"id": "evt00001", "start": {"dateTime": "2026-01-05T09:00:00Z"},
            "end": {"dateTime": "2026-01-05T10:00:00Z"}}),
    );
    let deliveries = sb.sandbox.wait_for_push_deliveries(2, WAIT).await;
    assert!(deliveries.iter().all(|d| d.accepted()), "{deliveries:?}");

    // Renewing opens ch-2 and stops ch-1.
    let renewed = client
        .renew_watch(
            GOOGLE_CAL,
            &channel,
            &request("ch-2", &hook, "tok-2", now + chrono::Duration::days(30)),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renewed.channel_id, "ch-2");
    assert!(
        near(renewed.expires_at, now + chrono::Duration::days(7)),
        "Google caps channels at a week"
    );
    let ids: Vec<String> = sb.sandbox.push_watches().into_iter().map(|w| w.id).collect();
    assert_eq!(ids, ["ch-2"]);

    // A renewal whose old channel is already gone still succeeds.
    client.stop_watch(&renewed).await.unwrap();
    let third = client
        .renew_watch(
            GOOGLE_CAL,
            &renewed,
            &request("ch-3", &hook, "tok-3", now + chrono::Duration::hours(2)),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third.channel_id, "ch-3");
    assert!(matches!(
        client
            .renew_watch(
                GOOGLE_CAL,
                &third,
                &request("ch-3", &hook, "t", now + chrono::Duration::hours(2))
            )
            .await,
        Err(ProviderError::Rejected { status: 400, .. })
    ));

    // Stopping is idempotent.
    client.stop_watch(&third).await.unwrap();
    client.stop_watch(&third).await.unwrap();
    assert!(sb.sandbox.push_watches().is_empty());
    let stops = sb
        .sandbox
        .request_log()
        .into_iter()
        .filter(|r| r.path.ends_with("/channels/stop"))
        .count();
    assert_eq!(stops, 5, "one per renewal and per stop, answered or not");
    sb.stop().await;
}

#[tokio::test]
async fn google_watch_refusals_are_classified() {
    let (sb, client) = google().await;
    let hook = format!("{}/google", receiver().await);
    let now = sb.sandbox.now();
    let later = now + chrono::Duration::hours(1);
    assert_eq!(
        client
            .watch("nobody@example.com", &request("ch-1", &hook, "t", later))
            .await
            .unwrap_err(),
        ProviderError::NotFound
    );
    assert!(matches!(
        client
            .watch(
                GOOGLE_CAL,
                &request("ch-1", &hook, "t", now - chrono::Duration::minutes(1))
            )
            .await,
        Err(ProviderError::Rejected { status: 400, .. })
    ));
    client
        .watch(GOOGLE_CAL, &request("ch-1", &hook, "t", later))
        .await
        .unwrap();
    assert_eq!(
        client
            .watch(GOOGLE_CAL, &request("ch-1", &hook, "t", later))
            .await
            .unwrap_err(),
        ProviderError::Rejected {
            status: 400,
            reason: "channelIdNotUnique".into()
        }
    );
    // A channel Google no longer knows counts as stopped.
    let gone = PushChannel {
        channel_id: "never".into(),
        resource_id: Some("nope".into()),
        expires_at: later,
    };
    client.stop_watch(&gone).await.unwrap();
    sb.stop().await;
}

const MS_ACCOUNT: &str = "ms-1";
const MS_CAL: &str = "AAMkAGI2-cal=";

async fn graph() -> (RunningSandbox, GraphCalendarClient) {
    let sandbox = Sandbox::new();
    sandbox.add_account(Provider::Microsoft, MS_ACCOUNT, "bob@example.com");
    sandbox.add_graph_calendar(MS_ACCOUNT, MS_CAL, "Calendar", true, true);
    let sb = start(sandbox).await.unwrap();
    let auth = SandboxAuthorizer::new(&sb.sandbox, MS_ACCOUNT);
    let client = GraphCalendarClient::new(client(), &sb.graph_api_base(), auth, GraphOptions::default()).unwrap();
    (sb, client)
}

#[tokio::test]
async fn a_graph_subscription_is_validated_renewed_in_place_and_deleted() {
    let (sb, client) = graph().await;
    let base = receiver().await;
    let now = sb.sandbox.now();
    let mut watch = request(
        "ignored",
        &format!("{base}/graph"),
        "client-state",
        now + chrono::Duration::hours(1),
    );
    watch.lifecycle_address = Some(format!("{base}/lifecycle"));

    let channel = client.watch(MS_CAL, &watch).await.unwrap().unwrap();
    assert_ne!(channel.channel_id, "ignored", "Graph chooses the subscription id");
    assert_eq!(channel.resource_id, None);
    assert!(near(channel.expires_at, now + chrono::Duration::hours(1)));
    let watches = sb.sandbox.push_watches();
    assert_eq!(watches[0].id, channel.channel_id);
    assert_eq!(watches[0].calendar.as_deref(), Some(MS_CAL));
    assert_eq!(watches[0].secret.as_deref(), Some("client-state"));
    assert_eq!(watches[0].lifecycle_address, watch.lifecycle_address);
    let validations = sb.sandbox.push_deliveries();
    assert_eq!(validations.len(), 2, "notification and lifecycle URLs validated");
    assert!(validations.iter().all(|d| d.kind == "validation" && d.accepted()));

    // Thirty days is more than Graph allows: the client asks for the most it can.
    let far = request("x", "", "", now + chrono::Duration::days(30));
    let renewed = client.renew_watch(MS_CAL, &channel, &far).await.unwrap().unwrap();
    assert_eq!(renewed.channel_id, channel.channel_id, "renewed in place");
    assert!(renewed.expires_at > now + chrono::Duration::minutes(10070));
    assert!(renewed.expires_at <= now + chrono::Duration::minutes(10080));
    assert_eq!(sb.sandbox.push_watches()[0].expires_at, renewed.expires_at);

    sb.sandbox.put_graph_event(
        MS_CAL,
        json!({"id": "ev1", "start": {"dateTime": "2026-01-05T09:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2026-01-05T10:00:00", "timeZone": "UTC"}}),
    );
    let deliveries = sb.sandbox.wait_for_push_deliveries(3, WAIT).await;
    assert_eq!(deliveries[2].kind, "created");
    assert!(deliveries[2].accepted());

    client.stop_watch(&renewed).await.unwrap();
    client.stop_watch(&renewed).await.unwrap();
    assert!(sb.sandbox.push_watches().is_empty());
    let again = request("x", "", "", now + chrono::Duration::hours(2));
    assert_eq!(
        client.renew_watch(MS_CAL, &renewed, &again).await.unwrap_err(),
        ProviderError::NotFound,
        "gone: the caller subscribes anew"
    );
    sb.stop().await;
}

#[tokio::test]
async fn graph_subscriptions_that_fail_validation_are_refused() {
    let (sb, client) = graph().await;
    let base = receiver().await;
    let now = sb.sandbox.now();
    let muted = request("x", &format!("{base}/mute"), "cs", now + chrono::Duration::hours(1));
    assert_eq!(
        client.watch(MS_CAL, &muted).await.unwrap_err(),
        ProviderError::Rejected {
            status: 400,
            reason: "ValidationError".into()
        }
    );
    let past = request("x", &format!("{base}/graph"), "cs", now - chrono::Duration::hours(1));
    assert!(matches!(
        client.watch(MS_CAL, &past).await,
        Err(ProviderError::Rejected { status: 400, .. })
    ));
    let elsewhere = request("x", &format!("{base}/graph"), "cs", now + chrono::Duration::hours(1));
    assert_eq!(
        client.watch("AAMk-nope", &elsewhere).await.unwrap_err(),
        ProviderError::NotFound
    );
    assert!(sb.sandbox.push_watches().is_empty());
    sb.stop().await;
}

#[tokio::test]
async fn caldav_has_no_push_and_keeps_the_defaults() {
    let caldav = CalDavClient::with_password(
        client(),
        UrlPolicy::new(Vec::<String>::new()),
        "https://caldav.example.com/home/",
        "ann",
        "app-password",
    )
    .unwrap();
    let channel = PushChannel {
        channel_id: "c".into(),
        resource_id: None,
        expires_at: Utc::now(),
    };
    let watch = request(
        "c",
        "https://juy.example/hook",
        "s",
        Utc::now() + chrono::Duration::hours(1),
    );
    assert_eq!(
        caldav.watch("https://caldav.example.com/home/cal/", &watch).await,
        Ok(None)
    );
    assert_eq!(
        caldav
            .renew_watch("https://caldav.example.com/home/cal/", &channel, &watch)
            .await,
        Ok(None)
    );
    assert_eq!(caldav.stop_watch(&channel).await, Ok(()));
}
