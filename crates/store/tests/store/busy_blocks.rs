//! Busy blocks: every change to a user's events marks them (triggers), a
//! rebuild clears exactly the marks its snapshot saw, and a read trusts the
//! blocks only while nothing is marked and the zone is the one they were
//! built for.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use diesel_async::{AsyncConnection as _, RunQueryDsl as _};
use juy_availability::BusyKind;
use juy_domain::{AllDayDates, EventKind, ResponseStatus, UserId};
use juy_store::busy_blocks::{BlocksRead, read_blocks, rebuild_user};
use juy_store::events::{delete_events_by_external_id, upsert_events};

use crate::support::{at, calendar, event, exec, fixture, texts};

async fn marks(conn: &mut juy_store::AsyncPgConnection, user: &UserId) -> usize {
    texts(
        conn,
        &format!(
            "SELECT id::text AS value FROM busy_dirty WHERE user_id = '{}'",
            user.as_str()
        ),
    )
    .await
    .len()
}

async fn read(
    conn: &mut juy_store::AsyncPgConnection,
    user: &UserId,
    zone: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> BlocksRead {
    read_blocks(conn, &[(user, zone)], from, to, Some(0))
        .await
        .unwrap()
        .remove(0)
}

fn shape(read: &BlocksRead) -> Vec<(DateTime<Utc>, DateTime<Utc>, BusyKind, usize)> {
    match read {
        BlocksRead::Fresh(blocks) => blocks
            .iter()
            .map(|b| (b.start, b.end, b.kind, b.members.len()))
            .collect(),
        other => panic!("not fresh: {other:?}"),
    }
}

#[tokio::test]
async fn changes_mark_the_user_a_rebuild_clears_what_it_saw_and_reads_trust_only_fresh_blocks() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    exec(&mut f.conn, "UPDATE calendars SET time_zone = 'Europe/Berlin'").await;
    let (from, to) = (at(10, 0, 0), at(13, 0, 0));
    assert_eq!(
        read(&mut f.conn, &f.user, "Europe/Berlin", from, to).await,
        BlocksRead::Unbuilt
    );

    let busy = event(&cal, "busy", at(10, 9, 0), at(10, 11, 0));
    let mut tentative = event(&cal, "tentative", at(10, 10, 0), at(10, 12, 0));
    tentative.self_response = ResponseStatus::NeedsAction;
    // Across UTC midnight: cut into two blocks.
    let mut away = event(&cal, "away", at(10, 22, 0), at(11, 2, 0));
    away.kind = EventKind::OutOfOffice;
    // All-day on the 12th: Berlin's midnight to midnight (23:00 to 23:00 UTC).
    let mut all_day = event(&cal, "all-day", at(12, 0, 0), at(13, 0, 0));
    let day = NaiveDate::from_ymd_opt(2026, 3, 12).unwrap();
    all_day.all_day = Some(AllDayDates {
        start: day,
        end: day.succ_opt().unwrap(),
    });
    let mut declined = event(&cal, "declined", at(10, 14, 0), at(10, 15, 0));
    declined.self_response = ResponseStatus::Declined;
    let events = [busy, tentative, away, all_day, declined];
    upsert_events(&mut f.conn, &f.key, &events, at(1, 0, 0), Duration::days(30))
        .await
        .unwrap();
    assert!(marks(&mut f.conn, &f.user).await >= 1, "an insert marks the user");
    assert_eq!(
        read(&mut f.conn, &f.user, "Europe/Berlin", from, to).await,
        BlocksRead::Dirty
    );

    let rebuilt = rebuild_user(&mut f.conn, &f.user).await.unwrap().unwrap();
    assert_eq!(rebuilt.events, 4, "the declined event is free");
    assert_eq!(marks(&mut f.conn, &f.user).await, 0);
    let fresh = read(&mut f.conn, &f.user, "Europe/Berlin", from, to).await;
    assert_eq!(
        shape(&fresh),
        vec![
            (at(10, 9, 0), at(10, 11, 0), BusyKind::Busy, 2),
            // The tentative event is a member of its day's first block only.
            (at(10, 11, 0), at(10, 12, 0), BusyKind::Tentative, 0),
            (at(10, 22, 0), at(11, 0, 0), BusyKind::OutOfOffice, 1),
            (at(11, 0, 0), at(11, 2, 0), BusyKind::OutOfOffice, 1),
            (at(11, 23, 0), at(12, 0, 0), BusyKind::Busy, 1),
            (at(12, 0, 0), at(12, 23, 0), BusyKind::Busy, 1),
        ]
    );
    // Only the explained user's blocks carry members.
    match read_blocks(&mut f.conn, &[(&f.user, "Europe/Berlin")], from, to, None)
        .await
        .unwrap()
        .remove(0)
    {
        BlocksRead::Fresh(blocks) => assert!(blocks.iter().all(|b| b.members.is_empty())),
        other => panic!("not fresh: {other:?}"),
    }
    // A block starting before the range and reaching into it is found.
    let late = read(&mut f.conn, &f.user, "Europe/Berlin", at(11, 1, 0), at(11, 3, 0)).await;
    assert_eq!(
        shape(&late),
        vec![(at(11, 0, 0), at(11, 2, 0), BusyKind::OutOfOffice, 1)]
    );
    // Built for Berlin: a user now in another zone is not answered from them.
    assert_eq!(
        read(&mut f.conn, &f.user, "America/New_York", from, to).await,
        BlocksRead::Unbuilt
    );

    // A deletion marks the user again, and the rebuild forgets the event.
    delete_events_by_external_id(&mut f.conn, &f.user, cal.id, &["away".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        read(&mut f.conn, &f.user, "Europe/Berlin", from, to).await,
        BlocksRead::Dirty
    );
    rebuild_user(&mut f.conn, &f.user).await.unwrap().unwrap();
    let after = read(&mut f.conn, &f.user, "Europe/Berlin", from, to).await;
    assert!(
        shape(&after)
            .iter()
            .all(|(_, _, kind, _)| *kind != BusyKind::OutOfOffice)
    );

    // A change committed after a rebuild's snapshot stays marked: the rebuild
    // deletes only the marks it saw.
    let mut other = f.store.conn().await.unwrap();
    let late_event = event(&cal, "late", at(10, 16, 0), at(10, 17, 0));
    other
        .transaction(async |conn| {
            upsert_events(conn, &f.key, &[late_event], at(1, 0, 0), Duration::days(30))
                .await
                .unwrap();
            let rebuilt = rebuild_user(&mut f.conn, &f.user).await.unwrap().unwrap();
            assert_eq!(rebuilt.events, 3, "the uncommitted event is not seen");
            Ok::<_, diesel::result::Error>(())
        })
        .await
        .unwrap();
    assert_eq!(
        read(&mut f.conn, &f.user, "Europe/Berlin", from, to).await,
        BlocksRead::Dirty
    );
    rebuild_user(&mut f.conn, &f.user).await.unwrap().unwrap();
    let with_late = read(&mut f.conn, &f.user, "Europe/Berlin", from, to).await;
    assert!(shape(&with_late).contains(&(at(10, 16, 0), at(10, 17, 0), BusyKind::Busy, 1)));
}

#[tokio::test]
async fn one_rebuild_at_a_time_and_an_erasure_takes_the_blocks_along() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    upsert_events(
        &mut f.conn,
        &f.key,
        &[event(&cal, "one", at(10, 9, 0), at(10, 10, 0))],
        at(1, 0, 0),
        Duration::days(30),
    )
    .await
    .unwrap();
    // Another rebuild of the same user in flight (its lock held): this one stands aside.
    let mut other = f.store.conn().await.unwrap();
    other
        .transaction(async |conn| {
            diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended('juy.busy_blocks:' || $1, 0))")
                .bind::<diesel::sql_types::Text, _>(f.user.as_str())
                .execute(conn)
                .await?;
            assert_eq!(rebuild_user(&mut f.conn, &f.user).await.unwrap(), None);
            Ok::<_, diesel::result::Error>(())
        })
        .await
        .unwrap();
    assert!(marks(&mut f.conn, &f.user).await >= 1, "the marks wait for a rebuild");
    rebuild_user(&mut f.conn, &f.user).await.unwrap().unwrap();
    let count = |table: &str| format!("SELECT count(*)::text AS value FROM {table} WHERE user_id = 'alice'");
    assert_eq!(texts(&mut f.conn, &count("busy_blocks")).await, vec!["1"]);

    juy_store::erasure::erase_user(&mut f.conn, &f.user, None)
        .await
        .unwrap();
    for table in ["busy_blocks", "busy_state", "busy_dirty"] {
        assert_eq!(
            texts(&mut f.conn, &count(table)).await,
            vec!["0"],
            "{table} after erasure"
        );
    }
}

#[tokio::test]
async fn an_insert_that_does_not_mark_the_user_is_refused() {
    let mut f = fixture().await;
    let cal = calendar(&mut f.conn, &f.key, &f.user).await;
    let refused = diesel::sql_query(format!(
        "INSERT INTO user_calendar_events (user_id, id, calendar_id, provider, external_id, start_at, end_at, \
             status, transparency, self_response, kind, reminders, synced_at, expires_at) \
         VALUES ('alice', gen_random_uuid(), '{}', 'google', 'raw', now(), now() + interval '1 hour', \
             'confirmed', 'opaque', 'accepted', 'default', '[]', now(), now() + interval '1 day')",
        cal.id
    ))
    .execute(&mut *f.conn)
    .await
    .unwrap_err();
    assert!(refused.to_string().contains("without marking busy_dirty"), "{refused}");
    assert_eq!(marks(&mut f.conn, &f.user).await, 0, "nothing was written");
    // The store's own upsert marks, once, and passes.
    upsert_events(
        &mut f.conn,
        &f.key,
        &[event(&cal, "marked", at(10, 9, 0), at(10, 10, 0))],
        at(1, 0, 0),
        Duration::days(30),
    )
    .await
    .unwrap();
    assert_eq!(marks(&mut f.conn, &f.user).await, 1);
}
