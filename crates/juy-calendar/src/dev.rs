//! DEVELOPMENT ONLY: the `dev` command's defaults (plaintext, generated keys
//! kept in a state directory) and a seeded dev user with a week of events
//! across two providers, written through the store layer. Never run against a
//! production database: it invents accounts that no provider knows.

use std::path::Path;

use anyhow::Context as _;
use chrono::{DateTime, Datelike as _, Duration, NaiveDate, TimeZone as _, Utc};

use juy_crypto::MasterKey;
use juy_domain::{
    AccountStatus, AllDayDates, Attendee, Calendar, CalendarEvent, EventId, EventKind, EventStatus, Provider, Reminder,
    ReminderMethod, ResponseStatus, Transparency, UserId,
};
use juy_store::Store;
use juy_store::accounts::{self, NewAccount};
use juy_store::calendars::{self, NewCalendar};
use juy_store::events;

/// The dev token's issuer and audience.
pub const DEV_ISSUER: &str = "juy-dev";
/// The dev token's audience.
pub const DEV_AUDIENCE: &str = "juy-calendar";

/// What `seed` wrote.
#[derive(Debug, Clone)]
pub struct SeedSummary {
    /// The user it wrote for.
    pub user: UserId,
    /// The user's calendars.
    pub calendars: Vec<Calendar>,
    /// The events, ordered by start then id, as `ListEvents` returns them.
    pub events: Vec<CalendarEvent>,
}

fn file_secret(path: &Path, make: impl FnOnce() -> String) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        return Ok(existing.trim().to_owned());
    }
    let value = make();
    std::fs::write(path, &value).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(value)
}

/// Settings the `dev` command starts from (the real environment overrides
/// them): plaintext on 127.0.0.1, text logs, and a master key and token
/// secret generated once into `state_dir` so restarts can read old data.
pub fn default_env(state_dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    std::fs::create_dir_all(state_dir).with_context(|| format!("creating {}", state_dir.display()))?;
    let keys = state_dir.join("master.keys");
    file_secret(&keys, || format!("1:{}", *MasterKey::generate().to_base64()))?;
    let secret = state_dir.join("hs256.secret");
    file_secret(&secret, || {
        use rand::RngCore as _;
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        hex_encode(&bytes)
    })?;
    Ok([
        ("JUY_TLS__ENABLED", "false".to_owned()),
        ("JUY_SERVER__GRPC_ADDR", "127.0.0.1:50051".to_owned()),
        ("JUY_SERVER__REST_ADDR", "127.0.0.1:8080".to_owned()),
        ("JUY_SERVER__SHUTDOWN_GRACE_SECS", "5".to_owned()),
        ("JUY_CRYPTO__MASTER_KEYS_FILE", keys.display().to_string()),
        ("JUY_AUTH__ISSUER", DEV_ISSUER.to_owned()),
        ("JUY_AUTH__AUDIENCE", DEV_AUDIENCE.to_owned()),
        ("JUY_AUTH__HS256_SECRET_FILE", secret.display().to_string()),
        ("JUY_TELEMETRY__LOG_FORMAT", "text".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect())
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Monday of the week holding `day`.
pub fn monday_of(day: NaiveDate) -> NaiveDate {
    day - Duration::days(i64::from(day.weekday().num_days_from_monday()))
}

fn at(day: NaiveDate, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_hms_opt(hour, minute, 0).unwrap_or_default())
}

/// Writes two connected accounts (Google, Microsoft), three calendars and a
/// week of events from `monday` for `user`. Running it again changes nothing.
pub async fn seed(store: &Store, user: &UserId, monday: NaiveDate, ttl: Duration) -> anyhow::Result<SeedSummary> {
    let mut conn = store.conn().await?;
    let key = store.data_key(&mut conn, user).await?;
    let account = |provider: Provider, domain: &str, scopes: &[&str]| NewAccount {
        user_id: user.clone(),
        provider,
        external_account_id: format!("dev-{provider}-{user}"),
        display_name: Some(format!("{user}@{domain}")),
        status: AccountStatus::Active,
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        server_url: None,
        credentials: Some(b"{\"dev\":\"not a real token\"}".to_vec()),
    };
    // The Google account granted write access (its "Work" calendar may be switched to Write).
    let google_scopes = [
        "openid",
        "email",
        "https://www.googleapis.com/auth/calendar.readonly",
        "https://www.googleapis.com/auth/calendar.events",
    ];
    let google = accounts::upsert_account(
        &mut conn,
        &key,
        &account(Provider::Google, "gmail.example", &google_scopes),
    )
    .await?;
    let microsoft_scopes = ["offline_access", "Calendars.Read", "User.Read"];
    let microsoft = accounts::upsert_account(
        &mut conn,
        &key,
        &account(Provider::Microsoft, "outlook.example", &microsoft_scopes),
    )
    .await?;
    let new_calendar = |account, provider, id: &str, name: &str, color: &str, primary, writable| NewCalendar {
        account_id: account,
        provider,
        provider_calendar_id: id.to_owned(),
        name: name.to_owned(),
        color: Some(color.to_owned()),
        time_zone: Some("Europe/Berlin".to_owned()),
        is_primary: primary,
        can_write: writable,
    };
    let mut cals = calendars::upsert_calendars(
        &mut conn,
        &key,
        user,
        &[
            new_calendar(google.id, Provider::Google, "primary", "Work", "#1a73e8", true, true),
            new_calendar(
                google.id,
                Provider::Google,
                "holidays",
                "Team holidays",
                "#7986cb",
                false,
                false,
            ),
        ],
    )
    .await?;
    cals.extend(
        calendars::upsert_calendars(
            &mut conn,
            &key,
            user,
            &[new_calendar(
                microsoft.id,
                Provider::Microsoft,
                "AAMkAGI2-calendar",
                "Calendar",
                "#d13438",
                true,
                true,
            )],
        )
        .await?,
    );
    let by_name = |name: &str| {
        cals.iter()
            .find(|c| c.provider_calendar_id == name)
            .map(|c| (c.id, c.provider))
    };
    let (work, holidays, outlook) = match (by_name("primary"), by_name("holidays"), by_name("AAMkAGI2-calendar")) {
        (Some(w), Some(h), Some(o)) => (w, h, o),
        _ => anyhow::bail!("seeded calendars missing after upsert"),
    };

    let day = |n: i64| monday + Duration::days(n);
    let event = |(calendar_id, provider): (juy_domain::CalendarId, Provider),
                 external: String,
                 title: &str,
                 start: DateTime<Utc>,
                 end: DateTime<Utc>| CalendarEvent {
        id: EventId::new(),
        user_id: user.clone(),
        calendar_id,
        provider,
        external_id: external,
        ical_uid: None,
        title: Some(title.to_owned()),
        location: None,
        description: None,
        start,
        end,
        time_zone: Some("Europe/Berlin".to_owned()),
        all_day: None,
        status: EventStatus::Confirmed,
        transparency: Transparency::Opaque,
        self_response: ResponseStatus::None,
        kind: EventKind::Default,
        organizer: None,
        attendees: Vec::new(),
        series_id: None,
        instance_start: None,
        reminders: vec![Reminder {
            minutes_before: 10,
            method: ReminderMethod::Popup,
        }],
        etag: Some("\"1\"".to_owned()),
        updated: Some(at(monday, 0, 0) - Duration::days(7)),
    };
    let mut list = Vec::new();
    for n in 0..5 {
        let start = at(day(n), 8, 0);
        let mut standup = event(
            work,
            format!("standup_{}", day(n).format("%Y%m%dT080000Z")),
            "Standup",
            start,
            start + Duration::minutes(15),
        );
        standup.series_id = Some("standup".into());
        standup.instance_start = Some(start);
        standup.ical_uid = Some("standup@google.com".into());
        list.push(standup);
    }
    let mut one_on_one = event(
        outlook,
        "AAMkAGI2-1on1".into(),
        "1:1 with Sam",
        at(day(1), 13, 0),
        at(day(1), 13, 30),
    );
    one_on_one.self_response = ResponseStatus::Accepted;
    one_on_one.organizer = Some(Attendee {
        email: "sam@example.com".into(),
        name: Some("Sam".into()),
        response: ResponseStatus::Organizer,
        is_self: false,
        optional: false,
    });
    one_on_one.attendees = vec![Attendee {
        email: format!("{user}@outlook.example"),
        name: None,
        response: ResponseStatus::Accepted,
        is_self: true,
        optional: false,
    }];
    list.push(one_on_one);
    let mut dentist = event(work, "dentist".into(), "Dentist", at(day(2), 15, 0), at(day(2), 16, 0));
    dentist.location = Some("Main Street 1".into());
    dentist.description = Some("Bring the insurance card".into());
    list.push(dentist);
    let mut offsite = event(
        holidays,
        "offsite".into(),
        "Team offsite",
        at(day(3), 0, 0) - Duration::hours(1),
        at(day(4), 0, 0) - Duration::hours(1),
    );
    offsite.all_day = Some(AllDayDates {
        start: day(3),
        end: day(4),
    });
    offsite.kind = EventKind::OutOfOffice;
    list.push(offsite);
    let mut review = event(
        outlook,
        "AAMkAGI2-review".into(),
        "Budget review",
        at(day(3), 9, 0),
        at(day(3), 10, 0),
    );
    review.self_response = ResponseStatus::Declined;
    list.push(review);
    let mut lunch = event(
        outlook,
        "AAMkAGI2-lunch".into(),
        "Lunch with Alex",
        at(day(4), 11, 0),
        at(day(4), 12, 0),
    );
    lunch.transparency = Transparency::Transparent;
    list.push(lunch);
    list.push(event(
        work,
        "release".into(),
        "Release night",
        at(day(4), 22, 30),
        at(day(5), 0, 30),
    ));

    events::upsert_events(&mut conn, &key, &list, Utc::now(), ttl).await?;
    let range = juy_domain::TimeRange::new(at(monday, 0, 0), at(day(7), 0, 0))?;
    let stored = events::list_events(
        &mut conn,
        &key,
        &events::EventQuery {
            user_id: user.clone(),
            range,
            providers: vec![],
            calendar_ids: vec![],
            after: None,
            limit: 1000,
        },
    )
    .await?;
    Ok(SeedSummary {
        user: user.clone(),
        calendars: cals,
        events: stored,
    })
}

/// Settings that point a server's Google and Microsoft endpoints at a
/// running provider sandbox; `rest_base` is where the server's REST bridge
/// listens (its OAuth callback is the registered redirect URI).
#[cfg(feature = "sandbox")]
pub fn sandbox_env(sandbox: &juy_sandbox::RunningSandbox, rest_base: &str) -> Vec<(String, String)> {
    [
        ("JUY_GOOGLE__CLIENT_ID", "juy-dev-google".to_owned()),
        ("JUY_GOOGLE__CLIENT_SECRET", "juy-dev-google-secret".to_owned()),
        ("JUY_GOOGLE__AUTHORIZE_URL", sandbox.google_oauth_authorize_url()),
        ("JUY_GOOGLE__TOKEN_URL", sandbox.google_token_url()),
        ("JUY_GOOGLE__REVOKE_URL", sandbox.google_revoke_url()),
        ("JUY_GOOGLE__USERINFO_URL", sandbox.google_userinfo_url()),
        ("JUY_GOOGLE__API_BASE_URL", sandbox.google_api_base()),
        ("JUY_MICROSOFT__CLIENT_ID", "juy-dev-microsoft".to_owned()),
        ("JUY_MICROSOFT__CLIENT_SECRET", "juy-dev-microsoft-secret".to_owned()),
        ("JUY_MICROSOFT__AUTHORIZE_URL", sandbox.microsoft_authorize_url()),
        ("JUY_MICROSOFT__TOKEN_URL", sandbox.microsoft_token_url()),
        (
            "JUY_MICROSOFT__USERINFO_URL",
            format!("{}/me", sandbox.graph_api_base()),
        ),
        ("JUY_MICROSOFT__API_BASE_URL", sandbox.graph_api_base()),
        (
            "JUY_OAUTH__REDIRECT_URIS",
            format!("[\"{rest_base}/v1/calendar/oauth/callback\"]"),
        ),
        // The sandbox notifies the dev server's webhooks (plain http: the sandbox allows it).
        ("JUY_SYNC__PUSH_BASE_URL", rest_base.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// How to link the sandbox's Google and Microsoft accounts on the dev run.
#[cfg(feature = "sandbox")]
pub fn linking_help(sandbox_base: &str, rest: &str) -> String {
    format!(
        "Provider sandbox (fake Google and Microsoft): {sandbox_base}  (control API: {sandbox_base}/_sandbox)\n\
         Link its Google account (use microsoft:start for Microsoft):\n  \
         URL=$(curl -s -X POST -H \"Authorization: Bearer $TOKEN\" http://{rest}/v1/calendar/connections/google:start | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"authorization_url\"])')\n  \
         CALLBACK=$(curl -s -o /dev/null -w '%{{redirect_url}}' \"$URL\")   # the sandbox consents at once\n  \
         curl -s -H \"Authorization: Bearer $TOKEN\" \"$CALLBACK\"   # the gateway would forward the redirect like this\n"
    )
}

/// The dev run's stand-in for the notification service: a local HTTP
/// receiver that checks each reminder's signature and logs what it got (key,
/// channel, event name, due time; never the title or location), once per
/// idempotency key as a real receiver would apply it.
#[derive(Debug)]
pub struct ReminderReceiver {
    /// Where it listens: what `reminders.endpoint` points at.
    pub url: String,
    secret_file: std::path::PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ReminderReceiver {
    /// The settings pointing the dispatcher at it.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("JUY_REMINDERS__ENDPOINT".to_owned(), self.url.clone()),
            (
                "JUY_REMINDERS__SECRET_FILE".to_owned(),
                self.secret_file.display().to_string(),
            ),
        ]
    }

    /// Stops it.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// Starts the dev reminder receiver on a free 127.0.0.1 port, with a
/// signing secret generated once into `state_dir`.
pub async fn start_reminder_receiver(state_dir: &Path) -> anyhow::Result<ReminderReceiver> {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    use juy_sync::reminders::{self, ReminderMessage};

    std::fs::create_dir_all(state_dir).with_context(|| format!("creating {}", state_dir.display()))?;
    let secret_file = state_dir.join("reminders.secret");
    let secret = zeroize::Zeroizing::new(
        file_secret(&secret_file, || {
            use rand::RngCore as _;
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            hex_encode(&bytes)
        })?
        .into_bytes(),
    );
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    let receive = move |headers: HeaderMap, body: Bytes| {
        let seen = Arc::clone(&seen);
        let secret = secret.clone();
        async move {
            let signature = headers
                .get(reminders::SIGNATURE_HEADER)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default();
            if !reminders::verify(&secret, signature, &body, Utc::now(), Duration::minutes(5)) {
                tracing::warn!("dev reminder receiver: refused a request with a bad signature");
                return StatusCode::UNAUTHORIZED;
            }
            let Ok(message) = serde_json::from_slice::<ReminderMessage>(&body) else {
                tracing::warn!("dev reminder receiver: refused a body that is not a reminder");
                return StatusCode::BAD_REQUEST;
            };
            let first = seen
                .lock()
                .map(|mut seen| seen.insert(message.idempotency_key.clone()))
                .unwrap_or(true);
            tracing::info!(
                key = %message.idempotency_key,
                user = %message.user_id,
                channel = %message.channel,
                event = %message.event.name,
                due_time = %message.due_time,
                duplicate = !first,
                "dev reminder receiver: reminder received"
            );
            StatusCode::OK
        }
    };
    let app = axum::Router::new().route("/reminders", axum::routing::post(receive));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the dev reminder receiver")?;
    let url = format!("http://{}/reminders", listener.local_addr()?);
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::warn!(%error, "the dev reminder receiver stopped");
        }
    });
    Ok(ReminderReceiver { url, secret_file, task })
}
