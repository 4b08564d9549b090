//! `request-logs`: write one batch of logged requests to `request_log`.
//!
//! Idempotent by batch id: the id goes into `log_batch` in the same transaction as the rows.
//! A batch delivered again (a killed worker's jobs are re-queued; a push whose reply was
//! lost is retried) finds its id taken and writes nothing.

use std::{collections::HashMap, net::IpAddr};

use anyhow::Context;
use apalis::prelude::{BoxDynError, Data};
use chrono::Utc;
use iptrack_core::jobs::{LogEvent, RequestLogBatch};
use iptrack_entity::{log_batch, request_log};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    DatabaseConnection, EntityTrait, TransactionTrait, TryInsertResult,
};

use crate::{
    context::JobContext,
    geo::{Location, enrich::Prepared},
};

/// Rows per INSERT statement: 9 columns × 5,000 stays under PostgreSQL's 65,535 bind
/// parameters; larger batches are written in several statements of one transaction.
const ROWS_PER_STATEMENT: usize = 5_000;

/// What writing a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// The batch's rows were inserted.
    Rows(u64),
    /// The batch had been written before; nothing was inserted.
    AlreadyWritten,
}

/// The apalis handler. With geolocation on, cached locations go into the rows and the
/// rest is handed to the `geolocate` queue after the commit (see `geo::enrich`); nothing
/// here waits on a provider.
pub async fn handle(batch: RequestLogBatch, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    let prepared = match &ctx.geo {
        Some(geo) => geo.before_insert(&batch.events).await,
        None => Prepared::default(),
    };
    match ingest_located(&ctx.db, &batch, &prepared.located).await {
        Ok(Ingested::Rows(rows)) => {
            tracing::debug!(batch_id = %batch.batch_id, rows, "request-log batch written");
        }
        Ok(Ingested::AlreadyWritten) => {
            // Still run the geolocation step: the first delivery may have died between
            // its commit and its claims.
            tracing::info!(batch_id = %batch.batch_id, "request-log batch delivered again; already written");
        }
        Err(error) => {
            // Logged here, once; apalis re-schedules the job with back-off.
            tracing::warn!(batch_id = %batch.batch_id, "request-log batch not written: {error:#}");
            return Err(error.into());
        }
    }
    if let Some(geo) = &ctx.geo {
        geo.after_commit(&ctx.db, &prepared).await;
    }
    Ok(())
}

/// Writes `batch` in one transaction unless it was written before.
pub async fn ingest(db: &DatabaseConnection, batch: &RequestLogBatch) -> anyhow::Result<Ingested> {
    ingest_located(db, batch, &HashMap::new()).await
}

/// [`ingest`], with the locations already known for some addresses written into their rows.
pub async fn ingest_located(
    db: &DatabaseConnection,
    batch: &RequestLogBatch,
    located: &HashMap<IpAddr, Location>,
) -> anyhow::Result<Ingested> {
    let txn = db.begin().await.context("cannot begin a transaction")?;
    let claim = log_batch::Entity::insert(log_batch::ActiveModel {
        batch_id: Set(batch.batch_id.to_string()),
        events: Set(i32::try_from(batch.events.len()).unwrap_or(i32::MAX)),
        ingested_at: Set(Utc::now()),
    })
    .on_conflict_do_nothing_on([log_batch::Column::BatchId])
    .exec_without_returning(&txn)
    .await
    .context("cannot record the batch id")?;
    if !matches!(claim, TryInsertResult::Inserted(n) if n > 0) {
        txn.rollback().await.context("cannot roll back")?;
        return Ok(Ingested::AlreadyWritten);
    }
    let mut rows = 0;
    for chunk in batch.events.chunks(ROWS_PER_STATEMENT) {
        rows += request_log::Entity::insert_many(chunk.iter().map(|e| to_row(e, located)))
            .exec_without_returning(&txn)
            .await
            .context("cannot insert request_log rows")?;
    }
    txn.commit().await.context("cannot commit the batch")?;
    Ok(Ingested::Rows(rows))
}

fn to_row(event: &LogEvent, located: &HashMap<IpAddr, Location>) -> request_log::ActiveModel {
    // Empty while unknown: the geolocate job fills them in. Always set (never NotSet) so
    // every row of a multi-row INSERT has the same columns.
    let location = located.get(&event.ip);
    let column = |field: fn(&Location) -> &String| {
        Set(location.map(|l| field(l).clone()).unwrap_or_default())
    };
    request_log::ActiveModel {
        id: NotSet,
        ip_address: Set(event.ip.to_string()),
        timestamp: Set(event.timestamp),
        method: Set(event.method.clone()),
        path: Set(event.path.clone()),
        status: Set(i32::from(event.status)),
        duration_us: Set(i64::try_from(event.duration_us).unwrap_or(i64::MAX)),
        user_agent: Set(event.user_agent.clone()),
        user_id: Set(event.user_id.clone().unwrap_or_default()),
        query_string: Set(event.query_string.clone().unwrap_or_default()),
        country_code: column(|l| &l.country_code),
        country: column(|l| &l.country),
        city: column(|l| &l.city),
    }
}
