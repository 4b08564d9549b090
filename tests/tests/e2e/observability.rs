//! `/metrics` after real traffic, and `/readyz` following the database away and back.

use std::time::Duration;

use iptrack_tests::{
    Backend, TestDb, TestRedis, eventually, process::Service, tcp_proxy::TcpProxy,
};
use sea_orm::ConnectionTrait;

use crate::{Stack, iptrack, send_requests};

async fn scrape(client: &reqwest::Client, stack: &Stack) -> String {
    client
        .get(stack.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample `name` (with its labels, exactly as rendered), if present.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_blocks_queues_and_the_workers_jobs_and_failures() {
    let (db, redis) = (TestDb::new(Backend::Sqlite).await, TestRedis::new());
    let stack = Stack::new(&db, &redis);
    let _web = Service::start("iptrack-web", &[], &stack.env);
    let _worker = Service::start("iptrack-worker", &[], &stack.env);
    stack.wait_until_listening().await;
    let client = reqwest::Client::new();

    send_requests(&stack, 0..20).await; // 404: no such route
    for _ in 0..3 {
        client.get(stack.url("/")).send().await.unwrap();
    }
    let (code, _, stderr) = iptrack(&stack, &["block", "203.0.113.5"]);
    assert_eq!(code, 0, "{stderr}");
    eventually(Duration::from_secs(10), "the block to apply", || async {
        let status = client
            .get(stack.url("/"))
            .header("x-forwarded-for", "203.0.113.5")
            .send()
            .await
            .unwrap()
            .status();
        (status == 403).then_some(())
    })
    .await;
    let conn = db.connect().await;

    // Quiet queues: every job has finished and been counted. Scrapes are not logged
    // (operator traffic), but the pause between them lets the last batch (100 ms to
    // close, one worker poll, one insert) get through.
    let metrics = eventually(Duration::from_secs(30), "jobs recorded", || async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let metrics = scrape(&client, &stack).await;
        let state = |s: &str| {
            sample(
                &metrics,
                &format!("iptrack_queue_jobs{{queue=\"request-logs\",state=\"{s}\"}}"),
            )
        };
        let jobs = sample(
            &metrics,
            "iptrack_job_duration_seconds_count{queue=\"request-logs\"}",
        );
        let quiet = state("due") == Some(0.0) && state("in_flight") == Some(0.0);
        (quiet && jobs.is_some_and(|n| n >= 1.0) && state("done") == jobs).then_some(metrics)
    })
    .await;
    assert_eq!(
        sample(&metrics, "iptrack_http_requests_total{status=\"404\"}"),
        Some(20.0),
        "{metrics}"
    );
    let ok = sample(&metrics, "iptrack_http_requests_total{status=\"200\"}").unwrap();
    assert!(ok >= 3.0, "{metrics}");
    let blocked = sample(&metrics, "iptrack_requests_blocked_total").unwrap();
    assert!(blocked >= 1.0, "{metrics}");
    assert_eq!(
        sample(&metrics, "iptrack_http_requests_total{status=\"403\"}"),
        Some(blocked),
        "{metrics}"
    );
    assert!(sample(&metrics, "iptrack_log_events_buffered_total").unwrap() >= 24.0);
    assert_eq!(
        sample(&metrics, "iptrack_log_events_dropped_total"),
        Some(0.0)
    );
    assert_eq!(sample(&metrics, "iptrack_cluster_metrics_up"), Some(1.0));
    let done = sample(
        &metrics,
        "iptrack_queue_jobs{queue=\"request-logs\",state=\"done\"}",
    );
    assert_eq!(
        sample(
            &metrics,
            "iptrack_job_duration_seconds_bucket{queue=\"request-logs\",le=\"60\"}"
        ),
        done,
        "a batch of a few events takes well under a minute: {metrics}"
    );
    assert!(
        sample(
            &metrics,
            "iptrack_job_duration_seconds_sum{queue=\"request-logs\"}"
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        sample(
            &metrics,
            "iptrack_job_failures_total{queue=\"request-logs\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(&metrics, "iptrack_queue_workers{queue=\"request-logs\"}"),
        Some(2.0)
    );
    assert!(metrics.contains("# TYPE iptrack_geo_cache_hits_total counter"));

    // A job that fails (its table is away) is counted as a failure, then succeeds on retry.
    conn.execute_unprepared("ALTER TABLE request_log RENAME TO request_log_away")
        .await
        .unwrap();
    client.get(stack.url("/after")).send().await.unwrap();
    eventually(Duration::from_secs(20), "a failed job", || async {
        let metrics = scrape(&client, &stack).await;
        sample(
            &metrics,
            "iptrack_job_failures_total{queue=\"request-logs\"}",
        )
        .filter(|n| *n >= 1.0)
    })
    .await;
    conn.execute_unprepared("ALTER TABLE request_log_away RENAME TO request_log")
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "the retried batch", || async {
        (db.count(&conn, "request_log WHERE path = '/after'").await == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_the_database_is_away_and_200_when_it_is_back() {
    let (db, redis) = (TestDb::new(Backend::Postgres).await, TestRedis::new());
    // The web reaches PostgreSQL through a forwarder the test can cut.
    let server = db
        .url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let mut proxy = TcpProxy::start(server.parse().unwrap()).await;
    let proxied_url = db
        .url
        .replace(&server, &format!("127.0.0.1:{}", proxy.port));
    let mut stack = Stack::new(&db, &redis).with("DATABASE_URL", &proxied_url);
    let _web = stack.serve_web().await;
    let client = reqwest::Client::new();
    let readyz = || async {
        let response = client.get(stack.url("/readyz")).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    eventually(Duration::from_secs(10), "ready", || async {
        (readyz().await.0 == 200).then_some(())
    })
    .await;

    proxy.cut();
    let body = eventually(Duration::from_secs(15), "503", || async {
        let (status, body) = readyz().await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(body.contains("database unavailable"), "{body}");
    assert!(!body.contains("redis"), "{body}");
    // Still alive, still serving.
    let health = client.get(stack.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);

    proxy.resume().await;
    eventually(Duration::from_secs(20), "ready again", || async {
        (readyz().await.0 == 200).then_some(())
    })
    .await;
}
