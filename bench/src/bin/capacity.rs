//! Capacity: N `iptrack-worker` processes against one PostgreSQL `request_log`, and what
//! each row costs every part of the pipeline. The inputs of docs/SCALING.md's model.
//!
//! For each N (`--workers 1,2,3,4`): a fresh migrated PostgreSQL database and a Redis
//! server of the bench's own (so `INFO commandstats` counts only this run), a queue
//! pre-filled with the same batches, then N worker processes started together. It reports:
//! - rows/s from the first batch committed (read from `log_batch`, so the workers'
//!   start-up is not counted) to the last, plus the time the bench takes to fold the
//!   pending counts left (so every fold is charged), in all and per worker;
//! - CPU seconds per 100,000 rows of the worker processes, of PostgreSQL (every process
//!   named `postgres`: the workers' backends, the WAL writer, the checkpointer) and of Redis,
//!   from `/proc/<pid>/stat`;
//! - Redis commands per batch, by command, and Redis memory per queued event;
//! - bytes per row on disk: `request_log` with its indexes and partitions (and TOAST), and
//!   `request_count`, `log_batch` beside it.
//!
//! The machine has 2 cores, so past N = 2 the workers and PostgreSQL share them: the curve
//! shows where this box saturates, and the CPU costs say what a core buys elsewhere.
//!
//! Run: `cargo build --release -p iptrack-worker -p iptrack-bench --bins && target/release/capacity`

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use chrono::Utc;
use clap::Parser;
use iptrack_bench::{XorShift, fold_the_rest, wait_for_batches};
use iptrack_core::{
    jobs::{LogEvent, REQUEST_LOGS_QUEUE, RequestLogBatch},
    queue::{self, JobQueue},
};
use iptrack_tests::{Backend, PrivateRedis, TestDb, process::Service};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

#[derive(Debug, Parser)]
struct Args {
    /// Worker process counts to run, one run each, in this order.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4")]
    workers: Vec<usize>,
    /// Rows per run.
    #[arg(long, default_value_t = 400_000)]
    rows: usize,
    /// Events per batch (the web's default `IPTRACK_BATCH_MAX_EVENTS`).
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Distinct client addresses in the rows.
    #[arg(long, default_value_t = 10_000)]
    addresses: u64,
    /// `IPTRACK_WORKER_CONCURRENCY` of each worker (its default when left out).
    #[arg(long)]
    concurrency: Option<usize>,
}

/// What one run measured.
#[derive(Debug)]
struct Run {
    workers: usize,
    rows_per_sec: f64,
    worker_cpu: f64,
    postgres_cpu: f64,
    redis_cpu: f64,
    redis_calls: BTreeMap<String, u64>,
    redis_bytes_per_event: f64,
    disk: Vec<(String, i64)>,
    rows: usize,
    batches: usize,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let events = events(args.rows, args.addresses);
    println!(
        "{} rows in batches of {}, {} addresses; IPTRACK_WORKER_CONCURRENCY={}; {} cores",
        args.rows,
        args.batch,
        args.addresses,
        args.concurrency
            .map_or_else(|| "default".to_owned(), |n| n.to_string()),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut runs = Vec::new();
    for &workers in &args.workers {
        let run = run(workers, &events, args.batch, args.concurrency).await;
        print_run(&run);
        runs.push(run);
    }
    println!();
    println!("workers  rows/s   per worker  CPU s per 100k rows: worker  postgres  redis");
    for run in &runs {
        let per_100k = |cpu: f64| cpu / run.rows as f64 * 100_000.0;
        println!(
            "{:>7}  {:>7.0}  {:>10.0}  {:>27.2}  {:>8.2}  {:>5.2}",
            run.workers,
            run.rows_per_sec,
            run.rows_per_sec / run.workers as f64,
            per_100k(run.worker_cpu),
            per_100k(run.postgres_cpu),
            per_100k(run.redis_cpu),
        );
    }
}

fn print_run(run: &Run) {
    println!(
        "\n{} worker(s): {:.0} rows/s; {} batches",
        run.workers, run.rows_per_sec, run.batches
    );
    let total: u64 = run.redis_calls.values().sum();
    println!(
        "  redis: {:.1} commands per batch ({}), {:.0} bytes per queued event",
        total as f64 / run.batches as f64,
        run.redis_calls
            .iter()
            .map(|(cmd, n)| format!("{cmd} {:.2}", *n as f64 / run.batches as f64))
            .collect::<Vec<_>>()
            .join(", "),
        run.redis_bytes_per_event
    );
    for (relation, bytes) in &run.disk {
        println!(
            "  disk: {relation} {bytes} bytes, {:.0} bytes per row",
            *bytes as f64 / run.rows as f64
        );
    }
}

/// Events from `addresses` clients with varied paths and a browser user agent, as the web
/// logs them (the same shape as `ingest_rate`'s).
fn events(rows: usize, addresses: u64) -> Vec<LogEvent> {
    let mut rng = XorShift::new(7);
    let now = Utc::now();
    (0..rows)
        .map(|i| LogEvent {
            ip: IpAddr::V4(Ipv4Addr::from(
                0xCB00_7100 + rng.between(0, addresses - 1) as u32,
            )),
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
        .collect()
}

async fn run(
    workers: usize,
    events: &[LogEvent],
    per_batch: usize,
    concurrency: Option<usize>,
) -> Run {
    let db = TestDb::new(Backend::Postgres).await;
    let redis = PrivateRedis::start();
    let prefix = "capacity".to_owned();
    let mut redis_conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let settings = iptrack_core::Settings::default();
    let mut jobs = JobQueue::new(
        queue::connect(&redis.url()).unwrap(),
        queue::queue_config(&prefix, &settings.worker, REQUEST_LOGS_QUEUE),
    );
    let batches: Vec<RequestLogBatch> = events
        .chunks(per_batch)
        .map(|chunk| RequestLogBatch::new(chunk.to_vec()))
        .collect();
    let memory_before = redis_info_field(&mut redis_conn, "memory", "used_memory").await;
    for chunk in batches.chunks(20) {
        jobs.push(chunk).await.unwrap();
    }
    let memory_after = redis_info_field(&mut redis_conn, "memory", "used_memory").await;
    let redis_pid = redis_info_field(&mut redis_conn, "server", "process_id").await as u32;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut redis_conn)
        .await
        .unwrap();

    let mut env: HashMap<String, String> = [
        ("DATABASE_URL", db.url.clone()),
        ("REDIS_URL", redis.url()),
        ("IPTRACK_REDIS_PREFIX", prefix.clone()),
        // This measures persistence; the DB-IP files in data/ would otherwise switch
        // geolocation on.
        ("IPTRACK_GEO_PROVIDER", "none".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Some(n) = concurrency {
        env.insert("IPTRACK_WORKER_CONCURRENCY".to_owned(), n.to_string());
    }
    let conn = db.connect().await;
    let postgres_before = cpu_by_pid(&postgres_pids());
    let redis_before = cpu_by_pid(&[redis_pid]);
    let processes: Vec<Service> = (0..workers)
        .map(|_| Service::start("iptrack-worker", &[], &env))
        .collect();
    let total = batches.len() as i64;
    let (first, first_at) = wait_for_batches(&db, &conn, total, Duration::from_secs(900)).await;
    let elapsed = first_at.elapsed().as_secs_f64() + fold_the_rest(&conn).await.as_secs_f64();
    // Read before the workers stop: their backends exit with them.
    let worker_cpu = cpu_of(&processes.iter().map(Service::pid).collect::<Vec<_>>());
    let postgres_cpu = cpu_since(&postgres_before, &postgres_pids());
    let redis_cpu = cpu_since(&redis_before, &[redis_pid]);
    let redis_calls = command_stats(&mut redis_conn).await;
    drop(processes);

    let rows: usize = batches.iter().map(|b| b.events.len()).sum();
    assert_eq!(db.count(&conn, "request_log").await as usize, rows);
    let disk = vec![
        (
            "request_log".to_owned(),
            relation_bytes(&conn, "request_log").await,
        ),
        (
            "request_count".to_owned(),
            relation_bytes(&conn, "request_count").await,
        ),
        (
            "log_batch".to_owned(),
            relation_bytes(&conn, "log_batch").await,
        ),
    ];
    let rows_after_first = (total - first) as f64 * per_batch as f64;
    Run {
        workers,
        rows_per_sec: rows_after_first / elapsed,
        worker_cpu,
        postgres_cpu,
        redis_cpu,
        redis_calls,
        redis_bytes_per_event: (memory_after - memory_before) as f64 / rows as f64,
        disk,
        rows,
        batches: batches.len(),
    }
}

/// A numeric field of one `INFO` section.
async fn redis_info_field(
    conn: &mut redis::aio::MultiplexedConnection,
    section: &str,
    field: &str,
) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("INFO {section} has no {field}"))
}

/// Calls per command since the last `CONFIG RESETSTAT` (`cmdstat_evalsha:calls=12,…`).
async fn command_stats(conn: &mut redis::aio::MultiplexedConnection) -> BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|s| s.strip_prefix("calls="))?;
            // The bench's own INFO and CONFIG are not the pipeline's.
            let ours = name == "info" || name == "config";
            (!ours).then_some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// Every running process whose name is `postgres` (the server and its backends).
fn postgres_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "postgres")
        })
        .collect()
}

/// User plus system CPU seconds of each process so far, by pid.
fn cpu_by_pid(pids: &[u32]) -> HashMap<u32, f64> {
    pids.iter()
        .filter_map(|&pid| Some((pid, process_cpu_seconds(pid)?)))
        .collect()
}

fn cpu_of(pids: &[u32]) -> f64 {
    cpu_by_pid(pids).values().sum()
}

/// CPU used since `before` by the processes of `before` still running and by new ones.
fn cpu_since(before: &HashMap<u32, f64>, now: &[u32]) -> f64 {
    cpu_by_pid(now)
        .into_iter()
        .map(|(pid, cpu)| cpu - before.get(&pid).copied().unwrap_or(0.0))
        .sum()
}

/// `utime + stime` from `/proc/<pid>/stat`, in seconds (clock ticks of 1/100 s).
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name (field 2) may hold spaces; the fields after its closing parenthesis do not.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Bytes of `table` with its indexes and TOAST, and of its partitions when partitioned.
async fn relation_bytes(conn: &DatabaseConnection, table: &str) -> i64 {
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            format!(
                "SELECT CAST(pg_total_relation_size('{table}') + COALESCE((SELECT \
                 SUM(pg_total_relation_size(inhrelid)) FROM pg_inherits \
                 WHERE inhparent = '{table}'::regclass), 0) AS BIGINT) AS bytes"
            ),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "bytes").unwrap()
}
