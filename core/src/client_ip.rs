//! Which address a request really came from.
//!
//! The TCP peer is the truth unless it is a trusted proxy. Only then is the forwarding
//! header that proxy writes consulted, walked right to left (nearest hop first) past further
//! trusted hops; the first untrusted address is the client. Entries to the left of it were
//! written by the client itself and are never believed. Anything malformed on that walk
//! falls back to the peer: a wrong-but-honest address beats a forged one.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// The most forwarding hops examined. Real chains are a handful long; the cap bounds the
/// work an attacker can cause with a huge header.
pub const MAX_HOPS: usize = 32;

/// The forwarding header the trusted proxies write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, most load balancers).
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for="[2001:db8::1]:443"`.
    Forwarded,
}

impl ProxyHeader {
    /// The header's name as sent on the wire (lower case).
    pub fn name(self) -> &'static str {
        match self {
            ProxyHeader::XForwardedFor => "x-forwarded-for",
            ProxyHeader::Forwarded => "forwarded",
        }
    }
}

/// Resolves client addresses given the deployment's trusted proxies.
#[derive(Debug, Clone)]
pub struct ClientIpResolver {
    trusted: Vec<IpNet>,
    header: ProxyHeader,
}

impl ClientIpResolver {
    pub fn new(trusted: Vec<IpNet>, header: ProxyHeader) -> Self {
        Self { trusted, header }
    }

    /// The header whose values [`Self::resolve`] wants.
    pub fn header(&self) -> ProxyHeader {
        self.header
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// Whether `peer` (a TCP peer address) is one of the trusted proxies.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.is_trusted(normalize(peer))
    }

    /// The client address of a request from `peer` carrying `header_values` (every
    /// occurrence of the configured forwarding header, in order; bytes that are not
    /// visible ASCII make the header malformed).
    pub fn resolve<'a>(
        &self,
        peer: IpAddr,
        header_values: impl IntoIterator<Item = &'a [u8]>,
    ) -> IpAddr {
        let peer = normalize(peer);
        self.resolve_chain(peer, header_values).unwrap_or(peer)
    }

    /// The same walk as [`Self::resolve`], but `None` where `resolve` falls back to the peer
    /// because a trusted peer sent no forwarding header, an empty one or a malformed one.
    /// For `/forward-auth`, where that fallback would name the proxy itself as the client
    /// (one budget and one block for everyone behind it).
    pub fn resolve_chain<'a>(
        &self,
        peer: IpAddr,
        header_values: impl IntoIterator<Item = &'a [u8]>,
    ) -> Option<IpAddr> {
        let peer = normalize(peer);
        if self.trusted.is_empty() || !self.is_trusted(peer) {
            return Some(peer);
        }
        let mut joined = String::new();
        for (line, value) in header_values.into_iter().enumerate() {
            // Proxies write addresses in ASCII. Anything else (obs-text, NBSP, control
            // bytes) is refused here, as documented above, rather than left to `trim`, which
            // would strip Unicode spaces and accept "198.51.100.7\u{a0}".
            if !value
                .iter()
                .all(|&b| b.is_ascii_graphic() || b == b' ' || b == b'\t')
            {
                return None;
            }
            let text = std::str::from_utf8(value).ok()?;
            // A separator before every line but the first, also after an empty one: an
            // empty line is then an empty hop (malformed) wherever it stands. Skipping only
            // a leading one made the answer depend on the order of the lines (found by the
            // million-case run of `client_ip_props`).
            if line > 0 {
                joined.push(',');
            }
            joined.push_str(text);
        }
        let hops: Vec<&str> = joined.split(',').map(str::trim).collect();
        if joined.trim().is_empty() {
            return None;
        }
        let mut leftmost = peer;
        for hop in hops.iter().rev().take(MAX_HOPS) {
            let parsed = match self.header {
                ProxyHeader::XForwardedFor => parse_node(hop),
                ProxyHeader::Forwarded => parse_forwarded_element(hop),
            };
            let ip = normalize(parsed?);
            if !self.is_trusted(ip) {
                return Some(ip);
            }
            leftmost = ip;
        }
        // Every hop examined is trusted: the client sits inside a trusted network itself.
        Some(leftmost)
    }
}

/// `::ffff:a.b.c.d` is the IPv4 address a.b.c.d; everything else is itself.
pub fn normalize(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// One address as proxies write it: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:443`.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

/// The `for=` node of one RFC 7239 element (`for=1.2.3.4;proto=https`). `unknown` and
/// obfuscated identifiers (`_hidden`) are not addresses and yield `None`.
fn parse_forwarded_element(element: &str) -> Option<IpAddr> {
    let mut found = None;
    for pair in element.split(';') {
        let (name, value) = pair.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("for") {
            if found.is_some() {
                return None; // two `for` parameters in one element: malformed
            }
            let value = value.trim();
            let value = match value.strip_prefix('"') {
                Some(rest) => strip_obfuscated_port(rest.strip_suffix('"')?),
                None => value,
            };
            found = Some(parse_node(value)?);
        }
    }
    found
}

/// RFC 7239 lets a proxy hide the client's port behind an obfuscated one
/// (`"[2001:db8::1]:_p1"`, `"198.51.100.7:_x"`); the address is still the client's. Without
/// this, such a proxy's every request resolved to the proxy itself, so all its clients
/// shared one rate-limit budget. Only quoted values can carry a port.
fn strip_obfuscated_port(node: &str) -> &str {
    match node.rsplit_once(':') {
        Some((address, port))
            if port.len() > 1
                && port.starts_with('_')
                && port
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
                && (address.ends_with(']') || !address.contains(':')) =>
        {
            address
        }
        _ => node,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_empty_forwarding_line_makes_the_chain_malformed_wherever_it_stands() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        for header in [ProxyHeader::XForwardedFor, ProxyHeader::Forwarded] {
            let resolver = ClientIpResolver::new(trusted.clone(), header);
            let hop: &[u8] = match header {
                ProxyHeader::XForwardedFor => b"10.0.0.7",
                ProxyHeader::Forwarded => b"for=\"10.0.0.7:443\"",
            };
            for lines in [[&b""[..], hop], [hop, &b""[..]]] {
                assert_eq!(resolver.resolve(peer, lines), peer, "{header:?} {lines:?}");
            }
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn resolver(trusted: &[&str], header: ProxyHeader) -> ClientIpResolver {
        ClientIpResolver::new(trusted.iter().map(|n| n.parse().unwrap()).collect(), header)
    }

    fn xff(r: &ClientIpResolver, peer: &str, values: &[&str]) -> IpAddr {
        r.resolve(ip(peer), values.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn without_trusted_proxies_headers_are_ignored() {
        let r = resolver(&[], ProxyHeader::XForwardedFor);
        assert_eq!(xff(&r, "203.0.113.9", &["1.1.1.1"]), ip("203.0.113.9"));
    }

    #[test]
    fn an_untrusted_peer_cannot_choose_its_address() {
        let r = resolver(&["10.0.0.0/8"], ProxyHeader::XForwardedFor);
        assert_eq!(
            xff(&r, "203.0.113.9", &["10.0.0.1, 1.1.1.1"]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_rightmost_untrusted_address_is_the_client() {
        let r = resolver(&["10.0.0.0/8"], ProxyHeader::XForwardedFor);
        // The client forged "6.6.6.6"; the proxy appended the real peer 198.51.100.7.
        assert_eq!(
            xff(&r, "10.0.0.2", &["6.6.6.6, 198.51.100.7, 10.0.0.5"]),
            ip("198.51.100.7")
        );
        // Several header lines count as one list, in order.
        assert_eq!(
            xff(&r, "10.0.0.2", &["6.6.6.6", "198.51.100.7"]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn malformed_forwarding_falls_back_to_the_peer() {
        let r = resolver(&["10.0.0.0/8"], ProxyHeader::XForwardedFor);
        assert_eq!(xff(&r, "10.0.0.2", &["1.1.1.1, garbage"]), ip("10.0.0.2"));
        assert_eq!(xff(&r, "10.0.0.2", &[""]), ip("10.0.0.2"));
        assert_eq!(
            r.resolve(ip("10.0.0.2"), [&b"\xff\xfe"[..]]),
            ip("10.0.0.2")
        );
        assert_eq!(xff(&r, "10.0.0.2", &[]), ip("10.0.0.2"));
    }

    #[test]
    fn ipv4_mapped_ipv6_is_ipv4() {
        let r = resolver(&["10.0.0.0/8"], ProxyHeader::XForwardedFor);
        assert_eq!(
            xff(&r, "::ffff:10.0.0.2", &["::ffff:198.51.100.7"]),
            ip("198.51.100.7")
        );
        assert_eq!(xff(&r, "::ffff:203.0.113.1", &[]), ip("203.0.113.1"));
    }

    #[test]
    fn ports_and_brackets_are_understood() {
        let r = resolver(&["10.0.0.0/8"], ProxyHeader::XForwardedFor);
        assert_eq!(
            xff(&r, "10.0.0.2", &["198.51.100.7:5555"]),
            ip("198.51.100.7")
        );
        assert_eq!(
            xff(&r, "10.0.0.2", &["[2001:db8::1]:443"]),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn forwarded_header_is_parsed_per_rfc_7239() {
        let r = resolver(&["10.0.0.0/8"], ProxyHeader::Forwarded);
        let v = "for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https, For=10.0.0.9";
        assert_eq!(xff(&r, "10.0.0.2", &[v]), ip("2001:db8:cafe::17"));
        assert_eq!(xff(&r, "10.0.0.2", &["for=_hidden"]), ip("10.0.0.2"));
        assert_eq!(xff(&r, "10.0.0.2", &["for=unknown"]), ip("10.0.0.2"));
        assert_eq!(xff(&r, "10.0.0.2", &["proto=https"]), ip("10.0.0.2"));
    }

    #[test]
    fn an_obfuscated_port_still_names_the_client() {
        let r = resolver(&["10.0.0.0/8"], ProxyHeader::Forwarded);
        assert_eq!(
            xff(&r, "10.0.0.2", &["for=\"[2001:db8::1]:_p1\""]),
            ip("2001:db8::1")
        );
        assert_eq!(
            xff(&r, "10.0.0.2", &["for=\"198.51.100.7:_x-9\""]),
            ip("198.51.100.7")
        );
        // An obfuscated node is no address, and `_` alone is no port.
        assert_eq!(xff(&r, "10.0.0.2", &["for=\"_hidden:_p\""]), ip("10.0.0.2"));
        assert_eq!(
            xff(&r, "10.0.0.2", &["for=\"198.51.100.7:_\""]),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn bytes_outside_visible_ascii_make_the_header_malformed() {
        let r = resolver(&["10.0.0.0/8"], ProxyHeader::XForwardedFor);
        for value in [
            "198.51.100.7\u{a0}",
            "198.51.100.7\u{200b}",
            "198.51.100.7\r",
        ] {
            assert_eq!(xff(&r, "10.0.0.2", &[value]), ip("10.0.0.2"), "{value:?}");
        }
        assert_eq!(
            xff(&r, "10.0.0.2", &["\t198.51.100.7 "]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn resolve_chain_refuses_where_resolve_falls_back_to_a_trusted_peer() {
        let r = resolver(&["10.0.0.0/8"], ProxyHeader::XForwardedFor);
        let chain = |peer: &str, values: &[&str]| {
            r.resolve_chain(ip(peer), values.iter().map(|v| v.as_bytes()))
        };
        assert_eq!(
            chain("10.0.0.2", &["198.51.100.7"]),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(chain("10.0.0.2", &["10.1.1.1"]), Some(ip("10.1.1.1")));
        // An untrusted peer is its own client, whatever it sends.
        assert_eq!(chain("203.0.113.9", &["1.1.1.1"]), Some(ip("203.0.113.9")));
        for values in [
            &[][..],
            &[""],
            &["garbage"],
            &["1.1.1.1, "],
            &["198.51.100.7\u{a0}"],
        ] {
            assert_eq!(chain("10.0.0.2", values), None, "{values:?}");
            assert_eq!(xff(&r, "10.0.0.2", values), ip("10.0.0.2"), "{values:?}");
        }
        assert!(r.trusts(ip("::ffff:10.0.0.2")));
        assert!(!r.trusts(ip("203.0.113.9")));
        assert!(!resolver(&[], ProxyHeader::XForwardedFor).trusts(ip("10.0.0.2")));
    }

    #[test]
    fn a_fully_trusted_chain_yields_its_leftmost_hop() {
        let r = resolver(&["10.0.0.0/8"], ProxyHeader::XForwardedFor);
        assert_eq!(xff(&r, "10.0.0.2", &["10.1.1.1, 10.0.0.5"]), ip("10.1.1.1"));
    }

    #[test]
    fn only_the_nearest_hops_are_examined() {
        let r = resolver(&["10.0.0.0/8"], ProxyHeader::XForwardedFor);
        let mut hops = vec!["10.0.0.3"; MAX_HOPS + 10];
        hops[0] = "198.51.100.7";
        let joined = hops.join(",");
        assert_eq!(xff(&r, "10.0.0.2", &[&joined]), ip("10.0.0.3"));
    }
}
