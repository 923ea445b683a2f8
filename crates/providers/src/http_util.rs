//! The HTTP plumbing the Google and Graph clients share: building URLs under a
//! configurable API base, sending a request with the [`Authorizer`]'s
//! credential (one refresh and one retry on 401), a per-request timeout,
//! reading bodies with a size cap, and classifying failures into
//! [`ProviderError`]s that carry neither tokens (URLs lose their query) nor
//! event text (only the provider's error code or reason is kept).

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use juy_domain::Clock;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use crate::{Authorizer, Credential, ProviderError};

/// The default per-request timeout.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest response body read (16 MiB); larger answers are `Malformed`.
pub(crate) const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Longest provider error code or reason kept in [`ProviderError::Rejected`].
const MAX_REASON_CHARS: usize = 64;

/// Whose error format and status conventions apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Google APIs: `{"error": {"code", "message", "errors": [{"reason"}]}}`.
    Google,
    /// Microsoft Graph: `{"error": {"code", "message", "innerError"}}`.
    Graph,
}

/// The API base URL (`https://host/path`, no query), under which requests are built.
#[derive(Debug, Clone)]
pub(crate) struct ApiBase(Url);

impl ApiBase {
    /// Parses an `http`/`https` base URL; a trailing slash is ignored.
    pub(crate) fn parse(text: &str) -> Result<Self, ProviderError> {
        let url = Url::parse(text).map_err(|_| ProviderError::UrlNotAllowed("the API base URL is not a URL".into()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ProviderError::UrlNotAllowed(
                "the API base URL must be an http(s) URL with a host".into(),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(ProviderError::UrlNotAllowed(
                "the API base URL must not carry credentials, a query or a fragment".into(),
            ));
        }
        Ok(Self(url))
    }

    /// The base followed by `segments`, each percent-encoded (ids contain `@`, `#`, `/`).
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.0.clone();
        let mut path = url.path().trim_end_matches('/').to_owned();
        for segment in segments {
            path.push('/');
            path.push_str(&encode_segment(segment));
        }
        url.set_path(&path);
        url
    }

    /// Whether `url` is on the same scheme, host and port as the base: links the
    /// provider hands out (paging, delta) are only followed there, so a forged
    /// link cannot carry our token elsewhere.
    pub(crate) fn same_origin(&self, url: &Url) -> bool {
        url.scheme() == self.0.scheme()
            && url.host_str() == self.0.host_str()
            && url.port_or_known_default() == self.0.port_or_known_default()
    }

    /// Parses a link the provider sent (`@odata.nextLink`, a delta link) and checks its origin.
    pub(crate) fn link(&self, text: &str) -> Result<Url, ProviderError> {
        match Url::parse(text) {
            Ok(url) if self.same_origin(&url) => Ok(url),
            _ => Err(ProviderError::UrlNotAllowed(
                "a link from the provider points away from the API base URL".into(),
            )),
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `scheme://host[:port]/path`: a URL as it may appear in errors and logs
/// (the query, which can hold sync or skip tokens, is dropped).
pub(crate) fn redacted(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

/// A request to send, rebuilt for the retry after a 401.
#[derive(Debug, Clone)]
pub(crate) struct ApiRequest {
    method: Method,
    url: Url,
    headers: Vec<(HeaderName, HeaderValue)>,
    json: Option<Value>,
}

impl ApiRequest {
    /// A request without body.
    pub(crate) fn new(method: Method, url: Url) -> Self {
        Self {
            method,
            url,
            headers: Vec::new(),
            json: None,
        }
    }

    /// `GET url`.
    pub(crate) fn get(url: Url) -> Self {
        Self::new(Method::GET, url)
    }

    /// Adds a header.
    pub(crate) fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Adds `If-Match: etag` when an etag is given; an etag that is no valid
    /// header value cannot match anything, so it is refused before sending.
    pub(crate) fn if_match(self, etag: Option<&str>) -> Result<Self, ProviderError> {
        match etag {
            None => Ok(self),
            Some(etag) => {
                let value = HeaderValue::from_str(etag).map_err(|_| ProviderError::PreconditionFailed)?;
                Ok(self.header(header::IF_MATCH, value))
            }
        }
    }

    /// Sets a JSON body.
    pub(crate) fn json(mut self, body: Value) -> Self {
        self.json = Some(body);
        self
    }
}

/// A provider's answer, body read whole (within the cap).
#[derive(Debug)]
pub(crate) struct ApiResponse {
    /// The HTTP status.
    pub(crate) status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl ApiResponse {
    /// The body as `T`; [`ProviderError::Malformed`] when it is not (the message
    /// names the position, never the content).
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T, ProviderError> {
        parse_json(&self.body)
    }
}

/// Parses JSON without echoing any of its content in the error.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ProviderError> {
    serde_json::from_slice(body).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "JSON of an unexpected shape",
            serde_json::error::Category::Eof => "truncated JSON",
        };
        ProviderError::Malformed(format!("{kind} at line {} column {}", e.line(), e.column()))
    })
}

/// Sends requests for one account: credential, 401 retry, timeout, body cap, error classification.
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: reqwest::Client,
    authorizer: Arc<dyn Authorizer>,
    timeout: Duration,
    dialect: Dialect,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .field("dialect", &self.dialect)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client for one account of one provider.
    pub(crate) fn new(
        client: reqwest::Client,
        authorizer: Arc<dyn Authorizer>,
        timeout: Duration,
        dialect: Dialect,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            client,
            authorizer,
            timeout,
            dialect,
            clock,
        }
    }

    /// Sends `request` with the current credential; on 401 reports the
    /// credential as rejected once and retries once with the fresh one. Any
    /// other status is returned as is; a second 401 is [`ProviderError::Unauthorized`].
    pub(crate) async fn send(&self, request: &ApiRequest) -> Result<ApiResponse, ProviderError> {
        let credential = self.authorizer.credential().await?;
        let response = self.attempt(request, &credential).await?;
        if response.status != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        tracing::debug!(url = %redacted(&request.url), "credential rejected; retrying once with a fresh one");
        let fresh = self.authorizer.credential_rejected(&credential).await?;
        let response = self.attempt(request, &fresh).await?;
        if response.status == StatusCode::UNAUTHORIZED {
            return Err(ProviderError::Unauthorized);
        }
        Ok(response)
    }

    /// [`send`](Self::send), with every non-2xx answer turned into its [`ProviderError`].
    pub(crate) async fn send_ok(&self, request: &ApiRequest) -> Result<ApiResponse, ProviderError> {
        let response = self.send(request).await?;
        if response.status.is_success() {
            Ok(response)
        } else {
            Err(self.error(&response))
        }
    }

    /// [`send_ok`](Self::send_ok), then the body as `T`.
    pub(crate) async fn send_json<T: DeserializeOwned>(&self, request: &ApiRequest) -> Result<T, ProviderError> {
        self.send_ok(request).await?.json()
    }

    /// The current instant on the client's clock.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// What a non-2xx answer means.
    pub(crate) fn error(&self, response: &ApiResponse) -> ProviderError {
        classify(
            self.dialect,
            response.status,
            &response.headers,
            &response.body,
            self.clock.now(),
        )
    }

    async fn attempt(&self, request: &ApiRequest, credential: &Credential) -> Result<ApiResponse, ProviderError> {
        let mut authorization =
            HeaderValue::from_str(credential.header_value().as_str()).map_err(|_| ProviderError::Unauthorized)?;
        authorization.set_sensitive(true);
        let mut builder = self
            .client
            .request(request.method.clone(), request.url.clone())
            .header(header::AUTHORIZATION, authorization)
            .header(header::ACCEPT, "application/json");
        for (name, value) in &request.headers {
            builder = builder.header(name, value.clone());
        }
        if let Some(body) = &request.json {
            builder = builder.json(body);
        }
        let target = redacted(&request.url);
        let exchange = async {
            let mut response = builder
                .send()
                .await
                .map_err(|e| network_error(&request.method, &target, e))?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = read_capped(&mut response, MAX_BODY_BYTES).await.map_err(|e| match e {
                BodyError::TooLarge => ProviderError::Malformed(format!(
                    "the answer to {} {target} is larger than {MAX_BODY_BYTES} bytes",
                    request.method
                )),
                BodyError::Transport(e) => network_error(&request.method, &target, e),
            })?;
            Ok(ApiResponse { status, headers, body })
        };
        let result = tokio::time::timeout(self.timeout, exchange).await.unwrap_or_else(|_| {
            Err(ProviderError::Network(format!(
                "{} {target} timed out after {:?}",
                request.method, self.timeout
            )))
        });
        match &result {
            Ok(response) => {
                tracing::debug!(method = %request.method, url = %target, status = response.status.as_u16(), "provider answered");
            }
            Err(error) => tracing::debug!(method = %request.method, url = %target, %error, "provider request failed"),
        }
        result
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// It exceeds the cap.
    TooLarge,
    /// The connection failed while reading.
    Transport(reqwest::Error),
}

/// Reads a body whole, refusing more than `cap` bytes (announced or actual).
pub(crate) async fn read_capped(response: &mut reqwest::Response, cap: usize) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|len| len > u64::try_from(cap).unwrap_or(u64::MAX))
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len().saturating_add(chunk.len()) > cap {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A transport failure, described without the URL's query or any header.
fn network_error(method: &Method, target: &str, error: reqwest::Error) -> ProviderError {
    let error = error.without_url();
    let mut message = format!("{method} {target}: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    ProviderError::Network(message)
}

/// The provider's error code or reason, reduced to a safe token (letters,
/// digits, `_.-`, at most 64 characters); never its message text.
fn error_reason(dialect: Dialect, body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error")?;
    let raw = match dialect {
        Dialect::Google => error
            .pointer("/errors/0/reason")
            .and_then(Value::as_str)
            .or_else(|| error.get("status").and_then(Value::as_str))
            // OAuth-style `{"error": "invalid_token"}`.
            .or_else(|| error.as_str()),
        Dialect::Graph => error.get("code").and_then(Value::as_str).or_else(|| error.as_str()),
    }?;
    let safe: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        .take(MAX_REASON_CHARS)
        .collect();
    (!safe.is_empty()).then_some(safe)
}

/// Whether any of Google's `error.errors[].reason` is one of `reasons`.
fn google_reason_in(body: &[u8], reasons: &[&str]) -> bool {
    serde_json::from_slice::<Value>(body).ok().is_some_and(|value| {
        value
            .pointer("/error/errors")
            .and_then(Value::as_array)
            .is_some_and(|errors| {
                errors
                    .iter()
                    .filter_map(|e| e.get("reason").and_then(Value::as_str))
                    .any(|reason| reasons.contains(&reason))
            })
    })
}

/// `Retry-After` as seconds or an HTTP-date (measured against the answer's own
/// `Date` when present, else `now`); a date in the past means "now".
pub(crate) fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    let reference = headers
        .get(header::DATE)
        .and_then(|d| d.to_str().ok())
        .and_then(|d| DateTime::parse_from_rfc2822(d).ok())
        .map_or(now, |d| d.with_timezone(&Utc));
    Some((at - reference).to_std().unwrap_or(Duration::ZERO))
}

/// Google's 403 reasons that mean "slow down", not "forbidden".
const GOOGLE_RATE_LIMIT_REASONS: &[&str] = &["rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"];
/// Graph error codes that mean the delta token is gone.
const GRAPH_RESYNC_CODES: &[&str] = &["syncStateNotFound", "syncStateInvalid", "resyncRequired"];

/// What a non-2xx answer means, in [`ProviderError`] terms.
pub(crate) fn classify(
    dialect: Dialect,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> ProviderError {
    let code = status.as_u16();
    let reason = error_reason(dialect, body);
    let reason_is = |candidates: &[&str]| {
        reason
            .as_deref()
            .is_some_and(|r| candidates.iter().any(|c| c.eq_ignore_ascii_case(r)))
    };
    match dialect {
        Dialect::Google => {
            if code == 403 && google_reason_in(body, GOOGLE_RATE_LIMIT_REASONS) {
                return ProviderError::Retryable {
                    status: code,
                    retry_after: retry_after(headers, now),
                };
            }
            if code == 410 {
                // 410 `deleted` is an event that is gone; any other 410 (`fullSyncRequired`)
                // is a sync token that is.
                return if reason_is(&["deleted"]) {
                    ProviderError::NotFound
                } else {
                    ProviderError::FullResyncRequired
                };
            }
        }
        Dialect::Graph => {
            if code == 410 || reason_is(GRAPH_RESYNC_CODES) {
                return ProviderError::FullResyncRequired;
            }
            if reason_is(&["ErrorIrresolvableConflict"]) {
                return ProviderError::PreconditionFailed;
            }
        }
    }
    match code {
        401 => ProviderError::Unauthorized,
        404 => ProviderError::NotFound,
        409 => ProviderError::AlreadyExists,
        412 => ProviderError::PreconditionFailed,
        429 | 503 | 504 => ProviderError::Retryable {
            status: code,
            retry_after: retry_after(headers, now),
        },
        500..=599 => ProviderError::Retryable {
            status: code,
            retry_after: None,
        },
        _ => ProviderError::Rejected {
            status: code,
            reason: reason.unwrap_or_else(|| "unknown".into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn segments_are_percent_encoded_and_queries_redacted() {
        let base = ApiBase::parse("https://www.googleapis.com/calendar/v3/").unwrap();
        let url = base.url(&["calendars", "team#x@group.calendar.google.com", "events"]);
        assert_eq!(
            url.as_str(),
            "https://www.googleapis.com/calendar/v3/calendars/team%23x%40group.calendar.google.com/events"
        );
        let with_token = Url::parse("https://graph.microsoft.com/v1.0/me/x/delta?$deltatoken=secret").unwrap();
        assert_eq!(redacted(&with_token), "https://graph.microsoft.com/v1.0/me/x/delta");
        assert!(ApiBase::parse("ftp://example.com").is_err());
        assert!(ApiBase::parse("https://user:pw@example.com").is_err());
    }

    #[test]
    fn links_elsewhere_are_refused() {
        let base = ApiBase::parse("https://graph.microsoft.com/v1.0").unwrap();
        assert!(
            base.link("https://graph.microsoft.com/v1.0/me/calendars?$skip=10")
                .is_ok()
        );
        assert!(base.link("https://evil.example/v1.0/me/calendars").is_err());
        assert!(base.link("http://graph.microsoft.com/v1.0/me").is_err());
        assert!(base.link("not a url").is_err());
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")]), now()),
            Some(Duration::from_secs(7))
        );
        let dated = headers(&[
            ("retry-after", "Mon, 05 Jan 2026 09:01:00 GMT"),
            ("date", "Mon, 05 Jan 2026 09:00:30 GMT"),
        ]);
        assert_eq!(retry_after(&dated, now()), Some(Duration::from_secs(30)));
        let undated = headers(&[("retry-after", "Mon, 05 Jan 2026 09:02:00 GMT")]);
        assert_eq!(retry_after(&undated, now()), Some(Duration::from_secs(120)));
        let past = headers(&[("retry-after", "Mon, 05 Jan 2026 08:00:00 GMT")]);
        assert_eq!(retry_after(&past, now()), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now()), None);
    }

    #[test]
    fn google_errors_are_classified_by_status_and_reason() {
        let body = |reason: &str| {
            format!(
                r#"{{"error": {{"code": 403, "message": "Meeting with Dr. X", "errors": [{{"reason": "{reason}"}}]}}}}"#
            )
        };
        let h = headers(&[("retry-after", "3")]);
        let google = |status: u16, body: &str| {
            classify(
                Dialect::Google,
                StatusCode::from_u16(status).unwrap(),
                &h,
                body.as_bytes(),
                now(),
            )
        };
        assert_eq!(
            google(403, &body("userRateLimitExceeded")),
            ProviderError::Retryable {
                status: 403,
                retry_after: Some(Duration::from_secs(3))
            }
        );
        let forbidden = google(403, &body("requiredAccessLevel"));
        assert_eq!(
            forbidden,
            ProviderError::Rejected {
                status: 403,
                reason: "requiredAccessLevel".into()
            }
        );
        assert!(!forbidden.to_string().contains("Dr. X"), "no message text");
        assert_eq!(
            google(410, &body("fullSyncRequired")),
            ProviderError::FullResyncRequired
        );
        assert_eq!(google(410, &body("deleted")), ProviderError::NotFound);
        assert_eq!(
            google(500, "<html>"),
            ProviderError::Retryable {
                status: 500,
                retry_after: None
            }
        );
        assert_eq!(
            google(400, "<html>"),
            ProviderError::Rejected {
                status: 400,
                reason: "unknown".into()
            }
        );
        assert_eq!(
            google(400, &body("bad reason with spaces and <junk>")),
            ProviderError::Rejected {
                status: 400,
                reason: "badreasonwithspacesandjunk".into()
            }
        );
    }

    #[test]
    fn graph_errors_are_classified_by_status_and_code() {
        let graph = |status: u16, code: &str| {
            let body = format!(r#"{{"error": {{"code": "{code}", "message": "secret subject", "innerError": {{}}}}}}"#);
            classify(
                Dialect::Graph,
                StatusCode::from_u16(status).unwrap(),
                &HeaderMap::new(),
                body.as_bytes(),
                now(),
            )
        };
        assert_eq!(graph(400, "syncStateNotFound"), ProviderError::FullResyncRequired);
        assert_eq!(graph(410, "whatever"), ProviderError::FullResyncRequired);
        assert_eq!(
            graph(409, "ErrorIrresolvableConflict"),
            ProviderError::PreconditionFailed
        );
        assert_eq!(graph(409, "ErrorFolderExists"), ProviderError::AlreadyExists);
        assert_eq!(
            graph(504, "GatewayTimeout"),
            ProviderError::Retryable {
                status: 504,
                retry_after: None
            }
        );
        assert_eq!(
            graph(403, "ErrorAccessDenied"),
            ProviderError::Rejected {
                status: 403,
                reason: "ErrorAccessDenied".into()
            }
        );
    }

    #[test]
    fn malformed_json_errors_do_not_echo_the_body() {
        let err = parse_json::<Vec<u32>>(br#"["private event title"]"#).unwrap_err();
        assert!(
            matches!(&err, ProviderError::Malformed(m) if !m.contains("private")),
            "{err}"
        );
        let err = parse_json::<Value>(br#"{"items": [{"id""#).unwrap_err();
        assert!(
            matches!(&err, ProviderError::Malformed(m) if m.contains("truncated")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn bodies_over_the_cap_are_refused() {
        let mut small = reqwest::Response::from(http::Response::new(vec![b'x'; 10]));
        assert_eq!(read_capped(&mut small, 10).await.unwrap().len(), 10);
        let mut large = reqwest::Response::from(http::Response::new(vec![b'x'; 11]));
        assert!(matches!(read_capped(&mut large, 10).await, Err(BodyError::TooLarge)));
    }
}
