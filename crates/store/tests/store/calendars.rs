//! Calendars: discovery upserts, listing order, write modes.

use juy_domain::{AccountId, CalendarId, CalendarMode};
use juy_store::StoreError;
use juy_store::calendars::{list_calendars, set_calendar_modes, upsert_calendars};

use crate::support::{account, fixture, new_calendar, user};

#[tokio::test]
async fn refreshing_calendars_keeps_their_ids_and_modes() {
    let mut f = fixture().await;
    let account = account(&mut f.conn, &f.key, &f.user, "sub-1").await;
    let first = upsert_calendars(&mut f.conn, &f.key, &f.user, &[new_calendar(&account, "work", true)])
        .await
        .unwrap();
    set_calendar_modes(&mut f.conn, &f.key, &f.user, &[(first[0].id, CalendarMode::Write)])
        .await
        .unwrap();

    let mut renamed = new_calendar(&account, "work", true);
    renamed.name = "Work (renamed)".into();
    let again = upsert_calendars(
        &mut f.conn,
        &f.key,
        &f.user,
        &[renamed.clone(), new_calendar(&account, "home", false)],
    )
    .await
    .unwrap();

    assert_eq!(again.len(), 2);
    assert_eq!(again[0].id, first[0].id);
    assert_eq!(again[0].name, "Work (renamed)");
    assert_eq!(again[0].mode, CalendarMode::Write);
    assert_eq!(again[1].provider_calendar_id, "home");
    assert_eq!(again[1].mode, CalendarMode::ReadOnly);
    assert_eq!(
        list_calendars(&mut f.conn, &f.key, &f.user, None).await.unwrap().len(),
        2
    );
}

#[tokio::test]
async fn a_calendar_no_longer_writable_falls_back_to_read_only() {
    let mut f = fixture().await;
    let account = account(&mut f.conn, &f.key, &f.user, "sub-1").await;
    let first = upsert_calendars(&mut f.conn, &f.key, &f.user, &[new_calendar(&account, "work", true)])
        .await
        .unwrap();
    set_calendar_modes(&mut f.conn, &f.key, &f.user, &[(first[0].id, CalendarMode::Write)])
        .await
        .unwrap();

    let now_read_only = upsert_calendars(&mut f.conn, &f.key, &f.user, &[new_calendar(&account, "work", false)])
        .await
        .unwrap();

    assert!(!now_read_only[0].can_write);
    assert_eq!(now_read_only[0].mode, CalendarMode::ReadOnly);
}

#[tokio::test]
async fn a_calendar_listed_twice_in_one_call_is_stored_once() {
    let mut f = fixture().await;
    let account = account(&mut f.conn, &f.key, &f.user, "sub-1").await;
    let mut later = new_calendar(&account, "work", true);
    later.name = "latest".into();
    let stored = upsert_calendars(
        &mut f.conn,
        &f.key,
        &f.user,
        &[new_calendar(&account, "work", true), later],
    )
    .await
    .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].name, "latest");
}

#[tokio::test]
async fn calendars_of_another_users_account_are_refused() {
    let mut f = fixture().await;
    let account = account(&mut f.conn, &f.key, &f.user, "sub-1").await;
    let bob = user("bob");
    let bob_key = f.store.data_key(&mut f.conn, &bob).await.unwrap();

    let err = upsert_calendars(&mut f.conn, &bob_key, &bob, &[new_calendar(&account, "work", true)])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::NotFound { what: "account", id } if *id == account.id.to_string()),
        "{err}"
    );
    let mut unknown = new_calendar(&account, "work", true);
    unknown.account_id = AccountId::new();
    let err = upsert_calendars(&mut f.conn, &f.key, &f.user, &[unknown])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { what: "account", .. }), "{err}");
    assert!(
        list_calendars(&mut f.conn, &f.key, &f.user, None)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn calendars_are_listed_by_account_with_the_primary_first() {
    let mut f = fixture().await;
    let one = account(&mut f.conn, &f.key, &f.user, "sub-1").await;
    let two = account(&mut f.conn, &f.key, &f.user, "sub-2").await;
    let mut primary = new_calendar(&one, "primary", true);
    primary.is_primary = true;
    upsert_calendars(
        &mut f.conn,
        &f.key,
        &f.user,
        &[
            new_calendar(&two, "x", false),
            new_calendar(&one, "a", false),
            primary,
            new_calendar(&one, "b", false),
        ],
    )
    .await
    .unwrap();

    let all = list_calendars(&mut f.conn, &f.key, &f.user, None).await.unwrap();
    let keys: Vec<_> = all
        .iter()
        .map(|calendar| (calendar.account_id, !calendar.is_primary, calendar.id))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    let of_one = list_calendars(&mut f.conn, &f.key, &f.user, Some(one.id))
        .await
        .unwrap();
    assert_eq!(of_one.len(), 3);
    assert_eq!(of_one[0].provider_calendar_id, "primary");
    assert!(
        list_calendars(&mut f.conn, &f.key, &user("bob"), Some(one.id))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn set_calendar_modes_with_one_unknown_id_changes_nothing() {
    let mut f = fixture().await;
    let account = account(&mut f.conn, &f.key, &f.user, "sub-1").await;
    let calendars = upsert_calendars(&mut f.conn, &f.key, &f.user, &[new_calendar(&account, "work", true)])
        .await
        .unwrap();
    let unknown = CalendarId::new();

    let err = set_calendar_modes(
        &mut f.conn,
        &f.key,
        &f.user,
        &[(calendars[0].id, CalendarMode::Write), (unknown, CalendarMode::Write)],
    )
    .await
    .unwrap_err();

    assert!(
        matches!(&err, StoreError::NotFound { what: "calendar", id } if *id == unknown.to_string()),
        "{err}"
    );
    let after = list_calendars(&mut f.conn, &f.key, &f.user, None).await.unwrap();
    assert_eq!(after[0].mode, CalendarMode::ReadOnly);

    // Another user's calendar is just as unknown.
    let bob = user("bob");
    let bob_key = f.store.data_key(&mut f.conn, &bob).await.unwrap();
    let err = set_calendar_modes(&mut f.conn, &bob_key, &bob, &[(calendars[0].id, CalendarMode::Write)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    assert_eq!(
        list_calendars(&mut f.conn, &f.key, &f.user, None).await.unwrap()[0].mode,
        CalendarMode::ReadOnly
    );
}

#[tokio::test]
async fn write_mode_on_a_calendar_that_is_not_writable_is_refused_and_changes_nothing() {
    let mut f = fixture().await;
    let account = account(&mut f.conn, &f.key, &f.user, "sub-1").await;
    let calendars = upsert_calendars(
        &mut f.conn,
        &f.key,
        &f.user,
        &[
            new_calendar(&account, "writable", true),
            new_calendar(&account, "shared", false),
        ],
    )
    .await
    .unwrap();
    let (writable, read_only) = (&calendars[0], &calendars[1]);

    let err = set_calendar_modes(
        &mut f.conn,
        &f.key,
        &f.user,
        &[(writable.id, CalendarMode::Write), (read_only.id, CalendarMode::Write)],
    )
    .await
    .unwrap_err();

    assert!(
        matches!(err, StoreError::CalendarNotWritable { calendar_id } if calendar_id == read_only.id),
        "{err}"
    );
    let after = list_calendars(&mut f.conn, &f.key, &f.user, None).await.unwrap();
    assert!(after.iter().all(|calendar| calendar.mode == CalendarMode::ReadOnly));

    let changed = set_calendar_modes(
        &mut f.conn,
        &f.key,
        &f.user,
        &[
            (writable.id, CalendarMode::Write),
            (read_only.id, CalendarMode::ReadOnly),
        ],
    )
    .await
    .unwrap();
    assert_eq!(changed.len(), 2);
    let writable_now = changed.iter().find(|calendar| calendar.id == writable.id).unwrap();
    assert_eq!(writable_now.mode, CalendarMode::Write);
    assert_eq!(writable_now.name, "writable name");
}
