//! Which credit the geolocation data requires, as a fact the workers publish in Redis and
//! the web reads. The workers are the ones that open the data; a web instance may run on
//! a machine without it (or with other files), so it must not decide from its own disk.
//!
//! Key: `{prefix}:geo:attribution`, value `dbip` while the workers' provider is DB-IP's
//! database (licensed CC BY 4.0: pages that show its locations must credit it); absent
//! otherwise. Each worker sets or deletes it when it starts: with several workers, the
//! last to start decides.

use redis::AsyncCommands;

/// The one value the key holds.
const DBIP: &str = "dbip";

/// `{prefix}:geo:attribution`.
pub fn key(prefix: &str) -> String {
    format!("{prefix}:geo:attribution")
}

/// Records whether the worker's provider is DB-IP's data.
pub async fn publish<C>(conn: &mut C, prefix: &str, dbip: bool) -> redis::RedisResult<()>
where
    C: redis::aio::ConnectionLike + Send + Sync,
{
    if dbip {
        conn.set(key(prefix), DBIP).await
    } else {
        conn.del(key(prefix)).await
    }
}

/// Whether the data shown needs DB-IP's credit.
pub async fn requires_dbip<C>(conn: &mut C, prefix: &str) -> redis::RedisResult<bool>
where
    C: redis::aio::ConnectionLike + Send + Sync,
{
    let value: Option<String> = conn.get(key(prefix)).await?;
    Ok(value.as_deref() == Some(DBIP))
}
