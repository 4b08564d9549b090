//! Does refusing a wrong admin token take longer the more of its leading characters are
//! right? (issue 10, "Security"). The token is compared with `subtle`'s constant-time
//! equality (`web/src/admin/auth.rs`); this measures the whole HTTP round trip to a real
//! `iptrack-web`, which is what an attacker sees.
//!
//! Run: `cargo run --release -p iptrack-bench --bin token_timing -- --rounds 20000`
//!
//! Each round sends one `GET /api/v1/meta` per wrong token (0, 4, …, 31 leading characters
//! right, and one of the wrong length), in a fresh random order, one after another on one
//! kept-alive connection, and times each. Prints per token the median and the quartiles in
//! microseconds, and the least-squares slope of the medians over the matching characters
//! (ns per character). RELIABILITY.md, "Admin token timing", has the figures.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use clap::Parser;
use iptrack_bench::XorShift;
use iptrack_tests::{TestDb, TestRedis, process::Service};

const TOKEN: &str = "0123456789abcdefghijklmnopqrstuv"; // 32 characters

#[derive(Debug, Parser)]
struct Args {
    /// Rounds; each sends every wrong token once.
    #[arg(long, default_value_t = 20_000)]
    rounds: usize,
}

/// The token with its first `k` characters right and the rest wrong.
fn with_prefix(k: usize) -> String {
    let rest: String = TOKEN[k..].chars().map(|_| 'Z').collect();
    format!("{}{rest}", &TOKEN[..k])
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (db, redis) = (
        TestDb::new(iptrack_tests::Backend::Sqlite).await,
        TestRedis::new(),
    );
    let port = iptrack_tests::free_port();
    let env = [
        ("DATABASE_URL", db.url.clone()),
        ("REDIS_URL", redis.url.clone()),
        ("IPTRACK_REDIS_PREFIX", redis.prefix.clone()),
        ("IPTRACK_BIND", format!("127.0.0.1:{port}")),
        ("IPTRACK_ADMIN_TOKEN", TOKEN.to_owned()),
        // Every request is logged; keep the buffer from filling while nothing reads it.
        ("IPTRACK_LOG_BUFFER", "1000000".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let _web = Service::start("iptrack-web", &[], &env);
    let url = format!("http://127.0.0.1:{port}/api/v1/meta");
    iptrack_tests::process::wait_until_listening(&url, Duration::from_secs(30)).await;

    let mut tokens: Vec<(String, String)> = [0, 4, 8, 12, 16, 20, 24, 28, 31]
        .into_iter()
        .map(|k| (format!("{k:>2} of 32 right"), with_prefix(k)))
        .collect();
    tokens.push(("31 chars (wrong length)".to_owned(), TOKEN[..31].to_owned()));

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()?;
    // Warm up the connection and the server.
    for _ in 0..500 {
        client.get(&url).bearer_auth(&tokens[0].1).send().await?;
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(args.rounds); tokens.len()];
    let mut rng = XorShift::new(0x5eed);
    let mut order: Vec<usize> = (0..tokens.len()).collect();
    for _ in 0..args.rounds {
        for i in (1..order.len()).rev() {
            order.swap(i, rng.between(0, i as u64) as usize);
        }
        for &t in &order {
            let started = Instant::now();
            let response = client.get(&url).bearer_auth(&tokens[t].1).send().await?;
            let status = response.status().as_u16();
            response.bytes().await?;
            samples[t].push(started.elapsed().as_nanos() as f64 / 1000.0);
            assert_eq!(status, 401);
        }
    }

    println!(
        "rounds: {} (each token once per round, random order)",
        args.rounds
    );
    println!(
        "{:<26} {:>10} {:>10} {:>10}",
        "wrong token", "p25 µs", "median µs", "p75 µs"
    );
    let mut medians = Vec::new();
    for ((name, _), values) in tokens.iter().zip(samples.iter_mut()) {
        values.sort_by(f64::total_cmp);
        let median = quantile(values, 0.5);
        println!(
            "{name:<26} {:>10.1} {:>10.1} {:>10.1}",
            quantile(values, 0.25),
            median,
            quantile(values, 0.75)
        );
        medians.push(median);
    }
    // Least squares over the prefix tokens only (not the wrong length).
    let ks = [0.0, 4.0, 8.0, 12.0, 16.0, 20.0, 24.0, 28.0, 31.0];
    let n = ks.len() as f64;
    let (mean_k, mean_t) = (
        ks.iter().sum::<f64>() / n,
        medians[..ks.len()].iter().sum::<f64>() / n,
    );
    let slope = ks
        .iter()
        .zip(&medians)
        .map(|(k, t)| (k - mean_k) * (t - mean_t))
        .sum::<f64>()
        / ks.iter().map(|k| (k - mean_k).powi(2)).sum::<f64>();
    println!(
        "slope of the medians: {:+.2} ns per matching character ({:+.1} ns from 0 to 31 right)",
        slope * 1000.0,
        slope * 31_000.0
    );
    Ok(())
}
