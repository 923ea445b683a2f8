//! Meetings organised in Juy, and their row as the transactional outbox of
//! the write-back to an external calendar.
//!
//! A change to a meeting and its pending delivery commit together
//! ([`insert_meeting`], [`update_meeting`]); the dispatcher [`lease_due`]s
//! pending rows (`FOR UPDATE SKIP LOCKED`, so replicas share the work), calls
//! the provider, and [`finish_delivery`] records the outcome fenced by its
//! lease. Deliveries of one meeting collapse: the dispatcher always writes
//! the meeting's latest version, and a change during a delivery leaves the
//! row pending for the next one.

use chrono::{DateTime, Duration, Utc};
use diesel::sql_types::{Array, Bool, Bytea, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{QueryableByName, sql_query};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use juy_crypto::{Aad, DataKey};
use juy_domain::{CalendarId, Delivery, DeliveryState, Meeting, MeetingId, TimeRange, UserId};
use uuid::Uuid;

use crate::StoreError;
use crate::sync_state::MAX_ERROR_CHARS;

const TABLE: &str = "meetings";

fn aad(column: &str, user_id: &str, id: Uuid) -> Aad {
    Aad::new(TABLE, column, &[user_id, &id.to_string()])
}

/// A meeting to store (its delivery starts pending when `calendar_id` is set).
#[derive(Debug, Clone)]
pub struct NewMeeting<'a> {
    /// Its id.
    pub id: MeetingId,
    /// The client's idempotency key.
    pub request_id: Option<&'a str>,
    /// Everything else, as it should be stored.
    pub meeting: &'a Meeting,
}

const COLUMNS: &str = "user_id, id, title_enc, description_enc, location_enc, attendee_emails_enc, start_at, \
    end_at, time_zone, invitees, status, version, calendar_id, delivery_state, external_id, attempts, last_error, \
    delivered_at, next_attempt_at, created_at, updated_at";

#[derive(QueryableByName)]
struct MeetingRow {
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Bytea)]
    title_enc: Vec<u8>,
    #[diesel(sql_type = Nullable<Bytea>)]
    description_enc: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Bytea>)]
    location_enc: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Bytea>)]
    attendee_emails_enc: Option<Vec<u8>>,
    #[diesel(sql_type = Timestamptz)]
    start_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    end_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    time_zone: String,
    #[diesel(sql_type = Array<Text>)]
    invitees: Vec<String>,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    version: i32,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    calendar_id: Option<Uuid>,
    #[diesel(sql_type = Text)]
    delivery_state: String,
    #[diesel(sql_type = Nullable<Text>)]
    external_id: Option<String>,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    delivered_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    next_attempt_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
}

impl MeetingRow {
    fn decode(self, key: &DataKey) -> Result<Meeting, StoreError> {
        let id = self.id;
        let corrupt = |what: &str| StoreError::Corrupt(format!("meeting {id}: {what}"));
        let user = self.user_id.as_str();
        let open = |column: &str, sealed: &[u8]| {
            key.open_string(sealed, &aad(column, user, id))
                .map_err(|_| corrupt("could not be decrypted"))
        };
        let emails = match &self.attendee_emails_enc {
            Some(sealed) => serde_json::from_str::<Vec<String>>(&open("attendee_emails_enc", sealed)?)
                .map_err(|_| corrupt("attendee emails are not valid"))?,
            None => Vec::new(),
        };
        Ok(Meeting {
            id: MeetingId(id),
            organizer: UserId::new(self.user_id.clone()).map_err(|_| corrupt("bad user id"))?,
            title: open("title_enc", &self.title_enc)?,
            description: self
                .description_enc
                .as_deref()
                .map(|s| open("description_enc", s))
                .transpose()?,
            location: self
                .location_enc
                .as_deref()
                .map(|s| open("location_enc", s))
                .transpose()?,
            attendee_emails: emails,
            start: self.start_at,
            end: self.end_at,
            time_zone: self.time_zone,
            invitees: self
                .invitees
                .into_iter()
                .map(|u| UserId::new(u).map_err(|_| corrupt("bad invitee id")))
                .collect::<Result<_, _>>()?,
            status: self.status.parse().map_err(|_| corrupt("unknown status"))?,
            version: self.version,
            calendar_id: self.calendar_id.map(CalendarId),
            delivery: Delivery {
                state: self
                    .delivery_state
                    .parse()
                    .map_err(|_| corrupt("unknown delivery state"))?,
                external_id: self.external_id,
                attempts: self.attempts,
                last_error: self.last_error,
                delivered_at: self.delivered_at,
                next_attempt_at: self.next_attempt_at,
            },
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// The sealed texts of a meeting.
struct Sealed {
    title: Vec<u8>,
    description: Option<Vec<u8>>,
    location: Option<Vec<u8>>,
    emails: Option<Vec<u8>>,
}

fn seal(key: &DataKey, meeting: &Meeting) -> Sealed {
    let user = meeting.organizer.as_str();
    let id = meeting.id.0;
    Sealed {
        title: key.seal_str(&meeting.title, &aad("title_enc", user, id)),
        description: meeting
            .description
            .as_deref()
            .map(|text| key.seal_str(text, &aad("description_enc", user, id))),
        location: meeting
            .location
            .as_deref()
            .map(|text| key.seal_str(text, &aad("location_enc", user, id))),
        emails: (!meeting.attendee_emails.is_empty()).then(|| {
            // A Vec<String> always serialises.
            let json = serde_json::to_string(&meeting.attendee_emails).unwrap_or_default();
            key.seal_str(&json, &aad("attendee_emails_enc", user, id))
        }),
    }
}

/// Stores a new meeting; its delivery is pending (due at `now`) when it has a
/// calendar. With a `request_id` already used by the organiser, nothing is
/// stored and the meeting that request created is returned, with `false`.
pub async fn insert_meeting(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    new: &NewMeeting<'_>,
    now: DateTime<Utc>,
) -> Result<(Meeting, bool), StoreError> {
    let m = new.meeting;
    let sealed = seal(key, m);
    let invitees: Vec<&str> = m.invitees.iter().map(UserId::as_str).collect();
    let deliver = m.calendar_id.is_some();
    let inserted: Vec<MeetingRow> = sql_query(format!(
        "INSERT INTO meetings (user_id, id, request_id, title_enc, description_enc, location_enc, \
           attendee_emails_enc, start_at, end_at, time_zone, invitees, status, version, calendar_id, \
           delivery_state, next_attempt_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'scheduled', 1, $12, \
           CASE WHEN $13 THEN 'pending' ELSE 'not_requested' END, CASE WHEN $13 THEN $14 END, $14, $14) \
         ON CONFLICT (user_id, request_id) DO NOTHING RETURNING {COLUMNS}"
    ))
    .bind::<Text, _>(m.organizer.as_str())
    .bind::<SqlUuid, _>(new.id.0)
    .bind::<Nullable<Text>, _>(new.request_id)
    .bind::<Bytea, _>(&sealed.title)
    .bind::<Nullable<Bytea>, _>(&sealed.description)
    .bind::<Nullable<Bytea>, _>(&sealed.location)
    .bind::<Nullable<Bytea>, _>(&sealed.emails)
    .bind::<Timestamptz, _>(m.start)
    .bind::<Timestamptz, _>(m.end)
    .bind::<Text, _>(&m.time_zone)
    .bind::<Array<Text>, _>(&invitees)
    .bind::<Nullable<SqlUuid>, _>(m.calendar_id.map(|c| c.0))
    .bind::<Bool, _>(deliver)
    .bind::<Timestamptz, _>(now)
    .load(conn)
    .await?;
    if let Some(row) = inserted.into_iter().next() {
        return Ok((row.decode(key)?, true));
    }
    let existing: Vec<MeetingRow> = sql_query(format!(
        "SELECT {COLUMNS} FROM meetings WHERE user_id = $1 AND request_id = $2"
    ))
    .bind::<Text, _>(m.organizer.as_str())
    .bind::<Nullable<Text>, _>(new.request_id)
    .load(conn)
    .await?;
    match existing.into_iter().next() {
        Some(row) => Ok((row.decode(key)?, false)),
        None => Err(StoreError::Corrupt(
            "a meeting request id conflicted but was not found".into(),
        )),
    }
}

/// One of the organiser's meetings.
pub async fn get_meeting(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    user: &UserId,
    id: MeetingId,
) -> Result<Meeting, StoreError> {
    let rows: Vec<MeetingRow> = sql_query(format!("SELECT {COLUMNS} FROM meetings WHERE user_id = $1 AND id = $2"))
        .bind::<Text, _>(user.as_str())
        .bind::<SqlUuid, _>(id.0)
        .load(conn)
        .await?;
    match rows.into_iter().next() {
        Some(row) => row.decode(key),
        None => Err(StoreError::NotFound {
            what: "meeting",
            id: id.to_string(),
        }),
    }
}

/// Stores a changed meeting (texts, times, zone, invitees, status) if it is
/// still at `meeting.version` and not cancelled ([`StoreError::Changed`]
/// otherwise, nothing written): the version is raised and, when it has a
/// calendar, its delivery becomes pending (due at `now`) with the attempts
/// reset, in the same statement, so the change and its outbox entry commit
/// together.
pub async fn save_meeting(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    m: &Meeting,
    now: DateTime<Utc>,
) -> Result<Meeting, StoreError> {
    let sealed = seal(key, m);
    let invitees: Vec<&str> = m.invitees.iter().map(UserId::as_str).collect();
    let rows: Vec<MeetingRow> = sql_query(format!(
        "UPDATE meetings SET title_enc = $3, description_enc = $4, location_enc = $5, attendee_emails_enc = $6, \
           start_at = $7, end_at = $8, time_zone = $9, invitees = $10, status = $11, version = version + 1, \
           delivery_state = CASE WHEN calendar_id IS NULL THEN delivery_state ELSE 'pending' END, \
           attempts = CASE WHEN calendar_id IS NULL THEN attempts ELSE 0 END, \
           last_error = CASE WHEN calendar_id IS NULL THEN last_error END, \
           next_attempt_at = CASE WHEN calendar_id IS NULL THEN next_attempt_at ELSE $12 END, \
           updated_at = $12 \
         WHERE user_id = $1 AND id = $2 AND version = $13 AND status = 'scheduled' RETURNING {COLUMNS}"
    ))
    .bind::<Text, _>(m.organizer.as_str())
    .bind::<SqlUuid, _>(m.id.0)
    .bind::<Bytea, _>(&sealed.title)
    .bind::<Nullable<Bytea>, _>(&sealed.description)
    .bind::<Nullable<Bytea>, _>(&sealed.location)
    .bind::<Nullable<Bytea>, _>(&sealed.emails)
    .bind::<Timestamptz, _>(m.start)
    .bind::<Timestamptz, _>(m.end)
    .bind::<Text, _>(&m.time_zone)
    .bind::<Array<Text>, _>(&invitees)
    .bind::<Text, _>(m.status.as_str())
    .bind::<Timestamptz, _>(now)
    .bind::<Integer, _>(m.version)
    .load(conn)
    .await?;
    match rows.into_iter().next() {
        Some(row) => row.decode(key),
        None => {
            get_meeting(conn, key, &m.organizer, m.id).await?;
            Err(StoreError::Changed {
                what: "meeting",
                id: m.id.to_string(),
            })
        }
    }
}

/// The organiser's scheduled meetings overlapping `range`, ordered by
/// (start, id), after `after`, at most `limit`.
pub async fn list_meetings(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    user: &UserId,
    range: TimeRange,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Meeting>, StoreError> {
    let (after_start, after_id) = match after {
        Some((start, id)) => (Some(start), Some(id)),
        None => (None, None),
    };
    let rows: Vec<MeetingRow> = sql_query(format!(
        "SELECT {COLUMNS} FROM meetings \
         WHERE user_id = $1 AND status = 'scheduled' AND start_at < $3 AND end_at > $2 \
           AND ($4::timestamptz IS NULL OR (start_at, id) > ($4, $5)) \
         ORDER BY start_at, id LIMIT $6"
    ))
    .bind::<Text, _>(user.as_str())
    .bind::<Timestamptz, _>(range.start())
    .bind::<Timestamptz, _>(range.end())
    .bind::<Nullable<Timestamptz>, _>(after_start)
    .bind::<Nullable<SqlUuid>, _>(after_id)
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .load(conn)
    .await?;
    rows.into_iter().map(|row| row.decode(key)).collect()
}

/// Every meeting `user` organised (cancelled ones too), ordered by id,
/// after `after`, at most `limit`: for the GDPR export.
pub async fn export_meetings(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    user: &UserId,
    after: Option<MeetingId>,
    limit: i64,
) -> Result<Vec<Meeting>, StoreError> {
    let rows: Vec<MeetingRow> = sql_query(format!(
        "SELECT {COLUMNS} FROM meetings WHERE user_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
    ))
    .bind::<Text, _>(user.as_str())
    .bind::<Nullable<SqlUuid>, _>(after.map(|m| m.0))
    .bind::<diesel::sql_types::BigInt, _>(limit.max(1))
    .load(conn)
    .await?;
    rows.into_iter().map(|row| row.decode(key)).collect()
}

/// A delivery leased by a dispatcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedDelivery {
    /// The organiser.
    pub user_id: UserId,
    /// The meeting.
    pub id: MeetingId,
    /// The dispatcher holding it.
    pub owner: String,
    /// Until when.
    pub expires_at: DateTime<Utc>,
    /// The version being delivered.
    pub version: i32,
    /// Whether a create was ever sent for it (this attempt included, when it
    /// is a create): a cancel must then look for the event even without its id.
    pub create_attempted: bool,
    /// This attempt's number for the version (1 = first).
    pub attempt: i32,
}

#[derive(QueryableByName)]
struct LeaseRow {
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    lease_expires_at: DateTime<Utc>,
    #[diesel(sql_type = Integer)]
    version: i32,
    #[diesel(sql_type = Bool)]
    create_attempted: bool,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

/// Leases up to `limit` due pending deliveries for `owner` until `now + lease_for`,
/// counting the attempt (and marking a create as attempted before it is sent).
pub async fn lease_due(
    conn: &mut AsyncPgConnection,
    owner: &str,
    now: DateTime<Utc>,
    lease_for: Duration,
    limit: i64,
) -> Result<Vec<LeasedDelivery>, StoreError> {
    let expires = now + lease_for;
    let rows: Vec<LeaseRow> = sql_query(
        "UPDATE meetings m SET lease_owner = $1, lease_expires_at = $3, attempts = m.attempts + 1, \
           create_attempted = m.create_attempted OR (m.external_id IS NULL AND m.status = 'scheduled') \
         FROM (SELECT user_id, id FROM meetings \
               WHERE delivery_state = 'pending' AND next_attempt_at <= $2 \
                 AND (lease_expires_at IS NULL OR lease_expires_at <= $2) \
               ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) due \
         WHERE m.user_id = due.user_id AND m.id = due.id \
         RETURNING m.user_id, m.id, m.lease_expires_at, m.version, m.create_attempted, m.attempts",
    )
    .bind::<Text, _>(owner)
    .bind::<Timestamptz, _>(now)
    .bind::<Timestamptz, _>(expires)
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .load(conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(LeasedDelivery {
                user_id: UserId::new(row.user_id)
                    .map_err(|_| StoreError::Corrupt("a stored user id is not valid".into()))?,
                id: MeetingId(row.id),
                owner: owner.to_owned(),
                expires_at: row.lease_expires_at,
                version: row.version,
                create_attempted: row.create_attempted,
                attempt: row.attempts,
            })
        })
        .collect()
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The provider has the leased version (for a cancel: the event is gone).
    Delivered {
        /// The provider's id of the event.
        external_id: Option<String>,
        /// Its ETag, when given.
        etag: Option<String>,
    },
    /// Failed for now: try again at `at`.
    Retry {
        /// Why (for the user; never event text).
        error: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Failed for good.
    Failed {
        /// Why.
        error: String,
    },
}

/// Records how the leased delivery went, fenced by the lease: a dispatcher
/// whose lease ran out changes nothing (and gets `false`). When the meeting
/// changed during the attempt, the row stays pending (due at `now`) for its
/// new version.
pub async fn finish_delivery(
    conn: &mut AsyncPgConnection,
    lease: &LeasedDelivery,
    outcome: &DeliveryOutcome,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let truncate = |text: &str| text.chars().take(MAX_ERROR_CHARS).collect::<String>();
    let (state, external_id, etag, error, next_at) = match outcome {
        DeliveryOutcome::Delivered { external_id, etag } => {
            (DeliveryState::Delivered, external_id.clone(), etag.clone(), None, None)
        }
        DeliveryOutcome::Retry { error, at } => (DeliveryState::Pending, None, None, Some(truncate(error)), Some(*at)),
        DeliveryOutcome::Failed { error } => (DeliveryState::Failed, None, None, Some(truncate(error)), None),
    };
    let delivered = state == DeliveryState::Delivered;
    let changed = sql_query(
        "UPDATE meetings SET \
           delivery_state = CASE WHEN version = $5 THEN $6 ELSE 'pending' END, \
           next_attempt_at = CASE WHEN version = $5 THEN $10 ELSE $11 END, \
           attempts = CASE WHEN version = $5 THEN attempts ELSE 0 END, \
           external_id = CASE WHEN $7 THEN coalesce($8, external_id) ELSE external_id END, \
           external_etag = CASE WHEN $7 THEN $9 ELSE external_etag END, \
           delivered_version = CASE WHEN $7 THEN $5 ELSE delivered_version END, \
           delivered_at = CASE WHEN $7 THEN $11 ELSE delivered_at END, \
           last_error = $12, lease_owner = NULL, lease_expires_at = NULL \
         WHERE user_id = $1 AND id = $2 AND lease_owner = $3 AND lease_expires_at = $4",
    )
    .bind::<Text, _>(lease.user_id.as_str())
    .bind::<SqlUuid, _>(lease.id.0)
    .bind::<Text, _>(&lease.owner)
    .bind::<Timestamptz, _>(lease.expires_at)
    .bind::<Integer, _>(lease.version)
    .bind::<Text, _>(state.as_str())
    .bind::<Bool, _>(delivered)
    .bind::<Nullable<Text>, _>(external_id)
    .bind::<Nullable<Text>, _>(etag)
    .bind::<Nullable<Timestamptz>, _>(next_at)
    .bind::<Timestamptz, _>(now)
    .bind::<Nullable<Text>, _>(error)
    .execute(conn)
    .await?;
    Ok(changed == 1)
}

/// Where a meeting's calendar lives, for the dispatcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryTarget {
    /// The calendar.
    pub calendar_id: CalendarId,
    /// Its account.
    pub account_id: juy_domain::AccountId,
    /// Its account's state.
    pub account_status: juy_domain::AccountStatus,
    /// Its provider.
    pub provider: juy_domain::Provider,
    /// The provider's id of the calendar.
    pub provider_calendar_id: String,
    /// The account's CalDAV server.
    pub server_url: Option<String>,
    /// The account's id at the provider.
    pub account_external_id: String,
    /// Whether Juy may write to it.
    pub mode: juy_domain::CalendarMode,
    /// The calendar's IANA zone, when known.
    pub time_zone: Option<String>,
}

#[derive(QueryableByName)]
struct TargetRow {
    #[diesel(sql_type = SqlUuid)]
    account_id: Uuid,
    #[diesel(sql_type = Text)]
    account_status: String,
    #[diesel(sql_type = Text)]
    provider: String,
    #[diesel(sql_type = Text)]
    provider_calendar_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    server_url: Option<String>,
    #[diesel(sql_type = Text)]
    external_account_id: String,
    #[diesel(sql_type = Text)]
    mode: String,
    #[diesel(sql_type = Nullable<Text>)]
    time_zone: Option<String>,
}

/// The calendar a meeting is written to, with its account; `None` when it is gone.
pub async fn delivery_target(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    calendar: CalendarId,
) -> Result<Option<DeliveryTarget>, StoreError> {
    let rows: Vec<TargetRow> = sql_query(
        "SELECT c.account_id, a.status AS account_status, c.provider, c.provider_calendar_id, a.server_url, \
                a.external_account_id, c.mode, c.time_zone \
         FROM calendars c JOIN connected_accounts a ON a.user_id = c.user_id AND a.id = c.account_id \
         WHERE c.user_id = $1 AND c.id = $2",
    )
    .bind::<Text, _>(user.as_str())
    .bind::<SqlUuid, _>(calendar.0)
    .load(conn)
    .await?;
    let Some(row) = rows.into_iter().next() else {
        return Ok(None);
    };
    let corrupt = |what: &str| StoreError::Corrupt(format!("calendar {calendar}: {what}"));
    Ok(Some(DeliveryTarget {
        calendar_id: calendar,
        account_id: juy_domain::AccountId(row.account_id),
        account_status: row
            .account_status
            .parse()
            .map_err(|_| corrupt("unknown account status"))?,
        provider: row.provider.parse().map_err(|_| corrupt("unknown provider"))?,
        provider_calendar_id: row.provider_calendar_id,
        server_url: row.server_url,
        account_external_id: row.external_account_id,
        mode: row.mode.parse().map_err(|_| corrupt("unknown mode"))?,
        time_zone: row.time_zone,
    }))
}

/// The organiser's meeting created by the request `request_id`, if any.
pub async fn find_by_request(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    user: &UserId,
    request_id: &str,
) -> Result<Option<Meeting>, StoreError> {
    let rows: Vec<MeetingRow> = sql_query(format!(
        "SELECT {COLUMNS} FROM meetings WHERE user_id = $1 AND request_id = $2"
    ))
    .bind::<Text, _>(user.as_str())
    .bind::<Text, _>(request_id)
    .load(conn)
    .await?;
    rows.into_iter().next().map(|row| row.decode(key)).transpose()
}

/// Runs `section` in one transaction after taking a transaction-scoped
/// advisory lock for each of `people` (in a fixed order, so two sections
/// never deadlock). Meeting creations and moves involving a same person
/// thereby run one after the other: the conflict check a section makes and
/// the write it then allows cannot interleave with another's. The
/// transaction commits when `section` succeeds and rolls back when it fails;
/// a section dropped half-way leaves the connection in a transaction, which
/// the pool discards rather than reuses.
pub async fn with_people_locked<T, E, F>(conn: &mut AsyncPgConnection, people: &[UserId], section: F) -> Result<T, E>
where
    E: From<StoreError>,
    F: AsyncFnOnce(&mut AsyncPgConnection) -> Result<T, E>,
{
    use diesel_async::{AnsiTransactionManager, TransactionManager as _};

    let mut keys: Vec<&str> = people.iter().map(UserId::as_str).collect();
    keys.sort_unstable();
    keys.dedup();
    AnsiTransactionManager::begin_transaction(conn)
        .await
        .map_err(StoreError::from)?;
    let locked = sql_query(
        "SELECT count(pg_advisory_xact_lock(hashtextextended('juy.meetings.' || person, 0))) AS locked \
         FROM unnest($1::text[]) AS person",
    )
    .bind::<Array<Text>, _>(&keys)
    .execute(conn)
    .await;
    let result = match locked {
        Ok(_) => section(conn).await,
        Err(error) => Err(StoreError::from(error).into()),
    };
    match &result {
        Ok(_) => AnsiTransactionManager::commit_transaction(conn)
            .await
            .map_err(StoreError::from)?,
        Err(_) => {
            // The section's error is what the caller needs; a failed rollback
            // leaves the connection broken, and the pool drops it.
            let _ = AnsiTransactionManager::rollback_transaction(conn).await;
        }
    }
    result
}
