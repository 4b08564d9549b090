//! Which blocks iptrack refuses, whoever asks.
//!
//! A block of everyone (`0.0.0.0/0`, `::/0`, or all of IPv4 spelled as IPv4-mapped IPv6)
//! locks out every client, the operator included, and the admin API can no longer undo
//! it. A block that overlaps `IPTRACK_SAFELIST` contradicts the operator's own setting.
//! Both are refused always. A block wider than [`WIDEST_V4`] / [`WIDEST_V6`] is refused
//! unless the caller explicitly allows wide blocks for that one call.
//!
//! Why /16 and /32: fail2ban bans single addresses and CrowdSec needs an explicit
//! `--range`; neither expects a whole continent in one decision. A /16 (65,536 addresses)
//! and a /32 (one LIR's usual IPv6 allocation) are the widest networks a single
//! organisation ordinarily holds; anything wider spans unrelated networks. The limits also
//! catch the common typo of a dropped digit: `/24` typed as `/2` or `/4`, `/28` as `/8`,
//! `/48` as `/4`, `/64` as `/6`.

use std::net::Ipv6Addr;

use ipnet::{IpNet, Ipv6Net};

use super::{canonical_network, display_network};

/// Widest IPv4 block allowed without `allow_wide`.
pub const WIDEST_V4: u8 = 16;
/// Widest IPv6 block allowed without `allow_wide`.
pub const WIDEST_V6: u8 = 32;

/// Why a block is refused. Messages are one line, shown as they are by the CLI and API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "{network} covers every IPv4 or every IPv6 address; iptrack never blocks everyone, not even with allow-wide"
    )]
    Everyone { network: String },
    #[error(
        "{network} overlaps {safelisted} of IPTRACK_SAFELIST; safelisted addresses are never blocked, not even with allow-wide"
    )]
    Safelisted { network: String, safelisted: String },
    #[error(
        "{network} is wider than /{widest}, the widest {family} block allowed by default; if you mean it, use `iptrack block --allow-wide` or \"allow_wide\": true in the API"
    )]
    TooWide {
        network: String,
        widest: u8,
        family: &'static str,
    },
}

/// The checks every block passes before it is written.
#[derive(Debug, Clone, Default)]
pub struct BlockPolicy {
    /// `IPTRACK_SAFELIST`, canonical (IPv4-mapped entries as IPv4).
    safelist: Vec<IpNet>,
}

impl BlockPolicy {
    pub fn new(safelist: &[IpNet]) -> Self {
        Self {
            safelist: safelist
                .iter()
                .map(|net| canonical_network(net.trunc()))
                .collect(),
        }
    }

    /// Whether `network` (canonical, see `parse_block_target`) may be blocked.
    pub fn check(&self, network: &IpNet, allow_wide: bool) -> Result<(), Refusal> {
        let network = canonical_network(network.trunc());
        let shown = display_network(&network);
        if covers_everyone(&network) {
            return Err(Refusal::Everyone { network: shown });
        }
        // Two CIDR networks overlap exactly when one contains the other.
        if let Some(safe) = self
            .safelist
            .iter()
            .find(|safe| network.contains(*safe) || safe.contains(&network))
        {
            return Err(Refusal::Safelisted {
                network: shown,
                safelisted: display_network(safe),
            });
        }
        let (widest, family) = match network {
            IpNet::V4(_) => (WIDEST_V4, "IPv4"),
            IpNet::V6(_) => (WIDEST_V6, "IPv6"),
        };
        if !allow_wide && network.prefix_len() < widest {
            return Err(Refusal::TooWide {
                network: shown,
                widest,
                family,
            });
        }
        Ok(())
    }
}

/// Whether `network` covers every client of a family: a /0, or an IPv6 network that holds
/// the whole IPv4-mapped range `::ffff:0:0/96` (every IPv4 client in another spelling).
pub fn covers_everyone(network: &IpNet) -> bool {
    let network = canonical_network(network.trunc());
    if network.prefix_len() == 0 {
        return true;
    }
    let mapped = Ipv6Net::new(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96);
    match (network, mapped) {
        (IpNet::V6(net), Ok(mapped)) => net.contains(&mapped),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::blocklist::parse_block_target;

    fn check(policy: &BlockPolicy, target: &str, allow_wide: bool) -> Result<(), Refusal> {
        policy.check(&parse_block_target(target).unwrap(), allow_wide)
    }

    #[test]
    fn every_spelling_of_everyone_is_refused_even_when_wide_is_allowed() {
        let policy = BlockPolicy::default();
        for target in [
            "0.0.0.0/0",
            " 0.0.0.0/0\t",
            "::/0",
            "0::/0",
            "0:0:0:0:0:0:0:0/0",
            "::ffff:0.0.0.0/96",
            "::ffff:0:0/96",
            "0:0:0:0:0:ffff:0:0/96",
            "::fffe:0:0/95",
            "::/80",
            "::/1",
        ] {
            for allow_wide in [false, true] {
                assert!(
                    matches!(
                        check(&policy, target, allow_wide),
                        Err(Refusal::Everyone { .. })
                    ),
                    "{target:?} allow_wide={allow_wide}"
                );
            }
        }
    }

    #[test]
    fn blocks_overlapping_the_safelist_are_refused_even_when_wide_is_allowed() {
        let safelist = [
            "198.51.100.0/28".parse().unwrap(),
            "::ffff:192.0.2.7/128".parse().unwrap(),
            "2001:db8:5afe::/48".parse().unwrap(),
        ];
        let policy = BlockPolicy::new(&safelist);
        for target in [
            "198.51.100.0/24",
            "198.51.100.5",
            "::ffff:198.51.100.5",
            "198.51.100.0/29",
            "192.0.2.7",
            "192.0.2.0/24",
            "2001:db8::/32",
            "2001:db8:5afe:1::1",
        ] {
            for allow_wide in [false, true] {
                let refused = check(&policy, target, allow_wide);
                assert!(
                    matches!(refused, Err(Refusal::Safelisted { .. })),
                    "{target:?}: {refused:?}"
                );
            }
        }
        assert_eq!(check(&policy, "198.51.100.16/28", false), Ok(()));
        assert_eq!(check(&policy, "2001:db8:5aff::/48", false), Ok(()));
        assert_eq!(
            check(&policy, "198.51.100.0/24", false)
                .unwrap_err()
                .to_string(),
            "198.51.100.0/24 overlaps 198.51.100.0/28 of IPTRACK_SAFELIST; safelisted addresses are never blocked, not even with allow-wide"
        );
    }

    #[test]
    fn wide_blocks_need_allow_wide() {
        let policy = BlockPolicy::default();
        for (target, widest) in [
            ("10.0.0.0/8", 16),
            ("128.0.0.0/1", 16),
            ("::ffff:10.0.0.0/104", 16),
            ("203.0.0.0/15", 16),
            ("2001::/16", 32),
            ("2001:d00::/24", 32),
            ("8000::/1", 32),
        ] {
            assert_eq!(
                check(&policy, target, false),
                Err(Refusal::TooWide {
                    network: display_network(&parse_block_target(target).unwrap()),
                    widest,
                    family: if widest == 16 { "IPv4" } else { "IPv6" },
                }),
                "{target}"
            );
            assert_eq!(check(&policy, target, true), Ok(()), "{target}");
        }
        for target in [
            "203.0.0.0/16",
            "203.0.113.7",
            "2001:db8::/32",
            "2001:db8::1",
        ] {
            assert_eq!(check(&policy, target, false), Ok(()), "{target}");
        }
    }
}
