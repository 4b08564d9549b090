//! A connection URL that may carry a password (`postgres://user:pw@host/db`,
//! `redis://:pw@host`): kept as a secret, shown only with the password masked.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// A URL whose password never reaches `Debug` output, logs or error messages.
#[derive(Clone)]
pub struct SecretUrl(SecretString);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(SecretString::from(url.into()))
    }

    /// The URL with its password, for the client that connects with it. Nowhere else.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL with any password replaced by `***`, for messages.
    pub fn redacted(&self) -> String {
        redact(self.expose())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl PartialEq for SecretUrl {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for SecretUrl {}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        Self::new(url)
    }
}

impl From<&str> for SecretUrl {
    fn from(url: &str) -> Self {
        Self::new(url)
    }
}

/// `text` with the password of its user-info (`scheme://user:PASSWORD@host`) and any
/// `password=` query parameter (libpq's URI form) replaced by `***`. Text that is not a URL
/// at all (no `://`) could be anything, a password included, and is hidden whole.
pub fn redact(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return "(hidden)".to_owned();
    };
    // The last `@` ends the user-info even when an unencoded `/`, `?` or `#` sits in the
    // password: masking too much is harmless, showing part of a password is not.
    let (userinfo, tail) = match rest.rsplit_once('@') {
        Some((userinfo, tail)) => (Some(userinfo), tail),
        None => (None, rest),
    };
    let userinfo = match userinfo {
        Some(userinfo) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@"),
            // A lone user-info may be a password (`redis://PASSWORD@host` is a common
            // mistake for `redis://:PASSWORD@host`).
            None => "***@".to_owned(),
        },
        None => String::new(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{userinfo}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_wherever_a_url_can_carry_them() {
        for (url, shown) in [
            (
                "postgres://app:s3cret@db:5432/iptrack",
                "postgres://app:***@db:5432/iptrack",
            ),
            (
                "redis://:s3cret@127.0.0.1:6379/0",
                "redis://:***@127.0.0.1:6379/0",
            ),
            ("redis://default:s3cret@h", "redis://default:***@h"),
            ("redis://s3cret@h", "redis://***@h"),
            (
                "rediss://app:p@ss@redis.example:6380",
                "rediss://app:***@redis.example:6380",
            ),
            (
                "postgres://app@db/iptrack?sslmode=require&password=s3cret",
                "postgres://***@db/iptrack?sslmode=require&password=***",
            ),
            (
                "sqlite://iptrack.db?mode=rwc",
                "sqlite://iptrack.db?mode=rwc",
            ),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("s3cret", "(hidden)"),
            ("postgres://app:s3/cr?et@db/x", "postgres://app:***@db/x"),
        ] {
            assert_eq!(redact(url), shown);
            assert!(!format!("{:?}", SecretUrl::new(url)).contains("s3cret"));
        }
    }
}
