//! RFC 6764 discovery: `current-user-principal` (via `/.well-known/caldav`,
//! the given URL, the root), the principal's `calendar-home-set`, and the
//! event calendars in the home.

use std::sync::Arc;

use juy_domain::SystemClock;
use url::Url;
use zeroize::Zeroizing;

use super::multistatus::{self, APPLE, CALDAV, CALSERVER, DAV, Response};
use super::parse_url;
use super::transport::{Answer, Call, Transport};
use crate::{Credential, ProviderError, RemoteCalendar, StaticAuthorizer, UrlPolicy};

/// What [`discover`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// The account's principal (absolute URL).
    pub principal_url: String,
    /// The calendar home (absolute URL, possibly on another host): give it to
    /// [`CalDavClient::new`](super::CalDavClient::new).
    pub home_url: String,
    /// The calendars in the home that hold events.
    pub calendars: Vec<RemoteCalendar>,
}

/// Finds the principal, calendar home and event calendars of `username` at
/// `server_url` (`https://` is assumed when no scheme is given). A wrong
/// password fails with [`ProviderError::Unauthorized`], an unreachable
/// server with [`ProviderError::Network`], a server that is not CalDAV with
/// [`ProviderError::Rejected`] or [`ProviderError::Malformed`], a URL the
/// policy refuses with [`ProviderError::UrlNotAllowed`].
pub async fn discover(
    client: &reqwest::Client,
    policy: &UrlPolicy,
    server_url: impl AsRef<str>,
    username: &str,
    password: &str,
) -> Result<Discovery, ProviderError> {
    let start = server_url.as_ref().trim();
    let start = if start.contains("://") {
        parse_url(start)?
    } else {
        parse_url(&format!("https://{start}"))?
    };
    policy.check_url(&start)?;
    let credential = Credential::Basic {
        username: username.to_owned(),
        password: Arc::new(Zeroizing::new(password.to_owned())),
    };
    let transport = Transport {
        http: client.clone(),
        policy: policy.clone(),
        authorizer: Arc::new(StaticAuthorizer(credential)),
        clock: Arc::new(SystemClock),
    };
    let principal = find_principal(&transport, &start).await?;
    let home = find_home(&transport, &principal).await?;
    let calendars = list_calendars(&transport, &home).await?;
    Ok(Discovery {
        principal_url: principal.into(),
        home_url: home.into(),
        calendars,
    })
}

/// Why an answer shows the server is no CalDAV server (or refuses discovery).
fn not_caldav(answer: &Answer) -> ProviderError {
    ProviderError::Rejected {
        status: answer.status.as_u16(),
        reason: "the server does not answer CalDAV discovery (PROPFIND)".into(),
    }
}

/// The first href of `prop` in a 207 answer, resolved against the answering URL.
fn href_prop(answer: &Answer, ns: &str, local: &str) -> Result<Option<Url>, ProviderError> {
    let multistatus = answer.multistatus()?;
    let href = multistatus
        .responses
        .iter()
        .filter_map(|response| response.prop(ns, local))
        .find_map(|prop| prop.hrefs.first().cloned());
    match href {
        Some(href) => answer
            .url
            .join(&href)
            .map(Some)
            .map_err(|_| ProviderError::Malformed(format!("the server's {local} is not a valid URL"))),
        None => Ok(None),
    }
}

async fn find_principal(transport: &Transport, start: &Url) -> Result<Url, ProviderError> {
    let mut candidates = Vec::new();
    if let Ok(well_known) = start.join("/.well-known/caldav") {
        candidates.push(well_known);
    }
    candidates.push(start.clone());
    if start.path() != "/"
        && let Ok(root) = start.join("/")
    {
        candidates.push(root);
    }
    let body = multistatus::propfind(&[("d", "current-user-principal")]);
    for candidate in candidates {
        // Transport failures, 401 and policy refusals end discovery; other
        // answers just mean "try the next place".
        let answer = transport.send(Call::propfind(candidate, "0", body.clone())).await?;
        if answer.status.as_u16() != 207 {
            tracing::debug!(status = answer.status.as_u16(), "no principal here");
            continue;
        }
        match href_prop(&answer, DAV, "current-user-principal") {
            Ok(Some(principal)) => return Ok(principal),
            Ok(None) => {}
            Err(error) => tracing::debug!(%error, "no principal here"),
        }
    }
    // Old servers lack current-user-principal: the URL given may be the principal itself.
    Ok(start.clone())
}

async fn find_home(transport: &Transport, principal: &Url) -> Result<Url, ProviderError> {
    let body = multistatus::propfind(&[("c", "calendar-home-set")]);
    let answer = transport.send(Call::propfind(principal.clone(), "0", body)).await?;
    if answer.status.as_u16() != 207 {
        return Err(not_caldav(&answer));
    }
    href_prop(&answer, CALDAV, "calendar-home-set")?.ok_or_else(|| {
        ProviderError::Malformed("the server names no calendar home (calendar-home-set): not a CalDAV server".into())
    })
}

/// The event calendars in the calendar home `home`.
pub(crate) async fn list_calendars(transport: &Transport, home: &Url) -> Result<Vec<RemoteCalendar>, ProviderError> {
    let body = multistatus::propfind(&[
        ("d", "resourcetype"),
        ("d", "displayname"),
        ("c", "supported-calendar-component-set"),
        ("c", "calendar-timezone-id"),
        ("a", "calendar-color"),
        ("cs", "getctag"),
        ("d", "sync-token"),
        ("d", "current-user-privilege-set"),
    ]);
    let answer = transport.send(Call::propfind(home.clone(), "1", body)).await?;
    if answer.status.as_u16() != 207 {
        return Err(transport.status_error(&answer));
    }
    let multistatus = answer.multistatus()?;
    Ok(multistatus
        .responses
        .iter()
        .filter_map(|response| remote_calendar(&answer.url, response))
        .collect())
}

fn remote_calendar(base: &Url, response: &Response) -> Option<RemoteCalendar> {
    if response.status.is_some_and(|status| status / 100 != 2) {
        return None;
    }
    if !response.prop(DAV, "resourcetype")?.contains(CALDAV, "calendar") {
        return None;
    }
    // No supported-calendar-component-set means every component type.
    if let Some(set) = response.prop(CALDAV, "supported-calendar-component-set") {
        let has_events = set.children.iter().any(|(name, comp)| {
            name.is(CALDAV, "comp") && comp.as_deref().is_some_and(|c| c.eq_ignore_ascii_case("VEVENT"))
        });
        if !has_events {
            return None;
        }
    }
    let url = base.join(response.href()?).ok()?;
    let name = response
        .prop_value(DAV, "displayname")
        .map(str::to_owned)
        .unwrap_or_else(|| last_segment(&url));
    // Without a privilege set, assume the owner's rights (writable).
    let can_write = response
        .prop(DAV, "current-user-privilege-set")
        .is_none_or(|privileges| {
            ["write", "write-content", "all", "bind"]
                .iter()
                .any(|privilege| privileges.contains(DAV, privilege))
        });
    Some(RemoteCalendar {
        id: url.into(),
        name,
        color: response.prop_value(APPLE, "calendar-color").and_then(css_color),
        time_zone: response.prop_value(CALDAV, "calendar-timezone-id").map(str::to_owned),
        is_primary: false,
        can_write,
    })
}

/// The collection's last path segment, percent-decoded, as a fallback name.
fn last_segment(url: &Url) -> String {
    let segment = url
        .path_segments()
        .and_then(|mut segments| segments.rfind(|s| !s.is_empty()))
        .unwrap_or("calendar");
    percent_decode(segment)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Apple's `#RRGGBBAA` (or `#RRGGBB`) as `#rrggbb`.
fn css_color(value: &str) -> Option<String> {
    let hex = value.trim().strip_prefix('#')?;
    if (hex.len() == 6 || hex.len() == 8) && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Some(format!("#{}", hex[..6].to_ascii_lowercase()))
    } else {
        None
    }
}

/// The collection state a cursor is made of: `(sync-token, getctag)`.
pub(crate) async fn collection_state(
    transport: &Transport,
    collection: &Url,
) -> Result<(Option<String>, Option<String>), ProviderError> {
    let body = multistatus::propfind(&[("d", "sync-token"), ("cs", "getctag")]);
    let answer = transport.send(Call::propfind(collection.clone(), "0", body)).await?;
    if answer.status.as_u16() != 207 {
        return Err(transport.status_error(&answer));
    }
    let multistatus = answer.multistatus()?;
    let response = multistatus.responses.first();
    Ok((
        response
            .and_then(|r| r.prop_value(DAV, "sync-token"))
            .map(str::to_owned),
        response
            .and_then(|r| r.prop_value(CALSERVER, "getctag"))
            .map(str::to_owned),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn apple_colors_become_css_colors() {
        assert_eq!(css_color("#FF8800FF").as_deref(), Some("#ff8800"));
        assert_eq!(css_color("#1BADF8").as_deref(), Some("#1badf8"));
        assert_eq!(css_color("red"), None);
        assert_eq!(css_color("#12345"), None);
        assert_eq!(css_color("#ÿÿÿÿÿÿ"), None);
    }

    #[test]
    fn fallback_names_are_decoded_path_segments() {
        let url = Url::parse("https://example.com/cal/My%20Work/").unwrap();
        assert_eq!(last_segment(&url), "My Work");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
