//! The busy-block refresher: rebuilds the busy blocks of users whose events
//! changed (`juy_store::busy_blocks`), off the sync's path. Until it has,
//! free/busy answers those users from their events, so its delay costs
//! speed, never correctness.
//!
//! A sync writing many pages marks its user on every page; the refresher
//! waits until the marks have settled (or the oldest has waited long enough)
//! so that an initial sync costs one rebuild, not one a page. Replicas share
//! the work: a user being rebuilt elsewhere is skipped (advisory lock).

use std::sync::Arc;
use std::time::{Duration, Instant};

use juy_store::busy_blocks::{self, Rebuilt};
use opentelemetry::metrics::{Counter, Histogram};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::engine::Engine;

/// When and how much the refresher rebuilds.
#[derive(Debug, Clone)]
pub struct BusyBlocksConfig {
    /// How often it looks for users with changes.
    pub interval: Duration,
    /// A user is rebuilt once their last change is this old...
    pub settle: Duration,
    /// ...or their first waiting change this old.
    pub max_wait: Duration,
    /// The most users one look rebuilds.
    pub batch: i64,
}

impl Default for BusyBlocksConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(500),
            settle: Duration::from_secs(1),
            max_wait: Duration::from_secs(10),
            batch: 50,
        }
    }
}

struct Metrics {
    rebuilds: Counter<u64>,
    failures: Counter<u64>,
    duration: Histogram<f64>,
}

impl Metrics {
    fn new() -> Self {
        let meter = opentelemetry::global::meter("juy-calendar");
        Self {
            rebuilds: meter
                .u64_counter("juy.busy_blocks.rebuilds")
                .with_description("Users whose busy blocks were rebuilt after their events changed")
                .build(),
            failures: meter
                .u64_counter("juy.busy_blocks.rebuild_failures")
                .with_description("Rebuilds of one user's busy blocks that failed (retried)")
                .build(),
            duration: meter
                .f64_histogram("juy.busy_blocks.rebuild_duration")
                .with_unit("s")
                .with_description("Time to rebuild one user's busy blocks")
                .build(),
        }
    }
}

/// Spawns the refresher; it stops when `stopped` turns true.
pub fn spawn_refresher(engine: Arc<Engine>, mut stopped: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let metrics = Metrics::new();
        let config = engine.config().busy_blocks.clone();
        loop {
            match refresh_due(&engine, &config, &metrics).await {
                // A full batch: more may be waiting.
                Ok(n) if n as i64 >= config.batch => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(error = %error, "rebuilding busy blocks failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(config.interval) => {}
                _ = stopped.changed() => break,
            }
        }
    })
}

async fn refresh_due(
    engine: &Engine,
    config: &BusyBlocksConfig,
    metrics: &Metrics,
) -> Result<usize, juy_store::StoreError> {
    let mut conn = engine.store().conn().await?;
    let users = busy_blocks::dirty_users(&mut conn, config.settle, config.max_wait, config.batch).await?;
    for user in &users {
        let started = Instant::now();
        match busy_blocks::rebuild_user(&mut conn, user).await {
            Ok(Some(Rebuilt {
                events,
                blocks,
                changes,
            })) => {
                let took = started.elapsed();
                metrics.rebuilds.add(1, &[]);
                metrics.duration.record(took.as_secs_f64(), &[]);
                tracing::debug!(
                    events,
                    blocks,
                    changes,
                    ms = took.as_millis() as u64,
                    "busy blocks rebuilt"
                );
            }
            Ok(None) => {}
            // One user's failure (a row that cannot be decoded, say) must not
            // hold up the others; theirs stays marked, so reads keep using
            // their events, and it is tried again at the next look.
            Err(error @ juy_store::StoreError::Unavailable(_)) => return Err(error),
            Err(error) => {
                metrics.failures.add(1, &[]);
                tracing::warn!(error = %error, "rebuilding one user's busy blocks failed; retrying later");
            }
        }
    }
    Ok(users.len())
}

/// Rebuilds every user with changes waiting, now, however recent (tests,
/// benchmarks, the dev command). Returns how many users it rebuilt.
pub async fn refresh_all(store: &juy_store::Store) -> Result<usize, juy_store::StoreError> {
    let mut conn = store.conn().await?;
    let mut rebuilt = 0;
    loop {
        let users = busy_blocks::dirty_users(&mut conn, Duration::ZERO, Duration::ZERO, 500).await?;
        if users.is_empty() {
            return Ok(rebuilt);
        }
        let before = rebuilt;
        for user in &users {
            if busy_blocks::rebuild_user(&mut conn, user).await?.is_some() {
                rebuilt += 1;
            }
        }
        if rebuilt == before {
            // Each is being rebuilt elsewhere: wait for those to finish.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
