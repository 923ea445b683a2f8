//! Busy blocks: a user's busy time merged ahead of reading, so that a
//! free/busy answer reads a few hundred blocks instead of every event.
//!
//! [`build_blocks`] merges a user's busy spans (every event of theirs under
//! the busy policy, all-day ones already placed in their zone) exactly as
//! [`merge`](crate::merge) does, and cuts the intervals at UTC midnights, so
//! no block is longer than a day and "the blocks overlapping a range" is a
//! bounded index scan (from the range's first UTC midnight, [`day_start`]).
//! Blocks keep members: each span, with its own times and kind, in the first
//! block of each UTC day it overlaps, so that the owner's answer, which names
//! the events behind each interval, can be merged again from exactly the
//! spans that matter: the members of the blocks from the range's first
//! midnight to its end ([`members_overlapping`]).
//!
//! Merging blocks again gives what merging their spans gives: merge's output
//! depends only on the greatest kind covering each instant, which blocks keep.
//! The property tests below check it against a direct merge.

use chrono::{DateTime, Duration, NaiveTime, Utc};
use juy_domain::EventId;
use serde::{Deserialize, Serialize};

use crate::freebusy::{BusySpan, merge};
use crate::policy::BusyKind;

/// One event's busy span, as a block keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMember {
    /// The event.
    pub event: EventId,
    /// Its busy start (all-day events: local midnight in the owner's zone).
    pub start: DateTime<Utc>,
    /// Its busy end.
    pub end: DateTime<Utc>,
    /// How busy it makes the owner.
    pub kind: BusyKind,
}

/// A piece of merged busy time within one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// First instant.
    pub start: DateTime<Utc>,
    /// First instant after it; at most the next UTC midnight.
    pub end: DateTime<Utc>,
    /// The greatest kind covering it.
    pub kind: BusyKind,
    /// The spans overlapping it.
    pub members: Vec<BlockMember>,
}

/// The next UTC midnight strictly after `at`.
fn next_midnight(at: DateTime<Utc>) -> DateTime<Utc> {
    (at.date_naive() + Duration::days(1)).and_time(NaiveTime::MIN).and_utc()
}

/// The UTC midnight starting `at`'s day: no block overlapping a range
/// starting at `at` begins before it.
pub fn day_start(at: DateTime<Utc>) -> DateTime<Utc> {
    at.date_naive().and_time(NaiveTime::MIN).and_utc()
}

/// Merges `spans` into blocks: sorted, disjoint, each within one UTC day,
/// each span a member of the first block of each UTC day it overlaps.
/// Empty and inverted spans are ignored, as by `merge`.
pub fn build_blocks(spans: &[BlockMember]) -> Vec<Block> {
    let kept: Vec<&BlockMember> = spans.iter().filter(|s| s.start < s.end).collect();
    let (Some(from), Some(to)) = (kept.iter().map(|s| s.start).min(), kept.iter().map(|s| s.end).max()) else {
        return Vec::new();
    };
    let busy = spans_of(kept.iter().copied());
    // The UTC day each span was last made a member in (blocks come in time order).
    let mut placed: Vec<Option<DateTime<Utc>>> = vec![None; kept.len()];
    let mut blocks = Vec::new();
    for interval in merge(&busy, from, to) {
        let mut start = interval.start;
        while start < interval.end {
            let end = next_midnight(start).min(interval.end);
            let day = day_start(start);
            let mut members = Vec::new();
            for &i in &interval.sources {
                let m = kept[i];
                if m.start < end && m.end > start && placed[i] != Some(day) {
                    placed[i] = Some(day);
                    members.push(*m);
                }
            }
            blocks.push(Block {
                start,
                end,
                kind: interval.kind,
                members,
            });
            start = end;
        }
    }
    blocks
}

/// The members as spans to merge, each `source` its position.
pub fn spans_of<'a>(members: impl IntoIterator<Item = &'a BlockMember>) -> Vec<BusySpan> {
    members
        .into_iter()
        .enumerate()
        .map(|(source, m)| BusySpan {
            start: m.start,
            end: m.end,
            kind: m.kind,
            source,
        })
        .collect()
}

/// The spans that can matter to `[from, to)`, each once, from `blocks`,
/// which must hold every block starting in `[day_start(from), to)`: merging
/// them gives what merging every span gives there. (A span overlapping the
/// range overlaps the UTC day of its first instant in it, and is a member of
/// that day's first block it overlaps, which starts before that instant.)
pub fn members_overlapping<'a>(
    blocks: impl IntoIterator<Item = &'a Block>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<BlockMember> {
    let mut members: Vec<BlockMember> = blocks
        .into_iter()
        .flat_map(|b| b.members.iter().copied())
        .filter(|m| m.start < to && m.end > from)
        .collect();
    members.sort_unstable_by_key(|m| (m.event, m.start));
    members.dedup();
    members
}

/// Packs members as stored: per member, the event id (16 bytes), start and
/// end as microseconds since the epoch (8 bytes each, big-endian) and the
/// kind (1 byte).
pub fn pack_members(members: &[BlockMember]) -> Vec<u8> {
    let mut out = Vec::with_capacity(members.len() * MEMBER_BYTES);
    for m in members {
        out.extend_from_slice(m.event.0.as_bytes());
        out.extend_from_slice(&m.start.timestamp_micros().to_be_bytes());
        out.extend_from_slice(&m.end.timestamp_micros().to_be_bytes());
        out.push(kind_code(m.kind));
    }
    out
}

/// Bytes of one packed member.
const MEMBER_BYTES: usize = 16 + 8 + 8 + 1;

/// Reads what [`pack_members`] wrote; `None` when the bytes are not such a list.
pub fn unpack_members(bytes: &[u8]) -> Option<Vec<BlockMember>> {
    if !bytes.len().is_multiple_of(MEMBER_BYTES) {
        return None;
    }
    bytes
        .chunks_exact(MEMBER_BYTES)
        .map(|chunk| {
            let (id, rest) = chunk.split_at(16);
            let (start, rest) = rest.split_at(8);
            let (end, kind) = rest.split_at(8);
            let micros = |b: &[u8]| DateTime::from_timestamp_micros(i64::from_be_bytes(b.try_into().ok()?));
            Some(BlockMember {
                event: EventId(uuid::Uuid::from_bytes(id.try_into().ok()?)),
                start: micros(start)?,
                end: micros(end)?,
                kind: kind_from_code(*kind.first()?)?,
            })
        })
        .collect()
}

/// The stored code of a kind: its rank, least busy first.
pub fn kind_code(kind: BusyKind) -> u8 {
    match kind {
        BusyKind::Tentative => 0,
        BusyKind::Busy => 1,
        BusyKind::OutOfOffice => 2,
    }
}

/// The kind of a stored code.
pub fn kind_from_code(code: u8) -> Option<BusyKind> {
    match code {
        0 => Some(BusyKind::Tentative),
        1 => Some(BusyKind::Busy),
        2 => Some(BusyKind::OutOfOffice),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::freebusy::BusyInterval;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use uuid::Uuid;

    fn base() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 28, 0, 0, 0).single().unwrap()
    }

    fn member(n: u128, start: i64, end: i64, kind: u8) -> BlockMember {
        BlockMember {
            event: EventId(Uuid::from_u128(n)),
            start: base() + Duration::minutes(start),
            end: base() + Duration::minutes(end),
            kind: kind_from_code(kind % 3).unwrap(),
        }
    }

    /// What the service answers from events: merge every span, name sources by event.
    fn direct(spans: &[BlockMember], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(BusyInterval, Vec<EventId>)> {
        named(merge(&spans_of(spans), from, to), spans)
    }

    fn named(intervals: Vec<BusyInterval>, spans: &[BlockMember]) -> Vec<(BusyInterval, Vec<EventId>)> {
        intervals
            .into_iter()
            .map(|i| {
                let mut events: Vec<EventId> = i.sources.iter().map(|&s| spans[s].event).collect();
                events.sort_unstable();
                events.dedup();
                (
                    BusyInterval {
                        sources: Vec::new(),
                        ..i
                    },
                    events,
                )
            })
            .collect()
    }

    /// What the service answers from blocks: the owner's from the members, another user's from the blocks.
    fn from_blocks(
        blocks: &[Block],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> (Vec<(BusyInterval, Vec<EventId>)>, Vec<BusyInterval>) {
        let first = day_start(from);
        let members = members_overlapping(blocks.iter().filter(|b| b.start >= first && b.start < to), from, to);
        let explained = direct(&members, from, to);
        let pieces: Vec<BusySpan> = blocks
            .iter()
            .filter(|b| b.start < to && b.end > from)
            .map(|b| BusySpan {
                start: b.start,
                end: b.end,
                kind: b.kind,
                source: 0,
            })
            .collect();
        let plain = merge(&pieces, from, to)
            .into_iter()
            .map(|i| BusyInterval {
                sources: Vec::new(),
                ..i
            })
            .collect();
        (explained, plain)
    }

    #[test]
    fn blocks_are_cut_at_utc_midnights_and_a_span_is_kept_in_its_first_block_of_each_day() {
        // 22:00 to 02:00 busy, 23:00 to 23:30 out of office.
        let spans = [member(1, 22 * 60, 26 * 60, 1), member(2, 23 * 60, 23 * 60 + 30, 2)];
        let blocks = build_blocks(&spans);
        let shape: Vec<(i64, i64, BusyKind, Vec<u128>)> = blocks
            .iter()
            .map(|b| {
                (
                    (b.start - base()).num_minutes(),
                    (b.end - base()).num_minutes(),
                    b.kind,
                    b.members.iter().map(|m| m.event.0.as_u128()).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (22 * 60, 23 * 60, BusyKind::Busy, vec![1]),
                (23 * 60, 23 * 60 + 30, BusyKind::OutOfOffice, vec![2]),
                (23 * 60 + 30, 24 * 60, BusyKind::Busy, vec![]),
                (24 * 60, 26 * 60, BusyKind::Busy, vec![1]),
            ]
        );
    }

    #[test]
    fn a_week_long_span_gives_one_block_a_day() {
        let blocks = build_blocks(&[member(7, 12 * 60, 7 * 24 * 60 + 12 * 60, 2)]);
        assert_eq!(blocks.len(), 8);
        assert!(blocks.iter().all(|b| b.end - b.start <= Duration::days(1)));
        assert!(blocks.iter().all(|b| b.members.len() == 1), "one member a day");
        assert!(blocks.windows(2).all(|w| w[0].end == w[1].start));
    }

    #[test]
    fn members_round_trip_through_their_packing() {
        let members = vec![member(1, -600, 30, 0), member(u128::MAX, 5, 6, 2)];
        assert_eq!(unpack_members(&pack_members(&members)), Some(members));
        assert_eq!(unpack_members(&[1, 2, 3]), None);
        let mut bad_kind = pack_members(&[member(3, 0, 1, 1)]);
        *bad_kind.last_mut().unwrap() = 9;
        assert_eq!(unpack_members(&bad_kind), None);
    }

    fn spans_strategy() -> impl Strategy<Value = Vec<(u128, i64, i64, u8)>> {
        // Up to three days of minutes, spans up to 30 hours, ids repeating
        // (one event may be two spans only if the service made it so; a
        // repeated id here tests that de-duplication keeps both).
        proptest::collection::vec((0u128..40, 0i64..4320, 1i64..1800, 0u8..3), 0..60)
            .prop_map(|v| v.into_iter().map(|(id, s, len, k)| (id, s, s + len, k)).collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn answers_from_blocks_equal_answers_from_spans(
            raw in spans_strategy(),
            from in -120i64..4500,
            len in 1i64..3000,
        ) {
            // One span per event id: an event has one busy span.
            let mut seen = std::collections::HashSet::new();
            let spans: Vec<BlockMember> = raw
                .into_iter()
                .filter(|(id, ..)| seen.insert(*id))
                .map(|(id, s, e, k)| member(id, s, e, k))
                .collect();
            let blocks = build_blocks(&spans);
            for w in blocks.windows(2) {
                prop_assert!(w[0].end <= w[1].start);
            }
            for b in &blocks {
                prop_assert!(b.start < b.end && b.end - b.start <= Duration::days(1));
                prop_assert!(b.start >= day_start(b.start));
                prop_assert!(b.end <= next_midnight(b.start));
            }
            let (from, to) = (base() + Duration::minutes(from), base() + Duration::minutes(from + len));
            let expected = direct(&spans, from, to);
            let (explained, plain) = from_blocks(&blocks, from, to);
            prop_assert_eq!(&explained, &expected);
            let expected_plain: Vec<BusyInterval> = expected.into_iter().map(|(i, _)| i).collect();
            prop_assert_eq!(plain, expected_plain);
        }
    }
}
