//! Busy events: what free/busy reads, per user, without free events or meetings' synced copies.

use chrono::{Duration, NaiveDate};
use juy_domain::{AllDayDates, CalendarEvent, EventId, EventKind, EventStatus, ResponseStatus, Transparency, UserId};
use juy_store::availability::busy_events;
use juy_store::events::upsert_events;

use crate::support::{at, calendar, event, exec, fixture, user};

fn ids(events: &[juy_store::availability::BusyEvent]) -> Vec<EventId> {
    let mut ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn busy_events_come_per_user_in_the_order_asked_without_the_ones_free_under_every_reading() {
    let mut f = fixture().await;
    let alices = calendar(&mut f.conn, &f.key, &f.user).await;
    let (from, to) = (at(10, 0, 0), at(11, 0, 0));
    let busy = event(&alices, "busy", at(10, 9, 0), at(10, 10, 0));
    let tentative = variant(event(&alices, "tentative", at(10, 11, 0), at(10, 12, 0)), |e| {
        e.status = EventStatus::Tentative;
        e.self_response = ResponseStatus::NeedsAction;
    });
    let away = variant(event(&alices, "away", at(10, 13, 0), at(10, 14, 0)), |e| {
        e.kind = EventKind::OutOfOffice
    });
    let day = NaiveDate::from_ymd_opt(2026, 3, 11).unwrap();
    // Stored in a zone ahead of UTC, it starts the evening before: an owner elsewhere may still be busy on the 10th.
    let all_day = variant(event(&alices, "all-day", at(10, 23, 0), at(11, 23, 0)), |e| {
        e.all_day = Some(AllDayDates {
            start: day,
            end: day.succ_opt().unwrap(),
        })
    });
    let free = [
        variant(event(&alices, "cancelled", at(10, 9, 0), at(10, 10, 0)), |e| {
            e.status = EventStatus::Cancelled
        }),
        variant(event(&alices, "transparent", at(10, 9, 0), at(10, 10, 0)), |e| {
            e.transparency = Transparency::Transparent
        }),
        variant(event(&alices, "declined", at(10, 9, 0), at(10, 10, 0)), |e| {
            e.self_response = ResponseStatus::Declined
        }),
        variant(event(&alices, "elsewhere", at(10, 9, 0), at(10, 10, 0)), |e| {
            e.kind = EventKind::WorkingElsewhere
        }),
        event(&alices, "before", at(9, 9, 0), at(9, 10, 0)),
        event(&alices, "after", at(12, 9, 0), at(12, 10, 0)),
    ];
    let mut alice_events = vec![busy.clone(), tentative.clone(), away.clone(), all_day.clone()];
    alice_events.extend(free);
    upsert_events(&mut f.conn, &f.key, &alice_events, at(1, 0, 0), Duration::days(30))
        .await
        .unwrap();
    let bob = user("bob");
    let bobs_key = f.store.data_key(&mut f.conn, &bob).await.unwrap();
    let bobs = calendar(&mut f.conn, &bobs_key, &bob).await;
    let bobs_event = event(&bobs, "busy", at(10, 15, 0), at(10, 16, 0));
    upsert_events(
        &mut f.conn,
        &bobs_key,
        std::slice::from_ref(&bobs_event),
        at(1, 0, 0),
        Duration::days(30),
    )
    .await
    .unwrap();

    let asked = [bob.clone(), UserId::new("carol").unwrap(), f.user.clone()];
    let found = busy_events(&mut f.conn, &asked, from, to).await.unwrap();

    assert_eq!(found.len(), 3);
    assert_eq!(ids(&found[0]), vec![bobs_event.id]);
    assert!(found[1].is_empty(), "carol has no events");
    let mut expected = vec![busy.id, tentative.id, away.id, all_day.id];
    expected.sort();
    assert_eq!(ids(&found[2]), expected);
    let facts = |id: EventId| found[2].iter().find(|e| e.id == id).unwrap().facts;
    assert_eq!(facts(tentative.id).status, EventStatus::Tentative);
    assert_eq!(facts(tentative.id).self_response, ResponseStatus::NeedsAction);
    assert_eq!(facts(tentative.id).transparency, Transparency::Opaque);
    assert_eq!(facts(away.id).kind, EventKind::OutOfOffice);
    assert_eq!(facts(all_day.id).all_day, all_day.all_day);
    assert_eq!((facts(busy.id).start, facts(busy.id).end), (busy.start, busy.end));
}

#[tokio::test]
async fn a_meetings_synced_copy_is_left_out_of_its_organisers_busy_events() {
    let mut f = fixture().await;
    let alices = calendar(&mut f.conn, &f.key, &f.user).await;
    let copy = event(&alices, "meeting-copy", at(10, 9, 0), at(10, 10, 0));
    let other = event(&alices, "other", at(10, 9, 30), at(10, 10, 30));
    upsert_events(
        &mut f.conn,
        &f.key,
        &[copy.clone(), other.clone()],
        at(1, 0, 0),
        Duration::days(30),
    )
    .await
    .unwrap();
    // Bob's calendar holds an event under the same provider id: not a copy of Alice's meeting.
    let bob = user("bob");
    let bobs_key = f.store.data_key(&mut f.conn, &bob).await.unwrap();
    let bobs = calendar(&mut f.conn, &bobs_key, &bob).await;
    let bobs_event = event(&bobs, "meeting-copy", at(10, 9, 0), at(10, 10, 0));
    upsert_events(
        &mut f.conn,
        &bobs_key,
        std::slice::from_ref(&bobs_event),
        at(1, 0, 0),
        Duration::days(30),
    )
    .await
    .unwrap();
    exec(
        &mut f.conn,
        &format!(
            "INSERT INTO meetings (user_id, id, title_enc, start_at, end_at, time_zone, calendar_id, external_id) \
             VALUES ('{}', gen_random_uuid(), '\\x00', '2026-03-10T09:00:00Z', '2026-03-10T10:00:00Z', 'UTC', \
                     '{}', 'meeting-copy')",
            f.user, alices.id.0
        ),
    )
    .await;

    let found = busy_events(&mut f.conn, &[f.user.clone(), bob], at(10, 0, 0), at(11, 0, 0))
        .await
        .unwrap();

    assert_eq!(ids(&found[0]), vec![other.id], "the copy hides behind the meeting");
    assert_eq!(ids(&found[1]), vec![bobs_event.id]);
}

/// A fixture event changed by `change`.
fn variant(mut event: CalendarEvent, change: impl FnOnce(&mut CalendarEvent)) -> CalendarEvent {
    change(&mut event);
    event
}
