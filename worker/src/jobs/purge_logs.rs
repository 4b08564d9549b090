//! `purge-logs`: delete request logs (and the batch ids that guard against re-delivery, and
//! the hourly counts of hours wholly purged) older than the retention, in bounded batches
//! so no statement locks a table for long.
//!
//! On PostgreSQL, where `request_log` is partitioned
//! (`iptrack_migration::request_log_partitions`), it first keeps the partitions: drops
//! every partition wholly older than the retention (instant, no dead rows left behind),
//! and makes the partitions of the days ahead (`PREMAKE_DAYS`) and of any day of the
//! retention left without one, in periods of `IPTRACK_LOG_PARTITION`, moving the rows the
//! DEFAULT partition holds for them. Only the remainder (the boundary partition's old
//! rows, old rows in the DEFAULT partition) is deleted row by row. Workers running it at
//! once take turns on an advisory lock; each finds the other's work done.

use anyhow::Context;
use apalis::prelude::{BoxDynError, Data};
use chrono::{DateTime, Utc};
use iptrack_core::{jobs::PurgeLogs, settings::LogPartition};
use iptrack_entity::{log_batch, request_count, request_log};
use iptrack_migration::request_log_partitions::{
    self as partitions, Created, PREMAKE_DAYS, midnight,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect,
    TransactionTrait,
};

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
    match purge(&ctx.db, &job, ctx.rules.log_partition, Utc::now()).await {
        Ok(purged) => {
            tracing::info!(
                older_than = %job.older_than,
                deleted = purged.deleted_rows,
                dropped_partitions = ?purged.dropped_partitions,
                created_partitions = ?purged.created_partitions.iter().map(|c| &c.name).collect::<Vec<_>>(),
                moved_from_default = purged.created_partitions.iter().map(|c| c.moved_rows).sum::<u64>(),
                "old request logs purged"
            );
            Ok(())
        }
        Err(error) => {
            tracing::warn!(older_than = %job.older_than, "purge failed: {error:#}");
            Err(error.into())
        }
    }
}

/// Key of the advisory lock purge jobs take turns on while they change partitions (the
/// flag job's is 7346127001, the blocklist service's 7346127002).
const PARTITIONS_LOCK: i64 = 7_346_127_003;

/// Longest wait for a table lock while changing partitions: a query holding
/// `request_log` longer fails the job (retried) rather than queueing every writer behind it.
const PARTITION_LOCK_TIMEOUT: &str = "10s";

/// What one purge did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Purged {
    /// Rows deleted one by one (not those of dropped partitions).
    pub deleted_rows: u64,
    /// Partitions dropped whole (PostgreSQL).
    pub dropped_partitions: Vec<String>,
    /// Partitions made ahead, or for rows found in the DEFAULT partition (PostgreSQL).
    pub created_partitions: Vec<Created>,
}

/// Deletes what `job` names and, on a partitioned `request_log`, keeps its partitions in
/// periods of `period` with `now` as today.
pub async fn purge(
    db: &DatabaseConnection,
    job: &PurgeLogs,
    period: LogPartition,
    now: DateTime<Utc>,
) -> anyhow::Result<Purged> {
    let mut purged = Purged::default();
    if partitions::is_partitioned(db)
        .await
        .context("cannot tell whether request_log is partitioned")?
    {
        purged.dropped_partitions = drop_old_partitions(db, job.older_than).await?;
        purged.created_partitions = make_partitions(db, job.older_than, period, now).await?;
    }
    purged.deleted_rows = delete_old_rows(db, job).await?;
    Ok(purged)
}

/// Starts a transaction that changes partitions: bounded lock waits, one purge at a time.
async fn partition_transaction(
    db: &DatabaseConnection,
) -> anyhow::Result<sea_orm::DatabaseTransaction> {
    let txn = db.begin().await.context("cannot begin")?;
    // The turn first, without a timeout (the other purge's waits are bounded), then the
    // bound on table locks.
    txn.execute_unprepared(&format!(
        "SELECT pg_advisory_xact_lock({PARTITIONS_LOCK}); \
         SET LOCAL lock_timeout = '{PARTITION_LOCK_TIMEOUT}'"
    ))
    .await
    .context("cannot take the partitions lock")?;
    Ok(txn)
}

/// Drops the partitions iptrack made whose whole range is older than `older_than`.
async fn drop_old_partitions(
    db: &DatabaseConnection,
    older_than: DateTime<Utc>,
) -> anyhow::Result<Vec<String>> {
    let txn = partition_transaction(db).await?;
    let old: Vec<String> = partitions::list(&txn)
        .await
        .context("cannot list request_log partitions")?
        .into_iter()
        .filter(|p| p.is_managed() && p.end.is_some_and(|end| end <= older_than))
        .map(|p| p.name)
        .collect();
    if !old.is_empty() {
        // The parent first, as every query takes it: dropping a partition locks the
        // parent too, and taking them the other way round could deadlock with a reader.
        txn.execute_unprepared("LOCK TABLE request_log IN ACCESS EXCLUSIVE MODE")
            .await
            .context("cannot lock request_log")?;
        for name in &old {
            // `name` is iptrack's own (`is_managed`: the prefix and a date).
            txn.execute_unprepared(&format!("DROP TABLE {name}"))
                .await
                .with_context(|| format!("cannot drop partition {name}"))?;
        }
    }
    txn.commit()
        .await
        .context("cannot commit dropped partitions")?;
    Ok(old)
}

/// Makes the partitions missing from the retention's first day to [`PREMAKE_DAYS`] after
/// `now`, moving the DEFAULT partition's rows of their ranges into them: the days ahead
/// (premake), and any days left without a partition while no purge ran. Rows further ahead
/// stay in the DEFAULT partition until their days come within reach.
async fn make_partitions(
    db: &DatabaseConnection,
    older_than: DateTime<Utc>,
    period: LogPartition,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Created>> {
    let txn = partition_transaction(db).await?;
    partitions::lock_for_create(&txn)
        .await
        .context("cannot lock request_log for new partitions")?;
    let from = midnight(older_than.date_naive());
    let until = midnight(now.date_naive()) + chrono::Duration::days(PREMAKE_DAYS + 1);
    let created = partitions::cover(&txn, from, until, |day| period.next_start(day))
        .await
        .context("cannot make request_log partitions")?;
    txn.commit().await.context("cannot commit new partitions")?;
    Ok(created)
}

/// The old rows that are left (all of them on SQLite), in batches of [`DELETE_BATCH`];
/// returns the number of request_log rows deleted.
async fn delete_old_rows(db: &DatabaseConnection, job: &PurgeLogs) -> anyhow::Result<u64> {
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
            // The time bound too: on PostgreSQL it limits the delete to the partitions
            // that can hold old rows instead of probing every partition for each id.
            .filter(request_log::Column::Timestamp.lt(job.older_than))
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
    // holds a row per address and section: bounded by the requests of that hour). Pending
    // counts are folded first, so none of a purged hour comes back after it.
    crate::count_fold::fold_all(db)
        .await
        .context("cannot fold pending counts")?;
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
