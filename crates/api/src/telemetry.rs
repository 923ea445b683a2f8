//! One span and one log line per request (method, path, status, gRPC status,
//! latency, request id) and a request-duration histogram. Headers, query
//! strings and bodies are never recorded: they can hold tokens and event text.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;
use tracing::Instrument as _;

/// The header carrying the request id, accepted from the gateway or made here.
pub const REQUEST_ID: &str = "x-request-id";

fn request_id(request: &Request) -> String {
    request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The request-duration histogram, made once (after telemetry set the global meter provider).
fn request_duration() -> &'static Histogram<f64> {
    static HISTOGRAM: OnceLock<Histogram<f64>> = OnceLock::new();
    HISTOGRAM.get_or_init(|| {
        opentelemetry::global::meter("juy-calendar")
            .f64_histogram("juy.calendar.request.duration")
            .with_unit("s")
            .with_description("Duration of gRPC and REST requests")
            .build()
    })
}

/// The request's id, put in the request's extensions for the handlers and the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The middleware.
pub async fn trace_requests(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&request);
    request.extensions_mut().insert(RequestId(id.clone()));
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        path = %path,
        status = tracing::field::Empty,
        grpc_status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    let latency = started.elapsed();
    let status = response.status();
    // Errors of unary gRPC calls come as trailers-only responses, with the status in the headers.
    let grpc_status = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    span.record("status", status.as_u16());
    if let Some(code) = &grpc_status {
        span.record("grpc_status", code.as_str());
    }
    span.record("latency_ms", latency.as_secs_f64() * 1000.0);
    span.in_scope(|| tracing::info!("request finished"));

    let route = if status == StatusCode::NOT_FOUND && grpc_status.is_none() {
        "unmatched".to_owned()
    } else {
        path
    };
    request_duration().record(
        latency.as_secs_f64(),
        &[
            KeyValue::new("route", route),
            KeyValue::new("status", i64::from(status.as_u16())),
            KeyValue::new("grpc_status", grpc_status.unwrap_or_else(|| "0".into())),
        ],
    );
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}
