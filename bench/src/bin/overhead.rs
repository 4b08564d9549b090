//! What tracking costs the application: the reference server (`iptrack-web`, release
//! build) with the `IpTracking` middleware against the same binary with `--no-tracking`,
//! `GET /` on loopback, load from `wrk`. Redis is up; no worker runs in the first phase,
//! so the figure is the web's own cost. Then the full pipeline: a worker process writing
//! the logs to the database on the same machine. Last, the web's memory with its buffer
//! full (Redis unreachable).
//!
//! Two loads: throughput (`wrk -t1 -c32`, closed loop, as fast as the server answers)
//! and latency (`wrk -t1 -c1`: one request at a time, so p99 is service time, not
//! queueing). Rounds alternate between the two servers so drift hits both alike.
//!
//! Run: `cargo build --release --workspace --bins && cargo run --release -p iptrack-bench --bin overhead`
//! (needs `wrk`: `apt-get install wrk`).

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::{collections::HashMap, process::Command, time::Duration};

use clap::Parser;
use iptrack_bench::{median, process_resident_mib};
use iptrack_tests::{Backend, TestDb, TestRedis, free_port, process::Service};

#[derive(Debug, Parser)]
struct Args {
    /// Alternating rounds per server and load.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per wrk round.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

/// One wrk round's figures.
#[derive(Debug, Clone, Copy, Default)]
struct Round {
    requests_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let (db, redis) = (TestDb::new(Backend::Postgres).await, TestRedis::new());
    let base_env = env(&db, &redis);
    let tracked = Web::start(&base_env, &[]).await;
    let untracked = Web::start(&base_env, &["--no-tracking"]).await;

    println!("phase 1: Redis up, no worker ({} s rounds)", args.seconds);
    let mut table = Vec::new();
    for (load, connections) in [("throughput", 32), ("latency", 1)] {
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for _ in 0..args.rounds {
            without.push(wrk(&untracked.url, connections, args.seconds));
            with.push(wrk(&tracked.url, connections, args.seconds));
        }
        table.push((load, "untracked", without));
        table.push((load, "tracked", with));
    }
    let tracked_rss = tracked.resident_mib();

    println!("phase 2: the full pipeline (a worker writing to PostgreSQL)");
    let _worker = Service::start("iptrack-worker", &[], &base_env);
    for (load, connections) in [("throughput", 32), ("latency", 1)] {
        let rounds = (0..args.rounds)
            .map(|_| wrk(&tracked.url, connections, args.seconds))
            .collect();
        table.push((load, "tracked + worker", rounds));
    }

    println!("phase 3: buffer full (Redis unreachable)");
    let mut unreachable = base_env.clone();
    unreachable.insert(
        "REDIS_URL".into(),
        format!("redis://127.0.0.1:{}", free_port()),
    );
    let cut_off = Web::start(&unreachable, &[]).await;
    let idle_rss = cut_off.resident_mib();
    wrk(&cut_off.url, 32, args.seconds);
    let full_rss = cut_off.resident_mib();
    let metrics = reqwest::get(format!("{}metrics", cut_off.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    println!();
    println!(
        "load        server             req/s p50   p50 µs   p99 µs  (medians of {} rounds)",
        args.rounds
    );
    let mut medians = HashMap::new();
    for (load, server, rounds) in &table {
        let m =
            |f: fn(&Round) -> f64| median(&mut rounds.iter().map(f).collect::<Vec<_>>()).unwrap();
        let (rps, p50, p99) = (m(|r| r.requests_per_sec), m(|r| r.p50_us), m(|r| r.p99_us));
        medians.insert((*load, *server), (rps, p99));
        println!("{load:<11} {server:<17} {rps:>10.0} {p50:>8.0} {p99:>8.0}");
    }
    let ratio =
        |server| medians[&("throughput", server)].0 / medians[&("throughput", "untracked")].0;
    let added = |server| medians[&("latency", server)].1 - medians[&("latency", "untracked")].1;
    println!();
    println!(
        "throughput ratio tracked / untracked:          {:.3}",
        ratio("tracked")
    );
    println!(
        "throughput ratio tracked + worker / untracked: {:.3}",
        ratio("tracked + worker")
    );
    println!(
        "added p99 latency (c=1), tracked:              {:.0} µs",
        added("tracked")
    );
    println!(
        "added p99 latency (c=1), tracked + worker:     {:.0} µs",
        added("tracked + worker")
    );
    println!("web resident memory after the phase-1 load:    {tracked_rss:.1} MiB");
    println!("web resident memory, idle / buffer full:       {idle_rss:.1} / {full_rss:.1} MiB");
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("iptrack_log_events"))
    {
        println!("  {line}");
    }
}

fn env(db: &TestDb, redis: &TestRedis) -> HashMap<String, String> {
    [
        ("DATABASE_URL", db.url.clone()),
        ("REDIS_URL", redis.url.clone()),
        ("IPTRACK_REDIS_PREFIX", redis.prefix.clone()),
        ("RUST_LOG", "error".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A running `iptrack-web` on a port of its own.
struct Web {
    service: Service,
    url: String,
}

impl Web {
    async fn start(env: &HashMap<String, String>, args: &[&str]) -> Self {
        let port = free_port();
        let mut env = env.clone();
        env.insert("IPTRACK_BIND".into(), format!("127.0.0.1:{port}"));
        let service = Service::start("iptrack-web", args, &env);
        let url = format!("http://127.0.0.1:{port}/");
        iptrack_tests::process::wait_until_listening(&url, Duration::from_secs(30)).await;
        Self { service, url }
    }

    fn resident_mib(&self) -> f64 {
        process_resident_mib(self.service.pid())
    }
}

/// One wrk round against `url`.
fn wrk(url: &str, connections: u32, seconds: u64) -> Round {
    let output = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            url,
        ])
        .output()
        .expect("cannot run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut round = Round::default();
    for line in text.lines().map(str::trim) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["Requests/sec:", value] => round.requests_per_sec = value.parse().unwrap(),
            ["50%", value] => round.p50_us = micros(value),
            ["99%", value] => round.p99_us = micros(value),
            _ => {}
        }
    }
    assert!(round.requests_per_sec > 0.0, "wrk printed no rate:\n{text}");
    assert!(
        !text.contains("Non-2xx"),
        "some responses were not 2xx:\n{text}"
    );
    round
}

/// wrk's durations: `310.00us`, `1.20ms`, `2.00s`.
fn micros(value: &str) -> f64 {
    let (number, scale) = if let Some(v) = value.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = value.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = value.strip_suffix('s') {
        (v, 1e6)
    } else {
        panic!("unknown wrk duration {value}")
    };
    number.parse::<f64>().unwrap() * scale
}
