//! `request-summaries`: summarize each closed hour of the last 24 that has no current
//! summary, for the dashboard's figures that minute counts cannot give (top addresses and
//! paths, distinct addresses per country; `iptrack_entity::query::summaries` reads them).
//!
//! Per hour, in one transaction that reads one snapshot of the hour's rows (PostgreSQL
//! `REPEATABLE READ`; a SQLite transaction reads one snapshot already):
//! - the hour's rows and unlocated rows, stored with the summary: a reader uses it only
//!   while `request_rollup_hour` (exact) holds the same two numbers for the hour;
//! - the top [`SUMMARY_TOP`] addresses (with their country, 403 and 429) and paths;
//! - per located country, a HyperLogLog sketch of its distinct addresses.
//!
//! An hour is current when its summary's numbers equal the rollup's; otherwise (late rows,
//! locations filled in, a first run) it is summarized again, replacing the old summary.
//! Running the job twice leaves the same summaries as once. Pushed by the scheduler every
//! few minutes, once per tick cluster-wide.

use anyhow::Context;
use apalis::prelude::{BoxDynError, Data};
use chrono::{DateTime, Duration, Utc};
use iptrack_core::jobs::SummarizeRequests;
use iptrack_entity::query::{
    summaries::{self, AddressSketch, SUMMARY_TOP, encode_sketch},
    timeline::BucketSize,
};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, FromQueryResult,
    IsolationLevel, Statement, TransactionTrait, Value,
};

use crate::context::JobContext;

/// How far back the scheduled job looks for hours to summarize.
pub const LOOKBACK: Duration = Duration::hours(24);
/// Summary rows per INSERT: 6 columns × 1,000 stays well under SQLite's bind limit.
const ROWS_PER_STATEMENT: usize = 1_000;

/// The apalis handler: the job, timed and counted in the cluster-wide job metrics.
pub async fn handle(job: SummarizeRequests, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    let started = std::time::Instant::now();
    let result = match summarize_due(&ctx.db, job.now, LOOKBACK).await {
        Ok(hours) => {
            tracing::debug!(now = %job.now, hours, "request summaries written");
            Ok(())
        }
        Err(error) => {
            tracing::warn!(now = %job.now, "request summaries failed; apalis retries: {error:#}");
            Err(error.into())
        }
    };
    super::record_outcome(
        &ctx,
        iptrack_core::jobs::REQUEST_SUMMARIES_QUEUE,
        started,
        result.is_ok(),
    )
    .await;
    result
}

/// Summarizes every closed hour of the `lookback` before `now` whose summary is missing
/// or no longer current. Returns how many hours it summarized. The scheduled job looks
/// back 24 hours; a benchmark that fills `request_log` directly looks back further.
pub async fn summarize_due(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    lookback: Duration,
) -> anyhow::Result<usize> {
    let to = BucketSize::Hour.floor(now);
    let from = BucketSize::Hour.floor(to - lookback);
    let (totals, stored) = futures::try_join!(
        summaries::hour_totals(db, from, to),
        summaries::stored(db, from, to),
    )
    .context("cannot read the hours' totals")?;
    let mut done = 0;
    for hour in totals {
        if stored.contains(&hour) {
            continue;
        }
        summarize_hour(db, hour.hour).await?;
        done += 1;
    }
    Ok(done)
}

#[derive(Debug, FromQueryResult)]
struct Totals {
    total_rows: i64,
    unlocated_rows: i64,
}

#[derive(Debug, FromQueryResult)]
struct AddressRow {
    ip_address: String,
    country_code: String,
    requests: i64,
    forbidden_403: i64,
    rate_limited_429: i64,
}

#[derive(Debug, FromQueryResult)]
struct PathRow {
    path: String,
    requests: i64,
}

#[derive(Debug, FromQueryResult)]
struct CountryAddress {
    country_code: String,
    ip_address: String,
}

/// Writes the summary of the hour starting at `hour`, replacing any older one.
pub async fn summarize_hour(db: &DatabaseConnection, hour: DateTime<Utc>) -> anyhow::Result<()> {
    let backend = db.get_database_backend();
    let isolation = (backend == DbBackend::Postgres).then_some(IsolationLevel::RepeatableRead);
    let txn = db
        .begin_with_config(isolation, None)
        .await
        .context("cannot begin a transaction")?;
    let end = hour + Duration::hours(1);
    let range: [Value; 2] = [hour.into(), end.into()];
    let select = |sql: String| Statement::from_sql_and_values(backend, sql, range.clone());
    let p = placeholders(backend);
    let in_hour = format!("\"timestamp\" >= {} AND \"timestamp\" < {}", p[0], p[1]);

    // The old summary goes first: on SQLite this takes the write lock before the reads, so
    // no writer can commit between them and this transaction's writes (a SQLite read
    // transaction overtaken by a writer cannot become a write transaction).
    for table in [
        "request_summary_address",
        "request_summary_path",
        "request_summary_country",
        "request_summary",
    ] {
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            format!("DELETE FROM {table} WHERE hour_start = {}", p[0]),
            [hour.into()],
        ))
        .await
        .with_context(|| format!("cannot replace {table}"))?;
    }

    let totals = Totals::find_by_statement(select(format!(
        "SELECT COUNT(*) AS total_rows, \
         COUNT(CASE WHEN country_code = '' THEN 1 END) AS unlocated_rows \
         FROM request_log WHERE {in_hour}"
    )))
    .one(&txn)
    .await
    .context("cannot count the hour's rows")?
    .context("a count gave no row")?;
    let addresses = AddressRow::find_by_statement(select(format!(
        "SELECT ip_address, MAX(country_code) AS country_code, COUNT(*) AS requests, \
         COUNT(CASE WHEN status = 403 THEN 1 END) AS forbidden_403, \
         COUNT(CASE WHEN status = 429 THEN 1 END) AS rate_limited_429 \
         FROM request_log WHERE {in_hour} GROUP BY ip_address \
         ORDER BY COUNT(*) DESC, ip_address LIMIT {SUMMARY_TOP}"
    )))
    .all(&txn)
    .await
    .context("cannot read the hour's top addresses")?;
    let paths = PathRow::find_by_statement(select(format!(
        "SELECT path, COUNT(*) AS requests FROM request_log WHERE {in_hour} GROUP BY path \
         ORDER BY COUNT(*) DESC, path LIMIT {SUMMARY_TOP}"
    )))
    .all(&txn)
    .await
    .context("cannot read the hour's top paths")?;
    let located = CountryAddress::find_by_statement(select(format!(
        "SELECT DISTINCT country_code, ip_address FROM request_log \
         WHERE {in_hour} AND country_code <> ''"
    )))
    .all(&txn)
    .await
    .context("cannot read the hour's addresses per country")?;

    let mut sketches: std::collections::BTreeMap<String, AddressSketch> = Default::default();
    for row in &located {
        sketches
            .entry(row.country_code.clone())
            .or_default()
            .insert(&row.ip_address);
    }

    insert_rows(
        &txn,
        "request_summary (hour_start, summarized_rows, unlocated_rows, summarized_at)",
        vec![vec![
            hour.into(),
            totals.total_rows.into(),
            totals.unlocated_rows.into(),
            Utc::now().into(),
        ]],
    )
    .await?;
    insert_rows(
        &txn,
        "request_summary_address \
         (hour_start, ip_address, country_code, requests, forbidden_403, rate_limited_429)",
        addresses
            .into_iter()
            .map(|row| {
                vec![
                    hour.into(),
                    row.ip_address.into(),
                    row.country_code.into(),
                    row.requests.into(),
                    row.forbidden_403.into(),
                    row.rate_limited_429.into(),
                ]
            })
            .collect(),
    )
    .await?;
    insert_rows(
        &txn,
        "request_summary_path (hour_start, path, requests)",
        paths
            .into_iter()
            .map(|row| vec![hour.into(), row.path.into(), row.requests.into()])
            .collect(),
    )
    .await?;
    let mut countries = Vec::with_capacity(sketches.len());
    for (code, sketch) in sketches {
        let bytes = encode_sketch(&sketch).context("cannot encode an address sketch")?;
        countries.push(vec![hour.into(), code.into(), bytes.into()]);
    }
    insert_rows(
        &txn,
        "request_summary_country (hour_start, country_code, addresses_sketch)",
        countries,
    )
    .await?;
    txn.commit().await.context("cannot commit a summary")?;
    Ok(())
}

/// `$1, $2` on PostgreSQL, `?, ?` on SQLite: the two bounds of an hour.
fn placeholders(backend: DbBackend) -> [&'static str; 2] {
    match backend {
        DbBackend::Postgres => ["$1", "$2"],
        _ => ["?", "?"],
    }
}

/// Multi-row INSERTs of `rows` into `target` (`table (columns)`).
async fn insert_rows(
    txn: &DatabaseTransaction,
    target: &str,
    rows: Vec<Vec<Value>>,
) -> anyhow::Result<()> {
    let backend = txn.get_database_backend();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut values = Vec::new();
        let mut tuples = Vec::with_capacity(chunk.len());
        for row in chunk {
            let marks: Vec<String> = row
                .iter()
                .map(|value| {
                    values.push(value.clone());
                    match backend {
                        DbBackend::Postgres => format!("${}", values.len()),
                        _ => "?".to_owned(),
                    }
                })
                .collect();
            tuples.push(format!("({})", marks.join(", ")));
        }
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            format!("INSERT INTO {target} VALUES {}", tuples.join(", ")),
            values,
        ))
        .await
        .with_context(|| format!("cannot insert into {target}"))?;
    }
    Ok(())
}

/// Deletes the pre-aggregates of what `purge-logs` deleted (rows older than
/// `older_than`): rollup minutes and hours wholly before it, the partial minute and hour
/// at the cutoff counted again from the rows left, and summaries of hours wholly before
/// it. At most a day of rollup per statement, so no statement holds its locks for long.
pub async fn purge_pre_aggregates(
    db: &DatabaseConnection,
    older_than: DateTime<Utc>,
) -> anyhow::Result<()> {
    let minute = BucketSize::Minute.floor(older_than);
    let hour = BucketSize::Hour.floor(older_than);
    delete_before(db, "request_rollup_minute", "minute", minute).await?;
    delete_before(db, "request_rollup_hour", "hour_start", hour).await?;
    if minute < older_than {
        recount(db, Rollup::Minute, minute, minute + Duration::minutes(1)).await?;
    }
    if hour < older_than {
        recount(db, Rollup::Hour, hour, hour + Duration::hours(1)).await?;
    }
    let backend = db.get_database_backend();
    let p = placeholders(backend);
    let last_hour = older_than - Duration::hours(1);
    for table in [
        "request_summary_address",
        "request_summary_path",
        "request_summary_country",
        "request_summary",
    ] {
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            format!("DELETE FROM {table} WHERE hour_start <= {}", p[0]),
            [last_hour.into()],
        ))
        .await
        .with_context(|| format!("cannot delete old rows of {table}"))?;
    }
    Ok(())
}

/// Deletes the rows of rollup `table` whose `column` (its time) is before `cutoff`, a day
/// at a time from the oldest.
async fn delete_before(
    db: &DatabaseConnection,
    table: &str,
    column: &str,
    cutoff: DateTime<Utc>,
) -> anyhow::Result<()> {
    let backend = db.get_database_backend();
    let p = placeholders(backend);
    loop {
        let oldest: Option<DateTime<Utc>> = db
            .query_one_raw(Statement::from_string(
                backend,
                format!("SELECT MIN({column}) AS oldest FROM {table}"),
            ))
            .await
            .with_context(|| format!("cannot find the oldest row of {table}"))?
            .and_then(|row| row.try_get::<Option<DateTime<Utc>>>("", "oldest").ok())
            .flatten();
        let Some(oldest) = oldest.filter(|oldest| *oldest < cutoff) else {
            return Ok(());
        };
        let end = (oldest + Duration::days(1)).min(cutoff);
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            format!("DELETE FROM {table} WHERE {column} < {}", p[0]),
            [end.into()],
        ))
        .await
        .with_context(|| format!("cannot delete old rows of {table}"))?;
    }
}

/// A rollup table, by its time grain.
#[derive(Debug, Clone, Copy)]
enum Rollup {
    Minute,
    Hour,
}

/// Counts the rollup `level` of `[from, to)` (one minute or hour) again from its rows.
async fn recount(
    db: &DatabaseConnection,
    level: Rollup,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<()> {
    let backend = db.get_database_backend();
    let p = placeholders(backend);
    let [minutes, hours] = iptrack_migration::request_rollup::count_rows_sql(
        backend,
        &format!("\"timestamp\" >= {} AND \"timestamp\" < {}", p[0], p[1]),
    );
    let (table, column, count) = match level {
        Rollup::Minute => ("request_rollup_minute", "minute", minutes),
        Rollup::Hour => ("request_rollup_hour", "hour_start", hours),
    };
    let range: [Value; 2] = [from.into(), to.into()];
    let txn = db.begin().await.context("cannot begin a transaction")?;
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        format!(
            "DELETE FROM {table} WHERE {column} >= {} AND {column} < {}",
            p[0], p[1]
        ),
        range.clone(),
    ))
    .await
    .with_context(|| format!("cannot delete the cutoff's rows of {table}"))?;
    txn.execute_raw(Statement::from_sql_and_values(backend, count, range))
        .await
        .with_context(|| format!("cannot count the cutoff's rows of {table} again"))?;
    txn.commit().await.context("cannot commit")?;
    Ok(())
}
