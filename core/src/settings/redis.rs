//! Where queues, counters, the geo cache and blocklist notices live.

use std::path::PathBuf;

use super::{
    SecretUrl, SettingsError,
    parse::{invalid, required},
    registry::{Values, Variable},
};

const REDIS_URL: Variable =
    Variable::new("REDIS_URL", "redis://127.0.0.1:6379", "queues live here")
        .url_with_password()
        // Set, it stops `iptrack up` from looking for (or starting) a Redis of its own.
        .commented_in_example();
const UP_REDIS_PROBE_URL: Variable = Variable::new(
    "IPTRACK_UP_REDIS_PROBE_URL",
    "redis://127.0.0.1:6379",
    "where `iptrack up` looks for a running Redis when `REDIS_URL` is unset, before starting its own",
)
.url_with_password();
const REDIS_PREFIX: Variable = Variable::new(
    "IPTRACK_REDIS_PREFIX",
    "iptrack",
    "every Redis key starts with it",
);

const REDIS_CA_FILE: Variable = Variable::unset(
    "IPTRACK_REDIS_CA_FILE",
    "(none: the system's roots)",
    "PEM certificates that sign a `rediss://` server's certificate, trusted instead of the system's roots (a private CA)",
);

pub(super) const VARIABLES: &[&Variable] = &[
    &REDIS_URL,
    &UP_REDIS_PROBE_URL,
    &REDIS_PREFIX,
    &REDIS_CA_FILE,
];

/// The Redis every process uses, and the prefix of every key iptrack writes there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `REDIS_URL`: job queues, rate-limit counters, the geo cache and blocklist notices.
    /// It can hold a password, so it is shown only masked.
    pub url: SecretUrl,
    /// Whether `REDIS_URL` was given (environment or config file). When it was not,
    /// `iptrack up` looks for a Redis at [`RedisSettings::up_probe_url`] and, finding
    /// none, starts a private `redis-server`.
    pub url_given: bool,
    /// `IPTRACK_UP_REDIS_PROBE_URL`: where `iptrack up` looks for a running Redis when
    /// `REDIS_URL` is not set; `REDIS_URL`'s default by default. Set it when that port
    /// belongs to something else (the tests point it at a free port).
    pub up_probe_url: SecretUrl,
    /// `IPTRACK_REDIS_PREFIX`: every Redis key iptrack writes starts with this.
    pub prefix: String,
    /// `IPTRACK_REDIS_CA_FILE`: the certificates (PEM) that a `rediss://` server's
    /// certificate must chain to, instead of the system's roots: managed Redis services
    /// and operators often sign with a CA of their own. Checked at load (it must hold a
    /// certificate), so a wrong path stops start-up instead of every connection.
    pub ca_file: Option<PathBuf>,
}

impl RedisSettings {
    pub(super) fn from_values(values: &Values) -> Result<Self, SettingsError> {
        let prefix = required(&REDIS_PREFIX, values.get(&REDIS_PREFIX))?;
        if prefix
            .chars()
            .any(|c| c.is_whitespace() || c == '*' || c == '?')
        {
            return Err(invalid(
                &REDIS_PREFIX,
                prefix,
                "must not contain spaces or glob characters",
            ));
        }
        let url = redis_url(&REDIS_URL, values)?;
        let ca_file = ca_file(values.get(&REDIS_CA_FILE))?;
        if ca_file.is_some() && !url.expose().starts_with("rediss://") {
            // A CA for a connection that never uses TLS would leave the user believing
            // the traffic to Redis is encrypted and authenticated.
            return Err(invalid(
                &REDIS_CA_FILE,
                values.get(&REDIS_CA_FILE).unwrap_or_default(),
                "applies to TLS only, but REDIS_URL is not a rediss:// URL",
            ));
        }
        Ok(Self {
            url,
            url_given: values.given(&REDIS_URL).is_some(),
            up_probe_url: redis_url(&UP_REDIS_PROBE_URL, values)?,
            prefix: prefix.to_owned(),
            ca_file,
        })
    }
}

fn ca_file(value: Option<&str>) -> Result<Option<PathBuf>, SettingsError> {
    let Some(path) = value else {
        return Ok(None);
    };
    match std::fs::read(path) {
        Ok(pem) if pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => {
            Ok(Some(PathBuf::from(path)))
        }
        Ok(_) => Err(invalid(&REDIS_CA_FILE, path, "holds no PEM certificate")),
        Err(error) => Err(invalid(&REDIS_CA_FILE, path, error.to_string())),
    }
}

fn redis_url(var: &Variable, values: &Values) -> Result<SecretUrl, SettingsError> {
    let v = required(var, values.get(var))?;
    match redis::Client::open(v) {
        Ok(_) => Ok(SecretUrl::new(v)),
        // redis's message describes the URL's shape, never its text; the value is masked.
        Err(e) => Err(invalid(var, v, e.to_string())),
    }
}

impl Default for RedisSettings {
    fn default() -> Self {
        super::from_defaults(Self::from_values)
    }
}
