//! Partition pruning on PostgreSQL's partitioned `request_log` (issue 22): fills daily
//! partitions over the 30 days before [`FILL_END_EPOCH`] (as `purge-logs` keeps them),
//! then prints `EXPLAIN (ANALYZE)` of the statements that read `request_log` by time: the
//! flag job's two rules over request_log (volume and sensitive paths, for the hour before
//! the end), `/stats` for 24 hours (buckets by class and the top lists) and `/logs` first
//! pages (bounded to 24 hours, and unbounded), built by the very functions the job and the
//! handlers call. Under each plan: which partitions it reads.
//!
//! Run: `cargo run --release -p iptrack-bench --bin partition_plans` (`-- --rows N`).

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use clap::Parser;
use iptrack_bench::FILL_END_EPOCH;
use iptrack_core::{
    jobs::FlagSuspiciousIps,
    settings::{LogPartition, Settings},
};
use iptrack_entity::query::{
    logs::{self, LogFilter},
    stats,
    summaries::Coverage,
    timeline::Timeline,
};
use iptrack_migration::request_log_partitions::{self as partitions, midnight};
use iptrack_tests::{Backend, TestDb};
use iptrack_worker::jobs::flag_suspicious_ips::{sensitive_query, volume_query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, QueryTrait, TransactionTrait};

#[derive(Debug, Parser)]
struct Args {
    /// Rows spread over the 30 days.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let db = TestDb::new(Backend::Postgres).await;
    let conn = db.connect().await;
    let end: DateTime<Utc> = DateTime::from_timestamp(FILL_END_EPOCH, 0).unwrap();
    let txn = conn.begin().await.unwrap();
    partitions::lock_for_create(&txn).await.unwrap();
    partitions::cover(
        &txn,
        midnight((end - Duration::days(31)).date_naive()),
        midnight(end.date_naive()) + Duration::days(2),
        |day| LogPartition::Day.next_start(day),
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    iptrack_bench::fill_request_log(
        &conn,
        Backend::Postgres,
        args.rows,
        &[
            (
                "path",
                "CASE WHEN g % 50 = 0 THEN '/login' ELSE '/items/' || (g % 1000) END",
            ),
            (
                "status",
                "CASE WHEN g % 50 = 1 THEN 429 WHEN g % 25 = 2 THEN 404 ELSE 200 END",
            ),
        ],
    )
    .await;
    let all = partitions::list(&conn).await.unwrap().len();
    println!(
        "{} rows over 30 days before {end}; {all} daily partitions (and the DEFAULT one, {} rows)",
        args.rows,
        db.count(&conn, partitions::DEFAULT_PARTITION).await
    );

    let backend = DbBackend::Postgres;
    let job = FlagSuspiciousIps {
        window_start: end - Duration::hours(1),
        window_end: end,
    };
    let rules = Settings::default().schedules;
    let day = Timeline::new(end - Duration::hours(24), end, None).unwrap();
    let mut statements: Vec<(String, sea_orm::Statement)> = vec![
        (
            "flag job: volume rule over request_log (1 h)".into(),
            volume_query(&job, 100).build(backend),
        ),
        (
            "flag job: sensitive paths over request_log (1 h)".into(),
            sensitive_query(&job, &rules.sensitive_paths).build(backend),
        ),
    ];
    // The hour summaries as they stand (none here: the bench makes none, so the top lists
    // read request_log, the statements partitioning has to prune).
    let coverage = Coverage::of(&conn, day.since, day.until).await.unwrap();
    for (name, statement) in stats::statements(backend, &day, 10, &coverage) {
        statements.push((format!("/stats 24 h: {name}"), statement));
    }
    let bounded = LogFilter {
        since: Some(end - Duration::hours(24)),
        until: Some(end),
        ..LogFilter::default()
    };
    for (label, filter) in [("24 h", bounded), ("unbounded", LogFilter::default())] {
        let page = logs::statements(&conn, &filter, 50).await.unwrap();
        for (part, statement) in ["bound", "page"].into_iter().zip(page) {
            statements.push((format!("/logs first page, {label}: {part}"), statement));
        }
    }
    for (name, statement) in statements {
        let plan = explain(&conn, statement).await;
        println!("\n### {name}\n```\n{plan}\n```\n{}", summary(&plan, all));
    }
}

/// `EXPLAIN (ANALYZE, COSTS OFF)` of `statement`, one line per plan row.
async fn explain(conn: &DatabaseConnection, statement: sea_orm::Statement) -> String {
    let explain = sea_orm::Statement {
        sql: format!("EXPLAIN (ANALYZE, COSTS OFF) {}", statement.sql),
        ..statement
    };
    conn.query_all_raw(explain)
        .await
        .expect("explain failed")
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).expect("plan row"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Which partitions a plan reads: those it names, and of them those it ran.
fn summary(plan: &str, all: usize) -> String {
    let mut named = BTreeSet::new();
    let mut ran = BTreeSet::new();
    for line in plan.lines() {
        let Some(at) = line.find(" on request_log_") else {
            continue;
        };
        let name: String = line[at + 4..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !line.contains("never executed") {
            ran.insert(name.clone());
        }
        named.insert(name);
    }
    format!(
        "partitions in the plan: {} of {} (+ DEFAULT); executed: {} ({})",
        named.len(),
        all,
        ran.len(),
        ran.into_iter().collect::<Vec<_>>().join(", ")
    )
}
