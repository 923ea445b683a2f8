//! Push channels: after a successful run, a Google or Microsoft calendar
//! gets a watch channel (Google) or subscription (Graph) pointing at our
//! webhooks, renewed before it lapses. A notification only makes the
//! calendar due (the webhook handlers in `juy-api`); the run that follows
//! is an ordinary incremental round. Push is an accelerator: when it cannot
//! be set up the calendar is still polled, so failures here never fail a run.

use chrono::{DateTime, Utc};
use juy_domain::Provider;
use juy_providers::push::{PushChannel, WatchRequest};
use juy_providers::{CalendarProvider, ProviderError};
use juy_store::sync_state::Lease;
use juy_store::{AsyncPgConnection, push_channels};
use rand::Rng as _;
use zeroize::Zeroizing;

/// Where providers send notifications, and how long channels live.
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// The public base URL of the REST bridge as providers reach it (the
    /// webhooks are `{base}/v1/calendar/webhooks/google`, `…/microsoft` and
    /// `…/microsoft/lifecycle`). Providers require `https`.
    pub public_base_url: String,
    /// How long a channel is asked to live (providers cap it: Google a week,
    /// Graph 10080 minutes).
    pub lifetime: chrono::Duration,
    /// A channel with less than this left is renewed by the calendar's next run.
    pub renew_before: chrono::Duration,
}

impl PushConfig {
    /// Push to `public_base_url` with channels of six days, renewed a day before they lapse.
    pub fn new(public_base_url: impl Into<String>) -> Self {
        Self {
            public_base_url: public_base_url.into().trim_end_matches('/').to_owned(),
            lifetime: chrono::Duration::days(6),
            renew_before: chrono::Duration::days(1),
        }
    }
}

/// A fresh channel secret: 32 random bytes as hex (Google tokens and Graph
/// `clientState` allow 128 characters).
fn new_secret() -> Zeroizing<String> {
    let bytes: [u8; 32] = rand::rng().random();
    Zeroizing::new(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Opens or renews the calendar's channel when it has none or it lapses
/// soon; returns the channel's expiry when one is open. Errors are logged
/// and swallowed: the calendar is polled either way.
pub(crate) async fn ensure_channel(
    config: &PushConfig,
    conn: &mut AsyncPgConnection,
    lease: &Lease,
    client: &dyn CalendarProvider,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match try_ensure(config, conn, lease, client, now).await {
        Ok(expiry) => expiry,
        Err(error) => {
            tracing::warn!(
                calendar_id = %lease.calendar_id,
                provider = %lease.provider,
                error = %error,
                "could not open or renew the push channel; the calendar is polled"
            );
            None
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum PushError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Store(#[from] juy_store::StoreError),
}

async fn try_ensure(
    config: &PushConfig,
    conn: &mut AsyncPgConnection,
    lease: &Lease,
    client: &dyn CalendarProvider,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, PushError> {
    let path = match lease.provider {
        Provider::Google => "google",
        Provider::Microsoft => "microsoft",
        Provider::Caldav => return Ok(None),
    };
    let existing = push_channels::get_for_calendar(conn, &lease.user_id, lease.calendar_id).await?;
    if let Some(channel) = &existing
        && channel.expires_at - now > config.renew_before
    {
        return Ok(Some(channel.expires_at));
    }
    let secret = new_secret();
    let request = WatchRequest {
        channel_id: uuid::Uuid::new_v4().to_string(),
        address: format!("{}/v1/calendar/webhooks/{path}", config.public_base_url),
        lifecycle_address: (lease.provider == Provider::Microsoft)
            .then(|| format!("{}/v1/calendar/webhooks/microsoft/lifecycle", config.public_base_url)),
        secret: secret.clone(),
        expires_at: now + config.lifetime,
    };
    let calendar = lease.provider_calendar_id.as_str();
    let opened = match &existing {
        Some(stored) if stored.expires_at > now => {
            let old = PushChannel {
                channel_id: stored.channel_id.clone(),
                resource_id: stored.resource_id.clone(),
                expires_at: stored.expires_at,
            };
            match client.renew_watch(calendar, &old, &request).await {
                Err(ProviderError::NotFound) => client.watch(calendar, &request).await?,
                other => other?,
            }
        }
        _ => client.watch(calendar, &request).await?,
    };
    let Some(channel) = opened else {
        return Ok(None);
    };
    let kept = existing
        .as_ref()
        .is_some_and(|stored| stored.channel_id == channel.channel_id);
    if kept {
        // A Graph subscription renewed in place keeps its clientState: keep the stored hash too.
        push_channels::set_expiry(
            conn,
            &lease.user_id,
            lease.calendar_id,
            &channel.channel_id,
            channel.expires_at,
        )
        .await?;
    } else {
        push_channels::save(
            conn,
            &lease.user_id,
            lease.calendar_id,
            lease.account_id,
            lease.provider,
            &channel.channel_id,
            channel.resource_id.as_deref(),
            &secret,
            channel.expires_at,
        )
        .await?;
    }
    tracing::info!(
        calendar_id = %lease.calendar_id,
        provider = %lease.provider,
        renewed = existing.is_some(),
        expires_at = %channel.expires_at,
        "push channel open"
    );
    Ok(Some(channel.expires_at))
}
