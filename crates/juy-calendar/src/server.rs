//! Listeners and their lifecycle: bind, accept (optionally TLS), serve HTTP/1.1
//! and HTTP/2 (h2c too, for plaintext gRPC) with hyper, and on shutdown stop
//! accepting, report NOT_SERVING, and let in-flight requests finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use juy_api::auth::Authenticator;
use juy_api::service::CalendarService;
use juy_store::Store;

use crate::config::Settings;

/// A running server.
pub struct RunningServer {
    /// Where gRPC is served.
    pub grpc_addr: SocketAddr,
    /// Where REST is served.
    pub rest_addr: SocketAddr,
    /// The store the server uses.
    pub store: Store,
    /// The wake-up signal of this replica's sync workers.
    pub wakeup: juy_api::SyncWakeup,
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
    workers: juy_sync::Workers,
}

impl RunningServer {
    /// Asks the server to stop and waits until in-flight requests have finished.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let served = self.task.await.context("server task panicked")?;
        self.workers.shutdown().await;
        served
    }

    /// Waits until the server stops by itself (it only does on errors) or `signal` resolves.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(signal);
        let stop = self.stop.clone();
        let mut task = self.task;
        let workers = self.workers;
        tokio::select! {
            result = &mut task => {
                workers.shutdown().await;
                result.context("server task panicked")?
            }
            () = &mut signal => {
                tracing::info!("shutdown requested; finishing in-flight requests");
                let _ = stop.send(true);
                workers.shutdown().await;
                task.await.context("server task panicked")?
            }
        }
    }
}

/// Connects the store, migrates if configured, binds both listeners and serves.
pub async fn start(settings: Settings) -> anyhow::Result<RunningServer> {
    if settings.migrate_on_start {
        let applied = juy_store::run_migrations(&settings.database.database_url)
            .await
            .context("applying database migrations")?;
        if !applied.is_empty() {
            tracing::info!(count = applied.len(), "applied migrations");
        }
    }
    let store = Store::connect(&settings.database, settings.keyring.clone()).context("connecting to the database")?;
    {
        // Forwarding queues entries in the database: switched on or off for the
        // whole database by whichever replica starts last (replicas share one configuration).
        let mut conn = store.conn().await.context("connecting to the database")?;
        juy_store::audit::set_forwarding(&mut conn, settings.sync.audit_forward.is_some())
            .await
            .context("switching audit forwarding")?;
        if let Some(forward) = &settings.sync.audit_forward {
            tracing::info!(endpoint = %forward.endpoint, "forwarding the audit trail");
        }
    }
    let auth = Authenticator::new(&settings.auth).context("setting auth")?;
    // reqwest (provider clients) uses rustls with the ring provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let integrations = juy_api::connect::Integrations::new(
        settings.integrations.clone(),
        store.clone(),
        Arc::new(juy_domain::SystemClock),
    )
    .context("setting up the provider clients")?;
    let integrations = Arc::new(integrations);
    let wakeup = juy_api::SyncWakeup::new();
    let outbox_wakeup = juy_api::SyncWakeup::new();
    let workers = start_sync(&settings, &store, &integrations, &wakeup, &outbox_wakeup);
    let service = CalendarService::new(store.clone(), Arc::clone(&integrations))
        .with_wakeup(wakeup.clone())
        .with_outbox_wakeup(outbox_wakeup)
        .with_stale_after(settings.sync.stale_after);
    let routers = juy_api::routers(service, auth, settings.server.request_timeout).await?;
    let tls = settings.tls.as_ref().map(crate::tls::acceptor).transpose()?;

    let grpc_listener = TcpListener::bind(settings.server.grpc_addr)
        .await
        .with_context(|| format!("setting server.grpc_addr: cannot bind {}", settings.server.grpc_addr))?;
    let rest_listener = TcpListener::bind(settings.server.rest_addr)
        .await
        .with_context(|| format!("setting server.rest_addr: cannot bind {}", settings.server.rest_addr))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let rest_addr = rest_listener.local_addr()?;
    tracing::info!(grpc = %grpc_addr, rest = %rest_addr, tls = tls.is_some(), "serving");
    if tls.is_none() {
        tracing::warn!("serving plaintext (tls.enabled = false): for development only");
    }

    let (stop, stopped) = watch::channel(false);
    let grace = settings.server.shutdown_grace;
    let health = routers.health.clone();
    let task = tokio::spawn(async move {
        let grpc = serve(grpc_listener, tls.clone(), routers.grpc, stopped.clone(), grace);
        let rest = serve(rest_listener, tls, routers.rest, stopped.clone(), grace);
        let mut stopped_for_health = stopped;
        let health_task = async move {
            stop_requested(&mut stopped_for_health).await;
            health.set_not_serving::<juy_api::pb::v1::calendar_sync_server::CalendarSyncServer<juy_api::grpc::CalendarSyncApi>>().await;
            health
                .set_not_serving::<juy_api::pb::v1::admin_server::AdminServer<juy_api::grpc::AdminApi>>()
                .await;
            health
                .set_not_serving::<juy_api::pb::v1::availability_server::AvailabilityServer<
                    juy_api::grpc::AvailabilityApi,
                >>()
                .await;
        };
        let (grpc, rest, ()) = tokio::join!(grpc, rest, health_task);
        grpc.and(rest)
    });
    Ok(RunningServer {
        grpc_addr,
        rest_addr,
        store,
        wakeup,
        stop,
        task,
        workers,
    })
}

/// Starts this replica's sync workers and cleanup job.
fn start_sync(
    settings: &Settings,
    store: &Store,
    integrations: &Arc<juy_api::connect::Integrations>,
    wakeup: &juy_api::SyncWakeup,
    outbox_wakeup: &juy_api::SyncWakeup,
) -> juy_sync::Workers {
    let clients = {
        let integrations = Arc::clone(integrations);
        move |lease: &juy_store::sync_state::Lease| {
            integrations.client_for(
                &lease.user_id,
                lease.account_id,
                lease.provider,
                lease.server_url.as_deref(),
            )
        }
    };
    let engine = Arc::new(juy_sync::Engine::new(
        store.clone(),
        Arc::new(clients),
        Arc::new(juy_domain::SystemClock),
        settings.sync.clone(),
    ));
    let wake_on = |signal: &juy_api::SyncWakeup| -> juy_sync::Wakeup {
        let signal = signal.clone();
        Arc::new(move || {
            let signal = signal.clone();
            Box::pin(async move { signal.notified().await })
        })
    };
    // Unique across replicas: host, process and a random part (pids repeat across containers).
    let replica = format!(
        "{}-{}-{:08x}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "juy".into()),
        std::process::id(),
        rand::random::<u32>()
    );
    tracing::info!(replica, workers = settings.sync.workers, "starting sync workers");
    juy_sync::spawn_workers(engine, &replica, Some(wake_on(wakeup)), Some(wake_on(outbox_wakeup)))
}

async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: axum::Router,
    mut stopped: watch::Receiver<bool>,
    grace: Duration,
) -> anyhow::Result<()> {
    let graceful = GracefulShutdown::new();
    let builder = Builder::new(TokioExecutor::new());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop_requested(&mut stopped) => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        match &tls {
            None => {
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%peer, error = %error, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await;
                    let stream = match handshake {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, error = %error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let connection = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    if let Err(error) = watcher.watch(connection).await {
                        tracing::debug!(%peer, error = %error, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => tracing::warn!("shutdown grace period over; closing remaining connections"),
    }
    Ok(())
}

/// Resolves once a stop is requested (or the sender is gone).
async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    // The borrow guard is dropped here, so callers' futures stay `Send`.
    let _ = stopped.wait_for(|s| *s).await.map(|_| ());
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
