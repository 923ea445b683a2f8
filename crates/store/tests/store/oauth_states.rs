//! OAuth states: single use, expiry, bound to their user, verifier encrypted.

use chrono::{Duration, Utc};
use diesel::QueryableByName;
use diesel::sql_types::Bytea;
use diesel_async::RunQueryDsl;
use juy_domain::Provider;
use juy_store::oauth_states::{self, NewOAuthState, Taken};

use crate::support::{fixture, user};

fn new_state<'a>(fx_user: &'a juy_domain::UserId, state: &'a str, scopes: &'a [String]) -> NewOAuthState<'a> {
    NewOAuthState {
        user_id: fx_user,
        state,
        provider: Provider::Google,
        redirect_uri: "https://app.juy.example/oauth/callback",
        pkce_verifier: "verifier-that-must-stay-secret-0123456789",
        scopes,
        expires_at: Utc::now() + Duration::minutes(10),
    }
}

#[tokio::test]
async fn a_state_works_once_and_only_for_its_user() {
    let mut fx = fixture().await;
    let scopes = vec!["openid".to_owned(), "email".to_owned()];
    oauth_states::insert(&mut fx.conn, &fx.key, &new_state(&fx.user, "state-1", &scopes))
        .await
        .unwrap();

    let bob = user("bob");
    let bob_key = fx.store.data_key(&mut fx.conn, &bob).await.unwrap();
    let taken = oauth_states::take(&mut fx.conn, &bob_key, &bob, "state-1", Utc::now())
        .await
        .unwrap();
    assert!(matches!(taken, Taken::Unknown), "another user cannot use it");

    match oauth_states::take(&mut fx.conn, &fx.key, &fx.user, "state-1", Utc::now())
        .await
        .unwrap()
    {
        Taken::Valid(state) => {
            assert_eq!(state.provider, Provider::Google);
            assert_eq!(&*state.pkce_verifier, "verifier-that-must-stay-secret-0123456789");
            assert_eq!(state.scopes, scopes);
            assert!(!format!("{state:?}").contains("verifier-that"));
        }
        other => panic!("expected a valid state, got {other:?}"),
    }
    let replay = oauth_states::take(&mut fx.conn, &fx.key, &fx.user, "state-1", Utc::now())
        .await
        .unwrap();
    assert!(matches!(replay, Taken::Unknown), "a state works once");
    let tampered = oauth_states::take(&mut fx.conn, &fx.key, &fx.user, "state-2", Utc::now())
        .await
        .unwrap();
    assert!(matches!(tampered, Taken::Unknown));
}

#[tokio::test]
async fn an_expired_state_is_refused_and_used_up() {
    let mut fx = fixture().await;
    oauth_states::insert(&mut fx.conn, &fx.key, &new_state(&fx.user, "late", &[]))
        .await
        .unwrap();
    let later = Utc::now() + Duration::minutes(11);
    assert!(matches!(
        oauth_states::take(&mut fx.conn, &fx.key, &fx.user, "late", later)
            .await
            .unwrap(),
        Taken::Expired
    ));
    assert!(matches!(
        oauth_states::take(&mut fx.conn, &fx.key, &fx.user, "late", Utc::now())
            .await
            .unwrap(),
        Taken::Unknown
    ));
}

#[derive(QueryableByName)]
struct Raw {
    #[diesel(sql_type = Bytea)]
    bytes: Vec<u8>,
}

#[tokio::test]
async fn neither_the_state_nor_the_verifier_is_stored_in_plaintext() {
    let mut fx = fixture().await;
    oauth_states::insert(&mut fx.conn, &fx.key, &new_state(&fx.user, "plain-state-value", &[]))
        .await
        .unwrap();
    let rows: Vec<Raw> = diesel::sql_query(
        "SELECT convert_to(row_to_json(s)::text, 'UTF8') AS bytes FROM oauth_states s \
         UNION ALL SELECT state_hash FROM oauth_states UNION ALL SELECT pkce_verifier_enc FROM oauth_states",
    )
    .load(&mut fx.conn)
    .await
    .unwrap();
    for row in rows {
        let text = String::from_utf8_lossy(&row.bytes);
        assert!(!text.contains("plain-state-value"));
        assert!(!text.contains("verifier-that-must-stay-secret"));
    }
}

#[tokio::test]
async fn expired_states_are_cleaned_up_in_bounded_batches() {
    let mut fx = fixture().await;
    for i in 0..3 {
        let state = format!("s{i}");
        let mut new = new_state(&fx.user, &state, &[]);
        new.expires_at = Utc::now() - Duration::minutes(1);
        oauth_states::insert(&mut fx.conn, &fx.key, &new).await.unwrap();
    }
    oauth_states::insert(&mut fx.conn, &fx.key, &new_state(&fx.user, "fresh", &[]))
        .await
        .unwrap();
    assert_eq!(
        oauth_states::delete_expired(&mut fx.conn, Utc::now(), 2).await.unwrap(),
        2
    );
    assert_eq!(
        oauth_states::delete_expired(&mut fx.conn, Utc::now(), 2).await.unwrap(),
        1
    );
    assert_eq!(
        oauth_states::delete_expired(&mut fx.conn, Utc::now(), 2).await.unwrap(),
        0
    );
    assert!(matches!(
        oauth_states::take(&mut fx.conn, &fx.key, &fx.user, "fresh", Utc::now())
            .await
            .unwrap(),
        Taken::Valid(_)
    ));
}

#[tokio::test]
async fn caldav_has_no_oauth_flow() {
    let mut fx = fixture().await;
    let mut new = new_state(&fx.user, "x", &[]);
    new.provider = Provider::Caldav;
    assert!(oauth_states::insert(&mut fx.conn, &fx.key, &new).await.is_err());
}
