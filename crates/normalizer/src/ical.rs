//! iCalendar objects from CalDAV servers → [`CalendarEvent`]s, recurring
//! series expanded into their occurrences over a window.
//!
//! A CalDAV resource holds one `UID`: a master `VEVENT` and the instances it
//! overrides (more `VEVENT`s with the same `UID` and a `RECURRENCE-ID`).
//! `calcard` (Stalwart's lenient, fuzzed parser) reads the text; the `rrule`
//! crate expands rules on wall-clock times, which are then placed in their
//! zone, so a 09:00 weekly meeting stays at 09:00 across DST.
//!
//! Decisions a reader should know:
//! - Identity: a non-recurring event is `href`. Every occurrence of a series
//!   is `{href}#{original start in UTC, YYYYMMDDTHHMMSSZ}` (all-day:
//!   `{href}#{YYYYMMDD}`), with `series_id = href` and `instance_start` the
//!   original start (its `RECURRENCE-ID`).
//! - Window: a series yields the occurrences overlapping the window, at most
//!   [`MAX_OCCURRENCES`] (the earliest; a [`Rejected`] notes the cut). A
//!   non-recurring event is returned whatever the window: it is one item.
//! - Length: a `DATE` start without end lasts one day, and an all-day end on
//!   or before its start (a common writer bug) is read as one day too. A
//!   date-time start without `DTEND`/`DURATION`, or with `DTEND = DTSTART`,
//!   takes no time (RFC 5545 §3.6.1). The store needs `end > start`, so such
//!   an event ends one second after it starts and is made transparent: like
//!   RFC 4791 free-busy, it never makes its owner busy.
//! - All-day instants are the midnights of the calendar's zone (else UTC).
//! - Time zones: a `TZID` goes through [`zones::resolve`] first (IANA and
//!   Windows names), then the object's own `VTIMEZONE`: its `X-LIC-LOCATION`,
//!   then calcard's guesses from the name (Outlook display names,
//!   `/mozilla.org/...` prefixes, CDO ids), and last its `STANDARD`/`DAYLIGHT`
//!   observances: onsets are expanded up to two years past the last date the
//!   object or window needs, and a wall-clock time takes the offset of the
//!   latest onset before it (past that horizon, the last offset stays). An
//!   unknown `TZID` with no `VTIMEZONE`, and a time without `TZID` or `Z`, is
//!   floating: read in the calendar's zone, else UTC. `time_zone` is set
//!   only when the start's `TZID` resolved to an IANA zone.
//! - Overrides replace their occurrence whole (RFC 5545); one with
//!   `STATUS:CANCELLED` removes it. `RANGE=THISANDFUTURE` (best effort)
//!   moves later occurrences by the same shift, with its length and details.
//!   An override whose `RECURRENCE-ID` the rule never produces is kept.
//! - Bounds (no input may cost much time or memory): objects over
//!   [`MAX_OBJECT_BYTES`] are rejected unread; at most three `RRULE`s per
//!   `VEVENT` are read; a rule without `COUNT` first jumps close to the
//!   window, while one with `COUNT` is walked from its start, so it is not
//!   expanded when it starts more than about 160 years before the window; a
//!   rule stops after [`MAX_RULE_STEPS`] dates; occurrences are looked for
//!   at most a year before the window (longer events, or longer
//!   `THISANDFUTURE` shifts, may be missed). Each cut is reported as a
//!   [`Rejected`] with field `RRULE`.
//! - The `rrule` crate (unlike dateutil, which it ports) has a flaw: sub-daily
//!   rules filtered by `BYHOUR` lose their `INTERVAL` alignment at day
//!   boundaries (`FREQ=MINUTELY;INTERVAL=7;BYHOUR=9` gives 09:06 where
//!   RFC 5545 wants 09:02). No calendar client writes such rules.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use calcard::common::PartialDateTime;
use calcard::common::timezone::Tz as GuessedZone;
use calcard::icalendar::{
    ICalendar, ICalendarAction, ICalendarComponent, ICalendarComponentType, ICalendarDuration, ICalendarEntry,
    ICalendarFrequency, ICalendarParameterName, ICalendarParameterValue, ICalendarParticipationRole,
    ICalendarParticipationStatus, ICalendarPeriod, ICalendarProperty, ICalendarRecurrenceRule, ICalendarRelated,
    ICalendarStatus, ICalendarTransparency, ICalendarValue,
};
use calcard::{Entry, Parser};
use chrono::{DateTime, Datelike, Days, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use juy_domain::{
    AllDayDates, Attendee, CalendarEvent, EventId, EventKind, EventStatus, Reminder, ReminderMethod, ResponseStatus,
    TimeRange, Transparency,
};

use crate::{CalendarContext, Change, Normalized, RejectReason, Rejected, zones};

/// The most occurrences one object yields for a window; later ones are cut
/// and a [`Rejected`] notes it.
pub const MAX_OCCURRENCES: usize = 5_000;

/// The largest object read, in bytes (the text of one CalDAV resource).
pub const MAX_OBJECT_BYTES: usize = 16 * 1024 * 1024;

/// The most dates one recurrence rule may produce, counted from its start,
/// before expansion stops.
pub const MAX_RULE_STEPS: usize = 100_000;

/// The most onsets expanded for one `STANDARD`/`DAYLIGHT` observance.
const MAX_ZONE_ONSETS: usize = 2_000;

/// The most distinct `TZID`s resolved per object (the rest read as floating),
/// and the most `VTIMEZONE`s whose observances are expanded.
const MAX_TZIDS: usize = 256;
const MAX_OBSERVED_ZONES: usize = 32;

/// How far before the window an occurrence's length or a `THISANDFUTURE`
/// shift can reach back, at most, when looking for occurrences.
const MAX_REACH: TimeDelta = TimeDelta::days(366);

/// The most `RRULE`s read per `VEVENT`.
const MAX_RULES: usize = 3;

/// How many days before the window's end a rule with `COUNT` may start:
/// such a rule is walked from its start, about one step a day at worst.
const MAX_COUNTED_DAYS: i64 = 60_000;

/// The most observances per `VTIMEZONE` whose rule is expanded.
const MAX_RULED_OBSERVANCES: usize = 8;

/// The last day an occurrence may touch: later dates are refused, which
/// keeps every computation far from chrono's limits.
const LAST_DAY: NaiveDate = match NaiveDate::from_ymd_opt(9999, 12, 31) {
    Some(day) => day,
    None => NaiveDate::MAX,
};

/// Normalises one iCalendar object (the `calendar-data` of the CalDAV
/// resource at `href`) into events, expanding recurring series over `window`.
///
/// Never panics; what cannot be read is returned as [`Rejected`] with a
/// fixed reason that quotes nothing from the object.
pub fn normalize_object(
    ctx: &CalendarContext,
    href: &str,
    etag: Option<&str>,
    data: &str,
    window: TimeRange,
) -> Normalized {
    let mut out = Normalized::default();
    let reject = |reason: RejectReason| Rejected {
        external_id: Some(href.to_owned()),
        reason,
    };

    if data.len() > MAX_OBJECT_BYTES {
        out.rejected
            .push(reject(RejectReason::Malformed("object larger than 16 MiB".into())));
        return out;
    }
    let Some(ical) = parse(data) else {
        out.rejected
            .push(reject(RejectReason::Malformed("not an iCalendar object".into())));
        return out;
    };
    let events: Vec<&ICalendarComponent> = ical
        .components
        .iter()
        .filter(|c| c.component_type == ICalendarComponentType::VEvent)
        .collect();
    let Some(first) = events.first() else {
        // Tasks and journals share CalDAV calendars with events: not an error.
        let other_items = ical.components.iter().any(|c| {
            matches!(
                c.component_type,
                ICalendarComponentType::VTodo
                    | ICalendarComponentType::VJournal
                    | ICalendarComponentType::VFreebusy
                    | ICalendarComponentType::VAvailability
            )
        });
        if !other_items {
            out.rejected.push(reject(RejectReason::Malformed("no VEVENT".into())));
        }
        return out;
    };

    // CalDAV allows one UID per resource; keep the first, report the rest.
    let uid = first.uid();
    let (group, strangers): (Vec<_>, Vec<_>) = events.iter().copied().partition(|c| c.uid() == uid);
    if !strangers.is_empty() {
        out.rejected.push(reject(RejectReason::Malformed(
            "more than one UID in one object; only the first is kept".into(),
        )));
    }

    let home = ctx.time_zone.as_deref().and_then(zones::resolve).unwrap_or(Tz::UTC);
    let mut object = Object {
        ctx,
        href,
        etag,
        window,
        home,
        uid: uid.map(str::to_owned),
        zones: Zones::new(&ical, home, horizon(&group, window)),
        ical: &ical,
        out: &mut out,
    };
    object.normalize(&group);
    out
}

/// The first iCalendar object in `data`, skipping stray lines before it.
fn parse(data: &str) -> Option<ICalendar> {
    let mut parser = Parser::new(data);
    // Each stray line consumes input, so this ends; the bound is a backstop.
    for _ in 0..=data.len() {
        match parser.entry() {
            Entry::ICalendar(ical) => return Some(ical),
            Entry::InvalidLine(_) => continue,
            _ => return None,
        }
    }
    None
}

/// The last instant a `VTIMEZONE` observance must be known for: two years
/// past the window or the latest date written in the events.
fn horizon(events: &[&ICalendarComponent], window: TimeRange) -> NaiveDateTime {
    let window_year = window.end().year();
    let latest_written = events
        .iter()
        .flat_map(|c| c.entries.iter())
        .filter(|e| {
            matches!(
                e.name,
                ICalendarProperty::Dtstart | ICalendarProperty::Dtend | ICalendarProperty::RecurrenceId
            )
        })
        .filter_map(|e| e.values.first().and_then(|v| v.as_partial_date_time()))
        .filter_map(|p| p.year)
        .map(i32::from)
        .max()
        .unwrap_or(window_year);
    let year = window_year
        .max(latest_written.min(window_year.saturating_add(100)))
        .saturating_add(2);
    NaiveDate::from_ymd_opt(year, 1, 1)
        .unwrap_or(NaiveDate::MAX)
        .and_time(NaiveTime::MIN)
}

// ---------------------------------------------------------------------------
// Time zones

/// How a zone turns wall-clock times into instants.
#[derive(Clone)]
enum ZoneRule {
    Tz(Tz),
    Fixed(FixedOffset),
    Observed(Rc<Observances>),
}

/// A zone of date-times in the object, with its IANA name when it has one.
#[derive(Clone)]
struct Zone {
    rule: ZoneRule,
    iana: Option<&'static str>,
}

impl Zone {
    fn named(tz: Tz) -> Self {
        Self {
            rule: ZoneRule::Tz(tz),
            iana: Some(tz.name()),
        }
    }

    fn unnamed(tz: Tz) -> Self {
        Self {
            rule: ZoneRule::Tz(tz),
            iana: None,
        }
    }

    fn fixed(offset: FixedOffset) -> Self {
        if offset.local_minus_utc() == 0 {
            Self::unnamed(Tz::UTC)
        } else {
            Self {
                rule: ZoneRule::Fixed(offset),
                iana: None,
            }
        }
    }

    fn to_utc(&self, local: NaiveDateTime) -> DateTime<Utc> {
        match &self.rule {
            ZoneRule::Tz(tz) => zones::local_to_utc(*tz, local),
            ZoneRule::Fixed(offset) => minus_offset(local, offset.local_minus_utc()).and_utc(),
            ZoneRule::Observed(observances) => observances.to_utc(local),
        }
    }

    fn to_local(&self, at: DateTime<Utc>) -> NaiveDateTime {
        match &self.rule {
            ZoneRule::Tz(tz) => at.with_timezone(tz).naive_local(),
            ZoneRule::Fixed(offset) => at.with_timezone(offset).naive_local(),
            ZoneRule::Observed(observances) => observances.to_local(at),
        }
    }
}

/// `local - offset seconds` (left as it is at the edge of chrono's range).
fn minus_offset(local: NaiveDateTime, offset: i32) -> NaiveDateTime {
    local
        .checked_sub_signed(TimeDelta::seconds(i64::from(offset)))
        .unwrap_or(local)
}

/// A `VTIMEZONE` no name identifies, read from its observances: every onset
/// up to a horizon with the offset it brings.
struct Observances {
    /// `(onset as wall-clock time before it, offset from then on)`, sorted.
    by_local: Vec<(NaiveDateTime, i32)>,
    /// `(onset in UTC, offset from then on)`, sorted.
    by_utc: Vec<(NaiveDateTime, i32)>,
    /// The offset before the first onset.
    before_first: i32,
}

impl Observances {
    fn offset_at(onsets: &[(NaiveDateTime, i32)], at: NaiveDateTime, before_first: i32) -> i32 {
        match onsets.partition_point(|(onset, _)| *onset <= at) {
            0 => before_first,
            n => onsets.get(n - 1).map_or(before_first, |(_, offset)| *offset),
        }
    }

    fn to_utc(&self, local: NaiveDateTime) -> DateTime<Utc> {
        minus_offset(local, Self::offset_at(&self.by_local, local, self.before_first)).and_utc()
    }

    fn to_local(&self, at: DateTime<Utc>) -> NaiveDateTime {
        let offset = Self::offset_at(&self.by_utc, at.naive_utc(), self.before_first);
        minus_offset(at.naive_utc(), offset.saturating_neg())
    }
}

/// Resolves `TZID`s against the zone tables and the object's `VTIMEZONE`s.
struct Zones<'a> {
    ical: &'a ICalendar,
    /// `VTIMEZONE` components by `TZID`.
    definitions: HashMap<&'a str, &'a ICalendarComponent>,
    /// The zone of floating times: the calendar's, else UTC.
    floating: Zone,
    horizon: NaiveDateTime,
    cache: HashMap<String, Option<Zone>>,
    observed: usize,
}

impl<'a> Zones<'a> {
    fn new(ical: &'a ICalendar, home: Tz, horizon: NaiveDateTime) -> Self {
        let mut definitions = HashMap::new();
        for component in &ical.components {
            if component.component_type == ICalendarComponentType::VTimezone
                && let Some(tzid) = text(component, &ICalendarProperty::Tzid)
            {
                definitions.entry(tzid).or_insert(component);
            }
        }
        Self {
            ical,
            definitions,
            floating: Zone::unnamed(home),
            horizon,
            cache: HashMap::new(),
            observed: 0,
        }
    }

    /// The zone a `TZID` names; floating when it cannot be resolved.
    fn tzid(&mut self, tzid: &str) -> Zone {
        if let Some(zone) = self.cache.get(tzid) {
            return zone.clone().unwrap_or_else(|| self.floating.clone());
        }
        if self.cache.len() >= MAX_TZIDS {
            return self.floating.clone();
        }
        let zone = self.lookup(tzid);
        self.cache.insert(tzid.to_owned(), zone.clone());
        zone.unwrap_or_else(|| self.floating.clone())
    }

    fn lookup(&mut self, tzid: &str) -> Option<Zone> {
        if let Some(tz) = zones::resolve(tzid) {
            return Some(Zone::named(tz));
        }
        let Some(definition) = self.definitions.get(tzid).copied() else {
            return tzid.parse::<GuessedZone>().ok().and_then(from_guess);
        };
        let location = text(definition, &ICalendarProperty::Other("X-LIC-LOCATION".into()));
        if let Some(tz) = location.and_then(|l| zones::resolve(l.strip_prefix("SystemV/").unwrap_or(l))) {
            return Some(Zone::named(tz));
        }
        if let Some(zone) = definition.timezone().and_then(|(_, guess)| from_guess(guess)) {
            return Some(zone);
        }
        if self.observed >= MAX_OBSERVED_ZONES {
            return None;
        }
        self.observed += 1;
        observances(self.ical, definition, self.horizon).map(|observances| Zone {
            rule: ZoneRule::Observed(Rc::new(observances)),
            iana: None,
        })
    }
}

fn from_guess(guess: GuessedZone) -> Option<Zone> {
    match guess {
        GuessedZone::Tz(tz) => Some(Zone::named(tz)),
        GuessedZone::Fixed(offset) => Some(Zone::fixed(offset)),
        GuessedZone::Floating => None,
    }
}

/// The onsets of a `VTIMEZONE`'s `STANDARD` and `DAYLIGHT` observances.
fn observances(ical: &ICalendar, definition: &ICalendarComponent, horizon: NaiveDateTime) -> Option<Observances> {
    let mut by_local: Vec<(NaiveDateTime, i32, i32)> = Vec::new();
    let mut ruled = 0;
    for child in &definition.component_ids {
        let Some(observance) = ical.component_by_id(*child) else {
            continue;
        };
        if !matches!(
            observance.component_type,
            ICalendarComponentType::Standard | ICalendarComponentType::Daylight
        ) {
            continue;
        }
        let Some(to) = utc_offset(observance, &ICalendarProperty::Tzoffsetto) else {
            continue;
        };
        let from = utc_offset(observance, &ICalendarProperty::Tzoffsetfrom).unwrap_or(to);
        let Some(start) = first_value(observance, &ICalendarProperty::Dtstart)
            .and_then(|p| p.to_date_time())
            .map(|d| d.date_time)
        else {
            continue;
        };
        let mut onsets = vec![start];
        // Real observances recur yearly; other rules (and too many) are
        // left out, as their expansion could be slow.
        let yearly = rules(observance).filter(|r| r.freq == ICalendarFrequency::Yearly);
        for rule in yearly.take(1) {
            if ruled >= MAX_RULED_OBSERVANCES {
                break;
            }
            ruled += 1;
            // UNTIL is in UTC; onsets are wall-clock times before the change.
            let until = match rule.until.as_ref().map(|u| (u, u.to_date_time())) {
                None => None,
                Some((until, Some(value))) if until.has_time() && value.offset.is_some() => {
                    Some(minus_offset(value.date_time, from.saturating_neg()))
                }
                Some((_, Some(value))) => Some(value.date_time),
                Some((_, None)) => continue,
            };
            if let Ok(Some(set)) = rule_set(rule, start, until, None) {
                for date in (&set).into_iter().take(MAX_ZONE_ONSETS) {
                    let local = date.naive_utc();
                    if local > horizon {
                        break;
                    }
                    onsets.push(local);
                }
            }
        }
        for entry in observance.properties(&ICalendarProperty::Rdate) {
            let dates = entry.values.iter().filter_map(|v| v.as_partial_date_time());
            onsets.extend(
                dates
                    .filter_map(|p| p.to_date_time())
                    .map(|d| d.date_time)
                    .take(MAX_ZONE_ONSETS),
            );
        }
        by_local.extend(onsets.into_iter().map(|onset| (onset, from, to)));
    }
    by_local.sort_unstable();
    by_local.dedup_by_key(|(onset, _, _)| *onset);
    let before_first = by_local.first().map(|(_, from, _)| *from)?;
    let mut by_utc: Vec<(NaiveDateTime, i32)> = by_local
        .iter()
        .map(|(onset, from, to)| (minus_offset(*onset, *from), *to))
        .collect();
    by_utc.sort_unstable();
    Some(Observances {
        by_local: by_local.into_iter().map(|(onset, _, to)| (onset, to)).collect(),
        by_utc,
        before_first,
    })
}

/// A `TZOFFSETFROM`/`TZOFFSETTO` value in seconds east of UTC.
fn utc_offset(component: &ICalendarComponent, property: &ICalendarProperty) -> Option<i32> {
    let value = first_value(component, property)?;
    let seconds = i32::from(value.tz_hour?) * 3600 + i32::from(value.tz_minute.unwrap_or(0)) * 60;
    (seconds < 86_400).then_some(if value.tz_minus { -seconds } else { seconds })
}

// ---------------------------------------------------------------------------
// Recurrence rules

/// A recurrence rule ready to iterate over wall-clock times (UTC stands in
/// for "no zone", which has no gaps). `Ok(None)`: no dates at or after the
/// start. With `skip_to`, a rule without `COUNT` whose periods have a fixed
/// length starts at its last period before `skip_to` instead: the dates from
/// there on are the same, and far-back series stay cheap.
fn rule_set(
    rule: &ICalendarRecurrenceRule,
    start: NaiveDateTime,
    until: Option<NaiveDateTime>,
    skip_to: Option<NaiveDateTime>,
) -> Result<Option<rrule::RRuleSet>, ()> {
    use rrule::Frequency;
    let frequency = match rule.freq {
        ICalendarFrequency::Yearly => Frequency::Yearly,
        ICalendarFrequency::Monthly => Frequency::Monthly,
        ICalendarFrequency::Weekly => Frequency::Weekly,
        ICalendarFrequency::Daily => Frequency::Daily,
        ICalendarFrequency::Hourly => Frequency::Hourly,
        ICalendarFrequency::Minutely => Frequency::Minutely,
        ICalendarFrequency::Secondly => Frequency::Secondly,
    };
    let interval = rule.interval.unwrap_or(1);
    if interval == 0
        || rule
            .rscale
            .as_ref()
            .is_some_and(|s| *s != calcard::common::CalendarScale::Gregorian)
    {
        return Err(());
    }

    let mut start = start;
    if rule.count.is_none()
        && let Some(target) = skip_to
        && target > start
    {
        let unit = match frequency {
            Frequency::Weekly => 7 * 86_400,
            Frequency::Daily => 86_400,
            Frequency::Hourly => 3_600,
            Frequency::Minutely => 60,
            Frequency::Secondly => 1,
            // Months and years vary in length: no jump (at most ~12 dates a year).
            Frequency::Monthly | Frequency::Yearly => 0,
        };
        let period = unit * i64::from(interval);
        if period > 0 {
            let periods = (target - start).num_seconds() / period;
            if let Some(jumped) =
                TimeDelta::try_seconds(periods.saturating_mul(period)).and_then(|d| start.checked_add_signed(d))
            {
                start = jumped;
            }
        }
    }
    if until.is_some_and(|until| until < start) {
        return Ok(None);
    }

    let at = |local: NaiveDateTime| rrule::Tz::UTC.from_utc_datetime(&local);
    let mut built = rrule::RRule::new(frequency)
        .interval(interval)
        .week_start(rule.wkst.map_or(chrono::Weekday::Mon, Into::into))
        .by_set_pos(rule.bysetpos.clone())
        .by_month_day(rule.bymonthday.clone())
        .by_year_day(rule.byyearday.clone())
        .by_week_no(rule.byweekno.clone())
        .by_weekday(
            rule.byday
                .iter()
                .map(|d| rrule::NWeekday::new(d.ordwk, d.weekday.into()))
                .collect(),
        )
        .by_hour(rule.byhour.clone())
        .by_minute(rule.byminute.clone())
        .by_second(rule.bysecond.clone());
    let months: Vec<chrono::Month> = rule
        .bymonth
        .iter()
        .filter_map(|m| chrono::Month::try_from(m.month()).ok())
        .collect();
    if months.len() != rule.bymonth.len() {
        return Err(());
    }
    if !months.is_empty() {
        built = built.by_month(&months);
    }
    if let Some(count) = rule.count {
        built = built.count(count);
    }
    if let Some(until) = until {
        built = built.until(at(until));
    }
    built.build(at(start)).map(|set| Some(set.limit())).map_err(|_| ())
}

/// The `RRULE`s of a component that parsed as rules.
fn rules(component: &ICalendarComponent) -> impl Iterator<Item = &ICalendarRecurrenceRule> {
    component
        .properties(&ICalendarProperty::Rrule)
        .filter_map(|e| match e.values.first() {
            Some(ICalendarValue::RecurrenceRule(rule)) => Some(rule.as_ref()),
            _ => None,
        })
}

// ---------------------------------------------------------------------------
// Events

/// When something starts: a date (all-day) or a wall-clock time in a zone.
#[derive(Clone)]
enum Start {
    Date(NaiveDate),
    Time { local: NaiveDateTime, zone: Zone },
}

impl Start {
    fn is_date(&self) -> bool {
        matches!(self, Start::Date(_))
    }

    /// The wall-clock time (midnight for a date).
    fn local(&self) -> NaiveDateTime {
        match self {
            Start::Date(date) => date.and_time(NaiveTime::MIN),
            Start::Time { local, .. } => *local,
        }
    }

    fn zone_name(&self) -> Option<&'static str> {
        match self {
            Start::Date(_) => None,
            Start::Time { zone, .. } => zone.iana,
        }
    }
}

/// How long an occurrence lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Span {
    /// Whole days of an all-day event.
    Days(i64),
    /// An exact length (from `DTEND`, RFC 5545 §3.8.5.3).
    Exact(TimeDelta),
    /// A `DURATION`: days on the wall clock, then an exact time.
    Nominal { days: i64, exact: TimeDelta },
}

impl Span {
    /// An upper bound of the length, for the window margins.
    fn at_most(self) -> TimeDelta {
        match self {
            Span::Days(days) => TimeDelta::try_days(days.saturating_add(1)).unwrap_or(TimeDelta::MAX),
            Span::Exact(exact) | Span::Nominal { days: 0, exact } => exact,
            // A wall-clock day is 24 hours give or take a DST shift.
            Span::Nominal { days, exact } => TimeDelta::try_days(days)
                .and_then(|d| d.checked_add(&TimeDelta::hours(3)))
                .and_then(|d| d.checked_add(&exact))
                .unwrap_or(TimeDelta::MAX),
        }
    }

    /// The length in seconds an alarm relative to the end adds.
    fn seconds(self) -> i64 {
        match self {
            Span::Days(days) => days.saturating_mul(86_400),
            Span::Exact(exact) => exact.num_seconds(),
            Span::Nominal { days, exact } => days.saturating_mul(86_400).saturating_add(exact.num_seconds()),
        }
    }
}

/// What identifies an occurrence of a series: its original start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Date(NaiveDate),
    Instant(DateTime<Utc>),
}

impl Key {
    fn suffix(self) -> String {
        match self {
            Key::Date(date) => date.format("%Y%m%d").to_string(),
            Key::Instant(at) => at.format("%Y%m%dT%H%M%SZ").to_string(),
        }
    }

    /// Whether `self` comes before `other`, when both are of one kind.
    fn precedes(self, other: Key) -> bool {
        match (self, other) {
            (Key::Date(a), Key::Date(b)) => a < b,
            (Key::Instant(a), Key::Instant(b)) => a < b,
            _ => false,
        }
    }
}

/// The fields of a `VEVENT` every occurrence made from it shares.
struct Details {
    title: Option<String>,
    location: Option<String>,
    description: Option<String>,
    status: EventStatus,
    transparency: Transparency,
    organizer: Option<Attendee>,
    attendees: Vec<Attendee>,
    self_response: ResponseStatus,
    reminders: Vec<Reminder>,
    updated: Option<DateTime<Utc>>,
}

/// A `VEVENT` read: when, how long, and what.
struct Event {
    start: Start,
    span: Span,
    details: Details,
}

/// A `VEVENT` with a `RECURRENCE-ID`.
struct Override {
    event: Event,
    key: Key,
    this_and_future: bool,
    sequence: i64,
}

/// A recurring master, expanded.
struct Series<'e> {
    master: &'e Event,
    excluded: HashSet<Key>,
    /// Overridden occurrences by original start; dates also match timed
    /// occurrences on that day (sloppy writers).
    overridden: HashSet<Key>,
    /// `RANGE=THISANDFUTURE` overrides, by original start.
    future: BTreeMap<Key, &'e Override>,
}

/// One occurrence ready to become an event.
struct Occurrence<'e> {
    key: Option<Key>,
    start: Start,
    span: Span,
    details: &'e Details,
}

/// The occurrences overlapping the window, placed in time.
#[derive(Default)]
struct Found<'e> {
    placed: Vec<(Placed, Occurrence<'e>)>,
    /// Whether some occurrence could not be placed.
    failed: bool,
}

impl<'e> Found<'e> {
    /// Keeps `occurrence` if it overlaps the window; says whether it did.
    fn offer(&mut self, object: &Object, occurrence: Occurrence<'e>) -> bool {
        match object.place(&occurrence) {
            Ok(at) if object.window.overlaps(at.start, at.end) => {
                self.placed.push((at, occurrence));
                true
            }
            Ok(_) => false,
            Err(_) => {
                self.failed = true;
                false
            }
        }
    }
}

/// An occurrence placed in time.
struct Placed {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    all_day: Option<AllDayDates>,
    zero_length: bool,
}

/// Everything needed while normalising one object.
struct Object<'a> {
    ctx: &'a CalendarContext,
    href: &'a str,
    etag: Option<&'a str>,
    window: TimeRange,
    home: Tz,
    uid: Option<String>,
    zones: Zones<'a>,
    ical: &'a ICalendar,
    out: &'a mut Normalized,
}

impl<'a> Object<'a> {
    fn reject(&mut self, reason: RejectReason) {
        self.out.rejected.push(Rejected {
            external_id: Some(self.href.to_owned()),
            reason,
        });
    }

    fn normalize(&mut self, group: &[&'a ICalendarComponent]) {
        let (masters, overrides): (Vec<&ICalendarComponent>, Vec<&ICalendarComponent>) = group
            .iter()
            .copied()
            .partition(|c| !c.has_property(&ICalendarProperty::RecurrenceId));
        if masters.len() > 1 {
            self.reject(RejectReason::Malformed(
                "more than one VEVENT without RECURRENCE-ID; only the first is kept".into(),
            ));
        }
        let master_component = masters.first().copied();
        let master = master_component.and_then(|c| match self.event(c, None) {
            Ok(event) => Some(event),
            Err(reason) => {
                self.reject(reason);
                None
            }
        });
        let recurring = !overrides.is_empty()
            || master_component.is_some_and(|c| {
                c.has_property(&ICalendarProperty::Rrule) || c.has_property(&ICalendarProperty::Rdate)
            });

        if !recurring {
            if let Some(master) = &master {
                let occurrence = Occurrence {
                    key: None,
                    start: master.start.clone(),
                    span: master.span,
                    details: &master.details,
                };
                match self.place(&occurrence) {
                    Ok(placed) => self.emit(&occurrence, placed),
                    Err(reason) => self.reject(reason),
                }
            }
            return;
        }
        let master = master_component.zip(master.as_ref());
        self.series(master, &overrides);
    }

    /// The occurrences of a series overlapping the window: the master's,
    /// less removed ones, and the overrides.
    fn series(&mut self, master: Option<(&ICalendarComponent, &Event)>, overrides: &[&ICalendarComponent]) {
        // Overrides: the last (by SEQUENCE, then order) per original start wins.
        let mut by_key: BTreeMap<Key, Override> = BTreeMap::new();
        for component in overrides {
            match self.override_of(component, master.map(|(_, event)| event)) {
                Ok(found) => {
                    if by_key
                        .get(&found.key)
                        .is_none_or(|kept| kept.sequence <= found.sequence)
                    {
                        by_key.insert(found.key, found);
                    }
                }
                Err(reason) => self.reject(reason),
            }
        }

        let mut found = Found::default();
        let mut excluded = HashSet::new();
        if let Some((component, master)) = master {
            let series = Series {
                master,
                excluded: self.exdates(component, master),
                overridden: by_key.keys().copied().collect(),
                future: by_key
                    .iter()
                    .filter(|(_, o)| o.this_and_future)
                    .map(|(k, o)| (*k, o))
                    .collect(),
            };
            self.expand(component, &series, &mut found);
            excluded = series.excluded;
        }
        for (key, one) in &by_key {
            if one.event.details.status == EventStatus::Cancelled || excluded.contains(key) {
                continue;
            }
            let occurrence = Occurrence {
                key: Some(*key),
                start: one.event.start.clone(),
                span: one.event.span,
                details: &one.event.details,
            };
            found.offer(self, occurrence);
        }
        if found.failed {
            self.reject(RejectReason::InvalidField {
                field: "DTSTART",
                problem: "an occurrence falls outside the supported date range".into(),
            });
        }
        let mut placed = found.placed;
        placed.sort_by_key(|(at, occurrence)| (at.start, occurrence.key));
        if placed.len() > MAX_OCCURRENCES {
            placed.truncate(MAX_OCCURRENCES);
            self.reject(RejectReason::InvalidField {
                field: "RRULE",
                problem: format!("more than {MAX_OCCURRENCES} occurrences overlap the window; only the first are kept"),
            });
        }
        for (at, occurrence) in placed {
            self.emit(&occurrence, at);
        }
    }

    /// Reads a `VEVENT`'s times and details. `inherited` is the master's
    /// span, for an override that has neither `DTSTART` nor an end.
    fn event(
        &mut self,
        component: &ICalendarComponent,
        inherited: Option<(&Start, Span)>,
    ) -> Result<Event, RejectReason> {
        let start = match self.moment(component, &ICalendarProperty::Dtstart, None) {
            Some(Ok(start)) => start,
            Some(Err(())) => {
                return Err(RejectReason::InvalidField {
                    field: "DTSTART",
                    problem: "not a date or date-time".into(),
                });
            }
            None => match inherited {
                Some((start, _)) => start.clone(),
                None => return Err(RejectReason::MissingField("DTSTART")),
            },
        };
        let has_end =
            component.has_property(&ICalendarProperty::Dtend) || component.has_property(&ICalendarProperty::Duration);
        let span = match inherited {
            Some((_, span)) if !has_end && !component.has_property(&ICalendarProperty::Dtstart) => span,
            _ => self.span(component, &start)?,
        };
        let details = self.details(component, span);
        Ok(Event { start, span, details })
    }

    /// Reads an override; `master` (when readable) decides how its
    /// `RECURRENCE-ID` is matched.
    fn override_of(
        &mut self,
        component: &ICalendarComponent,
        master: Option<&Event>,
    ) -> Result<Override, RejectReason> {
        let fallback = master.and_then(|m| match &m.start {
            Start::Time { zone, .. } => Some(zone.clone()),
            Start::Date(_) => None,
        });
        let bad_rid = || RejectReason::InvalidField {
            field: "RECURRENCE-ID",
            problem: "not a date or date-time".into(),
        };
        let rid = match self.moment(component, &ICalendarProperty::RecurrenceId, fallback.as_ref()) {
            Some(Ok(rid)) => rid,
            _ => return Err(bad_rid()),
        };
        let key = match (&rid, master.map(|m| m.start.is_date())) {
            (Start::Date(date), _) => Key::Date(*date),
            (Start::Time { local, .. }, Some(true)) => Key::Date(local.date()),
            (Start::Time { local, zone }, _) => Key::Instant(zone.to_utc(*local)),
        };
        let this_and_future = component
            .property(&ICalendarProperty::RecurrenceId)
            .and_then(|e| e.parameter(&ICalendarParameterName::Range))
            .is_some_and(|range| match range {
                ICalendarParameterValue::Bool(flag) => *flag,
                other => other.as_text().is_some_and(|t| t.eq_ignore_ascii_case("THISANDFUTURE")),
            });
        let inherited_span = master.map_or(
            match rid {
                Start::Date(_) => Span::Days(1),
                Start::Time { .. } => Span::Exact(TimeDelta::zero()),
            },
            |m| m.span,
        );
        let event = self.event(component, Some((&rid, inherited_span)))?;
        let sequence = component
            .property(&ICalendarProperty::Sequence)
            .and_then(|e| e.values.first())
            .and_then(ICalendarValue::as_integer)
            .unwrap_or(0);
        Ok(Override {
            event,
            key,
            this_and_future,
            sequence,
        })
    }

    /// A date or date-time property: `None` when absent, `Some(Err)` when
    /// present but unreadable. Times without `TZID` or `Z` take `fallback`
    /// (the start's zone, for properties that follow it), else float.
    fn moment(
        &mut self,
        component: &ICalendarComponent,
        property: &ICalendarProperty,
        fallback: Option<&Zone>,
    ) -> Option<Result<Start, ()>> {
        let mut present = false;
        for entry in component.properties(property) {
            present = true;
            if let Some(value) = entry.values.first().and_then(|v| v.as_partial_date_time())
                && let Some(moment) = self.moment_of(entry, value, fallback)
            {
                return Some(Ok(moment));
            }
        }
        present.then_some(Err(()))
    }

    fn moment_of(&mut self, entry: &ICalendarEntry, value: &PartialDateTime, fallback: Option<&Zone>) -> Option<Start> {
        let parsed = value.to_date_time()?;
        if !value.has_time() {
            return Some(Start::Date(parsed.date_time.date()));
        }
        let zone = match (parsed.offset, entry.tz_id(), fallback) {
            (Some(offset), _, _) => Zone::fixed(offset),
            (None, Some(tzid), _) => self.zones.tzid(tzid),
            (None, None, Some(zone)) => zone.clone(),
            (None, None, None) => self.zones.floating.clone(),
        };
        Some(Start::Time {
            local: parsed.date_time,
            zone,
        })
    }

    /// The length from `DTEND` or `DURATION` (see the module docs for the
    /// defaults).
    fn span(&mut self, component: &ICalendarComponent, start: &Start) -> Result<Span, RejectReason> {
        let start_zone = match start {
            Start::Time { zone, .. } => Some(zone.clone()),
            Start::Date(_) => None,
        };
        if let Some(end) = self.moment(component, &ICalendarProperty::Dtend, start_zone.as_ref()) {
            let end = end.map_err(|()| RejectReason::InvalidField {
                field: "DTEND",
                problem: "not a date or date-time".into(),
            })?;
            return Ok(match (start, end) {
                (Start::Date(first), end) => Span::Days((end.local().date() - *first).num_days().max(1)),
                (Start::Time { local, zone }, end) => {
                    let end_utc = match end {
                        Start::Date(date) => zone.to_utc(date.and_time(NaiveTime::MIN)),
                        Start::Time { local, zone } => zone.to_utc(local),
                    };
                    let length = end_utc - zone.to_utc(*local);
                    if length < TimeDelta::zero() {
                        return Err(RejectReason::EndsBeforeStart);
                    }
                    Span::Exact(length)
                }
            });
        }
        if let Some(entry) = component.property(&ICalendarProperty::Duration) {
            let Some(ICalendarValue::Duration(duration)) = entry.values.first() else {
                return Err(RejectReason::InvalidField {
                    field: "DURATION",
                    problem: "not a duration".into(),
                });
            };
            return duration_span(duration, start);
        }
        Ok(match start {
            Start::Date(_) => Span::Days(1),
            Start::Time { .. } => Span::Exact(TimeDelta::zero()),
        })
    }

    fn details(&self, component: &ICalendarComponent, span: Span) -> Details {
        let organizer = component
            .property(&ICalendarProperty::Organizer)
            .and_then(|e| self.person(e))
            .map(|organizer| Attendee {
                response: ResponseStatus::Organizer,
                ..organizer
            });
        let attendees: Vec<Attendee> = component
            .properties(&ICalendarProperty::Attendee)
            .filter_map(|e| self.person(e))
            .collect();
        let self_response = if organizer.as_ref().is_some_and(|o| o.is_self) {
            ResponseStatus::Organizer
        } else {
            attendees
                .iter()
                .find(|a| a.is_self)
                .map_or(ResponseStatus::None, |a| a.response)
        };
        let status = match component.status() {
            Some(ICalendarStatus::Tentative) => EventStatus::Tentative,
            Some(ICalendarStatus::Cancelled) => EventStatus::Cancelled,
            _ => EventStatus::Confirmed,
        };
        let transparency = match component.transparency() {
            Some(ICalendarTransparency::Transparent) => Transparency::Transparent,
            _ => Transparency::Opaque,
        };
        let updated = [ICalendarProperty::LastModified, ICalendarProperty::Dtstamp]
            .iter()
            .find_map(|p| first_value(component, p).and_then(|v| v.to_date_time()))
            .map(|value| match value.offset {
                Some(offset) => minus_offset(value.date_time, offset.local_minus_utc()).and_utc(),
                // A floating stamp breaks RFC 5545 (it must be UTC); read it as UTC.
                None => value.date_time.and_utc(),
            });
        Details {
            title: text(component, &ICalendarProperty::Summary).map(str::to_owned),
            location: text(component, &ICalendarProperty::Location).map(str::to_owned),
            description: text(component, &ICalendarProperty::Description).map(str::to_owned),
            status,
            transparency,
            organizer,
            attendees,
            self_response,
            reminders: self.reminders(component, span),
            updated,
        }
    }

    /// An `ORGANIZER` or `ATTENDEE`; `None` without an email address.
    fn person(&self, entry: &ICalendarEntry) -> Option<Attendee> {
        let address = entry
            .parameter(&ICalendarParameterName::Email)
            .and_then(ICalendarParameterValue::as_text)
            .or_else(|| {
                let value = entry.values.first()?.as_text()?;
                let stripped = calcard::icalendar::utils::strip_mailto_scheme(value);
                (stripped.len() != value.len() || !value.contains(':')).then_some(stripped)
            })?
            .trim();
        if !address.contains('@') {
            return None;
        }
        let email = address.to_lowercase();
        let name = entry
            .parameter(&ICalendarParameterName::Cn)
            .and_then(ICalendarParameterValue::as_text)
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned);
        let response = match entry.parameter(&ICalendarParameterName::Partstat) {
            Some(ICalendarParameterValue::Partstat(status)) => match status {
                ICalendarParticipationStatus::Accepted => ResponseStatus::Accepted,
                ICalendarParticipationStatus::Declined => ResponseStatus::Declined,
                ICalendarParticipationStatus::Tentative => ResponseStatus::Tentative,
                // Delegated: someone else goes in their place.
                ICalendarParticipationStatus::Delegated => ResponseStatus::Declined,
                _ => ResponseStatus::NeedsAction,
            },
            // Absent or unknown: RFC 5545 says NEEDS-ACTION.
            _ => ResponseStatus::NeedsAction,
        };
        let optional = matches!(
            entry.parameter(&ICalendarParameterName::Role),
            Some(ICalendarParameterValue::Role(
                ICalendarParticipationRole::OptParticipant | ICalendarParticipationRole::NonParticipant
            ))
        );
        let is_self = self.ctx.self_emails.iter().any(|own| own.eq_ignore_ascii_case(&email));
        Some(Attendee {
            email,
            name,
            response,
            is_self,
            optional,
        })
    }

    /// Alarms with a trigger relative to the start or end; absolute ones
    /// are skipped, as are Apple's `ACTION:NONE` placeholders.
    fn reminders(&self, component: &ICalendarComponent, span: Span) -> Vec<Reminder> {
        let mut reminders: Vec<Reminder> = Vec::new();
        for child in &component.component_ids {
            let Some(alarm) = self.ical.component_by_id(*child) else {
                continue;
            };
            if alarm.component_type != ICalendarComponentType::VAlarm {
                continue;
            }
            let Some(trigger) = alarm.property(&ICalendarProperty::Trigger) else {
                continue;
            };
            let Some(ICalendarValue::Duration(offset)) = trigger.values.first() else {
                continue;
            };
            let mut seconds = offset.as_seconds();
            if matches!(
                trigger.parameter(&ICalendarParameterName::Related),
                Some(ICalendarParameterValue::Related(ICalendarRelated::End))
            ) {
                seconds = seconds.saturating_add(span.seconds());
            }
            let action = alarm
                .property(&ICalendarProperty::Action)
                .and_then(|e| e.values.first());
            let method = match action {
                Some(ICalendarValue::Action(ICalendarAction::Email)) => ReminderMethod::Email,
                Some(other) if other.as_text().is_some_and(|t| t.eq_ignore_ascii_case("NONE")) => continue,
                _ => ReminderMethod::Popup,
            };
            let minutes = (seconds.saturating_neg() / 60).clamp(i64::from(i32::MIN), i64::from(i32::MAX));
            let reminder = Reminder {
                minutes_before: i32::try_from(minutes).unwrap_or(0),
                method,
            };
            if !reminders.contains(&reminder) {
                reminders.push(reminder);
            }
        }
        reminders
    }

    /// The original starts `EXDATE` removes.
    fn exdates(&mut self, component: &ICalendarComponent, master: &Event) -> HashSet<Key> {
        let fallback = match &master.start {
            Start::Time { zone, .. } => Some(zone.clone()),
            Start::Date(_) => None,
        };
        let mut excluded = HashSet::new();
        for entry in component.properties(&ICalendarProperty::Exdate) {
            for value in entry.values.iter().filter_map(|v| v.as_partial_date_time()) {
                let Some(moment) = self.moment_of(entry, value, fallback.as_ref()) else {
                    continue;
                };
                excluded.insert(match (moment, master.start.is_date()) {
                    (Start::Date(date), _) => Key::Date(date),
                    (Start::Time { local, .. }, true) => Key::Date(local.date()),
                    (Start::Time { local, zone }, false) => Key::Instant(zone.to_utc(local)),
                });
            }
        }
        excluded
    }

    /// The master's occurrences near the window: `DTSTART` itself, every
    /// `RRULE`'s dates and the `RDATE`s, less `EXDATE`s and overridden ones.
    fn expand<'e>(&mut self, component: &ICalendarComponent, series: &Series<'e>, found: &mut Found<'e>) {
        let master = series.master;
        let (mut longest, mut furthest) = (master.span.at_most(), TimeDelta::zero());
        for one in series.future.values() {
            longest = longest.max(one.event.span.at_most());
            furthest = furthest.max(self.shift(one).map_or(TimeDelta::zero(), |s| s.abs()));
        }
        // Rules are searched from this far before the window at most: an
        // occurrence lasting (or moved by) more than a year is absurd, and a
        // search from centuries back costs a loop per day inside `rrule`.
        let (longest, furthest) = (longest.min(MAX_REACH), furthest.min(MAX_REACH));
        // Rule dates are wall-clock times: a date is placed in the calendar's
        // zone (up to 14 hours off UTC), a time in its own zone, where only
        // DST shifts of an hour or two can move it.
        let margin = if master.start.is_date() {
            TimeDelta::days(1)
        } else {
            TimeDelta::hours(3)
        };
        let reach = longest
            .checked_add(&furthest)
            .and_then(|d| d.checked_add(&margin))
            .unwrap_or(TimeDelta::MAX);
        let low = self
            .window
            .start()
            .checked_sub_signed(reach)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let high = self
            .window
            .end()
            .checked_add_signed(furthest.checked_add(&margin).unwrap_or(TimeDelta::MAX))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let (low, high) = match &master.start {
            Start::Date(_) => (low.naive_utc(), high.naive_utc()),
            Start::Time { zone, .. } => (zone.to_local(low), zone.to_local(high)),
        };

        let mut seen = HashSet::new();
        // Offers the occurrence at `local` once; says whether it overlaps the window.
        let mut add = |this: &Self, local: NaiveDateTime, span: Span, found: &mut Found<'e>| {
            let Some(occurrence) = this.occurrence(series, local, span) else {
                return false;
            };
            let key = occurrence.key;
            if seen.contains(&key) || !found.offer(this, occurrence) {
                return false;
            }
            seen.insert(key);
            true
        };

        add(self, master.start.local(), master.span, found);

        let start = master.start.local();
        let (mut stopped, mut too_old) = (false, false);
        let mut invalid = component.properties(&ICalendarProperty::Rrule).count() > rules(component).count();
        // RFC 5545: RRULE SHOULD NOT occur more than once; each costs time.
        for rule in rules(component).take(MAX_RULES) {
            let until = match rule.until.as_ref() {
                None => Ok(None),
                Some(until) => self.until(until, &master.start).ok_or(()).map(Some),
            };
            if rule.count.is_some() && (high - start).num_days() > MAX_COUNTED_DAYS {
                // COUNT is counted from DTSTART: no jumping ahead.
                too_old = true;
                continue;
            }
            let set = match until.and_then(|until| rule_set(rule, start, until, Some(low))) {
                Ok(Some(set)) => set,
                Ok(None) => continue,
                Err(()) => {
                    invalid = true;
                    continue;
                }
            };
            let mut kept = 0;
            for (step, date) in (&set).into_iter().enumerate() {
                if step >= MAX_RULE_STEPS {
                    stopped = true;
                    break;
                }
                let local = date.naive_utc();
                if local > high {
                    break;
                }
                if local < low {
                    continue;
                }
                if add(self, local, master.span, found) {
                    kept += 1;
                }
                if kept > MAX_OCCURRENCES {
                    // Enough to fill the cap; later dates would be cut anyway.
                    break;
                }
            }
        }
        if invalid {
            self.reject(RejectReason::InvalidField {
                field: "RRULE",
                problem: "not a valid recurrence rule; its dates are missing".into(),
            });
        }
        if too_old {
            self.reject(RejectReason::InvalidField {
                field: "RRULE",
                problem: "a COUNT rule starting this long before the window is not expanded".into(),
            });
        }
        if stopped {
            self.reject(RejectReason::InvalidField {
                field: "RRULE",
                problem: format!("stopped after {MAX_RULE_STEPS} dates; later occurrences are missing"),
            });
        }

        let fallback = match &master.start {
            Start::Time { zone, .. } => Some(zone.clone()),
            Start::Date(_) => None,
        };
        let mut rdates = Vec::new();
        for entry in component.properties(&ICalendarProperty::Rdate) {
            for value in &entry.values {
                let (begin, span) = match value {
                    ICalendarValue::PartialDateTime(value) => (value.as_ref(), None),
                    ICalendarValue::Period(ICalendarPeriod::Range { start, end }) => (start, Some(Err(end))),
                    ICalendarValue::Period(ICalendarPeriod::Duration { start, duration }) => {
                        (start, Some(Ok(duration)))
                    }
                    _ => continue,
                };
                let Some(begin) = self.moment_of(entry, begin, fallback.as_ref()) else {
                    continue;
                };
                let span = match span {
                    None => Some(master.span),
                    Some(Ok(duration)) => duration_span(duration, &begin).ok(),
                    Some(Err(end)) => self.moment_of(entry, end, fallback.as_ref()).and_then(|end| {
                        let begin_utc = utc_of(&begin, self.home);
                        let length = utc_of(&end, self.home) - begin_utc;
                        (length >= TimeDelta::zero()).then_some(Span::Exact(length))
                    }),
                };
                // An RDATE in another zone is the same instant on the master's clock.
                let local = match (&begin, &master.start) {
                    (Start::Time { local, zone }, Start::Time { zone: master_zone, .. }) => {
                        master_zone.to_local(zone.to_utc(*local))
                    }
                    (begin, _) => begin.local(),
                };
                if let Some(span) = span {
                    rdates.push((local, span));
                }
            }
        }
        for (local, span) in rdates {
            add(self, local, span, found);
        }
    }

    /// How a `THISANDFUTURE` override moves the occurrences after it.
    fn shift(&self, found: &Override) -> Option<TimeDelta> {
        match (found.key, &found.event.start) {
            (Key::Instant(original), Start::Time { local, zone }) => Some(zone.to_utc(*local) - original),
            (Key::Date(original), Start::Date(moved)) => Some(*moved - original),
            _ => None,
        }
    }

    /// The occurrence of the master at `local`, unless removed or overridden.
    fn occurrence<'e>(&self, series: &Series<'e>, local: NaiveDateTime, span: Span) -> Option<Occurrence<'e>> {
        let master = series.master;
        let key = match &master.start {
            Start::Date(_) => Key::Date(local.date()),
            Start::Time { zone, .. } => Key::Instant(zone.to_utc(local)),
        };
        let day = Key::Date(local.date());
        if series.excluded.contains(&key)
            || series.excluded.contains(&day)
            || series.overridden.contains(&key)
            || series.overridden.contains(&day)
        {
            return None;
        }
        let start = match &master.start {
            Start::Date(_) => Start::Date(local.date()),
            Start::Time { zone, .. } => Start::Time {
                local,
                zone: zone.clone(),
            },
        };
        let Some(found) = series
            .future
            .range(..key)
            .rev()
            .find(|(k, _)| k.precedes(key))
            .map(|(_, found)| *found)
        else {
            return Some(Occurrence {
                key: Some(key),
                start,
                span,
                details: &master.details,
            });
        };
        if found.event.details.status == EventStatus::Cancelled {
            return None;
        }
        let moved = match (key, &found.event.start, self.shift(found)) {
            (Key::Instant(original), Start::Time { zone, .. }, Some(shift)) => {
                let at = original.checked_add_signed(shift)?;
                Start::Time {
                    local: zone.to_local(at),
                    zone: zone.clone(),
                }
            }
            (Key::Date(original), Start::Date(_), Some(shift)) => {
                Start::Date(original.checked_add_signed(TimeDelta::try_days(shift.num_days())?)?)
            }
            _ => start,
        };
        Some(Occurrence {
            key: Some(key),
            start: moved,
            span: found.event.span,
            details: &found.event.details,
        })
    }

    /// A rule's `UNTIL` on the wall clock of the rule's start.
    fn until(&self, until: &PartialDateTime, start: &Start) -> Option<NaiveDateTime> {
        let value = until.to_date_time()?;
        Some(match (start, until.has_time(), value.offset) {
            (Start::Date(_), _, _) => value.date_time,
            // A date UNTIL on a timed series includes that whole day.
            (Start::Time { .. }, false, _) => value.date_time.date().and_hms_opt(23, 59, 59)?,
            (Start::Time { zone, .. }, true, Some(offset)) => {
                zone.to_local(minus_offset(value.date_time, offset.local_minus_utc()).and_utc())
            }
            (Start::Time { .. }, true, None) => value.date_time,
        })
    }

    /// Places an occurrence in time.
    fn place(&self, occurrence: &Occurrence) -> Result<Placed, RejectReason> {
        let out_of_range = || RejectReason::InvalidField {
            field: "DTSTART",
            problem: "outside the supported date range".into(),
        };
        match &occurrence.start {
            Start::Date(first) => {
                let days = match occurrence.span {
                    Span::Days(days) => days.max(1),
                    _ => 1,
                };
                let last = first
                    .checked_add_days(Days::new(days.unsigned_abs()))
                    .filter(|last| *last <= LAST_DAY)
                    .ok_or_else(out_of_range)?;
                Ok(Placed {
                    start: zones::start_of_day_utc(self.home, *first),
                    end: zones::start_of_day_utc(self.home, last),
                    all_day: Some(AllDayDates {
                        start: *first,
                        end: last,
                    }),
                    zero_length: false,
                })
            }
            Start::Time { local, zone } => {
                let start = zone.to_utc(*local);
                let end = match occurrence.span {
                    Span::Exact(length) => start.checked_add_signed(length),
                    Span::Days(days) => nominal_end(*local, zone, days, TimeDelta::zero()),
                    Span::Nominal { days, exact } => nominal_end(*local, zone, days, exact),
                }
                .ok_or_else(out_of_range)?;
                if end < start {
                    return Err(RejectReason::EndsBeforeStart);
                }
                if end == start {
                    let end = start
                        .checked_add_signed(TimeDelta::seconds(1))
                        .ok_or_else(out_of_range)?;
                    return Ok(Placed {
                        start,
                        end,
                        all_day: None,
                        zero_length: true,
                    });
                }
                Ok(Placed {
                    start,
                    end,
                    all_day: None,
                    zero_length: false,
                })
            }
        }
    }

    fn emit(&mut self, occurrence: &Occurrence, at: Placed) {
        let details = occurrence.details;
        let (external_id, series_id, instance_start) = match occurrence.key {
            None => (self.href.to_owned(), None, None),
            Some(key) => {
                let original = match key {
                    Key::Date(date) => zones::start_of_day_utc(self.home, date),
                    Key::Instant(at) => at,
                };
                (
                    format!("{}#{}", self.href, key.suffix()),
                    Some(self.href.to_owned()),
                    Some(original),
                )
            }
        };
        let event = CalendarEvent {
            id: EventId::new(),
            user_id: self.ctx.user_id.clone(),
            calendar_id: self.ctx.calendar_id,
            provider: self.ctx.provider,
            external_id,
            ical_uid: self.uid.clone(),
            title: details.title.clone(),
            location: details.location.clone(),
            description: details.description.clone(),
            start: at.start,
            end: at.end,
            time_zone: occurrence.start.zone_name().map(str::to_owned),
            all_day: at.all_day,
            status: details.status,
            // A zero-length event takes no time (see the module docs).
            transparency: if at.zero_length {
                Transparency::Transparent
            } else {
                details.transparency
            },
            self_response: details.self_response,
            kind: EventKind::Default,
            organizer: details.organizer.clone(),
            attendees: details.attendees.clone(),
            series_id,
            instance_start,
            reminders: details.reminders.clone(),
            etag: self.etag.map(str::to_owned),
            updated: details.updated,
        };
        self.out.changes.push(Change::Upsert(Box::new(event)));
    }
}

/// The span a `DURATION` gives.
fn duration_span(duration: &ICalendarDuration, start: &Start) -> Result<Span, RejectReason> {
    let days = i64::from(duration.weeks) * 7 + i64::from(duration.days);
    let exact = i64::from(duration.hours) * 3600 + i64::from(duration.minutes) * 60 + i64::from(duration.seconds);
    match start {
        // All-day: whole days, at least one (a negative or empty one is a writer bug).
        Start::Date(_) if duration.neg => Ok(Span::Days(1)),
        Start::Date(_) => Ok(Span::Days(days.saturating_add((exact + 86_399) / 86_400).max(1))),
        Start::Time { .. } if duration.neg && (days > 0 || exact > 0) => Err(RejectReason::EndsBeforeStart),
        Start::Time { .. } => Ok(Span::Nominal {
            days,
            exact: TimeDelta::seconds(exact),
        }),
    }
}

/// The end of a nominal length: days on the wall clock, then exact time.
fn nominal_end(local: NaiveDateTime, zone: &Zone, days: i64, exact: TimeDelta) -> Option<DateTime<Utc>> {
    let day_count = u64::try_from(days).ok()?;
    let later = local
        .checked_add_days(Days::new(day_count))
        .filter(|later| later.date() <= LAST_DAY)?;
    zone.to_utc(later).checked_add_signed(exact)
}

/// The instant of a start (a date: its midnight in `home`).
fn utc_of(start: &Start, home: Tz) -> DateTime<Utc> {
    match start {
        Start::Date(date) => zones::start_of_day_utc(home, *date),
        Start::Time { local, zone } => zone.to_utc(*local),
    }
}

/// The first value of a property, when it is a date, date-time or offset.
fn first_value<'c>(component: &'c ICalendarComponent, property: &ICalendarProperty) -> Option<&'c PartialDateTime> {
    component.property(property)?.values.first()?.as_partial_date_time()
}

/// The text of a property, when present and not blank.
fn text<'c>(component: &'c ICalendarComponent, property: &ICalendarProperty) -> Option<&'c str> {
    component
        .entries
        .iter()
        .filter(|e| e.name == *property)
        .find_map(|e| e.values.first().and_then(ICalendarValue::as_text))
        .filter(|t| !t.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%S").unwrap()
    }

    fn rule(text: &str) -> ICalendarRecurrenceRule {
        let data = format!("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nRRULE:{text}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n");
        let ical = ICalendar::parse(data).unwrap();
        rules(&ical.components[1]).next().unwrap().clone()
    }

    fn dates(set: &rrule::RRuleSet, from: NaiveDateTime, count: usize) -> Vec<NaiveDateTime> {
        set.into_iter()
            .map(|d| d.naive_utc())
            .filter(|d| *d >= from)
            .take(count)
            .collect()
    }

    #[test]
    fn jumping_ahead_does_not_change_the_dates() {
        let target = local("20260317T123456");
        for (text, start) in [
            ("FREQ=DAILY", "19970902T090000"),
            ("FREQ=DAILY;INTERVAL=3;BYHOUR=9,17", "19970902T090000"),
            ("FREQ=DAILY;BYMONTH=3,4;BYDAY=MO,FR", "19970902T090000"),
            ("FREQ=WEEKLY;INTERVAL=2;WKST=SU;BYDAY=MO,FR", "19970902T090000"),
            ("FREQ=WEEKLY;INTERVAL=3;BYDAY=TU,SA;BYSETPOS=-1", "19970902T090000"),
            (
                "FREQ=HOURLY;INTERVAL=5;BYHOUR=1,2,3,9,10,11;BYMINUTE=0,30",
                "20100101T013000",
            ),
            ("FREQ=MINUTELY;INTERVAL=7", "20251201T090003"),
            ("FREQ=SECONDLY;INTERVAL=13", "20260310T000000"),
        ] {
            let (rule, start) = (rule(text), local(start));
            let slow = rule_set(&rule, start, None, None).unwrap().unwrap();
            let fast = rule_set(&rule, start, None, Some(target)).unwrap().unwrap();
            assert!(
                *fast.get_dt_start() > rrule::Tz::UTC.from_utc_datetime(&local("20260101T000000")),
                "{text}"
            );
            let expected = dates(&slow, target, 50);
            assert_eq!(expected.len(), 50, "{text}");
            assert_eq!(dates(&fast, target, 50), expected, "{text}");
        }
    }

    #[test]
    fn count_rules_are_not_moved_and_until_before_the_jump_means_no_dates() {
        let start = local("20200101T090000");
        let counted = rule_set(&rule("FREQ=DAILY;COUNT=3"), start, None, Some(local("20260101T000000")));
        assert_eq!(
            *counted.unwrap().unwrap().get_dt_start(),
            rrule::Tz::UTC.from_utc_datetime(&start)
        );
        let ended = rule_set(
            &rule("FREQ=DAILY"),
            start,
            Some(local("20210101T000000")),
            Some(local("20260101T000000")),
        );
        assert!(ended.unwrap().is_none());
        assert!(
            rule_set(&rule("FREQ=WEEKLY;BYMONTHDAY=3"), start, None, None).is_err(),
            "BYMONTHDAY in a weekly rule"
        );
    }

    #[test]
    fn observances_give_the_offset_in_force() {
        let data = "BEGIN:VCALENDAR\r\nBEGIN:VTIMEZONE\r\nTZID:Somewhere\r\n\
            BEGIN:STANDARD\r\nDTSTART:19671029T020000\r\nRRULE:FREQ=YEARLY;BYDAY=1SU;BYMONTH=11\r\n\
            TZOFFSETFROM:-0400\r\nTZOFFSETTO:-0500\r\nEND:STANDARD\r\n\
            BEGIN:DAYLIGHT\r\nDTSTART:19870405T020000\r\nRRULE:FREQ=YEARLY;BYDAY=2SU;BYMONTH=3\r\n\
            TZOFFSETFROM:-0500\r\nTZOFFSETTO:-0400\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\nEND:VCALENDAR\r\n";
        let ical = ICalendar::parse(data).unwrap();
        let zone = observances(&ical, &ical.components[1], local("20300101T000000")).unwrap();
        // 2026: DST from 8 March 02:00 to 1 November 02:00 (local).
        let utc = |text: &str| zone.to_utc(local(text)).naive_utc();
        assert_eq!(utc("20260308T015959"), local("20260308T065959"));
        assert_eq!(utc("20260308T030000"), local("20260308T070000"));
        assert_eq!(utc("20260701T120000"), local("20260701T160000"));
        assert_eq!(utc("20261101T030000"), local("20261101T080000"));
        assert_eq!(
            zone.to_local(local("20260701T160000").and_utc()),
            local("20260701T120000")
        );
        assert_eq!(
            zone.to_local(local("20261101T070000").and_utc()),
            local("20261101T020000")
        );
        assert_eq!(
            utc("19500101T000000"),
            local("19500101T040000"),
            "before the first onset"
        );
    }

    #[test]
    fn occurrence_ids_use_utc_basic_format() {
        let at = local("20260105T090000").and_utc();
        assert_eq!(Key::Instant(at).suffix(), "20260105T090000Z");
        assert_eq!(Key::Date(at.date_naive()).suffix(), "20260105");
    }
}
