//! Waking this replica's sync workers when a calendar was made due (sync now,
//! a verified push notification), so they lease it at once instead of at
//! their next poll. Other replicas find it at their next poll.

use std::sync::Arc;

use tokio::sync::Notify;

/// A shared wake-up signal for the sync workers; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct SyncWakeup(Arc<Notify>);

impl SyncWakeup {
    /// A new signal nobody waits on yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes every worker waiting now, and the next one to wait if none is.
    pub fn notify(&self) {
        self.0.notify_waiters();
        self.0.notify_one();
    }

    /// Resolves at the next [`notify`](Self::notify) (or at once if one came
    /// while nobody waited).
    pub async fn notified(&self) {
        self.0.notified().await;
    }
}
