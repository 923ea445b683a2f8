//! REST routes for administrators' downloads and the audit trail, and for the
//! data subject's export and erasure:
//! `GET /v1/admin/audit-events`, `GET /v1/admin/audit-events.csv`,
//! `GET /v1/admin/connections.csv`, `GET /v1/calendar/me/export` and
//! `DELETE /v1/calendar/me/data`.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt as _};
use serde::Serialize;
use utoipa::ToSchema;

use crate::admin::{self, AuditListInput};
use crate::error::{ApiError, Problem};
use crate::gdpr::{AuditEventJson, ErasureJson};
use crate::rest::{AuthedCaller, QueryParams};
use crate::service::CalendarService;

/// A page of audit entries.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventPage {
    /// Newest first.
    pub audit_events: Vec<AuditEventJson>,
    /// Token for the next page; empty on the last page.
    pub next_page_token: String,
}

const AUDIT_FILTERS: &[&str] = &["actor", "user_id", "action", "start_time", "end_time"];

fn time_param(params: &QueryParams, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    params
        .one(name)?
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| ApiError::invalid(name, "must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z"))
        })
        .transpose()
}

fn audit_input(params: &QueryParams) -> Result<AuditListInput, ApiError> {
    let text = |name: &str| -> Result<String, ApiError> { Ok(params.one(name)?.unwrap_or_default().to_owned()) };
    Ok(AuditListInput {
        actor: text("actor")?,
        user_id: text("user_id")?,
        action: text("action")?,
        start_time: time_param(params, "start_time")?,
        end_time: time_param(params, "end_time")?,
        page_size: 0,
        page_token: String::new(),
    })
}

/// A streamed download: `content_type`, an attachment named `filename`.
fn download<S>(content_type: &'static str, filename: &'static str, body: S) -> Response
where
    S: Stream<Item = Result<Bytes, ApiError>> + Send + 'static,
{
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Lists audit entries, newest first (admins).
#[utoipa::path(
    get,
    path = "/v1/admin/audit-events",
    tag = "admin",
    params(
        ("actor" = Option<String>, Query, description = "only entries by this actor (a user id or `system/{component}`)"),
        ("user_id" = Option<String>, Query, description = "only entries by or about this user"),
        ("action" = Option<String>, Query, description = "only this action or the actions under it (`connection` matches `connection.revoke`)"),
        ("start_time" = Option<String>, Query, description = "only entries recorded at or after (RFC 3339)"),
        ("end_time" = Option<String>, Query, description = "only entries recorded before (RFC 3339)"),
        ("page_size" = Option<i32>, Query, description = "1-1000, default 100"),
        ("page_token" = Option<String>, Query, description = "`next_page_token` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of audit entries", body = AuditEventPage),
        (status = 400, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_audit_events(
    State(service): State<CalendarService>,
    AuthedCaller(caller): AuthedCaller,
    RawQuery(query): RawQuery,
) -> Result<Json<AuditEventPage>, ApiError> {
    let mut allowed = AUDIT_FILTERS.to_vec();
    allowed.extend(["page_size", "page_token"]);
    let params = QueryParams::parse(query, &allowed)?;
    let input = AuditListInput {
        page_size: params.page_size()?,
        page_token: params.one("page_token")?.unwrap_or_default().to_owned(),
        ..audit_input(&params)?
    };
    let page = service.list_audit_events(&caller, input).await?;
    Ok(Json(AuditEventPage {
        audit_events: page.items.iter().map(AuditEventJson::from).collect(),
        next_page_token: page.next_page_token,
    }))
}

/// Downloads the audit entries matching the filters as CSV (RFC 4180,
/// header row, CRLF line ends, UTF-8), newest first, streamed (admins).
#[utoipa::path(
    get,
    path = "/v1/admin/audit-events.csv",
    tag = "admin",
    params(
        ("actor" = Option<String>, Query, description = "only entries by this actor"),
        ("user_id" = Option<String>, Query, description = "only entries by or about this user"),
        ("action" = Option<String>, Query, description = "only this action or the actions under it"),
        ("start_time" = Option<String>, Query, description = "only entries recorded at or after (RFC 3339)"),
        ("end_time" = Option<String>, Query, description = "only entries recorded before (RFC 3339)"),
    ),
    responses(
        (status = 200, description = "Columns: time, actor, actor_roles (space-separated), action, subject_user_id, target, result, request_id, name", content_type = "text/csv"),
        (status = 400, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn audit_events_csv(
    State(service): State<CalendarService>,
    AuthedCaller(caller): AuthedCaller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(query, AUDIT_FILTERS)?;
    let batches = service.audit_events_stream(&caller, &audit_input(&params)?)?;
    let header =
        futures::stream::once(async { Ok(Bytes::from(admin::csv_record(admin::AUDIT_COLUMNS.iter().copied()))) });
    let rows =
        batches.map(|batch| batch.map(|batch| Bytes::from(batch.iter().map(admin::audit_record).collect::<String>())));
    Ok(download(
        "text/csv; charset=utf-8; header=present",
        "audit-events.csv",
        header.chain(rows),
    ))
}

/// Downloads every connection matching the filters as CSV (RFC 4180, header
/// row, CRLF line ends, UTF-8), oldest first, streamed (admins).
#[utoipa::path(
    get,
    path = "/v1/admin/connections.csv",
    tag = "admin",
    params(
        ("user_id" = Option<String>, Query, description = "only this user's"),
        ("provider" = Option<String>, Query, description = "only this provider's"),
        ("state" = Option<String>, Query, description = "only this state (`pending|active|error|reauth_required|revoked`)"),
    ),
    responses(
        (status = 200, description = "Columns: user_id, connection, provider, state, state_reason, connect_time, last_sync_time, last_error, calendar_count, calendars_in_error", content_type = "text/csv"),
        (status = 400, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn connections_csv(
    State(service): State<CalendarService>,
    AuthedCaller(caller): AuthedCaller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(query, &["user_id", "provider", "state"])?;
    let input = crate::rest::admin_filters(&params)?;
    let batches = service.export_connections(&caller, input).await?;
    let header = futures::stream::once(async {
        Ok(Bytes::from(admin::csv_record(
            admin::CONNECTION_COLUMNS.iter().copied(),
        )))
    });
    let rows = batches
        .map(|batch| batch.map(|batch| Bytes::from(batch.iter().map(admin::connection_record).collect::<String>())));
    Ok(download(
        "text/csv; charset=utf-8; header=present",
        "connections.csv",
        header.chain(rows),
    ))
}

/// Downloads everything stored about the caller as one JSON document
/// (`docs/export-format.md`), streamed.
#[utoipa::path(
    get,
    path = "/v1/calendar/me/export",
    tag = "privacy",
    responses(
        (status = 200, description = "The export document; a complete one ends with `\"complete\":true}`", content_type = "application/json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn export_my_data(State(service): State<CalendarService>, AuthedCaller(caller): AuthedCaller) -> Response {
    download(
        "application/json",
        "juy-calendar-export.json",
        service.export_my_data(&caller),
    )
}

/// Erases everything stored about the caller (needs `confirm=true`): every
/// connection is revoked at its provider, every row deleted, the data key
/// destroyed. Cannot be undone.
#[utoipa::path(
    delete,
    path = "/v1/calendar/me/data",
    tag = "privacy",
    params(("confirm" = bool, Query, description = "must be `true`")),
    responses(
        (status = 200, description = "What was erased", body = ErasureJson),
        (status = 400, description = "`confirm` missing or not `true`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_my_data(
    State(service): State<CalendarService>,
    AuthedCaller(caller): AuthedCaller,
    RawQuery(query): RawQuery,
) -> Result<Json<ErasureJson>, ApiError> {
    let params = QueryParams::parse(query, &["confirm"])?;
    let confirm = match params.one("confirm")? {
        Some("true") => true,
        Some("false") | None => false,
        Some(_) => return Err(ApiError::invalid("confirm", "must be true or false")),
    };
    Ok(Json(service.delete_my_data(&caller, confirm).await?))
}
