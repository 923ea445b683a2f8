//! What an account's encrypted `credentials_enc` column holds.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// An account's credentials, serialised as JSON and stored sealed with the
/// owner's data key. Secrets are zeroised on drop and never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoredCredentials {
    /// OAuth tokens (Google, Microsoft).
    OAuth {
        /// The access token.
        access_token: String,
        /// When the access token expires.
        #[zeroize(skip)]
        expires_at: DateTime<Utc>,
        /// The refresh token, when the provider gave one.
        refresh_token: Option<String>,
    },
    /// HTTP Basic credentials (CalDAV; an app-specific password for iCloud).
    Password {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
}

impl std::fmt::Debug for StoredCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoredCredentials::OAuth { expires_at, .. } => f
                .debug_struct("OAuth")
                .field("expires_at", expires_at)
                .finish_non_exhaustive(),
            StoredCredentials::Password { .. } => f.debug_struct("Password").finish_non_exhaustive(),
        }
    }
}

/// Stored credentials that do not parse.
#[derive(Debug, thiserror::Error)]
#[error("stored credentials are not readable")]
pub struct UnreadableCredentials;

impl StoredCredentials {
    /// The JSON to seal.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        // Serialising these plain fields cannot fail.
        Zeroizing::new(serde_json::to_vec(self).unwrap_or_default())
    }

    /// The OAuth access token, if these are OAuth credentials.
    pub fn access_token(&self) -> Option<&str> {
        match self {
            StoredCredentials::OAuth { access_token, .. } => Some(access_token),
            StoredCredentials::Password { .. } => None,
        }
    }

    /// The OAuth refresh token, if any.
    pub fn refresh_token(&self) -> Option<&str> {
        match self {
            StoredCredentials::OAuth { refresh_token, .. } => refresh_token.as_deref(),
            StoredCredentials::Password { .. } => None,
        }
    }

    /// When the OAuth access token expires.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        match self {
            StoredCredentials::OAuth { expires_at, .. } => Some(*expires_at),
            StoredCredentials::Password { .. } => None,
        }
    }

    /// Parses unsealed JSON.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, UnreadableCredentials> {
        serde_json::from_slice(bytes).map_err(|_| UnreadableCredentials)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips_and_debug_hides_secrets() {
        let creds = StoredCredentials::OAuth {
            access_token: "at-secret".into(),
            expires_at: Utc::now(),
            refresh_token: Some("rt-secret".into()),
        };
        let back = StoredCredentials::from_bytes(&creds.to_bytes()).unwrap();
        assert_eq!(back, creds);
        let shown = format!("{creds:?}");
        assert!(!shown.contains("secret"), "{shown}");
        let password = StoredCredentials::Password {
            username: "u".into(),
            password: "pw-secret".into(),
        };
        assert!(!format!("{password:?}").contains("secret"));
        assert!(StoredCredentials::from_bytes(b"{\"kind\":\"nope\"}").is_err());
    }
}
