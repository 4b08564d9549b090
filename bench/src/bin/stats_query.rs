//! The admin API's read queries over a large `request_log`: `GET /api/v1/stats` for the
//! last hour and the last 24 hours (what a dashboard refresh costs), and the first page of
//! `GET /api/v1/logs` unfiltered and for one address, with the plans each statement gets.
//!
//! Run: `cargo run --release -p iptrack-bench --bin stats_query` (add `-- --help` for sizes)
//!
//! The rows: timestamps spread evenly over the 30 days before 2026-11-21T10:00:00Z (about
//! 14,000 an hour at 10 M rows), 5 % from 5 busy addresses, 2 % answered 403, 1 % 429,
//! countries from a set of 20 with a tenth not located yet.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use clap::Parser;
use iptrack_bench::{FILL_END_EPOCH, median};
use iptrack_entity::query::{
    logs::{self, LogFilter},
    stats,
    summaries::Coverage,
    timeline::Timeline,
};
use iptrack_tests::{Backend, TestDb};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000_000)]
    postgres_rows: u64,
    #[arg(long, default_value_t = 1_000_000)]
    sqlite_rows: u64,
    /// Timed runs of each query per backend.
    #[arg(long, default_value_t = 7)]
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
        let country = "CASE WHEN g % 10 = 3 THEN '' \
                       ELSE chr(CAST(65 + g % 20 AS integer)) || chr(CAST(65 + g % 7 AS integer)) END";
        iptrack_bench::fill_request_log(
            &conn,
            backend,
            rows,
            &[
                (
                    "path",
                    "CASE WHEN g % 50 = 0 THEN '/login' ELSE '/items/' || (g % 1000) END",
                ),
                (
                    "status",
                    "CASE WHEN g % 50 = 7 THEN 403 WHEN g % 100 = 9 THEN 429 ELSE 200 END",
                ),
                ("country_code", country),
                ("country", country),
            ],
        )
        .await;
        // `/stats` reads the rollup the request-log job keeps; rows filled by SQL are
        // counted into it by the migration's backfill.
        iptrack_migration::request_rollup::backfill(&conn)
            .await
            .expect("rollup backfill failed");
        println!(
            "\n## {backend:?}: {rows} rows (filled in {:.0} s)\n",
            started.elapsed().as_secs_f64()
        );
        let end: DateTime<Utc> = DateTime::from_timestamp(FILL_END_EPOCH, 0).unwrap();
        println!("| query | rows in range | median | min | max |\n|---|---|---|---|---|");
        for hours in [1, 24] {
            let since = end - Duration::hours(hours);
            let mut times = Vec::new();
            let mut total = 0;
            for _ in 0..args.runs {
                let started = Instant::now();
                let timeline = Timeline::new(since, end, None).unwrap();
                total = stats::stats(&conn, &timeline, 10).await.unwrap().total;
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
            row(&format!("stats, last {hours} h"), total, &mut times);
        }
        for (name, filter) in [
            ("logs, first page of 100", LogFilter::default()),
            (
                "logs, one busy address, 100",
                LogFilter {
                    ip_address: Some("198.51.100.2".to_owned()),
                    ..LogFilter::default()
                },
            ),
        ] {
            let mut times = Vec::new();
            let mut count = 0;
            for _ in 0..args.runs {
                let started = Instant::now();
                count = logs::page(&conn, &filter, None, 100)
                    .await
                    .unwrap()
                    .items
                    .len() as i64;
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
            row(name, count, &mut times);
        }
        let db_backend = conn.get_database_backend();
        let last_hour = Timeline::new(end - Duration::hours(1), end, None).unwrap();
        let coverage = Coverage::of(&conn, last_hour.since, last_hour.until)
            .await
            .unwrap();
        for (name, statement) in stats::statements(db_backend, &last_hour, 10, &coverage) {
            println!(
                "\n### plan: {name} (last hour)\n```\n{}\n```",
                iptrack_bench::plan(&conn, backend, statement).await
            );
        }
    }
}

fn row(name: &str, rows: i64, times: &mut [f64]) {
    let min = times.iter().copied().fold(f64::MAX, f64::min);
    let max = times.iter().copied().fold(0.0, f64::max);
    println!(
        "| {name} | {rows} | {:.1} ms | {min:.1} ms | {max:.1} ms |",
        median(times).unwrap()
    );
}
