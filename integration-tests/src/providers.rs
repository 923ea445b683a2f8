//! The provider sandbox as the server under test sees it: settings that
//! point the server's Google and Microsoft endpoints at a running sandbox,
//! and the browser's part of the OAuth flow.

use juy_sandbox::RunningSandbox;

/// The OAuth client id the test server is registered with at the sandbox.
pub const GOOGLE_CLIENT_ID: &str = "juy-test-google";
/// The Microsoft client id.
pub const MICROSOFT_CLIENT_ID: &str = "juy-test-microsoft";
/// The redirect URI registered for the test server.
pub const REDIRECT_URI: &str = "https://app.juy.test/oauth/callback";

/// Settings that send the server's Google and Microsoft traffic to `sandbox`.
pub fn sandbox_env(sandbox: &RunningSandbox) -> Vec<(String, String)> {
    [
        ("JUY_GOOGLE__CLIENT_ID", GOOGLE_CLIENT_ID.to_owned()),
        ("JUY_GOOGLE__CLIENT_SECRET", "google-test-secret".to_owned()),
        ("JUY_GOOGLE__AUTHORIZE_URL", sandbox.google_oauth_authorize_url()),
        ("JUY_GOOGLE__TOKEN_URL", sandbox.google_token_url()),
        ("JUY_GOOGLE__REVOKE_URL", sandbox.google_revoke_url()),
        ("JUY_GOOGLE__USERINFO_URL", sandbox.google_userinfo_url()),
        ("JUY_GOOGLE__API_BASE_URL", sandbox.google_api_base()),
        ("JUY_MICROSOFT__CLIENT_ID", MICROSOFT_CLIENT_ID.to_owned()),
        ("JUY_MICROSOFT__CLIENT_SECRET", "microsoft-test-secret".to_owned()),
        ("JUY_MICROSOFT__AUTHORIZE_URL", sandbox.microsoft_authorize_url()),
        ("JUY_MICROSOFT__TOKEN_URL", sandbox.microsoft_token_url()),
        (
            "JUY_MICROSOFT__USERINFO_URL",
            format!("{}/me", sandbox.graph_api_base()),
        ),
        ("JUY_MICROSOFT__API_BASE_URL", sandbox.graph_api_base()),
        ("JUY_OAUTH__REDIRECT_URIS", format!("[\"{REDIRECT_URI}\"]")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// What the provider's redirect carried back.
#[derive(Debug, Clone)]
pub struct Redirect {
    /// The `code`.
    pub code: String,
    /// The `state`.
    pub state: String,
}

/// Plays the user's browser: opens the authorisation URL (the sandbox
/// approves at once) and reads `code` and `state` from the redirect.
pub async fn authorize(authorization_url: &str) -> Redirect {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = client.get(authorization_url).send().await.expect("authorize");
    assert_eq!(response.status().as_u16(), 302, "the sandbox redirects back");
    let location = response.headers()["location"].to_str().expect("ascii").to_owned();
    assert!(location.starts_with(REDIRECT_URI), "{location}");
    let url = url::Url::parse(&location).expect("redirect URL");
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("{name} missing in {location}"))
    };
    Redirect {
        code: param("code"),
        state: param("state"),
    }
}
