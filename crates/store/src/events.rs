//! Stored events: batched upserts and deletions from sync, range listing
//! with keyset paging, and the bounded TTL cleanup.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use juy_crypto::{Aad, DataKey};
use juy_domain::{AllDayDates, Attendee, CalendarEvent, CalendarId, EventId, Provider, TimeRange, UserId};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::StoreError;
use crate::schema::{calendars as c, user_calendar_events as e};

const TABLE: &str = "user_calendar_events";

/// The most events one INSERT carries (bounds one statement's size and memory).
const CHUNK: usize = 500;

/// Which of a user's events to list, and which page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Whose events.
    pub user_id: UserId,
    /// Events overlapping this range.
    pub range: TimeRange,
    /// Only these providers; empty means all.
    pub providers: Vec<Provider>,
    /// Only these calendars; empty means all.
    pub calendar_ids: Vec<CalendarId>,
    /// Continue after this (start, id): the last event of the previous page.
    pub after: Option<(DateTime<Utc>, EventId)>,
    /// The most events to return.
    pub limit: i64,
}

/// The plaintext sealed in `attendees_enc`.
#[derive(Serialize, Deserialize)]
struct People {
    organizer: Option<Attendee>,
    attendees: Vec<Attendee>,
}

fn aad(column: &str, user_id: &str, id: Uuid) -> Aad {
    Aad::new(TABLE, column, &[user_id, &id.to_string()])
}

/// One row to store: its columns, its texts sealed for its id.
struct EventInsert<'a> {
    id: Uuid,
    calendar_id: Uuid,
    provider: &'static str,
    external_id: &'a str,
    ical_uid: Option<&'a str>,
    series_id: Option<&'a str>,
    instance_start: Option<DateTime<Utc>>,
    start_at: DateTime<Utc>,
    end_at: DateTime<Utc>,
    time_zone: Option<&'a str>,
    all_day_start: Option<NaiveDate>,
    all_day_end: Option<NaiveDate>,
    status: &'static str,
    transparency: &'static str,
    self_response: &'static str,
    kind: &'static str,
    reminders: serde_json::Value,
    reminder_first_due: Option<DateTime<Utc>>,
    reminder_last_due: Option<DateTime<Utc>>,
    etag: Option<&'a str>,
    provider_updated_at: Option<DateTime<Utc>>,
    title_enc: Option<Vec<u8>>,
    location_enc: Option<Vec<u8>>,
    description_enc: Option<Vec<u8>>,
    attendees_enc: Option<Vec<u8>>,
}

impl<'a> EventInsert<'a> {
    /// The row for `event`, its texts sealed for row `id`.
    fn seal(event: &'a CalendarEvent, id: Uuid, key: &DataKey) -> Result<Self, StoreError> {
        let user = event.user_id.as_str();
        let seal_text =
            |column: &str, text: &Option<String>| text.as_ref().map(|text| key.seal_str(text, &aad(column, user, id)));
        let attendees_enc = if event.organizer.is_some() || !event.attendees.is_empty() {
            let people = People {
                organizer: event.organizer.clone(),
                attendees: event.attendees.clone(),
            };
            let json = Zeroizing::new(serde_json::to_vec(&people).map_err(|_| {
                StoreError::InvalidInput(format!("event {}: attendees cannot be serialised", event.id))
            })?);
            Some(key.seal(&json, &aad("attendees_enc", user, id)))
        } else {
            None
        };
        let reminders = serde_json::to_value(&event.reminders)
            .map_err(|_| StoreError::InvalidInput(format!("event {}: reminders cannot be serialised", event.id)))?;
        let (reminder_first_due, reminder_last_due) = reminder_due_span(event);
        Ok(Self {
            id,
            calendar_id: event.calendar_id.0,
            provider: event.provider.as_str(),
            external_id: &event.external_id,
            ical_uid: event.ical_uid.as_deref(),
            series_id: event.series_id.as_deref(),
            instance_start: event.instance_start,
            start_at: event.start,
            end_at: event.end,
            time_zone: event.time_zone.as_deref(),
            all_day_start: event.all_day.map(|dates| dates.start),
            all_day_end: event.all_day.map(|dates| dates.end),
            status: event.status.as_str(),
            transparency: event.transparency.as_str(),
            self_response: event.self_response.as_str(),
            kind: event.kind.as_str(),
            reminders,
            reminder_first_due,
            reminder_last_due,
            etag: event.etag.as_deref(),
            provider_updated_at: event.updated,
            title_enc: seal_text("title_enc", &event.title),
            location_enc: seal_text("location_enc", &event.location),
            description_enc: seal_text("description_enc", &event.description),
            attendees_enc,
        })
    }
}

/// The first and last due time of the event's reminders (start minus the
/// largest and the smallest lead; `None` without reminders), stored beside
/// them for the reminder planner's indexes (`juy_store::reminders::plan`).
/// Leads beyond ±10 years are ignored, as the planner ignores them.
fn reminder_due_span(event: &CalendarEvent) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    const MAX_LEAD_MINUTES: i32 = 5_256_000;
    let leads = event
        .reminders
        .iter()
        .map(|reminder| reminder.minutes_before)
        .filter(|lead| (-MAX_LEAD_MINUTES..=MAX_LEAD_MINUTES).contains(lead));
    let (Some(largest), Some(smallest)) = (leads.clone().max(), leads.min()) else {
        return (None, None);
    };
    let due = |lead: i32| {
        event
            .start
            .checked_sub_signed(chrono::Duration::minutes(i64::from(lead)))
    };
    match (due(largest), due(smallest)) {
        (Some(first), Some(last)) => (Some(first), Some(last)),
        _ => (None, None),
    }
}

/// Inserts or refreshes events, all of one user, and returns how many were
/// stored (an event listed twice counts once, the last listing winning).
///
/// One multi-row statement per 500 events, all in one transaction. An event
/// already stored (same calendar and external id) keeps its id and gets every
/// other column replaced; `expires_at` becomes `synced_at + ttl`. Every
/// calendar must be the user's, else [`StoreError::NotFound`] and nothing changes.
pub async fn upsert_events(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    events: &[CalendarEvent],
    synced_at: DateTime<Utc>,
    ttl: chrono::Duration,
) -> Result<usize, StoreError> {
    let Some(first) = events.first() else {
        return Ok(0);
    };
    let user = &first.user_id;
    if events.iter().any(|event| event.user_id != *user) {
        return Err(StoreError::InvalidInput(
            "one call may only store events of one user".into(),
        ));
    }
    let expires_at = synced_at
        .checked_add_signed(ttl)
        .ok_or_else(|| StoreError::InvalidInput("synced_at + ttl is out of range".into()))?;
    // One statement may not update a row twice: keep the last listing of each event.
    let mut latest: HashMap<(CalendarId, &str), usize> = HashMap::new();
    for (index, event) in events.iter().enumerate() {
        latest.insert((event.calendar_id, event.external_id.as_str()), index);
    }
    let unique: Vec<&CalendarEvent> = events
        .iter()
        .enumerate()
        .filter(|(index, event)| latest.get(&(event.calendar_id, event.external_id.as_str())) == Some(index))
        .map(|(_, event)| event)
        .collect();

    conn.transaction(async |conn| {
        check_calendars_owned(conn, user, &unique).await?;
        for chunk in unique.chunks(CHUNK) {
            upsert_chunk(conn, key, user, chunk, synced_at, expires_at).await?;
        }
        Ok(unique.len())
    })
    .await
}

async fn check_calendars_owned(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    events: &[&CalendarEvent],
) -> Result<(), StoreError> {
    let wanted: Vec<Uuid> = events
        .iter()
        .map(|event| event.calendar_id.0)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let found: HashSet<Uuid> = c::table
        .filter(c::user_id.eq(user.as_str()))
        .filter(c::id.eq_any(&wanted))
        .select(c::id)
        .load::<Uuid>(conn)
        .await?
        .into_iter()
        .collect();
    match events.iter().find(|event| !found.contains(&event.calendar_id.0)) {
        Some(event) => Err(StoreError::NotFound {
            what: "calendar",
            id: event.calendar_id.to_string(),
        }),
        None => Ok(()),
    }
}

async fn upsert_chunk(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    user: &UserId,
    chunk: &[&CalendarEvent],
    synced_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut pending: Vec<&CalendarEvent> = chunk.to_vec();
    // Ciphertexts are bound to the row id, so a stored event keeps its id and
    // its texts are sealed for it. The first attempt takes the id a row of
    // this calendar and external id is given when first stored (derived, so
    // no lookup); a row stored with another id (before ids were derived) is
    // skipped by the statement, looked up and sealed again, as is a row
    // whose id changed under us.
    for attempt in 0..3 {
        let ids = if attempt == 0 {
            HashMap::new()
        } else {
            existing_event_ids(conn, user, &pending).await?
        };
        let rows = pending
            .iter()
            .map(|event| {
                let id = ids
                    .get(&(event.calendar_id.0, event.external_id.clone()))
                    .copied()
                    .unwrap_or_else(|| event_row_id(user, event.calendar_id, &event.external_id));
                EventInsert::seal(event, id, key)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let stored: HashSet<(Uuid, String)> = insert_rows(conn, user, &rows, synced_at, expires_at)
            .await?
            .into_iter()
            .collect();
        pending.retain(|event| !stored.contains(&(event.calendar_id.0, event.external_id.clone())));
        if pending.is_empty() {
            return Ok(());
        }
    }
    Err(StoreError::Database("events changed concurrently; try again".into()))
}

/// The id a user's event row gets when first stored: a UUIDv8 from a
/// SHA-256 of the user, the calendar and the provider's id for the event, so
/// an event keeps one id across updates, resyncs and re-insertions, and a
/// page can be sealed without asking the database for ids first.
pub fn event_row_id(user: &UserId, calendar_id: CalendarId, external_id: &str) -> Uuid {
    let digest = Sha256::new()
        .chain_update(b"juy-event-row-id\0")
        .chain_update(user.as_str().as_bytes())
        .chain_update(b"\0")
        .chain_update(calendar_id.0.as_bytes())
        .chain_update(external_id.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::new_v8(bytes)
}

/// Inserts or updates `rows` in one statement whose size does not depend on
/// their number: each column is bound as one array and `unnest` turns them
/// back into rows, so PostgreSQL parses and plans a short statement instead
/// of a `VALUES` list of thousands of parameters. A conflicting row is
/// updated only if it kept the id its texts were sealed for; returns the
/// (calendar, external id) of the rows stored.
async fn insert_rows(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    rows: &[EventInsert<'_>],
    synced_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<Vec<(Uuid, String)>, StoreError> {
    use diesel::sql_types::{Bytea, Date, Jsonb, Nullable};
    #[derive(QueryableByName)]
    struct Stored {
        #[diesel(sql_type = SqlUuid)]
        calendar_id: Uuid,
        #[diesel(sql_type = Text)]
        external_id: String,
    }
    fn column<'r, T>(rows: &'r [EventInsert<'_>], get: impl Fn(&'r EventInsert<'_>) -> T) -> Vec<T> {
        rows.iter().map(get).collect()
    }
    // The first line marks the user's busy blocks as changed, in this
    // statement (`crate::busy_blocks`; a trigger refuses an insert that
    // did not).
    let stored: Vec<Stored> = diesel::sql_query(
        "WITH busy_mark AS (INSERT INTO busy_dirty (user_id) VALUES ($1) \
             RETURNING set_config('juy.busy_marked', 'on', true)) \
         INSERT INTO user_calendar_events (user_id, id, calendar_id, provider, external_id, ical_uid, \
             series_id, instance_start, start_at, end_at, time_zone, all_day_start, all_day_end, status, \
             transparency, self_response, kind, reminders, etag, provider_updated_at, title_enc, location_enc, \
             description_enc, attendees_enc, reminder_first_due, reminder_last_due, synced_at, expires_at) \
         SELECT $1, row.*, $27, $28 FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::text[], $12::date[], \
             $13::date[], $14::text[], $15::text[], $16::text[], $17::text[], $18::jsonb[], $19::text[], \
             $20::timestamptz[], $21::bytea[], $22::bytea[], $23::bytea[], $24::bytea[], $25::timestamptz[], \
             $26::timestamptz[]) AS row \
         ON CONFLICT (user_id, calendar_id, external_id) DO UPDATE SET \
             provider = excluded.provider, ical_uid = excluded.ical_uid, series_id = excluded.series_id, \
             instance_start = excluded.instance_start, start_at = excluded.start_at, end_at = excluded.end_at, \
             time_zone = excluded.time_zone, all_day_start = excluded.all_day_start, \
             all_day_end = excluded.all_day_end, status = excluded.status, transparency = excluded.transparency, \
             self_response = excluded.self_response, kind = excluded.kind, reminders = excluded.reminders, \
             reminder_first_due = excluded.reminder_first_due, reminder_last_due = excluded.reminder_last_due, \
             etag = excluded.etag, provider_updated_at = excluded.provider_updated_at, \
             title_enc = excluded.title_enc, location_enc = excluded.location_enc, \
             description_enc = excluded.description_enc, attendees_enc = excluded.attendees_enc, \
             synced_at = excluded.synced_at, expires_at = excluded.expires_at, updated_at = now() \
         WHERE user_calendar_events.id = excluded.id \
         RETURNING calendar_id, external_id",
    )
    .bind::<Text, _>(user.as_str())
    .bind::<Array<SqlUuid>, _>(column(rows, |r| r.id))
    .bind::<Array<SqlUuid>, _>(column(rows, |r| r.calendar_id))
    .bind::<Array<Text>, _>(column(rows, |r| r.provider))
    .bind::<Array<Text>, _>(column(rows, |r| r.external_id))
    .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.ical_uid))
    .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.series_id))
    .bind::<Array<Nullable<Timestamptz>>, _>(column(rows, |r| r.instance_start))
    .bind::<Array<Timestamptz>, _>(column(rows, |r| r.start_at))
    .bind::<Array<Timestamptz>, _>(column(rows, |r| r.end_at))
    .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.time_zone))
    .bind::<Array<Nullable<Date>>, _>(column(rows, |r| r.all_day_start))
    .bind::<Array<Nullable<Date>>, _>(column(rows, |r| r.all_day_end))
    .bind::<Array<Text>, _>(column(rows, |r| r.status))
    .bind::<Array<Text>, _>(column(rows, |r| r.transparency))
    .bind::<Array<Text>, _>(column(rows, |r| r.self_response))
    .bind::<Array<Text>, _>(column(rows, |r| r.kind))
    .bind::<Array<Jsonb>, _>(column(rows, |r| &r.reminders))
    .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.etag))
    .bind::<Array<Nullable<Timestamptz>>, _>(column(rows, |r| r.provider_updated_at))
    .bind::<Array<Nullable<Bytea>>, _>(column(rows, |r| r.title_enc.as_deref()))
    .bind::<Array<Nullable<Bytea>>, _>(column(rows, |r| r.location_enc.as_deref()))
    .bind::<Array<Nullable<Bytea>>, _>(column(rows, |r| r.description_enc.as_deref()))
    .bind::<Array<Nullable<Bytea>>, _>(column(rows, |r| r.attendees_enc.as_deref()))
    .bind::<Array<Nullable<Timestamptz>>, _>(column(rows, |r| r.reminder_first_due))
    .bind::<Array<Nullable<Timestamptz>>, _>(column(rows, |r| r.reminder_last_due))
    .bind::<Timestamptz, _>(synced_at)
    .bind::<Timestamptz, _>(expires_at)
    .load(conn)
    .await?;
    Ok(stored
        .into_iter()
        .map(|row| (row.calendar_id, row.external_id))
        .collect())
}

async fn existing_event_ids(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    events: &[&CalendarEvent],
) -> Result<HashMap<(Uuid, String), Uuid>, StoreError> {
    let mut by_calendar: HashMap<CalendarId, Vec<&str>> = HashMap::new();
    for event in events {
        by_calendar
            .entry(event.calendar_id)
            .or_default()
            .push(event.external_id.as_str());
    }
    let mut found = HashMap::with_capacity(events.len());
    for (calendar, external_ids) in by_calendar {
        let rows = stored_rows(conn, user, calendar, &external_ids).await?;
        found.extend(rows.into_iter().map(|row| ((calendar.0, row.external_id), row.id)));
    }
    Ok(found)
}

/// The stored etag of each of these events of a calendar that is stored
/// (`None`: stored without one): what a reconciliation compares a listing
/// with to count the rows it repairs.
pub async fn stored_etags(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    calendar_id: CalendarId,
    external_ids: &[&str],
) -> Result<HashMap<String, Option<String>>, StoreError> {
    Ok(stored_rows(conn, user, calendar_id, external_ids)
        .await?
        .into_iter()
        .map(|row| (row.external_id, row.etag))
        .collect())
}

#[derive(QueryableByName)]
struct StoredRow {
    #[diesel(sql_type = Text)]
    external_id: String,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    etag: Option<String>,
}

/// The stored rows of these events of one calendar.
///
/// One unique-index probe per asked id, whatever the statistics say. On a
/// table not yet analysed (an initial sync filling it) PostgreSQL estimates
/// `external_id = ANY($3)` to match every row, and plans a join with the ids
/// as a hash join over the whole calendar, on every page; the `LIMIT 1` (the
/// key is unique) keeps the subquery a per-id index probe.
async fn stored_rows(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    calendar_id: CalendarId,
    external_ids: &[&str],
) -> Result<Vec<StoredRow>, StoreError> {
    if external_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(diesel::sql_query(
        "SELECT asked.external_id, stored.id, stored.etag \
         FROM unnest($3::text[]) AS asked(external_id) \
         CROSS JOIN LATERAL ( \
             SELECT id, etag FROM user_calendar_events \
             WHERE user_id = $1 AND calendar_id = $2 AND external_id = asked.external_id \
             LIMIT 1 \
         ) AS stored",
    )
    .bind::<Text, _>(user.as_str())
    .bind::<SqlUuid, _>(calendar_id.0)
    .bind::<Array<Text>, _>(external_ids)
    .load(conn)
    .await?)
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = e)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct EventRow {
    user_id: String,
    id: Uuid,
    calendar_id: Uuid,
    provider: String,
    external_id: String,
    ical_uid: Option<String>,
    series_id: Option<String>,
    instance_start: Option<DateTime<Utc>>,
    start_at: DateTime<Utc>,
    end_at: DateTime<Utc>,
    time_zone: Option<String>,
    all_day_start: Option<NaiveDate>,
    all_day_end: Option<NaiveDate>,
    status: String,
    transparency: String,
    self_response: String,
    kind: String,
    reminders: serde_json::Value,
    etag: Option<String>,
    provider_updated_at: Option<DateTime<Utc>>,
    title_enc: Option<Vec<u8>>,
    location_enc: Option<Vec<u8>>,
    description_enc: Option<Vec<u8>>,
    attendees_enc: Option<Vec<u8>>,
}

impl EventRow {
    fn decode(self, key: &DataKey) -> Result<CalendarEvent, StoreError> {
        let id = self.id;
        let corrupt = |what: &str| StoreError::Corrupt(format!("event {id}: {what}"));
        let user = self.user_id.as_str();
        let open_text = |column: &str, sealed: &Option<Vec<u8>>| -> Result<Option<String>, StoreError> {
            sealed
                .as_ref()
                .map(|sealed| key.open_string(sealed, &aad(column, user, id)))
                .transpose()
                .map_err(|_| corrupt("could not be decrypted"))
        };
        let title = open_text("title_enc", &self.title_enc)?;
        let location = open_text("location_enc", &self.location_enc)?;
        let description = open_text("description_enc", &self.description_enc)?;
        let people = match &self.attendees_enc {
            Some(sealed) => {
                let json = key
                    .open(sealed, &aad("attendees_enc", user, id))
                    .map_err(|_| corrupt("could not be decrypted"))?;
                serde_json::from_slice::<People>(&json).map_err(|_| corrupt("attendees are not valid"))?
            }
            None => People {
                organizer: None,
                attendees: Vec::new(),
            },
        };
        let all_day = match (self.all_day_start, self.all_day_end) {
            (Some(start), Some(end)) => Some(AllDayDates { start, end }),
            (None, None) => None,
            _ => return Err(corrupt("only one all-day date is set")),
        };
        Ok(CalendarEvent {
            id: EventId(id),
            user_id: UserId::new(self.user_id.clone()).map_err(|_| corrupt("bad user id"))?,
            calendar_id: CalendarId(self.calendar_id),
            provider: self.provider.parse().map_err(|_| corrupt("unknown provider"))?,
            external_id: self.external_id,
            ical_uid: self.ical_uid,
            title,
            location,
            description,
            start: self.start_at,
            end: self.end_at,
            time_zone: self.time_zone,
            all_day,
            status: self.status.parse().map_err(|_| corrupt("unknown status"))?,
            transparency: self.transparency.parse().map_err(|_| corrupt("unknown transparency"))?,
            self_response: self
                .self_response
                .parse()
                .map_err(|_| corrupt("unknown response status"))?,
            kind: self.kind.parse().map_err(|_| corrupt("unknown kind"))?,
            organizer: people.organizer,
            attendees: people.attendees,
            series_id: self.series_id,
            instance_start: self.instance_start,
            reminders: serde_json::from_value(self.reminders).map_err(|_| corrupt("reminders are not valid"))?,
            etag: self.etag,
            updated: self.provider_updated_at,
        })
    }
}

/// A page of one user's events overlapping the range, ordered by (start, id),
/// texts decrypted. A row that fails to decrypt is [`StoreError::Corrupt`].
pub async fn list_events(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    query: &EventQuery,
) -> Result<Vec<CalendarEvent>, StoreError> {
    if query.limit < 1 {
        return Err(StoreError::InvalidInput("limit must be at least 1".into()));
    }
    let mut select = e::table
        .filter(e::user_id.eq(query.user_id.as_str().to_owned()))
        .filter(e::start_at.lt(query.range.end()))
        .filter(e::end_at.gt(query.range.start()))
        .order((e::start_at, e::id))
        .limit(query.limit)
        .select(EventRow::as_select())
        .into_boxed();
    if !query.providers.is_empty() {
        let providers: Vec<&'static str> = query.providers.iter().map(|provider| provider.as_str()).collect();
        select = select.filter(e::provider.eq_any(providers));
    }
    if !query.calendar_ids.is_empty() {
        let calendars: Vec<Uuid> = query.calendar_ids.iter().map(|calendar| calendar.0).collect();
        select = select.filter(e::calendar_id.eq_any(calendars));
    }
    if let Some((start, id)) = query.after {
        select = select.filter(e::start_at.gt(start).or(e::start_at.eq(start).and(e::id.gt(id.0))));
    }
    // A Juy meeting's copy in an external calendar is listed as the meeting instead.
    select = select.filter(diesel::dsl::sql::<diesel::sql_types::Bool>(
        "NOT EXISTS (SELECT 1 FROM meetings m WHERE m.user_id = user_calendar_events.user_id \
         AND m.calendar_id = user_calendar_events.calendar_id AND m.external_id = user_calendar_events.external_id)",
    ));
    let rows: Vec<EventRow> = select.load(conn).await?;
    rows.into_iter().map(|row| row.decode(key)).collect()
}

/// Every stored event of `user` (meeting copies included), ordered by id,
/// after `after`, at most `limit`, texts decrypted: the GDPR export reads a
/// user's events page by page with this.
pub async fn export_events(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    user: &UserId,
    after: Option<EventId>,
    limit: i64,
) -> Result<Vec<CalendarEvent>, StoreError> {
    let mut select = e::table
        .filter(e::user_id.eq(user.as_str().to_owned()))
        .order(e::id)
        .limit(limit.max(1))
        .select(EventRow::as_select())
        .into_boxed();
    if let Some(after) = after {
        select = select.filter(e::id.gt(after.0));
    }
    let rows: Vec<EventRow> = select.load(conn).await?;
    rows.into_iter().map(|row| row.decode(key)).collect()
}

/// Deletes at most `batch` events whose `expires_at` is not after `now`;
/// returns how many. Rows locked by another cleaner are skipped.
pub async fn delete_expired_events(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    batch: i64,
) -> Result<u64, StoreError> {
    if batch < 1 {
        return Err(StoreError::InvalidInput("batch must be at least 1".into()));
    }
    let deleted = diesel::sql_query(
        "DELETE FROM user_calendar_events AS e USING ( \
             SELECT user_id, id FROM user_calendar_events \
             WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED \
         ) AS expired \
         WHERE e.user_id = expired.user_id AND e.id = expired.id",
    )
    .bind::<Timestamptz, _>(now)
    .bind::<BigInt, _>(batch)
    .execute(conn)
    .await?;
    Ok(deleted as u64)
}

/// Deletes the calendar's events with these provider ids (Google cancelled
/// items, Graph `@removed` ids) in one statement; returns how many. Ids not
/// stored are ignored, so replaying a deletion is harmless.
pub async fn delete_events_by_external_id(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    calendar_id: CalendarId,
    external_ids: &[String],
) -> Result<u64, StoreError> {
    if external_ids.is_empty() {
        return Ok(0);
    }
    let deleted = diesel::delete(
        e::table
            .filter(e::user_id.eq(user.as_str()))
            .filter(e::calendar_id.eq(calendar_id.0))
            .filter(e::external_id.eq_any(external_ids)),
    )
    .execute(conn)
    .await?;
    Ok(deleted as u64)
}

/// Deletes every stored occurrence of these CalDAV resources in one
/// statement: the events whose external id is an href or starts with
/// `{href}#` (an occurrence of a recurring resource). Returns how many.
pub async fn delete_caldav_resources(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    calendar_id: CalendarId,
    hrefs: &[String],
) -> Result<u64, StoreError> {
    if hrefs.is_empty() {
        return Ok(0);
    }
    let patterns: Vec<String> = hrefs.iter().map(|href| occurrence_pattern(href)).collect();
    let deleted = diesel::sql_query(
        "DELETE FROM user_calendar_events \
         WHERE user_id = $1 AND calendar_id = $2 \
           AND (external_id = ANY($3) OR external_id LIKE ANY($4))",
    )
    .bind::<Text, _>(user.as_str())
    .bind::<SqlUuid, _>(calendar_id.0)
    .bind::<Array<Text>, _>(hrefs)
    .bind::<Array<Text>, _>(&patterns)
    .execute(conn)
    .await?;
    Ok(deleted as u64)
}

/// The LIKE pattern matching the occurrence ids `{href}#…` of a CalDAV
/// resource, and nothing else: the href's `\`, `%` and `_` match only themselves.
fn occurrence_pattern(href: &str) -> String {
    let mut pattern = String::with_capacity(href.len() + 2);
    for ch in href.chars() {
        if matches!(ch, '\\' | '%' | '_') {
            // `\` is LIKE's default escape character.
            pattern.push('\\');
        }
        pattern.push(ch);
    }
    pattern.push_str("#%");
    pattern
}

/// Whether `external_id` names the CalDAV resource `href` or one of its occurrences.
fn belongs_to_resource(external_id: &str, href: &str) -> bool {
    external_id
        .strip_prefix(href)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('#'))
}

/// Makes the stored occurrences of one CalDAV resource exactly `events`, in
/// one transaction: the resource's rows not among `events` (an EXDATE, a
/// cancelled override, an occurrence moved out of the window) are deleted and
/// `events` are upserted as by [`upsert_events`]. Returns how many rows were
/// deleted. Every event must be `user`'s, in `calendar_id`, with an external
/// id of `href` or `{href}#…`, else [`StoreError::InvalidInput`] and nothing
/// changes; an empty `events` deletes the whole resource.
#[allow(clippy::too_many_arguments)] // One resource's full identity plus the upsert's own parameters.
pub async fn replace_resource_events(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    user: &UserId,
    calendar_id: CalendarId,
    href: &str,
    events: &[CalendarEvent],
    synced_at: DateTime<Utc>,
    ttl: chrono::Duration,
) -> Result<u64, StoreError> {
    if let Some(stray) = events.iter().find(|event| {
        event.user_id != *user || event.calendar_id != calendar_id || !belongs_to_resource(&event.external_id, href)
    }) {
        return Err(StoreError::InvalidInput(format!(
            "event {} is not an occurrence of the resource being replaced",
            stray.id
        )));
    }
    let current: Vec<&str> = events.iter().map(|event| event.external_id.as_str()).collect();
    conn.transaction(async |conn| {
        let deleted = diesel::sql_query(
            "DELETE FROM user_calendar_events \
             WHERE user_id = $1 AND calendar_id = $2 \
               AND (external_id = $3 OR external_id LIKE $4) \
               AND NOT (external_id = ANY($5))",
        )
        .bind::<Text, _>(user.as_str())
        .bind::<SqlUuid, _>(calendar_id.0)
        .bind::<Text, _>(href)
        .bind::<Text, _>(occurrence_pattern(href))
        .bind::<Array<Text>, _>(&current)
        .execute(conn)
        .await?;
        upsert_events(conn, key, events, synced_at, ttl).await?;
        Ok(deleted as u64)
    })
    .await
}

/// [`replace_resource_events`] for many resources of one calendar at once,
/// in one transaction and two statements whatever their number: the stored
/// occurrences of every resource in `hrefs` that are not among `events` are
/// deleted, and `events` are upserted. Every event must be `user`'s, in
/// `calendar_id`, and an occurrence of one of `hrefs`, else
/// [`StoreError::InvalidInput`] and nothing changes. Returns how many rows
/// were deleted.
#[allow(clippy::too_many_arguments)] // The resources' identity plus the upsert's own parameters.
pub async fn replace_resources_events(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    user: &UserId,
    calendar_id: CalendarId,
    hrefs: &[String],
    events: &[CalendarEvent],
    synced_at: DateTime<Utc>,
    ttl: chrono::Duration,
) -> Result<u64, StoreError> {
    if hrefs.is_empty() && events.is_empty() {
        return Ok(0);
    }
    let known: HashSet<&str> = hrefs.iter().map(String::as_str).collect();
    let resource_of = |external_id: &str| -> bool {
        known.contains(external_id)
            || external_id
                .rsplit_once('#')
                .is_some_and(|(href, _)| known.contains(href))
    };
    if let Some(stray) = events
        .iter()
        .find(|event| event.user_id != *user || event.calendar_id != calendar_id || !resource_of(&event.external_id))
    {
        return Err(StoreError::InvalidInput(format!(
            "event {} is not an occurrence of the resources being replaced",
            stray.id
        )));
    }
    let patterns: Vec<String> = hrefs.iter().map(|href| occurrence_pattern(href)).collect();
    let current: Vec<&str> = events.iter().map(|event| event.external_id.as_str()).collect();
    conn.transaction(async |conn| {
        let deleted = diesel::sql_query(
            "DELETE FROM user_calendar_events \
             WHERE user_id = $1 AND calendar_id = $2 \
               AND (external_id = ANY($3) OR external_id LIKE ANY($4)) \
               AND NOT (external_id = ANY($5))",
        )
        .bind::<Text, _>(user.as_str())
        .bind::<SqlUuid, _>(calendar_id.0)
        .bind::<Array<Text>, _>(hrefs)
        .bind::<Array<Text>, _>(&patterns)
        .bind::<Array<Text>, _>(&current)
        .execute(conn)
        .await?;
        upsert_events(conn, key, events, synced_at, ttl).await?;
        Ok(deleted as u64)
    })
    .await
}

/// Deletes the calendar's events that end at or before `before` (scrolled
/// out of the sync window's past edge); returns how many.
pub async fn delete_ended_before(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    calendar_id: CalendarId,
    before: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let deleted = diesel::delete(
        e::table
            .filter(e::user_id.eq(user.as_str()))
            .filter(e::calendar_id.eq(calendar_id.0))
            .filter(e::end_at.le(before)),
    )
    .execute(conn)
    .await?;
    Ok(deleted as u64)
}

/// Deletes the calendar's events last confirmed before `confirmed_before`;
/// returns how many. This ends a convergent full resync: take the mark
/// before the first page, pass a `synced_at` at or after it to every
/// [`upsert_events`] of the new listing (each upserted row gets that
/// `synced_at`, inserted or updated), and sweep once the last page has
/// committed; what the listing did not confirm is gone, and until then the
/// old rows stay visible.
pub async fn sweep_unconfirmed(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    calendar_id: CalendarId,
    confirmed_before: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let deleted = diesel::delete(
        e::table
            .filter(e::user_id.eq(user.as_str()))
            .filter(e::calendar_id.eq(calendar_id.0))
            .filter(e::synced_at.lt(confirmed_before)),
    )
    .execute(conn)
    .await?;
    Ok(deleted as u64)
}

/// How many events `user` has stored.
pub async fn count_events(conn: &mut AsyncPgConnection, user: &UserId) -> Result<i64, StoreError> {
    Ok(e::table
        .filter(e::user_id.eq(user.as_str()))
        .count()
        .get_result(conn)
        .await?)
}
