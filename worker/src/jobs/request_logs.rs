//! `request-logs`: write one batch of logged requests to `request_log`.
//!
//! Idempotent by batch id: the id goes into `log_batch` in the same transaction as the rows.
//! A batch delivered again (a killed worker's jobs are re-queued; a push whose reply was
//! lost is retried) finds its id taken and writes nothing.

use std::{collections::HashMap, net::IpAddr};

use anyhow::Context;
use apalis::prelude::{BoxDynError, Data};
use chrono::Utc;
use iptrack_core::jobs::{LogEvent, RequestLogBatch, bounded_method};
use iptrack_entity::{log_batch, request_log};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, EntityTrait, Statement,
    TransactionTrait, TryInsertResult, Value,
};

use crate::{
    context::JobContext,
    geo::{Location, enrich::Prepared},
};

/// Rows per multi-row INSERT (SQLite): 12 columns × 2,500 stays under SQLite's 32,766 bind
/// parameters; larger batches are written in several statements of one transaction.
const ROWS_PER_STATEMENT: usize = 2_500;

/// What writing a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// The batch's rows were inserted.
    Rows(u64),
    /// The batch had been written before; nothing was inserted.
    AlreadyWritten,
}

/// The apalis handler: the job, timed and counted in the cluster-wide job metrics.
///
/// The job runs on a task of its own, so it finishes even when apalis drops this future
/// (an apalis-redis worker ends at its first Redis error, dropping the jobs it runs). A
/// future dropped during sqlx 0.9.0's `BEGIN` returns its pooled connection inside an open
/// transaction (launchbadge/sqlx#4393); every later statement on that connection, a
/// geolocation update say, would then run in that transaction and hold its locks until
/// some commit on the connection, or be lost with it. A finished batch stays idempotent:
/// its re-delivery after orphan recovery finds the batch id and writes nothing.
pub async fn handle(batch: RequestLogBatch, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    let started = std::time::Instant::now();
    let result = match tokio::spawn(run(batch, ctx.clone())).await {
        Ok(result) => result,
        Err(error) => Err(format!("request-log job task failed: {error}").into()),
    };
    super::record_outcome(
        &ctx,
        iptrack_core::jobs::REQUEST_LOGS_QUEUE,
        started,
        result.is_ok(),
    )
    .await;
    result
}

/// With geolocation on, cached locations go into the rows and the rest is handed to the
/// `geolocate` queue after the commit (see `geo::enrich`); nothing here waits on a provider.
async fn run(batch: RequestLogBatch, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
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
    let rows = match txn.get_database_backend() {
        DbBackend::Postgres => insert_unnest(&txn, &batch.events, located).await?,
        _ => insert_many(&txn, &batch.events, located).await?,
    };
    txn.commit().await.context("cannot commit the batch")?;
    Ok(Ingested::Rows(rows))
}

/// Multi-row INSERTs of up to [`ROWS_PER_STATEMENT`] rows (SQLite).
async fn insert_many(
    txn: &DatabaseTransaction,
    events: &[LogEvent],
    located: &HashMap<IpAddr, Location>,
) -> anyhow::Result<u64> {
    let mut rows = 0;
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        rows += request_log::Entity::insert_many(chunk.iter().map(|e| to_row(e, located)))
            .exec_without_returning(txn)
            .await
            .context("cannot insert request_log rows")?;
    }
    Ok(rows)
}

/// The whole batch as one `INSERT … SELECT FROM UNNEST` of twelve arrays (PostgreSQL).
/// Twelve bind parameters instead of twelve per row: PostgreSQL parses and plans one small
/// statement, and no batch size runs into the 65,535-parameter limit. It runs inside the
/// batch's transaction, which `COPY` through SeaORM cannot.
async fn insert_unnest(
    txn: &DatabaseTransaction,
    events: &[LogEvent],
    located: &HashMap<IpAddr, Location>,
) -> anyhow::Result<u64> {
    let text = |f: &dyn Fn(&LogEvent) -> String| -> Value {
        events.iter().map(f).collect::<Vec<_>>().into()
    };
    // Empty while unknown: the geolocate job fills them in.
    let place = |field: fn(&Location) -> &String| -> Value {
        text(&|e: &LogEvent| located.get(&e.ip).map(field).cloned().unwrap_or_default())
    };
    let values = [
        text(&|e| e.ip.to_string()),
        events
            .iter()
            .map(|e| e.timestamp)
            .collect::<Vec<_>>()
            .into(),
        // Bounded again here: a queued event may come from any producer of the queue.
        text(&|e| bounded_method(&e.method)),
        text(&|e| e.path.clone()),
        events
            .iter()
            .map(|e| i32::from(e.status))
            .collect::<Vec<_>>()
            .into(),
        events
            .iter()
            .map(|e| i64::try_from(e.duration_us).unwrap_or(i64::MAX))
            .collect::<Vec<_>>()
            .into(),
        text(&|e| e.user_agent.clone()),
        text(&|e| e.user_id.clone().unwrap_or_default()),
        text(&|e| e.query_string.clone().unwrap_or_default()),
        place(|l| &l.country_code),
        place(|l| &l.country),
        place(|l| &l.city),
    ];
    let result = txn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO request_log \
             (ip_address, timestamp, method, path, status, duration_us, user_agent, user_id, \
             query_string, country_code, country, city) \
             SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::text[], \
             $5::int4[], $6::int8[], $7::text[], $8::text[], $9::text[], $10::text[], \
             $11::text[], $12::text[])",
            values,
        ))
        .await
        .context("cannot insert request_log rows")?;
    Ok(result.rows_affected())
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
        method: Set(bounded_method(&event.method)),
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
