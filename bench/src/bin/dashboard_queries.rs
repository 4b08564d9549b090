//! The admin API queries behind each dashboard view (issue 21) over a large `request_log`:
//! the overview (`/stats` for 24 h and 7 days, in buckets by status class), the requests
//! view (`/logs` first pages, unfiltered and by class, network and country), the address
//! page (`/addresses/{ip}`) and the countries view (`/countries`), calling the entity
//! query functions the handlers call. Prints median and p95 per query, and the plans.
//!
//! Run (release, as BENCHMARKS.md's figures are):
//! `cargo run --release -p iptrack-bench --bin dashboard_queries` (10,000,000 PostgreSQL
//! rows, 1,000,000 SQLite rows); `-- --help` for sizes, e.g. `-- --postgres-rows 100000
//! --sqlite-rows 100000 --runs 3` for a quick check.
//!
//! The rows (one `INSERT ... SELECT` per backend, no client round trips): 30 days before
//! 2026-11-21T10:00:00Z, a quarter of them in the last 24 hours (a busy day); 5 % from five
//! busy `198.51.100.x` addresses, 10 % from IPv6 addresses in `2001:db8::/32`, the rest
//! spread over `10.0.0.0/8`; 2 % answered 403, 1 % 429, 4 % 404, 2.5 % 301, 0.2 % 500;
//! 2 % `POST /login`, the rest `GET /items/N`; 20 × 7 country codes with a tenth not
//! located; seven user agents. The busy addresses are flagged, and their /24 is blocked.
//!
//! The pre-aggregates are then built as the product builds them: `request_rollup_minute`
//! and `request_rollup_hour` by the backfill SQL (`iptrack_migration::request_rollup::
//! backfill`, the same GROUP BYs the request-log job keeps), the hour summaries by the
//! `request-summaries` job's own function, looking back over the whole fill instead of the
//! scheduled 24 hours. Both are timed.
//!
//! Last, a busy-ingest check: batches of 1,000 requests (minutes and countries spread as
//! a busy site's) written by the request-log job's `ingest_located`, and the rollup upsert
//! of the same batches alone: what the rollup adds to each batch's transaction.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::{collections::HashMap, net::IpAddr, time::Instant};

use chrono::{DateTime, Duration, Utc};
use clap::Parser;
use iptrack_bench::{FILL_END_EPOCH, median};
use iptrack_core::{
    jobs::{LogEvent, RequestLogBatch},
    settings::LogPartition,
};
use iptrack_entity::query::{
    addresses, countries,
    logs::{self, CountryFilter, LogFilter, NetworkFilter},
    stats,
    status_class::StatusClass,
    summaries::Coverage,
    timeline::{self, Timeline},
};
use iptrack_entity::request_log;
use iptrack_migration::request_log_partitions as partitions;
use iptrack_tests::{Backend, TestDb};
use iptrack_worker::{
    geo::Location,
    jobs::{request_logs, request_summaries},
};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, TransactionTrait};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000_000)]
    postgres_rows: u64,
    #[arg(long, default_value_t = 1_000_000)]
    sqlite_rows: u64,
    /// Timed runs of each query per backend.
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Only this backend (`postgres` or `sqlite`); both when absent.
    #[arg(long)]
    only: Option<String>,
}

const BUSY_ADDRESS: &str = "198.51.100.2";

#[tokio::main]
async fn main() {
    let args = Args::parse();
    for (backend, rows) in [
        (Backend::Postgres, args.postgres_rows),
        (Backend::Sqlite, args.sqlite_rows),
    ] {
        let name = match backend {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        };
        if args.only.as_deref().is_some_and(|only| only != name) {
            continue;
        }
        let db = TestDb::new(backend).await;
        let conn = db.connect().await;
        let started = Instant::now();
        fill(&conn, backend, rows).await;
        println!(
            "\n## {backend:?}: {rows} rows (filled in {:.0} s)\n",
            started.elapsed().as_secs_f64()
        );
        let started = Instant::now();
        iptrack_migration::request_rollup::backfill(&conn)
            .await
            .expect("rollup backfill failed");
        let backfill_secs = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let end = DateTime::from_timestamp(FILL_END_EPOCH, 0).unwrap();
        let hours = request_summaries::summarize_due(&conn, end, Duration::days(31))
            .await
            .expect("summaries failed");
        println!(
            "rollup backfill (both levels): {backfill_secs:.1} s; \
             {hours} hour summaries (the job's function): {:.1} s\n",
            started.elapsed().as_secs_f64()
        );
        // The planner's statistics of the new tables, as autovacuum would gather them.
        let analyze = match backend {
            Backend::Postgres => "VACUUM ANALYZE",
            Backend::Sqlite => "ANALYZE",
        };
        conn.execute_unprepared(analyze)
            .await
            .expect("analyze failed");
        run(&conn, backend, args.runs).await;
        busy_ingest(&conn, args.runs).await;
    }
}

/// Times `runs` batches of 1,000 requests through the request-log job's write, then the
/// rollup upsert of the same batches alone (each in a transaction of its own).
async fn busy_ingest(conn: &DatabaseConnection, runs: usize) {
    let end: DateTime<Utc> = DateTime::from_timestamp(FILL_END_EPOCH, 0).unwrap();
    let located: HashMap<IpAddr, Location> = (0..140u32)
        .map(|i| {
            let ip: IpAddr = format!("10.9.{}.{}", i / 256, i % 256).parse().unwrap();
            let code = format!(
                "{}{}",
                char::from(b'A' + (i % 20) as u8),
                char::from(b'A' + (i % 7) as u8)
            );
            (
                ip,
                Location {
                    country: code.clone(),
                    country_code: code,
                    city: String::new(),
                },
            )
        })
        .collect();
    let batch = |run: usize| {
        RequestLogBatch::new(
            (0..1_000u32)
                .map(|i| LogEvent {
                    ip: format!("10.9.{}.{}", (i % 160) / 256, (i % 160) % 256)
                        .parse()
                        .unwrap(),
                    // A batch spans the few seconds before a flush, across a minute edge.
                    timestamp: end - Duration::seconds(30)
                        + Duration::milliseconds(i64::from(i) * 40)
                        + Duration::minutes(run as i64),
                    method: "GET".into(),
                    path: format!("/items/{}", i % 50),
                    status: [200, 200, 200, 404, 403, 429, 301][i as usize % 7],
                    duration_us: 100,
                    user_agent: "bench".into(),
                    user_id: None,
                    query_string: None,
                })
                .collect(),
        )
    };
    let batches: Vec<RequestLogBatch> = (0..runs.max(1)).map(batch).collect();
    let mut whole = Vec::new();
    for batch in &batches {
        let started = Instant::now();
        request_logs::ingest_located(conn, batch, &located)
            .await
            .expect("ingest failed");
        whole.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let mut rollup = Vec::new();
    let mut groups = 0;
    for batch in &batches {
        let started = Instant::now();
        groups = request_logs::add_rollup_alone(conn, &batch.events, &located)
            .await
            .expect("rollup upsert failed");
        rollup.push(started.elapsed().as_secs_f64() * 1e3);
    }
    println!("\n| busy ingest, 1,000-request batches | median | p95 |\n|---|---|---|");
    row_plain("whole batch (rows, counts, rollup)", whole);
    row_plain(
        &format!("rollup upsert alone ({groups} rollup rows)"),
        rollup,
    );
}

fn row_plain(name: &str, mut times: Vec<f64>) {
    let p95 = percentile(&mut times, 0.95);
    println!(
        "| {name} | {:.1} ms | {p95:.1} ms |",
        median(&mut times).unwrap_or(f64::NAN)
    );
}

/// The rows described in the module's comment, then the statistics the planner needs (and
/// on PostgreSQL the visibility map an index-only scan needs, as autovacuum would set it).
async fn fill(conn: &DatabaseConnection, backend: Backend, rows: u64) {
    let end = FILL_END_EPOCH;
    if backend == Backend::Postgres {
        // The daily partitions the purge job keeps (migration 000010 makes only today's
        // week): without them every row would land in the DEFAULT partition.
        let end_at = DateTime::from_timestamp(end, 0).unwrap();
        let txn = conn.begin().await.unwrap();
        partitions::lock_for_create(&txn).await.unwrap();
        partitions::cover(
            &txn,
            partitions::midnight((end_at - Duration::days(31)).date_naive()),
            partitions::midnight(end_at.date_naive()) + Duration::days(2),
            |day| LogPartition::Day.next_start(day),
        )
        .await
        .unwrap();
        txn.commit().await.unwrap();
    }
    let offset = format!(
        "(CASE WHEN g % 4 = 1 THEN (g * 2654435761) % 86400 \
         ELSE (g * 2654435761) % {} END)",
        30 * 86_400
    );
    let hex = |expr: &str| match backend {
        Backend::Postgres => format!("to_hex({expr})"),
        Backend::Sqlite => format!("printf('%x', {expr})"),
    };
    let ip = format!(
        "CASE WHEN g % 20 = 0 THEN '198.51.100.' || (g % 100 / 20) \
         WHEN g % 10 = 3 THEN '2001:db8:' || {} || '::' || {} \
         ELSE '10.' || ((g * 7919) % 256) || '.' || ((g * 104729) % 256) || '.' || ((g * 15485863) % 256) END",
        hex("(g * 7919) % 65535 + 1"),
        hex("(g * 104729) % 65535 + 1"),
    );
    let chr = match backend {
        Backend::Postgres => "chr",
        Backend::Sqlite => "char",
    };
    let country = format!(
        "CASE WHEN g % 10 = 5 THEN '' \
         ELSE {chr}(CAST(65 + g % 20 AS integer)) || {chr}(CAST(65 + g % 7 AS integer)) END"
    );
    let values = format!(
        "{ip}, {{time}}, CASE WHEN g % 50 = 0 THEN 'POST' ELSE 'GET' END, \
         CASE WHEN g % 50 = 0 THEN '/login' ELSE '/items/' || (g % 1000) END, \
         CASE WHEN g % 50 = 7 THEN 403 WHEN g % 100 = 9 THEN 429 WHEN g % 500 = 11 THEN 500 \
              WHEN g % 25 = 13 THEN 404 WHEN g % 40 = 17 THEN 301 ELSE 200 END, \
         100, 'agent-' || (g % 7), '', '', {country}, {country}, ''"
    );
    let columns = "ip_address, timestamp, method, path, status, duration_us, user_agent, \
                   user_id, query_string, country_code, country, city";
    // In time order, as a live site's rows arrive (each batch appends the newest requests):
    // a range of time then lies in neighbouring pages of its partition, as it does in
    // production. Rows inserted in `g` order would scatter every minute over the whole day.
    let sql = match backend {
        Backend::Postgres => format!(
            "INSERT INTO request_log ({columns}) SELECT {} \
             FROM generate_series(1::bigint, {rows}::bigint) AS g ORDER BY 2",
            values.replace("{time}", &format!("to_timestamp({end} - {offset})"))
        ),
        Backend::Sqlite => format!(
            "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {rows}) \
             INSERT INTO request_log ({columns}) SELECT {} FROM s ORDER BY 2",
            values.replace(
                "{time}",
                &format!("strftime('%Y-%m-%dT%H:%M:%S+00:00', {end} - {offset}, 'unixepoch')")
            )
        ),
    };
    conn.execute_unprepared(&sql).await.expect("fill failed");
    let at = format!(
        "'{}'",
        DateTime::from_timestamp(end - 3_600, 0)
            .unwrap()
            .format(match backend {
                Backend::Postgres => "%Y-%m-%d %H:%M:%S+00",
                Backend::Sqlite => "%Y-%m-%dT%H:%M:%S+00:00",
            })
    );
    for busy in 0..5 {
        conn.execute_unprepared(&format!(
            "INSERT INTO suspicious_ip (ip_address, rule, reason, window_start, window_end, \
             flagged_at, first_seen, last_seen, request_count) \
             VALUES ('198.51.100.{busy}', 'volume', 'bench', {at}, {at}, {at}, {at}, {at}, 1)"
        ))
        .await
        .expect("flag insert failed");
    }
    conn.execute_unprepared(&format!(
        "INSERT INTO blocked_ip (ip_address, reason, created_at, expires_at, source) \
         VALUES ('198.51.100.0/24', 'bench', {at}, NULL, 'manual')"
    ))
    .await
    .expect("block insert failed");
    let analyze = match backend {
        Backend::Postgres => "VACUUM ANALYZE",
        Backend::Sqlite => "ANALYZE",
    };
    conn.execute_unprepared(analyze)
        .await
        .expect("analyze failed");
}

/// Times every query `runs` times and prints a table, then the plans.
async fn run(conn: &DatabaseConnection, backend: Backend, runs: usize) {
    let end: DateTime<Utc> = DateTime::from_timestamp(FILL_END_EPOCH, 0).unwrap();
    let day = Timeline::new(end - Duration::hours(24), end, None).unwrap();
    let week = Timeline::new(end - Duration::days(7), end, None).unwrap();
    // The same lengths ending 25 minutes before an hour's end, as "the last 24 hours" is
    // most of the time: a partial hour at both edges, read from rows or taken off the hour
    // rollup, and 60 minutes of rows beside the summaries for the top lists.
    let mid = end - Duration::minutes(25);
    let day_mid = Timeline::new(mid - Duration::hours(24), mid, None).unwrap();
    let week_mid = Timeline::new(mid - Duration::days(7), mid, None).unwrap();
    let filters: Vec<(&str, LogFilter)> = vec![
        ("logs, first page, unfiltered", LogFilter::default()),
        (
            "logs, class=5xx (0.2 %)",
            LogFilter {
                class: Some(StatusClass::Server5xx),
                ..LogFilter::default()
            },
        ),
        (
            "logs, class=429 (1 %)",
            LogFilter {
                class: Some(StatusClass::TooMany429),
                ..LogFilter::default()
            },
        ),
        (
            "logs, network=198.51.100.0/24 (5 %)",
            LogFilter {
                network: Some(NetworkFilter::new("198.51.100.0/24".parse().unwrap())),
                ..LogFilter::default()
            },
        ),
        (
            "logs, network=2001:db8::/32 (10 %)",
            LogFilter {
                network: Some(NetworkFilter::new("2001:db8::/32".parse().unwrap())),
                ..LogFilter::default()
            },
        ),
        (
            "logs, network=192.0.2.0/24 (none)",
            LogFilter {
                network: Some(NetworkFilter::new("192.0.2.0/24".parse().unwrap())),
                ..LogFilter::default()
            },
        ),
        (
            "logs, country=AA",
            LogFilter {
                country: Some(CountryFilter::Code("AA".to_owned())),
                ..LogFilter::default()
            },
        ),
        (
            "logs, country=unknown",
            LogFilter {
                country: Some(CountryFilter::Unknown),
                ..LogFilter::default()
            },
        ),
        (
            "logs, busy address, class=403 (none)",
            LogFilter {
                ip_address: Some(BUSY_ADDRESS.to_owned()),
                class: Some(StatusClass::Forbidden403),
                ..LogFilter::default()
            },
        ),
    ];
    let entries = iptrack_core::blocklist::covering_entries(BUSY_ADDRESS.parse().unwrap());
    let entries = entries.as_slice();

    println!("| query | result | median | p95 |\n|---|---|---|---|");
    for (name, timeline) in [
        ("stats, 24 h", &day),
        ("stats, 24 h ending mid-hour", &day_mid),
        ("stats, 7 days", &week),
        ("stats, 7 days ending mid-hour", &week_mid),
    ] {
        let (times, result) = time(runs, move || async move {
            stats::stats(conn, timeline, 10).await.unwrap().total
        })
        .await;
        row(name, &format!("{result} requests"), times);
    }
    for (name, filter) in &filters {
        let (times, result) = time(runs, move || async move {
            let page = logs::page(conn, filter, None, 100).await.unwrap();
            (page.items.len(), page.next_cursor.is_some())
        })
        .await;
        row(
            name,
            &format!("{} rows{}", result.0, if result.1 { ", more" } else { "" }),
            times,
        );
    }
    for (name, timeline) in [
        ("address page, 24 h", &day),
        ("address page, 7 days", &week),
    ] {
        let (times, result) = time(runs, move || async move {
            addresses::profile(conn, BUSY_ADDRESS, entries, timeline, 10, end)
                .await
                .unwrap()
                .requests
        })
        .await;
        row(name, &format!("{result} requests"), times);
    }
    for (name, timeline) in [
        ("countries, 24 h", &day),
        ("countries, 24 h ending mid-hour", &day_mid),
        ("countries, 7 days", &week),
        ("countries, 7 days ending mid-hour", &week_mid),
    ] {
        let (times, result) = time(runs, move || async move {
            countries::countries(conn, timeline.since, timeline.until)
                .await
                .unwrap()
                .countries
                .len()
        })
        .await;
        row(name, &format!("{result} countries"), times);
    }

    let db_backend = conn.get_database_backend();
    let mut plans: Vec<(String, sea_orm::Statement)> = Vec::new();
    for (range, timeline) in [
        ("24 h", &day),
        ("24 h ending mid-hour", &day_mid),
        ("7 days", &week),
    ] {
        let coverage = Coverage::of(conn, timeline.since, timeline.until)
            .await
            .unwrap();
        println!(
            "{range}: {} whole hours from summaries, {} raw ranges",
            coverage.summarized.len(),
            coverage.raw.len()
        );
        for (name, statement) in stats::statements(db_backend, timeline, 10, &coverage) {
            plans.push((format!("stats {range}: {name}"), statement));
        }
        for (name, statement) in countries::statements(db_backend, timeline.since, timeline.until) {
            plans.push((format!("countries {range}: {name}"), statement));
        }
    }
    for (name, filter) in filters.iter().skip(1) {
        for (step, statement) in ["bound", "matches"]
            .into_iter()
            .zip(logs::statements(conn, filter, 100).await.unwrap())
        {
            plans.push((format!("{name}: {step}"), statement));
        }
    }
    plans.push((
        "address page 7 days: buckets".to_owned(),
        timeline::statement(
            db_backend,
            &week,
            sea_orm::Condition::all().add(request_log::Column::IpAddress.eq(BUSY_ADDRESS)),
        ),
    ));
    for (name, statement) in plans {
        println!(
            "\n### plan: {name}\n```\n{}\n```",
            iptrack_bench::plan(conn, backend, statement).await
        );
    }
}

/// Runs `query` `runs` times (at least once); the times in milliseconds and the last
/// result.
async fn time<T, F, Fut>(runs: usize, mut query: F) -> (Vec<f64>, T)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut times = Vec::with_capacity(runs);
    loop {
        let started = Instant::now();
        let result = query().await;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        if times.len() >= runs {
            return (times, result);
        }
    }
}

fn row(name: &str, result: &str, mut times: Vec<f64>) {
    let p95 = percentile(&mut times, 0.95);
    println!(
        "| {name} | {result} | {:.1} ms | {p95:.1} ms |",
        median(&mut times).unwrap_or(f64::NAN)
    );
}

/// The `q` quantile of `values` (nearest rank), which it sorts.
fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}
