//! Events: upserts, range queries, paging, filters, TTL, sync deletions, isolation of users.

use std::collections::HashSet;

use chrono::{Duration, NaiveDate};
use juy_domain::{AllDayDates, Calendar, CalendarEvent, EventKind, EventStatus, Provider, TimeRange, Transparency};
use juy_store::StoreError;
use juy_store::calendars::upsert_calendars;
use juy_store::events::{
    EventQuery, count_events, delete_caldav_resources, delete_events_by_external_id, delete_expired_events,
    list_events, replace_resource_events, sweep_unconfirmed, upsert_events,
};

use crate::support::{Fixture, account, at, calendar, event, external_ids, fixture, new_calendar, texts, user};

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
    moved.id = juy_domain::EventId::new();
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
async fn a_new_row_gets_the_derived_id_and_a_row_stored_under_another_id_keeps_it() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    let mut first = event(&cal, "review", at(5, 9, 0), at(5, 10, 0));
    first.id = juy_domain::EventId::new();
    upsert_events(&mut f.conn, &f.key, &[first], at(1, 0, 0), Duration::days(30))
        .await
        .unwrap();
    let found = list_events(&mut f.conn, &f.key, &query(&f.user, day(5))).await.unwrap();
    assert_eq!(
        found[0].id.0,
        juy_store::events::event_row_id(&f.user, cal.id, "review"),
        "not the normaliser's id: derived from the calendar and the provider's id"
    );

    // A row stored under an id of its own (as rows were before ids were
    // derived): re-sealed for that id, never duplicated.
    crate::support::exec(
        &mut f.conn,
        "UPDATE user_calendar_events SET id = '0192f000-0000-7000-8000-000000000001' WHERE external_id = 'review'",
    )
    .await;
    let mut changed = event(&cal, "review", at(5, 11, 0), at(5, 12, 0));
    changed.title = Some("Review (moved)".into());
    let stored = upsert_events(&mut f.conn, &f.key, &[changed], at(2, 0, 0), Duration::days(30))
        .await
        .unwrap();
    assert_eq!(stored, 1);
    assert_eq!(count_events(&mut f.conn, &f.user).await.unwrap(), 1);
    let found = list_events(&mut f.conn, &f.key, &query(&f.user, day(5))).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id.to_string(), "0192f000-0000-7000-8000-000000000001");
    assert_eq!(found[0].title.as_deref(), Some("Review (moved)"));
    assert_eq!(found[0].start, at(5, 11, 0));
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

/// A second calendar of the fixture's user, and Bob's calendar with Bob's key.
async fn neighbours(f: &mut Fixture) -> (Calendar, Calendar, juy_crypto::DataKey) {
    let acct = account(&mut f.conn, &f.key, &f.user, "other-account").await;
    let other = upsert_calendars(&mut f.conn, &f.key, &f.user, &[new_calendar(&acct, "other", true)])
        .await
        .unwrap()
        .remove(0);
    let bob = user("bob");
    let bob_key = f.store.data_key(&mut f.conn, &bob).await.unwrap();
    let bobs = calendar(&mut f.conn, &bob_key, &bob).await;
    (other, bobs, bob_key)
}

/// Stores events with these external ids in `cal`, synced at `synced_at`.
async fn store(
    f: &mut Fixture,
    key: &juy_crypto::DataKey,
    cal: &Calendar,
    ids: &[&str],
    synced_at: chrono::DateTime<chrono::Utc>,
) {
    let events: Vec<CalendarEvent> = ids.iter().map(|id| event(cal, id, at(5, 9, 0), at(5, 10, 0))).collect();
    upsert_events(&mut f.conn, key, &events, synced_at, Duration::days(30))
        .await
        .unwrap();
}

/// The external ids stored in `cal`, sorted.
async fn stored_ids(f: &mut Fixture, cal: &Calendar) -> Vec<String> {
    texts(
        &mut f.conn,
        &format!(
            "SELECT external_id AS value FROM user_calendar_events WHERE calendar_id = '{}' ORDER BY external_id COLLATE \"C\"",
            cal.id
        ),
    )
    .await
}

fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

#[tokio::test]
async fn provider_deletions_remove_only_the_named_events_of_that_calendar() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    let (other, bobs, bob_key) = neighbours(&mut f).await;
    let key = f.key.clone();
    store(&mut f, &key, &cal, &["a", "b", "c"], at(1, 0, 0)).await;
    store(&mut f, &key, &other, &["a", "b"], at(1, 0, 0)).await;
    store(&mut f, &bob_key, &bobs, &["a", "b"], at(1, 0, 0)).await;

    let deleted = delete_events_by_external_id(&mut f.conn, &f.user, cal.id, &strings(&["a", "c", "never-stored"]))
        .await
        .unwrap();

    assert_eq!(deleted, 2);
    assert_eq!(stored_ids(&mut f, &cal).await, vec!["b"]);
    assert_eq!(stored_ids(&mut f, &other).await, vec!["a", "b"]);
    assert_eq!(stored_ids(&mut f, &bobs).await, vec!["a", "b"]);
    // Bob naming Alice's calendar deletes nothing.
    let bob = user("bob");
    assert_eq!(
        delete_events_by_external_id(&mut f.conn, &bob, cal.id, &strings(&["b"]))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        delete_events_by_external_id(&mut f.conn, &f.user, cal.id, &[])
            .await
            .unwrap(),
        0
    );
    assert_eq!(stored_ids(&mut f, &cal).await, vec!["b"]);
}

#[tokio::test]
async fn deleting_caldav_resources_removes_their_occurrences_and_nothing_else() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    let (other, bobs, bob_key) = neighbours(&mut f).await;
    let key = f.key.clone();
    let ids = [
        "/cal/a.ics",
        "/cal/a.ics#20260305T090000Z",
        "/cal/a.ics#20260306T090000Z",
        "/cal/a.ics2",
        "/cal/a.icsx#20260305T090000Z",
        "/cal/b.ics",
    ];
    store(&mut f, &key, &cal, &ids, at(1, 0, 0)).await;
    store(&mut f, &key, &other, &ids, at(1, 0, 0)).await;
    store(&mut f, &bob_key, &bobs, &ids, at(1, 0, 0)).await;

    let deleted = delete_caldav_resources(&mut f.conn, &f.user, cal.id, &strings(&["/cal/a.ics"]))
        .await
        .unwrap();

    assert_eq!(deleted, 3);
    assert_eq!(
        stored_ids(&mut f, &cal).await,
        vec!["/cal/a.ics2", "/cal/a.icsx#20260305T090000Z", "/cal/b.ics"]
    );
    assert_eq!(stored_ids(&mut f, &other).await.len(), ids.len());
    assert_eq!(stored_ids(&mut f, &bobs).await.len(), ids.len());
    assert_eq!(
        delete_caldav_resources(&mut f.conn, &f.user, cal.id, &[])
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn hrefs_with_like_wildcards_match_only_themselves() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    let key = f.key.clone();
    store(
        &mut f,
        &key,
        &cal,
        &[
            "/c/100%_\\x.ics",
            "/c/100%_\\x.ics#20260305T090000Z",
            // Each would match if `%`, `_` or `\` were wildcards or escapes.
            "/c/100abc_\\x.ics#20260305T090000Z",
            "/c/100%Z\\x.ics#20260305T090000Z",
            "/c/100%_x.ics#20260305T090000Z",
            "/c/100%_\\x.ics2",
        ],
        at(1, 0, 0),
    )
    .await;

    let deleted = delete_caldav_resources(&mut f.conn, &f.user, cal.id, &strings(&["/c/100%_\\x.ics"]))
        .await
        .unwrap();

    assert_eq!(deleted, 2);
    assert_eq!(
        stored_ids(&mut f, &cal).await,
        vec![
            "/c/100%Z\\x.ics#20260305T090000Z",
            "/c/100%_\\x.ics2",
            "/c/100%_x.ics#20260305T090000Z",
            "/c/100abc_\\x.ics#20260305T090000Z",
        ]
    );
    // Bare `%` and `_` hrefs match no other resource either.
    assert_eq!(
        delete_caldav_resources(&mut f.conn, &f.user, cal.id, &strings(&["%", "_"]))
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn replacing_a_resource_drops_its_vanished_occurrences() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    let (other, _, _) = neighbours(&mut f).await;
    let key = f.key.clone();
    let href = "/cal/weekly.ics";
    let old = [
        "/cal/weekly.ics#20260302T090000Z",
        "/cal/weekly.ics#20260309T090000Z",
        "/cal/weekly.ics#20260316T090000Z",
        "/cal/weekly.icsx",
        "/cal/daily.ics",
    ];
    store(&mut f, &key, &cal, &old, at(1, 0, 0)).await;
    store(&mut f, &key, &other, &old, at(1, 0, 0)).await;

    // The 9th became an EXDATE, the 16th moved to the 17th, the 23rd is new.
    let mut moved = event(&cal, "/cal/weekly.ics#20260316T090000Z", at(17, 9, 0), at(17, 10, 0));
    moved.title = Some("moved".into());
    let current = [
        event(&cal, "/cal/weekly.ics#20260302T090000Z", at(2, 9, 0), at(2, 10, 0)),
        moved,
        event(&cal, "/cal/weekly.ics#20260323T090000Z", at(23, 9, 0), at(23, 10, 0)),
    ];
    let deleted = replace_resource_events(
        &mut f.conn,
        &f.key,
        &f.user,
        cal.id,
        href,
        &current,
        at(2, 0, 0),
        Duration::days(30),
    )
    .await
    .unwrap();

    assert_eq!(deleted, 1);
    assert_eq!(
        stored_ids(&mut f, &cal).await,
        vec![
            "/cal/daily.ics",
            "/cal/weekly.ics#20260302T090000Z",
            "/cal/weekly.ics#20260316T090000Z",
            "/cal/weekly.ics#20260323T090000Z",
            "/cal/weekly.icsx",
        ]
    );
    let on_17th = list_events(&mut f.conn, &f.key, &query(&f.user, day(17)))
        .await
        .unwrap();
    assert_eq!(on_17th.len(), 1);
    assert_eq!(on_17th[0].title.as_deref(), Some("moved"));
    assert_eq!(stored_ids(&mut f, &other).await.len(), old.len());

    // A resource with no occurrence left in the window keeps no row.
    let deleted = replace_resource_events(
        &mut f.conn,
        &f.key,
        &f.user,
        cal.id,
        href,
        &[],
        at(3, 0, 0),
        Duration::days(30),
    )
    .await
    .unwrap();
    assert_eq!(deleted, 3);
    assert_eq!(
        stored_ids(&mut f, &cal).await,
        vec!["/cal/daily.ics", "/cal/weekly.icsx"]
    );
}

#[tokio::test]
async fn a_failed_resource_replacement_leaves_the_old_rows() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    let key = f.key.clone();
    let old = ["/r.ics#20260302T090000Z", "/r.ics#20260309T090000Z"];
    store(&mut f, &key, &cal, &old, at(1, 0, 0)).await;
    let before = list_events(&mut f.conn, &f.key, &query(&f.user, day(5))).await.unwrap();

    // The second event ends before it starts: the database's CHECK refuses it.
    let current = [
        event(&cal, "/r.ics#20260316T090000Z", at(16, 9, 0), at(16, 10, 0)),
        event(&cal, "/r.ics#20260323T090000Z", at(23, 10, 0), at(23, 9, 0)),
    ];
    let result = replace_resource_events(
        &mut f.conn,
        &f.key,
        &f.user,
        cal.id,
        "/r.ics",
        &current,
        at(2, 0, 0),
        Duration::days(30),
    )
    .await;

    assert!(result.is_err(), "{result:?}");
    assert_eq!(stored_ids(&mut f, &cal).await, vec![old[0], old[1]]);
    let after = list_events(&mut f.conn, &f.key, &query(&f.user, day(5))).await.unwrap();
    assert_eq!(after, before);
}

#[tokio::test]
async fn a_resource_replacement_refuses_events_of_another_resource() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    let (other, _, _) = neighbours(&mut f).await;
    let key = f.key.clone();
    store(&mut f, &key, &cal, &["/r.ics"], at(1, 0, 0)).await;

    for stray in [
        event(&cal, "/r.ics2", at(5, 9, 0), at(5, 10, 0)),
        event(&cal, "/s.ics#20260305T090000Z", at(5, 9, 0), at(5, 10, 0)),
        event(&other, "/r.ics", at(5, 9, 0), at(5, 10, 0)),
    ] {
        let err = replace_resource_events(
            &mut f.conn,
            &f.key,
            &f.user,
            cal.id,
            "/r.ics",
            &[stray],
            at(2, 0, 0),
            Duration::days(30),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, StoreError::InvalidInput(_)), "{err}");
    }
    assert_eq!(stored_ids(&mut f, &cal).await, vec!["/r.ics"]);
    assert!(stored_ids(&mut f, &other).await.is_empty());
}

#[tokio::test]
async fn a_sweep_deletes_only_rows_the_resync_did_not_confirm() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    let (other, bobs, bob_key) = neighbours(&mut f).await;
    let key = f.key.clone();
    store(&mut f, &key, &cal, &["gone", "kept", "also-gone"], at(1, 0, 0)).await;
    store(&mut f, &key, &other, &["old"], at(1, 0, 0)).await;
    store(&mut f, &bob_key, &bobs, &["old"], at(1, 0, 0)).await;

    // The resync starts at the mark; its pages confirm "kept" (an update) and
    // "new" (an insert), one exactly at the mark and one after it.
    let mark = at(2, 0, 0);
    store(&mut f, &key, &cal, &["kept"], mark).await;
    store(&mut f, &key, &cal, &["new"], at(2, 0, 5)).await;

    let deleted = sweep_unconfirmed(&mut f.conn, &f.user, cal.id, mark).await.unwrap();

    assert_eq!(deleted, 2);
    assert_eq!(stored_ids(&mut f, &cal).await, vec!["kept", "new"]);
    assert_eq!(stored_ids(&mut f, &other).await, vec!["old"]);
    assert_eq!(stored_ids(&mut f, &bobs).await, vec!["old"]);
    assert_eq!(sweep_unconfirmed(&mut f.conn, &f.user, cal.id, mark).await.unwrap(), 0);
}
