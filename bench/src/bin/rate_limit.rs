//! What a rate-limit rule costs a route: throughput of `POST /login` behind the
//! `IpTracking` middleware with the rule (one Redis call per request) against the same
//! server without it, and the Redis commands each ruled request sends (target: exactly 1).
//!
//! Run: `cargo run --release -p iptrack-bench --bin rate_limit`
//!
//! Load comes from an in-process reqwest client (`--concurrency` requests in flight), each
//! request from one of 10,000 addresses (through the trusted-proxy header) so the limit
//! never trips and keys stay small. The limiter talks to a private `redis-server` of the
//! bench's own, whose `INFO commandstats` is the round-trip count; the request log goes to
//! the shared Redis (under a throwaway prefix) so its commands are not counted.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::TcpListener,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::{App, HttpResponse, HttpServer, web};
use clap::Parser;
use futures::StreamExt;
use iptrack_bench::median;
use iptrack_core::{
    client_ip::{ClientIpResolver, ProxyHeader},
    queue,
    settings::{RateLimitSettings, Settings, parse_rules},
};
use iptrack_tests::{PrivateRedis, TestRedis};
use iptrack_web::{IpTracking, LogPipeline, RateLimiter, metrics::RateLimitMetrics};

/// Commands the sliding-log script runs inside Redis (commandstats counts them too).
const INSIDE_SCRIPT: [&str; 6] = [
    "time",
    "zremrangebyscore",
    "zcard",
    "zadd",
    "pexpire",
    "zrange",
];

#[derive(Debug, Parser)]
struct Args {
    /// Measured rounds per server (alternating), of `--seconds` each.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let private = PrivateRedis::start();
    let shared = TestRedis::new();
    let mut log_settings = Settings::default();
    log_settings.redis.url = shared.url.as_str().into();
    log_settings.redis.prefix = shared.prefix.clone();
    let limiter = RateLimiter::new(
        &RateLimitSettings {
            rules: parse_rules("login=POST /login anon=10000 user=10000 window=60s")
                .map_err(anyhow::Error::msg)?,
            ..Default::default()
        },
        "bench",
        queue::connect(&private.url())?,
        Arc::new(RateLimitMetrics::default()),
    );
    let ruled = serve(&log_settings, Some(limiter))?;
    let unruled = serve(&log_settings, None)?;
    let client = reqwest::Client::new();
    let sent = AtomicU64::new(0);

    // Warm-up: connections, the script cache.
    load(
        &client,
        ruled,
        Duration::from_secs(1),
        args.concurrency,
        &sent,
    )
    .await;
    load(
        &client,
        unruled,
        Duration::from_secs(1),
        args.concurrency,
        &sent,
    )
    .await;
    let mut conn = redis::Client::open(private.url())?
        .get_multiplexed_async_connection()
        .await?;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await?;

    let (mut with_rule, mut without_rule) = (Vec::new(), Vec::new());
    let ruled_requests = AtomicU64::new(0);
    let ignored = AtomicU64::new(0);
    let round = Duration::from_secs(args.seconds);
    for _ in 0..args.rounds {
        with_rule.push(load(&client, ruled, round, args.concurrency, &ruled_requests).await);
        without_rule.push(load(&client, unruled, round, args.concurrency, &ignored).await);
    }
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await?;
    let mut sent_by_clients = 0;
    let mut evalsha = 0;
    for (command, rest) in stats
        .lines()
        .filter_map(|line| line.strip_prefix("cmdstat_")?.split_once(":calls="))
    {
        let calls: u64 = rest.split(',').next().unwrap_or("0").parse()?;
        if command == "evalsha" {
            evalsha = calls;
        }
        if !INSIDE_SCRIPT.contains(&command) && command != "config|resetstat" {
            sent_by_clients += calls;
        }
    }
    let ruled_requests = ruled_requests.load(Ordering::Relaxed);
    let (with_rule, without_rule) = (
        median(&mut with_rule).unwrap_or(0.0),
        median(&mut without_rule).unwrap_or(0.0),
    );
    println!(
        "POST /login, {} rounds of {} s, {} in flight",
        args.rounds, args.seconds, args.concurrency
    );
    println!("with the rule:    {with_rule:>8.0} req/s (median)");
    println!("without a rule:   {without_rule:>8.0} req/s (median)");
    println!("ratio:            {:>8.3}", with_rule / without_rule);
    println!(
        "Redis: {ruled_requests} ruled requests, {sent_by_clients} commands sent by clients \
         ({evalsha} EVALSHA) = {:.3} per ruled request",
        sent_by_clients as f64 / ruled_requests.max(1) as f64
    );
    Ok(())
}

/// An actix server on a free port with the middleware, and the limiter if given.
fn serve(settings: &Settings, limiter: Option<RateLimiter>) -> anyhow::Result<u16> {
    let pipeline = LogPipeline::to_redis(
        &settings.log_pipeline,
        queue::connect(settings.redis.url.expose())?,
        &settings.redis.prefix,
    );
    let mut tracking = IpTracking::new(
        ClientIpResolver::new(vec!["127.0.0.1/32".parse()?], ProxyHeader::XForwardedFor),
        pipeline.sink(),
    );
    if let Some(limiter) = limiter {
        tracking = tracking.with_rate_limiter(limiter);
    }
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(move || {
        App::new().wrap(tracking.clone()).route(
            "/login",
            web::post().to(|| async { HttpResponse::Unauthorized().body("no\n") }),
        )
    })
    .listen(listener)?
    .disable_signals()
    .run();
    tokio::spawn(server);
    // The pipeline must outlive the bench; it is a few tasks and a buffer.
    std::mem::forget(pipeline);
    Ok(port)
}

/// Sends `POST /login` for `duration` with `concurrency` in flight; returns requests per
/// second and adds the number answered to `answered`.
async fn load(
    client: &reqwest::Client,
    port: u16,
    duration: Duration,
    concurrency: usize,
    answered: &AtomicU64,
) -> f64 {
    let url = format!("http://127.0.0.1:{port}/login");
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let done = futures::stream::iter(0..concurrency)
        .map(|_| async {
            let mut count = 0u64;
            while started.elapsed() < duration {
                let i = next.fetch_add(1, Ordering::Relaxed) % 10_000;
                let ip = format!("10.0.{}.{}", i / 250, i % 250 + 1);
                let response = client
                    .post(&url)
                    .header("x-forwarded-for", ip)
                    .send()
                    .await
                    .expect("request failed");
                assert_ne!(response.status().as_u16(), 429, "the bench's limit tripped");
                count += 1;
            }
            count
        })
        .buffer_unordered(concurrency)
        .fold(0u64, |sum, n| async move { sum + n })
        .await;
    answered.fetch_add(done, Ordering::Relaxed);
    done as f64 / started.elapsed().as_secs_f64()
}
