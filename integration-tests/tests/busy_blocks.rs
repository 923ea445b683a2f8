//! Busy blocks answer free/busy and slot finding exactly as events do: the
//! same requests over gRPC, once while every user's blocks are out of date
//! (each answer read from events) and once from freshly rebuilt blocks, on
//! random events in three zones across their DST changes (all-day events,
//! events over midnight and over a day, every kind); and right after a
//! change or a zone change, before any rebuild, the answer already shows it.

// Test code: fixtures outside `#[test]` functions may panic too.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, NaiveTime, TimeZone as _, Utc};
use chrono_tz::{America, Australia, Europe, Tz};
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl as _;
use juy_api::pb::v1 as pb;
use juy_domain::{
    AllDayDates, CalendarEvent, CalendarId, EventId, EventKind, EventStatus, Provider, ResponseStatus, Transparency,
    UserId,
};
use juy_integration_tests::sync::link_oauth;
use juy_integration_tests::{TestServer, authed, hold_busy_rebuilds, release_busy_rebuilds, token, ts};
use juy_store::busy_blocks::{BlocksRead, read_blocks};

const ZONES: [Tz; 3] = [Europe::Berlin, America::New_York, Australia::Lord_Howe];

/// A month holding New York's (14 March), Berlin's (28 March) and Lord Howe's (4 April) DST changes.
fn month() -> (DateTime<Utc>, DateTime<Utc>) {
    (
        Utc.with_ymd_and_hms(2027, 3, 8, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2027, 4, 8, 0, 0, 0).unwrap(),
    )
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn random_event(user: &UserId, calendar: CalendarId, n: usize, rng: &mut Rng) -> CalendarEvent {
    let (from, _) = month();
    let external_id = format!("ev-{n}");
    let mut start = from + Duration::minutes(rng.below(31 * 24 * 4) as i64 * 15);
    let mut all_day = None;
    let end = match rng.below(50) {
        // All-day, one to three days, dates as the provider gave them.
        0 => {
            let day = start.date_naive();
            let last = day + Duration::days(1 + rng.below(3) as i64);
            all_day = Some(AllDayDates { start: day, end: last });
            start = day.and_time(NaiveTime::MIN).and_utc();
            last.and_time(NaiveTime::MIN).and_utc()
        }
        // Over a day long.
        1 => start + Duration::hours(20 + rng.below(20) as i64),
        _ => start + Duration::minutes(15 * (1 + rng.below(12) as i64)),
    };
    let mut status = EventStatus::Confirmed;
    let mut transparency = Transparency::Opaque;
    let mut self_response = ResponseStatus::Accepted;
    let mut kind = EventKind::Default;
    match rng.below(20) {
        0 => status = EventStatus::Tentative,
        1 => self_response = ResponseStatus::Tentative,
        2 => self_response = ResponseStatus::NeedsAction,
        3 => self_response = ResponseStatus::Declined,
        4 => transparency = Transparency::Transparent,
        5 => status = EventStatus::Cancelled,
        6 => kind = EventKind::OutOfOffice,
        7 => kind = EventKind::WorkingElsewhere,
        8 => kind = EventKind::FocusTime,
        _ => {}
    }
    CalendarEvent {
        id: EventId(juy_store::events::event_row_id(user, calendar, &external_id)),
        user_id: user.clone(),
        calendar_id: calendar,
        provider: Provider::Google,
        ical_uid: None,
        external_id,
        title: Some(format!("secret title {n}")),
        location: None,
        description: None,
        start,
        end,
        time_zone: None,
        all_day,
        status,
        transparency,
        self_response,
        kind,
        organizer: None,
        attendees: Vec::new(),
        series_id: None,
        instance_start: None,
        reminders: Vec::new(),
        etag: None,
        updated: None,
    }
}

struct World {
    server: TestServer,
    users: Vec<UserId>,
    events: Vec<Vec<CalendarEvent>>,
}

async fn world() -> World {
    let server = TestServer::start().await;
    let mut rng = Rng(0x5eed_b10c);
    let mut users = Vec::new();
    let mut events = Vec::new();
    for (u, zone) in ZONES.iter().enumerate() {
        let name = format!("blocks-user-{u}");
        let linked = link_oauth(
            &server,
            &name,
            Provider::Google,
            &format!("{name}@blocks.test"),
            "unused",
            &[("main", "Main", true), ("side", "Side", false)],
        )
        .await;
        let mut mine = Vec::new();
        for (c, calendar) in linked.calendars.values().enumerate() {
            for i in 0..150 {
                mine.push(random_event(&linked.user, *calendar, c * 1000 + i, &mut rng));
            }
        }
        let mut conn = server.store.conn().await.unwrap();
        let key = server.store.data_key(&mut conn, &linked.user).await.unwrap();
        juy_store::events::upsert_events(&mut conn, &key, &mine, Utc::now(), Duration::days(30))
            .await
            .unwrap();
        // Synced a minute ago, next due long after the test: the workers leave them alone.
        diesel::sql_query(
            "UPDATE calendars SET sync_status = 'ok', last_synced_at = now() - interval '1 minute', \
                 next_sync_at = now() + interval '1 day', time_zone = $2 WHERE user_id = $1",
        )
        .bind::<Text, _>(linked.user.as_str())
        .bind::<Text, _>(zone.name())
        .execute(&mut *conn)
        .await
        .unwrap();
        diesel::sql_query("UPDATE connected_accounts SET status = 'active' WHERE user_id = $1")
            .bind::<Text, _>(linked.user.as_str())
            .execute(&mut *conn)
            .await
            .unwrap();
        users.push(linked.user);
        events.push(mine);
    }
    World { server, users, events }
}

fn names(w: &World) -> Vec<String> {
    w.users.iter().map(|u| format!("users/{u}")).collect()
}

/// Free/busy of everyone as user 0 (whose own intervals name their events)
/// over several ranges, and slots for all three, as answered now.
async fn answers(w: &World) -> (Vec<pb::QueryFreeBusyResponse>, pb::FindSlotsResponse) {
    let (from, to) = month();
    let bearer = token(w.users[0].as_str(), &[]);
    let mut client = w.server.availability().await;
    let ranges = [
        (from, to),
        (
            from + Duration::minutes(37),
            from + Duration::days(3) + Duration::minutes(11),
        ),
        // Each zone's DST change.
        (
            Utc.with_ymd_and_hms(2027, 3, 13, 17, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2027, 3, 15, 5, 0, 0).unwrap(),
        ),
        (
            Utc.with_ymd_and_hms(2027, 3, 27, 22, 30, 0).unwrap(),
            Utc.with_ymd_and_hms(2027, 3, 28, 2, 0, 0).unwrap(),
        ),
        (
            Utc.with_ymd_and_hms(2027, 4, 3, 12, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2027, 4, 4, 18, 0, 0).unwrap(),
        ),
    ];
    let mut free_busy = Vec::new();
    for (start, end) in ranges {
        let request = pb::QueryFreeBusyRequest {
            users: names(w),
            start_time: Some(ts(start)),
            end_time: Some(ts(end)),
        };
        free_busy.push(
            client
                .query_free_busy(authed(request, &bearer))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let request = pb::FindSlotsRequest {
        invitees: names(w)
            .into_iter()
            .map(|user| pb::SlotInvitee {
                user,
                ignore_working_hours: true,
                ..pb::SlotInvitee::default()
            })
            .collect(),
        duration: Some(prost_types::Duration {
            seconds: 30 * 60,
            nanos: 0,
        }),
        start_time: Some(ts(from)),
        end_time: Some(ts(from + Duration::days(14))),
        granularity: Some(prost_types::Duration {
            seconds: 15 * 60,
            nanos: 0,
        }),
        max_results: 50,
        ..pb::FindSlotsRequest::default()
    };
    let slots = client.find_slots(authed(request, &bearer)).await.unwrap().into_inner();
    (free_busy, slots)
}

async fn reads(w: &World, zones: &[Tz]) -> Vec<BlocksRead> {
    let mut conn = w.server.store.conn().await.unwrap();
    let asked: Vec<(&UserId, &str)> = w.users.iter().zip(zones).map(|(u, z)| (u, z.name())).collect();
    let (from, to) = month();
    read_blocks(&mut conn, &asked, from, to, None).await.unwrap()
}

/// The answers while every user's blocks are out of date: marked changed,
/// their rebuild held off by holding each user's rebuild lock.
async fn answers_from_events(w: &World, zones: &[Tz]) -> (Vec<pb::QueryFreeBusyResponse>, pb::FindSlotsResponse) {
    let hold = hold_busy_rebuilds(&w.server.store, &w.users).await;
    assert!(reads(w, zones).await.iter().all(|r| *r == BlocksRead::Dirty));
    let answers = answers(w).await;
    assert!(reads(w, zones).await.iter().all(|r| *r == BlocksRead::Dirty));
    release_busy_rebuilds(hold).await;
    answers
}

/// The answers from blocks rebuilt now (checked fresh before and after).
async fn answers_from_blocks(w: &World, zones: &[Tz]) -> (Vec<pb::QueryFreeBusyResponse>, pb::FindSlotsResponse) {
    juy_sync::busy_blocks::refresh_all(&w.server.store).await.unwrap();
    assert!(reads(w, zones).await.iter().all(|r| matches!(r, BlocksRead::Fresh(_))));
    let answers = answers(w).await;
    assert!(reads(w, zones).await.iter().all(|r| matches!(r, BlocksRead::Fresh(_))));
    answers
}

fn is_plainly_busy(e: &CalendarEvent) -> bool {
    e.status == EventStatus::Confirmed
        && e.kind == EventKind::Default
        && e.transparency == Transparency::Opaque
        && e.self_response == ResponseStatus::Accepted
}

fn busy_count(answers: &(Vec<pb::QueryFreeBusyResponse>, pb::FindSlotsResponse)) -> usize {
    answers.0.iter().flat_map(|r| &r.users).map(|u| u.busy.len()).sum()
}

fn own_sources(answers: &(Vec<pb::QueryFreeBusyResponse>, pb::FindSlotsResponse)) -> usize {
    answers.0[0].users[0].busy.iter().map(|b| b.events.len()).sum()
}

#[tokio::test]
async fn answers_from_blocks_equal_answers_from_events_before_and_after_changes() {
    let w = world().await;
    let zones = ZONES.to_vec();

    let from_events = answers_from_events(&w, &zones).await;
    let from_blocks = answers_from_blocks(&w, &zones).await;
    assert!(
        busy_count(&from_events) > 300,
        "the data makes busy time: {}",
        busy_count(&from_events)
    );
    assert!(
        own_sources(&from_events) > 100,
        "the caller's intervals name their events"
    );
    assert!(!from_events.1.slots.is_empty(), "some slots exist");
    assert!(
        from_blocks == from_events,
        "answers from blocks differ from answers from events"
    );
    let body = format!("{from_blocks:?}");
    assert!(!body.contains("secret title"), "no title in any answer");

    // A change: one of the caller's events moves a day, another user's goes.
    let mut conn = w.server.store.conn().await.unwrap();
    let mut moved = w.events[0]
        .iter()
        .find(|e| e.all_day.is_none() && is_plainly_busy(e))
        .unwrap()
        .clone();
    moved.start += Duration::days(1);
    moved.end += Duration::days(1);
    // A new event of the caller's, and one of theirs gone.
    let mut added = moved.clone();
    added.external_id = "added".into();
    added.id = EventId(juy_store::events::event_row_id(&w.users[0], added.calendar_id, "added"));
    let key = w.server.store.data_key(&mut conn, &w.users[0]).await.unwrap();
    juy_store::events::upsert_events(&mut conn, &key, &[moved, added.clone()], Utc::now(), Duration::days(30))
        .await
        .unwrap();
    let removed = w.events[0].iter().rfind(|e| is_plainly_busy(e)).unwrap();
    for (user, gone) in [
        (&w.users[0], removed),
        (&w.users[1], w.events[1].iter().find(|e| is_plainly_busy(e)).unwrap()),
    ] {
        juy_store::events::delete_events_by_external_id(
            &mut conn,
            user,
            gone.calendar_id,
            std::slice::from_ref(&gone.external_id),
        )
        .await
        .unwrap();
    }
    // Asked at once (the refresher waits a second for changes to settle), the answer already shows the change.
    let at_once = answers(&w).await;
    let named = |answers: &(Vec<pb::QueryFreeBusyResponse>, pb::FindSlotsResponse), id: EventId| {
        answers.0[0].users[0]
            .busy
            .iter()
            .any(|b| b.events.contains(&format!("events/{}", id.0)))
    };
    assert!(!named(&from_blocks, added.id) && named(&from_blocks, removed.id));
    assert!(named(&at_once, added.id), "the new event shows at once");
    assert!(!named(&at_once, removed.id), "the deleted event is gone at once");
    let rebuilt = answers_from_blocks(&w, &zones).await;
    assert!(
        rebuilt == at_once,
        "after the rebuild, the answers differ from those given at once"
    );
    assert!(
        answers_from_events(&w, &zones).await == rebuilt,
        "from events after the change differs"
    );

    // A zone change: the caller moves to Lord Howe; their all-day events follow at once.
    juy_store::availability::update_settings(&mut conn, &w.users[0], Some(Some("Australia/Lord_Howe")), None)
        .await
        .unwrap();
    let moved_zone = answers(&w).await;
    assert!(moved_zone != rebuilt, "all-day time moved with the zone");
    let zones = vec![Australia::Lord_Howe, ZONES[1], ZONES[2]];
    assert!(
        answers_from_blocks(&w, &zones).await == moved_zone,
        "from blocks after the zone change differs"
    );
    assert!(
        answers_from_events(&w, &zones).await == moved_zone,
        "from events after the zone change differs"
    );
    w.server.stop().await;
}
