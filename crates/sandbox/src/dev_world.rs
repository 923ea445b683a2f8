//! A believable world for the dev run and the `sandbox` subcommand: a Google
//! and a Microsoft account, two calendars each (one writable, one read-only),
//! and events across this week and next (Berlin office hours) — timed,
//! all-day, with attendees, and a weekly series. It is built only through the
//! control methods, and seeding again adds only what is missing.

use chrono::{DateTime, Datelike as _, Days, Duration, NaiveDate, NaiveTime, TimeZone as _, Utc};
use chrono_tz::Europe::Berlin;
use serde_json::{Value, json};

use crate::graph_calendar::graph_time;
use crate::{Frequency, Provider, Recurrence, Sandbox};

const GOOGLE_ACCOUNT: &str = "dev-google";
const GOOGLE_EMAIL: &str = "dev-user@gmail.test";
const GOOGLE_TEAM: &str = "team-rota@group.calendar.test";
const MICROSOFT_ACCOUNT: &str = "dev-microsoft";
const MICROSOFT_EMAIL: &str = "dev-user@outlook.test";
const GRAPH_CALENDAR: &str = "AAMkAGdev-calendar";
const GRAPH_OPS: &str = "AAMkAGdev-ops";
/// The Windows name of Berlin's zone, as Graph writes it.
const WINDOWS_ZONE: &str = "W. Europe Standard Time";

/// When a seeded event happens, counted in days from this week's Monday.
#[derive(Debug, Clone, Copy)]
enum When {
    /// From `hour:minute` Berlin time, lasting `minutes`.
    Timed {
        day: u64,
        hour: u32,
        minute: u32,
        minutes: i64,
    },
    /// Whole days, `days` of them.
    AllDay { day: u64, days: u64 },
}

/// One seeded event: its id, title, time and any further provider fields.
struct Seed {
    id: &'static str,
    title: &'static str,
    when: When,
    extra: Value,
}

fn timed(day: u64, hour: u32, minute: u32, minutes: i64) -> When {
    When::Timed {
        day,
        hour,
        minute,
        minutes,
    }
}

fn seed(id: &'static str, title: &'static str, when: When, extra: Value) -> Seed {
    Seed { id, title, when, extra }
}

/// The Monday of the week `at` falls in (Berlin calendar).
fn monday_of(at: DateTime<Utc>) -> NaiveDate {
    let date = at.with_timezone(&Berlin).date_naive();
    let back = u64::from(date.weekday().num_days_from_monday());
    date.checked_sub_days(Days::new(back)).unwrap_or(date)
}

fn date_after(monday: NaiveDate, day: u64) -> NaiveDate {
    monday.checked_add_days(Days::new(day)).unwrap_or(monday)
}

/// `day` days after `monday`, at `hour:minute` Berlin time.
fn berlin(monday: NaiveDate, day: u64, hour: u32, minute: u32) -> DateTime<Utc> {
    let time = NaiveTime::from_hms_opt(hour, minute, 0).unwrap_or(NaiveTime::MIN);
    let local = date_after(monday, day).and_time(time);
    Berlin
        .from_local_datetime(&local)
        .earliest()
        .map_or_else(|| local.and_utc(), |t| t.with_timezone(&Utc))
}

/// Start and end of a timed event.
fn span(monday: NaiveDate, day: u64, hour: u32, minute: u32, minutes: i64) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = berlin(monday, day, hour, minute);
    let end = Duration::try_minutes(minutes)
        .and_then(|d| start.checked_add_signed(d))
        .unwrap_or(start);
    (start, end)
}

fn merge(mut resource: Value, extra: &Value) -> Value {
    if let (Some(fields), Some(extra)) = (resource.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            fields.insert(key.clone(), value.clone());
        }
    }
    resource
}

fn google_attendee(email: &str, name: &str, response: &str) -> Value {
    json!({"email": email, "displayName": name, "responseStatus": response})
}

fn google_resource(monday: NaiveDate, seed: &Seed, organizer: &Value) -> Value {
    let (start, end) = match seed.when {
        When::Timed {
            day,
            hour,
            minute,
            minutes,
        } => {
            let (start, end) = span(monday, day, hour, minute, minutes);
            let at = |t: DateTime<Utc>| json!({"dateTime": t.with_timezone(&Berlin).to_rfc3339(), "timeZone": "Europe/Berlin"});
            (at(start), at(end))
        }
        When::AllDay { day, days } => (
            json!({"date": date_after(monday, day).format("%Y-%m-%d").to_string()}),
            json!({"date": date_after(monday, day + days).format("%Y-%m-%d").to_string()}),
        ),
    };
    let resource = json!({"id": seed.id, "summary": seed.title, "start": start, "end": end,
        "organizer": organizer, "creator": organizer, "reminders": {"useDefault": true}});
    merge(resource, &seed.extra)
}

fn google_seeds() -> Vec<Seed> {
    let me = || json!({"email": GOOGLE_EMAIL, "displayName": "Dev User", "self": true, "organizer": true, "responseStatus": "accepted"});
    vec![
        seed(
            "devg01",
            "Lunch with Sam",
            timed(0, 13, 0, 60),
            json!({"location": "Café Einstein, Kurfürstenstraße 58"}),
        ),
        seed(
            "devg02",
            "Design review: sync pipeline",
            timed(1, 9, 30, 60),
            json!({"description": "Walk through the lease and retry design.",
                "hangoutLink": "https://meet.google.test/abc-defg-hij",
                "attendees": [me(), google_attendee("ana@example.test", "Ana Ruiz", "accepted"),
                    google_attendee("li@example.test", "Li Wei", "needsAction"),
                    {"email": "sam@example.test", "displayName": "Sam Okafor", "responseStatus": "tentative", "optional": true}]}),
        ),
        seed("devg03", "1:1 with Priya", timed(1, 15, 0, 30), json!({})),
        seed(
            "devg04",
            "CalDAV Summit (remote)",
            When::AllDay { day: 2, days: 1 },
            json!({"transparency": "transparent"}),
        ),
        seed(
            "devg05",
            "Dentist",
            timed(2, 16, 0, 60),
            json!({"visibility": "private", "location": "Praxis Dr. Lange"}),
        ),
        seed(
            "devg06",
            "Customer call: Acme",
            timed(3, 11, 0, 60),
            json!({"description": "Renewal and the calendar integration roadmap.",
                "attendees": [me(), google_attendee("jo@acme.test", "Jo Park", "accepted")]}),
        ),
        seed(
            "devg07",
            "Focus time",
            timed(4, 14, 0, 120),
            json!({"transparency": "transparent"}),
        ),
        seed(
            "devg08",
            "Weekend in Hamburg",
            When::AllDay { day: 5, days: 2 },
            json!({"transparency": "transparent"}),
        ),
        seed("devg09", "Sprint retro", timed(7, 14, 0, 60), json!({})),
        seed(
            "devg10",
            "Team offsite",
            When::AllDay { day: 8, days: 1 },
            json!({"location": "Spreewald"}),
        ),
        seed("devg11", "Gym", timed(9, 8, 0, 45), json!({"visibility": "private"})),
        seed(
            "devg12",
            "Lunch & learn: time zones",
            timed(10, 12, 0, 60),
            json!({"attendees": [me(), google_attendee("ana@example.test", "Ana Ruiz", "accepted"),
                google_attendee("li@example.test", "Li Wei", "declined")]}),
        ),
        seed(
            "devg13",
            "Quarterly planning prep",
            timed(11, 10, 0, 30),
            json!({"status": "tentative"}),
        ),
    ]
}

fn google_team_seeds() -> Vec<Seed> {
    vec![
        seed(
            "devgrota01",
            "On call: Ana",
            When::AllDay { day: 0, days: 5 },
            json!({"transparency": "transparent"}),
        ),
        seed(
            "devgrota02",
            "On call: Dev User",
            When::AllDay { day: 7, days: 5 },
            json!({"transparency": "transparent"}),
        ),
    ]
}

fn graph_person(name: &str, address: &str) -> Value {
    json!({"emailAddress": {"name": name, "address": address}})
}

fn graph_attendee(name: &str, address: &str, response: &str) -> Value {
    json!({"type": "required", "emailAddress": {"name": name, "address": address},
        "status": {"response": response, "time": "0001-01-01T00:00:00Z"}})
}

fn graph_resource(monday: NaiveDate, seed: &Seed, organizer: &Value, is_organizer: bool) -> Value {
    let (start, end, all_day) = match seed.when {
        When::Timed {
            day,
            hour,
            minute,
            minutes,
        } => {
            let (start, end) = span(monday, day, hour, minute, minutes);
            (start, end, false)
        }
        // All-day events are stored at midnight of their dates (end exclusive).
        When::AllDay { day, days } => (
            date_after(monday, day).and_time(NaiveTime::MIN).and_utc(),
            date_after(monday, day + days).and_time(NaiveTime::MIN).and_utc(),
            true,
        ),
    };
    let response = if is_organizer { "organizer" } else { "none" };
    let resource = json!({"id": seed.id, "subject": seed.title, "isAllDay": all_day, "isCancelled": false,
        "showAs": "busy", "start": graph_time(start), "end": graph_time(end),
        "originalStartTimeZone": WINDOWS_ZONE, "originalEndTimeZone": WINDOWS_ZONE,
        "organizer": organizer, "isOrganizer": is_organizer, "responseStatus": {"response": response},
        "isReminderOn": !all_day, "reminderMinutesBeforeStart": 15});
    merge(resource, &seed.extra)
}

fn graph_seeds() -> Vec<Seed> {
    vec![
        seed(
            "AAMkAGdev-ev01",
            "Inbox zero",
            timed(0, 9, 0, 30),
            json!({"showAs": "busy"}),
        ),
        seed(
            "AAMkAGdev-ev02",
            "Vendor sync: Contoso",
            timed(1, 11, 0, 60),
            json!({"location": {"displayName": "Microsoft Teams Meeting"}, "isOnlineMeeting": true,
                "attendees": [graph_attendee("Dana Fox", "dana@contoso.test", "accepted"),
                    graph_attendee("Max Weber", "max@contoso.test", "tentativelyAccepted")]}),
        ),
        seed(
            "AAMkAGdev-ev03",
            "Lunch",
            timed(2, 12, 30, 60),
            json!({"showAs": "free"}),
        ),
        seed(
            "AAMkAGdev-ev04",
            "Company day off",
            When::AllDay { day: 3, days: 1 },
            json!({"showAs": "oof"}),
        ),
        seed(
            "AAMkAGdev-ev05",
            "Release go/no-go",
            timed(4, 15, 0, 60),
            json!({"bodyPreview": "Checklist in the release notes.",
                "attendees": [graph_attendee("Ops Team", "ops@outlook.test", "accepted"),
                    graph_attendee("Ana Ruiz", "ana@example.test", "notResponded")]}),
        ),
        seed(
            "AAMkAGdev-ev06",
            "Budget review",
            timed(7, 9, 0, 60),
            json!({"showAs": "tentative"}),
        ),
        seed(
            "AAMkAGdev-ev07",
            "Working from Lisbon",
            When::AllDay { day: 9, days: 1 },
            json!({"showAs": "workingElsewhere"}),
        ),
        seed(
            "AAMkAGdev-ev08",
            "Call with Dana",
            timed(10, 16, 0, 30),
            json!({"location": {"displayName": "Phone"}}),
        ),
    ]
}

fn graph_ops_seeds() -> Vec<Seed> {
    vec![
        seed(
            "AAMkAGdev-ops01",
            "Maintenance window",
            timed(1, 6, 0, 120),
            json!({"showAs": "free"}),
        ),
        seed(
            "AAMkAGdev-ops02",
            "Maintenance window",
            timed(8, 6, 0, 120),
            json!({"showAs": "free"}),
        ),
    ]
}

/// A weekly series of six, from this week's `day` at `hour:00` Berlin time, an hour long.
fn weekly(monday: NaiveDate, day: u64, hour: u32) -> Recurrence {
    Recurrence {
        first_start: berlin(monday, day, hour, 0),
        duration: Duration::hours(1),
        freq: Frequency::Weekly,
        count: 6,
    }
}

impl Sandbox {
    /// Seeds the dev world: Google account `dev-google` (dev-user@gmail.test)
    /// with its primary calendar and a read-only team calendar, Microsoft
    /// account `dev-microsoft` (dev-user@outlook.test) with a default and a
    /// read-only calendar, and events across this week and next. Idempotent:
    /// a second call adds only what is missing and changes nothing else.
    pub fn seed_dev(&self) {
        let monday = monday_of(self.now());
        self.seed_google(monday);
        self.seed_microsoft(monday);
    }

    fn account_missing(&self, id: &str) -> bool {
        !self.lock().accounts.iter().any(|a| a.id == id)
    }

    fn seed_google(&self, monday: NaiveDate) {
        if self.account_missing(GOOGLE_ACCOUNT) {
            self.add_account(Provider::Google, GOOGLE_ACCOUNT, GOOGLE_EMAIL);
        }
        let calendars = [
            (GOOGLE_EMAIL, "Dev User", "owner", true),
            (GOOGLE_TEAM, "Team rota", "reader", false),
        ];
        for (id, summary, role, primary) in calendars {
            let held = self
                .lock()
                .google
                .calendars
                .iter()
                .any(|c| c.account == GOOGLE_ACCOUNT && c.id == id);
            if !held {
                self.add_google_calendar(GOOGLE_ACCOUNT, id, summary, role, primary);
            }
        }
        let missing = |calendar: &str, id: &str| self.lock().google.stored(calendar, id).is_none();
        let me = json!({"email": GOOGLE_EMAIL, "displayName": "Dev User", "self": true});
        for seed in google_seeds() {
            if missing(GOOGLE_EMAIL, seed.id) {
                self.put_google_event(GOOGLE_EMAIL, google_resource(monday, &seed, &me));
            }
        }
        let team = json!({"email": GOOGLE_TEAM, "displayName": "Team rota"});
        for seed in google_team_seeds() {
            if missing(GOOGLE_TEAM, seed.id) {
                self.put_google_event(GOOGLE_TEAM, google_resource(monday, &seed, &team));
            }
        }
        if missing(GOOGLE_EMAIL, "devgseries01") {
            self.put_google_recurring_event(
                GOOGLE_EMAIL,
                "devgseries01",
                weekly(monday, 0, 10),
                json!({"summary": "Weekly planning", "organizer": me, "creator": me,
                    "location": "Room Spree", "reminders": {"useDefault": true}}),
            );
        }
    }

    fn seed_microsoft(&self, monday: NaiveDate) {
        if self.account_missing(MICROSOFT_ACCOUNT) {
            self.add_account(Provider::Microsoft, MICROSOFT_ACCOUNT, MICROSOFT_EMAIL);
        }
        let calendars = [
            (GRAPH_CALENDAR, "Calendar", true, true),
            (GRAPH_OPS, "Ops team (shared)", false, false),
        ];
        for (id, name, can_edit, default) in calendars {
            let held = self
                .lock()
                .graph
                .calendars
                .iter()
                .any(|c| c.account == MICROSOFT_ACCOUNT && c.id == id);
            if !held {
                self.add_graph_calendar(MICROSOFT_ACCOUNT, id, name, can_edit, default);
            }
        }
        let missing = |id: &str| !self.lock().graph.events.iter().any(|e| e.id == id);
        let me = graph_person("Dev User", MICROSOFT_EMAIL);
        for seed in graph_seeds() {
            if missing(seed.id) {
                self.put_graph_event(GRAPH_CALENDAR, graph_resource(monday, &seed, &me, true));
            }
        }
        let ops = graph_person("Ops Team", "ops@outlook.test");
        for seed in graph_ops_seeds() {
            if missing(seed.id) {
                self.put_graph_event(GRAPH_OPS, graph_resource(monday, &seed, &ops, false));
            }
        }
        if missing("AAMkAGdev-series01") {
            self.put_graph_recurring_event(
                GRAPH_CALENDAR,
                "AAMkAGdev-series01",
                weekly(monday, 2, 15),
                json!({"subject": "Team sync", "isAllDay": false, "isCancelled": false, "showAs": "busy",
                    "originalStartTimeZone": WINDOWS_ZONE, "originalEndTimeZone": WINDOWS_ZONE,
                    "organizer": me, "isOrganizer": true, "responseStatus": {"response": "organizer"},
                    "location": {"displayName": "Room Havel"}}),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_google_ids_are_valid_google_event_ids() {
        let ids = google_seeds()
            .into_iter()
            .chain(google_team_seeds())
            .map(|s| s.id)
            .chain(["devgseries01"]);
        for id in ids {
            assert!(
                (5..=1024).contains(&id.len()) && id.bytes().all(|b| matches!(b, b'a'..=b'v' | b'0'..=b'9')),
                "{id}"
            );
        }
    }

    #[test]
    fn the_week_starts_on_monday_in_berlin() {
        // Sunday 23:30 UTC is already Monday in Berlin.
        let at = Utc.with_ymd_and_hms(2026, 3, 8, 23, 30, 0).single();
        assert_eq!(at.map(monday_of), NaiveDate::from_ymd_opt(2026, 3, 9));
        let at = Utc.with_ymd_and_hms(2026, 3, 8, 12, 0, 0).single();
        assert_eq!(at.map(monday_of), NaiveDate::from_ymd_opt(2026, 3, 2));
    }
}
