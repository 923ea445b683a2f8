//! OAuth, revocation, clock and fault tests against the real HTTP sandbox.
#![allow(clippy::unwrap_used, missing_docs)]

use juy_sandbox::{Fault, Provider, RunningSandbox, Sandbox, start};

mod support;
use support::*;

async fn setup() -> RunningSandbox {
    let sb = Sandbox::new();
    sb.add_account(Provider::Google, "g-sub-1", "ann@example.com");
    sb.add_account(Provider::Microsoft, "ms-id-1", "bob@example.com");
    start(sb).await.unwrap()
}

#[tokio::test]
async fn google_code_pkce_round_trip_and_replay() {
    let run = setup().await;
    let code = get_code(&run.google_oauth_authorize_url()).await;
    let (s, body) = exchange(&run.google_token_url(), &code, VERIFIER).await;
    assert_eq!(s, 200);
    let at = body["access_token"].as_str().unwrap().to_owned();
    let me: serde_json::Value = client()
        .get(run.google_userinfo_url())
        .bearer_auth(&at)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["sub"], "g-sub-1");
    // Replay kills the grant.
    let (s, body) = exchange(&run.google_token_url(), &code, VERIFIER).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_grant")));
    let r = client()
        .get(run.google_userinfo_url())
        .bearer_auth(&at)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Wrong verifier refused.
    let code = get_code(&run.google_oauth_authorize_url()).await;
    let (s, _) = exchange(&run.google_token_url(), &code, "wrong-verifier").await;
    assert_eq!(s, 400);
    run.stop().await;
}

#[tokio::test]
async fn microsoft_refresh_rotates() {
    let run = setup().await;
    let code = get_code(&run.microsoft_authorize_url()).await;
    let (s, body) = exchange(&run.microsoft_token_url(), &code, VERIFIER).await;
    assert_eq!(s, 200);
    let rt1 = body["refresh_token"].as_str().unwrap().to_owned();
    let (s, body) = post_form(
        &run.microsoft_token_url(),
        &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
    )
    .await;
    assert_eq!(s, 200);
    let rt2 = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2);
    let at = body["access_token"].as_str().unwrap().to_owned();
    let me: serde_json::Value = client()
        .get(format!("{}/me", run.graph_api_base()))
        .bearer_auth(&at)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["mail"], "bob@example.com");
    let (s, body) = post_form(
        &run.microsoft_token_url(),
        &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
    )
    .await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_grant")));
    run.stop().await;
}

#[tokio::test]
async fn google_revoke_then_refused_and_logged() {
    let run = setup().await;
    let code = get_code(&run.google_oauth_authorize_url()).await;
    let (_, body) = exchange(&run.google_token_url(), &code, VERIFIER).await;
    let at = body["access_token"].as_str().unwrap().to_owned();
    let rt = body["refresh_token"].as_str().unwrap().to_owned();
    let (s, _) = post_form(&run.google_revoke_url(), &[("token", &rt)]).await;
    assert_eq!(s, 200);
    let r = client()
        .get(run.google_userinfo_url())
        .bearer_auth(&at)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (s, _) = post_form(
        &run.google_token_url(),
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    )
    .await;
    assert_eq!(s, 400);
    let log = run.sandbox.request_log();
    assert!(
        log.iter()
            .any(|l| l.bearer.as_deref() == Some(at.as_str()) && l.path.ends_with("/userinfo"))
    );
    run.stop().await;
}

#[tokio::test]
async fn access_token_expires_with_clock_and_fault_429() {
    let run = setup().await;
    let code = get_code(&run.microsoft_authorize_url()).await;
    let (_, body) = exchange(&run.microsoft_token_url(), &code, VERIFIER).await;
    let at = body["access_token"].as_str().unwrap().to_owned();
    let me = format!("{}/me", run.graph_api_base());
    run.sandbox.push_fault(
        Provider::Microsoft,
        Fault::Status {
            code: 429,
            retry_after: Some(7),
        },
    );
    let r = client().get(&me).bearer_auth(&at).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    let r = client().get(&me).bearer_auth(&at).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    run.sandbox.advance(chrono::Duration::seconds(3601));
    let r = client().get(&me).bearer_auth(&at).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    run.stop().await;
}
