//! The geolocation cache in Redis, shared by every worker.
//!
//! Keys (only parsed `IpAddr`s, printed canonically, ever go into a key):
//! - `{prefix}:geo:loc:{ip}`: the JSON [`Lookup`], for `IPTRACK_GEO_CACHE_TTL_SECS` when
//!   found, `IPTRACK_GEO_NOT_FOUND_TTL_SECS` when not;
//! - `{prefix}:geo:claim:{ip}`: `SET NX EX IPTRACK_GEO_CLAIM_SECS` by the one worker that
//!   will have the address looked up; the others see it taken.

use std::{net::IpAddr, time::Duration};

use iptrack_core::settings::GeoSettings;
use redis::aio::ConnectionManager;

use super::Lookup;

/// A handle on the cache; cheap to clone.
#[derive(Debug, Clone)]
pub struct GeoCache {
    conn: ConnectionManager,
    prefix: String,
    found_ttl: Duration,
    not_found_ttl: Duration,
    claim_ttl: Duration,
}

impl GeoCache {
    pub fn new(conn: ConnectionManager, redis_prefix: &str, settings: &GeoSettings) -> Self {
        Self {
            conn,
            prefix: redis_prefix.to_owned(),
            found_ttl: settings.cache_ttl,
            not_found_ttl: settings.not_found_ttl,
            claim_ttl: settings.claim_ttl,
        }
    }

    /// `{prefix}:geo:loc:{ip}`.
    pub fn location_key(&self, ip: IpAddr) -> String {
        format!("{}:geo:loc:{ip}", self.prefix)
    }

    /// `{prefix}:geo:claim:{ip}`.
    pub fn claim_key(&self, ip: IpAddr) -> String {
        format!("{}:geo:claim:{ip}", self.prefix)
    }

    /// The cached answers for `addresses` (one MGET), `None` where nothing is cached. An
    /// unreadable entry (written by a different version) counts as not cached.
    pub async fn get_many(
        &self,
        addresses: &[IpAddr],
    ) -> Result<Vec<Option<Lookup>>, redis::RedisError> {
        if addresses.is_empty() {
            return Ok(Vec::new());
        }
        let mut command = redis::cmd("MGET");
        for ip in addresses {
            command.arg(self.location_key(*ip));
        }
        let mut conn = self.conn.clone();
        let values: Vec<Option<Vec<u8>>> = command.query_async(&mut conn).await?;
        Ok(values
            .into_iter()
            .map(|v| v.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
            .collect())
    }

    /// Caches each answer with its lifetime, in one pipeline.
    pub async fn put_many(&self, answers: &[(IpAddr, Lookup)]) -> Result<(), redis::RedisError> {
        if answers.is_empty() {
            return Ok(());
        }
        let pipe = self.put_pipeline(answers);
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await
    }

    fn put_pipeline(&self, answers: &[(IpAddr, Lookup)]) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        for (ip, lookup) in answers {
            let ttl = match lookup {
                Lookup::Found(_) => self.found_ttl,
                Lookup::NotFound => self.not_found_ttl,
            };
            let value = serde_json::to_vec(lookup).unwrap_or_default();
            pipe.set_ex(self.location_key(*ip), value, ttl.as_secs().max(1))
                .ignore();
        }
        pipe
    }

    /// Claims each address for lookup (`SET NX EX`, one pipeline); returns, in order,
    /// whether this call won the claim. Across the cluster one caller wins per claim TTL.
    pub async fn claim_many(&self, addresses: &[IpAddr]) -> Result<Vec<bool>, redis::RedisError> {
        if addresses.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for &ip in addresses {
            pipe.cmd("SET")
                .arg(self.claim_key(ip))
                .arg(1)
                .arg("NX")
                .arg("EX")
                .arg(self.claim_ttl.as_secs().max(1));
        }
        let mut conn = self.conn.clone();
        let replies: Vec<Option<String>> = pipe.query_async(&mut conn).await?;
        Ok(replies.into_iter().map(|r| r.is_some()).collect())
    }

    /// Gives claims back, so that the next batch that sees these addresses claims them at
    /// once instead of after the claim TTL (used when pushing their job failed).
    pub async fn release(&self, addresses: &[IpAddr]) -> Result<(), redis::RedisError> {
        if addresses.is_empty() {
            return Ok(());
        }
        let mut command = redis::cmd("DEL");
        for ip in addresses {
            command.arg(self.claim_key(*ip));
        }
        let mut conn = self.conn.clone();
        command.query_async::<()>(&mut conn).await
    }
}
