//! One CalDAV request: the URL policy checked before every hop, credentials
//! from the [`Authorizer`] (one `credential_rejected` round on 401), our own
//! method-preserving redirects, a size cap on the body, and the
//! classification of failures into [`ProviderError`]s.

use std::sync::Arc;
use std::time::Duration;

use juy_domain::Clock;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, HeaderMap, HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use url::Url;

use super::multistatus::{self, DAV, Multistatus};
use crate::url_policy::{MAX_REDIRECTS, policy_refusal};
use crate::{Authorizer, Credential, ProviderError, UrlPolicy};

/// The largest answer body read (a multiget of 100 large events fits easily).
pub(crate) const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// What the server answered.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The URL that answered (after redirects): relative hrefs resolve against it.
    pub url: Url,
}

impl Answer {
    /// The `ETag` header, if any.
    pub(crate) fn etag(&self) -> Option<String> {
        self.headers
            .get(reqwest::header::ETAG)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    }

    /// The body as a multistatus, if the status is 207.
    pub(crate) fn multistatus(&self) -> Result<Multistatus, ProviderError> {
        if self.status != StatusCode::MULTI_STATUS {
            return Err(ProviderError::Rejected {
                status: self.status.as_u16(),
                reason: "expected a WebDAV multistatus (207) answer".into(),
            });
        }
        multistatus::parse_multistatus(&self.body)
    }

    /// Whether a `DAV:error` body names this precondition.
    pub(crate) fn has_condition(&self, ns: &str, local: &str) -> bool {
        multistatus::error_conditions(&self.body)
            .iter()
            .any(|name| name.is(ns, local))
    }
}

/// One request to send.
pub(crate) struct Call {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<String>,
    /// Re-issue the request at a redirect's `Location` (reads only; a write is not redirected).
    pub follow_redirects: bool,
}

impl Call {
    /// A `PROPFIND` with this `Depth`.
    pub(crate) fn propfind(url: Url, depth: &'static str, body: String) -> Self {
        Self::xml("PROPFIND", url, depth, body)
    }

    /// A `REPORT` with this `Depth`.
    pub(crate) fn report(url: Url, depth: &'static str, body: String) -> Self {
        Self::xml("REPORT", url, depth, body)
    }

    fn xml(method: &'static str, url: Url, depth: &'static str, body: String) -> Self {
        Self {
            // Both names are valid tokens, so this cannot fail; GET is never used in its place.
            method: Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET),
            url,
            headers: vec![
                ("depth", depth.to_owned()),
                ("content-type", "application/xml; charset=utf-8".to_owned()),
            ],
            body: Some(body),
            follow_redirects: true,
        }
    }
}

/// Sends CalDAV requests for one account.
#[derive(Clone)]
pub(crate) struct Transport {
    pub http: reqwest::Client,
    pub policy: UrlPolicy,
    pub authorizer: Arc<dyn Authorizer>,
    pub clock: Arc<dyn Clock>,
}

fn auth_header(credential: &Credential) -> Result<HeaderValue, ProviderError> {
    let mut value = HeaderValue::from_str(credential.header_value().as_str())
        .map_err(|_| ProviderError::Malformed("the credential cannot be sent in an HTTP header".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => "the server".to_owned(),
    }
}

/// A transport failure in the caller's terms, never with the URL's path or query.
fn transport_error(error: &reqwest::Error, url: &Url) -> ProviderError {
    if let Some(reason) = policy_refusal(error) {
        return ProviderError::UrlNotAllowed(reason);
    }
    let host = host_of(url);
    if error.is_timeout() {
        ProviderError::Network(format!("timed out waiting for {host}"))
    } else if error.is_connect() {
        ProviderError::Network(format!("could not connect to {host}"))
    } else if error.is_redirect() {
        ProviderError::Network(format!("could not follow a redirect from {host}"))
    } else if error.is_body() || error.is_decode() {
        ProviderError::Network(format!("the connection to {host} broke while reading the answer"))
    } else {
        ProviderError::Network(format!("the request to {host} failed"))
    }
}

impl Transport {
    /// Sends `call`; any status comes back as an [`Answer`] except 401 (after
    /// one `credential_rejected` round: [`ProviderError::Unauthorized`]).
    pub(crate) async fn send(&self, call: Call) -> Result<Answer, ProviderError> {
        let mut url = call.url;
        let mut credential = self.authorizer.credential().await?;
        let mut refreshed = false;
        let mut hops = 0usize;
        loop {
            self.policy.check_url(&url)?;
            let mut request = self
                .http
                .request(call.method.clone(), url.clone())
                .header(AUTHORIZATION, auth_header(&credential)?);
            for (name, value) in &call.headers {
                request = request.header(*name, value.as_str());
            }
            if let Some(body) = &call.body {
                request = request.body(body.clone());
            }
            let response = request.send().await.map_err(|error| transport_error(&error, &url))?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED {
                if refreshed {
                    return Err(ProviderError::Unauthorized);
                }
                credential = self.authorizer.credential_rejected(&credential).await?;
                refreshed = true;
                continue;
            }
            if call.follow_redirects && status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|value| value.to_str().ok())
                    .ok_or_else(|| ProviderError::Malformed("a redirect without a usable Location".into()))?;
                let next = response
                    .url()
                    .join(location)
                    .map_err(|_| ProviderError::Malformed("a redirect to an invalid URL".into()))?;
                hops += 1;
                if hops > MAX_REDIRECTS {
                    return Err(ProviderError::UrlNotAllowed("too many redirects".into()));
                }
                // The credentials go along, as they would for a calendar home on another
                // host: the server we trust with them chose the target, and the policy
                // check at the top of the loop still applies.
                tracing::debug!(from = %host_of(&url), to = %host_of(&next), status = status.as_u16(), "following a redirect");
                url = next;
                continue;
            }
            let answered_url = response.url().clone();
            let headers = response.headers().clone();
            let body = read_capped(response, &answered_url).await?;
            return Ok(Answer {
                status,
                headers,
                body,
                url: answered_url,
            });
        }
    }

    /// The error for an unexpected status, classified.
    pub(crate) fn status_error(&self, answer: &Answer) -> ProviderError {
        let status = answer.status.as_u16();
        match status {
            401 => ProviderError::Unauthorized,
            404 | 410 => ProviderError::NotFound,
            412 => ProviderError::PreconditionFailed,
            429 | 500 | 502 | 503 | 504 => ProviderError::Retryable {
                status,
                retry_after: retry_after(&answer.headers, self.clock.now()),
            },
            _ => ProviderError::Rejected {
                status,
                reason: rejection_reason(answer),
            },
        }
    }
}

/// A short reason that never quotes the server's free text: the DAV
/// precondition names if the body is a `DAV:error`, else the status' phrase.
fn rejection_reason(answer: &Answer) -> String {
    let conditions: Vec<String> = multistatus::error_conditions(&answer.body)
        .into_iter()
        .map(|name| {
            if name.ns == DAV {
                format!("DAV:{}", name.local)
            } else {
                name.local
            }
        })
        .collect();
    if conditions.is_empty() {
        answer
            .status
            .canonical_reason()
            .unwrap_or("unexpected status")
            .to_owned()
    } else {
        conditions.join(", ")
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

async fn read_capped(mut response: reqwest::Response, url: &Url) -> Result<Vec<u8>, ProviderError> {
    let too_large = || ProviderError::Malformed(format!("the answer exceeds {} MiB", MAX_BODY_BYTES / (1024 * 1024)));
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(declared.map_or(0, |length| length as usize));
    while let Some(chunk) = response.chunk().await.map_err(|error| transport_error(&error, url))? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::TimeZone;

    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = chrono::Utc.with_ymd_and_hms(2015, 10, 21, 7, 27, 0).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(120)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(60)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, now), None);
    }
}
