//! Microsoft Graph event resources (from `calendarView` and
//! `calendarView/delta`) → [`Change`]s.
//!
//! - `{"id", "@removed": {...}}` is a [`Change::Delete`]; a `seriesMaster` is
//!   skipped (the view sends its occurrences; a master is neither a change nor
//!   an error).
//! - `start`/`end` are wall-clock times (`2026-01-05T09:00:00.0000000`, up to
//!   seven fractional digits) in the zone named beside them: a Windows or IANA
//!   name, or `UTC`. An unknown zone rejects the item. `isAllDay` events keep
//!   the dates of those wall-clock times.
//! - The event's zone is `originalStartTimeZone` when it resolves, else the
//!   start's zone unless that is UTC (asked for with `Prefer:
//!   outlook.timezone="UTC"`), else the calendar's.
//! - `isCancelled` keeps the event with status cancelled (Graph keeps it on
//!   attendees' calendars until they remove it); `showAs` gives transparency
//!   (`free`), tentative status, and the out-of-office / working-elsewhere kinds.
//! - A zero-length event is kept: it lasts one second (the store needs
//!   `end > start`) and is transparent (it takes no time, so it never makes
//!   its owner busy). `end < start` is rejected.
//! - HTML bodies become plain text; `bodyPreview` stands in when there is no body.

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use juy_domain::{
    Attendee, CalendarEvent, EventId, EventKind, EventStatus, Reminder, ReminderMethod, ResponseStatus, Transparency,
};
use serde_json::Value;

use crate::json::{self, Object, invalid};
use crate::{CalendarContext, Change, Normalized, RejectReason, Rejected, zones};

/// Normalises a page of Graph event resources; one bad item never affects the others.
pub fn normalize(ctx: &CalendarContext, items: &[Value]) -> Normalized {
    let mut out = Normalized::default();
    for item in items {
        match normalize_item(ctx, item) {
            Ok(Some(change)) => out.changes.push(change),
            Ok(None) => {}
            Err(rejected) => out.rejected.push(rejected),
        }
    }
    out
}

fn normalize_item(ctx: &CalendarContext, item: &Value) -> Result<Option<Change>, Rejected> {
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
    if obj.contains_key("@removed") {
        return Ok(Some(Change::Delete { external_id: id }));
    }
    if obj.get("type").and_then(Value::as_str) == Some("seriesMaster") {
        return Ok(None);
    }
    match event(ctx, obj, &id) {
        Ok(event) => Ok(Some(Change::Upsert(Box::new(event)))),
        Err(reason) => Err(Rejected {
            external_id: Some(id),
            reason,
        }),
    }
}

/// The JSON paths of one `dateTimeTimeZone` object, for rejections.
struct TimeFields {
    object: &'static str,
    date_time: &'static str,
    time_zone: &'static str,
}

const START: TimeFields = TimeFields {
    object: "start",
    date_time: "start.dateTime",
    time_zone: "start.timeZone",
};
const END: TimeFields = TimeFields {
    object: "end",
    date_time: "end.dateTime",
    time_zone: "end.timeZone",
};

/// A `dateTimeTimeZone`: the wall-clock time and its zone.
struct LocalTime {
    local: NaiveDateTime,
    zone: Tz,
}

impl LocalTime {
    fn instant(&self) -> DateTime<Utc> {
        zones::local_to_utc(self.zone, self.local)
    }
}

fn local_time(obj: &Object, fields: &TimeFields) -> Result<LocalTime, RejectReason> {
    let time = json::opt_object(obj, fields.object, fields.object)?.ok_or(RejectReason::MissingField(fields.object))?;
    let text =
        json::opt_str(time, "dateTime", fields.date_time)?.ok_or(RejectReason::MissingField(fields.date_time))?;
    let zone_name =
        json::opt_str(time, "timeZone", fields.time_zone)?.ok_or(RejectReason::MissingField(fields.time_zone))?;
    let zone = zones::resolve(zone_name).ok_or_else(|| invalid(fields.time_zone, "unknown time zone"))?;
    let text = text.trim();
    let local = match NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        Ok(local) => local,
        // Not what Graph sends, but an explicit offset is unambiguous.
        Err(_) => DateTime::parse_from_rfc3339(text)
            .map(|at| at.with_timezone(&zone).naive_local())
            .map_err(|_| invalid(fields.date_time, "not a date-time (YYYY-MM-DDThh:mm:ss)"))?,
    };
    Ok(LocalTime { local, zone })
}

fn is_utc(zone: Tz) -> bool {
    zones::resolve(zone.name()) == Some(Tz::UTC)
}

fn event(ctx: &CalendarContext, obj: &Object, id: &str) -> Result<CalendarEvent, RejectReason> {
    let start = local_time(obj, &START)?;
    let end = local_time(obj, &END)?;

    let original_zone = json::opt_str(obj, "originalStartTimeZone", "originalStartTimeZone")?.and_then(zones::resolve);
    let zone = original_zone
        .or_else(|| (!is_utc(start.zone)).then_some(start.zone))
        .or_else(|| json::calendar_zone(ctx));

    let (start, end, all_day, zero_length) = if json::flag(obj, "isAllDay", "isAllDay")? {
        let dates = json::all_day_span(start.local.date(), end.local.date())?;
        let (start, end) = json::all_day_instants(zone, dates)?;
        (start, end, Some(dates), false)
    } else {
        let span = json::timed_span(start.instant(), end.instant())?;
        (span.start, span.end, None, span.zero_length)
    };

    let show_as = json::opt_str(obj, "showAs", "showAs")?;
    let status = if json::flag(obj, "isCancelled", "isCancelled")? {
        EventStatus::Cancelled
    } else if show_as == Some("tentative") {
        EventStatus::Tentative
    } else {
        EventStatus::Confirmed
    };
    let transparency = if zero_length || show_as == Some("free") {
        Transparency::Transparent
    } else {
        Transparency::Opaque
    };
    let kind = match show_as {
        Some("oof") => EventKind::OutOfOffice,
        Some("workingElsewhere") => EventKind::WorkingElsewhere,
        _ => EventKind::Default,
    };

    let location = match json::opt_object(obj, "location", "location")? {
        Some(location) => json::opt_text(location, "displayName", "location.displayName")?,
        None => None,
    };

    let attendees = attendees(ctx, obj)?;
    // `isOrganizer` also catches an owner's address missing from `self_emails` (an alias).
    let is_organizer = json::flag(obj, "isOrganizer", "isOrganizer")?;
    let organizer = match json::opt_object(obj, "organizer", "organizer")? {
        Some(organizer) => email_address(ctx, organizer, &ORGANIZER_FIELDS)?.map(|(email, name, is_self)| Attendee {
            email,
            name,
            response: ResponseStatus::Organizer,
            is_self: is_self || is_organizer,
            optional: false,
        }),
        None => None,
    };
    let own_answer = match json::opt_object(obj, "responseStatus", "responseStatus")? {
        Some(status) => response(json::opt_str(status, "response", "responseStatus.response")?),
        None => ResponseStatus::None,
    };
    let self_response = if own_answer != ResponseStatus::None {
        own_answer
    } else if let Some(attendee) = attendees.iter().find(|attendee| attendee.is_self) {
        attendee.response
    } else if is_organizer || organizer.as_ref().is_some_and(|organizer| organizer.is_self) {
        ResponseStatus::Organizer
    } else {
        ResponseStatus::None
    };

    let reminders = match (
        json::flag(obj, "isReminderOn", "isReminderOn")?,
        json::opt_i32(obj, "reminderMinutesBeforeStart", "reminderMinutesBeforeStart")?,
    ) {
        (true, Some(minutes_before)) => vec![Reminder {
            minutes_before,
            method: ReminderMethod::Popup,
        }],
        _ => Vec::new(),
    };

    let instance_start = match json::opt_str(obj, "originalStart", "originalStart")? {
        None => None,
        Some(text) => Some(
            match NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%dT%H:%M:%S%.f") {
                // Graph documents `originalStart` as always UTC.
                Ok(local) => local.and_utc(),
                Err(_) => json::instant(text, "originalStart")?,
            },
        ),
    };

    let etag = match json::opt_text(obj, "changeKey", "changeKey")? {
        Some(change_key) => Some(change_key),
        None => json::opt_text(obj, "@odata.etag", "@odata.etag")?,
    };

    Ok(CalendarEvent {
        id: EventId::new(),
        user_id: ctx.user_id.clone(),
        calendar_id: ctx.calendar_id,
        provider: ctx.provider,
        external_id: id.to_owned(),
        ical_uid: json::opt_text(obj, "iCalUId", "iCalUId")?,
        title: json::opt_text(obj, "subject", "subject")?,
        location,
        description: description(obj)?,
        start,
        end,
        time_zone: zone.map(|tz| tz.name().to_owned()),
        all_day,
        status,
        transparency,
        self_response,
        kind,
        organizer,
        attendees,
        series_id: json::opt_text(obj, "seriesMasterId", "seriesMasterId")?,
        instance_start,
        reminders,
        etag,
        updated: json::opt_instant(obj, "lastModifiedDateTime", "lastModifiedDateTime")?,
    })
}

fn response(answer: Option<&str>) -> ResponseStatus {
    match answer {
        Some("organizer") => ResponseStatus::Organizer,
        Some("accepted") => ResponseStatus::Accepted,
        Some("tentativelyAccepted") => ResponseStatus::Tentative,
        Some("declined") => ResponseStatus::Declined,
        Some("notResponded") => ResponseStatus::NeedsAction,
        _ => ResponseStatus::None,
    }
}

/// The JSON paths of a `recipient`, for rejections.
struct RecipientFields {
    email_address: &'static str,
    address: &'static str,
    name: &'static str,
}

const ORGANIZER_FIELDS: RecipientFields = RecipientFields {
    email_address: "organizer.emailAddress",
    address: "organizer.emailAddress.address",
    name: "organizer.emailAddress.name",
};
const ATTENDEE_FIELDS: RecipientFields = RecipientFields {
    email_address: "attendees[].emailAddress",
    address: "attendees[].emailAddress.address",
    name: "attendees[].emailAddress.name",
};

/// A recipient's address, name and whether it is the owner; `None` without an
/// address (Graph sends those for names typed without one).
fn email_address(
    ctx: &CalendarContext,
    recipient: &Object,
    fields: &RecipientFields,
) -> Result<Option<(String, Option<String>, bool)>, RejectReason> {
    let Some(email_address) = json::opt_object(recipient, "emailAddress", fields.email_address)? else {
        return Ok(None);
    };
    let name = json::opt_text(email_address, "name", fields.name)?;
    Ok(json::opt_text(email_address, "address", fields.address)?.map(|email| {
        let is_self = json::is_self_email(ctx, &email);
        (email, name, is_self)
    }))
}

fn attendees(ctx: &CalendarContext, obj: &Object) -> Result<Vec<Attendee>, RejectReason> {
    let mut out = Vec::new();
    for entry in json::array(obj, "attendees", "attendees")? {
        let entry = entry
            .as_object()
            .ok_or_else(|| invalid("attendees[]", "expected an object"))?;
        let answer = match json::opt_object(entry, "status", "attendees[].status")? {
            Some(status) => response(json::opt_str(status, "response", "attendees[].status.response")?),
            None => ResponseStatus::None,
        };
        let optional = json::opt_str(entry, "type", "attendees[].type")? == Some("optional");
        if let Some((email, name, is_self)) = email_address(ctx, entry, &ATTENDEE_FIELDS)? {
            out.push(Attendee {
                email,
                name,
                response: answer,
                is_self,
                optional,
            });
        }
    }
    Ok(out)
}

/// The body as plain text, else `bodyPreview`.
fn description(obj: &Object) -> Result<Option<String>, RejectReason> {
    if let Some(body) = json::opt_object(obj, "body", "body")? {
        let is_html = json::opt_str(body, "contentType", "body.contentType")?
            .is_some_and(|content_type| content_type.eq_ignore_ascii_case("html"));
        if let Some(content) = json::opt_str(body, "content", "body.content")? {
            let text = if is_html {
                html_to_text(content)
            } else {
                content.trim().to_owned()
            };
            if !text.is_empty() {
                return Ok(Some(text));
            }
        }
    }
    json::opt_text(obj, "bodyPreview", "bodyPreview")
}

/// Elements whose content is not text to read.
const HIDDEN_ELEMENTS: &[&str] = &["head", "script", "style", "title"];

/// Elements that start a new line.
const BLOCK_ELEMENTS: &[&str] = &[
    "address",
    "blockquote",
    "br",
    "dd",
    "div",
    "dl",
    "dt",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "li",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "td",
    "th",
    "tr",
    "ul",
];

/// HTML → plain text, leniently: tags dropped (block elements become line
/// breaks), `head`/`style`/`script` and comments dropped, common entities
/// decoded, runs of whitespace collapsed to one space, blank lines dropped.
fn html_to_text(html: &str) -> String {
    let mut raw = String::with_capacity(html.len());
    let mut rest = html;
    while let Some((text, after)) = rest.split_once('<') {
        push_text(&mut raw, text);
        if let Some(comment) = after.strip_prefix("!--") {
            rest = comment.split_once("-->").map_or("", |(_, after_comment)| after_comment);
            continue;
        }
        let starts_tag = after
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '/' | '!' | '?'));
        if !starts_tag {
            // A bare `<` in text.
            raw.push('<');
            rest = after;
            continue;
        }
        let Some((tag, after_tag)) = after.split_once('>') else {
            // An unterminated tag: nothing readable follows.
            rest = "";
            break;
        };
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        rest = after_tag;
        if !closing && !tag.ends_with('/') && HIDDEN_ELEMENTS.contains(&name.as_str()) {
            rest = skip_element(rest, &name);
            continue;
        }
        if BLOCK_ELEMENTS.contains(&name.as_str()) {
            raw.push('\n');
        }
    }
    push_text(&mut raw, rest);

    raw.lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// What follows the end tag `</name>` in `rest`, or nothing if it never closes.
fn skip_element<'a>(rest: &'a str, name: &str) -> &'a str {
    let end_tag = format!("</{name}");
    // ASCII lowercasing keeps byte offsets, so positions carry over to `rest`.
    let lowered = rest.to_ascii_lowercase();
    lowered
        .find(&end_tag)
        .and_then(|at| rest.get(at..))
        .and_then(|end| end.split_once('>'))
        .map_or("", |(_, after)| after)
}

/// Appends text between tags: entities decoded, source line breaks as spaces
/// (in HTML they are only whitespace).
fn push_text(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some((before, after)) = rest.split_once('&') {
        push_whitespace_folded(out, before);
        match after.split_once(';').filter(|(entity, _)| entity.len() <= 10) {
            Some((entity, after_entity)) => match decode_entity(entity) {
                Some(decoded) => {
                    push_whitespace_folded(out, decoded.encode_utf8(&mut [0; 4]));
                    rest = after_entity;
                }
                None => {
                    out.push('&');
                    rest = after;
                }
            },
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    push_whitespace_folded(out, rest);
}

fn push_whitespace_folded(out: &mut String, text: &str) {
    out.extend(text.chars().map(|c| if c.is_whitespace() { ' ' } else { c }));
}

/// One entity's character (without `&` and `;`), for the common names and numeric references.
fn decode_entity(entity: &str) -> Option<char> {
    if let Some(number) = entity.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse::<u32>().ok()?,
        };
        return char::from_u32(code);
    }
    Some(match entity {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "ndash" => '–',
        "mdash" => '—',
        "hellip" => '…',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "bull" => '•',
        "middot" => '·',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "euro" => '€',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::html_to_text;

    #[test]
    fn outlook_html_body_becomes_plain_text() {
        let html = "<html>\r\n<head>\r\n<meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\">\r\n\
            <style type=\"text/css\" style=\"display:none\">\r\n<!--\r\np\r\n\t{margin-top:0;\r\nmargin-bottom:0}\r\n-->\r\n\
            </style>\r\n</head>\r\n<body dir=\"ltr\">\r\n<div class=\"elementToProof\" style=\"font-size:12pt\">\
            Agenda:&nbsp;Q1 &amp; Q2 planning</div>\r\n<div>Dial-in: &lt;see Teams&gt; &#8211; room&#x20;4</div>\
            <!-- hidden --><p>Bring   <b>laptops</b><br>and coffee</p>\r\n</body>\r\n</html>\r\n";
        assert_eq!(
            html_to_text(html),
            "Agenda: Q1 & Q2 planning\nDial-in: <see Teams> – room 4\nBring laptops\nand coffee"
        );
    }

    #[test]
    fn stray_markup_is_tolerated() {
        assert_eq!(html_to_text("a < b &unknown; & c"), "a < b &unknown; & c");
        assert_eq!(html_to_text("x <b>y"), "x y");
        assert_eq!(html_to_text("x <b"), "x");
        assert_eq!(html_to_text("<style>never closed"), "");
        assert_eq!(html_to_text("<!-- never closed"), "");
        assert_eq!(html_to_text("&#xFFFFFFFF; &#; &;"), "&#xFFFFFFFF; &#; &;");
    }
}
