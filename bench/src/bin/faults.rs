//! The long versions of the fault scenarios (RELIABILITY.md): the real binaries under an
//! HTTP load while workers are killed, Redis restarts, PostgreSQL stops, a backlog drains,
//! or a geolocation provider misbehaves; then what was sent, answered, stored, duplicated
//! and lost. The same code as the end-to-end tests (`iptrack_tests::faults`), run longer.
//!
//! Run: `cargo build --release --workspace --bins && cargo run --release -p iptrack-bench --bin faults -- <scenario> [--seconds S] [--rate R] [--workers W] [--backend postgres|sqlite]`
//! with `<scenario>` one of `workers-killed`, `redis-restart`, `postgres-stop`, `backlog`,
//! `geo-hang`, `geo-garbage`. Exit status 1 when anything was lost or duplicated.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use iptrack_tests::{
    Backend,
    faults::{self, FaultOptions, GeoFault},
};

#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    scenario: Scenario,
    /// Seconds of load.
    #[arg(long, global = true, default_value_t = 60)]
    seconds: u64,
    /// Requests per second.
    #[arg(long, global = true, default_value_t = 1_000)]
    rate: u64,
    /// Worker processes.
    #[arg(long, global = true, default_value_t = 3)]
    workers: usize,
    /// `postgres` or `sqlite`.
    #[arg(long, global = true, default_value = "postgres")]
    backend: String,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// SIGKILL a random worker every 0.5–2 s (each replaced at once).
    WorkersKilled,
    /// Restart Redis (SIGTERM, append-only file kept) `--restarts` times, each away `--down`
    /// seconds.
    RedisRestart {
        #[arg(long, default_value_t = 3)]
        restarts: usize,
        #[arg(long, default_value_t = 10)]
        down: u64,
    },
    /// Stop PostgreSQL (`pg_ctl stop -m fast`) for `--down` seconds a third into the load.
    PostgresStop {
        #[arg(long, default_value_t = 30)]
        down: u64,
    },
    /// Build a backlog of `--jobs` jobs (one request each) with no worker, then drain it.
    /// `--seconds` is ignored; `--rate` is the load building the backlog.
    Backlog {
        #[arg(long, default_value_t = 50_000)]
        jobs: usize,
    },
    /// A geolocation provider that accepts connections and never answers.
    GeoHang,
    /// A geolocation provider that answers garbage.
    GeoGarbage,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let options = FaultOptions {
        backend: match args.backend.as_str() {
            "sqlite" => Backend::Sqlite,
            _ => Backend::Postgres,
        },
        seconds: args.seconds,
        rate: args.rate,
        workers: args.workers,
        stall: Duration::from_secs(120),
    };
    println!(
        "{:?}, {} s at {}/s, {} worker processes",
        options.backend, options.seconds, options.rate, options.workers
    );
    let started = Instant::now();
    let report = match args.scenario {
        Scenario::WorkersKilled => faults::workers_killed(&options).await,
        Scenario::RedisRestart { restarts, down } => {
            faults::redis_restarted(&options, restarts, Duration::from_secs(down)).await
        }
        Scenario::PostgresStop { down } => {
            faults::postgres_stopped(&options, Duration::from_secs(down)).await
        }
        Scenario::Backlog { jobs } => faults::backlog(&options, jobs).await,
        Scenario::GeoHang => faults::geo_provider_faulty(&options, GeoFault::Hang).await,
        Scenario::GeoGarbage => faults::geo_provider_faulty(&options, GeoFault::Garbage).await,
    };
    println!("{report}");
    println!("(whole run {:.0} s)", started.elapsed().as_secs_f64());
    if !(report.audit.lost == 0 && report.audit.duplicated == 0) {
        std::process::exit(1);
    }
}
