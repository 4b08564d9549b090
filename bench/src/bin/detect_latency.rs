//! Detection latency: the time from the request that crossed a streaming rule's threshold
//! to the first 403 the same address gets, with `iptrack-web` and `iptrack-worker`s as
//! processes and background traffic at a fixed rate.
//!
//! Each trial is a fresh address that sends `count` requests matching the rule
//! (`GET /attack/{n}`, 404s, one after the other); the clock starts when the last one is
//! answered, and the address then asks `GET /` every 5 ms until it gets 403. Meanwhile
//! background requests (`GET /bg/{i}` from rotating addresses, which no rule counts) go out
//! open-loop at `--rate`. Reports p50/p99/max over the trials, the background rate achieved
//! and the rows the workers wrote, so "the workers kept up" can be read off.
//!
//! Run: `cargo build --workspace --bins && cargo run -p iptrack-bench --bin detect_latency --
//! --rate 5000 --trials 100` (add `--release` to both for release figures).

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Parser;
use iptrack_tests::{Backend, TestDb, TestRedis, free_port, process::Service};

#[derive(Debug, Parser)]
struct Args {
    /// Background requests per second.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// Attacking addresses, one after the other.
    #[arg(long, default_value_t = 100)]
    trials: usize,
    /// Requests that fire the rule.
    #[arg(long, default_value_t = 5)]
    count: u32,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// `postgres` or `sqlite`.
    #[arg(long, default_value = "postgres")]
    backend: String,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let backend = match args.backend.as_str() {
        "sqlite" => Backend::Sqlite,
        _ => Backend::Postgres,
    };
    let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
    let port = free_port();
    let env: HashMap<String, String> = [
        ("DATABASE_URL", db.url.clone()),
        ("REDIS_URL", redis.url.clone()),
        ("IPTRACK_REDIS_PREFIX", redis.prefix.clone()),
        ("IPTRACK_BIND", format!("127.0.0.1:{port}")),
        ("IPTRACK_TRUSTED_PROXIES", "127.0.0.1".into()),
        (
            "IPTRACK_DETECT_RULES",
            format!(
                "attack=GET /attack/* status=404 count={} window=1m ban=1h",
                args.count
            ),
        ),
        // No reload during the run: only the change notice can deliver a ban.
        ("IPTRACK_BLOCKLIST_RELOAD_SECS", "3600".into()),
        ("RUST_LOG", "error".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let _web = Service::start("iptrack-web", &[], &env);
    let _workers: Vec<Service> = (0..args.workers)
        .map(|_| Service::start("iptrack-worker", &[], &env))
        .collect();
    let base = format!("http://127.0.0.1:{port}");
    iptrack_tests::process::wait_until_listening(&base, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let origin = Instant::now();
    let background = tokio::spawn(background(
        client.clone(),
        base.clone(),
        args.rate,
        stop.clone(),
        sent.clone(),
    ));

    let mut latencies = Vec::with_capacity(args.trials);
    let mut never = 0;
    for trial in 0..args.trials {
        let ip = format!("203.0.{}.{}", 113 + trial / 250, trial % 250 + 1);
        let mut crossed = Instant::now();
        for n in 0..args.count {
            let status = get(&client, &format!("{base}/attack/{n}"), &ip).await;
            assert_eq!(status, 404, "attack request {n} of {ip}");
            crossed = Instant::now();
        }
        let deadline = crossed + Duration::from_secs(30);
        loop {
            if get(&client, &format!("{base}/"), &ip).await == 403 {
                latencies.push(crossed.elapsed().as_secs_f64() * 1e3);
                break;
            }
            if Instant::now() > deadline {
                never += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = origin.elapsed();
    background.await.unwrap();
    let sent = sent.load(Ordering::Relaxed);

    // Let the workers drain, then count what they wrote.
    let conn = db.connect().await;
    let mut rows = 0;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = db.count(&conn, "request_log WHERE path LIKE '/bg/%'").await;
        if now == rows && now > 0 {
            break;
        }
        rows = now;
    }
    let drained = origin.elapsed();

    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    println!(
        "{backend:?}, {} worker process(es), rule count={}: {} trials, {} banned, {never} not banned within 30 s",
        args.workers,
        args.count,
        args.trials,
        latencies.len()
    );
    if !latencies.is_empty() {
        println!(
            "crossing request answered → first 403: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            pct(0.50),
            pct(0.99),
            latencies.last().unwrap()
        );
    }
    println!(
        "background: {sent} requests in {:.1} s ({:.0}/s of {}/s planned); {rows} of them in request_log {:.1} s after the start",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64(),
        args.rate,
        drained.as_secs_f64()
    );
}

async fn get(client: &reqwest::Client, url: &str, ip: &str) -> u16 {
    client
        .get(url)
        .header("x-forwarded-for", ip)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Open-loop background traffic: requests leave on a 1 ms schedule whatever the answers
/// do, each from one of 10,000 addresses.
async fn background(
    client: reqwest::Client,
    base: String,
    rate: u64,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) {
    let origin = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut i, mut skipped) = (0u64, 0u64);
    let mut in_flight = tokio::task::JoinSet::new();
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let due = (origin.elapsed().as_secs_f64() * rate as f64) as u64;
        while i < due {
            // Bounded, so a web that falls behind shows as a lower achieved rate rather
            // than as the bench running out of file descriptors.
            if in_flight.len() >= MAX_IN_FLIGHT {
                skipped += 1;
                i += 1;
                continue;
            }
            let (client, url) = (client.clone(), format!("{base}/bg/{i}"));
            let ip = format!("198.51.{}.{}", 100 + i / 250 % 20, i % 250 + 1);
            in_flight.spawn(async move { get(&client, &url, &ip).await });
            i += 1;
        }
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
    sent.store(i - skipped, Ordering::Relaxed);
}

/// Background requests waiting for their answers at most.
const MAX_IN_FLIGHT: usize = 2_048;
