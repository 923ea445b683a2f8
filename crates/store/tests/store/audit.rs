//! The audit trail: appended, listed newest first with filters, never changed
//! — not even by the role that owns the table — and emptied of one user only
//! by their erasure, which records itself.

use diesel_async::RunQueryDsl;
use juy_domain::UserId;
use juy_store::audit::{AuditFilter, NewAuditEvent, erase_user, list, record};

use crate::support::{fixture, user};

fn entry(actor: &str, action: &str, subject: Option<&UserId>, result: &str) -> NewAuditEvent {
    NewAuditEvent {
        actor: actor.to_owned(),
        actor_roles: if actor == "root-admin" {
            vec!["admin".into()]
        } else {
            Vec::new()
        },
        action: action.to_owned(),
        subject: subject.cloned(),
        target: Some("connections/0190a7c5-0000-7000-8000-000000000001".into()),
        result: result.to_owned(),
        request_id: Some("req-1".into()),
    }
}

#[tokio::test]
async fn entries_are_listed_newest_first_by_actor_user_action_and_page() {
    let mut f = fixture().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let mut recorded = Vec::new();
    for e in [
        entry("alice", "calendar.events.read", Some(&alice), "OK"),
        entry("alice", "connection.revoke", Some(&alice), "OK"),
        entry("bob", "connection.connect", Some(&bob), "INVALID_ARGUMENT"),
        entry("root-admin", "admin.connection.revoke", Some(&alice), "OK"),
        entry("bob", "admin.connections.list", None, "PERMISSION_DENIED"),
    ] {
        recorded.push(record(&mut f.conn, &e).await.unwrap());
    }
    assert!(recorded.windows(2).all(|w| w[0].seq < w[1].seq), "seq grows");
    assert_eq!(recorded[3].actor_roles, vec!["admin".to_owned()]);
    assert_eq!(recorded[2].result, "INVALID_ARGUMENT");

    let seqs = |events: &[juy_store::audit::AuditEvent]| events.iter().map(|e| e.seq).collect::<Vec<_>>();
    let all = list(&mut f.conn, &AuditFilter::default(), 100).await.unwrap();
    assert_eq!(seqs(&all), recorded.iter().rev().map(|e| e.seq).collect::<Vec<_>>());

    let about_alice = AuditFilter {
        user: Some(alice.clone()),
        ..Default::default()
    };
    let found = list(&mut f.conn, &about_alice, 100).await.unwrap();
    assert_eq!(seqs(&found), vec![recorded[3].seq, recorded[1].seq, recorded[0].seq]);

    let connections = AuditFilter {
        action: Some("connection".into()),
        ..Default::default()
    };
    let found = list(&mut f.conn, &connections, 100).await.unwrap();
    assert_eq!(
        seqs(&found),
        vec![recorded[2].seq, recorded[1].seq],
        "a prefix matches whole words only"
    );

    let by_bob = AuditFilter {
        actor: Some("bob".into()),
        ..Default::default()
    };
    let page1 = list(&mut f.conn, &by_bob, 1).await.unwrap();
    assert_eq!(seqs(&page1), vec![recorded[4].seq]);
    let page2 = list(
        &mut f.conn,
        &AuditFilter {
            before_seq: Some(page1[0].seq),
            ..by_bob
        },
        1,
    )
    .await
    .unwrap();
    assert_eq!(seqs(&page2), vec![recorded[2].seq]);
}

#[tokio::test]
async fn the_trail_refuses_update_delete_and_truncate_even_to_its_owner() {
    let mut f = fixture().await;
    let alice = user("alice");
    let kept = record(&mut f.conn, &entry("alice", "connection.revoke", Some(&alice), "OK"))
        .await
        .unwrap();
    // The test connects as the superuser that owns the table: the trigger holds for it too.
    for sql in [
        "UPDATE audit_events SET result = 'PERMISSION_DENIED'",
        "UPDATE audit_events SET actor = 'someone-else' WHERE seq > 0",
        "DELETE FROM audit_events",
        // (A plain TRUNCATE is refused before the trigger: the forwarding queue refers to the table.)
        "TRUNCATE audit_events CASCADE",
    ] {
        let refused = diesel::sql_query(sql).execute(&mut f.conn).await.unwrap_err();
        assert!(
            refused.to_string().contains("append-only"),
            "{sql} must be refused, got {refused}"
        );
    }
    let all = list(&mut f.conn, &AuditFilter::default(), 10).await.unwrap();
    assert_eq!(all, vec![kept], "nothing changed");
}

#[tokio::test]
async fn erasing_a_user_removes_their_entries_and_records_only_the_erasure() {
    let mut f = fixture().await;
    let (alice, bob) = (user("alice"), user("bob"));
    record(&mut f.conn, &entry("alice", "calendar.events.read", Some(&alice), "OK"))
        .await
        .unwrap();
    record(
        &mut f.conn,
        &entry("root-admin", "admin.connection.revoke", Some(&alice), "OK"),
    )
    .await
    .unwrap();
    let bobs = record(&mut f.conn, &entry("bob", "calendar.events.read", Some(&bob), "OK"))
        .await
        .unwrap();

    let erased = erase_user(&mut f.conn, &alice, Some("req-erase")).await.unwrap();
    assert_eq!(erased, 2);

    let all = list(&mut f.conn, &AuditFilter::default(), 10).await.unwrap();
    assert_eq!(all.len(), 2);
    let erasure = &all[0];
    assert_eq!(
        (
            erasure.actor.as_str(),
            erasure.action.as_str(),
            erasure.subject_user_id.as_deref()
        ),
        ("alice", "data.erase", Some("alice"))
    );
    assert_eq!(
        (erasure.target.as_deref(), erasure.request_id.as_deref()),
        (None, Some("req-erase"))
    );
    assert_eq!(all[1], bobs, "other users' entries stay");
    // The erasure opened no door: a plain delete is still refused.
    let refused = diesel::sql_query("DELETE FROM audit_events WHERE actor = 'bob'")
        .execute(&mut f.conn)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("append-only"));
}

#[tokio::test]
async fn forwarding_queues_new_entries_only_while_on_and_leases_retries_and_confirms_them() {
    use juy_store::audit::{forward_backlog, forward_failed, forwarded, lease_forward, set_forwarding};
    let mut f = fixture().await;
    let alice = user("alice");
    let minute = chrono::Duration::minutes(1);
    // Off (the default): nothing is queued.
    record(&mut f.conn, &entry("alice", "events.list", Some(&alice), "OK"))
        .await
        .unwrap();
    assert_eq!(forward_backlog(&mut f.conn).await.unwrap().0, 0);

    set_forwarding(&mut f.conn, true).await.unwrap();
    let mut queued = Vec::new();
    for action in ["events.list", "connection.revoke", "settings.update"] {
        queued.push(
            record(&mut f.conn, &entry("alice", action, Some(&alice), "OK"))
                .await
                .unwrap(),
        );
    }
    // Queued entries are due from when they were recorded.
    let now = chrono::Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(forward_backlog(&mut f.conn).await.unwrap().0, 3);

    // Two forwarders share the queue without overlap; oldest first.
    let first = lease_forward(&mut f.conn, "fwd-a", now, minute, 2).await.unwrap();
    let second = lease_forward(&mut f.conn, "fwd-b", now, minute, 10).await.unwrap();
    let seqs = |l: &[juy_store::audit::ForwardLease]| l.iter().map(|x| x.event.seq).collect::<Vec<_>>();
    assert_eq!(seqs(&first), vec![queued[0].seq, queued[1].seq]);
    assert_eq!(seqs(&second), vec![queued[2].seq]);
    assert_eq!(first[0].event, queued[0]);
    assert!(first.iter().all(|l| l.attempts == 1));
    assert!(
        lease_forward(&mut f.conn, "fwd-c", now, minute, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A failure is retried at its time, by whoever leases it then; a stale owner confirms nothing.
    let half = chrono::Duration::seconds(30);
    forward_failed(&mut f.conn, "fwd-a", &seqs(&first), now + half, "HTTP 503")
        .await
        .unwrap();
    assert!(
        lease_forward(&mut f.conn, "fwd-c", now, minute, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let retried = lease_forward(&mut f.conn, "fwd-c", now + half, minute, 10)
        .await
        .unwrap();
    assert_eq!(seqs(&retried), seqs(&first));
    assert!(retried.iter().all(|l| l.attempts == 2));
    assert_eq!(forwarded(&mut f.conn, "fwd-a", &seqs(&first)).await.unwrap(), 0);
    assert_eq!(forwarded(&mut f.conn, "fwd-c", &seqs(&first)).await.unwrap(), 2);
    assert_eq!(forwarded(&mut f.conn, "fwd-b", &seqs(&second)).await.unwrap(), 1);
    assert_eq!(forward_backlog(&mut f.conn).await.unwrap().0, 0);

    // An erasure's own entry is queued; the erased user's queued entries go with them.
    record(&mut f.conn, &entry("alice", "events.list", Some(&alice), "OK"))
        .await
        .unwrap();
    erase_user(&mut f.conn, &alice, None).await.unwrap();
    let left = lease_forward(&mut f.conn, "fwd-a", now + minute, minute, 10)
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].event.action, "data.erase");

    set_forwarding(&mut f.conn, false).await.unwrap();
    record(&mut f.conn, &entry("bob", "events.list", None, "OK"))
        .await
        .unwrap();
    assert_eq!(
        forward_backlog(&mut f.conn).await.unwrap().0,
        1,
        "only the leased erasure entry"
    );
}
