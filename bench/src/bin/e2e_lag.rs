//! End-to-end lag under a steady load: `iptrack-web` and one `iptrack-worker` (release
//! builds, default settings) against PostgreSQL, requests sent at a fixed rate (default
//! 5,000/s for 60 s, each `GET /lag/{i}`); for every request, the time from its response
//! to its row being visible in `request_log`; and whether every request is there.
//!
//! Rows are found by polling `request_log` every 10 ms, so each lag is late by at most one
//! poll (10 ms) and the poll's own query time. The worker's slots commit concurrently, so
//! ids do not become visible in order: each poll also asks again for the ids below the
//! highest seen that have not shown up yet. After the load, one full scan counts what is
//! really missing, and sets apart the requests that never got an answer.
//!
//! Run: `cargo build --release --workspace --bins && cargo run --release -p iptrack-bench --bin e2e_lag`

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use clap::Parser;
use iptrack_bench::process_resident_mib;
use iptrack_tests::{Backend, TestDb, TestRedis, free_port, process::Service};
use sea_orm::{ConnectionTrait, Statement};

#[derive(Debug, Parser)]
struct Args {
    /// Requests per second.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// `postgres` or `sqlite`.
    #[arg(long, default_value = "postgres")]
    backend: String,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let backend = match args.backend.as_str() {
        "sqlite" => Backend::Sqlite,
        _ => Backend::Postgres,
    };
    let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
    let port = free_port();
    let env: HashMap<String, String> = [
        ("DATABASE_URL", db.url.clone()),
        ("REDIS_URL", redis.url.clone()),
        ("IPTRACK_REDIS_PREFIX", redis.prefix.clone()),
        ("IPTRACK_BIND", format!("127.0.0.1:{port}")),
        ("RUST_LOG", "error".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let web = Service::start("iptrack-web", &[], &env);
    let _worker = Service::start("iptrack-worker", &[], &env);
    let base = format!("http://127.0.0.1:{port}");
    iptrack_tests::process::wait_until_listening(&base, Duration::from_secs(30)).await;
    // Let the worker register before the clock starts.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let total = (args.rate * args.seconds) as usize;
    let origin = Instant::now();
    let responded: Arc<Mutex<Vec<Option<Duration>>>> = Arc::new(Mutex::new(vec![None; total]));
    let stored: Arc<Mutex<Vec<Option<Duration>>>> = Arc::new(Mutex::new(vec![None; total]));
    let polling = tokio::spawn(poll_rows(db.connect().await, stored.clone(), origin, total));

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        // Shorter than actix-web's keep-alive (5 s): reusing a connection the server is
        // closing fails the request, a race of the client's, not a fault of the web.
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    // Requests leave on a fixed schedule (1 ms ticks), whatever the responses do: an
    // open-loop load, like real traffic.
    let per_tick = args.rate as f64 / 1000.0;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0usize;
    let mut in_flight = Vec::with_capacity(total);
    let mut rss = Vec::new();
    let mut next_sample = Instant::now();
    while sent < total {
        tick.tick().await;
        let due = ((origin.elapsed().as_secs_f64() * 1000.0 * per_tick) as usize).min(total);
        while sent < due {
            let (client, url, responded) = (
                client.clone(),
                format!("{base}/lag/{sent}"),
                responded.clone(),
            );
            let i = sent;
            in_flight.push(tokio::spawn(async move {
                let status = client.get(url).send().await.map(|r| r.status().as_u16());
                responded.lock().unwrap()[i] = Some(origin.elapsed());
                status
            }));
            sent += 1;
        }
        if Instant::now() >= next_sample {
            rss.push(process_resident_mib(web.pid()));
            next_sample += Duration::from_secs(1);
        }
    }
    let send_time = origin.elapsed();
    let mut failures = Vec::new();
    let mut answered = vec![false; total];
    for (i, request) in in_flight.into_iter().enumerate() {
        // `/lag/{i}` is no route of the reference server: a 404, served and logged like
        // any page. Failed means no answer at all, or a server error.
        match request.await.unwrap() {
            Ok(status) if status < 500 => answered[i] = true,
            Ok(status) => failures.push(format!("request {i}: status {status}")),
            Err(error) => failures.push(format!("request {i}: {error:?}")),
        }
    }
    let all_answered = origin.elapsed();
    let not_seen_by_polling = polling.await.unwrap();
    let present = paths_present(&db.connect().await, total).await;
    let answered_missing = (0..total).filter(|&i| answered[i] && !present[i]).count();
    let unanswered_present = (0..total).filter(|&i| !answered[i] && present[i]).count();

    let responded = responded.lock().unwrap();
    let stored = stored.lock().unwrap();
    let mut lags: Vec<f64> = responded
        .iter()
        .zip(stored.iter())
        .filter_map(|(r, s)| Some(s.as_ref()?.saturating_sub(*r.as_ref()?).as_secs_f64() * 1e3))
        .collect();
    lags.sort_by(f64::total_cmp);
    let pct = |p: f64| lags[((lags.len() - 1) as f64 * p) as usize];
    println!(
        "{backend:?}: {total} requests at {}/s planned, sent in {:.1} s (achieved {:.0}/s), all answered at {:.1} s, {} failed",
        args.rate,
        send_time.as_secs_f64(),
        total as f64 / send_time.as_secs_f64(),
        all_answered.as_secs_f64(),
        failures.len()
    );
    for failure in failures.iter().take(5) {
        println!("  {failure}");
    }
    println!(
        "response → row: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (over {} rows; {not_seen_by_polling} not seen within 30 s of polling)",
        pct(0.50),
        pct(0.99),
        lags.last().unwrap(),
        lags.len()
    );
    println!(
        "answered requests without a row: {answered_missing}; failed requests with a row: {unanswered_present}"
    );
    let max_rss = rss.iter().copied().fold(0.0, f64::max);
    println!("web resident memory during the load: max {max_rss:.1} MiB");
}

/// Ids below the highest seen are asked for again this long; a sequence value can be
/// skipped for good (a rolled-back insert), so they cannot be waited for forever.
const GAP_PATIENCE: Duration = Duration::from_secs(30);

/// Records when each `/lag/{i}` row first shows up; returns how many never did (waiting
/// up to 30 s after the last one expected).
async fn poll_rows(
    conn: sea_orm::DatabaseConnection,
    stored: Arc<Mutex<Vec<Option<Duration>>>>,
    origin: Instant,
    total: usize,
) -> usize {
    let backend = conn.get_database_backend();
    let (mut last_id, mut seen) = (0i64, 0usize);
    // Ids below `last_id` not seen yet, with when they were first missed: another slot's
    // transaction holds them until it commits.
    let mut gaps: BTreeMap<i64, Instant> = BTreeMap::new();
    let mut last_progress = Instant::now();
    while seen < total && last_progress.elapsed() < Duration::from_secs(30) {
        gaps.retain(|_, missed| missed.elapsed() < GAP_PATIENCE);
        let gap_list = gaps
            .keys()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let also_gaps = if gap_list.is_empty() {
            String::new()
        } else {
            format!(" OR id IN ({gap_list})")
        };
        let rows = conn
            .query_all_raw(Statement::from_string(
                backend,
                format!(
                    "SELECT id, path FROM request_log WHERE id > {last_id}{also_gaps} ORDER BY id"
                ),
            ))
            .await
            .unwrap();
        let now = origin.elapsed();
        if !rows.is_empty() {
            last_progress = Instant::now();
        }
        {
            let mut stored = stored.lock().unwrap();
            for row in rows {
                let id = row.try_get::<i64>("", "id").unwrap();
                if id > last_id {
                    let missed = Instant::now();
                    gaps.extend((last_id + 1..id).map(|gap| (gap, missed)));
                    last_id = id;
                } else {
                    gaps.remove(&id);
                }
                let path: String = row.try_get("", "path").unwrap();
                if let Some(i) = path
                    .strip_prefix("/lag/")
                    .and_then(|i| i.parse::<usize>().ok())
                    && i < total
                    && stored[i].is_none()
                {
                    stored[i] = Some(now);
                    seen += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    total - seen
}

/// Which `/lag/{i}` requests have a row, read in one scan after the load.
async fn paths_present(conn: &sea_orm::DatabaseConnection, total: usize) -> Vec<bool> {
    let rows = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT path FROM request_log WHERE path LIKE '/lag/%'",
        ))
        .await
        .unwrap();
    let mut present = vec![false; total];
    for row in rows {
        let path: String = row.try_get("", "path").unwrap();
        if let Some(i) = path
            .strip_prefix("/lag/")
            .and_then(|i| i.parse::<usize>().ok())
            && i < total
        {
            present[i] = true;
        }
    }
    present
}
