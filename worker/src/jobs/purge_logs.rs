//! `purge-logs`: delete request logs (and the batch ids that guard against re-delivery, and
//! the hourly counts of hours wholly purged) older than the retention, in bounded batches
//! so no statement locks a table for long.

use anyhow::Context;
use apalis::prelude::{BoxDynError, Data};
use chrono::{DateTime, Utc};
use iptrack_core::jobs::PurgeLogs;
use iptrack_entity::{log_batch, request_count, request_log};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};

use crate::context::JobContext;

/// Rows deleted per statement.
pub const DELETE_BATCH: u64 = 10_000;

/// The apalis handler: the job, timed and counted in the cluster-wide job metrics.
pub async fn handle(job: PurgeLogs, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    let started = std::time::Instant::now();
    let result = run(job, ctx.clone()).await;
    super::record_outcome(
        &ctx,
        iptrack_core::jobs::PURGE_LOGS_QUEUE,
        started,
        result.is_ok(),
    )
    .await;
    result
}

async fn run(job: PurgeLogs, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    match purge(&ctx.db, &job).await {
        Ok(deleted) => {
            tracing::info!(older_than = %job.older_than, deleted, "old request logs purged");
            Ok(())
        }
        Err(error) => {
            tracing::warn!(older_than = %job.older_than, "purge failed: {error:#}");
            Err(error.into())
        }
    }
}

/// Deletes what `job` names; returns the number of request_log rows deleted.
pub async fn purge(db: &DatabaseConnection, job: &PurgeLogs) -> anyhow::Result<u64> {
    let mut deleted = 0;
    loop {
        let ids: Vec<i64> = request_log::Entity::find()
            .select_only()
            .column(request_log::Column::Id)
            .filter(request_log::Column::Timestamp.lt(job.older_than))
            .limit(DELETE_BATCH)
            .into_tuple()
            .all(db)
            .await
            .context("cannot select old request logs")?;
        if ids.is_empty() {
            break;
        }
        deleted += request_log::Entity::delete_many()
            .filter(request_log::Column::Id.is_in(ids))
            .exec(db)
            .await
            .context("cannot delete old request logs")?
            .rows_affected;
    }
    loop {
        let ids: Vec<String> = log_batch::Entity::find()
            .select_only()
            .column(log_batch::Column::BatchId)
            .filter(log_batch::Column::IngestedAt.lt(job.older_than))
            .limit(DELETE_BATCH)
            .into_tuple()
            .all(db)
            .await
            .context("cannot select old batch ids")?;
        if ids.is_empty() {
            break;
        }
        log_batch::Entity::delete_many()
            .filter(log_batch::Column::BatchId.is_in(ids))
            .exec(db)
            .await
            .context("cannot delete old batch ids")?;
    }
    // An hour's counts go when the whole hour is purged, one hour per statement (an hour
    // holds a row per address and section: bounded by the requests of that hour).
    let last_hour = job.older_than - chrono::Duration::hours(1);
    loop {
        let oldest: Option<DateTime<Utc>> = request_count::Entity::find()
            .select_only()
            .column_as(request_count::Column::HourStart.min(), "oldest")
            .into_tuple()
            .one(db)
            .await
            .context("cannot find the oldest request counts")?
            .flatten();
        match oldest {
            Some(hour) if hour <= last_hour => {
                request_count::Entity::delete_many()
                    .filter(request_count::Column::HourStart.eq(hour))
                    .exec(db)
                    .await
                    .context("cannot delete old request counts")?;
            }
            _ => break,
        }
    }
    super::request_summaries::purge_pre_aggregates(db, job.older_than).await?;
    Ok(deleted)
}
