//! Geolocation of logged addresses: providers, the cluster-wide Redis cache, and [`Geo`],
//! what the jobs hold of it. The jobs' own steps are in their files: the cache read and the
//! claims around the insert in `jobs/request_logs.rs`, the lookups in `jobs/geolocate.rs`
//! (docs/ARCHITECTURE.md, "Geolocation").
//!
//! Providers: [`mmdb`] (MaxMind-format files: DB-IP City Lite by default, GeoIP2 City too)
//! and [`http`] (ip-api or ipgeolocation.io). Only public addresses ever reach one
//! ([`is_public`]).

pub mod cache;
pub mod countries;
pub mod http;
pub mod mmdb;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use iptrack_core::{
    jobs::{GEOLOCATE_QUEUE, GeolocateAddresses},
    queue::{self, JobQueue},
    settings::{GeoProviderChoice, GeoSettings, WorkerSettings},
};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

pub use cache::GeoCache;
pub use http::HttpProvider;
pub use mmdb::MmdbProvider;

/// Geolocation as the jobs use it: provider, cache, and the geolocate queue.
#[derive(Debug)]
pub struct Geo {
    pub provider: GeoProvider,
    pub cache: GeoCache,
    /// Where the request-log job pushes the addresses it claimed.
    pub(crate) queue: JobQueue<GeolocateAddresses>,
    /// For the cluster-wide hit and miss counters `/metrics` shows.
    pub(crate) metrics: (ConnectionManager, String),
}

impl Geo {
    /// Geolocation as `settings` configure it; `None` when it is off. Keys live under
    /// `redis_prefix`; `worker` sets the geolocate queue's heartbeat.
    pub fn from_settings(
        settings: &GeoSettings,
        redis_prefix: &str,
        worker: &WorkerSettings,
        conn: ConnectionManager,
    ) -> Result<Option<Self>, GeoSetupError> {
        Ok(GeoProvider::from_settings(settings)?
            .map(|provider| Self::new(provider, settings, redis_prefix, worker, conn)))
    }

    pub fn new(
        provider: GeoProvider,
        settings: &GeoSettings,
        redis_prefix: &str,
        worker: &WorkerSettings,
        conn: ConnectionManager,
    ) -> Self {
        let config = queue::queue_config(redis_prefix, worker, GEOLOCATE_QUEUE);
        Self {
            provider,
            cache: GeoCache::new(conn.clone(), redis_prefix, settings),
            queue: JobQueue::new(conn.clone(), config),
            metrics: (conn, redis_prefix.to_owned()),
        }
    }
}

/// Where an address is. Any field may be empty when the source does not know it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// ISO 3166-1 alpha-2, upper case.
    pub country_code: String,
    /// English name.
    pub country: String,
    pub city: String,
}

/// A provider's answer for one address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lookup {
    Found(Location),
    /// The provider has nothing for it (cached for a shorter time than a location).
    NotFound,
}

/// Longest country or city name kept, in characters; the longest real ones are far
/// shorter ("Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch" is 58).
pub const MAX_NAME_CHARS: usize = 200;

impl Location {
    /// What a provider said, made safe to store: a country code is two ASCII letters
    /// (upper case) or nothing, names lose control characters and are cut to
    /// [`MAX_NAME_CHARS`]. Why: a provider answering garbage once put a ten-letter code
    /// into the shared cache, and from then on every batch with that address failed
    /// PostgreSQL's `country_code varchar(2)` and its rows were lost; a 100 kB "city"
    /// would be copied into every row of the address.
    pub fn cleaned(self) -> Self {
        let code = self.country_code.trim();
        let country_code = if code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic()) {
            code.to_ascii_uppercase()
        } else {
            String::new()
        };
        let name = |text: String| -> String {
            text.chars()
                .filter(|c| !c.is_control())
                .take(MAX_NAME_CHARS)
                .collect::<String>()
                .trim()
                .to_owned()
        };
        Self {
            country_code,
            country: name(self.country),
            city: name(self.city),
        }
    }
}

impl Lookup {
    /// A location with at least a country counts as found; an empty one does not. Every
    /// provider's answer comes through here and is [`Location::cleaned`] first.
    pub fn from_location(location: Location) -> Self {
        let location = location.cleaned();
        if location.country_code.is_empty() && location.city.is_empty() {
            Lookup::NotFound
        } else {
            Lookup::Found(location)
        }
    }
}

/// Why a lookup failed (as opposed to "not found"); the job is retried.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("geolocation database {path}: {source}")]
    Database {
        path: String,
        source: maxminddb::MaxMindDbError,
    },
    #[error("geolocation provider unreachable after {attempts} attempt(s): {source}")]
    Unreachable {
        attempts: u32,
        source: reqwest::Error,
    },
    #[error("geolocation provider answered HTTP {status} after {attempts} attempt(s)")]
    Status { status: u16, attempts: u32 },
    #[error("geolocation provider rate limit: next call allowed in {wait_secs} s")]
    RateLimited { wait_secs: u64 },
    #[error("geolocation provider sent an unexpected response: {0}")]
    BadResponse(String),
}

/// Why the configured provider cannot start (the worker exits with status 2).
#[derive(Debug, thiserror::Error)]
pub enum GeoSetupError {
    #[error("IPTRACK_GEO_MMDB: cannot open {path}: {source}")]
    Mmdb {
        path: String,
        source: maxminddb::MaxMindDbError,
    },
    #[error("IPTRACK_GEO_HTTP_CA_FILE: {0}")]
    CaFile(#[from] crate::tls::CaFileError),
    #[error("cannot set up the HTTP geolocation client: {0}")]
    HttpClient(reqwest::Error),
}

/// A configured provider.
#[derive(Debug)]
pub enum GeoProvider {
    Mmdb(MmdbProvider),
    Http(HttpProvider),
}

impl GeoProvider {
    /// `mmdb` or `http`, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            GeoProvider::Mmdb(_) => "mmdb",
            GeoProvider::Http(_) => "http",
        }
    }

    /// Looks up each of `addresses` (all public), in order. An IPv4-mapped IPv6 address
    /// (`::ffff:81.2.69.1`, as a dual-stack listener reports IPv4 clients) is looked up as
    /// its IPv4 address.
    pub async fn lookup_many(&self, addresses: &[IpAddr]) -> Result<Vec<Lookup>, GeoError> {
        let mut canonical = Vec::with_capacity(addresses.len());
        for ip in addresses {
            canonical.push(ip.to_canonical());
        }
        match self {
            GeoProvider::Mmdb(provider) => {
                canonical.iter().map(|&ip| provider.lookup(ip)).collect()
            }
            GeoProvider::Http(provider) => provider.lookup_many(&canonical).await,
        }
    }

    /// Whether this provider serves DB-IP's data, whose licence (CC BY 4.0) asks for the
    /// credit "IP Geolocation by DB-IP" wherever its locations are shown: an mmdb provider
    /// whose files are all DB-IP's (`dbip` in their names, as `scripts/fetch-geo-db.sh`
    /// saves them). Published for the web (`iptrack_core::geo_attribution`).
    pub fn requires_dbip_credit(&self, settings: &GeoSettings) -> bool {
        matches!(self, GeoProvider::Mmdb(_))
            && !settings.mmdb_paths.is_empty()
            && settings.mmdb_paths.iter().all(|path| {
                path.file_name()
                    .is_some_and(|name| name.to_string_lossy().contains("dbip"))
            })
    }

    /// The provider `settings` choose, or `None` when geolocation is off. An explicit
    /// `mmdb` whose files do not open is an error; the default (`Auto`) with missing files
    /// logs one warning and runs without geolocation.
    pub fn from_settings(settings: &GeoSettings) -> Result<Option<Self>, GeoSetupError> {
        match settings.provider {
            GeoProviderChoice::None => Ok(None),
            GeoProviderChoice::Mmdb => {
                MmdbProvider::open(&settings.mmdb_paths).map(|p| Some(GeoProvider::Mmdb(p)))
            }
            GeoProviderChoice::Http => Ok(Some(GeoProvider::Http(HttpProvider::new(settings)?))),
            GeoProviderChoice::Auto => {
                if settings.mmdb_paths.iter().all(|p| p.exists()) {
                    MmdbProvider::open(&settings.mmdb_paths).map(|p| Some(GeoProvider::Mmdb(p)))
                } else {
                    tracing::warn!(
                        "no geolocation: {} not found; run scripts/fetch-geo-db.sh to fetch \
                         DB-IP City Lite into data/, or set IPTRACK_GEO_PROVIDER",
                        settings
                            .mmdb_paths
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    Ok(None)
                }
            }
        }
    }
}

/// Whether `ip` may be sent to a provider: not loopback, private (RFC 1918), link-local,
/// unique-local (fc00::/7), unspecified, or otherwise non-routable (CGNAT, documentation,
/// multicast, broadcast). An IPv4-mapped IPv6 address is judged as its IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    let shared_cgnat = a == 100 && (64..128).contains(&b); // 100.64.0.0/10
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || shared_cgnat
        || a == 0
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    let unique_local = (first & 0xfe00) == 0xfc00; // fc00::/7
    let link_local = (first & 0xffc0) == 0xfe80; // fe80::/10
    let documentation = first == 0x2001 && ip.segments()[1] == 0x0db8; // 2001:db8::/32
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || unique_local
        || link_local
        || documentation)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "192.0.2.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} counted as public");
        }
        for ip in ["8.8.8.8", "81.2.69.142", "2a02:8070::1", "::ffff:8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip} counted as private");
        }
    }
}
