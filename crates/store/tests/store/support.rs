//! Fixtures shared by the store's tests.

use chrono::{DateTime, TimeZone, Utc};
use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use juy_crypto::DataKey;
use juy_domain::{
    AccountStatus, Attendee, Calendar, CalendarEvent, ConnectedAccount, EventId, Provider, Reminder, ReminderMethod,
    ResponseStatus, UserId,
};
use juy_store::accounts::{NewAccount, upsert_account};
use juy_store::calendars::{NewCalendar, upsert_calendars};
use juy_store::testing::TestDatabase;
use juy_store::{Conn, Store};

/// A test's own database, a store on it, a connection, and a user with their key.
pub struct Fixture {
    pub store: Store,
    pub conn: Conn,
    pub user: UserId,
    pub key: DataKey,
    // Last, so the database outlives the pool's connections; held only to be dropped.
    _db: TestDatabase,
}

pub async fn fixture() -> Fixture {
    let db = TestDatabase::create().await.expect("test database");
    let store = db.store();
    let mut conn = store.conn().await.expect("connection");
    let user = user("alice");
    let key = store.data_key(&mut conn, &user).await.expect("data key");
    Fixture {
        store,
        conn,
        user,
        key,
        _db: db,
    }
}

pub fn user(name: &str) -> UserId {
    UserId::new(name).unwrap()
}

pub fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, hour, minute, 0).unwrap()
}

pub fn new_account(user: &UserId, external_id: &str) -> NewAccount {
    NewAccount {
        user_id: user.clone(),
        provider: Provider::Google,
        external_account_id: external_id.to_owned(),
        display_name: Some(format!("{external_id} display")),
        status: AccountStatus::Active,
        scopes: vec!["calendar.readonly".into()],
        server_url: None,
        credentials: Some(b"{\"refresh_token\":\"r-1\"}".to_vec()),
    }
}

pub async fn account(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    user: &UserId,
    external_id: &str,
) -> ConnectedAccount {
    upsert_account(conn, key, &new_account(user, external_id))
        .await
        .unwrap()
}

pub fn new_calendar(account: &ConnectedAccount, provider_id: &str, can_write: bool) -> NewCalendar {
    NewCalendar {
        account_id: account.id,
        provider: account.provider,
        provider_calendar_id: provider_id.to_owned(),
        name: format!("{provider_id} name"),
        color: Some("#336699".into()),
        time_zone: Some("Europe/Paris".into()),
        is_primary: false,
        can_write,
    }
}

/// An account with one writable calendar for `user`.
pub async fn calendar(conn: &mut AsyncPgConnection, key: &DataKey, user: &UserId) -> Calendar {
    let account = account(conn, key, user, &format!("{user}-account")).await;
    let mut calendars = upsert_calendars(conn, key, user, &[new_calendar(&account, "primary", true)])
        .await
        .unwrap();
    calendars.remove(0)
}

/// An event of `calendar`, with the id the store gives it ([`juy_store::events::event_row_id`]).
pub fn event(calendar: &Calendar, external_id: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> CalendarEvent {
    CalendarEvent {
        id: EventId(juy_store::events::event_row_id(
            &calendar.user_id,
            calendar.id,
            external_id,
        )),
        user_id: calendar.user_id.clone(),
        calendar_id: calendar.id,
        provider: calendar.provider,
        external_id: external_id.to_owned(),
        ical_uid: Some(format!("{external_id}@example.org")),
        title: Some(format!("title of {external_id}")),
        location: Some(format!("location of {external_id}")),
        description: Some(format!("description of {external_id}")),
        start,
        end,
        time_zone: Some("Europe/Paris".into()),
        all_day: None,
        status: Default::default(),
        transparency: Default::default(),
        self_response: ResponseStatus::Accepted,
        kind: Default::default(),
        organizer: Some(Attendee {
            email: format!("organizer-{external_id}@example.org"),
            name: Some("Org".into()),
            response: ResponseStatus::Organizer,
            is_self: false,
            optional: false,
        }),
        attendees: vec![Attendee {
            email: format!("guest-{external_id}@example.org"),
            name: None,
            response: ResponseStatus::NeedsAction,
            is_self: true,
            optional: true,
        }],
        series_id: None,
        instance_start: None,
        reminders: vec![Reminder {
            minutes_before: 10,
            method: ReminderMethod::Popup,
        }],
        etag: Some("\"1\"".into()),
        updated: Some(at(1, 0, 0)),
    }
}

pub fn external_ids(events: &[CalendarEvent]) -> Vec<String> {
    events.iter().map(|event| event.external_id.clone()).collect()
}

#[derive(QueryableByName)]
pub struct TextRow {
    #[diesel(sql_type = Text)]
    pub value: String,
}

/// The text values of a query's single `value` column.
pub async fn texts(conn: &mut AsyncPgConnection, sql: &str) -> Vec<String> {
    diesel::sql_query(sql)
        .load::<TextRow>(conn)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.value)
        .collect()
}

/// Runs SQL that returns nothing.
pub async fn exec(conn: &mut AsyncPgConnection, sql: &str) {
    diesel::sql_query(sql).execute(conn).await.unwrap();
}
