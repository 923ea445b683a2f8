//! REST mirrors of linking and revocation:
//! `POST /v1/calendar/connections/{provider}:start`,
//! `GET /v1/calendar/oauth/callback`,
//! `POST /v1/calendar/connections/caldav:connect`,
//! `POST /v1/calendar/connections/{uuid}:revoke` and
//! `POST /v1/admin/users/{user_id}/connections/{uuid}:revoke`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroize::Zeroizing;

use juy_domain::Provider;
use juy_oauth2::Access;

use crate::connect::{ConnectCalDavInput, Linked, StartConnectInput};
use crate::error::{ApiError, Problem};
use crate::rest::{AdminConnectionJson, AuthedCaller, CalendarJson, ConnectionJson, parse_json};
use crate::service::CalendarService;

/// The body of `{provider}:start`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartConnectJson {
    /// One of the service's registered redirect URIs; omitted for the default.
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// `read` (default) or `write`.
    #[serde(default)]
    pub access: Option<String>,
    /// An email address to preselect at the provider.
    #[serde(default)]
    pub login_hint: Option<String>,
}

/// A started flow.
#[derive(Debug, Serialize, ToSchema)]
pub struct StartedConnectJson {
    /// Where to send the user.
    pub authorization_url: String,
    /// When the flow's `state` stops being accepted.
    pub expire_time: DateTime<Utc>,
}

/// The body of `caldav:connect`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectCalDavJson {
    /// `https://...`; omitted for Apple iCloud (`https://caldav.icloud.com`).
    #[serde(default)]
    pub server_url: Option<String>,
    /// The account's user name (for iCloud, the Apple ID email address).
    pub username: String,
    /// An app-specific password.
    pub app_specific_password: String,
}

/// A linked connection and its calendars.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkedJson {
    /// The connection.
    pub connection: ConnectionJson,
    /// Its calendars.
    pub calendars: Vec<CalendarJson>,
}

impl From<&Linked> for LinkedJson {
    fn from(linked: &Linked) -> Self {
        Self {
            connection: ConnectionJson::from(&linked.connection),
            calendars: linked.calendars.iter().map(CalendarJson::from).collect(),
        }
    }
}

/// Starts linking a Google or Microsoft account (`google:start`, `microsoft:start`).
#[utoipa::path(
    post,
    path = "/v1/calendar/connections/{provider}:start",
    tag = "connections",
    params(("provider" = String, Path, description = "`google` or `microsoft`")),
    request_body(content = StartConnectJson, content_type = "application/json"),
    responses(
        (status = 200, description = "The authorisation URL to send the user to", body = StartedConnectJson),
        (status = 400, description = "Bad provider, redirect URI or body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The provider is not configured on this server", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn start_connect(
    service: &CalendarService,
    caller: &crate::auth::Caller,
    provider: &str,
    body: &Bytes,
) -> Result<StartedConnectJson, ApiError> {
    let request: StartConnectJson = if body.is_empty() {
        StartConnectJson::default()
    } else {
        parse_json(body)?
    };
    let provider = provider
        .parse::<Provider>()
        .map_err(|_| ApiError::invalid("provider", "must be google or microsoft"))?;
    let access = match request.access.as_deref() {
        None | Some("read") => Access::Read,
        Some("write") => Access::Write,
        Some(_) => return Err(ApiError::invalid("access", "must be read or write")),
    };
    let started = service
        .start_connect(
            caller,
            StartConnectInput {
                provider: Some(provider),
                redirect_uri: request.redirect_uri.unwrap_or_default(),
                access,
                login_hint: request.login_hint.unwrap_or_default(),
            },
        )
        .await?;
    Ok(StartedConnectJson {
        authorization_url: started.authorization_url,
        expire_time: started.expire_time,
    })
}

/// Links an Apple iCloud or other CalDAV account with an app-specific password.
#[utoipa::path(
    post,
    path = "/v1/calendar/connections/caldav:connect",
    tag = "connections",
    request_body(content = ConnectCalDavJson, content_type = "application/json"),
    responses(
        (status = 200, description = "The linked connection and its calendars", body = LinkedJson),
        (status = 400, description = "Bad URL, user name or password (the server refused them), or not a CalDAV server", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The CalDAV server could not be reached", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn connect_caldav(
    service: &CalendarService,
    caller: &crate::auth::Caller,
    body: &Bytes,
) -> Result<LinkedJson, ApiError> {
    let request: ConnectCalDavJson = parse_json(body)?;
    let linked = service
        .connect_caldav(
            caller,
            ConnectCalDavInput {
                server_url: request.server_url.unwrap_or_default(),
                username: request.username,
                app_specific_password: Zeroizing::new(request.app_specific_password),
            },
        )
        .await?;
    Ok(LinkedJson::from(&linked))
}

/// Revokes one of the caller's connections.
#[utoipa::path(
    post,
    path = "/v1/calendar/connections/{connection}:revoke",
    tag = "connections",
    params(("connection" = String, Path, description = "the connection's uuid")),
    responses(
        (status = 200, description = "The connection, now revoked", body = ConnectionJson),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not one of the caller's connections", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn revoke_connection(
    service: &CalendarService,
    caller: &crate::auth::Caller,
    id: &str,
) -> Result<ConnectionJson, ApiError> {
    let connection = service
        .revoke_connection(caller, &format!("connections/{id}"))
        .await
        .map_err(|e| e.rename_fields(|f| (f == "name").then(|| "connection".to_owned())))?;
    Ok(ConnectionJson::from(&connection))
}

/// `POST /v1/calendar/connections/{custom}`: the custom methods on connections.
pub async fn connection_action(
    State(service): State<CalendarService>,
    AuthedCaller(caller): AuthedCaller,
    Path(custom): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some((target, verb)) = custom.rsplit_once(':') else {
        return Err(ApiError::not_found("this path"));
    };
    match verb {
        "start" => Ok(Json(start_connect(&service, &caller, target, &body).await?).into_response()),
        "connect" if target == "caldav" => Ok(Json(connect_caldav(&service, &caller, &body).await?).into_response()),
        "revoke" => Ok(Json(revoke_connection(&service, &caller, target).await?).into_response()),
        _ => Err(ApiError::not_found("this path")),
    }
}

/// Parameters a provider may add to the redirect; others are rejected.
const CALLBACK_PARAMS: &[&str] = &[
    "state",
    "code",
    "scope",
    "error",
    "error_description",
    "error_uri",
    "authuser",
    "hd",
    "prompt",
    "session_state",
    "iss",
    "client_info",
];

/// Finishes linking: the provider's redirect, forwarded by the gateway with the user's token.
#[utoipa::path(
    get,
    path = "/v1/calendar/oauth/callback",
    tag = "connections",
    params(
        ("state" = String, Query, description = "the `state` the provider echoed"),
        ("code" = Option<String>, Query, description = "the authorisation code"),
        ("error" = Option<String>, Query, description = "set by the provider when the user declined"),
    ),
    responses(
        (status = 200, description = "The linked connection and its calendars", body = LinkedJson),
        (status = 400, description = "State unknown, expired, used or another user's; code refused; or the user declined", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The provider could not be reached", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn oauth_callback(
    State(service): State<CalendarService>,
    AuthedCaller(caller): AuthedCaller,
    RawQuery(query): RawQuery,
) -> Result<Json<LinkedJson>, ApiError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Some((unknown, _)) = pairs.iter().find(|(k, _)| !CALLBACK_PARAMS.contains(&k.as_str())) {
        return Err(ApiError::invalid(
            unknown.clone(),
            "is not a parameter of this endpoint",
        ));
    }
    let one = |name: &str| -> Result<&str, ApiError> {
        let mut values = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let first = values.next().unwrap_or_default();
        if values.next().is_some() {
            return Err(ApiError::invalid(name, "must be given at most once"));
        }
        Ok(first)
    };
    let error = one("error")?;
    if !error.is_empty() {
        // The provider's error codes are a fixed vocabulary; its description is not shown.
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return Err(ApiError::invalid(
            "error",
            format!("the provider did not authorise the link (`{code}`); nothing was stored"),
        ));
    }
    let linked = service.complete_connect(&caller, one("state")?, one("code")?).await?;
    Ok(Json(LinkedJson::from(&linked)))
}

/// Revokes a user's connection on their behalf (admin role).
#[utoipa::path(
    post,
    path = "/v1/admin/users/{user_id}/connections/{connection}:revoke",
    tag = "admin",
    params(
        ("user_id" = String, Path, description = "the owner's Juy user id"),
        ("connection" = String, Path, description = "the connection's uuid"),
    ),
    responses(
        (status = 200, description = "The connection, now revoked", body = AdminConnectionJson),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection of that user", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn admin_revoke_connection(
    State(service): State<CalendarService>,
    AuthedCaller(caller): AuthedCaller,
    Path((user_id, custom)): Path<(String, String)>,
) -> Result<Json<AdminConnectionJson>, ApiError> {
    let Some(id) = custom.strip_suffix(":revoke") else {
        return Err(ApiError::not_found("this path"));
    };
    let row = service
        .admin_revoke_connection(&caller, &user_id, &format!("connections/{id}"))
        .await?;
    Ok(Json(AdminConnectionJson::from(&row)))
}
