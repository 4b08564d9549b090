//! `/forward-auth` (issue 19), in one run:
//! 1. decisions per second of `/forward-auth` on loopback (`wrk -t1 -c32`), on a path no
//!    rule covers (`GET /hello`) and on a ruled one (`POST /login`, a rule high enough that
//!    every answer is 200, addresses rotating over 50,000 clients so each is counted in
//!    Redis); iptrack-web with a worker writing the decisions to the database;
//! 2. the latency nginx adds with iptrack's `auth_request` (the shipped
//!    `deploy/nginx/iptrack.conf.template`) against nginx alone, both in front of the same
//!    upstream, at a constant rate (`--rate`, default 2,000 requests/s) over several
//!    keep-alive connections, open loop: each latency runs from when its request was due,
//!    so a stall also counts against the requests queued behind it. Rounds alternate
//!    between the two nginx so drift hits both alike.
//!
//! The load average is printed before and after each phase (the machine is shared).
//!
//! Run: `cargo build --release --workspace --bins && cargo run --release -p iptrack-bench --bin forward_auth`
//! (needs `wrk` and `nginx`: `apt-get install wrk nginx-light`).

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    io::Write,
    net::{SocketAddr, TcpStream},
    process::Command,
    time::{Duration, Instant},
};

use actix_web::{App, HttpResponse, HttpServer, web};
use clap::Parser;
use iptrack_bench::{median, read_response};
use iptrack_tests::{Backend, TestDb, TestRedis, free_port, process::Service, proxies::Proxy};

#[derive(Debug, Parser)]
struct Args {
    /// Seconds per round.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Rounds per configuration.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Requests per second of the constant-rate load.
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    /// Keep-alive connections sharing the constant-rate load.
    #[arg(long, default_value_t = 8)]
    connections: u64,
}

/// The rule of the ruled load: high enough that no client of the bench reaches it.
const RULE: &str = "login=POST /login anon=10000 user=10000 window=60s";

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let (db, redis) = (TestDb::new(Backend::Sqlite).await, TestRedis::new());
    let port = free_port();
    let env: HashMap<String, String> = [
        ("DATABASE_URL", db.url.clone()),
        ("REDIS_URL", redis.url.clone()),
        ("IPTRACK_REDIS_PREFIX", redis.prefix.clone()),
        ("IPTRACK_BIND", format!("127.0.0.1:{port}")),
        ("IPTRACK_TRUSTED_PROXIES", "127.0.0.1".into()),
        ("IPTRACK_RATE_LIMITS", RULE.into()),
        ("RUST_LOG", "error".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let _web = Service::start("iptrack-web", &["--migrate"], &env);
    let iptrack = format!("http://127.0.0.1:{port}");
    iptrack_tests::process::wait_until_listening(&iptrack, Duration::from_secs(30)).await;
    let _worker = Service::start("iptrack-worker", &[], &env);
    let upstream = start_upstream();

    println!(
        "phase 1: decisions per second, wrk -t1 -c32, {} s rounds",
        args.seconds
    );
    println!("  load average before: {}", load_average());
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("ruled.lua");
    std::fs::write(&script, RULED_SCRIPT).unwrap();
    let url = format!("{iptrack}/forward-auth");
    let (mut unruled, mut ruled) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        unruled.push(wrk(
            &url,
            args.seconds,
            &[
                "-H",
                "X-Original-Method: GET",
                "-H",
                "X-Original-URI: /hello?x=1",
                "-H",
                "X-Forwarded-For: 198.51.100.7",
            ],
        ));
        ruled.push(wrk(&url, args.seconds, &["-s", script.to_str().unwrap()]));
    }
    println!("  load average after:  {}", load_average());

    println!(
        "phase 2: {} requests/s over {} connections, GET /hello, {} s rounds",
        args.rate, args.connections, args.seconds
    );
    println!("  load average before: {}", load_average());
    let iptrack_address = SocketAddr::from(([127, 0, 0, 1], port));
    let with_auth = Proxy::nginx(iptrack_address, upstream).await;
    let plain_port = free_port();
    let plain = Proxy::nginx_with_site(plain_port, &plain_site(plain_port, upstream)).await;
    let (mut alone, mut asking) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        alone.push(constant_rate(
            plain.port,
            args.rate,
            args.connections,
            args.seconds,
        ));
        asking.push(constant_rate(
            with_auth.port,
            args.rate,
            args.connections,
            args.seconds,
        ));
    }
    println!("  load average after:  {}", load_average());

    println!();
    println!(
        "/forward-auth decisions per second (median of {} rounds):",
        args.rounds
    );
    println!(
        "  no rule (GET /hello):        {:>8.0}",
        median(&mut unruled).unwrap()
    );
    println!(
        "  rate-limit rule (POST /login): {:>6.0}",
        median(&mut ruled).unwrap()
    );
    println!();
    println!(
        "nginx at {} requests/s, latency in µs (median of {} rounds):",
        args.rate, args.rounds
    );
    println!("  configuration              achieved/s      p50      p99");
    let mut medians = Vec::new();
    for (name, rounds) in [("nginx alone", &alone), ("nginx + iptrack auth", &asking)] {
        let m =
            |f: fn(&Round) -> f64| median(&mut rounds.iter().map(f).collect::<Vec<_>>()).unwrap();
        let (rate, p50, p99) = (m(|r| r.rate), m(|r| r.p50_us), m(|r| r.p99_us));
        println!("  {name:<26} {rate:>10.0} {p50:>8.0} {p99:>8.0}");
        medians.push((p50, p99));
    }
    println!(
        "  added by auth_request:                {:>8.0} {:>8.0}",
        medians[1].0 - medians[0].0,
        medians[1].1 - medians[0].1
    );
    for (name, rounds) in [("nginx alone", &alone), ("nginx + iptrack auth", &asking)] {
        let rounds: Vec<String> = rounds
            .iter()
            .map(|r| format!("{:.0}/{:.0}", r.p50_us, r.p99_us))
            .collect();
        println!("  rounds, p50/p99, {name}: {}", rounds.join(", "));
    }
}

/// wrk's script for the ruled load: `POST /login` from 50,000 rotating client addresses.
const RULED_SCRIPT: &str = r#"
local n = 0
request = function()
  n = n + 1
  local i = n % 50000
  local ip = "198.51." .. (i % 200) .. "." .. (math.floor(i / 200) % 250 + 1)
  return wrk.format("GET", nil, {
    ["X-Original-Method"] = "POST",
    ["X-Original-URI"] = "/login",
    ["X-Forwarded-For"] = ip,
  })
end
"#;

/// One wrk round against `url`; its requests per second. Every answer must be 2xx.
fn wrk(url: &str, seconds: u64, extra: &[&str]) -> f64 {
    let output = Command::new("wrk")
        .args(["-t1", "-c32", &format!("-d{seconds}s")])
        .args(extra)
        .arg(url)
        .output()
        .expect("cannot run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !text.contains("Non-2xx"),
        "some answers were not 2xx:\n{text}"
    );
    text.lines()
        .find_map(|line| line.trim().strip_prefix("Requests/sec:"))
        .map(|value| value.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("wrk printed no rate:\n{text}"))
}

/// The same proxying as the shipped template, without the question to iptrack.
fn plain_site(port: u16, app: SocketAddr) -> String {
    format!(
        "upstream app {{ server {app}; keepalive 32; }}\n\
         server {{\n  listen 127.0.0.1:{port};\n  location / {{\n    proxy_pass http://app;\n\
         \x20   proxy_http_version 1.1;\n    proxy_set_header Connection \"\";\n\
         \x20   proxy_set_header Host $host;\n    proxy_set_header X-Forwarded-For $remote_addr;\n\
         \x20 }}\n}}\n"
    )
}

/// The upstream both nginx proxy to: a small actix-web server on one thread answering
/// every request with 200 and a short body.
fn start_upstream() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            HttpServer::new(|| {
                App::new()
                    .default_service(web::to(|| async { HttpResponse::Ok().body("upstream\n") }))
            })
            .workers(1)
            .listen(listener)
            .unwrap()
            .run()
            .await
            .unwrap();
        });
    });
    address
}

/// One constant-rate round's figures.
#[derive(Debug, Clone, Copy)]
struct Round {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
}

/// `rate` requests a second to `GET /hello` at `port` for `seconds`, spread over
/// `connections` keep-alive connections (one thread each, `rate / connections` each). Each
/// latency runs from when its request was due.
fn constant_rate(port: u16, rate: u64, connections: u64, seconds: u64) -> Round {
    let per_connection = rate / connections;
    let start = Instant::now() + Duration::from_millis(50);
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                stream.set_nodelay(true).unwrap();
                let request = format!("GET /hello HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
                let interval = Duration::from_secs_f64(1.0 / per_connection as f64);
                // Connections start staggered across one interval, so the requests of all
                // of them are evenly spread.
                let offset = interval.mul_f64(c as f64 / connections as f64);
                let total = per_connection * seconds;
                let mut latencies = Vec::with_capacity(total as usize);
                let mut buffer = vec![0_u8; 64 * 1024];
                for i in 0..total {
                    let due = start + offset + interval.mul_f64(i as f64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    stream.write_all(request.as_bytes()).unwrap();
                    let (status, closing) = read_response(&mut stream, &mut buffer).unwrap();
                    assert_eq!(status, 200, "GET /hello answered {status}");
                    if closing {
                        // nginx ends a keep-alive connection after `keepalive_requests`
                        // (1,000): connect again, as a browser would.
                        stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                        stream.set_nodelay(true).unwrap();
                    }
                    latencies.push(due.elapsed().as_secs_f64() * 1e6);
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<f64> = threads
        .into_iter()
        .flat_map(|thread| thread.join().unwrap())
        .collect();
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Round {
        rate: latencies.len() as f64 / elapsed,
        p50_us: at(0.50),
        p99_us: at(0.99),
    }
}

/// `/proc/loadavg`'s first three fields.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}
