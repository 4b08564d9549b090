//! From the last of 1,000 responses to the 1,000th `request_log` row, on a fresh
//! `iptrack up` (release build), for SQLite and PostgreSQL.
//!
//! Run: `cargo build --release --workspace --bins && cargo run --release -p iptrack-bench --bin first_run_lag`

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use iptrack_bench::median;
use iptrack_tests::{Backend, TestDb, TestRedis, free_port, process::Service};

#[derive(Debug, Parser)]
struct Args {
    /// Fresh `iptrack up` runs per backend.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Requests per run.
    #[arg(long, default_value_t = 1_000)]
    requests: usize,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    println!("backend   runs  requests  lag p50 (ms)  lag max (ms)  send p50 (ms)");
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let mut lags = Vec::new();
        let mut sends = Vec::new();
        for _ in 0..args.runs {
            let (lag, send) = one_run(backend, args.requests).await;
            lags.push(lag.as_secs_f64() * 1e3);
            sends.push(send.as_secs_f64() * 1e3);
        }
        let max = lags.iter().copied().fold(0.0, f64::max);
        println!(
            "{:<9} {:>4}  {:>8}  {:>12.0}  {:>12.0}  {:>13.0}",
            format!("{backend:?}").to_lowercase(),
            args.runs,
            args.requests,
            median(&mut lags).unwrap(),
            max,
            median(&mut sends).unwrap()
        );
    }
}

/// Returns (last response → all rows, time to send all requests).
async fn one_run(backend: Backend, requests: usize) -> (Duration, Duration) {
    let (db, redis) = (TestDb::empty(backend).await, TestRedis::new());
    let port = free_port();
    let env = [
        ("DATABASE_URL", db.url.clone()),
        ("REDIS_URL", redis.url.clone()),
        ("IPTRACK_REDIS_PREFIX", redis.prefix.clone()),
        ("IPTRACK_BIND", format!("127.0.0.1:{port}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let _up = Service::start("iptrack", &["up"], &env);
    let base = format!("http://127.0.0.1:{port}");
    iptrack_tests::process::wait_until_listening(&base, Duration::from_secs(30)).await;

    let client = reqwest::Client::new();
    let started = Instant::now();
    futures::stream::iter(0..requests)
        .map(|i| {
            let request = client.get(format!("{base}/items/{i}"));
            async move { request.send().await.expect("request failed") }
        })
        .buffer_unordered(16)
        .for_each(|_| async {})
        .await;
    let last_response = Instant::now();

    let conn = db.connect().await;
    loop {
        if db.count(&conn, "request_log").await >= requests as i64 {
            break;
        }
        assert!(
            last_response.elapsed() < Duration::from_secs(60),
            "rows never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (last_response.elapsed(), last_response - started)
}
