//! Reminders to the notification service: the transactional outbox
//! `reminder_deliveries`, its planner and its dispatchers' leases.
//!
//! One row per (event instance, reminder time, channel), keyed by
//! [`idempotency_key`]: the same reminder of an unmoved event keeps its key
//! forever, a moved event's reminder gets a new one. [`plan`] reconciles the
//! rows falling due in a window with the synced events and the user's
//! channel switches in one statement (insert what is missing, withdraw
//! pending rows no longer wanted); [`lease_due`] hands due rows to a
//! dispatcher (`FOR UPDATE SKIP LOCKED`), and [`finish_delivery`] records
//! the outcome fenced by the lease. Rows hold no event text:
//! [`delivery_event`] opens the title and location at send time.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use diesel::sql_types::{BigInt, Bool, Bytea, Date, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{QueryableByName, sql_query};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use juy_crypto::{Aad, DataKey};
use juy_domain::{
    AllDayDates, CalendarId, EventId, EventStatus, NotificationChannels, Provider, Reminder, ReminderMethod,
    ResponseStatus, UserId,
};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::StoreError;
use crate::sync_state::MAX_ERROR_CHARS;

/// A channel of the notification service, switched per provider in the user's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// A push notification.
    Push,
    /// An email.
    Email,
    /// A text message.
    Sms,
}

impl Channel {
    /// Every channel.
    pub const ALL: [Channel; 3] = [Channel::Push, Channel::Email, Channel::Sms];

    /// The stable name (`push`, `email`, `sms`), as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Email => "email",
            Self::Sms => "sms",
        }
    }

    /// Whether `channels` has this channel switched on.
    pub fn enabled_in(self, channels: &NotificationChannels) -> bool {
        match self {
            Self::Push => channels.push,
            Self::Email => channels.email,
            Self::Sms => channels.sms,
        }
    }
}

impl std::str::FromStr for Channel {
    type Err = StoreError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|channel| channel.as_str() == text)
            .ok_or_else(|| StoreError::Corrupt("a reminder delivery has an unknown channel".into()))
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeliveryState {
    /// Waiting for its due time (or its next attempt).
    Pending,
    /// A dispatcher holds it.
    Leased,
    /// The notification service accepted it.
    Delivered,
    /// Given up (refused, or too many attempts).
    Failed,
    /// No longer wanted: the event moved, was cancelled, declined or deleted, or the channel was switched off.
    Withdrawn,
}

impl DeliveryState {
    /// The stable name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Leased => "leased",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Withdrawn => "withdrawn",
        }
    }
}

impl std::str::FromStr for DeliveryState {
    type Err = StoreError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [
            Self::Pending,
            Self::Leased,
            Self::Delivered,
            Self::Failed,
            Self::Withdrawn,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
        .ok_or_else(|| StoreError::Corrupt("a reminder delivery has an unknown state".into()))
    }
}

/// The idempotency key of one reminder of one event instance on one channel:
/// the hex SHA-256 of `juy-reminder-v1|{event row id}|{start in µs since the
/// epoch}|{minutes before}|{channel}|{user id}` (the user id last, so no
/// separator inside it can make two inputs alike). [`plan`] computes the
/// same in SQL.
pub fn idempotency_key(
    user: &UserId,
    event: EventId,
    event_start: DateTime<Utc>,
    minutes_before: i32,
    channel: Channel,
) -> String {
    let text = format!(
        "juy-reminder-v1|{}|{}|{}|{}|{}",
        event.0,
        event_start.timestamp_micros(),
        minutes_before,
        channel.as_str(),
        user.as_str()
    );
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The reason stored on rows the planner withdraws (it cannot tell which change made them unwanted).
pub const WITHDRAWN_BY_PLANNER: &str = "no longer wanted: the event moved, was cancelled, declined or deleted, the reminder was removed, \
     or the channel was switched off";

/// What one planning pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PlanReport {
    /// Whether this pass held the planner lock (another replica's planner was running otherwise, and nothing was done).
    pub ran: bool,
    /// Rows inserted (or revived after a withdrawal).
    pub planned: u64,
    /// Pending rows withdrawn.
    pub withdrawn: u64,
}

#[derive(QueryableByName)]
struct PlanRow {
    #[diesel(sql_type = BigInt)]
    planned: i64,
    #[diesel(sql_type = BigInt)]
    withdrawn: i64,
}

/// Reconciles the reminders due in `[from, to]` with the synced events and
/// the users' channel switches, in one transaction under a cluster-wide
/// advisory lock (so one replica's planner runs at a time; another's pass
/// returns at once with `ran: false`):
///
/// - for every event with a reminder due in the window — not cancelled, not
///   declined by the user — and every channel switched on for its provider
///   (never configured: push only, as `NotificationChannels::default_for`),
///   a pending row due at its due time, unless its key is already there
///   (a withdrawn one becomes pending again);
/// - every pending row due in the window whose key is not wanted any more
///   (the event moved, was cancelled, declined or deleted, its reminder
///   was removed, the channel switched off) is withdrawn.
///
/// Several reminders at the same minute with different methods make one
/// row (`popup` if any is a popup). The events are found through indexes
/// over their first and last reminder due times, never by scanning every
/// event.
pub async fn plan(
    conn: &mut AsyncPgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<PlanReport, StoreError> {
    conn.transaction(async |conn| {
        #[derive(QueryableByName)]
        struct Locked {
            #[diesel(sql_type = Bool)]
            locked: bool,
        }
        let locked: Vec<Locked> =
            sql_query("SELECT pg_try_advisory_xact_lock(hashtextextended('juy.reminders.planner', 0)) AS locked")
                .load(conn)
                .await?;
        if !locked.iter().any(|row| row.locked) {
            return Ok(PlanReport::default());
        }
        let rows: Vec<PlanRow> = sql_query(PLAN_SQL)
            .bind::<Timestamptz, _>(from)
            .bind::<Timestamptz, _>(to)
            .bind::<Timestamptz, _>(now)
            .bind::<Text, _>(WITHDRAWN_BY_PLANNER)
            .load(conn)
            .await?;
        let row = rows.into_iter().next().unwrap_or(PlanRow {
            planned: 0,
            withdrawn: 0,
        });
        Ok(PlanReport {
            ran: true,
            planned: u64::try_from(row.planned).unwrap_or(0),
            withdrawn: u64::try_from(row.withdrawn).unwrap_or(0),
        })
    })
    .await
}

/// The planner's statement. `$1`/`$2`: the window of due times, `$3`: now,
/// `$4`: the withdrawal reason. The candidates are found through the
/// partial indexes of migration 000010, whose predicates each branch
/// repeats: events whose first or last reminder is due in the window
/// (btree; the last only where it differs from the first, so an event with
/// one reminder pays for one index), and events with three or more reminders whose span of due times
/// overlaps it (GiST). The channel defaults mirror
/// `NotificationChannels::default_for`. Public so tests can `EXPLAIN` it.
pub const PLAN_SQL: &str = "\
WITH candidates AS (
    SELECT user_id, id FROM user_calendar_events
    WHERE reminder_first_due BETWEEN $1 AND $2 AND status <> 'cancelled'
    UNION
    SELECT user_id, id FROM user_calendar_events
    WHERE reminder_last_due BETWEEN $1 AND $2 AND reminder_last_due <> reminder_first_due AND status <> 'cancelled'
    UNION
    SELECT user_id, id FROM user_calendar_events
    WHERE tstzrange(reminder_first_due, reminder_last_due, '[]') && tstzrange($1, $2, '[]')
      AND (reminders -> 2) IS NOT NULL AND reminder_first_due IS NOT NULL AND status <> 'cancelled'
),
wanted AS (
    SELECT e.user_id, e.calendar_id, e.id AS event_id, e.provider, e.start_at AS event_start,
           r.minutes_before, r.method, ch.channel,
           e.start_at - make_interval(mins => r.minutes_before) AS due_at
    FROM candidates c
    JOIN user_calendar_events e ON e.user_id = c.user_id AND e.id = c.id
    CROSS JOIN LATERAL (
        SELECT (x ->> 'minutes_before')::numeric::integer AS minutes_before,
               CASE WHEN bool_or(x ->> 'method' = 'popup') THEN 'popup' ELSE 'email' END AS method
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(e.reminders) = 'array' THEN e.reminders ELSE '[]' END) AS x
        WHERE jsonb_typeof(x -> 'minutes_before') = 'number'
          AND (x ->> 'minutes_before')::numeric BETWEEN -5256000 AND 5256000
        GROUP BY 1
    ) AS r
    LEFT JOIN notification_settings n ON n.user_id = e.user_id AND n.provider = e.provider
    CROSS JOIN LATERAL (VALUES ('push', coalesce(n.push, true)), ('email', coalesce(n.email, false)),
                               ('sms', coalesce(n.sms, false))) AS ch (channel, enabled)
    WHERE e.self_response <> 'declined' AND ch.enabled
),
keyed AS (
    SELECT w.*, encode(sha256(convert_to(concat_ws('|', 'juy-reminder-v1', w.event_id::text,
               (extract(epoch FROM w.event_start) * 1000000)::bigint::text, w.minutes_before::text, w.channel,
               w.user_id), 'UTF8')), 'hex') AS idempotency_key
    FROM wanted w
    WHERE w.due_at >= $1 AND w.due_at <= $2
),
planned AS (
    INSERT INTO reminder_deliveries (user_id, idempotency_key, calendar_id, event_id, provider, event_start,
        minutes_before, method, channel, due_at, state, next_attempt_at, created_at, updated_at)
    SELECT user_id, idempotency_key, calendar_id, event_id, provider, event_start, minutes_before, method,
           channel, due_at, 'pending', due_at, $3, $3
    FROM keyed
    ON CONFLICT (user_id, idempotency_key) DO UPDATE SET state = 'pending', attempts = 0,
        next_attempt_at = excluded.next_attempt_at, last_error = NULL, updated_at = excluded.updated_at
        WHERE reminder_deliveries.state = 'withdrawn'
    RETURNING 1
),
withdrawn AS (
    UPDATE reminder_deliveries d SET state = 'withdrawn', next_attempt_at = NULL, updated_at = $3, last_error = $4
    WHERE d.state = 'pending' AND d.due_at >= $1 AND d.due_at <= $2
      AND NOT EXISTS (SELECT 1 FROM keyed k WHERE k.user_id = d.user_id AND k.idempotency_key = d.idempotency_key)
    RETURNING 1
)
SELECT (SELECT count(*) FROM planned) AS planned, (SELECT count(*) FROM withdrawn) AS withdrawn";

/// Deletes at most `batch` rows due before `before` (any state but leased);
/// returns how many. Rows locked by another cleaner are skipped.
pub async fn delete_due_before(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
    batch: i64,
) -> Result<u64, StoreError> {
    let deleted = sql_query(
        "DELETE FROM reminder_deliveries WHERE (user_id, idempotency_key) IN ( \
             SELECT user_id, idempotency_key FROM reminder_deliveries \
             WHERE due_at < $1 AND state <> 'leased' LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind::<Timestamptz, _>(before)
    .bind::<BigInt, _>(batch)
    .execute(conn)
    .await?;
    Ok(deleted as u64)
}

/// A delivery leased by a dispatcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedDelivery {
    /// The user to remind.
    pub user_id: UserId,
    /// The delivery's idempotency key.
    pub idempotency_key: String,
    /// The event's calendar.
    pub calendar_id: CalendarId,
    /// The event row.
    pub event_id: EventId,
    /// The event's provider.
    pub provider: Provider,
    /// The instance's start the reminder was planned for.
    pub event_start: DateTime<Utc>,
    /// The reminder.
    pub reminder: Reminder,
    /// The channel.
    pub channel: Channel,
    /// When it fell due.
    pub due_at: DateTime<Utc>,
    /// This attempt's number (1 = first; a dispatcher that died counts too).
    pub attempt: i32,
    /// The dispatcher holding it.
    pub owner: String,
    /// Until when.
    pub expires_at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct LeaseRow {
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = Text)]
    idempotency_key: String,
    #[diesel(sql_type = SqlUuid)]
    calendar_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    event_id: Uuid,
    #[diesel(sql_type = Text)]
    provider: String,
    #[diesel(sql_type = Timestamptz)]
    event_start: DateTime<Utc>,
    #[diesel(sql_type = Integer)]
    minutes_before: i32,
    #[diesel(sql_type = Text)]
    method: String,
    #[diesel(sql_type = Text)]
    channel: String,
    #[diesel(sql_type = Timestamptz)]
    due_at: DateTime<Utc>,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Timestamptz)]
    lease_expires_at: DateTime<Utc>,
}

/// Leases up to `limit` due deliveries (pending ones whose next attempt has
/// come, and leased ones whose dispatcher's lease ran out) for `owner` until
/// `now + lease_for`, counting the attempt. While leased a row falls due
/// again when its lease runs out.
pub async fn lease_due(
    conn: &mut AsyncPgConnection,
    owner: &str,
    now: DateTime<Utc>,
    lease_for: Duration,
    limit: i64,
) -> Result<Vec<LeasedDelivery>, StoreError> {
    let expires = now + lease_for;
    let rows: Vec<LeaseRow> = sql_query(
        "UPDATE reminder_deliveries d SET state = 'leased', lease_owner = $1, lease_expires_at = $3, \
           next_attempt_at = $3, attempts = d.attempts + 1, updated_at = $2 \
         FROM (SELECT user_id, idempotency_key FROM reminder_deliveries \
               WHERE state IN ('pending', 'leased') AND next_attempt_at <= $2 \
               ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) due \
         WHERE d.user_id = due.user_id AND d.idempotency_key = due.idempotency_key \
         RETURNING d.user_id, d.idempotency_key, d.calendar_id, d.event_id, d.provider, d.event_start, \
           d.minutes_before, d.method, d.channel, d.due_at, d.attempts, d.lease_expires_at",
    )
    .bind::<Text, _>(owner)
    .bind::<Timestamptz, _>(now)
    .bind::<Timestamptz, _>(expires)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            let corrupt = |what: &str| StoreError::Corrupt(format!("reminder delivery: {what}"));
            Ok(LeasedDelivery {
                user_id: UserId::new(row.user_id).map_err(|_| corrupt("bad user id"))?,
                idempotency_key: row.idempotency_key,
                calendar_id: CalendarId(row.calendar_id),
                event_id: EventId(row.event_id),
                provider: row.provider.parse().map_err(|_| corrupt("unknown provider"))?,
                event_start: row.event_start,
                reminder: Reminder {
                    minutes_before: row.minutes_before,
                    method: row.method.parse().map_err(|_| corrupt("unknown method"))?,
                },
                channel: row.channel.parse()?,
                due_at: row.due_at,
                attempt: row.attempts,
                owner: owner.to_owned(),
                expires_at: row.lease_expires_at,
            })
        })
        .collect()
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The notification service accepted it.
    Delivered,
    /// Failed for now: try again at `at`.
    Retry {
        /// Why (an HTTP status or a transport failure; never a response body or event text).
        error: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Failed for good.
    Failed {
        /// Why.
        error: String,
    },
    /// Not sent, and never will be: the event changed since it was planned.
    Withdrawn {
        /// Why.
        reason: String,
    },
}

/// Records how the leased delivery went, fenced by the lease: a dispatcher
/// whose lease ran out (and was perhaps taken over) changes nothing and gets
/// `false`.
pub async fn finish_delivery(
    conn: &mut AsyncPgConnection,
    lease: &LeasedDelivery,
    outcome: &DeliveryOutcome,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let truncate = |text: &str| text.chars().take(MAX_ERROR_CHARS).collect::<String>();
    let (state, next_at, error) = match outcome {
        DeliveryOutcome::Delivered => (DeliveryState::Delivered, None, None),
        DeliveryOutcome::Retry { error, at } => (DeliveryState::Pending, Some(*at), Some(truncate(error))),
        DeliveryOutcome::Failed { error } => (DeliveryState::Failed, None, Some(truncate(error))),
        DeliveryOutcome::Withdrawn { reason } => (DeliveryState::Withdrawn, None, Some(truncate(reason))),
    };
    let changed = sql_query(
        "UPDATE reminder_deliveries SET state = $5, next_attempt_at = $6, last_error = $7, \
           delivered_at = CASE WHEN $5 = 'delivered' THEN $8 ELSE delivered_at END, \
           lease_owner = NULL, lease_expires_at = NULL, updated_at = $8 \
         WHERE user_id = $1 AND idempotency_key = $2 AND state = 'leased' \
           AND lease_owner = $3 AND lease_expires_at = $4",
    )
    .bind::<Text, _>(lease.user_id.as_str())
    .bind::<Text, _>(&lease.idempotency_key)
    .bind::<Text, _>(&lease.owner)
    .bind::<Timestamptz, _>(lease.expires_at)
    .bind::<Text, _>(state.as_str())
    .bind::<Nullable<Timestamptz>, _>(next_at)
    .bind::<Nullable<Text>, _>(error)
    .bind::<Timestamptz, _>(now)
    .execute(conn)
    .await?;
    Ok(changed == 1)
}

/// The event of a delivery as it is now, texts opened, with the user's
/// channels for its provider: what the dispatcher checks and sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryEvent {
    /// The event row.
    pub id: EventId,
    /// Its calendar.
    pub calendar_id: CalendarId,
    /// Its provider.
    pub provider: Provider,
    /// Title (plaintext: for the notification service only, never logged).
    pub title: Option<String>,
    /// Location (plaintext: for the notification service only, never logged).
    pub location: Option<String>,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// The dates of an all-day event.
    pub all_day: Option<AllDayDates>,
    /// Its IANA zone, when known.
    pub time_zone: Option<String>,
    /// Confirmed, tentative or cancelled.
    pub status: EventStatus,
    /// The user's answer.
    pub self_response: ResponseStatus,
    /// Its reminders now.
    pub reminders: Vec<Reminder>,
    /// The user's channels for its provider now (defaults when never set).
    pub channels: NotificationChannels,
}

#[derive(QueryableByName)]
struct DeliveryEventRow {
    #[diesel(sql_type = SqlUuid)]
    calendar_id: Uuid,
    #[diesel(sql_type = Text)]
    provider: String,
    #[diesel(sql_type = Nullable<Bytea>)]
    title_enc: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Bytea>)]
    location_enc: Option<Vec<u8>>,
    #[diesel(sql_type = Timestamptz)]
    start_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    end_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Date>)]
    all_day_start: Option<NaiveDate>,
    #[diesel(sql_type = Nullable<Date>)]
    all_day_end: Option<NaiveDate>,
    #[diesel(sql_type = Nullable<Text>)]
    time_zone: Option<String>,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Text)]
    self_response: String,
    #[diesel(sql_type = Jsonb)]
    reminders: serde_json::Value,
    #[diesel(sql_type = Nullable<Bool>)]
    push: Option<bool>,
    #[diesel(sql_type = Nullable<Bool>)]
    email: Option<bool>,
    #[diesel(sql_type = Nullable<Bool>)]
    sms: Option<bool>,
}

/// The user's event `id` with its title and location opened, and the
/// user's channels for its provider; `None` when the event is gone.
pub async fn delivery_event(
    conn: &mut AsyncPgConnection,
    key: &DataKey,
    user: &UserId,
    id: EventId,
) -> Result<Option<DeliveryEvent>, StoreError> {
    let rows: Vec<DeliveryEventRow> = sql_query(
        "SELECT e.calendar_id, e.provider, e.title_enc, e.location_enc, e.start_at, e.end_at, e.all_day_start, \
                e.all_day_end, e.time_zone, e.status, e.self_response, e.reminders, n.push, n.email, n.sms \
         FROM user_calendar_events e \
         LEFT JOIN notification_settings n ON n.user_id = e.user_id AND n.provider = e.provider \
         WHERE e.user_id = $1 AND e.id = $2",
    )
    .bind::<Text, _>(user.as_str())
    .bind::<SqlUuid, _>(id.0)
    .load(conn)
    .await?;
    let Some(row) = rows.into_iter().next() else {
        return Ok(None);
    };
    let corrupt = |what: &str| StoreError::Corrupt(format!("event {id}: {what}"));
    let open = |column: &str, sealed: &Option<Vec<u8>>| -> Result<Option<String>, StoreError> {
        sealed
            .as_ref()
            .map(|sealed| {
                key.open_string(
                    sealed,
                    &Aad::new("user_calendar_events", column, &[user.as_str(), &id.0.to_string()]),
                )
            })
            .transpose()
            .map_err(|_| corrupt("could not be decrypted"))
    };
    let provider: Provider = row.provider.parse().map_err(|_| corrupt("unknown provider"))?;
    let defaults = NotificationChannels::default_for(provider);
    Ok(Some(DeliveryEvent {
        id,
        calendar_id: CalendarId(row.calendar_id),
        provider,
        title: open("title_enc", &row.title_enc)?,
        location: open("location_enc", &row.location_enc)?,
        start: row.start_at,
        end: row.end_at,
        all_day: match (row.all_day_start, row.all_day_end) {
            (Some(start), Some(end)) => Some(AllDayDates { start, end }),
            _ => None,
        },
        time_zone: row.time_zone,
        status: row.status.parse().map_err(|_| corrupt("unknown status"))?,
        self_response: row
            .self_response
            .parse()
            .map_err(|_| corrupt("unknown response status"))?,
        reminders: serde_json::from_value(row.reminders).map_err(|_| corrupt("reminders are not valid"))?,
        channels: NotificationChannels {
            provider,
            push: row.push.unwrap_or(defaults.push),
            email: row.email.unwrap_or(defaults.email),
            sms: row.sms.unwrap_or(defaults.sms),
        },
    }))
}

/// One reminder delivery as stored (no event text is ever stored): for a
/// user's data export and for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReminderDelivery {
    /// The user.
    pub user_id: UserId,
    /// The idempotency key sent with it.
    pub idempotency_key: String,
    /// The event's calendar.
    pub calendar_id: CalendarId,
    /// The event row.
    pub event_id: EventId,
    /// The event's provider.
    pub provider: Provider,
    /// The instance's start it was planned for.
    pub event_start: DateTime<Utc>,
    /// The reminder.
    pub reminder: Reminder,
    /// The channel.
    pub channel: Channel,
    /// When it falls (fell) due.
    pub due_at: DateTime<Utc>,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: i32,
    /// When the next attempt is due (pending or leased rows).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed, or why it was withdrawn.
    pub last_error: Option<String>,
    /// When the notification service accepted it.
    pub delivered_at: Option<DateTime<Utc>>,
    /// When it was planned.
    pub created_at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct DeliveryRow {
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = Text)]
    idempotency_key: String,
    #[diesel(sql_type = SqlUuid)]
    calendar_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    event_id: Uuid,
    #[diesel(sql_type = Text)]
    provider: String,
    #[diesel(sql_type = Timestamptz)]
    event_start: DateTime<Utc>,
    #[diesel(sql_type = Integer)]
    minutes_before: i32,
    #[diesel(sql_type = Text)]
    method: String,
    #[diesel(sql_type = Text)]
    channel: String,
    #[diesel(sql_type = Timestamptz)]
    due_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    next_attempt_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    delivered_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

impl DeliveryRow {
    fn decode(self) -> Result<ReminderDelivery, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("reminder delivery: {what}"));
        Ok(ReminderDelivery {
            user_id: UserId::new(self.user_id).map_err(|_| corrupt("bad user id"))?,
            idempotency_key: self.idempotency_key,
            calendar_id: CalendarId(self.calendar_id),
            event_id: EventId(self.event_id),
            provider: self.provider.parse().map_err(|_| corrupt("unknown provider"))?,
            event_start: self.event_start,
            reminder: Reminder {
                minutes_before: self.minutes_before,
                method: self
                    .method
                    .parse::<ReminderMethod>()
                    .map_err(|_| corrupt("unknown method"))?,
            },
            channel: self.channel.parse()?,
            due_at: self.due_at,
            state: self.state.parse()?,
            attempts: self.attempts,
            next_attempt_at: self.next_attempt_at,
            last_error: self.last_error,
            delivered_at: self.delivered_at,
            created_at: self.created_at,
        })
    }
}

/// Every reminder delivery of `user` (any state), ordered by due time then
/// key: for the user's data export (GDPR) and for tests.
pub async fn list_user_deliveries(
    conn: &mut AsyncPgConnection,
    user: &UserId,
) -> Result<Vec<ReminderDelivery>, StoreError> {
    let rows: Vec<DeliveryRow> = sql_query(
        "SELECT user_id, idempotency_key, calendar_id, event_id, provider, event_start, minutes_before, method, \
                channel, due_at, state, attempts, next_attempt_at, last_error, delivered_at, created_at \
         FROM reminder_deliveries WHERE user_id = $1 ORDER BY due_at, idempotency_key",
    )
    .bind::<Text, _>(user.as_str())
    .load(conn)
    .await?;
    rows.into_iter().map(DeliveryRow::decode).collect()
}
