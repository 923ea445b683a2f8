//! Google Calendar API v3 event resources (as `events.list` returns them with
//! `singleEvents=true`) → [`Change`]s.
//!
//! - `status: cancelled` is a [`Change::Delete`], whatever else the item lacks
//!   (incremental listings send deleted events as little more than an `id`).
//! - `start`/`end` hold either `dateTime` (RFC 3339; timed) or `date` (all-day,
//!   end exclusive). The event's zone is `start.timeZone` when it resolves,
//!   else the calendar's; all-day instants are midnights in that zone (UTC
//!   when there is none).
//! - A zero-length timed event (`end == start`, which Google allows) is kept:
//!   it lasts one second (the store needs `end > start`) and is transparent
//!   (it takes no time, so it never makes its owner busy). `end < start` is
//!   rejected.
//! - Values Google may add to an enumeration later (`status`, `eventType`,
//!   `responseStatus`, reminder `method`) fall back to the default rather than
//!   dropping the event; a field of the wrong JSON type rejects the item.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use juy_domain::{
    Attendee, CalendarEvent, EventId, EventKind, EventStatus, Reminder, ReminderMethod, ResponseStatus, Transparency,
};
use serde_json::Value;

use crate::json::{self, Object, invalid};
use crate::{CalendarContext, Change, Normalized, RejectReason, Rejected, zones};

/// Normalises a page of Google event resources; one bad item never affects the others.
pub fn normalize(ctx: &CalendarContext, items: &[Value]) -> Normalized {
    let mut out = Normalized::default();
    for item in items {
        match normalize_item(ctx, item) {
            Ok(change) => out.changes.push(change),
            Err(rejected) => out.rejected.push(rejected),
        }
    }
    out
}

/// The calendar's default reminders, from an events list response (or a
/// calendar list entry) carrying `defaultReminders`. Unreadable entries are skipped.
pub fn default_reminders(list_response_defaults: &Value) -> Vec<Reminder> {
    let Some(Value::Array(entries)) = list_response_defaults.get("defaultReminders") else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| reminder(entry, DEFAULT_REMINDER_FIELDS).ok().flatten())
        .collect()
}

/// The calendar's IANA zone (canonical spelling), from the `timeZone` of an
/// events list response or calendar list entry; `None` if absent or unknown.
pub fn calendar_time_zone(list_response_defaults: &Value) -> Option<String> {
    list_response_defaults
        .get("timeZone")
        .and_then(Value::as_str)
        .and_then(zones::resolve)
        .map(|tz| tz.name().to_owned())
}

fn normalize_item(ctx: &CalendarContext, item: &Value) -> Result<Change, Rejected> {
    let Some(obj) = item.as_object() else {
        return Err(Rejected {
            external_id: None,
            reason: RejectReason::Malformed("item is not a JSON object".to_owned()),
        });
    };
    let id = json::id(obj).map_err(|reason| Rejected {
        external_id: None,
        reason,
    })?;
    if obj.get("status").and_then(Value::as_str) == Some("cancelled") {
        return Ok(Change::Delete { external_id: id });
    }
    match event(ctx, obj, &id) {
        Ok(event) => Ok(Change::Upsert(Box::new(event))),
        Err(reason) => Err(Rejected {
            external_id: Some(id),
            reason,
        }),
    }
}

/// The JSON paths of one `EventDateTime` object, for rejections.
struct TimeFields {
    object: &'static str,
    date_time: &'static str,
    date: &'static str,
    time_zone: &'static str,
}

const START: TimeFields = TimeFields {
    object: "start",
    date_time: "start.dateTime",
    date: "start.date",
    time_zone: "start.timeZone",
};
const END: TimeFields = TimeFields {
    object: "end",
    date_time: "end.dateTime",
    date: "end.date",
    time_zone: "end.timeZone",
};
const ORIGINAL_START: TimeFields = TimeFields {
    object: "originalStartTime",
    date_time: "originalStartTime.dateTime",
    date: "originalStartTime.date",
    time_zone: "originalStartTime.timeZone",
};

/// A start or end: an instant, or a date for all-day events.
#[derive(Clone, Copy)]
enum When {
    Timed(DateTime<Utc>),
    AllDay(NaiveDate),
}

fn event(ctx: &CalendarContext, obj: &Object, id: &str) -> Result<CalendarEvent, RejectReason> {
    let start_obj = json::opt_object(obj, "start", START.object)?.ok_or(RejectReason::MissingField("start"))?;
    let end_obj = json::opt_object(obj, "end", END.object)?.ok_or(RejectReason::MissingField("end"))?;

    // Google names the zone beside the time; an unknown name is no reason to
    // drop the event, since `dateTime` carries its offset.
    let own_zone = json::opt_str(start_obj, "timeZone", START.time_zone)?.and_then(zones::resolve);
    let zone = own_zone.or_else(|| json::calendar_zone(ctx));

    let start = when(start_obj, &START, zone)?;
    let end = when(end_obj, &END, zone)?;
    let (start, end, all_day, zero_length) = match (start, end) {
        (When::Timed(start), When::Timed(end)) => {
            let span = json::timed_span(start, end)?;
            (span.start, span.end, None, span.zero_length)
        }
        (When::AllDay(start), When::AllDay(end)) => {
            let dates = json::all_day_span(start, end)?;
            let (start, end) = json::all_day_instants(zone, dates)?;
            (start, end, Some(dates), false)
        }
        _ => return Err(invalid(END.object, "mixes `date` and `dateTime` with `start`")),
    };

    let instance_start = match json::opt_object(obj, "originalStartTime", ORIGINAL_START.object)? {
        None => None,
        Some(original) => Some(match when(original, &ORIGINAL_START, zone)? {
            When::Timed(at) => at,
            When::AllDay(date) => zones::start_of_day_utc(zone.unwrap_or(Tz::UTC), date),
        }),
    };

    let status = match json::opt_str(obj, "status", "status")? {
        Some("tentative") => EventStatus::Tentative,
        _ => EventStatus::Confirmed,
    };
    let marked_free = json::opt_str(obj, "transparency", "transparency")? == Some("transparent");
    let transparency = if zero_length || marked_free {
        Transparency::Transparent
    } else {
        Transparency::Opaque
    };
    let kind = match json::opt_str(obj, "eventType", "eventType")? {
        Some("outOfOffice") => EventKind::OutOfOffice,
        Some("focusTime") => EventKind::FocusTime,
        Some("workingLocation") => EventKind::WorkingElsewhere,
        _ => EventKind::Default,
    };

    let people = people(ctx, obj)?;

    Ok(CalendarEvent {
        id: EventId::new(),
        user_id: ctx.user_id.clone(),
        calendar_id: ctx.calendar_id,
        provider: ctx.provider,
        external_id: id.to_owned(),
        ical_uid: json::opt_text(obj, "iCalUID", "iCalUID")?,
        title: json::opt_text(obj, "summary", "summary")?,
        location: json::opt_text(obj, "location", "location")?,
        description: json::opt_text(obj, "description", "description")?,
        start,
        end,
        time_zone: zone.map(|tz| tz.name().to_owned()),
        all_day,
        status,
        transparency,
        self_response: people.self_response,
        kind,
        organizer: people.organizer,
        attendees: people.attendees,
        series_id: json::opt_text(obj, "recurringEventId", "recurringEventId")?,
        instance_start,
        reminders: reminders(ctx, obj)?,
        etag: json::opt_text(obj, "etag", "etag")?,
        updated: json::opt_instant(obj, "updated", "updated")?,
    })
}

/// Reads one `EventDateTime`: `dateTime` wins over `date`. A `dateTime`
/// without an offset (Google documents the offset as optional when
/// `timeZone` is given) is read in its own `timeZone`, else in `zone`.
fn when(time: &Object, fields: &TimeFields, zone: Option<Tz>) -> Result<When, RejectReason> {
    if let Some(text) = json::opt_str(time, "dateTime", fields.date_time)? {
        let text = text.trim();
        if let Ok(at) = DateTime::parse_from_rfc3339(text) {
            return Ok(When::Timed(at.with_timezone(&Utc)));
        }
        let local = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .map_err(|_| invalid(fields.date_time, "not an RFC 3339 date-time"))?;
        let own_zone = json::opt_str(time, "timeZone", fields.time_zone)?.and_then(zones::resolve);
        let zone = own_zone.or(zone).unwrap_or(Tz::UTC);
        return Ok(When::Timed(zones::local_to_utc(zone, local)));
    }
    if let Some(text) = json::opt_str(time, "date", fields.date)? {
        let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
            .map_err(|_| invalid(fields.date, "not a date (YYYY-MM-DD)"))?;
        return Ok(When::AllDay(date));
    }
    Err(invalid(fields.object, "has neither `dateTime` nor `date`"))
}

fn response(status: Option<&str>) -> ResponseStatus {
    match status {
        Some("needsAction") => ResponseStatus::NeedsAction,
        Some("accepted") => ResponseStatus::Accepted,
        Some("tentative") => ResponseStatus::Tentative,
        Some("declined") => ResponseStatus::Declined,
        _ => ResponseStatus::None,
    }
}

/// The organiser, attendees and the owner's own answer.
struct People {
    organizer: Option<Attendee>,
    attendees: Vec<Attendee>,
    self_response: ResponseStatus,
}

fn people(ctx: &CalendarContext, obj: &Object) -> Result<People, RejectReason> {
    let mut attendees = Vec::new();
    // The answer of the attendee Google flags `self`, else of one whose
    // address is the owner's.
    let mut flagged_self = None;
    let mut matched_self = None;
    for entry in json::array(obj, "attendees", "attendees")? {
        let entry = entry
            .as_object()
            .ok_or_else(|| invalid("attendees[]", "expected an object"))?;
        let is_flagged = json::flag(entry, "self", "attendees[].self")?;
        let answer = response(json::opt_str(entry, "responseStatus", "attendees[].responseStatus")?);
        let name = json::opt_text(entry, "displayName", "attendees[].displayName")?;
        let optional = json::flag(entry, "optional", "attendees[].optional")?;
        // An attendee without an address cannot be stored (nor invited by
        // Google); it is left out rather than dropping the event.
        let Some(email) = json::opt_text(entry, "email", "attendees[].email")? else {
            continue;
        };
        let is_self = is_flagged || json::is_self_email(ctx, &email);
        if is_flagged && flagged_self.is_none() {
            flagged_self = Some(answer);
        }
        if is_self && matched_self.is_none() {
            matched_self = Some(answer);
        }
        attendees.push(Attendee {
            email,
            name,
            response: answer,
            is_self,
            optional,
        });
    }

    let organizer = match json::opt_object(obj, "organizer", "organizer")? {
        None => None,
        Some(entry) => {
            let is_flagged = json::flag(entry, "self", "organizer.self")?;
            let name = json::opt_text(entry, "displayName", "organizer.displayName")?;
            json::opt_text(entry, "email", "organizer.email")?.map(|email| Attendee {
                is_self: is_flagged || json::is_self_email(ctx, &email),
                email,
                name,
                response: ResponseStatus::Organizer,
                optional: false,
            })
        }
    };
    let organizer_is_self = organizer.as_ref().is_some_and(|organizer| organizer.is_self);

    let self_response = flagged_self.or(matched_self).unwrap_or(if organizer_is_self {
        ResponseStatus::Organizer
    } else {
        ResponseStatus::None
    });
    Ok(People {
        organizer,
        attendees,
        self_response,
    })
}

/// The JSON paths of a reminder entry, for rejections.
struct ReminderFields {
    entry: &'static str,
    method: &'static str,
    minutes: &'static str,
}

const OVERRIDE_FIELDS: &ReminderFields = &ReminderFields {
    entry: "reminders.overrides[]",
    method: "reminders.overrides[].method",
    minutes: "reminders.overrides[].minutes",
};
const DEFAULT_REMINDER_FIELDS: &ReminderFields = &ReminderFields {
    entry: "defaultReminders[]",
    method: "defaultReminders[].method",
    minutes: "defaultReminders[].minutes",
};

fn reminders(ctx: &CalendarContext, obj: &Object) -> Result<Vec<Reminder>, RejectReason> {
    let Some(settings) = json::opt_object(obj, "reminders", "reminders")? else {
        return Ok(Vec::new());
    };
    if json::flag(settings, "useDefault", "reminders.useDefault")? {
        return Ok(ctx.default_reminders.clone());
    }
    let mut out = Vec::new();
    for entry in json::array(settings, "overrides", "reminders.overrides")? {
        if let Some(reminder) = reminder(entry, OVERRIDE_FIELDS)? {
            out.push(reminder);
        }
    }
    Ok(out)
}

/// One `{method, minutes}` entry; `None` for methods we do not model (`sms`,
/// which Google retired).
fn reminder(entry: &Value, fields: &ReminderFields) -> Result<Option<Reminder>, RejectReason> {
    let entry = entry
        .as_object()
        .ok_or_else(|| invalid(fields.entry, "expected an object"))?;
    let method = match json::opt_str(entry, "method", fields.method)? {
        Some("popup") => ReminderMethod::Popup,
        Some("email") => ReminderMethod::Email,
        _ => return Ok(None),
    };
    let minutes_before =
        json::opt_i32(entry, "minutes", fields.minutes)?.ok_or(RejectReason::MissingField(fields.minutes))?;
    Ok(Some(Reminder { minutes_before, method }))
}
