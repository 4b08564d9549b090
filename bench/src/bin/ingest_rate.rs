//! Ingest rate: rows per second from a pre-filled `request-logs` queue into the database by
//! one `iptrack-worker` process (release build, default settings), on PostgreSQL and
//! SQLite; beside it, a raw `COPY` of the same rows into PostgreSQL (`psql \copy` from a
//! CSV file) measured in the same run, both as one statement and batch by batch (a
//! `\copy` and a commit per batch, from as many psql sessions as the worker has slots).
//!
//! The rate is taken from the first batch committed (read from `log_batch`), so the
//! worker's start-up is not counted, to the last, plus the time the bench then takes to
//! fold the pending counts the worker had not folded yet (PostgreSQL,
//! `worker/src/count_fold.rs`): every fold the batches caused is charged to the run, none
//! of the wait for the worker's next fold. The rate up to the last commit alone is
//! printed beside it.
//!
//! On PostgreSQL the worker can write into other layouts of `request_log` in the same run
//! (`--layouts`): the partitioned table the migrations make, the plain table from before
//! migration 000010, and either without migration 000008's `(timestamp, status)` index.
//! Each PostgreSQL run also prints how `request_count`'s upserts went: the updates, the
//! share of them PostgreSQL wrote on the same page (HOT), and the table's bytes per row.
//!
//! Run: `cargo build --release --workspace --bins && cargo run --release -p iptrack-bench --bin ingest_rate`

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    io::Write,
    net::{IpAddr, Ipv4Addr},
    process::Command,
    time::{Duration, Instant},
};

use chrono::Utc;
use clap::Parser;
use iptrack_bench::{XorShift, fold_the_rest, median, wait_for_batches};
use iptrack_core::{
    jobs::{LogEvent, REQUEST_LOGS_QUEUE, RequestLogBatch},
    queue::{self, JobQueue},
};
use iptrack_tests::{Backend, TestDb, TestRedis, process::Service};

#[derive(Debug, Parser)]
struct Args {
    /// Runs per backend.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Rows per run.
    #[arg(long, default_value_t = 200_000)]
    rows: usize,
    /// Events per batch (the web's default `IPTRACK_BATCH_MAX_EVENTS`).
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// `IPTRACK_WORKER_CONCURRENCY` of the worker process (its default when left out).
    #[arg(long)]
    concurrency: Option<usize>,
    /// PostgreSQL layouts of `request_log` the worker writes into, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "partitioned")]
    layouts: Vec<Layout>,
    /// PostgreSQL only (no SQLite runs).
    #[arg(long)]
    postgres_only: bool,
    /// A setting for the worker process, `NAME=VALUE` (repeatable), e.g.
    /// `IPTRACK_WORKER_POLL_MS=10`; the worker's environment is otherwise the bench's own.
    #[arg(long = "worker-env", value_parser = parse_setting)]
    worker_env: Vec<(String, String)>,
}

fn parse_setting(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {text:?}"))
}

/// A layout of PostgreSQL's `request_log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Layout {
    /// What the migrations make: partitioned by day, with a DEFAULT partition.
    Partitioned,
    /// One table (migration 000010 undone).
    Plain,
    /// Partitioned, without the `(timestamp, status)` index of migration 000008.
    PartitionedNoTsStatus,
    /// One table, without the `(timestamp, status)` index.
    PlainNoTsStatus,
}

impl Layout {
    /// Turns the freshly migrated (partitioned) `request_log` into this layout.
    async fn apply(self, conn: &sea_orm::DatabaseConnection) {
        use sea_orm::{ConnectionTrait, TransactionTrait};
        if matches!(self, Self::Plain | Self::PlainNoTsStatus) {
            let txn = conn.begin().await.unwrap();
            iptrack_migration::request_log_partitions::unpartition(&txn)
                .await
                .unwrap();
            txn.commit().await.unwrap();
        }
        if matches!(self, Self::PartitionedNoTsStatus | Self::PlainNoTsStatus) {
            conn.execute_unprepared("DROP INDEX idx_request_log_timestamp_status")
                .await
                .unwrap();
        }
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let batches = batches(args.rows, args.batch);
    println!(
        "{} rows in {} batches of {}; one worker process, IPTRACK_WORKER_CONCURRENCY={}",
        args.rows,
        batches.len(),
        args.batch,
        args.concurrency
            .map_or_else(|| "default".to_owned(), |n| n.to_string())
    );
    println!("target                             runs  rows/s p50  rows/s min  rows/s max");
    let mut results = Vec::new();
    let backends = if args.postgres_only {
        vec![Backend::Postgres]
    } else {
        vec![Backend::Postgres, Backend::Sqlite]
    };
    for backend in backends {
        if backend == Backend::Postgres {
            // Layouts and the raw COPY interleaved run by run, so a change in the
            // machine's load (a checkpoint, a neighbour) hits all of them.
            let mut rates: Vec<Vec<f64>> = vec![Vec::new(); args.layouts.len()];
            let (mut copies, mut batched) = (Vec::new(), Vec::new());
            let sessions = args.concurrency.unwrap_or(8);
            for _ in 0..args.runs {
                for (layout, rates) in args.layouts.iter().zip(&mut rates) {
                    rates.push(worker_run(backend, &batches, &args, Some(*layout)).await);
                }
                copies.push(copy_run(&batches).await);
                batched.push(batched_copy_run(&batches, sessions).await);
                println!(
                    "  raw COPY: {:.0} rows/s; batch by batch: {:.0} rows/s",
                    copies.last().unwrap(),
                    batched.last().unwrap()
                );
            }
            for (layout, rates) in args.layouts.iter().zip(rates) {
                results.push((format!("worker → pg {layout:?}").to_lowercase(), rates));
            }
            results.push(("raw COPY → pg partitioned".to_owned(), copies));
            results.push((
                format!("raw COPY, batch by batch, {sessions} sessions"),
                batched,
            ));
        } else {
            let mut rates: Vec<f64> = Vec::new();
            for _ in 0..args.runs {
                rates.push(worker_run(backend, &batches, &args, None).await);
            }
            results.push((format!("worker → {backend:?}").to_lowercase(), rates));
        }
    }
    for (name, mut rates) in results {
        let (min, max) = (
            rates.iter().copied().fold(f64::MAX, f64::min),
            rates.iter().copied().fold(0.0, f64::max),
        );
        println!(
            "{name:<34} {:>4}  {:>10.0}  {:>10.0}  {:>10.0}",
            rates.len(),
            median(&mut rates).unwrap(),
            min,
            max
        );
    }
}

/// Realistic events: 10,000 client addresses, varied paths, a browser user agent.
fn batches(rows: usize, per_batch: usize) -> Vec<RequestLogBatch> {
    let mut rng = XorShift::new(7);
    let now = Utc::now();
    let events: Vec<LogEvent> = (0..rows)
        .map(|i| LogEvent {
            ip: IpAddr::V4(Ipv4Addr::from(0xCB00_7100 + rng.between(0, 9_999) as u32)),
            timestamp: now,
            method: "GET".into(),
            path: format!("/items/{}/reviews", rng.between(0, 50_000)),
            status: if i % 20 == 0 { 404 } else { 200 },
            duration_us: rng.between(50, 5_000),
            user_agent: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
                .into(),
            user_id: None,
            query_string: None,
        })
        .collect();
    events
        .chunks(per_batch)
        .map(|chunk| RequestLogBatch::new(chunk.to_vec()))
        .collect()
}

/// Fills a fresh queue, starts one worker, returns rows per second.
async fn worker_run(
    backend: Backend,
    batches: &[RequestLogBatch],
    args: &Args,
    layout: Option<Layout>,
) -> f64 {
    let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
    if let Some(layout) = layout {
        layout.apply(&db.connect().await).await;
    }
    let settings = iptrack_tests::settings(&db, &redis);
    let mut jobs = JobQueue::new(
        queue::connect(&redis.url).unwrap(),
        queue::queue_config(&settings.redis.prefix, &settings.worker, REQUEST_LOGS_QUEUE),
    );
    // Fresh batch ids per run: the worker would (rightly) skip batches it has seen.
    let fresh: Vec<RequestLogBatch> = batches
        .iter()
        .map(|batch| RequestLogBatch::new(batch.events.clone()))
        .collect();
    for chunk in fresh.chunks(20) {
        jobs.push(chunk).await.unwrap();
    }
    let mut env: HashMap<String, String> = [
        ("DATABASE_URL", db.url.clone()),
        ("REDIS_URL", redis.url.clone()),
        ("IPTRACK_REDIS_PREFIX", redis.prefix.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Some(n) = args.concurrency {
        env.insert("IPTRACK_WORKER_CONCURRENCY".to_owned(), n.to_string());
    }
    env.extend(args.worker_env.iter().cloned());
    // Geolocation off unless asked for: this measures persistence, and the DB-IP files in
    // data/ would otherwise switch it on for some runs and not others.
    env.insert(
        "IPTRACK_GEO_PROVIDER".to_owned(),
        std::env::var("IPTRACK_GEO_PROVIDER").unwrap_or_else(|_| "none".to_owned()),
    );
    let conn = db.connect().await;
    let _worker = Service::start("iptrack-worker", &[], &env);
    let total = batches.len() as i64;
    let (first, first_at) = wait_for_batches(&db, &conn, total, Duration::from_secs(600)).await;
    let committed = first_at.elapsed().as_secs_f64();
    let elapsed = committed + fold_the_rest(&conn).await.as_secs_f64();
    let rows_per_batch = batches[0].events.len() as f64;
    let rows_after_first = (total - first) as f64 * rows_per_batch;
    println!(
        "  {backend:?} {layout:?}: {:.0} rows/s to the last commit, {:.0} rows/s with its \
         counts folded",
        rows_after_first / committed,
        rows_after_first / elapsed
    );
    assert_eq!(
        db.count(&conn, "request_log").await as usize,
        batches.iter().map(|b| b.events.len()).sum::<usize>()
    );
    if backend == Backend::Postgres {
        print_count_updates(&conn, layout).await;
    }
    rows_after_first / elapsed
}

/// How `request_count`'s updates went (the folds' upserts): the share written as HOT
/// updates (same page, no new index entry) and the table's bytes per row, dead versions
/// included.
async fn print_count_updates(conn: &sea_orm::DatabaseConnection, layout: Option<Layout>) {
    use sea_orm::{ConnectionTrait, Statement};
    // The counters reach the statistics views within a second of each commit.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let row = conn
        .query_one_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT n_tup_upd, n_tup_hot_upd, n_live_tup, \
                    pg_total_relation_size('request_count') AS bytes \
             FROM pg_stat_user_tables WHERE relname = 'request_count'",
        ))
        .await
        .unwrap()
        .unwrap();
    let get = |name: &str| row.try_get::<i64>("", name).unwrap_or_default();
    let (updates, hot, live, bytes) = (
        get("n_tup_upd"),
        get("n_tup_hot_upd"),
        get("n_live_tup"),
        get("bytes"),
    );
    println!(
        "  {layout:?}: request_count {updates} updates, {:.0} % HOT, {live} rows, {} B per row",
        100.0 * hot as f64 / updates.max(1) as f64,
        bytes / live.max(1)
    );
}

/// A batch's rows as the CSV `psql \copy` reads.
fn write_csv(out: &mut impl Write, events: &[LogEvent]) {
    for event in events {
        writeln!(
            out,
            "{},{},{},{},{},{},\"{}\",\"\",\"\"",
            event.ip,
            event.timestamp.to_rfc3339(),
            event.method,
            event.path,
            event.status,
            event.duration_us,
            event.user_agent
        )
        .unwrap();
    }
}

/// The `\copy` meta-command that reads `path` into `request_log`.
fn copy_command(path: &std::path::Path) -> String {
    format!(
        "\\copy request_log (ip_address, timestamp, method, path, status, duration_us, \
         user_agent, user_id, query_string) FROM '{}' WITH (FORMAT csv)",
        path.display()
    )
}

/// `psql \copy` of the same rows into a fresh, migrated PostgreSQL database: one
/// statement, one transaction.
async fn copy_run(batches: &[RequestLogBatch]) -> f64 {
    let db = TestDb::new(Backend::Postgres).await;
    let mut csv = tempfile::NamedTempFile::new().unwrap();
    {
        let mut out = std::io::BufWriter::new(csv.as_file_mut());
        for batch in batches {
            write_csv(&mut out, &batch.events);
        }
    }
    let rows: usize = batches.iter().map(|b| b.events.len()).sum();
    let started = Instant::now();
    let status = Command::new("psql")
        .arg(&db.url)
        .arg("-qc")
        .arg(copy_command(csv.path()))
        .status()
        .expect("cannot run psql");
    let elapsed = started.elapsed().as_secs_f64();
    assert!(status.success(), "psql \\copy failed");
    let conn = db.connect().await;
    assert_eq!(db.count(&conn, "request_log").await as usize, rows);
    rows as f64 / elapsed
}

/// `psql \copy` of the same rows batch by batch, each `\copy` its own transaction, from
/// `sessions` psql processes at once (the worker's slots): what committing each batch by
/// itself costs a bare `COPY`, with nothing else a batch does (claim, counts, rollups).
async fn batched_copy_run(batches: &[RequestLogBatch], sessions: usize) -> f64 {
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let mut scripts: Vec<String> = vec![String::new(); sessions];
    for (i, batch) in batches.iter().enumerate() {
        let path = dir.path().join(format!("batch{i}.csv"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        write_csv(&mut out, &batch.events);
        scripts[i % sessions].push_str(&copy_command(&path));
        scripts[i % sessions].push('\n');
    }
    let files: Vec<std::path::PathBuf> = scripts
        .iter()
        .enumerate()
        .map(|(i, script)| {
            let path = dir.path().join(format!("session{i}.sql"));
            std::fs::write(&path, script).unwrap();
            path
        })
        .collect();
    let rows: usize = batches.iter().map(|b| b.events.len()).sum();
    let started = Instant::now();
    let children: Vec<std::process::Child> = files
        .iter()
        .map(|file| {
            Command::new("psql")
                .arg(&db.url)
                .args(["-q", "-v", "ON_ERROR_STOP=1", "-f"])
                .arg(file)
                .spawn()
                .expect("cannot run psql")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "psql \\copy failed");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let conn = db.connect().await;
    assert_eq!(db.count(&conn, "request_log").await as usize, rows);
    rows as f64 / elapsed
}
