//! The CalDAV client against a real Radicale: discovery (well-known, root,
//! a calendar home on another host), calendars, listings in pages, writes
//! with idempotency and `If-Match`, `sync-collection` changes, and the URL
//! policy (private addresses, redirects) with a small axum front where
//! Radicale cannot play the part.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] functions

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use chrono::{TimeZone as _, Utc};
use futures::TryStreamExt as _;
use juy_domain::TimeRange;
use juy_integration_tests::caldav::Radicale;
use juy_providers::caldav::{CalDavClient, discover};
use juy_providers::{CalendarProvider, EventPage, EventWrite, ProviderError, RawEvent, UrlPolicy};

const USER: &str = "alice";
const PASSWORD: &str = "app-specific-secret";

fn port_of(base_url: &str) -> u16 {
    base_url.rsplit(':').next().unwrap().parse().unwrap()
}

/// The policy a deployment with Radicale on loopback would have: its `host:port` allow-listed.
fn policy_for(server: &Radicale) -> UrlPolicy {
    UrlPolicy::new([format!("127.0.0.1:{}", port_of(&server.base_url))])
}

fn http(policy: &UrlPolicy) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    policy.build_client(Duration::from_secs(10)).unwrap()
}

fn client(server: &Radicale) -> CalDavClient {
    let policy = policy_for(server);
    CalDavClient::with_password(
        http(&policy),
        policy,
        &format!("{}/{USER}/", server.base_url),
        USER,
        PASSWORD,
    )
    .unwrap()
}

/// A plain client for setting up and checking Radicale behind the client's back.
fn raw() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Creates a calendar collection with a name, an Apple colour and the component types given.
async fn mkcalendar(server: &Radicale, name: &str, display: &str, components: &[&str]) -> String {
    let url = format!("{}/{USER}/{name}/", server.base_url);
    let comps: String = components.iter().map(|c| format!(r#"<C:comp name="{c}"/>"#)).collect();
    let body = format!(
        r##"<?xml version="1.0" encoding="utf-8"?><C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:A="http://apple.com/ns/ical/"><D:set><D:prop><D:displayname>{display}</D:displayname><A:calendar-color>#1BADF8FF</A:calendar-color><C:supported-calendar-component-set>{comps}</C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>"##
    );
    let answer = raw()
        .request(Method::from_bytes(b"MKCALENDAR").unwrap(), &url)
        .basic_auth(USER, Some(PASSWORD))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201, "MKCALENDAR {name}");
    url
}

/// A PUT that is not ours: another client's event.
async fn put_foreign(url: &str, uid: &str) {
    let body = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Other//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260106T120000Z\r\nDTEND:20260106T130000Z\r\nSUMMARY:Lunch\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    );
    let answer = raw()
        .put(url)
        .basic_auth(USER, Some(PASSWORD))
        .header("content-type", "text/calendar")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "PUT {url}: {}", answer.status());
}

async fn raw_get(url: &str) -> String {
    raw()
        .get(url)
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn ctag_of(url: &str) -> String {
    let body = r#"<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/"><d:prop><cs:getctag/></d:prop></d:propfind>"#;
    let text = raw()
        .request(Method::from_bytes(b"PROPFIND").unwrap(), url)
        .basic_auth(USER, Some(PASSWORD))
        .header("depth", "0")
        .body(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = text.find("getctag>").unwrap() + "getctag>".len();
    text[start..start + text[start..].find('<').unwrap()].to_owned()
}

fn event(title: &str, day: u32, hour: u32) -> EventWrite {
    EventWrite {
        title: title.into(),
        description: Some("Agenda: one, two; three\nand more".into()),
        location: None,
        start: Utc.with_ymd_and_hms(2026, 1, day, hour, 0, 0).unwrap(),
        end: Utc.with_ymd_and_hms(2026, 1, day, hour + 1, 0, 0).unwrap(),
        time_zone: "Europe/Berlin".into(),
        attendees: vec![],
    }
}

fn january() -> TimeRange {
    TimeRange::new(
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap(),
    )
    .unwrap()
}

fn ical(raw: &RawEvent) -> (&str, Option<&str>, &str) {
    match raw {
        RawEvent::ICal { href, etag, data } => (href, etag.as_deref(), data),
        other => panic!("not iCalendar: {other:?}"),
    }
}

fn hrefs(pages: &[EventPage]) -> Vec<String> {
    let mut hrefs: Vec<String> = pages
        .iter()
        .flat_map(|page| page.items.iter().map(|item| ical(item).0.to_owned()))
        .collect();
    hrefs.sort();
    hrefs
}

// ---------------------------------------------------------------- discovery

#[tokio::test]
async fn discovery_finds_principal_home_and_event_calendars_via_well_known() {
    let server = Radicale::start(&[(USER, PASSWORD)]);
    let work = mkcalendar(&server, "work", "Work", &["VEVENT"]).await;
    mkcalendar(&server, "todo", "Chores", &["VTODO"]).await;
    let mixed = mkcalendar(&server, "mixed", "Mixed", &["VEVENT", "VTODO"]).await;
    let policy = policy_for(&server);

    // Radicale answers /.well-known/caldav with a 301 to `/`: the PROPFIND is re-issued there.
    let found = discover(&http(&policy), &policy, &server.base_url, USER, PASSWORD)
        .await
        .unwrap();
    assert_eq!(found.principal_url, format!("{}/{USER}/", server.base_url));
    assert_eq!(found.home_url, format!("{}/{USER}/", server.base_url));
    let mut calendars = found.calendars.clone();
    calendars.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<_> = calendars.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["Mixed", "Work"], "the VTODO-only calendar is left out");
    assert_eq!(calendars[0].id, mixed);
    assert_eq!(calendars[1].id, work);
    assert_eq!(calendars[1].color.as_deref(), Some("#1badf8"));
    assert!(calendars.iter().all(|c| c.can_write && !c.is_primary));

    // A URL below the root finds the same account.
    let again = discover(
        &http(&policy),
        &policy,
        &format!("{}/{USER}/work/", server.base_url),
        USER,
        PASSWORD,
    )
    .await
    .unwrap();
    assert_eq!(again.home_url, found.home_url);

    // The client built on the home lists the same calendars.
    let listed = client(&server).list_calendars().await.unwrap();
    assert_eq!(listed.len(), 2);
}

#[tokio::test]
async fn wrong_password_is_unauthorized() {
    let server = Radicale::start(&[(USER, PASSWORD)]);
    let policy = policy_for(&server);
    let error = discover(&http(&policy), &policy, &server.base_url, USER, "wrong")
        .await
        .unwrap_err();
    assert_eq!(error, ProviderError::Unauthorized);

    let wrong = CalDavClient::with_password(
        http(&policy),
        policy,
        &format!("{}/{USER}/", server.base_url),
        USER,
        "wrong",
    )
    .unwrap();
    assert_eq!(wrong.list_calendars().await.unwrap_err(), ProviderError::Unauthorized);
}

#[tokio::test]
async fn unreachable_server_is_a_network_error_without_secrets() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // closed again when the listener drops
    let policy = UrlPolicy::new([format!("127.0.0.1:{port}")]);
    let error = discover(
        &http(&policy),
        &policy,
        &format!("http://127.0.0.1:{port}"),
        USER,
        PASSWORD,
    )
    .await
    .unwrap_err();
    match &error {
        ProviderError::Network(message) => assert!(message.contains("could not connect"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(error.is_retryable());
    assert!(!error.to_string().contains(PASSWORD));
}

#[tokio::test]
async fn policy_refuses_plain_http_and_private_addresses() {
    let server = Radicale::start(&[(USER, PASSWORD)]);
    let closed = UrlPolicy::default();
    let client = http(&closed);
    for (url, cause) in [
        (server.base_url.as_str(), "not https"),
        ("https://10.0.0.1/", "private"),
        ("https://169.254.169.254/", "private"),
        ("https://[::ffff:127.0.0.1]:8443/", "private"),
        ("10.0.0.1", "private"),
    ] {
        match discover(&client, &closed, url, USER, PASSWORD).await {
            Err(ProviderError::UrlNotAllowed(reason)) => assert!(reason.contains(cause), "{url}: {reason}"),
            other => panic!("{url}: {other:?}"),
        }
    }
    assert!(CalDavClient::with_password(client, closed, &server.base_url, USER, PASSWORD).is_err());
}

// ------------------------------------------------------------ the axum front

/// How the front answers.
#[derive(Debug, Clone)]
enum Front {
    /// No well-known; the root names a principal whose calendar home is `home` (another host).
    HomeElsewhere { home: String },
    /// Every request is redirected with `status` to `location`.
    Redirect { status: u16, location: String },
    /// Every path redirects to the next one, forever.
    RedirectLoop { status: u16 },
    /// 503 with `Retry-After: 7`.
    Unavailable,
    /// 207 whose body is not XML.
    NotXml,
    /// 207 with a body of 33 MiB.
    Huge,
    /// Never answers.
    Stall,
    /// A sync-collection server that truncates (507) its first answer and
    /// answers an invalid token with 412, as Xandikos does.
    TruncatingSync,
}

/// The `<d:href>` values of a request body.
fn request_hrefs(body: &str) -> Vec<String> {
    body.split("<d:href>")
        .skip(1)
        .filter_map(|rest| rest.split_once("</d:href>").map(|(href, _)| href.to_owned()))
        .collect()
}

async fn front_handler(State(front): State<Arc<Front>>, method: Method, uri: Uri, body: String) -> Response {
    let multistatus = |inner: String| {
        Response::builder()
            .status(207)
            .header("content-type", "application/xml; charset=utf-8")
            .body(Body::from(format!(
                r#"<?xml version="1.0"?><D:multistatus xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:response><D:href>{}</D:href><D:propstat><D:prop>{inner}</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>"#,
                uri.path()
            )))
            .unwrap()
    };
    let status = |code: u16| Response::builder().status(code).body(Body::empty()).unwrap();
    match front.as_ref() {
        Front::HomeElsewhere { home } => match (method.as_str(), uri.path()) {
            ("PROPFIND", "/.well-known/caldav") => status(404),
            ("PROPFIND", "/") if body.contains("current-user-principal") => multistatus(
                "<D:current-user-principal><D:href>/principals/alice/</D:href></D:current-user-principal>".into(),
            ),
            ("PROPFIND", "/principals/alice/") if body.contains("calendar-home-set") => multistatus(format!(
                "<C:calendar-home-set><D:href>{home}</D:href></C:calendar-home-set>"
            )),
            _ => status(404),
        },
        Front::Redirect { status, location } => Response::builder()
            .status(*status)
            .header("location", location)
            .body(Body::empty())
            .unwrap(),
        Front::RedirectLoop { status } => {
            let n: u32 = uri.path().trim_start_matches("/loop/").parse().unwrap_or(0);
            Response::builder()
                .status(*status)
                .header("location", format!("/loop/{}", n + 1))
                .body(Body::empty())
                .unwrap()
        }
        Front::Unavailable => Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header("retry-after", HeaderValue::from_static("7"))
            .body(Body::empty())
            .unwrap(),
        Front::NotXml => Response::builder()
            .status(207)
            .body(Body::from("<html><body>I am a teapot</body>"))
            .unwrap(),
        Front::Huge => Response::builder()
            .status(207)
            .body(Body::from(vec![b' '; 33 * 1024 * 1024]))
            .unwrap(),
        Front::Stall => futures::future::pending().await,
        Front::TruncatingSync => {
            let xml = |status: u16, body: String| {
                Response::builder()
                    .status(status)
                    .header("content-type", "application/xml; charset=utf-8")
                    .body(Body::from(body))
                    .unwrap()
            };
            let member = |href: &str, inner: &str| {
                format!(
                    r#"<D:response><D:href>{href}</D:href><D:propstat><D:prop>{inner}</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"#
                )
            };
            let gone = |href: &str, status: &str| {
                format!(r#"<D:response><D:href>{href}</D:href><D:status>HTTP/1.1 {status}</D:status></D:response>"#)
            };
            let multistatus = |responses: String, token: &str| {
                format!(
                    r#"<?xml version="1.0"?><D:multistatus xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">{responses}<D:sync-token>{token}</D:sync-token></D:multistatus>"#
                )
            };
            if body.contains("sync-collection") {
                if body.contains(">t1<") {
                    let responses = member("/cal/a.ics", r#"<D:getetag>"a1"</D:getetag>"#)
                        + &gone("/cal/", "507 Insufficient Storage");
                    xml(207, multistatus(responses, "t2"))
                } else if body.contains(">t2<") {
                    let responses =
                        gone("/cal/b.ics", "404 Not Found") + &member("/cal/c.ics", r#"<D:getetag>"c1"</D:getetag>"#);
                    xml(207, multistatus(responses, "t3"))
                } else {
                    xml(
                        412,
                        r#"<?xml version="1.0"?><D:error xmlns:D="DAV:"><D:valid-sync-token/></D:error>"#.into(),
                    )
                }
            } else if body.contains("calendar-multiget") {
                let responses: String = request_hrefs(&body)
                    .iter()
                    .map(|href| {
                        member(
                            href,
                            &format!(
                                "<D:getetag>\"e\"</D:getetag><C:calendar-data>BEGIN:VCALENDAR&#13;\nUID:{href}&#13;\nEND:VCALENDAR&#13;\n</C:calendar-data>"
                            ),
                        )
                    })
                    .collect();
                xml(
                    207,
                    format!(
                        r#"<D:multistatus xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">{responses}</D:multistatus>"#
                    ),
                )
            } else {
                status(400)
            }
        }
    }
}

/// Serves `front` on 127.0.0.1 at a free port; returns `http://127.0.0.1:PORT`.
async fn start_front(front: Front) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(front_handler).with_state(Arc::new(front));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn discovery_via_root_follows_a_calendar_home_on_another_host() {
    let server = Radicale::start(&[(USER, PASSWORD)]);
    mkcalendar(&server, "work", "Work", &["VEVENT"]).await;
    let radicale_port = port_of(&server.base_url);
    // "localhost" is another host name for the same Radicale, as pNN-caldav.icloud.com is for iCloud.
    let home = format!("http://localhost:{radicale_port}/{USER}/");
    let front = start_front(Front::HomeElsewhere { home: home.clone() }).await;
    let front_entry = front.trim_start_matches("http://").to_owned();

    let policy = UrlPolicy::new([front_entry.clone(), format!("localhost:{radicale_port}")]);
    let found = discover(&http(&policy), &policy, &front, USER, PASSWORD).await.unwrap();
    assert_eq!(found.principal_url, format!("{front}/principals/alice/"));
    assert_eq!(found.home_url, home);
    assert_eq!(found.calendars.len(), 1);
    assert_eq!(found.calendars[0].id, format!("{home}work/"));

    // The home's host is checked like any other URL: not allow-listed, it is refused.
    let strict = UrlPolicy::new([front_entry]);
    match discover(&http(&strict), &strict, &front, USER, PASSWORD).await {
        Err(ProviderError::UrlNotAllowed(reason)) => assert!(reason.contains("localhost"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn redirects_to_private_or_unlisted_addresses_are_refused() {
    for (status, location, cause) in [
        (301, "https://10.0.0.1/".to_owned(), "private"),
        (307, "https://10.0.0.1/".to_owned(), "private"),
        (308, "https://[fd00::1]/dav/".to_owned(), "private"),
        (302, "http://127.0.0.1:9/".to_owned(), "not https"),
        // https to a name: allowed by the URL check, refused when it resolves to loopback.
        (301, "https://localhost:9/".to_owned(), "private"),
        (307, "https://localhost:9/".to_owned(), "private"),
    ] {
        let front = start_front(Front::Redirect {
            status,
            location: location.clone(),
        })
        .await;
        let policy = UrlPolicy::new([front.trim_start_matches("http://")]);
        match discover(&http(&policy), &policy, &front, USER, PASSWORD).await {
            Err(ProviderError::UrlNotAllowed(reason)) => {
                assert!(reason.contains(cause), "{status} {location}: {reason}");
            }
            other => panic!("{status} {location}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn redirect_loops_stop_after_a_few_hops() {
    // 301s come back to the client, 307s are followed inside reqwest: both are capped.
    for status in [301, 307] {
        let front = start_front(Front::RedirectLoop { status }).await;
        let policy = UrlPolicy::new([front.trim_start_matches("http://")]);
        match discover(&http(&policy), &policy, &front, USER, PASSWORD).await {
            Err(ProviderError::UrlNotAllowed(reason)) => assert!(reason.contains("too many redirects"), "{reason}"),
            other => panic!("{status}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn throttling_malformed_huge_and_stalled_answers_are_classified() {
    async fn list_at(front: Front, timeout: Duration) -> ProviderError {
        let base = start_front(front).await;
        let policy = UrlPolicy::new([base.trim_start_matches("http://")]);
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = policy.build_client(timeout).unwrap();
        let client = CalDavClient::with_password(http, policy, &format!("{base}/home/"), USER, PASSWORD).unwrap();
        client.list_calendars().await.unwrap_err()
    }
    assert_eq!(
        list_at(Front::Unavailable, Duration::from_secs(10)).await,
        ProviderError::Retryable {
            status: 503,
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert!(matches!(
        list_at(Front::NotXml, Duration::from_secs(10)).await,
        ProviderError::Malformed(_)
    ));
    match list_at(Front::Huge, Duration::from_secs(10)).await {
        ProviderError::Malformed(reason) => assert!(reason.contains("MiB"), "{reason}"),
        other => panic!("{other:?}"),
    }
    match list_at(Front::Stall, Duration::from_millis(500)).await {
        ProviderError::Network(reason) => assert!(reason.contains("timed out"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

// ----------------------------------------------------------- events and sync

#[tokio::test]
async fn list_events_comes_in_pages_with_the_cursor_on_the_last() {
    let server = Radicale::start(&[(USER, PASSWORD)]);
    let calendar = mkcalendar(&server, "work", "Work", &["VEVENT"]).await;
    let client = client(&server).with_multiget_batch(2);
    for (i, day) in [5, 6, 7, 8, 9].into_iter().enumerate() {
        client
            .create_event(
                &calendar,
                &format!("event{i:05}"),
                &event(&format!("Meeting {i}"), day, 9),
            )
            .await
            .unwrap();
    }
    let mut outside = event("Next year", 5, 9);
    outside.start = Utc.with_ymd_and_hms(2027, 1, 5, 9, 0, 0).unwrap();
    outside.end = Utc.with_ymd_and_hms(2027, 1, 5, 10, 0, 0).unwrap();
    client.create_event(&calendar, "outside01", &outside).await.unwrap();

    let pages: Vec<EventPage> = client.list_events(&calendar, january()).try_collect().await.unwrap();
    let sizes: Vec<usize> = pages.iter().map(|page| page.items.len()).collect();
    assert_eq!(sizes, [2, 2, 1]);
    assert!(pages[..2].iter().all(|page| page.next_cursor.is_none()));
    let cursor = pages[2].next_cursor.as_deref().unwrap();
    assert!(cursor.starts_with("http://radicale.org/ns/sync/"), "{cursor}");
    for item in pages.iter().flat_map(|page| &page.items) {
        let (href, etag, data) = ical(item);
        assert!(href.starts_with(&calendar) && href.ends_with(".ics"), "{href}");
        assert!(etag.is_some());
        assert!(data.contains("BEGIN:VEVENT") && !data.contains("Next year"));
    }
    assert_eq!(hrefs(&pages).len(), 5);

    // An empty calendar is one page carrying the cursor.
    let empty = mkcalendar(&server, "empty", "Empty", &["VEVENT"]).await;
    let pages: Vec<EventPage> = client.list_events(&empty, january()).try_collect().await.unwrap();
    assert_eq!(pages.len(), 1);
    assert!(pages[0].items.is_empty() && pages[0].next_cursor.is_some());

    // A calendar that does not exist.
    let missing = format!("{}/{USER}/nope/", server.base_url);
    let result: Result<Vec<EventPage>, _> = client.list_events(&missing, january()).try_collect().await;
    assert_eq!(result.unwrap_err(), ProviderError::NotFound);
}

#[tokio::test]
async fn writes_are_idempotent_and_guarded_by_etags() {
    let server = Radicale::start(&[(USER, PASSWORD)]);
    let calendar = mkcalendar(&server, "work", "Work", &["VEVENT"]).await;
    let client = client(&server);

    let first = client
        .create_event(&calendar, "abcde12345", &event("Plan", 5, 9))
        .await
        .unwrap();
    assert_eq!(first.external_id, format!("{calendar}abcde12345.ics"));
    let stored = raw_get(&first.external_id).await;
    assert!(stored.contains("UID:abcde12345@juy"), "{stored}");
    assert!(stored.contains("DTSTART:20260105T090000Z"), "{stored}");
    assert!(stored.contains("Agenda: one\\, two\\; three\\nand more"), "{stored}");

    // A retried create returns the stored event instead of a duplicate.
    let retried = client
        .create_event(&calendar, "abcde12345", &event("Plan", 5, 9))
        .await
        .unwrap();
    assert_eq!(retried.external_id, first.external_id);
    assert_eq!(retried.etag, first.etag);
    assert!(matches!(retried.raw, Some(RawEvent::ICal { .. })));

    // A resource of that name holding someone else's event is not ours.
    put_foreign(&format!("{calendar}zzzzz99999.ics"), "foreign-uid@example.com").await;
    assert_eq!(
        client
            .create_event(&calendar, "zzzzz99999", &event("Mine", 5, 9))
            .await
            .unwrap_err(),
        ProviderError::AlreadyExists
    );

    // Updates: a stale etag fails, the current one succeeds and keeps the UID.
    let stale = Some("\"not-the-etag\"");
    assert_eq!(
        client
            .update_event(&calendar, &first.external_id, stale, &event("Plan v2", 5, 10))
            .await
            .unwrap_err(),
        ProviderError::PreconditionFailed
    );
    let updated = client
        .update_event(
            &calendar,
            &first.external_id,
            first.etag.as_deref(),
            &event("Plan v2", 5, 10),
        )
        .await
        .unwrap();
    assert_ne!(updated.etag, first.etag);
    let stored = raw_get(&first.external_id).await;
    assert!(
        stored.contains("SUMMARY:Plan v2") && stored.contains("UID:abcde12345@juy"),
        "{stored}"
    );
    assert!(stored.contains("SEQUENCE:1"), "{stored}");

    // A foreign event keeps its own UID when we update it.
    let foreign = format!("{calendar}zzzzz99999.ics");
    client
        .update_event(&calendar, &foreign, None, &event("Lunch moved", 6, 13))
        .await
        .unwrap();
    assert!(raw_get(&foreign).await.contains("UID:foreign-uid@example.com"));

    // Deletes: stale etag fails, current succeeds, a second delete is fine.
    assert_eq!(
        client
            .delete_event(&calendar, &first.external_id, first.etag.as_deref())
            .await
            .unwrap_err(),
        ProviderError::PreconditionFailed
    );
    client
        .delete_event(&calendar, &first.external_id, updated.etag.as_deref())
        .await
        .unwrap();
    client.delete_event(&calendar, &first.external_id, None).await.unwrap();
    assert_eq!(
        client
            .update_event(&calendar, &first.external_id, None, &event("Gone", 5, 9))
            .await
            .unwrap_err(),
        ProviderError::NotFound
    );

    // Event URLs on another server are refused before any request.
    assert!(matches!(
        client.delete_event(&calendar, "https://example.com/x.ics", None).await,
        Err(ProviderError::UrlNotAllowed(_))
    ));
    assert!(
        client
            .create_event(&calendar, "../../x", &event("Escape", 5, 9))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn sync_collection_reports_changes_and_deletions() {
    let server = Radicale::start(&[(USER, PASSWORD)]);
    let calendar = mkcalendar(&server, "work", "Work", &["VEVENT"]).await;
    let client = client(&server).with_multiget_batch(1);
    let kept = client
        .create_event(&calendar, "kept00001", &event("Kept", 5, 9))
        .await
        .unwrap();
    let changed = client
        .create_event(&calendar, "changed01", &event("Changed", 6, 9))
        .await
        .unwrap();
    let removed = client
        .create_event(&calendar, "removed01", &event("Removed", 7, 9))
        .await
        .unwrap();

    let listing: Vec<EventPage> = client.list_events(&calendar, january()).try_collect().await.unwrap();
    let first_cursor = listing.last().unwrap().next_cursor.clone().unwrap();

    let added = client
        .create_event(&calendar, "added0001", &event("Added", 8, 9))
        .await
        .unwrap();
    client
        .update_event(
            &calendar,
            &changed.external_id,
            changed.etag.as_deref(),
            &event("Changed!", 6, 11),
        )
        .await
        .unwrap();
    client
        .delete_event(&calendar, &removed.external_id, removed.etag.as_deref())
        .await
        .unwrap();

    let pages: Vec<EventPage> = client.changes(&calendar, &first_cursor).try_collect().await.unwrap();
    assert_eq!(hrefs(&pages), [added.external_id.clone(), changed.external_id.clone()]);
    assert!(pages.len() >= 2, "one event per page with a batch of 1");
    let gone: Vec<&String> = pages.iter().flat_map(|page| &page.removed).collect();
    assert_eq!(gone, [&removed.external_id]);
    assert!(pages.iter().rev().skip(1).all(|page| page.next_cursor.is_none()));
    let second_cursor = pages.last().unwrap().next_cursor.clone().unwrap();
    assert_ne!(second_cursor, first_cursor);
    let changed_data = pages
        .iter()
        .flat_map(|page| &page.items)
        .map(ical)
        .find(|(href, _, _)| *href == changed.external_id)
        .unwrap()
        .2;
    assert!(changed_data.contains("SUMMARY:Changed!"));
    assert!(!hrefs(&pages).contains(&kept.external_id));

    // Nothing changed since: one empty page with a cursor.
    let pages: Vec<EventPage> = client.changes(&calendar, &second_cursor).try_collect().await.unwrap();
    assert_eq!(pages.len(), 1);
    assert!(pages[0].items.is_empty() && pages[0].removed.is_empty());
    assert!(pages[0].next_cursor.is_some());
}

#[tokio::test]
async fn invalid_sync_tokens_and_moved_ctags_require_a_full_resync() {
    let server = Radicale::start(&[(USER, PASSWORD)]);
    let calendar = mkcalendar(&server, "work", "Work", &["VEVENT"]).await;
    let client = client(&server);
    client
        .create_event(&calendar, "first0001", &event("First", 5, 9))
        .await
        .unwrap();

    for token in ["http://radicale.org/ns/sync/0000000000000000", "not-a-token", ""] {
        let result: Result<Vec<EventPage>, _> = client.changes(&calendar, token).try_collect().await;
        assert_eq!(result.unwrap_err(), ProviderError::FullResyncRequired, "{token:?}");
    }

    // ctag cursors (servers without sync-collection): unchanged → nothing, moved → resync.
    let ctag_cursor = format!("ctag:{}", ctag_of(&calendar).await);
    let pages: Vec<EventPage> = client.changes(&calendar, &ctag_cursor).try_collect().await.unwrap();
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].next_cursor.as_deref(), Some(ctag_cursor.as_str()));
    client
        .create_event(&calendar, "second001", &event("Second", 6, 9))
        .await
        .unwrap();
    let result: Result<Vec<EventPage>, _> = client.changes(&calendar, &ctag_cursor).try_collect().await;
    assert_eq!(result.unwrap_err(), ProviderError::FullResyncRequired);
}

#[tokio::test]
async fn truncated_sync_answers_are_continued_and_412_tokens_need_a_resync() {
    let base = start_front(Front::TruncatingSync).await;
    let policy = UrlPolicy::new([base.trim_start_matches("http://")]);
    let client = CalDavClient::with_password(http(&policy), policy, &format!("{base}/home/"), USER, PASSWORD)
        .unwrap()
        .with_multiget_batch(1);
    let calendar = format!("{base}/cal/");

    let pages: Vec<EventPage> = client.changes(&calendar, "t1").try_collect().await.unwrap();
    assert_eq!(
        hrefs(&pages),
        [format!("{base}/cal/a.ics"), format!("{base}/cal/c.ics")]
    );
    let removed: Vec<&String> = pages.iter().flat_map(|page| &page.removed).collect();
    assert_eq!(removed, [&format!("{base}/cal/b.ics")]);
    let (_, etag, data) = ical(&pages[0].items[0]);
    assert_eq!(etag, Some("\"e\""));
    assert_eq!(data, "BEGIN:VCALENDAR\r\nUID:/cal/a.ics\r\nEND:VCALENDAR\r\n");
    assert_eq!(pages.last().unwrap().next_cursor.as_deref(), Some("t3"));
    assert!(pages.iter().rev().skip(1).all(|page| page.next_cursor.is_none()));

    let result: Result<Vec<EventPage>, _> = client.changes(&calendar, "expired").try_collect().await;
    assert_eq!(result.unwrap_err(), ProviderError::FullResyncRequired);
}
