//! The audit trail as the API writes it: one entry per authenticated call of
//! a public method (reads of calendar data included), with the caller, the
//! action, the resource, the outcome as a gRPC code name and the request id.
//! Entries go to `juy_store::audit` (append-only; see migration 000008).
//!
//! The entry is written by the auth middleware after the handler has
//! answered, so failures and refusals are recorded as well as successes.
//! Handlers add what only they know (the resource acted on, the user an
//! administrator acted for) through the [`AuditNote`] of their [`Caller`].
//!
//! An entry for a read is written before the data leaves the service: when it
//! cannot be written, the caller gets UNAVAILABLE instead of the data. An
//! entry for a change that has already been made cannot undo it: a failure to
//! write it is logged as an error and counted (`juy.audit.write_failures`).
//!
//! [`Caller`]: crate::auth::Caller

use std::sync::{Arc, Mutex, OnceLock};

use axum::http::{Method, StatusCode};
use opentelemetry::metrics::Counter;

use juy_domain::UserId;
use juy_store::Store;
use juy_store::audit::NewAuditEvent;

/// What a method does, as the trail names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    /// Dotted lower-case words, e.g. `events.list`.
    pub name: &'static str,
    /// Whether it only reads: its data is not released without an entry.
    pub read: bool,
}

const fn read(name: &'static str) -> Option<Action> {
    Some(Action { name, read: true })
}

const fn write(name: &'static str) -> Option<Action> {
    Some(Action { name, read: false })
}

/// The action of a gRPC method (its full path); `None` for methods that are
/// not audited (health, reflection) or do not exist.
pub fn grpc_action(path: &str) -> Option<Action> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    match (service, method) {
        ("juy.calendar.v1.CalendarSync", method) => match method {
            "ListEvents" => read("events.list"),
            "ListConnections" => read("connections.list"),
            "ListCalendars" => read("calendars.list"),
            "GetCalendarSettings" => read("settings.get"),
            "UpdateCalendarSettings" => write("settings.update"),
            "StartConnect" => write("connection.start"),
            "CompleteConnect" | "ConnectCalDav" => write("connection.connect"),
            "RevokeConnection" => write("connection.revoke"),
            "SyncNow" => write("sync.trigger"),
            "GetSyncJob" => read("sync.get"),
            "CreateMeeting" => write("meeting.create"),
            "GetMeeting" => read("meeting.get"),
            "UpdateMeeting" => write("meeting.update"),
            "CancelMeeting" => write("meeting.cancel"),
            "ExportMyData" => read("data.export"),
            "DeleteMyData" => write("data.erase"),
            _ => None,
        },
        ("juy.calendar.v1.Availability", method) => match method {
            "QueryFreeBusy" => read("freebusy.query"),
            "FindSlots" => read("slots.find"),
            _ => None,
        },
        ("juy.calendar.v1.Admin", method) => match method {
            "ListConnections" => read("admin.connections.list"),
            "RevokeConnection" => write("admin.connection.revoke"),
            "ListAuditEvents" => read("admin.audit.list"),
            "ExportConnections" => read("admin.connections.export"),
            _ => None,
        },
        _ => None,
    }
}

/// The action of a REST request; `None` for paths that are not audited
/// (health, the API document, webhooks) or do not exist.
pub fn rest_action(method: &Method, path: &str) -> Option<Action> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let m = method.as_str();
    match (m, segments.as_slice()) {
        ("GET", ["v1", "calendar", "events"]) => read("events.list"),
        ("GET", ["v1", "calendar", "connections"]) => read("connections.list"),
        ("GET", ["v1", "calendar", "calendars"]) => read("calendars.list"),
        ("GET", ["v1", "calendar", "settings"]) => read("settings.get"),
        ("PATCH", ["v1", "calendar", "settings"]) => write("settings.update"),
        ("POST", ["v1", "calendar", "sync"]) => write("sync.trigger"),
        ("GET", ["v1", "calendar", "sync", _]) => read("sync.get"),
        ("POST", ["v1", "calendar", "freebusy"]) => read("freebusy.query"),
        ("POST", ["v1", "calendar", "slots"]) => read("slots.find"),
        ("POST", ["v1", "calendar", "meetings"]) => write("meeting.create"),
        ("GET", ["v1", "calendar", "meetings", _]) => read("meeting.get"),
        ("PATCH", ["v1", "calendar", "meetings", _]) => write("meeting.update"),
        ("DELETE", ["v1", "calendar", "meetings", _]) => write("meeting.cancel"),
        ("GET", ["v1", "calendar", "oauth", "callback"]) => write("connection.connect"),
        ("POST", ["v1", "calendar", "connections", custom]) => match custom.rsplit_once(':') {
            Some((_, "start")) => write("connection.start"),
            Some((_, "connect")) => write("connection.connect"),
            Some((_, "revoke")) => write("connection.revoke"),
            _ => None,
        },
        ("GET", ["v1", "calendar", "me", "export"]) => read("data.export"),
        ("DELETE", ["v1", "calendar", "me", "data"]) => write("data.erase"),
        ("GET", ["v1", "admin", "connections"]) => read("admin.connections.list"),
        ("GET", ["v1", "admin", "connections.csv"]) => read("admin.connections.export"),
        ("GET", ["v1", "admin", "audit-events"]) => read("admin.audit.list"),
        ("GET", ["v1", "admin", "audit-events.csv"]) => read("admin.audit.export"),
        ("POST", ["v1", "admin", "users", _, "connections", custom]) if custom.ends_with(":revoke") => {
            write("admin.connection.revoke")
        }
        _ => None,
    }
}

/// The gRPC code name of a numeric `grpc-status`.
pub fn grpc_code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// The gRPC code name of a REST answer's HTTP status (the inverse of
/// `ErrorCode::http`, plus the statuses axum and tower answer by themselves).
pub fn http_code_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=399 => "OK",
        400 | 411 | 413 | 415 | 422 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        405 | 501 => "UNIMPLEMENTED",
        408 | 504 => "DEADLINE_EXCEEDED",
        409 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    }
}

#[derive(Debug, Default)]
struct Noted {
    target: Option<String>,
    subject: Option<UserId>,
    recorded_by_store: bool,
}

/// What a handler tells the trail about its call: the resource it acted on
/// and, for administrators' calls, the user it acted for. Shared between the
/// middleware and the handler through the [`Caller`](crate::auth::Caller).
#[derive(Debug, Clone, Default)]
pub struct AuditNote(Arc<Mutex<Noted>>);

impl PartialEq for AuditNote {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for AuditNote {}

impl AuditNote {
    fn with<R>(&self, f: impl FnOnce(&mut Noted) -> R) -> R {
        // A poisoned lock only means a handler panicked mid-note: the note is still usable.
        let mut guard = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// The resource acted on, e.g. `connections/{uuid}`.
    pub fn target(&self, target: impl Into<String>) {
        let target = target.into();
        self.with(|n| n.target = Some(target));
    }

    /// The user whose data an administrator's call touched.
    pub fn subject(&self, user: UserId) {
        self.with(|n| n.subject = Some(user));
    }

    /// The store already recorded this call (the erasure records itself, so
    /// that the trail keeps one entry holding only the pseudonymous id).
    pub fn recorded_by_store(&self) {
        self.with(|n| n.recorded_by_store = true);
    }

    fn take(&self) -> Noted {
        self.with(std::mem::take)
    }
}

fn write_failures() -> &'static Counter<u64> {
    static COUNTER: OnceLock<Counter<u64>> = OnceLock::new();
    COUNTER.get_or_init(|| {
        opentelemetry::global::meter("juy-calendar")
            .u64_counter("juy.audit.write_failures")
            .with_description("Audit entries that could not be written")
            .build()
    })
}

/// Writes the API's entries.
#[derive(Clone)]
pub struct AuditLog {
    store: Store,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditLog")
    }
}

/// One call, as the middleware saw it.
#[derive(Debug)]
pub struct Call<'a> {
    /// The caller's id.
    pub user: &'a UserId,
    /// The caller's roles.
    pub roles: &'a [String],
    /// What the method does.
    pub action: Action,
    /// The outcome, a gRPC code name.
    pub result: &'static str,
    /// The request's id.
    pub request_id: &'a str,
}

impl AuditLog {
    /// Writes into `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Records `call` with what its handler noted. Returns false when the
    /// entry could not be written (already logged and counted).
    pub async fn record(&self, call: Call<'_>, note: &AuditNote) -> bool {
        let noted = note.take();
        if noted.recorded_by_store && call.result == "OK" {
            return true;
        }
        // A user's own call is about their data; an administrator's is about
        // the user it names, or nobody's in particular (a list of everyone's).
        let subject = match noted.subject {
            Some(user) => Some(user),
            None if call.action.name.starts_with("admin.") => None,
            None => Some(call.user.clone()),
        };
        let entry = NewAuditEvent {
            actor: call.user.as_str().to_owned(),
            actor_roles: call.roles.to_vec(),
            action: call.action.name.to_owned(),
            subject,
            target: noted.target,
            result: call.result.to_owned(),
            request_id: Some(call.request_id.to_owned()),
        };
        // Entries for reads need not wait for the WAL flush: they are many, and
        // a database crash in the next fraction of a second is the only way to
        // lose one. Entries for changes are flushed like the changes themselves.
        let durable = !call.action.read;
        let written = match self.store.conn().await {
            Ok(mut conn) => juy_store::audit::record_with(&mut conn, &entry, durable)
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        match written {
            Ok(()) => true,
            Err(error) => {
                write_failures().add(1, &[]);
                tracing::error!(action = call.action.name, error = %error, "could not write an audit entry");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_public_grpc_method_has_an_action() {
        let file = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../proto/juy/calendar/v1/calendar_sync.proto"
        ))
        .unwrap()
            + &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../proto/juy/calendar/v1/availability.proto"
            ))
            .unwrap()
            + &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../proto/juy/calendar/v1/admin.proto"
            ))
            .unwrap();
        let mut service = "";
        let mut checked = 0;
        for line in file.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                service = rest.trim_end_matches(" {").trim();
            }
            if let Some(rest) = line.strip_prefix("rpc ") {
                let method = rest.split('(').next().unwrap().trim();
                let path = format!("/juy.calendar.v1.{service}/{method}");
                assert!(grpc_action(&path).is_some(), "{path} has no audit action");
                checked += 1;
            }
        }
        assert!(checked >= 20, "only {checked} methods found");
    }

    #[test]
    fn rest_paths_map_to_the_same_actions_as_grpc() {
        assert_eq!(
            rest_action(&Method::GET, "/v1/calendar/events"),
            grpc_action("/juy.calendar.v1.CalendarSync/ListEvents")
        );
        assert_eq!(
            rest_action(
                &Method::POST,
                "/v1/calendar/connections/0190c5e8-0000-7000-8000-000000000000:revoke"
            ),
            grpc_action("/juy.calendar.v1.CalendarSync/RevokeConnection")
        );
        assert_eq!(
            rest_action(&Method::POST, "/v1/calendar/connections/google:start")
                .unwrap()
                .name,
            "connection.start"
        );
        assert_eq!(
            rest_action(&Method::POST, "/v1/admin/users/u-1/connections/x:revoke")
                .unwrap()
                .name,
            "admin.connection.revoke"
        );
        assert_eq!(rest_action(&Method::GET, "/healthz"), None);
        assert_eq!(rest_action(&Method::POST, "/v1/calendar/connections/x:explode"), None);
        assert_eq!(grpc_action("/grpc.health.v1.Health/Check"), None);
    }

    #[test]
    fn status_codes_have_their_canonical_names() {
        assert_eq!(grpc_code_name(7), "PERMISSION_DENIED");
        assert_eq!(grpc_code_name(99), "UNKNOWN");
        assert_eq!(http_code_name(StatusCode::CONFLICT), "FAILED_PRECONDITION");
        assert_eq!(http_code_name(StatusCode::NO_CONTENT), "OK");
        assert_eq!(http_code_name(StatusCode::IM_A_TEAPOT), "INTERNAL");
    }
}
