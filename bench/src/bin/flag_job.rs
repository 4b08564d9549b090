//! flag-suspicious-ips over a large `request_log`: 10,000,000 rows in PostgreSQL and
//! 1,000,000 in SQLite, spread over 30 days, and the query plans it gets.
//!
//! Run: `cargo run --release -p iptrack-bench --bin flag_job` (add `-- --help` for sizes)
//!
//! The rows: timestamps spread evenly over the 30 days before 2026-11-21T10:00:00Z; 5 % of
//! traffic from 5 busy addresses (about 140 requests an hour each, over the threshold), the
//! rest from a wide spread of addresses; 2 % of requests to /login, 1 % to /admin/users.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use chrono::{DateTime, Utc};
use clap::Parser;
use iptrack_bench::{FILL_END_EPOCH, median};
use iptrack_core::{jobs::FlagSuspiciousIps, settings::Settings};
use iptrack_tests::{Backend, TestDb};
use iptrack_worker::jobs::flag_suspicious_ips::{flag, sensitive_query, volume_query};
use sea_orm::QueryTrait;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000_000)]
    postgres_rows: u64,
    #[arg(long, default_value_t = 1_000_000)]
    sqlite_rows: u64,
    /// Timed runs of the job per backend.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    for (backend, rows) in [
        (Backend::Postgres, args.postgres_rows),
        (Backend::Sqlite, args.sqlite_rows),
    ] {
        let db = TestDb::new(backend).await;
        let conn = db.connect().await;
        let started = Instant::now();
        iptrack_bench::fill_request_log(
            &conn,
            backend,
            rows,
            &[
                (
                    "path",
                    "CASE WHEN g % 50 = 0 THEN '/login' WHEN g % 100 = 1 THEN '/admin/users' \
                     ELSE '/items/' || (g % 1000) END",
                ),
                ("status", "200"),
            ],
        )
        .await;
        println!(
            "\n## {backend:?}: {rows} rows (filled in {:.0} s)",
            started.elapsed().as_secs_f64()
        );

        let end: DateTime<Utc> = DateTime::from_timestamp(FILL_END_EPOCH, 0).unwrap();
        let job = FlagSuspiciousIps {
            window_start: end - chrono::Duration::hours(1),
            window_end: end,
        };
        let rules = Settings::default().schedules;
        let in_window = db
            .count(
                &conn,
                &format!(
                    "request_log WHERE timestamp >= {} AND timestamp < {}",
                    literal(backend, FILL_END_EPOCH - 3600),
                    literal(backend, FILL_END_EPOCH)
                ),
            )
            .await;
        let mut times = Vec::new();
        let mut found = None;
        for _ in 0..args.runs {
            let started = Instant::now();
            found = Some(flag(&conn, &rules, &job).await.unwrap());
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        println!(
            "rows in the hour window: {in_window}; job median {:.1} ms over {} runs (min {:.1}, max {:.1}); found {:?}",
            median(&mut times.clone()).unwrap(),
            args.runs,
            times.iter().copied().fold(f64::MAX, f64::min),
            times.iter().copied().fold(0.0, f64::max),
            found.unwrap()
        );
        let db_backend = conn.get_database_backend();
        for (name, query) in [
            ("volume", volume_query(&job, 100).build(db_backend)),
            (
                "sensitive paths",
                sensitive_query(&job, &rules.sensitive_paths).build(db_backend),
            ),
        ] {
            println!(
                "\n### plan: {name}\n```\n{}\n```",
                iptrack_bench::plan(&conn, backend, query).await
            );
        }
    }
}

fn literal(backend: Backend, epoch: i64) -> String {
    match backend {
        Backend::Postgres => format!("to_timestamp({epoch})"),
        Backend::Sqlite => format!("strftime('%Y-%m-%dT%H:%M:%S+00:00', {epoch}, 'unixepoch')"),
    }
}
