//! Zone names as providers send them.

use chrono::{NaiveDate, NaiveDateTime};
use chrono_tz::Tz;
use juy_normalizer::zones::{local_to_utc, resolve, start_of_day_utc, windows_to_iana};

#[test]
fn windows_names_map_to_iana() {
    let cases = [
        ("W. Europe Standard Time", "Europe/Berlin"),
        ("Pacific Standard Time", "America/Los_Angeles"),
        ("India Standard Time", "Asia/Kolkata"),
        ("UTC", "Etc/UTC"),
        ("Dateline Standard Time", "Etc/GMT+12"),
        ("GMT Standard Time", "Europe/London"),
        ("FLE Standard Time", "Europe/Kyiv"),
        ("Eastern Standard Time", "America/New_York"),
        ("Tokyo Standard Time", "Asia/Tokyo"),
        ("AUS Eastern Standard Time", "Australia/Sydney"),
        ("Pacific Standard Time (Mexico)", "America/Tijuana"),
        ("UTC+12", "Etc/GMT-12"),
        ("Line Islands Standard Time", "Pacific/Kiritimati"),
    ];
    for (windows, iana) in cases {
        assert_eq!(windows_to_iana(windows), Some(iana), "{windows}");
    }
    assert_eq!(windows_to_iana("w. europe standard time"), Some("Europe/Berlin"));
    assert_eq!(windows_to_iana("Europe/Berlin"), None);
    assert_eq!(windows_to_iana("Atlantis Standard Time"), None);
    assert_eq!(windows_to_iana(""), None);
}

#[test]
fn resolve_accepts_iana_windows_and_aliases() {
    assert_eq!(resolve("Europe/Berlin"), Some(Tz::Europe__Berlin));
    assert_eq!(resolve("  America/New_York \r\n"), Some(Tz::America__New_York));
    assert_eq!(resolve("europe/berlin"), Some(Tz::Europe__Berlin));
    assert_eq!(
        resolve("AMERICA/ARGENTINA/BUENOS_AIRES"),
        Some(Tz::America__Argentina__Buenos_Aires)
    );
    assert_eq!(resolve("W. Europe Standard Time"), Some(Tz::Europe__Berlin));
    assert_eq!(resolve("Romance Standard Time"), Some(Tz::Europe__Paris));
    // A link name is a valid IANA name and stays as it is.
    assert_eq!(resolve("Asia/Calcutta"), Some(Tz::Asia__Calcutta));
    for utc in ["UTC", "utc", "GMT", "Z", "Etc/UTC", "etc/utc", "tzone://Microsoft/Utc"] {
        assert_eq!(resolve(utc), Some(Tz::UTC), "{utc}");
    }
    // Windows "UTC" is caught by the alias first.
    assert_eq!(resolve("UTC").map(|tz| tz.name()), Some("UTC"));
}

#[test]
fn resolve_refuses_unknown_names() {
    for unknown in [
        "",
        "   ",
        "tzone://Microsoft/Custom",
        "Customized Time Zone",
        "Mars/Olympus_Mons",
        "+01:00",
        "CEST",
    ] {
        assert_eq!(resolve(unknown), None, "{unknown}");
    }
}

fn local(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S").expect("a local date-time")
}

#[test]
fn local_times_follow_daylight_saving_time() {
    let berlin = resolve("W. Europe Standard Time").unwrap();
    let at = |text: &str| local_to_utc(berlin, local(text)).to_rfc3339();
    assert_eq!(at("2026-01-05T09:00:00"), "2026-01-05T08:00:00+00:00");
    assert_eq!(at("2026-07-06T09:00:00"), "2026-07-06T07:00:00+00:00");
    // Repeated hour: the first (summer-time) occurrence.
    assert_eq!(at("2026-10-25T02:30:00"), "2026-10-25T00:30:00+00:00");
    // Skipped hour: read with the offset before the gap.
    assert_eq!(at("2026-03-29T02:30:00"), "2026-03-29T01:30:00+00:00");

    let new_york = resolve("Eastern Standard Time").unwrap();
    assert_eq!(
        local_to_utc(new_york, local("2026-03-08T02:30:00")).to_rfc3339(),
        "2026-03-08T07:30:00+00:00"
    );

    // Samoa skipped 30 December 2011 entirely.
    let apia = resolve("Samoa Standard Time").unwrap();
    assert_eq!(
        local_to_utc(apia, local("2011-12-30T09:00:00")).to_rfc3339(),
        "2011-12-30T19:00:00+00:00"
    );
}

#[test]
fn start_of_day_is_local_midnight() {
    let day = NaiveDate::from_ymd_opt(2026, 1, 5).unwrap();
    assert_eq!(
        start_of_day_utc(Tz::Europe__Berlin, day).to_rfc3339(),
        "2026-01-04T23:00:00+00:00"
    );
    assert_eq!(start_of_day_utc(Tz::UTC, day).to_rfc3339(), "2026-01-05T00:00:00+00:00");
    // Midnight that does not exist (Chile's spring-forward at 24:00 local time).
    let santiago_dst = NaiveDate::from_ymd_opt(2025, 9, 7).unwrap();
    assert_eq!(
        start_of_day_utc(Tz::America__Santiago, santiago_dst).to_rfc3339(),
        "2025-09-07T04:00:00+00:00"
    );
}
