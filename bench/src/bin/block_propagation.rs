//! From `iptrack block` returning to 403 on every one of two running web instances, over
//! 100 blocks, against PostgreSQL (release binaries).
//!
//! Run: `cargo build --release --workspace --bins && cargo run --release -p iptrack-bench --bin block_propagation`

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    process::Command,
    time::{Duration, Instant},
};

use clap::Parser;
use iptrack_bench::median;
use iptrack_tests::{
    Backend, TestDb, TestRedis, free_port,
    process::{Service, binary, wait_until_listening},
};
use sea_orm::ConnectionTrait;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 100)]
    blocks: usize,
    /// Blocks already in force when the web instances start (each notice then copies a
    /// list this large).
    #[arg(long, default_value_t = 0)]
    preload: u64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let (db, redis) = (TestDb::new(Backend::Postgres).await, TestRedis::new());
    if args.preload > 0 {
        let conn = db.connect().await;
        conn.execute_unprepared(&format!(
            "INSERT INTO blocked_ip (ip_address, reason, created_at) \
             SELECT '10.' || (g / 65536) || '.' || (g / 256 % 256) || '.' || (g % 256), 'preload', now() \
             FROM generate_series(1, {}) AS g",
            args.preload
        ))
        .await
        .expect("preload failed");
    }
    let env_for = |port: u16| -> HashMap<String, String> {
        [
            ("DATABASE_URL", db.url.clone()),
            ("REDIS_URL", redis.url.clone()),
            ("IPTRACK_REDIS_PREFIX", redis.prefix.clone()),
            ("IPTRACK_BIND", format!("127.0.0.1:{port}")),
            ("IPTRACK_TRUSTED_PROXIES", "127.0.0.1".into()),
            // Only the change notices may deliver the blocks.
            ("IPTRACK_BLOCKLIST_RELOAD_SECS", "3600".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    };
    let ports = [free_port(), free_port()];
    let _webs: Vec<Service> = ports
        .iter()
        .map(|port| Service::start("iptrack-web", &[], &env_for(*port)))
        .collect();
    for port in ports {
        wait_until_listening(
            &format!("http://127.0.0.1:{port}/"),
            Duration::from_secs(30),
        )
        .await;
    }
    let client = reqwest::Client::new();
    let cli_env = env_for(ports[0]);
    if args.preload > 0 {
        // Measure only once both instances hold the preloaded list.
        for port in ports {
            loop {
                let response = client
                    .get(format!("http://127.0.0.1:{port}/"))
                    .header("x-forwarded-for", "10.0.0.1")
                    .send()
                    .await
                    .unwrap();
                if response.status().as_u16() == 403 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    let mut lags_ms = Vec::with_capacity(args.blocks);
    for i in 0..args.blocks {
        let ip = format!("198.18.{}.{}", i / 250, i % 250 + 1);
        let status = Command::new(binary("iptrack"))
            .args(["block", &ip])
            .env_clear()
            .envs(&cli_env)
            .output()
            .expect("cannot run iptrack block");
        let returned = Instant::now();
        assert!(status.status.success(), "iptrack block failed");
        let waits = ports.map(|port| {
            let (client, ip) = (client.clone(), ip.clone());
            async move {
                loop {
                    let response = client
                        .get(format!("http://127.0.0.1:{port}/"))
                        .header("x-forwarded-for", &ip)
                        .send()
                        .await
                        .unwrap();
                    if response.status().as_u16() == 403 {
                        return returned.elapsed();
                    }
                    assert!(
                        returned.elapsed() < Duration::from_secs(30),
                        "block never arrived"
                    );
                }
            }
        });
        let [first, second] = waits;
        let (a, b) = tokio::join!(first, second);
        lags_ms.push(a.max(b).as_secs_f64() * 1e3);
    }
    let mut sorted = lags_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let p99 = sorted[((sorted.len() as f64 * 0.99).ceil() as usize).saturating_sub(1)];
    println!(
        "{} blocks over {} existing, 2 web instances: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        args.blocks,
        args.preload,
        median(&mut lags_ms).unwrap(),
        p99,
        sorted.last().unwrap()
    );
}
