//! `CreateMeeting`, `GetMeeting`, `UpdateMeeting` and `CancelMeeting`: the
//! rules (validation, conflicts, which calendar may be written) before a
//! meeting and its pending write-back are stored together. The write-back
//! itself is the dispatcher's (`juy_sync::outbox`).

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use juy_domain::{CalendarMode, Meeting, MeetingId, MeetingStatus, UserId};
use juy_store::{calendars, meetings};

use crate::auth::Caller;
use crate::availability::{AvailabilityState, parse_users};
use crate::error::{ApiError, ConflictDetail, FieldViolation};
use crate::names;
use crate::service::CalendarService;

/// The longest meeting.
pub const MAX_MEETING_HOURS: i64 = 24;
/// The most invitees (and attendee emails) of one meeting.
pub const MAX_INVITEES: usize = 100;

/// A meeting as given on the wire (create, or the fields of an update).
#[derive(Debug, Clone, Default)]
pub struct MeetingInput {
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Location.
    pub location: String,
    /// Start.
    pub start_time: Option<DateTime<Utc>>,
    /// End.
    pub end_time: Option<DateTime<Utc>>,
    /// IANA zone; empty = the organiser's.
    pub time_zone: String,
    /// `users/{id}` names.
    pub invitees: Vec<String>,
    /// Emails for the provider's event.
    pub attendee_emails: Vec<String>,
    /// Write it to an external calendar.
    pub add_to_external_calendar: bool,
    /// `calendars/{uuid}`; empty = the primary Write-mode calendar.
    pub calendar: String,
}

/// `CreateMeeting` as parsed from either surface.
#[derive(Debug, Clone, Default)]
pub struct CreateMeetingInput {
    /// The meeting.
    pub meeting: MeetingInput,
    /// Create it over conflicts.
    pub allow_conflicts: bool,
    /// Idempotency key; empty = none.
    pub request_id: String,
}

/// `UpdateMeeting` as parsed from either surface.
#[derive(Debug, Clone, Default)]
pub struct UpdateMeetingInput {
    /// `meetings/{uuid}`.
    pub name: String,
    /// The new values.
    pub meeting: MeetingInput,
    /// Field paths to change; empty = every field set in `meeting`.
    pub update_mask: Vec<String>,
    /// Change it over conflicts.
    pub allow_conflicts: bool,
}

const UPDATABLE: &[&str] = &[
    "title",
    "description",
    "location",
    "start_time",
    "end_time",
    "time_zone",
    "invitees",
    "attendee_emails",
];

fn check_text(field: &str, value: &str, max: usize, violations: &mut Vec<FieldViolation>) {
    if value.chars().count() > max {
        violations.push(FieldViolation {
            field: field.into(),
            description: format!("must have at most {max} characters"),
        });
    } else if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        violations.push(FieldViolation {
            field: field.into(),
            description: "must not contain control characters".into(),
        });
    }
}

fn check_emails(field: &str, emails: &[String], violations: &mut Vec<FieldViolation>) -> Vec<String> {
    if emails.len() > MAX_INVITEES {
        violations.push(FieldViolation {
            field: field.into(),
            description: format!("must have at most {MAX_INVITEES} addresses"),
        });
    }
    let mut out: Vec<String> = Vec::new();
    for (i, email) in emails.iter().enumerate() {
        let email = email.trim();
        let valid = email.len() <= 320
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
            })
            && !email
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == ',' || c == '<' || c == '>');
        if !valid {
            violations.push(FieldViolation {
                field: format!("{field}[{i}]"),
                description: "must be an email address".into(),
            });
        } else if !out.iter().any(|o| o.eq_ignore_ascii_case(email)) {
            out.push(email.to_owned());
        }
    }
    out
}

/// Checks the times of a meeting.
fn check_times(start: DateTime<Utc>, end: DateTime<Utc>, violations: &mut Vec<FieldViolation>) {
    if end <= start {
        violations.push(FieldViolation {
            field: "meeting.end_time".into(),
            description: "must be after start_time".into(),
        });
    } else if end - start > Duration::hours(MAX_MEETING_HOURS) {
        violations.push(FieldViolation {
            field: "meeting.end_time".into(),
            description: format!("must be at most {MAX_MEETING_HOURS} hours after start_time"),
        });
    }
}

impl CalendarService {
    /// Who of `people` is busy during `[start, end)`, as conflict details
    /// (intervals only); `except` is the meeting being moved.
    async fn conflicts(
        &self,
        conn: &mut juy_store::AsyncPgConnection,
        people: &[UserId],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        except: Option<MeetingId>,
    ) -> Result<Vec<ConflictDetail>, ApiError> {
        let gathered = self.gather(conn, people, start, end, except, None).await?;
        Ok(gathered
            .iter()
            .flat_map(|g| {
                g.busy.iter().map(|interval| ConflictDetail {
                    user: names::user(&g.user),
                    start_time: interval.start,
                    end_time: interval.end,
                    kind: busy_kind_name(interval.kind).to_owned(),
                })
            })
            .collect())
    }

    /// The organiser's zone, for a meeting given none.
    async fn organiser_zone(&self, conn: &mut juy_store::AsyncPgConnection, user: &UserId) -> Result<Tz, ApiError> {
        let now = self.now();
        let gathered = self
            .gather(
                conn,
                std::slice::from_ref(user),
                now,
                now + Duration::minutes(1),
                None,
                None,
            )
            .await?;
        Ok(gathered.first().map(|g| g.zone).unwrap_or(Tz::UTC))
    }

    /// `CreateMeeting`: the meeting, and whether this request created it
    /// (`false`: a retry with a `request_id` already used).
    pub async fn create_meeting(
        &self,
        caller: &Caller,
        input: CreateMeetingInput,
    ) -> Result<(Meeting, bool), ApiError> {
        let m = &input.meeting;
        let mut violations = Vec::new();
        if m.title.trim().is_empty() {
            violations.push(FieldViolation {
                field: "meeting.title".into(),
                description: "is required".into(),
            });
        }
        check_text("meeting.title", &m.title, 1024, &mut violations);
        check_text("meeting.description", &m.description, 8192, &mut violations);
        check_text("meeting.location", &m.location, 1024, &mut violations);
        if m.start_time.is_none() {
            violations.push(FieldViolation {
                field: "meeting.start_time".into(),
                description: "is required".into(),
            });
        }
        if m.end_time.is_none() {
            violations.push(FieldViolation {
                field: "meeting.end_time".into(),
                description: "is required".into(),
            });
        }
        if let (Some(start), Some(end)) = (m.start_time, m.end_time) {
            check_times(start, end, &mut violations);
        }
        let zone = parse_zone(&m.time_zone, &mut violations);
        let invitees = parse_invitees(caller, &m.invitees, &mut violations);
        let emails = check_emails("meeting.attendee_emails", &m.attendee_emails, &mut violations);
        let calendar = if m.calendar.is_empty() {
            None
        } else {
            match names::parse_calendar("meeting.calendar", &m.calendar) {
                Ok(id) => Some(id),
                Err(e) => {
                    violations.extend(e.violations);
                    None
                }
            }
        };
        if calendar.is_some() && !m.add_to_external_calendar {
            violations.push(FieldViolation {
                field: "meeting.calendar".into(),
                description: "is only used with add_to_external_calendar".into(),
            });
        }
        let request_id = input.request_id.as_str();
        if request_id.len() > 128 || request_id.chars().any(|c| c.is_control() || c.is_whitespace()) {
            violations.push(FieldViolation {
                field: "request_id".into(),
                description: "must be 1 to 128 printable characters without spaces".into(),
            });
        }
        let (Some(start), Some(end), true) = (m.start_time, m.end_time, violations.is_empty()) else {
            return Err(ApiError::invalid_fields(violations));
        };

        let mut conn = self.store.conn().await?;
        let key = self.store.data_key(&mut conn, &caller.user_id).await?;
        if !request_id.is_empty()
            && let Some(existing) = meetings::find_by_request(&mut conn, &key, &caller.user_id, request_id).await?
        {
            caller.audit.target(names::meeting(existing.id));
            return Ok((existing, false));
        }
        let calendar_id = if m.add_to_external_calendar {
            let owned = calendars::list_calendars(&mut conn, &key, &caller.user_id, None).await?;
            let target = match calendar {
                Some(id) => {
                    let found = owned
                        .iter()
                        .find(|c| c.id == id)
                        .ok_or_else(|| ApiError::not_found(names::calendar(id)))?;
                    if found.mode != CalendarMode::Write {
                        return Err(ApiError::failed_precondition(
                            "CALENDAR_READ_ONLY",
                            format!(
                                "meeting.calendar: {} is read-only; switch it to Write mode to add meetings to it",
                                names::calendar(id)
                            ),
                        ));
                    }
                    found
                }
                None => owned
                    .iter()
                    .filter(|c| c.mode == CalendarMode::Write)
                    .max_by_key(|c| c.is_primary)
                    .ok_or_else(|| {
                        ApiError::failed_precondition(
                            "NO_WRITE_CALENDAR",
                            "add_to_external_calendar: none of your calendars is in Write mode",
                        )
                    })?,
            };
            Some(target.id)
        } else {
            None
        };
        let zone = match zone {
            Some(zone) => zone,
            None => self.organiser_zone(&mut conn, &caller.user_id).await?,
        };
        let now = self.now();
        let id = MeetingId::new();
        let meeting = Meeting {
            id,
            organizer: caller.user_id.clone(),
            title: m.title.trim().to_owned(),
            description: non_empty(&m.description),
            location: non_empty(&m.location),
            attendee_emails: emails,
            start,
            end,
            time_zone: zone.name().to_owned(),
            invitees,
            status: MeetingStatus::Scheduled,
            version: 1,
            calendar_id,
            delivery: Default::default(),
            created_at: now,
            updated_at: now,
        };
        let people: Vec<UserId> = std::iter::once(caller.user_id.clone())
            .chain(meeting.invitees.iter().cloned())
            .collect();
        let new = meetings::NewMeeting {
            id,
            request_id: (!request_id.is_empty()).then_some(request_id),
            meeting: &meeting,
        };
        // The check and the insert it allows run under the people's locks:
        // two meetings racing for one person's time cannot both pass.
        let (stored, created) = meetings::with_people_locked(&mut conn, &people, async |conn| {
            if !input.allow_conflicts {
                let conflicts = self.conflicts(conn, &people, start, end, None).await?;
                if !conflicts.is_empty() {
                    return Err(ApiError::conflicts(conflicts));
                }
            }
            Ok::<_, ApiError>(meetings::insert_meeting(conn, &key, &new, now).await?)
        })
        .await?;
        if created && stored.calendar_id.is_some() {
            self.outbox_wakeup().notify();
        }
        caller.audit.target(names::meeting(stored.id));
        Ok((stored, created))
    }

    /// `GetMeeting`.
    pub async fn get_meeting(&self, caller: &Caller, name: &str) -> Result<Meeting, ApiError> {
        let id = names::parse_meeting("name", name)?;
        caller.audit.target(names::meeting(id));
        let mut conn = self.store.conn().await?;
        let key = self.store.data_key(&mut conn, &caller.user_id).await?;
        Ok(meetings::get_meeting(&mut conn, &key, &caller.user_id, id).await?)
    }

    /// `UpdateMeeting`.
    pub async fn update_meeting(&self, caller: &Caller, input: UpdateMeetingInput) -> Result<Meeting, ApiError> {
        let id = names::parse_meeting("meeting.name", &input.name)?;
        caller.audit.target(names::meeting(id));
        let m = &input.meeting;
        let mut violations = Vec::new();
        let paths: Vec<String> = if input.update_mask.is_empty() {
            let set = [
                ("title", !m.title.is_empty()),
                ("description", !m.description.is_empty()),
                ("location", !m.location.is_empty()),
                ("start_time", m.start_time.is_some()),
                ("end_time", m.end_time.is_some()),
                ("time_zone", !m.time_zone.is_empty()),
                ("invitees", !m.invitees.is_empty()),
                ("attendee_emails", !m.attendee_emails.is_empty()),
            ];
            set.iter().filter(|(_, on)| *on).map(|(p, _)| (*p).to_owned()).collect()
        } else {
            input.update_mask.clone()
        };
        for (i, path) in paths.iter().enumerate() {
            if !UPDATABLE.contains(&path.as_str()) {
                violations.push(FieldViolation {
                    field: format!("update_mask.paths[{i}]"),
                    description: format!("`{path}` cannot be changed; changeable: {}", UPDATABLE.join(", ")),
                });
            }
        }
        if paths.is_empty() {
            violations.push(FieldViolation {
                field: "update_mask".into(),
                description: "names no field to change".into(),
            });
        }
        let has = |p: &str| paths.iter().any(|q| q == p);
        if has("title") {
            if m.title.trim().is_empty() {
                violations.push(FieldViolation {
                    field: "meeting.title".into(),
                    description: "must not be empty".into(),
                });
            }
            check_text("meeting.title", &m.title, 1024, &mut violations);
        }
        check_text("meeting.description", &m.description, 8192, &mut violations);
        check_text("meeting.location", &m.location, 1024, &mut violations);
        for (path, value) in [("start_time", m.start_time), ("end_time", m.end_time)] {
            if has(path) && value.is_none() {
                violations.push(FieldViolation {
                    field: format!("meeting.{path}"),
                    description: "is required when in update_mask".into(),
                });
            }
        }
        let zone = if has("time_zone") {
            parse_zone(&m.time_zone, &mut violations)
        } else {
            None
        };
        let invitees = if has("invitees") {
            Some(parse_invitees(caller, &m.invitees, &mut violations))
        } else {
            None
        };
        let emails = if has("attendee_emails") {
            Some(check_emails(
                "meeting.attendee_emails",
                &m.attendee_emails,
                &mut violations,
            ))
        } else {
            None
        };
        if !violations.is_empty() {
            return Err(ApiError::invalid_fields(violations));
        }

        let mut conn = self.store.conn().await?;
        let key = self.store.data_key(&mut conn, &caller.user_id).await?;
        let current = meetings::get_meeting(&mut conn, &key, &caller.user_id, id).await?;
        if current.status == MeetingStatus::Cancelled {
            return Err(ApiError::failed_precondition(
                "MEETING_CANCELLED",
                format!("{} is cancelled and cannot change", names::meeting(id)),
            ));
        }
        let mut next = current.clone();
        if has("title") {
            next.title = m.title.trim().to_owned();
        }
        if has("description") {
            next.description = non_empty(&m.description);
        }
        if has("location") {
            next.location = non_empty(&m.location);
        }
        if let (true, Some(start)) = (has("start_time"), m.start_time) {
            next.start = start;
        }
        if let (true, Some(end)) = (has("end_time"), m.end_time) {
            next.end = end;
        }
        if has("time_zone") {
            next.time_zone = match zone {
                Some(zone) => zone.name().to_owned(),
                None => self.organiser_zone(&mut conn, &caller.user_id).await?.name().to_owned(),
            };
        }
        if let Some(invitees) = invitees {
            next.invitees = invitees;
        }
        if let Some(emails) = emails {
            next.attendee_emails = emails;
        }
        let mut violations = Vec::new();
        check_times(next.start, next.end, &mut violations);
        if !violations.is_empty() {
            return Err(ApiError::invalid_fields(violations));
        }
        let moved = next.start != current.start || next.end != current.end;
        let added: Vec<UserId> = next
            .invitees
            .iter()
            .filter(|u| !current.invitees.contains(u))
            .cloned()
            .collect();
        // A new time is checked for everyone; an unchanged time only for those just invited.
        let check: Vec<UserId> = if input.allow_conflicts {
            Vec::new()
        } else if moved {
            std::iter::once(caller.user_id.clone())
                .chain(next.invitees.iter().cloned())
                .collect()
        } else {
            added
        };
        let people: Vec<UserId> = std::iter::once(caller.user_id.clone())
            .chain(next.invitees.iter().cloned())
            .collect();
        let now = self.now();
        let stored = meetings::with_people_locked(&mut conn, &people, async |conn| {
            if !check.is_empty() {
                let conflicts = self.conflicts(conn, &check, next.start, next.end, Some(id)).await?;
                if !conflicts.is_empty() {
                    return Err(ApiError::conflicts(conflicts));
                }
            }
            Ok::<_, ApiError>(meetings::save_meeting(conn, &key, &next, now).await?)
        })
        .await?;
        if stored.calendar_id.is_some() {
            self.outbox_wakeup().notify();
        }
        Ok(stored)
    }

    /// `CancelMeeting`: cancelling a cancelled meeting returns it unchanged.
    pub async fn cancel_meeting(&self, caller: &Caller, name: &str) -> Result<Meeting, ApiError> {
        let id = names::parse_meeting("name", name)?;
        caller.audit.target(names::meeting(id));
        let mut conn = self.store.conn().await?;
        let key = self.store.data_key(&mut conn, &caller.user_id).await?;
        let current = meetings::get_meeting(&mut conn, &key, &caller.user_id, id).await?;
        if current.status == MeetingStatus::Cancelled {
            return Ok(current);
        }
        let next = Meeting {
            status: MeetingStatus::Cancelled,
            ..current
        };
        let stored = meetings::save_meeting(&mut conn, &key, &next, self.now()).await?;
        if stored.calendar_id.is_some() {
            self.outbox_wakeup().notify();
        }
        Ok(stored)
    }
}

fn non_empty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn parse_zone(name: &str, violations: &mut Vec<FieldViolation>) -> Option<Tz> {
    if name.is_empty() {
        return None;
    }
    match name.parse::<Tz>() {
        Ok(zone) => Some(zone),
        Err(_) => {
            violations.push(FieldViolation {
                field: "meeting.time_zone".into(),
                description: "must be an IANA time zone such as Europe/Berlin".into(),
            });
            None
        }
    }
}

fn parse_invitees(caller: &Caller, given: &[String], violations: &mut Vec<FieldViolation>) -> Vec<UserId> {
    if given.is_empty() {
        return Vec::new();
    }
    if given.len() > MAX_INVITEES {
        violations.push(FieldViolation {
            field: "meeting.invitees".into(),
            description: format!("must list at most {MAX_INVITEES} users"),
        });
        return Vec::new();
    }
    let mut found = Vec::new();
    let users = parse_users(caller, given.iter().map(String::as_str), "meeting.invitees", &mut found);
    // parse_users insists on at least one user and at most 50; a meeting may have none or 100.
    violations.extend(found.into_iter().filter(|v| v.field != "meeting.invitees"));
    users.into_iter().filter(|u| *u != caller.user_id).collect()
}

/// The stable name of a busy kind (REST and conflict details).
pub fn busy_kind_name(kind: juy_availability::BusyKind) -> &'static str {
    match kind {
        juy_availability::BusyKind::Tentative => "tentative",
        juy_availability::BusyKind::Busy => "busy",
        juy_availability::BusyKind::OutOfOffice => "out_of_office",
    }
}

/// The stable name of an availability state (REST).
pub fn availability_state_name(state: AvailabilityState) -> &'static str {
    match state {
        AvailabilityState::Known => "known",
        AvailabilityState::Partial => "partial",
        AvailabilityState::Unknown => "unknown",
        AvailabilityState::NoCalendars => "no_calendars",
    }
}
