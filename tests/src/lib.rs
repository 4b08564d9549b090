//! Test harness shared by every crate's integration tests and the end-to-end tests.
//!
//! Each test gets real services, isolated: a Redis key prefix of its own (keys deleted
//! afterwards), a fresh SQLite file or a fresh PostgreSQL database built by the real
//! migrations (dropped afterwards), and, where a test stops Redis, a private
//! `redis-server` on a port of its own.
//!
//! Service addresses: `IPTRACK_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`) and
//! `IPTRACK_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432`).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a harness that cannot set up should fail loudly

pub mod db;
pub mod faults;
pub mod forwarding;
pub mod load;
pub mod postgres_server;
pub mod process;
pub mod proxies;
pub mod redis_server;
pub mod tcp_proxy;
pub mod tls_redis;

pub use db::{Backend, TestDb};
pub use redis_server::{PrivateRedis, TestRedis};

/// Runs an async test body once against SQLite and once against PostgreSQL:
/// `both_backends!(name, |backend| async move { ... });` makes tests `name::sqlite` and
/// `name::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                ($body)($crate::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                ($body)($crate::Backend::Postgres).await
            }
        }
    };
}

/// Polls `check` every 50 ms until it returns `Some`, or panics with `what` after `limit`.
pub async fn eventually<T, F, Fut>(limit: std::time::Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("cannot find a free port")
}

/// Settings pointing at a test's own database and Redis prefix, with short worker timings
/// (2 s heartbeat × 3 missed) so tests of recovery finish quickly. Not shorter: on a loaded
/// machine a heartbeat can slip a second or two, and a live worker declared dead restarts.
pub fn settings(db: &TestDb, redis: &TestRedis) -> iptrack_core::Settings {
    let mut settings = iptrack_core::Settings::default();
    settings.database.url = db.url.as_str().into();
    settings.redis.url = redis.url.as_str().into();
    settings.redis.prefix = redis.prefix.clone();
    settings.web.bind = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    settings.worker.heartbeat = std::time::Duration::from_secs(2);
    settings.worker.missed_heartbeats = 3;
    settings
}
