//! An open-loop HTTP load with identifiable requests, and the audit of what reached
//! `request_log`: the fault tests (`tests/tests/e2e/faults.rs`) and the fault benchmarks
//! (`bench/src/bin/faults.rs`) share both.
//!
//! Request `i` is `GET /{tag}/{i}`, so its row is found by its path: every request
//! answered must be there exactly once, whatever fault happened meanwhile.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tokio::task::JoinHandle;

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The web answered with this status.
    Status(u16),
    /// No answer: connection refused or reset, or no response within 30 s.
    Failed,
}

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `http://127.0.0.1:{port}`.
    pub base: String,
    /// First path segment of every request.
    pub tag: String,
    /// Requests per second, sent on schedule whatever the answers do (open loop).
    pub rate: u64,
    /// Stop after this many requests (else only [`Load::finish`] stops it).
    pub limit: Option<usize>,
    /// The client address request `i` claims in `X-Forwarded-For` (the web must trust
    /// 127.0.0.1 as a proxy); `None` sends no header.
    pub address: Option<fn(usize) -> String>,
}

/// A running load.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    tag: String,
    task: JoinHandle<Vec<JoinHandle<Outcome>>>,
}

/// Every request sent and how it ended (index = request number).
#[derive(Debug, Clone)]
pub struct Sent {
    pub tag: String,
    pub outcomes: Vec<Outcome>,
    /// From the first request to the last answer.
    pub elapsed: Duration,
}

impl Sent {
    pub fn sent(&self) -> usize {
        self.outcomes.len()
    }

    /// Answered with a status below 500 by the application: the web served it. A 408 is
    /// actix-web's own answer to a request whose head did not arrive within its client
    /// timeout (5 s): it never reached the app or the middleware, so it is not logged.
    pub fn answered(&self) -> usize {
        self.outcomes.iter().filter(|o| is_served(o)).count()
    }

    /// 408s: requests the web was too busy to read within its client timeout.
    pub fn unread(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Status(408)))
            .count()
    }

    pub fn server_errors(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Status(s) if *s >= 500))
            .count()
    }

    pub fn failed(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Failed))
            .count()
    }
}

impl Load {
    pub fn start(options: LoadOptions) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            // Shorter than actix-web's keep-alive (5 s): reusing a connection the server is
            // closing fails the request, which would count as a fault of the web.
            .pool_idle_timeout(Duration::from_secs(2))
            .build()
            .expect("cannot build an HTTP client");
        let (stop_flag, counter, tag) = (stop.clone(), sent.clone(), options.tag.clone());
        let task = tokio::spawn(async move {
            let origin = Instant::now();
            let mut requests = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let limit = options.limit.unwrap_or(usize::MAX);
            while !stop_flag.load(Ordering::Relaxed) && requests.len() < limit {
                tick.tick().await;
                let due =
                    ((origin.elapsed().as_secs_f64() * options.rate as f64) as usize).min(limit);
                while requests.len() < due {
                    let i = requests.len();
                    let mut request = client.get(format!("{}/{}/{i}", options.base, options.tag));
                    if let Some(address) = options.address {
                        request = request.header("x-forwarded-for", address(i));
                    }
                    requests.push(tokio::spawn(async move {
                        match request.send().await {
                            Ok(response) => Outcome::Status(response.status().as_u16()),
                            Err(_) => Outcome::Failed,
                        }
                    }));
                    counter.store(requests.len(), Ordering::Relaxed);
                }
            }
            requests
        });
        Self {
            stop,
            sent,
            tag,
            task,
        }
    }

    /// Requests sent so far.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// Whether the limit was reached (or the load was stopped).
    pub fn is_done(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops sending and waits for every answer.
    pub async fn finish(self) -> Sent {
        let origin = Instant::now();
        self.stop.store(true, Ordering::Relaxed);
        let requests = self.task.await.expect("the load task panicked");
        let mut outcomes = Vec::with_capacity(requests.len());
        for request in requests {
            outcomes.push(request.await.unwrap_or(Outcome::Failed));
        }
        Sent {
            tag: self.tag,
            outcomes,
            elapsed: origin.elapsed(),
        }
    }
}

fn is_served(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Status(s) if *s < 500 && *s != 408)
}

/// What reached `request_log` of what was sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audit {
    pub sent: usize,
    /// Answered with a status below 500.
    pub answered: usize,
    /// 408 from actix-web itself (request head not read in time; never logged).
    pub unread: usize,
    pub server_errors: usize,
    /// No answer at all.
    pub failed: usize,
    /// Rows with one of the load's paths.
    pub stored: usize,
    /// Rows beyond the first for the same request.
    pub duplicated: usize,
    /// Requests answered whose row is missing.
    pub lost: usize,
}

impl Audit {
    /// Every request answered below 500, and stored exactly once.
    pub fn is_perfect(&self) -> bool {
        self.answered == self.sent
            && self.server_errors == 0
            && self.failed == 0
            && self.lost == 0
            && self.duplicated == 0
            && self.stored == self.sent
    }
}

impl std::fmt::Display for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {}, answered {} (408 {}, 5xx {}, no answer {}), stored {}, duplicated {}, lost {}",
            self.sent,
            self.answered,
            self.unread,
            self.server_errors,
            self.failed,
            self.stored,
            self.duplicated,
            self.lost
        )
    }
}

/// Rows per request number of `tag`'s paths.
async fn stored_counts(conn: &DatabaseConnection, tag: &str) -> HashMap<usize, usize> {
    let rows = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            format!("SELECT path FROM request_log WHERE path LIKE '/{tag}/%'"),
        ))
        .await
        .expect("cannot read request_log");
    let mut counts = HashMap::new();
    for row in rows {
        let path: String = row.try_get("", "path").expect("path is text");
        if let Some(i) = path
            .strip_prefix(&format!("/{tag}/"))
            .and_then(|i| i.parse().ok())
        {
            *counts.entry(i).or_insert(0) += 1;
        }
    }
    counts
}

/// Compares `sent` with `request_log` now.
pub async fn audit(conn: &DatabaseConnection, sent: &Sent) -> Audit {
    let counts = stored_counts(conn, &sent.tag).await;
    let lost = sent
        .outcomes
        .iter()
        .enumerate()
        .filter(|(i, o)| is_served(o) && !counts.contains_key(i))
        .count();
    Audit {
        sent: sent.sent(),
        answered: sent.answered(),
        unread: sent.unread(),
        server_errors: sent.server_errors(),
        failed: sent.failed(),
        stored: counts.values().sum(),
        duplicated: counts.values().map(|n| n - 1).sum(),
        lost,
    }
}

/// Waits until every answered request of `sent` has a row, or until no new row arrived for
/// `stall`; then waits `settle` more (a duplicate would land then) and audits. Returns the
/// audit and how long the rows took to arrive.
pub async fn wait_and_audit(
    conn: &DatabaseConnection,
    sent: &Sent,
    stall: Duration,
    settle: Duration,
) -> (Audit, Duration) {
    let started = Instant::now();
    let answered = sent.answered();
    let (mut last_count, mut last_progress) = (0, Instant::now());
    loop {
        let have = stored_counts(conn, &sent.tag).await.len();
        if have >= answered {
            break;
        }
        if have != last_count {
            (last_count, last_progress) = (have, Instant::now());
        } else if last_progress.elapsed() >= stall {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waited = started.elapsed();
    tokio::time::sleep(settle).await;
    (audit(conn, sent).await, waited)
}
