//! OAuth helpers shared by the sandbox's tests.
#![allow(clippy::unwrap_used, missing_docs, dead_code)]

use base64::Engine;
use sha2::{Digest, Sha256};

pub const VERIFIER: &str = "verifier-verifier-verifier-verifier-verifier-0123";

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub fn challenge() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()).as_slice())
}

pub async fn post_form(url: &str, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let body: Vec<String> = form.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let r = client()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.join("&"))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(serde_json::Value::Null))
}

pub async fn get_code(authorize: &str) -> String {
    let url = format!(
        "{authorize}?response_type=code&client_id=cid&redirect_uri=http://localhost/cb&scope=openid&state=st1&code_challenge={}&code_challenge_method=S256",
        challenge()
    );
    let r = client().get(url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 302);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(loc.starts_with("http://localhost/cb?code="));
    assert!(loc.ends_with("&state=st1"));
    loc.split("code=").nth(1).unwrap().split('&').next().unwrap().to_owned()
}

pub async fn exchange(token_url: &str, code: &str, verifier: &str) -> (u16, serde_json::Value) {
    post_form(
        token_url,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", "http://localhost/cb"),
            ("client_id", "cid"),
            ("client_secret", "sec"),
            ("code_verifier", verifier),
        ],
    )
    .await
}
