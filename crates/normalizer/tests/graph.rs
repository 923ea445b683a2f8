//! Microsoft Graph event resources, shaped as `calendarView/delta` returns them.
#![recursion_limit = "256"] // the full Graph event literal nests deeply for `json!`

mod common;

use chrono::NaiveDate;
use common::{assert_rejections_quote_nothing, ctx, events, only_event, utc};
use juy_domain::{
    AllDayDates, Attendee, CalendarEvent, EventKind, EventStatus, Provider, Reminder, ReminderMethod, ResponseStatus,
    Transparency,
};
use juy_normalizer::{Change, RejectReason, Rejected, graph};
use serde_json::{Value, json};

const HTML_BODY: &str = "<html>\r\n<head>\r\n<meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\">\r\n<style type=\"text/css\" style=\"display:none\">\r\n<!--\r\np\r\n\t{margin-top:0;\r\nmargin-bottom:0}\r\n-->\r\n</style>\r\n</head>\r\n<body dir=\"ltr\">\r\n<div class=\"elementToProof\" style=\"font-family:Aptos,Aptos_EmbeddedFont,Aptos_MSFontService,Calibri,Helvetica,sans-serif; font-size:12pt; color:rgb(0,0,0)\">\r\nLet&#39;s review the Q1 roadmap &amp; budget.</div>\r\n<div class=\"elementToProof\">Bring&nbsp;your <b>numbers</b>.</div>\r\n</body>\r\n</html>\r\n";

/// An invitation to Alice from Dana, in the calendar's own zone (no `Prefer: outlook.timezone`).
fn invitation(id: &str, start: &str, end: &str) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.event",
        "@odata.etag": "W/\"ZlnW4RIAV06KYYwlrfNZvQAAKGWwbw==\"",
        "id": id,
        "createdDateTime": "2025-12-01T08:00:00.1234567Z",
        "lastModifiedDateTime": "2025-12-02T09:15:42.7654321Z",
        "changeKey": "ZlnW4RIAV06KYYwlrfNZvQAAKGWwbw==",
        "categories": [],
        "transactionId": null,
        "originalStartTimeZone": "W. Europe Standard Time",
        "originalEndTimeZone": "W. Europe Standard Time",
        "iCalUId": "040000008200E00074C5B7101A82E00800000000A0F1B5B9D85FDC01000000000000000010000000A4F1F4B4",
        "uid": "040000008200E00074C5B7101A82E00800000000A0F1B5B9D85FDC01000000000000000010000000A4F1F4B4",
        "reminderMinutesBeforeStart": 15,
        "isReminderOn": true,
        "hasAttachments": false,
        "subject": "Roadmap review",
        "bodyPreview": "Let's review the Q1 roadmap & budget.\r\nBring your numbers.",
        "importance": "normal",
        "sensitivity": "normal",
        "isAllDay": false,
        "isCancelled": false,
        "isOrganizer": false,
        "responseRequested": true,
        "seriesMasterId": null,
        "showAs": "busy",
        "type": "singleInstance",
        "webLink": "https://outlook.office365.com/owa/?itemid=AAMkAGI2TG93AAA%3D&exvsurl=1&path=/calendar/item",
        "onlineMeetingUrl": null,
        "isOnlineMeeting": false,
        "allowNewTimeProposals": true,
        "responseStatus": { "response": "tentativelyAccepted", "time": "2025-12-02T09:15:00Z" },
        "body": { "contentType": "html", "content": HTML_BODY },
        "start": { "dateTime": start, "timeZone": "W. Europe Standard Time" },
        "end": { "dateTime": end, "timeZone": "W. Europe Standard Time" },
        "location": {
            "displayName": "Conf Room Rainier",
            "locationType": "default",
            "uniqueId": "Conf Room Rainier",
            "uniqueIdType": "private"
        },
        "locations": [ { "displayName": "Conf Room Rainier", "locationType": "default" } ],
        "recurrence": null,
        "attendees": [
            {
                "type": "required",
                "status": { "response": "tentativelyAccepted", "time": "2025-12-02T09:15:00Z" },
                "emailAddress": { "name": "Alice Example", "address": "Alice@Example.com" }
            },
            {
                "type": "optional",
                "status": { "response": "none", "time": "0001-01-01T00:00:00Z" },
                "emailAddress": { "name": "Bob", "address": "bob@example.org" }
            },
            {
                "type": "resource",
                "status": { "response": "accepted", "time": "2025-12-01T08:00:05Z" },
                "emailAddress": { "name": "Conf Room Rainier", "address": "rainier@contoso.example" }
            },
            {
                "type": "required",
                "status": { "response": "none", "time": "0001-01-01T00:00:00Z" },
                "emailAddress": { "name": "Someone typed without an address" }
            }
        ],
        "organizer": { "emailAddress": { "name": "Dana", "address": "dana@contoso.example" } },
        "onlineMeeting": null
    })
}

#[test]
fn full_invitation_is_normalised_field_by_field() {
    let ctx = ctx(Provider::Microsoft);
    let item = invitation(
        "AAMkAGI2TG93AAA=",
        "2026-01-05T09:00:00.0000000",
        "2026-01-05T10:30:00.0000000",
    );
    let result = graph::normalize(&ctx, &[item]);
    let event = only_event(&result);
    let expected = CalendarEvent {
        id: event.id,
        user_id: ctx.user_id.clone(),
        calendar_id: ctx.calendar_id,
        provider: Provider::Microsoft,
        external_id: "AAMkAGI2TG93AAA=".to_owned(),
        ical_uid: Some(
            "040000008200E00074C5B7101A82E00800000000A0F1B5B9D85FDC01000000000000000010000000A4F1F4B4".to_owned(),
        ),
        title: Some("Roadmap review".to_owned()),
        location: Some("Conf Room Rainier".to_owned()),
        description: Some("Let's review the Q1 roadmap & budget.\nBring your numbers.".to_owned()),
        start: utc("2026-01-05T08:00:00Z"),
        end: utc("2026-01-05T09:30:00Z"),
        time_zone: Some("Europe/Berlin".to_owned()),
        all_day: None,
        status: EventStatus::Confirmed,
        transparency: Transparency::Opaque,
        self_response: ResponseStatus::Tentative,
        kind: EventKind::Default,
        organizer: Some(Attendee {
            email: "dana@contoso.example".to_owned(),
            name: Some("Dana".to_owned()),
            response: ResponseStatus::Organizer,
            is_self: false,
            optional: false,
        }),
        attendees: vec![
            Attendee {
                email: "Alice@Example.com".to_owned(),
                name: Some("Alice Example".to_owned()),
                response: ResponseStatus::Tentative,
                is_self: true,
                optional: false,
            },
            Attendee {
                email: "bob@example.org".to_owned(),
                name: Some("Bob".to_owned()),
                response: ResponseStatus::None,
                is_self: false,
                optional: true,
            },
            Attendee {
                email: "rainier@contoso.example".to_owned(),
                name: Some("Conf Room Rainier".to_owned()),
                response: ResponseStatus::Accepted,
                is_self: false,
                optional: false,
            },
        ],
        series_id: None,
        instance_start: None,
        reminders: vec![Reminder {
            minutes_before: 15,
            method: ReminderMethod::Popup,
        }],
        etag: Some("ZlnW4RIAV06KYYwlrfNZvQAAKGWwbw==".to_owned()),
        updated: Some(utc("2025-12-02T09:15:42.7654321Z")),
    };
    assert_eq!(event, &expected);
}

#[test]
fn windows_zone_follows_daylight_saving_time() {
    let items = [
        invitation("winter", "2026-01-05T09:00:00.0000000", "2026-01-05T10:00:00.0000000"),
        invitation("summer", "2026-07-06T09:00:00.0000000", "2026-07-06T10:00:00.0000000"),
        // The night clocks go back: 02:30 happens twice; the first one counts.
        invitation("fallback", "2026-10-25T02:30:00.0000000", "2026-10-25T03:30:00.0000000"),
        // The night clocks go forward: 02:30 does not exist; read with the winter offset.
        invitation(
            "springforward",
            "2026-03-29T02:30:00.0000000",
            "2026-03-29T04:00:00.0000000",
        ),
    ];
    let result = graph::normalize(&ctx(Provider::Microsoft), &items);
    let spans: Vec<_> = events(&result)
        .iter()
        .map(|event| (event.external_id.as_str(), event.start, event.end))
        .collect();
    assert_eq!(
        spans,
        [
            ("winter", utc("2026-01-05T08:00:00Z"), utc("2026-01-05T09:00:00Z")),
            ("summer", utc("2026-07-06T07:00:00Z"), utc("2026-07-06T08:00:00Z")),
            ("fallback", utc("2026-10-25T00:30:00Z"), utc("2026-10-25T02:30:00Z")),
            (
                "springforward",
                utc("2026-03-29T01:30:00Z"),
                utc("2026-03-29T02:00:00Z")
            ),
        ]
    );
}

#[test]
fn utc_times_keep_the_original_zone_as_the_events_zone() {
    let mut item = invitation("utcview", "2026-07-06T07:00:00.0000000", "2026-07-06T08:00:00.0000000");
    item["start"]["timeZone"] = json!("UTC");
    item["end"]["timeZone"] = json!("UTC");
    item["originalStartTimeZone"] = json!("Pacific Standard Time");
    let event = only_event(&graph::normalize(&ctx(Provider::Microsoft), &[item])).clone();
    assert_eq!(event.start, utc("2026-07-06T07:00:00Z"));
    assert_eq!(event.time_zone.as_deref(), Some("America/Los_Angeles"));

    // A custom zone falls back to the start's zone, or the calendar's when that is UTC.
    let mut custom = invitation("custom", "2026-07-06T09:00:00", "2026-07-06T10:00:00");
    custom["originalStartTimeZone"] = json!("tzone://Microsoft/Custom");
    custom["start"]["timeZone"] = json!("India Standard Time");
    custom["end"]["timeZone"] = json!("India Standard Time");
    let mut custom_utc = custom.clone();
    custom_utc["id"] = json!("customutc");
    custom_utc["start"]["timeZone"] = json!("UTC");
    custom_utc["end"]["timeZone"] = json!("UTC");
    let result = graph::normalize(&ctx(Provider::Microsoft), &[custom, custom_utc]);
    let found: Vec<_> = events(&result)
        .iter()
        .map(|event| (event.time_zone.clone(), event.start))
        .collect();
    assert_eq!(
        found,
        [
            (Some("Asia/Kolkata".to_owned()), utc("2026-07-06T03:30:00Z")),
            (Some("Europe/Berlin".to_owned()), utc("2026-07-06T09:00:00Z")),
        ]
    );
}

#[test]
fn all_day_event_keeps_its_dates() {
    let item = json!({
        "@odata.etag": "W/\"DwAAABYAAABbDZnrfnSRRb8Ugb1WrGnlAAAQ8Ej4\"",
        "id": "AAMkAGAllDay=",
        "lastModifiedDateTime": "2025-12-20T10:00:00.0000000Z",
        "changeKey": "DwAAABYAAABbDZnrfnSRRb8Ugb1WrGnlAAAQ8Ej4",
        "originalStartTimeZone": "W. Europe Standard Time",
        "originalEndTimeZone": "W. Europe Standard Time",
        "iCalUId": "040000008200E00074C5B7101A82E00800000000ALLDAY",
        "reminderMinutesBeforeStart": 1080,
        "isReminderOn": false,
        "subject": "Vacation",
        "bodyPreview": "",
        "isAllDay": true,
        "isCancelled": false,
        "showAs": "oof",
        "type": "singleInstance",
        "responseStatus": { "response": "organizer", "time": "0001-01-01T00:00:00Z" },
        "body": { "contentType": "text", "content": "" },
        "start": { "dateTime": "2026-08-03T00:00:00.0000000", "timeZone": "UTC" },
        "end": { "dateTime": "2026-08-15T00:00:00.0000000", "timeZone": "UTC" },
        "location": { "displayName": "", "locationType": "default", "uniqueIdType": "unknown" },
        "attendees": [],
        "organizer": { "emailAddress": { "name": "Alice Example", "address": "alice@example.com" } }
    });
    let event = only_event(&graph::normalize(&ctx(Provider::Microsoft), &[item])).clone();
    assert_eq!(
        event.all_day,
        Some(AllDayDates {
            start: NaiveDate::from_ymd_opt(2026, 8, 3).unwrap(),
            end: NaiveDate::from_ymd_opt(2026, 8, 15).unwrap(),
        })
    );
    assert_eq!(
        (event.start, event.end),
        (utc("2026-08-02T22:00:00Z"), utc("2026-08-14T22:00:00Z"))
    );
    assert_eq!(event.time_zone.as_deref(), Some("Europe/Berlin"));
    assert_eq!(event.kind, EventKind::OutOfOffice);
    assert_eq!(event.transparency, Transparency::Opaque);
    assert_eq!(event.self_response, ResponseStatus::Organizer);
    assert_eq!(event.organizer.as_ref().map(|o| o.is_self), Some(true));
    assert_eq!(
        (
            event.title.as_deref(),
            event.location.as_deref(),
            event.description.as_deref()
        ),
        (Some("Vacation"), None, None)
    );
    assert!(event.reminders.is_empty());
}

#[test]
fn occurrence_carries_its_series_and_original_start() {
    let mut item = invitation(
        "AAMkAGOccurrence20260112=",
        "2026-01-12T09:00:00.0000000",
        "2026-01-12T09:30:00.0000000",
    );
    item["type"] = json!("occurrence");
    item["seriesMasterId"] = json!("AAMkAGSeriesMaster=");
    item["originalStart"] = json!("2026-01-12T08:00:00Z");
    let event = only_event(&graph::normalize(&ctx(Provider::Microsoft), &[item])).clone();
    assert_eq!(event.series_id.as_deref(), Some("AAMkAGSeriesMaster="));
    assert_eq!(event.instance_start, Some(utc("2026-01-12T08:00:00Z")));
}

#[test]
fn removed_items_are_deletions_and_series_masters_are_skipped() {
    let mut master = invitation(
        "AAMkAGSeriesMaster=",
        "2026-01-05T09:00:00.0000000",
        "2026-01-05T09:30:00.0000000",
    );
    master["type"] = json!("seriesMaster");
    master["recurrence"] = json!({
        "pattern": { "type": "weekly", "interval": 1, "daysOfWeek": ["monday"], "firstDayOfWeek": "sunday" },
        "range": { "type": "noEnd", "startDate": "2026-01-05", "recurrenceTimeZone": "W. Europe Standard Time" }
    });
    let items = [
        json!({ "@odata.type": "#microsoft.graph.event", "id": "AAMkAGRemoved1=", "@removed": { "reason": "deleted" } }),
        master,
        json!({ "id": "AAMkAGRemoved2=", "@removed": { "reason": "changed" } }),
    ];
    let result = graph::normalize(&ctx(Provider::Microsoft), &items);
    assert!(result.rejected.is_empty());
    assert_eq!(
        result.changes,
        vec![
            Change::Delete {
                external_id: "AAMkAGRemoved1=".to_owned()
            },
            Change::Delete {
                external_id: "AAMkAGRemoved2=".to_owned()
            },
        ]
    );
}

#[test]
fn show_as_and_cancellation_map_to_status_transparency_and_kind() {
    let item = |id: &str, show_as: &str, cancelled: bool| {
        let mut item = invitation(id, "2026-01-05T09:00:00.0000000", "2026-01-05T10:00:00.0000000");
        item["showAs"] = json!(show_as);
        item["isCancelled"] = json!(cancelled);
        item
    };
    let items = [
        item("free", "free", false),
        item("tentative", "tentative", false),
        item("busy", "busy", false),
        item("oof", "oof", false),
        item("elsewhere", "workingElsewhere", false),
        item("unknown", "unknown", false),
        item("cancelled", "busy", true),
    ];
    let result = graph::normalize(&ctx(Provider::Microsoft), &items);
    let found: Vec<_> = events(&result)
        .iter()
        .map(|event| (event.status, event.transparency, event.kind))
        .collect();
    use EventKind as K;
    use EventStatus as S;
    use Transparency as T;
    assert_eq!(
        found,
        [
            (S::Confirmed, T::Transparent, K::Default),
            (S::Tentative, T::Opaque, K::Default),
            (S::Confirmed, T::Opaque, K::Default),
            (S::Confirmed, T::Opaque, K::OutOfOffice),
            (S::Confirmed, T::Opaque, K::WorkingElsewhere),
            (S::Confirmed, T::Opaque, K::Default),
            (S::Cancelled, T::Opaque, K::Default),
        ]
    );
}

#[test]
fn responses_map_to_the_owners_answer() {
    let answers = [
        "organizer",
        "accepted",
        "tentativelyAccepted",
        "declined",
        "notResponded",
    ];
    let items: Vec<Value> = answers
        .iter()
        .map(|answer| {
            let mut item = invitation(answer, "2026-01-05T09:00:00.0000000", "2026-01-05T10:00:00.0000000");
            item["responseStatus"] = json!({ "response": answer, "time": "2025-12-02T09:15:00Z" });
            item
        })
        .collect();
    let result = graph::normalize(&ctx(Provider::Microsoft), &items);
    let found: Vec<_> = events(&result).iter().map(|event| event.self_response).collect();
    assert_eq!(
        found,
        [
            ResponseStatus::Organizer,
            ResponseStatus::Accepted,
            ResponseStatus::Tentative,
            ResponseStatus::Declined,
            ResponseStatus::NeedsAction,
        ]
    );
}

#[test]
fn text_body_and_body_preview_are_used_as_they_are() {
    let mut text = invitation("text", "2026-01-05T09:00:00.0000000", "2026-01-05T10:00:00.0000000");
    text["body"] = json!({ "contentType": "text", "content": "Plain <not a tag> notes\r\n" });
    let mut preview = invitation("preview", "2026-01-05T09:00:00.0000000", "2026-01-05T10:00:00.0000000");
    preview.as_object_mut().unwrap().remove("body");
    preview["bodyPreview"] = json!("Only a preview");
    let mut etag_only = invitation("etag", "2026-01-05T09:00:00.0000000", "2026-01-05T10:00:00.0000000");
    etag_only.as_object_mut().unwrap().remove("changeKey");
    let result = graph::normalize(&ctx(Provider::Microsoft), &[text, preview, etag_only]);
    let found: Vec<_> = events(&result).iter().map(|event| event.description.clone()).collect();
    assert_eq!(
        found,
        [
            Some("Plain <not a tag> notes".to_owned()),
            Some("Only a preview".to_owned()),
            Some("Let's review the Q1 roadmap & budget.\nBring your numbers.".to_owned()),
        ]
    );
    assert_eq!(
        events(&result)[2].etag.as_deref(),
        Some("W/\"ZlnW4RIAV06KYYwlrfNZvQAAKGWwbw==\"")
    );
}

#[test]
fn zero_length_event_is_kept_with_one_second_and_blocks_no_time() {
    let item = invitation("zero", "2026-01-05T09:00:00.0000000", "2026-01-05T09:00:00.0000000");
    let event = only_event(&graph::normalize(&ctx(Provider::Microsoft), &[item])).clone();
    assert_eq!(
        (event.start, event.end),
        (utc("2026-01-05T08:00:00Z"), utc("2026-01-05T08:00:01Z"))
    );
    assert_eq!(event.transparency, Transparency::Transparent);
}

#[test]
fn malformed_items_are_rejected_one_by_one_without_quoting_them() {
    let good = invitation("good", "2026-01-05T09:00:00.0000000", "2026-01-05T10:00:00.0000000");
    let with = |id: &str, edit: &dyn Fn(&mut Value)| {
        let mut item = invitation(id, "2026-01-05T09:00:00.0000000", "2026-01-05T10:00:00.0000000");
        item["subject"] = json!("Secret merger talks with ACME");
        edit(&mut item);
        item
    };
    let items = vec![
        good.clone(),
        json!(["not", "an", "event"]),
        json!({ "subject": "Secret merger talks with ACME", "@removed": { "reason": "deleted" } }),
        with("nostart", &|item| {
            item.as_object_mut().unwrap().remove("start");
        }),
        with("garbage", &|item| {
            item["start"]["dateTime"] = json!("Secret merger talks with ACME")
        }),
        with("nozone", &|item| {
            item["start"].as_object_mut().unwrap().remove("timeZone");
        }),
        with("badzone", &|item| {
            item["start"]["timeZone"] = json!("Secret merger talks with ACME")
        }),
        with("customzone", &|item| {
            item["end"]["timeZone"] = json!("tzone://Microsoft/Custom")
        }),
        with("backwards", &|item| {
            item["end"]["dateTime"] = json!("2026-01-05T08:59:59.9999999")
        }),
        with("backwardsdays", &|item| {
            item["isAllDay"] = json!(true);
            item["end"]["dateTime"] = json!("2026-01-04T00:00:00.0000000");
        }),
        with("badattendees", &|item| {
            item["attendees"] = json!("dana@contoso.example")
        }),
        with("badreminder", &|item| item["reminderMinutesBeforeStart"] = json!(1e12)),
        with("badmodified", &|item| {
            item["lastModifiedDateTime"] = json!("Secret merger talks with ACME")
        }),
        with("badoriginal", &|item| item["originalStart"] = json!("yesterday")),
        good.clone(),
    ];
    let result = graph::normalize(&ctx(Provider::Microsoft), &items);
    assert_eq!(events(&result).len(), 2);
    assert!(
        events(&result)
            .iter()
            .all(|event| event.title.as_deref() == Some("Roadmap review"))
    );

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
            rejected(
                Some("garbage"),
                invalid("start.dateTime", "not a date-time (YYYY-MM-DDThh:mm:ss)")
            ),
            rejected(Some("nozone"), RejectReason::MissingField("start.timeZone")),
            rejected(Some("badzone"), invalid("start.timeZone", "unknown time zone")),
            rejected(Some("customzone"), invalid("end.timeZone", "unknown time zone")),
            rejected(Some("backwards"), RejectReason::EndsBeforeStart),
            rejected(Some("backwardsdays"), RejectReason::EndsBeforeStart),
            rejected(Some("badattendees"), invalid("attendees", "expected an array")),
            rejected(
                Some("badreminder"),
                invalid("reminderMinutesBeforeStart", "expected an integer in range")
            ),
            rejected(
                Some("badmodified"),
                invalid("lastModifiedDateTime", "not an RFC 3339 date-time")
            ),
            rejected(
                Some("badoriginal"),
                invalid("originalStart", "not an RFC 3339 date-time")
            ),
        ]
    );
    assert_rejections_quote_nothing(
        &result,
        &[
            "Secret merger",
            "ACME",
            "dana@contoso.example",
            "Roadmap review",
            "Conf Room Rainier",
        ],
    );
}

#[test]
fn extreme_and_garbage_times_never_panic() {
    let date_times = [
        "+262143-12-31T23:59:59",
        "-262143-01-01T00:00:00",
        "9999-12-31T23:59:59.9999999",
        "2011-12-30T09:00:00.0000000",
        "2026-03-29T02:30:00.0000000",
        "2026-13-01T00:00:00",
        "2026-01-05T09:00:00+01:00",
        "",
    ];
    let zones = [
        "UTC",
        "W. Europe Standard Time",
        "Samoa Standard Time",
        "Pacific SA Standard Time",
    ];
    let mut items = Vec::new();
    for zone in zones {
        for start in date_times {
            for end in date_times {
                for all_day in [false, true] {
                    items.push(json!({
                        "id": "item",
                        "isAllDay": all_day,
                        "start": { "dateTime": start, "timeZone": zone },
                        "end": { "dateTime": end, "timeZone": zone },
                        "originalStart": start,
                        "originalStartTimeZone": zone
                    }));
                }
            }
        }
    }
    let result = graph::normalize(&ctx(Provider::Microsoft), &items);
    assert_eq!(result.changes.len() + result.rejected.len(), items.len());
    for event in events(&result) {
        assert!(event.end > event.start);
    }
}

#[test]
fn is_organizer_marks_the_owner_even_under_an_alias() {
    let mut item = invitation("alias", "2026-01-05T09:00:00.0000000", "2026-01-05T10:00:00.0000000");
    item["isOrganizer"] = json!(true);
    item["organizer"] = json!({ "emailAddress": { "name": "Alice", "address": "a.example@example.com" } });
    item["attendees"] = json!([]);
    item.as_object_mut().unwrap().remove("responseStatus");
    let event = only_event(&graph::normalize(&ctx(Provider::Microsoft), &[item])).clone();
    assert_eq!(event.organizer.map(|organizer| organizer.is_self), Some(true));
    assert_eq!(event.self_response, ResponseStatus::Organizer);
}

#[test]
fn a_reminder_needs_is_reminder_on_and_its_minutes() {
    let reminders = |on: Value, minutes: Option<i64>| {
        let mut item = invitation(
            "AAMkAGReminder=",
            "2026-01-12T09:00:00.0000000",
            "2026-01-12T09:30:00.0000000",
        );
        item["isReminderOn"] = on;
        match minutes {
            Some(minutes) => item["reminderMinutesBeforeStart"] = json!(minutes),
            None => {
                item.as_object_mut().unwrap().remove("reminderMinutesBeforeStart");
            }
        }
        only_event(&graph::normalize(&ctx(Provider::Microsoft), &[item]))
            .reminders
            .clone()
    };
    assert_eq!(
        reminders(json!(true), Some(0)),
        vec![Reminder {
            minutes_before: 0,
            method: ReminderMethod::Popup
        }]
    );
    assert_eq!(reminders(json!(false), Some(15)), vec![]);
    assert_eq!(reminders(json!(true), None), vec![]);
}
