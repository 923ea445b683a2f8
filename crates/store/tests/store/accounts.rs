//! Connected accounts: linking, credentials, revocation, the admin listing.

use juy_domain::{AccountStatus, Provider};
use juy_store::accounts::{
    AdminAccountFilter, AdminAccountRow, admin_list_accounts, get_account, list_accounts, load_credentials,
    upsert_account,
};
use juy_store::calendars::upsert_calendars;

use crate::support::{exec, fixture, new_account, new_calendar, texts, user};

#[tokio::test]
async fn linking_the_same_external_account_twice_updates_one_row() {
    let mut f = fixture().await;
    let first = upsert_account(&mut f.conn, &f.key, &new_account(&f.user, "sub-1"))
        .await
        .unwrap();
    let mut again = new_account(&f.user, "sub-1");
    again.display_name = Some("renamed".into());
    again.scopes = vec!["calendar".into(), "calendar.events".into()];
    let second = upsert_account(&mut f.conn, &f.key, &again).await.unwrap();

    assert_eq!(second.id, first.id);
    assert_eq!(second.connected_at, first.connected_at);
    assert_eq!(second.display_name.as_deref(), Some("renamed"));
    assert_eq!(second.scopes, vec!["calendar".to_owned(), "calendar.events".to_owned()]);
    let listed = list_accounts(&mut f.conn, &f.key, &f.user).await.unwrap();
    assert_eq!(listed, vec![second]);
}

#[tokio::test]
async fn an_update_without_credentials_keeps_the_stored_ones() {
    let mut f = fixture().await;
    let account = upsert_account(&mut f.conn, &f.key, &new_account(&f.user, "sub-1"))
        .await
        .unwrap();
    let mut status_only = new_account(&f.user, "sub-1");
    status_only.credentials = None;
    status_only.status = AccountStatus::Error;
    upsert_account(&mut f.conn, &f.key, &status_only).await.unwrap();

    let credentials = load_credentials(&mut f.conn, &f.key, &f.user, account.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(credentials.as_slice(), b"{\"refresh_token\":\"r-1\"}");
}

#[tokio::test]
async fn revoking_an_account_drops_its_credentials() {
    let mut f = fixture().await;
    let account = upsert_account(&mut f.conn, &f.key, &new_account(&f.user, "sub-1"))
        .await
        .unwrap();
    assert!(
        load_credentials(&mut f.conn, &f.key, &f.user, account.id)
            .await
            .unwrap()
            .is_some()
    );

    let mut revoke = new_account(&f.user, "sub-1");
    revoke.status = AccountStatus::Revoked;
    let revoked = upsert_account(&mut f.conn, &f.key, &revoke).await.unwrap();

    assert_eq!(revoked.status, AccountStatus::Revoked);
    assert!(
        load_credentials(&mut f.conn, &f.key, &f.user, account.id)
            .await
            .unwrap()
            .is_none()
    );
    let revoked_at = texts(
        &mut f.conn,
        "SELECT coalesce(revoked_at::text, 'null') AS value FROM connected_accounts",
    )
    .await;
    assert_ne!(revoked_at, vec!["null".to_owned()]);

    // Linking again clears the revocation.
    let relinked = upsert_account(&mut f.conn, &f.key, &new_account(&f.user, "sub-1"))
        .await
        .unwrap();
    assert_eq!(relinked.id, account.id);
    assert!(
        load_credentials(&mut f.conn, &f.key, &f.user, account.id)
            .await
            .unwrap()
            .is_some()
    );
    let revoked_at = texts(
        &mut f.conn,
        "SELECT coalesce(revoked_at::text, 'null') AS value FROM connected_accounts",
    )
    .await;
    assert_eq!(revoked_at, vec!["null".to_owned()]);
}

#[tokio::test]
async fn another_users_account_is_not_found() {
    let mut f = fixture().await;
    let account = upsert_account(&mut f.conn, &f.key, &new_account(&f.user, "sub-1"))
        .await
        .unwrap();
    let bob = user("bob");
    let bob_key = f.store.data_key(&mut f.conn, &bob).await.unwrap();

    assert!(
        get_account(&mut f.conn, &bob_key, &bob, account.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        load_credentials(&mut f.conn, &bob_key, &bob, account.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(list_accounts(&mut f.conn, &bob_key, &bob).await.unwrap().is_empty());
    assert_eq!(
        get_account(&mut f.conn, &f.key, &f.user, account.id).await.unwrap(),
        Some(account)
    );
}

#[tokio::test]
async fn admin_listing_pages_through_every_account_in_order() {
    let mut f = fixture().await;
    let bob = user("bob");
    let bob_key = f.store.data_key(&mut f.conn, &bob).await.unwrap();
    let mut accounts = Vec::new();
    for (who, key, external) in [
        (&f.user, &f.key, "a-1"),
        (&f.user, &f.key, "a-2"),
        (&bob, &bob_key, "b-1"),
        (&bob, &bob_key, "b-2"),
        (&bob, &bob_key, "b-3"),
    ] {
        accounts.push(
            upsert_account(&mut f.conn, key, &new_account(who, external))
                .await
                .unwrap(),
        );
    }
    let mut microsoft = new_account(&bob, "b-4");
    microsoft.provider = Provider::Microsoft;
    microsoft.status = AccountStatus::ReauthRequired;
    accounts.push(upsert_account(&mut f.conn, &bob_key, &microsoft).await.unwrap());
    // Ties on connected_at across users and accounts exercise the whole sort key.
    exec(
        &mut f.conn,
        "UPDATE connected_accounts SET connected_at = '2026-03-01T09:00:00Z'",
    )
    .await;
    exec(
        &mut f.conn,
        "UPDATE connected_accounts SET connected_at = '2026-03-01T08:00:00Z' WHERE external_account_id = 'b-3'",
    )
    .await;
    upsert_calendars(
        &mut f.conn,
        &bob_key,
        &bob,
        &[
            new_calendar(&accounts[2], "one", false),
            new_calendar(&accounts[2], "two", true),
        ],
    )
    .await
    .unwrap();

    let everything = admin_list_accounts(&mut f.conn, &AdminAccountFilter::default(), None, 100)
        .await
        .unwrap();
    assert_eq!(everything.len(), 6);
    let keys: Vec<_> = everything
        .iter()
        .map(|row| (row.connected_at, row.user_id.clone(), row.account_id))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_by(|x, y| {
        x.0.cmp(&y.0)
            .then_with(|| x.1.as_str().cmp(y.1.as_str()))
            .then_with(|| x.2.cmp(&y.2))
    });
    assert_eq!(keys, sorted);
    assert_eq!(everything[0].account_id, accounts[4].id, "the earliest first");
    let b1 = everything.iter().find(|row| row.account_id == accounts[2].id).unwrap();
    assert_eq!(b1.calendar_count, 2);
    assert!(
        everything
            .iter()
            .filter(|row| row.account_id != accounts[2].id)
            .all(|row| row.calendar_count == 0)
    );

    let mut paged: Vec<AdminAccountRow> = Vec::new();
    let mut after = None;
    loop {
        let page = admin_list_accounts(&mut f.conn, &AdminAccountFilter::default(), after, 2)
            .await
            .unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.cursor());
        paged.extend(page);
    }
    assert_eq!(paged, everything);

    let bobs = AdminAccountFilter {
        user_id: Some(bob.clone()),
        ..Default::default()
    };
    assert_eq!(
        admin_list_accounts(&mut f.conn, &bobs, None, 100).await.unwrap().len(),
        4
    );
    let graph = AdminAccountFilter {
        provider: Some(Provider::Microsoft),
        ..Default::default()
    };
    let graph_rows = admin_list_accounts(&mut f.conn, &graph, None, 100).await.unwrap();
    assert_eq!(
        graph_rows.iter().map(|row| row.account_id).collect::<Vec<_>>(),
        vec![accounts[5].id]
    );
    let reauth = AdminAccountFilter {
        user_id: Some(f.user.clone()),
        status: Some(AccountStatus::ReauthRequired),
        ..Default::default()
    };
    assert!(
        admin_list_accounts(&mut f.conn, &reauth, None, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn revoke_account_purges_calendars_and_events_in_one_go_and_keeps_the_row() {
    use juy_store::accounts::{read_credentials, revoke_account};
    use juy_store::events::upsert_events;

    let mut f = fixture().await;
    let account = upsert_account(&mut f.conn, &f.key, &new_account(&f.user, "sub-1"))
        .await
        .unwrap();
    let calendars = upsert_calendars(
        &mut f.conn,
        &f.key,
        &f.user,
        &[
            new_calendar(&account, "cal-1", true),
            new_calendar(&account, "cal-2", false),
        ],
    )
    .await
    .unwrap();
    let events: Vec<_> = calendars
        .iter()
        .map(|c| {
            crate::support::event(
                c,
                &format!("ev-{}", c.id),
                crate::support::at(5, 9, 0),
                crate::support::at(5, 10, 0),
            )
        })
        .collect();
    upsert_events(
        &mut f.conn,
        &f.key,
        &events,
        chrono::Utc::now(),
        chrono::Duration::days(30),
    )
    .await
    .unwrap();

    let revoked = revoke_account(&mut f.conn, &f.user, account.id, "Revoked by the user.")
        .await
        .unwrap();
    assert_eq!((revoked.calendars, revoked.events), (2, 2));
    let state = read_credentials(&mut f.conn, &f.key, &f.user, account.id, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.status, AccountStatus::Revoked);
    assert!(state.credentials.is_none());
    let row = get_account(&mut f.conn, &f.key, &f.user, account.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status_reason.as_deref(), Some("Revoked by the user."));
    assert_eq!(
        texts(&mut f.conn, "SELECT count(*)::text AS value FROM calendars").await,
        vec!["0".to_owned()]
    );
    // Again: harmless. Another user's account: not found.
    revoke_account(&mut f.conn, &f.user, account.id, "again").await.unwrap();
    assert!(
        revoke_account(&mut f.conn, &user("mallory"), account.id, "x")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn credential_updates_under_lock_replace_or_mark_reauth_and_skip_revoked_accounts() {
    use futures::FutureExt as _;
    use juy_store::accounts::{CredentialUpdate, mark_reauth_required, read_credentials, update_credentials_locked};

    let mut f = fixture().await;
    let account = upsert_account(&mut f.conn, &f.key, &new_account(&f.user, "sub-1"))
        .await
        .unwrap();
    let seen = update_credentials_locked(&mut f.conn, &f.key, &f.user, account.id, |current| {
        async move {
            let old = current.credentials.as_ref().map(|c| c.to_vec());
            CredentialUpdate::Replace(zeroize::Zeroizing::new(b"rotated".to_vec()), old)
        }
        .boxed()
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(seen.as_deref(), Some(&b"{\"refresh_token\":\"r-1\"}"[..]));
    let now = read_credentials(&mut f.conn, &f.key, &f.user, account.id, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.credentials.as_ref().map(|c| c.to_vec()), Some(b"rotated".to_vec()));

    update_credentials_locked(&mut f.conn, &f.key, &f.user, account.id, |_| {
        async { CredentialUpdate::ReauthRequired("link again".into(), ()) }.boxed()
    })
    .await
    .unwrap()
    .unwrap();
    let now = read_credentials(&mut f.conn, &f.key, &f.user, account.id, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.status, AccountStatus::ReauthRequired);
    assert!(now.credentials.is_none());
    // A refresh finishing after the account was marked cannot bring credentials back.
    assert!(
        !juy_store::accounts::replace_credentials(&mut f.conn, &f.key, &f.user, account.id, b"late")
            .await
            .unwrap()
    );
    assert!(
        mark_reauth_required(&mut f.conn, &f.user, account.id, "again")
            .await
            .unwrap()
    );
    let missing = update_credentials_locked(&mut f.conn, &f.key, &f.user, juy_domain::AccountId::new(), |_| {
        async { CredentialUpdate::Keep(()) }.boxed()
    })
    .await
    .unwrap();
    assert!(missing.is_none());
}
