//! The iCalendar we write (RFC 5545): one `VEVENT` per resource, times in
//! UTC, text escaped, lines folded at 75 octets with CRLF. Reading events is
//! the normalizer's job; here we only peek at an existing resource's `UID`
//! and `SEQUENCE` so an update keeps them.

use chrono::{DateTime, Utc};

use crate::{EventWrite, ProviderError};

/// `PRODID` of what we write.
const PRODID: &str = "-//Juy//Juy Calendar Service//EN";

fn utc(at: DateTime<Utc>) -> String {
    at.format("%Y%m%dT%H%M%SZ").to_string()
}

/// RFC 5545 §3.3.11 TEXT: backslash, semicolon, comma and newlines escaped;
/// other control characters (not allowed in TEXT) dropped.
fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\\n");
            }
            '\n' => out.push_str("\\n"),
            '\t' => out.push('\t'),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends `line` folded at 75 octets (never inside a UTF-8 sequence) and CRLF.
fn push_folded(out: &mut String, line: &str) {
    let mut width = 0;
    for ch in line.chars() {
        let len = ch.len_utf8();
        if width + len > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(ch);
        width += len;
    }
    out.push_str("\r\n");
}

/// An attendee address as a `mailto:` URI, refused when it could break the line.
fn attendee_uri(email: &str) -> Result<String, ProviderError> {
    let email = email.trim();
    let valid = email.len() <= 320
        && email.contains('@')
        && !email
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '"' | ';' | ':' | ',' | '<' | '>'));
    if !valid {
        return Err(ProviderError::Rejected {
            status: 400,
            reason: "an attendee address is not a valid email address".into(),
        });
    }
    Ok(format!("mailto:{email}"))
}

/// A `VCALENDAR` holding one `VEVENT` for `event`.
pub(crate) fn build_calendar(
    uid: &str,
    sequence: u32,
    event: &EventWrite,
    now: DateTime<Utc>,
) -> Result<String, ProviderError> {
    if event.end <= event.start {
        return Err(ProviderError::Rejected {
            status: 400,
            reason: "the event ends before it starts".into(),
        });
    }
    let mut out = String::new();
    let mut line = |text: &str| push_folded(&mut out, text);
    line("BEGIN:VCALENDAR");
    line("VERSION:2.0");
    line(&format!("PRODID:{PRODID}"));
    line("CALSCALE:GREGORIAN");
    line("BEGIN:VEVENT");
    // The UID is written raw: ours are plain, and an update reuses the stored value as it was.
    let uid: String = uid.chars().filter(|c| !c.is_control()).collect();
    line(&format!("UID:{uid}"));
    line(&format!("DTSTAMP:{}", utc(now)));
    line(&format!("DTSTART:{}", utc(event.start)));
    line(&format!("DTEND:{}", utc(event.end)));
    line(&format!("SEQUENCE:{sequence}"));
    line(&format!("SUMMARY:{}", escape_text(&event.title)));
    if let Some(description) = event.description.as_deref().filter(|d| !d.is_empty()) {
        line(&format!("DESCRIPTION:{}", escape_text(description)));
    }
    if let Some(location) = event.location.as_deref().filter(|l| !l.is_empty()) {
        line(&format!("LOCATION:{}", escape_text(location)));
    }
    for attendee in &event.attendees {
        line(&format!("ATTENDEE;RSVP=TRUE:{}", attendee_uri(attendee)?));
    }
    line("END:VEVENT");
    line("END:VCALENDAR");
    Ok(out)
}

/// Undoes line folding (CRLF or LF followed by a space or tab).
pub(crate) fn unfold(data: &str) -> String {
    data.replace("\r\n ", "")
        .replace("\r\n\t", "")
        .replace("\n ", "")
        .replace("\n\t", "")
}

/// The first `VEVENT`'s `UID` (raw value) and `SEQUENCE`, if present.
pub(crate) fn uid_and_sequence(data: &str) -> (Option<String>, Option<u32>) {
    let unfolded = unfold(data);
    let mut in_event = false;
    let mut uid = None;
    let mut sequence = None;
    for line in unfolded.lines() {
        let line = line.trim_end_matches('\r');
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.split(';').next().unwrap_or_default().to_ascii_uppercase();
        match (name.as_str(), value.trim().to_ascii_uppercase().as_str()) {
            ("BEGIN", "VEVENT") => in_event = true,
            ("END", "VEVENT") if in_event => break,
            ("UID", _) if in_event && uid.is_none() => uid = Some(value.trim().to_owned()),
            ("SEQUENCE", _) if in_event && sequence.is_none() => sequence = value.trim().parse().ok(),
            _ => {}
        }
    }
    (uid, sequence)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::TimeZone;

    use super::*;

    fn event() -> EventWrite {
        EventWrite {
            title: "Plan; review, and \\ sign\nnext".into(),
            description: Some(format!("{}\r\nend\u{7}", "é".repeat(60))),
            location: Some("Room 1".into()),
            start: Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap(),
            end: Utc.with_ymd_and_hms(2026, 1, 5, 10, 30, 0).unwrap(),
            time_zone: "Europe/Berlin".into(),
            attendees: vec!["bob@example.com".into()],
        }
    }

    #[test]
    fn writes_a_folded_escaped_utc_vevent() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let ics = build_calendar("abcde12345@juy", 0, &event(), now).unwrap();
        assert!(ics.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"));
        assert!(ics.ends_with("END:VEVENT\r\nEND:VCALENDAR\r\n"));
        assert!(ics.contains("\r\nUID:abcde12345@juy\r\n"));
        assert!(ics.contains("\r\nDTSTAMP:20260101T000000Z\r\n"));
        assert!(ics.contains("\r\nDTSTART:20260105T090000Z\r\nDTEND:20260105T103000Z\r\n"));
        assert!(ics.contains("\r\nSUMMARY:Plan\\; review\\, and \\\\ sign\\nnext\r\n"));
        assert!(ics.contains("\r\nATTENDEE;RSVP=TRUE:mailto:bob@example.com\r\n"));
        for line in ics.split("\r\n") {
            assert!(line.len() <= 75, "{line:?} is {} octets", line.len());
            assert!(!line.contains('\n') && !line.contains('\u{7}'));
        }
        let unfolded = unfold(&ics);
        assert!(unfolded.contains(&format!("DESCRIPTION:{}\\nend\r\n", "é".repeat(60))));
        assert_eq!(uid_and_sequence(&ics), (Some("abcde12345@juy".to_owned()), Some(0)));
    }

    #[test]
    fn refuses_attendees_and_times_that_would_break_the_file() {
        let now = Utc::now();
        let mut bad = event();
        bad.attendees = vec!["bob@example.com\r\nATTENDEE:mailto:eve@example.com".into()];
        assert!(matches!(
            build_calendar("k@juy", 0, &bad, now),
            Err(ProviderError::Rejected { status: 400, .. })
        ));
        let mut backwards = event();
        backwards.end = backwards.start;
        assert!(build_calendar("k@juy", 0, &backwards, now).is_err());
    }

    #[test]
    fn reads_uid_and_sequence_of_the_first_vevent() {
        let data = "BEGIN:VCALENDAR\nBEGIN:VTIMEZONE\nUID:nope\nEND:VTIMEZONE\nBEGIN:VEVENT\nUID:abc-\n 123@example.com\nSEQUENCE:4\nEND:VEVENT\nBEGIN:VEVENT\nUID:other\nEND:VEVENT\nEND:VCALENDAR\n";
        assert_eq!(
            uid_and_sequence(data),
            (Some("abc-123@example.com".to_owned()), Some(4))
        );
        assert_eq!(uid_and_sequence("garbage"), (None, None));
    }
}
