//! The reminder outbox: planning (keys, channels, the window, withdrawals),
//! leases fenced and taken over, and erasure.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use diesel_async::RunQueryDsl as _;
use juy_domain::{
    Calendar, CalendarEvent, EventStatus, NotificationChannels, Provider, Reminder, ReminderMethod, ResponseStatus,
};
use juy_store::AsyncPgConnection;
use juy_store::events::{delete_events_by_external_id, upsert_events};
use juy_store::reminders::{
    self, Channel, DeliveryOutcome, DeliveryState, ReminderDelivery, WITHDRAWN_BY_PLANNER, idempotency_key,
};
use juy_store::settings::{AvailabilityPatch, update_settings};

use crate::support::{Fixture, at, calendar, event, exec, fixture, texts};

fn popup(minutes_before: i32) -> Reminder {
    Reminder {
        minutes_before,
        method: ReminderMethod::Popup,
    }
}

fn email(minutes_before: i32) -> Reminder {
    Reminder {
        minutes_before,
        method: ReminderMethod::Email,
    }
}

/// 10:00 on 2 March 2026, the start of the events below.
fn start() -> DateTime<Utc> {
    at(2, 10, 0)
}

fn with_reminders(calendar: &Calendar, id: &str, start: DateTime<Utc>, reminders: Vec<Reminder>) -> CalendarEvent {
    CalendarEvent {
        reminders,
        ..event(calendar, id, start, start + Duration::hours(1))
    }
}

async fn store(f: &mut Fixture, events: &[CalendarEvent]) {
    upsert_events(&mut f.conn, &f.key, events, at(1, 0, 0), Duration::days(30))
        .await
        .unwrap();
}

/// Plans the window `[now - 10 min, now + 15 min]` at `now`.
async fn plan_at(conn: &mut AsyncPgConnection, now: DateTime<Utc>) -> reminders::PlanReport {
    let report = reminders::plan(conn, now - Duration::minutes(10), now + Duration::minutes(15), now)
        .await
        .unwrap();
    assert!(report.ran);
    report
}

async fn rows(f: &mut Fixture) -> Vec<ReminderDelivery> {
    reminders::list_user_deliveries(&mut f.conn, &f.user).await.unwrap()
}

fn summary(rows: &[ReminderDelivery]) -> BTreeSet<(DateTime<Utc>, Channel, DeliveryState)> {
    rows.iter().map(|row| (row.due_at, row.channel, row.state)).collect()
}

async fn set_channels(f: &mut Fixture, push: bool, email: bool, sms: bool) {
    let channels = NotificationChannels {
        provider: Provider::Google,
        push,
        email,
        sms,
    };
    update_settings(
        &mut f.conn,
        &f.key,
        &f.user,
        &[],
        &[channels],
        AvailabilityPatch::default(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn due_reminders_are_planned_once_per_enabled_channel_under_their_documented_key() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    // A popup and an email at the same minute make one reminder; the 1-day one is far outside the window.
    let ev = with_reminders(&cal, "ev1", start(), vec![popup(10), email(10), email(5), email(1440)]);
    store(&mut f, std::slice::from_ref(&ev)).await;

    // Never configured: push only.
    let report = plan_at(&mut f.conn, start() - Duration::minutes(12)).await;
    assert_eq!((report.planned, report.withdrawn), (2, 0));
    let planned = rows(&mut f).await;
    assert_eq!(
        summary(&planned),
        BTreeSet::from([
            (start() - Duration::minutes(10), Channel::Push, DeliveryState::Pending),
            (start() - Duration::minutes(5), Channel::Push, DeliveryState::Pending),
        ])
    );
    for row in &planned {
        assert_eq!(
            row.idempotency_key,
            idempotency_key(&f.user, ev.id, start(), row.reminder.minutes_before, Channel::Push),
            "SQL and Rust derive the same key"
        );
        assert_eq!(row.next_attempt_at, Some(row.due_at));
        assert_eq!((row.event_id, row.event_start, row.attempts), (ev.id, start(), 0));
    }
    assert_eq!(
        planned[0].reminder,
        popup(10),
        "a popup wins over an email at the same minute"
    );

    // Planning again changes nothing, and the keys of an unmoved event never change.
    let again = plan_at(&mut f.conn, start() - Duration::minutes(11)).await;
    assert_eq!((again.planned, again.withdrawn), (0, 0));
    assert_eq!(rows(&mut f).await, planned);
}

#[tokio::test]
async fn only_reminders_due_in_the_window_of_live_accepted_events_are_planned() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    let now = start() - Duration::minutes(30);
    let events = vec![
        // Due 20 minutes ago: past the 10-minute grace, never planned (a stale reminder after an outage).
        with_reminders(&cal, "stale", start(), vec![popup(50)]),
        // Due 5 minutes ago: within the grace.
        with_reminders(&cal, "late", start(), vec![popup(35)]),
        // Due in 20 minutes: beyond the look-ahead, planned later.
        with_reminders(&cal, "later", start(), vec![popup(10)]),
        CalendarEvent {
            status: EventStatus::Cancelled,
            ..with_reminders(&cal, "cancelled", start(), vec![popup(30)])
        },
        CalendarEvent {
            self_response: ResponseStatus::Declined,
            ..with_reminders(&cal, "declined", start(), vec![popup(30)])
        },
        with_reminders(&cal, "silent", start(), vec![]),
    ];
    store(&mut f, &events).await;

    plan_at(&mut f.conn, now).await;
    let planned = rows(&mut f).await;
    assert_eq!(planned.len(), 1, "{planned:?}");
    assert_eq!(planned[0].event_id, events[1].id);
}

#[tokio::test]
async fn a_moved_event_gets_a_new_reminder_and_its_old_pending_one_is_withdrawn() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    let now = start() - Duration::minutes(14);
    store(&mut f, &[with_reminders(&cal, "ev1", start(), vec![popup(10)])]).await;
    plan_at(&mut f.conn, now).await;

    let moved = start() - Duration::minutes(2);
    let ev = with_reminders(&cal, "ev1", moved, vec![popup(10)]);
    store(&mut f, std::slice::from_ref(&ev)).await;
    let report = plan_at(&mut f.conn, now).await;
    assert_eq!((report.planned, report.withdrawn), (1, 1));
    let after = rows(&mut f).await;
    assert_eq!(
        summary(&after),
        BTreeSet::from([
            (moved - Duration::minutes(10), Channel::Push, DeliveryState::Pending),
            (start() - Duration::minutes(10), Channel::Push, DeliveryState::Withdrawn),
        ])
    );
    let old = after.iter().find(|row| row.state == DeliveryState::Withdrawn).unwrap();
    assert_eq!(old.last_error.as_deref(), Some(WITHDRAWN_BY_PLANNER));
    assert_eq!(old.next_attempt_at, None);
    let new = after.iter().find(|row| row.state == DeliveryState::Pending).unwrap();
    assert_eq!(
        new.idempotency_key,
        idempotency_key(&f.user, ev.id, moved, 10, Channel::Push)
    );

    // Moved back: the first reminder is wanted again under its old key.
    store(&mut f, &[with_reminders(&cal, "ev1", start(), vec![popup(10)])]).await;
    plan_at(&mut f.conn, now).await;
    let back = rows(&mut f).await;
    assert_eq!(
        summary(&back),
        BTreeSet::from([
            (moved - Duration::minutes(10), Channel::Push, DeliveryState::Withdrawn),
            (start() - Duration::minutes(10), Channel::Push, DeliveryState::Pending),
        ])
    );
    assert_eq!(
        back.iter()
            .find(|row| row.state == DeliveryState::Pending)
            .unwrap()
            .idempotency_key,
        old.idempotency_key
    );
}

#[tokio::test]
async fn channels_follow_the_switches_and_a_channel_switched_off_gets_nothing() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    let now = start() - Duration::minutes(12);
    store(&mut f, &[with_reminders(&cal, "ev1", start(), vec![popup(10)])]).await;
    let due = start() - Duration::minutes(10);

    set_channels(&mut f, false, true, true).await;
    plan_at(&mut f.conn, now).await;
    assert_eq!(
        summary(&rows(&mut f).await),
        BTreeSet::from([
            (due, Channel::Email, DeliveryState::Pending),
            (due, Channel::Sms, DeliveryState::Pending),
        ])
    );

    set_channels(&mut f, true, true, false).await;
    let report = plan_at(&mut f.conn, now).await;
    assert_eq!((report.planned, report.withdrawn), (1, 1));
    assert_eq!(
        summary(&rows(&mut f).await),
        BTreeSet::from([
            (due, Channel::Push, DeliveryState::Pending),
            (due, Channel::Email, DeliveryState::Pending),
            (due, Channel::Sms, DeliveryState::Withdrawn),
        ])
    );
    // Microsoft's switches do not touch Google events.
    let microsoft = NotificationChannels {
        provider: Provider::Microsoft,
        push: false,
        email: false,
        sms: false,
    };
    update_settings(
        &mut f.conn,
        &f.key,
        &f.user,
        &[],
        &[microsoft],
        AvailabilityPatch::default(),
    )
    .await
    .unwrap();
    assert_eq!(plan_at(&mut f.conn, now).await.withdrawn, 0);
}

#[tokio::test]
async fn deleted_events_withdraw_their_pending_reminders_but_leave_leased_ones_to_their_dispatcher() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    let now = start() - Duration::minutes(10);
    store(
        &mut f,
        &[
            with_reminders(&cal, "due", start(), vec![popup(10)]),
            with_reminders(&cal, "soon", start(), vec![popup(5)]),
        ],
    )
    .await;
    plan_at(&mut f.conn, now).await;
    let leased = reminders::lease_due(&mut f.conn, "d1", now, Duration::minutes(1), 10)
        .await
        .unwrap();
    assert_eq!(leased.len(), 1, "only the reminder due now");

    delete_events_by_external_id(&mut f.conn, &f.user, cal.id, &["due".into(), "soon".into()])
        .await
        .unwrap();
    let report = plan_at(&mut f.conn, now).await;
    assert_eq!(report.withdrawn, 1);
    assert_eq!(
        summary(&rows(&mut f).await),
        BTreeSet::from([
            (start() - Duration::minutes(10), Channel::Push, DeliveryState::Leased),
            (start() - Duration::minutes(5), Channel::Push, DeliveryState::Withdrawn),
        ])
    );
    // The dispatcher finds the event gone at send time.
    assert_eq!(
        reminders::delivery_event(&mut f.conn, &f.key, &f.user, leased[0].event_id)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn leases_are_exclusive_fenced_and_taken_over_once_they_run_out() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    let now = start() - Duration::minutes(10);
    store(&mut f, &[with_reminders(&cal, "ev1", start(), vec![popup(10)])]).await;
    plan_at(&mut f.conn, now).await;

    let first = reminders::lease_due(&mut f.conn, "a", now, Duration::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].attempt, first[0].channel), (1, Channel::Push));
    assert!(
        reminders::lease_due(&mut f.conn, "b", now + Duration::seconds(59), Duration::seconds(60), 10)
            .await
            .unwrap()
            .is_empty(),
        "held while the lease lasts"
    );
    // "a" died mid-request; "b" takes over with the same key, as attempt 2.
    let later = now + Duration::seconds(61);
    let second = reminders::lease_due(&mut f.conn, "b", later, Duration::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].idempotency_key, first[0].idempotency_key);
    assert_eq!(second[0].attempt, 2);
    assert!(
        !reminders::finish_delivery(&mut f.conn, &first[0], &DeliveryOutcome::Delivered, later)
            .await
            .unwrap(),
        "a lost lease records nothing"
    );

    let retry_at = later + Duration::seconds(5);
    let retry = DeliveryOutcome::Retry {
        error: "the notification service answered HTTP 503".into(),
        at: retry_at,
    };
    assert!(
        reminders::finish_delivery(&mut f.conn, &second[0], &retry, later)
            .await
            .unwrap()
    );
    let row = rows(&mut f).await.remove(0);
    assert_eq!(
        (row.state, row.next_attempt_at, row.last_error.as_deref()),
        (
            DeliveryState::Pending,
            Some(retry_at),
            Some("the notification service answered HTTP 503")
        )
    );
    assert!(
        reminders::lease_due(
            &mut f.conn,
            "b",
            retry_at - Duration::seconds(1),
            Duration::seconds(60),
            10
        )
        .await
        .unwrap()
        .is_empty(),
        "not before the backoff"
    );
    let third = reminders::lease_due(&mut f.conn, "b", retry_at, Duration::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(third[0].attempt, 3);
    assert!(
        reminders::finish_delivery(&mut f.conn, &third[0], &DeliveryOutcome::Delivered, retry_at)
            .await
            .unwrap()
    );
    let row = rows(&mut f).await.remove(0);
    assert_eq!(
        (row.state, row.attempts, row.delivered_at, row.next_attempt_at),
        (DeliveryState::Delivered, 3, Some(retry_at), None)
    );
    // Delivered rows are never leased again, and planning again does not revive them.
    plan_at(&mut f.conn, retry_at).await;
    assert!(
        reminders::lease_due(
            &mut f.conn,
            "b",
            retry_at + Duration::hours(1),
            Duration::seconds(60),
            10
        )
        .await
        .unwrap()
        .is_empty()
    );
}

#[tokio::test]
async fn the_dispatcher_reads_the_event_texts_and_current_channels_but_rows_hold_no_text() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    let ev = with_reminders(&cal, "ev1", start(), vec![popup(10)]);
    store(&mut f, std::slice::from_ref(&ev)).await;
    plan_at(&mut f.conn, start() - Duration::minutes(10)).await;
    set_channels(&mut f, true, false, true).await;

    let found = reminders::delivery_event(&mut f.conn, &f.key, &f.user, ev.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.title.as_deref(), Some("title of ev1"));
    assert_eq!(found.location.as_deref(), Some("location of ev1"));
    assert_eq!((found.start, found.reminders.clone()), (start(), vec![popup(10)]));
    assert_eq!(
        (found.channels.push, found.channels.email, found.channels.sms),
        (true, false, true)
    );

    let dump = texts(
        &mut f.conn,
        "SELECT row_to_json(d)::text AS value FROM reminder_deliveries d",
    )
    .await;
    assert_eq!(dump.len(), 1);
    assert!(
        !dump[0].contains("title of") && !dump[0].contains("location of"),
        "{}",
        dump[0]
    );
}

#[tokio::test]
async fn a_users_rows_go_with_their_erasure_and_with_their_calendars() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    store(
        &mut f,
        &[with_reminders(&cal, "ev1", start(), vec![popup(10), popup(5)])],
    )
    .await;
    plan_at(&mut f.conn, start() - Duration::minutes(10)).await;
    assert_eq!(rows(&mut f).await.len(), 2);

    exec(&mut f.conn, &format!("DELETE FROM calendars WHERE id = '{}'", cal.id)).await;
    assert!(
        rows(&mut f).await.is_empty(),
        "unlinking a calendar removes its reminders"
    );

    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    store(
        &mut f,
        &[with_reminders(&cal, "ev1", start(), vec![popup(10), popup(5)])],
    )
    .await;
    plan_at(&mut f.conn, start() - Duration::minutes(10)).await;
    assert_eq!(rows(&mut f).await.len(), 2);
    // The user's erasure takes their reminders with everything else.
    juy_store::erasure::erase_user(&mut f.conn, &f.user, None)
        .await
        .unwrap();
    assert!(rows(&mut f).await.is_empty());
}

#[tokio::test]
async fn one_planner_runs_at_a_time_and_finds_events_through_the_reminder_indexes() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    store(&mut f, &[with_reminders(&cal, "ev1", start(), vec![popup(10)])]).await;

    let mut other = f.store.conn().await.unwrap();
    exec(&mut other, "BEGIN").await;
    exec(
        &mut other,
        "SELECT pg_advisory_xact_lock(hashtextextended('juy.reminders.planner', 0))",
    )
    .await;
    let now = start() - Duration::minutes(10);
    let blocked = reminders::plan(&mut f.conn, now, now + Duration::minutes(15), now)
        .await
        .unwrap();
    assert_eq!(blocked, reminders::PlanReport::default(), "another replica is planning");
    exec(&mut other, "COMMIT").await;
    assert_eq!(plan_at(&mut f.conn, now).await.planned, 1);

    // With sequential scans priced out, the planner's candidates come from the reminder indexes
    // (each branch's predicate implies its partial index's).
    exec(&mut f.conn, "SET enable_seqscan = off").await;
    #[derive(diesel::QueryableByName)]
    struct PlanLine {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        line: String,
    }
    let plan: Vec<PlanLine> = diesel::sql_query(format!(
        "EXPLAIN {}",
        reminders::PLAN_SQL
            .replace("$1", "now()")
            .replace("$2", "(now() + interval '15 minutes')")
            .replace("$3", "now()")
            .replace("$4", "'withdrawn'")
    ))
    .load(&mut f.conn)
    .await
    .unwrap();
    let plan = plan.into_iter().map(|row| row.line).collect::<Vec<_>>().join("\n");
    for index in [
        "user_calendar_events_reminder_first_due_idx",
        "user_calendar_events_reminder_last_due_idx",
        "user_calendar_events_reminder_span_idx",
    ] {
        assert!(plan.contains(index), "{index}: {plan}");
    }
}

#[tokio::test]
async fn a_middle_reminder_of_an_event_with_three_is_planned_too() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    // Only the 30-minute one falls in the window: the first (1 day) is before it, the last (1 minute) after it.
    let ev = with_reminders(&cal, "ev1", start(), vec![email(1440), popup(30), popup(1)]);
    store(&mut f, std::slice::from_ref(&ev)).await;
    let now = start() - Duration::minutes(31);
    let report = reminders::plan(&mut f.conn, now, now + Duration::minutes(5), now)
        .await
        .unwrap();
    assert_eq!(report.planned, 1);
    let planned = rows(&mut f).await;
    assert_eq!(planned[0].reminder, popup(30));
    assert_eq!(planned[0].event_id, ev.id);

    // The stored due span follows the event when it moves.
    let spans = texts(
        &mut f.conn,
        "SELECT reminder_first_due::text || ' ' || reminder_last_due::text AS value FROM user_calendar_events",
    )
    .await;
    assert_eq!(spans, ["2026-03-01 10:00:00+00 2026-03-02 09:59:00+00"]);
    store(
        &mut f,
        &[with_reminders(
            &cal,
            "ev1",
            start() + Duration::hours(1),
            vec![popup(10)],
        )],
    )
    .await;
    let spans = texts(
        &mut f.conn,
        "SELECT reminder_first_due::text || ' ' || reminder_last_due::text AS value FROM user_calendar_events",
    )
    .await;
    assert_eq!(spans, ["2026-03-02 10:50:00+00 2026-03-02 10:50:00+00"]);
}

#[tokio::test]
async fn each_reminder_of_an_event_with_two_or_one_is_found_through_its_index() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    // Two reminders: only the last (10 minutes) is due in the window, found by the last-due index
    // (which holds only events whose first and last differ). One reminder: found by the first-due one.
    let two = with_reminders(&cal, "two", start(), vec![email(1440), popup(10)]);
    let one = with_reminders(&cal, "one", start(), vec![popup(10)]);
    store(&mut f, &[two.clone(), one.clone()]).await;
    let now = start() - Duration::minutes(11);
    let report = reminders::plan(&mut f.conn, now, now + Duration::minutes(5), now)
        .await
        .unwrap();
    assert_eq!(report.planned, 2);
    let planned: BTreeSet<_> = rows(&mut f)
        .await
        .into_iter()
        .map(|r| (r.event_id, r.reminder.minutes_before))
        .collect();
    assert_eq!(planned, BTreeSet::from([(two.id, 10), (one.id, 10)]));
    // The day-before reminder of the first is planned once its window comes.
    let earlier = start() - Duration::minutes(1441);
    let report = reminders::plan(&mut f.conn, earlier, earlier + Duration::minutes(5), earlier)
        .await
        .unwrap();
    assert_eq!(report.planned, 1);
}
