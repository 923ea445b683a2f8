//! Reading fields of the JSON payloads (Google, Graph) with rejections that
//! name the field and never quote its value.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};

use juy_domain::AllDayDates;

use crate::{CalendarContext, RejectReason, zones};

/// A JSON object.
pub(crate) type Object = Map<String, Value>;

/// An `InvalidField` rejection.
pub(crate) fn invalid(field: &'static str, problem: &str) -> RejectReason {
    RejectReason::InvalidField {
        field,
        problem: problem.to_owned(),
    }
}

/// A string field; absent or `null` is `None`, another type is invalid.
pub(crate) fn opt_str<'a>(obj: &'a Object, key: &str, field: &'static str) -> Result<Option<&'a str>, RejectReason> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(invalid(field, "expected a string")),
    }
}

/// A text field for people to read: like [`opt_str`], but blank text is `None`.
pub(crate) fn opt_text(obj: &Object, key: &str, field: &'static str) -> Result<Option<String>, RejectReason> {
    Ok(opt_str(obj, key, field)?
        .filter(|text| !text.trim().is_empty())
        .map(str::to_owned))
}

/// A boolean field; absent or `null` is `false`, another type is invalid.
pub(crate) fn flag(obj: &Object, key: &str, field: &'static str) -> Result<bool, RejectReason> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(value)) => Ok(*value),
        Some(_) => Err(invalid(field, "expected a boolean")),
    }
}

/// An object field; absent or `null` is `None`, another type is invalid.
pub(crate) fn opt_object<'a>(
    obj: &'a Object,
    key: &str,
    field: &'static str,
) -> Result<Option<&'a Object>, RejectReason> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(inner)) => Ok(Some(inner)),
        Some(_) => Err(invalid(field, "expected an object")),
    }
}

/// An array field; absent or `null` is empty, another type is invalid.
pub(crate) fn array<'a>(obj: &'a Object, key: &str, field: &'static str) -> Result<&'a [Value], RejectReason> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(invalid(field, "expected an array")),
    }
}

/// An integer field that fits an `i32`; absent or `null` is `None`.
pub(crate) fn opt_i32(obj: &Object, key: &str, field: &'static str) -> Result<Option<i32>, RejectReason> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| invalid(field, "expected an integer in range")),
        Some(_) => Err(invalid(field, "expected an integer")),
    }
}

/// An RFC 3339 instant.
pub(crate) fn instant(text: &str, field: &'static str) -> Result<DateTime<Utc>, RejectReason> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| invalid(field, "not an RFC 3339 date-time"))
}

/// An optional RFC 3339 instant field.
pub(crate) fn opt_instant(obj: &Object, key: &str, field: &'static str) -> Result<Option<DateTime<Utc>>, RejectReason> {
    opt_str(obj, key, field)?.map(|text| instant(text, field)).transpose()
}

/// The item's provider id: a non-empty string under `id`.
pub(crate) fn id(obj: &Object) -> Result<String, RejectReason> {
    match opt_str(obj, "id", "id")? {
        Some(id) if !id.trim().is_empty() => Ok(id.to_owned()),
        _ => Err(RejectReason::MissingField("id")),
    }
}

/// Whether `email` is one of the account owner's addresses.
pub(crate) fn is_self_email(ctx: &CalendarContext, email: &str) -> bool {
    let email = email.trim().to_lowercase();
    ctx.self_emails.iter().any(|own| own.trim().to_lowercase() == email)
}

/// The calendar's own zone, when it has one that resolves.
pub(crate) fn calendar_zone(ctx: &CalendarContext) -> Option<Tz> {
    ctx.time_zone.as_deref().and_then(zones::resolve)
}

/// A timed event's instants, checked.
pub(crate) struct TimedSpan {
    /// The start.
    pub(crate) start: DateTime<Utc>,
    /// The end, after `start`.
    pub(crate) end: DateTime<Utc>,
    /// The provider's event takes no time (end equal to start).
    pub(crate) zero_length: bool,
}

/// Checks a timed event's instants. A zero-length event (end equal to start,
/// which Google and Graph both allow) is kept: the store needs `end > start`,
/// so it lasts one second, and the caller makes it transparent, since it
/// takes no time and must not make its owner busy (as RFC 4791 free-busy
/// treats one; the iCalendar normaliser does the same).
pub(crate) fn timed_span(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<TimedSpan, RejectReason> {
    if end < start {
        return Err(RejectReason::EndsBeforeStart);
    }
    if end == start {
        let end = start
            .checked_add_signed(TimeDelta::seconds(1))
            .ok_or_else(|| invalid("end", "out of range"))?;
        return Ok(TimedSpan {
            start,
            end,
            zero_length: true,
        });
    }
    Ok(TimedSpan {
        start,
        end,
        zero_length: false,
    })
}

/// Checks an all-day event's dates (end exclusive). Equal dates, which no
/// provider should send, are read as a one-day event, as iCalendar does for a
/// date `DTSTART` without an end.
pub(crate) fn all_day_span(start: NaiveDate, end: NaiveDate) -> Result<AllDayDates, RejectReason> {
    if end < start {
        return Err(RejectReason::EndsBeforeStart);
    }
    if end == start {
        let end = start.succ_opt().ok_or_else(|| invalid("end", "out of range"))?;
        return Ok(AllDayDates { start, end });
    }
    Ok(AllDayDates { start, end })
}

/// The instants of an all-day event: the starts of its first day and of the
/// day after its last, in `zone` (UTC when the event and calendar have none).
pub(crate) fn all_day_instants(
    zone: Option<Tz>,
    dates: AllDayDates,
) -> Result<(DateTime<Utc>, DateTime<Utc>), RejectReason> {
    let zone = zone.unwrap_or(Tz::UTC);
    let start = zones::start_of_day_utc(zone, dates.start);
    let end = zones::start_of_day_utc(zone, dates.end);
    if end > start {
        return Ok((start, end));
    }
    // A zone that skipped whole days (Samoa, 30 December 2011) can make both
    // midnights one instant; keep the event's length in days instead.
    let days = (dates.end - dates.start).num_days();
    let end = start
        .checked_add_signed(TimeDelta::days(days.max(1)))
        .ok_or_else(|| invalid("end", "out of range"))?;
    Ok((start, end))
}
