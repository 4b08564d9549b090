//! Typed settings for every iptrack process, loaded once at start-up, one struct per
//! component (each in its own file here), so a library function takes only the part it
//! uses: `LogPipeline` the pipeline's, the blocklist the blocklist's, the worker the
//! worker's.
//!
//! Sources, lowest precedence first: built-in defaults, an optional TOML config file whose
//! keys are the environment variable names (`IPTRACK_BIND = "0.0.0.0:8000"`), then the
//! environment. An invalid value stops start-up with an error that names the variable and
//! never shows a secret.
//!
//! Each variable is declared once, beside the settings it fills ([`registry::Variable`]:
//! name, default, documentation). README.md's configuration table and `.env.example` are
//! generated from those declarations (`cargo run -p iptrack-core --example settings-docs`),
//! and a test fails when they drift.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

mod admin;
mod blocklist;
mod client_ip;
mod config_file;
mod database;
mod detect;
pub mod docs;
mod feeds;
mod geo;
mod login;
mod notify;
mod parse;
mod pipeline;
mod rate_limit;
mod redis;
pub mod registry;
mod schedules;
mod secret_url;
mod telemetry;
mod web;
mod worker;

pub use admin::AdminSettings;
pub use blocklist::BlocklistSettings;
pub use client_ip::ClientIpSettings;
pub use database::{DatabaseKind, DatabaseSettings};
pub use detect::{
    DEFAULT_DETECT_RULES, DetectRule, DetectSettings, MAX_RULE_COUNT, StatusMatch,
    parse_detect_rules,
};
pub use feeds::{FeedSchedule, FeedSettings, check_url as check_feed_url};
pub use geo::{GeoHttpFormat, GeoProviderChoice, GeoSettings};
pub use login::{DemoUser, LoginSettings};
pub use notify::{NotifySettings, WebhookFormat};
pub use parse::parse_networks;
pub use pipeline::LogPipelineSettings;
pub use rate_limit::{
    DEFAULT_RATE_LIMITS, PathPattern, RateLimitRule, RateLimitSettings, method_matches, parse_rules,
};
pub use redis::RedisSettings;
pub use registry::{KNOWN_VARIABLES, VARIABLES, Variable};
pub use schedules::{LogPartition, ScheduleSettings, parse_cron};
pub use secret_url::{SecretUrl, redact as redact_url};
pub use telemetry::LogFormat;
pub(crate) use telemetry::RUST_LOG;
pub use web::WebSettings;
pub use worker::WorkerSettings;

use registry::Values;

/// Every component's settings. Processes load this once and hand each component its part.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    /// The public listener.
    pub web: WebSettings,
    /// Whose forwarding headers count.
    pub client_ip: ClientIpSettings,
    /// Admin API, dashboard and metrics.
    pub admin: AdminSettings,
    /// Safelist and reload interval of the blocklist.
    pub blocklist: BlocklistSettings,
    /// Request-log pipeline in the web process.
    pub log_pipeline: LogPipelineSettings,
    /// apalis worker tuning in the worker process.
    pub worker: WorkerSettings,
    /// Anomaly detection and retention: what the scheduler enqueues, when.
    pub schedules: ScheduleSettings,
    /// `IPTRACK_LOG_FORMAT`: `text` (default) or `json` for the process's own logs.
    pub log_format: LogFormat,
    /// Rate limits the middleware applies.
    pub rate_limit: RateLimitSettings,
    /// The reference server's login.
    pub login: LoginSettings,
    /// Geolocation of logged addresses (worker side).
    pub geo: GeoSettings,
    /// Webhook notifications of new flags and bans (worker side).
    pub notify: NotifySettings,
    /// Blocklist feeds: what the scheduler refreshes, how lists are fetched.
    pub feeds: FeedSettings,
    /// Streaming detection rules and ban escalation (worker side; listed by the web).
    pub detect: DetectSettings,
}

/// Why settings could not be loaded. Each variant names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// `value` is already masked as far as the variable requires (`Variable::shown_value`).
    #[error("invalid {variable}={value:?}: {reason}")]
    Invalid {
        variable: &'static str,
        value: String,
        reason: String,
    },
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Says where and what, never the offending text: it may hold a secret.
    #[error("config file {path} is not valid TOML (line {line}): {message}")]
    ParseFile {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "config file {path}: unknown key {key:?} (known keys: the environment variables in README.md)"
    )]
    UnknownKey { path: PathBuf, key: String },
    #[error("config file {path}: key {key} must be a string, number or boolean")]
    UnsupportedValue { path: PathBuf, key: String },
}

impl Settings {
    /// Loads settings from the process environment and, when given, a config file.
    pub fn load(config_file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::from_sources(config_file, |name| std::env::var(name).ok())
    }

    /// Loads settings from a config file and an environment lookup; the lookup wins.
    /// Taking the lookup as a function keeps tests independent of the process environment.
    pub fn from_sources(
        config_file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        let mut given = match config_file {
            Some(path) => config_file::read(path)?,
            None => BTreeMap::new(),
        };
        for name in KNOWN_VARIABLES.iter() {
            if let Some(value) = env(name) {
                given.insert((*name).to_owned(), value);
            }
        }
        Self::from_values(&Values::new(given))
    }

    fn from_values(values: &Values) -> Result<Self, SettingsError> {
        let database = DatabaseSettings::from_values(values)?;
        let web = WebSettings::from_values(values)?;
        Ok(Self {
            redis: RedisSettings::from_values(values)?,
            client_ip: ClientIpSettings::from_values(values)?,
            admin: AdminSettings::from_values(values, web.bind)?,
            blocklist: BlocklistSettings::from_values(values)?,
            log_pipeline: LogPipelineSettings::from_values(values)?,
            worker: WorkerSettings::from_values(values, database.kind())?,
            schedules: ScheduleSettings::from_values(values)?,
            log_format: LogFormat::from_values(values)?,
            rate_limit: RateLimitSettings::from_values(values)?,
            login: LoginSettings::from_values(values)?,
            geo: GeoSettings::from_values(values)?,
            notify: NotifySettings::from_values(values)?,
            feeds: FeedSettings::from_values(values)?,
            detect: DetectSettings::from_values(values)?,
            database,
            web,
        })
    }
}

/// A component's settings from the declared defaults alone, for its `Default`.
fn from_defaults<T>(parse: impl FnOnce(&Values) -> Result<T, SettingsError>) -> T {
    // The defaults are constants declared beside the parser; the tests load them (every
    // `Default` below, and `defaults_match_the_documented_interface`), so this cannot fail
    // in a build whose tests pass.
    #[allow(clippy::expect_used)]
    parse(&Values::default()).expect("a declared default does not parse")
}

#[cfg(test)]
mod tests;
