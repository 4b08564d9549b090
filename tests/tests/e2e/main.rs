//! End-to-end tests: real Redis, real databases, and the real binaries as processes where
//! a test is about process behaviour (signals, exit codes, `iptrack up`, the worker and
//! scheduler, crashes); tests of what the reference server answers run it in-process
//! (`in_process.rs`). Build the binaries first: `cargo build --workspace --bins --examples`
//! (README's test command does); the harness refuses a binary older than its sources.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin_api;
mod admin_queries;
mod bad_input;
mod blocking;
mod blocklist_service;
mod cli_args;
mod client_ip_props;
mod compose;
mod dashboard;
mod dashboard_api;
mod dashboard_views;
mod detection;
mod faults;
mod feeds;
mod flagging;
mod forward_auth;
mod geolocation;
mod hostile_text;
mod in_process;
mod kubernetes;
mod live_events;
mod notifications;
mod observability;
mod operator;
mod paths;
mod processes;
mod queues;
mod rate_limits;
mod redis_keys;
mod redis_tls;
mod scale;
mod spoofing;
mod up;
mod worker_killed;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use iptrack_tests::{TestDb, TestRedis, free_port};
use redis::AsyncCommands;

/// Environment of one test's iptrack processes.
#[derive(Debug)]
pub struct Stack {
    pub env: HashMap<String, String>,
    pub port: u16,
}

impl Stack {
    pub fn new(db: &TestDb, redis: &TestRedis) -> Self {
        let port = free_port();
        let env = [
            ("DATABASE_URL", db.url.clone()),
            ("REDIS_URL", redis.url.clone()),
            ("IPTRACK_REDIS_PREFIX", redis.prefix.clone()),
            ("IPTRACK_BIND", format!("127.0.0.1:{port}")),
            // The test client plays a trusted proxy, so each request can carry its own
            // client address in X-Forwarded-For.
            ("IPTRACK_TRUSTED_PROXIES", "127.0.0.1".into()),
            // Short, for recovery tests, but with room for a slow heartbeat (see the
            // harness's `settings`).
            ("IPTRACK_WORKER_HEARTBEAT_SECS", "2".into()),
            ("IPTRACK_WORKER_MISSED_HEARTBEATS", "3".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Self { env, port }
    }

    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.to_owned(), value.to_owned());
        self
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn wait_until_listening(&self) {
        iptrack_tests::process::wait_until_listening(&self.url("/"), Duration::from_secs(30)).await;
    }
}

/// The admin token the admin API's tests configure (`IPTRACK_ADMIN_TOKEN`).
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// `GET url` with [`ADMIN_TOKEN`]; the answer's JSON body.
pub async fn admin_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client
        .get(url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The client address request `i` claims (through the trusted-proxy header): a mix of
/// IPv4 and IPv6, all distinct.
pub fn client_ip(i: usize) -> String {
    if i.is_multiple_of(2) {
        format!("198.51.{}.{}", 100 + i / 250 % 100, i % 250 + 1)
    } else {
        format!("2001:db8::{i:x}")
    }
}

/// Sends `GET /items/{i}` for each `i` in `range` from `client_ip(i)`, 16 at a time.
/// Returns the statuses.
pub async fn send_requests(stack: &Stack, range: std::ops::Range<usize>) -> Vec<u16> {
    let client = reqwest::Client::new();
    futures::stream::iter(range)
        .map(|i| {
            let request = client
                .get(stack.url(&format!("/items/{i}")))
                .header("x-forwarded-for", client_ip(i));
            async move {
                request
                    .send()
                    .await
                    .expect("request failed")
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// Jobs in the request-log in-flight sets of the worker process `pid` (all of its apalis
/// workers), or of every worker when `pid` is `None`.
pub async fn jobs_in_flight(redis: &TestRedis, pid: Option<u32>) -> u64 {
    let mut conn = redis.connection().await;
    let pattern = match pid {
        Some(pid) => format!("{}:request-logs:inflight:*-{pid}-*", redis.prefix),
        None => format!("{}:request-logs:inflight:*", redis.prefix),
    };
    let keys: Vec<String> = conn.keys(pattern).await.unwrap();
    let mut jobs = 0;
    for key in keys {
        jobs += conn.scard::<_, u64>(&key).await.unwrap();
    }
    jobs
}

/// Replies longer than this are held by [`holding_proxy`]: a fetched request-log job is
/// kilobytes of JSON, an empty poll's reply or a push's count a few bytes.
const HELD_REPLY_BYTES: usize = 256;

/// Forwards a free local port to `target`; while `hold` is set, a reply that carries jobs
/// (any read of more than [`HELD_REPLY_BYTES`]) and everything after it on its connection
/// waits in the proxy. So a fetch runs on Redis while its caller still waits for the reply.
///
/// Small replies (an empty poll, a push's count) pass: holding them too would leave every
/// poller waiting on an empty answer sent before the jobs arrived, and no fetch with jobs
/// would ever run (the race the stop tests need, lost under load).
pub async fn holding_proxy(target: &str, hold: Arc<AtomicBool>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = target.to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let (hold, target) = (hold.clone(), target.clone());
            tokio::spawn(async move {
                let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let (mut client_read, mut client_write) = inbound.into_split();
                let (mut server_read, mut server_write) = outbound.into_split();
                let up = tokio::io::copy(&mut client_read, &mut server_write);
                let down = async {
                    let mut buf = vec![0; 64 * 1024];
                    loop {
                        let n = server_read.read(&mut buf).await?;
                        if n == 0 {
                            return Ok::<_, std::io::Error>(());
                        }
                        while n > HELD_REPLY_BYTES && hold.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        client_write.write_all(&buf[..n]).await?;
                    }
                };
                tokio::select! {
                    _ = up => {}
                    _ = down => {}
                }
            });
        }
    });
    port
}

/// Sends SIGTERM to a process.
pub fn terminate(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("cannot signal the process");
}

/// Runs `iptrack <args>` with the stack's environment; returns (status, stdout, stderr).
pub fn iptrack(stack: &Stack, args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new(iptrack_tests::process::binary("iptrack"))
        .args(args)
        .env_clear()
        .envs(&stack.env)
        .output()
        .expect("cannot run iptrack");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Waits (up to `limit`) for `expected` request_log rows, lets any duplicate land, then
/// asserts each of the `expected` distinct paths is stored exactly once.
pub async fn assert_stored_exactly_once(db: &TestDb, expected: i64, limit: Duration) {
    let conn = db.connect().await;
    iptrack_tests::eventually(limit, &format!("{expected} rows"), || async {
        (db.count(&conn, "request_log").await >= expected).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.count(&conn, "request_log").await, expected);
    assert_eq!(
        db.count(&conn, "(SELECT DISTINCT path FROM request_log) AS p")
            .await,
        expected
    );
}
