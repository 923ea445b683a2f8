//! Identifiers of users, accounts, calendars and events, and the provider kinds.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{DomainError, named_enum};

/// A Juy user id: the `sub` of the gateway's JWT. Opaque to this service and
/// the distribution column every user-owned table is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    /// The longest user id accepted.
    pub const MAX_LEN: usize = 256;

    /// Checks and wraps a user id.
    pub fn new(id: impl Into<String>) -> Result<Self, DomainError> {
        let id = id.into();
        if id.is_empty() || id.len() > Self::MAX_LEN || id.chars().any(char::is_control) {
            return Err(DomainError::BadUserId);
        }
        Ok(Self(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for UserId {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<UserId> for String {
    fn from(value: UserId) -> Self {
        value.0
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered (UUIDv7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// A connected external account (one Google, Microsoft or CalDAV login).
    AccountId
);
uuid_id!(
    /// One calendar of a connected account.
    CalendarId
);
uuid_id!(
    /// One stored event (an occurrence, for recurring series).
    EventId
);
uuid_id!(
    /// A meeting organised in Juy.
    MeetingId
);

/// Where a calendar lives. Apple iCloud is reached over CalDAV, which also
/// serves any standards CalDAV server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Google Calendar API v3.
    Google,
    /// Microsoft Graph (Outlook / Exchange).
    Microsoft,
    /// Apple iCloud and any RFC 4791 CalDAV server.
    Caldav,
}

named_enum!(Provider, "provider", {
    Google => "google",
    Microsoft => "microsoft",
    Caldav => "caldav",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_rejects_empty_long_and_control_characters() {
        assert!(UserId::new("").is_err());
        assert!(UserId::new("a".repeat(UserId::MAX_LEN + 1)).is_err());
        assert!(UserId::new("a\nb").is_err());
        assert_eq!(UserId::new("user-1").unwrap().as_str(), "user-1");
    }

    #[test]
    fn provider_names_round_trip() {
        for p in Provider::ALL {
            assert_eq!(p.as_str().parse::<Provider>().unwrap(), *p);
        }
        let err = "yahoo".parse::<Provider>().unwrap_err();
        assert_eq!(err.to_string(), "unknown provider `yahoo`");
    }
}
