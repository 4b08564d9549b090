//! The bounded buffer: the application is served whatever Redis does; events wait while
//! Redis is away and arrive when it returns; beyond the bound they are dropped and counted.

use std::{net::SocketAddr, time::Duration};

use actix_web::{App, HttpResponse, test, web};
use iptrack_core::{
    client_ip::{ClientIpResolver, ProxyHeader},
    jobs::{REQUEST_LOGS_QUEUE, RequestLogBatch},
    queue,
    settings::Settings,
};
use iptrack_tests::{PrivateRedis, eventually};
use iptrack_web::{IpTracking, LogPipeline};
use redis::AsyncCommands;

fn settings(redis: &PrivateRedis, buffer: usize, batch: usize) -> Settings {
    let mut settings = Settings::default();
    settings.redis.url = redis.url().into();
    settings.log_pipeline.buffer_capacity = buffer;
    settings.log_pipeline.batch_max_events = batch;
    settings.log_pipeline.batch_max_wait = Duration::from_millis(10);
    settings
}

/// Events in the `request-logs` queue, summed over its jobs.
async fn queued_events(redis: &PrivateRedis, settings: &Settings) -> usize {
    let config = queue::queue_config(&settings.redis.prefix, &settings.worker, REQUEST_LOGS_QUEUE);
    let client = redis::Client::open(redis.url()).unwrap();
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return 0;
    };
    let payloads: Vec<Vec<u8>> = conn.hvals(config.job_data_hash()).await.unwrap_or_default();
    payloads
        .iter()
        .map(|p| {
            serde_json::from_slice::<RequestLogBatch>(p)
                .unwrap()
                .events
                .len()
        })
        .sum()
}

macro_rules! tracked_app {
    ($pipeline:expr) => {
        test::init_service(
            App::new()
                .wrap(IpTracking::new(
                    ClientIpResolver::new(Vec::new(), ProxyHeader::XForwardedFor),
                    $pipeline.sink(),
                ))
                .route(
                    "/",
                    web::get().to(|| async { HttpResponse::Ok().body("hello") }),
                ),
        )
        .await
    };
}

fn request() -> test::TestRequest {
    let peer: SocketAddr = "203.0.113.5:40000".parse().unwrap();
    test::TestRequest::get().uri("/").peer_addr(peer)
}

#[actix_web::test]
async fn events_wait_while_redis_is_away_and_arrive_when_it_returns() {
    let mut redis = PrivateRedis::start();
    let settings = settings(&redis, 1_000, 5);
    redis.stop();
    let pipeline = LogPipeline::to_redis(
        &settings.log_pipeline,
        queue::connect(settings.redis.url.expose()).unwrap(),
        &settings.redis.prefix,
    );
    let app = tracked_app!(pipeline);

    for _ in 0..20 {
        let response = test::call_service(&app, request().to_request()).await;
        assert_eq!(
            response.status().as_u16(),
            200,
            "served while Redis is away"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(pipeline.sink().metrics().push_failures.get() > 0);
    assert_eq!(pipeline.sink().metrics().events_dropped.get(), 0);

    redis.restart();
    eventually(
        Duration::from_secs(15),
        "all 20 events in Redis",
        || async { (queued_events(&redis, &settings).await == 20).then_some(()) },
    )
    .await;
    pipeline.finish().await;
}

#[actix_web::test]
async fn a_full_buffer_drops_and_counts_events_and_the_app_is_still_served() {
    let mut redis = PrivateRedis::start();
    let settings = settings(&redis, 10, 5);
    redis.stop();
    let pipeline = LogPipeline::to_redis(
        &settings.log_pipeline,
        queue::connect(settings.redis.url.expose()).unwrap(),
        &settings.redis.prefix,
    );
    let app = tracked_app!(pipeline);

    for _ in 0..50 {
        let response = test::call_service(&app, request().to_request()).await;
        assert_eq!(response.status().as_u16(), 200);
    }
    let sink = pipeline.sink();
    let metrics = sink.metrics();
    let accepted = metrics.events_buffered.get();
    let dropped = metrics.events_dropped.get();
    assert_eq!(
        accepted + dropped,
        50,
        "every event is either buffered or counted as dropped"
    );
    // At most the buffer (10) plus the batch the batcher holds (5) can be kept.
    assert!(accepted <= 15, "{accepted} accepted into a buffer of 10");
    assert!(dropped >= 35, "{dropped} dropped");
    let rendered = metrics.render(sink.buffered());
    assert!(
        rendered.contains(&format!("iptrack_log_events_dropped_total {dropped}")),
        "{rendered}"
    );

    // What was kept is delivered once Redis is back.
    redis.restart();
    eventually(
        Duration::from_secs(15),
        "the kept events in Redis",
        || async { (queued_events(&redis, &settings).await == accepted as usize).then_some(()) },
    )
    .await;
    pipeline.finish().await;
}
