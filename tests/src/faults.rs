//! The fault scenarios of RELIABILITY.md, each run against the real binaries under an HTTP
//! load: workers killed, Redis restarted, PostgreSQL stopped, a backlog drained, a
//! geolocation provider that hangs or talks garbage.
//!
//! One implementation, two sizes: the end-to-end tests (`tests/tests/e2e/faults.rs`) run
//! each briefly and assert on the [`FaultReport`]; `bench/src/bin/faults.rs` runs them long
//! and prints it.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use redis::AsyncCommands;
use std::io::{Read, Write};

use crate::{
    Backend, PrivateRedis, TestDb, TestRedis, free_port,
    load::{Audit, Load, LoadOptions, Sent, wait_and_audit},
    postgres_server::PrivatePostgres,
    process::{Service, wait_until_listening},
};

/// What every scenario takes.
#[derive(Debug, Clone)]
pub struct FaultOptions {
    pub backend: Backend,
    /// Seconds of load.
    pub seconds: u64,
    /// Requests per second.
    pub rate: u64,
    /// Worker processes.
    pub workers: usize,
    /// How long to wait for rows once no new one arrives, before calling the rest lost.
    pub stall: Duration,
}

impl FaultOptions {
    /// The short version the end-to-end tests run.
    pub fn short(backend: Backend) -> Self {
        Self {
            backend,
            seconds: 8,
            rate: 200,
            workers: 2,
            stall: Duration::from_secs(45),
        }
    }
}

/// What a scenario did and what reached the database.
#[derive(Debug, Clone)]
pub struct FaultReport {
    pub scenario: &'static str,
    pub audit: Audit,
    /// From the end of the load (the backlog: from the workers' start) until every
    /// answered request had its row.
    pub drain: Duration,
    /// Scenario-specific figures, in order (kills, restarts, job failures, ...).
    pub figures: Vec<(&'static str, String)>,
}

impl FaultReport {
    pub fn figure(&self, name: &str) -> Option<&str> {
        self.figures
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A figure as a number. Panics (failing the test) when the scenario reported no figure
    /// of that name or a figure that is no number: read as 0, a misspelt name would make
    /// `dead_jobs == 0` and the like pass without checking anything.
    pub fn number(&self, name: &str) -> u64 {
        let Some(value) = self.figure(name) else {
            let names: Vec<&str> = self.figures.iter().map(|(n, _)| *n).collect();
            panic!(
                "{}: no figure named {name:?} (it has {names:?})",
                self.scenario
            );
        };
        value.parse().unwrap_or_else(|_| {
            panic!(
                "{}: figure {name:?} is {value:?}, not a number",
                self.scenario
            )
        })
    }
}

impl std::fmt::Display for FaultReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}; all stored {:.1} s after the load",
            self.scenario,
            self.audit,
            self.drain.as_secs_f64()
        )?;
        for (name, value) in &self.figures {
            write!(f, "; {name} {value}")?;
        }
        Ok(())
    }
}

/// Environment of one scenario's iptrack processes.
fn env(db_url: &str, redis_url: &str, prefix: &str, port: u16) -> HashMap<String, String> {
    [
        ("DATABASE_URL", db_url.to_owned()),
        ("REDIS_URL", redis_url.to_owned()),
        ("IPTRACK_REDIS_PREFIX", prefix.to_owned()),
        ("IPTRACK_BIND", format!("127.0.0.1:{port}")),
        // The load claims client addresses through X-Forwarded-For.
        ("IPTRACK_TRUSTED_PROXIES", "127.0.0.1".into()),
        // Orphaned jobs back within 6 s (see the harness's `settings`).
        ("IPTRACK_WORKER_HEARTBEAT_SECS", "2".into()),
        ("IPTRACK_WORKER_MISSED_HEARTBEATS", "3".into()),
        ("IPTRACK_GEO_PROVIDER", "none".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn set(env: &mut HashMap<String, String>, key: &str, value: &str) {
    env.insert(key.to_owned(), value.to_owned());
}

/// Addresses from documentation ranges, distinct per request (never geolocated).
pub fn documentation_address(i: usize) -> String {
    if i.is_multiple_of(2) {
        format!("198.51.{}.{}", 100 + i / 250 % 100, i % 250 + 1)
    } else {
        format!("2001:db8::{i:x}")
    }
}

/// 500 public addresses, so a geolocation provider is asked about them.
pub fn public_address(i: usize) -> String {
    format!("23.{}.{}.7", 40 + i % 500 / 250, i % 250 + 1)
}

fn load(port: u16, tag: &str, rate: u64, limit: Option<usize>) -> Load {
    Load::start(LoadOptions {
        base: format!("http://127.0.0.1:{port}"),
        tag: tag.to_owned(),
        rate,
        limit,
        address: Some(documentation_address),
    })
}

async fn started_web(env: &HashMap<String, String>, port: u16) -> Service {
    let web = Service::start("iptrack-web", &[], env);
    wait_until_listening(
        &format!("http://127.0.0.1:{port}/"),
        Duration::from_secs(30),
    )
    .await;
    web
}

fn workers(env: &HashMap<String, String>, count: usize) -> Vec<Service> {
    (0..count)
        .map(|_| Service::start("iptrack-worker", &[], env))
        .collect()
}

/// A counter from the workers' metrics hash (`job|{queue}|failures`, ...).
async fn job_metric(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    field: &str,
) -> u64 {
    conn.hget::<_, _, Option<u64>>(iptrack_core::job_metrics::metrics_key(prefix), field)
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
}

async fn finish(
    scenario: &'static str,
    db: &TestDb,
    sent: Sent,
    options: &FaultOptions,
    figures: Vec<(&'static str, String)>,
) -> FaultReport {
    let conn = db.connect().await;
    let (audit, drain) = wait_and_audit(&conn, &sent, options.stall, Duration::from_secs(2)).await;
    FaultReport {
        scenario,
        audit,
        drain,
        figures,
    }
}

/// Worker processes killed with SIGKILL at random moments (every 0.5–2 s) during the load,
/// each replaced at once, so `workers` keep running. Small batches keep many jobs in flight.
pub async fn workers_killed(options: &FaultOptions) -> FaultReport {
    let (db, redis) = (TestDb::new(options.backend).await, TestRedis::new());
    let port = free_port();
    let mut env = env(&db.url, &redis.url, &redis.prefix, port);
    set(&mut env, "IPTRACK_BATCH_MAX_EVENTS", "20");
    set(&mut env, "IPTRACK_BATCH_MAX_WAIT_MS", "20");
    let mut running = workers(&env, options.workers);
    let _web = started_web(&env, port).await;
    let mut conn = redis.connection().await;

    let load = load(port, "killed", options.rate, None);
    let end = Instant::now() + Duration::from_secs(options.seconds);
    let mut random = seed();
    let (mut kills, mut kills_holding_jobs, mut jobs_held) = (0u64, 0u64, 0u64);
    loop {
        let pause = Duration::from_millis(500 + next(&mut random) % 1500);
        if Instant::now() + pause >= end {
            break;
        }
        tokio::time::sleep(pause).await;
        // The moment is random; the victim is the first worker seen holding jobs within
        // half a second (jobs are in flight for milliseconds), else a random one.
        let mut victim = (next(&mut random) % running.len() as u64) as usize;
        let mut held = 0;
        let aiming = Instant::now();
        'aim: while aiming.elapsed() < Duration::from_millis(500) {
            for (i, worker) in running.iter().enumerate() {
                let n = in_flight_of(&mut conn, &redis.prefix, worker.pid()).await;
                if n > 0 {
                    (victim, held) = (i, n);
                    break 'aim;
                }
            }
        }
        running[victim].kill();
        running[victim] = Service::start("iptrack-worker", &[], &env);
        kills += 1;
        jobs_held += held;
        kills_holding_jobs += u64::from(held > 0);
    }
    tokio::time::sleep(end.saturating_duration_since(Instant::now())).await;
    let sent = load.finish().await;
    let report = finish(
        "workers killed",
        &db,
        sent,
        options,
        vec![
            ("kills", kills.to_string()),
            ("kills_holding_jobs", kills_holding_jobs.to_string()),
            ("jobs_held_by_killed_workers", jobs_held.to_string()),
        ],
    )
    .await;
    drop(running);
    report
}

/// Jobs in the in-flight sets of the worker process `pid`.
async fn in_flight_of(conn: &mut redis::aio::MultiplexedConnection, prefix: &str, pid: u32) -> u64 {
    let pattern = format!("{prefix}:request-logs:inflight:*-{pid}-*");
    let keys: Vec<String> = conn.keys(pattern).await.unwrap_or_default();
    let mut held = 0;
    for key in keys {
        held += conn.scard::<_, u64>(&key).await.unwrap_or(0);
    }
    held
}

/// Redis (append-only persistence, like docker-compose.yml) restarted `restarts` times
/// during the load: stopped with SIGTERM as `docker compose restart` does, away for
/// `down`, started again on the same port.
pub async fn redis_restarted(
    options: &FaultOptions,
    restarts: usize,
    down: Duration,
) -> FaultReport {
    let mut private = PrivateRedis::start_persistent();
    let db = TestDb::new(options.backend).await;
    let port = free_port();
    let env = env(&db.url, &private.url(), "iptrack", port);
    let running = workers(&env, options.workers);
    let _web = started_web(&env, port).await;

    let load = load(port, "redis", options.rate, None);
    let started = Instant::now();
    let total = Duration::from_secs(options.seconds);
    // Outages spread evenly over the load, none at its very start or end.
    let (mut done, mut down_total) = (0usize, Duration::ZERO);
    for k in 1..=restarts {
        let at = total * k as u32 / (restarts as u32 + 1);
        tokio::time::sleep(at.saturating_sub(started.elapsed())).await;
        private.terminate();
        let outage = Instant::now();
        tokio::time::sleep(down).await;
        private.restart();
        down_total += outage.elapsed();
        done += 1;
    }
    tokio::time::sleep(total.saturating_sub(started.elapsed())).await;
    let sent = load.finish().await;
    let report = finish(
        "redis restarted",
        &db,
        sent,
        options,
        vec![
            ("restarts", done.to_string()),
            ("redis_down_s", format!("{:.1}", down_total.as_secs_f64())),
        ],
    )
    .await;
    drop(running);
    report
}

/// A PostgreSQL server of the scenario's own stopped (`pg_ctl stop -m fast`) for `down`
/// in the middle of the load, then started again on the same port.
pub async fn postgres_stopped(options: &FaultOptions, down: Duration) -> FaultReport {
    let mut server = PrivatePostgres::start();
    let db = TestDb::on_private_postgres(&server.url()).await;
    let redis = TestRedis::new();
    let port = free_port();
    let env = env(&db.url, &redis.url, &redis.prefix, port);
    let running = workers(&env, options.workers);
    let _web = started_web(&env, port).await;
    let mut conn = redis.connection().await;

    let load = load(port, "pgstop", options.rate, None);
    let started = Instant::now();
    let total = Duration::from_secs(options.seconds);
    tokio::time::sleep(total / 3).await;
    server.stop();
    let outage = Instant::now();
    tokio::time::sleep(down).await;
    server.start_again();
    let down_for = outage.elapsed();
    tokio::time::sleep(total.saturating_sub(started.elapsed())).await;
    let sent = load.finish().await;
    let mut report = finish(
        "postgres stopped",
        &db,
        sent,
        options,
        vec![("postgres_down_s", format!("{:.1}", down_for.as_secs_f64()))],
    )
    .await;
    let failures = job_metric(&mut conn, &redis.prefix, "job|request-logs|failures").await;
    // Jobs that waited out the outage on the connection pool instead of failing: those
    // that took longer than 2.5 s (histogram buckets above index 8; see DURATION_BUCKETS).
    let mut delayed = job_metric(&mut conn, &redis.prefix, "job|request-logs|bucket|inf").await;
    for bucket in 9..iptrack_core::job_metrics::DURATION_BUCKETS.len() {
        delayed += job_metric(
            &mut conn,
            &redis.prefix,
            &format!("job|request-logs|bucket|{bucket}"),
        )
        .await;
    }
    let dead: u64 = conn
        .scard(format!("{}:request-logs:dead", redis.prefix))
        .await
        .unwrap_or(0);
    report
        .figures
        .push(("failed_job_attempts", failures.to_string()));
    report
        .figures
        .push(("jobs_delayed_over_2_5s", delayed.to_string()));
    report.figures.push(("dead_jobs", dead.to_string()));
    drop(running);
    report
}

/// A backlog of `jobs` request-log jobs built while no worker runs (one event per batch,
/// so one job per request), then `workers` worker processes started: all must drain.
pub async fn backlog(options: &FaultOptions, jobs: usize) -> FaultReport {
    let (db, redis) = (TestDb::new(options.backend).await, TestRedis::new());
    let port = free_port();
    let mut env = env(&db.url, &redis.url, &redis.prefix, port);
    set(&mut env, "IPTRACK_BATCH_MAX_EVENTS", "1");
    set(&mut env, "IPTRACK_WORKER_CONCURRENCY", "4");
    let _web = started_web(&env, port).await;
    let mut conn = redis.connection().await;
    let settings = crate::settings(&db, &redis);
    let active = iptrack_core::queue::queue_config(
        &settings.redis.prefix,
        &settings.worker,
        iptrack_core::jobs::REQUEST_LOGS_QUEUE,
    )
    .active_jobs_list();

    let load = load(port, "backlog", options.rate, Some(jobs));
    let mut queued = 0;
    // The web pushes each request's job as it goes; wait until the last one is queued.
    let (mut last, mut last_change) = (0, Instant::now());
    while last_change.elapsed() < options.stall {
        queued = conn.llen(&active).await.unwrap_or(0);
        if queued >= jobs {
            break;
        }
        if queued != last {
            (last, last_change) = (queued, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = load.finish().await;
    let queued_by_load = queued;

    let running = workers(&env, options.workers);
    // The load is over: the drain is timed from the workers' start.
    let mut report = finish("backlog drained", &db, sent, options, Vec::new()).await;
    let left: usize = conn.llen(&active).await.unwrap_or(0);
    report.figures = vec![
        ("backlog_jobs", queued_by_load.to_string()),
        ("jobs_left", left.to_string()),
        (
            "drain_jobs_per_s",
            format!("{:.0}", queued_by_load as f64 / report.drain.as_secs_f64()),
        ),
    ];
    drop(running);
    report
}

/// How a fake geolocation provider misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeoFault {
    /// Accepts connections and never answers.
    Hang,
    /// Answers, in turn: bytes that are not HTTP; HTML with status 200; JSON of the right
    /// shape with nonsense in every field (a 10-letter country code, a 100 kB country,
    /// control characters in the city); a batch answer of the wrong length; a body that
    /// never ends.
    Garbage,
}

/// A geolocation provider (ip-api format) at the worker's disposal that misbehaves as
/// `fault`, while the load comes from 500 public addresses: logging must not notice.
pub async fn geo_provider_faulty(options: &FaultOptions, fault: GeoFault) -> FaultReport {
    let (db, redis) = (TestDb::new(options.backend).await, TestRedis::new());
    let provider = FakeProvider::start(fault);
    let port = free_port();
    let mut env = env(&db.url, &redis.url, &redis.prefix, port);
    set(&mut env, "IPTRACK_GEO_PROVIDER", "http");
    set(&mut env, "IPTRACK_GEO_HTTP_URL", &provider.url());
    set(&mut env, "IPTRACK_GEO_HTTP_TIMEOUT_MS", "1000");
    let running = workers(&env, options.workers);
    let _web = started_web(&env, port).await;
    let mut conn = redis.connection().await;

    let load = Load::start(LoadOptions {
        base: format!("http://127.0.0.1:{port}"),
        tag: "geo".into(),
        rate: options.rate,
        limit: None,
        address: Some(public_address),
    });
    tokio::time::sleep(Duration::from_secs(options.seconds)).await;
    let sent = load.finish().await;
    let name = match fault {
        GeoFault::Hang => "geo provider hangs",
        GeoFault::Garbage => "geo provider answers garbage",
    };
    let mut report = finish(name, &db, sent, options, Vec::new()).await;
    let db_conn = db.connect().await;
    let located = db
        .count(
            &db_conn,
            "request_log WHERE path LIKE '/geo/%' AND country_code <> ''",
        )
        .await;
    let longest = db
        .count(
            &db_conn,
            "request_log WHERE length(country) > 200 OR length(city) > 200",
        )
        .await;
    report.figures = vec![
        ("provider_connections", provider.connections().to_string()),
        (
            "geolocate_job_failures",
            job_metric(&mut conn, &redis.prefix, "job|geolocate|failures")
                .await
                .to_string(),
        ),
        ("rows_with_a_country_code", located.to_string()),
        ("rows_with_fields_over_200_chars", longest.to_string()),
    ];
    drop(running);
    report
}

/// A TCP server posing as ip-api. Plain threads and blocking sockets: the workspace's
/// tokio has no `io-util` feature, and adding one would rebuild every crate using tokio.
#[derive(Debug)]
pub struct FakeProvider {
    port: u16,
    connections: Arc<AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeProvider {
    pub fn start(fault: GeoFault) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("cannot listen");
        let port = listener.local_addr().expect("no address").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (counter, stopping) = (connections.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let n = counter.fetch_add(1, Ordering::Relaxed);
                match fault {
                    // Keep the socket open, unanswered, until the provider is dropped.
                    GeoFault::Hang => held.push(stream),
                    GeoFault::Garbage => {
                        let stopping = stopping.clone();
                        std::thread::spawn(move || answer_garbage(stream, n, &stopping));
                    }
                }
            }
        });
        Self {
            port,
            connections,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag (and drops the held sockets).
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads one request (head and a `content-length` body); returns how many addresses a
/// batch request asked about (1 for a single lookup).
fn read_request(stream: &mut std::net::TcpStream) -> usize {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return 1,
            Ok(n) => n,
        };
        buffer.extend_from_slice(&chunk[..n]);
        let Some(head_end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let length = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                if name.eq_ignore_ascii_case("content-length") {
                    value.trim().parse::<usize>().ok()
                } else {
                    None
                }
            })
            .unwrap_or(0);
        if buffer.len() >= head_end + 4 + length {
            let body = &buffer[head_end + 4..head_end + 4 + length];
            return serde_json::from_slice::<Vec<serde_json::Value>>(body)
                .map_or(1, |addresses| addresses.len());
        }
    }
}

fn answer_garbage(mut stream: std::net::TcpStream, n: usize, stop: &std::sync::atomic::AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let asked = read_request(&mut stream);
    let respond = |body: String, content_type: &str| {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let nonsense = serde_json::json!({
        "status": "success",
        "countryCode": "NOT-A-CODE",
        "country": "x".repeat(100_000),
        "city": "\u{0}\u{1b}[31mred\r\n<script>alert(1)</script>",
    });
    let reply = match n % 5 {
        0 => "\u{0}\u{ff}garbage that is not HTTP\r\n\r\n".to_owned(),
        1 => respond(
            "<html><body>Service Unavailable</body></html>".into(),
            "text/html",
        ),
        2 => respond(
            if asked > 1 {
                serde_json::Value::Array(vec![nonsense; asked]).to_string()
            } else {
                nonsense.to_string()
            },
            "application/json",
        ),
        3 => respond(
            if asked > 1 {
                // One answer for a batch of many.
                serde_json::json!([{"status": "success", "countryCode": "US"}]).to_string()
            } else {
                r#"{"status": "succ"#.to_owned()
            },
            "application/json",
        ),
        _ => {
            // A body announced as huge that keeps coming until the client gives up.
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000000000\r\nconnection: close\r\n\r\n[";
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            let filler = vec![b' '; 64 * 1024];
            while !stop.load(Ordering::Relaxed) && stream.write_all(&filler).is_ok() {
                std::thread::sleep(Duration::from_millis(1));
            }
            return;
        }
    };
    let _ = stream.write_all(reply.as_bytes());
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1
}

/// xorshift64: random enough for choosing moments and victims.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> FaultReport {
        FaultReport {
            scenario: "example",
            audit: Audit::default(),
            drain: Duration::ZERO,
            figures: vec![("dead_jobs", "0".into()), ("note", "n/a".into())],
        }
    }

    #[test]
    fn a_reported_figure_is_read_as_its_number() {
        assert_eq!(report().number("dead_jobs"), 0);
    }

    #[test]
    #[should_panic(expected = "no figure named \"dead_job\"")]
    fn a_misspelt_figure_fails_the_test_instead_of_reading_zero() {
        report().number("dead_job");
    }

    #[test]
    #[should_panic(expected = "not a number")]
    fn a_figure_that_is_no_number_fails_the_test() {
        report().number("note");
    }
}
