//! Blocklist feeds the scheduler keeps fresh (`IPTRACK_BLOCKLIST_FEEDS`), and how their
//! lists are fetched.

use std::{path::PathBuf, time::Duration};

use super::{
    SecretUrl, SettingsError,
    parse::invalid,
    registry::{Values, Variable},
    secret_url::redact,
};
use crate::blocklist::feed::FeedName;

const BLOCKLIST_FEEDS: Variable = Variable::unset(
    "IPTRACK_BLOCKLIST_FEEDS",
    "(none)",
    "`;`-separated `NAME=URL@INTERVAL` lists the scheduler refreshes, e.g. `firehol1=https://iplists.firehol.org/files/firehol_level1.netset@6h`",
);
const BLOCKLIST_FEEDS_CA_FILE: Variable = Variable::unset(
    "IPTRACK_BLOCKLIST_FEEDS_CA_FILE",
    "(none)",
    "PEM certificates trusted for `https://` feeds besides the system's roots",
);

pub(super) const VARIABLES: &[&Variable] = &[&BLOCKLIST_FEEDS, &BLOCKLIST_FEEDS_CA_FILE];

/// Shortest refresh interval. Feeds publish hourly at most (Spamhaus asks for no more
/// than one download an hour); seconds are allowed for tests and private mirrors.
pub const MIN_FEED_INTERVAL: Duration = Duration::from_secs(1);
/// Longest refresh interval.
pub const MAX_FEED_INTERVAL: Duration = Duration::from_secs(30 * 86_400);
/// Most feeds configured at once.
pub const MAX_FEEDS: usize = 64;

/// One feed the scheduler refreshes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedSchedule {
    /// Its entries are `feed:NAME` in `blocked_ip.source`.
    pub name: FeedName,
    /// `http://` or `https://`; may carry credentials, so never shown unmasked.
    pub url: SecretUrl,
    /// A refresh is enqueued once per interval, cluster-wide.
    pub interval: Duration,
}

/// Which feeds are refreshed (scheduler) and how lists are fetched (worker, CLI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedSettings {
    /// `IPTRACK_BLOCKLIST_FEEDS`: `;`-separated `NAME=URL@INTERVAL`; names unique, e.g.
    /// `firehol1=https://iplists.firehol.org/files/firehol_level1.netset@6h;
    /// drop=https://www.spamhaus.org/drop/drop.txt@12h`. Empty: no scheduled refreshes
    /// (`iptrack import-blocklist` still imports by hand).
    pub feeds: Vec<FeedSchedule>,
    /// `IPTRACK_BLOCKLIST_FEEDS_CA_FILE`: PEM certificates trusted for `https://` feeds in
    /// addition to the system's roots (a private mirror, a TLS-inspecting proxy).
    pub ca_file: Option<PathBuf>,
}

impl FeedSettings {
    pub(super) fn from_values(values: &Values) -> Result<Self, SettingsError> {
        let feeds = match values.get(&BLOCKLIST_FEEDS) {
            Some(text) => parse_feeds(text)?,
            None => Vec::new(),
        };
        Ok(Self {
            feeds,
            ca_file: values.get(&BLOCKLIST_FEEDS_CA_FILE).map(PathBuf::from),
        })
    }
}

impl Default for FeedSettings {
    fn default() -> Self {
        super::from_defaults(Self::from_values)
    }
}

/// Parses `IPTRACK_BLOCKLIST_FEEDS`. An error shows the offending entry with any password
/// in its URL masked.
fn parse_feeds(text: &str) -> Result<Vec<FeedSchedule>, SettingsError> {
    let mut feeds: Vec<FeedSchedule> = Vec::new();
    for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let shown = || match entry.split_once('=') {
            Some((name, rest)) => format!("{name}={}", redact_with_interval(rest)),
            None => entry.to_owned(),
        };
        let fail = |reason: String| invalid(&BLOCKLIST_FEEDS, &shown(), reason);
        let (name, rest) = entry
            .split_once('=')
            .ok_or_else(|| fail("expected NAME=URL@INTERVAL".to_owned()))?;
        let name = FeedName::parse(name.trim()).map_err(|e| fail(e.to_string()))?;
        // The last `@`: a URL's user-info has one too.
        let (url, interval) = rest
            .rsplit_once('@')
            .ok_or_else(|| fail("expected NAME=URL@INTERVAL, e.g. @6h".to_owned()))?;
        let url = url.trim();
        check_url(url).map_err(fail)?;
        let interval = match humantime::parse_duration(interval.trim()) {
            Ok(d) if (MIN_FEED_INTERVAL..=MAX_FEED_INTERVAL).contains(&d) => d,
            _ => {
                return Err(fail(format!(
                    "{:?} is not an interval from 1s to 30d, e.g. 6h",
                    interval.trim()
                )));
            }
        };
        if feeds.iter().any(|feed| feed.name == name) {
            return Err(fail(format!("feed {name} is configured twice")));
        }
        feeds.push(FeedSchedule {
            name,
            url: SecretUrl::new(url),
            interval,
        });
        if feeds.len() > MAX_FEEDS {
            return Err(fail(format!("more than {MAX_FEEDS} feeds")));
        }
    }
    Ok(feeds)
}

/// `URL@INTERVAL` with the URL's password masked.
fn redact_with_interval(rest: &str) -> String {
    match rest.rsplit_once('@') {
        Some((url, interval)) => format!("{}@{interval}", redact(url)),
        None => redact(rest),
    }
}

/// A feed URL: `http://` or `https://`, a host, no whitespace or control characters.
/// (reqwest parses it fully when it fetches; this catches a mistyped setting at start.)
pub fn check_url(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
        .ok_or_else(|| format!("{:?} is not an http:// or https:// URL", redact(url)))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{:?} is not a valid URL", redact(url)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn feeds_are_read_with_their_intervals() {
        let feeds = parse_feeds(
            " firehol1=https://iplists.firehol.org/files/firehol_level1.netset@6h ; \
             drop=http://user:pw@mirror.example/drop.txt?x=1@90m;",
        )
        .unwrap();
        assert_eq!(feeds.len(), 2);
        assert_eq!(feeds[0].name.as_str(), "firehol1");
        assert_eq!(
            feeds[0].url.expose(),
            "https://iplists.firehol.org/files/firehol_level1.netset"
        );
        assert_eq!(feeds[0].interval, Duration::from_secs(6 * 3600));
        assert_eq!(
            feeds[1].url.expose(),
            "http://user:pw@mirror.example/drop.txt?x=1"
        );
        assert_eq!(feeds[1].interval, Duration::from_secs(90 * 60));
        assert!(parse_feeds("").unwrap().is_empty());
    }

    #[test]
    fn a_bad_feed_is_named_without_its_password() {
        for (text, expected) in [
            ("firehol1", "expected NAME=URL@INTERVAL"),
            ("Bad=http://h/x@1h", "is not a feed name"),
            ("a=http://h/x", "expected NAME=URL@INTERVAL, e.g. @6h"),
            ("a=ftp://h/x@1h", "is not an http:// or https:// URL"),
            ("a=http:///x@1h", "is not a valid URL"),
            ("a=http://h/x@0s", "is not an interval"),
            ("a=http://h/x@31d", "is not an interval"),
            ("a=http://h/x@soon", "is not an interval"),
            ("a=http://h/x@1h;a=http://h/y@1h", "configured twice"),
        ] {
            let error = parse_feeds(text).unwrap_err().to_string();
            assert!(error.contains("IPTRACK_BLOCKLIST_FEEDS"), "{error}");
            assert!(error.contains(expected), "{text}: {error}");
        }
        let error = parse_feeds("a=http://u:s3cret@h/x@never")
            .unwrap_err()
            .to_string();
        assert!(!error.contains("s3cret"), "{error}");
        assert!(error.contains("a=http://u:***@h/x@never"), "{error}");
    }
}
