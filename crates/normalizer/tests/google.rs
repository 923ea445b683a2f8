//! Google Calendar v3 event resources, shaped as `events.list` returns them.

mod common;

use chrono::NaiveDate;
use common::{assert_rejections_quote_nothing, ctx, events, only_event, utc};
use juy_domain::{
    AllDayDates, Attendee, CalendarEvent, EventKind, EventStatus, Provider, Reminder, ReminderMethod, ResponseStatus,
    Transparency,
};
use juy_normalizer::{Change, RejectReason, Rejected, google};
use serde_json::{Value, json};

/// A meeting Alice organises, as `events.list` returns it.
fn meeting() -> Value {
    json!({
        "kind": "calendar#event",
        "etag": "\"3512345678901234\"",
        "id": "4eahs9ghkhrvkld72hogu9ph3e",
        "status": "confirmed",
        "htmlLink": "https://www.google.com/calendar/event?eid=NGVhaHM5Z2hraHJ2a2xkNzJob2d1OXBoM2UgYWxpY2VAZXhhbXBsZS5jb20",
        "created": "2025-12-01T10:00:00.000Z",
        "updated": "2025-12-02T11:30:15.123Z",
        "summary": "Quarterly planning",
        "description": "Agenda: budget, hiring",
        "location": "Room 4, Berlin office",
        "creator": { "email": "alice@example.com", "self": true },
        "organizer": { "email": "alice@example.com", "displayName": "Alice Example", "self": true },
        "start": { "dateTime": "2026-01-05T09:00:00+01:00", "timeZone": "Europe/Berlin" },
        "end": { "dateTime": "2026-01-05T10:30:00+01:00", "timeZone": "Europe/Berlin" },
        "iCalUID": "4eahs9ghkhrvkld72hogu9ph3e@google.com",
        "sequence": 2,
        "attendees": [
            { "email": "alice@example.com", "displayName": "Alice Example", "organizer": true, "self": true, "responseStatus": "accepted" },
            { "email": "bob@example.org", "displayName": "Bob", "responseStatus": "needsAction" },
            { "email": "carol@example.net", "optional": true, "responseStatus": "tentative" },
            { "email": "c_1888abcd@resource.calendar.google.com", "displayName": "Room 4", "resource": true, "responseStatus": "accepted" }
        ],
        "hangoutLink": "https://meet.google.com/abc-defg-hij",
        "reminders": { "useDefault": false, "overrides": [ { "method": "email", "minutes": 1440 }, { "method": "popup", "minutes": 15 } ] },
        "eventType": "default"
    })
}

#[test]
fn full_meeting_is_normalised_field_by_field() {
    let ctx = ctx(Provider::Google);
    let result = google::normalize(&ctx, &[meeting()]);
    let event = only_event(&result);
    let expected = CalendarEvent {
        id: event.id,
        user_id: ctx.user_id.clone(),
        calendar_id: ctx.calendar_id,
        provider: Provider::Google,
        external_id: "4eahs9ghkhrvkld72hogu9ph3e".to_owned(),
        ical_uid: Some("4eahs9ghkhrvkld72hogu9ph3e@google.com".to_owned()),
        title: Some("Quarterly planning".to_owned()),
        location: Some("Room 4, Berlin office".to_owned()),
        description: Some("Agenda: budget, hiring".to_owned()),
        start: utc("2026-01-05T08:00:00Z"),
        end: utc("2026-01-05T09:30:00Z"),
        time_zone: Some("Europe/Berlin".to_owned()),
        all_day: None,
        status: EventStatus::Confirmed,
        transparency: Transparency::Opaque,
        self_response: ResponseStatus::Accepted,
        kind: EventKind::Default,
        organizer: Some(Attendee {
            email: "alice@example.com".to_owned(),
            name: Some("Alice Example".to_owned()),
            response: ResponseStatus::Organizer,
            is_self: true,
            optional: false,
        }),
        attendees: vec![
            Attendee {
                email: "alice@example.com".to_owned(),
                name: Some("Alice Example".to_owned()),
                response: ResponseStatus::Accepted,
                is_self: true,
                optional: false,
            },
            Attendee {
                email: "bob@example.org".to_owned(),
                name: Some("Bob".to_owned()),
                response: ResponseStatus::NeedsAction,
                is_self: false,
                optional: false,
            },
            Attendee {
                email: "carol@example.net".to_owned(),
                name: None,
                response: ResponseStatus::Tentative,
                is_self: false,
                optional: true,
            },
            Attendee {
                email: "c_1888abcd@resource.calendar.google.com".to_owned(),
                name: Some("Room 4".to_owned()),
                response: ResponseStatus::Accepted,
                is_self: false,
                optional: false,
            },
        ],
        series_id: None,
        instance_start: None,
        reminders: vec![
            Reminder {
                minutes_before: 1440,
                method: ReminderMethod::Email,
            },
            Reminder {
                minutes_before: 15,
                method: ReminderMethod::Popup,
            },
        ],
        etag: Some("\"3512345678901234\"".to_owned()),
        updated: Some(utc("2025-12-02T11:30:15.123Z")),
    };
    assert_eq!(event, &expected);
}

#[test]
fn invitation_from_someone_else_takes_the_self_attendees_answer() {
    let item = json!({
        "kind": "calendar#event",
        "etag": "\"3512345678900000\"",
        "id": "0q7l2v1o3m6gd5p4b8k9r2t6ua",
        "status": "tentative",
        "summary": "Vendor demo",
        "organizer": { "email": "dana@partner.example" },
        "creator": { "email": "dana@partner.example" },
        "start": { "dateTime": "2026-07-06T15:00:00+02:00", "timeZone": "Europe/Berlin" },
        "end": { "dateTime": "2026-07-06T16:00:00+02:00", "timeZone": "Europe/Berlin" },
        "attendees": [
            { "email": "dana@partner.example", "organizer": true, "responseStatus": "accepted" },
            { "email": "alice@example.com", "self": true, "responseStatus": "declined" }
        ],
        "reminders": { "useDefault": true },
        "eventType": "default"
    });
    let event = only_event(&google::normalize(&ctx(Provider::Google), &[item])).clone();
    assert_eq!(event.status, EventStatus::Tentative);
    assert_eq!(event.self_response, ResponseStatus::Declined);
    assert_eq!(event.start, utc("2026-07-06T13:00:00Z"));
    assert_eq!(event.end, utc("2026-07-06T14:00:00Z"));
    assert_eq!(
        event.organizer.as_ref().map(|o| (o.is_self, o.response)),
        Some((false, ResponseStatus::Organizer))
    );
    assert_eq!(
        event.reminders,
        vec![Reminder {
            minutes_before: 10,
            method: ReminderMethod::Popup
        }]
    );
}

#[test]
fn self_is_also_found_by_the_owners_address() {
    let mut ctx = ctx(Provider::Google);
    ctx.self_emails = vec!["alice@example.com".to_owned()];
    let item = json!({
        "id": "noselfflag01",
        "start": { "dateTime": "2026-01-05T09:00:00Z" },
        "end": { "dateTime": "2026-01-05T10:00:00Z" },
        "organizer": { "email": "dana@partner.example" },
        "attendees": [ { "email": "Alice@Example.com", "responseStatus": "tentative" } ]
    });
    let event = only_event(&google::normalize(&ctx, &[item])).clone();
    assert!(event.attendees[0].is_self);
    assert_eq!(event.self_response, ResponseStatus::Tentative);

    let own = json!({
        "id": "ownnoguests1",
        "start": { "dateTime": "2026-01-05T09:00:00Z" },
        "end": { "dateTime": "2026-01-05T10:00:00Z" },
        "organizer": { "email": "alice@example.com", "self": true }
    });
    assert_eq!(
        only_event(&google::normalize(&ctx, &[own])).self_response,
        ResponseStatus::Organizer
    );

    let foreign = json!({
        "id": "foreign00001",
        "start": { "dateTime": "2026-01-05T09:00:00Z" },
        "end": { "dateTime": "2026-01-05T10:00:00Z" },
        "organizer": { "email": "holidays@group.v.calendar.google.com", "displayName": "Holidays" }
    });
    assert_eq!(
        only_event(&google::normalize(&ctx, &[foreign])).self_response,
        ResponseStatus::None
    );
}

#[test]
fn all_day_event_keeps_dates_and_starts_at_midnight_in_the_calendar_zone() {
    let item = json!({
        "kind": "calendar#event",
        "etag": "\"3512345678901111\"",
        "id": "1g4h5j6k7l8m9n0p1q2r3s4t5u",
        "status": "confirmed",
        "summary": "Offsite",
        "transparency": "transparent",
        "start": { "date": "2026-01-05" },
        "end": { "date": "2026-01-07" },
        "iCalUID": "1g4h5j6k7l8m9n0p1q2r3s4t5u@google.com",
        "reminders": { "useDefault": false },
        "eventType": "default"
    });
    let event = only_event(&google::normalize(&ctx(Provider::Google), &[item])).clone();
    assert_eq!(
        event.all_day,
        Some(AllDayDates {
            start: NaiveDate::from_ymd_opt(2026, 1, 5).unwrap(),
            end: NaiveDate::from_ymd_opt(2026, 1, 7).unwrap(),
        })
    );
    assert_eq!(event.start, utc("2026-01-04T23:00:00Z"));
    assert_eq!(event.end, utc("2026-01-06T23:00:00Z"));
    assert_eq!(event.time_zone.as_deref(), Some("Europe/Berlin"));
    assert_eq!(event.transparency, Transparency::Transparent);
    assert!(event.reminders.is_empty());
}

#[test]
fn all_day_event_without_any_zone_is_midnight_utc() {
    let mut ctx = ctx(Provider::Google);
    ctx.time_zone = None;
    let item = json!({ "id": "allday0utc", "start": { "date": "2026-03-01" }, "end": { "date": "2026-03-02" } });
    let event = only_event(&google::normalize(&ctx, &[item])).clone();
    assert_eq!(
        (event.start, event.end),
        (utc("2026-03-01T00:00:00Z"), utc("2026-03-02T00:00:00Z"))
    );
    assert_eq!(event.time_zone, None);
}

#[test]
fn recurring_instance_carries_its_series_and_original_start() {
    let item = json!({
        "kind": "calendar#event",
        "etag": "\"3512345678902222\"",
        "id": "7v3c9dlc5cqg0e1m2lb2h2jq2g_20260112T080000Z",
        "status": "confirmed",
        "summary": "Weekly sync",
        "organizer": { "email": "alice@example.com", "self": true },
        "start": { "dateTime": "2026-01-12T10:00:00+01:00", "timeZone": "Europe/Berlin" },
        "end": { "dateTime": "2026-01-12T10:30:00+01:00", "timeZone": "Europe/Berlin" },
        "recurringEventId": "7v3c9dlc5cqg0e1m2lb2h2jq2g",
        "originalStartTime": { "dateTime": "2026-01-12T09:00:00+01:00", "timeZone": "Europe/Berlin" },
        "iCalUID": "7v3c9dlc5cqg0e1m2lb2h2jq2g@google.com",
        "sequence": 1,
        "reminders": { "useDefault": true },
        "eventType": "default"
    });
    let event = only_event(&google::normalize(&ctx(Provider::Google), &[item])).clone();
    assert_eq!(event.external_id, "7v3c9dlc5cqg0e1m2lb2h2jq2g_20260112T080000Z");
    assert_eq!(event.series_id.as_deref(), Some("7v3c9dlc5cqg0e1m2lb2h2jq2g"));
    assert_eq!(event.instance_start, Some(utc("2026-01-12T08:00:00Z")));
    assert_eq!(event.start, utc("2026-01-12T09:00:00Z"));
    assert_eq!(event.ical_uid.as_deref(), Some("7v3c9dlc5cqg0e1m2lb2h2jq2g@google.com"));
}

#[test]
fn all_day_recurring_instance_has_its_original_date_at_midnight() {
    let item = json!({
        "id": "birthdayseries_20260310",
        "start": { "date": "2026-03-10" },
        "end": { "date": "2026-03-11" },
        "recurringEventId": "birthdayseries",
        "originalStartTime": { "date": "2026-03-10" },
        "eventType": "birthday"
    });
    let event = only_event(&google::normalize(&ctx(Provider::Google), &[item])).clone();
    assert_eq!(event.instance_start, Some(utc("2026-03-09T23:00:00Z")));
    assert_eq!(event.kind, EventKind::Default);
}

#[test]
fn cancelled_items_are_deletions_whatever_they_lack() {
    let items = [
        json!({ "kind": "calendar#event", "etag": "\"3512345678903333\"", "id": "deletedevent001", "status": "cancelled" }),
        json!({
            "id": "7v3c9dlc5cqg0e1m2lb2h2jq2g_20260119T080000Z",
            "status": "cancelled",
            "recurringEventId": "7v3c9dlc5cqg0e1m2lb2h2jq2g",
            "originalStartTime": { "dateTime": "2026-01-19T09:00:00+01:00", "timeZone": "Europe/Berlin" }
        }),
    ];
    let result = google::normalize(&ctx(Provider::Google), &items);
    assert!(result.rejected.is_empty());
    assert_eq!(
        result.changes,
        vec![
            Change::Delete {
                external_id: "deletedevent001".to_owned()
            },
            Change::Delete {
                external_id: "7v3c9dlc5cqg0e1m2lb2h2jq2g_20260119T080000Z".to_owned()
            },
        ]
    );
}

#[test]
fn event_types_map_to_kinds() {
    let item = |id: &str, event_type: &str| {
        json!({
            "id": id,
            "eventType": event_type,
            "start": { "dateTime": "2026-01-05T09:00:00Z" },
            "end": { "dateTime": "2026-01-05T17:00:00Z" }
        })
    };
    let items = [
        item("ooo", "outOfOffice"),
        item("focus", "focusTime"),
        item("wl", "workingLocation"),
        item("gmail", "fromGmail"),
        item("future", "somethingGoogleAddsLater"),
    ];
    let result = google::normalize(&ctx(Provider::Google), &items);
    let kinds: Vec<EventKind> = events(&result).iter().map(|event| event.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::OutOfOffice,
            EventKind::FocusTime,
            EventKind::WorkingElsewhere,
            EventKind::Default,
            EventKind::Default
        ]
    );
}

#[test]
fn zero_length_event_is_kept_with_one_second_and_blocks_no_time() {
    let item = json!({
        "id": "deadline0001",
        "summary": "Submit report",
        "start": { "dateTime": "2026-01-05T17:00:00+01:00" },
        "end": { "dateTime": "2026-01-05T17:00:00+01:00" }
    });
    let event = only_event(&google::normalize(&ctx(Provider::Google), &[item])).clone();
    assert_eq!(event.start, utc("2026-01-05T16:00:00Z"));
    assert_eq!(event.end, utc("2026-01-05T16:00:01Z"));
    assert_eq!(event.transparency, Transparency::Transparent);
}

#[test]
fn zone_names_are_resolved_and_unknown_ones_fall_back_to_the_calendars() {
    let items = [
        json!({
            "id": "lowercasezone",
            "start": { "dateTime": "2026-01-05T09:00:00-05:00", "timeZone": "america/new_york" },
            "end": { "dateTime": "2026-01-05T10:00:00-05:00", "timeZone": "america/new_york" }
        }),
        json!({
            "id": "unknownzone",
            "start": { "dateTime": "2026-01-05T09:00:00Z", "timeZone": "Mars/Olympus_Mons" },
            "end": { "dateTime": "2026-01-05T10:00:00Z", "timeZone": "Mars/Olympus_Mons" }
        }),
        // No offset: read in its own zone (Google allows this when `timeZone` is given).
        json!({
            "id": "floating",
            "start": { "dateTime": "2026-07-06T09:00:00", "timeZone": "America/Los_Angeles" },
            "end": { "dateTime": "2026-07-06T10:00:00", "timeZone": "America/Los_Angeles" }
        }),
    ];
    let result = google::normalize(&ctx(Provider::Google), &items);
    let found: Vec<_> = events(&result)
        .iter()
        .map(|event| (event.time_zone.clone(), event.start))
        .collect();
    assert_eq!(
        found,
        [
            (Some("America/New_York".to_owned()), utc("2026-01-05T14:00:00Z")),
            (Some("Europe/Berlin".to_owned()), utc("2026-01-05T09:00:00Z")),
            (Some("America/Los_Angeles".to_owned()), utc("2026-07-06T16:00:00Z")),
        ]
    );
}

#[test]
fn malformed_items_are_rejected_one_by_one_without_quoting_them() {
    let title = "Secret merger talks with ACME";
    let email = "ceo@acme.example";
    let bad = |id: &str, start: Value, end: Value| json!({ "id": id, "summary": title, "attendees": [ { "email": email } ], "start": start, "end": end });
    let items = vec![
        meeting(),
        json!("not an event"),
        json!({ "summary": title, "start": { "date": "2026-01-05" }, "end": { "date": "2026-01-06" } }),
        json!({ "id": "nostart", "summary": title, "end": { "dateTime": "2026-01-05T10:00:00Z" } }),
        bad(
            "garbage",
            json!({ "dateTime": title }),
            json!({ "dateTime": "2026-01-05T10:00:00Z" }),
        ),
        bad(
            "backwards",
            json!({ "dateTime": "2026-01-05T10:00:00Z" }),
            json!({ "dateTime": "2026-01-05T09:00:00Z" }),
        ),
        bad(
            "mixed",
            json!({ "date": "2026-01-05" }),
            json!({ "dateTime": "2026-01-06T00:00:00Z" }),
        ),
        bad(
            "baddate",
            json!({ "date": "2026-02-30" }),
            json!({ "date": "2026-03-01" }),
        ),
        bad("empty", json!({}), json!({ "dateTime": "2026-01-05T09:00:00Z" })),
        bad(
            "backwardsdays",
            json!({ "date": "2026-01-05" }),
            json!({ "date": "2026-01-04" }),
        ),
        json!({ "id": "badtitle", "summary": 42, "start": { "date": "2026-01-05" }, "end": { "date": "2026-01-06" } }),
        json!({
            "id": "badreminder",
            "summary": title,
            "start": { "date": "2026-01-05" },
            "end": { "date": "2026-01-06" },
            "reminders": { "useDefault": false, "overrides": [ { "method": "popup", "minutes": "ten" } ] }
        }),
        json!({ "id": "badupdated", "updated": title, "start": { "date": "2026-01-05" }, "end": { "date": "2026-01-06" } }),
        json!({ "id": "", "start": { "date": "2026-01-05" }, "end": { "date": "2026-01-06" } }),
        json!({ "kind": "calendar#event", "id": "lastgood", "start": { "date": "2026-01-05" }, "end": { "date": "2026-01-06" } }),
    ];
    let result = google::normalize(&ctx(Provider::Google), &items);

    let good: Vec<&str> = events(&result).iter().map(|event| event.external_id.as_str()).collect();
    assert_eq!(good, ["4eahs9ghkhrvkld72hogu9ph3e", "lastgood"]);
    assert_eq!(events(&result)[0].title.as_deref(), Some("Quarterly planning"));

    let invalid = |field: &'static str, problem: &str| RejectReason::InvalidField {
        field,
        problem: problem.to_owned(),
    };
    let rejected = |id: Option<&str>, reason| Rejected {
        external_id: id.map(str::to_owned),
        reason,
    };
    assert_eq!(
        result.rejected,
        vec![
            rejected(None, RejectReason::Malformed("item is not a JSON object".to_owned())),
            rejected(None, RejectReason::MissingField("id")),
            rejected(Some("nostart"), RejectReason::MissingField("start")),
            rejected(Some("garbage"), invalid("start.dateTime", "not an RFC 3339 date-time")),
            rejected(Some("backwards"), RejectReason::EndsBeforeStart),
            rejected(
                Some("mixed"),
                invalid("end", "mixes `date` and `dateTime` with `start`")
            ),
            rejected(Some("baddate"), invalid("start.date", "not a date (YYYY-MM-DD)")),
            rejected(Some("empty"), invalid("start", "has neither `dateTime` nor `date`")),
            rejected(Some("backwardsdays"), RejectReason::EndsBeforeStart),
            rejected(Some("badtitle"), invalid("summary", "expected a string")),
            rejected(
                Some("badreminder"),
                invalid("reminders.overrides[].minutes", "expected an integer")
            ),
            rejected(Some("badupdated"), invalid("updated", "not an RFC 3339 date-time")),
            rejected(None, RejectReason::MissingField("id")),
        ]
    );
    assert_rejections_quote_nothing(&result, &[title, email, "ACME", "not an event"]);
}

#[test]
fn list_response_gives_default_reminders_and_zone() {
    let page = json!({
        "kind": "calendar#events",
        "etag": "\"p33c9vbqmpv5ug0g\"",
        "summary": "alice@example.com",
        "description": "",
        "updated": "2026-01-02T09:00:00.000Z",
        "timeZone": "Europe/Berlin",
        "accessRole": "owner",
        "defaultReminders": [
            { "method": "popup", "minutes": 10 },
            { "method": "email", "minutes": 60 },
            { "method": "sms", "minutes": 5 },
            { "method": "popup", "minutes": "soon" }
        ],
        "nextSyncToken": "CPDAlvWDx70CEPDAlvWDx70CGAU=",
        "items": []
    });
    assert_eq!(
        google::default_reminders(&page),
        vec![
            Reminder {
                minutes_before: 10,
                method: ReminderMethod::Popup
            },
            Reminder {
                minutes_before: 60,
                method: ReminderMethod::Email
            },
        ]
    );
    assert_eq!(google::calendar_time_zone(&page).as_deref(), Some("Europe/Berlin"));

    let bare = json!({ "kind": "calendar#events", "items": [] });
    assert!(google::default_reminders(&bare).is_empty());
    assert_eq!(google::calendar_time_zone(&bare), None);
    assert_eq!(
        google::calendar_time_zone(&json!({ "timeZone": "Nowhere/Special" })),
        None
    );
    assert!(google::default_reminders(&json!("not an object")).is_empty());
}

#[test]
fn extreme_and_garbage_times_never_panic() {
    let date_times = [
        "+262143-12-31T23:59:59Z",
        "-262143-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "+262143-12-31T23:59:59",
        "2011-12-30T09:00:00",
        "2026-13-01T00:00:00Z",
        "",
    ];
    let dates = [
        "+262143-12-31",
        "-262143-01-01",
        "9999-12-31",
        "2011-12-30",
        "2026-02-29",
        "",
    ];
    let zones = [
        "UTC",
        "Europe/Berlin",
        "Pacific/Apia",
        "America/Santiago",
        "tzone://Microsoft/Custom",
    ];
    for zone in zones {
        let mut ctx = ctx(Provider::Google);
        ctx.time_zone = Some(zone.to_owned());
        let mut items = Vec::new();
        for start in date_times {
            for end in date_times {
                items.push(json!({
                    "id": "timed",
                    "start": { "dateTime": start, "timeZone": zone },
                    "end": { "dateTime": end, "timeZone": zone },
                    "originalStartTime": { "dateTime": start, "timeZone": zone }
                }));
            }
        }
        for start in dates {
            for end in dates {
                items.push(json!({
                    "id": "allday",
                    "start": { "date": start },
                    "end": { "date": end },
                    "originalStartTime": { "date": start }
                }));
            }
        }
        let result = google::normalize(&ctx, &items);
        assert_eq!(result.changes.len() + result.rejected.len(), items.len());
        for event in events(&result) {
            assert!(event.end > event.start);
        }
    }
}

#[test]
fn reminders_are_the_overrides_the_calendar_defaults_or_none() {
    let item = |reminders: Option<Value>| {
        let mut item = json!({ "id": "rem1", "start": { "dateTime": "2026-01-05T09:00:00Z" }, "end": { "dateTime": "2026-01-05T10:00:00Z" } });
        if let Some(reminders) = reminders {
            item["reminders"] = reminders;
        }
        only_event(&google::normalize(&ctx(Provider::Google), &[item]))
            .reminders
            .clone()
    };
    let popup = |minutes_before| Reminder {
        minutes_before,
        method: ReminderMethod::Popup,
    };
    // No reminders object: none (the planner sends nothing for it).
    assert_eq!(item(None), vec![]);
    // The calendar's defaults (from the listing's `defaultReminders`, here 10 minutes).
    assert_eq!(item(Some(json!({ "useDefault": true }))), vec![popup(10)]);
    // Overrides replace the defaults; `sms`, retired by Google, is dropped.
    assert_eq!(
        item(Some(json!({ "useDefault": false, "overrides": [
            { "method": "sms", "minutes": 30 }, { "method": "popup", "minutes": 0 }, { "method": "popup", "minutes": 40320 }
        ] }))),
        vec![popup(0), popup(40320)]
    );
}
