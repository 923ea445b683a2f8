//! Data keys: creation on first use, rotation of the master key, shredding.

use chrono::Duration;
use juy_crypto::{Aad, CryptoError, MasterKey, MasterKeyring};
use juy_domain::TimeRange;
use juy_store::events::{EventQuery, list_events, upsert_events};
use juy_store::keys::destroy_user_keys;
use juy_store::testing::TestDatabase;
use juy_store::{RotationReport, StoreError};

use crate::support::{at, calendar, event, texts, user};

fn aad() -> Aad {
    Aad::new("test", "value", &["row"])
}

#[tokio::test]
async fn concurrent_first_uses_agree_on_one_data_key() {
    let db = TestDatabase::create().await.unwrap();
    let store = db.store();
    let alice = user("alice");
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(store.conn().await.unwrap());
    }
    let keys = futures::future::join_all(conns.iter_mut().map(|conn| store.data_key(conn, &alice))).await;
    let keys: Vec<_> = keys.into_iter().map(Result::unwrap).collect();

    let sealed = keys[0].seal_str("x", &aad());
    for key in &keys {
        assert_eq!(key.version(), 1);
        assert_eq!(key.open_string(&sealed, &aad()).unwrap(), "x");
    }
    drop(conns);
    let mut conn = store.conn().await.unwrap();
    assert_eq!(
        texts(&mut conn, "SELECT count(*)::text AS value FROM user_data_keys").await,
        vec!["1"]
    );
    let again = store.data_key(&mut conn, &alice).await.unwrap();
    assert_eq!(again.open_string(&sealed, &aad()).unwrap(), "x");
}

#[tokio::test]
async fn rotation_rewraps_under_the_new_master_version_and_data_stays_readable() {
    let db = TestDatabase::create().await.unwrap();
    let (v1, v2) = (MasterKey::generate(), MasterKey::generate());
    let old = db.store_with_keyring(MasterKeyring::new([(1, v1.clone())]).unwrap());
    let mut conn = old.conn().await.unwrap();
    let alice = user("alice");
    let key = old.data_key(&mut conn, &alice).await.unwrap();
    let cal = calendar(&mut conn, &key, &alice).await;
    upsert_events(
        &mut conn,
        &key,
        &[event(&cal, "e", at(5, 9, 0), at(5, 10, 0))],
        at(1, 0, 0),
        Duration::days(30),
    )
    .await
    .unwrap();
    for name in ["bob", "carol"] {
        old.data_key(&mut conn, &user(name)).await.unwrap();
    }
    drop(conn);

    let rotating = db.store_with_keyring(MasterKeyring::new([(1, v1), (2, v2.clone())]).unwrap());
    let report = rotating.rotate_keys().await.unwrap();
    assert_eq!(
        report,
        RotationReport {
            rewrapped: 3,
            already_current: 0
        }
    );
    let mut conn = rotating.conn().await.unwrap();
    assert_eq!(
        texts(
            &mut conn,
            "SELECT DISTINCT master_version::text AS value FROM user_data_keys"
        )
        .await,
        vec!["2"]
    );
    assert_eq!(
        texts(
            &mut conn,
            "SELECT count(*)::text AS value FROM user_data_keys WHERE rotated_at IS NOT NULL"
        )
        .await,
        vec!["3"]
    );

    // Only the new master version is needed from now on.
    let new_only = db.store_with_keyring(MasterKeyring::new([(2, v2)]).unwrap());
    let mut conn = new_only.conn().await.unwrap();
    let key = new_only.data_key(&mut conn, &alice).await.unwrap();
    let query = EventQuery {
        user_id: alice.clone(),
        range: TimeRange::new(at(5, 0, 0), at(6, 0, 0)).unwrap(),
        providers: vec![],
        calendar_ids: vec![],
        after: None,
        limit: 10,
    };
    let events = list_events(&mut conn, &key, &query).await.unwrap();
    assert_eq!(events[0].title.as_deref(), Some("title of e"));

    assert_eq!(
        rotating.rotate_keys().await.unwrap(),
        RotationReport {
            rewrapped: 0,
            already_current: 3
        }
    );
}

#[tokio::test]
async fn rotation_walks_more_keys_than_one_batch() {
    let db = TestDatabase::create().await.unwrap();
    let v1 = MasterKey::generate();
    let old = db.store_with_keyring(MasterKeyring::new([(1, v1.clone())]).unwrap());
    let mut conn = old.conn().await.unwrap();
    for i in 0..1100 {
        old.data_key(&mut conn, &user(&format!("user-{i:04}"))).await.unwrap();
    }
    let rotating = db.store_with_keyring(MasterKeyring::new([(1, v1), (2, MasterKey::generate())]).unwrap());
    assert_eq!(
        rotating.rotate_keys().await.unwrap(),
        RotationReport {
            rewrapped: 1100,
            already_current: 0
        }
    );
    assert_eq!(
        texts(
            &mut conn,
            "SELECT count(*)::text AS value FROM user_data_keys WHERE master_version = 2"
        )
        .await,
        vec!["1100"]
    );
}

#[tokio::test]
async fn a_keyring_without_the_wrapping_version_cannot_open_data_keys() {
    let db = TestDatabase::create().await.unwrap();
    let old = db.store();
    let mut conn = old.conn().await.unwrap();
    old.data_key(&mut conn, &user("alice")).await.unwrap();

    let unrelated = db.store_with_keyring(MasterKeyring::new([(2, MasterKey::generate())]).unwrap());
    let err = unrelated.data_key(&mut conn, &user("alice")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Crypto(CryptoError::UnknownKeyVersion(1))),
        "{err}"
    );
    let err = unrelated.rotate_keys().await.unwrap_err();
    assert!(
        matches!(err, StoreError::Crypto(CryptoError::UnknownKeyVersion(1))),
        "{err}"
    );
}

#[tokio::test]
async fn destroyed_keys_leave_a_users_ciphertexts_unreadable() {
    let db = TestDatabase::create().await.unwrap();
    let store = db.store();
    let mut conn = store.conn().await.unwrap();
    let alice = user("alice");
    let key = store.data_key(&mut conn, &alice).await.unwrap();
    calendar(&mut conn, &key, &alice).await;
    store.data_key(&mut conn, &user("bob")).await.unwrap();

    assert_eq!(destroy_user_keys(&mut conn, &alice).await.unwrap(), 1);
    assert_eq!(
        texts(&mut conn, "SELECT user_id AS value FROM user_data_keys").await,
        vec!["bob"]
    );
    let fresh = store.data_key(&mut conn, &alice).await.unwrap();
    let err = juy_store::calendars::list_calendars(&mut conn, &fresh, &alice, None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
}
