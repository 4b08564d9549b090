//! The embedding API: the builder, the guard's explicit shutdown and its warning when
//! dropped without one, and the safelist as the settings deliver it to the middleware.

use std::{
    io::Write,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use actix_web::{App, HttpResponse, test, web};
use arc_swap::ArcSwap;
use iptrack_core::{
    blocklist::Blocklist,
    client_ip::{ClientIpResolver, ProxyHeader},
    jobs::{LogEvent, REQUEST_LOGS_QUEUE, RequestLogBatch},
    queue,
    settings::{LogPipelineSettings, Settings, WorkerSettings},
};
use iptrack_middleware::{IpTracking, LogPipeline};
use iptrack_tests::TestRedis;
use redis::AsyncCommands;

/// The events in the test's `request-logs` queue now.
async fn queued(redis: &TestRedis) -> Vec<LogEvent> {
    let config = queue::queue_config(
        &redis.prefix,
        &WorkerSettings::default(),
        REQUEST_LOGS_QUEUE,
    );
    let payloads: Vec<Vec<u8>> = redis
        .connection()
        .await
        .hvals(config.job_data_hash())
        .await
        .unwrap();
    payloads
        .iter()
        .flat_map(|p| serde_json::from_slice::<RequestLogBatch>(p).unwrap().events)
        .collect()
}

/// Batches that close only at the longest wait allowed: nothing reaches Redis during the
/// test unless the guard delivers it.
fn holding_pipeline() -> LogPipelineSettings {
    LogPipelineSettings {
        batch_max_wait: Duration::from_secs(60),
        ..LogPipelineSettings::default()
    }
}

#[actix_web::test]
async fn the_guard_delivers_what_the_buffer_holds_when_shut_down() {
    let redis = TestRedis::new();
    let guard = IpTracking::builder()
        .redis_url(redis.url.as_str())
        .redis_prefix(redis.prefix.clone())
        .log_pipeline(holding_pipeline())
        .build()
        .await
        .unwrap();
    let app = test::init_service(
        App::new()
            .wrap(guard.middleware())
            .default_service(web::to(HttpResponse::Ok)),
    )
    .await;
    let peer: SocketAddr = "203.0.113.9:40000".parse().unwrap();
    for path in ["/a", "/b", "/c"] {
        let request = test::TestRequest::get().uri(path).peer_addr(peer);
        let response = test::call_service(&app, request.to_request()).await;
        assert_eq!(response.status().as_u16(), 200);
    }
    assert!(queued(&redis).await.is_empty(), "still buffered");

    guard.shutdown().await;
    let events = queued(&redis).await;
    let mut paths: Vec<&str> = events.iter().map(|e| e.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["/a", "/b", "/c"], "delivered by shutdown()");
}

/// Log lines written while it is the thread's subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[actix_web::test]
async fn a_guard_dropped_without_shutdown_says_so() {
    let redis = TestRedis::new();
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let guard = IpTracking::builder()
        .redis_url(redis.url.as_str())
        .redis_prefix(redis.prefix.clone())
        .log_pipeline(holding_pipeline())
        .build()
        .await
        .unwrap();
    let shut_down = IpTracking::builder()
        .redis_url(redis.url.as_str())
        .redis_prefix(redis.prefix.clone())
        .build()
        .await
        .unwrap();
    shut_down.shutdown().await;
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(!text.contains("without shutdown"), "{text}");

    drop(guard);
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("WARN") && text.contains("dropped without shutdown()"),
        "{text}"
    );
}

#[actix_web::test]
async fn a_safelist_entry_written_as_ipv4_mapped_ipv6_protects_the_ipv4_client() {
    let redis = TestRedis::new();
    let settings = Settings::from_sources(None, |name| {
        (name == "IPTRACK_SAFELIST").then(|| "::ffff:203.0.113.7".to_owned())
    })
    .unwrap();
    let mut list = Blocklist::new();
    list.insert("203.0.113.0/24".parse().unwrap(), None);
    let pipeline = LogPipeline::to_redis(
        &LogPipelineSettings::default(),
        queue::connect(&redis.url).unwrap(),
        &redis.prefix,
    );
    let app = test::init_service(
        App::new()
            .wrap(
                IpTracking::new(
                    ClientIpResolver::new(Vec::new(), ProxyHeader::XForwardedFor),
                    pipeline.sink(),
                )
                .with_blocklist(
                    Arc::new(ArcSwap::from_pointee(list)),
                    settings.blocklist.safelist.clone(),
                ),
            )
            .default_service(web::to(HttpResponse::Ok)),
    )
    .await;
    // Clients arrive as IPv4, or as IPv4-mapped IPv6 from a dual-stack listener: both are
    // the safelisted address.
    for (peer, status) in [
        ("203.0.113.7:40000", 200),
        ("[::ffff:203.0.113.7]:40000", 200),
        ("203.0.113.8:40000", 403),
    ] {
        let request = test::TestRequest::get().peer_addr(peer.parse().unwrap());
        let response = test::call_service(&app, request.to_request()).await;
        assert_eq!(response.status().as_u16(), status, "{peer}");
    }
    pipeline.finish().await;
}
