//! Sync leases: due scans, exclusive leases across connections, fencing of
//! expired leases, and what a run's release leaves behind.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Bool, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use juy_domain::{AccountStatus, Calendar, CalendarId, ConnectedAccount, SyncStatus};
use juy_store::StoreError;
use juy_store::accounts::{get_account, mark_reauth_required, revoke_account, upsert_account};
use juy_store::calendars::{list_calendars, upsert_calendars};
use juy_store::sync_state::{
    Lease, MAX_ERROR_CHARS, cancel_account_leases, checkpoint, lease_due, release_failure, release_success, renew,
    schedule_now,
};

use crate::support::{Fixture, at, exec, fixture, new_account, new_calendar, user};

fn t0() -> DateTime<Utc> {
    at(2, 12, 0)
}

fn minutes(n: i64) -> Duration {
    Duration::minutes(n)
}

/// An account of `status` with `count` calendars.
async fn account_with_calendars(
    f: &mut Fixture,
    external_id: &str,
    status: AccountStatus,
    count: usize,
) -> (ConnectedAccount, Vec<Calendar>) {
    let mut new = new_account(&f.user, external_id);
    new.status = status;
    let account = upsert_account(&mut f.conn, &f.key, &new).await.unwrap();
    let listed: Vec<_> = (0..count)
        .map(|n| new_calendar(&account, &format!("{external_id}-cal-{n}"), false))
        .collect();
    let calendars = upsert_calendars(&mut f.conn, &f.key, &f.user, &listed).await.unwrap();
    (account, calendars)
}

fn ids(leases: &[Lease]) -> HashSet<CalendarId> {
    leases.iter().map(|lease| lease.calendar_id).collect()
}

fn calendar_ids(calendars: &[Calendar]) -> HashSet<CalendarId> {
    calendars.iter().map(|calendar| calendar.id).collect()
}

/// A calendar's sync columns as stored.
#[derive(QueryableByName, Debug, PartialEq, Eq)]
struct State {
    #[diesel(sql_type = Nullable<Text>)]
    lease_owner: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    lease_expires_at: Option<DateTime<Utc>>,
    /// NULL when parked (`'infinity'`), which chrono cannot hold.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    next_sync_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Bool)]
    parked: bool,
    #[diesel(sql_type = Nullable<Text>)]
    sync_cursor: Option<String>,
    #[diesel(sql_type = Integer)]
    consecutive_failures: i32,
    #[diesel(sql_type = Text)]
    sync_status: String,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_synced_at: Option<DateTime<Utc>>,
}

async fn state(conn: &mut AsyncPgConnection, calendar: CalendarId) -> State {
    diesel::sql_query(
        "SELECT lease_owner, lease_expires_at, \
                CASE WHEN next_sync_at = 'infinity' THEN NULL ELSE next_sync_at END AS next_sync_at, \
                coalesce(next_sync_at = 'infinity', false) AS parked, \
                sync_cursor, consecutive_failures, sync_status, last_error, last_synced_at \
         FROM calendars WHERE id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(calendar.0)
    .get_result(conn)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_racing_never_lease_the_same_calendar() {
    let mut f = fixture().await;
    let mut all = HashSet::new();
    for n in 0..3 {
        let (_, calendars) = account_with_calendars(&mut f, &format!("sub-{n}"), AccountStatus::Active, 10).await;
        all.extend(calendar_ids(&calendars));
    }
    let mut other = f.store.conn().await.unwrap();

    async fn drain(conn: &mut AsyncPgConnection, owner: &str) -> Vec<Lease> {
        let mut leased = Vec::new();
        loop {
            let batch = lease_due(conn, owner, t0(), minutes(5), 3).await.unwrap();
            if batch.is_empty() {
                return leased;
            }
            leased.extend(batch);
        }
    }
    let (a, b) = tokio::join!(drain(&mut f.conn, "worker-a"), drain(&mut other, "worker-b"));

    let (a, b) = (ids(&a), ids(&b));
    assert!(
        a.is_disjoint(&b),
        "leased twice: {:?}",
        a.intersection(&b).collect::<Vec<_>>()
    );
    assert_eq!(a.len() + b.len(), all.len());
    assert_eq!(a.union(&b).copied().collect::<HashSet<_>>(), all);
}

#[tokio::test]
async fn a_leaser_skips_calendars_locked_by_a_concurrent_lease_instead_of_waiting() {
    let mut f = fixture().await;
    let (_, calendars) = account_with_calendars(&mut f, "sub-1", AccountStatus::Active, 5).await;
    let mut other = f.store.conn().await.unwrap();

    let (first, second) = f
        .conn
        .transaction(async |conn| {
            // Until this transaction commits, its leased rows stay locked.
            let first = lease_due(conn, "worker-a", t0(), minutes(5), 2).await?;
            let second = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                lease_due(&mut other, "worker-b", t0(), minutes(5), 10),
            )
            .await
            .expect("the second leaser waited for the first one's locks")?;
            Ok::<_, StoreError>((first, second))
        })
        .await
        .unwrap();

    assert_eq!(first.len(), 2);
    assert_eq!(second.len(), 3);
    assert!(ids(&first).is_disjoint(&ids(&second)));
    assert!(
        lease_due(&mut f.conn, "worker-c", t0(), minutes(5), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(&ids(&first) | &ids(&second), calendar_ids(&calendars));
    assert!(first.iter().all(|lease| lease.owner == "worker-a"));
}

#[tokio::test]
async fn a_lease_carries_what_the_run_needs() {
    let mut f = fixture().await;
    let mut new = new_account(&f.user, "dav-1");
    new.provider = juy_domain::Provider::Caldav;
    new.server_url = Some("https://dav.example.org/".into());
    let account = upsert_account(&mut f.conn, &f.key, &new).await.unwrap();
    let calendar = upsert_calendars(
        &mut f.conn,
        &f.key,
        &f.user,
        &[new_calendar(&account, "/cal/home/", false)],
    )
    .await
    .unwrap()
    .remove(0);

    let leases = lease_due(&mut f.conn, "worker-a", t0(), minutes(5), 10).await.unwrap();

    assert_eq!(
        leases,
        vec![Lease {
            owner: "worker-a".into(),
            expires_at: t0() + minutes(5),
            user_id: f.user.clone(),
            calendar_id: calendar.id,
            account_id: account.id,
            provider: juy_domain::Provider::Caldav,
            provider_calendar_id: "/cal/home/".into(),
            server_url: Some("https://dav.example.org/".into()),
            sync_cursor: None,
            consecutive_failures: 0,
            time_zone: Some("Europe/Paris".into()),
            last_synced_at: None,
            account_external_id: "dav-1".into(),
        }]
    );
    let stored = state(&mut f.conn, calendar.id).await;
    assert_eq!(stored.lease_owner.as_deref(), Some("worker-a"));
    assert_eq!(stored.lease_expires_at, Some(t0() + minutes(5)));
    // While leased, the calendar falls due again when its lease expires.
    assert_eq!(stored.next_sync_at, Some(t0() + minutes(5)));
}

#[tokio::test]
async fn lease_due_refuses_arguments_it_cannot_act_on() {
    let mut f = fixture().await;
    for (owner, lease_for, limit) in [("", minutes(1), 1), ("w", minutes(0), 1), ("w", minutes(1), 0)] {
        let err = lease_due(&mut f.conn, owner, t0(), lease_for, limit).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidInput(_)), "{err}");
    }
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_the_old_owner_then_changes_nothing() {
    let mut f = fixture().await;
    let (account, calendars) = account_with_calendars(&mut f, "sub-1", AccountStatus::Active, 1).await;
    let calendar = calendars[0].id;
    let mut old = lease_due(&mut f.conn, "worker-a", t0(), minutes(1), 10)
        .await
        .unwrap()
        .remove(0);
    assert!(checkpoint(&mut f.conn, &old, Some("page-1")).await.unwrap());

    assert!(
        lease_due(&mut f.conn, "worker-b", t0() + Duration::seconds(30), minutes(1), 10)
            .await
            .unwrap()
            .is_empty(),
        "a live lease was taken over"
    );
    let new = lease_due(&mut f.conn, "worker-b", t0() + Duration::seconds(61), minutes(1), 10)
        .await
        .unwrap();
    assert_eq!(ids(&new), HashSet::from([calendar]));
    assert_eq!(new[0].sync_cursor.as_deref(), Some("page-1"));
    let before = state(&mut f.conn, calendar).await;

    let late = t0() + Duration::seconds(70);
    assert!(!checkpoint(&mut f.conn, &old, Some("stale-page")).await.unwrap());
    assert!(
        !release_success(&mut f.conn, &old, Some("stale-token"), late + minutes(5), late)
            .await
            .unwrap()
    );
    assert!(!release_failure(&mut f.conn, &old, "stale failure", late).await.unwrap());
    let old_expiry = old.expires_at;
    assert!(!renew(&mut f.conn, &mut old, late, minutes(1)).await.unwrap());
    assert_eq!(old.expires_at, old_expiry);

    assert_eq!(state(&mut f.conn, calendar).await, before);
    assert_eq!(before.lease_owner.as_deref(), Some("worker-b"));
    assert_eq!(before.sync_cursor.as_deref(), Some("page-1"));
    assert_eq!(before.sync_status, "pending");
    let account = get_account(&mut f.conn, &f.key, &f.user, account.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(account.last_sync_at, None);

    assert!(checkpoint(&mut f.conn, &new[0], Some("page-2")).await.unwrap());
    assert!(
        release_success(&mut f.conn, &new[0], Some("token-1"), late + minutes(5), late)
            .await
            .unwrap()
    );
    assert_eq!(
        state(&mut f.conn, calendar).await.sync_cursor.as_deref(),
        Some("token-1")
    );
}

#[tokio::test]
async fn renewing_extends_the_lease_and_retires_the_old_fencing_value() {
    let mut f = fixture().await;
    account_with_calendars(&mut f, "sub-1", AccountStatus::Active, 1).await;
    let mut lease = lease_due(&mut f.conn, "worker-a", t0(), minutes(1), 10)
        .await
        .unwrap()
        .remove(0);
    let stale = lease.clone();

    assert!(
        renew(&mut f.conn, &mut lease, t0() + Duration::seconds(50), minutes(1))
            .await
            .unwrap()
    );
    assert_eq!(lease.expires_at, t0() + Duration::seconds(110));
    assert_eq!(
        state(&mut f.conn, lease.calendar_id).await.next_sync_at,
        Some(lease.expires_at)
    );
    // Past the first expiry, the renewed lease still holds.
    assert!(
        lease_due(&mut f.conn, "worker-b", t0() + Duration::seconds(61), minutes(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A renewal never shortens the lease.
    assert!(renew(&mut f.conn, &mut lease, t0(), minutes(1)).await.unwrap());
    assert_eq!(lease.expires_at, t0() + Duration::seconds(110));

    assert!(!checkpoint(&mut f.conn, &stale, Some("stale")).await.unwrap());
    assert!(checkpoint(&mut f.conn, &lease, Some("page-1")).await.unwrap());
}

#[tokio::test]
async fn calendars_of_revoked_or_reauth_required_accounts_are_never_leased() {
    let mut f = fixture().await;
    let mut syncable = HashSet::new();
    for (name, status) in [
        ("active", AccountStatus::Active),
        ("pending", AccountStatus::Pending),
        ("error", AccountStatus::Error),
    ] {
        let (_, calendars) = account_with_calendars(&mut f, name, status, 2).await;
        syncable.extend(calendar_ids(&calendars));
    }
    // Parked by the store's own status change...
    let (reauth, _) = account_with_calendars(&mut f, "reauth", AccountStatus::Active, 2).await;
    assert!(
        mark_reauth_required(&mut f.conn, &f.user, reauth.id, "grant revoked")
            .await
            .unwrap()
    );
    // ...and not parked: the account's status alone keeps them out.
    for (name, status) in [("raw-reauth", "reauth_required"), ("raw-revoked", "revoked")] {
        let (account, _) = account_with_calendars(&mut f, name, AccountStatus::Active, 2).await;
        exec(
            &mut f.conn,
            &format!(
                "UPDATE connected_accounts SET status = '{status}', credentials_enc = NULL WHERE id = '{}'",
                account.id
            ),
        )
        .await;
    }

    let far_future = t0() + Duration::days(365);
    let leased = lease_due(&mut f.conn, "worker-a", far_future, minutes(5), 100)
        .await
        .unwrap();
    assert_eq!(ids(&leased), syncable);
    assert!(
        lease_due(&mut f.conn, "worker-a", far_future + minutes(10), minutes(5), 100)
            .await
            .unwrap()
            .iter()
            .all(|lease| syncable.contains(&lease.calendar_id))
    );
}

#[tokio::test]
async fn reauth_required_cancels_in_flight_leases_and_relinking_makes_the_calendars_due() {
    let mut f = fixture().await;
    let (account, calendars) = account_with_calendars(&mut f, "sub-1", AccountStatus::Active, 2).await;
    let mut leases = lease_due(&mut f.conn, "worker-a", t0(), minutes(5), 10).await.unwrap();
    assert_eq!(leases.len(), 2);

    assert!(
        mark_reauth_required(&mut f.conn, &f.user, account.id, "grant revoked")
            .await
            .unwrap()
    );

    let later = t0() + minutes(1);
    assert!(!renew(&mut f.conn, &mut leases[0], later, minutes(5)).await.unwrap());
    assert!(!checkpoint(&mut f.conn, &leases[0], Some("page")).await.unwrap());
    assert!(
        !release_success(&mut f.conn, &leases[1], Some("token"), later, later)
            .await
            .unwrap()
    );
    for calendar in &calendars {
        let stored = state(&mut f.conn, calendar.id).await;
        assert!(stored.parked, "{stored:?}");
        assert_eq!((stored.lease_owner, stored.lease_expires_at), (None, None));
    }
    assert!(
        lease_due(&mut f.conn, "worker-b", t0() + Duration::days(365), minutes(5), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !schedule_now(&mut f.conn, &f.user, calendars[0].id, later)
            .await
            .unwrap()
    );
    assert_eq!(
        get_account(&mut f.conn, &f.key, &f.user, account.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        AccountStatus::ReauthRequired
    );

    // Linking the account again makes its calendars due at once.
    upsert_account(&mut f.conn, &f.key, &new_account(&f.user, "sub-1"))
        .await
        .unwrap();
    let again = lease_due(&mut f.conn, "worker-b", later, minutes(5), 10).await.unwrap();
    assert_eq!(ids(&again), calendar_ids(&calendars));
}

#[tokio::test]
async fn a_run_of_a_revoked_account_can_write_nothing_more() {
    let mut f = fixture().await;
    let (account, _) = account_with_calendars(&mut f, "sub-1", AccountStatus::Active, 1).await;
    let mut lease = lease_due(&mut f.conn, "worker-a", t0(), minutes(5), 10)
        .await
        .unwrap()
        .remove(0);

    revoke_account(&mut f.conn, &f.user, account.id, "user revoked")
        .await
        .unwrap();

    let later = t0() + minutes(1);
    assert!(!renew(&mut f.conn, &mut lease, later, minutes(5)).await.unwrap());
    assert!(!checkpoint(&mut f.conn, &lease, Some("page")).await.unwrap());
    assert!(
        !release_success(&mut f.conn, &lease, Some("token"), later, later)
            .await
            .unwrap()
    );
    assert!(!release_failure(&mut f.conn, &lease, "failed", later).await.unwrap());
    let account = get_account(&mut f.conn, &f.key, &f.user, account.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((account.status, account.last_sync_at), (AccountStatus::Revoked, None));
}

#[tokio::test]
async fn cancel_account_leases_touches_only_that_account() {
    let mut f = fixture().await;
    let (one, one_calendars) = account_with_calendars(&mut f, "sub-1", AccountStatus::Active, 2).await;
    let (_, two_calendars) = account_with_calendars(&mut f, "sub-2", AccountStatus::Active, 1).await;
    lease_due(&mut f.conn, "worker-a", t0(), minutes(5), 10).await.unwrap();

    assert_eq!(cancel_account_leases(&mut f.conn, &f.user, one.id).await.unwrap(), 2);
    assert_eq!(
        cancel_account_leases(&mut f.conn, &user("bob"), one.id).await.unwrap(),
        0
    );

    for calendar in &one_calendars {
        assert!(state(&mut f.conn, calendar.id).await.parked);
    }
    let two = state(&mut f.conn, two_calendars[0].id).await;
    assert!(!two.parked);
    assert_eq!(two.lease_owner.as_deref(), Some("worker-a"));
}

#[tokio::test]
async fn calendars_not_yet_due_are_not_leased_and_never_synced_ones_come_first() {
    let mut f = fixture().await;
    let (_, calendars) = account_with_calendars(&mut f, "sub-1", AccountStatus::Active, 1).await;
    let synced = calendars[0].id;
    let lease = lease_due(&mut f.conn, "worker-a", t0(), minutes(1), 10)
        .await
        .unwrap()
        .remove(0);
    assert!(
        release_success(&mut f.conn, &lease, Some("token-1"), t0() + minutes(5), t0())
            .await
            .unwrap()
    );

    assert!(
        lease_due(&mut f.conn, "worker-a", t0() + minutes(4), minutes(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let (_, fresh) = account_with_calendars(&mut f, "sub-2", AccountStatus::Active, 1).await;
    let first = lease_due(&mut f.conn, "worker-a", t0() + minutes(10), minutes(1), 1)
        .await
        .unwrap();
    assert_eq!(ids(&first), HashSet::from([fresh[0].id]));
    let second = lease_due(&mut f.conn, "worker-a", t0() + minutes(10), minutes(1), 1)
        .await
        .unwrap();
    assert_eq!(ids(&second), HashSet::from([synced]));
}

#[tokio::test]
async fn a_successful_run_records_its_result_and_activates_a_pending_account() {
    let mut f = fixture().await;
    let (account, calendars) = account_with_calendars(&mut f, "sub-1", AccountStatus::Pending, 1).await;
    let calendar = calendars[0].id;
    let lease = lease_due(&mut f.conn, "worker-a", t0(), minutes(1), 10)
        .await
        .unwrap()
        .remove(0);
    assert!(checkpoint(&mut f.conn, &lease, Some("page-1")).await.unwrap());
    assert!(
        release_failure(&mut f.conn, &lease, "provider unavailable", t0() + minutes(1))
            .await
            .unwrap()
    );
    let lease = lease_due(&mut f.conn, "worker-a", t0() + minutes(1), minutes(1), 10)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(lease.sync_cursor.as_deref(), Some("page-1"));
    assert_eq!(lease.consecutive_failures, 1);

    let done = t0() + minutes(1) + Duration::seconds(10);
    assert!(
        release_success(&mut f.conn, &lease, Some("token-1"), done + minutes(5), done)
            .await
            .unwrap()
    );

    assert_eq!(
        state(&mut f.conn, calendar).await,
        State {
            lease_owner: None,
            lease_expires_at: None,
            next_sync_at: Some(done + minutes(5)),
            parked: false,
            sync_cursor: Some("token-1".into()),
            consecutive_failures: 0,
            sync_status: "ok".into(),
            last_error: None,
            last_synced_at: Some(done),
        }
    );
    let listed = list_calendars(&mut f.conn, &f.key, &f.user, None).await.unwrap();
    assert_eq!(listed[0].sync_status, SyncStatus::Ok);
    assert_eq!(listed[0].last_synced_at, Some(done));
    let account = get_account(&mut f.conn, &f.key, &f.user, account.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(account.status, AccountStatus::Active);
    assert_eq!(account.last_sync_at, Some(done));

    // A calendar finishing with an earlier clock does not move the account's last sync back.
    let lease = lease_due(&mut f.conn, "worker-a", done + minutes(5), minutes(1), 10)
        .await
        .unwrap()
        .remove(0);
    assert!(
        release_success(&mut f.conn, &lease, None, done + minutes(10), done - minutes(1))
            .await
            .unwrap()
    );
    let account = get_account(&mut f.conn, &f.key, &f.user, account.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(account.last_sync_at, Some(done));
    assert_eq!(state(&mut f.conn, calendar).await.sync_cursor, None);
}

#[tokio::test]
async fn a_failed_run_counts_keeps_the_cursor_and_cuts_long_reasons() {
    let mut f = fixture().await;
    let (account, calendars) = account_with_calendars(&mut f, "sub-1", AccountStatus::Active, 1).await;
    let calendar = calendars[0].id;
    let lease = lease_due(&mut f.conn, "worker-a", t0(), minutes(1), 10)
        .await
        .unwrap()
        .remove(0);
    assert!(checkpoint(&mut f.conn, &lease, Some("page-3")).await.unwrap());
    let long = "é".repeat(MAX_ERROR_CHARS + 100);
    assert!(
        release_failure(&mut f.conn, &lease, &long, t0() + minutes(2))
            .await
            .unwrap()
    );

    let stored = state(&mut f.conn, calendar).await;
    assert_eq!(stored.consecutive_failures, 1);
    assert_eq!(stored.sync_status, "error");
    assert_eq!(
        stored.last_error.map(|text| text.chars().count()),
        Some(MAX_ERROR_CHARS)
    );
    assert_eq!(stored.sync_cursor.as_deref(), Some("page-3"));
    assert_eq!((stored.lease_owner, stored.last_synced_at), (None, None));
    // The caller's backoff is honoured.
    assert!(
        lease_due(&mut f.conn, "worker-a", t0() + minutes(1), minutes(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let lease = lease_due(&mut f.conn, "worker-a", t0() + minutes(2), minutes(1), 10)
        .await
        .unwrap()
        .remove(0);
    assert!(
        release_failure(&mut f.conn, &lease, "throttled", t0() + minutes(6))
            .await
            .unwrap()
    );
    let stored = state(&mut f.conn, calendar).await;
    assert_eq!(stored.consecutive_failures, 2);
    assert_eq!(stored.last_error.as_deref(), Some("throttled"));
    let listed = list_calendars(&mut f.conn, &f.key, &f.user, None).await.unwrap();
    assert_eq!(listed[0].sync_status, SyncStatus::Error);
    assert_eq!(listed[0].last_error.as_deref(), Some("throttled"));
    let account = get_account(&mut f.conn, &f.key, &f.user, account.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((account.status, account.last_sync_at), (AccountStatus::Active, None));
}

#[tokio::test]
async fn sync_now_makes_a_calendar_due_and_a_request_during_a_run_is_kept() {
    let mut f = fixture().await;
    let (_, calendars) = account_with_calendars(&mut f, "sub-1", AccountStatus::Active, 1).await;
    let calendar = calendars[0].id;
    let lease = lease_due(&mut f.conn, "worker-a", t0(), minutes(1), 10)
        .await
        .unwrap()
        .remove(0);
    assert!(
        release_success(&mut f.conn, &lease, Some("token-1"), t0() + minutes(60), t0())
            .await
            .unwrap()
    );
    let now = t0() + minutes(1);
    assert!(
        lease_due(&mut f.conn, "worker-a", now, minutes(1), 10)
            .await
            .unwrap()
            .is_empty()
    );

    assert!(schedule_now(&mut f.conn, &f.user, calendar, now).await.unwrap());
    let lease = lease_due(&mut f.conn, "worker-a", now, minutes(1), 10)
        .await
        .unwrap()
        .remove(0);

    // Asked again while the run is under way: not leased twice, but run again after it.
    let during = now + Duration::seconds(20);
    assert!(schedule_now(&mut f.conn, &f.user, calendar, during).await.unwrap());
    assert!(
        lease_due(&mut f.conn, "worker-b", during, minutes(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let done = now + Duration::seconds(30);
    assert!(
        release_success(&mut f.conn, &lease, Some("token-2"), done + minutes(60), done)
            .await
            .unwrap()
    );
    let again = lease_due(&mut f.conn, "worker-b", done, minutes(1), 10).await.unwrap();
    assert_eq!(ids(&again), HashSet::from([calendar]));

    // Without a request during the run, the next run waits for its time.
    assert!(
        release_success(&mut f.conn, &again[0], Some("token-3"), done + minutes(60), done)
            .await
            .unwrap()
    );
    assert!(
        lease_due(&mut f.conn, "worker-b", done, minutes(1), 10)
            .await
            .unwrap()
            .is_empty()
    );

    let err = schedule_now(&mut f.conn, &user("bob"), calendar, now)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { what: "calendar", .. }), "{err}");
}
