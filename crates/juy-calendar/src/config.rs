//! Settings from a TOML file and `JUY_<SECTION>__<KEY>` environment
//! variables (environment wins), validated at start. Every error names the
//! setting both ways, e.g. `database.url (JUY_DATABASE__URL)`.
//!
//! The environment is passed in as pairs, so tests give a map instead of
//! mutating the process environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use juy_api::auth::{AuthConfig, VerificationKey};
use juy_crypto::MasterKeyring;

/// A setting is missing or wrong.
#[derive(Debug, thiserror::Error)]
#[error("setting {setting}: {message}")]
pub struct ConfigError {
    /// The setting, as `section.key (JUY_SECTION__KEY)`.
    pub setting: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    fn new(path: &str, message: impl Into<String>) -> Self {
        let env = format!("JUY_{}", path.to_ascii_uppercase().replace('.', "__"));
        Self {
            setting: format!("{path} ({env})"),
            message: message.into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSettings {
    server: RawServer,
    tls: RawTls,
    database: RawDatabase,
    crypto: RawCrypto,
    auth: RawAuth,
    telemetry: RawTelemetry,
    events: RawEvents,
    google: RawOAuthProvider,
    microsoft: RawOAuthProvider,
    oauth: RawOAuth,
    caldav: RawCalDav,
    sync: RawSync,
    reminders: RawReminders,
    audit: RawAudit,
}

/// Forwarding of the audit trail (`juy_sync::audit_forward::AuditForwardConfig`; defaults there).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAudit {
    /// The audit service's endpoint; empty: entries are kept in the database only.
    forward_endpoint: String,
    forward_secret: Option<String>,
    forward_secret_file: Option<PathBuf>,
    forwarders: usize,
    forward_batch: i64,
}

impl Default for RawAudit {
    fn default() -> Self {
        let d = juy_sync::audit_forward::AuditForwardConfig::new(String::new(), Zeroizing::new(Vec::new()));
        Self {
            forward_endpoint: String::new(),
            forward_secret: None,
            forward_secret_file: None,
            forwarders: d.forwarders,
            forward_batch: d.batch,
        }
    }
}

/// The forwarding settings; `None` when no endpoint is set.
fn audit_config(raw: RawAudit) -> Result<Option<juy_sync::audit_forward::AuditForwardConfig>, ConfigError> {
    let Some((endpoint, secret)) = signed_endpoint(
        "audit.forward_endpoint",
        "audit.forward_secret",
        raw.forward_endpoint,
        raw.forward_secret,
        raw.forward_secret_file,
    )?
    else {
        return Ok(None);
    };
    if raw.forwarders > 16 {
        return Err(ConfigError::new("audit.forwarders", "must be between 0 and 16"));
    }
    if !(1..=1000).contains(&raw.forward_batch) {
        return Err(ConfigError::new("audit.forward_batch", "must be between 1 and 1000"));
    }
    Ok(Some(juy_sync::audit_forward::AuditForwardConfig {
        forwarders: raw.forwarders,
        batch: raw.forward_batch,
        ..juy_sync::audit_forward::AuditForwardConfig::new(endpoint, secret)
    }))
}

/// An endpoint and the key of its requests' signature.
type SignedEndpoint = (String, Zeroizing<Vec<u8>>);

/// An endpoint and the key its requests are signed with (HMAC-SHA256);
/// `None` when no endpoint is set. The endpoint is https, or http on a
/// loopback address (development and tests); the secret is at least 32 bytes.
fn signed_endpoint(
    endpoint_key: &str,
    secret_key: &str,
    endpoint: String,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
) -> Result<Option<SignedEndpoint>, ConfigError> {
    if endpoint.is_empty() {
        if secret.is_some() || secret_file.is_some() {
            return Err(ConfigError::new(endpoint_key, "is required with a secret"));
        }
        return Ok(None);
    }
    let url = url::Url::parse(&endpoint)
        .ok()
        .filter(|url| url.host().is_some() && url.username().is_empty() && url.password().is_none());
    let loopback = |url: &url::Url| match url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match &url {
        Some(url) if url.scheme() == "https" || (url.scheme() == "http" && loopback(url)) => {}
        _ => {
            return Err(ConfigError::new(
                endpoint_key,
                "must be an https:// URL without credentials (http:// only on a loopback address)",
            ));
        }
    }
    let secret = match (secret, secret_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(secret_key, "give secret or secret_file, not both"));
        }
        (Some(secret), None) => Zeroizing::new(secret),
        (None, Some(path)) => read_secret_file(&format!("{secret_key}_file"), &path)?,
        (None, None) => {
            return Err(ConfigError::new(
                secret_key,
                format!("is required with {endpoint_key}: the key of the requests' HMAC-SHA256 signature"),
            ));
        }
    };
    if secret.len() < 32 {
        return Err(ConfigError::new(secret_key, "must be at least 32 bytes"));
    }
    Ok(Some((endpoint, Zeroizing::new(secret.as_bytes().to_vec()))))
}

/// Reminders to the notification service (`juy_sync::reminders::ReminderConfig`; defaults there).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawReminders {
    /// The notification service's endpoint; empty: reminders off.
    endpoint: String,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    dispatchers: usize,
    plan_interval_ms: u64,
    poll_interval_ms: u64,
    lookahead_secs: i64,
    grace_secs: i64,
    lease_secs: i64,
    request_timeout_secs: u64,
    backoff_base_secs: i64,
    backoff_max_secs: i64,
    max_attempts: i32,
    retention_days: i64,
}

impl Default for RawReminders {
    fn default() -> Self {
        let d = juy_sync::reminders::ReminderConfig::new(String::new(), Zeroizing::new(Vec::new()));
        Self {
            endpoint: String::new(),
            secret: None,
            secret_file: None,
            dispatchers: d.dispatchers,
            plan_interval_ms: d.plan_interval.as_millis() as u64,
            poll_interval_ms: d.poll_interval.as_millis() as u64,
            lookahead_secs: d.lookahead.num_seconds(),
            grace_secs: d.grace.num_seconds(),
            lease_secs: d.lease_for.num_seconds(),
            request_timeout_secs: d.request_timeout.as_secs(),
            backoff_base_secs: d.backoff_base.num_seconds(),
            backoff_max_secs: d.backoff_max.num_seconds(),
            max_attempts: d.max_attempts,
            retention_days: d.retention.num_days(),
        }
    }
}

/// The reminder settings; `None` when no endpoint is set. The endpoint is
/// https, or http on a loopback address (development and tests); the secret
/// is at least 32 bytes.
fn reminders_config(raw: RawReminders) -> Result<Option<juy_sync::reminders::ReminderConfig>, ConfigError> {
    let Some((endpoint, secret)) = signed_endpoint(
        "reminders.endpoint",
        "reminders.secret",
        raw.endpoint,
        raw.secret,
        raw.secret_file,
    )?
    else {
        return Ok(None);
    };
    let within = |key: &str, value: i64, range: std::ops::RangeInclusive<i64>| {
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError::new(
                &format!("reminders.{key}"),
                format!("must be between {} and {}", range.start(), range.end()),
            ))
        }
    };
    let as_i64 = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    let dispatchers = within("dispatchers", as_i64(raw.dispatchers as u64), 0..=16)?;
    let plan_interval = within("plan_interval_ms", as_i64(raw.plan_interval_ms), 100..=300_000)?;
    let poll_interval = within("poll_interval_ms", as_i64(raw.poll_interval_ms), 10..=60_000)?;
    let lookahead = within("lookahead_secs", raw.lookahead_secs, 10..=86_400)?;
    let grace = within("grace_secs", raw.grace_secs, 0..=86_400)?;
    let request_timeout = within("request_timeout_secs", as_i64(raw.request_timeout_secs), 1..=120)?;
    let lease = within("lease_secs", raw.lease_secs, 2..=3600)?;
    if lease <= request_timeout {
        return Err(ConfigError::new(
            "reminders.lease_secs",
            "must be longer than reminders.request_timeout_secs",
        ));
    }
    if lookahead * 1000 <= plan_interval {
        return Err(ConfigError::new(
            "reminders.lookahead_secs",
            "must be longer than reminders.plan_interval_ms",
        ));
    }
    let backoff_base = within("backoff_base_secs", raw.backoff_base_secs, 1..=3600)?;
    let backoff_max = within("backoff_max_secs", raw.backoff_max_secs, 1..=86_400)?;
    if backoff_max < backoff_base {
        return Err(ConfigError::new(
            "reminders.backoff_max_secs",
            "must not be below reminders.backoff_base_secs",
        ));
    }
    let max_attempts = within("max_attempts", i64::from(raw.max_attempts), 1..=100)?;
    let retention = within("retention_days", raw.retention_days, 1..=365)?;
    Ok(Some(juy_sync::reminders::ReminderConfig {
        endpoint,
        secret,
        dispatchers: usize::try_from(dispatchers).unwrap_or(1),
        plan_interval: Duration::from_millis(plan_interval.unsigned_abs()),
        poll_interval: Duration::from_millis(poll_interval.unsigned_abs()),
        lookahead: chrono::Duration::seconds(lookahead),
        grace: chrono::Duration::seconds(grace),
        lease_for: chrono::Duration::seconds(lease),
        request_timeout: Duration::from_secs(request_timeout.unsigned_abs()),
        backoff_base: chrono::Duration::seconds(backoff_base),
        backoff_max: chrono::Duration::seconds(backoff_max),
        max_attempts: i32::try_from(max_attempts).unwrap_or(12),
        retention: chrono::Duration::days(retention),
    }))
}

/// The sync engine (`juy_sync::SyncConfig`; defaults there).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSync {
    workers: usize,
    poll_interval_ms: u64,
    lease_secs: i64,
    interval_secs: i64,
    jitter: f64,
    window_past_days: i64,
    window_future_days: i64,
    window_roll_hours: i64,
    reconcile_every_hours: i64,
    discover_every_minutes: i64,
    backoff_base_secs: i64,
    backoff_max_secs: i64,
    inline_retry_max_secs: u64,
    cleanup_interval_secs: u64,
    cleanup_batch: i64,
    /// The REST bridge's public base URL for provider webhooks; empty: push off (polling only).
    push_base_url: String,
    push_channel_hours: i64,
    push_renew_before_hours: i64,
    /// Meeting write-back dispatchers per replica.
    outbox_dispatchers: usize,
    outbox_backoff_base_secs: i64,
    outbox_max_attempts: i32,
    /// How old a calendar's last sync may be before free/busy calls its busy time incomplete.
    stale_after_secs: i64,
}

impl Default for RawSync {
    fn default() -> Self {
        let d = juy_sync::SyncConfig::default();
        Self {
            workers: d.workers,
            poll_interval_ms: d.poll_interval.as_millis() as u64,
            lease_secs: d.lease_for.num_seconds(),
            interval_secs: d.interval.num_seconds(),
            jitter: d.jitter,
            window_past_days: d.window_past.num_days(),
            window_future_days: d.window_future.num_days(),
            window_roll_hours: d.window_roll.num_hours(),
            reconcile_every_hours: d.reconcile_every.num_hours(),
            discover_every_minutes: d.discover_every.num_minutes(),
            backoff_base_secs: d.backoff_base.num_seconds(),
            backoff_max_secs: d.backoff_max.num_seconds(),
            inline_retry_max_secs: d.inline_retry_max.as_secs(),
            cleanup_interval_secs: d.cleanup_interval.as_secs(),
            cleanup_batch: d.cleanup_batch,
            push_base_url: String::new(),
            push_channel_hours: 144,
            push_renew_before_hours: 24,
            outbox_dispatchers: d.outbox.dispatchers,
            outbox_backoff_base_secs: d.outbox.backoff_base.num_seconds(),
            outbox_max_attempts: d.outbox.max_attempts,
            stale_after_secs: d.stale_after.num_seconds(),
        }
    }
}

fn push_config(raw: &RawSync) -> Result<Option<juy_sync::push::PushConfig>, ConfigError> {
    if raw.push_base_url.is_empty() {
        return Ok(None);
    }
    let base = http_url("sync.push_base_url", &raw.push_base_url)?;
    if !(1..=168).contains(&raw.push_channel_hours) {
        return Err(ConfigError::new("sync.push_channel_hours", "must be between 1 and 168"));
    }
    if !(0..raw.push_channel_hours).contains(&raw.push_renew_before_hours) {
        return Err(ConfigError::new(
            "sync.push_renew_before_hours",
            "must be at least 0 and below sync.push_channel_hours",
        ));
    }
    Ok(Some(juy_sync::push::PushConfig {
        lifetime: chrono::Duration::hours(raw.push_channel_hours),
        renew_before: chrono::Duration::hours(raw.push_renew_before_hours),
        ..juy_sync::push::PushConfig::new(base)
    }))
}

fn sync_config(raw: RawSync, event_ttl: chrono::Duration) -> Result<juy_sync::SyncConfig, ConfigError> {
    let within = |key: &str, value: i64, range: std::ops::RangeInclusive<i64>| {
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError::new(
                &format!("sync.{key}"),
                format!("must be between {} and {}", range.start(), range.end()),
            ))
        }
    };
    if raw.workers > 64 {
        return Err(ConfigError::new("sync.workers", "must be at most 64"));
    }
    if !(0.0..=0.5).contains(&raw.jitter) {
        return Err(ConfigError::new("sync.jitter", "must be between 0 and 0.5"));
    }
    within(
        "poll_interval_ms",
        i64::try_from(raw.poll_interval_ms).unwrap_or(i64::MAX),
        10..=60_000,
    )?;
    within(
        "inline_retry_max_secs",
        i64::try_from(raw.inline_retry_max_secs).unwrap_or(i64::MAX),
        0..=300,
    )?;
    within(
        "cleanup_interval_secs",
        i64::try_from(raw.cleanup_interval_secs).unwrap_or(i64::MAX),
        1..=86_400,
    )?;
    let backoff_base = within("backoff_base_secs", raw.backoff_base_secs, 1..=3600)?;
    let backoff_max = within("backoff_max_secs", raw.backoff_max_secs, 1..=7 * 86_400)?;
    if backoff_max < backoff_base {
        return Err(ConfigError::new(
            "sync.backoff_max_secs",
            "must not be below sync.backoff_base_secs",
        ));
    }
    Ok(juy_sync::SyncConfig {
        workers: raw.workers,
        poll_interval: Duration::from_millis(raw.poll_interval_ms),
        lease_for: chrono::Duration::seconds(within("lease_secs", raw.lease_secs, 10..=3600)?),
        interval: chrono::Duration::seconds(within("interval_secs", raw.interval_secs, 1..=86_400)?),
        jitter: raw.jitter,
        window_past: chrono::Duration::days(within("window_past_days", raw.window_past_days, 0..=3650)?),
        window_future: chrono::Duration::days(within("window_future_days", raw.window_future_days, 1..=3650)?),
        window_roll: chrono::Duration::hours(within("window_roll_hours", raw.window_roll_hours, 1..=24 * 365)?),
        reconcile_every: chrono::Duration::hours(within(
            "reconcile_every_hours",
            raw.reconcile_every_hours,
            1..=24 * 365,
        )?),
        discover_every: chrono::Duration::minutes(within(
            "discover_every_minutes",
            raw.discover_every_minutes,
            1..=60 * 24 * 30,
        )?),
        event_ttl,
        backoff_base: chrono::Duration::seconds(backoff_base),
        backoff_max: chrono::Duration::seconds(backoff_max),
        inline_retry_max: Duration::from_secs(raw.inline_retry_max_secs),
        cleanup_interval: Duration::from_secs(raw.cleanup_interval_secs),
        cleanup_batch: within("cleanup_batch", raw.cleanup_batch, 1..=100_000)?,
        push: push_config(&raw)?,
        outbox: juy_sync::outbox::OutboxConfig {
            dispatchers: usize::try_from(within(
                "outbox_dispatchers",
                i64::try_from(raw.outbox_dispatchers).unwrap_or(i64::MAX),
                0..=16,
            )?)
            .unwrap_or(1),
            backoff_base: chrono::Duration::seconds(within(
                "outbox_backoff_base_secs",
                raw.outbox_backoff_base_secs,
                1..=3600,
            )?),
            max_attempts: i32::try_from(within(
                "outbox_max_attempts",
                i64::from(raw.outbox_max_attempts),
                1..=100,
            )?)
            .unwrap_or(12),
            ..juy_sync::outbox::OutboxConfig::default()
        },
        stale_after: chrono::Duration::seconds(within("stale_after_secs", raw.stale_after_secs, 60..=7 * 86_400)?),
        ..juy_sync::SyncConfig::default()
    })
}

/// One OAuth provider: client registration and endpoints (defaults: the real ones).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawOAuthProvider {
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_file: Option<PathBuf>,
    authorize_url: Option<String>,
    token_url: Option<String>,
    revoke_url: Option<String>,
    userinfo_url: Option<String>,
    api_base_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawOAuth {
    redirect_uris: Vec<String>,
    state_ttl_secs: u64,
}

impl Default for RawOAuth {
    fn default() -> Self {
        Self {
            redirect_uris: Vec::new(),
            state_ttl_secs: 600,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCalDav {
    default_server_url: String,
    allow_list: Vec<String>,
    request_timeout_secs: u64,
}

impl Default for RawCalDav {
    fn default() -> Self {
        Self {
            default_server_url: juy_api::connect::ICLOUD_CALDAV_URL.into(),
            allow_list: Vec::new(),
            request_timeout_secs: 30,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    grpc_addr: String,
    rest_addr: String,
    request_timeout_secs: u64,
    shutdown_grace_secs: u64,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            grpc_addr: "127.0.0.1:9443".into(),
            rest_addr: "127.0.0.1:8443".into(),
            request_timeout_secs: 30,
            shutdown_grace_secs: 25,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTls {
    /// Plaintext only when this is explicitly `false`.
    enabled: Option<bool>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDatabase {
    url: Option<String>,
    max_connections: usize,
    connect_timeout_secs: u64,
    statement_timeout_secs: u64,
    migrate_on_start: bool,
}

impl Default for RawDatabase {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 16,
            connect_timeout_secs: 5,
            statement_timeout_secs: 15,
            migrate_on_start: true,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCrypto {
    master_keys: Option<String>,
    master_keys_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAuth {
    issuer: Option<String>,
    audience: Option<String>,
    hs256_secret: Option<String>,
    hs256_secret_file: Option<PathBuf>,
    rs256_public_key_files: Vec<PathBuf>,
    eddsa_public_key_files: Vec<PathBuf>,
    leeway_secs: u64,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            hs256_secret: None,
            hs256_secret_file: None,
            rs256_public_key_files: Vec::new(),
            eddsa_public_key_files: Vec::new(),
            leeway_secs: 30,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTelemetry {
    log_format: String,
    log_filter: String,
    otlp_endpoint: Option<String>,
    service_name: String,
}

impl Default for RawTelemetry {
    fn default() -> Self {
        Self {
            log_format: "json".into(),
            log_filter: "info".into(),
            otlp_endpoint: None,
            service_name: "juy-calendar".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawEvents {
    ttl_days: i64,
}

impl Default for RawEvents {
    fn default() -> Self {
        Self { ttl_days: 30 }
    }
}

/// How the listeners serve.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The gRPC listener.
    pub grpc_addr: SocketAddr,
    /// The REST listener.
    pub rest_addr: SocketAddr,
    /// Longest time a REST request may take.
    pub request_timeout: Duration,
    /// How long in-flight requests may run on after SIGTERM.
    pub shutdown_grace: Duration,
}

/// TLS certificate and key; `None` in [`Settings::tls`] means plaintext.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
}

/// Log and trace output.
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    /// `json` or `text`.
    pub log_format: LogFormat,
    /// An `EnvFilter` directive, e.g. `info,juy_api=debug`.
    pub log_filter: String,
    /// OTLP/gRPC collector for traces and metrics.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the telemetry resource.
    pub service_name: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (production).
    Json,
    /// Human-readable lines (dev).
    Text,
}

/// Validated settings.
#[derive(Clone)]
pub struct Settings {
    /// Listeners.
    pub server: ServerSettings,
    /// TLS, or `None` for plaintext (explicitly configured).
    pub tls: Option<TlsSettings>,
    /// Database pool.
    pub database: juy_store::PoolConfig,
    /// Apply pending migrations at `serve` start.
    pub migrate_on_start: bool,
    /// Master keys.
    pub keyring: MasterKeyring,
    /// Token verification.
    pub auth: AuthConfig,
    /// Telemetry.
    pub telemetry: TelemetrySettings,
    /// How long an event row lives after the sync that last confirmed it.
    pub event_ttl: chrono::Duration,
    /// Provider endpoints, OAuth clients and CalDAV rules.
    pub integrations: juy_api::connect::IntegrationsConfig,
    /// The sync engine, its workers and the cleanup job.
    pub sync: juy_sync::SyncConfig,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("server", &self.server)
            .field("tls", &self.tls)
            .field("database", &self.database)
            .field("keyring", &self.keyring)
            .field("auth", &self.auth)
            .field("telemetry", &self.telemetry)
            .field("integrations", &self.integrations)
            .field("sync", &self.sync)
            .finish_non_exhaustive()
    }
}

/// Where settings come from.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// A TOML file, if any.
    pub file: Option<PathBuf>,
    /// Environment variables; only `JUY_<SECTION>__<KEY>` and `DATABASE_URL` are read.
    pub env: Vec<(String, String)>,
}

fn env_value(raw: &str) -> toml::Value {
    // Typed values (numbers, booleans, arrays) parse as TOML; anything else is a string.
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn read_secret_file(setting: &str, path: &Path) -> Result<Zeroizing<String>, ConfigError> {
    std::fs::read_to_string(path)
        .map(|s| Zeroizing::new(s.trim().to_owned()))
        .map_err(|e| ConfigError::new(setting, format!("cannot read {}: {e}", path.display())))
}

fn addr(setting: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .parse()
        .map_err(|_| ConfigError::new(setting, format!("`{value}` is not an address like 127.0.0.1:8443")))
}

impl Settings {
    /// Reads, merges and validates the settings.
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let mut table = match &sources.file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                    setting: "--config".into(),
                    message: format!("cannot read {}: {e}", path.display()),
                })?;
                text.parse::<toml::Table>().map_err(|e| ConfigError {
                    setting: format!("--config {}", path.display()),
                    message: e.to_string(),
                })?
            }
            None => toml::Table::new(),
        };
        for (name, value) in &sources.env {
            let path: Vec<String> = if name == "DATABASE_URL" {
                vec!["database".into(), "url".into()]
            } else if let Some(rest) = name.strip_prefix("JUY_").filter(|r| r.contains("__")) {
                rest.split("__").map(str::to_ascii_lowercase).collect()
            } else {
                continue;
            };
            let [section, key] = path.as_slice() else {
                return Err(ConfigError {
                    setting: name.clone(),
                    message: "must be JUY_<SECTION>__<KEY>".into(),
                });
            };
            // An explicit JUY_DATABASE__URL wins over DATABASE_URL.
            if name == "DATABASE_URL" && sources.env.iter().any(|(n, _)| n == "JUY_DATABASE__URL") {
                continue;
            }
            let entry = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(section_table) = entry else {
                return Err(ConfigError::new(section, "must be a table"));
            };
            let value = if key == "url"
                || key.ends_with("_url")
                || key.ends_with("secret")
                || key == "master_keys"
                || key == "client_id"
            {
                toml::Value::String(value.clone())
            } else {
                env_value(value)
            };
            section_table.insert(key.clone(), value);
        }
        let raw: RawSettings = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::new(&path, e.into_inner().message().to_owned())
        })?;
        Self::validate(raw)
    }

    fn validate(raw: RawSettings) -> Result<Self, ConfigError> {
        let server = ServerSettings {
            grpc_addr: addr("server.grpc_addr", &raw.server.grpc_addr)?,
            rest_addr: addr("server.rest_addr", &raw.server.rest_addr)?,
            request_timeout: Duration::from_secs(raw.server.request_timeout_secs.max(1)),
            shutdown_grace: Duration::from_secs(raw.server.shutdown_grace_secs),
        };
        if server.grpc_addr == server.rest_addr && server.grpc_addr.port() != 0 {
            return Err(ConfigError::new(
                "server.rest_addr",
                "must differ from server.grpc_addr",
            ));
        }

        let tls = match (raw.tls.enabled, raw.tls.cert_file, raw.tls.key_file) {
            (Some(false), _, _) => None,
            (_, Some(cert_file), Some(key_file)) => Some(TlsSettings { cert_file, key_file }),
            (_, None, _) => {
                return Err(ConfigError::new(
                    "tls.cert_file",
                    "is required (or set tls.enabled = false to serve plaintext, for development only)",
                ));
            }
            (_, _, None) => return Err(ConfigError::new("tls.key_file", "is required with tls.cert_file")),
        };

        let url = raw
            .database
            .url
            .ok_or_else(|| ConfigError::new("database.url", "is required (DATABASE_URL works too)"))?;
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ConfigError::new("database.url", "must be a postgres:// URL"));
        }
        if raw.database.max_connections == 0 {
            return Err(ConfigError::new("database.max_connections", "must be at least 1"));
        }
        let database = juy_store::PoolConfig {
            database_url: url,
            max_connections: raw.database.max_connections,
            connect_timeout: Duration::from_secs(raw.database.connect_timeout_secs.max(1)),
            statement_timeout: Duration::from_secs(raw.database.statement_timeout_secs.max(1)),
            application_name: raw.telemetry.service_name.clone(),
        };

        let keyring = match (raw.crypto.master_keys, raw.crypto.master_keys_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "crypto.master_keys",
                    "give master_keys or master_keys_file, not both",
                ));
            }
            (Some(keys), None) => {
                MasterKeyring::parse(&keys).map_err(|e| ConfigError::new("crypto.master_keys", e.to_string()))?
            }
            (None, Some(path)) => {
                let text = read_secret_file("crypto.master_keys_file", &path)?;
                MasterKeyring::parse(&text).map_err(|e| ConfigError::new("crypto.master_keys_file", e.to_string()))?
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "crypto.master_keys",
                    "is required: VERSION:BASE64 entries (`juy-calendar keygen` makes one)",
                ));
            }
        };

        let issuer = raw
            .auth
            .issuer
            .ok_or_else(|| ConfigError::new("auth.issuer", "is required"))?;
        let audience = raw
            .auth
            .audience
            .ok_or_else(|| ConfigError::new("auth.audience", "is required"))?;
        let mut keys = Vec::new();
        match (raw.auth.hs256_secret, raw.auth.hs256_secret_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "auth.hs256_secret",
                    "give hs256_secret or hs256_secret_file, not both",
                ));
            }
            (Some(secret), None) => keys.push(VerificationKey::Hs256(Zeroizing::new(secret.into_bytes()))),
            (None, Some(path)) => {
                let secret = read_secret_file("auth.hs256_secret_file", &path)?;
                keys.push(VerificationKey::Hs256(Zeroizing::new(secret.as_bytes().to_vec())));
            }
            (None, None) => {}
        }
        for path in &raw.auth.rs256_public_key_files {
            keys.push(VerificationKey::Rs256Pem(
                read_secret_file("auth.rs256_public_key_files", path)?.to_string(),
            ));
        }
        for path in &raw.auth.eddsa_public_key_files {
            keys.push(VerificationKey::EdDsaPem(
                read_secret_file("auth.eddsa_public_key_files", path)?.to_string(),
            ));
        }
        if keys.is_empty() {
            return Err(ConfigError::new(
                "auth.hs256_secret",
                "no token key configured: give auth.hs256_secret(_file), auth.rs256_public_key_files or auth.eddsa_public_key_files",
            ));
        }
        let auth = AuthConfig {
            issuer,
            audience,
            keys,
            leeway: Duration::from_secs(raw.auth.leeway_secs),
        };
        juy_api::auth::Authenticator::new(&auth).map_err(|e| ConfigError::new("auth", e.to_string()))?;

        let log_format = match raw.telemetry.log_format.as_str() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            other => {
                return Err(ConfigError::new(
                    "telemetry.log_format",
                    format!("`{other}` is not json or text"),
                ));
            }
        };
        if tracing_subscriber::EnvFilter::try_new(&raw.telemetry.log_filter).is_err() {
            return Err(ConfigError::new(
                "telemetry.log_filter",
                "is not a valid filter directive",
            ));
        }
        if let Some(endpoint) = &raw.telemetry.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError::new("telemetry.otlp_endpoint", "must be an http(s):// URL"));
        }
        if !(1..=3650).contains(&raw.events.ttl_days) {
            return Err(ConfigError::new("events.ttl_days", "must be between 1 and 3650"));
        }
        Ok(Self {
            server,
            tls,
            database,
            migrate_on_start: raw.database.migrate_on_start,
            keyring,
            auth,
            telemetry: TelemetrySettings {
                log_format,
                log_filter: raw.telemetry.log_filter,
                otlp_endpoint: raw.telemetry.otlp_endpoint,
                service_name: raw.telemetry.service_name,
            },
            event_ttl: chrono::Duration::days(raw.events.ttl_days),
            integrations: integrations(raw.google, raw.microsoft, raw.oauth, raw.caldav)?,
            sync: juy_sync::SyncConfig {
                reminders: reminders_config(raw.reminders)?,
                audit_forward: audit_config(raw.audit)?,
                ..sync_config(raw.sync, chrono::Duration::days(raw.events.ttl_days))?
            },
        })
    }
}

fn http_url(setting: &str, value: &str) -> Result<String, ConfigError> {
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(value.to_owned()),
        _ => Err(ConfigError::new(setting, format!("`{value}` is not an http(s):// URL"))),
    }
}

fn oauth_provider(
    section: &str,
    raw: RawOAuthProvider,
    defaults: fn(String, Option<Zeroizing<String>>) -> juy_oauth2::ProviderEndpoints,
) -> Result<Option<juy_oauth2::ProviderEndpoints>, ConfigError> {
    let setting = |key: &str| format!("{section}.{key}");
    let Some(client_id) = raw.client_id.filter(|id| !id.is_empty()) else {
        if raw.client_secret.is_some() || raw.client_secret_file.is_some() {
            return Err(ConfigError::new(
                &setting("client_id"),
                "is required with a client secret",
            ));
        }
        return Ok(None);
    };
    let secret = match (raw.client_secret, raw.client_secret_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                &setting("client_secret"),
                "give client_secret or client_secret_file, not both",
            ));
        }
        (Some(secret), None) => Some(Zeroizing::new(secret)),
        (None, Some(path)) => Some(read_secret_file(&setting("client_secret_file"), &path)?),
        (None, None) => None,
    };
    let mut endpoints = defaults(client_id, secret);
    if let Some(url) = raw.authorize_url {
        endpoints.authorize_url = http_url(&setting("authorize_url"), &url)?;
    }
    if let Some(url) = raw.token_url {
        endpoints.token_url = http_url(&setting("token_url"), &url)?;
    }
    if let Some(url) = raw.revoke_url {
        endpoints.revoke_url = Some(http_url(&setting("revoke_url"), &url)?);
    }
    if let Some(url) = raw.userinfo_url {
        endpoints.userinfo_url = http_url(&setting("userinfo_url"), &url)?;
    }
    Ok(Some(endpoints))
}

fn integrations(
    google: RawOAuthProvider,
    microsoft: RawOAuthProvider,
    oauth: RawOAuth,
    caldav: RawCalDav,
) -> Result<juy_api::connect::IntegrationsConfig, ConfigError> {
    let mut config = juy_api::connect::IntegrationsConfig::default();
    if let Some(base) = &google.api_base_url {
        config.google_api_base = http_url("google.api_base_url", base)?;
    }
    if let Some(base) = &microsoft.api_base_url {
        config.graph_api_base = http_url("microsoft.api_base_url", base)?;
    }
    config.google = oauth_provider("google", google, juy_oauth2::ProviderEndpoints::google)?;
    config.microsoft = oauth_provider("microsoft", microsoft, juy_oauth2::ProviderEndpoints::microsoft)?;
    for uri in &oauth.redirect_uris {
        http_url("oauth.redirect_uris", uri)?;
    }
    config.redirect_uris = oauth.redirect_uris;
    if !(60..=3600).contains(&oauth.state_ttl_secs) {
        return Err(ConfigError::new("oauth.state_ttl_secs", "must be between 60 and 3600"));
    }
    config.state_ttl = Duration::from_secs(oauth.state_ttl_secs);
    config.caldav_default_server = http_url("caldav.default_server_url", &caldav.default_server_url)?;
    for entry in &caldav.allow_list {
        if entry.is_empty() || entry.contains('/') || entry.contains(char::is_whitespace) {
            return Err(ConfigError::new(
                "caldav.allow_list",
                format!("`{entry}` is not a host or host:port"),
            ));
        }
    }
    config.caldav_allow_list = caldav.allow_list;
    config.provider_timeout = Duration::from_secs(caldav.request_timeout_secs.clamp(1, 300));
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Vec<(String, String)> {
        let key = juy_crypto::MasterKey::generate().to_base64();
        [
            ("DATABASE_URL", "postgres://postgres@127.0.0.1/x".to_owned()),
            ("JUY_TLS__ENABLED", "false".to_owned()),
            ("JUY_CRYPTO__MASTER_KEYS", format!("1:{}", *key)),
            ("JUY_AUTH__ISSUER", "juy-gateway".to_owned()),
            ("JUY_AUTH__AUDIENCE", "juy-calendar".to_owned()),
            ("JUY_AUTH__HS256_SECRET", "0123456789abcdef0123456789abcdef".to_owned()),
            ("JUY_TOOLS_DIR", "/ignored/because/no/double/underscore".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    fn load(env: Vec<(String, String)>) -> Result<Settings, ConfigError> {
        Settings::load(&Sources { file: None, env })
    }

    fn without(name: &str) -> Vec<(String, String)> {
        minimal().into_iter().filter(|(k, _)| k != name).collect()
    }

    fn with(name: &str, value: &str) -> Vec<(String, String)> {
        let mut env = without(name);
        env.push((name.to_owned(), value.to_owned()));
        env
    }

    #[test]
    fn minimal_environment_loads_with_defaults() {
        let settings = load(minimal()).unwrap();
        assert!(settings.tls.is_none());
        assert_eq!(settings.server.grpc_addr.port(), 9443);
        assert_eq!(settings.event_ttl, chrono::Duration::days(30));
        assert!(
            !format!("{settings:?}").contains("0123456789abcdef"),
            "secrets stay out of Debug"
        );
    }

    #[test]
    fn each_missing_setting_is_named() {
        for (var, named) in [
            ("DATABASE_URL", "database.url"),
            ("JUY_CRYPTO__MASTER_KEYS", "crypto.master_keys"),
            ("JUY_AUTH__ISSUER", "auth.issuer"),
            ("JUY_AUTH__HS256_SECRET", "auth.hs256_secret"),
            ("JUY_TLS__ENABLED", "tls.cert_file"),
        ] {
            let error = load(without(var)).unwrap_err();
            assert!(error.setting.starts_with(named), "{var}: {error}");
        }
    }

    #[test]
    fn bad_values_are_named() {
        assert!(
            load(with("JUY_SERVER__GRPC_ADDR", "nowhere"))
                .unwrap_err()
                .setting
                .starts_with("server.grpc_addr")
        );
        assert!(
            load(with("JUY_DATABASE__MAX_CONNECTIONS", "many"))
                .unwrap_err()
                .setting
                .starts_with("database.max_connections")
        );
        assert!(
            load(with("JUY_SERVER__BOGUS", "1"))
                .unwrap_err()
                .to_string()
                .contains("bogus")
        );
        assert!(
            load(with("JUY_CRYPTO__MASTER_KEYS", "1:c2hvcnQ="))
                .unwrap_err()
                .to_string()
                .contains("32 bytes")
        );
        assert!(
            load(with("JUY_AUTH__HS256_SECRET", "short"))
                .unwrap_err()
                .to_string()
                .contains("32 bytes")
        );
        assert!(
            load(with("JUY_TELEMETRY__LOG_FORMAT", "xml"))
                .unwrap_err()
                .setting
                .starts_with("telemetry.log_format")
        );
        assert!(
            load(with("DATABASE_URL", "mysql://x"))
                .unwrap_err()
                .setting
                .starts_with("database.url")
        );
    }

    #[test]
    fn reminders_are_off_without_an_endpoint_and_checked_with_one() {
        assert!(load(minimal()).unwrap().sync.reminders.is_none());
        let secret = "reminder-secret-0123456789abcdef0123";
        let with_endpoint = |endpoint: &str, extra: &[(&str, &str)]| {
            let mut env = with("JUY_REMINDERS__ENDPOINT", endpoint);
            env.push(("JUY_REMINDERS__SECRET".to_owned(), secret.to_owned()));
            env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
            load(env)
        };
        let settings = with_endpoint("https://notify.example/v1/reminders", &[]).unwrap();
        let reminders = settings.sync.reminders.clone().unwrap();
        assert_eq!(reminders.endpoint, "https://notify.example/v1/reminders");
        assert_eq!(reminders.secret.as_slice(), secret.as_bytes());
        assert!(
            !format!("{settings:?}").contains(secret),
            "the secret stays out of Debug"
        );
        assert!(with_endpoint("http://127.0.0.1:9999/hook", &[]).is_ok());
        for (endpoint, extra, named) in [
            ("http://notify.example/hook", &[][..], "reminders.endpoint"),
            ("https://user:pw@notify.example/hook", &[][..], "reminders.endpoint"),
            (
                "https://notify.example/hook",
                &[
                    ("JUY_REMINDERS__LEASE_SECS", "5"),
                    ("JUY_REMINDERS__REQUEST_TIMEOUT_SECS", "10"),
                ][..],
                "reminders.lease_secs",
            ),
            (
                "https://notify.example/hook",
                &[("JUY_REMINDERS__MAX_ATTEMPTS", "0")][..],
                "reminders.max_attempts",
            ),
        ] {
            let error = with_endpoint(endpoint, extra).unwrap_err();
            assert!(error.setting.starts_with(named), "{endpoint}: {error}");
        }
        let short = load({
            let mut env = with("JUY_REMINDERS__ENDPOINT", "https://notify.example/hook");
            env.push(("JUY_REMINDERS__SECRET".to_owned(), "short".to_owned()));
            env
        })
        .unwrap_err();
        assert!(short.setting.starts_with("reminders.secret"), "{short}");
        let missing = load(with("JUY_REMINDERS__ENDPOINT", "https://notify.example/hook")).unwrap_err();
        assert!(missing.setting.starts_with("reminders.secret"), "{missing}");
    }

    #[test]
    fn file_values_are_overridden_by_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("juy.toml");
        std::fs::write(
            &path,
            "[server]\ngrpc_addr = \"127.0.0.1:1111\"\nrest_addr = \"127.0.0.1:2222\"\n",
        )
        .unwrap();
        let settings = Settings::load(&Sources {
            file: Some(path.clone()),
            env: with("JUY_SERVER__REST_ADDR", "127.0.0.1:3333"),
        })
        .unwrap();
        assert_eq!(settings.server.grpc_addr.port(), 1111);
        assert_eq!(settings.server.rest_addr.port(), 3333);
        std::fs::write(&path, "[server\n").unwrap();
        assert!(
            Settings::load(&Sources {
                file: Some(path),
                env: minimal()
            })
            .unwrap_err()
            .setting
            .starts_with("--config")
        );
    }
}
