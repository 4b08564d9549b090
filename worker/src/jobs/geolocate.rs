//! `geolocate`: look up up to 100 claimed addresses, cache the answers, fill in the rows.
//!
//! Pushed by the request-log job for the addresses it claimed (see `request_logs`). A
//! provider failure fails the job and apalis retries it with back-off; the rows are
//! already stored and simply wait for their location.

use std::net::IpAddr;

use apalis::prelude::{BoxDynError, Data};
use iptrack_core::jobs::GeolocateAddresses;
use iptrack_entity::request_log;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, sea_query::Expr};

use crate::{
    context::JobContext,
    geo::{Geo, Location, Lookup, is_public},
};

/// The apalis handler: the job, timed and counted in the cluster-wide job metrics.
pub async fn handle(job: GeolocateAddresses, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    let started = std::time::Instant::now();
    let result = run(job, &ctx).await;
    super::record_outcome(
        &ctx,
        iptrack_core::jobs::GEOLOCATE_QUEUE,
        started,
        result.is_ok(),
    )
    .await;
    result
}

async fn run(job: GeolocateAddresses, ctx: &JobContext) -> Result<(), BoxDynError> {
    let Some(geo) = ctx.geo.as_ref() else {
        // Pushed while geolocation was on, fetched by a worker where it is off.
        tracing::info!(
            addresses = job.addresses.len(),
            "geolocation is off; job dropped"
        );
        return Ok(());
    };
    match geo.locate(&ctx.db, &job.addresses).await {
        Ok(found) => {
            tracing::debug!(
                addresses = job.addresses.len(),
                found,
                "addresses geolocated"
            );
            Ok(())
        }
        Err(error) => {
            tracing::warn!(
                addresses = job.addresses.len(),
                "geolocation failed; apalis retries: {error:#}"
            );
            Err(error.into())
        }
    }
}

impl Geo {
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
            let found = self.provider.lookup_many(&to_ask).await?;
            let fresh: Vec<(IpAddr, Lookup)> = to_ask.into_iter().zip(found).collect();
            // The cache first, then the rows: see `request_logs`' module documentation.
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

/// Writes `location` onto `ip`'s rows that have none yet (this job's answers, and the
/// request-log job's step 4 with answers another worker cached).
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
