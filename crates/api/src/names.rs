//! Resource names (AIP-122): `connections/{uuid}`, `calendars/{uuid}`,
//! `events/{uuid}`, `syncJobs/{uuid}`, `users/{user}/calendarSettings`.

use std::str::FromStr;

use juy_domain::{AccountId, CalendarId, EventId, MeetingId, UserId};

use crate::error::ApiError;

/// The name of a connection.
pub fn connection(id: AccountId) -> String {
    format!("connections/{id}")
}

/// The name of a calendar.
pub fn calendar(id: CalendarId) -> String {
    format!("calendars/{id}")
}

/// The name of an event.
pub fn event(id: EventId) -> String {
    format!("events/{id}")
}

/// The name of a meeting.
pub fn meeting(id: MeetingId) -> String {
    format!("meetings/{id}")
}

/// The name of a user.
pub fn user(id: &UserId) -> String {
    format!("users/{id}")
}

/// Parses `meetings/{uuid}` given in `field`.
pub fn parse_meeting(field: &str, name: &str) -> Result<MeetingId, ApiError> {
    parse(field, "meetings", name)
}

/// Parses `users/{id}` given in `field`; `users/me` is `caller`.
pub fn parse_user(field: &str, name: &str, caller: &UserId) -> Result<UserId, ApiError> {
    match name.strip_prefix("users/") {
        Some("me") => Ok(caller.clone()),
        Some(id) if !id.contains('/') => {
            UserId::new(id).map_err(|_| ApiError::invalid(field, "must be a user name `users/{id}` with a valid id"))
        }
        _ => Err(ApiError::invalid(
            field,
            "must be a user name `users/{id}` or `users/me`",
        )),
    }
}

/// The name of a "sync now" job.
pub fn sync_job(id: uuid::Uuid) -> String {
    format!("syncJobs/{id}")
}

/// The name of the caller's settings singleton.
pub const MY_SETTINGS: &str = "users/me/calendarSettings";

fn parse<T: FromStr>(field: &str, collection: &str, name: &str) -> Result<T, ApiError> {
    name.strip_prefix(collection)
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| ApiError::invalid(field, format!("must be a resource name `{collection}/{{uuid}}`")))
}

/// Parses `connections/{uuid}` given in `field`.
pub fn parse_connection(field: &str, name: &str) -> Result<AccountId, ApiError> {
    parse(field, "connections", name)
}

/// Parses `calendars/{uuid}` given in `field`.
pub fn parse_calendar(field: &str, name: &str) -> Result<CalendarId, ApiError> {
    parse(field, "calendars", name)
}

/// Parses `syncJobs/{uuid}` given in `field`.
pub fn parse_sync_job(field: &str, name: &str) -> Result<uuid::Uuid, ApiError> {
    parse(field, "syncJobs", name)
}

/// Checks that `name` (in `field`) is the caller's settings: empty,
/// `users/me/calendarSettings` or `users/{caller}/calendarSettings`.
/// Another user's settings are reported as not found.
pub fn check_settings_name(field: &str, name: &str, caller: &UserId) -> Result<(), ApiError> {
    if name.is_empty() || name == MY_SETTINGS {
        return Ok(());
    }
    match name
        .strip_prefix("users/")
        .and_then(|r| r.strip_suffix("/calendarSettings"))
    {
        Some(user) if user == caller.as_str() => Ok(()),
        Some(_) => Err(ApiError::not_found(name)),
        None => Err(ApiError::invalid(field, format!("must be `{MY_SETTINGS}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_name_the_field() {
        let id = CalendarId::new();
        assert_eq!(parse_calendar("calendar", &calendar(id)).unwrap(), id);
        for bad in [
            "",
            "calendars/",
            "calendars/nope",
            "connections/00000000-0000-0000-0000-000000000000",
            "calendarsx/1",
        ] {
            let error = parse_calendar("calendars[0]", bad).unwrap_err();
            assert_eq!(error.violations[0].field, "calendars[0]", "{bad}");
        }
    }

    #[test]
    fn sync_job_names_round_trip() {
        let id = uuid::Uuid::now_v7();
        assert_eq!(parse_sync_job("name", &sync_job(id)).unwrap(), id);
        for bad in [
            "",
            "syncJobs/",
            "syncJobs/nope",
            "calendars/00000000-0000-0000-0000-000000000000",
        ] {
            assert_eq!(
                parse_sync_job("name", bad).unwrap_err().violations[0].field,
                "name",
                "{bad}"
            );
        }
    }

    #[test]
    fn settings_names() {
        let me = UserId::new("u1").unwrap();
        assert!(check_settings_name("name", "", &me).is_ok());
        assert!(check_settings_name("name", MY_SETTINGS, &me).is_ok());
        assert!(check_settings_name("name", "users/u1/calendarSettings", &me).is_ok());
        assert_eq!(
            check_settings_name("name", "users/u2/calendarSettings", &me)
                .unwrap_err()
                .code,
            crate::error::ErrorCode::NotFound
        );
        assert_eq!(
            check_settings_name("name", "settings", &me).unwrap_err().code,
            crate::error::ErrorCode::InvalidArgument
        );
    }
}
