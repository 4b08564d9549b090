//! Blocklist feeds: the name a feed is known by, and the lists it publishes.
//!
//! A list is text, one entry per line: an address or a CIDR network. `#` and `;` start a
//! comment (at the start of a line or after an entry), blank lines are skipped. That covers
//! plain lists, FireHOL's `.netset`/`.ipset` files (a `#` header, then one entry a line)
//! and Spamhaus DROP (`1.10.16.0/20 ; SBL256894`). Anything else on a line fails the whole
//! list, naming the line: a list that is partly garbage (an HTML error page served with
//! 200, a truncated download) must not be half imported.
//!
//! The text comes from a file or a URL someone else controls, so it is bounded before it
//! is read ([`MAX_LIST_BYTES`]) and line by line ([`MAX_LINE_BYTES`], [`MAX_ENTRIES`]).

use std::collections::BTreeSet;

use ipnet::IpNet;

use super::{BlockTargetError, parse_block_target, policy::covers_everyone};

/// Largest list read, in bytes. FireHOL level1 is about 80 kB, Spamhaus DROP about 50 kB,
/// the largest FireHOL aggregates a few MB; 32 MiB holds 500,000 IPv6 networks with
/// comments, and is what one import may cost in memory before parsing.
pub const MAX_LIST_BYTES: usize = 32 * 1024 * 1024;
/// Longest line, comment included. Real lists stay under 200 bytes.
pub const MAX_LINE_BYTES: usize = 4096;
/// Most entries one list may hold. Every entry of every source lives in each web
/// instance's matcher (about 200 bytes each, BENCHMARKS.md "Blocklist feeds").
pub const MAX_ENTRIES: usize = 500_000;
/// Longest feed name.
pub const MAX_NAME_CHARS: usize = 64;

/// A feed's name: what `feed:NAME` in `blocked_ip.source` holds. Lower-case letters,
/// digits and `-`, starting with a letter or digit, at most [`MAX_NAME_CHARS`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FeedName(String);

/// Why text is not a feed name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a feed name: use 1 to 64 lower-case letters, digits and '-', starting with a letter or digit (e.g. firehol1)"
)]
pub struct FeedNameError(pub String);

impl FeedName {
    pub fn parse(text: &str) -> Result<Self, FeedNameError> {
        let valid = !text.is_empty()
            && text.len() <= MAX_NAME_CHARS
            && !text.starts_with('-')
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(FeedNameError(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for FeedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a list is refused. Every variant refuses the whole list; nothing is imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedListError {
    #[error("the list is larger than {MAX_LIST_BYTES} bytes")]
    TooLarge,
    #[error("line {line}: longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong { line: usize },
    #[error("line {line}: not UTF-8 text")]
    NotText { line: usize },
    #[error("line {line}: {reason}")]
    BadEntry {
        line: usize,
        reason: BlockTargetError,
    },
    /// A list that blocks everyone is broken or hostile, never meant.
    #[error(
        "line {line}: {network} covers every IPv4 or every IPv6 address; iptrack never blocks everyone"
    )]
    Everyone { line: usize, network: String },
    #[error("the list has more than {MAX_ENTRIES} entries")]
    TooManyEntries,
}

/// A parsed list: its distinct entries, canonical (host bits zero, IPv4-mapped as IPv4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedList {
    pub entries: BTreeSet<IpNet>,
    /// Lines that held an entry (duplicates included).
    pub entry_lines: usize,
}

/// Parses a list (see the module comment). Host bits set fail the line, as in
/// `iptrack block`: FireHOL and Spamhaus publish clean networks, so a list with
/// `203.0.113.7/24` is not one of theirs, and guessing which network was meant could
/// block more than anyone listed.
pub fn parse_list(text: &[u8]) -> Result<FeedList, FeedListError> {
    if text.len() > MAX_LIST_BYTES {
        return Err(FeedListError::TooLarge);
    }
    let mut list = FeedList::default();
    for (index, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line = index + 1;
        if raw.len() > MAX_LINE_BYTES {
            return Err(FeedListError::LineTooLong { line });
        }
        let raw = std::str::from_utf8(raw).map_err(|_| FeedListError::NotText { line })?;
        let entry = raw
            .split(['#', ';'])
            .next()
            .unwrap_or_default()
            .trim_matches(|c: char| c.is_ascii_whitespace());
        if entry.is_empty() {
            continue;
        }
        let network =
            parse_block_target(entry).map_err(|reason| FeedListError::BadEntry { line, reason })?;
        if covers_everyone(&network) {
            return Err(FeedListError::Everyone {
                line,
                network: super::display_network(&network),
            });
        }
        list.entries.insert(network);
        list.entry_lines += 1;
        if list.entries.len() > MAX_ENTRIES {
            return Err(FeedListError::TooManyEntries);
        }
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::blocklist::display_network;

    fn shown(list: &FeedList) -> Vec<String> {
        list.entries.iter().map(display_network).collect()
    }

    #[test]
    fn firehol_netsets_are_read() {
        let text = b"#\n# firehol_level1\n#\n# ipv4 hash:net ipset\n#\n\
                     0.0.0.0/8\n1.10.16.0/20\n223.254.0.0/16\n203.0.113.7\n";
        let list = parse_list(text).unwrap();
        assert_eq!(
            shown(&list),
            ["0.0.0.0/8", "1.10.16.0/20", "203.0.113.7", "223.254.0.0/16"]
        );
    }

    #[test]
    fn spamhaus_drop_lines_and_trailing_comments_are_read() {
        let text = b"; Spamhaus DROP List 2026/12/01 - (c) 2026 The Spamhaus Project\r\n\
                     ; Last-Modified: Mon, 30 Nov 2026 12:00:00 GMT\r\n\
                     1.10.16.0/20 ; SBL256894\r\n\
                     2001:db8:bad::/48 ; SBL1\r\n\
                     \r\n\
                     \t 198.51.100.9 # a trailing hash comment \n\
                     ::ffff:192.0.2.0/120\n";
        let list = parse_list(text).unwrap();
        assert_eq!(
            shown(&list),
            [
                "1.10.16.0/20",
                "192.0.2.0/24",
                "198.51.100.9",
                "2001:db8:bad::/48"
            ]
        );
        assert_eq!(list.entry_lines, 4);
    }

    #[test]
    fn duplicates_count_once() {
        let list = parse_list(b"203.0.113.7\n203.0.113.7/32\n::ffff:203.0.113.7\n").unwrap();
        assert_eq!(shown(&list), ["203.0.113.7"]);
        assert_eq!(list.entry_lines, 3);
    }

    #[test]
    fn a_bad_line_fails_the_list_naming_its_number() {
        for (text, message) in [
            (
                &b"1.2.3.4\n# ok\n<html>\n"[..],
                "line 3: \"<html>\" is not an IP address or CIDR network",
            ),
            (
                &b"1.2.3.4\n203.0.113.7/24 ; SBL\n"[..],
                "line 2: 203.0.113.7/24 has host bits set; did you mean 203.0.113.0/24?",
            ),
            (&b"1.2.3.4 5.6.7.8\n"[..], "line 1: \"1.2.3.4 5.6.7.8\""),
            (&b"\n\n10.0.0.0/33"[..], "line 3: \"10.0.0.0/33\""),
            (&b"1.2.3.4\n\xff\xfe\n"[..], "line 2: not UTF-8 text"),
            (
                &b"1.2.3.4\n0.0.0.0/0\n"[..],
                "line 2: 0.0.0.0/0 covers every IPv4 or every IPv6 address",
            ),
            (&b"::/0 ; all\n"[..], "line 1: ::/0 covers every"),
        ] {
            let error = parse_list(text).unwrap_err().to_string();
            assert!(error.starts_with(message), "{error}");
        }
    }

    #[test]
    fn lists_are_bounded() {
        let long = format!("# {}\n", "x".repeat(MAX_LINE_BYTES));
        assert_eq!(
            parse_list(format!("1.2.3.4\n{long}").as_bytes()),
            Err(FeedListError::LineTooLong { line: 2 })
        );
        assert_eq!(
            parse_list(&vec![b'\n'; MAX_LIST_BYTES + 1]),
            Err(FeedListError::TooLarge)
        );
        let mut many = String::new();
        for i in 0..=MAX_ENTRIES {
            many.push_str(&format!("2001:db8::{:x}:{:x}\n", i >> 16, i & 0xffff));
        }
        assert_eq!(
            parse_list(many.as_bytes()),
            Err(FeedListError::TooManyEntries)
        );
    }

    #[test]
    fn an_empty_list_parses_to_no_entries() {
        let list = parse_list(b"# nothing today\n\n").unwrap();
        assert!(list.entries.is_empty());
        assert!(parse_list(b"").unwrap().entries.is_empty());
    }

    #[test]
    fn feed_names_are_checked() {
        for good in ["firehol1", "spamhaus-drop", "a", &"x".repeat(64)] {
            assert_eq!(FeedName::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "-x",
            "Firehol",
            "fire hol",
            "feed:x",
            "a_b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(FeedName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
