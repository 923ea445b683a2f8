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

/// The `route` label of a request: the gRPC method, or the REST route's
/// action name (`events.list`, ...) — never a raw REST path, which would
/// carry resource and user ids into the metrics (and one series per id).
fn route_label(method: &str, path: &str, status: StatusCode, grpc: bool) -> String {
    if grpc || path.starts_with("/juy.") || path.starts_with("/grpc.") {
        return path.to_owned();
    }
    if status == StatusCode::NOT_FOUND && !path.starts_with("/v1/") {
        return "unmatched".to_owned();
    }
    let method = axum::http::Method::from_bytes(method.as_bytes()).unwrap_or(axum::http::Method::GET);
    if let Some(action) = crate::audit::rest_action(&method, path) {
        return action.name.to_owned();
    }
    use crate::rest_webhooks::{GOOGLE_PATH, MICROSOFT_LIFECYCLE_PATH, MICROSOFT_PATH};
    match path {
        "/healthz" | "/readyz" | "/v1/openapi.json" | GOOGLE_PATH | MICROSOFT_PATH | MICROSOFT_LIFECYCLE_PATH => {
            path.to_owned()
        }
        _ => "unmatched".to_owned(),
    }
}

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

    let route = route_label(&method, &path, status, grpc_status.is_some());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_labels_carry_no_ids() {
        let label = |method: &str, path: &str, status: u16| {
            route_label(method, path, StatusCode::from_u16(status).unwrap(), false)
        };
        assert_eq!(
            label("GET", "/v1/calendar/meetings/0193a7c5-0000-7000-8000-000000000001", 200),
            "meeting.get"
        );
        assert_eq!(
            label(
                "POST",
                "/v1/admin/users/ada@example.com/connections/0193a7c5:revoke",
                404
            ),
            "admin.connection.revoke"
        );
        assert_eq!(label("GET", "/healthz", 200), "/healthz");
        assert_eq!(label("GET", "/v1/calendar/webhooks/google/x", 404), "unmatched");
        assert_eq!(label("GET", "/wp-admin/9f8e", 404), "unmatched");
        assert_eq!(
            route_label("POST", "/juy.calendar.v1.CalendarSync/ListEvents", StatusCode::OK, true),
            "/juy.calendar.v1.CalendarSync/ListEvents"
        );
    }
}
