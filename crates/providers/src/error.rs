//! How a provider call failed, classified for the caller.

use std::time::Duration;

/// How a provider call failed. Messages never carry tokens, passwords or event text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider rejected the credential, even after one refresh.
    #[error("the provider rejected the credentials")]
    Unauthorized,
    /// The grant is gone (OAuth `invalid_grant`): the user must link the account again.
    #[error("the provider no longer accepts this account's authorisation: {0}")]
    ReauthRequired(String),
    /// The stored cursor is no longer valid (Google 410, Graph `syncStateNotFound`,
    /// CalDAV `valid-sync-token`): drop the calendar's events and sync from scratch.
    #[error("the provider requires a full resync")]
    FullResyncRequired,
    /// Throttled or temporarily unavailable (429, 503, 504, Google 403 rate-limit
    /// reasons): retry after `retry_after` if given, else with backoff.
    #[error("the provider is throttling or unavailable (HTTP {status})")]
    Retryable {
        /// The HTTP status.
        status: u16,
        /// The provider's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// A transport failure or timeout: retry with backoff.
    #[error("could not reach the provider: {0}")]
    Network(String),
    /// The calendar or event does not exist (or the account cannot see it).
    #[error("not found at the provider")]
    NotFound,
    /// The event exists already (a create with an id or resource name in use).
    #[error("the event already exists at the provider")]
    AlreadyExists,
    /// The event changed since the given ETag.
    #[error("the event changed at the provider since it was read")]
    PreconditionFailed,
    /// The provider refused the request for another reason (4xx other than the above).
    #[error("the provider refused the request (HTTP {status}): {reason}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The provider's error code or reason, never its free text about the event.
        reason: String,
    },
    /// The answer could not be understood (bad JSON, bad XML, truncated body).
    #[error("the provider's answer could not be understood: {0}")]
    Malformed(String),
    /// A URL is not allowed (not https, or resolves to a private address without an allow-list entry).
    #[error("the URL is not allowed: {0}")]
    UrlNotAllowed(String),
}

impl ProviderError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ProviderError::Retryable { .. } | ProviderError::Network(_))
    }

    /// The delay the provider asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Retryable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
