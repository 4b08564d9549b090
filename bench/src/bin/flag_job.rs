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
use iptrack_bench::median;
use iptrack_core::{jobs::FlagSuspiciousIps, settings::Settings};
use iptrack_tests::{Backend, TestDb};
use iptrack_worker::jobs::flag_suspicious_ips::{flag, sensitive_query, volume_query};
use sea_orm::{ConnectionTrait, DatabaseConnection, QueryTrait, Statement};

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
            "\n## {backend:?}: {rows} rows (filled in {:.0} s)",
            started.elapsed().as_secs_f64()
        );

        let end: DateTime<Utc> = DateTime::from_timestamp(END_EPOCH, 0).unwrap();
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
                    literal(backend, END_EPOCH - 3600),
                    literal(backend, END_EPOCH)
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
                plan(&conn, backend, query).await
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

async fn fill(conn: &DatabaseConnection, backend: Backend, rows: u64) {
    let ip = "CASE WHEN g % 20 = 0 THEN '198.51.100.' || (g % 100 / 20) \
              ELSE '10.' || ((g * 7919) % 256) || '.' || ((g * 104729) % 256) || '.' || ((g * 15485863) % 256) END";
    let path = "CASE WHEN g % 50 = 0 THEN '/login' WHEN g % 100 = 1 THEN '/admin/users' \
                ELSE '/items/' || (g % 1000) END";
    let offset = format!("((g * 2654435761) % {SPREAD_SECS})");
    let sql = match backend {
        Backend::Postgres => format!(
            "INSERT INTO request_log (ip_address, timestamp, method, path, status) \
             SELECT {ip}, to_timestamp({END_EPOCH} - {offset}), 'GET', {path}, 200 \
             FROM generate_series(1::bigint, {rows}::bigint) AS g"
        ),
        Backend::Sqlite => format!(
            "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {rows}) \
             INSERT INTO request_log (ip_address, timestamp, method, path, status) \
             SELECT {ip}, strftime('%Y-%m-%dT%H:%M:%S+00:00', {END_EPOCH} - {offset}, 'unixepoch'), \
                    'GET', {path}, 200 FROM s"
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
