//! What a logged request records: duration, user agent (bounded, never a panic on bad
//! bytes), and the query string only when the operator turns it on.

use std::{net::SocketAddr, time::Duration};

use actix_web::{App, HttpResponse, http::header::HeaderValue, test, web};
use iptrack_core::{
    client_ip::{ClientIpResolver, ProxyHeader},
    jobs::{LogEvent, MAX_PATH_BYTES, MAX_USER_AGENT_BYTES, REQUEST_LOGS_QUEUE, RequestLogBatch},
    queue,
    settings::Settings,
};
use iptrack_tests::{TestRedis, eventually};
use iptrack_web::{IpTracking, LogPipeline};
use redis::AsyncCommands;

fn settings(redis: &TestRedis) -> Settings {
    let mut settings = Settings::default();
    settings.redis.url = redis.url.as_str().into();
    settings.redis.prefix = redis.prefix.clone();
    settings.log_pipeline.batch_max_wait = Duration::from_millis(10);
    settings
}

/// Serves one request through the middleware and returns the event it logged.
async fn logged_event(tracking_query_string: bool, request: test::TestRequest) -> LogEvent {
    let redis = TestRedis::new();
    let settings = settings(&redis);
    let pipeline = LogPipeline::to_redis(
        &settings.log_pipeline,
        queue::connect(settings.redis.url.expose()).unwrap(),
        &settings.redis.prefix,
    );
    let app = test::init_service(
        App::new()
            .wrap(
                IpTracking::new(
                    ClientIpResolver::new(Vec::new(), ProxyHeader::XForwardedFor),
                    pipeline.sink(),
                )
                .with_query_string(tracking_query_string),
            )
            .default_service(web::to(|| async {
                // Long enough that a duration measured in the wrong unit shows.
                tokio::time::sleep(Duration::from_millis(30)).await;
                HttpResponse::Ok().body("hello")
            })),
    )
    .await;
    let peer: SocketAddr = "203.0.113.5:40000".parse().unwrap();
    let response = test::call_service(&app, request.peer_addr(peer).to_request()).await;
    assert_eq!(response.status().as_u16(), 200);

    let config = queue::queue_config(&settings.redis.prefix, &settings.worker, REQUEST_LOGS_QUEUE);
    let mut conn = redis.connection().await;
    let events = eventually(Duration::from_secs(10), "the event in Redis", || async {
        let payloads: Vec<Vec<u8>> = conn.clone().hvals(config.job_data_hash()).await.unwrap();
        let events: Vec<LogEvent> = payloads
            .iter()
            .flat_map(|p| serde_json::from_slice::<RequestLogBatch>(p).unwrap().events)
            .collect();
        (!events.is_empty()).then_some(events)
    })
    .await;
    pipeline.finish().await;
    let _: () = conn.del(config.job_data_hash()).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    events.into_iter().next().unwrap()
}

#[actix_web::test]
async fn an_event_records_duration_and_user_agent_but_no_query_string_by_default() {
    let event = logged_event(
        false,
        test::TestRequest::get()
            .uri("/reset?token=s3cret")
            .insert_header(("user-agent", "Mozilla/5.0 (iptrack test)")),
    )
    .await;
    assert_eq!(event.ip.to_string(), "203.0.113.5");
    assert_eq!(
        (event.method.as_str(), event.path.as_str()),
        ("GET", "/reset")
    );
    assert_eq!(event.status, 200);
    assert_eq!(event.user_agent, "Mozilla/5.0 (iptrack test)");
    assert_eq!(event.query_string, None, "query strings can carry secrets");
    assert!(
        (30_000..10_000_000).contains(&event.duration_us),
        "duration {} µs for a 30 ms handler",
        event.duration_us
    );
}

#[actix_web::test]
async fn the_query_string_is_stored_when_turned_on() {
    let event = logged_event(true, test::TestRequest::get().uri("/search?q=rust&page=2")).await;
    assert_eq!(event.path, "/search");
    assert_eq!(event.query_string.as_deref(), Some("q=rust&page=2"));
    assert_eq!(event.user_agent, "", "no User-Agent header");
}

#[actix_web::test]
async fn oversized_paths_and_user_agents_are_cut_and_invalid_bytes_replaced() {
    let long_path = format!("/{}", "a".repeat(10_000));
    let event = logged_event(
        false,
        test::TestRequest::get()
            .uri(&long_path)
            .insert_header(("user-agent", "b".repeat(20_000))),
    )
    .await;
    assert_eq!(event.path.len(), MAX_PATH_BYTES);
    assert_eq!(event.user_agent.len(), MAX_USER_AGENT_BYTES);

    let event = logged_event(
        false,
        test::TestRequest::get().uri("/").insert_header((
            "user-agent",
            HeaderValue::from_bytes(b"bot\xff\xfe/1.0").unwrap(),
        )),
    )
    .await;
    assert_eq!(event.user_agent, "bot\u{fffd}\u{fffd}/1.0");
}
