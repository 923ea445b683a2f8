//! Write-back: `PUT` with `If-None-Match: *` to create (the idempotency key
//! names the resource, so a retried create finds the first one), `PUT` with
//! `If-Match` to update, `DELETE` with `If-Match`.

use reqwest::Method;
use url::Url;

use super::ical;
use super::parse_url;
use super::transport::{Answer, Call, Transport};
use crate::{EventWrite, ProviderError, RawEvent, WrittenEvent};

const ICALENDAR: &str = "text/calendar; charset=utf-8";

/// The key as a resource name: 5–64 of `a-z`, `0-9`, `-`, `_` (the trait's
/// base32hex keys fit), so it can never leave the collection.
fn check_key(key: &str) -> Result<(), ProviderError> {
    let valid = (5..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(ProviderError::Rejected {
            status: 400,
            reason: "the idempotency key is not 5-64 characters of a-z and 0-9".into(),
        })
    }
}

/// `collection` with a trailing slash, so joining a name stays inside it.
fn as_collection(collection: &Url) -> Url {
    let mut url = collection.clone();
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

/// An event URL given back to us, which must be on the calendar's server.
fn event_url(collection: &Url, external_id: &str) -> Result<Url, ProviderError> {
    let url = parse_url(external_id)?;
    if url.origin() != collection.origin() {
        return Err(ProviderError::UrlNotAllowed(
            "the event is not on the calendar's server".into(),
        ));
    }
    Ok(url)
}

fn put(url: &Url, body: String, condition: Option<(&'static str, String)>) -> Call {
    let mut headers = vec![("content-type", ICALENDAR.to_owned())];
    headers.extend(condition);
    Call {
        method: Method::PUT,
        url: url.clone(),
        headers,
        body: Some(body),
        follow_redirects: false,
    }
}

/// `GET` of one event resource: `(etag, data)`.
async fn get(transport: &Transport, url: &Url) -> Result<(Option<String>, String), ProviderError> {
    let answer = transport
        .send(Call {
            method: Method::GET,
            url: url.clone(),
            headers: vec![("accept", "text/calendar".to_owned())],
            body: None,
            follow_redirects: true,
        })
        .await?;
    if !answer.status.is_success() {
        return Err(transport.status_error(&answer));
    }
    let data = String::from_utf8(answer.body.clone())
        .map_err(|_| ProviderError::Malformed("the event is not UTF-8 text".into()))?;
    Ok((answer.etag(), data))
}

/// What a successful `PUT` wrote; read back when the server gave no `ETag`
/// (it may have changed the data, so the stored version is what counts).
async fn written(transport: &Transport, url: &Url, answer: &Answer) -> Result<WrittenEvent, ProviderError> {
    if let Some(etag) = answer.etag() {
        return Ok(WrittenEvent {
            external_id: url.to_string(),
            etag: Some(etag),
            raw: None,
        });
    }
    let (etag, data) = get(transport, url).await?;
    Ok(stored(url, etag, data))
}

fn stored(url: &Url, etag: Option<String>, data: String) -> WrittenEvent {
    WrittenEvent {
        external_id: url.to_string(),
        etag: etag.clone(),
        raw: Some(RawEvent::ICal {
            href: url.to_string(),
            etag,
            data,
        }),
    }
}

/// Creates `{collection}/{key}.ics` with UID `{key}@juy`; when it exists
/// already (a retried create) returns the stored one.
pub(crate) async fn create(
    transport: &Transport,
    collection: &Url,
    key: &str,
    event: &EventWrite,
) -> Result<WrittenEvent, ProviderError> {
    check_key(key)?;
    let url = as_collection(collection)
        .join(&format!("{key}.ics"))
        .map_err(|_| ProviderError::UrlNotAllowed("not a valid event URL".into()))?;
    let uid = format!("{key}@juy");
    let body = ical::build_calendar(&uid, 0, event, transport.clock.now())?;
    let answer = transport
        .send(put(&url, body, Some(("if-none-match", "*".to_owned()))))
        .await?;
    match answer.status.as_u16() {
        200..=299 => written(transport, &url, &answer).await,
        412 => {
            let (etag, data) = get(transport, &url).await?;
            match ical::uid_and_sequence(&data).0 {
                Some(found) if found == uid => Ok(stored(&url, etag, data)),
                _ => Err(ProviderError::AlreadyExists),
            }
        }
        _ => Err(transport.status_error(&answer)),
    }
}

/// Replaces the event at `external_id` with `event`, keeping its `UID` and
/// raising its `SEQUENCE`; with `etag`, only if it is still that version.
pub(crate) async fn update(
    transport: &Transport,
    collection: &Url,
    external_id: &str,
    etag: Option<&str>,
    event: &EventWrite,
) -> Result<WrittenEvent, ProviderError> {
    let url = event_url(collection, external_id)?;
    let (_, existing) = get(transport, &url).await?;
    let (uid, sequence) = ical::uid_and_sequence(&existing);
    let uid = uid.unwrap_or_else(|| {
        let name = url.path_segments().and_then(|mut s| s.next_back()).unwrap_or("event");
        format!("{}@juy", name.trim_end_matches(".ics"))
    });
    let body = ical::build_calendar(
        &uid,
        sequence.unwrap_or(0).saturating_add(1),
        event,
        transport.clock.now(),
    )?;
    let condition = etag.map(|etag| ("if-match", etag.to_owned()));
    let answer = transport.send(put(&url, body, condition)).await?;
    match answer.status.as_u16() {
        200..=299 => written(transport, &url, &answer).await,
        _ => Err(transport.status_error(&answer)),
    }
}

/// Deletes the event at `external_id` (with `etag`, only that version); one
/// already gone is fine.
pub(crate) async fn delete(
    transport: &Transport,
    collection: &Url,
    external_id: &str,
    etag: Option<&str>,
) -> Result<(), ProviderError> {
    let url = event_url(collection, external_id)?;
    let headers = etag.map(|etag| ("if-match", etag.to_owned())).into_iter().collect();
    let answer = transport
        .send(Call {
            method: Method::DELETE,
            url,
            headers,
            body: None,
            follow_redirects: false,
        })
        .await?;
    match answer.status.as_u16() {
        200..=299 | 404 | 410 => Ok(()),
        _ => Err(transport.status_error(&answer)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn keys_are_safe_resource_names() {
        assert!(check_key("abcde").is_ok());
        assert!(check_key("0123456789abcdefghijklmnopqrstuv").is_ok());
        for bad in ["abcd", "../../x", "ABCDE", "abc/de", "abc%2fde", &"a".repeat(65)] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resources_are_created_inside_the_collection() {
        let collection = Url::parse("https://p01-caldav.icloud.com/123/calendars/work").unwrap();
        let url = as_collection(&collection).join("abcde.ics").unwrap();
        assert_eq!(
            url.as_str(),
            "https://p01-caldav.icloud.com/123/calendars/work/abcde.ics"
        );
        assert!(event_url(&collection, "https://evil.example/123/x.ics").is_err());
        assert!(event_url(&collection, "https://p01-caldav.icloud.com/123/calendars/work/x.ics").is_ok());
    }
}
