//! Which credit the geolocation data requires, as a fact the workers publish in Redis and
//! the web reads. The workers are the ones that open the data; a web instance may run on
//! a machine without it (or with other files), so it must not decide from its own disk.
//!
//! Key: `{prefix}:geo:attribution`, value `dbip` while the workers' provider is DB-IP's
//! database (licensed CC BY 4.0: pages that show its locations must credit it); absent
//! otherwise. Each worker sets or deletes it when it starts: with several workers, the
//! last to start decides.
//!
//! Beside it, `{prefix}:geo:geolocation` says whether the workers geolocate at all: `on`
//! when the worker that started last has a provider, `off` when it has none (rows then
//! keep an empty country, and the dashboard says why). Absent until a worker has said.

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

/// `{prefix}:geo:geolocation`.
pub fn geolocation_key(prefix: &str) -> String {
    format!("{prefix}:geo:geolocation")
}

/// Whether the workers geolocate, as far as Redis knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Geolocation {
    On,
    Off,
    /// No worker has said (none started since the key was written, or an older version).
    Unknown,
}

impl Geolocation {
    pub fn name(self) -> &'static str {
        match self {
            Geolocation::On => "on",
            Geolocation::Off => "off",
            Geolocation::Unknown => "unknown",
        }
    }
}

/// Records whether this worker has a geolocation provider.
pub async fn publish_geolocation<C>(conn: &mut C, prefix: &str, on: bool) -> redis::RedisResult<()>
where
    C: redis::aio::ConnectionLike + Send + Sync,
{
    conn.set(geolocation_key(prefix), if on { "on" } else { "off" })
        .await
}

/// What the workers last published.
pub async fn geolocation<C>(conn: &mut C, prefix: &str) -> redis::RedisResult<Geolocation>
where
    C: redis::aio::ConnectionLike + Send + Sync,
{
    let value: Option<String> = conn.get(geolocation_key(prefix)).await?;
    Ok(match value.as_deref() {
        Some("on") => Geolocation::On,
        Some("off") => Geolocation::Off,
        _ => Geolocation::Unknown,
    })
}
