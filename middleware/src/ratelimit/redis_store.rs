//! The shared counters: one `EVALSHA` of `sliding_log.lua` per decision.

use std::time::Duration;

use redis::{Script, aio::ConnectionManager};

use super::Decision;

/// A multiplexed connection of its own (a pool's recycle check would add a `PING` round
/// trip to every request; a connection shared with the batcher would queue decisions
/// behind batch pushes) and the script, sent as `EVALSHA` and loaded by the redis
/// crate only when Redis answers `NOSCRIPT` (first use, or after a Redis restart).
pub(super) struct RedisLog {
    conn: ConnectionManager,
    script: Script,
}

impl RedisLog {
    pub(super) fn new(conn: ConnectionManager) -> Self {
        Self {
            conn,
            script: Script::new(include_str!("sliding_log.lua")),
        }
    }

    pub(super) async fn record(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> redis::RedisResult<Decision> {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        let mut conn = self.conn.clone();
        let (allowed, remaining, reset_ms): (i64, i64, i64) = self
            .script
            .key(key)
            .arg(window_ms)
            .arg(limit)
            .invoke_async(&mut conn)
            .await?;
        Ok(Decision {
            allowed: allowed == 1,
            limit,
            remaining: u32::try_from(remaining).unwrap_or(0),
            reset: Duration::from_millis(u64::try_from(reset_ms).unwrap_or(0)),
            window,
        })
    }
}
