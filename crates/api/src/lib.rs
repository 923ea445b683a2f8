//! The Calendar Service's API: the tonic gRPC services (`CalendarSync`,
//! `Admin`, plus health and reflection), the axum REST bridge with its
//! OpenAPI document, bearer-token auth, and the one mapping of errors to gRPC
//! statuses and RFC 9457 problems.
//!
//! Handlers only translate between wire formats and [`service`]; they hold no
//! business rules and never speak SQL (that is `juy-store`'s job) or bind
//! sockets (that is the binary's).
#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod auth;
pub mod availability;
pub mod connect;
pub mod error;
pub mod gdpr;
pub mod grpc;
pub mod meetings;
pub mod names;
pub mod paging;
pub mod pb;
pub mod rest;
pub mod rest_admin;
pub mod rest_connect;
pub mod rest_meetings;
pub mod rest_webhooks;
pub mod service;
pub mod telemetry;
mod wakeup;

pub use wakeup::SyncWakeup;

use std::sync::Arc;
use std::time::Duration;

use axum::middleware;
use tonic_health::server::HealthReporter;

use crate::auth::Authenticator;
use crate::grpc::{AdminApi, AvailabilityApi, CalendarSyncApi};
use crate::pb::v1::admin_server::AdminServer;
use crate::pb::v1::availability_server::AvailabilityServer;
use crate::pb::v1::calendar_sync_server::CalendarSyncServer;
use crate::service::CalendarService;

/// The routers of the two listeners, with auth and telemetry applied.
pub struct Routers {
    /// gRPC: CalendarSync, Admin, health, reflection (v1 and v1alpha).
    pub grpc: axum::Router,
    /// REST bridge.
    pub rest: axum::Router,
    /// Health of the gRPC services, to report NOT_SERVING while shutting down.
    pub health: HealthReporter,
}

/// The server could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The descriptor sets for reflection are invalid.
    #[error("building server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// The largest REST request body accepted.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Builds both routers around one service and one authenticator; calls are
/// recorded in the service's store's audit trail.
pub async fn routers(
    service: CalendarService,
    auth: Authenticator,
    request_timeout: Duration,
) -> Result<Routers, BuildError> {
    let auth = Arc::new(auth::Gate::new(
        auth,
        Some(audit::AuditLog::new(service.store().clone())),
    ));
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<CalendarSyncServer<CalendarSyncApi>>().await;
    health.set_serving::<AdminServer<AdminApi>>().await;
    health.set_serving::<AvailabilityServer<AvailabilityApi>>().await;

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    // Python's grpcio-reflection client speaks only v1alpha.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let grpc = tonic::service::Routes::new(health_service)
        .add_service(CalendarSyncServer::new(CalendarSyncApi(service.clone())))
        .add_service(AdminServer::new(AdminApi(service.clone())))
        .add_service(AvailabilityServer::new(AvailabilityApi(service.clone())))
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .into_axum_router()
        .layer(middleware::from_fn_with_state(auth.clone(), auth::require_auth))
        .layer(middleware::from_fn(telemetry::trace_requests));

    // Google and Microsoft call the webhooks without a bearer token (each
    // notification proves itself with its channel's secret): they are merged
    // outside the auth layer. A verified notification makes its calendar due
    // and wakes this replica's workers (other replicas find it at their next poll).
    let webhooks = rest_webhooks::routes(rest_webhooks::WebhookState::new(
        service.store().clone(),
        service.wakeup().clone(),
        Arc::new(juy_domain::SystemClock),
    ))
    .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY_BYTES));
    let rest = rest::routes(service)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            request_timeout,
        ))
        .layer(middleware::from_fn_with_state(auth, auth::require_auth))
        .merge(webhooks)
        .layer(middleware::from_fn(telemetry::trace_requests));

    Ok(Routers { grpc, rest, health })
}
