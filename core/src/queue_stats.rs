//! What each queue holds, read from apalis-redis 1.0's keys: the numbers `iptrack queues`
//! prints and `/metrics` exports, and exactly what the `redis-cli` commands in README.md
//! ("Looking at the queues with redis-cli") show.
//!
//! Key layout (apalis-redis 1.0, `{queue}` = `{IPTRACK_REDIS_PREFIX}:{name}`):
//! `{queue}:active` (list, due jobs), `{queue}:scheduled` (sorted set, retries by due time),
//! `{queue}:inflight:{worker}` (set per worker), `{queue}:done` and `{queue}:dead` (sets),
//! `{queue}:workers` (sorted set, worker name → last heartbeat in unix seconds).

use redis::aio::ConnectionLike;
use serde::Serialize;

use crate::queue::queue_name;

/// Keys `SCAN` asks for per round trip while looking for in-flight sets.
const SCAN_COUNT: usize = 500;

/// One queue's counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// The queue's name without the prefix, e.g. `request-logs`.
    pub queue: String,
    /// Jobs waiting to be fetched (`LLEN {queue}:active`).
    pub due: u64,
    /// Retries waiting for their time (`ZCARD {queue}:scheduled`).
    pub scheduled: u64,
    /// Jobs fetched and not finished, all workers together.
    pub in_flight: u64,
    /// Completed jobs still kept (`SCARD {queue}:done`; bounded by the worker's trim).
    pub done: u64,
    /// Jobs given up after 25 attempts (`SCARD {queue}:dead`).
    pub dead: u64,
    /// Registered workers, oldest heartbeat first, with what each holds.
    pub workers: Vec<WorkerStats>,
}

/// One worker of a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerStats {
    pub name: String,
    /// Unix seconds of its last heartbeat (its score in `{queue}:workers`).
    pub last_heartbeat: i64,
    /// Jobs in its in-flight set (`SCARD {queue}:inflight:{name}`).
    pub in_flight: u64,
}

impl QueueStats {
    /// Reads the counts of `queue` under `prefix`. Not one atomic snapshot: each number is
    /// read on its own, as the redis-cli commands would read them.
    pub async fn read<C: ConnectionLike + Send>(
        conn: &mut C,
        prefix: &str,
        queue: &str,
    ) -> Result<Self, redis::RedisError> {
        let base = queue_name(prefix, queue);
        let (due, scheduled, done, dead, heartbeats): (u64, u64, u64, u64, Vec<(String, f64)>) =
            redis::pipe()
                .llen(format!("{base}:active"))
                .zcard(format!("{base}:scheduled"))
                .scard(format!("{base}:done"))
                .scard(format!("{base}:dead"))
                .zrange_withscores(format!("{base}:workers"), 0, -1)
                .query_async(conn)
                .await?;

        // In-flight sets are found by pattern, not through the worker list: a worker that
        // died keeps its set (and its name in `:workers`) until orphan recovery runs, and
        // its jobs are in flight all the same.
        let inflight_prefix = format!("{base}:inflight:");
        let mut inflight_keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", escape_glob(&inflight_prefix)))
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(conn)
                .await?;
            inflight_keys.extend(keys);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        inflight_keys.sort();
        inflight_keys.dedup();
        let mut counts_by_worker = Vec::with_capacity(inflight_keys.len());
        if !inflight_keys.is_empty() {
            let mut pipe = redis::pipe();
            for key in &inflight_keys {
                pipe.scard(key);
            }
            let counts: Vec<u64> = pipe.query_async(conn).await?;
            for (key, count) in inflight_keys.iter().zip(counts) {
                let worker = key[inflight_prefix.len()..].to_owned();
                counts_by_worker.push((worker, count));
            }
        }

        let mut workers: Vec<WorkerStats> = heartbeats
            .into_iter()
            .map(|(name, score)| WorkerStats {
                in_flight: counts_by_worker
                    .iter()
                    .find(|(worker, _)| *worker == name)
                    .map_or(0, |(_, count)| *count),
                name,
                last_heartbeat: score as i64,
            })
            .collect();
        // A set whose worker is no longer registered still holds jobs; show it.
        for (worker, count) in &counts_by_worker {
            if *count > 0 && !workers.iter().any(|w| w.name == *worker) {
                workers.push(WorkerStats {
                    name: worker.clone(),
                    last_heartbeat: 0,
                    in_flight: *count,
                });
            }
        }
        workers.sort_by(|a, b| (a.last_heartbeat, &a.name).cmp(&(b.last_heartbeat, &b.name)));

        Ok(Self {
            queue: queue.to_owned(),
            due,
            scheduled,
            in_flight: counts_by_worker.iter().map(|(_, count)| count).sum(),
            done,
            dead,
            workers,
        })
    }

    /// Reads every queue in `queues`, in that order.
    pub async fn read_all<C: ConnectionLike + Send>(
        conn: &mut C,
        prefix: &str,
        queues: &[&str],
    ) -> Result<Vec<Self>, redis::RedisError> {
        let mut all = Vec::with_capacity(queues.len());
        for queue in queues {
            all.push(Self::read(conn, prefix, queue).await?);
        }
        Ok(all)
    }
}

/// Escapes glob characters so a prefix with `[` or `\` matches only itself in `SCAN MATCH`.
/// (`IPTRACK_REDIS_PREFIX` already refuses `*` and `?`.)
fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_in_a_prefix_match_only_themselves() {
        assert_eq!(
            escape_glob("iptrack:request-logs:"),
            "iptrack:request-logs:"
        );
        assert_eq!(escape_glob("a[b]\\c"), "a\\[b\\]\\\\c");
    }
}
