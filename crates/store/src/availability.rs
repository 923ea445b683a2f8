//! What free/busy and slot finding read: the busy facts of users' events
//! (times, status, transparency, the owner's answer, the kind — never a
//! sealed column, so answering decrypts nothing), the Juy meetings that make
//! them busy, their calendars' health, and their availability settings.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc, Weekday};
use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::sql_types::{Array, BigInt, Bool, Date, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{QueryableByName, sql_query};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use juy_availability::{BusyFacts, WorkingPeriod};
use juy_domain::{
    AccountStatus, AllDayDates, CalendarId, EventId, EventKind, EventStatus, MeetingId, ResponseStatus, SyncStatus,
    Transparency, UserId,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::StoreError;

/// How far beyond a range all-day events are read: their stored instants are
/// in the event's zone, their busy time in the owner's, at most a day apart.
const ALL_DAY_SLACK: Duration = Duration::hours(26);

/// One event's busy facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusyEvent {
    /// The event.
    pub id: EventId,
    /// What free/busy looks at.
    pub facts: BusyFacts,
}

/// A scheduled Juy meeting overlapping a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusyMeeting {
    /// The meeting.
    pub id: MeetingId,
    /// Its organiser.
    pub organizer: UserId,
    /// Its invitees.
    pub invitees: Vec<UserId>,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
}

/// One calendar of a user, as free/busy judges its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarHealth {
    /// The owner.
    pub user_id: UserId,
    /// The calendar.
    pub calendar_id: CalendarId,
    /// Its account's state.
    pub account_status: AccountStatus,
    /// How its last sync went.
    pub sync_status: SyncStatus,
    /// When it last synced successfully.
    pub last_synced_at: Option<DateTime<Utc>>,
    /// The account's main calendar.
    pub is_primary: bool,
    /// Its IANA zone, when known.
    pub time_zone: Option<String>,
}

/// A user's availability settings as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AvailabilitySettings {
    /// Their IANA zone, when set.
    pub time_zone: Option<String>,
    /// Their working week, when set (else the default week).
    pub working_hours: Option<Vec<WorkingPeriod>>,
}

/// The stored JSON of one working period.
#[derive(Serialize, Deserialize)]
struct StoredPeriod {
    day: String,
    start: String,
    end: String,
}

fn day_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "mon",
        Weekday::Tue => "tue",
        Weekday::Wed => "wed",
        Weekday::Thu => "thu",
        Weekday::Fri => "fri",
        Weekday::Sat => "sat",
        Weekday::Sun => "sun",
    }
}

fn encode_periods(periods: &[WorkingPeriod]) -> serde_json::Value {
    let stored: Vec<StoredPeriod> = periods
        .iter()
        .map(|p| StoredPeriod {
            day: day_name(p.day).to_owned(),
            start: p.start.format("%H:%M").to_string(),
            end: p.end.format("%H:%M").to_string(),
        })
        .collect();
    serde_json::to_value(stored).unwrap_or(serde_json::Value::Null)
}

fn decode_periods(value: serde_json::Value) -> Result<Vec<WorkingPeriod>, StoreError> {
    let corrupt = || StoreError::Corrupt("availability settings: working hours are not valid".into());
    let stored: Vec<StoredPeriod> = serde_json::from_value(value).map_err(|_| corrupt())?;
    stored
        .into_iter()
        .map(|p| {
            Ok(WorkingPeriod {
                day: p.day.parse().map_err(|_| corrupt())?,
                start: NaiveTime::parse_from_str(&p.start, "%H:%M").map_err(|_| corrupt())?,
                end: NaiveTime::parse_from_str(&p.end, "%H:%M").map_err(|_| corrupt())?,
            })
        })
        .collect()
}

/// A text column holding one of an enumeration's names (a CHECK constraint
/// keeps them valid), parsed straight from the row's bytes: busy queries read
/// tens of thousands of rows, and a `String` per column was most of their
/// decoding time. `None`: a name this build does not know.
struct EnumText<T>(Option<T>);

impl<T: FromStr> FromSql<Text, Pg> for EnumText<T> {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        Ok(Self(std::str::from_utf8(value.as_bytes())?.parse().ok()))
    }
}

#[derive(QueryableByName)]
struct BusyRow {
    /// The user's position in the list asked for, from 1.
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    start_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    end_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Date>)]
    all_day_start: Option<NaiveDate>,
    #[diesel(sql_type = Nullable<Date>)]
    all_day_end: Option<NaiveDate>,
    #[diesel(sql_type = Text)]
    status: EnumText<EventStatus>,
    #[diesel(sql_type = Text)]
    self_response: EnumText<ResponseStatus>,
    #[diesel(sql_type = Text)]
    kind: EnumText<EventKind>,
}

fn user(id: String) -> Result<UserId, StoreError> {
    UserId::new(id).map_err(|_| StoreError::Corrupt("a stored user id is not valid".into()))
}

/// The busy facts of every event of `users` that may be busy within
/// `[from, to)` (all-day events a day around it, since their time depends on
/// the owner's zone), one list per user in the order of `users`. Events that
/// are free under every reading of the busy policy — cancelled, transparent,
/// declined, working elsewhere — are left in the database; the caller still
/// applies `juy_availability::busy_kind` to the rest. A synced event that is
/// the external copy of a Juy meeting is left out (the meeting counts
/// instead, so a meeting being moved never conflicts with its own copy).
///
/// One index-only scan per user (`user_calendar_events_range_idx` holds
/// every column read here), so the cost is the events in the range and the
/// sync window's past (the scan has no lower bound: an event may be long),
/// never a sealed column.
pub async fn busy_events(
    conn: &mut AsyncPgConnection,
    users: &[UserId],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Vec<BusyEvent>>, StoreError> {
    let names: Vec<&str> = users.iter().map(UserId::as_str).collect();
    // $5 bounds the index scan (the CASE conditions cannot); the meetings'
    // copies are found from the meetings side, so that each event only meets
    // an empty list in the common case instead of a probe into `meetings`.
    let rows: Vec<BusyRow> = sql_query(
        "WITH copies AS MATERIALIZED ( \
           SELECT coalesce(array_agg(e.id), '{}') AS ids FROM meetings m \
           JOIN user_calendar_events e ON e.user_id = m.user_id AND e.calendar_id = m.calendar_id \
             AND e.external_id = m.external_id \
           WHERE m.user_id = ANY($1) AND m.external_id IS NOT NULL AND e.start_at < $5 AND e.end_at > $4) \
         SELECT u.n, e.id, e.start_at, e.end_at, e.all_day_start, e.all_day_end, e.status, e.self_response, e.kind \
         FROM unnest($1::text[]) WITH ORDINALITY AS u(user_id, n) \
         CROSS JOIN LATERAL ( \
           SELECT * FROM user_calendar_events e \
           WHERE e.user_id = u.user_id AND e.start_at < $5 \
             AND e.start_at < CASE WHEN e.all_day_start IS NULL THEN $3 ELSE $5 END \
             AND e.end_at > CASE WHEN e.all_day_start IS NULL THEN $2 ELSE $4 END \
             AND e.status <> 'cancelled' AND e.transparency = 'opaque' AND e.self_response <> 'declined' \
             AND e.kind <> 'working_elsewhere' \
             AND NOT e.id = ANY((SELECT ids FROM copies)::uuid[])) e",
    )
    .bind::<Array<Text>, _>(&names)
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .bind::<Timestamptz, _>(from - ALL_DAY_SLACK)
    .bind::<Timestamptz, _>(to + ALL_DAY_SLACK)
    .load(conn)
    .await?;
    let mut events: Vec<Vec<BusyEvent>> = vec![Vec::new(); users.len()];
    for row in rows {
        let list = usize::try_from(row.n - 1)
            .ok()
            .and_then(|i| events.get_mut(i))
            .ok_or_else(|| StoreError::Database(format!("busy events: no user at position {}", row.n)))?;
        list.push(row.decode()?);
    }
    Ok(events)
}

impl BusyRow {
    fn decode(self) -> Result<BusyEvent, StoreError> {
        let id = self.id;
        let corrupt = |what: &str| StoreError::Corrupt(format!("event {id}: {what}"));
        let all_day = match (self.all_day_start, self.all_day_end) {
            (Some(start), Some(end)) => Some(AllDayDates { start, end }),
            (None, None) => None,
            _ => return Err(corrupt("only one all-day date is set")),
        };
        Ok(BusyEvent {
            id: EventId(self.id),
            facts: BusyFacts {
                start: self.start_at,
                end: self.end_at,
                all_day,
                status: self.status.0.ok_or_else(|| corrupt("unknown status"))?,
                // Only opaque events are read.
                transparency: Transparency::Opaque,
                self_response: self.self_response.0.ok_or_else(|| corrupt("unknown response status"))?,
                kind: self.kind.0.ok_or_else(|| corrupt("unknown kind"))?,
            },
        })
    }
}

/// The busy facts of every event of `user` that may be busy, whenever it
/// is (the same rows and exclusions as [`busy_events`], without a range):
/// what a rebuild of their busy blocks reads.
pub async fn busy_events_all(conn: &mut AsyncPgConnection, user: &UserId) -> Result<Vec<BusyEvent>, StoreError> {
    let rows: Vec<BusyRow> = sql_query(
        "WITH copies AS MATERIALIZED ( \
           SELECT coalesce(array_agg(e.id), '{}') AS ids FROM meetings m \
           JOIN user_calendar_events e ON e.user_id = m.user_id AND e.calendar_id = m.calendar_id \
             AND e.external_id = m.external_id \
           WHERE m.user_id = $1 AND m.external_id IS NOT NULL) \
         SELECT 1::int8 AS n, e.id, e.start_at, e.end_at, e.all_day_start, e.all_day_end, e.status, \
                e.self_response, e.kind \
         FROM user_calendar_events e \
         WHERE e.user_id = $1 \
           AND e.status <> 'cancelled' AND e.transparency = 'opaque' AND e.self_response <> 'declined' \
           AND e.kind <> 'working_elsewhere' \
           AND NOT e.id = ANY((SELECT ids FROM copies)::uuid[])",
    )
    .bind::<Text, _>(user.as_str())
    .load(conn)
    .await?;
    rows.into_iter().map(BusyRow::decode).collect()
}

#[derive(QueryableByName)]
struct MeetingRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = Array<Text>)]
    invitees: Vec<String>,
    #[diesel(sql_type = Timestamptz)]
    start_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    end_at: DateTime<Utc>,
}

/// The scheduled meetings overlapping `[from, to)` that `users` organise or
/// are invited to, except `except`. The query is sent when this is called
/// and the future does not hold the connection, so it can be pipelined with
/// the other reads of a free/busy answer (`futures::try_join!`).
pub async fn busy_meetings(
    conn: &AsyncPgConnection,
    users: &[UserId],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    except: Option<MeetingId>,
) -> Result<Vec<BusyMeeting>, StoreError> {
    let mut conn = conn;
    let users: Vec<String> = users.iter().map(|u| u.as_str().to_owned()).collect();
    let rows = sql_query(
        "SELECT id, user_id, invitees, start_at, end_at FROM meetings \
         WHERE (user_id = ANY($1) OR invitees && $1) AND status = 'scheduled' \
           AND start_at < $3 AND end_at > $2 AND ($4::uuid IS NULL OR id <> $4)",
    )
    .bind::<Array<Text>, _>(users)
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .bind::<Nullable<SqlUuid>, _>(except.map(|id| id.0))
    .load::<MeetingRow>(&mut conn);
    {
        rows.await?
            .into_iter()
            .map(|row| {
                Ok(BusyMeeting {
                    id: MeetingId(row.id),
                    organizer: user(row.user_id)?,
                    invitees: row.invitees.into_iter().map(user).collect::<Result<_, _>>()?,
                    start: row.start_at,
                    end: row.end_at,
                })
            })
            .collect()
    }
}

#[derive(QueryableByName)]
struct HealthRow {
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    account_status: String,
    #[diesel(sql_type = Text)]
    sync_status: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_synced_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Bool)]
    is_primary: bool,
    #[diesel(sql_type = Nullable<Text>)]
    time_zone: Option<String>,
}

/// The calendars of `users`' connections that are not revoked. Sent when
/// called; the future does not hold the connection (see [`busy_meetings`]).
pub async fn calendar_health(conn: &AsyncPgConnection, users: &[UserId]) -> Result<Vec<CalendarHealth>, StoreError> {
    let mut conn = conn;
    let users: Vec<String> = users.iter().map(|u| u.as_str().to_owned()).collect();
    let rows = sql_query(
        "SELECT c.user_id, c.id, a.status AS account_status, c.sync_status, c.last_synced_at, \
                c.is_primary, c.time_zone \
         FROM calendars c JOIN connected_accounts a ON a.user_id = c.user_id AND a.id = c.account_id \
         WHERE c.user_id = ANY($1) AND a.status <> 'revoked' ORDER BY c.user_id, c.id",
    )
    .bind::<Array<Text>, _>(users)
    .load::<HealthRow>(&mut conn);
    {
        rows.await?
            .into_iter()
            .map(|row| {
                let corrupt = |what: &str| StoreError::Corrupt(format!("calendar {}: {what}", row.id));
                Ok(CalendarHealth {
                    user_id: user(row.user_id.clone())?,
                    calendar_id: CalendarId(row.id),
                    account_status: row
                        .account_status
                        .parse()
                        .map_err(|_| corrupt("unknown account status"))?,
                    sync_status: row.sync_status.parse().map_err(|_| corrupt("unknown sync status"))?,
                    last_synced_at: row.last_synced_at,
                    is_primary: row.is_primary,
                    time_zone: row.time_zone.clone(),
                })
            })
            .collect()
    }
}

#[derive(QueryableByName)]
struct SettingsRow {
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    time_zone: Option<String>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    working_hours: Option<serde_json::Value>,
}

/// The availability settings of `users` who have any. Sent when called;
/// the future does not hold the connection (see [`busy_meetings`]).
pub async fn settings_of(
    conn: &AsyncPgConnection,
    users: &[UserId],
) -> Result<HashMap<UserId, AvailabilitySettings>, StoreError> {
    let mut conn = conn;
    let users: Vec<String> = users.iter().map(|u| u.as_str().to_owned()).collect();
    let rows = sql_query("SELECT user_id, time_zone, working_hours FROM availability_settings WHERE user_id = ANY($1)")
        .bind::<Array<Text>, _>(users)
        .load::<SettingsRow>(&mut conn);
    {
        rows.await?
            .into_iter()
            .map(|row| {
                Ok((
                    user(row.user_id)?,
                    AvailabilitySettings {
                        time_zone: row.time_zone,
                        working_hours: row.working_hours.map(decode_periods).transpose()?,
                    },
                ))
            })
            .collect()
    }
}

/// Stores a user's availability settings; `None` in a field keeps what is
/// stored, `Some(None)` clears it (back to the default).
pub async fn update_settings(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    time_zone: Option<Option<&str>>,
    working_hours: Option<Option<&[WorkingPeriod]>>,
) -> Result<AvailabilitySettings, StoreError> {
    let hours = working_hours.map(|hours| hours.map(encode_periods));
    let row: SettingsRow = sql_query(
        "INSERT INTO availability_settings AS s (user_id, time_zone, working_hours) VALUES ($1, $3, $5) \
         ON CONFLICT (user_id) DO UPDATE SET \
           time_zone = CASE WHEN $2 THEN excluded.time_zone ELSE s.time_zone END, \
           working_hours = CASE WHEN $4 THEN excluded.working_hours ELSE s.working_hours END, \
           updated_at = now() \
         RETURNING user_id, time_zone, working_hours",
    )
    .bind::<Text, _>(user.as_str())
    .bind::<Bool, _>(time_zone.is_some())
    .bind::<Nullable<Text>, _>(time_zone.flatten())
    .bind::<Bool, _>(hours.is_some())
    .bind::<Nullable<Jsonb>, _>(hours.flatten())
    .get_result(conn)
    .await?;
    Ok(AvailabilitySettings {
        time_zone: row.time_zone,
        working_hours: row.working_hours.map(decode_periods).transpose()?,
    })
}
