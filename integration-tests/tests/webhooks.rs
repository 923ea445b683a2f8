//! Push notifications end to end: a channel (Google) or subscription (Graph)
//! opened through the provider client against the sandbox, pointing at the
//! test server's webhooks, stored in `push_channels`; a change in the
//! sandbox reaches the webhook, which makes the calendar due. Forged tokens
//! and clientStates and unknown channels schedule nothing; the Graph
//! validation handshake is echoed safely; lifecycle notifications mark the
//! subscription expired and make the calendar due. The webhooks need no
//! bearer token.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] functions

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl as _;
use juy_api::connect::Integrations;
use juy_api::pb::v1 as pb;
use juy_domain::{AccountId, CalendarId, Provider, SystemClock, UserId};
use juy_integration_tests::providers::{self, sandbox_env};
use juy_integration_tests::{TestServer, authed, http};
use juy_providers::{CalendarProvider, PushChannel, WatchRequest};
use juy_sandbox::{LifecycleEvent, PushDelivery, RunningSandbox, Sandbox};
use juy_store::push_channels;
use serde_json::{Value, json};
use zeroize::Zeroizing;

const GOOGLE_SUB: &str = "google-sub-ada";
const GOOGLE_CAL: &str = "ada@gmail.test";
const MS_ID: &str = "ms-id-ada";
const MS_CAL: &str = "AAMkCal1";
const USER: &str = "ada";
const WAIT: Duration = Duration::from_secs(10);

async fn sandbox() -> RunningSandbox {
    let sandbox = Sandbox::new();
    sandbox.add_account(juy_sandbox::Provider::Google, GOOGLE_SUB, GOOGLE_CAL);
    sandbox.add_google_calendar(GOOGLE_SUB, GOOGLE_CAL, "Ada", "owner", true);
    sandbox.add_account(juy_sandbox::Provider::Microsoft, MS_ID, "ada@outlook.test");
    sandbox.add_graph_calendar(MS_ID, MS_CAL, "Calendar", true, true);
    juy_sandbox::start(sandbox).await.unwrap()
}

/// Links `provider`'s sandbox account for `USER` through the API; answers
/// the account and the calendar named `display_name`.
async fn link(server: &TestServer, provider: pb::Provider, display_name: &str) -> (AccountId, CalendarId) {
    let token = server.token(USER, &[]);
    let mut client = server.calendar().await;
    let started = client
        .start_connect(authed(
            pb::StartConnectRequest {
                provider: provider.into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let redirect = providers::authorize(&started.authorization_url).await;
    let linked = client
        .complete_connect(authed(
            pb::CompleteConnectRequest {
                state: redirect.state,
                code: redirect.code,
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let uuid = |name: &str, prefix: &str| name.strip_prefix(prefix).unwrap().parse().unwrap();
    let account = AccountId(uuid(&linked.connection.unwrap().name, "connections/"));
    let calendar = linked
        .calendars
        .iter()
        .find(|c| c.display_name == display_name)
        .unwrap();
    (account, CalendarId(uuid(&calendar.name, "calendars/")))
}

fn user() -> UserId {
    UserId::new(USER).unwrap()
}

fn client_for(server: &TestServer, account: AccountId, provider: Provider) -> Box<dyn CalendarProvider> {
    let integrations =
        Integrations::new(server.integrations.clone(), server.store.clone(), Arc::new(SystemClock)).unwrap();
    integrations.client_for(&user(), account, provider, None).unwrap()
}

fn watch_request(address: String, lifecycle: Option<String>, secret: &str) -> WatchRequest {
    WatchRequest {
        channel_id: uuid::Uuid::new_v4().to_string(),
        address,
        lifecycle_address: lifecycle,
        secret: Zeroizing::new(secret.to_owned()),
        expires_at: Utc::now() + chrono::Duration::days(1),
    }
}

async fn save(
    server: &TestServer,
    account: AccountId,
    calendar: CalendarId,
    provider: Provider,
    channel: &PushChannel,
    secret: &str,
) {
    let mut conn = server.store.conn().await.unwrap();
    push_channels::save(
        &mut conn,
        &user(),
        calendar,
        account,
        provider,
        &channel.channel_id,
        channel.resource_id.as_deref(),
        secret,
        channel.expires_at,
    )
    .await
    .unwrap();
}

/// A number from SQL, e.g. `(SELECT count(*) FROM calendars)`.
async fn scalar(server: &TestServer, expression: &str) -> i64 {
    let mut conn = server.store.conn().await.unwrap();
    diesel::select(diesel::dsl::sql::<BigInt>(expression))
        .get_result(&mut *conn)
        .await
        .unwrap()
}

/// Sets the calendar's next sync a day ahead, as after a successful sync.
async fn park(server: &TestServer, calendar: CalendarId) {
    let mut conn = server.store.conn().await.unwrap();
    let updated = diesel::sql_query(format!(
        "UPDATE calendars SET next_sync_at = now() + interval '1 day' WHERE id = '{}'",
        calendar.0
    ))
    .execute(&mut *conn)
    .await
    .unwrap();
    assert_eq!(updated, 1);
}

/// Whether the calendar is due for a sync now.
async fn due(server: &TestServer, calendar: CalendarId) -> bool {
    scalar(
        server,
        &format!(
            "(SELECT count(*) FROM calendars WHERE id = '{}' AND next_sync_at <= now())",
            calendar.0
        ),
    )
    .await
        == 1
}

/// Whether the stored channel is marked expired.
async fn channel_expired(server: &TestServer, channel_id: &str) -> bool {
    scalar(
        server,
        &format!("(SELECT count(*) FROM push_channels WHERE channel_id = '{channel_id}' AND expires_at <= now())"),
    )
    .await
        == 1
}

/// The deliveries once there are `count`, checking each was accepted.
async fn accepted(sandbox: &RunningSandbox, count: usize) -> Vec<PushDelivery> {
    let deliveries = sandbox.sandbox.wait_for_push_deliveries(count, WAIT).await;
    assert_eq!(deliveries.len(), count, "{deliveries:?}");
    assert!(deliveries.iter().all(PushDelivery::accepted), "{deliveries:?}");
    deliveries
}

fn google_event(id: &str) -> Value {
    json!({"id": id, "summary": "standup", "start": {"dateTime": "2026-01-07T09:00:00Z"},
        "end": {"dateTime": "2026-01-07T10:00:00Z"}})
}

async fn post_google(server: &TestServer, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = http().post(server.rest("/v1/calendar/webhooks/google"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

async fn problem_status(response: reqwest::Response) -> u16 {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "status {status}"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["status"], status);
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_google_change_makes_the_calendar_due_and_forged_messages_do_not() {
    let sandbox = sandbox().await;
    let server = TestServer::start_with(sandbox_env(&sandbox)).await;
    let (account, calendar) = link(&server, pb::Provider::Google, "Ada").await;
    let secret = "google-channel-token-0123456789abcdef";
    let client = client_for(&server, account, Provider::Google);
    let channel = client
        .watch(
            GOOGLE_CAL,
            &watch_request(server.rest("/v1/calendar/webhooks/google"), None, secret),
        )
        .await
        .unwrap()
        .expect("Google has push");
    save(&server, account, calendar, Provider::Google, &channel, secret).await;
    let deliveries = accepted(&sandbox, 1).await;
    assert_eq!(deliveries[0].kind, "sync", "the first message is acknowledged");

    // A change at Google: the webhook is told and the calendar falls due.
    park(&server, calendar).await;
    assert!(!due(&server, calendar).await);
    sandbox.sandbox.put_google_event(GOOGLE_CAL, google_event("evt00001"));
    let deliveries = accepted(&sandbox, 2).await;
    assert_eq!(deliveries[1].kind, "exists");
    assert_eq!(deliveries[1].status, Some(200));
    assert!(due(&server, calendar).await, "scheduled before the webhook answered");

    // Forgeries and strangers schedule nothing.
    park(&server, calendar).await;
    let id = channel.channel_id.as_str();
    let resource = channel.resource_id.as_deref().unwrap();
    let forged = post_google(
        &server,
        &[
            ("x-goog-channel-id", id),
            ("x-goog-channel-token", "not-the-token"),
            ("x-goog-resource-id", resource),
            ("x-goog-resource-state", "exists"),
            ("x-goog-message-number", "99"),
        ],
    )
    .await;
    assert_eq!(problem_status(forged).await, 403);
    let tokenless = post_google(
        &server,
        &[("x-goog-channel-id", id), ("x-goog-resource-state", "exists")],
    )
    .await;
    assert_eq!(problem_status(tokenless).await, 403);
    let unknown = post_google(
        &server,
        &[
            ("x-goog-channel-id", "some-other-channel"),
            ("x-goog-channel-token", secret),
            ("x-goog-resource-state", "exists"),
        ],
    )
    .await;
    assert_eq!(problem_status(unknown).await, 404);
    let stateless = post_google(&server, &[("x-goog-channel-id", id), ("x-goog-channel-token", secret)]).await;
    assert_eq!(problem_status(stateless).await, 400);
    let sync = post_google(
        &server,
        &[
            ("x-goog-channel-id", "some-other-channel"),
            ("x-goog-resource-state", "sync"),
        ],
    )
    .await;
    assert_eq!(sync.status().as_u16(), 200, "sync asks for nothing");
    assert!(!due(&server, calendar).await, "nothing scheduled by any of them");

    // The real token, sent by hand, works like Google's message (no bearer token needed).
    let genuine = post_google(
        &server,
        &[
            ("x-goog-channel-id", id),
            ("x-goog-channel-token", secret),
            ("x-goog-resource-state", "exists"),
        ],
    )
    .await;
    assert_eq!(genuine.status().as_u16(), 200);
    assert!(due(&server, calendar).await);

    // Once the channel is replaced, the old one no longer verifies.
    let renewed = client
        .renew_watch(
            GOOGLE_CAL,
            &channel,
            &watch_request(
                server.rest("/v1/calendar/webhooks/google"),
                None,
                "new-secret-0123456789",
            ),
        )
        .await
        .unwrap()
        .unwrap();
    save(
        &server,
        account,
        calendar,
        Provider::Google,
        &renewed,
        "new-secret-0123456789",
    )
    .await;
    let old = post_google(
        &server,
        &[
            ("x-goog-channel-id", id),
            ("x-goog-channel-token", secret),
            ("x-goog-resource-state", "exists"),
        ],
    )
    .await;
    assert_eq!(problem_status(old).await, 404);
    // The rest of the API still wants a token.
    let listing = http().get(server.rest("/v1/calendar/calendars")).send().await.unwrap();
    assert_eq!(listing.status().as_u16(), 401);
    server.stop().await;
    sandbox.stop().await;
}

async fn post_graph(server: &TestServer, path_and_query: &str, body: &str) -> reqwest::Response {
    http()
        .post(server.rest(path_and_query))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// Links the Microsoft account and subscribes its calendar through the
/// provider client (the sandbox validates both webhook URLs first).
async fn subscribed(server: &TestServer, sandbox: &RunningSandbox, secret: &str) -> (CalendarId, PushChannel) {
    let (account, calendar) = link(server, pb::Provider::Microsoft, "Calendar").await;
    let client = client_for(server, account, Provider::Microsoft);
    let channel = client
        .watch(
            MS_CAL,
            &watch_request(
                server.rest("/v1/calendar/webhooks/microsoft"),
                Some(server.rest("/v1/calendar/webhooks/microsoft/lifecycle")),
                secret,
            ),
        )
        .await
        .unwrap()
        .expect("Graph has push");
    save(server, account, calendar, Provider::Microsoft, &channel, secret).await;
    let validations = accepted(sandbox, 2).await;
    assert!(validations.iter().all(|d| d.kind == "validation"));
    sandbox.sandbox.clear_push_deliveries();
    (calendar, channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_notifications_that_verify_make_the_calendar_due_and_forgeries_are_ignored() {
    let sandbox = sandbox().await;
    let server = TestServer::start_with(sandbox_env(&sandbox)).await;
    let secret = "graph-client-state-0123456789abcdef";
    let (calendar, channel) = subscribed(&server, &sandbox, secret).await;

    park(&server, calendar).await;
    sandbox.sandbox.put_graph_event(
        MS_CAL,
        json!({"id": "ev1", "subject": "standup",
            "start": {"dateTime": "2026-01-07T09:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2026-01-07T10:00:00", "timeZone": "UTC"}}),
    );
    let deliveries = accepted(&sandbox, 1).await;
    assert_eq!(
        (deliveries[0].kind.as_str(), deliveries[0].status),
        ("created", Some(202))
    );
    assert!(due(&server, calendar).await);

    // A forged clientState, an unknown subscription: accepted (202), ignored.
    park(&server, calendar).await;
    let item = |subscription: &str, client_state: &str| {
        json!({"subscriptionId": subscription, "clientState": client_state, "changeType": "updated",
            "resource": "me/events/ev1", "resourceData": {"id": "ev1"}})
    };
    let sub = channel.channel_id.as_str();
    for batch in [
        json!({"value": [item(sub, "forged")]}),
        json!({"value": [item("another-subscription", secret)]}),
        json!({"value": [{"clientState": secret}]}),
        json!({"value": []}),
    ] {
        let response = post_graph(&server, "/v1/calendar/webhooks/microsoft", &batch.to_string()).await;
        assert_eq!(response.status().as_u16(), 202, "{batch}");
    }
    assert!(!due(&server, calendar).await);
    for broken in ["not json", r#"{"value": "x"}"#, "[]"] {
        let response = post_graph(&server, "/v1/calendar/webhooks/microsoft", broken).await;
        assert_eq!(problem_status(response).await, 400, "{broken}");
    }
    assert!(!due(&server, calendar).await);

    // A batch mixing a forgery with a genuine notification schedules the genuine one.
    let mixed = json!({"value": [item(sub, "forged"), item(sub, secret)]});
    let response = post_graph(&server, "/v1/calendar/webhooks/microsoft", &mixed.to_string()).await;
    assert_eq!(response.status().as_u16(), 202);
    assert!(due(&server, calendar).await);
    server.stop().await;
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_validation_handshake_echoes_only_safe_tokens() {
    let server = TestServer::start().await;
    let doc: Value = http()
        .get(server.rest("/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/v1/calendar/webhooks/google",
        "/v1/calendar/webhooks/microsoft",
        "/v1/calendar/webhooks/microsoft/lifecycle",
    ] {
        let operation = &doc["paths"][path]["post"];
        assert!(operation.is_object(), "{path} documented");
        assert!(operation.get("security").is_none(), "{path} needs no bearer token");
    }
    for path in [
        "/v1/calendar/webhooks/microsoft",
        "/v1/calendar/webhooks/microsoft/lifecycle",
    ] {
        let token = "Validation: Testing client application reachability Request-Id: 9f3c+é";
        let query = form_urlencoded_token(token);
        let response = post_graph(&server, &format!("{path}?{query}"), "").await;
        assert_eq!(response.status().as_u16(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert_eq!(response.text().await.unwrap(), token);

        let control = post_graph(&server, &format!("{path}?validationToken=a%0D%0ASet-Cookie:x"), "").await;
        assert_eq!(problem_status(control).await, 400);
        let long = post_graph(&server, &format!("{path}?validationToken={}", "a".repeat(1025)), "").await;
        assert_eq!(problem_status(long).await, 400);
    }
    server.stop().await;
}

fn form_urlencoded_token(token: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("validationToken", token)
        .finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_notifications_mark_the_subscription_expired_and_make_the_calendar_due() {
    let sandbox = sandbox().await;
    let server = TestServer::start_with(sandbox_env(&sandbox)).await;
    let secret = "graph-client-state-lifecycle-0123456789";
    let (calendar, channel) = subscribed(&server, &sandbox, secret).await;
    let sub = channel.channel_id.as_str();

    // Forged: nothing happens.
    park(&server, calendar).await;
    let forged = json!({"value": [{"subscriptionId": sub, "clientState": "forged",
        "lifecycleEvent": "subscriptionRemoved"}]});
    let response = post_graph(
        &server,
        "/v1/calendar/webhooks/microsoft/lifecycle",
        &forged.to_string(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 202);
    assert!(!due(&server, calendar).await);
    assert!(!channel_expired(&server, sub).await);

    // `missed`: a sync catches up; the subscription stays as it is.
    sandbox
        .sandbox
        .fire_graph_lifecycle(sub, LifecycleEvent::Missed)
        .unwrap();
    let deliveries = accepted(&sandbox, 1).await;
    assert_eq!(
        (deliveries[0].kind.as_str(), deliveries[0].status),
        ("missed", Some(202))
    );
    assert!(due(&server, calendar).await);
    assert!(!channel_expired(&server, sub).await);

    // `reauthorizationRequired`: expired at once, so the engine renews it, and a sync.
    park(&server, calendar).await;
    sandbox
        .sandbox
        .fire_graph_lifecycle(sub, LifecycleEvent::ReauthorizationRequired)
        .unwrap();
    accepted(&sandbox, 2).await;
    assert!(due(&server, calendar).await);
    assert!(channel_expired(&server, sub).await);
    let mut conn = server.store.conn().await.unwrap();
    let renewals = push_channels::due_for_renewal(&mut conn, Utc::now(), 10).await.unwrap();
    assert_eq!(renewals.len(), 1);
    assert_eq!(renewals[0].channel_id, sub);
    drop(conn);

    // `subscriptionRemoved` the same way (and Graph forgets the subscription).
    park(&server, calendar).await;
    sandbox
        .sandbox
        .fire_graph_lifecycle(sub, LifecycleEvent::SubscriptionRemoved)
        .unwrap();
    accepted(&sandbox, 3).await;
    assert!(due(&server, calendar).await);
    assert!(sandbox.sandbox.push_watches().is_empty());
    server.stop().await;
    sandbox.stop().await;
}
