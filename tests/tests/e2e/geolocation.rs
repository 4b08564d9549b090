//! Geolocation with the real binaries: the web behind a trusted proxy, the worker asking a
//! fake ip-api (wiremock) — one call per address, every row located.

use std::{process::Command, time::Duration};

use futures::StreamExt;
use iptrack_entity::request_log;
use iptrack_tests::{
    TestDb, TestRedis, both_backends,
    process::{Service, binary},
};
use sea_orm::EntityTrait;
use serde_json::json;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};

use crate::Stack;

both_backends!(
    fifty_requests_from_one_address_make_one_provider_call_and_fifty_located_rows,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let provider = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "status": "success", "countryCode": "GB", "country": "United Kingdom", "city": "London"
            })))
            .mount(&provider)
            .await;
        let stack = Stack::new(&db, &redis)
            .with("IPTRACK_TRUSTED_PROXIES", "127.0.0.1/32")
            .with("IPTRACK_GEO_PROVIDER", "http")
            .with("IPTRACK_GEO_HTTP_URL", &provider.uri())
            // Small batches, so several request-log jobs see the address for the first time.
            .with("IPTRACK_BATCH_MAX_EVENTS", "5");
        let _workers = [
            Service::start("iptrack-worker", &[], &stack.env),
            Service::start("iptrack-worker", &[], &stack.env),
        ];
        let _web = Service::start("iptrack-web", &[], &stack.env);
        stack.wait_until_listening().await;

        let client = reqwest::Client::new();
        let statuses: Vec<u16> = futures::stream::iter(0..50)
            .map(|i| {
                let request = client
                    .get(stack.url(&format!("/items/{i}")))
                    .header("x-forwarded-for", "81.2.69.142");
                async move { request.send().await.unwrap().status().as_u16() }
            })
            .buffer_unordered(10)
            .collect()
            .await;
        assert!(statuses.iter().all(|&s| s < 500), "{statuses:?}");

        let conn = db.connect().await;
        iptrack_tests::eventually(Duration::from_secs(30), "50 located rows", || async {
            let rows = request_log::Entity::find().all(&conn).await.unwrap();
            let located = rows
                .iter()
                .filter(|r| {
                    r.ip_address == "81.2.69.142"
                        && r.country_code == "GB"
                        && r.country == "United Kingdom"
                        && r.city == "London"
                })
                .count();
            (located == 50).then_some(())
        })
        .await;
        // Let any duplicate lookup land before counting.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let calls = provider.received_requests().await.unwrap();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].url.path(), "/json/81.2.69.142");
    }
);

#[test]
fn an_explicit_mmdb_provider_without_its_files_stops_the_worker_with_one_line() {
    let output = Command::new(binary("iptrack-worker"))
        .env_clear()
        .env("IPTRACK_GEO_PROVIDER", "mmdb")
        .env("IPTRACK_GEO_MMDB", "/nonexistent/dbip-city-ipv4.mmdb")
        .env("DATABASE_URL", "sqlite::memory:")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("IPTRACK_GEO_MMDB"), "{stderr}");
}

/// `iptrack up` runs the workers in its own process: the same bad setting is the same
/// one-line refusal with status 2, not a failure (1) to investigate.
#[test]
fn iptrack_up_with_an_explicit_mmdb_provider_without_its_files_stops_with_one_line() {
    let redis = iptrack_tests::TestRedis::new();
    let output = Command::new(binary("iptrack"))
        .arg("up")
        .env_clear()
        .env("IPTRACK_GEO_PROVIDER", "mmdb")
        .env("IPTRACK_GEO_MMDB", "/nonexistent/dbip-city-ipv4.mmdb")
        .env("DATABASE_URL", "sqlite::memory:")
        .env("REDIS_URL", &redis.url)
        .env("IPTRACK_REDIS_PREFIX", &redis.prefix)
        .env("IPTRACK_BIND", "127.0.0.1:0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("IPTRACK_GEO_MMDB"), "{stderr}");
}
