//! `QueryFreeBusy` and `FindSlots` (the `Availability` service), and the
//! busy-time gathering that `CreateMeeting`/`UpdateMeeting` check conflicts
//! with. Busy time is read from the store's plaintext columns only (times,
//! status, transparency, answer, kind): nothing is decrypted, and nothing
//! but intervals leaves for users other than the caller.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use juy_availability::blocks::members_overlapping;
use juy_availability::{
    BusyInterval, BusyKind, BusySpan, Invitee, Slot, SlotQuery, WorkingHours, WorkingPeriod, busy_kind, busy_span,
    find_slots, merge, owner_zone,
};
use juy_domain::{AccountStatus, EventId, MeetingId, SyncStatus, UserId};
use juy_store::AsyncPgConnection;
use juy_store::availability::{self as store_availability, AvailabilitySettings, CalendarHealth};
use juy_store::busy_blocks::{self, BlocksRead};

use crate::auth::Caller;
use crate::error::{ApiError, FieldViolation};
use crate::names;
use crate::service::CalendarService;

/// The longest range `QueryFreeBusy` and `FindSlots` accept.
pub const MAX_RANGE_DAYS: i64 = 62;
/// The most users one request may name.
pub const MAX_USERS: usize = 50;
/// How old a calendar's last successful sync may be before its busy time
/// stops counting as known (the default of `availability.stale_after`).
pub const DEFAULT_STALE_AFTER: Duration = Duration::hours(1);

/// How much a user's busy time can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvailabilityState {
    /// Every calendar synced recently.
    Known,
    /// Some calendars are in error or stale.
    Partial,
    /// No calendar synced recently.
    Unknown,
    /// No calendar connected.
    NoCalendars,
}

/// What caused a busy interval (only ever shown to the owner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BusySource {
    /// A synced event.
    Event(EventId),
    /// A Juy meeting.
    Meeting(MeetingId),
}

/// One merged busy interval as answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusyOut {
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// How busy.
    pub kind: BusyKind,
    /// What caused it; empty unless the interval is the caller's own.
    pub sources: Vec<BusySource>,
}

/// One user's busy time as answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFreeBusy {
    /// The user.
    pub user: UserId,
    /// How complete `busy` is.
    pub state: AvailabilityState,
    /// Why it is not known.
    pub state_reason: Option<String>,
    /// The intervals.
    pub busy: Vec<BusyOut>,
    /// Their zone.
    pub time_zone: String,
    /// The oldest successful sync among the calendars that count.
    pub data_time: Option<DateTime<Utc>>,
}

/// `QueryFreeBusy` as parsed from either surface.
#[derive(Debug, Clone, Default)]
pub struct FreeBusyInput {
    /// `users/{id}` names.
    pub users: Vec<String>,
    /// Range start.
    pub start_time: Option<DateTime<Utc>>,
    /// Range end.
    pub end_time: Option<DateTime<Utc>>,
}

/// A working period as given on the wire.
#[derive(Debug, Clone, Default)]
pub struct WorkingPeriodInput {
    /// The weekday; `None` when unspecified.
    pub day: Option<Weekday>,
    /// `HH:MM`.
    pub start_time: String,
    /// `HH:MM` or `24:00`.
    pub end_time: String,
}

/// One invitee of `FindSlots`.
#[derive(Debug, Clone, Default)]
pub struct SlotInviteeInput {
    /// `users/{id}`.
    pub user: String,
    /// Optional attendee.
    pub optional: bool,
    /// IANA zone override.
    pub time_zone: String,
    /// Working hours override.
    pub working_hours: Vec<WorkingPeriodInput>,
    /// Any time of day counts.
    pub ignore_working_hours: bool,
}

/// `FindSlots` as parsed from either surface.
#[derive(Debug, Clone, Default)]
pub struct SlotsInput {
    /// The invitees.
    pub invitees: Vec<SlotInviteeInput>,
    /// Meeting length.
    pub duration: Option<Duration>,
    /// Range start.
    pub start_time: Option<DateTime<Utc>>,
    /// Range end.
    pub end_time: Option<DateTime<Utc>>,
    /// Start alignment; `None` = 30 minutes.
    pub granularity: Option<Duration>,
    /// Free time before.
    pub buffer_before: Option<Duration>,
    /// Free time after.
    pub buffer_after: Option<Duration>,
    /// Alignment zone; empty = the caller's.
    pub time_zone: String,
    /// Most slots; 0 = 10.
    pub max_results: i32,
    /// Tentative time does not block.
    pub tentative_is_free: bool,
}

/// A required invitee who blocks, with intervals only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotConflictOut {
    /// The invitee.
    pub user: UserId,
    /// When they are busy.
    pub busy: Vec<BusyOut>,
}

/// The answer of `FindSlots`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotsOutput {
    /// Slots, best first (invitee ids are user ids).
    pub slots: Vec<Slot>,
    /// Who conflicts when, if no slot fits.
    pub conflicts: Vec<SlotConflictOut>,
    /// Working hours never overlap in the range.
    pub no_common_hours: bool,
    /// Invitees whose busy time is not known in full.
    pub incomplete: Vec<(UserId, AvailabilityState, Option<String>)>,
}

/// The busy time of one user, gathered.
#[derive(Debug, Clone)]
pub(crate) struct Gathered {
    pub(crate) user: UserId,
    pub(crate) state: AvailabilityState,
    pub(crate) state_reason: Option<String>,
    pub(crate) zone: Tz,
    pub(crate) settings: AvailabilitySettings,
    pub(crate) data_time: Option<DateTime<Utc>>,
    pub(crate) busy: Vec<BusyInterval>,
    pub(crate) sources: Vec<BusySource>,
}

impl Gathered {
    fn out(&self, with_sources: bool) -> Vec<BusyOut> {
        self.busy
            .iter()
            .map(|interval| BusyOut {
                start: interval.start,
                end: interval.end,
                kind: interval.kind,
                sources: if with_sources {
                    // Sorted, so an answer does not depend on the rows' order in the database.
                    // Blocks read without members carry no source (`NO_SOURCE`).
                    let mut sources: Vec<BusySource> = interval
                        .sources
                        .iter()
                        .filter_map(|&i| self.sources.get(i))
                        .copied()
                        .collect();
                    sources.sort_unstable();
                    sources
                } else {
                    Vec::new()
                },
            })
            .collect()
    }
}

fn zone_of(settings: &AvailabilitySettings, calendars: &[&CalendarHealth]) -> Tz {
    owner_zone(
        settings.time_zone.as_deref(),
        calendars.iter().map(|c| (c.is_primary, c.time_zone.as_deref())),
    )
}

/// The source of a piece read from busy blocks without members: names nothing.
const NO_SOURCE: usize = usize::MAX;

fn state_of(
    calendars: &[&CalendarHealth],
    now: DateTime<Utc>,
    stale_after: Duration,
) -> (AvailabilityState, Option<String>, Option<DateTime<Utc>>) {
    if calendars.is_empty() {
        return (
            AvailabilityState::NoCalendars,
            Some("no calendar is connected".into()),
            None,
        );
    }
    let fresh: Vec<&&CalendarHealth> = calendars
        .iter()
        .filter(|c| {
            c.account_status != AccountStatus::ReauthRequired
                && c.sync_status == SyncStatus::Ok
                && c.last_synced_at.is_some_and(|at| now - at <= stale_after)
        })
        .collect();
    let data_time = fresh.iter().filter_map(|c| c.last_synced_at).min();
    let (total, good) = (calendars.len(), fresh.len());
    if good == total {
        (AvailabilityState::Known, None, data_time)
    } else if good == 0 {
        (
            AvailabilityState::Unknown,
            Some(format!(
                "none of {total} calendars synced in the last {} minutes (in error, stale or never synced)",
                stale_after.num_minutes()
            )),
            None,
        )
    } else {
        (
            AvailabilityState::Partial,
            Some(format!(
                "{} of {total} calendars are in error, stale or never synced",
                total - good
            )),
            data_time,
        )
    }
}

impl CalendarService {
    /// Gathers the merged busy time of `users` over `[from, to)`; `except`
    /// is a meeting left out (one being moved); `explain` is the user whose
    /// intervals will name their events (the others' name nothing).
    ///
    /// Each user is read from their busy blocks when those are up to date
    /// (`juy_store::busy_blocks`), else from their events; both give the
    /// same answer, the blocks a few hundred rows instead of every event.
    pub(crate) async fn gather(
        &self,
        conn: &mut AsyncPgConnection,
        users: &[UserId],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        except: Option<MeetingId>,
        explain: Option<&UserId>,
    ) -> Result<Vec<Gathered>, ApiError> {
        let now = self.now();
        // Sent together, answered in one go (pipelined on the connection):
        // the blocks are checked against the users' zones afterwards.
        let explained = explain.and_then(|who| users.iter().position(|u| u == who));
        let (health, mut settings, built, meetings) = futures::try_join!(
            store_availability::calendar_health(conn, users),
            store_availability::settings_of(conn, users),
            busy_blocks::read_built_blocks(conn, users, from, to, explained),
            store_availability::busy_meetings(conn, users, from, to, except),
        )?;

        let index: HashMap<&UserId, usize> = users.iter().enumerate().map(|(i, u)| (u, i)).collect();
        let mut calendars: Vec<Vec<&CalendarHealth>> = vec![Vec::new(); users.len()];
        for calendar in &health {
            if let Some(&i) = index.get(&calendar.user_id) {
                calendars[i].push(calendar);
            }
        }
        let mut gathered: Vec<Gathered> = users
            .iter()
            .zip(&calendars)
            .map(|(user, calendars)| {
                let settings = settings.remove(user).unwrap_or_default();
                let (state, state_reason, data_time) = state_of(calendars, now, self.stale_after());
                Gathered {
                    user: user.clone(),
                    state,
                    state_reason,
                    zone: zone_of(&settings, calendars),
                    settings,
                    data_time,
                    busy: Vec::new(),
                    sources: Vec::new(),
                }
            })
            .collect();
        let reads: Vec<BlocksRead> = built
            .into_iter()
            .zip(&gathered)
            .map(|(built, g)| built.for_zone(g.zone.name()))
            .collect();
        // Marked for a rebuild: users with calendars only (a user without
        // any has no events to read, and any name may be asked for).
        let unbuilt: Vec<&UserId> = users
            .iter()
            .zip(&reads)
            .zip(&calendars)
            .filter(|((_, read), calendars)| **read == BlocksRead::Unbuilt && !calendars.is_empty())
            .map(|((u, _), _)| u)
            .collect();
        busy_blocks::mark_dirty(conn, &unbuilt).await?;
        let from_events: Vec<UserId> = users
            .iter()
            .zip(&reads)
            .filter(|(_, read)| !matches!(read, BlocksRead::Fresh(_)))
            .map(|(u, _)| u.clone())
            .collect();
        let mut events = if from_events.is_empty() {
            Vec::new()
        } else {
            store_availability::busy_events(conn, &from_events, from, to).await?
        }
        .into_iter();

        let mut spans: Vec<Vec<BusySpan>> = Vec::with_capacity(users.len());
        for (i, (g, read)) in gathered.iter_mut().zip(reads).enumerate() {
            let mut mine = Vec::new();
            match read {
                BlocksRead::Fresh(blocks) if explained == Some(i) => {
                    for member in members_overlapping(&blocks, from, to) {
                        mine.push(BusySpan {
                            start: member.start,
                            end: member.end,
                            kind: member.kind,
                            source: g.sources.len(),
                        });
                        g.sources.push(BusySource::Event(member.event));
                    }
                }
                BlocksRead::Fresh(blocks) => mine.extend(blocks.iter().map(|b| BusySpan {
                    start: b.start,
                    end: b.end,
                    kind: b.kind,
                    source: NO_SOURCE,
                })),
                BlocksRead::Dirty | BlocksRead::Unbuilt => {
                    let list = events.next().unwrap_or_default();
                    g.sources.reserve(list.len());
                    for event in list {
                        let Some(kind) = busy_kind(&event.facts) else { continue };
                        let (start, end) = busy_span(&event.facts, g.zone);
                        mine.push(BusySpan {
                            start,
                            end,
                            kind,
                            source: g.sources.len(),
                        });
                        g.sources.push(BusySource::Event(event.id));
                    }
                }
            }
            spans.push(mine);
        }
        for meeting in &meetings {
            let people = std::iter::once(&meeting.organizer).chain(&meeting.invitees);
            let mut seen = HashSet::new();
            for person in people {
                let Some(&i) = index.get(person) else { continue };
                if !seen.insert(i) {
                    continue;
                }
                let source = gathered[i].sources.len();
                gathered[i].sources.push(BusySource::Meeting(meeting.id));
                spans[i].push(BusySpan {
                    start: meeting.start,
                    end: meeting.end,
                    kind: BusyKind::Busy,
                    source,
                });
            }
        }
        for (g, spans) in gathered.iter_mut().zip(&spans) {
            g.busy = merge(spans, from, to);
        }
        Ok(gathered)
    }

    /// `QueryFreeBusy`.
    pub async fn query_free_busy(&self, caller: &Caller, input: FreeBusyInput) -> Result<Vec<UserFreeBusy>, ApiError> {
        let mut violations = Vec::new();
        let users = parse_users(caller, input.users.iter().map(String::as_str), "users", &mut violations);
        let range = parse_range(input.start_time, input.end_time, &mut violations);
        let (Some((from, to)), true) = (range, violations.is_empty()) else {
            return Err(ApiError::invalid_fields(violations));
        };
        let mut conn = self.store.conn().await?;
        let gathered = self
            .gather(&mut conn, &users, from, to, None, Some(&caller.user_id))
            .await?;
        Ok(gathered
            .into_iter()
            .map(|g| UserFreeBusy {
                busy: g.out(g.user == caller.user_id),
                user: g.user.clone(),
                state: g.state,
                state_reason: g.state_reason.clone(),
                time_zone: g.zone.name().to_owned(),
                data_time: g.data_time,
            })
            .collect())
    }

    /// `FindSlots`.
    pub async fn find_slots(&self, caller: &Caller, input: SlotsInput) -> Result<SlotsOutput, ApiError> {
        let mut violations = Vec::new();
        let mut invitee_violations = Vec::new();
        let users = parse_users(
            caller,
            input.invitees.iter().map(|i| i.user.as_str()),
            "invitees",
            &mut invitee_violations,
        );
        for v in &mut invitee_violations {
            // parse_users names `invitees[i]`; the user is the invitee's `user` field.
            if v.field.starts_with("invitees[") {
                v.field.push_str(".user");
            }
        }
        let mut overrides: Vec<(Option<Tz>, Option<Vec<WorkingPeriod>>)> = Vec::new();
        for (i, invitee) in input.invitees.iter().enumerate() {
            let zone = if invitee.time_zone.is_empty() {
                None
            } else {
                match invitee.time_zone.parse::<Tz>() {
                    Ok(zone) => Some(zone),
                    Err(_) => {
                        violate(
                            &mut violations,
                            format!("invitees[{i}].time_zone"),
                            "must be an IANA time zone",
                        );
                        None
                    }
                }
            };
            let hours = if invitee.working_hours.is_empty() {
                None
            } else {
                match parse_periods(&format!("invitees[{i}].working_hours"), &invitee.working_hours) {
                    Ok(periods) => Some(periods),
                    Err(mut e) => {
                        violations.append(&mut e);
                        None
                    }
                }
            };
            overrides.push((zone, hours));
        }
        let minutes = |d: Duration| d.num_minutes();
        let duration = match input.duration {
            None => {
                violate(&mut violations, "duration".into(), "is required");
                Duration::zero()
            }
            Some(d) if d < Duration::minutes(5) || d > Duration::hours(24) || d.subsec_nanos() != 0 => {
                violate(
                    &mut violations,
                    "duration".into(),
                    "must be whole seconds from 5 minutes to 24 hours",
                );
                d
            }
            Some(d) => d,
        };
        let granularity = input.granularity.unwrap_or(Duration::minutes(30));
        if granularity < Duration::minutes(5)
            || granularity > Duration::hours(24)
            || minutes(granularity) * 60 != granularity.num_seconds()
        {
            violate(
                &mut violations,
                "granularity".into(),
                "must be whole minutes from 5 minutes to 24 hours",
            );
        }
        let buffer_before = input.buffer_before.unwrap_or_else(Duration::zero);
        let buffer_after = input.buffer_after.unwrap_or_else(Duration::zero);
        for (field, value) in [("buffer_before", buffer_before), ("buffer_after", buffer_after)] {
            if value < Duration::zero() || value > Duration::hours(4) {
                violate(&mut violations, field.into(), "must be from 0 to 4 hours");
            }
        }
        let align_zone = if input.time_zone.is_empty() {
            None
        } else {
            match input.time_zone.parse::<Tz>() {
                Ok(zone) => Some(zone),
                Err(_) => {
                    violate(&mut violations, "time_zone".into(), "must be an IANA time zone");
                    None
                }
            }
        };
        let max_results = match input.max_results {
            0 => 10,
            n @ 1..=100 => n as usize,
            _ => {
                violate(&mut violations, "max_results".into(), "must be between 1 and 100");
                0
            }
        };
        violations.append(&mut invitee_violations);
        let range = parse_range(input.start_time, input.end_time, &mut violations);
        let (Some((from, to)), true) = (range, violations.is_empty()) else {
            return Err(ApiError::invalid_fields(violations));
        };

        let mut conn = self.store.conn().await?;
        let mut everyone = users.clone();
        if align_zone.is_none() && !everyone.contains(&caller.user_id) {
            everyone.push(caller.user_id.clone());
        }
        let gathered = self
            .gather(
                &mut conn,
                &everyone,
                from - buffer_before,
                to + buffer_after,
                None,
                None,
            )
            .await?;
        let align_zone = align_zone
            .or_else(|| gathered.iter().find(|g| g.user == caller.user_id).map(|g| g.zone))
            .unwrap_or(Tz::UTC);
        let invitees: Vec<Invitee> = input
            .invitees
            .iter()
            .zip(&users)
            .zip(&overrides)
            .zip(&gathered)
            .map(|(((given, user), (zone, hours)), g)| {
                let zone = zone.unwrap_or(g.zone);
                let hours = if given.ignore_working_hours {
                    WorkingHours::always(zone)
                } else {
                    match hours.clone().or_else(|| g.settings.working_hours.clone()) {
                        Some(periods) => WorkingHours { zone, periods },
                        None => WorkingHours::office(zone),
                    }
                };
                Invitee {
                    id: user.as_str().to_owned(),
                    busy: g.busy.clone(),
                    hours,
                    required: !given.optional,
                }
            })
            .collect();
        let query = SlotQuery {
            from,
            to,
            duration,
            granularity,
            buffer_before,
            buffer_after,
            align_zone,
            tentative_is_busy: !input.tentative_is_free,
            max_results,
        };
        let search = find_slots(&query, &invitees).map_err(|e| match e {
            juy_availability::SlotError::Invalid { field, reason } => ApiError::invalid(field, reason),
        })?;
        let by_id: HashMap<&str, &UserId> = users.iter().map(|u| (u.as_str(), u)).collect();
        Ok(SlotsOutput {
            slots: search.slots,
            conflicts: search
                .conflicts
                .into_iter()
                .filter_map(|c| {
                    let user = (*by_id.get(c.invitee.as_str())?).clone();
                    Some(SlotConflictOut {
                        user,
                        busy: c
                            .intervals
                            .into_iter()
                            .map(|i| BusyOut {
                                start: i.start,
                                end: i.end,
                                kind: i.kind,
                                sources: Vec::new(),
                            })
                            .collect(),
                    })
                })
                .collect(),
            no_common_hours: search.no_common_hours,
            incomplete: gathered
                .iter()
                .take(users.len())
                .filter(|g| g.state != AvailabilityState::Known)
                .map(|g| (g.user.clone(), g.state, g.state_reason.clone()))
                .collect(),
        })
    }
}

fn violate(violations: &mut Vec<FieldViolation>, field: String, description: &str) {
    violations.push(FieldViolation {
        field,
        description: description.into(),
    });
}

/// Parses user names given in `field` (1 to [`MAX_USERS`], no repeats).
pub(crate) fn parse_users<'a>(
    caller: &Caller,
    names: impl Iterator<Item = &'a str>,
    field: &str,
    violations: &mut Vec<FieldViolation>,
) -> Vec<UserId> {
    let mut users: Vec<UserId> = Vec::new();
    let mut count = 0;
    for (i, name) in names.enumerate() {
        count += 1;
        match names::parse_user(&format!("{field}[{i}]"), name, &caller.user_id) {
            Ok(user) if users.contains(&user) => violations.push(FieldViolation {
                field: format!("{field}[{i}]"),
                description: "names a user already listed".into(),
            }),
            Ok(user) => users.push(user),
            Err(e) => violations.extend(e.violations),
        }
    }
    if count == 0 || count > MAX_USERS {
        violations.push(FieldViolation {
            field: field.into(),
            description: format!("must list 1 to {MAX_USERS} users"),
        });
    }
    users
}

fn parse_range(
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    violations: &mut Vec<FieldViolation>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let mut violation = |field: &str, description: String| {
        violations.push(FieldViolation {
            field: field.into(),
            description,
        })
    };
    match (start, end) {
        (Some(start), Some(end)) if end <= start => {
            violation("end_time", "must be after start_time".into());
            None
        }
        (Some(start), Some(end)) if end - start > Duration::days(MAX_RANGE_DAYS) => {
            violation(
                "end_time",
                format!("must be at most {MAX_RANGE_DAYS} days after start_time"),
            );
            None
        }
        (Some(start), Some(end)) => Some((start, end)),
        (start, end) => {
            if start.is_none() {
                violation("start_time", "is required".into());
            }
            if end.is_none() {
                violation("end_time", "is required".into());
            }
            None
        }
    }
}

/// Parses working periods given in `field`; errors name each bad entry.
pub(crate) fn parse_periods(
    field: &str,
    given: &[WorkingPeriodInput],
) -> Result<Vec<WorkingPeriod>, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    let mut periods = Vec::new();
    let time = |text: &str| -> Option<(NaiveTime, bool)> {
        if text == "24:00" {
            return Some((NaiveTime::MIN, true));
        }
        let (h, m) = text.split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        NaiveTime::from_hms_opt(h.parse().ok()?, m.parse().ok()?, 0).map(|t| (t, false))
    };
    if given.len() > 70 {
        violations.push(FieldViolation {
            field: field.into(),
            description: "must have at most 70 periods".into(),
        });
    }
    for (i, p) in given.iter().enumerate() {
        let at = |name: &str| format!("{field}[{i}].{name}");
        let Some(day) = p.day else {
            violations.push(FieldViolation {
                field: at("day"),
                description: "is required".into(),
            });
            continue;
        };
        let start = match time(&p.start_time) {
            Some((t, false)) => Some(t),
            _ => {
                violations.push(FieldViolation {
                    field: at("start_time"),
                    description: "must be a local time HH:MM".into(),
                });
                None
            }
        };
        let end = match time(&p.end_time) {
            Some(pair) => Some(pair),
            None => {
                violations.push(FieldViolation {
                    field: at("end_time"),
                    description: "must be a local time HH:MM or 24:00".into(),
                });
                None
            }
        };
        if let (Some(start), Some((end, midnight))) = (start, end) {
            if !midnight && end <= start {
                violations.push(FieldViolation {
                    field: at("end_time"),
                    description: "must be after start_time".into(),
                });
                continue;
            }
            let overlaps = periods.iter().any(|q: &WorkingPeriod| {
                let q_end = if q.end == NaiveTime::MIN { None } else { Some(q.end) };
                let p_end = if midnight { None } else { Some(end) };
                q.day == day && q_end.is_none_or(|q_end| start < q_end) && p_end.is_none_or(|p_end| q.start < p_end)
            });
            if overlaps {
                violations.push(FieldViolation {
                    field: at("start_time"),
                    description: "overlaps another period of the same day".into(),
                });
                continue;
            }
            periods.push(WorkingPeriod { day, start, end });
        }
    }
    if violations.is_empty() {
        Ok(periods)
    } else {
        Err(violations)
    }
}
