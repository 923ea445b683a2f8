//! Driving the sync engine in tests: a test server (no workers of its own)
//! whose store and provider settings an [`Engine`] shares, with an injected
//! clock; accounts linked straight into the store with sandbox-minted tokens;
//! and views of the stored events to compare with the provider's.

#![allow(clippy::unwrap_used)] // test helpers

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use diesel::sql_types::{Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl as _;
use juy_api::connect::Integrations;
use juy_domain::{AccountId, AccountStatus, CalendarId, Clock, FixedClock, Provider, UserId};
use juy_oauth2::StoredCredentials;
use juy_store::calendars::NewCalendar;
use juy_store::{accounts, sync_state};
use juy_sync::{Engine, RunOutcome, SyncConfig};

use crate::TestServer;

/// An engine over `server`'s store and provider settings, on `clock`.
pub fn engine(server: &TestServer, clock: Arc<dyn Clock>, config: SyncConfig) -> Arc<Engine> {
    let integrations = Arc::new(Integrations::new(server.integrations.clone(), server.store.clone(), Arc::clone(&clock)).unwrap());
    let clients = move |lease: &sync_state::Lease| {
        integrations.client_for(&lease.user_id, lease.account_id, lease.provider, lease.server_url.as_deref())
    };
    Arc::new(Engine::new(server.store.clone(), Arc::new(clients), clock, config))
}

/// A clock at the real now (the sandbox's clock is real time too, unless advanced).
pub fn clock_now() -> Arc<FixedClock> {
    Arc::new(FixedClock::new(Utc::now()))
}

/// A linked account and its calendars' ids, keyed by provider calendar id.
#[derive(Debug, Clone)]
pub struct Linked {
    /// The user.
    pub user: UserId,
    /// The account.
    pub account: AccountId,
    /// Calendar ids by provider calendar id.
    pub calendars: BTreeMap<String, CalendarId>,
}

/// Links an OAuth account straight into the store with `access_token`
/// (no refresh token: an expired token means re-authorisation) and the
/// given calendars `(provider id, name, primary)`.
pub async fn link_oauth(
    server: &TestServer,
    user: &str,
    provider: Provider,
    email: &str,
    access_token: &str,
    calendars: &[(&str, &str, bool)],
) -> Linked {
    let credentials = StoredCredentials::OAuth {
        access_token: access_token.to_owned(),
        expires_at: Utc::now() + chrono::Duration::hours(1),
        refresh_token: None,
    };
    let scopes = match provider {
        Provider::Google => vec!["https://www.googleapis.com/auth/calendar.readonly".to_owned()],
        _ => vec!["Calendars.Read".to_owned()],
    };
    link(server, user, provider, email, None, credentials, scopes, calendars).await
}

/// Links a CalDAV account (user name and password) whose calendar home is `home_url`.
pub async fn link_caldav(
    server: &TestServer,
    user: &str,
    home_url: &str,
    username: &str,
    password: &str,
    calendars: &[(&str, &str, bool)],
) -> Linked {
    let credentials = StoredCredentials::Password {
        username: username.to_owned(),
        password: password.to_owned(),
    };
    link(
        server,
        user,
        Provider::Caldav,
        &format!("{home_url}#principal"),
        Some(home_url.to_owned()),
        credentials,
        Vec::new(),
        calendars,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn link(
    server: &TestServer,
    user: &str,
    provider: Provider,
    external_id: &str,
    server_url: Option<String>,
    credentials: StoredCredentials,
    scopes: Vec<String>,
    calendars: &[(&str, &str, bool)],
) -> Linked {
    let user = UserId::new(user).unwrap();
    let mut conn = server.store.conn().await.unwrap();
    let key = server.store.data_key(&mut conn, &user).await.unwrap();
    let account = accounts::NewAccount {
        user_id: user.clone(),
        provider,
        external_account_id: external_id.to_owned(),
        display_name: None,
        status: AccountStatus::Pending,
        scopes,
        server_url,
        credentials: Some(credentials.to_bytes().to_vec()),
    };
    let new: Vec<NewCalendar> = calendars
        .iter()
        .map(|(id, name, primary)| NewCalendar {
            account_id: AccountId(uuid::Uuid::nil()),
            provider,
            provider_calendar_id: (*id).to_owned(),
            name: (*name).to_owned(),
            color: None,
            time_zone: None,
            is_primary: *primary,
            can_write: false,
        })
        .collect();
    let (account, stored) = accounts::link_account(&mut conn, &key, &account, new).await.unwrap();
    Linked {
        user,
        account: account.id,
        calendars: stored.into_iter().map(|c| (c.provider_calendar_id, c.id)).collect(),
    }
}

/// Leases and runs due calendars with `engine` as worker `owner` until none
/// is due; returns the outcomes in order.
pub async fn sync_due(engine: &Engine, owner: &str) -> Vec<RunOutcome> {
    let mut outcomes = Vec::new();
    for _ in 0..100 {
        let leases = {
            let mut conn = engine.store().conn().await.unwrap();
            sync_state::lease_due(&mut conn, owner, engine.clock().now(), engine.config().lease_for, 10)
                .await
                .unwrap()
        };
        if leases.is_empty() {
            return outcomes;
        }
        for lease in leases {
            outcomes.push(engine.run(lease).await);
        }
    }
    panic!("calendars stayed due after 100 rounds: {outcomes:?}");
}

/// Makes a calendar due now (as "sync now" does).
pub async fn make_due(server: &TestServer, user: &UserId, calendar: CalendarId, now: DateTime<Utc>) {
    let mut conn = server.store.conn().await.unwrap();
    assert!(sync_state::schedule_now(&mut conn, user, calendar, now).await.unwrap());
}

#[derive(diesel::QueryableByName)]
struct StoredRow {
    #[diesel(sql_type = Text)]
    external_id: String,
    #[diesel(sql_type = Timestamptz)]
    start_at: DateTime<Utc>,
}

/// The calendar's stored events: external id → start.
pub async fn stored_events(server: &TestServer, user: &UserId, calendar: CalendarId) -> BTreeMap<String, DateTime<Utc>> {
    let mut conn = server.store.conn().await.unwrap();
    let rows: Vec<StoredRow> = diesel::sql_query(
        "SELECT external_id, start_at FROM user_calendar_events WHERE user_id = $1 AND calendar_id = $2",
    )
    .bind::<Text, _>(user.as_str())
    .bind::<SqlUuid, _>(calendar.0)
    .load(&mut *conn)
    .await
    .unwrap();
    let count = rows.len();
    let map: BTreeMap<String, DateTime<Utc>> = rows.into_iter().map(|row| (row.external_id, row.start_at)).collect();
    assert_eq!(map.len(), count, "an event is stored twice");
    map
}
