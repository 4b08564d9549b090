//! `geolocate`: look up up to 100 claimed addresses, cache the answers, fill in the rows.
//!
//! Pushed by the request-log job for the addresses it claimed (see `geo::enrich`). A
//! provider failure fails the job and apalis retries it with back-off; the rows are
//! already stored and simply wait for their location.

use apalis::prelude::{BoxDynError, Data};
use iptrack_core::jobs::GeolocateAddresses;

use crate::context::JobContext;

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
