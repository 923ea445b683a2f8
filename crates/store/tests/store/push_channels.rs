//! Push channels: one per calendar, secrets stored only as hashes and
//! checked, renewal scans, expiry marks, and cleanup with the calendar.

use chrono::{DateTime, Duration, Utc};
use juy_domain::{AccountStatus, Calendar, ConnectedAccount, Provider};
use juy_store::StoreError;
use juy_store::accounts::{mark_reauth_required, revoke_account, upsert_account};
use juy_store::calendars::upsert_calendars;
use juy_store::push_channels::{
    ChannelTarget, Verification, check, check_many, delete_for_calendar, due_for_renewal, get_for_calendar,
    list_for_account, mark_expired, save, set_expiry, verify,
};

use crate::support::{Fixture, at, fixture, new_account, new_calendar, texts, user};

fn t0() -> DateTime<Utc> {
    at(2, 12, 0)
}

/// An account of `provider` with `count` calendars.
async fn account_with_calendars(
    f: &mut Fixture,
    external_id: &str,
    provider: Provider,
    count: usize,
) -> (ConnectedAccount, Vec<Calendar>) {
    let mut new = new_account(&f.user, external_id);
    new.provider = provider;
    let account = upsert_account(&mut f.conn, &f.key, &new).await.unwrap();
    let listed: Vec<_> = (0..count)
        .map(|n| new_calendar(&account, &format!("{external_id}-cal-{n}"), false))
        .collect();
    let calendars = upsert_calendars(&mut f.conn, &f.key, &f.user, &listed).await.unwrap();
    (account, calendars)
}

async fn save_channel(f: &mut Fixture, calendar: &Calendar, channel: &str, secret: &str, expires_at: DateTime<Utc>) {
    save(
        &mut f.conn,
        &f.user,
        calendar.id,
        calendar.account_id,
        calendar.provider,
        channel,
        Some("res-1"),
        secret,
        expires_at,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_saved_channel_verifies_only_with_its_secret_which_is_stored_hashed() {
    let mut f = fixture().await;
    let (account, calendars) = account_with_calendars(&mut f, "g-1", Provider::Google, 1).await;
    let calendar = &calendars[0];
    save_channel(&mut f, calendar, "ch-1", "secret-token-1", t0()).await;

    let expected = ChannelTarget {
        user_id: f.user.clone(),
        calendar_id: calendar.id,
        account_id: account.id,
        provider: Provider::Google,
        expires_at: t0(),
    };
    assert_eq!(
        verify(&mut f.conn, "ch-1", "secret-token-1").await.unwrap(),
        Some(expected.clone())
    );
    assert_eq!(
        check(&mut f.conn, "ch-1", "secret-token-1").await.unwrap(),
        Verification::Valid(expected)
    );
    assert_eq!(verify(&mut f.conn, "ch-1", "secret-token-2").await.unwrap(), None);
    assert_eq!(verify(&mut f.conn, "ch-1", "").await.unwrap(), None);
    assert_eq!(
        check(&mut f.conn, "ch-1", "secret-token-2").await.unwrap(),
        Verification::WrongSecret
    );
    assert_eq!(
        check(&mut f.conn, "ch-2", "secret-token-1").await.unwrap(),
        Verification::Unknown
    );

    let stored = texts(
        &mut f.conn,
        "SELECT channel_id || ' ' || coalesce(resource_id, '') || ' ' || encode(secret_hash, 'escape') \
         || ' ' || encode(secret_hash, 'hex') AS value FROM push_channels",
    )
    .await;
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].contains("secret-token"), "{stored:?}");

    let got = get_for_calendar(&mut f.conn, &f.user, calendar.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.channel_id.as_str(), got.resource_id.as_deref(), got.expires_at),
        ("ch-1", Some("res-1"), t0())
    );
    assert_eq!(got.provider, Provider::Google);
    assert_eq!(
        get_for_calendar(&mut f.conn, &user("bob"), calendar.id).await.unwrap(),
        None,
        "another user's calendar"
    );
}

#[tokio::test]
async fn saving_again_replaces_the_calendars_channel_and_the_old_one_stops_verifying() {
    let mut f = fixture().await;
    let (_, calendars) = account_with_calendars(&mut f, "ms-1", Provider::Microsoft, 1).await;
    let calendar = &calendars[0];
    save_channel(&mut f, calendar, "sub-1", "old-secret", t0()).await;
    save(
        &mut f.conn,
        &f.user,
        calendar.id,
        calendar.account_id,
        Provider::Microsoft,
        "sub-2",
        None,
        "new-secret",
        t0() + Duration::days(3),
    )
    .await
    .unwrap();

    assert_eq!(
        check(&mut f.conn, "sub-1", "old-secret").await.unwrap(),
        Verification::Unknown
    );
    let target = verify(&mut f.conn, "sub-2", "new-secret").await.unwrap().unwrap();
    assert_eq!(target.provider, Provider::Microsoft);
    assert_eq!(target.expires_at, t0() + Duration::days(3));
    let got = get_for_calendar(&mut f.conn, &f.user, calendar.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.channel_id.as_str(), got.resource_id), ("sub-2", None));
    assert_eq!(
        texts(&mut f.conn, "SELECT count(*)::text AS value FROM push_channels").await,
        ["1"]
    );
}

#[tokio::test]
async fn many_notifications_are_checked_in_one_go_in_order() {
    let mut f = fixture().await;
    let (_, calendars) = account_with_calendars(&mut f, "ms-1", Provider::Microsoft, 2).await;
    save_channel(&mut f, &calendars[0], "sub-a", "cs-a", t0()).await;
    save_channel(&mut f, &calendars[1], "sub-b", "cs-b", t0()).await;

    let checked = check_many(
        &mut f.conn,
        &[
            ("sub-b", "cs-b"),
            ("sub-a", "cs-b"),
            ("sub-x", "cs-a"),
            ("sub-a", "cs-a"),
            ("sub-b", "cs-b"),
        ],
    )
    .await
    .unwrap();
    let calendar_of = |v: &Verification| match v {
        Verification::Valid(target) => Some(target.calendar_id),
        _ => None,
    };
    assert_eq!(
        checked.iter().map(calendar_of).collect::<Vec<_>>(),
        [
            Some(calendars[1].id),
            None,
            None,
            Some(calendars[0].id),
            Some(calendars[1].id)
        ]
    );
    assert_eq!(checked[1], Verification::WrongSecret);
    assert_eq!(checked[2], Verification::Unknown);
    assert!(check_many(&mut f.conn, &[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn only_a_users_own_google_or_microsoft_calendar_gets_a_channel() {
    let mut f = fixture().await;
    let (google, calendars) = account_with_calendars(&mut f, "g-1", Provider::Google, 1).await;
    let (microsoft, _) = account_with_calendars(&mut f, "ms-1", Provider::Microsoft, 1).await;
    let calendar = calendars[0].id;
    let attempt = async |f: &mut Fixture, user: &juy_domain::UserId, account: juy_domain::AccountId, provider| {
        save(&mut f.conn, user, calendar, account, provider, "ch-x", None, "s", t0()).await
    };
    let bob = user("bob");
    assert!(matches!(
        attempt(&mut f, &bob, google.id, Provider::Google).await,
        Err(StoreError::NotFound { what: "calendar", .. })
    ));
    let alice = f.user.clone();
    assert!(matches!(
        attempt(&mut f, &alice, microsoft.id, Provider::Google).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        attempt(&mut f, &alice, google.id, Provider::Microsoft).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        attempt(&mut f, &alice, google.id, Provider::Caldav).await,
        Err(StoreError::InvalidInput(_))
    ));
    assert!(matches!(
        save(
            &mut f.conn,
            &alice,
            calendar,
            google.id,
            Provider::Google,
            "",
            None,
            "s",
            t0()
        )
        .await,
        Err(StoreError::InvalidInput(_))
    ));
    assert_eq!(check(&mut f.conn, "ch-x", "s").await.unwrap(), Verification::Unknown);
}

#[tokio::test]
async fn the_renewal_scan_lists_channels_expiring_soonest_first_of_accounts_that_can_sync() {
    let mut f = fixture().await;
    let (_, active) = account_with_calendars(&mut f, "g-1", Provider::Google, 2).await;
    let (parked_account, parked) = account_with_calendars(&mut f, "g-2", Provider::Google, 1).await;
    save_channel(&mut f, &active[0], "late", "s", t0() + Duration::hours(2)).await;
    save_channel(&mut f, &active[1], "soon", "s", t0() + Duration::hours(1)).await;
    save_channel(&mut f, &parked[0], "parked", "s", t0()).await;

    let ids = |channels: Vec<juy_store::push_channels::StoredChannel>| -> Vec<String> {
        channels.into_iter().map(|c| c.channel_id).collect()
    };
    assert_eq!(
        ids(due_for_renewal(&mut f.conn, t0() + Duration::minutes(90), 10)
            .await
            .unwrap()),
        ["parked", "soon"]
    );
    assert_eq!(
        ids(due_for_renewal(&mut f.conn, t0() + Duration::hours(3), 2)
            .await
            .unwrap()),
        ["parked", "soon"]
    );
    assert!(
        due_for_renewal(&mut f.conn, t0() - Duration::minutes(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        due_for_renewal(&mut f.conn, t0(), 0).await,
        Err(StoreError::InvalidInput(_))
    ));

    // An account awaiting re-authorisation cannot renew anything.
    assert!(
        mark_reauth_required(&mut f.conn, &f.user, parked_account.id, "grant revoked")
            .await
            .unwrap()
    );
    assert_eq!(
        ids(due_for_renewal(&mut f.conn, t0() + Duration::hours(3), 10)
            .await
            .unwrap()),
        ["soon", "late"]
    );
    let mut new = new_account(&f.user, "g-2");
    new.status = AccountStatus::Active;
    upsert_account(&mut f.conn, &f.key, &new).await.unwrap();
    assert_eq!(
        ids(due_for_renewal(&mut f.conn, t0() + Duration::hours(3), 10)
            .await
            .unwrap()),
        ["parked", "soon", "late"],
        "linked again"
    );
}

#[tokio::test]
async fn marking_expired_brings_a_channel_due_and_renewal_in_place_moves_its_expiry() {
    let mut f = fixture().await;
    let (_, calendars) = account_with_calendars(&mut f, "ms-1", Provider::Microsoft, 1).await;
    let calendar = &calendars[0];
    save_channel(&mut f, calendar, "sub-1", "cs", t0() + Duration::days(2)).await;

    assert!(mark_expired(&mut f.conn, "sub-1", t0()).await.unwrap());
    assert_eq!(
        verify(&mut f.conn, "sub-1", "cs").await.unwrap().unwrap().expires_at,
        t0(),
        "still verifies: late notifications are real"
    );
    assert!(
        mark_expired(&mut f.conn, "sub-1", t0() + Duration::hours(1))
            .await
            .unwrap()
    );
    assert_eq!(
        verify(&mut f.conn, "sub-1", "cs").await.unwrap().unwrap().expires_at,
        t0(),
        "never later"
    );
    assert!(!mark_expired(&mut f.conn, "sub-unknown", t0()).await.unwrap());
    assert_eq!(due_for_renewal(&mut f.conn, t0(), 10).await.unwrap().len(), 1);

    let renewed = t0() + Duration::days(6);
    assert!(
        !set_expiry(&mut f.conn, &f.user, calendar.id, "sub-other", renewed)
            .await
            .unwrap()
    );
    assert!(
        set_expiry(&mut f.conn, &f.user, calendar.id, "sub-1", renewed)
            .await
            .unwrap()
    );
    let target = verify(&mut f.conn, "sub-1", "cs").await.unwrap().unwrap();
    assert_eq!(target.expires_at, renewed, "same secret, later expiry");
    assert!(due_for_renewal(&mut f.conn, t0(), 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn channels_are_listed_per_account_deleted_per_calendar_and_go_with_a_revoked_account() {
    let mut f = fixture().await;
    let (account, calendars) = account_with_calendars(&mut f, "g-1", Provider::Google, 2).await;
    let (other, other_calendars) = account_with_calendars(&mut f, "g-2", Provider::Google, 1).await;
    save_channel(&mut f, &calendars[0], "ch-a", "s", t0()).await;
    save_channel(&mut f, &calendars[1], "ch-b", "s", t0()).await;
    save_channel(&mut f, &other_calendars[0], "ch-c", "s", t0()).await;

    let mut listed: Vec<String> = list_for_account(&mut f.conn, &f.user, account.id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.channel_id)
        .collect();
    listed.sort();
    assert_eq!(listed, ["ch-a", "ch-b"]);
    assert!(
        list_for_account(&mut f.conn, &user("bob"), account.id)
            .await
            .unwrap()
            .is_empty()
    );

    let deleted = delete_for_calendar(&mut f.conn, &f.user, calendars[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deleted.channel_id, "ch-a");
    assert_eq!(
        delete_for_calendar(&mut f.conn, &f.user, calendars[0].id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(check(&mut f.conn, "ch-a", "s").await.unwrap(), Verification::Unknown);

    revoke_account(&mut f.conn, &f.user, account.id, "user revoked")
        .await
        .unwrap();
    assert_eq!(check(&mut f.conn, "ch-b", "s").await.unwrap(), Verification::Unknown);
    assert_eq!(
        list_for_account(&mut f.conn, &f.user, other.id).await.unwrap().len(),
        1,
        "other accounts keep theirs"
    );
}
