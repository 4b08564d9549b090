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

use crate::settings::{RedisSettings, WorkerSettings};

pub use apalis_redis::Config as QueueConfig;

/// Jobs one worker takes from Redis per fetch. Each request-log job already carries a batch
/// of up to `IPTRACK_BATCH_MAX_EVENTS` events, so a small number keeps a killed worker's
/// re-delivered share small while still saving round trips.
pub const FETCH_BATCH: usize = 4;

/// Largest number of ids one Lua call moves with `unpack`; far below Lua's limit (~8,000).
pub const PROMOTE_CHUNK: usize = 1_000;

/// Traces of completed jobs kept for inspection (`redis-cli`, `iptrack queues`); older
/// ones are forgotten by [`trim_done`], which also drops every completed job's payload.
/// A trace is an id and a small metadata hash (about 200 bytes, independent of the job's
/// payload), so this bounds their memory to a few hundred kilobytes per queue.
pub const DONE_JOBS_KEPT: usize = 1_000;

/// How long a worker's metadata hash outlives its last maintenance renewal; see
/// `lua/expire_worker_keys.lua`. Renewed every second while the worker heartbeats.
pub const WORKER_KEY_TTL: Duration = Duration::from_secs(120);

static PUSH_READY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/push_ready.lua")));
static PROMOTE_DUE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/promote_due.lua")));
static PUSH_ONCE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/push_once.lua")));
static TRIM_DONE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/trim_done.lua")));
static HAND_BACK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/hand_back.lua")));
static EXPIRE_WORKER_KEYS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/expire_worker_keys.lua")));

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

/// The configuration of one of iptrack's queues for a process that only pushes to it (the
/// web's log pipeline): pushing uses only the queue's key names, never the heartbeat.
pub fn producer_config(prefix: &str, queue: &str) -> QueueConfig {
    queue_config(prefix, &WorkerSettings::default(), queue)
}

/// apalis-redis configuration for one of iptrack's queues: its name under `prefix`
/// (`IPTRACK_REDIS_PREFIX`) and the workers' heartbeat.
pub fn queue_config(prefix: &str, worker: &WorkerSettings, queue: &str) -> QueueConfig {
    QueueConfig::default()
        .queue(queue_name(prefix, queue))
        // apalis-redis defaults to 30 s × 10: a killed worker's jobs would wait 5 minutes.
        .heartbeat_interval(worker.heartbeat)
        .missed_heartbeats(worker.missed_heartbeats)
        .batch_size(FETCH_BATCH)
        // Locking runs LREM over the whole active list per job (cost grows with the backlog)
        // and buys nothing here: fetch already moves a job into the worker's in-flight set,
        // and that set is what orphan recovery re-enqueues.
        .lock_tasks(false)
        // One PUBLISH per job that nobody subscribes to.
        .emit_events(false)
}

/// A Redis connection for queue work to `redis_url`, trusting the system's roots for
/// `rediss://`; see [`connect_to`] for the one a process's settings name.
pub fn connect(redis_url: &str) -> Result<ConnectionManager, redis::RedisError> {
    connect_client(crate::redis_client::open(redis_url, None)?)
}

/// A Redis connection for queue work to the Redis of `settings` (`REDIS_URL`, and
/// `IPTRACK_REDIS_CA_FILE` for a `rediss://` one).
pub fn connect_to(settings: &RedisSettings) -> Result<ConnectionManager, redis::RedisError> {
    connect_client(crate::redis_client::client(settings)?)
}

/// Lazy: a process starts even while Redis is down, and each command fails within the
/// timeouts instead of hanging, so callers can retry.
fn connect_client(client: redis::Client) -> Result<ConnectionManager, redis::RedisError> {
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

/// What one [`trim_done`] call removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trimmed {
    /// Traces (id and metadata) of completed jobs forgotten.
    pub traces: u64,
    /// Payloads of completed jobs dropped.
    pub payloads: u64,
}

/// Drops the payload of every completed job, and forgets completed jobs' traces beyond
/// [`DONE_JOBS_KEPT`] (a bounded amount per call).
pub async fn trim_done(
    conn: &mut ConnectionManager,
    config: &QueueConfig,
) -> Result<Trimmed, redis::RedisError> {
    let (traces, payloads): (u64, u64) = TRIM_DONE
        .key(config.done_jobs_set())
        .key(config.job_data_hash())
        .key(config.job_meta_hash())
        .arg(DONE_JOBS_KEPT)
        .arg(PROMOTE_CHUNK)
        .invoke_async(conn)
        .await?;
    Ok(Trimmed { traces, payloads })
}

/// Hands the jobs `worker` holds back to the front of the active list and unregisters it
/// (see `lua/hand_back.lua`). For a worker that has stopped: a running one would lose the
/// jobs it is working on. Returns how many jobs went back.
pub async fn hand_back(
    conn: &mut ConnectionManager,
    config: &QueueConfig,
    worker: &str,
) -> Result<u64, redis::RedisError> {
    HAND_BACK
        .key(config.workers_set())
        .key(format!("{}:{worker}", config.inflight_jobs_set()))
        .key(config.active_jobs_list())
        .key(config.signal_list())
        .key(worker_metadata_key(config, worker))
        .arg(worker)
        .arg(PROMOTE_CHUNK)
        .invoke_async(conn)
        .await
}

/// Renews the TTL ([`WORKER_KEY_TTL`]) of the metadata hash of every worker of the queue
/// that heartbeated within heartbeat × missed heartbeats; a stopped worker's expires.
pub async fn expire_worker_keys(
    conn: &mut ConnectionManager,
    config: &QueueConfig,
) -> Result<u64, redis::RedisError> {
    let stale_before = unix_seconds().saturating_sub(config.orphaned_duration().as_secs());
    EXPIRE_WORKER_KEYS
        .key(config.workers_set())
        .key(format!("{}:workers:metadata", config.queue.as_ref()))
        .arg(stale_before)
        .arg(WORKER_KEY_TTL.as_secs())
        .invoke_async(conn)
        .await
}

/// apalis-redis's key for a worker's metadata hash (its `Config::worker_metadata_key`
/// wants a running worker's context; a stopped worker has only its name).
pub fn worker_metadata_key(config: &QueueConfig, worker: &str) -> String {
    format!("{}:workers:metadata:{worker}", config.queue.as_ref())
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
