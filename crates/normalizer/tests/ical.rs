//! iCalendar objects as CalDAV servers hand them out → events.

// In a module so that `cargo test -p juy-normalizer ical` selects these tests.
mod ical {
    use std::time::{Duration, Instant};

    use chrono::{DateTime, NaiveDate, Utc};
    use juy_domain::{
        CalendarEvent, CalendarId, EventStatus, Provider, Reminder, ReminderMethod, ResponseStatus, TimeRange,
        Transparency, UserId,
    };
    use juy_normalizer::ical::{MAX_OCCURRENCES, normalize_object};
    use juy_normalizer::{CalendarContext, Change, Normalized, RejectReason};

    const HREF: &str = "/calendars/alice/home/event.ics";

    /// Alice's calendar, in Berlin unless said otherwise.
    fn ctx(zone: Option<&str>) -> CalendarContext {
        CalendarContext {
            user_id: UserId::new("user-alice").expect("user id"),
            calendar_id: CalendarId::new(),
            provider: Provider::Caldav,
            time_zone: zone.map(str::to_owned),
            default_reminders: vec![],
            self_emails: vec!["alice@example.com".to_owned()],
        }
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("RFC 3339")
            .with_timezone(&Utc)
    }

    fn date(text: &str) -> NaiveDate {
        text.parse().expect("date")
    }

    /// 2026 as a whole.
    fn year_2026() -> TimeRange {
        TimeRange::new(utc("2026-01-01T00:00:00Z"), utc("2027-01-01T00:00:00Z")).expect("range")
    }

    fn normalize(ctx: &CalendarContext, data: &str, window: TimeRange) -> Normalized {
        normalize_object(ctx, HREF, Some("\"etag-1\""), data, window)
    }

    /// The upserted events, sorted by start.
    fn events(result: &Normalized) -> Vec<&CalendarEvent> {
        let mut events: Vec<&CalendarEvent> = result
            .changes
            .iter()
            .map(|change| match change {
                Change::Upsert(event) => event.as_ref(),
                Change::Delete { external_id } => panic!("unexpected delete of {external_id}"),
            })
            .collect();
        events.sort_by_key(|e| e.start);
        events
    }

    /// The one event of a clean result.
    fn only(result: &Normalized) -> &CalendarEvent {
        assert!(result.rejected.is_empty(), "rejected: {:?}", result.rejected);
        match events(result).as_slice() {
            [event] => event,
            other => panic!("expected one event, got {}", other.len()),
        }
    }

    fn starts(events: &[&CalendarEvent]) -> Vec<DateTime<Utc>> {
        events.iter().map(|e| e.start).collect()
    }

    const ICLOUD_WITH_VTIMEZONE: &str = "BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//Apple Inc.//macOS 14.5//EN\r
CALSCALE:GREGORIAN\r
BEGIN:VTIMEZONE\r
TZID:America/Los_Angeles\r
BEGIN:DAYLIGHT\r
TZOFFSETFROM:-0800\r
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU\r
DTSTART:20070311T020000\r
TZNAME:PDT\r
TZOFFSETTO:-0700\r
END:DAYLIGHT\r
BEGIN:STANDARD\r
TZOFFSETFROM:-0700\r
RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU\r
DTSTART:20071104T020000\r
TZNAME:PST\r
TZOFFSETTO:-0800\r
END:STANDARD\r
END:VTIMEZONE\r
BEGIN:VEVENT\r
CREATED:20260301T170212Z\r
DTEND;TZID=America/Los_Angeles:20260315T113000\r
DTSTAMP:20260301T170213Z\r
DTSTART;TZID=America/Los_Angeles:20260315T100000\r
LAST-MODIFIED:20260301T170212Z\r
LOCATION:Blue Bottle Coffee\\, Mint Plaza\\nSan Francisco\r
SEQUENCE:1\r
SUMMARY:Coffee with Bob\r
TRANSP:OPAQUE\r
UID:5A2F4C8E-2B6A-4F0D-9E4B-1C3D5E7F9A0B\r
URL;VALUE=URI:\r
X-APPLE-TRAVEL-ADVISORY-BEHAVIOR:AUTOMATIC\r
BEGIN:VALARM\r
ACTION:DISPLAY\r
DESCRIPTION:Reminder\r
TRIGGER:-PT30M\r
UID:0E0D4E2A-1111-4C2B-8E2D-6B7F0A1B2C3D\r
X-WR-ALARMUID:0E0D4E2A-1111-4C2B-8E2D-6B7F0A1B2C3D\r
END:VALARM\r
BEGIN:VALARM\r
ACTION:NONE\r
TRIGGER;VALUE=DATE-TIME:19760401T005545Z\r
X-APPLE-DEFAULT-ALARM:TRUE\r
END:VALARM\r
END:VEVENT\r
END:VCALENDAR\r
";

    #[test]
    fn icloud_event_with_vtimezone_is_placed_in_its_zone() {
        let result = normalize(&ctx(Some("Europe/Berlin")), ICLOUD_WITH_VTIMEZONE, year_2026());
        let event = only(&result);
        // 15 March 2026 is after the US switch to PDT (8 March): UTC-7.
        assert_eq!(event.start, utc("2026-03-15T17:00:00Z"));
        assert_eq!(event.end, utc("2026-03-15T18:30:00Z"));
        assert_eq!(event.time_zone.as_deref(), Some("America/Los_Angeles"));
        assert_eq!(event.external_id, HREF);
        assert_eq!(event.series_id, None);
        assert_eq!(event.instance_start, None);
        assert_eq!(event.ical_uid.as_deref(), Some("5A2F4C8E-2B6A-4F0D-9E4B-1C3D5E7F9A0B"));
        assert_eq!(event.etag.as_deref(), Some("\"etag-1\""));
        assert_eq!(event.title.as_deref(), Some("Coffee with Bob"));
        assert_eq!(
            event.location.as_deref(),
            Some("Blue Bottle Coffee, Mint Plaza\nSan Francisco")
        );
        assert_eq!(event.updated, Some(utc("2026-03-01T17:02:12Z")));
        assert_eq!(event.all_day, None);
        assert_eq!(event.status, EventStatus::Confirmed);
        assert_eq!(event.transparency, Transparency::Opaque);
        assert_eq!(event.self_response, ResponseStatus::None);
        assert_eq!(event.provider, Provider::Caldav);
        // The absolute ACTION:NONE placeholder alarm is skipped.
        assert_eq!(
            event.reminders,
            vec![Reminder {
                minutes_before: 30,
                method: ReminderMethod::Popup
            }]
        );
    }

    /// Outlook writes Windows zone names, with a VTIMEZONE carrying the rules.
    const OUTLOOK_WEEKLY_ACROSS_DST: &str = "BEGIN:VCALENDAR\r
PRODID:-//Microsoft Corporation//Outlook 16.0 MIMEDIR//EN\r
VERSION:2.0\r
METHOD:REQUEST\r
X-MS-OLK-FORCEINSPECTOROPEN:TRUE\r
BEGIN:VTIMEZONE\r
TZID:W. Europe Standard Time\r
BEGIN:STANDARD\r
DTSTART:16011028T030000\r
RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10\r
TZOFFSETFROM:+0200\r
TZOFFSETTO:+0100\r
END:STANDARD\r
BEGIN:DAYLIGHT\r
DTSTART:16010325T020000\r
RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3\r
TZOFFSETFROM:+0100\r
TZOFFSETTO:+0200\r
END:DAYLIGHT\r
END:VTIMEZONE\r
BEGIN:VEVENT\r
ATTENDEE;CN=Alice Example;RSVP=TRUE;PARTSTAT=TENTATIVE:mailto:Alice@Example.com\r
ATTENDEE;CN=\"Carol, the PM\";ROLE=OPT-PARTICIPANT;RSVP=TRUE:mailto:carol@example.net\r
CLASS:PUBLIC\r
CREATED:20260310T101500Z\r
DESCRIPTION:Quick status round.\\n\r
DTEND;TZID=\"W. Europe Standard Time\":20260323T093000\r
DTSTAMP:20260310T101500Z\r
DTSTART;TZID=\"W. Europe Standard Time\":20260323T090000\r
LAST-MODIFIED:20260310T101500Z\r
LOCATION:Teams\r
ORGANIZER;CN=Dave Boss:mailto:dave@example.net\r
PRIORITY:5\r
RRULE:FREQ=WEEKLY;COUNT=3;BYDAY=MO\r
SEQUENCE:0\r
SUMMARY;LANGUAGE=en-us:Status\r
TRANSP:OPAQUE\r
UID:040000008200E00074C5B7101A82E00800000000D0C2A0F1B0B4DC01000000000000000010000000\r
X-MICROSOFT-CDO-BUSYSTATUS:TENTATIVE\r
X-MICROSOFT-CDO-IMPORTANCE:1\r
X-MICROSOFT-DISALLOW-COUNTER:FALSE\r
BEGIN:VALARM\r
DESCRIPTION:REMINDER\r
TRIGGER;RELATED=START:-PT15M\r
ACTION:DISPLAY\r
END:VALARM\r
END:VEVENT\r
END:VCALENDAR\r
";

    #[test]
    fn outlook_windows_zone_keeps_wall_clock_across_dst() {
        let result = normalize(&ctx(Some("Europe/Berlin")), OUTLOOK_WEEKLY_ACROSS_DST, year_2026());
        assert!(result.rejected.is_empty(), "{:?}", result.rejected);
        let events = events(&result);
        // 09:00 in Berlin: CET (UTC+1) on 23 March, CEST (UTC+2) after 29 March.
        assert_eq!(
            starts(&events),
            vec![
                utc("2026-03-23T08:00:00Z"),
                utc("2026-03-30T07:00:00Z"),
                utc("2026-04-06T07:00:00Z")
            ]
        );
        for event in &events {
            assert_eq!(event.end - event.start, chrono::TimeDelta::minutes(30));
            assert_eq!(event.time_zone.as_deref(), Some("Europe/Berlin"));
            assert_eq!(event.series_id.as_deref(), Some(HREF));
            assert_eq!(
                event.external_id,
                format!("{HREF}#{}", event.start.format("%Y%m%dT%H%M%SZ"))
            );
            assert_eq!(event.instance_start, Some(event.start));
            assert_eq!(event.self_response, ResponseStatus::Tentative);
            assert_eq!(
                event.reminders,
                vec![Reminder {
                    minutes_before: 15,
                    method: ReminderMethod::Popup
                }]
            );
        }
        let first = events[0];
        assert_eq!(first.external_id, format!("{HREF}#20260323T080000Z"));
        let organizer = first.organizer.as_ref().expect("organizer");
        assert_eq!(organizer.email, "dave@example.net");
        assert_eq!(organizer.response, ResponseStatus::Organizer);
        assert!(!organizer.is_self);
        let alice = &first.attendees[0];
        assert_eq!(alice.email, "alice@example.com", "mailto: stripped, lowercased");
        assert!(alice.is_self);
        assert_eq!(alice.response, ResponseStatus::Tentative);
        let carol = &first.attendees[1];
        assert_eq!(carol.name.as_deref(), Some("Carol, the PM"));
        assert!(carol.optional);
        assert_eq!(
            carol.response,
            ResponseStatus::NeedsAction,
            "no PARTSTAT means NEEDS-ACTION"
        );
    }

    /// A Windows zone name Outlook wrote without the zone table resolving it:
    /// the VTIMEZONE's own observances are used, DST included.
    #[test]
    fn unknown_tzid_falls_back_to_the_vtimezone_observances() {
        let data = OUTLOOK_WEEKLY_ACROSS_DST.replace("W. Europe Standard Time", "Customized Time Zone");
        let result = normalize(&ctx(None), &data, year_2026());
        assert!(result.rejected.is_empty(), "{:?}", result.rejected);
        let events = events(&result);
        assert_eq!(
            starts(&events),
            vec![
                utc("2026-03-23T08:00:00Z"),
                utc("2026-03-30T07:00:00Z"),
                utc("2026-04-06T07:00:00Z")
            ]
        );
        assert!(
            events.iter().all(|e| e.time_zone.is_none()),
            "no IANA name for a custom zone"
        );
    }

    /// Google Calendar's export: a weekly series, an EXDATE, a moved instance and
    /// a cancelled one.
    const GOOGLE_WEEKLY_SERIES: &str = "BEGIN:VCALENDAR\r
PRODID:-//Google Inc//Google Calendar 70.9054//EN\r
VERSION:2.0\r
CALSCALE:GREGORIAN\r
METHOD:PUBLISH\r
X-WR-CALNAME:alice@example.com\r
X-WR-TIMEZONE:Europe/Berlin\r
BEGIN:VTIMEZONE\r
TZID:Europe/Berlin\r
X-LIC-LOCATION:Europe/Berlin\r
BEGIN:DAYLIGHT\r
TZOFFSETFROM:+0100\r
TZOFFSETTO:+0200\r
TZNAME:CEST\r
DTSTART:19700329T020000\r
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r
END:DAYLIGHT\r
BEGIN:STANDARD\r
TZOFFSETFROM:+0200\r
TZOFFSETTO:+0100\r
TZNAME:CET\r
DTSTART:19701025T030000\r
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r
END:STANDARD\r
END:VTIMEZONE\r
BEGIN:VEVENT\r
DTSTART;TZID=Europe/Berlin:20260105T100000\r
DTEND;TZID=Europe/Berlin:20260105T103000\r
RRULE:FREQ=WEEKLY;WKST=MO;UNTIL=20260223T085959Z;BYDAY=MO\r
EXDATE;TZID=Europe/Berlin:20260119T100000\r
DTSTAMP:20260102T120000Z\r
ORGANIZER;CN=Alice:mailto:alice@example.com\r
UID:7kukuqrfedlm2f9t0vr42q2b3s@google.com\r
ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=ACCEPTED;CN=alice@\r
 example.com;X-NUM-GUESTS=0:mailto:alice@example.com\r
ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;CN=Bo\r
 b;X-NUM-GUESTS=0:mailto:bob@example.org\r
CREATED:20251220T090000Z\r
DESCRIPTION:Weekly sync\\nAgenda: https://docs.example.com/d/1\r
LAST-MODIFIED:20251221T090000Z\r
LOCATION:Room 1\r
SEQUENCE:0\r
STATUS:CONFIRMED\r
SUMMARY:Team sync\r
TRANSP:OPAQUE\r
BEGIN:VALARM\r
ACTION:DISPLAY\r
DESCRIPTION:This is an event reminder\r
TRIGGER:-P0DT0H10M0S\r
END:VALARM\r
BEGIN:VALARM\r
ACTION:EMAIL\r
DESCRIPTION:This is an event reminder\r
SUMMARY:Alarm notification\r
ATTENDEE:mailto:alice@example.com\r
TRIGGER:-P1D\r
END:VALARM\r
END:VEVENT\r
BEGIN:VEVENT\r
DTSTART;TZID=Europe/Berlin:20260127T140000\r
DTEND;TZID=Europe/Berlin:20260127T150000\r
DTSTAMP:20260102T120000Z\r
ORGANIZER;CN=Alice:mailto:alice@example.com\r
UID:7kukuqrfedlm2f9t0vr42q2b3s@google.com\r
RECURRENCE-ID;TZID=Europe/Berlin:20260126T100000\r
CREATED:20251220T090000Z\r
LAST-MODIFIED:20260110T090000Z\r
LOCATION:Room 2\r
SEQUENCE:1\r
STATUS:CONFIRMED\r
SUMMARY:Team sync (moved)\r
TRANSP:OPAQUE\r
END:VEVENT\r
BEGIN:VEVENT\r
DTSTART;TZID=Europe/Berlin:20260209T100000\r
DTEND;TZID=Europe/Berlin:20260209T103000\r
DTSTAMP:20260102T120000Z\r
UID:7kukuqrfedlm2f9t0vr42q2b3s@google.com\r
RECURRENCE-ID;TZID=Europe/Berlin:20260209T100000\r
SEQUENCE:1\r
STATUS:CANCELLED\r
SUMMARY:Team sync\r
END:VEVENT\r
END:VCALENDAR\r
";

    #[test]
    fn google_series_with_exdate_moved_and_cancelled_instances() {
        let result = normalize(&ctx(Some("Europe/Berlin")), GOOGLE_WEEKLY_SERIES, year_2026());
        assert!(result.rejected.is_empty(), "{:?}", result.rejected);
        let events = events(&result);
        // 19 Jan excluded, 26 Jan moved to 27 Jan 14:00, 9 Feb cancelled, 23 Feb after UNTIL.
        assert_eq!(
            starts(&events),
            vec![
                utc("2026-01-05T09:00:00Z"),
                utc("2026-01-12T09:00:00Z"),
                utc("2026-01-27T13:00:00Z"),
                utc("2026-02-02T09:00:00Z"),
                utc("2026-02-16T09:00:00Z"),
            ]
        );
        let moved = events[2];
        assert_eq!(
            moved.external_id,
            format!("{HREF}#20260126T090000Z"),
            "identity is the original start"
        );
        assert_eq!(moved.instance_start, Some(utc("2026-01-26T09:00:00Z")));
        assert_eq!(moved.end, utc("2026-01-27T14:00:00Z"));
        assert_eq!(moved.title.as_deref(), Some("Team sync (moved)"));
        assert_eq!(moved.location.as_deref(), Some("Room 2"));
        assert_eq!(moved.updated, Some(utc("2026-01-10T09:00:00Z")));

        let first = events[0];
        assert_eq!(first.title.as_deref(), Some("Team sync"));
        assert_eq!(
            first.description.as_deref(),
            Some("Weekly sync\nAgenda: https://docs.example.com/d/1")
        );
        assert_eq!(first.self_response, ResponseStatus::Organizer, "the organiser is Alice");
        assert_eq!(first.attendees.len(), 2);
        assert_eq!(first.attendees[1].name.as_deref(), Some("Bob"), "folded parameter");
        assert_eq!(
            first.reminders,
            vec![
                Reminder {
                    minutes_before: 10,
                    method: ReminderMethod::Popup
                },
                Reminder {
                    minutes_before: 1440,
                    method: ReminderMethod::Email
                },
            ]
        );
        assert!(
            events
                .iter()
                .all(|e| e.ical_uid.as_deref() == Some("7kukuqrfedlm2f9t0vr42q2b3s@google.com"))
        );
        assert!(events.iter().all(|e| e.series_id.as_deref() == Some(HREF)));
    }

    #[test]
    fn only_occurrences_overlapping_the_window_are_returned() {
        let window = TimeRange::new(utc("2026-01-12T09:15:00Z"), utc("2026-02-02T09:00:00Z")).expect("range");
        let result = normalize(&ctx(Some("Europe/Berlin")), GOOGLE_WEEKLY_SERIES, window);
        let events = events(&result);
        // 12 Jan 09:00–09:30 overlaps; 2 Feb 09:00 starts at the window's end.
        assert_eq!(
            starts(&events),
            vec![utc("2026-01-12T09:00:00Z"), utc("2026-01-27T13:00:00Z")]
        );
    }

    #[test]
    fn moved_override_from_outside_the_window_is_kept() {
        // The original 26 Jan is outside this window, its moved instance inside.
        let window = TimeRange::new(utc("2026-01-27T00:00:00Z"), utc("2026-01-28T00:00:00Z")).expect("range");
        let result = normalize(&ctx(Some("Europe/Berlin")), GOOGLE_WEEKLY_SERIES, window);
        let event = only(&result);
        assert_eq!(event.instance_start, Some(utc("2026-01-26T09:00:00Z")));
    }

    fn wrap(body: &str) -> String {
        format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\n{body}END:VCALENDAR\r\n")
    }

    #[test]
    fn all_day_multi_day_event_uses_dates_and_calendar_midnights() {
        let data = wrap(
            "BEGIN:VEVENT\r\nUID:trip\r\nDTSTAMP:20260101T000000Z\r\nDTSTART;VALUE=DATE:20260706\r\n\
         DTEND;VALUE=DATE:20260709\r\nSUMMARY:Trip\r\nTRANSP:TRANSPARENT\r\nEND:VEVENT\r\n",
        );
        let event = only(&normalize(&ctx(Some("Europe/Berlin")), &data, year_2026())).clone();
        let dates = event.all_day.expect("all-day");
        assert_eq!(
            (dates.start, dates.end),
            (date("2026-07-06"), date("2026-07-09")),
            "end exclusive"
        );
        assert_eq!(event.start, utc("2026-07-05T22:00:00Z"), "midnight in Berlin (CEST)");
        assert_eq!(event.end, utc("2026-07-08T22:00:00Z"));
        assert_eq!(event.time_zone, None);
        assert_eq!(event.transparency, Transparency::Transparent);

        let in_utc = only(&normalize(&ctx(None), &data, year_2026())).clone();
        assert_eq!(
            in_utc.start,
            utc("2026-07-06T00:00:00Z"),
            "no calendar zone: UTC midnight"
        );
    }

    #[test]
    fn date_without_end_lasts_one_day() {
        let data =
            wrap("BEGIN:VEVENT\r\nUID:bday\r\nDTSTART;VALUE=DATE:20260310\r\nSUMMARY:Birthday\r\nEND:VEVENT\r\n");
        let event = only(&normalize(&ctx(None), &data, year_2026())).clone();
        let dates = event.all_day.expect("all-day");
        assert_eq!((dates.start, dates.end), (date("2026-03-10"), date("2026-03-11")));
        assert_eq!(event.end - event.start, chrono::TimeDelta::days(1));
    }

    #[test]
    fn all_day_end_on_its_start_day_is_read_as_one_day() {
        let data =
            wrap("BEGIN:VEVENT\r\nUID:x\r\nDTSTART;VALUE=DATE:20260310\r\nDTEND;VALUE=DATE:20260310\r\nEND:VEVENT\r\n");
        let event = only(&normalize(&ctx(None), &data, year_2026())).clone();
        assert_eq!(event.all_day.map(|d| d.end), Some(date("2026-03-11")));
    }

    #[test]
    fn duration_gives_the_end() {
        let data = wrap(
            "BEGIN:VEVENT\r\nUID:d\r\nDTSTART:20260310T090000Z\r\nDURATION:PT1H30M\r\nSUMMARY:Workshop\r\nEND:VEVENT\r\n",
        );
        let event = only(&normalize(&ctx(Some("Europe/Berlin")), &data, year_2026())).clone();
        assert_eq!(
            (event.start, event.end),
            (utc("2026-03-10T09:00:00Z"), utc("2026-03-10T10:30:00Z"))
        );
        assert_eq!(event.time_zone, None, "a UTC time names no zone");
    }

    #[test]
    fn duration_in_days_is_nominal_across_dst() {
        // P1D from 28 March 12:00 in Berlin ends 29 March 12:00 local: 23 hours.
        let data = wrap(
            "BEGIN:VEVENT\r\nUID:d\r\nDTSTART;TZID=Europe/Berlin:20260328T120000\r\nDURATION:P1D\r\nEND:VEVENT\r\n",
        );
        let event = only(&normalize(&ctx(None), &data, year_2026())).clone();
        assert_eq!(
            (event.start, event.end),
            (utc("2026-03-28T11:00:00Z"), utc("2026-03-29T10:00:00Z"))
        );
    }

    #[test]
    fn date_time_without_end_takes_no_time_and_is_free() {
        let data = wrap("BEGIN:VEVENT\r\nUID:z\r\nDTSTART:20260310T090000Z\r\nSUMMARY:Call mum\r\nEND:VEVENT\r\n");
        let event = only(&normalize(&ctx(None), &data, year_2026())).clone();
        assert_eq!(event.start, utc("2026-03-10T09:00:00Z"));
        assert_eq!(event.end, utc("2026-03-10T09:00:01Z"), "the store needs end > start");
        assert_eq!(
            event.transparency,
            Transparency::Transparent,
            "zero-length blocks no time"
        );

        let same =
            wrap("BEGIN:VEVENT\r\nUID:z\r\nDTSTART:20260310T090000Z\r\nDTEND:20260310T090000Z\r\nEND:VEVENT\r\n");
        assert_eq!(
            only(&normalize(&ctx(None), &same, year_2026())).end,
            utc("2026-03-10T09:00:01Z")
        );
    }

    #[test]
    fn end_before_start_is_rejected() {
        let data =
            wrap("BEGIN:VEVENT\r\nUID:z\r\nDTSTART:20260310T090000Z\r\nDTEND:20260310T080000Z\r\nEND:VEVENT\r\n");
        let result = normalize(&ctx(None), &data, year_2026());
        assert!(result.changes.is_empty());
        assert_eq!(result.rejected.len(), 1);
        assert_eq!(result.rejected[0].reason, RejectReason::EndsBeforeStart);
        assert_eq!(result.rejected[0].external_id.as_deref(), Some(HREF));
    }

    #[test]
    fn floating_time_is_read_in_the_calendar_zone_else_utc() {
        let data = wrap(
            "BEGIN:VEVENT\r\nUID:f\r\nDTSTART:20260710T090000\r\nDTEND:20260710T100000\r\nSUMMARY:Gym\r\nEND:VEVENT\r\n",
        );
        let berlin = only(&normalize(&ctx(Some("Europe/Berlin")), &data, year_2026())).clone();
        assert_eq!(berlin.start, utc("2026-07-10T07:00:00Z"));
        assert_eq!(berlin.time_zone, None);
        let nowhere = only(&normalize(&ctx(None), &data, year_2026())).clone();
        assert_eq!(nowhere.start, utc("2026-07-10T09:00:00Z"));
    }

    #[test]
    fn rdate_adds_occurrences_including_periods() {
        let data = wrap(
            "BEGIN:VEVENT\r\nUID:r\r\nDTSTART;TZID=Europe/Berlin:20260302T090000\r\n\
         DTEND;TZID=Europe/Berlin:20260302T100000\r\n\
         RDATE;TZID=Europe/Berlin:20260304T090000,20260306T150000\r\n\
         RDATE;VALUE=PERIOD:20260310T120000Z/20260310T140000Z\r\nSUMMARY:Clinic\r\nEND:VEVENT\r\n",
        );
        let result = normalize(&ctx(None), &data, year_2026());
        assert!(result.rejected.is_empty(), "{:?}", result.rejected);
        let events = events(&result);
        assert_eq!(
            events.iter().map(|e| (e.start, e.end)).collect::<Vec<_>>(),
            vec![
                (utc("2026-03-02T08:00:00Z"), utc("2026-03-02T09:00:00Z")),
                (utc("2026-03-04T08:00:00Z"), utc("2026-03-04T09:00:00Z")),
                (utc("2026-03-06T14:00:00Z"), utc("2026-03-06T15:00:00Z")),
                (utc("2026-03-10T12:00:00Z"), utc("2026-03-10T14:00:00Z")),
            ]
        );
        assert!(events.iter().all(|e| e.series_id.as_deref() == Some(HREF)));
        assert_eq!(events[0].external_id, format!("{HREF}#20260302T080000Z"));
    }

    #[test]
    fn alarms_relative_to_end_and_email_ones_are_reminders() {
        let data = wrap(
            "BEGIN:VEVENT\r\nUID:a\r\nDTSTART:20260310T090000Z\r\nDTEND:20260310T100000Z\r\n\
         BEGIN:VALARM\r\nACTION:EMAIL\r\nTRIGGER:-PT2H\r\nSUMMARY:x\r\nDESCRIPTION:y\r\nEND:VALARM\r\n\
         BEGIN:VALARM\r\nACTION:AUDIO\r\nTRIGGER;RELATED=END:-PT15M\r\nEND:VALARM\r\n\
         BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:PT5M\r\nEND:VALARM\r\n\
         BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER;VALUE=DATE-TIME:20260310T080000Z\r\nEND:VALARM\r\n\
         END:VEVENT\r\n",
        );
        let event = only(&normalize(&ctx(None), &data, year_2026())).clone();
        assert_eq!(
            event.reminders,
            vec![
                Reminder {
                    minutes_before: 120,
                    method: ReminderMethod::Email
                },
                // 15 minutes before the end of a one-hour event: 45 minutes after its start.
                Reminder {
                    minutes_before: -45,
                    method: ReminderMethod::Popup
                },
                Reminder {
                    minutes_before: -5,
                    method: ReminderMethod::Popup
                },
            ]
        );
    }

    #[test]
    fn self_response_comes_from_the_own_attendee() {
        let data = wrap(
            "BEGIN:VEVENT\r\nUID:i\r\nDTSTART:20260310T090000Z\r\nDTEND:20260310T100000Z\r\n\
         ORGANIZER;CN=Bob:mailto:bob@example.org\r\n\
         ATTENDEE;PARTSTAT=ACCEPTED:mailto:bob@example.org\r\n\
         ATTENDEE;CN=Alice;PARTSTAT=DECLINED;ROLE=REQ-PARTICIPANT:MAILTO:ALICE@EXAMPLE.COM\r\n\
         ATTENDEE;CUTYPE=ROOM;PARTSTAT=ACCEPTED:urn:uuid:6f3a0e1c-room\r\nEND:VEVENT\r\n",
        );
        let event = only(&normalize(&ctx(None), &data, year_2026())).clone();
        assert_eq!(event.self_response, ResponseStatus::Declined);
        assert_eq!(event.attendees.len(), 2, "an attendee without an address is left out");
        let alice = &event.attendees[1];
        assert_eq!(
            (alice.email.as_str(), alice.is_self, alice.optional),
            ("alice@example.com", true, false)
        );
        assert_eq!(alice.name.as_deref(), Some("Alice"));
        assert!(!event.organizer.expect("organizer").is_self);
    }

    #[test]
    fn status_values_are_mapped() {
        for (status, expected) in [
            ("TENTATIVE", EventStatus::Tentative),
            ("CANCELLED", EventStatus::Cancelled),
            ("CONFIRMED", EventStatus::Confirmed),
        ] {
            let data = wrap(&format!(
                "BEGIN:VEVENT\r\nUID:s\r\nDTSTART:20260310T090000Z\r\nDTEND:20260310T100000Z\r\nSTATUS:{status}\r\nEND:VEVENT\r\n"
            ));
            assert_eq!(only(&normalize(&ctx(None), &data, year_2026())).status, expected);
        }
    }

    #[test]
    fn lf_only_with_folded_lines_and_escapes() {
        let data = "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Radicale//NONSGML//EN\nBEGIN:VEVENT\nUID:lf-only\n\
                DTSTART;TZID=Europe/Berlin:20260410T180000\nDTEND;TZID=Europe/Berlin:20260410T190000\n\
                SUMMARY:A very long summary that a client folded somewhere in the mid\n dle of a word\n\
                DESCRIPTION:Bring: bread\\, cheese\\; wine\\nand a \\\\ backslash\nEND:VEVENT\nEND:VCALENDAR\n";
        let event = only(&normalize(&ctx(None), data, year_2026())).clone();
        assert_eq!(
            event.title.as_deref(),
            Some("A very long summary that a client folded somewhere in the middle of a word")
        );
        assert_eq!(
            event.description.as_deref(),
            Some("Bring: bread, cheese; wine\nand a \\ backslash")
        );
        assert_eq!(event.start, utc("2026-04-10T16:00:00Z"));
    }

    #[test]
    fn this_and_future_override_moves_later_occurrences() {
        let data = wrap(
            "BEGIN:VEVENT\r\nUID:tf\r\nDTSTART:20260302T090000Z\r\nDTEND:20260302T100000Z\r\n\
         RRULE:FREQ=DAILY;COUNT=5\r\nSUMMARY:Standup\r\nEND:VEVENT\r\n\
         BEGIN:VEVENT\r\nUID:tf\r\nRECURRENCE-ID;RANGE=THISANDFUTURE:20260304T090000Z\r\n\
         DTSTART:20260304T110000Z\r\nDTEND:20260304T113000Z\r\nSUMMARY:Standup (later)\r\nEND:VEVENT\r\n",
        );
        let result = normalize(&ctx(None), &data, year_2026());
        assert!(result.rejected.is_empty(), "{:?}", result.rejected);
        let events = events(&result);
        assert_eq!(
            events
                .iter()
                .map(|e| (e.start, e.end, e.title.as_deref()))
                .collect::<Vec<_>>(),
            vec![
                (
                    utc("2026-03-02T09:00:00Z"),
                    utc("2026-03-02T10:00:00Z"),
                    Some("Standup")
                ),
                (
                    utc("2026-03-03T09:00:00Z"),
                    utc("2026-03-03T10:00:00Z"),
                    Some("Standup")
                ),
                (
                    utc("2026-03-04T11:00:00Z"),
                    utc("2026-03-04T11:30:00Z"),
                    Some("Standup (later)")
                ),
                (
                    utc("2026-03-05T11:00:00Z"),
                    utc("2026-03-05T11:30:00Z"),
                    Some("Standup (later)")
                ),
                (
                    utc("2026-03-06T11:00:00Z"),
                    utc("2026-03-06T11:30:00Z"),
                    Some("Standup (later)")
                ),
            ]
        );
        assert_eq!(events[3].external_id, format!("{HREF}#20260305T090000Z"));
    }

    #[test]
    fn all_day_series_ids_use_dates() {
        let data = wrap(
            "BEGIN:VEVENT\r\nUID:bins\r\nDTSTART;VALUE=DATE:20260105\r\nDTEND;VALUE=DATE:20260106\r\n\
         RRULE:FREQ=WEEKLY;UNTIL=20260119\r\nEXDATE;VALUE=DATE:20260112\r\nSUMMARY:Bins out\r\nEND:VEVENT\r\n",
        );
        let result = normalize(&ctx(Some("Europe/Berlin")), &data, year_2026());
        let events = events(&result);
        assert_eq!(
            events.iter().map(|e| e.external_id.clone()).collect::<Vec<_>>(),
            vec![format!("{HREF}#20260105"), format!("{HREF}#20260119")]
        );
        assert_eq!(events[0].instance_start, Some(utc("2026-01-04T23:00:00Z")));
    }

    #[test]
    fn only_overrides_without_master_are_occurrences() {
        // An invitee's copy may hold just the instances they were invited to.
        let data = wrap(
            "BEGIN:VEVENT\r\nUID:inv\r\nRECURRENCE-ID:20260310T090000Z\r\nDTSTART:20260310T100000Z\r\n\
         DTEND:20260310T110000Z\r\nSUMMARY:One time\r\nEND:VEVENT\r\n",
        );
        let event = only(&normalize(&ctx(None), &data, year_2026())).clone();
        assert_eq!(event.external_id, format!("{HREF}#20260310T090000Z"));
        assert_eq!(event.series_id.as_deref(), Some(HREF));
        assert_eq!(event.start, utc("2026-03-10T10:00:00Z"));
    }

    #[test]
    fn a_series_started_long_ago_expands_cheaply_near_the_window() {
        let data = wrap(
            "BEGIN:VEVENT\r\nUID:old\r\nDTSTART;TZID=Europe/Berlin:19900101T080000\r\nDURATION:PT15M\r\n\
         RRULE:FREQ=DAILY\r\nSUMMARY:Pills\r\nEND:VEVENT\r\n",
        );
        let window = TimeRange::new(utc("2026-07-01T00:00:00Z"), utc("2026-07-08T00:00:00Z")).expect("range");
        let result = normalize(&ctx(None), &data, window);
        assert!(result.rejected.is_empty(), "{:?}", result.rejected);
        let events = events(&result);
        assert_eq!(events.len(), 7);
        assert_eq!(events[0].start, utc("2026-07-01T06:00:00Z"));
    }

    #[test]
    fn runaway_rules_are_capped_quickly() {
        let ctx = ctx(None);
        for (rule, start) in [
            ("FREQ=SECONDLY", "20200101T000000Z"),
            ("FREQ=MINUTELY;COUNT=4000000000", "20200101T000000Z"),
            ("FREQ=SECONDLY;COUNT=4000000000", "20200101T000000Z"),
            ("FREQ=SECONDLY;BYHOUR=0;BYMINUTE=0", "20200101T000000Z"),
            ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "20200101T000000Z"),
            // Sparse day filters on a fine rule that must be counted from year 1.
            (
                "FREQ=MINUTELY;COUNT=100000000;BYYEARDAY=-366;BYMINUTE=59",
                "00010101T000000Z",
            ),
            (
                "FREQ=HOURLY;COUNT=100000000;BYMONTH=2;BYMONTHDAY=31",
                "00010101T000000Z",
            ),
        ] {
            let data = wrap(&format!(
                "BEGIN:VEVENT\r\nUID:r\r\nDTSTART:{start}\r\nDURATION:PT1S\r\nRRULE:{rule}\r\nRRULE:{rule}\r\n\
                 RRULE:{rule}\r\nRRULE:{rule}\r\nRRULE:{rule}\r\nEND:VEVENT\r\n"
            ));
            let started = Instant::now();
            let result = normalize(&ctx, &data, year_2026());
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{rule} took {:?}",
                started.elapsed()
            );
            assert!(result.changes.len() <= MAX_OCCURRENCES, "{rule}");
            if rule.starts_with("FREQ=SECONDLY") || rule.starts_with("FREQ=MINUTELY;COUNT=4") {
                assert!(!result.rejected.is_empty(), "{rule}: the cut is reported");
            }
        }
    }

    #[test]
    fn too_many_occurrences_keep_the_first_and_report_the_cut() {
        let data = wrap(
            "BEGIN:VEVENT\r\nUID:h\r\nDTSTART:20260101T000000Z\r\nDURATION:PT30M\r\nRRULE:FREQ=HOURLY\r\nSUMMARY:Ping\r\nEND:VEVENT\r\n",
        );
        let result = normalize(&ctx(None), &data, year_2026());
        let events = events(&result);
        assert_eq!(events.len(), MAX_OCCURRENCES);
        assert_eq!(events[0].start, utc("2026-01-01T00:00:00Z"));
        assert_eq!(result.rejected.len(), 1);
        assert!(matches!(
            result.rejected[0].reason,
            RejectReason::InvalidField { field: "RRULE", .. }
        ));
    }

    #[test]
    fn garbage_is_one_malformed_rejection() {
        for data in [
            "",
            "hello world",
            "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Secret Name\r\nEND:VCARD\r\n",
            "\u{0}\u{1}\u{2}",
        ] {
            let result = normalize(&ctx(None), data, year_2026());
            assert!(result.changes.is_empty());
            assert_eq!(result.rejected.len(), 1, "{data:?}");
            assert_eq!(result.rejected[0].external_id.as_deref(), Some(HREF));
            assert!(matches!(result.rejected[0].reason, RejectReason::Malformed(_)));
        }
    }

    #[test]
    fn a_calendar_without_events_is_malformed_but_tasks_are_ignored() {
        let empty = normalize(&ctx(None), &wrap(""), year_2026());
        assert_eq!(empty.rejected.len(), 1);
        assert_eq!(empty.rejected[0].reason, RejectReason::Malformed("no VEVENT".into()));

        let tasks = wrap(
            "BEGIN:VTODO\r\nUID:t\r\nSUMMARY:Buy milk\r\nDUE:20260310T090000Z\r\nEND:VTODO\r\n\
         BEGIN:VJOURNAL\r\nUID:j\r\nDTSTART:20260310T090000Z\r\nEND:VJOURNAL\r\n",
        );
        assert_eq!(normalize(&ctx(None), &tasks, year_2026()), Normalized::default());
    }

    #[test]
    fn missing_dtstart_is_rejected_without_quoting_the_event() {
        let data = wrap(
            "BEGIN:VEVENT\r\nUID:m\r\nSUMMARY:Secret meeting with Zed\r\nDTEND:20260310T090000Z\r\nEND:VEVENT\r\n",
        );
        let result = normalize(&ctx(None), &data, year_2026());
        assert!(result.changes.is_empty());
        assert_eq!(result.rejected.len(), 1);
        assert_eq!(result.rejected[0].reason, RejectReason::MissingField("DTSTART"));

        let garbled = wrap("BEGIN:VEVENT\r\nUID:m\r\nDTSTART:Secret meeting\r\nSUMMARY:Secret\r\nEND:VEVENT\r\n");
        let result = normalize(&ctx(None), &garbled, year_2026());
        assert_eq!(result.rejected.len(), 1);
        let reason = result.rejected[0].reason.to_string();
        assert!(reason.contains("DTSTART") && !reason.contains("Secret"), "{reason}");
    }

    #[test]
    fn bad_rrule_keeps_the_first_occurrence_and_overrides() {
        let data = wrap(
            "BEGIN:VEVENT\r\nUID:b\r\nDTSTART:20260302T090000Z\r\nDTEND:20260302T100000Z\r\n\
         RRULE:FREQ=SOMETIMES;BYDAY=XX\r\nSUMMARY:Broken\r\nEND:VEVENT\r\n\
         BEGIN:VEVENT\r\nUID:b\r\nRECURRENCE-ID:20260309T090000Z\r\nDTSTART:20260309T100000Z\r\n\
         DTEND:20260309T110000Z\r\nSUMMARY:Broken, moved\r\nEND:VEVENT\r\n",
        );
        let result = normalize(&ctx(None), &data, year_2026());
        assert_eq!(
            starts(&events(&result)),
            vec![utc("2026-03-02T09:00:00Z"), utc("2026-03-09T10:00:00Z")]
        );
        assert_eq!(result.rejected.len(), 1);
        assert!(matches!(
            result.rejected[0].reason,
            RejectReason::InvalidField { field: "RRULE", .. }
        ));
    }

    #[test]
    fn a_broken_override_does_not_drop_the_series() {
        let data = wrap(
            "BEGIN:VEVENT\r\nUID:b\r\nDTSTART:20260302T090000Z\r\nDTEND:20260302T100000Z\r\n\
         RRULE:FREQ=WEEKLY;COUNT=3\r\nSUMMARY:Weekly\r\nEND:VEVENT\r\n\
         BEGIN:VEVENT\r\nUID:b\r\nRECURRENCE-ID:not-a-date\r\nDTSTART:20260309T100000Z\r\nEND:VEVENT\r\n\
         BEGIN:VEVENT\r\nUID:b\r\nRECURRENCE-ID:20260316T090000Z\r\nDTSTART:garbage\r\nEND:VEVENT\r\n",
        );
        let result = normalize(&ctx(None), &data, year_2026());
        assert_eq!(result.rejected.len(), 2, "{:?}", result.rejected);
        // The unreadable override of 16 March leaves the master's occurrence.
        assert_eq!(
            starts(&events(&result)),
            vec![
                utc("2026-03-02T09:00:00Z"),
                utc("2026-03-09T09:00:00Z"),
                utc("2026-03-16T09:00:00Z")
            ]
        );
    }

    #[test]
    fn a_second_uid_is_reported_and_left_out() {
        let data = wrap(
            "BEGIN:VEVENT\r\nUID:one\r\nDTSTART:20260302T090000Z\r\nDTEND:20260302T100000Z\r\nEND:VEVENT\r\n\
         BEGIN:VEVENT\r\nUID:two\r\nDTSTART:20260303T090000Z\r\nDTEND:20260303T100000Z\r\nEND:VEVENT\r\n",
        );
        let result = normalize(&ctx(None), &data, year_2026());
        assert_eq!(result.changes.len(), 1);
        assert_eq!(result.rejected.len(), 1);
        assert_eq!(events(&result)[0].ical_uid.as_deref(), Some("one"));
    }

    #[test]
    fn deep_nesting_and_huge_inputs_do_not_hurt() {
        let nested = format!(
            "BEGIN:VCALENDAR\r\n{}DTSTART:20260302T090000Z\r\n{}END:VCALENDAR\r\n",
            "BEGIN:VEVENT\r\n".repeat(100_000),
            "END:VEVENT\r\n".repeat(100_000)
        );
        let started = Instant::now();
        let _ = normalize(&ctx(None), &nested, year_2026());
        assert!(started.elapsed() < Duration::from_secs(20));

        let huge = "X".repeat(juy_normalizer::ical::MAX_OBJECT_BYTES + 1);
        let result = normalize(&ctx(None), &huge, year_2026());
        assert!(matches!(result.rejected[0].reason, RejectReason::Malformed(_)));
    }

    /// Cuts, repeats and flips bytes of real files: nothing may panic.
    #[test]
    fn mangled_files_never_panic() {
        let ctx = ctx(Some("Europe/Berlin"));
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for original in [GOOGLE_WEEKLY_SERIES, OUTLOOK_WEEKLY_ACROSS_DST, ICLOUD_WITH_VTIMEZONE] {
            let bytes = original.as_bytes();
            for _ in 0..300 {
                let mut mangled = bytes.to_vec();
                for _ in 0..(next() % 8 + 1) {
                    let at = (next() as usize) % mangled.len();
                    match next() % 4 {
                        0 => mangled[at] = b"0123456789:;=,-TZ\r\n"[(next() % 19) as usize],
                        1 => {
                            mangled.remove(at);
                        }
                        2 => mangled.truncate(at.max(1)),
                        _ => {
                            let line: Vec<u8> = mangled[at..].iter().take(40).copied().collect();
                            mangled.splice(at..at, line);
                        }
                    }
                    if mangled.is_empty() {
                        break;
                    }
                }
                let text = String::from_utf8_lossy(&mangled);
                let _ = normalize(&ctx, &text, year_2026());
            }
        }
    }
}
