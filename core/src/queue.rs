//! Queue plumbing around apalis-redis 1.0: names, worker configuration, and the pieces that
//! work around its sharp edges (docs/ARCHITECTURE.md, "Queue", lists each with its test).
//!
//! Every key a queue uses starts with `{IPTRACK_REDIS_PREFIX}:{queue}:`; the one exception
//! is apalis-redis's global registry of queues, `core:apalis:queues:list`.

use std::{
    marker::PhantomData,
    sync::LazyLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use redis::{Script, aio::ConnectionManager};
use serde::Serialize;

use crate::settings::Settings;

pub use apalis_redis::Config as QueueConfig;

/// Jobs one worker takes from Redis per fetch. Each request-log job already carries a batch
/// of up to `IPTRACK_BATCH_MAX_EVENTS` events, so a small number keeps a killed worker's
/// re-delivered share small while still saving round trips.
pub const FETCH_BATCH: usize = 4;

/// Largest number of ids one Lua call moves with `unpack`; far below Lua's limit (~8,000).
pub const PROMOTE_CHUNK: usize = 1_000;

/// Completed jobs kept for inspection (`redis-cli`, `iptrack queues`); older ones are
/// forgotten by [`trim_done`].
pub const DONE_JOBS_KEPT: usize = 1_000;

static PUSH_READY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/push_ready.lua")));
static PROMOTE_DUE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/promote_due.lua")));
static PUSH_ONCE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/push_once.lua")));
static TRIM_DONE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/trim_done.lua")));

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("cannot encode job: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The full queue name, which apalis-redis uses as the prefix of all its keys.
pub fn queue_name(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{queue}")
}

/// apalis-redis configuration for one of iptrack's queues.
pub fn queue_config(settings: &Settings, queue: &str) -> QueueConfig {
    QueueConfig::default()
        .queue(queue_name(&settings.redis_prefix, queue))
        // apalis-redis defaults to 30 s × 10: a killed worker's jobs would wait 5 minutes.
        .heartbeat_interval(settings.worker.heartbeat)
        .missed_heartbeats(settings.worker.missed_heartbeats)
        .batch_size(FETCH_BATCH)
        // Locking runs LREM over the whole active list per job (cost grows with the backlog)
        // and buys nothing here: fetch already moves a job into the worker's in-flight set,
        // and that set is what orphan recovery re-enqueues.
        .lock_tasks(false)
        // One PUBLISH per job that nobody subscribes to.
        .emit_events(false)
}

/// A Redis connection for queue work. Lazy: a process starts even while Redis is down, and
/// each command fails within the timeouts instead of hanging, so callers can retry.
pub fn connect(redis_url: &str) -> Result<ConnectionManager, redis::RedisError> {
    let client = redis::Client::open(redis_url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(2));
    ConnectionManager::new_lazy_with_config(client, config)
}

/// Pushes jobs of type `T` onto one queue, straight to its active list (see
/// `lua/push_ready.lua` for why not apalis-redis's own push).
#[derive(Clone)]
pub struct JobQueue<T> {
    conn: ConnectionManager,
    config: QueueConfig,
    job: PhantomData<fn(T)>,
}

impl<T> std::fmt::Debug for JobQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobQueue")
            .field("queue", &self.config.queue.as_ref())
            .finish_non_exhaustive()
    }
}

impl<T: Serialize> JobQueue<T> {
    pub fn new(conn: ConnectionManager, config: QueueConfig) -> Self {
        Self {
            conn,
            config,
            job: PhantomData,
        }
    }

    /// Pushes `jobs` in one atomic call; returns how many were added.
    pub async fn push(&mut self, jobs: &[T]) -> Result<u64, QueueError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let mut invocation = PUSH_READY.prepare_invoke();
        invocation
            .key(self.config.job_data_hash())
            .key(self.config.active_jobs_list())
            .key(self.config.signal_list())
            .key(self.config.job_meta_hash());
        for job in jobs {
            invocation
                .arg(ulid::Ulid::generate().to_string())
                .arg(serde_json::to_vec(job)?);
        }
        Ok(invocation.invoke_async(&mut self.conn).await?)
    }

    /// Pushes `job` unless `claim` (a key under this queue) was claimed within `claim_ttl`.
    /// Returns whether this call pushed it.
    pub async fn push_once(
        &mut self,
        claim: &str,
        claim_ttl: Duration,
        job: &T,
    ) -> Result<bool, QueueError> {
        let pushed: u8 = PUSH_ONCE
            .key(self.config.job_data_hash())
            .key(self.config.active_jobs_list())
            .key(self.config.signal_list())
            .key(self.config.job_meta_hash())
            .key(format!("{}:claim:{claim}", self.config.queue.as_ref()))
            .arg(claim_ttl.as_secs().max(1))
            .arg(ulid::Ulid::generate().to_string())
            .arg(serde_json::to_vec(job)?)
            .invoke_async(&mut self.conn)
            .await?;
        Ok(pushed == 1)
    }
}

/// Moves every due retry from `:scheduled` to the active list, in chunks small enough for
/// Lua's `unpack`. Returns how many were moved.
pub async fn promote_due(
    conn: &mut ConnectionManager,
    config: &QueueConfig,
) -> Result<u64, redis::RedisError> {
    let mut moved = 0;
    loop {
        let n: u64 = PROMOTE_DUE
            .key(config.scheduled_jobs_set())
            .key(config.active_jobs_list())
            .key(config.signal_list())
            .arg(unix_seconds())
            .arg(PROMOTE_CHUNK)
            .invoke_async(conn)
            .await?;
        moved += n;
        if n < PROMOTE_CHUNK as u64 {
            return Ok(moved);
        }
    }
}

/// Forgets completed jobs beyond [`DONE_JOBS_KEPT`], a bounded amount per call.
pub async fn trim_done(
    conn: &mut ConnectionManager,
    config: &QueueConfig,
) -> Result<u64, redis::RedisError> {
    TRIM_DONE
        .key(config.done_jobs_set())
        .key(config.job_data_hash())
        .key(config.job_meta_hash())
        .arg(DONE_JOBS_KEPT)
        .arg(PROMOTE_CHUNK)
        .invoke_async(conn)
        .await
}

/// A worker name unique across hosts, processes, queues and restarts. apalis-redis refuses
/// to register a name that heartbeated recently, so a restarted worker needs a new one.
pub fn unique_worker_name(queue: &str, index: usize, generation: u64) -> String {
    let host = gethostname::gethostname();
    format!(
        "{}-{}-{queue}-{index}-{generation}",
        host.to_string_lossy(),
        std::process::id()
    )
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
