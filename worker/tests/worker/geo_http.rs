//! The HTTP provider against a fake server (wiremock): both formats, the batch endpoint,
//! retries on timeouts and 5xx, and 429 honoured.

use std::time::{Duration, Instant};

use iptrack_core::settings::GeoHttpFormat;
use iptrack_worker::geo::{Location, Lookup};
use serde_json::json;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_json, method, path, query_param},
};

use crate::geo_fixtures::http;

fn found(code: &str, country: &str, city: &str) -> Lookup {
    Lookup::Found(Location {
        country_code: code.into(),
        country: country.into(),
        city: city.into(),
    })
}

fn ip_api_ok(code: &str, country: &str, city: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(
        json!({"status": "success", "countryCode": code, "country": country, "city": city}),
    )
}

async fn lookup(server: &MockServer, format: GeoHttpFormat, ips: &[&str]) -> Vec<Lookup> {
    let ips: Vec<_> = ips.iter().map(|ip| ip.parse().unwrap()).collect();
    http(&server.uri(), format).lookup_many(&ips).await.unwrap()
}

#[tokio::test]
async fn ip_api_single_lookups_ask_for_the_needed_fields() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/json/81.2.69.142"))
        .and(query_param(
            "fields",
            "status,message,countryCode,country,city",
        ))
        .respond_with(ip_api_ok("GB", "United Kingdom", "London"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/json/8.8.4.4"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": "fail", "message": "reserved range"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(
        lookup(&server, GeoHttpFormat::IpApi, &["81.2.69.142"]).await,
        [found("GB", "United Kingdom", "London")]
    );
    assert_eq!(
        lookup(&server, GeoHttpFormat::IpApi, &["8.8.4.4"]).await,
        [Lookup::NotFound]
    );
}

#[tokio::test]
async fn ip_api_looks_several_addresses_up_in_one_batch_call() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/batch"))
        .and(body_json(json!(["81.2.69.142", "2a02:8070::1", "8.8.4.4"])))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"status": "success", "countryCode": "GB", "country": "United Kingdom", "city": "London"},
            // No country name: our table supplies it.
            {"status": "success", "countryCode": "de", "city": "Berlin"},
            {"status": "fail", "message": "reserved range"},
        ])))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(
        lookup(
            &server,
            GeoHttpFormat::IpApi,
            &["81.2.69.142", "2a02:8070::1", "8.8.4.4"]
        )
        .await,
        [
            found("GB", "United Kingdom", "London"),
            found("DE", "Germany", "Berlin"),
            Lookup::NotFound
        ]
    );
}

#[tokio::test]
async fn a_batch_of_more_than_100_addresses_takes_several_calls() {
    let server = MockServer::start().await;
    let answer: Vec<_> = (0..100)
        .map(|_| json!({"status": "success", "countryCode": "GB", "city": "London"}))
        .collect();
    Mock::given(method("POST"))
        .and(path("/batch"))
        .respond_with(move |request: &wiremock::Request| {
            let asked: Vec<String> = serde_json::from_slice(&request.body).unwrap();
            assert!(asked.len() <= 100, "{} addresses in one batch", asked.len());
            ResponseTemplate::new(200).set_body_json(&answer[..asked.len()])
        })
        .expect(2)
        .mount(&server)
        .await;
    let ips: Vec<String> = (0..150)
        .map(|i| format!("81.2.{}.{}", i / 200, i % 200 + 1))
        .collect();
    let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
    let answers = lookup(&server, GeoHttpFormat::IpApi, &ips).await;
    assert_eq!(answers.len(), 150);
    assert!(
        answers
            .iter()
            .all(|a| *a == found("GB", "United Kingdom", "London"))
    );
}

#[tokio::test]
async fn ipgeolocation_v3_sends_the_key_and_reads_its_layout() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/ipgeo"))
        .and(query_param("apiKey", "test-key"))
        .and(query_param("ip", "89.160.20.128"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ip": "89.160.20.128",
            "location": {"continent_code": "EU", "country_code2": "SE", "country_code3": "SWE",
                         "country_name": "Sweden", "city": "Linköping"}
        })))
        .expect(1)
        .mount(&server)
        .await;
    // ipgeolocation answers 423 for bogons it will not locate.
    Mock::given(method("GET"))
        .and(path("/v3/ipgeo"))
        .and(query_param("ip", "8.8.4.4"))
        .respond_with(ResponseTemplate::new(423).set_body_json(json!({"message": "bogon"})))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(
        lookup(
            &server,
            GeoHttpFormat::IpGeolocation,
            &["89.160.20.128", "8.8.4.4"]
        )
        .await,
        [found("SE", "Sweden", "Linköping"), Lookup::NotFound]
    );
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let server = MockServer::start().await;
    // First answer too late (the test timeout is 500 ms), the next one in time.
    Mock::given(method("GET"))
        .respond_with(ip_api_ok("GB", "United Kingdom", "London").set_delay(Duration::from_secs(2)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ip_api_ok("GB", "United Kingdom", "London"))
        .mount(&server)
        .await;
    assert_eq!(
        lookup(&server, GeoHttpFormat::IpApi, &["81.2.69.142"]).await,
        [found("GB", "United Kingdom", "London")]
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ip_api_ok("GB", "United Kingdom", "London"))
        .mount(&server)
        .await;
    assert_eq!(
        lookup(&server, GeoHttpFormat::IpApi, &["81.2.69.142"]).await,
        [found("GB", "United Kingdom", "London")]
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 3);

    // Always failing: 1 attempt + 2 retries, then an error (the job is retried by apalis).
    let down = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .expect(3)
        .mount(&down)
        .await;
    let error = http(&down.uri(), GeoHttpFormat::IpApi)
        .lookup_many(&["81.2.69.142".parse().unwrap()])
        .await
        .unwrap_err();
    assert!(error.to_string().contains("500"), "{error}");
}

#[tokio::test]
async fn a_429_waits_as_long_as_retry_after_or_x_ttl_says() {
    for header in ["Retry-After", "X-Ttl"] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(429).insert_header(header, "1"))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(ip_api_ok("GB", "United Kingdom", "London"))
            .mount(&server)
            .await;
        let started = Instant::now();
        assert_eq!(
            lookup(&server, GeoHttpFormat::IpApi, &["81.2.69.142"]).await,
            [found("GB", "United Kingdom", "London")]
        );
        // Behaviour, not speed: the second call came no sooner than the provider allowed.
        assert!(
            started.elapsed() >= Duration::from_millis(950),
            "{header}: retried after {:?}",
            started.elapsed()
        );
        assert_eq!(server.received_requests().await.unwrap().len(), 2);
    }
}

#[tokio::test]
async fn a_long_rate_limit_fails_the_lookup_at_once_for_a_later_retry() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("X-Ttl", "60"))
        .expect(1)
        .mount(&server)
        .await;
    let error = http(&server.uri(), GeoHttpFormat::IpApi)
        .lookup_many(&["81.2.69.142".parse().unwrap()])
        .await
        .unwrap_err();
    assert!(error.to_string().contains("60 s"), "{error}");
}

/// Garbage from a provider is cleaned before it can reach the cache or a row: before,
/// a ten-letter "country code" was cached and every later batch with that address failed
/// PostgreSQL's `varchar(2)`, losing its rows.
#[tokio::test]
async fn nonsense_fields_are_cleaned_before_anything_stores_them() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/json/81.2.69.142"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": "success",
            "countryCode": "NOT-A-CODE",
            "country": "x".repeat(100_000),
            "city": "\u{0}\u{1b}[31mLondon\r\n",
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/json/8.8.4.4"))
        .respond_with(ip_api_ok(" gb ", "United Kingdom", "London"))
        .mount(&server)
        .await;
    let [Lookup::Found(garbage)] =
        &lookup(&server, GeoHttpFormat::IpApi, &["81.2.69.142"]).await[..]
    else {
        panic!("expected a (cleaned) location");
    };
    assert_eq!(garbage.country_code, "");
    assert_eq!(
        garbage.country.chars().count(),
        iptrack_worker::geo::MAX_NAME_CHARS
    );
    assert_eq!(garbage.city, "[31mLondon");
    assert_eq!(
        lookup(&server, GeoHttpFormat::IpApi, &["8.8.4.4"]).await,
        [found("GB", "United Kingdom", "London")]
    );
}

/// A body that never ends is cut at a bound instead of being buffered until the timeout.
#[tokio::test]
async fn an_oversized_answer_is_refused_not_buffered() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(" ".repeat(iptrack_worker::geo::http::MAX_BODY_BYTES + 1)),
        )
        .mount(&server)
        .await;
    let error = http(&server.uri(), GeoHttpFormat::IpApi)
        .lookup_many(&["81.2.69.142".parse().unwrap()])
        .await
        .unwrap_err();
    assert!(error.to_string().contains("longer than"), "{error}");
}
