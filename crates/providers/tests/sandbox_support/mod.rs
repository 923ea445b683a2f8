//! What the Google and Graph client tests share: an HTTP client, an
//! authorizer whose tokens the sandbox mints (and which counts refreshes), and
//! page collection.
#![allow(clippy::unwrap_used, missing_docs, dead_code)]

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::TryStreamExt as _;
use futures::stream::BoxStream;
use juy_providers::{Authorizer, Credential, EventPage, ProviderError, RawEvent};
use juy_sandbox::Sandbox;
use serde_json::Value;
use zeroize::Zeroizing;

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().unwrap()
}

/// Hands out a sandbox-minted token; on rejection counts the call and (when
/// `refresh_works`) mints a new one, else hands the rejected one back.
#[derive(Debug)]
pub struct SandboxAuthorizer {
    sandbox: Sandbox,
    account: String,
    current: Mutex<String>,
    refresh_works: bool,
    rejected: AtomicUsize,
}

impl SandboxAuthorizer {
    pub fn new(sandbox: &Sandbox, account: &str) -> Arc<Self> {
        Self::with_refresh(sandbox, account, true)
    }

    pub fn with_refresh(sandbox: &Sandbox, account: &str, refresh_works: bool) -> Arc<Self> {
        Arc::new(Self {
            sandbox: sandbox.clone(),
            account: account.into(),
            current: Mutex::new(sandbox.mint_access_token(account)),
            refresh_works,
            rejected: AtomicUsize::new(0),
        })
    }

    /// How often `credential_rejected` was called.
    pub fn rejections(&self) -> usize {
        self.rejected.load(Ordering::SeqCst)
    }

    pub fn token(&self) -> String {
        self.current.lock().unwrap().clone()
    }
}

fn bearer(token: &str) -> Credential {
    Credential::Bearer(Arc::new(Zeroizing::new(token.to_owned())))
}

#[async_trait]
impl Authorizer for SandboxAuthorizer {
    async fn credential(&self) -> Result<Credential, ProviderError> {
        Ok(bearer(&self.token()))
    }

    async fn credential_rejected(&self, _rejected: &Credential) -> Result<Credential, ProviderError> {
        self.rejected.fetch_add(1, Ordering::SeqCst);
        if self.refresh_works {
            *self.current.lock().unwrap() = self.sandbox.mint_access_token(&self.account);
        }
        Ok(bearer(&self.token()))
    }
}

pub async fn pages(stream: BoxStream<'_, Result<EventPage, ProviderError>>) -> Result<Vec<EventPage>, ProviderError> {
    stream.try_collect().await
}

/// The JSON of every item of every page.
pub fn items(pages: &[EventPage]) -> Vec<Value> {
    pages
        .iter()
        .flat_map(|p| &p.items)
        .map(|item| match item {
            RawEvent::Google(v) | RawEvent::Graph(v) => v.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

pub fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
}

/// The cursor of the last page, checking that no other page carries one.
pub fn cursor(pages: &[EventPage]) -> String {
    let (last, rest) = pages.split_last().unwrap();
    assert!(
        rest.iter().all(|p| p.next_cursor.is_none()),
        "only the last page carries the cursor"
    );
    last.next_cursor.clone().expect("the last page carries the cursor")
}
