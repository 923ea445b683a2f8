//! Events: upserts, range queries, paging, filters, TTL, isolation of users.

use std::collections::HashSet;

use chrono::{Duration, NaiveDate};
use juy_domain::{AllDayDates, CalendarEvent, EventKind, EventStatus, Provider, TimeRange, Transparency};
use juy_store::StoreError;
use juy_store::calendars::upsert_calendars;
use juy_store::events::{EventQuery, count_events, delete_expired_events, list_events, upsert_events};

use crate::support::{account, at, calendar, event, external_ids, fixture, new_calendar, texts, user};

fn query(user: &juy_domain::UserId, range: TimeRange) -> EventQuery {
    EventQuery {
        user_id: user.clone(),
        range,
        providers: Vec::new(),
        calendar_ids: Vec::new(),
        after: None,
        limit: 100,
    }
}

fn day(day: u32) -> TimeRange {
    TimeRange::new(at(day, 0, 0), at(day + 1, 0, 0)).unwrap()
}

#[tokio::test]
async fn an_event_across_midnight_is_found_from_either_day() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    let late = event(&cal, "late", at(5, 23, 30), at(6, 0, 30));
    upsert_events(&mut f.conn, &f.key, &[late], at(1, 0, 0), Duration::days(30))
        .await
        .unwrap();

    for range in [day(5), day(6)] {
        let found = list_events(&mut f.conn, &f.key, &query(&f.user, range)).await.unwrap();
        assert_eq!(external_ids(&found), vec!["late"], "{range:?}");
    }
    assert!(
        list_events(&mut f.conn, &f.key, &query(&f.user, day(4)))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        list_events(&mut f.conn, &f.key, &query(&f.user, day(7)))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn events_touching_the_range_only_at_its_edges_are_not_found() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    let events = [
        event(&cal, "ends-at-start", at(5, 8, 0), at(5, 9, 0)),
        event(&cal, "starts-at-end", at(5, 10, 0), at(5, 11, 0)),
        event(&cal, "inside", at(5, 9, 15), at(5, 9, 45)),
        event(&cal, "around", at(5, 8, 0), at(5, 11, 0)),
    ];
    upsert_events(&mut f.conn, &f.key, &events, at(1, 0, 0), Duration::days(30))
        .await
        .unwrap();

    let range = TimeRange::new(at(5, 9, 0), at(5, 10, 0)).unwrap();
    let found = list_events(&mut f.conn, &f.key, &query(&f.user, range)).await.unwrap();
    assert_eq!(external_ids(&found), vec!["around", "inside"]);
}

#[tokio::test]
async fn events_round_trip_every_field() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    let mut all_day = event(&cal, "holiday", at(5, 0, 0), at(6, 0, 0));
    all_day.all_day = Some(AllDayDates {
        start: NaiveDate::from_ymd_opt(2026, 3, 5).unwrap(),
        end: NaiveDate::from_ymd_opt(2026, 3, 6).unwrap(),
    });
    all_day.status = EventStatus::Tentative;
    all_day.transparency = Transparency::Transparent;
    all_day.kind = EventKind::OutOfOffice;
    all_day.series_id = Some("series-1".into());
    all_day.instance_start = Some(at(5, 0, 0));
    let mut bare = event(&cal, "bare", at(5, 9, 0), at(5, 10, 0));
    bare.title = None;
    bare.location = None;
    bare.description = None;
    bare.organizer = None;
    bare.attendees = Vec::new();
    bare.reminders = Vec::new();
    bare.ical_uid = None;
    bare.etag = None;
    bare.updated = None;
    bare.time_zone = None;
    upsert_events(
        &mut f.conn,
        &f.key,
        &[all_day.clone(), bare.clone()],
        at(1, 0, 0),
        Duration::days(30),
    )
    .await
    .unwrap();

    let found = list_events(&mut f.conn, &f.key, &query(&f.user, day(5))).await.unwrap();
    assert_eq!(found, vec![all_day, bare]);
}

#[tokio::test]
async fn upserting_the_same_external_event_twice_leaves_one_row() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    let first = event(&cal, "standup", at(5, 9, 0), at(5, 9, 15));
    upsert_events(
        &mut f.conn,
        &f.key,
        std::slice::from_ref(&first),
        at(1, 0, 0),
        Duration::days(30),
    )
    .await
    .unwrap();

    // The next sync normalises the same event under a fresh id with new contents.
    let mut moved = event(&cal, "standup", at(5, 10, 0), at(5, 10, 15));
    moved.title = Some("Standup (moved)".into());
    let stored = upsert_events(
        &mut f.conn,
        &f.key,
        &[moved.clone(), moved.clone()],
        at(2, 0, 0),
        Duration::days(30),
    )
    .await
    .unwrap();

    assert_eq!(stored, 1);
    assert_eq!(count_events(&mut f.conn, &f.user).await.unwrap(), 1);
    let found = list_events(&mut f.conn, &f.key, &query(&f.user, day(5))).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, first.id, "the stored event keeps its id");
    assert_eq!(found[0].title.as_deref(), Some("Standup (moved)"));
    assert_eq!(found[0].start, at(5, 10, 0));
}

#[tokio::test]
async fn paging_is_stable_while_events_are_inserted() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    // Several events share a start, so the id breaks ties.
    let existing: Vec<CalendarEvent> = (0..9)
        .map(|i| event(&cal, &format!("e{i}"), at(5, 8 + i / 3, 0), at(5, 8 + i / 3, 30)))
        .collect();
    upsert_events(&mut f.conn, &f.key, &existing, at(1, 0, 0), Duration::days(30))
        .await
        .unwrap();

    let mut seen: Vec<String> = Vec::new();
    let mut page_query = EventQuery {
        limit: 2,
        ..query(&f.user, day(5))
    };
    let mut inserted = 0;
    loop {
        let page = list_events(&mut f.conn, &f.key, &page_query).await.unwrap();
        let Some(last) = page.last() else { break };
        page_query.after = Some((last.start, last.id));
        seen.extend(external_ids(&page));
        if inserted == 3 {
            continue;
        }
        // Between the first pages, new events appear before and after the cursor.
        let before = event(&cal, &format!("new-before-{inserted}"), at(5, 7, 0), at(5, 7, 30));
        let after = event(&cal, &format!("new-after-{inserted}"), at(5, 20, 0), at(5, 20, 30));
        inserted += 1;
        upsert_events(&mut f.conn, &f.key, &[before, after], at(1, 0, 0), Duration::days(30))
            .await
            .unwrap();
    }

    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no event twice: {seen:?}");
    for event in &existing {
        assert!(
            seen.contains(&event.external_id),
            "{} skipped: {seen:?}",
            event.external_id
        );
    }
    assert!(
        !seen.iter().any(|id| id.starts_with("new-before")),
        "nothing before the cursor shows up later"
    );
    assert_eq!(
        seen.iter().filter(|id| id.starts_with("new-after")).count(),
        3,
        "what is added ahead is reached"
    );
}

#[tokio::test]
async fn events_are_filtered_by_provider_and_calendar() {
    let mut f = fixture().await;
    let google = calendar(&mut f.conn, &f.key, &f.user).await;
    let mut graph_account = crate::support::new_account(&f.user, "graph-1");
    graph_account.provider = Provider::Microsoft;
    let graph_account = juy_store::accounts::upsert_account(&mut f.conn, &f.key, &graph_account)
        .await
        .unwrap();
    let graph = upsert_calendars(
        &mut f.conn,
        &f.key,
        &f.user,
        &[new_calendar(&graph_account, "outlook", true)],
    )
    .await
    .unwrap()
    .remove(0);
    let events = [
        event(&google, "g", at(5, 9, 0), at(5, 10, 0)),
        event(&graph, "m", at(5, 9, 0), at(5, 10, 0)),
    ];
    upsert_events(&mut f.conn, &f.key, &events, at(1, 0, 0), Duration::days(30))
        .await
        .unwrap();

    let by_provider = EventQuery {
        providers: vec![Provider::Microsoft],
        ..query(&f.user, day(5))
    };
    assert_eq!(
        external_ids(&list_events(&mut f.conn, &f.key, &by_provider).await.unwrap()),
        vec!["m"]
    );
    let by_calendar = EventQuery {
        calendar_ids: vec![google.id],
        ..query(&f.user, day(5))
    };
    assert_eq!(
        external_ids(&list_events(&mut f.conn, &f.key, &by_calendar).await.unwrap()),
        vec!["g"]
    );
    let both = EventQuery {
        providers: vec![Provider::Google, Provider::Microsoft],
        ..query(&f.user, day(5))
    };
    assert_eq!(list_events(&mut f.conn, &f.key, &both).await.unwrap().len(), 2);
    let none = EventQuery {
        providers: vec![Provider::Caldav],
        ..query(&f.user, day(5))
    };
    assert!(list_events(&mut f.conn, &f.key, &none).await.unwrap().is_empty());
}

#[tokio::test]
async fn more_events_than_one_statement_carries_are_all_stored() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    let events: Vec<CalendarEvent> = (0..1234)
        .map(|i| {
            event(
                &cal,
                &format!("e{i}"),
                at(5, 0, 0) + Duration::minutes(i),
                at(5, 0, 30) + Duration::minutes(i),
            )
        })
        .collect();
    assert_eq!(
        upsert_events(&mut f.conn, &f.key, &events, at(1, 0, 0), Duration::days(30))
            .await
            .unwrap(),
        1234
    );
    assert_eq!(
        upsert_events(&mut f.conn, &f.key, &events, at(2, 0, 0), Duration::days(30))
            .await
            .unwrap(),
        1234
    );
    assert_eq!(count_events(&mut f.conn, &f.user).await.unwrap(), 1234);
}

#[tokio::test]
async fn ttl_deletion_is_bounded_by_the_batch_size() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    let stale: Vec<CalendarEvent> = (0..5)
        .map(|i| event(&cal, &format!("stale{i}"), at(5, 9, 0), at(5, 10, 0)))
        .collect();
    let fresh: Vec<CalendarEvent> = (0..2)
        .map(|i| event(&cal, &format!("fresh{i}"), at(5, 9, 0), at(5, 10, 0)))
        .collect();
    upsert_events(&mut f.conn, &f.key, &stale, at(1, 0, 0), Duration::days(1))
        .await
        .unwrap();
    upsert_events(&mut f.conn, &f.key, &fresh, at(1, 0, 0), Duration::days(10))
        .await
        .unwrap();
    let expiries = texts(
        &mut f.conn,
        "SELECT DISTINCT (expires_at - synced_at)::text AS value FROM user_calendar_events ORDER BY 1",
    )
    .await;
    assert_eq!(expiries, vec!["1 day".to_owned(), "10 days".to_owned()]);

    let now = at(3, 0, 0);
    assert_eq!(delete_expired_events(&mut f.conn, now, 2).await.unwrap(), 2);
    assert_eq!(count_events(&mut f.conn, &f.user).await.unwrap(), 5);
    assert_eq!(delete_expired_events(&mut f.conn, now, 2).await.unwrap(), 2);
    assert_eq!(delete_expired_events(&mut f.conn, now, 2).await.unwrap(), 1);
    assert_eq!(delete_expired_events(&mut f.conn, now, 2).await.unwrap(), 0);
    let left = list_events(&mut f.conn, &f.key, &query(&f.user, day(5))).await.unwrap();
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|event| event.external_id.starts_with("fresh")));
}

#[tokio::test]
async fn one_users_queries_never_return_another_users_events() {
    let mut f = fixture().await;
    let alice_calendar = calendar(&mut f.conn, &f.key, &f.user).await;
    let bob = user("bob");
    let bob_key = f.store.data_key(&mut f.conn, &bob).await.unwrap();
    let bob_calendar = calendar(&mut f.conn, &bob_key, &bob).await;
    upsert_events(
        &mut f.conn,
        &f.key,
        &[event(&alice_calendar, "same-id", at(5, 9, 0), at(5, 10, 0))],
        at(1, 0, 0),
        Duration::days(30),
    )
    .await
    .unwrap();
    upsert_events(
        &mut f.conn,
        &bob_key,
        &[event(&bob_calendar, "same-id", at(5, 9, 0), at(5, 10, 0))],
        at(1, 0, 0),
        Duration::days(30),
    )
    .await
    .unwrap();

    let bobs_query = EventQuery {
        user_id: bob.clone(),
        ..query(&f.user, day(5))
    };
    let bobs = list_events(&mut f.conn, &bob_key, &bobs_query).await.unwrap();
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].calendar_id, bob_calendar.id);
    // Naming Alice's calendar does not reach it.
    let sneaky = EventQuery {
        calendar_ids: vec![alice_calendar.id],
        ..bobs_query.clone()
    };
    assert!(list_events(&mut f.conn, &bob_key, &sneaky).await.unwrap().is_empty());
    // Nor can Bob write into it.
    let mut intruder = event(&alice_calendar, "intruder", at(5, 9, 0), at(5, 10, 0));
    intruder.user_id = bob.clone();
    let err = upsert_events(&mut f.conn, &bob_key, &[intruder], at(1, 0, 0), Duration::days(30))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { what: "calendar", .. }), "{err}");
    assert_eq!(count_events(&mut f.conn, &f.user).await.unwrap(), 1);
    assert_eq!(count_events(&mut f.conn, &bob).await.unwrap(), 1);
}

#[tokio::test]
async fn events_of_two_users_in_one_call_are_refused() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    let mut foreign = event(&cal, "b", at(5, 9, 0), at(5, 10, 0));
    foreign.user_id = user("bob");
    let err = upsert_events(
        &mut f.conn,
        &f.key,
        &[event(&cal, "a", at(5, 9, 0), at(5, 10, 0)), foreign],
        at(1, 0, 0),
        Duration::days(1),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err}");
    assert_eq!(count_events(&mut f.conn, &f.user).await.unwrap(), 0);
}

#[tokio::test]
async fn refreshing_a_calendar_keeps_its_events() {
    let mut f = fixture().await;
    let acct = account(&mut f.conn, &f.key, &f.user, "sub-1").await;
    let cal = upsert_calendars(&mut f.conn, &f.key, &f.user, &[new_calendar(&acct, "c", true)])
        .await
        .unwrap()
        .remove(0);
    upsert_events(
        &mut f.conn,
        &f.key,
        &[event(&cal, "x", at(5, 9, 0), at(5, 10, 0))],
        at(1, 0, 0),
        Duration::days(1),
    )
    .await
    .unwrap();
    upsert_calendars(&mut f.conn, &f.key, &f.user, &[new_calendar(&acct, "c", true)])
        .await
        .unwrap();
    assert_eq!(count_events(&mut f.conn, &f.user).await.unwrap(), 1);
}
