//! The workers of one replica: each leases one due calendar at a time and
//! runs it; idle workers poll (or are woken). And the cleanup job, deleting
//! expired event rows and old "sync now" jobs in bounded batches.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use juy_store::{events, sync_jobs, sync_state};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::engine::Engine;

/// Something that resolves when a worker should look for due calendars before its next poll.
pub type Wakeup = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The running workers and cleanup job of a replica; [`Workers::shutdown`] stops them.
#[derive(Debug)]
pub struct Workers {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Stops every worker after its current run (a run in progress ends at
    /// its next page boundary at the latest, since it is dropped) and waits.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Starts `engine.config().workers` workers named `{replica}/{n}` (names
/// must be unique across replicas), `engine.config().outbox.dispatchers`
/// meeting dispatchers, the reminder planner and dispatchers (when
/// `engine.config().reminders` is set) and the cleanup job. `wakeup` wakes the workers,
/// `outbox_wakeup` the dispatchers (separate signals, so one kind never
/// takes the other's wake-up).
pub fn spawn_workers(
    engine: Arc<Engine>,
    replica: &str,
    wakeup: Option<Wakeup>,
    outbox_wakeup: Option<Wakeup>,
) -> Workers {
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    for n in 0..engine.config().workers {
        let owner = format!("{replica}/{n}");
        tasks.push(tokio::spawn(work(
            Arc::clone(&engine),
            owner,
            wakeup.clone(),
            stopped.clone(),
        )));
    }
    for n in 0..engine.config().outbox.dispatchers {
        tasks.push(crate::outbox::spawn_dispatcher(
            Arc::clone(&engine),
            format!("{replica}/outbox/{n}"),
            outbox_wakeup.clone(),
            stopped.clone(),
        ));
    }
    match engine.config().reminders.clone() {
        Some(config) => tasks.extend(crate::reminders::spawn(Arc::clone(&engine), &config, replica, &stopped)),
        None => tracing::info!("reminders.endpoint is not set: reminders are neither planned nor sent"),
    }
    if let Some(config) = engine.config().audit_forward.clone() {
        match crate::audit_forward::Forwarder::new(config) {
            Ok(forwarder) => tasks.extend(crate::audit_forward::spawn_forwarders(
                engine.store().clone(),
                Arc::new(forwarder),
                replica,
                stopped.clone(),
            )),
            Err(error) => tracing::error!(error = %error, "the audit forwarder's HTTP client could not be built"),
        }
    }
    tasks.push(crate::busy_blocks::spawn_refresher(
        Arc::clone(&engine),
        stopped.clone(),
    ));
    tasks.push(spawn_cleanup(Arc::clone(&engine), stopped));
    Workers { stop, tasks }
}

async fn work(engine: Arc<Engine>, owner: String, wakeup: Option<Wakeup>, mut stopped: watch::Receiver<bool>) {
    tracing::debug!(owner, "sync worker started");
    loop {
        if *stopped.borrow() {
            break;
        }
        let leased = match engine.store().conn().await {
            Ok(mut conn) => {
                let now = engine.clock().now();
                sync_state::lease_due(&mut conn, &owner, now, engine.config().lease_for, 1).await
            }
            Err(error) => Err(error),
        };
        match leased {
            Ok(leases) if !leases.is_empty() => {
                for lease in leases {
                    // Stopping drops the run at its next await: its lease runs out and
                    // another worker resumes from the last committed page.
                    tokio::select! {
                        _ = engine.run(lease) => {}
                        _ = stopped.changed() => return,
                    }
                }
                continue;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(owner, error = %error, "could not lease due calendars"),
        }
        let poll = tokio::time::sleep(engine.config().poll_interval);
        match &wakeup {
            Some(wakeup) => {
                tokio::select! {
                    _ = poll => {}
                    _ = wakeup() => {}
                    _ = stopped.changed() => break,
                }
            }
            None => {
                tokio::select! {
                    _ = poll => {}
                    _ = stopped.changed() => break,
                }
            }
        }
    }
    tracing::debug!(owner, "sync worker stopped");
}

/// Starts the cleanup job alone (every replica may run one: batches skip rows another cleaner holds).
pub fn spawn_cleanup(engine: Arc<Engine>, mut stopped: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(error) = cleanup_once(&engine).await {
                tracing::warn!(error = %error, "the cleanup job failed; retrying at its next run");
            }
            tokio::select! {
                _ = tokio::time::sleep(engine.config().cleanup_interval) => {}
                _ = stopped.changed() => break,
            }
        }
    })
}

/// One cleanup pass: every expired event row (in batches) and old jobs. Returns how many event rows it deleted.
pub async fn cleanup_once(engine: &Engine) -> Result<u64, juy_store::StoreError> {
    let mut conn = engine.store().conn().await?;
    let now = engine.clock().now();
    let batch = engine.config().cleanup_batch.max(1);
    let mut deleted = 0;
    loop {
        let n = events::delete_expired_events(&mut conn, now, batch).await?;
        deleted += n;
        if n < batch as u64 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let before = now - engine.config().job_retention;
    while sync_jobs::delete_jobs_before(&mut conn, before, batch).await? >= batch as u64 {}
    if deleted > 0 {
        tracing::info!(deleted, "deleted expired event rows");
    }
    Ok(deleted)
}
