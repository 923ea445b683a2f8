//! Working hours: local times per weekday in an IANA zone, turned into UTC
//! intervals day by day (DST-correct).

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::localtime::{earliest_instant, local_date};

/// One working period of a weekday, in local time: `start` before `end`, or
/// `end` = 00:00 meaning the midnight that ends the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkingPeriod {
    /// The weekday.
    pub day: Weekday,
    /// Local start time.
    pub start: NaiveTime,
    /// Local end time; `00:00` means the end of the day (midnight after it).
    pub end: NaiveTime,
}

/// A person's working week in their zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingHours {
    /// Their IANA zone.
    pub zone: Tz,
    /// Their working periods (any order; periods of one day do not overlap).
    pub periods: Vec<WorkingPeriod>,
}

impl WorkingHours {
    /// Monday to Friday, 09:00 to 17:00, in `zone`.
    pub fn office(zone: Tz) -> Self {
        let periods = [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri]
            .into_iter()
            .map(|day| WorkingPeriod {
                day,
                start: NINE,
                end: FIVE_PM,
            })
            .collect();
        Self { zone, periods }
    }

    /// Around the clock, every day (no working-hours limit).
    pub fn always(zone: Tz) -> Self {
        let periods = WEEK
            .into_iter()
            .map(|day| WorkingPeriod {
                day,
                start: NaiveTime::MIN,
                end: NaiveTime::MIN,
            })
            .collect();
        Self { zone, periods }
    }

    /// The working time within `[from, to)` as sorted disjoint UTC intervals,
    /// clipped to the range. Local times that do not exist (a DST gap) move to
    /// the first instant after the gap; repeated local times (a DST overlap)
    /// take their first occurrence.
    pub fn intervals(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        if from >= to || self.periods.is_empty() {
            return Vec::new();
        }
        // A DST shift around midnight can move a neighbouring local date's
        // period into the range: a day of margin each side covers it.
        let (Some(first), Some(last)) = (local_date(self.zone, from), local_date(self.zone, to)) else {
            return Vec::new();
        };
        let first = first.pred_opt().unwrap_or(first);
        let last = last.succ_opt().unwrap_or(last);

        let mut pieces = Vec::new();
        for date in first.iter_days().take_while(|date| *date <= last) {
            for period in self.periods.iter().filter(|period| period.day == date.weekday()) {
                let Some((start, end)) = period.instants(self.zone, date) else {
                    continue;
                };
                let (start, end) = (start.max(from), end.min(to));
                if start < end {
                    pieces.push((start, end));
                }
            }
        }
        pieces.sort_unstable();

        let mut intervals: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::with_capacity(pieces.len());
        for (start, end) in pieces {
            match intervals.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => intervals.push((start, end)),
            }
        }
        intervals
    }
}

impl WorkingPeriod {
    /// The instants this period covers on `date` (a date of its weekday) in
    /// `zone`; `None` when it is empty (inverted times, or a span the DST rule
    /// squeezes to nothing).
    fn instants(&self, zone: Tz, date: NaiveDate) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let start = date.and_time(self.start);
        let end = if self.end == NaiveTime::MIN {
            date.succ_opt()?.and_time(NaiveTime::MIN)
        } else {
            date.and_time(self.end)
        };
        if start >= end {
            return None;
        }
        let (start, end) = (earliest_instant(zone, start)?, earliest_instant(zone, end)?);
        (start < end).then_some((start, end))
    }
}

/// Every weekday, Monday first.
const WEEK: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

/// Office hours' bounds; evaluated at compile time, so a bad literal fails the build.
const NINE: NaiveTime = match NaiveTime::from_hms_opt(9, 0, 0) {
    Some(time) => time,
    None => panic!("09:00 is a time"),
};
const FIVE_PM: NaiveTime = match NaiveTime::from_hms_opt(17, 0, 0) {
    Some(time) => time,
    None => panic!("17:00 is a time"),
};

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use chrono_tz::{America, Australia, Europe, UTC};

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).single().unwrap()
    }

    fn time(h: u32, mi: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, mi, 0).unwrap()
    }

    fn hours(zone: Tz, periods: &[(Weekday, NaiveTime, NaiveTime)]) -> WorkingHours {
        WorkingHours {
            zone,
            periods: periods
                .iter()
                .map(|&(day, start, end)| WorkingPeriod { day, start, end })
                .collect(),
        }
    }

    #[test]
    fn office_hours_are_nine_to_five_on_weekdays() {
        let office = WorkingHours::office(Europe::Berlin);
        assert_eq!(office.zone, Europe::Berlin);
        assert_eq!(office.periods.len(), 5);
        assert!(
            office
                .periods
                .iter()
                .all(|p| p.start == time(9, 0) && p.end == time(17, 0))
        );
        let days: Vec<Weekday> = office.periods.iter().map(|p| p.day).collect();
        assert_eq!(
            days,
            [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri]
        );
    }

    #[test]
    fn berlin_office_hours_move_an_hour_earlier_in_utc_after_spring_forward() {
        let office = WorkingHours::office(Europe::Berlin);
        // Friday 2026-03-27 (CET, +01) to Tuesday 2026-03-31 (CEST, +02).
        assert_eq!(
            office.intervals(at(2026, 3, 27, 0, 0), at(2026, 3, 31, 0, 0)),
            vec![
                (at(2026, 3, 27, 8, 0), at(2026, 3, 27, 16, 0)),
                (at(2026, 3, 30, 7, 0), at(2026, 3, 30, 15, 0)),
            ]
        );
    }

    #[test]
    fn always_covers_the_whole_range_across_dst() {
        let from = at(2026, 3, 27, 5, 17);
        let to = at(2026, 4, 2, 13, 1);
        for zone in [Europe::Berlin, America::New_York, Australia::Lord_Howe, UTC] {
            assert_eq!(
                WorkingHours::always(zone).intervals(from, to),
                vec![(from, to)],
                "{zone}"
            );
        }
    }

    #[test]
    fn new_york_period_through_the_spring_gap_is_an_hour_shorter() {
        // 2026-03-08 02:00 EST becomes 03:00 EDT.
        let night = hours(America::New_York, &[(Weekday::Sun, time(1, 0), time(4, 0))]);
        let intervals = night.intervals(at(2026, 3, 7, 0, 0), at(2026, 3, 9, 0, 0));
        assert_eq!(intervals, vec![(at(2026, 3, 8, 6, 0), at(2026, 3, 8, 8, 0))]);
        assert_eq!(intervals[0].1 - intervals[0].0, Duration::hours(2));
    }

    #[test]
    fn period_starting_in_a_gap_starts_when_the_gap_ends() {
        let night = hours(America::New_York, &[(Weekday::Sun, time(2, 30), time(5, 0))]);
        assert_eq!(
            night.intervals(at(2026, 3, 7, 0, 0), at(2026, 3, 9, 0, 0)),
            vec![(at(2026, 3, 8, 7, 0), at(2026, 3, 8, 9, 0))]
        );
    }

    #[test]
    fn period_inside_a_gap_is_empty() {
        let lost = hours(America::New_York, &[(Weekday::Sun, time(2, 10), time(2, 50))]);
        assert_eq!(lost.intervals(at(2026, 3, 7, 0, 0), at(2026, 3, 9, 0, 0)), Vec::new());
    }

    #[test]
    fn new_york_period_through_the_autumn_overlap_starts_at_the_first_occurrence() {
        // 2026-11-01 02:00 EDT becomes 01:00 EST: 01:00–02:00 happens twice.
        let night = hours(America::New_York, &[(Weekday::Sun, time(1, 30), time(3, 0))]);
        assert_eq!(
            night.intervals(at(2026, 10, 31, 0, 0), at(2026, 11, 2, 0, 0)),
            vec![(at(2026, 11, 1, 5, 30), at(2026, 11, 1, 8, 0))]
        );
    }

    #[test]
    fn lord_howe_half_hour_gap_and_overlap_shift_periods_by_thirty_minutes() {
        // 2026-10-04 02:00 +10:30 becomes 02:30 +11.
        let spring = hours(Australia::Lord_Howe, &[(Weekday::Sun, time(1, 0), time(4, 0))]);
        assert_eq!(
            spring.intervals(at(2026, 10, 2, 0, 0), at(2026, 10, 5, 0, 0)),
            vec![(at(2026, 10, 3, 14, 30), at(2026, 10, 3, 17, 0))]
        );
        let in_gap = hours(Australia::Lord_Howe, &[(Weekday::Sun, time(2, 15), time(4, 0))]);
        assert_eq!(
            in_gap.intervals(at(2026, 10, 2, 0, 0), at(2026, 10, 5, 0, 0)),
            vec![(at(2026, 10, 3, 15, 30), at(2026, 10, 3, 17, 0))]
        );
        // 2026-04-05 02:00 +11 becomes 01:30 +10:30: 01:30–02:00 happens twice.
        let autumn = hours(Australia::Lord_Howe, &[(Weekday::Sun, time(1, 0), time(3, 0))]);
        assert_eq!(
            autumn.intervals(at(2026, 4, 3, 0, 0), at(2026, 4, 6, 0, 0)),
            vec![(at(2026, 4, 4, 14, 0), at(2026, 4, 4, 16, 30))]
        );
        let in_overlap = hours(Australia::Lord_Howe, &[(Weekday::Sun, time(1, 45), time(3, 0))]);
        assert_eq!(
            in_overlap.intervals(at(2026, 4, 3, 0, 0), at(2026, 4, 6, 0, 0)),
            vec![(at(2026, 4, 4, 14, 45), at(2026, 4, 4, 16, 30))]
        );
    }

    #[test]
    fn periods_meeting_at_midnight_join_into_one_interval() {
        let night_shift = hours(
            UTC,
            &[
                (Weekday::Mon, time(18, 0), NaiveTime::MIN),
                (Weekday::Tue, NaiveTime::MIN, time(6, 0)),
            ],
        );
        assert_eq!(
            night_shift.intervals(at(2026, 5, 4, 0, 0), at(2026, 5, 6, 0, 0)),
            vec![(at(2026, 5, 4, 18, 0), at(2026, 5, 5, 6, 0))]
        );
    }

    #[test]
    fn intervals_are_clipped_to_the_range() {
        let office = WorkingHours::office(UTC);
        assert_eq!(
            office.intervals(at(2026, 5, 4, 10, 0), at(2026, 5, 5, 12, 0)),
            vec![
                (at(2026, 5, 4, 10, 0), at(2026, 5, 4, 17, 0)),
                (at(2026, 5, 5, 9, 0), at(2026, 5, 5, 12, 0))
            ]
        );
    }

    #[test]
    fn periods_of_a_local_day_before_the_range_reach_into_it() {
        // Monday 20:00–23:00 in Honolulu (-10) is Tuesday 06:00–09:00 UTC.
        let evening = hours(
            chrono_tz::Pacific::Honolulu,
            &[(Weekday::Mon, time(20, 0), time(23, 0))],
        );
        assert_eq!(
            evening.intervals(at(2026, 5, 5, 7, 0), at(2026, 5, 5, 12, 0)),
            vec![(at(2026, 5, 5, 7, 0), at(2026, 5, 5, 9, 0))]
        );
    }

    #[test]
    fn empty_range_and_inverted_periods_give_nothing() {
        let office = WorkingHours::office(UTC);
        assert_eq!(
            office.intervals(at(2026, 5, 4, 12, 0), at(2026, 5, 4, 12, 0)),
            Vec::new()
        );
        assert_eq!(
            office.intervals(at(2026, 5, 5, 12, 0), at(2026, 5, 4, 12, 0)),
            Vec::new()
        );
        let inverted = hours(UTC, &[(Weekday::Mon, time(17, 0), time(9, 0))]);
        assert_eq!(
            inverted.intervals(at(2026, 5, 4, 0, 0), at(2026, 5, 5, 0, 0)),
            Vec::new()
        );
    }

    proptest::proptest! {
        #[test]
        fn intervals_are_sorted_disjoint_apart_and_inside_the_range_in_any_zone(
            zone in proptest::sample::select(vec![
                Europe::Berlin,
                America::New_York,
                America::Sao_Paulo,
                Australia::Lord_Howe,
                chrono_tz::Asia::Beirut,
                chrono_tz::Asia::Kathmandu,
                chrono_tz::Pacific::Apia,
                chrono_tz::Pacific::Chatham,
            ]),
            periods in proptest::collection::vec((0usize..7, 0u32..1440, 1u32..=1440), 0..8),
            start_day in 0i64..8000,
            start_minute in 0i64..1440,
            length_minutes in 0i64..(20 * 1440),
        ) {
            let week = [
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
                Weekday::Sat,
                Weekday::Sun,
            ];
            let from = at(2008, 1, 1, 0, 0) + Duration::days(start_day) + Duration::minutes(start_minute);
            let to = from + Duration::minutes(length_minutes);
            let minute = |m: u32| time(m / 60 % 24, m % 60);
            let hours = WorkingHours {
                zone,
                periods: periods
                    .iter()
                    .map(|&(day, start, length)| WorkingPeriod {
                        day: week[day],
                        start: minute(start),
                        end: minute((start + length).min(1440)),
                    })
                    .collect(),
            };
            let intervals = hours.intervals(from, to);
            for &(start, end) in &intervals {
                proptest::prop_assert!(from <= start && start < end && end <= to, "{start} {end}");
            }
            for pair in intervals.windows(2) {
                proptest::prop_assert!(pair[0].1 < pair[1].0, "{pair:?}");
            }
            let always = WorkingHours::always(zone).intervals(from, to);
            let expected = if from < to { vec![(from, to)] } else { Vec::new() };
            proptest::prop_assert_eq!(always, expected);
        }
    }
}
