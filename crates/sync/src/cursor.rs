//! What a calendar's `sync_cursor` holds between runs and between pages: the
//! round in progress (a full listing or a change feed, and where its next
//! page starts), the provider's cursor for the next incremental round, the
//! window it covers, and when the calendar was last fully listed. Stored as
//! JSON; a cursor that cannot be read (older format, corruption) means "list
//! the calendar in full", which converges whatever it was.

use chrono::{DateTime, Utc};
use juy_domain::TimeRange;
use serde::{Deserialize, Serialize};

/// The state of a calendar's sync, as stored in `sync_cursor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncCursor {
    /// The round in progress, or the cursor of the next one.
    pub round: Round,
    /// The window the provider cursor (or the listing in progress) covers.
    pub window: TimeRange,
    /// When the last full listing finished; `None` = never.
    pub last_full: Option<DateTime<Utc>>,
    /// When the account's calendars were last listed from this calendar's runs.
    #[serde(default)]
    pub discovered_at: Option<DateTime<Utc>>,
    /// Google's calendar-level defaults (`defaultReminders`, `timeZone`) as last
    /// sent, for pages that come without them.
    #[serde(default)]
    pub defaults: Option<serde_json::Value>,
}

/// Why a full listing runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FullReason {
    /// Never synced (or the stored cursor was unusable).
    Initial,
    /// The provider invalidated its cursor (Google 410, Graph `syncStateNotFound`,
    /// CalDAV `valid-sync-token`, changed ctag).
    ResyncRequired,
    /// The window rolled forward (a Graph delta round's window is fixed).
    WindowRolled,
    /// The periodic reconciliation.
    Reconcile,
}

impl FullReason {
    /// Its name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FullReason::Initial => "initial",
            FullReason::ResyncRequired => "resync_required",
            FullReason::WindowRolled => "window_rolled",
            FullReason::Reconcile => "reconcile",
        }
    }
}

/// A round of a calendar's sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Round {
    /// A full listing of the window. Every row it writes is confirmed at or
    /// after `mark`; when its last page commits, rows confirmed before `mark`
    /// are deleted, so the listing converges and old rows stay visible until then.
    Full {
        /// The sweep mark, taken when the listing began.
        mark: DateTime<Utc>,
        /// Why it runs.
        reason: FullReason,
        /// Where the next page starts (`None`: from the beginning).
        resume: Option<String>,
    },
    /// A change feed from `token`, its next page at `resume`.
    Changes {
        /// The provider cursor the round started from (to start again when
        /// `resume` is refused).
        token: String,
        /// Where the next page starts.
        resume: Option<String>,
    },
    /// Between rounds: the next one starts from `token` (`None`: the provider
    /// gave no cursor, so the next round lists in full).
    Idle {
        /// The provider cursor.
        token: Option<String>,
    },
}

impl SyncCursor {
    /// The stored text.
    pub fn encode(&self) -> String {
        // Plain data: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The stored text read back; `None` if it is not a cursor of this version.
    pub fn decode(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn cursors_round_trip_and_garbage_is_none() {
        let at = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
        let cursor = SyncCursor {
            round: Round::Full {
                mark: at,
                reason: FullReason::ResyncRequired,
                resume: Some("pageToken=x&a=b".into()),
            },
            window: TimeRange::new(at, at + chrono::Duration::days(1)).unwrap(),
            last_full: None,
            discovered_at: Some(at),
            defaults: None,
        };
        assert_eq!(SyncCursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(SyncCursor::decode("nextSyncToken-from-an-old-version"), None);
        assert_eq!(SyncCursor::decode("{}"), None);
    }
}
