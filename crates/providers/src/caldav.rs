//! CalDAV (RFC 4791, RFC 6578 sync, RFC 6764 discovery): Apple iCloud,
//! Fastmail, Nextcloud, Radicale, Baïkal and any other standard server,
//! over `reqwest` with a namespace-aware XML parser (`quick-xml`).
//!
//! - [`discover`] turns a server URL and a (app-specific) password into the
//!   principal, the calendar home (which may live on another host, as on
//!   iCloud) and the calendars that hold events.
//! - [`CalDavClient`] implements [`CalendarProvider`] for one calendar home.
//!   Listings are `calendar-query` (hrefs and etags of the `VEVENT`s in the
//!   window) then `calendar-multiget` in batches: one [`EventPage`] per batch.
//!   Changes use `sync-collection`; a server without it gets a `ctag:` cursor
//!   and a [`ProviderError::FullResyncRequired`] whenever the collection's
//!   `getctag` moved (a full listing is how such a server is synced).
//! - Every URL, including redirects and hrefs chosen by the server, passes
//!   the [`UrlPolicy`] before it is requested, and the client from
//!   [`UrlPolicy::build_client`] enforces it again at connection time.
//!
//! Must not: parse events (the normalizer does), send credentials to a URL
//! the policy refuses, or put passwords, paths or event text in errors.

mod discovery;
mod ical;
mod multistatus;
mod sync;
mod transport;
mod write;

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use juy_domain::{Clock, Provider, SystemClock, TimeRange};
use url::Url;
use zeroize::Zeroizing;

pub use discovery::{Discovery, discover};

use crate::{
    Authorizer, CalendarProvider, Credential, EventPage, EventWrite, ProviderError, RemoteCalendar, StaticAuthorizer,
    UrlPolicy, WrittenEvent,
};
use transport::Transport;

/// How many events one `calendar-multiget` (and so one page) asks for by default.
pub const DEFAULT_MULTIGET_BATCH: usize = 100;

/// A CalDAV account: one calendar home, reached through an [`Authorizer`]
/// (usually a [`StaticAuthorizer`] with [`Credential::Basic`]).
#[derive(Clone)]
pub struct CalDavClient {
    transport: Transport,
    home_url: Url,
    multiget_batch: usize,
}

impl std::fmt::Debug for CalDavClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CalDavClient")
            .field("home_url", &self.home_url.as_str())
            .field("multiget_batch", &self.multiget_batch)
            .finish_non_exhaustive()
    }
}

/// Parses an absolute URL given to us (a calendar id, an event id, a server URL).
pub(crate) fn parse_url(text: &str) -> Result<Url, ProviderError> {
    Url::parse(text).map_err(|_| ProviderError::UrlNotAllowed("not a valid absolute URL".into()))
}

impl CalDavClient {
    /// A client for the calendar home `home_url` (from [`Discovery::home_url`]),
    /// sending requests with `http` (build it with [`UrlPolicy::build_client`])
    /// under `policy`.
    pub fn new(
        http: reqwest::Client,
        policy: UrlPolicy,
        home_url: &str,
        authorizer: Arc<dyn Authorizer>,
    ) -> Result<Self, ProviderError> {
        let home_url = parse_url(home_url)?;
        policy.check_url(&home_url)?;
        Ok(Self {
            transport: Transport {
                http,
                policy,
                authorizer,
                clock: Arc::new(SystemClock),
            },
            home_url,
            multiget_batch: DEFAULT_MULTIGET_BATCH,
        })
    }

    /// A client with a username and password (HTTP Basic).
    pub fn with_password(
        http: reqwest::Client,
        policy: UrlPolicy,
        home_url: &str,
        username: &str,
        password: &str,
    ) -> Result<Self, ProviderError> {
        let credential = Credential::Basic {
            username: username.to_owned(),
            password: Arc::new(Zeroizing::new(password.to_owned())),
        };
        Self::new(http, policy, home_url, Arc::new(StaticAuthorizer(credential)))
    }

    /// Uses `clock` for `DTSTAMP` and `Retry-After` dates.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.transport.clock = clock;
        self
    }

    /// Asks for `size` events per `calendar-multiget` (and page); at least 1.
    pub fn with_multiget_batch(mut self, size: usize) -> Self {
        self.multiget_batch = size.max(1);
        self
    }

    /// The calendar home this client lists.
    pub fn home_url(&self) -> &str {
        self.home_url.as_str()
    }
}

fn failed_stream<'a>(error: ProviderError) -> BoxStream<'a, Result<EventPage, ProviderError>> {
    futures::stream::once(async move { Err(error) }).boxed()
}

#[async_trait]
impl CalendarProvider for CalDavClient {
    fn provider(&self) -> Provider {
        Provider::Caldav
    }

    async fn list_calendars(&self) -> Result<Vec<RemoteCalendar>, ProviderError> {
        discovery::list_calendars(&self.transport, &self.home_url).await
    }

    fn list_events<'a>(
        &'a self,
        calendar_id: &'a str,
        window: TimeRange,
    ) -> BoxStream<'a, Result<EventPage, ProviderError>> {
        match parse_url(calendar_id) {
            Ok(collection) => sync::list_events(&self.transport, collection, window, self.multiget_batch),
            Err(error) => failed_stream(error),
        }
    }

    fn changes<'a>(&'a self, calendar_id: &'a str, cursor: &'a str) -> BoxStream<'a, Result<EventPage, ProviderError>> {
        match parse_url(calendar_id) {
            Ok(collection) => sync::changes(&self.transport, collection, cursor.to_owned(), self.multiget_batch),
            Err(error) => failed_stream(error),
        }
    }

    fn resume<'a>(&'a self, calendar_id: &'a str, token: &'a str) -> BoxStream<'a, Result<EventPage, ProviderError>> {
        match parse_url(calendar_id) {
            Ok(collection) => sync::resume(&self.transport, collection, token, self.multiget_batch),
            Err(error) => failed_stream(error),
        }
    }

    async fn create_event(
        &self,
        calendar_id: &str,
        idempotency_key: &str,
        event: &EventWrite,
    ) -> Result<WrittenEvent, ProviderError> {
        write::create(&self.transport, &parse_url(calendar_id)?, idempotency_key, event).await
    }

    async fn update_event(
        &self,
        calendar_id: &str,
        external_id: &str,
        etag: Option<&str>,
        event: &EventWrite,
    ) -> Result<WrittenEvent, ProviderError> {
        write::update(&self.transport, &parse_url(calendar_id)?, external_id, etag, event).await
    }

    async fn delete_event(
        &self,
        calendar_id: &str,
        external_id: &str,
        etag: Option<&str>,
    ) -> Result<(), ProviderError> {
        write::delete(&self.transport, &parse_url(calendar_id)?, external_id, etag).await
    }
}
