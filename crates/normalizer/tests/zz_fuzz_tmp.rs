#![allow(missing_docs)]
use juy_domain::{CalendarId, Provider, TimeRange, UserId};
use juy_normalizer::CalendarContext;
#[test]
fn fuzz_rules() {
    let ctx = CalendarContext { user_id: UserId::new("u").expect("u"), calendar_id: CalendarId::new(), provider: Provider::Caldav, time_zone: Some("Pacific/Chatham".into()), default_reminders: vec![], self_emails: vec![] };
    let w = TimeRange::new("2026-01-01T00:00:00Z".parse().expect("d"), "2027-01-01T00:00:00Z".parse().expect("d")).expect("r");
    let mut seed: u64 = std::env::var("SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(88172645463325252);
    let mut rnd = move |n: u64| { seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17; seed % n };
    let freqs = ["SECONDLY","MINUTELY","HOURLY","DAILY","WEEKLY","MONTHLY","YEARLY"];
    let parts = ["INTERVAL=1","INTERVAL=65535","INTERVAL=3","COUNT=1","COUNT=4294967295","UNTIL=20260301","UNTIL=20260301T000000Z","UNTIL=99991231T235959Z","UNTIL=00010101",
        "BYSETPOS=1","BYSETPOS=-366","BYSETPOS=366","BYSETPOS=0","BYMONTH=2","BYMONTH=13","BYMONTHDAY=31","BYMONTHDAY=-31","BYMONTHDAY=30","BYYEARDAY=366","BYYEARDAY=-366","BYWEEKNO=53","BYWEEKNO=-53",
        "BYDAY=MO","BYDAY=-1SU","BYDAY=53MO","BYDAY=-5FR,2TU","BYHOUR=23","BYHOUR=24","BYMINUTE=59","BYSECOND=60","BYSECOND=0,30","WKST=SU","RSCALE=GREGORIAN","SKIP=FORWARD"];
    let starts = ["DTSTART:00010101T000000Z","DTSTART:99991231T235959Z","DTSTART;VALUE=DATE:20260229","DTSTART;TZID=Europe/Berlin:20260329T023000","DTSTART;TZID=Pacific/Apia:20111230T000000","DTSTART:20260101T000000","DTSTART;VALUE=DATE:99991231","DTSTART;VALUE=DATE:00000101","DTSTART:19000101T000000Z","DTSTART;TZID=Nowhere:20260105T090000"];
    let ends = ["", "DTEND:99991231T235959Z\r\n", "DURATION:P99999999W\r\n", "DURATION:-PT1H\r\n", "DURATION:PT0S\r\n", "DTEND;VALUE=DATE:00010101\r\n", "DURATION:P1D\r\n"];
    let started = std::time::Instant::now();
    let mut slowest = std::time::Duration::ZERO;
    for i in 0..4000 {
        let mut rule = format!("FREQ={}", freqs[rnd(7) as usize]);
        for _ in 0..rnd(5) { rule.push(';'); rule.push_str(parts[rnd(parts.len() as u64) as usize]); }
        let mut extra = String::new();
        if rnd(3) == 0 { extra.push_str("RECURRENCE-ID;RANGE=THISANDFUTURE:20260110T000000Z\r\n"); }
        if rnd(3) == 0 { extra.push_str("EXDATE:20260110T000000Z,99991231\r\nRDATE;VALUE=PERIOD:20260110T000000Z/P9999W\r\n"); }
        let body = format!("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\n{}\r\n{}RRULE:{}\r\n{}END:VEVENT\r\nBEGIN:VEVENT\r\nUID:x\r\nRECURRENCE-ID:{}\r\nDTSTART:20260201T000000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            starts[rnd(starts.len() as u64) as usize], ends[rnd(ends.len() as u64) as usize], rule, extra, ["20260101T000000Z","20260229","99991231T235959Z"][rnd(3) as usize]);
        let t = std::time::Instant::now();
        let r = juy_normalizer::ical::normalize_object(&ctx, "h", None, &body, w);
        let el = t.elapsed();
        if el > slowest { slowest = el; eprintln!("#{i} {el:?} {rule} changes={} rej={}", r.changes.len(), r.rejected.len()); }
    }
    eprintln!("total {:?}", started.elapsed());
}
