//! Wall-clock times in an IANA zone turned into instants, with the one rule
//! for DST every part of this crate follows: a local time in a gap moves to
//! the first instant after the gap, a repeated local time takes its first
//! occurrence.

use chrono::offset::LocalResult;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

/// How far from a gap the search for its end looks: beyond the largest gap
/// any zone ever had (Samoa skipped a whole day) plus the widest offset.
const GAP_SEARCH_REACH: Duration = Duration::days(2);

/// The instant `local` names in `zone`: its first occurrence when repeated,
/// the first instant after the gap when it does not exist. `None` only at
/// the edges of chrono's range.
pub(crate) fn earliest_instant(zone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
        LocalResult::None => end_of_gap(zone, local),
    }
}

/// The first instant whose local time is past `local`, which lies in a gap.
///
/// Binary search on whole seconds between two instants whose local times lie
/// well before and well after the gap; local time only moves forward across
/// that window unless a zone changed its clocks twice within two days.
fn end_of_gap(zone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let centre = local.and_utc().timestamp();
    let reach = GAP_SEARCH_REACH.num_seconds();
    let is_past = |secs: i64| -> bool {
        DateTime::<Utc>::from_timestamp(secs, 0)
            .and_then(|t| {
                t.naive_utc()
                    .checked_add_offset(zone.offset_from_utc_datetime(&t.naive_utc()).fix())
            })
            .is_some_and(|wall| wall > local)
    };
    let (mut lo, mut hi) = (centre.checked_sub(reach)?, centre.checked_add(reach)?);
    if is_past(lo) || !is_past(hi) {
        return None;
    }
    // Invariant: `lo` is not past, `hi` is.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if is_past(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    DateTime::<Utc>::from_timestamp(hi, 0)
}

/// The local date of `t` in `zone`; `None` only at the edges of chrono's range.
pub(crate) fn local_date(zone: Tz, t: DateTime<Utc>) -> Option<NaiveDate> {
    let offset = zone.offset_from_utc_datetime(&t.naive_utc()).fix();
    t.naive_utc().checked_add_offset(offset).map(|wall| wall.date())
}
