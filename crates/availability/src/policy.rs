//! The busy policy: whether an event makes its owner busy, and as what.
//!
//! | event                                             | counts as      |
//! |---------------------------------------------------|----------------|
//! | cancelled                                         | free           |
//! | transparent / "show as free"                      | free           |
//! | declined by the owner                             | free           |
//! | working elsewhere (Google workingLocation, Graph) | free           |
//! | out of office                                     | out-of-office  |
//! | tentative, or the owner answered tentatively      | tentative      |
//! | invitation not yet answered                       | tentative      |
//! | anything else (focus time included)               | busy           |
//!
//! The rows are tried in order: the first that matches decides. All-day
//! events follow the same rows; their time is their dates in the owner's
//! zone ([`busy_span`]).

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use juy_domain::{AllDayDates, EventKind, EventStatus, ResponseStatus, Transparency};
use serde::{Deserialize, Serialize};

use crate::localtime::earliest_instant;

/// How busy a span of time is. Ordered: where spans of different kinds
/// overlap, the greater kind wins (`OutOfOffice` > `Busy` > `Tentative`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusyKind {
    /// Maybe busy: tentative, or an invitation not answered yet.
    Tentative,
    /// Busy.
    Busy,
    /// Out of office.
    OutOfOffice,
}

/// The facts of one stored event that free/busy looks at (never its text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusyFacts {
    /// Start instant as stored.
    pub start: DateTime<Utc>,
    /// End instant as stored.
    pub end: DateTime<Utc>,
    /// Set for all-day events: the dates, which are what counts for them.
    pub all_day: Option<AllDayDates>,
    /// Whether it takes place.
    pub status: EventStatus,
    /// Whether it blocks time.
    pub transparency: Transparency,
    /// The owner's answer.
    pub self_response: ResponseStatus,
    /// What kind of time it marks.
    pub kind: EventKind,
}

/// What the event makes its owner, following the table above; `None` is free.
pub fn busy_kind(facts: &BusyFacts) -> Option<BusyKind> {
    if facts.status == EventStatus::Cancelled
        || facts.transparency == Transparency::Transparent
        || facts.self_response == ResponseStatus::Declined
        || facts.kind == EventKind::WorkingElsewhere
    {
        return None;
    }
    if facts.kind == EventKind::OutOfOffice {
        return Some(BusyKind::OutOfOffice);
    }
    if facts.status == EventStatus::Tentative
        || matches!(
            facts.self_response,
            ResponseStatus::Tentative | ResponseStatus::NeedsAction
        )
    {
        return Some(BusyKind::Tentative);
    }
    Some(BusyKind::Busy)
}

/// The instants the event occupies for an owner living in `owner_zone`:
/// a timed event's own instants; an all-day event's dates from local
/// midnight to local midnight in `owner_zone` (DST-correct: a day may be
/// 23 or 25 hours, a gap at midnight starts the day at the first instant
/// after the gap).
pub fn busy_span(facts: &BusyFacts, owner_zone: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
    let Some(dates) = facts.all_day else {
        return (facts.start, facts.end);
    };
    let midnight = |date: NaiveDate| earliest_instant(owner_zone, date.and_time(NaiveTime::MIN));
    match (midnight(dates.start), midnight(dates.end)) {
        (Some(start), Some(end)) if start < end => (start, end),
        // Dates out of order (bad provider data) or beyond chrono's range:
        // the stored instants are the best remaining guess.
        _ => (facts.start, facts.end),
    }
}

/// The zone a user's all-day events and working hours are read in: their
/// own setting, else their primary calendar's zone, else any calendar's,
/// else UTC. `calendars`: each calendar's primary flag and zone. A name that
/// is not an IANA zone counts as unset.
pub fn owner_zone<'a>(setting: Option<&str>, calendars: impl IntoIterator<Item = (bool, Option<&'a str>)>) -> Tz {
    let calendars: Vec<(bool, Option<&str>)> = calendars.into_iter().collect();
    let from_calendars = calendars
        .iter()
        .filter(|(primary, _)| *primary)
        .chain(calendars.iter())
        .find_map(|(_, zone)| *zone);
    setting
        .or(from_calendars)
        .and_then(|name| name.parse::<Tz>().ok())
        .unwrap_or(Tz::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use chrono_tz::{America, Asia, Australia, Europe};

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).single().unwrap()
    }

    fn date(y: i32, mo: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, mo, d).unwrap()
    }

    fn timed() -> BusyFacts {
        BusyFacts {
            start: at(2026, 5, 4, 9, 0),
            end: at(2026, 5, 4, 10, 0),
            all_day: None,
            status: EventStatus::Confirmed,
            transparency: Transparency::Opaque,
            self_response: ResponseStatus::Accepted,
            kind: EventKind::Default,
        }
    }

    /// A one-day all-day event whose stored instants are UTC midnights, as a
    /// provider without a zone would store them.
    fn all_day_on(day: NaiveDate) -> BusyFacts {
        let next = day.succ_opt().unwrap();
        BusyFacts {
            start: day.and_time(NaiveTime::MIN).and_utc(),
            end: next.and_time(NaiveTime::MIN).and_utc(),
            all_day: Some(AllDayDates { start: day, end: next }),
            ..timed()
        }
    }

    fn span_length(facts: &BusyFacts, zone: Tz) -> Duration {
        let (start, end) = busy_span(facts, zone);
        end - start
    }

    #[test]
    fn cancelled_event_is_free_even_when_out_of_office() {
        let facts = BusyFacts {
            status: EventStatus::Cancelled,
            kind: EventKind::OutOfOffice,
            ..timed()
        };
        assert_eq!(busy_kind(&facts), None);
    }

    #[test]
    fn transparent_event_is_free() {
        let facts = BusyFacts {
            transparency: Transparency::Transparent,
            ..timed()
        };
        assert_eq!(busy_kind(&facts), None);
    }

    #[test]
    fn transparent_out_of_office_is_free_because_the_earlier_row_decides() {
        let facts = BusyFacts {
            transparency: Transparency::Transparent,
            kind: EventKind::OutOfOffice,
            ..timed()
        };
        assert_eq!(busy_kind(&facts), None);
    }

    #[test]
    fn declined_event_is_free_even_when_tentative() {
        let facts = BusyFacts {
            status: EventStatus::Tentative,
            self_response: ResponseStatus::Declined,
            ..timed()
        };
        assert_eq!(busy_kind(&facts), None);
    }

    #[test]
    fn working_elsewhere_is_free() {
        let facts = BusyFacts {
            kind: EventKind::WorkingElsewhere,
            ..timed()
        };
        assert_eq!(busy_kind(&facts), None);
    }

    #[test]
    fn out_of_office_wins_over_tentative_and_unanswered() {
        for self_response in [
            ResponseStatus::Accepted,
            ResponseStatus::Tentative,
            ResponseStatus::NeedsAction,
        ] {
            let facts = BusyFacts {
                status: EventStatus::Tentative,
                self_response,
                kind: EventKind::OutOfOffice,
                ..timed()
            };
            assert_eq!(busy_kind(&facts), Some(BusyKind::OutOfOffice), "{self_response:?}");
        }
    }

    #[test]
    fn tentative_status_is_tentative() {
        let facts = BusyFacts {
            status: EventStatus::Tentative,
            ..timed()
        };
        assert_eq!(busy_kind(&facts), Some(BusyKind::Tentative));
    }

    #[test]
    fn tentative_answer_is_tentative() {
        let facts = BusyFacts {
            self_response: ResponseStatus::Tentative,
            ..timed()
        };
        assert_eq!(busy_kind(&facts), Some(BusyKind::Tentative));
    }

    #[test]
    fn unanswered_invitation_is_tentative() {
        let facts = BusyFacts {
            self_response: ResponseStatus::NeedsAction,
            ..timed()
        };
        assert_eq!(busy_kind(&facts), Some(BusyKind::Tentative));
    }

    #[test]
    fn focus_time_and_ordinary_events_are_busy() {
        for kind in [EventKind::Default, EventKind::FocusTime] {
            for self_response in [
                ResponseStatus::None,
                ResponseStatus::Organizer,
                ResponseStatus::Accepted,
            ] {
                let facts = BusyFacts {
                    self_response,
                    kind,
                    ..timed()
                };
                assert_eq!(busy_kind(&facts), Some(BusyKind::Busy), "{kind:?} {self_response:?}");
            }
        }
    }

    #[test]
    fn all_day_events_follow_the_same_rows() {
        let day = all_day_on(date(2026, 5, 4));
        assert_eq!(busy_kind(&day), Some(BusyKind::Busy));
        let declined = BusyFacts {
            self_response: ResponseStatus::Declined,
            ..day
        };
        assert_eq!(busy_kind(&declined), None);
        let holiday = BusyFacts {
            kind: EventKind::OutOfOffice,
            ..day
        };
        assert_eq!(busy_kind(&holiday), Some(BusyKind::OutOfOffice));
        let transparent = BusyFacts {
            transparency: Transparency::Transparent,
            ..day
        };
        assert_eq!(busy_kind(&transparent), None);
    }

    #[test]
    fn kinds_are_ordered_tentative_busy_out_of_office() {
        assert!(BusyKind::Tentative < BusyKind::Busy);
        assert!(BusyKind::Busy < BusyKind::OutOfOffice);
    }

    #[test]
    fn timed_event_occupies_its_stored_instants_in_any_zone() {
        let facts = timed();
        assert_eq!(busy_span(&facts, Europe::Berlin), (facts.start, facts.end));
        assert_eq!(busy_span(&facts, Australia::Lord_Howe), (facts.start, facts.end));
    }

    #[test]
    fn all_day_event_runs_from_local_midnight_to_local_midnight_in_the_owner_zone() {
        let facts = all_day_on(date(2026, 5, 4));
        assert_eq!(
            busy_span(&facts, Europe::Berlin),
            (at(2026, 5, 3, 22, 0), at(2026, 5, 4, 22, 0))
        );
        assert_eq!(
            busy_span(&facts, America::New_York),
            (at(2026, 5, 4, 4, 0), at(2026, 5, 5, 4, 0))
        );
    }

    #[test]
    fn multi_day_all_day_event_covers_every_date() {
        let facts = BusyFacts {
            all_day: Some(AllDayDates {
                start: date(2026, 5, 4),
                end: date(2026, 5, 7),
            }),
            ..all_day_on(date(2026, 5, 4))
        };
        assert_eq!(
            busy_span(&facts, Asia::Tokyo),
            (at(2026, 5, 3, 15, 0), at(2026, 5, 6, 15, 0))
        );
    }

    #[test]
    fn all_day_event_on_berlin_spring_forward_day_lasts_23_hours() {
        let facts = all_day_on(date(2026, 3, 29));
        assert_eq!(
            busy_span(&facts, Europe::Berlin),
            (at(2026, 3, 28, 23, 0), at(2026, 3, 29, 22, 0))
        );
        assert_eq!(span_length(&facts, Europe::Berlin), Duration::hours(23));
    }

    #[test]
    fn all_day_event_on_new_york_fall_back_day_lasts_25_hours() {
        let facts = all_day_on(date(2026, 11, 1));
        assert_eq!(
            busy_span(&facts, America::New_York),
            (at(2026, 11, 1, 4, 0), at(2026, 11, 2, 5, 0))
        );
        assert_eq!(span_length(&facts, America::New_York), Duration::hours(25));
    }

    #[test]
    fn all_day_event_on_lord_howe_half_hour_dst_days_lasts_23_and_a_half_or_24_and_a_half_hours() {
        let spring = all_day_on(date(2026, 10, 4));
        assert_eq!(
            span_length(&spring, Australia::Lord_Howe),
            Duration::minutes(23 * 60 + 30)
        );
        let autumn = all_day_on(date(2026, 4, 5));
        assert_eq!(
            span_length(&autumn, Australia::Lord_Howe),
            Duration::minutes(24 * 60 + 30)
        );
    }

    #[test]
    fn all_day_event_whose_midnight_falls_in_a_gap_starts_when_the_gap_ends() {
        // Beirut springs forward at midnight: 2026-03-29 00:00 +02 becomes 01:00 +03.
        let facts = all_day_on(date(2026, 3, 29));
        assert_eq!(
            busy_span(&facts, Asia::Beirut),
            (at(2026, 3, 28, 22, 0), at(2026, 3, 29, 21, 0))
        );
        // São Paulo did the same on 2018-11-04 (00:00 -03 became 01:00 -02).
        let facts = all_day_on(date(2018, 11, 4));
        assert_eq!(
            busy_span(&facts, America::Sao_Paulo),
            (at(2018, 11, 4, 3, 0), at(2018, 11, 5, 2, 0))
        );
        assert_eq!(span_length(&facts, America::Sao_Paulo), Duration::hours(23));
    }

    #[test]
    fn samoa_skipped_day_is_found_across_its_whole_day_gap() {
        // Apia jumped from 2011-12-29 23:59:59 -10 to 2011-12-31 00:00 +14.
        let facts = BusyFacts {
            all_day: Some(AllDayDates {
                start: date(2011, 12, 29),
                end: date(2011, 12, 31),
            }),
            ..all_day_on(date(2011, 12, 29))
        };
        assert_eq!(
            busy_span(&facts, chrono_tz::Pacific::Apia),
            (at(2011, 12, 29, 10, 0), at(2011, 12, 30, 10, 0))
        );
        // The day that never was is empty there: the stored instants stand in.
        let skipped = all_day_on(date(2011, 12, 30));
        assert_eq!(
            busy_span(&skipped, chrono_tz::Pacific::Apia),
            (skipped.start, skipped.end)
        );
    }

    #[test]
    fn all_day_event_with_inverted_dates_falls_back_to_its_stored_instants() {
        let facts = BusyFacts {
            all_day: Some(AllDayDates {
                start: date(2026, 5, 5),
                end: date(2026, 5, 4),
            }),
            ..all_day_on(date(2026, 5, 4))
        };
        assert_eq!(busy_span(&facts, Europe::Berlin), (facts.start, facts.end));
    }
}
