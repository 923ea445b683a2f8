//! calendars
