//! A user's settings: reminder channels per provider, and (through
//! [`update_settings`]) calendar write modes, changed together.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use juy_crypto::DataKey;
use juy_domain::{Calendar, CalendarId, CalendarMode, NotificationChannels, Provider, UserId};

use crate::StoreError;
use crate::calendars::apply_calendar_modes;
use crate::schema::notification_settings as n;

/// The user's channels for every provider, in [`Provider::ALL`] order;
/// providers never configured get [`NotificationChannels::default_for`].
pub async fn notification_settings(
    conn: &mut AsyncPgConnection,
    user: &UserId,
) -> Result<Vec<NotificationChannels>, StoreError> {
    let rows: Vec<(String, bool, bool, bool)> = n::table
        .filter(n::user_id.eq(user.as_str()))
        .select((n::provider, n::push, n::email, n::sms))
        .load(conn)
        .await?;
    let mut stored: HashMap<Provider, NotificationChannels> = HashMap::new();
    for (provider, push, email, sms) in rows {
        let provider: Provider = provider
            .parse()
            .map_err(|_| StoreError::Corrupt("notification settings: unknown provider".into()))?;
        stored.insert(
            provider,
            NotificationChannels {
                provider,
                push,
                email,
                sms,
            },
        );
    }
    Ok(Provider::ALL
        .iter()
        .map(|provider| {
            stored
                .get(provider)
                .copied()
                .unwrap_or_else(|| NotificationChannels::default_for(*provider))
        })
        .collect())
}

/// A change of the availability settings: `None` keeps a part, `Some(None)` resets it.
#[derive(Debug, Clone, Copy, Default)]
pub struct AvailabilityPatch<'a> {
    /// The IANA zone.
    pub time_zone: Option<Option<&'a str>>,
    /// The working week.
    pub working_hours: Option<Option<&'a [juy_availability::WorkingPeriod]>>,
}

/// Applies calendar write modes, notification channels and availability
/// settings in one transaction, all or nothing, and returns the calendars
/// changed (as [`crate::calendars::set_calendar_modes`] does) and the
/// channels of every provider.
pub async fn update_settings(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    user: &UserId,
    modes: &[(CalendarId, CalendarMode)],
    channels: &[NotificationChannels],
    availability: AvailabilityPatch<'_>,
) -> Result<(Vec<Calendar>, Vec<NotificationChannels>), StoreError> {
    conn.transaction(async |conn| {
        let calendars = apply_calendar_modes(conn, key, user, modes).await?;
        store_channels(conn, user, channels).await?;
        if availability.time_zone.is_some() || availability.working_hours.is_some() {
            crate::availability::update_settings(conn, user, availability.time_zone, availability.working_hours)
                .await?;
        }
        let channels = notification_settings(conn, user).await?;
        Ok((calendars, channels))
    })
    .await
}

#[derive(Insertable)]
#[diesel(table_name = n)]
struct ChannelsInsert<'a> {
    user_id: &'a str,
    provider: &'static str,
    push: bool,
    email: bool,
    sms: bool,
}

async fn store_channels(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    channels: &[NotificationChannels],
) -> Result<(), StoreError> {
    // One statement may not update a row twice: the last entry per provider wins.
    let mut latest: HashMap<Provider, NotificationChannels> = HashMap::new();
    for entry in channels {
        latest.insert(entry.provider, *entry);
    }
    if latest.is_empty() {
        return Ok(());
    }
    let rows: Vec<ChannelsInsert<'_>> = Provider::ALL
        .iter()
        .filter_map(|provider| latest.get(provider))
        .map(|entry| ChannelsInsert {
            user_id: user.as_str(),
            provider: entry.provider.as_str(),
            push: entry.push,
            email: entry.email,
            sms: entry.sms,
        })
        .collect();
    diesel::insert_into(n::table)
        .values(&rows)
        .on_conflict((n::user_id, n::provider))
        .do_update()
        .set((
            n::push.eq(excluded(n::push)),
            n::email.eq(excluded(n::email)),
            n::sms.eq(excluded(n::sms)),
            n::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
