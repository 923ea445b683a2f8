//! Clients for the calendar providers behind one trait, [`CalendarProvider`]:
//! Google Calendar API v3 ([`google`]), Microsoft Graph v1.0 ([`graph`]) and
//! CalDAV ([`caldav`], which also serves Apple iCloud).
//!
//! The clients return provider payloads as they come ([`RawEvent`]); the
//! `juy-normalizer` crate turns them into `CalendarEvent`s. Listings are
//! streams of pages, so a calendar is never held in memory whole. Every
//! request has a timeout; errors are classified ([`ProviderError`]) so callers
//! know whether to refresh a token, back off, resync from scratch or give up.
//! No response body, however malformed, can make a client panic, and no error
//! carries a token, a password or event text.

#![forbid(unsafe_code)]

pub mod caldav;
mod error;
pub mod google;
pub mod graph;
mod http_util;
pub mod push;
pub mod url_policy;

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use juy_domain::{Provider, TimeRange};
use zeroize::Zeroizing;

pub use error::ProviderError;
pub use push::{PushChannel, WatchRequest};
pub use url_policy::UrlPolicy;

/// What authenticates a request: a bearer token (Google, Microsoft) or HTTP
/// Basic credentials (CalDAV). `Debug` never shows the secret.
#[derive(Clone)]
pub enum Credential {
    /// `Authorization: Bearer <token>`.
    Bearer(Arc<Zeroizing<String>>),
    /// `Authorization: Basic`.
    Basic {
        /// User name.
        username: String,
        /// Password (an app-specific password for iCloud).
        password: Arc<Zeroizing<String>>,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Credential::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
        }
    }
}

impl Credential {
    /// The `Authorization` header value.
    pub fn header_value(&self) -> Zeroizing<String> {
        use base64::Engine as _;
        match self {
            Credential::Bearer(token) => Zeroizing::new(format!("Bearer {}", token.as_str())),
            Credential::Basic { username, password } => {
                let raw = Zeroizing::new(format!("{username}:{}", password.as_str()));
                Zeroizing::new(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())
                ))
            }
        }
    }
}

/// Where a client gets its credential. The OAuth layer implements it with
/// refresh before expiry and single-flight refresh; CalDAV with a fixed password.
#[async_trait]
pub trait Authorizer: Send + Sync {
    /// The credential to send now.
    async fn credential(&self) -> Result<Credential, ProviderError>;
    /// The provider answered 401 to `rejected`: get a fresh credential (for
    /// OAuth, a refresh) or fail with [`ProviderError::Unauthorized`] /
    /// [`ProviderError::ReauthRequired`]. Clients retry a request once after it.
    async fn credential_rejected(&self, rejected: &Credential) -> Result<Credential, ProviderError>;
}

/// A fixed credential, for CalDAV passwords and tests: a 401 is final.
#[derive(Debug, Clone)]
pub struct StaticAuthorizer(pub Credential);

#[async_trait]
impl Authorizer for StaticAuthorizer {
    async fn credential(&self) -> Result<Credential, ProviderError> {
        Ok(self.0.clone())
    }
    async fn credential_rejected(&self, _rejected: &Credential) -> Result<Credential, ProviderError> {
        Err(ProviderError::Unauthorized)
    }
}

/// A calendar as the provider lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCalendar {
    /// The provider's id: Google calendar id, Graph id, CalDAV collection URL (absolute).
    pub id: String,
    /// Its name.
    pub name: String,
    /// `#rrggbb`, when the provider has a colour.
    pub color: Option<String>,
    /// IANA zone, when the provider says (Google `timeZone`; Graph and CalDAV usually not).
    pub time_zone: Option<String>,
    /// The account's main calendar.
    pub is_primary: bool,
    /// Whether the account may write events to it (Google owner/writer, Graph `canEdit`,
    /// CalDAV `current-user-privilege-set`, true when the server does not say).
    pub can_write: bool,
}

/// One event payload as the provider sent it.
#[derive(Debug, Clone, PartialEq)]
pub enum RawEvent {
    /// A Google Calendar v3 event resource (cancelled ones included: they mean deletion).
    Google(serde_json::Value),
    /// A Microsoft Graph event resource (not `@removed` ones: see [`EventPage::removed`]).
    Graph(serde_json::Value),
    /// A CalDAV calendar object resource.
    ICal {
        /// Its absolute URL.
        href: String,
        /// Its ETag.
        etag: Option<String>,
        /// The iCalendar text.
        data: String,
    },
}

/// One page of a listing or change feed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventPage {
    /// Events created or changed (Google cancellations included).
    pub items: Vec<RawEvent>,
    /// Ids of events removed: Graph `@removed` ids, CalDAV hrefs answered 404
    /// (every occurrence of a removed CalDAV resource is gone).
    pub removed: Vec<String>,
    /// Google's list-level `defaultReminders` and `timeZone` (the JSON as sent), when present.
    pub calendar_defaults: Option<serde_json::Value>,
    /// Set on the last page only: the cursor of the next incremental round
    /// (Google `nextSyncToken`, Graph `@odata.deltaLink`, CalDAV sync-token).
    pub next_cursor: Option<String>,
    /// Set on pages before the last where the provider can continue the
    /// same listing or change feed after this page: an opaque token for
    /// [`CalendarProvider::resume`], so a sync that stopped after committing
    /// this page need not start over. Its size does not grow with the calendar.
    pub resume: Option<String>,
}

/// An event to create or change at the provider (write-back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventWrite {
    /// Title.
    pub title: String,
    /// Description.
    pub description: Option<String>,
    /// Location.
    pub location: Option<String>,
    /// Start instant.
    pub start: chrono::DateTime<chrono::Utc>,
    /// End instant.
    pub end: chrono::DateTime<chrono::Utc>,
    /// IANA zone to show it in.
    pub time_zone: String,
    /// Attendee emails.
    pub attendees: Vec<String>,
}

/// What the provider answered to a write.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenEvent {
    /// The provider's id of the event (CalDAV: the resource's absolute URL).
    pub external_id: String,
    /// Its new ETag, when given.
    pub etag: Option<String>,
    /// The event as stored by the provider, when returned.
    pub raw: Option<RawEvent>,
}

/// One provider account, reached through an [`Authorizer`].
#[async_trait]
pub trait CalendarProvider: Send + Sync {
    /// Which provider this is.
    fn provider(&self) -> Provider;

    /// Every calendar of the account (all pages).
    async fn list_calendars(&self) -> Result<Vec<RemoteCalendar>, ProviderError>;

    /// A full listing of a calendar's events overlapping `window`, page by page
    /// (recurring series as instances where the provider expands them); the
    /// last page carries the cursor for [`changes`](Self::changes).
    fn list_events<'a>(
        &'a self,
        calendar_id: &'a str,
        window: TimeRange,
    ) -> BoxStream<'a, Result<EventPage, ProviderError>>;

    /// Everything changed since `cursor`, page by page; the last page carries
    /// the next cursor. An expired or invalid cursor fails with
    /// [`ProviderError::FullResyncRequired`].
    fn changes<'a>(&'a self, calendar_id: &'a str, cursor: &'a str) -> BoxStream<'a, Result<EventPage, ProviderError>>;

    /// The pages after the one that carried `token` ([`EventPage::resume`])
    /// of the same listing or change feed, ending like it (the last page
    /// carries the next cursor). A token the provider no longer accepts fails
    /// like an expired cursor ([`ProviderError::FullResyncRequired`]) or as
    /// [`ProviderError::Malformed`] when it is not one of this client's tokens.
    fn resume<'a>(&'a self, calendar_id: &'a str, token: &'a str) -> BoxStream<'a, Result<EventPage, ProviderError>>;

    /// Creates an event. `idempotency_key` (lowercase a–v and 0–9, 5–64
    /// characters) makes a retried create return the same event instead of a
    /// duplicate (Google event id, Graph `transactionId`, CalDAV resource name).
    async fn create_event(
        &self,
        calendar_id: &str,
        idempotency_key: &str,
        event: &EventWrite,
    ) -> Result<WrittenEvent, ProviderError>;

    /// Changes an event; with `etag`, only if it is still that version
    /// ([`ProviderError::PreconditionFailed`] otherwise).
    async fn update_event(
        &self,
        calendar_id: &str,
        external_id: &str,
        etag: Option<&str>,
        event: &EventWrite,
    ) -> Result<WrittenEvent, ProviderError>;

    /// Deletes an event; deleting one already gone succeeds.
    async fn delete_event(&self, calendar_id: &str, external_id: &str, etag: Option<&str>)
    -> Result<(), ProviderError>;

    /// Opens a push channel on the calendar's events ([`push`]); `Ok(None)`
    /// when the provider has no push (CalDAV), and the calendar is polled.
    async fn watch(&self, _calendar_id: &str, _request: &WatchRequest) -> Result<Option<PushChannel>, ProviderError> {
        Ok(None)
    }

    /// Renews `old` before it expires: Google opens a new channel
    /// (`request.channel_id` must be new) and stops the old one; Graph moves
    /// the same subscription's expiry (its id and `clientState` stay, so
    /// `request.secret` is not used) and fails with
    /// [`ProviderError::NotFound`] when the subscription is gone, and the
    /// caller opens a new one with [`watch`](Self::watch).
    async fn renew_watch(
        &self,
        _calendar_id: &str,
        _old: &PushChannel,
        _request: &WatchRequest,
    ) -> Result<Option<PushChannel>, ProviderError> {
        Ok(None)
    }

    /// Stops a channel; one already gone (or expired) counts as stopped.
    async fn stop_watch(&self, _channel: &PushChannel) -> Result<(), ProviderError> {
        Ok(())
    }
}
