//! Blocked addresses and networks: parsing what a person types, the in-memory matcher every
//! web instance holds, and the change notices that keep the matchers in step.
//!
//! The `blocked_ip` table is the source of truth. A change is written there first, then
//! announced on the Redis channel `{prefix}:blocklist` so every web instance applies it at
//! once; each instance also reloads the whole table periodically, which repairs anything a
//! lost notice missed. Every change goes through [`service::BlocklistService`], which
//! checks it against [`policy::BlockPolicy`] first.

pub mod feed;
pub mod policy;
pub mod service;

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use serde::{Deserialize, Serialize};

/// Why text is not something that can be blocked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockTargetError {
    #[error(
        "{0:?} is not an IP address or CIDR network (expected e.g. 203.0.113.7, 2001:db8::1, 203.0.113.0/24)"
    )]
    Malformed(String),
    #[error("{given} has host bits set; did you mean {network}?")]
    HostBitsSet { given: String, network: String },
}

/// Parses an address (`203.0.113.7`, `2001:db8::1`, `::ffff:203.0.113.7`) or a network
/// (`203.0.113.0/24`) into its canonical form: IPv4-mapped IPv6 becomes IPv4, an address is
/// a /32 or /128, and a network must have its host bits zero.
pub fn parse_block_target(text: &str) -> Result<IpNet, BlockTargetError> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(ip.to_canonical()));
    }
    let net: IpNet = text
        .parse()
        .map_err(|_| BlockTargetError::Malformed(text.to_owned()))?;
    if net.trunc() != net {
        return Err(BlockTargetError::HostBitsSet {
            given: text.to_owned(),
            network: display_network(&net.trunc()),
        });
    }
    Ok(canonical_network(net))
}

/// `::ffff:a.b.c.d/(96+n)` is the IPv4 network `a.b.c.d/n`.
pub fn canonical_network(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = v6.network().to_ipv4_mapped()
        && let Ok(mapped) = Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(mapped);
    }
    net
}

/// How a network is written in `blocked_ip.ip_address` and shown to people: a single
/// address without a prefix length, a network in CIDR form.
pub fn display_network(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

/// Every `blocked_ip.ip_address` value whose block would cover `ip`: the address itself
/// and each network holding it (a /0 too, which the policy never stores), written as the
/// blocklist writes them ([`display_network`]). 33 entries for IPv4, 129 for IPv6; a
/// lookup by these hits the unique index rather than reading every network.
pub fn covering_entries(ip: IpAddr) -> Vec<String> {
    let ip = ip.to_canonical();
    let max = match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    (0..=max)
        .filter_map(|len| IpNet::new(ip, len).ok())
        .map(|net| display_network(&net.trunc()))
        .collect()
}

/// Who made a block (`blocked_ip.source`). Automatic blocks never change a manual one, and
/// a feed's re-import withdraws only its own entries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BlockSource {
    /// A person: `iptrack block`, the admin API, the dashboard. Stored as `manual`.
    Manual,
    /// A detection rule, or the hourly flag job's rule (`volume`, `sensitive-path`).
    /// Stored as `rule:NAME`.
    Rule(String),
    /// An imported blocklist. Stored as `feed:NAME`.
    Feed(String),
}

impl BlockSource {
    /// What `blocked_ip.source` holds for this source.
    pub fn stored(&self) -> String {
        match self {
            Self::Manual => "manual".to_owned(),
            Self::Rule(name) => format!("rule:{name}"),
            Self::Feed(name) => format!("feed:{name}"),
        }
    }

    /// The source a stored `blocked_ip.source` names; anything unknown counts as manual,
    /// the side nothing automatic changes.
    pub fn from_stored(stored: &str) -> Self {
        if let Some(name) = stored.strip_prefix("rule:") {
            Self::Rule(name.to_owned())
        } else if let Some(name) = stored.strip_prefix("feed:") {
            Self::Feed(name.to_owned())
        } else {
            Self::Manual
        }
    }
}

impl std::fmt::Display for BlockSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.stored())
    }
}

/// A change to the blocklist, announced to every web instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum BlocklistChange {
    Block {
        network: IpNet,
        expires_at: Option<DateTime<Utc>>,
    },
    Unblock {
        network: IpNet,
    },
    /// Many rows changed at once (a feed import): reload the whole table. One notice
    /// instead of one per entry, which for a 100,000-entry list would be 100,000 copies of
    /// the matcher on every instance.
    Reload,
}

/// The Redis channel blocklist changes are published on.
pub fn change_channel(prefix: &str) -> String {
    format!("{prefix}:blocklist")
}

/// Announces `change` to every web instance. Fire and forget: an instance that misses it
/// catches up at its next full reload. Only [`service::BlocklistService`] announces.
async fn publish_change<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    prefix: &str,
    change: &BlocklistChange,
) -> Result<(), redis::RedisError> {
    let message = serde_json::to_string(change).map_err(|e| {
        redis::RedisError::from((redis::ErrorKind::Client, "cannot encode", e.to_string()))
    })?;
    redis::cmd("PUBLISH")
        .arg(change_channel(prefix))
        .arg(message)
        .query_async::<i64>(conn)
        .await
        .map(|_| ())
}

/// The matcher: which addresses are blocked right now. Lookups walk a prefix trie (no
/// allocation, no I/O); an entry past its expiry stops matching without any reload.
#[derive(Debug, Clone, Default)]
pub struct Blocklist {
    v4: PrefixMap<Ipv4Net, Expiry>,
    v6: PrefixMap<Ipv6Net, Expiry>,
}

/// When an entry stops applying, in microseconds since the epoch (the precision PostgreSQL
/// stores; whole seconds lifted a block up to a second early, which a 2 s detection ban
/// showed); `None` never.
type Expiry = Option<i64>;

impl Blocklist {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or updates) a blocked network.
    pub fn insert(&mut self, network: IpNet, expires_at: Option<DateTime<Utc>>) {
        let expiry = expires_at.map(|t| t.timestamp_micros());
        match canonical_network(network.trunc()) {
            IpNet::V4(net) => {
                self.v4.insert(net, expiry);
            }
            IpNet::V6(net) => {
                self.v6.insert(net, expiry);
            }
        }
    }

    /// Removes a blocked network; returns whether it was there.
    pub fn remove(&mut self, network: &IpNet) -> bool {
        match canonical_network(network.trunc()) {
            IpNet::V4(net) => self.v4.remove(&net).is_some(),
            IpNet::V6(net) => self.v6.remove(&net).is_some(),
        }
    }

    /// Applies an announced change. [`BlocklistChange::Reload`] changes nothing here: the
    /// holder of the list reloads it from `blocked_ip` (`iptrack-middleware`'s sync).
    pub fn apply(&mut self, change: &BlocklistChange) {
        match change {
            BlocklistChange::Block {
                network,
                expires_at,
            } => self.insert(*network, *expires_at),
            BlocklistChange::Unblock { network } => {
                self.remove(network);
            }
            BlocklistChange::Reload => {}
        }
    }

    /// Whether `ip` is blocked at `now`: some unexpired entry covers it.
    pub fn blocks(&self, ip: IpAddr, now: DateTime<Utc>) -> bool {
        let now = now.timestamp_micros();
        let live = |expiry: &Expiry| expiry.is_none_or(|at| now < at);
        match ip.to_canonical() {
            IpAddr::V4(addr) => self
                .v4
                .cover(&Ipv4Net::from(addr))
                .any(|(_, expiry)| live(expiry)),
            IpAddr::V6(addr) => self
                .v6
                .cover(&Ipv6Net::from(addr))
                .any(|(_, expiry)| live(expiry)),
        }
    }

    /// Entries held (expired ones included until the next reload).
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_entries_covering_an_address_are_written_as_blocks_are_stored() {
        let v4 = covering_entries("::ffff:81.2.69.142".parse().unwrap());
        assert_eq!(v4.len(), 33);
        assert_eq!(v4[32], "81.2.69.142");
        assert!(v4.contains(&"81.2.69.0/24".to_owned()));
        assert!(v4.contains(&"0.0.0.0/0".to_owned()));
        let v6 = covering_entries("2001:db8::1".parse().unwrap());
        assert_eq!(v6.len(), 129);
        assert_eq!(v6[128], "2001:db8::1");
        assert!(v6.contains(&"2001:db8::/32".to_owned()));
    }

    fn net(s: &str) -> IpNet {
        parse_block_target(s).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn what_people_type_is_canonicalised() {
        assert_eq!(display_network(&net("203.0.113.7")), "203.0.113.7");
        assert_eq!(display_network(&net("::ffff:203.0.113.7")), "203.0.113.7");
        assert_eq!(display_network(&net("203.0.113.0/24")), "203.0.113.0/24");
        assert_eq!(
            display_network(&net("::ffff:203.0.113.0/120")),
            "203.0.113.0/24"
        );
        assert_eq!(display_network(&net("2001:DB8::1")), "2001:db8::1");
        assert_eq!(display_network(&net("2001:db8::/32")), "2001:db8::/32");
        assert_eq!(display_network(&net("203.0.113.7/32")), "203.0.113.7");
    }

    #[test]
    fn bad_targets_say_what_is_wrong() {
        assert_eq!(
            parse_block_target("203.0.113.7/24")
                .unwrap_err()
                .to_string(),
            "203.0.113.7/24 has host bits set; did you mean 203.0.113.0/24?"
        );
        assert!(matches!(
            parse_block_target("300.1.1.1"),
            Err(BlockTargetError::Malformed(_))
        ));
        assert!(matches!(
            parse_block_target("10.0.0.0/33"),
            Err(BlockTargetError::Malformed(_))
        ));
        assert!(matches!(
            parse_block_target(""),
            Err(BlockTargetError::Malformed(_))
        ));
    }

    #[test]
    fn addresses_and_networks_of_both_families_match() {
        let now = Utc::now();
        let mut list = Blocklist::new();
        list.insert(net("203.0.113.7"), None);
        list.insert(net("198.51.100.0/24"), None);
        list.insert(net("2001:db8:bad::/48"), None);
        assert!(list.blocks(ip("203.0.113.7"), now));
        assert!(!list.blocks(ip("203.0.113.8"), now));
        assert!(list.blocks(ip("198.51.100.200"), now));
        assert!(list.blocks(ip("::ffff:198.51.100.1"), now));
        assert!(!list.blocks(ip("198.51.101.1"), now));
        assert!(list.blocks(ip("2001:db8:bad:1::9"), now));
        assert!(!list.blocks(ip("2001:db8:bae::1"), now));
        assert_eq!(list.len(), 3);
    }

    #[test]
    fn an_entry_stops_matching_at_its_expiry() {
        let now = Utc::now();
        let mut list = Blocklist::new();
        list.insert(
            net("203.0.113.7"),
            Some(now + chrono::Duration::seconds(10)),
        );
        assert!(list.blocks(ip("203.0.113.7"), now));
        assert!(!list.blocks(ip("203.0.113.7"), now + chrono::Duration::seconds(10)));
    }

    #[test]
    fn an_entry_applies_until_its_expiry_to_the_microsecond() {
        let now = Utc::now();
        let end = now + chrono::Duration::milliseconds(1_900);
        let mut list = Blocklist::new();
        list.insert(net("203.0.113.7"), Some(end));
        assert!(list.blocks(ip("203.0.113.7"), end - chrono::Duration::microseconds(1)));
        assert!(!list.blocks(ip("203.0.113.7"), end));
    }

    #[test]
    fn an_expired_narrow_entry_does_not_hide_a_live_wide_one() {
        let now = Utc::now();
        let mut list = Blocklist::new();
        list.insert(net("203.0.113.7"), Some(now - chrono::Duration::seconds(1)));
        list.insert(net("203.0.113.0/24"), None);
        assert!(list.blocks(ip("203.0.113.7"), now));
    }

    #[test]
    fn changes_apply_and_unblock_removes() {
        let now = Utc::now();
        let mut list = Blocklist::new();
        let change = BlocklistChange::Block {
            network: net("2001:db8::1"),
            expires_at: None,
        };
        let wire = serde_json::to_string(&change).unwrap();
        assert_eq!(
            serde_json::from_str::<BlocklistChange>(&wire).unwrap(),
            change
        );
        list.apply(&change);
        assert!(list.blocks(ip("2001:db8::1"), now));
        list.apply(&BlocklistChange::Unblock {
            network: net("2001:db8::1"),
        });
        assert!(!list.blocks(ip("2001:db8::1"), now));
        assert!(list.is_empty());
        assert_eq!(
            serde_json::to_string(&BlocklistChange::Reload).unwrap(),
            r#"{"op":"reload"}"#
        );
    }
}
