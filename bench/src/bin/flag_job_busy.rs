//! flag-suspicious-ips on a busy site: 1,000,000 requests inside the one-hour window (about
//! 280 requests a second), on PostgreSQL and SQLite, with the plans of its two queries.
//! `flag_job` measures a large table whose window holds few rows; this is the other case
//! (issue 20, "The hourly job, fast on busy sites").
//!
//! Run: `cargo run --release -p iptrack-bench --bin flag_job_busy` (add `-- --help`)
//!
//! The window's rows, made in the database from the row number `g` (deterministic):
//! - every 50th request is `POST /login` from one of 500 addresses (`172.16.x.y`, about 40
//!   each: under the volume threshold, all flagged by the sensitive-path rule);
//! - every 97th (of the rest) `GET /admin/users` from one of 50 addresses (`172.17.0.x`,
//!   about 200 each: both rules);
//! - every 5th (of the rest) from one of 400 busy addresses (`198.18.x.y`, about 480 each:
//!   the volume rule);
//! - the rest from 80,000 addresses (`10.x.y.z`, about 10 each: no flag), paths
//!   `/items/N`.
//!
//! Timestamps spread over the hour before 2026-11-21T10:00:00Z. `request_count` is then
//! filled from those rows by the migration's own SQL (what the request-log job would have
//! kept at ingest). The job (`flag_reading()`: both queries and the incident writes) runs
//! for that hour reading the rows (the row scan, the job before `request_count` and still
//! its fallback) and reading the counts (the job now): once each on a table without
//! incidents (every incident new), then `--runs` more times each (the window flagged
//! again: queries, no writes), alternating. Both must give the same flags.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use chrono::{DateTime, Utc};
use clap::Parser;
use iptrack_bench::{FILL_END_EPOCH, median};
use iptrack_core::{jobs::FlagSuspiciousIps, settings::Settings};
use iptrack_tests::{Backend, TestDb};
use iptrack_worker::jobs::flag_suspicious_ips::{
    Flagged, Reading, counted_sections, counted_sensitive_query, counted_volume_query,
    flag_reading, sensitive_query, volume_query,
};
use sea_orm::{ConnectionTrait, QueryTrait};

#[derive(Debug, Parser)]
struct Args {
    /// Requests inside the window.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Timed re-runs of the job per backend, after the first run.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Only this backend (`postgres` or `sqlite`).
    #[arg(long)]
    only: Option<String>,
}

/// The address and path of row `g`, as SQL (both dialects).
const ADDRESS: &str = "CASE \
    WHEN g % 50 = 0 THEN '172.16.' || (g / 50 % 500 / 250) || '.' || (g / 50 % 250) \
    WHEN g % 97 = 1 THEN '172.17.0.' || (g / 97 % 50) \
    WHEN g % 5 = 0 THEN '198.18.' || (g / 5 % 400 / 200) || '.' || (g / 5 % 200) \
    ELSE '10.' || ((g * 7919) % 80000 / 65536) || '.' || ((g * 7919) % 80000 / 256 % 256) || '.' || ((g * 7919) % 256) END";
const PATH: &str = "CASE WHEN g % 50 = 0 THEN '/login' WHEN g % 97 = 1 THEN '/admin/users' \
    ELSE '/items/' || (g % 1000) END";
const METHOD: &str = "CASE WHEN g % 50 = 0 THEN 'POST' ELSE 'GET' END";

#[tokio::main]
async fn main() {
    let args = Args::parse();
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let name = format!("{backend:?}").to_lowercase();
        if args.only.as_ref().is_some_and(|only| *only != name) {
            continue;
        }
        let db = TestDb::new(backend).await;
        let conn = db.connect().await;
        let started = Instant::now();
        fill(&conn, backend, args.rows).await;
        println!(
            "\n## {backend:?}: {} rows in the window (filled in {:.0} s)",
            args.rows,
            started.elapsed().as_secs_f64()
        );

        let started = Instant::now();
        iptrack_migration::request_count::backfill(&conn)
            .await
            .expect("backfill failed");
        conn.execute_unprepared("ANALYZE").await.unwrap();
        let counts = db.count(&conn, "request_count").await;
        println!(
            "request_count: {counts} rows for the hour (made in {:.0} s)",
            started.elapsed().as_secs_f64()
        );

        let end: DateTime<Utc> = DateTime::from_timestamp(FILL_END_EPOCH, 0).unwrap();
        let job = FlagSuspiciousIps {
            window_start: end - chrono::Duration::hours(1),
            window_end: end,
        };
        let rules = Settings::default().schedules;
        let mut results: Vec<(Reading, f64, Flagged, Vec<f64>)> = Vec::new();
        for reading in [Reading::Rows, Reading::Counts] {
            // A first run on a table without incidents: every incident is new.
            conn.execute_unprepared("DELETE FROM suspicious_ip")
                .await
                .unwrap();
            let started = Instant::now();
            let first = flag_reading(&conn, &rules, &job, reading).await.unwrap();
            results.push((
                reading,
                started.elapsed().as_secs_f64() * 1e3,
                first,
                Vec::new(),
            ));
        }
        for _ in 0..args.runs {
            for (reading, _, first, times) in &mut results {
                let started = Instant::now();
                let again = flag_reading(&conn, &rules, &job, *reading).await.unwrap();
                times.push(started.elapsed().as_secs_f64() * 1e3);
                assert_eq!(again.addresses, first.addresses);
            }
        }
        assert_eq!(
            results[0].2.addresses, results[1].2.addresses,
            "rows and counts must give the same flags"
        );
        println!(
            "| reading | first run (all incidents new) | again: median | min | max | flagged (volume / sensitive) |"
        );
        println!("|---|---|---|---|---|---|");
        for (reading, first_ms, first, times) in &results {
            println!(
                "| {reading:?} | {first_ms:.0} ms | **{:.1} ms** | {:.1} ms | {:.1} ms | {} / {} |",
                median(&mut times.clone()).unwrap(),
                times.iter().copied().fold(f64::MAX, f64::min),
                times.iter().copied().fold(0.0, f64::max),
                first.volume,
                first.sensitive
            );
        }
        let db_backend = conn.get_database_backend();
        let threshold = i64::try_from(rules.flag_threshold).unwrap_or(i64::MAX);
        let sections = counted_sections(&rules.sensitive_paths).unwrap();
        for (name, query) in [
            (
                "volume, rows",
                volume_query(&job, threshold).build(db_backend),
            ),
            (
                "sensitive paths, rows",
                sensitive_query(&job, &rules.sensitive_paths).build(db_backend),
            ),
            (
                "volume, counts",
                counted_volume_query(&job, threshold).build(db_backend),
            ),
            (
                "sensitive paths, counts",
                counted_sensitive_query(&job, &sections).build(db_backend),
            ),
        ] {
            let started = Instant::now();
            conn.query_all_raw(query.clone()).await.unwrap();
            println!(
                "\n### {name}: {:.1} ms alone\n```\n{}\n```",
                started.elapsed().as_secs_f64() * 1e3,
                iptrack_bench::plan(&conn, backend, query).await
            );
        }
    }
}
/// `rows` requests inside the hour before [`FILL_END_EPOCH`], in one statement, then
/// `ANALYZE`.
async fn fill(conn: &sea_orm::DatabaseConnection, backend: Backend, rows: u64) {
    // Spread over the hour's 3,600 seconds, never on its end (exclusive).
    let offset = "(1 + (g * 2654435761) % 3599)";
    let sql = match backend {
        Backend::Postgres => format!(
            "INSERT INTO request_log (ip_address, timestamp, method, path, status) \
             SELECT {ADDRESS}, to_timestamp({FILL_END_EPOCH} - {offset}), {METHOD}, {PATH}, 200 \
             FROM generate_series(1::bigint, {rows}::bigint) AS g"
        ),
        Backend::Sqlite => format!(
            "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {rows}) \
             INSERT INTO request_log (ip_address, timestamp, method, path, status) \
             SELECT {ADDRESS}, strftime('%Y-%m-%dT%H:%M:%S+00:00', {FILL_END_EPOCH} - {offset}, 'unixepoch'), \
                    {METHOD}, {PATH}, 200 FROM s"
        ),
    };
    conn.execute_unprepared(&sql).await.expect("fill failed");
    conn.execute_unprepared("ANALYZE")
        .await
        .expect("analyze failed");
}
