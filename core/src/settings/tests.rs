//! Loading settings from the sources: defaults, errors that name the variable and keep
//! secrets, the config file, and each component's parsing.

#![allow(clippy::unwrap_used)]

use super::*;
use ipnet::IpNet;
use std::collections::HashMap;
use std::time::Duration;

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
    assert_eq!(s.database.url.expose(), "sqlite://iptrack.db?mode=rwc");
    assert_eq!(s.redis.url.expose(), "redis://127.0.0.1:6379");
    assert!(!s.redis.url_given);
    assert_eq!(s.redis.up_probe_url.expose(), "redis://127.0.0.1:6379");
    assert_eq!(s.web.bind.to_string(), "127.0.0.1:8000");
    assert!(s.client_ip.trusted_proxies.is_empty());
    assert_eq!(s.redis.prefix, "iptrack");
    assert_eq!(s.schedules.flag_schedule.source(), "0 0 * * * *");
    assert_eq!(s.schedules.purge_schedule.source(), "0 30 3 * * *");
    assert_eq!(s.schedules.flag_threshold, 100);
    assert_eq!(s.schedules.sensitive_paths, ["/admin", "/login"]);
}

#[test]
fn the_admin_listener_is_optional_and_must_be_a_listener_of_its_own() {
    let s = Settings::from_sources(None, env(&[])).unwrap();
    assert_eq!(s.admin.bind, None);
    let s = Settings::from_sources(None, env(&[("IPTRACK_ADMIN_BIND", "127.0.0.1:9000")])).unwrap();
    assert_eq!(
        s.admin.bind.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9000")
    );
    for bad in ["9000", "localhost:9000", "127.0.0.1:8000"] {
        let err = Settings::from_sources(None, env(&[("IPTRACK_ADMIN_BIND", bad)])).unwrap_err();
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
        12,
        "8 slots + flag, purge, geolocate, count fold"
    );
}

#[test]
fn an_invalid_value_names_the_variable() {
    let err = Settings::from_sources(None, env(&[("IPTRACK_BIND", "nope")])).unwrap_err();
    assert!(err.to_string().contains("IPTRACK_BIND"), "{err}");

    let err = Settings::from_sources(None, env(&[("IPTRACK_TRUSTED_PROXIES", "10.0.0.0/8, x")]))
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
    let s =
        Settings::from_sources(Some(&path), env(&[("IPTRACK_REDIS_PREFIX", "fromenv")])).unwrap();
    assert_eq!(s.web.bind.to_string(), "0.0.0.0:9000");
    assert_eq!(s.redis.prefix, "fromenv");
    assert_eq!(s.log_pipeline.buffer_capacity, 500);
    assert_eq!(
        s.client_ip.trusted_proxies,
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

#[test]
fn every_component_default_is_what_an_empty_environment_loads() {
    let s = Settings::from_sources(None, env(&[])).unwrap();
    assert_eq!(s.database, DatabaseSettings::default());
    assert_eq!(s.redis, RedisSettings::default());
    assert_eq!(s.web, WebSettings::default());
    assert_eq!(s.client_ip, ClientIpSettings::default());
    assert_eq!(s.blocklist, BlocklistSettings::default());
    assert_eq!(s.log_pipeline, LogPipelineSettings::default());
    assert_eq!(s.worker, WorkerSettings::default());
    assert_eq!(s.schedules, ScheduleSettings::default());
    assert_eq!(s.log_format, LogFormat::default());
    assert_eq!(s.rate_limit.rules, RateLimitSettings::default().rules);
    assert_eq!(s.geo.mmdb_paths, GeoSettings::default().mmdb_paths);
    assert!(s.admin.token.is_none() && AdminSettings::default().token.is_none());
}

#[test]
fn every_variable_is_read_and_documented_once() {
    let mut names: Vec<&str> = VARIABLES.iter().map(|v| v.name).collect();
    let count = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), count, "a variable is declared twice");
    for var in VARIABLES.iter() {
        assert!(!var.doc.is_empty(), "{} has no documentation", var.name);
        assert!(
            var.default.is_some() || var.shown_default.is_some(),
            "{} says nothing about its default",
            var.name
        );
    }
    assert!(
        !KNOWN_VARIABLES.contains(&"RUST_LOG"),
        "read by tracing, not the loader"
    );
}

#[test]
fn a_database_password_is_never_echoed() {
    let url = "mysql://app:hunter2-secret@db/iptrack";
    let err = Settings::from_sources(None, env(&[("DATABASE_URL", url)])).unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("DATABASE_URL"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("mysql://app:***@db/iptrack"), "{shown}");

    let url = "postgres://app:hunter2-secret@db/iptrack";
    let s = Settings::from_sources(None, env(&[("DATABASE_URL", url)])).unwrap();
    assert_eq!(
        s.database.url.expose(),
        url,
        "the client still gets the password"
    );
    assert_eq!(s.database.kind(), DatabaseKind::Postgres);
    assert!(!format!("{s:?}").contains("hunter2"));
}

#[test]
fn a_redis_password_is_never_echoed() {
    let s = Settings::from_sources(
        None,
        env(&[
            ("REDIS_URL", "redis://:hunter2-secret@10.0.0.5:6379/0"),
            (
                "IPTRACK_UP_REDIS_PROBE_URL",
                "redis://u:hunter3-secret@10.0.0.6",
            ),
            ("IPTRACK_ADMIN_TOKEN", "hunter4-secret-token"),
            ("IPTRACK_GEO_API_KEY", "hunter5-secret"),
            ("IPTRACK_SESSION_KEY", "hunter6-secret-hunter6-secret-xx"),
            ("IPTRACK_DEMO_USER", "demo:hunter7-secret"),
        ]),
    )
    .unwrap();
    let shown = format!("{s:?} {s:#?}");
    assert!(!shown.contains("hunter"), "{shown}");
    assert!(
        shown.contains("10.0.0.5:6379"),
        "the rest stays readable: {shown}"
    );
    assert_eq!(
        s.redis.url.expose(),
        "redis://:hunter2-secret@10.0.0.5:6379/0"
    );

    for bad in [
        "redis://:hunter2-secret@10.0.0.5:notaport",
        "rediss://:hunter2-secret@",
        "http://:hunter2-secret@host",
    ] {
        let err = Settings::from_sources(None, env(&[("REDIS_URL", bad)])).unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains("REDIS_URL"), "{shown}");
        assert!(!shown.contains("hunter2"), "{bad}: {shown}");
    }
}

#[test]
fn a_config_file_that_is_not_toml_does_not_quote_its_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iptrack.toml");
    std::fs::write(&path, "DATABASE_URL = postgres://app:hunter2@db/x\n").unwrap();
    let err = Settings::from_sources(Some(&path), env(&[])).unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("line 1"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn ipv4_mapped_safelist_entries_are_kept_as_the_ipv4_they_mean() {
    let s = Settings::from_sources(
        None,
        env(&[(
            "IPTRACK_SAFELIST",
            "::ffff:192.0.2.7, ::ffff:198.51.100.0/120, 2001:db8::/32, 10.0.0.0/8",
        )]),
    )
    .unwrap();
    let expected: Vec<IpNet> = [
        "192.0.2.7/32",
        "198.51.100.0/24",
        "2001:db8::/32",
        "10.0.0.0/8",
    ]
    .iter()
    .map(|n| n.parse().unwrap())
    .collect();
    assert_eq!(s.blocklist.safelist, expected);
    // What the middleware compares: a client address, always canonical (IPv4).
    let client: std::net::IpAddr = "::ffff:192.0.2.7"
        .parse::<std::net::IpAddr>()
        .unwrap()
        .to_canonical();
    assert!(s.blocklist.safelist.iter().any(|net| net.contains(&client)));
}

#[test]
fn cron_schedules_stay_parsed() {
    let s =
        Settings::from_sources(None, env(&[("IPTRACK_FLAG_SCHEDULE", "0 */5 * * * *")])).unwrap();
    let next: Vec<_> = s
        .schedules
        .flag_schedule
        .upcoming(chrono::Utc)
        .take(2)
        .collect();
    assert_eq!((next[1] - next[0]).num_minutes(), 5);
}

#[test]
fn a_redis_ca_file_must_hold_a_certificate_and_goes_with_a_tls_url_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let ca = ca.to_str().unwrap();
    let tls = "rediss://redis.example.internal:6380";

    let s = Settings::from_sources(
        None,
        env(&[("REDIS_URL", tls), ("IPTRACK_REDIS_CA_FILE", ca)]),
    )
    .unwrap();
    assert_eq!(s.redis.ca_file.as_deref(), Some(std::path::Path::new(ca)));
    assert_eq!(Settings::default().redis.ca_file, None);

    // Plain redis:// with a CA: the user believes in a TLS that never happens.
    let error = Settings::from_sources(None, env(&[("IPTRACK_REDIS_CA_FILE", ca)]))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("IPTRACK_REDIS_CA_FILE") && error.contains("rediss://"),
        "{error}"
    );

    let missing = dir.path().join("missing.pem");
    let not_pem = dir.path().join("key.pem");
    std::fs::write(&not_pem, "-----BEGIN PRIVATE KEY-----\n").unwrap();
    for bad in [&missing, &not_pem] {
        let error = Settings::from_sources(
            None,
            env(&[
                ("REDIS_URL", tls),
                ("IPTRACK_REDIS_CA_FILE", bad.to_str().unwrap()),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("IPTRACK_REDIS_CA_FILE"), "{error}");
    }
}

#[test]
fn the_log_partition_period_is_a_day_a_week_or_a_month() {
    use chrono::NaiveDate;

    let s = Settings::from_sources(None, env(&[])).unwrap();
    assert_eq!(s.schedules.log_partition, LogPartition::Day);
    let s = Settings::from_sources(None, env(&[("IPTRACK_LOG_PARTITION", "Month")])).unwrap();
    assert_eq!(s.schedules.log_partition, LogPartition::Month);
    // (An empty value means unset, as for every variable: the default.)
    for bad in ["days", "7", "day; DROP TABLE request_log"] {
        let err = Settings::from_sources(None, env(&[("IPTRACK_LOG_PARTITION", bad)])).unwrap_err();
        assert!(
            err.to_string().contains("IPTRACK_LOG_PARTITION"),
            "{bad}: {err}"
        );
    }
    let day = |text: &str| NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap();
    // 2026-12-02 is a Wednesday; the week after starts on Monday the 7th.
    for (period, from, next) in [
        (LogPartition::Day, "2026-12-31", "2027-01-01"),
        (LogPartition::Week, "2026-12-02", "2026-12-07"),
        (LogPartition::Week, "2026-12-07", "2026-12-14"),
        (LogPartition::Week, "2026-12-06", "2026-12-07"),
        (LogPartition::Month, "2026-12-02", "2027-01-01"),
        (LogPartition::Month, "2027-01-31", "2027-02-01"),
        (LogPartition::Month, "2028-02-29", "2028-03-01"),
    ] {
        assert_eq!(period.next_start(day(from)), day(next), "{period:?} {from}");
    }
}
