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
use iptrack_bench::median;
use iptrack_entity::query::{
    logs::{self, LogFilter},
    stats,
};
use iptrack_tests::{Backend, TestDb};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

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

const END_EPOCH: i64 = 1_795_255_200; // 2026-11-21T10:00:00Z
const SPREAD_SECS: i64 = 30 * 86_400;

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
        fill(&conn, backend, rows).await;
        println!(
            "\n## {backend:?}: {rows} rows (filled in {:.0} s)\n",
            started.elapsed().as_secs_f64()
        );
        let end: DateTime<Utc> = DateTime::from_timestamp(END_EPOCH, 0).unwrap();
        println!("| query | rows in range | median | min | max |\n|---|---|---|---|---|");
        for hours in [1, 24] {
            let since = end - Duration::hours(hours);
            let mut times = Vec::new();
            let mut total = 0;
            for _ in 0..args.runs {
                let started = Instant::now();
                total = stats::stats(&conn, since, end, 10).await.unwrap().total;
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
        for (name, statement) in stats::statements(db_backend, end - Duration::hours(1), end, 10) {
            println!(
                "\n### plan: {name} (last hour)\n```\n{}\n```",
                plan(&conn, backend, statement).await
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

async fn fill(conn: &DatabaseConnection, backend: Backend, rows: u64) {
    let ip = "CASE WHEN g % 20 = 0 THEN '198.51.100.' || (g % 100 / 20) \
              ELSE '10.' || ((g * 7919) % 256) || '.' || ((g * 104729) % 256) || '.' || ((g * 15485863) % 256) END";
    let path = "CASE WHEN g % 50 = 0 THEN '/login' ELSE '/items/' || (g % 1000) END";
    let status = "CASE WHEN g % 50 = 7 THEN 403 WHEN g % 100 = 9 THEN 429 ELSE 200 END";
    let country = "CASE WHEN g % 10 = 3 THEN '' ELSE chr(CAST(65 + g % 20 AS integer)) || chr(CAST(65 + g % 7 AS integer)) END";
    let offset = format!("((g * 2654435761) % {SPREAD_SECS})");
    let sql = match backend {
        Backend::Postgres => format!(
            "INSERT INTO request_log (ip_address, timestamp, method, path, status, country_code, country) \
             SELECT {ip}, to_timestamp({END_EPOCH} - {offset}), 'GET', {path}, {status}, {country}, {country} \
             FROM generate_series(1::bigint, {rows}::bigint) AS g"
        ),
        Backend::Sqlite => format!(
            "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {rows}) \
             INSERT INTO request_log (ip_address, timestamp, method, path, status, country_code, country) \
             SELECT {ip}, strftime('%Y-%m-%dT%H:%M:%S+00:00', {END_EPOCH} - {offset}, 'unixepoch'), \
                    'GET', {path}, {status}, {country}, {country} FROM s",
            country = country.replace("chr(", "char(")
        ),
    };
    conn.execute_unprepared(&sql).await.expect("fill failed");
    conn.execute_unprepared("ANALYZE")
        .await
        .expect("analyze failed");
}

async fn plan(conn: &DatabaseConnection, backend: Backend, query: Statement) -> String {
    let (prefix, column) = match backend {
        Backend::Postgres => ("EXPLAIN (ANALYZE, BUFFERS) ", None),
        Backend::Sqlite => ("EXPLAIN QUERY PLAN ", Some("detail")),
    };
    let explain = Statement {
        sql: format!("{prefix}{}", query.sql),
        ..query
    };
    let rows = conn.query_all_raw(explain).await.expect("explain failed");
    rows.iter()
        .map(|row| match column {
            Some(name) => row.try_get::<String>("", name).unwrap(),
            None => row.try_get_by_index::<String>(0).unwrap(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
