//! Linking accounts end to end through the public API, against the provider
//! sandbox (Google, Microsoft) and a real Radicale (CalDAV): the OAuth flow
//! and its `state` rules, token refresh, rotation, single-flight refresh,
//! `invalid_grant` → `reauth_required`, revocation (nothing stored, nothing
//! requested afterwards), and CalDAV errors that name their cause.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] functions

use std::sync::Arc;

use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl as _;
use juy_api::connect::Integrations;
use juy_api::pb::v1 as pb;
use juy_domain::{AccountId, Provider, SystemClock, UserId};
use juy_integration_tests::caldav::Radicale;
use juy_integration_tests::providers::{self, Redirect, sandbox_env};
use juy_integration_tests::{TestServer, authed, http};
use juy_oauth2::StoredCredentials;
use juy_providers::ProviderError;
use juy_sandbox::{RunningSandbox, Sandbox};
use juy_store::accounts;

const GOOGLE_SUB: &str = "google-sub-ada";
const MS_ID: &str = "ms-id-ada";

async fn sandbox() -> RunningSandbox {
    let sandbox = Sandbox::new();
    sandbox.add_account(juy_sandbox::Provider::Google, GOOGLE_SUB, "ada@gmail.test");
    sandbox.add_google_calendar(GOOGLE_SUB, "ada@gmail.test", "Ada", "owner", true);
    sandbox.add_google_calendar(
        GOOGLE_SUB,
        "team#holiday@group.calendar.google.com",
        "Holidays",
        "reader",
        false,
    );
    sandbox.add_account(juy_sandbox::Provider::Microsoft, MS_ID, "ada@outlook.test");
    sandbox.add_graph_calendar(MS_ID, "AAMkCal1", "Calendar", true, true);
    juy_sandbox::start(sandbox).await.unwrap()
}

async fn server_for(sandbox: &RunningSandbox) -> TestServer {
    TestServer::start_with(sandbox_env(sandbox)).await
}

/// A number from SQL, e.g. `(SELECT count(*) FROM connected_accounts)`.
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

async fn start(server: &TestServer, token: &str, provider: pb::Provider) -> String {
    let mut client = server.calendar().await;
    let started = client
        .start_connect(authed(
            pb::StartConnectRequest {
                provider: provider.into(),
                ..Default::default()
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(started.expire_time.is_some());
    started.authorization_url
}

async fn complete(
    server: &TestServer,
    token: &str,
    redirect: &Redirect,
) -> Result<pb::CompleteConnectResponse, tonic::Status> {
    let mut client = server.calendar().await;
    client
        .complete_connect(authed(
            pb::CompleteConnectRequest {
                state: redirect.state.clone(),
                code: redirect.code.clone(),
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn link(server: &TestServer, token: &str, provider: pb::Provider) -> pb::CompleteConnectResponse {
    let url = start(server, token, provider).await;
    let redirect = providers::authorize(&url).await;
    complete(server, token, &redirect).await.unwrap()
}

fn account_id(connection: &pb::Connection) -> AccountId {
    AccountId(connection.name.strip_prefix("connections/").unwrap().parse().unwrap())
}

fn field_of(status: &tonic::Status) -> Vec<String> {
    let details = tonic_types::StatusExt::get_error_details(status);
    details
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

fn integrations(server: &TestServer) -> Integrations {
    Integrations::new(server.integrations.clone(), server.store.clone(), Arc::new(SystemClock)).unwrap()
}

async fn stored(server: &TestServer, user: &UserId, account: AccountId) -> Option<StoredCredentials> {
    let mut conn = server.store.conn().await.unwrap();
    let key = server.store.data_key(&mut conn, user).await.unwrap();
    let creds = accounts::read_credentials(&mut conn, &key, user, account, false)
        .await
        .unwrap()
        .unwrap();
    creds.credentials.map(|c| StoredCredentials::from_bytes(&c).unwrap())
}

/// Rewrites the stored access token's expiry (the refresh token is kept).
async fn set_expiry(server: &TestServer, user: &UserId, account: AccountId, expires_at: chrono::DateTime<chrono::Utc>) {
    let current = stored(server, user, account).await.unwrap();
    let updated = StoredCredentials::OAuth {
        access_token: current.access_token().unwrap().to_owned(),
        expires_at,
        refresh_token: current.refresh_token().map(str::to_owned),
    };
    let mut conn = server.store.conn().await.unwrap();
    let key = server.store.data_key(&mut conn, user).await.unwrap();
    assert!(
        accounts::replace_credentials(&mut conn, &key, user, account, &updated.to_bytes())
            .await
            .unwrap()
    );
}

fn token_requests(sandbox: &RunningSandbox, since: usize) -> usize {
    sandbox.sandbox.request_log()[since..]
        .iter()
        .filter(|r| r.path.ends_with("/token"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_link_lists_calendars_stores_tokens_encrypted_and_relinking_updates() {
    let sandbox = sandbox().await;
    let server = server_for(&sandbox).await;
    let token = server.token("ada", &[]);

    let url = start(&server, &token, pb::Provider::Google).await;
    let parsed = url::Url::parse(&url).unwrap();
    let query: std::collections::HashMap<String, String> = parsed.query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["client_id"], providers::GOOGLE_CLIENT_ID);
    assert_eq!(query["redirect_uri"], providers::REDIRECT_URI);
    assert_eq!(query["access_type"], "offline");
    assert!(
        query["scope"].contains("calendar.readonly"),
        "read scopes only by default"
    );
    assert!(
        !query["scope"].contains("calendar.events"),
        "no write scope until asked"
    );
    assert!(query["state"].len() >= 16);

    let redirect = providers::authorize(&url).await;
    let linked = complete(&server, &token, &redirect).await.unwrap();
    let connection = linked.connection.clone().unwrap();
    assert_eq!(connection.provider, pb::Provider::Google as i32);
    assert_eq!(connection.account_display_name, "ada@gmail.test");
    assert_eq!(
        connection.state,
        pb::ConnectionState::Pending as i32,
        "ready for its first sync"
    );
    assert!(
        connection.scopes.iter().any(|s| s.ends_with("/calendar.readonly")),
        "{:?}",
        connection.scopes
    );
    assert!(!connection.scopes.iter().any(|s| s.ends_with("/calendar.events")));
    let mut names: Vec<&str> = linked.calendars.iter().map(|c| c.display_name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["Ada", "Holidays"]);

    // Tokens are stored, sealed: no token text in the row.
    assert_eq!(
        scalar(
            &server,
            "(SELECT count(*) FROM connected_accounts WHERE credentials_enc IS NOT NULL)"
        )
        .await,
        1
    );
    assert_eq!(
        scalar(
            &server,
            "(SELECT count(*) FROM connected_accounts WHERE position('\\x61742d'::bytea IN credentials_enc) > 0 \
             OR position('\\x72742d'::bytea IN credentials_enc) > 0)"
        )
        .await,
        0,
        "`at-`/`rt-` token prefixes never appear in plaintext"
    );

    // The state is single-use: replaying the redirect fails and stores nothing more.
    let replay = complete(&server, &token, &redirect).await.unwrap_err();
    assert_eq!(replay.code(), tonic::Code::InvalidArgument);
    assert_eq!(field_of(&replay), ["state"]);

    // Linking the same Google account again updates the connection.
    let again = link(&server, &token, pb::Provider::Google).await;
    assert_eq!(again.connection.unwrap().name, connection.name);
    assert_eq!(scalar(&server, "(SELECT count(*) FROM connected_accounts)").await, 1);
    assert_eq!(scalar(&server, "(SELECT count(*) FROM calendars)").await, 2);

    // Asking for write access adds the write scope (incremental consent).
    let mut client = server.calendar().await;
    let write_url = client
        .start_connect(authed(
            pb::StartConnectRequest {
                provider: pb::Provider::Google.into(),
                access: pb::ConnectAccess::Write.into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .authorization_url;
    assert!(write_url.contains("calendar.events"));
    assert!(write_url.contains("include_granted_scopes=true"));

    // Write mode needs write consent first (incremental consent).
    let writable = linked
        .calendars
        .iter()
        .find(|c| c.display_name == "Ada")
        .unwrap()
        .name
        .clone();
    let to_write = || pb::UpdateCalendarSettingsRequest {
        settings: Some(pb::CalendarSettings {
            calendar_modes: vec![pb::CalendarModeSetting {
                calendar: writable.clone(),
                mode: pb::CalendarMode::Write.into(),
            }],
            ..Default::default()
        }),
        update_mask: None,
    };
    let refused = client
        .update_calendar_settings(authed(to_write(), &token))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().contains("write access"), "{}", refused.message());
    let redirect = providers::authorize(&write_url).await;
    let upgraded = complete(&server, &token, &redirect).await.unwrap().connection.unwrap();
    assert_eq!(upgraded.name, connection.name);
    assert!(upgraded.scopes.iter().any(|s| s.ends_with("/calendar.events")));
    client
        .update_calendar_settings(authed(to_write(), &token))
        .await
        .unwrap();
    server.stop().await;
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsoft_link_over_rest_and_callback() {
    let sandbox = sandbox().await;
    let server = server_for(&sandbox).await;
    let token = server.token("ada", &[]);
    let client = http();
    let started: serde_json::Value = client
        .post(server.rest("/v1/calendar/connections/microsoft:start"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"access": "read"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = started["authorization_url"].as_str().unwrap();
    assert!(
        url.contains("offline_access") && url.contains("Calendars.Read"),
        "{url}"
    );
    let redirect = providers::authorize(url).await;
    let response = client
        .get(server.rest(&format!(
            "/v1/calendar/oauth/callback?code={}&state={}&session_state=x",
            redirect.code, redirect.state
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let linked: serde_json::Value = response.json().await.unwrap();
    assert_eq!(linked["connection"]["provider"], "microsoft");
    assert_eq!(linked["connection"]["account_display_name"], "ada@outlook.test");
    assert_eq!(linked["calendars"][0]["display_name"], "Calendar");

    let listed: serde_json::Value = client
        .get(server.rest("/v1/calendar/connections"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["connections"].as_array().unwrap().len(), 1);

    // A declined consent and a bad provider are clear problems.
    let declined = client
        .get(server.rest("/v1/calendar/oauth/callback?error=access_denied&state=abc"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(declined.status().as_u16(), 400);
    assert_eq!(declined.headers()["content-type"], "application/problem+json");
    assert!(declined.text().await.unwrap().contains("access_denied"));
    let caldav = client
        .post(server.rest("/v1/calendar/connections/caldav:start"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(caldav.status().as_u16(), 400);
    assert!(caldav.text().await.unwrap().contains("provider"));
    server.stop().await;
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_replayed_expired_or_foreign_states_are_rejected_and_store_nothing() {
    let sandbox = sandbox().await;
    let server = server_for(&sandbox).await;
    let ada = server.token("ada", &[]);
    let bob = server.token("bob", &[]);

    // Tampered.
    let redirect = providers::authorize(&start(&server, &ada, pb::Provider::Google).await).await;
    let tampered = Redirect {
        state: format!("{}x", redirect.state),
        ..redirect.clone()
    };
    let error = complete(&server, &ada, &tampered).await.unwrap_err();
    assert_eq!(
        (error.code(), field_of(&error)),
        (tonic::Code::InvalidArgument, vec!["state".to_owned()])
    );

    // Another user's state.
    let error = complete(&server, &bob, &redirect).await.unwrap_err();
    assert_eq!(field_of(&error), ["state"]);
    assert!(error.message().contains("another user"), "{}", error.message());

    // Expired.
    let redirect = providers::authorize(&start(&server, &ada, pb::Provider::Microsoft).await).await;
    execute(
        &server,
        "UPDATE oauth_states SET expires_at = now() - interval '1 second'",
    )
    .await;
    let error = complete(&server, &ada, &redirect).await.unwrap_err();
    assert_eq!(field_of(&error), ["state"]);
    assert!(error.message().contains("expired"), "{}", error.message());
    // ... and used up: a retry is unknown.
    let error = complete(&server, &ada, &redirect).await.unwrap_err();
    assert!(error.message().contains("unknown"), "{}", error.message());

    // A forged code is refused by the provider.
    let redirect = providers::authorize(&start(&server, &ada, pb::Provider::Google).await).await;
    let forged = Redirect {
        code: "forged-code".into(),
        ..redirect
    };
    let error = complete(&server, &ada, &forged).await.unwrap_err();
    assert_eq!(field_of(&error), ["code"]);

    // Missing fields are named.
    let error = complete(
        &server,
        &ada,
        &Redirect {
            code: String::new(),
            state: String::new(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(field_of(&error), ["state", "code"]);

    assert_eq!(scalar(&server, "(SELECT count(*) FROM connected_accounts)").await, 0);
    assert_eq!(scalar(&server, "(SELECT count(*) FROM calendars)").await, 0);
    server.stop().await;
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_refresh_on_401_and_before_expiry_rotate_atomically_single_flight_and_reauth_on_invalid_grant() {
    let sandbox = sandbox().await;
    let server = server_for(&sandbox).await;
    let token = server.token("ada", &[]);
    let user = UserId::new("ada").unwrap();
    let linked = link(&server, &token, pb::Provider::Microsoft).await;
    let account = account_id(&linked.connection.unwrap());
    let integrations = integrations(&server);
    let list = |integrations: &Integrations| {
        let client = integrations
            .client_for(&user, account, Provider::Microsoft, None)
            .unwrap();
        async move { client.list_calendars().await }
    };

    // A fresh token is used as it is.
    let mark = sandbox.sandbox.request_log().len();
    assert_eq!(list(&integrations).await.unwrap().len(), 1);
    assert_eq!(token_requests(&sandbox, mark), 0);

    // The provider expired it early: 401 → one refresh → the retry succeeds,
    // and the rotated refresh token replaced the old one.
    let old_refresh = stored(&server, &user, account)
        .await
        .unwrap()
        .refresh_token()
        .unwrap()
        .to_owned();
    sandbox.sandbox.advance(chrono::Duration::hours(2));
    let mark = sandbox.sandbox.request_log().len();
    assert_eq!(list(&integrations).await.unwrap().len(), 1);
    assert_eq!(token_requests(&sandbox, mark), 1);
    let statuses: Vec<&str> = sandbox.sandbox.request_log()[mark..]
        .iter()
        .map(|r| if r.path.ends_with("/token") { "token" } else { "api" })
        .collect();
    assert_eq!(statuses, ["api", "token", "api"], "401, refresh, retry");
    let now_stored = stored(&server, &user, account).await.unwrap();
    let (new_refresh, expires_at) = (now_stored.refresh_token().unwrap(), now_stored.expires_at().unwrap());
    assert_ne!(new_refresh, old_refresh, "Microsoft rotates refresh tokens");
    assert!(expires_at > chrono::Utc::now() + chrono::Duration::minutes(50));

    // About to expire: refreshed before the request, not after a 401.
    set_expiry(
        &server,
        &user,
        account,
        chrono::Utc::now() + chrono::Duration::seconds(30),
    )
    .await;
    let mark = sandbox.sandbox.request_log().len();
    list(&integrations).await.unwrap();
    let kinds: Vec<bool> = sandbox.sandbox.request_log()[mark..]
        .iter()
        .map(|r| r.path.ends_with("/token"))
        .collect();
    assert_eq!(kinds, [true, false]);

    // Many concurrent callers, in two "replicas", share one refresh.
    set_expiry(
        &server,
        &user,
        account,
        chrono::Utc::now() - chrono::Duration::seconds(1),
    )
    .await;
    let replica = self::integrations(&server);
    let mark = sandbox.sandbox.request_log().len();
    let calls = (0..8).map(|i| {
        let which = if i % 2 == 0 { &integrations } else { &replica };
        list(which)
    });
    for result in futures::future::join_all(calls).await {
        assert_eq!(result.unwrap().len(), 1);
    }
    assert_eq!(token_requests(&sandbox, mark), 1, "single-flight refresh");

    // The grant is withdrawn at the provider: invalid_grant → reauth_required, once.
    sandbox.sandbox.revoke_account_tokens(MS_ID);
    set_expiry(
        &server,
        &user,
        account,
        chrono::Utc::now() - chrono::Duration::seconds(1),
    )
    .await;
    let mark = sandbox.sandbox.request_log().len();
    assert!(matches!(
        list(&integrations).await,
        Err(ProviderError::ReauthRequired(_))
    ));
    assert_eq!(token_requests(&sandbox, mark), 1);
    for _ in 0..3 {
        assert!(matches!(
            list(&integrations).await,
            Err(ProviderError::ReauthRequired(_))
        ));
    }
    assert_eq!(
        sandbox.sandbox.request_log().len(),
        mark + 1,
        "no retry storm: nothing more reaches the provider"
    );
    let mut client = server.calendar().await;
    let connections = client
        .list_connections(authed(pb::ListConnectionsRequest::default(), &token))
        .await
        .unwrap()
        .into_inner()
        .connections;
    assert_eq!(connections[0].state, pb::ConnectionState::ReauthRequired as i32);
    assert!(connections[0].state_reason.contains("Link the account again"));
    assert_eq!(
        scalar(
            &server,
            "(SELECT count(*) FROM connected_accounts WHERE credentials_enc IS NOT NULL)"
        )
        .await,
        0
    );
    // Linking again makes it usable again.
    let relinked = link(&server, &token, pb::Provider::Microsoft).await.connection.unwrap();
    assert_eq!(relinked.state, pb::ConnectionState::Pending as i32);
    assert!(relinked.state_reason.is_empty());
    assert_eq!(list(&integrations).await.unwrap().len(), 1);
    server.stop().await;
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_deletes_credentials_purges_data_and_nothing_reaches_the_provider_again() {
    let sandbox = sandbox().await;
    let server = server_for(&sandbox).await;
    let token = server.token("ada", &[]);
    let user = UserId::new("ada").unwrap();
    let google = link(&server, &token, pb::Provider::Google).await.connection.unwrap();
    let microsoft = link(&server, &token, pb::Provider::Microsoft).await.connection.unwrap();
    let (google_id, microsoft_id) = (account_id(&google), account_id(&microsoft));
    let google_credentials = stored(&server, &user, google_id).await.unwrap();
    let access_token = google_credentials.access_token().unwrap().to_owned();
    let refresh_token = google_credentials.refresh_token().unwrap().to_owned();
    // A client made before the revocation, as in-flight work would hold it.
    let integrations = integrations(&server);
    let in_flight = integrations
        .client_for(&user, google_id, Provider::Google, None)
        .unwrap();

    // Bob cannot revoke Ada's connection.
    let mut client = server.calendar().await;
    let error = client
        .revoke_connection(authed(
            pb::RevokeConnectionRequest {
                name: google.name.clone(),
            },
            &server.token("bob", &[]),
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::NotFound);

    let mark = sandbox.sandbox.request_log().len();
    let revoked = client
        .revoke_connection(authed(
            pb::RevokeConnectionRequest {
                name: google.name.clone(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .connection
        .unwrap();
    assert_eq!(revoked.state, pb::ConnectionState::Revoked as i32);
    let log = sandbox.sandbox.request_log();
    assert_eq!(log.len(), mark + 1, "only the revocation call");
    assert!(log[mark].path.ends_with("/revoke"));
    // The grant is dead at Google too.
    let refresh = reqwest::Client::new()
        .post(sandbox.google_token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=refresh_token&refresh_token={refresh_token}&client_id={}",
            providers::GOOGLE_CLIENT_ID
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status().as_u16(), 400);

    // Nothing of it is left: credentials, calendars, events.
    let google_sql = google_id.0.to_string();
    assert_eq!(
        scalar(
            &server,
            &format!(
                "(SELECT count(*) FROM connected_accounts WHERE id = '{google_sql}' AND credentials_enc IS NOT NULL)"
            )
        )
        .await,
        0
    );
    assert_eq!(
        scalar(
            &server,
            &format!("(SELECT count(*) FROM calendars WHERE account_id = '{google_sql}')")
        )
        .await,
        0
    );
    assert_eq!(
        scalar(
            &server,
            &format!(
                "(SELECT count(*) FROM user_calendar_events e JOIN calendars c ON c.id = e.calendar_id \
                 WHERE c.account_id = '{google_sql}')"
            )
        )
        .await,
        0
    );

    // After it, not one request with the account's credentials reaches the provider.
    let mark = sandbox.sandbox.request_log().len();
    assert!(matches!(
        in_flight.list_calendars().await,
        Err(ProviderError::ReauthRequired(_))
    ));
    let fresh = self::integrations(&server);
    let again = fresh.client_for(&user, google_id, Provider::Google, None).unwrap();
    assert!(matches!(
        again.list_calendars().await,
        Err(ProviderError::ReauthRequired(_))
    ));
    let after = &sandbox.sandbox.request_log()[mark..];
    assert!(
        after.is_empty(),
        "requests after revocation: {:?}",
        after.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert!(
        !sandbox
            .sandbox
            .request_log()
            .iter()
            .skip(mark)
            .any(|r| r.bearer.as_deref() == Some(access_token.as_str()))
    );

    // An admin revokes Ada's Microsoft connection on her behalf (REST); a
    // non-admin may not. Microsoft has no revocation endpoint: no request.
    let path = format!("/v1/admin/users/ada/connections/{}:revoke", microsoft_id.0);
    let denied = http()
        .post(server.rest(&path))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status().as_u16(), 403);
    let mark = sandbox.sandbox.request_log().len();
    let response = http()
        .post(server.rest(&path))
        .bearer_auth(server.token("root", &["admin"]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let row: serde_json::Value = response.json().await.unwrap();
    assert_eq!(row["state"], "revoked");
    assert_eq!(row["user_id"], "ada");
    assert_eq!(row["calendar_count"], 0);
    assert_eq!(sandbox.sandbox.request_log().len(), mark);
    assert_eq!(
        scalar(
            &server,
            "(SELECT count(*) FROM connected_accounts WHERE credentials_enc IS NOT NULL OR status <> 'revoked')"
        )
        .await,
        0
    );
    // Revoking twice is harmless.
    let mut admin = server.admin().await;
    let row = admin
        .revoke_connection(authed(
            pb::AdminRevokeConnectionRequest {
                user_id: "ada".into(),
                connection: microsoft.name.clone(),
            },
            &server.token("root", &["admin"]),
        ))
        .await
        .unwrap()
        .into_inner()
        .connection
        .unwrap();
    assert_eq!(row.state, pb::ConnectionState::Revoked as i32);
    server.stop().await;
    sandbox.stop().await;
}

const CALDAV_USER: &str = "ada";
const CALDAV_PASSWORD: &str = "abcd-efgh-ijkl-mnop";

async fn mkcalendar(radicale: &Radicale, name: &str, display: &str) {
    let body = format!(
        "<?xml version=\"1.0\"?><C:mkcalendar xmlns:D=\"DAV:\" xmlns:C=\"urn:ietf:params:xml:ns:caldav\"><D:set><D:prop>\
         <D:displayname>{display}</D:displayname><C:supported-calendar-component-set><C:comp name=\"VEVENT\"/>\
         </C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>"
    );
    let response = reqwest::Client::new()
        .request(
            reqwest::Method::from_bytes(b"MKCALENDAR").unwrap(),
            format!("{}/{CALDAV_USER}/{name}/", radicale.base_url),
        )
        .basic_auth(CALDAV_USER, Some(CALDAV_PASSWORD))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
}

async fn connect_caldav(
    server: &TestServer,
    token: &str,
    server_url: &str,
    password: &str,
) -> Result<pb::ConnectCalDavResponse, tonic::Status> {
    let mut client = server.calendar().await;
    client
        .connect_cal_dav(authed(
            pb::ConnectCalDavRequest {
                server_url: server_url.into(),
                username: CALDAV_USER.into(),
                app_specific_password: password.into(),
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caldav_links_with_an_app_password_and_errors_name_their_cause() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let radicale = Radicale::start(&[(CALDAV_USER, CALDAV_PASSWORD)]);
    mkcalendar(&radicale, "work", "Work").await;
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = TestServer::start_with(vec![(
        "JUY_CALDAV__ALLOW_LIST".into(),
        format!(
            "[\"127.0.0.1:{}\", \"127.0.0.1:{closed_port}\"]",
            radicale.base_url.rsplit(':').next().unwrap()
        ),
    )])
    .await;
    let token = server.token("ada", &[]);

    // Wrong password: refused, named, nothing stored.
    let error = connect_caldav(&server, &token, &radicale.base_url, "wrong")
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert_eq!(field_of(&error), ["app_specific_password"]);
    // Unreachable server.
    let error = connect_caldav(
        &server,
        &token,
        &format!("http://127.0.0.1:{closed_port}"),
        CALDAV_PASSWORD,
    )
    .await
    .unwrap_err();
    assert_eq!(error.code(), tonic::Code::Unavailable);
    assert!(error.message().contains("could not be reached"), "{}", error.message());
    // Plain http or private addresses without the operator's allow-list.
    for url in [
        "http://caldav.example.com",
        "https://10.1.2.3/",
        "https://127.0.0.1:1/",
        "ftp://x",
    ] {
        let error = connect_caldav(&server, &token, url, CALDAV_PASSWORD).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument, "{url}");
        assert_eq!(field_of(&error), ["server_url"], "{url}: {}", error.message());
    }
    assert!(!format!("{error:?}").contains(CALDAV_PASSWORD));
    assert_eq!(scalar(&server, "(SELECT count(*) FROM connected_accounts)").await, 0);

    // The real thing: discovery, calendars, the password sealed.
    let linked = connect_caldav(&server, &token, &radicale.base_url, CALDAV_PASSWORD)
        .await
        .unwrap();
    let connection = linked.connection.unwrap();
    assert_eq!(connection.provider, pb::Provider::Caldav as i32);
    assert_eq!(connection.account_display_name, CALDAV_USER);
    assert_eq!(linked.calendars.len(), 1);
    assert_eq!(linked.calendars[0].display_name, "Work");
    assert_eq!(
        scalar(
            &server,
            &format!(
                "(SELECT count(*) FROM connected_accounts WHERE position(convert_to('{CALDAV_PASSWORD}', 'UTF8') IN credentials_enc) > 0)"
            )
        )
        .await,
        0
    );
    // Linking again updates the same connection.
    let again = connect_caldav(&server, &token, &radicale.base_url, CALDAV_PASSWORD)
        .await
        .unwrap();
    assert_eq!(again.connection.unwrap().name, connection.name);

    // The stored credentials reach the server through the account's client.
    let user = UserId::new("ada").unwrap();
    let account = account_id(&connection);
    let home = scalar(
        &server,
        "(SELECT count(*) FROM connected_accounts WHERE server_url LIKE 'http://127.0.0.1:%')",
    )
    .await;
    assert_eq!(home, 1);
    let integrations = integrations(&server);
    let home_url = format!("{}/{CALDAV_USER}/", radicale.base_url);
    let client = integrations
        .client_for(&user, account, Provider::Caldav, Some(&home_url))
        .unwrap();
    assert_eq!(client.list_calendars().await.unwrap().len(), 1);

    // Revocation leaves no password behind.
    let mut grpc = server.calendar().await;
    grpc.revoke_connection(authed(
        pb::RevokeConnectionRequest {
            name: connection.name.clone(),
        },
        &token,
    ))
    .await
    .unwrap();
    assert_eq!(
        scalar(
            &server,
            "(SELECT count(*) FROM connected_accounts WHERE credentials_enc IS NOT NULL)"
        )
        .await,
        0
    );
    assert_eq!(scalar(&server, "(SELECT count(*) FROM calendars)").await, 0);
    assert!(client.list_calendars().await.is_err());
    server.stop().await;
}
