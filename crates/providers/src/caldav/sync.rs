//! Full listings (`calendar-query` + `calendar-multiget`) and change feeds
//! (`sync-collection` + `calendar-multiget`), as streams of pages.
//!
//! Cursors: a server's `sync-token` as it is, or `ctag:<getctag>` for a
//! collection without sync support (any change then means a full resync;
//! with neither, the cursor is `ctag:` and every round is a full resync).
//! The cursor of a listing is read before the listing, so a change made
//! while pages are fetched shows up again in the next round, never not at all.

use std::collections::VecDeque;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use juy_domain::TimeRange;
use url::Url;

use super::discovery::collection_state;
use super::multistatus::{self, CALDAV, DAV};
use super::transport::{Call, Transport};
use crate::{EventPage, ProviderError, RawEvent};

/// The prefix of cursors made of a `getctag`.
const CTAG_PREFIX: &str = "ctag:";

/// Rounds of a truncated (507) sync report followed before giving up.
const MAX_SYNC_ROUNDS: usize = 1000;

fn utc(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Whether `href` is the collection itself (ignoring a trailing slash).
fn is_collection(collection: &Url, member: &Url) -> bool {
    collection.origin() == member.origin()
        && collection.path().trim_end_matches('/') == member.path().trim_end_matches('/')
}

/// The pages still to produce.
struct Pager<'a> {
    transport: &'a Transport,
    collection: Url,
    batch: usize,
    /// A listing still to plan (its window).
    listing: Option<TimeRange>,
    /// The window of the listing being paged, for resume tokens.
    listing_window: Option<TimeRange>,
    /// When resuming a listing: its cursor, and the last member already delivered.
    resume_from: Option<(String, String)>,
    /// A sync round still to run (from this token).
    sync_round: Option<String>,
    rounds: usize,
    queue: VecDeque<Url>,
    removed: Vec<String>,
    /// Report multiget 404s as removals (change feeds only).
    missing_is_removed: bool,
    cursor: Option<String>,
    done: bool,
}

impl<'a> Pager<'a> {
    fn new(transport: &'a Transport, collection: Url, batch: usize) -> Self {
        Self {
            transport,
            collection,
            batch,
            listing: None,
            listing_window: None,
            resume_from: None,
            sync_round: None,
            rounds: 0,
            queue: VecDeque::new(),
            removed: Vec::new(),
            missing_is_removed: false,
            cursor: None,
            done: false,
        }
    }

    fn into_stream(self) -> BoxStream<'a, Result<EventPage, ProviderError>> {
        futures::stream::try_unfold(self, |mut pager| async move {
            Ok(pager.next_page().await?.map(|page| (page, pager)))
        })
        .boxed()
    }

    async fn next_page(&mut self) -> Result<Option<EventPage>, ProviderError> {
        loop {
            if self.done {
                return Ok(None);
            }
            if let Some(window) = self.listing.take() {
                self.plan_listing(window).await?;
            } else if self.queue.is_empty()
                && let Some(token) = self.sync_round.take()
            {
                self.run_sync_round(token).await?;
            }
            let mut page = EventPage::default();
            let take = self.batch.min(self.queue.len());
            let batch: Vec<Url> = self.queue.drain(..take).collect();
            if let (Some(window), Some(last), Some(cursor)) = (self.listing_window, batch.last(), &self.cursor) {
                page.resume = Some(listing_resume_token(cursor, window, last.as_str()));
            }
            if !batch.is_empty() {
                let (items, missing) = multiget(self.transport, &self.collection, &batch).await?;
                page.items = items;
                if self.missing_is_removed {
                    self.removed.extend(missing);
                }
            }
            page.removed = std::mem::take(&mut self.removed);
            if self.queue.is_empty() && self.sync_round.is_none() && self.listing.is_none() {
                page.next_cursor = self.cursor.take();
                page.resume = None;
                self.done = true;
                return Ok(Some(page));
            }
            if !page.items.is_empty() || !page.removed.is_empty() {
                return Ok(Some(page));
            }
        }
    }

    async fn plan_listing(&mut self, window: TimeRange) -> Result<(), ProviderError> {
        self.listing_window = Some(window);
        // A resumed listing keeps the cursor read before it began: what changed
        // since then shows up in the next round, also for members delivered before.
        let after = match self.resume_from.take() {
            Some((cursor, after)) => {
                self.cursor = Some(cursor);
                Some(after)
            }
            None => {
                let (sync_token, ctag) = collection_state(self.transport, &self.collection).await?;
                self.cursor = Some(match sync_token {
                    Some(token) => token,
                    None => format!("{CTAG_PREFIX}{}", ctag.unwrap_or_default()),
                });
                None
            }
        };
        let body = multistatus::calendar_query(&utc(window.start()), &utc(window.end()));
        let answer = self
            .transport
            .send(Call::report(self.collection.clone(), "1", body))
            .await?;
        if answer.status.as_u16() != 207 {
            return Err(self.transport.status_error(&answer));
        }
        for response in answer.multistatus()?.responses {
            if response.status.is_some_and(|status| status / 100 != 2) {
                continue;
            }
            let Some(member) = response.href().and_then(|href| answer.url.join(href).ok()) else {
                continue;
            };
            let delivered = after.as_deref().is_some_and(|after| member.as_str() <= after);
            if !is_collection(&self.collection, &member) && !member.path().ends_with('/') && !delivered {
                self.queue.push_back(member);
            }
        }
        // Members in URL order, so a resume token need only name the last one delivered.
        let mut members: Vec<Url> = std::mem::take(&mut self.queue).into();
        members.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        members.dedup();
        self.queue = members.into();
        Ok(())
    }

    async fn run_sync_round(&mut self, token: String) -> Result<(), ProviderError> {
        self.rounds += 1;
        let body = multistatus::sync_collection(&token);
        let answer = self
            .transport
            .send(Call::report(self.collection.clone(), "1", body))
            .await?;
        let status = answer.status.as_u16();
        if matches!(status, 403 | 409 | 412) && answer.has_condition(DAV, "valid-sync-token") {
            return Err(ProviderError::FullResyncRequired);
        }
        if status != 207 {
            return Err(self.transport.status_error(&answer));
        }
        let multistatus = answer.multistatus()?;
        let new_token = multistatus
            .sync_token
            .clone()
            .ok_or_else(|| ProviderError::Malformed("the sync-collection answer has no sync-token".into()))?;
        let mut truncated = false;
        for response in &multistatus.responses {
            let Some(member) = response.href().and_then(|href| answer.url.join(href).ok()) else {
                continue;
            };
            if is_collection(&self.collection, &member) {
                truncated |= response.status == Some(507);
                continue;
            }
            if member.path().ends_with('/') {
                continue;
            }
            match response.status {
                Some(404) | Some(410) => self.removed.push(member.into()),
                Some(status) if status / 100 != 2 => {}
                _ => self.queue.push_back(member),
            }
        }
        if truncated && new_token != token && self.rounds < MAX_SYNC_ROUNDS {
            self.sync_round = Some(new_token.clone());
        }
        self.cursor = Some(new_token);
        Ok(())
    }
}

/// Fetches `members` of `collection`: their events, and the members the
/// server no longer has.
async fn multiget(
    transport: &Transport,
    collection: &Url,
    members: &[Url],
) -> Result<(Vec<RawEvent>, Vec<String>), ProviderError> {
    let body = multistatus::calendar_multiget(members.iter().map(Url::path));
    let answer = transport.send(Call::report(collection.clone(), "1", body)).await?;
    if answer.status.as_u16() != 207 {
        return Err(transport.status_error(&answer));
    }
    let mut items = Vec::with_capacity(members.len());
    let mut found = Vec::with_capacity(members.len());
    for response in answer.multistatus()?.responses {
        let Some(href) = response.href().and_then(|href| answer.url.join(href).ok()) else {
            continue;
        };
        let Some(data) = response.prop(CALDAV, "calendar-data").map(|prop| prop.text.clone()) else {
            continue;
        };
        found.push(href.clone());
        items.push(RawEvent::ICal {
            href: href.into(),
            etag: response.prop_value(DAV, "getetag").map(str::to_owned),
            data,
        });
    }
    let missing = members
        .iter()
        .filter(|member| !found.iter().any(|href| href.path() == member.path()))
        .map(|member| member.to_string())
        .collect();
    Ok((items, missing))
}

/// The events of `collection` overlapping `window`, one page per multiget batch.
pub(crate) fn list_events<'a>(
    transport: &'a Transport,
    collection: Url,
    window: TimeRange,
    batch: usize,
) -> BoxStream<'a, Result<EventPage, ProviderError>> {
    let mut pager = Pager::new(transport, collection, batch);
    pager.listing = Some(window);
    pager.into_stream()
}

/// What a listing's resume token holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct ListingResume {
    /// The listing's cursor (read before it began).
    cursor: String,
    /// The window, as Unix seconds.
    start: i64,
    end: i64,
    /// The last member delivered.
    after: String,
}

fn listing_resume_token(cursor: &str, window: TimeRange, after: &str) -> String {
    let resume = ListingResume {
        cursor: cursor.to_owned(),
        start: window.start().timestamp(),
        end: window.end().timestamp(),
        after: after.to_owned(),
    };
    serde_json::to_string(&resume).unwrap_or_default()
}

/// The rest of a listing after the page that carried `token`.
pub(crate) fn resume<'a>(
    transport: &'a Transport,
    collection: Url,
    token: &str,
    batch: usize,
) -> BoxStream<'a, Result<EventPage, ProviderError>> {
    let parsed = serde_json::from_str::<ListingResume>(token).ok().and_then(|resume| {
        let start = chrono::DateTime::from_timestamp(resume.start, 0)?;
        let end = chrono::DateTime::from_timestamp(resume.end, 0)?;
        let window = TimeRange::new(start, end).ok()?;
        Some((window, resume.cursor, resume.after))
    });
    let Some((window, cursor, after)) = parsed else {
        return futures::stream::once(async {
            Err(ProviderError::Malformed("not a resume token of this client".into()))
        })
        .boxed();
    };
    let mut pager = Pager::new(transport, collection, batch);
    pager.listing = Some(window);
    pager.resume_from = Some((cursor, after));
    pager.into_stream()
}

/// What changed in `collection` since `cursor`.
pub(crate) fn changes<'a>(
    transport: &'a Transport,
    collection: Url,
    cursor: String,
    batch: usize,
) -> BoxStream<'a, Result<EventPage, ProviderError>> {
    if let Some(ctag) = cursor.strip_prefix(CTAG_PREFIX).map(str::to_owned) {
        return futures::stream::once(async move {
            let (_, current) = collection_state(transport, &collection).await?;
            // Without sync-collection there is no way to list what changed.
            if ctag.is_empty() || current.as_deref() != Some(ctag.as_str()) {
                return Err(ProviderError::FullResyncRequired);
            }
            Ok(EventPage {
                next_cursor: Some(cursor),
                ..EventPage::default()
            })
        })
        .boxed();
    }
    if cursor.is_empty() {
        return futures::stream::once(async { Err(ProviderError::FullResyncRequired) }).boxed();
    }
    let mut pager = Pager::new(transport, collection, batch);
    pager.missing_is_removed = true;
    pager.sync_round = Some(cursor);
    pager.into_stream()
}
