//! The mmdb provider on fixture databases in both layouts, IPv4 and IPv6.

use iptrack_core::settings::{GeoProviderChoice, GeoSettings};
use iptrack_worker::geo::{GeoProvider, Location, Lookup};

use crate::geo_fixtures::{dbip_layout, geoip2_city_layout, mmdb};

fn found(code: &str, country: &str, city: &str) -> Lookup {
    Lookup::Found(Location {
        country_code: code.into(),
        country: country.into(),
        city: city.into(),
    })
}

async fn one(provider: &GeoProvider, ip: &str) -> Lookup {
    provider
        .lookup_many(&[ip.parse().unwrap()])
        .await
        .unwrap()
        .remove(0)
}

#[tokio::test]
async fn the_dbip_layout_answers_ipv4_and_ipv6_with_names_from_the_country_table() {
    let provider = mmdb(dbip_layout());
    assert_eq!(
        one(&provider, "81.2.69.142").await,
        found("GB", "United Kingdom", "London")
    );
    assert_eq!(
        one(&provider, "46.99.1.2").await,
        found("XK", "Kosovo", "Pristina")
    );
    assert_eq!(
        one(&provider, "2a02:8070::1").await,
        found("DE", "Germany", "Berlin")
    );
    // An IPv4-mapped address is looked up as its IPv4 address.
    assert_eq!(
        one(&provider, "::ffff:81.2.69.142").await,
        found("GB", "United Kingdom", "London")
    );
    assert_eq!(one(&provider, "8.8.8.8").await, Lookup::NotFound);
    assert_eq!(one(&provider, "2a03::1").await, Lookup::NotFound);
}

#[tokio::test]
async fn the_geoip2_city_layout_answers_ipv4_and_ipv6() {
    let provider = mmdb(geoip2_city_layout());
    assert_eq!(
        one(&provider, "89.160.20.128").await,
        found("SE", "Sweden", "Linköping")
    );
    assert_eq!(
        one(&provider, "2001:480::9").await,
        found("US", "United States", "San Diego")
    );
    assert_eq!(
        one(&provider, "67.43.156.1").await,
        found("BT", "Bhutan", "")
    );
    assert_eq!(one(&provider, "8.8.8.8").await, Lookup::NotFound);
}

#[tokio::test]
async fn files_of_both_layouts_can_be_mixed() {
    let mut files = geoip2_city_layout();
    files.extend(dbip_layout());
    let provider = mmdb(files);
    assert_eq!(
        one(&provider, "81.2.69.1").await,
        found("GB", "United Kingdom", "London")
    );
    assert_eq!(
        one(&provider, "89.160.20.1").await,
        found("SE", "Sweden", "Linköping")
    );
}

#[test]
fn an_explicit_mmdb_provider_with_a_missing_or_invalid_file_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.mmdb");
    std::fs::write(&garbage, b"not a database").unwrap();
    for path in [dir.path().join("missing.mmdb"), garbage] {
        let settings = GeoSettings {
            provider: GeoProviderChoice::Mmdb,
            mmdb_paths: vec![path.clone()],
            ..GeoSettings::default()
        };
        let error = GeoProvider::from_settings(&settings)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("IPTRACK_GEO_MMDB") && error.contains(&path.display().to_string()),
            "{error}"
        );
    }
    // Left at its default, missing files mean no geolocation rather than an error.
    let settings = GeoSettings {
        mmdb_paths: vec![dir.path().join("missing.mmdb")],
        ..GeoSettings::default()
    };
    assert!(GeoProvider::from_settings(&settings).unwrap().is_none());
}
