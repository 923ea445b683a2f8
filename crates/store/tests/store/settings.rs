//! Notification settings and calendar modes, changed together.

use juy_domain::{CalendarId, CalendarMode, NotificationChannels, Provider};
use juy_store::StoreError;
use juy_store::calendars::{list_calendars, upsert_calendars};
use juy_store::settings::{notification_settings, update_settings};

use crate::support::{account, fixture, new_calendar, user};

#[tokio::test]
async fn unset_notification_settings_are_the_defaults() {
    let mut f = fixture().await;
    let settings = notification_settings(&mut f.conn, &f.user).await.unwrap();
    let defaults: Vec<_> = Provider::ALL
        .iter()
        .map(|provider| NotificationChannels::default_for(*provider))
        .collect();
    assert_eq!(settings, defaults);
}

#[tokio::test]
async fn update_settings_applies_modes_and_channels_together() {
    let mut f = fixture().await;
    let account = account(&mut f.conn, &f.key, &f.user, "sub-1").await;
    let calendar = upsert_calendars(&mut f.conn, &f.key, &f.user, &[new_calendar(&account, "work", true)])
        .await
        .unwrap()
        .remove(0);
    let sms = NotificationChannels {
        provider: Provider::Microsoft,
        push: false,
        email: true,
        sms: true,
    };

    let (calendars, channels) = update_settings(
        &mut f.conn,
        &f.key,
        &f.user,
        &[(calendar.id, CalendarMode::Write)],
        &[sms],
        Default::default(),
    )
    .await
    .unwrap();

    assert_eq!(calendars.len(), 1);
    assert_eq!(calendars[0].mode, CalendarMode::Write);
    assert_eq!(
        channels,
        vec![
            NotificationChannels::default_for(Provider::Google),
            sms,
            NotificationChannels::default_for(Provider::Caldav)
        ]
    );
    assert_eq!(notification_settings(&mut f.conn, &f.user).await.unwrap(), channels);
    // Another user's settings are untouched.
    assert_eq!(
        notification_settings(&mut f.conn, &user("bob")).await.unwrap()[1],
        NotificationChannels::default_for(Provider::Microsoft)
    );

    let quiet = NotificationChannels {
        provider: Provider::Microsoft,
        push: false,
        email: false,
        sms: false,
    };
    let (_, channels) = update_settings(&mut f.conn, &f.key, &f.user, &[], &[sms, quiet], Default::default())
        .await
        .unwrap();
    assert_eq!(channels[1], quiet, "the last entry per provider wins");
}

#[tokio::test]
async fn update_settings_with_an_unknown_calendar_changes_neither() {
    let mut f = fixture().await;
    let account = account(&mut f.conn, &f.key, &f.user, "sub-1").await;
    let calendar = upsert_calendars(&mut f.conn, &f.key, &f.user, &[new_calendar(&account, "work", true)])
        .await
        .unwrap()
        .remove(0);
    let email = NotificationChannels {
        provider: Provider::Google,
        push: false,
        email: true,
        sms: false,
    };

    let err = update_settings(
        &mut f.conn,
        &f.key,
        &f.user,
        &[
            (calendar.id, CalendarMode::Write),
            (CalendarId::new(), CalendarMode::ReadOnly),
        ],
        &[email],
        Default::default(),
    )
    .await
    .unwrap_err();

    assert!(matches!(err, StoreError::NotFound { what: "calendar", .. }), "{err}");
    assert_eq!(
        list_calendars(&mut f.conn, &f.key, &f.user, None).await.unwrap()[0].mode,
        CalendarMode::ReadOnly
    );
    assert_eq!(
        notification_settings(&mut f.conn, &f.user).await.unwrap()[0],
        NotificationChannels::default_for(Provider::Google)
    );
}
