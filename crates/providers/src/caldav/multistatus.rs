//! WebDAV `multistatus` answers (RFC 4918 §14.16, RFC 6578) read with a
//! namespace-aware XML parser, and the request bodies we send.
//!
//! Only what the client needs is kept: per response its hrefs, status and
//! the properties of its 2xx `propstat`s (text, nested hrefs, child element
//! names with their `name` attribute). No DTD or entity is ever expanded
//! beyond XML's predefined ones.

use quick_xml::NsReader;
use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;

use crate::ProviderError;

/// `DAV:`.
pub(crate) const DAV: &str = "DAV:";
/// CalDAV (RFC 4791).
pub(crate) const CALDAV: &str = "urn:ietf:params:xml:ns:caldav";
/// calendarserver.org (`getctag`).
pub(crate) const CALSERVER: &str = "http://calendarserver.org/ns/";
/// Apple iCal (`calendar-color`).
pub(crate) const APPLE: &str = "http://apple.com/ns/ical/";

/// A namespaced element name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QualName {
    pub ns: String,
    pub local: String,
}

impl QualName {
    pub(crate) fn is(&self, ns: &str, local: &str) -> bool {
        self.ns == ns && self.local == local
    }
}

/// A property as found in a `prop` element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Property {
    /// Text content of a leaf property (empty when it has child elements).
    pub text: String,
    /// `DAV:href` values anywhere inside.
    pub hrefs: Vec<String>,
    /// Elements inside, at any depth, with their `name` attribute
    /// (`<C:comp name="VEVENT"/>`, `<privilege><write/></privilege>`).
    pub children: Vec<(QualName, Option<String>)>,
}

impl Property {
    /// The trimmed text, if any.
    pub(crate) fn value(&self) -> Option<&str> {
        let text = self.text.trim();
        (!text.is_empty()).then_some(text)
    }

    pub(crate) fn contains(&self, ns: &str, local: &str) -> bool {
        self.children.iter().any(|(name, _)| name.is(ns, local))
    }
}

/// One `DAV:response`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Response {
    pub hrefs: Vec<String>,
    /// The response-level status (`404` for a removed member in a sync report).
    pub status: Option<u16>,
    /// Properties from `propstat`s with a 2xx status.
    pub props: Props,
}

impl Response {
    pub(crate) fn href(&self) -> Option<&str> {
        self.hrefs.first().map(String::as_str)
    }

    pub(crate) fn prop(&self, ns: &str, local: &str) -> Option<&Property> {
        self.props
            .iter()
            .find(|(name, _)| name.is(ns, local))
            .map(|(_, prop)| prop)
    }

    pub(crate) fn prop_value(&self, ns: &str, local: &str) -> Option<&str> {
        self.prop(ns, local).and_then(Property::value)
    }
}

/// A whole `DAV:multistatus`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Multistatus {
    pub responses: Vec<Response>,
    /// The top-level `DAV:sync-token` of a sync-collection report.
    pub sync_token: Option<String>,
}

fn malformed(reader_position: u64, what: &str) -> ProviderError {
    ProviderError::Malformed(format!("{what} (at byte {reader_position})"))
}

fn qual_name(resolved: &ResolveResult<'_>, start: &BytesStart<'_>) -> QualName {
    let ns = match resolved {
        ResolveResult::Bound(ns) => ns.into_inner().to_owned(),
        _ => String::new(),
    };
    QualName {
        ns,
        local: start.local_name().as_ref().to_owned(),
    }
}

fn name_attribute(start: &BytesStart<'_>) -> Option<String> {
    start.try_get_attribute("name").ok().flatten().and_then(|attr| {
        attr.normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .ok()
            .map(|value| value.into_owned())
    })
}

/// Named properties, in document order.
type Props = Vec<(QualName, Property)>;

/// Where we are inside the document.
#[derive(Default)]
struct Builder {
    stack: Vec<QualName>,
    text: String,
    result: Multistatus,
    response: Option<Response>,
    /// Status and properties of the open `propstat`.
    propstat: Option<(Option<u16>, Props)>,
    /// The open property and the stack depth of its element.
    property: Option<(usize, QualName, Property)>,
    saw_root: bool,
}

impl Builder {
    fn parent_is(&self, ns: &str, local: &str) -> bool {
        self.stack.last().is_some_and(|name| name.is(ns, local))
    }

    fn start(&mut self, name: QualName, start: &BytesStart<'_>) -> Result<(), &'static str> {
        self.text.clear();
        if self.stack.is_empty() {
            if !name.is(DAV, "multistatus") {
                return Err("the answer is not a DAV:multistatus");
            }
            self.saw_root = true;
        }
        let depth = self.stack.len();
        if let Some((_, _, property)) = self.property.as_mut() {
            property.children.push((name.clone(), name_attribute(start)));
        } else if name.is(DAV, "response") && self.parent_is(DAV, "multistatus") {
            self.response = Some(Response::default());
        } else if name.is(DAV, "propstat") && self.parent_is(DAV, "response") && self.response.is_some() {
            self.propstat = Some((None, Vec::new()));
        } else if self.parent_is(DAV, "prop") && self.propstat.is_some() {
            self.property = Some((depth, name.clone(), Property::default()));
        }
        self.stack.push(name);
        Ok(())
    }

    fn end(&mut self) {
        let Some(name) = self.stack.pop() else {
            return;
        };
        let depth = self.stack.len();
        let text = std::mem::take(&mut self.text);
        let parent = self.stack.last();
        let parent_is = |ns: &str, local: &str| parent.is_some_and(|p| p.is(ns, local));

        if let Some((prop_depth, _, property)) = self.property.as_mut() {
            if depth == *prop_depth {
                if let Some((_, prop_name, mut property)) = self.property.take() {
                    if property.children.is_empty() {
                        property.text = text;
                    }
                    if let Some((_, props)) = self.propstat.as_mut() {
                        props.push((prop_name, property));
                    }
                }
            } else if name.is(DAV, "href") {
                property.hrefs.push(text.trim().to_owned());
            }
            return;
        }
        if name.is(DAV, "href") && parent_is(DAV, "response") {
            if let Some(response) = self.response.as_mut() {
                response.hrefs.push(text.trim().to_owned());
            }
        } else if name.is(DAV, "status") && parent_is(DAV, "response") {
            if let Some(response) = self.response.as_mut() {
                response.status = parse_status_line(&text);
            }
        } else if name.is(DAV, "status") && parent_is(DAV, "propstat") {
            if let Some((status, _)) = self.propstat.as_mut() {
                *status = parse_status_line(&text);
            }
        } else if name.is(DAV, "propstat") {
            if let (Some((status, props)), Some(response)) = (self.propstat.take(), self.response.as_mut()) {
                // A propstat without a status is taken as 200: lenient with odd servers.
                if status.unwrap_or(200) / 100 == 2 {
                    response.props.extend(props);
                }
            }
        } else if name.is(DAV, "response") && parent_is(DAV, "multistatus") {
            if let Some(response) = self.response.take() {
                self.result.responses.push(response);
            }
        } else if name.is(DAV, "sync-token") && parent_is(DAV, "multistatus") {
            let token = text.trim();
            if !token.is_empty() {
                self.result.sync_token = Some(token.to_owned());
            }
        }
    }
}

/// `HTTP/1.1 404 Not Found` → 404.
pub(crate) fn parse_status_line(line: &str) -> Option<u16> {
    line.split_whitespace().nth(1).and_then(|code| code.parse().ok())
}

/// Parses a `207 Multi-Status` body.
pub(crate) fn parse_multistatus(body: &[u8]) -> Result<Multistatus, ProviderError> {
    let text = String::from_utf8_lossy(body);
    let mut reader = NsReader::from_str(&text);
    let mut builder = Builder::default();
    loop {
        let position = reader.buffer_position();
        let (resolved, event) = reader
            .read_resolved_event()
            .map_err(|_| malformed(position, "the multistatus answer is not well-formed XML"))?;
        match event {
            Event::Start(start) => {
                let name = qual_name(&resolved, &start);
                builder.start(name, &start).map_err(|what| malformed(position, what))?;
            }
            Event::Empty(start) => {
                let name = qual_name(&resolved, &start);
                builder.start(name, &start).map_err(|what| malformed(position, what))?;
                builder.end();
            }
            Event::End(_) => builder.end(),
            Event::Text(text) => builder.text.push_str(&text.xml10_content()),
            Event::CData(data) => builder.text.push_str(&data.xml10_content()),
            Event::GeneralRef(reference) => {
                let content = reference.xml10_content();
                match reference.resolve_char_ref() {
                    Ok(Some(ch)) => builder.text.push(ch),
                    Ok(None) => match resolve_predefined_entity(&content) {
                        Some(value) => builder.text.push_str(value),
                        None => return Err(malformed(position, "the multistatus answer uses an unknown entity")),
                    },
                    Err(_) => {
                        return Err(malformed(
                            position,
                            "the multistatus answer has a bad character reference",
                        ));
                    }
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !builder.saw_root {
        return Err(ProviderError::Malformed("the answer is not a DAV:multistatus".into()));
    }
    if !builder.stack.is_empty() {
        return Err(ProviderError::Malformed("the multistatus answer is truncated".into()));
    }
    Ok(builder.result)
}

/// The element names inside a `DAV:error` body (preconditions such as
/// `DAV:valid-sync-token`); empty when the body is not such XML.
pub(crate) fn error_conditions(body: &[u8]) -> Vec<QualName> {
    let text = String::from_utf8_lossy(body);
    let mut reader = NsReader::from_str(&text);
    let mut names = Vec::new();
    let mut depth = 0usize;
    loop {
        match reader.read_resolved_event() {
            Ok((resolved, Event::Start(start))) => {
                let name = qual_name(&resolved, &start);
                if depth == 0 && !name.is(DAV, "error") {
                    return Vec::new();
                }
                if depth == 1 {
                    names.push(name);
                }
                depth += 1;
            }
            Ok((resolved, Event::Empty(start))) => {
                let name = qual_name(&resolved, &start);
                if depth == 0 {
                    return Vec::new();
                }
                if depth == 1 {
                    names.push(name);
                }
            }
            Ok((_, Event::End(_))) => depth = depth.saturating_sub(1),
            Ok((_, Event::Eof)) | Err(_) => return names,
            Ok(_) => {}
        }
    }
}

/// `PROPFIND` asking for these properties (`(namespace prefix, local)`; prefixes
/// `d`, `c`, `cs`, `a`).
pub(crate) fn propfind(props: &[(&str, &str)]) -> String {
    let mut body = String::from(
        r#"<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav" xmlns:cs="http://calendarserver.org/ns/" xmlns:a="http://apple.com/ns/ical/"><d:prop>"#,
    );
    for (prefix, local) in props {
        body.push_str(&format!("<{prefix}:{local}/>"));
    }
    body.push_str("</d:prop></d:propfind>");
    body
}

/// `REPORT calendar-query`: hrefs and etags of the VEVENTs overlapping `[start, end)`.
pub(crate) fn calendar_query(start: &str, end: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:time-range start="{start}" end="{end}"/></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>"#
    )
}

/// `REPORT calendar-multiget` of these hrefs (paths), with etags and data.
pub(crate) fn calendar_multiget<'a>(hrefs: impl IntoIterator<Item = &'a str>) -> String {
    let mut body = String::from(
        r#"<?xml version="1.0" encoding="utf-8"?><c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/><c:calendar-data/></d:prop>"#,
    );
    for href in hrefs {
        body.push_str("<d:href>");
        body.push_str(&escape(href));
        body.push_str("</d:href>");
    }
    body.push_str("</c:calendar-multiget>");
    body
}

/// `REPORT sync-collection` (RFC 6578) from `token` (empty: everything).
pub(crate) fn sync_collection(token: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><d:sync-collection xmlns:d="DAV:"><d:sync-token>{}</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>"#,
        escape(token)
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn reads_properties_from_successful_propstats_only() {
        let body = br#"<?xml version='1.0' encoding='utf-8'?>
<multistatus xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:ICAL="http://apple.com/ns/ical/">
 <response><href>/alice/work/</href>
  <propstat><prop>
   <resourcetype><C:calendar /><collection /></resourcetype>
   <displayname>Work &amp; play &#x263A;</displayname>
   <C:supported-calendar-component-set><C:comp name="VTODO" /><C:comp name="VEVENT" /></C:supported-calendar-component-set>
   <ICAL:calendar-color>#FF8800FF</ICAL:calendar-color>
  </prop><status>HTTP/1.1 200 OK</status></propstat>
  <propstat><prop><sync-token /></prop><status>HTTP/1.1 404 Not Found</status></propstat>
 </response>
</multistatus>"#;
        let ms = parse_multistatus(body).unwrap();
        assert_eq!(ms.responses.len(), 1);
        let response = &ms.responses[0];
        assert_eq!(response.href(), Some("/alice/work/"));
        assert!(response.prop(DAV, "resourcetype").unwrap().contains(CALDAV, "calendar"));
        assert_eq!(response.prop_value(DAV, "displayname"), Some("Work & play \u{263A}"));
        assert_eq!(response.prop_value(APPLE, "calendar-color"), Some("#FF8800FF"));
        let comps: Vec<_> = response
            .prop(CALDAV, "supported-calendar-component-set")
            .unwrap()
            .children
            .iter()
            .filter_map(|(_, name)| name.clone())
            .collect();
        assert_eq!(comps, ["VTODO", "VEVENT"]);
        assert!(response.prop(DAV, "sync-token").is_none());
    }

    #[test]
    fn reads_prefixed_namespaces_cdata_hrefs_and_sync_tokens() {
        let body = br#"<D:multistatus xmlns:D="DAV:" xmlns:cal="urn:ietf:params:xml:ns:caldav">
<D:response><D:href>/c/a.ics</D:href><D:propstat><D:prop><D:getetag>"1"</D:getetag>
<cal:calendar-data><![CDATA[BEGIN:VCALENDAR
END:VCALENDAR
]]></cal:calendar-data></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
<D:response><D:href>/c/gone.ics</D:href><D:status>HTTP/1.1 404 Not Found</D:status></D:response>
<D:response><D:href>/p/</D:href><D:propstat><D:prop><D:current-user-principal><D:href>/p/alice/</D:href></D:current-user-principal></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
<D:sync-token>http://example.com/sync/7</D:sync-token></D:multistatus>"#;
        let ms = parse_multistatus(body).unwrap();
        assert_eq!(ms.sync_token.as_deref(), Some("http://example.com/sync/7"));
        assert_eq!(ms.responses[0].prop_value(DAV, "getetag"), Some("\"1\""));
        assert_eq!(
            ms.responses[0].prop(CALDAV, "calendar-data").unwrap().text,
            "BEGIN:VCALENDAR\nEND:VCALENDAR\n"
        );
        assert_eq!(ms.responses[1].status, Some(404));
        assert_eq!(
            ms.responses[2].prop(DAV, "current-user-principal").unwrap().hrefs,
            ["/p/alice/"]
        );
    }

    #[test]
    fn broken_or_foreign_bodies_are_malformed_not_panics() {
        for body in [
            &b""[..],
            b"<html><body>hello</body></html>",
            b"<multistatus xmlns=\"DAV:\"><response>",
            b"<multistatus xmlns=\"DAV:\"><response></multistatus>",
            b"<multistatus xmlns=\"DAV:\">&bogus;</multistatus>",
            b"<multistatus xmlns=\"DAV:\">&#0;</multistatus>",
            b"\xff\xfe<\x00",
            b"<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><multistatus xmlns=\"DAV:\">&e;</multistatus>",
            b"<multistatus>no namespace</multistatus>",
        ] {
            assert!(
                matches!(parse_multistatus(body), Err(ProviderError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn error_bodies_name_their_preconditions() {
        let body = br#"<?xml version="1.0"?><D:error xmlns:D="DAV:"><D:valid-sync-token/></D:error>"#;
        let names = error_conditions(body);
        assert!(names.iter().any(|n| n.is(DAV, "valid-sync-token")));
        assert!(error_conditions(b"Forbidden").is_empty());
        assert!(error_conditions(b"<html><D:valid-sync-token xmlns:D=\"DAV:\"/></html>").is_empty());
    }

    #[test]
    fn request_bodies_escape_what_they_embed() {
        assert!(sync_collection("a<b&c").contains("<d:sync-token>a&lt;b&amp;c</d:sync-token>"));
        assert!(calendar_multiget(["/c/a&b.ics"]).contains("<d:href>/c/a&amp;b.ics</d:href>"));
        let body = propfind(&[("d", "resourcetype"), ("cs", "getctag")]);
        assert!(parse_multistatus(body.as_bytes()).is_err()); // a propfind is no multistatus
    }
}
