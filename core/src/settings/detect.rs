//! Streaming detection rules and ban escalation (worker side; the web lists the rules in
//! its admin API).
//!
//! A rule counts the requests of one address that match its methods, path and statuses;
//! `count` of them within `window` flag the address at once (and ban it for `ban`, unless
//! the rule is a dry run). Methods and paths are read exactly as `IPTRACK_RATE_LIMITS`
//! reads them (`rate_limit.rs`), canonical paths included, so a rule on `/login` also
//! counts `/%6cogin`.

use std::time::Duration;

use super::{
    SettingsError,
    parse::{invalid, required},
    rate_limit::{PathPattern, method_matches, parse_duration, parse_methods, parse_path_pattern},
    registry::{Values, Variable},
};

/// The rules when `IPTRACK_DETECT_RULES` is unset: failed logins on the reference
/// server's login route (401: bad credentials; 429: refused by the login rate limit, so a
/// client hammering the closed door counts too). fail2ban's sshd jail bans after 5
/// failures in 10 minutes; web logins sit more often behind shared addresses (offices,
/// carrier NAT) than SSH, so twice that. A person mistyping a password does not get there:
/// the rate limit alone answers the sixth attempt in a minute with 429.
pub const DEFAULT_DETECT_RULES: &str =
    "failed-login=POST /login status=401,429 count=10 window=10m ban=10m";

const DETECT_RULES: Variable = Variable::new(
    "IPTRACK_DETECT_RULES",
    DEFAULT_DETECT_RULES,
    "`;`-separated rules `NAME=METHODS PATH [status=CODES] count=N window=DURATION [ban=DURATION] [dry-run]` evaluated by the workers as batches are written (README, \"Detection\"): e.g. `scan=* /* status=404 count=50 window=1m ban=1h`; statuses a list (`401,403`) or class (`4xx`); count up to 10,000; window up to 24h; ban up to 30d; or `off`",
);
const BAN_ESCALATION: Variable = Variable::new(
    "IPTRACK_BAN_ESCALATION",
    "2",
    "a ban of an address banned before (within `IPTRACK_BAN_MEMORY`) lasts this many times its previous ban; `1` turns escalation off",
);
const BAN_MAX: Variable = Variable::new(
    "IPTRACK_BAN_MAX",
    "24h",
    "longest ban escalation makes (a rule's own `ban=` is never cut)",
);
const BAN_MEMORY: Variable = Variable::new(
    "IPTRACK_BAN_MEMORY",
    "7d",
    "how long a ban is remembered for escalation",
);

pub(super) const VARIABLES: &[&Variable] = &[&DETECT_RULES, &BAN_ESCALATION, &BAN_MAX, &BAN_MEMORY];

/// Largest `count`: the workers keep one Redis entry per counted request per address and
/// rule, so this bounds their memory per address.
pub const MAX_RULE_COUNT: u32 = 10_000;
/// Longest `window`: counters live that long.
pub const MAX_RULE_WINDOW: Duration = Duration::from_secs(86_400);
/// Longest `ban=`, `IPTRACK_BAN_MAX` and `IPTRACK_BAN_MEMORY`.
pub const MAX_BAN: Duration = Duration::from_secs(30 * 86_400);
const MAX_ESCALATION: f64 = 100.0;

/// Names the hourly job and its automatic blocks use (`suspicious_ip.rule`,
/// `blocked_ip.source`); a streaming rule of the same name would be mistaken for them.
const RESERVED_NAMES: &[&str] = &["volume", "sensitive-path", "flag-suspicious-ips"];

/// Streaming detection and the escalation of bans.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectSettings {
    /// `IPTRACK_DETECT_RULES`; empty when `off`. Default [`DEFAULT_DETECT_RULES`].
    pub rules: Vec<DetectRule>,
    /// `IPTRACK_BAN_ESCALATION`: factor from 1 (off) to 100; default 2.
    pub ban_escalation: f64,
    /// `IPTRACK_BAN_MAX`: escalation never makes a ban longer than this (a rule's own
    /// `ban=` longer than it is kept); default 24h.
    pub ban_max: Duration,
    /// `IPTRACK_BAN_MEMORY`: bans older than this do not count for escalation; default 7d.
    pub ban_memory: Duration,
}

/// One streaming rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectRule {
    /// `[a-z0-9-]`, 1–64 characters, unique: shown in `suspicious_ip.rule`,
    /// `blocked_ip.source` (`rule:NAME`), notices and Redis keys.
    pub name: String,
    /// Upper-case methods; empty means every method.
    pub methods: Vec<String>,
    pub path: PathPattern,
    /// Statuses counted; empty means every status.
    pub statuses: Vec<StatusMatch>,
    /// Requests within `window` that fire the rule.
    pub count: u32,
    pub window: Duration,
    /// Block for this long when the rule fires (before escalation); `None`: flag only.
    pub ban: Option<Duration>,
    /// Flag and notify, never block.
    pub dry_run: bool,
}

/// One element of `status=`: a code (`401`) or a class (`4xx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    Code(u16),
    /// The hundreds digit: `4` for `4xx`.
    Class(u8),
}

impl StatusMatch {
    pub fn matches(self, status: u16) -> bool {
        match self {
            StatusMatch::Code(code) => status == code,
            StatusMatch::Class(class) => status / 100 == u16::from(class),
        }
    }
}

impl std::fmt::Display for StatusMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatusMatch::Code(code) => write!(f, "{code}"),
            StatusMatch::Class(class) => write!(f, "{class}xx"),
        }
    }
}

impl DetectRule {
    /// Whether a logged request (canonical path, as stored) counts for this rule.
    pub fn matches(&self, method: &str, path: &str, status: u16) -> bool {
        method_matches(&self.methods, method)
            && self.path.matches(path)
            && (self.statuses.is_empty() || self.statuses.iter().any(|s| s.matches(status)))
    }

    /// What the rule counts, in words: `POST /login status 401,429`.
    pub fn describe(&self) -> String {
        let methods = if self.methods.is_empty() {
            "*".to_owned()
        } else {
            self.methods.join(",")
        };
        let mut text = format!("{methods} {}", self.path);
        if !self.statuses.is_empty() {
            let statuses: Vec<String> = self.statuses.iter().map(ToString::to_string).collect();
            text.push_str(&format!(" status {}", statuses.join(",")));
        }
        text
    }
}

impl Default for DetectSettings {
    fn default() -> Self {
        super::from_defaults(Self::from_values)
    }
}

impl DetectSettings {
    pub(super) fn from_values(values: &Values) -> Result<Self, SettingsError> {
        let rules = required(&DETECT_RULES, values.get(&DETECT_RULES))?;
        let factor = required(&BAN_ESCALATION, values.get(&BAN_ESCALATION))?;
        let ban_max = required(&BAN_MAX, values.get(&BAN_MAX))?;
        let ban_memory = required(&BAN_MEMORY, values.get(&BAN_MEMORY))?;
        let duration = |var: &Variable, v: &str| {
            parse_duration(v, MAX_BAN.as_secs()).ok_or_else(|| {
                invalid(
                    var,
                    v,
                    "expected a duration like 90s, 15m, 24h or 7d, from 1s to 30d",
                )
            })
        };
        Ok(Self {
            rules: parse_detect_rules(rules)
                .map_err(|reason| invalid(&DETECT_RULES, rules, reason))?,
            ban_escalation: parse_factor(factor).ok_or_else(|| {
                invalid(&BAN_ESCALATION, factor, "expected a number from 1 to 100")
            })?,
            ban_max: duration(&BAN_MAX, ban_max)?,
            ban_memory: duration(&BAN_MEMORY, ban_memory)?,
        })
    }
}

/// `2`, `1.5`: plain decimal digits only (no exponent, sign, `inf` or `NaN`), 1 to 100.
fn parse_factor(v: &str) -> Option<f64> {
    let plain = !v.is_empty()
        && v.len() <= 8
        && v.chars().all(|c| c.is_ascii_digit() || c == '.')
        && v.matches('.').count() <= 1;
    v.parse::<f64>()
        .ok()
        .filter(|f| plain && (1.0..=MAX_ESCALATION).contains(f))
}

/// Parses the `IPTRACK_DETECT_RULES` syntax. Every error names the rule it is about.
pub fn parse_detect_rules(v: &str) -> Result<Vec<DetectRule>, String> {
    if v.trim().eq_ignore_ascii_case("off") {
        return Ok(Vec::new());
    }
    let mut rules: Vec<DetectRule> = Vec::new();
    for text in v.split(';').map(str::trim).filter(|t| !t.is_empty()) {
        let rule = parse_rule(text).map_err(|reason| {
            let name = text.split_once('=').map_or(text, |(name, _)| name.trim());
            format!("rule {name:?}: {reason}")
        })?;
        if rules.iter().any(|r| r.name == rule.name) {
            return Err(format!("rule {:?}: two rules have this name", rule.name));
        }
        rules.push(rule);
    }
    if rules.is_empty() {
        return Err("expected at least one rule, or off".to_owned());
    }
    Ok(rules)
}

const SYNTAX: &str =
    "expected NAME=METHODS PATH [status=CODES] count=N window=DURATION [ban=DURATION] [dry-run]";

fn parse_rule(text: &str) -> Result<DetectRule, String> {
    let (name, rest) = text.split_once('=').ok_or(SYNTAX)?;
    let name = name.trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("the name must be 1-64 lower-case letters, digits or -".to_owned());
    }
    if RESERVED_NAMES.contains(&name) {
        return Err("the name is the hourly job's; choose another".to_owned());
    }
    let mut words = rest.split_whitespace();
    let methods = parse_methods(words.next().ok_or(SYNTAX)?)?;
    let path = parse_path_pattern(words.next().ok_or("missing path")?)?;
    let (mut statuses, mut count, mut window, mut ban, mut dry_run) =
        (None, None, None, None, false);
    for word in words {
        if word == "dry-run" {
            dry_run = true;
            continue;
        }
        let (key, value) = word.split_once('=').ok_or_else(|| {
            format!(
                "{word:?}: expected status=CODES, count=N, window=DURATION, ban=DURATION or dry-run"
            )
        })?;
        let repeated = match key {
            "status" => statuses.replace(parse_statuses(value)?).is_some(),
            "count" => count.replace(parse_count(value)?).is_some(),
            "window" => window
                .replace(
                    parse_duration(value, MAX_RULE_WINDOW.as_secs()).ok_or_else(|| {
                        format!(
                            "window {value:?}: expected a duration like 30s, 5m or 1h, up to 24h"
                        )
                    })?,
                )
                .is_some(),
            "ban" => ban
                .replace(parse_duration(value, MAX_BAN.as_secs()).ok_or_else(|| {
                    format!("ban {value:?}: expected a duration like 90s, 15m, 1h or 7d, up to 30d")
                })?)
                .is_some(),
            _ => {
                return Err(format!(
                    "unknown key {key:?} (expected status, count, window, ban or dry-run)"
                ));
            }
        };
        if repeated {
            return Err(format!("{key} is given twice"));
        }
    }
    Ok(DetectRule {
        name: name.to_owned(),
        methods,
        path,
        statuses: statuses.unwrap_or_default(),
        count: count.ok_or("missing count=N")?,
        window: window.ok_or("missing window=DURATION")?,
        ban,
        dry_run,
    })
}

fn parse_count(value: &str) -> Result<u32, String> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_RULE_COUNT).contains(n))
        .ok_or_else(|| {
            format!("count {value:?}: expected a whole number from 1 to {MAX_RULE_COUNT}")
        })
}

/// `401`, `401,403`, `4xx`, `401,5xx`: each a code from 100 to 599 or a class 1xx–5xx.
fn parse_statuses(value: &str) -> Result<Vec<StatusMatch>, String> {
    let bad = |part: &str| {
        format!(
            "status {part:?}: expected codes from 100 to 599 or classes like 4xx, comma-separated"
        )
    };
    let mut statuses = Vec::new();
    for part in value.split(',') {
        let status = match part.as_bytes() {
            [digit @ b'1'..=b'5', b'x', b'x'] => StatusMatch::Class(digit - b'0'),
            [b'1'..=b'5', b'0'..=b'9', b'0'..=b'9'] => {
                StatusMatch::Code(part.parse().map_err(|_| bad(part))?)
            }
            _ => return Err(bad(part)),
        };
        if !statuses.contains(&status) {
            statuses.push(status);
        }
    }
    Ok(statuses)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rule(text: &str) -> DetectRule {
        let mut rules = parse_detect_rules(text).unwrap();
        assert_eq!(rules.len(), 1);
        rules.remove(0)
    }

    #[test]
    fn the_issue_example_parses() {
        let rules = parse_detect_rules(
            "bruteforce=POST /login status=401 count=10 window=5m ban=15m;scan=* /* status=404 count=50 window=1m ban=1h",
        )
        .unwrap();
        assert_eq!(
            rules[0],
            DetectRule {
                name: "bruteforce".into(),
                methods: vec!["POST".into()],
                path: PathPattern::Exact("/login".into()),
                statuses: vec![StatusMatch::Code(401)],
                count: 10,
                window: Duration::from_secs(300),
                ban: Some(Duration::from_secs(900)),
                dry_run: false,
            }
        );
        assert_eq!(rules[1].path, PathPattern::Prefix(String::new()));
        assert!(rules[1].matches("GET", "/anything/below", 404));
        assert!(rules[1].matches("DELETE", "/", 404));
        assert!(!rules[1].matches("GET", "/x", 200));
        assert_eq!(rules[1].ban, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn the_default_rule_counts_failed_and_refused_logins() {
        let settings = DetectSettings::default();
        let [rule] = settings.rules.as_slice() else {
            panic!("one default rule expected: {:?}", settings.rules)
        };
        assert_eq!(rule.name, "failed-login");
        assert!(rule.matches("POST", "/login", 401));
        assert!(rule.matches("POST", "/login", 429));
        assert!(!rule.matches("POST", "/login", 200), "a successful login");
        assert!(
            !rule.matches("POST", "/login", 403),
            "a banned client's refusals"
        );
        assert!(!rule.matches("GET", "/login", 401));
        assert_eq!(
            (rule.count, rule.window, rule.ban),
            (10, Duration::from_secs(600), Some(Duration::from_secs(600)))
        );
        assert_eq!(settings.ban_escalation, 2.0);
        assert_eq!(settings.ban_max, Duration::from_secs(86_400));
        assert_eq!(settings.ban_memory, Duration::from_secs(7 * 86_400));
    }

    #[test]
    fn path_spellings_the_router_merges_are_one_rule_path() {
        // The rule's own spelling is canonicalised, like the stored request paths.
        for spelling in ["/%6cogin", "/%6Cogin", "/l%6fgin", "/login"] {
            let r = rule(&format!("a=POST {spelling} count=1 window=1s"));
            assert_eq!(r.path, PathPattern::Exact("/login".into()), "{spelling}");
            assert!(r.matches("POST", "/login", 401));
        }
        // Spellings the router does not merge reach no /login handler (404), so they are
        // other paths, as in every rule.
        let r = rule("a=POST /login count=1 window=1s");
        for other in ["//login", "/login/", "/LOGIN", "/login/x"] {
            assert!(!r.matches("POST", other, 401), "{other}");
        }
        let prefix = rule("a=* /%61pi/* count=1 window=1s");
        assert!(prefix.matches("GET", "/api", 404));
        assert!(prefix.matches("GET", "/api/v1", 404));
        assert!(!prefix.matches("GET", "/apix", 404));
    }

    #[test]
    fn methods_are_upper_cased_and_matched_exactly() {
        let r = rule("a=post,Get /x count=1 window=1s");
        assert_eq!(r.methods, ["POST", "GET"]);
        assert!(r.matches("POST", "/x", 200));
        // A `post` request line is another method to the router (no POST handler sees it).
        assert!(!r.matches("post", "/x", 200));
        assert!(rule("a=* /x count=1 window=1s").matches("PROPFIND", "/x", 200));
    }

    #[test]
    fn statuses_are_codes_or_classes() {
        let r = rule("a=* /x status=401,5xx count=1 window=1s");
        assert_eq!(r.statuses, [StatusMatch::Code(401), StatusMatch::Class(5)]);
        for (status, counted) in [
            (401, true),
            (500, true),
            (599, true),
            (403, false),
            (200, false),
        ] {
            assert_eq!(r.matches("GET", "/x", status), counted, "{status}");
        }
        assert!(rule("a=* /x count=1 window=1s").matches("GET", "/x", 200));
        assert_eq!(r.describe(), "* /x status 401,5xx");
    }

    #[test]
    fn options_parse_and_dry_run_is_a_word() {
        let r = rule("probe=GET /admin/* count=3 window=30s ban=7d dry-run");
        assert!(r.dry_run);
        assert_eq!(r.ban, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(r.window, Duration::from_secs(30));
        assert!(rule("a=* /x count=1 window=1s").ban.is_none());
        assert!(parse_detect_rules(" off ").unwrap().is_empty());
    }

    #[test]
    fn bad_rules_are_refused_naming_the_rule() {
        for (bad, name) in [
            ("brute", "brute"),
            ("brute=POST /login count=10", "brute"),
            ("brute=POST /login window=5m", "brute"),
            ("brute=POST login count=1 window=1s", "brute"),
            ("brute=P0ST /login count=1 window=1s", "brute"),
            ("brute=POST /log*in count=1 window=1s", "brute"),
            ("brute=POST /login?x=1 count=1 window=1s", "brute"),
            ("brute=POST /login count=0 window=1s", "brute"),
            ("brute=POST /login count=10001 window=1s", "brute"),
            ("brute=POST /login count=-1 window=1s", "brute"),
            (
                "brute=POST /login count=99999999999999999999 window=1s",
                "brute",
            ),
            ("brute=POST /login count=1 window=0s", "brute"),
            ("brute=POST /login count=1 window=25h", "brute"),
            (
                "brute=POST /login count=1 window=99999999999999999999d",
                "brute",
            ),
            ("brute=POST /login count=1 window=1.5m", "brute"),
            ("brute=POST /login count=1 window=1w", "brute"),
            ("brute=POST /login count=1 window=1s ban=31d", "brute"),
            ("brute=POST /login count=1 window=1s ban=0", "brute"),
            ("brute=POST /login status=600 count=1 window=1s", "brute"),
            ("brute=POST /login status=099 count=1 window=1s", "brute"),
            ("brute=POST /login status=4XX count=1 window=1s", "brute"),
            ("brute=POST /login status=6xx count=1 window=1s", "brute"),
            ("brute=POST /login status=401, count=1 window=1s", "brute"),
            ("brute=POST /login status= count=1 window=1s", "brute"),
            ("brute=POST /login count=1 count=2 window=1s", "brute"),
            ("brute=POST /login count=1 window=1s dryrun", "brute"),
            ("brute=POST /login count=1 window=1s burst=3", "brute"),
            ("Brute=POST /login count=1 window=1s", "Brute"),
            ("bru_te=POST /login count=1 window=1s", "bru_te"),
            ("bru:te=POST /login count=1 window=1s", "bru:te"),
            ("=POST /login count=1 window=1s", ""),
            ("volume=* /x count=1 window=1s", "volume"),
            (
                "ok=* /x count=1 window=1s;twice=* /x count=1 window=1s;twice=* /y count=1 window=1s",
                "twice",
            ),
        ] {
            let err = parse_detect_rules(bad).unwrap_err();
            assert!(err.starts_with(&format!("rule {name:?}")), "{bad}: {err}");
        }
        assert!(parse_detect_rules(";").is_err());
        let long = format!("{}=* /x count=1 window=1s", "a".repeat(65));
        assert!(parse_detect_rules(&long).is_err());
    }

    #[test]
    fn escalation_settings_are_bounded() {
        assert_eq!(parse_factor("1"), Some(1.0));
        assert_eq!(parse_factor("1.5"), Some(1.5));
        for bad in [
            "0.5",
            "0",
            "101",
            "inf",
            "NaN",
            "1e2",
            "-2",
            "",
            "1..5",
            "1000000000",
        ] {
            assert_eq!(parse_factor(bad), None, "{bad}");
        }
    }
}
