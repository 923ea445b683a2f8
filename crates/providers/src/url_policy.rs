//! The SSRF guard for URLs a user (or a server answering on a user's behalf)
//! chooses: CalDAV server URLs, their redirects, principal and calendar-home
//! URLs on other hosts, event hrefs.
//!
//! A URL is allowed when it is `https` and its host is public, or when its
//! host (or `host:port`) is on the operator's allow-list. "Public" is checked
//! where it matters, when the connection is made: [`UrlPolicy::build_client`]
//! gives a `reqwest::Client` whose resolver drops private, loopback,
//! link-local, multicast and other special-purpose addresses (so a DNS answer
//! that changes between a check and the connection cannot get through) and
//! whose redirect policy checks every hop. Hosts written as IP literals never
//! reach a resolver, so [`UrlPolicy::check_url`] checks them, and callers run
//! it before every request (the CalDAV client does).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use crate::ProviderError;

/// The most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 5;

/// The default per-request timeout of [`UrlPolicy::build_client`] users.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Which URLs may be reached: `https` to public addresses, plus whatever the
/// operator allow-lists (e.g. an intranet CalDAV server, or Radicale on
/// `127.0.0.1:5232` in tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// Entries `host` (every port) or `host:port` (IPv6 as `[::1]:8080` or a
    /// bare `::1`). A listed host may use plain `http` and resolve to private
    /// or loopback addresses. Names match exactly (case-insensitive, no wildcards).
    pub allow_list: Vec<String>,
}

/// Why a URL was refused; travels inside `reqwest` errors from the resolver
/// and the redirect policy and comes out as [`ProviderError::UrlNotAllowed`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct UrlRejected(String);

impl std::fmt::Display for UrlRejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UrlRejected {}

/// One parsed allow-list entry.
struct AllowEntry {
    host: String,
    port: Option<u16>,
}

impl AllowEntry {
    fn parse(entry: &str) -> Option<Self> {
        let entry = entry.trim();
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (host, after) = rest.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(port) => Some(port.parse().ok()?),
                None if after.is_empty() => None,
                None => return None,
            };
            (host, port)
        } else if entry.matches(':').count() == 1 {
            let (host, port) = entry.split_once(':')?;
            (host, Some(port.parse().ok()?))
        } else {
            (entry, None)
        };
        if host.is_empty() {
            return None;
        }
        Some(Self {
            host: normalize_host(host),
            port,
        })
    }
}

/// Lowercase, no brackets, no trailing dot, IP addresses in canonical form.
fn normalize_host(host: &str) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.');
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => host.to_ascii_lowercase(),
    }
}

impl UrlPolicy {
    /// A policy with these allow-list entries.
    pub fn new<I, S>(allow_list: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            allow_list: allow_list.into_iter().map(Into::into).collect(),
        }
    }

    /// Whether `host` (normalised) is on the allow-list, for `port` or, with
    /// `None`, for any port (the resolver does not know the port; the URL
    /// check before each request does).
    fn allows_host(&self, host: &str, port: Option<u16>) -> bool {
        let host = normalize_host(host);
        self.allow_list
            .iter()
            .filter_map(|entry| AllowEntry::parse(entry))
            .any(|entry| entry.host == host && (entry.port.is_none() || port.is_none() || entry.port == port))
    }

    /// Checks a URL before a request: scheme, credentials, and the address of
    /// an IP-literal host. Host names are checked again when they are resolved.
    pub fn check_url(&self, url: &Url) -> Result<(), ProviderError> {
        self.check(url)
            .map_err(|rejected| ProviderError::UrlNotAllowed(rejected.0))
    }

    fn check(&self, url: &Url) -> Result<(), UrlRejected> {
        let host = url.host().ok_or_else(|| UrlRejected("the URL has no host".into()))?;
        let host_text = match &host {
            Host::Domain(name) => (*name).to_owned(),
            Host::Ipv4(ip) => ip.to_string(),
            Host::Ipv6(ip) => ip.to_string(),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlRejected("the URL must not carry credentials".into()));
        }
        let allowed = self.allows_host(&host_text, url.port_or_known_default());
        match url.scheme() {
            "https" => {}
            "http" if allowed => {}
            "http" => return Err(UrlRejected(format!("{host_text} is not https"))),
            _ => return Err(UrlRejected("only https URLs are allowed".into())),
        }
        let ip = match host {
            Host::Domain(_) => return Ok(()),
            Host::Ipv4(ip) => IpAddr::V4(ip),
            Host::Ipv6(ip) => IpAddr::V6(ip),
        };
        if allowed || is_public_ip(ip) {
            Ok(())
        } else {
            Err(UrlRejected(format!("{host_text} is a private or local address")))
        }
    }

    /// The redirect policy of [`build_client`](Self::build_client): every hop
    /// is checked with [`check_url`](Self::check_url) and at most
    /// [`MAX_REDIRECTS`] are followed. Only same-origin 307/308 redirects are
    /// followed here (they keep the method, body and credentials); others are
    /// handed back to the caller, which re-issues its request at the
    /// `Location` after checking it (reqwest would turn a `PROPFIND` into a
    /// `GET` on 301/302/303, and drop credentials across hosts).
    pub fn redirect_policy(&self) -> reqwest::redirect::Policy {
        let policy = self.clone();
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(UrlRejected("too many redirects".into()));
            }
            if let Err(rejected) = policy.check(attempt.url()) {
                return attempt.error(rejected);
            }
            let same_origin = attempt
                .previous()
                .last()
                .is_some_and(|previous| previous.origin() == attempt.url().origin());
            let keeps_request = matches!(attempt.status().as_u16(), 307 | 308);
            if same_origin && keeps_request {
                attempt.follow()
            } else {
                attempt.stop()
            }
        })
    }

    /// A resolver that drops addresses this policy does not allow.
    pub fn resolver(&self) -> PolicyResolver {
        PolicyResolver { policy: self.clone() }
    }

    /// A `reqwest::Client` that enforces this policy when it connects: the
    /// filtering [`resolver`](Self::resolver), the checked
    /// [`redirect_policy`](Self::redirect_policy), no proxies (a proxy would
    /// resolve names for us), and `timeout` per request. If no rustls crypto
    /// provider is installed yet, installs ring's (reqwest would panic otherwise).
    pub fn build_client(&self, timeout: Duration) -> Result<reqwest::Client, ProviderError> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Losing a race to another installer is fine: a provider is installed either way.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        reqwest::Client::builder()
            .dns_resolver(Arc::new(self.resolver()))
            .redirect(self.redirect_policy())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("juy-calendar/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| ProviderError::Network("could not build the HTTP client".into()))
    }
}

/// The [`UrlPolicy`] at connection time: resolves a name with the system
/// resolver and keeps only public addresses, unless the name is allow-listed.
#[derive(Debug, Clone)]
pub struct PolicyResolver {
    policy: UrlPolicy,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = policy.allows_host(&host, None);
            let kept: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|addr| allowed || is_public_ip(addr.ip()))
                .collect();
            if kept.is_empty() {
                let reason = if resolved.is_empty() {
                    format!("{host} has no addresses")
                } else {
                    format!("{host} resolves to a private or local address")
                };
                return Err(Box::new(UrlRejected(reason)) as Box<dyn std::error::Error + Send + Sync>);
            }
            if kept.len() < resolved.len() {
                tracing::debug!(host = %host, dropped = resolved.len() - kept.len(), "dropped private addresses");
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// The policy's reason, when `error` (or one of its causes) is a refusal by
/// the resolver or the redirect policy.
pub(crate) fn policy_refusal(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(rejected) = error.downcast_ref::<UrlRejected>() {
            return Some(rejected.0.clone());
        }
        current = error.source();
    }
    None
}

/// Whether `ip` is a public unicast address: not loopback, private (RFC
/// 1918, fc00::/7), link-local, CGNAT, unspecified, multicast, broadcast,
/// documentation, benchmarking or otherwise reserved; IPv4 addresses inside
/// IPv6 ones (mapped, compatible, NAT64, 6to4) are judged as IPv4.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => is_public_v6(ip),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let special = a == 0 // "this network", unspecified
        || a == 10 // RFC 1918
        || a == 127 // loopback
        || (a == 100 && (b & 0xc0) == 64) // CGNAT 100.64/10
        || (a == 169 && b == 254) // link-local
        || (a == 172 && (b & 0xf0) == 16) // RFC 1918
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168) // RFC 1918
        || (a == 198 && (b & 0xfe) == 18) // benchmarking 198.18/15
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224; // multicast, reserved 240/4, broadcast
    !special
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    let embedded = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    if s[..6] == [0; 6] {
        // ::, ::1 and the deprecated IPv4-compatible ::a.b.c.d
        return false;
    }
    if s[0] == 0x64 && s[1] == 0xff9b {
        // NAT64: the well-known prefix carries an IPv4 address; 64:ff9b:1::/48 is local use.
        return s[2..6] == [0; 4] && is_public_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        // 6to4 carries an IPv4 address in the next 32 bits.
        return is_public_v4(embedded(s[1], s[2]));
    }
    // 2001::/23 (IETF protocol assignments: Teredo, benchmarking, ORCHID) and 2001:db8::/32 (documentation).
    let special = (s[0] == 0x2001 && (s[1] < 0x0200 || s[1] == 0x0db8))
        || (s[0] == 0x3fff && s[1] < 0x1000) // documentation 3fff::/20
        || s[0] == 0x5f00; // SRv6 SIDs
    // Only global unicast (2000::/3) is public: this excludes fc00::/7,
    // fe80::/10, fec0::/10, ff00::/8, 100::/64 and everything unassigned.
    !special && (s[0] & 0xe000) == 0x2000
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn special_purpose_ipv4_addresses_are_not_public() {
        for text in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "127.0.0.1",
            "127.9.9.9",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!is_public_ip(ip(text)), "{text} should not be public");
        }
    }

    #[test]
    fn public_ipv4_addresses_are_public() {
        for text in [
            "1.1.1.1",
            "8.8.8.8",
            "17.253.144.10",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
        ] {
            assert!(is_public_ip(ip(text)), "{text} should be public");
        }
    }

    #[test]
    fn special_purpose_ipv6_addresses_are_not_public() {
        for text in [
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "64:ff9b:1::1",
            "2002:0a00:0001::1",
            "2002:7f00:0001::",
            "2001::1",
            "2001:db8::1",
            "3fff::1",
            "fc00::1",
            "fd12:3456:789a::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "100::1",
        ] {
            assert!(!is_public_ip(ip(text)), "{text} should not be public");
        }
    }

    #[test]
    fn public_ipv6_addresses_are_public() {
        for text in [
            "2a00:1450:4001:82b::200e",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
            "2001:4860:4860::8888",
        ] {
            assert!(is_public_ip(ip(text)), "{text} should be public");
        }
    }

    #[test]
    fn http_and_private_literals_are_refused_without_an_allow_list() {
        let policy = UrlPolicy::default();
        for (text, cause) in [
            ("http://127.0.0.1:5232/", "not https"),
            ("http://caldav.example.com/", "not https"),
            ("https://10.0.0.1/", "private"),
            ("https://127.0.0.1/", "private"),
            ("https://[::1]/", "private"),
            ("https://[::ffff:192.168.0.1]/", "private"),
            ("https://169.254.169.254/latest/meta-data/", "private"),
            ("https://0x7f.1/", "private"),
            ("https://2130706433/", "private"),
            ("ftp://caldav.example.com/", "only https"),
            ("https://user:pw@caldav.example.com/", "credentials"),
        ] {
            match policy.check_url(&url(text)) {
                Err(ProviderError::UrlNotAllowed(reason)) => {
                    assert!(reason.contains(cause), "{text}: {reason}");
                    assert!(!reason.contains("pw"), "{text}: {reason}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        assert_eq!(policy.check_url(&url("https://caldav.icloud.com/")), Ok(()));
        assert_eq!(policy.check_url(&url("https://17.253.144.10/")), Ok(()));
    }

    #[test]
    fn allow_list_entries_permit_http_and_private_addresses() {
        let policy = UrlPolicy::new(["127.0.0.1:5232", "intranet.example", "[::1]:8443", "fd00::7"]);
        assert_eq!(policy.check_url(&url("http://127.0.0.1:5232/")), Ok(()));
        assert!(policy.check_url(&url("http://127.0.0.1:5233/")).is_err());
        assert!(policy.check_url(&url("https://127.0.0.1/")).is_err());
        assert_eq!(policy.check_url(&url("http://INTRANET.example:8080/dav/")), Ok(()));
        assert_eq!(policy.check_url(&url("https://[::1]:8443/")), Ok(()));
        assert!(policy.check_url(&url("https://[::1]:8444/")).is_err());
        assert_eq!(policy.check_url(&url("https://[fd00::7]:1/")), Ok(()));
        // The resolver does not know the port: a listed host:port admits the name.
        assert!(policy.allows_host("127.0.0.1", None));
        assert!(!policy.allows_host("localhost", None));
    }

    #[test]
    fn malformed_allow_list_entries_are_ignored() {
        let policy = UrlPolicy::new(["", ":80", "[::1", "host:notaport"]);
        assert!(policy.check_url(&url("http://host/")).is_err());
        assert!(policy.check_url(&url("https://[::1]/")).is_err());
    }

    #[tokio::test]
    async fn resolver_refuses_names_that_resolve_to_loopback() {
        let resolver = UrlPolicy::default().resolver();
        let error = match resolver.resolve("localhost".parse().unwrap()).await {
            Err(error) => error,
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
        };
        let reason = policy_refusal(error.as_ref()).unwrap();
        assert!(reason.contains("private"), "{reason}");

        let allowed = UrlPolicy::new(["localhost"]).resolver();
        let addrs: Vec<_> = allowed.resolve("localhost".parse().unwrap()).await.unwrap().collect();
        assert!(addrs.iter().all(|addr| addr.ip().is_loopback()), "{addrs:?}");
    }

    #[tokio::test]
    async fn client_refuses_a_name_resolving_to_loopback_at_connection_time() {
        let client = UrlPolicy::default().build_client(Duration::from_secs(5)).unwrap();
        let error = client.get("https://localhost:9/").send().await.unwrap_err();
        let reason = policy_refusal(&error).unwrap();
        assert!(reason.contains("private"), "{reason}");
    }
}
