//! Settings of the middleware's rate limiter.

use std::time::Duration;

use super::{
    SettingsError,
    parse::{bounded, invalid, required},
    registry::{Values, Variable},
};
use crate::path::canonical_path;

/// The rules when `IPTRACK_RATE_LIMITS` is unset: the login form, 5 anonymous or 10
/// authenticated posts a minute.
pub const DEFAULT_RATE_LIMITS: &str = "login=POST /login anon=5 user=10 window=60s";

const RATE_LIMITS: Variable = Variable::new(
    "IPTRACK_RATE_LIMITS",
    DEFAULT_RATE_LIMITS,
    "`;`-separated rules `NAME=METHODS PATH anon=N user=N window=DURATION` (methods comma-separated or `*`; `/api/*` covers `/api` and below; windows `60s`, `5m`, `1h`, up to `24h`; limits up to 10,000), or `off`",
);
const RATE_LIMIT_IPV6_PREFIX: Variable = Variable::new(
    "IPTRACK_RATE_LIMIT_IPV6_PREFIX",
    "64",
    "anonymous IPv6 clients share one budget per network of this prefix",
);
pub(super) const VARIABLES: &[&Variable] = &[&RATE_LIMITS, &RATE_LIMIT_IPV6_PREFIX];

/// Longest window a rule may have, and largest limit: the limiter keeps one entry per
/// accepted request for a window, so these bound its memory per client.
const MAX_WINDOW_SECS: u64 = 86_400;
const MAX_LIMIT: u32 = 10_000;

/// Rate limits, applied by the middleware before the application.
#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    /// `IPTRACK_RATE_LIMITS`: `;`-separated rules, each
    /// `NAME=METHODS PATH anon=N user=N window=DURATION` (methods comma-separated or `*`;
    /// a path ending in `/*` also covers everything below it; durations like `60s`, `5m`,
    /// `1h`). `off` turns rate limiting off. Default [`DEFAULT_RATE_LIMITS`].
    pub rules: Vec<RateLimitRule>,
    /// `IPTRACK_RATE_LIMIT_IPV6_PREFIX`: anonymous IPv6 clients share one budget per
    /// network of this prefix length (default 64: one customer's allocation).
    pub ipv6_prefix: u8,
}

/// One rate-limited route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitRule {
    /// Names the policy in the `RateLimit-Policy` header and in Redis keys: letters,
    /// digits, `-` and `_`.
    pub name: String,
    /// Upper-case HTTP methods the rule covers; empty means every method.
    pub methods: Vec<String>,
    pub path: PathPattern,
    /// Requests a client without a user id may make per window, per address (IPv6: per
    /// network of `ipv6_prefix`).
    pub anonymous_limit: u32,
    /// Requests an authenticated user may make per window, wherever they come from.
    pub user_limit: u32,
    pub window: Duration,
}

/// Which request paths a rule covers, in canonical form (`crate::path`): match it against
/// a request's canonical path, never the raw one, or `/%6cogin` escapes a `/login` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    /// This path only.
    Exact(String),
    /// This path and every path below it (`/api/*` is `Prefix("/api")`).
    Prefix(String),
}

impl PathPattern {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(exact) => path == exact,
            PathPattern::Prefix(prefix) => path
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        }
    }
}

impl RateLimitRule {
    pub fn matches(&self, method: &str, path: &str) -> bool {
        method_matches(&self.methods, method) && self.path.matches(path)
    }
}

/// Whether `method` is one of `methods` (upper case, from [`parse_methods`]; empty means
/// every method). Compared exactly: HTTP methods are case-sensitive, and the router sends
/// a `post` request to no `POST` handler.
pub fn method_matches(methods: &[String], method: &str) -> bool {
    methods.is_empty() || methods.iter().any(|m| m == method)
}

/// A rule's methods: `*` (every method, returned as an empty list) or a comma-separated
/// list, upper-cased (`post,GET` is `POST`, `GET`). Shared by `IPTRACK_RATE_LIMITS` and
/// `IPTRACK_DETECT_RULES`, so both read methods the same way.
pub(super) fn parse_methods(word: &str) -> Result<Vec<String>, String> {
    match word {
        "*" => Ok(Vec::new()),
        list => list
            .split(',')
            .map(|m| {
                if !m.is_empty() && m.len() <= 16 && m.chars().all(|c| c.is_ascii_alphabetic()) {
                    Ok(m.to_ascii_uppercase())
                } else {
                    Err(format!("{m:?} is not an HTTP method"))
                }
            })
            .collect(),
    }
}

/// A rule's path: exact, or a final `/*` for a prefix; kept canonical, as the request
/// paths it is matched against are (`/%6cogin` is `/login`). A query or fragment is
/// refused: request paths are matched without them, so such a rule would match nothing.
pub(super) fn parse_path_pattern(path: &str) -> Result<PathPattern, String> {
    if !path.starts_with('/') {
        return Err(format!("path {path:?} does not start with /"));
    }
    if path.contains(['?', '#']) {
        return Err(format!(
            "path {path:?} holds ? or #: rules match the path without query or fragment"
        ));
    }
    match path.strip_suffix("/*") {
        Some(prefix) => Ok(PathPattern::Prefix(canonical_path(prefix).into_owned())),
        None if path.contains('*') => Err("* is only allowed as a final /*".to_owned()),
        None => Ok(PathPattern::Exact(canonical_path(path).into_owned())),
    }
}

impl std::fmt::Display for PathPattern {
    /// As a rule spells it: `/login`, or `/api/*` for a prefix.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathPattern::Exact(path) => f.write_str(path),
            PathPattern::Prefix(prefix) => write!(f, "{prefix}/*"),
        }
    }
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        super::from_defaults(Self::from_values)
    }
}

impl RateLimitSettings {
    pub(super) fn from_values(values: &Values) -> Result<Self, SettingsError> {
        let rules = required(&RATE_LIMITS, values.get(&RATE_LIMITS))?;
        let ipv6_prefix = required(&RATE_LIMIT_IPV6_PREFIX, values.get(&RATE_LIMIT_IPV6_PREFIX))?;
        Ok(Self {
            rules: parse_rules(rules).map_err(|reason| invalid(&RATE_LIMITS, rules, reason))?,
            ipv6_prefix: bounded(&RATE_LIMIT_IPV6_PREFIX, ipv6_prefix, 1u8, 128u8)?,
        })
    }
}

/// Parses the `IPTRACK_RATE_LIMITS` syntax (see [`RateLimitSettings::rules`]).
pub fn parse_rules(v: &str) -> Result<Vec<RateLimitRule>, String> {
    if v.trim().eq_ignore_ascii_case("off") {
        return Ok(Vec::new());
    }
    let mut rules: Vec<RateLimitRule> = Vec::new();
    for text in v.split(';').map(str::trim).filter(|t| !t.is_empty()) {
        let rule = parse_rule(text).map_err(|reason| format!("rule {text:?}: {reason}"))?;
        if rules.iter().any(|r| r.name == rule.name) {
            return Err(format!("two rules are named {:?}", rule.name));
        }
        rules.push(rule);
    }
    if rules.is_empty() {
        return Err("expected at least one rule, or off".to_owned());
    }
    Ok(rules)
}

fn parse_rule(text: &str) -> Result<RateLimitRule, String> {
    let (name, rest) = text
        .split_once('=')
        .ok_or("expected NAME=METHODS PATH anon=N user=N window=DURATION")?;
    let name = name.trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("the name must be 1-64 letters, digits, - or _".to_owned());
    }
    let mut words = rest.split_whitespace();
    let methods = parse_methods(words.next().ok_or("missing methods")?)?;
    let path = parse_path_pattern(words.next().ok_or("missing path")?)?;
    let (mut anonymous_limit, mut user_limit, mut window) = (None, None, None);
    for word in words {
        let (key, value) = word
            .split_once('=')
            .ok_or_else(|| format!("{word:?}: expected anon=N, user=N or window=DURATION"))?;
        match key {
            "anon" => anonymous_limit = Some(parse_limit(value)?),
            "user" => user_limit = Some(parse_limit(value)?),
            "window" => window = Some(parse_window(value)?),
            _ => {
                return Err(format!(
                    "unknown key {key:?} (expected anon, user or window)"
                ));
            }
        }
    }
    Ok(RateLimitRule {
        name: name.to_owned(),
        methods,
        path,
        anonymous_limit: anonymous_limit.ok_or("missing anon=N")?,
        user_limit: user_limit.ok_or("missing user=N")?,
        window: window.ok_or("missing window=DURATION")?,
    })
}

fn parse_limit(value: &str) -> Result<u32, String> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| format!("limit {value:?}: expected a whole number from 1 to {MAX_LIMIT}"))
}

fn parse_window(value: &str) -> Result<Duration, String> {
    parse_duration(value, MAX_WINDOW_SECS).ok_or_else(|| {
        format!(
            "window {value:?}: expected whole seconds (60s), minutes (5m) or hours (1h), up to 24h"
        )
    })
}

/// `90`, `90s`, `5m`, `1h` or `7d`, from 1 s up to `max_secs`; `None` otherwise (the
/// caller says what was expected). Digits only: no sign, no fraction, no overflow (a huge
/// number saturates and is then refused by the bound).
pub(super) fn parse_duration(value: &str, max_secs: u64) -> Option<Duration> {
    let (digits, unit) = value.split_at(
        value
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(value.len()),
    );
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    digits
        .parse::<u64>()
        .ok()
        .map(|n| n.saturating_mul(scale))
        .filter(|secs| (1..=max_secs).contains(secs))
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Settings;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_sources(None, move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn the_default_rule_limits_login_posts_5_anonymous_10_authenticated_a_minute() {
        let s = load(&[]).unwrap().rate_limit;
        assert_eq!(
            s.rules,
            [RateLimitRule {
                name: "login".into(),
                methods: vec!["POST".into()],
                path: PathPattern::Exact("/login".into()),
                anonymous_limit: 5,
                user_limit: 10,
                window: Duration::from_secs(60),
            }]
        );
        assert_eq!(s.ipv6_prefix, 64);
    }

    #[test]
    fn rules_parse_methods_prefixes_and_durations() {
        let s = load(&[(
            "IPTRACK_RATE_LIMITS",
            "a=get,POST /api/* anon=3 user=30 window=5m; b=* /x anon=1 user=2 window=2",
        )])
        .unwrap()
        .rate_limit;
        assert_eq!(s.rules[0].methods, ["GET", "POST"]);
        assert_eq!(s.rules[0].window, Duration::from_secs(300));
        assert!(s.rules[0].matches("GET", "/api"));
        assert!(s.rules[0].matches("POST", "/api/v1/x"));
        assert!(!s.rules[0].matches("POST", "/apix"));
        assert!(!s.rules[0].matches("PUT", "/api"));
        assert!(s.rules[1].matches("DELETE", "/x"));
        assert!(!s.rules[1].matches("GET", "/x/y"));
        assert_eq!(s.rules[1].window, Duration::from_secs(2));
        assert!(
            load(&[("IPTRACK_RATE_LIMITS", "off")])
                .unwrap()
                .rate_limit
                .rules
                .is_empty()
        );
    }

    #[test]
    fn rule_paths_are_kept_canonical_like_the_request_paths_they_meet() {
        let s = load(&[(
            "IPTRACK_RATE_LIMITS",
            "a=POST /%6cogin anon=1 user=1 window=1s; b=GET /%61pi/* anon=1 user=1 window=1s",
        )])
        .unwrap()
        .rate_limit;
        assert_eq!(s.rules[0].path, PathPattern::Exact("/login".into()));
        assert_eq!(s.rules[1].path, PathPattern::Prefix("/api".into()));
    }

    #[test]
    fn bad_rate_limit_settings_name_the_variable() {
        for bad in [
            "login",
            "login=POST /login anon=5 user=10",
            "login=POST login anon=5 user=10 window=60s",
            "login=POST /login anon=0 user=10 window=60s",
            "login=POST /login anon=5 user=10 window=2d",
            "login=POST /log*in anon=5 user=10 window=60s",
            "lo gin=POST /login anon=5 user=10 window=60s",
            "a=POST /a anon=1 user=1 window=1s; a=GET /b anon=1 user=1 window=1s",
            "login=P0ST /login anon=5 user=10 window=60s",
            "login=POST /login anon=5 user=10 window=60s burst=3",
            ";",
        ] {
            let err = load(&[("IPTRACK_RATE_LIMITS", bad)]).unwrap_err();
            assert!(
                err.to_string().contains("IPTRACK_RATE_LIMITS"),
                "{bad}: {err}"
            );
        }
        let err = load(&[("IPTRACK_RATE_LIMIT_IPV6_PREFIX", "129")]).unwrap_err();
        assert!(err.to_string().contains("IPTRACK_RATE_LIMIT_IPV6_PREFIX"));
    }
}
