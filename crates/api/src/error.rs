//! The one error type of the API and its two renderings: a `tonic::Status`
//! with `google.rpc` details for gRPC, and RFC 9457 `application/problem+json`
//! for REST. Both come from the same [`ErrorCode`], so the two surfaces agree
//! by construction.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tonic_types::{ErrorDetails, StatusExt as _};

use juy_store::StoreError;

/// The kinds of failure a client can see; each has a gRPC code and an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is malformed; violations name the fields.
    InvalidArgument,
    /// No valid credentials.
    Unauthenticated,
    /// Valid credentials without the needed role.
    PermissionDenied,
    /// The resource does not exist or is not the caller's.
    NotFound,
    /// The resource is not in a state that allows the request.
    FailedPrecondition,
    /// A dependency (the database) is unreachable; retry later.
    Unavailable,
    /// A bug or an unexpected failure; details are in the server log only.
    Internal,
}

impl ErrorCode {
    /// The gRPC status code.
    pub fn grpc(self) -> tonic::Code {
        match self {
            Self::InvalidArgument => tonic::Code::InvalidArgument,
            Self::Unauthenticated => tonic::Code::Unauthenticated,
            Self::PermissionDenied => tonic::Code::PermissionDenied,
            Self::NotFound => tonic::Code::NotFound,
            Self::FailedPrecondition => tonic::Code::FailedPrecondition,
            Self::Unavailable => tonic::Code::Unavailable,
            Self::Internal => tonic::Code::Internal,
        }
    }

    /// The HTTP status.
    pub fn http(self) -> StatusCode {
        match self {
            Self::InvalidArgument => StatusCode::BAD_REQUEST,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::PermissionDenied => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::FailedPrecondition => StatusCode::CONFLICT,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC code's canonical name, e.g. `INVALID_ARGUMENT`, used as the problem's `code`.
    pub fn name(self) -> &'static str {
        match self {
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::NotFound => "NOT_FOUND",
            Self::FailedPrecondition => "FAILED_PRECONDITION",
            Self::Unavailable => "UNAVAILABLE",
            Self::Internal => "INTERNAL",
        }
    }
}

/// One field that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldViolation {
    /// The field's path, e.g. `end_time` or `settings.calendar_modes[0].calendar`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

/// An error as clients see it: a code, a message safe to show, and details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The kind of failure.
    pub code: ErrorCode,
    /// A lowercase message without secrets or event text.
    pub message: String,
    /// For `InvalidArgument`: the offending fields.
    pub violations: Vec<FieldViolation>,
    /// For `FailedPrecondition`: a short machine-readable reason.
    pub reason: Option<&'static str>,
    /// For a meeting refused for conflicts: who is busy when.
    pub conflicts: Vec<ConflictDetail>,
}

/// One busy interval of a user that conflicts with a meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ConflictDetail {
    /// The user, `users/{id}`.
    pub user: String,
    /// Start (RFC 3339).
    pub start_time: chrono::DateTime<chrono::Utc>,
    /// End (RFC 3339).
    pub end_time: chrono::DateTime<chrono::Utc>,
    /// `busy`, `tentative` or `out_of_office`.
    pub kind: String,
}

impl ApiError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            violations: Vec::new(),
            reason: None,
            conflicts: Vec::new(),
        }
    }

    /// A bad value in one field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        let field = field.into();
        let description = description.into();
        Self {
            message: format!("invalid {field}: {description}"),
            violations: vec![FieldViolation { field, description }],
            ..Self::new(ErrorCode::InvalidArgument, "")
        }
    }

    /// Bad values in several fields at once.
    pub fn invalid_fields(violations: Vec<FieldViolation>) -> Self {
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        Self {
            message: format!("invalid {}", fields.join(", ")),
            violations,
            ..Self::new(ErrorCode::InvalidArgument, "")
        }
    }

    /// A resource that does not exist or is not the caller's.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// A request the resource's state does not allow.
    pub fn failed_precondition(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason: Some(reason),
            ..Self::new(ErrorCode::FailedPrecondition, message)
        }
    }

    /// A meeting refused because people are busy then.
    pub fn conflicts(conflicts: Vec<ConflictDetail>) -> Self {
        let mut users: Vec<&str> = conflicts.iter().map(|c| c.user.as_str()).collect();
        users.dedup();
        Self {
            conflicts: conflicts.clone(),
            ..Self::failed_precondition(
                "MEETING_CONFLICTS",
                format!("invitees are busy at that time: {}", users.join(", ")),
            )
        }
    }

    /// No or bad credentials.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }

    /// A missing role.
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, message)
    }

    /// A dependency is down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// An unexpected failure; the cause is logged here and not shown to the client.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::Internal, "internal error")
    }

    /// Renames violation fields (REST parameters are named differently from proto fields).
    pub fn rename_fields(mut self, rename: impl Fn(&str) -> Option<String>) -> Self {
        for v in &mut self.violations {
            if let Some(new) = rename(&v.field) {
                self.message = self.message.replace(&v.field, &new);
                v.field = new;
            }
        }
        self
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { what, id } => Self::not_found(format_args!("{what} {id}")),
            StoreError::CalendarNotWritable { calendar_id } => Self::failed_precondition(
                "CALENDAR_NOT_WRITABLE",
                format!("calendars/{calendar_id} does not allow writing at its provider"),
            ),
            StoreError::Changed { what, id } => Self::failed_precondition(
                "CHANGED_MEANWHILE",
                format!("{what} {id} changed meanwhile: read it again and retry"),
            ),
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                Self::unavailable("the calendar store is unavailable, retry later")
            }
            other => Self::internal(&other),
        }
    }
}

const ERROR_DOMAIN: &str = "calendar.juy.dev";

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        let mut details = ErrorDetails::new();
        if !error.violations.is_empty() {
            details = ErrorDetails::with_bad_request(
                error
                    .violations
                    .iter()
                    .map(|v| tonic_types::FieldViolation::new(&v.field, &v.description))
                    .collect::<Vec<_>>(),
            );
        }
        if let Some(reason) = error.reason {
            details.set_error_info(reason, ERROR_DOMAIN, std::collections::HashMap::new());
        }
        if !error.conflicts.is_empty() {
            // google.rpc.PreconditionFailure: one violation per busy interval, the user as subject.
            details.set_precondition_failure(
                error
                    .conflicts
                    .iter()
                    .map(|c| {
                        tonic_types::PreconditionViolation::new(
                            "MEETING_CONFLICT",
                            &c.user,
                            format!(
                                "{} from {} to {}",
                                c.kind,
                                c.start_time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                                c.end_time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                            ),
                        )
                    })
                    .collect::<Vec<_>>(),
            );
        }
        tonic::Status::with_error_details(error.code.grpc(), error.message, details)
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// The same code the gRPC API gives, e.g. `INVALID_ARGUMENT`.
    pub code: String,
    /// For `INVALID_ARGUMENT`: the offending fields.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<FieldViolation>,
    /// For `FAILED_PRECONDITION`: a machine-readable reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For `MEETING_CONFLICTS`: who is busy when.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<ConflictDetail>,
}

impl From<&ApiError> for Problem {
    fn from(error: &ApiError) -> Self {
        let status = error.code.http();
        Self {
            kind: format!(
                "https://{ERROR_DOMAIN}/problems/{}",
                error.code.name().to_ascii_lowercase().replace('_', "-")
            ),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: error.message.clone(),
            code: error.code.name().to_owned(),
            violations: error.violations.clone(),
            reason: error.reason.map(str::to_owned),
            conflicts: error.conflicts.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem::from(&self);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.code.http(), body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.code == ErrorCode::Unauthenticated {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_status_carries_bad_request_details() {
        let status = tonic::Status::from(ApiError::invalid("end_time", "must be after start_time"));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let details = status.get_error_details();
        let bad = details.bad_request().expect("bad request detail");
        assert_eq!(bad.field_violations[0].field, "end_time");
    }

    #[test]
    fn problem_json_uses_the_same_code() {
        let error = ApiError::invalid("page_size", "must be between 1 and 1000");
        let problem = Problem::from(&error);
        assert_eq!(problem.status, 400);
        assert_eq!(problem.code, "INVALID_ARGUMENT");
        assert_eq!(problem.violations[0].field, "page_size");
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let error = ApiError::internal(&"connection reset while reading secret-thing");
        assert_eq!(error.message, "internal error");
    }

    #[test]
    fn renaming_fields_changes_message_and_violations() {
        let error = ApiError::invalid("end_time", "must be after start_time")
            .rename_fields(|f| (f == "end_time").then(|| "range".to_owned()));
        assert_eq!(error.violations[0].field, "range");
        assert!(error.message.starts_with("invalid range"));
    }
}
