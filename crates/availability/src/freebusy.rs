//! Merging busy spans into disjoint, sorted intervals.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::policy::BusyKind;

/// One busy span before merging: an event's time and kind, and an index the
/// caller uses to name the event (e.g. its position in the caller's list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusySpan {
    /// First instant.
    pub start: DateTime<Utc>,
    /// First instant after it.
    pub end: DateTime<Utc>,
    /// How busy.
    pub kind: BusyKind,
    /// The caller's index of the event that caused it.
    pub source: usize,
}

/// A merged busy interval: half-open, non-empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusyInterval {
    /// First instant.
    pub start: DateTime<Utc>,
    /// First instant after it.
    pub end: DateTime<Utc>,
    /// The greatest kind of the spans covering it.
    pub kind: BusyKind,
    /// The `source`s of every span that overlaps it, ascending, without repeats.
    pub sources: Vec<usize>,
}

/// Merges spans (any order, overlapping or not; empty ones ignored) into
/// sorted disjoint intervals clipped to `[from, to)`. Every instant covered
/// by some span lies in exactly one interval whose kind is the greatest kind
/// covering that instant; no instant outside every span is covered. Adjacent
/// or overlapping pieces of the same kind are one interval; where the kind
/// changes, one interval ends and the next begins at the same instant.
pub fn merge(spans: &[BusySpan], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<BusyInterval> {
    let pieces: Vec<Piece<'_>> = spans
        .iter()
        .map(|span| Piece {
            start: span.start,
            end: span.end,
            kind: span.kind,
            sources: std::slice::from_ref(&span.source),
        })
        .collect();
    merge_pieces(&pieces, from, to)
}

/// A span naming any number of sources: a [`BusySpan`], or an already merged
/// [`BusyInterval`] being merged again (slot conflicts).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Piece<'a> {
    pub(crate) start: DateTime<Utc>,
    pub(crate) end: DateTime<Utc>,
    pub(crate) kind: BusyKind,
    pub(crate) sources: &'a [usize],
}

/// Every kind, least first; a kind's position is its counter in the sweep.
const KINDS: [BusyKind; 3] = [BusyKind::Tentative, BusyKind::Busy, BusyKind::OutOfOffice];

fn rank(kind: BusyKind) -> usize {
    match kind {
        BusyKind::Tentative => 0,
        BusyKind::Busy => 1,
        BusyKind::OutOfOffice => 2,
    }
}

/// [`merge`] over pieces with any number of sources each.
pub(crate) fn merge_pieces(pieces: &[Piece<'_>], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<BusyInterval> {
    let clipped: Vec<Piece<'_>> = pieces
        .iter()
        .map(|piece| Piece {
            start: piece.start.max(from),
            end: piece.end.min(to),
            ..*piece
        })
        .filter(|piece| piece.start < piece.end)
        .collect();

    // Each piece opens its kind at its start and closes it at its end; between
    // two consecutive boundaries the greatest kind still open covers the time.
    // Starts and ends are sorted apart, as small records: callers' spans
    // mostly come in start order, which the sort then finds already done.
    let edges = |at: fn(&Piece<'_>) -> DateTime<Utc>| -> Vec<Edge> {
        let mut edges: Vec<Edge> = clipped
            .iter()
            .enumerate()
            .map(|(piece, clipped)| Edge { at: at(clipped), piece })
            .collect();
        edges.sort_unstable_by_key(|edge| edge.at);
        edges
    };
    let (starts, ends) = (edges(|piece| piece.start), edges(|piece| piece.end));

    // Disjoint pieces give one interval each, the common case.
    let mut intervals: Vec<BusyInterval> = Vec::with_capacity(clipped.len());
    let mut open_kinds = [0usize; KINDS.len()];
    // The pieces open now, and each one's place in that list (for O(1) removal).
    let mut open_pieces: Vec<usize> = Vec::new();
    let mut place = vec![0usize; clipped.len()];
    let mut current: Option<BusyInterval> = None;
    let (mut next_start, mut next_end) = (0, 0);
    while let Some(at) = [starts.get(next_start), ends.get(next_end)]
        .into_iter()
        .flatten()
        .map(|edge| edge.at)
        .min()
    {
        while let Some(edge) = ends.get(next_end)
            && edge.at == at
        {
            open_kinds[rank(clipped[edge.piece].kind)] -= 1;
            let at_place = place[edge.piece];
            open_pieces.swap_remove(at_place);
            if let Some(&moved) = open_pieces.get(at_place) {
                place[moved] = at_place;
            }
            next_end += 1;
        }
        let opened_from = next_start;
        while let Some(edge) = starts.get(next_start)
            && edge.at == at
        {
            open_kinds[rank(clipped[edge.piece].kind)] += 1;
            place[edge.piece] = open_pieces.len();
            open_pieces.push(edge.piece);
            next_start += 1;
        }
        let now = (0..KINDS.len()).rev().find(|&k| open_kinds[k] > 0).map(|k| KINDS[k]);
        match &mut current {
            // Same kind goes on: the pieces starting here overlap it too.
            Some(interval) if Some(interval.kind) == now => {
                for edge in &starts[opened_from..next_start] {
                    interval.sources.extend_from_slice(clipped[edge.piece].sources);
                }
            }
            _ => {
                if let Some(mut done) = current.take() {
                    done.end = at;
                    intervals.push(done);
                }
                current = now.map(|kind| BusyInterval {
                    start: at,
                    end: at,
                    kind,
                    // Every piece open now overlaps the interval starting here.
                    sources: open_pieces.iter().flat_map(|&p| clipped[p].sources).copied().collect(),
                });
            }
        }
    }
    for interval in &mut intervals {
        interval.sources.sort_unstable();
        interval.sources.dedup();
    }
    intervals
}

/// Where a piece starts or ends.
#[derive(Debug, Clone, Copy)]
struct Edge {
    at: DateTime<Utc>,
    /// Its position among the clipped pieces.
    piece: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    fn base() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 4, 0, 0, 0).single().unwrap()
    }

    /// `base` plus some minutes.
    fn m(minutes: i64) -> DateTime<Utc> {
        base() + Duration::minutes(minutes)
    }

    fn h(hours: i64) -> DateTime<Utc> {
        m(hours * 60)
    }

    fn span(start: DateTime<Utc>, end: DateTime<Utc>, kind: BusyKind, source: usize) -> BusySpan {
        BusySpan {
            start,
            end,
            kind,
            source,
        }
    }

    fn interval(start: DateTime<Utc>, end: DateTime<Utc>, kind: BusyKind, sources: &[usize]) -> BusyInterval {
        BusyInterval {
            start,
            end,
            kind,
            sources: sources.to_vec(),
        }
    }

    #[test]
    fn busy_overlapping_tentative_takes_over_where_they_overlap() {
        let spans = [
            span(h(9), h(11), BusyKind::Tentative, 0),
            span(h(10), h(12), BusyKind::Busy, 1),
        ];
        assert_eq!(
            merge(&spans, h(0), h(24)),
            vec![
                interval(h(9), h(10), BusyKind::Tentative, &[0]),
                interval(h(10), h(12), BusyKind::Busy, &[0, 1]),
            ]
        );
    }

    #[test]
    fn tentative_around_busy_resumes_after_it() {
        let spans = [
            span(h(9), h(13), BusyKind::Tentative, 0),
            span(h(10), h(11), BusyKind::OutOfOffice, 1),
        ];
        assert_eq!(
            merge(&spans, h(0), h(24)),
            vec![
                interval(h(9), h(10), BusyKind::Tentative, &[0]),
                interval(h(10), h(11), BusyKind::OutOfOffice, &[0, 1]),
                interval(h(11), h(13), BusyKind::Tentative, &[0]),
            ]
        );
    }

    #[test]
    fn adjacent_spans_of_one_kind_join_and_list_every_source() {
        let spans = [
            span(h(10), h(11), BusyKind::Busy, 7),
            span(h(9), h(10), BusyKind::Busy, 3),
            span(h(9), h(9) + Duration::minutes(30), BusyKind::Busy, 3),
        ];
        assert_eq!(
            merge(&spans, h(0), h(24)),
            vec![interval(h(9), h(11), BusyKind::Busy, &[3, 7])]
        );
    }

    #[test]
    fn adjacent_spans_of_different_kinds_stay_apart_and_touch() {
        let spans = [
            span(h(9), h(10), BusyKind::Busy, 0),
            span(h(10), h(11), BusyKind::Tentative, 1),
        ];
        assert_eq!(
            merge(&spans, h(0), h(24)),
            vec![
                interval(h(9), h(10), BusyKind::Busy, &[0]),
                interval(h(10), h(11), BusyKind::Tentative, &[1]),
            ]
        );
    }

    #[test]
    fn spans_apart_give_intervals_apart() {
        let spans = [
            span(h(14), h(15), BusyKind::Busy, 1),
            span(h(9), h(10), BusyKind::Busy, 0),
        ];
        assert_eq!(
            merge(&spans, h(0), h(24)),
            vec![
                interval(h(9), h(10), BusyKind::Busy, &[0]),
                interval(h(14), h(15), BusyKind::Busy, &[1]),
            ]
        );
    }

    #[test]
    fn spans_are_clipped_to_the_range_and_those_outside_vanish() {
        let spans = [
            span(h(7), h(9), BusyKind::Busy, 0),
            span(h(8), h(13), BusyKind::Tentative, 1),
            span(h(12), h(14), BusyKind::OutOfOffice, 2),
            span(h(20), h(21), BusyKind::Busy, 3),
        ];
        assert_eq!(
            merge(&spans, h(8), h(13)),
            vec![
                interval(h(8), h(9), BusyKind::Busy, &[0, 1]),
                interval(h(9), h(12), BusyKind::Tentative, &[1]),
                interval(h(12), h(13), BusyKind::OutOfOffice, &[1, 2]),
            ]
        );
    }

    #[test]
    fn empty_and_inverted_spans_are_ignored() {
        let spans = [
            span(h(9), h(9), BusyKind::Busy, 0),
            span(h(11), h(10), BusyKind::Busy, 1),
        ];
        assert_eq!(merge(&spans, h(0), h(24)), Vec::new());
        // A span only touching the range is empty once clipped.
        assert_eq!(merge(&[span(h(5), h(8), BusyKind::Busy, 2)], h(8), h(9)), Vec::new());
    }

    #[test]
    fn no_spans_give_no_intervals() {
        assert_eq!(merge(&[], h(0), h(24)), Vec::new());
    }

    /// Spans in minutes after `base`: start, length, kind (0..3), source.
    fn spans_strategy() -> impl Strategy<Value = Vec<(i64, i64, u8, usize)>> {
        prop::collection::vec((0i64..600, 0i64..180, 0u8..3, 0usize..8), 0..14)
    }

    proptest! {
        #[test]
        fn merge_agrees_with_a_minute_by_minute_reference(
            raw in spans_strategy(),
            from in -30i64..300,
            length in 0i64..700,
        ) {
            let spans: Vec<BusySpan> = raw
                .iter()
                .map(|&(start, length, kind, source)| span(m(start), m(start + length), KINDS[usize::from(kind)], source))
                .collect();
            let to = from + length;
            let merged = merge(&spans, m(from), m(to));

            for interval in &merged {
                prop_assert!(interval.start < interval.end, "empty interval {interval:?}");
                prop_assert!(m(from) <= interval.start && interval.end <= m(to), "outside the range {interval:?}");
                let mut expected: Vec<usize> = spans
                    .iter()
                    .filter(|span| span.start.max(interval.start) < span.end.min(interval.end))
                    .map(|span| span.source)
                    .collect();
                expected.sort_unstable();
                expected.dedup();
                prop_assert_eq!(&interval.sources, &expected);
            }
            for pair in merged.windows(2) {
                prop_assert!(pair[0].end <= pair[1].start, "unsorted or overlapping {pair:?}");
                prop_assert!(
                    pair[0].end < pair[1].start || pair[0].kind != pair[1].kind,
                    "touching intervals of one kind {pair:?}"
                );
            }
            for minute in -40i64..800 {
                let expected = if (from..to).contains(&minute) {
                    spans
                        .iter()
                        .filter(|span| span.start <= m(minute) && m(minute) < span.end)
                        .map(|span| span.kind)
                        .max()
                } else {
                    None
                };
                let covering: Vec<&BusyInterval> = merged
                    .iter()
                    .filter(|interval| interval.start <= m(minute) && m(minute) < interval.end)
                    .collect();
                prop_assert!(covering.len() <= 1, "minute {minute} in several intervals");
                prop_assert_eq!(covering.first().map(|interval| interval.kind), expected, "minute {}", minute);
            }
        }
    }
}
