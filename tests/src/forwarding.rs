//! Generated forwarding headers for property tests of `ClientIpResolver`, and a model of
//! the address each must resolve to, written from the rules in docs/ARCHITECTURE.md
//! ("Client IP") rather than from the resolver's code.
//!
//! A scenario is a peer, a set of trusted networks, the configured header, and request
//! headers: `X-Forwarded-For` and `Forwarded` lines (both always present; only the
//! configured one may count), decoys (`X-Real-IP`, `True-Client-IP`), and sometimes a line
//! with bytes outside visible ASCII. Every hop is generated together with its meaning (an
//! address, or "not an address"), so the model never parses text: it only applies the rules.
//!
//! - an untrusted peer (or no trusted networks) is the client, whatever the headers say;
//! - behind a trusted peer, a line holding a byte other than visible ASCII, space or tab,
//!   or an empty header, means the peer;
//! - otherwise the hops are walked right to left, at most `MAX_HOPS`: a hop that is not an
//!   address means the peer, the first untrusted address is the client, and when every
//!   examined hop is trusted the left-most examined one is;
//! - `::ffff:a.b.c.d` is a.b.c.d everywhere.
//!
//! Used by `tests/tests/e2e/client_ip_props.rs` (a few thousand cases in CI) and by
//! `bench/src/bin/client_ip_props.rs` (millions).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use iptrack_core::client_ip::{ClientIpResolver, MAX_HOPS, ProxyHeader};
use proptest::{
    collection::vec,
    prelude::*,
    sample::{select, subsequence},
    test_runner::TestCaseError,
};

/// Networks a deployment might trust; each scenario trusts a subset (possibly none).
pub const TRUSTED_POOL: [&str; 5] = [
    "10.0.0.0/8",
    "127.0.0.1/32",
    "192.168.0.0/16",
    "2001:db8:ffff::/48",
    "fd00::/8",
];

/// One hop as a proxy (or a forger) wrote it, and what it means.
#[derive(Debug, Clone)]
pub struct Hop {
    pub text: String,
    /// `None`: not an address (`unknown`, `_hidden`, garbage); the walk stops at the peer.
    pub address: Option<IpAddr>,
}

/// One header line: hops in order, or bytes that make the header malformed.
#[derive(Debug, Clone)]
pub enum Line {
    Hops(Vec<Hop>),
    /// Holds at least one byte outside visible ASCII, space and tab.
    NotVisibleAscii(Vec<u8>),
}

/// A request as the resolver sees it.
#[derive(Clone)]
pub struct Scenario {
    pub trusted: Vec<IpNet>,
    pub header: ProxyHeader,
    pub peer: IpAddr,
    pub xff: Vec<Line>,
    pub forwarded: Vec<Line>,
    /// Every header line of the request, in order: (name as sent, value).
    pub headers: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Scenario {
    /// Header values as escaped text, so a shrunk failure is readable.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(name, value)| format!("{name}: {}", value.escape_ascii()))
            .collect();
        f.debug_struct("Scenario")
            .field("trusted", &self.trusted)
            .field("header", &self.header)
            .field("peer", &self.peer)
            .field("headers", &headers)
            .finish()
    }
}

/// `::ffff:a.b.c.d` is a.b.c.d (written out here, not taken from the resolver).
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if s[..5] == [0; 5] && s[5] == 0xffff {
                let [_, _, _, _, _, _, hi, lo] = s;
                IpAddr::V4(Ipv4Addr::new(
                    (hi >> 8) as u8,
                    hi as u8,
                    (lo >> 8) as u8,
                    lo as u8,
                ))
            } else {
                ip
            }
        }
        v4 => v4,
    }
}

fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client address the rules give for `scenario`.
pub fn expected(scenario: &Scenario) -> IpAddr {
    let peer = canonical(scenario.peer);
    if !is_trusted(&scenario.trusted, peer) {
        return peer;
    }
    let lines = match scenario.header {
        ProxyHeader::XForwardedFor => &scenario.xff,
        ProxyHeader::Forwarded => &scenario.forwarded,
    };
    let mut hops = Vec::new();
    for line in lines {
        match line {
            Line::NotVisibleAscii(_) => return peer,
            Line::Hops(line) => hops.extend(line.iter().map(|hop| hop.address)),
        }
    }
    if hops.is_empty() {
        return peer;
    }
    let mut leftmost = peer;
    for hop in hops.iter().rev().take(MAX_HOPS) {
        let Some(ip) = hop.map(canonical) else {
            return peer;
        };
        if !is_trusted(&scenario.trusted, ip) {
            return ip;
        }
        leftmost = ip;
    }
    leftmost
}

/// Resolves `scenario` the way the middleware does (every line of the configured header,
/// in order) and compares with the model.
pub fn check(scenario: &Scenario) -> Result<(), TestCaseError> {
    let resolver = ClientIpResolver::new(scenario.trusted.clone(), scenario.header);
    let name = resolver.header().name();
    let values = scenario
        .headers
        .iter()
        .filter(|(header, _)| header.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_slice());
    let got = resolver.resolve(scenario.peer, values);
    let peer = canonical(scenario.peer);
    if !is_trusted(&scenario.trusted, peer) {
        prop_assert_eq!(got, peer, "an untrusted peer chose its address");
    }
    prop_assert_eq!(got, expected(scenario));
    Ok(())
}

/// Arbitrary bytes as forwarding lines: the resolver must not panic, and an untrusted peer
/// must stay the client.
pub fn check_arbitrary(
    trusted: &[IpNet],
    header: ProxyHeader,
    peer: IpAddr,
    lines: &[Vec<u8>],
) -> Result<(), TestCaseError> {
    let resolver = ClientIpResolver::new(trusted.to_vec(), header);
    let got = resolver.resolve(peer, lines.iter().map(Vec::as_slice));
    let peer = canonical(peer);
    if !is_trusted(trusted, peer) {
        prop_assert_eq!(got, peer);
    } else if got != peer {
        // Behind a trusted peer an address other than the peer's must have been written in
        // the header, in some form.
        let text = lines
            .iter()
            .map(|l| String::from_utf8_lossy(l).to_lowercase())
            .collect::<Vec<_>>()
            .join(",");
        let plausible = match got {
            // (or as IPv4-mapped IPv6 in hex, `::ffff:a00:1`)
            IpAddr::V4(v4) => text.contains(&v4.to_string()) || text.contains("ffff"),
            IpAddr::V6(_) => text.contains(':'),
        };
        prop_assert!(plausible, "{got} out of nowhere");
    }
    Ok(())
}

// ---- strategies ----

fn trusted_networks() -> impl Strategy<Value = Vec<IpNet>> {
    subsequence(TRUSTED_POOL.to_vec(), 0..=TRUSTED_POOL.len()).prop_map(|nets| {
        nets.into_iter()
            .filter_map(|net| net.parse::<IpNet>().ok())
            .collect()
    })
}

/// Addresses inside the pool's networks, so chains of trusted hops are common.
fn pool_address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 3]>().prop_map(|[a, b, c]| IpAddr::V4(Ipv4Addr::new(10, a, b, c))),
        Just(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        any::<[u8; 2]>().prop_map(|[a, b]| IpAddr::V4(Ipv4Addr::new(192, 168, a, b))),
        any::<u16>().prop_map(|x| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, x))),
        any::<u16>().prop_map(|x| IpAddr::V6(Ipv6Addr::new(0xfd12, 0, 0, 0, 0, 0, 0, x))),
    ]
}

/// Any address: from the pool, anywhere at all, documentation ranges, and IPv4-mapped
/// IPv6 forms of any of those.
pub fn address() -> impl Strategy<Value = IpAddr> {
    let plain = prop_oneof![
        3 => pool_address(),
        2 => any::<u32>().prop_map(|x| IpAddr::V4(Ipv4Addr::from(x))),
        2 => any::<u128>().prop_map(|x| IpAddr::V6(Ipv6Addr::from(x))),
        1 => any::<u8>().prop_map(|x| IpAddr::V4(Ipv4Addr::new(203, 0, 113, x))),
        1 => any::<u16>().prop_map(|x| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, x))),
    ];
    (plain, any::<u8>()).prop_map(|(ip, dice)| match ip {
        IpAddr::V4(v4) if dice % 5 == 0 => IpAddr::V6(v4.to_ipv6_mapped()),
        ip => ip,
    })
}

fn padding() -> impl Strategy<Value = &'static str> {
    select(vec!["", "", "", " ", "  ", "\t", " \t "])
}

fn exploded(v6: Ipv6Addr) -> String {
    v6.segments()
        .iter()
        .map(|s| format!("{s:04x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The ways proxies write an address in `X-Forwarded-For`.
fn xff_address_text(ip: IpAddr) -> impl Strategy<Value = String> {
    (any::<u16>(), 0..5u8).prop_map(move |(port, form)| match ip {
        IpAddr::V4(v4) => match form % 2 {
            0 => v4.to_string(),
            _ => format!("{v4}:{port}"),
        },
        IpAddr::V6(v6) => match form {
            0 => v6.to_string(),
            1 => v6.to_string().to_uppercase(),
            2 => exploded(v6),
            3 => format!("[{v6}]"),
            _ => format!("[{v6}]:{port}"),
        },
    })
}

/// Text that is no address in any form: it holds a character no address or port can
/// (not `_` either, which starts an obfuscated port).
fn poison() -> impl Strategy<Value = String> {
    (
        vec(select(b"0123456789abcdef.:[]".to_vec()), 0..10),
        select(b"ghxz*{}!#/<>?@|~".to_vec()),
        vec(select(b"0123456789abcdef.:[]".to_vec()), 0..10),
    )
        .prop_map(|(a, p, b)| {
            let mut bytes = a;
            bytes.push(p);
            bytes.extend(b);
            String::from_utf8_lossy(&bytes).into_owned()
        })
}

/// `X-Forwarded-For` entries that are not addresses, many of them obfuscations that other
/// parsers accept (octal, hex, integer and short IPv4 forms, zone ids).
fn xff_junk() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "",
            "unknown",
            "_hidden",
            "_SEVKISEK",
            "1.2.3",
            "256.1.1.1",
            "010.0.0.1",
            "0x7f.0.0.1",
            "2130706433",
            "127.1",
            "1.2.3.4:99999",
            "1.2.3.4:",
            "[1.2.3.4]",
            "[2001:db8::1",
            "2001:db8::1]",
            "[2001:db8::1]:",
            "2001:db8:::1",
            "fe80::1%eth0",
            "1.2.3.4 5.6.7.8",
            "for=1.2.3.4",
            "\"1.2.3.4\"",
            "a:b*{}",
        ])
        .prop_map(str::to_owned),
        poison(),
    ]
}

fn xff_hop() -> impl Strategy<Value = Hop> {
    let hop = prop_oneof![
        4 => address().prop_flat_map(|ip| {
            xff_address_text(ip).prop_map(move |text| Hop { text, address: Some(canonical(ip)) })
        }),
        1 => xff_junk().prop_map(|text| Hop { text, address: None }),
    ];
    (padding(), hop, padding()).prop_map(|(l, hop, r)| Hop {
        text: format!("{l}{}{r}", hop.text),
        ..hop
    })
}

/// The `for=` value of RFC 7239 for an address: IPv4 bare or quoted (with a port quoted),
/// IPv6 always quoted and bracketed; ports numeric or obfuscated (`_abc`).
fn forwarded_node(ip: IpAddr) -> impl Strategy<Value = String> {
    (any::<u16>(), "_[a-zA-Z0-9._-]{1,8}", 0..4u8).prop_map(move |(port, obfport, form)| match ip {
        IpAddr::V4(v4) => match form {
            0 => v4.to_string(),
            1 => format!("\"{v4}\""),
            2 => format!("\"{v4}:{port}\""),
            _ => format!("\"{v4}:{obfport}\""),
        },
        IpAddr::V6(v6) => match form {
            0 | 1 => format!("\"[{v6}]\""),
            2 => format!("\"[{v6}]:{port}\""),
            _ => format!("\"[{v6}]:{obfport}\""),
        },
    })
}

/// Other parameters of an element; `by=` names the proxy, never the client.
fn forwarded_extra() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("proto=https".to_owned()),
        Just("host=example.com".to_owned()),
        Just("by=_hidden".to_owned()),
        address()
            .prop_flat_map(forwarded_node)
            .prop_map(|node| format!("by={node}")),
    ]
}

fn forwarded_junk() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "",
            "for=unknown",
            "for=_hidden",
            "for=\"_x9-y\"",
            "proto=https",
            "by=1.2.3.4",
            "for=1.2.3.4;for=5.6.7.8",
            "for=",
            "for=\"1.2.3.4",
            "for=1.2.3.4\"",
            "for=1.2.3.4;garbage",
            "for=\"[1.2.3.4]\"",
            "1.2.3.4",
            "for=\"[2001:db8::1\"",
            "for=\"[2001:db8::1]:\"",
            "for=010.0.0.1",
        ])
        .prop_map(str::to_owned),
        poison().prop_map(|p| format!("for={p}")),
        poison(),
    ]
}

fn forwarded_hop() -> impl Strategy<Value = Hop> {
    let for_pair = (select(vec!["for", "For", "FOR"]), address()).prop_flat_map(|(name, ip)| {
        forwarded_node(ip).prop_map(move |node| (format!("{name}={node}"), canonical(ip)))
    });
    let element = (
        vec(forwarded_extra(), 0..2),
        for_pair,
        vec(forwarded_extra(), 0..2),
    )
        .prop_map(|(before, (pair, ip), after)| {
            let mut pairs = before;
            pairs.push(pair);
            pairs.extend(after);
            Hop {
                text: pairs.join(";"),
                address: Some(ip),
            }
        });
    let hop = prop_oneof![
        4 => element,
        1 => forwarded_junk().prop_map(|text| Hop { text, address: None }),
    ];
    (padding(), hop, padding()).prop_map(|(l, hop, r)| Hop {
        text: format!("{l}{}{r}", hop.text),
        ..hop
    })
}

/// A run of trusted hops longer than the resolver examines.
fn long_trusted_chain(hop: fn(IpAddr) -> BoxedStrategy<Hop>) -> impl Strategy<Value = Vec<Hop>> {
    vec(
        pool_address().prop_flat_map(hop),
        MAX_HOPS - 4..MAX_HOPS + 8,
    )
}

fn xff_hop_for(ip: IpAddr) -> BoxedStrategy<Hop> {
    xff_address_text(ip)
        .prop_map(move |text| Hop {
            text,
            address: Some(canonical(ip)),
        })
        .boxed()
}

fn forwarded_hop_for(ip: IpAddr) -> BoxedStrategy<Hop> {
    forwarded_node(ip)
        .prop_map(move |node| Hop {
            text: format!("for={node}"),
            address: Some(canonical(ip)),
        })
        .boxed()
}

/// Hops of one header, short mostly, sometimes many, sometimes ending in a long trusted
/// run; then cut into lines, sometimes with a line of bytes outside visible ASCII.
fn lines(
    hop: BoxedStrategy<Hop>,
    hop_for: fn(IpAddr) -> BoxedStrategy<Hop>,
) -> impl Strategy<Value = Vec<Line>> {
    let chain = prop_oneof![
        6 => vec(hop.clone(), 0..6),
        2 => vec(hop.clone(), 0..48),
        2 => (vec(hop, 0..4), long_trusted_chain(hop_for)).prop_map(|(mut a, b)| {
            a.extend(b);
            a
        }),
    ];
    chain
        .prop_flat_map(|hops| {
            let n = hops.len();
            (
                Just(hops),
                vec(any::<bool>(), n),
                prop::option::weighted(0.1, (not_visible_ascii(), any::<prop::sample::Index>())),
            )
        })
        .prop_map(|(hops, cuts, bad)| {
            let mut lines = Vec::new();
            let mut current = Vec::new();
            for (hop, cut) in hops.into_iter().zip(cuts) {
                if cut && !current.is_empty() {
                    lines.push(Line::Hops(std::mem::take(&mut current)));
                }
                current.push(hop);
            }
            if !current.is_empty() {
                lines.push(Line::Hops(current));
            }
            if let Some((bytes, at)) = bad {
                let at = at.index(lines.len() + 1);
                lines.insert(at, Line::NotVisibleAscii(bytes));
            }
            lines
        })
}

/// Bytes with at least one outside visible ASCII, space and tab: invalid UTF-8, valid
/// UTF-8 that is not ASCII (NBSP, zero-width space, full-width digits), control characters.
fn not_visible_ascii() -> impl Strategy<Value = Vec<u8>> {
    (
        vec(select(b"0123456789.:, ".to_vec()), 0..12),
        select(vec![
            &b"\xff"[..],
            b"\xfe\xff",
            b"\xc0\xae",
            "\u{a0}".as_bytes(),
            "\u{200b}".as_bytes(),
            "\u{ff11}".as_bytes(),
            b"\x00",
            b"\x0b",
            b"\x7f",
        ]),
        vec(select(b"0123456789.:, ".to_vec()), 0..12),
    )
        .prop_map(|(a, bad, b)| [a, bad.to_vec(), b].concat())
}

fn render(lines: &[Line], join: &str) -> Vec<Vec<u8>> {
    lines
        .iter()
        .map(|line| match line {
            Line::NotVisibleAscii(bytes) => bytes.clone(),
            Line::Hops(hops) => hops
                .iter()
                .map(|hop| hop.text.as_str())
                .collect::<Vec<_>>()
                .join(join)
                .into_bytes(),
        })
        .collect()
}

/// A whole scenario: peer, trusted networks, configured header, and both headers' lines
/// plus decoys, header names in assorted capitalisations.
pub fn scenario() -> impl Strategy<Value = Scenario> {
    (
        trusted_networks(),
        prop_oneof![
            Just(ProxyHeader::XForwardedFor),
            Just(ProxyHeader::Forwarded)
        ],
        address(),
        lines(xff_hop().boxed(), xff_hop_for),
        lines(forwarded_hop().boxed(), forwarded_hop_for),
        select(vec![",", ", ", " ,"]),
        select(vec![
            "X-Forwarded-For",
            "x-forwarded-for",
            "X-FORWARDED-FOR",
        ]),
        select(vec!["Forwarded", "forwarded", "FORWARDED"]),
        address(),
    )
        .prop_map(
            |(trusted, header, peer, xff, forwarded, join, xff_name, fwd_name, decoy)| {
                let mut headers = Vec::new();
                for value in render(&xff, join) {
                    headers.push((xff_name.to_owned(), value));
                }
                for value in render(&forwarded, join) {
                    headers.push((fwd_name.to_owned(), value));
                }
                for name in ["X-Real-IP", "True-Client-IP", "CF-Connecting-IP"] {
                    headers.push((name.to_owned(), decoy.to_string().into_bytes()));
                }
                Scenario {
                    trusted,
                    header,
                    peer,
                    xff,
                    forwarded,
                    headers,
                }
            },
        )
}

/// Trusted networks, header, peer and lines of arbitrary bytes, biased towards the
/// characters forwarding headers are made of.
pub fn arbitrary_lines() -> impl Strategy<Value = (Vec<IpNet>, ProxyHeader, IpAddr, Vec<Vec<u8>>)> {
    let byte = prop_oneof![
        3 => select(b"0123456789abcdefABCDEF.:[]\"=;, _forbyFORunknown\t".to_vec()),
        1 => any::<u8>(),
    ];
    (
        trusted_networks(),
        prop_oneof![
            Just(ProxyHeader::XForwardedFor),
            Just(ProxyHeader::Forwarded)
        ],
        address(),
        vec(vec(byte, 0..120), 0..4),
    )
}
