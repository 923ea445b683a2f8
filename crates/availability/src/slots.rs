//! Slot finding: ranked free slots for a group of invitees, or who conflicts
//! when nothing fits.

use chrono::offset::LocalResult;
use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::freebusy::{BusyInterval, Piece, merge_pieces};
use crate::hours::WorkingHours;
use crate::localtime::local_date;
use crate::policy::BusyKind;

/// One invitee's side of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitee {
    /// The caller's name for them (a user id); echoed in results.
    pub id: String,
    /// Their merged busy intervals ([`crate::merge`]) covering at least the
    /// search range widened by the buffers.
    pub busy: Vec<BusyInterval>,
    /// When they work.
    pub hours: WorkingHours,
    /// Required attendees must be free; optional ones only improve a slot's rank.
    pub required: bool,
}

/// What to look for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotQuery {
    /// Slots start at or after this instant.
    pub from: DateTime<Utc>,
    /// Slots end at or before this instant.
    pub to: DateTime<Utc>,
    /// The meeting's length (positive).
    pub duration: Duration,
    /// Slot starts are whole multiples of this after local midnight in
    /// `align_zone` (positive, at most a day; e.g. 15 or 30 minutes).
    pub granularity: Duration,
    /// Time that must be free before the meeting (not counted against working hours).
    pub buffer_before: Duration,
    /// Time that must be free after it.
    pub buffer_after: Duration,
    /// The zone whose clock slot starts are aligned to (usually the organiser's).
    pub align_zone: Tz,
    /// Whether tentative time blocks a required invitee (it does by default).
    pub tentative_is_busy: bool,
    /// At most this many slots are returned (positive).
    pub max_results: usize,
}

/// A proposed slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// Start.
    pub start: DateTime<Utc>,
    /// End (`start + duration`).
    pub end: DateTime<Utc>,
    /// The optional invitees free then (within their working hours, buffers included).
    pub optional_free: Vec<String>,
    /// The optional invitees not free then.
    pub optional_busy: Vec<String>,
}

/// A required invitee who blocks otherwise possible times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The invitee's id.
    pub invitee: String,
    /// Their busy intervals (clipped to the range widened by the buffers) that
    /// made candidate slots inside everyone's working hours impossible, merged
    /// and sorted.
    pub intervals: Vec<BusyInterval>,
}

/// The answer of [`find_slots`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotSearch {
    /// The slots, best first: most optional invitees free, then earliest.
    pub slots: Vec<Slot>,
    /// Filled when `slots` is empty: who conflicts when, one entry per
    /// required invitee that blocked at least one candidate, in input order.
    /// Empty with no slots means the working hours never overlap in the range
    /// (see [`SlotSearch::no_common_hours`]).
    pub conflicts: Vec<Conflict>,
    /// Set when no candidate lies within every required invitee's working hours.
    pub no_common_hours: bool,
}

/// Why a query cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// A field is out of bounds; names it.
    #[error("{field}: {reason}")]
    Invalid {
        /// The query field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Finds slots `[s, s + duration)` inside `[from, to)` where every required
/// invitee is inside their working hours for the whole meeting and free
/// (no busy interval, nor tentative when `tentative_is_busy`, overlapping
/// `[s - buffer_before, s + duration + buffer_after)`). Candidate starts are
/// aligned to `granularity` on the `align_zone` clock, ascending, no repeats
/// (a DST overlap repeats a local time; each instant is tried once).
/// With no required invitee, every aligned candidate within the range is a
/// slot (ranked by optional invitees).
pub fn find_slots(query: &SlotQuery, invitees: &[Invitee]) -> Result<SlotSearch, SlotError> {
    validate(query)?;
    let candidates = candidate_starts(query);
    let mut schedules: Vec<Schedule<'_>> = invitees.iter().map(|invitee| Schedule::new(invitee, query)).collect();
    let required: Vec<usize> = (0..invitees.len()).filter(|&i| invitees[i].required).collect();
    let optional: Vec<usize> = (0..invitees.len()).filter(|&i| !invitees[i].required).collect();

    // Slots found (start, row, optional invitees free), with which optional
    // invitees are free at each (row-major, one row per slot), so that names
    // are copied only for the slots returned.
    let mut found: Vec<(DateTime<Utc>, usize, usize)> = Vec::new();
    let mut optional_free: Vec<bool> = Vec::new();
    // Candidates inside everyone's working hours, kept until a slot turns up:
    // without slots they are what the conflicts report explains.
    let mut blocked: Vec<DateTime<Utc>> = Vec::new();
    let mut any_common_hours = false;

    for &start in &candidates {
        // Cannot overflow: every candidate's meeting ends by `query.to`.
        let end = start + query.duration;
        if !required.iter().all(|&i| schedules[i].works(start, end)) {
            continue;
        }
        any_common_hours = true;
        let (lo, hi) = buffered(query, start);
        if required.iter().any(|&i| schedules[i].is_busy(lo, hi)) {
            if found.is_empty() {
                blocked.push(start);
            }
            continue;
        }
        let mut free_count = 0;
        for &i in &optional {
            let free = schedules[i].works(start, end) && !schedules[i].is_busy(lo, hi);
            free_count += usize::from(free);
            optional_free.push(free);
        }
        found.push((start, found.len(), free_count));
        blocked.clear();
    }

    if found.is_empty() {
        let conflicts = required
            .iter()
            .filter_map(|&i| {
                let intervals = schedules[i].conflicts(query, &blocked);
                (!intervals.is_empty()).then(|| Conflict {
                    invitee: invitees[i].id.clone(),
                    intervals,
                })
            })
            .collect();
        return Ok(SlotSearch {
            slots: Vec::new(),
            conflicts,
            no_common_hours: !any_common_hours,
        });
    }

    let row = |slot: usize| &optional_free[slot * optional.len()..(slot + 1) * optional.len()];
    // Candidates are ascending, and the sort is stable: ties stay earliest first.
    found.sort_by_key(|&(_, _, free_count)| std::cmp::Reverse(free_count));
    found.truncate(query.max_results);
    let slots = found
        .into_iter()
        .map(|(start, slot, _)| {
            let (free, busy): (Vec<_>, Vec<_>) = optional.iter().zip(row(slot)).partition(|(_, free)| **free);
            Slot {
                start,
                end: start + query.duration,
                optional_free: free.into_iter().map(|(&i, _)| invitees[i].id.clone()).collect(),
                optional_busy: busy.into_iter().map(|(&i, _)| invitees[i].id.clone()).collect(),
            }
        })
        .collect();
    Ok(SlotSearch {
        slots,
        conflicts: Vec::new(),
        no_common_hours: false,
    })
}

fn validate(query: &SlotQuery) -> Result<(), SlotError> {
    let invalid = |field, reason| Err(SlotError::Invalid { field, reason });
    if query.duration <= Duration::zero() {
        return invalid("duration", "must be positive");
    }
    if query.granularity <= Duration::zero() || query.granularity > Duration::days(1) {
        return invalid("granularity", "must be positive and at most a day");
    }
    if query.buffer_before < Duration::zero() {
        return invalid("buffer_before", "must not be negative");
    }
    if query.buffer_after < Duration::zero() {
        return invalid("buffer_after", "must not be negative");
    }
    if query.from >= query.to {
        return invalid("range", "from must be before to");
    }
    if query.max_results == 0 {
        return invalid("max_results", "must be positive");
    }
    Ok(())
}

/// The time that must be free around a meeting starting at `start`.
/// `start` must be a candidate, whose meeting ends by `query.to`.
fn buffered(query: &SlotQuery, start: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let lo = start
        .checked_sub_signed(query.buffer_before)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let hi = (start + query.duration)
        .checked_add_signed(query.buffer_after)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    (lo, hi)
}

/// Every start on the `align_zone` clock at a whole multiple of the
/// granularity after local midnight whose meeting fits in the range,
/// ascending, each instant once.
fn candidate_starts(query: &SlotQuery) -> Vec<DateTime<Utc>> {
    let zone = query.align_zone;
    let Some(latest) = query.to.checked_sub_signed(query.duration) else {
        return Vec::new();
    };
    let (Some(first), Some(last)) = (local_date(zone, query.from), local_date(zone, latest)) else {
        return Vec::new();
    };
    // A DST overlap around midnight can give an instant in the range the
    // local date before or after the range's own.
    let first = first.pred_opt().unwrap_or(first);
    let last = last.succ_opt().unwrap_or(last);
    let day = Duration::days(1);

    let mut starts = Vec::new();
    for date in first.iter_days().take_while(|date| *date <= last) {
        let midnight = date.and_time(NaiveTime::MIN);
        let mut offset = Duration::zero();
        while offset < day {
            let Some(local) = midnight.checked_add_signed(offset) else {
                break;
            };
            // A local time in a gap does not exist, so it is no candidate; a
            // repeated one is tried at both of its instants.
            match zone.from_local_datetime(&local) {
                LocalResult::Single(at) => starts.push(at.with_timezone(&Utc)),
                LocalResult::Ambiguous(a, b) => {
                    starts.push(a.with_timezone(&Utc));
                    starts.push(b.with_timezone(&Utc));
                }
                LocalResult::None => {}
            }
            offset += query.granularity;
        }
    }
    starts.retain(|start| query.from <= *start && *start <= latest);
    starts.sort_unstable();
    starts.dedup();
    starts
}

/// One invitee's working intervals and blocking busy time over a query,
/// with cursors for questions asked in ascending time.
struct Schedule<'a> {
    /// Working intervals: sorted, disjoint, never touching.
    working: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    next_working: usize,
    /// The busy intervals that block (by kind) and reach the buffered range,
    /// sorted by start (they may overlap when the caller did not merge them).
    blocking: Vec<&'a BusyInterval>,
    /// The first blocking interval that may still overlap a window to come
    /// (every one before it ends by the latest window's start).
    next_blocking: usize,
}

impl<'a> Schedule<'a> {
    fn new(invitee: &'a Invitee, query: &SlotQuery) -> Self {
        let (reach_from, reach_to) = buffered_range(query);
        let mut blocking: Vec<&BusyInterval> = invitee
            .busy
            .iter()
            .filter(|interval| query.tentative_is_busy || interval.kind >= BusyKind::Busy)
            .filter(|interval| interval.start < interval.end && interval.start < reach_to && reach_from < interval.end)
            .collect();
        // Merged input is already sorted; the check spares the sort.
        if !blocking.is_sorted_by_key(|interval| interval.start) {
            blocking.sort_by_key(|interval| interval.start);
        }
        Self {
            working: invitee.hours.intervals(query.from, query.to),
            next_working: 0,
            blocking,
            next_blocking: 0,
        }
    }

    /// Whether `[start, end)` lies within one working interval. Calls must
    /// come with ascending `start`.
    fn works(&mut self, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        while self
            .working
            .get(self.next_working)
            .is_some_and(|&(_, until)| until <= start)
        {
            self.next_working += 1;
        }
        self.working
            .get(self.next_working)
            .is_some_and(|&(since, until)| since <= start && end <= until)
    }

    /// Moves past the blocking intervals that end by `lo` and returns the
    /// position of the first one left. Skipped intervals end by every later
    /// window's start too: `lo` must ascend across calls.
    fn skip_ended(&mut self, lo: DateTime<Utc>) -> usize {
        while self
            .blocking
            .get(self.next_blocking)
            .is_some_and(|interval| interval.end <= lo)
        {
            self.next_blocking += 1;
        }
        self.next_blocking
    }

    /// Whether blocking time overlaps `[lo, hi)`. Calls must come with ascending `lo`.
    fn is_busy(&mut self, lo: DateTime<Utc>, hi: DateTime<Utc>) -> bool {
        // The first interval left ends after `lo` and none after it starts
        // earlier: if it starts before `hi` it overlaps, else nothing does.
        let first = self.skip_ended(lo);
        self.blocking.get(first).is_some_and(|interval| interval.start < hi)
    }

    /// The blocking intervals overlapping the buffered window of any of
    /// `starts` (ascending), clipped to the buffered range and merged.
    fn conflicts(&mut self, query: &SlotQuery, starts: &[DateTime<Utc>]) -> Vec<BusyInterval> {
        self.next_blocking = 0;
        let mut hit = vec![false; self.blocking.len()];
        for &start in starts {
            let (lo, hi) = buffered(query, start);
            let first = self.skip_ended(lo);
            for (i, interval) in self.blocking.iter().enumerate().skip(first) {
                if hi <= interval.start {
                    break;
                }
                if lo < interval.end {
                    hit[i] = true;
                }
            }
        }
        let pieces: Vec<Piece<'_>> = self
            .blocking
            .iter()
            .zip(&hit)
            .filter(|(_, hit)| **hit)
            .map(|(interval, _)| Piece {
                start: interval.start,
                end: interval.end,
                kind: interval.kind,
                sources: &interval.sources,
            })
            .collect();
        let (reach_from, reach_to) = buffered_range(query);
        merge_pieces(&pieces, reach_from, reach_to)
    }
}

/// The query's range widened by the buffers: all the busy time that can matter.
fn buffered_range(query: &SlotQuery) -> (DateTime<Utc>, DateTime<Utc>) {
    let from = query
        .from
        .checked_sub_signed(query.buffer_before)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let to = query
        .to
        .checked_add_signed(query.buffer_after)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    (from, to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::freebusy::{BusySpan, merge};
    use crate::hours::WorkingPeriod;
    use chrono::{Datelike, TimeZone, Timelike, Weekday};
    use chrono_tz::{America, Asia, Europe, Pacific, UTC};
    use proptest::prelude::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).single().unwrap()
    }

    /// Monday 2026-05-04 at `h:mi` UTC.
    fn mon(h: u32, mi: u32) -> DateTime<Utc> {
        at(2026, 5, 4, h, mi)
    }

    fn minutes(n: i64) -> Duration {
        Duration::minutes(n)
    }

    fn query(from: DateTime<Utc>, to: DateTime<Utc>) -> SlotQuery {
        SlotQuery {
            from,
            to,
            duration: minutes(30),
            granularity: minutes(30),
            buffer_before: Duration::zero(),
            buffer_after: Duration::zero(),
            align_zone: UTC,
            tentative_is_busy: true,
            max_results: 1000,
        }
    }

    fn busy(start: DateTime<Utc>, end: DateTime<Utc>, kind: BusyKind, sources: &[usize]) -> BusyInterval {
        BusyInterval {
            start,
            end,
            kind,
            sources: sources.to_vec(),
        }
    }

    fn invitee(id: &str, busy: Vec<BusyInterval>, hours: WorkingHours, required: bool) -> Invitee {
        Invitee {
            id: id.to_owned(),
            busy,
            hours,
            required,
        }
    }

    fn starts(search: &SlotSearch) -> Vec<DateTime<Utc>> {
        search.slots.iter().map(|slot| slot.start).collect()
    }

    #[test]
    fn berlin_and_new_york_office_hours_meet_from_three_to_five_berlin_time() {
        let mut q = query(mon(0, 0), at(2026, 5, 5, 0, 0));
        q.align_zone = Europe::Berlin;
        let people = [
            invitee("berlin", vec![], WorkingHours::office(Europe::Berlin), true),
            invitee("new-york", vec![], WorkingHours::office(America::New_York), true),
        ];
        let search = find_slots(&q, &people).unwrap();
        assert_eq!(starts(&search), [mon(13, 0), mon(13, 30), mon(14, 0), mon(14, 30)]);
        for slot in &search.slots {
            let local = slot.start.with_timezone(&Europe::Berlin);
            assert!((15..17).contains(&local.hour()), "{local}");
            assert_eq!(slot.end, slot.start + minutes(30));
        }
        assert!(search.conflicts.is_empty());
        assert!(!search.no_common_hours);
    }

    #[test]
    fn buffers_keep_slots_away_from_busy_time_but_may_leave_working_hours() {
        let mut q = query(mon(9, 0), mon(12, 0));
        q.granularity = minutes(15);
        let people = [invitee(
            "ana",
            vec![busy(mon(10, 0), mon(11, 0), BusyKind::Busy, &[0])],
            WorkingHours::office(UTC),
            true,
        )];
        let search = find_slots(&q, &people).unwrap();
        assert_eq!(
            starts(&search),
            [mon(9, 0), mon(9, 15), mon(9, 30), mon(11, 0), mon(11, 15), mon(11, 30)]
        );

        q.buffer_before = minutes(15);
        q.buffer_after = minutes(15);
        let search = find_slots(&q, &people).unwrap();
        // 09:00 stays: its buffer before lies outside working hours, which buffers may.
        assert_eq!(starts(&search), [mon(9, 0), mon(9, 15), mon(11, 15), mon(11, 30)]);
    }

    #[test]
    fn slot_starts_follow_the_kathmandu_clock_at_a_quarter_to_the_utc_hour() {
        let mut q = query(mon(0, 0), mon(3, 0));
        q.align_zone = Asia::Kathmandu;
        let search = find_slots(&q, &[]).unwrap();
        // 00:15 UTC is 06:00 in Kathmandu (+05:45).
        assert_eq!(
            starts(&search),
            [mon(0, 15), mon(0, 45), mon(1, 15), mon(1, 45), mon(2, 15)]
        );
        for slot in &search.slots {
            assert_eq!(slot.start.with_timezone(&Asia::Kathmandu).minute() % 30, 0);
        }

        q.align_zone = UTC;
        let search = find_slots(&q, &[]).unwrap();
        assert_eq!(starts(&search)[..2], [mon(0, 0), mon(0, 30)]);
    }

    #[test]
    fn berlin_spring_forward_night_has_no_candidate_in_the_missing_hour() {
        let mut q = query(at(2026, 3, 28, 23, 0), at(2026, 3, 29, 2, 0));
        q.align_zone = Europe::Berlin;
        let search = find_slots(&q, &[]).unwrap();
        assert_eq!(
            starts(&search),
            [
                at(2026, 3, 28, 23, 0),  // 00:00 CET
                at(2026, 3, 28, 23, 30), // 00:30 CET
                at(2026, 3, 29, 0, 0),   // 01:00 CET
                at(2026, 3, 29, 0, 30),  // 01:30 CET
                at(2026, 3, 29, 1, 0),   // 03:00 CEST
                at(2026, 3, 29, 1, 30),  // 03:30 CEST
            ]
        );
        assert!(
            search
                .slots
                .iter()
                .all(|slot| slot.start.with_timezone(&Europe::Berlin).hour() != 2)
        );
    }

    #[test]
    fn berlin_fall_back_night_tries_both_instants_of_the_repeated_hour_once() {
        let mut q = query(at(2026, 10, 24, 23, 0), at(2026, 10, 25, 2, 30));
        q.align_zone = Europe::Berlin;
        let search = find_slots(&q, &[]).unwrap();
        assert_eq!(
            starts(&search),
            [
                at(2026, 10, 24, 23, 0),  // 01:00 CEST
                at(2026, 10, 24, 23, 30), // 01:30 CEST
                at(2026, 10, 25, 0, 0),   // 02:00 CEST
                at(2026, 10, 25, 0, 30),  // 02:30 CEST
                at(2026, 10, 25, 1, 0),   // 02:00 CET
                at(2026, 10, 25, 1, 30),  // 02:30 CET
                at(2026, 10, 25, 2, 0),   // 03:00 CET
            ]
        );
    }

    #[test]
    fn tentative_time_blocks_only_when_tentative_is_busy() {
        let mut q = query(mon(9, 0), mon(12, 0));
        q.duration = minutes(60);
        q.granularity = minutes(60);
        let people = [invitee(
            "ana",
            vec![busy(mon(10, 0), mon(11, 0), BusyKind::Tentative, &[0])],
            WorkingHours::always(UTC),
            true,
        )];
        assert_eq!(starts(&find_slots(&q, &people).unwrap()), [mon(9, 0), mon(11, 0)]);
        q.tentative_is_busy = false;
        assert_eq!(
            starts(&find_slots(&q, &people).unwrap()),
            [mon(9, 0), mon(10, 0), mon(11, 0)]
        );
    }

    #[test]
    fn slots_with_more_optional_invitees_free_rank_first_then_earliest() {
        let mut q = query(mon(9, 0), mon(13, 0));
        q.duration = minutes(60);
        q.granularity = minutes(60);
        let people = [
            invitee("ana", vec![], WorkingHours::always(UTC), true),
            invitee(
                "ben",
                vec![busy(mon(9, 0), mon(10, 0), BusyKind::Busy, &[0])],
                WorkingHours::always(UTC),
                false,
            ),
            invitee(
                "cleo",
                vec![busy(mon(9, 0), mon(11, 0), BusyKind::OutOfOffice, &[1])],
                WorkingHours::always(UTC),
                false,
            ),
        ];
        let search = find_slots(&q, &people).unwrap();
        let ranked: Vec<(DateTime<Utc>, Vec<&str>, Vec<&str>)> = search
            .slots
            .iter()
            .map(|slot| {
                (
                    slot.start,
                    slot.optional_free.iter().map(String::as_str).collect(),
                    slot.optional_busy.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            ranked,
            [
                (mon(11, 0), vec!["ben", "cleo"], vec![]),
                (mon(12, 0), vec!["ben", "cleo"], vec![]),
                (mon(10, 0), vec!["ben"], vec!["cleo"]),
                (mon(9, 0), vec![], vec!["ben", "cleo"]),
            ]
        );

        q.max_results = 2;
        assert_eq!(starts(&find_slots(&q, &people).unwrap()), [mon(11, 0), mon(12, 0)]);
    }

    #[test]
    fn optional_invitee_outside_working_hours_counts_as_busy() {
        let mut q = query(mon(8, 0), mon(10, 0));
        q.duration = minutes(60);
        q.granularity = minutes(60);
        let people = [invitee("dan", vec![], WorkingHours::office(UTC), false)];
        let search = find_slots(&q, &people).unwrap();
        assert_eq!(starts(&search), [mon(9, 0), mon(8, 0)]);
        assert_eq!(search.slots[1].optional_busy, ["dan"]);
    }

    #[test]
    fn optional_invitee_uses_the_same_buffers_and_tentative_rule() {
        let mut q = query(mon(9, 0), mon(11, 0));
        q.duration = minutes(60);
        q.granularity = minutes(60);
        q.buffer_after = minutes(1);
        let people = [invitee(
            "eve",
            vec![busy(mon(10, 0), mon(10, 30), BusyKind::Tentative, &[0])],
            WorkingHours::always(UTC),
            false,
        )];
        let search = find_slots(&q, &people).unwrap();
        assert_eq!(
            search.slots.iter().map(|s| s.optional_free.len()).collect::<Vec<_>>(),
            [0, 0]
        );
        q.tentative_is_busy = false;
        let search = find_slots(&q, &people).unwrap();
        assert_eq!(
            search.slots.iter().map(|s| s.optional_free.len()).collect::<Vec<_>>(),
            [1, 1]
        );
    }

    #[test]
    fn without_required_invitees_every_aligned_candidate_is_a_slot() {
        let q = query(mon(9, 0), mon(11, 0));
        let search = find_slots(&q, &[]).unwrap();
        assert_eq!(starts(&search), [mon(9, 0), mon(9, 30), mon(10, 0), mon(10, 30)]);
    }

    #[test]
    fn conflicts_name_the_blocking_invitee_and_interval() {
        let mut q = query(mon(0, 0), at(2026, 5, 5, 0, 0));
        q.buffer_before = minutes(15);
        let people = [
            invitee("ana", vec![], WorkingHours::office(UTC), true),
            invitee(
                "ben",
                vec![
                    busy(mon(8, 0), mon(12, 0), BusyKind::Busy, &[4]),
                    busy(mon(12, 0), mon(18, 0), BusyKind::OutOfOffice, &[5, 6]),
                    // Outside everyone's working hours: blocks nothing that could be.
                    busy(mon(20, 0), mon(21, 0), BusyKind::Busy, &[7]),
                ],
                WorkingHours::office(UTC),
                true,
            ),
            invitee(
                "cleo",
                vec![busy(mon(9, 0), mon(17, 0), BusyKind::Busy, &[8])],
                WorkingHours::office(UTC),
                false,
            ),
        ];
        let search = find_slots(&q, &people).unwrap();
        assert!(search.slots.is_empty());
        assert!(!search.no_common_hours);
        assert_eq!(
            search.conflicts,
            [Conflict {
                invitee: "ben".to_owned(),
                intervals: vec![
                    busy(mon(8, 0), mon(12, 0), BusyKind::Busy, &[4]),
                    busy(mon(12, 0), mon(18, 0), BusyKind::OutOfOffice, &[5, 6]),
                ],
            }]
        );
    }

    #[test]
    fn conflicts_list_every_blocking_required_invitee_in_input_order_clipped_to_the_buffered_range() {
        let mut q = query(mon(9, 0), mon(11, 0));
        q.duration = minutes(60);
        q.buffer_before = minutes(10);
        q.buffer_after = minutes(20);
        let people = [
            invitee(
                "zoe",
                vec![busy(mon(10, 0), mon(23, 0), BusyKind::Busy, &[1])],
                WorkingHours::always(UTC),
                true,
            ),
            invitee(
                "adam",
                vec![
                    busy(mon(5, 0), mon(9, 15), BusyKind::Tentative, &[2]),
                    busy(mon(9, 15), mon(9, 45), BusyKind::Busy, &[3]),
                ],
                WorkingHours::always(UTC),
                true,
            ),
            invitee("free", vec![], WorkingHours::always(UTC), true),
        ];
        let search = find_slots(&q, &people).unwrap();
        assert!(search.slots.is_empty());
        assert_eq!(
            search.conflicts,
            [
                Conflict {
                    invitee: "zoe".to_owned(),
                    intervals: vec![busy(mon(10, 0), mon(11, 20), BusyKind::Busy, &[1])],
                },
                Conflict {
                    invitee: "adam".to_owned(),
                    intervals: vec![
                        busy(mon(8, 50), mon(9, 15), BusyKind::Tentative, &[2]),
                        busy(mon(9, 15), mon(9, 45), BusyKind::Busy, &[3]),
                    ],
                },
            ]
        );

        // Tentative time that does not block is no conflict either.
        q.tentative_is_busy = false;
        let search = find_slots(&q, &people).unwrap();
        assert_eq!(
            search.conflicts[1].intervals,
            [busy(mon(9, 15), mon(9, 45), BusyKind::Busy, &[3])]
        );
    }

    #[test]
    fn conflicts_leave_out_intervals_that_overlap_no_candidate_window() {
        let mut q = query(mon(9, 0), mon(13, 0));
        q.granularity = minutes(120);
        // Candidates 10:00 and 12:00, windows [10:00, 10:30) and [12:00, 12:30).
        let people = [invitee(
            "ana",
            vec![
                busy(mon(9, 0), mon(13, 0), BusyKind::Busy, &[0]),
                // Unmerged input: a short interval inside the long one, between the windows.
                busy(mon(11, 0), mon(11, 15), BusyKind::OutOfOffice, &[1]),
            ],
            WorkingHours::always(UTC),
            true,
        )];
        let search = find_slots(&q, &people).unwrap();
        assert_eq!(
            search.conflicts,
            [Conflict {
                invitee: "ana".to_owned(),
                intervals: vec![busy(mon(9, 0), mon(13, 0), BusyKind::Busy, &[0])],
            }]
        );
    }

    #[test]
    fn working_hours_that_never_meet_report_no_common_hours() {
        // Berlin 09–17 is 07–15 UTC; Auckland 09–17 (+12 in May) is 21–05 UTC.
        let q = query(mon(0, 0), at(2026, 5, 9, 0, 0));
        let people = [
            invitee("berlin", vec![], WorkingHours::office(Europe::Berlin), true),
            invitee("auckland", vec![], WorkingHours::office(Pacific::Auckland), true),
        ];
        let search = find_slots(&q, &people).unwrap();
        assert!(search.slots.is_empty());
        assert!(search.conflicts.is_empty());
        assert!(search.no_common_hours);
    }

    #[test]
    fn meeting_may_run_past_midnight_when_working_hours_continue() {
        let mut q = query(mon(23, 0), at(2026, 5, 5, 1, 0));
        q.duration = minutes(120);
        let people = [invitee("owl", vec![], WorkingHours::always(Europe::Berlin), true)];
        assert_eq!(starts(&find_slots(&q, &people).unwrap()), [mon(23, 0)]);
    }

    #[test]
    fn invalid_queries_name_the_field() {
        let valid = query(mon(9, 0), mon(17, 0));
        type Breakage = Box<dyn Fn(&mut SlotQuery)>;
        let cases: [(&str, Breakage); 9] = [
            ("duration", Box::new(|q| q.duration = Duration::zero())),
            ("duration", Box::new(|q| q.duration = minutes(-30))),
            ("granularity", Box::new(|q| q.granularity = Duration::zero())),
            (
                "granularity",
                Box::new(|q| q.granularity = Duration::days(1) + minutes(1)),
            ),
            ("buffer_before", Box::new(|q| q.buffer_before = minutes(-1))),
            ("buffer_after", Box::new(|q| q.buffer_after = minutes(-1))),
            ("range", Box::new(|q| q.to = q.from)),
            ("range", Box::new(|q| q.to = q.from - minutes(1))),
            ("max_results", Box::new(|q| q.max_results = 0)),
        ];
        for (field, break_it) in cases {
            let mut q = valid.clone();
            break_it(&mut q);
            match find_slots(&q, &[]) {
                Err(SlotError::Invalid { field: named, .. }) => assert_eq!(named, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        let mut q = valid.clone();
        q.granularity = Duration::days(1);
        assert!(find_slots(&q, &[]).is_ok());
        assert_eq!(
            find_slots(
                &SlotQuery {
                    max_results: 0,
                    ..valid
                },
                &[]
            )
            .unwrap_err()
            .to_string(),
            "max_results: must be positive"
        );
    }

    #[test]
    fn range_shorter_than_the_meeting_has_no_slot() {
        let mut q = query(mon(9, 0), mon(9, 20));
        q.duration = minutes(30);
        let search = find_slots(&q, &[]).unwrap();
        assert!(search.slots.is_empty());
        assert!(search.conflicts.is_empty());
        // Vacuously: no candidate at all, so none within everyone's hours.
        assert!(search.no_common_hours);
    }

    #[test]
    fn unsorted_and_overlapping_busy_input_is_still_honoured() {
        let mut q = query(mon(9, 0), mon(13, 0));
        q.duration = minutes(60);
        q.granularity = minutes(60);
        let people = [invitee(
            "ana",
            vec![
                busy(mon(11, 0), mon(12, 0), BusyKind::Busy, &[0]),
                busy(mon(9, 0), mon(11, 0), BusyKind::Tentative, &[1]),
                busy(mon(9, 30), mon(9, 45), BusyKind::Busy, &[2]),
            ],
            WorkingHours::always(UTC),
            true,
        )];
        assert_eq!(starts(&find_slots(&q, &people).unwrap()), [mon(12, 0)]);
        q.tentative_is_busy = false;
        assert_eq!(starts(&find_slots(&q, &people).unwrap()), [mon(10, 0), mon(12, 0)]);
    }

    /// A brute-force model of one invitee over minutes since `base()`: raw
    /// spans and UTC working periods, checked minute by minute.
    #[derive(Debug, Clone)]
    struct Person {
        required: bool,
        /// `None`: always working. Else per weekday (Monday first) periods in
        /// minutes of the day, end 1440 meaning midnight.
        periods: Option<Vec<Vec<(u32, u32)>>>,
        /// Start minute, length, kind.
        spans: Vec<(i64, i64, BusyKind)>,
    }

    fn base() -> DateTime<Utc> {
        mon(0, 0)
    }

    fn minute_of(t: i64) -> DateTime<Utc> {
        base() + minutes(t)
    }

    fn day_strategy() -> impl Strategy<Value = Vec<(u32, u32)>> {
        prop::collection::vec(0u32..=96, 4).prop_map(|mut cuts| {
            cuts.sort_unstable();
            let cuts: Vec<u32> = cuts.into_iter().map(|quarter| quarter * 15).collect();
            [(cuts[0], cuts[1]), (cuts[2], cuts[3])]
                .into_iter()
                .filter(|(start, end)| start < end)
                .collect()
        })
    }

    fn person_strategy() -> impl Strategy<Value = Person> {
        let kind = prop_oneof![
            Just(BusyKind::Tentative),
            Just(BusyKind::Busy),
            Just(BusyKind::OutOfOffice)
        ];
        (
            any::<bool>(),
            prop::option::weighted(0.7, prop::collection::vec(day_strategy(), 7)),
            prop::collection::vec((-120i64..3000, 1i64..300, kind), 0..10),
        )
            .prop_map(|(required, periods, spans)| Person {
                required,
                periods,
                spans,
            })
    }

    impl Person {
        fn hours(&self) -> WorkingHours {
            let Some(days) = &self.periods else {
                return WorkingHours::always(UTC);
            };
            let time = |minute: u32| NaiveTime::from_hms_opt(minute / 60 % 24, minute % 60, 0).unwrap();
            let week = [
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
                Weekday::Sat,
                Weekday::Sun,
            ];
            WorkingHours {
                zone: UTC,
                periods: week
                    .iter()
                    .zip(days)
                    .flat_map(|(&day, periods)| {
                        periods.iter().map(move |&(start, end)| WorkingPeriod {
                            day,
                            start: time(start),
                            end: time(end),
                        })
                    })
                    .collect(),
            }
        }

        fn works_at(&self, t: i64) -> bool {
            let Some(days) = &self.periods else {
                return true;
            };
            let at = minute_of(t);
            let minute = at.hour() * 60 + at.minute();
            days[at.weekday().num_days_from_monday() as usize]
                .iter()
                .any(|&(start, end)| start <= minute && minute < end)
        }

        fn blocked_at(&self, t: i64, tentative_is_busy: bool) -> bool {
            self.spans.iter().any(|&(start, length, kind)| {
                (tentative_is_busy || kind >= BusyKind::Busy) && start <= t && t < start + length
            })
        }
    }

    /// Prefix counts over minutes `FIRST..LAST` for O(1) "all minutes in a
    /// range satisfy" questions.
    const FIRST: i64 = -400;
    const LAST: i64 = 6000;

    fn prefix(holds: impl Fn(i64) -> bool) -> Vec<usize> {
        let mut counts = vec![0];
        for t in FIRST..LAST {
            counts.push(counts.last().unwrap() + usize::from(holds(t)));
        }
        counts
    }

    fn count(prefix: &[usize], from: i64, to: i64) -> usize {
        prefix[(to - FIRST) as usize] - prefix[(from - FIRST) as usize]
    }

    proptest! {
        #[test]
        fn find_slots_agrees_with_a_brute_force_search_in_utc(
            people in prop::collection::vec(person_strategy(), 0..5),
            from in 0i64..1440,
            length in 1i64..(2 * 1440),
            duration in 1i64..240,
            granularity in prop::sample::select(vec![1i64, 5, 7, 15, 25, 30, 45, 60, 90, 1440]),
            buffer_before in 0i64..90,
            buffer_after in 0i64..90,
            tentative_is_busy in any::<bool>(),
            merged in any::<bool>(),
        ) {
            let to = from + length;
            let q = SlotQuery {
                from: minute_of(from),
                to: minute_of(to),
                duration: minutes(duration),
                granularity: minutes(granularity),
                buffer_before: minutes(buffer_before),
                buffer_after: minutes(buffer_after),
                align_zone: UTC,
                tentative_is_busy,
                max_results: usize::MAX,
            };
            let invitees: Vec<Invitee> = people
                .iter()
                .enumerate()
                .map(|(i, person)| {
                    let spans: Vec<BusySpan> = person
                        .spans
                        .iter()
                        .enumerate()
                        .map(|(source, &(start, length, kind))| BusySpan {
                            start: minute_of(start),
                            end: minute_of(start + length),
                            kind,
                            source,
                        })
                        .collect();
                    // Unmerged input (overlapping, newest first) must give the same answer.
                    let busy = if merged {
                        merge(&spans, minute_of(from - buffer_before), minute_of(to + buffer_after))
                    } else {
                        spans
                            .iter()
                            .rev()
                            .map(|span| busy(span.start, span.end, span.kind, &[span.source]))
                            .collect()
                    };
                    invitee(&format!("i{i}"), busy, person.hours(), person.required)
                })
                .collect();
            let search = find_slots(&q, &invitees).unwrap();

            let working: Vec<Vec<usize>> = people.iter().map(|p| prefix(|t| p.works_at(t))).collect();
            let blocked: Vec<Vec<usize>> =
                people.iter().map(|p| prefix(|t| p.blocked_at(t, tentative_is_busy))).collect();
            let works = |i: usize, s: i64| count(&working[i], s, s + duration) == duration as usize;
            let free = |i: usize, s: i64| count(&blocked[i], s - buffer_before, s + duration + buffer_after) == 0;

            let mut expected: Vec<(DateTime<Utc>, Vec<String>, Vec<String>)> = Vec::new();
            let mut any_common = false;
            let mut blocking: Vec<String> = Vec::new();
            for day in -1..4i64 {
                let mut offset = 0;
                while offset < 1440 {
                    let s = day * 1440 + offset;
                    offset += granularity;
                    if s < from || s + duration > to {
                        continue;
                    }
                    let required: Vec<usize> = (0..people.len()).filter(|&i| people[i].required).collect();
                    if !required.iter().all(|&i| works(i, s)) {
                        continue;
                    }
                    any_common = true;
                    let blockers: Vec<usize> = required.iter().copied().filter(|&i| !free(i, s)).collect();
                    if !blockers.is_empty() {
                        blocking.extend(blockers.iter().map(|i| format!("i{i}")));
                        continue;
                    }
                    let (yes, no): (Vec<usize>, Vec<usize>) = (0..people.len())
                        .filter(|&i| !people[i].required)
                        .partition(|&i| works(i, s) && free(i, s));
                    let names = |ids: Vec<usize>| ids.into_iter().map(|i| format!("i{i}")).collect::<Vec<_>>();
                    expected.push((minute_of(s), names(yes), names(no)));
                }
            }
            expected.sort_by_key(|(_, yes, _)| std::cmp::Reverse(yes.len()));

            let actual: Vec<(DateTime<Utc>, Vec<String>, Vec<String>)> = search
                .slots
                .iter()
                .map(|slot| (slot.start, slot.optional_free.clone(), slot.optional_busy.clone()))
                .collect();
            prop_assert_eq!(&actual, &expected);
            for slot in &search.slots {
                prop_assert_eq!(slot.end, slot.start + minutes(duration));
            }
            if expected.is_empty() {
                prop_assert_eq!(search.no_common_hours, !any_common);
                let named: Vec<String> = search.conflicts.iter().map(|c| c.invitee.clone()).collect();
                let mut blockers = blocking.clone();
                blockers.sort_unstable_by_key(|id| id[1..].parse::<usize>().unwrap());
                blockers.dedup();
                prop_assert_eq!(&named, &blockers);
                for conflict in &search.conflicts {
                    prop_assert!(!conflict.intervals.is_empty());
                    for pair in conflict.intervals.windows(2) {
                        prop_assert!(pair[0].end <= pair[1].start);
                    }
                }
            } else {
                prop_assert!(search.conflicts.is_empty());
                prop_assert!(!search.no_common_hours);
            }
        }
    }
}
