//! Half-open time ranges of UTC instants.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::DomainError;

/// A half-open range `[start, end)` of UTC instants; `end` is after `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimeRange {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl TimeRange {
    /// A range from `start` (inclusive) to `end` (exclusive).
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Self, DomainError> {
        if end <= start {
            return Err(DomainError::EmptyRange);
        }
        Ok(Self { start, end })
    }

    /// The first instant in the range.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// The first instant after the range.
    pub fn end(&self) -> DateTime<Utc> {
        self.end
    }

    /// Whether `[start, end)` shares at least one instant with this range.
    pub fn overlaps(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        start < self.end && end > self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, h, 0, 0).unwrap()
    }

    #[test]
    fn empty_and_inverted_ranges_are_rejected() {
        assert_eq!(TimeRange::new(at(9), at(9)), Err(DomainError::EmptyRange));
        assert_eq!(TimeRange::new(at(10), at(9)), Err(DomainError::EmptyRange));
    }

    #[test]
    fn overlap_is_half_open() {
        let r = TimeRange::new(at(9), at(10)).unwrap();
        assert!(r.overlaps(at(8), at(10)));
        assert!(!r.overlaps(at(10), at(11)), "an event starting at the end is outside");
        assert!(!r.overlaps(at(8), at(9)), "an event ending at the start is outside");
    }
}
