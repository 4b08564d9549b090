//! What the request-log job does about location, around its insert, and what the
//! geolocate job does. Neither ever waits on a provider before rows are stored.
//!
//! Order (docs/ARCHITECTURE.md, "Geolocation"):
//! 1. before the insert, one MGET of the batch's distinct public addresses: cached
//!    locations go straight into the new rows;
//! 2. the batch commits;
//! 3. addresses with nothing cached are claimed (`SET NX EX`, cluster-wide); the ones this
//!    worker wins are pushed as `geolocate` jobs;
//! 4. for the ones another worker had claimed, the cache is read again, and a location
//!    found there is written onto this batch's rows.
//!
//! The geolocate job writes the cache *before* it updates rows. So for a batch that
//! commits while another worker's lookup of the same address is in flight, either step 4
//! sees the cached answer, or that job's UPDATE (which comes after its cache write, which
//! comes after step 4's read, which comes after the commit) sees the rows.

use std::{collections::HashMap, net::IpAddr};

use iptrack_core::{
    job_metrics,
    jobs::{GEOLOCATE_MAX_ADDRESSES, GEOLOCATE_QUEUE, GeolocateAddresses, LogEvent},
    queue::{self, JobQueue},
    settings::{GeoSettings, WorkerSettings},
};
use iptrack_entity::request_log;
use redis::aio::ConnectionManager;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, sea_query::Expr};

use super::{GeoCache, GeoProvider, GeoSetupError, GeoStats, Location, Lookup, is_public};

/// Geolocation as the jobs use it: provider, cache, the geolocate queue and counters.
#[derive(Debug)]
pub struct Geo {
    pub provider: GeoProvider,
    pub cache: GeoCache,
    queue: JobQueue<GeolocateAddresses>,
    pub stats: GeoStats,
    /// For the cluster-wide hit and miss counters `/metrics` shows.
    metrics: (ConnectionManager, String),
}

/// What the cache said about a batch's addresses before its insert.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Cached locations, written into the new rows.
    pub located: HashMap<IpAddr, Location>,
    /// Public addresses with nothing cached: to be claimed after the commit.
    pub unknown: Vec<IpAddr>,
}

/// What happened after the commit.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AfterCommit {
    /// Addresses this worker claimed and pushed for lookup.
    pub enqueued: usize,
    /// The same addresses (a benchmark runs their lookup at once, without a queue).
    pub claimed: Vec<IpAddr>,
    /// Addresses claimed elsewhere whose location was cached by now and written here.
    pub filled: usize,
}

impl Geo {
    /// Geolocation as `settings` configure it; `None` when it is off. Keys live under
    /// `redis_prefix`; `worker` sets the geolocate queue's heartbeat.
    pub fn from_settings(
        settings: &GeoSettings,
        redis_prefix: &str,
        worker: &WorkerSettings,
        conn: ConnectionManager,
    ) -> Result<Option<Self>, GeoSetupError> {
        Ok(GeoProvider::from_settings(settings)?
            .map(|provider| Self::new(provider, settings, redis_prefix, worker, conn)))
    }

    pub fn new(
        provider: GeoProvider,
        settings: &GeoSettings,
        redis_prefix: &str,
        worker: &WorkerSettings,
        conn: ConnectionManager,
    ) -> Self {
        let config = queue::queue_config(redis_prefix, worker, GEOLOCATE_QUEUE);
        Self {
            provider,
            cache: GeoCache::new(conn.clone(), redis_prefix, settings),
            queue: JobQueue::new(conn.clone(), config),
            stats: GeoStats::default(),
            metrics: (conn, redis_prefix.to_owned()),
        }
    }

    /// Step 1: the cache's answers for the batch's distinct public addresses. Redis
    /// trouble is logged and leaves every address unknown: the rows are stored anyway.
    pub async fn before_insert(&self, events: &[LogEvent]) -> Prepared {
        let mut addresses: Vec<IpAddr> = events
            .iter()
            .map(|e| e.ip)
            .filter(|&ip| is_public(ip))
            .collect();
        addresses.sort_unstable();
        addresses.dedup();
        let cached = match self.cache.get_many(&addresses).await {
            Ok(cached) => cached,
            Err(error) => {
                tracing::warn!(%error, "geo cache unreadable; storing rows without location");
                vec![None; addresses.len()]
            }
        };
        let distinct = addresses.len();
        let mut prepared = Prepared::default();
        for (ip, answer) in addresses.into_iter().zip(cached) {
            match answer {
                Some(Lookup::Found(location)) => {
                    prepared.located.insert(ip, location);
                }
                Some(Lookup::NotFound) => {}
                None => prepared.unknown.push(ip),
            }
        }
        let (hits, misses) = (distinct - prepared.unknown.len(), prepared.unknown.len());
        GeoStats::add(&self.stats.cache_hits, hits);
        GeoStats::add(&self.stats.cache_misses, misses);
        let (mut conn, prefix) = self.metrics.clone();
        // A lost sample is all a metrics failure costs; the batch is stored regardless.
        if let Err(error) =
            job_metrics::record_geo_cache(&mut conn, &prefix, hits as u64, misses as u64).await
        {
            tracing::debug!("geo cache counters not recorded: {error}");
        }
        prepared
    }

    /// Steps 3 and 4, after the batch committed. Failures are logged, not returned: the
    /// rows are stored, and an address left without a job is claimed again after
    /// `IPTRACK_GEO_CLAIM_SECS`.
    pub async fn after_commit(&self, db: &DatabaseConnection, prepared: &Prepared) -> AfterCommit {
        match self.claim_and_fill(db, &prepared.unknown).await {
            Ok(done) => done,
            Err(error) => {
                tracing::warn!("geolocation after insert incomplete: {error:#}");
                AfterCommit::default()
            }
        }
    }

    async fn claim_and_fill(
        &self,
        db: &DatabaseConnection,
        unknown: &[IpAddr],
    ) -> anyhow::Result<AfterCommit> {
        let won = self.cache.claim_many(unknown).await?;
        let (mut mine, mut theirs) = (Vec::new(), Vec::new());
        for (&ip, won) in unknown.iter().zip(won) {
            if won { mine.push(ip) } else { theirs.push(ip) }
        }

        let jobs: Vec<GeolocateAddresses> = mine
            .chunks(GEOLOCATE_MAX_ADDRESSES)
            .map(|chunk| GeolocateAddresses {
                addresses: chunk.to_vec(),
            })
            .collect();
        if let Err(error) = self.queue.clone().push(&jobs).await {
            // Give the claims back so the next batch with these addresses tries again.
            if let Err(release) = self.cache.release(&mine).await {
                tracing::debug!(%release, "cannot release geo claims");
            }
            return Err(anyhow::Error::new(error).context("cannot enqueue geolocate jobs"));
        }

        let mut filled = 0;
        let cached = self.cache.get_many(&theirs).await?;
        for (ip, answer) in theirs.into_iter().zip(cached) {
            if let Some(Lookup::Found(location)) = answer {
                fill_rows(db, ip, &location).await?;
                filled += 1;
            }
        }
        Ok(AfterCommit {
            enqueued: mine.len(),
            claimed: mine,
            filled,
        })
    }

    /// The geolocate job's work: look up (cached answers are reused, so a re-delivered job
    /// makes no second call), write the cache, then fill in the rows still without
    /// location. Returns how many addresses were found.
    pub async fn locate(
        &self,
        db: &DatabaseConnection,
        addresses: &[IpAddr],
    ) -> anyhow::Result<usize> {
        // Defence in depth: a job is only ever pushed with public addresses.
        let addresses: Vec<IpAddr> = addresses
            .iter()
            .copied()
            .filter(|&ip| is_public(ip))
            .collect();
        let cached = self.cache.get_many(&addresses).await?;
        let mut answers: Vec<(IpAddr, Lookup)> = Vec::with_capacity(addresses.len());
        let mut to_ask = Vec::new();
        for (ip, answer) in addresses.iter().copied().zip(cached) {
            match answer {
                Some(lookup) => answers.push((ip, lookup)),
                None => to_ask.push(ip),
            }
        }
        if !to_ask.is_empty() {
            GeoStats::add(&self.stats.lookups, to_ask.len());
            let found = match self.provider.lookup_many(&to_ask).await {
                Ok(found) => found,
                Err(error) => {
                    GeoStats::add(&self.stats.lookup_failures, to_ask.len());
                    return Err(error.into());
                }
            };
            let fresh: Vec<(IpAddr, Lookup)> = to_ask.into_iter().zip(found).collect();
            // The cache first, then the rows: see the module documentation.
            self.cache.put_many(&fresh).await?;
            answers.extend(fresh);
        }
        let mut located = 0;
        for (ip, answer) in answers {
            if let Lookup::Found(location) = answer {
                fill_rows(db, ip, &location).await?;
                located += 1;
            }
        }
        Ok(located)
    }
}

/// Writes `location` onto `ip`'s rows that have none yet.
pub async fn fill_rows(
    db: &DatabaseConnection,
    ip: IpAddr,
    location: &Location,
) -> Result<u64, DbErr> {
    use request_log::Column;
    let result = request_log::Entity::update_many()
        .col_expr(
            Column::CountryCode,
            Expr::value(location.country_code.clone()),
        )
        .col_expr(Column::Country, Expr::value(location.country.clone()))
        .col_expr(Column::City, Expr::value(location.city.clone()))
        .filter(Column::IpAddress.eq(ip.to_string()))
        .filter(Column::CountryCode.eq(""))
        .filter(Column::City.eq(""))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}
