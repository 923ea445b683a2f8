//! Connected accounts, their calendars and the user's per-provider settings.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{AccountId, CalendarId, Provider, UserId, named_enum};

/// The life of a connected account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    /// Linked; waiting for its first sync.
    Pending,
    /// Syncing normally.
    Active,
    /// The last syncs failed; `last_error` says why.
    Error,
    /// The provider refused our credentials: the user must link again.
    ReauthRequired,
    /// The user or an admin revoked it; nothing of it is requested again.
    Revoked,
}

named_enum!(AccountStatus, "account status", {
    Pending => "pending",
    Active => "active",
    Error => "error",
    ReauthRequired => "reauth_required",
    Revoked => "revoked",
});

/// Whether Juy may write to a calendar (US-04).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalendarMode {
    /// Juy only reads (the default).
    #[default]
    ReadOnly,
    /// Juy may post meetings to it.
    Write,
}

named_enum!(CalendarMode, "calendar mode", {
    ReadOnly => "read_only",
    Write => "write",
});

/// How the last sync of a calendar went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    /// Never synced yet.
    Pending,
    /// The last sync succeeded.
    Ok,
    /// The last sync failed; `last_error` says why.
    Error,
}

named_enum!(SyncStatus, "sync status", {
    Pending => "pending",
    Ok => "ok",
    Error => "error",
});

/// One external account linked by a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectedAccount {
    /// Our id for it.
    pub id: AccountId,
    /// Its owner.
    pub user_id: UserId,
    /// Where it lives.
    pub provider: Provider,
    /// The provider's stable id of the account (OpenID `sub`, Graph id, CalDAV principal URL).
    pub external_account_id: String,
    /// What the user recognises it by, usually an email address.
    pub display_name: Option<String>,
    /// Where it stands.
    pub status: AccountStatus,
    /// Why it stands there, for the user (e.g. why re-authorisation is needed).
    pub status_reason: Option<String>,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// When it was linked.
    pub connected_at: DateTime<Utc>,
    /// When a sync last succeeded for any of its calendars.
    pub last_sync_at: Option<DateTime<Utc>>,
    /// The last sync error, for users and admins (never secrets or event text).
    pub last_error: Option<String>,
}

/// One calendar of a connected account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// Our id for it.
    pub id: CalendarId,
    /// Its owner.
    pub user_id: UserId,
    /// The account it belongs to.
    pub account_id: AccountId,
    /// Where it lives.
    pub provider: Provider,
    /// The provider's id (Google calendar id, Graph id, CalDAV collection URL).
    pub provider_calendar_id: String,
    /// Its name as the provider shows it.
    pub name: String,
    /// Its colour as `#rrggbb`, when the provider has one.
    pub color: Option<String>,
    /// Its IANA time zone, when known.
    pub time_zone: Option<String>,
    /// Whether it is the account's main calendar.
    pub is_primary: bool,
    /// Whether the provider lets this account write to it.
    pub can_write: bool,
    /// Whether Juy may write to it.
    pub mode: CalendarMode,
    /// How its last sync went.
    pub sync_status: SyncStatus,
    /// When it last synced successfully.
    pub last_synced_at: Option<DateTime<Utc>>,
    /// Its last sync error, if any.
    pub last_error: Option<String>,
}

/// Which reminder channels a user wants for one provider's events (US-05).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationChannels {
    /// The provider these switches are for.
    pub provider: Provider,
    /// Push notifications.
    pub push: bool,
    /// Email.
    pub email: bool,
    /// SMS.
    pub sms: bool,
}

impl NotificationChannels {
    /// The defaults for a provider the user never configured: push only.
    pub fn default_for(provider: Provider) -> Self {
        Self {
            provider,
            push: true,
            email: false,
            sms: false,
        }
    }
}
