//! What tracking costs the application: the reference server (`iptrack-web`, release
//! build) with the `IpTracking` middleware against the same binary with `--no-tracking`,
//! `GET /` on loopback, load from `wrk`. Redis is up; no worker runs in the first phase,
//! so the figure is the web's own cost. Then the full pipeline: a worker process writing
//! the logs to the database on the same machine. Last, the web's memory with its buffer
//! full (Redis unreachable).
//!
//! Three loads: throughput (`wrk -t1 -c32`, closed loop, as fast as the server answers);
//! `wrk -t1 -c1` (one request at a time, still flat out, so client, server, batcher and
//! Redis fill both cores); and latency at a fixed rate (`--rate`, default 2,000/s, open
//! loop on one connection, each latency counted from when its request was due). Rounds
//! alternate between the two servers so drift hits both alike.
//!
//! Run: `cargo build --release --workspace --bins && cargo run --release -p iptrack-bench --bin overhead`
//! (needs `wrk`: `apt-get install wrk`).

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    io::Write,
    net::TcpStream,
    process::Command,
    time::{Duration, Instant},
};

use clap::Parser;
use iptrack_bench::{median, process_resident_mib, read_response};
use iptrack_tests::{Backend, TestDb, TestRedis, free_port, process::Service};

#[derive(Debug, Parser)]
struct Args {
    /// Alternating rounds per server and load.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per round.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Requests per second of the open-loop latency load.
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
}

/// The loads each server gets.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// `wrk -t1 -c32`: as fast as the server answers (throughput).
    Throughput,
    /// `wrk -t1 -c1`: one request at a time, still as fast as possible. Client, server,
    /// batcher and Redis then fill both cores, so its tail shows CPU contention.
    ClosedLoop,
    /// Requests due at a fixed rate on one connection (latency at a steady, sub-capacity
    /// load, as wrk2 measures it).
    OpenLoop(u64),
}

impl Load {
    fn name(self) -> &'static str {
        match self {
            Load::Throughput => "throughput",
            Load::ClosedLoop => "c=1",
            Load::OpenLoop(_) => "fixed rate",
        }
    }

    fn run(self, url: &str, seconds: u64) -> Round {
        match self {
            Load::Throughput => wrk(url, 32, seconds),
            Load::ClosedLoop => wrk(url, 1, seconds),
            Load::OpenLoop(rate) => open_loop(url, rate, seconds),
        }
    }
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
    let loads = [
        Load::Throughput,
        Load::ClosedLoop,
        Load::OpenLoop(args.rate),
    ];
    let mut table = Vec::new();
    for load in loads {
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for _ in 0..args.rounds {
            without.push(load.run(&untracked.url, args.seconds));
            with.push(load.run(&tracked.url, args.seconds));
        }
        table.push((load.name(), "untracked", without));
        table.push((load.name(), "tracked", with));
    }
    let tracked_rss = tracked.resident_mib();

    println!("phase 2: the full pipeline (a worker writing to PostgreSQL)");
    let _worker = Service::start("iptrack-worker", &[], &base_env);
    for load in loads {
        let rounds = (0..args.rounds)
            .map(|_| load.run(&tracked.url, args.seconds))
            .collect();
        table.push((load.name(), "tracked + worker", rounds));
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
    let added = |load, server| medians[&(load, server)].1 - medians[&(load, "untracked")].1;
    println!();
    println!(
        "throughput ratio tracked / untracked:          {:.3}",
        ratio("tracked")
    );
    println!(
        "throughput ratio tracked + worker / untracked: {:.3}",
        ratio("tracked + worker")
    );
    for load in ["fixed rate", "c=1"] {
        for server in ["tracked", "tracked + worker"] {
            println!(
                "added p99 latency ({load}), {server}: {:.0} µs",
                added(load, server)
            );
        }
    }
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

/// `rate` requests a second for `seconds` on one keep-alive connection. Each latency runs
/// from the moment its request was due, not from when it left: a stall also counts against
/// the requests queued behind it (no coordinated omission).
fn open_loop(url: &str, rate: u64, seconds: u64) -> Round {
    let address = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut stream = TcpStream::connect(&address).expect("cannot connect");
    stream.set_nodelay(true).unwrap();
    let request = format!("GET / HTTP/1.1\r\nHost: {address}\r\n\r\n");
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut latencies = Vec::with_capacity(total as usize);
    let mut buffer = vec![0_u8; 64 * 1024];
    let start = Instant::now();
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        stream.write_all(request.as_bytes()).unwrap();
        let (status, _) = read_response(&mut stream, &mut buffer).unwrap();
        assert_eq!(status, 200, "GET / answered {status}");
        latencies.push(due.elapsed().as_secs_f64() * 1e6);
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Round {
        requests_per_sec: total as f64 / elapsed,
        p50_us: at(0.50),
        p99_us: at(0.99),
    }
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
