//! What reaches SQL is ciphertext, bound to its row and column.

use chrono::Duration;
use juy_domain::{Attendee, TimeRange};
use juy_store::StoreError;
use juy_store::accounts::{NewAccount, list_accounts, load_credentials, upsert_account};
use juy_store::calendars::{list_calendars, upsert_calendars};
use juy_store::events::{EventQuery, list_events, upsert_events};

use crate::support::{at, event, exec, fixture, new_account, new_calendar, texts};

const TITLE: &str = "Quarterly board meeting about Initech";
const LOCATION: &str = "Room 42, 1 Secret Street";
const DESCRIPTION: &str = "Discuss the acquisition quietly";
const ATTENDEE: &str = "carol.confidential@example.org";
const ORGANIZER: &str = "dave.director@example.org";
const CALENDAR_NAME: &str = "Private medical appointments";
const DISPLAY_NAME: &str = "alice.private@example.org";
const CREDENTIALS: &[u8] = b"{\"refresh_token\":\"1//very-secret-refresh-token\"}";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[tokio::test]
async fn raw_rows_hold_no_plaintext_of_texts_names_or_credentials() {
    let mut f = fixture().await;
    let account = upsert_account(
        &mut f.conn,
        &f.key,
        &NewAccount {
            display_name: Some(DISPLAY_NAME.into()),
            credentials: Some(CREDENTIALS.to_vec()),
            ..new_account(&f.user, "sub-1")
        },
    )
    .await
    .unwrap();
    let mut calendar_spec = new_calendar(&account, "primary", true);
    calendar_spec.name = CALENDAR_NAME.into();
    let calendar = upsert_calendars(&mut f.conn, &f.key, &f.user, &[calendar_spec])
        .await
        .unwrap()
        .remove(0);
    let mut secret = event(&calendar, "evt-1", at(5, 9, 0), at(5, 10, 0));
    secret.title = Some(TITLE.into());
    secret.location = Some(LOCATION.into());
    secret.description = Some(DESCRIPTION.into());
    secret.organizer = Some(Attendee {
        email: ORGANIZER.into(),
        ..secret.organizer.clone().unwrap()
    });
    secret.attendees[0].email = ATTENDEE.into();
    upsert_events(&mut f.conn, &f.key, &[secret], at(1, 0, 0), Duration::days(30))
        .await
        .unwrap();

    // Everything reads back through the store...
    let range = TimeRange::new(at(5, 0, 0), at(6, 0, 0)).unwrap();
    let query = EventQuery {
        user_id: f.user.clone(),
        range,
        providers: vec![],
        calendar_ids: vec![],
        after: None,
        limit: 10,
    };
    let read = list_events(&mut f.conn, &f.key, &query).await.unwrap();
    assert_eq!(read[0].title.as_deref(), Some(TITLE));
    assert_eq!(read[0].attendees[0].email, ATTENDEE);
    assert_eq!(
        list_calendars(&mut f.conn, &f.key, &f.user, None).await.unwrap()[0].name,
        CALENDAR_NAME
    );
    assert_eq!(
        list_accounts(&mut f.conn, &f.key, &f.user).await.unwrap()[0]
            .display_name
            .as_deref(),
        Some(DISPLAY_NAME)
    );
    assert_eq!(
        load_credentials(&mut f.conn, &f.key, &f.user, account.id)
            .await
            .unwrap()
            .unwrap()
            .as_slice(),
        CREDENTIALS
    );

    // ...but no row, read with plain SQL, holds any of it, as text or as bytes.
    let mut rows = Vec::new();
    for table in [
        "user_data_keys",
        "connected_accounts",
        "calendars",
        "user_calendar_events",
        "notification_settings",
    ] {
        rows.extend(texts(&mut f.conn, &format!("SELECT t::text AS value FROM {table} t")).await);
    }
    assert!(rows.len() >= 4, "{rows:?}");
    let needles: Vec<&[u8]> = vec![
        TITLE.as_bytes(),
        LOCATION.as_bytes(),
        DESCRIPTION.as_bytes(),
        ATTENDEE.as_bytes(),
        ORGANIZER.as_bytes(),
        CALENDAR_NAME.as_bytes(),
        DISPLAY_NAME.as_bytes(),
        CREDENTIALS,
        b"very-secret-refresh-token",
    ];
    for row in &rows {
        let lowered = row.to_lowercase();
        for needle in &needles {
            let text = String::from_utf8_lossy(needle).to_lowercase();
            assert!(!lowered.contains(&text), "plaintext {text:?} in a row");
            assert!(!lowered.contains(&hex(needle)), "plaintext bytes of {text:?} in a row");
        }
    }
}

#[tokio::test]
async fn a_ciphertext_copied_to_another_row_does_not_decrypt() {
    let mut f = fixture().await;
    let calendar = crate::support::calendar(&mut f.conn, &f.key, &f.user).await;
    let source = event(&calendar, "source", at(5, 9, 0), at(5, 10, 0));
    let target = event(&calendar, "target", at(5, 11, 0), at(5, 12, 0));
    upsert_events(
        &mut f.conn,
        &f.key,
        &[source.clone(), target.clone()],
        at(1, 0, 0),
        Duration::days(30),
    )
    .await
    .unwrap();
    exec(
        &mut f.conn,
        "UPDATE user_calendar_events SET title_enc = (SELECT title_enc FROM user_calendar_events WHERE external_id = 'source') \
         WHERE external_id = 'target'",
    )
    .await;

    let query = EventQuery {
        user_id: f.user.clone(),
        range: TimeRange::new(at(5, 0, 0), at(6, 0, 0)).unwrap(),
        providers: vec![],
        calendar_ids: vec![],
        after: None,
        limit: 10,
    };
    let err = list_events(&mut f.conn, &f.key, &query).await.unwrap_err();
    let StoreError::Corrupt(message) = &err else {
        panic!("expected a corrupt row, got {err}")
    };
    assert!(message.contains(&target.id.to_string()), "{message}");
    assert!(
        !message.contains("title of"),
        "the error names only the event: {message}"
    );
    // The source row itself is still fine.
    let only_source = EventQuery {
        range: TimeRange::new(at(5, 9, 0), at(5, 10, 0)).unwrap(),
        ..query.clone()
    };
    assert_eq!(
        list_events(&mut f.conn, &f.key, &only_source).await.unwrap()[0].title,
        source.title
    );

    // A value moved to another column of the same row does not open either.
    exec(
        &mut f.conn,
        "UPDATE user_calendar_events SET location_enc = title_enc WHERE external_id = 'source'",
    )
    .await;
    assert!(matches!(
        list_events(&mut f.conn, &f.key, &only_source).await,
        Err(StoreError::Corrupt(_))
    ));
}

#[tokio::test]
async fn another_users_key_cannot_read_a_users_rows() {
    let mut f = fixture().await;
    let calendar = crate::support::calendar(&mut f.conn, &f.key, &f.user).await;
    let bob = crate::support::user("bob");
    let bob_key = f.store.data_key(&mut f.conn, &bob).await.unwrap();
    let err = list_calendars(&mut f.conn, &bob_key, &f.user, None).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt(message) if message.contains(&calendar.id.to_string())),
        "{err}"
    );
}
