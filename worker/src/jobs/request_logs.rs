//! `request-logs`: write one batch of logged requests to `request_log`.
//!
//! On PostgreSQL the rows go in with one binary `COPY` ([`crate::pg_copy`]), on SQLite with
//! multi-row INSERTs; both from the one mapping [`to_row`].
//!
//! Idempotent by batch id: the id goes into `log_batch` in the same transaction as the rows.
//! A batch delivered again (a killed worker's jobs are re-queued; a push whose reply was
//! lost is retried) finds its id taken and writes nothing.
//!
//! The same transaction records the batch's counts for `request_count` (requests per
//! hour, address and path section), which the hourly flag job reads instead of every
//! request of its window: on SQLite by adding to it directly; on PostgreSQL as one row of
//! arrays in `request_count_pending`, which [`crate::count_fold`] moves into
//! `request_count` for many batches at once, off the batch's path (an upsert per address
//! cost each batch as much as its `COPY`). It also adds the batch to
//! `request_rollup_minute` and `request_rollup_hour` (requests per minute and status
//! class; per hour, status class and country), which the dashboard's overview and
//! countries views read instead of every request of their range.
//! All of them are exact, and idempotent for the same reason as the rows. The upserts go
//! in key order, so two batches touching the same counts lock them in the same order and
//! never deadlock.
//!
//! With geolocation on, the job never waits on a provider before its rows are stored
//! (docs/ARCHITECTURE.md, "Geolocation"):
//! 1. before the insert, one MGET of the batch's distinct public addresses: cached
//!    locations go straight into the new rows ([`Geo::before_insert`]);
//! 2. the batch commits;
//! 3. addresses with nothing cached are claimed (`SET NX EX`, cluster-wide); the ones this
//!    worker wins are pushed as `geolocate` jobs ([`Geo::after_commit`]);
//! 4. for the ones another worker had claimed, the cache is read again, and a location
//!    found there is written onto this batch's rows.
//!
//! The geolocate job writes the cache *before* it updates rows. So for a batch that
//! commits while another worker's lookup of the same address is in flight, either step 4
//! sees the cached answer, or that job's UPDATE (which comes after its cache write, which
//! comes after step 4's read, which comes after the commit) sees the rows.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::LazyLock,
};

use anyhow::Context;
use apalis::prelude::{BoxDynError, Data};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use iptrack_core::{
    job_metrics,
    jobs::{
        GEOLOCATE_MAX_ADDRESSES, GeolocateAddresses, LogEvent, RequestLogBatch, bounded_method,
    },
};
use iptrack_entity::{log_batch, query::status_class::StatusClass, request_log};
use iptrack_migration::{request_count, request_rollup};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, EntityTrait, IdenStatic,
    Statement, TransactionTrait, TryInsertResult, Value,
    sqlx::{self, AssertSqlSafe, PgPool, postgres::PgConnection},
};

use super::geolocate::fill_rows;
use crate::{
    context::JobContext,
    geo::{Geo, Location, Lookup, is_public},
    pg_copy::{BinaryCopy, CopyError, POSTGRES_EPOCH, micros_since_2000},
};

/// Rows per multi-row INSERT (SQLite): 12 columns × 2,500 stays under SQLite's 32,766 bind
/// parameters; larger batches are written in several statements of one transaction.
const ROWS_PER_STATEMENT: usize = 2_500;
/// `request_count` rows per upsert (SQLite): 7 columns × 4,000 stays under the same limit.
const COUNTS_PER_STATEMENT: usize = 4_000;
/// Rollup rows per upsert (SQLite): 5 columns × 6,000 stays under the same limit.
const ROLLUP_PER_STATEMENT: usize = 6_000;

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
/// `geolocate` queue after the commit (see the module documentation); nothing here waits
/// on a provider.
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
    // Streaming rules, also for a batch delivered again: its requests count once (by
    // member id), and a crossing it made is acted on again, idempotently.
    if let Err(error) = crate::detect::after_write(&ctx, &batch).await {
        tracing::warn!(batch_id = %batch.batch_id, "detection incomplete; the job is retried: {error:#}");
        return Err(error.into());
    }
    if let Some(geo) = &ctx.geo {
        let done = geo.after_commit(&ctx.db, &prepared).await;
        tracing::debug!(
            batch_id = %batch.batch_id,
            enqueued = done.enqueued.len(),
            filled = done.filled,
            "geolocation after insert"
        );
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
    if db.get_database_backend() == DbBackend::Postgres {
        // A PostgreSQL `DatabaseConnection` made by `Database::connect` is always a sqlx
        // pool (SeaORM's mock and proxy connections are not compiled in), so this does not
        // panic.
        return ingest_postgres(db.get_postgres_connection_pool(), batch, located).await;
    }
    let txn = db.begin().await.context("cannot begin a transaction")?;
    let claim = log_batch::Entity::insert(log_batch::ActiveModel {
        batch_id: Set(batch.batch_id.to_string()),
        events: Set(batch_events(batch)),
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
    let rows = insert_many(&txn, &batch.events, located).await?;
    add_counts(&txn, &count_events(batch)?).await?;
    add_rollup(
        &txn,
        &rollup_events(DbBackend::Sqlite, &batch.events, located)?,
    )
    .await?;
    txn.commit().await.context("cannot commit the batch")?;
    Ok(Ingested::Rows(rows))
}

/// `log_batch.events` of a batch.
fn batch_events(batch: &RequestLogBatch) -> i32 {
    i32::try_from(batch.events.len()).unwrap_or(i32::MAX)
}

/// The PostgreSQL write: the claim, a binary `COPY` of the rows, the pending counts and
/// the rollups' upserts, in one transaction on one sqlx connection. SeaORM has no `COPY`,
/// and its own transaction cannot lend its connection to one, so the whole batch runs on
/// the sqlx pool under SeaORM (the same connections, settings and statement timeout).
///
/// `COPY` instead of an `INSERT`: PostgreSQL reads lengths and bytes instead of planning a
/// statement and unpacking one array per column, which is most of what an insert cost
/// (BENCHMARKS.md, "Request logging").
async fn ingest_postgres(
    pool: &PgPool,
    batch: &RequestLogBatch,
    located: &HashMap<IpAddr, Location>,
) -> anyhow::Result<Ingested> {
    let mut txn = pool.begin().await.context("cannot begin a transaction")?;
    let claimed = sqlx::query(
        "INSERT INTO log_batch (batch_id, events, ingested_at) VALUES ($1, $2, $3) \
         ON CONFLICT (batch_id) DO NOTHING",
    )
    .bind(batch.batch_id.to_string())
    .bind(batch_events(batch))
    .bind(Utc::now())
    .execute(&mut *txn)
    .await
    .context("cannot record the batch id")?
    .rows_affected();
    if claimed == 0 {
        txn.rollback().await.context("cannot roll back")?;
        return Ok(Ingested::AlreadyWritten);
    }
    let rows = copy_rows(&mut txn, &batch.events, located).await?;
    store_pending_counts(&mut txn, batch, &count_events(batch)?).await?;
    upsert_rollup_postgres(
        &mut txn,
        &rollup_events(DbBackend::Postgres, &batch.events, located)?,
    )
    .await?;
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

/// The whole batch as one binary `COPY request_log (…) FROM STDIN` (PostgreSQL), each row
/// written by [`copy_row`].
async fn copy_rows(
    txn: &mut PgConnection,
    events: &[LogEvent],
    located: &HashMap<IpAddr, Location>,
) -> anyhow::Result<u64> {
    if events.is_empty() {
        return Ok(0);
    }
    let mut stream = BinaryCopy::with_capacity(events.len() * ROW_BYTES_EXPECTED);
    for event in events {
        copy_row(&mut stream, event, located.get(&event.ip))
            .context("cannot encode a request_log row for COPY")?;
    }
    let mut copy = txn
        .copy_in_raw(COPY_STATEMENT.as_str())
        .await
        .context("cannot start COPY into request_log")?;
    if let Err(error) = copy.send(stream.finish()).await {
        // Leaves the connection usable; the transaction rolls back when dropped.
        let _ = copy.abort("iptrack: cannot send the rows").await;
        return Err(anyhow::Error::new(error).context("cannot send request_log rows"));
    }
    let copied = copy
        .finish()
        .await
        .context("cannot insert request_log rows")?;
    Ok(copied)
}

/// A `request_log` row's usual size in the `COPY` stream (a browser's user agent, a short
/// path), so a batch's stream is allocated once.
const ROW_BYTES_EXPECTED: usize = 256;

/// The columns [`copy_row`] writes, in its order: every column [`to_row`] sets (all but
/// the generated id), in the entity's order.
const COPY_COLUMNS: [request_log::Column; 12] = [
    request_log::Column::IpAddress,
    request_log::Column::Timestamp,
    request_log::Column::Method,
    request_log::Column::Path,
    request_log::Column::Status,
    request_log::Column::DurationUs,
    request_log::Column::UserAgent,
    request_log::Column::UserId,
    request_log::Column::QueryString,
    request_log::Column::CountryCode,
    request_log::Column::Country,
    request_log::Column::City,
];

/// `COPY request_log ("ip_address", …) FROM STDIN (FORMAT binary)`, of [`COPY_COLUMNS`].
static COPY_STATEMENT: LazyLock<String> = LazyLock::new(|| {
    let names: Vec<String> = COPY_COLUMNS
        .iter()
        .map(|c| format!("\"{}\"", c.as_str()))
        .collect();
    format!(
        "COPY request_log ({}) FROM STDIN (FORMAT binary)",
        names.join(", ")
    )
});

/// One `request_log` row of the `COPY`: the values [`to_row`] gives SQLite's INSERT, in
/// [`COPY_COLUMNS`]' order, written straight from the event: an `ActiveModel` and a
/// `Value` per field in between cost the worker about a tenth of its CPU per row (0.38–0.42
/// s per 100,000 rows against 0.35–0.37 s; BENCHMARKS.md, "Nagle's algorithm and the
/// `COPY`"). The test `copy_rows_are_the_insert_rows` holds both writes to the same bytes.
fn copy_row(
    stream: &mut BinaryCopy,
    event: &LogEvent,
    location: Option<&Location>,
) -> Result<(), CopyError> {
    let place = |field: fn(&Location) -> &str| location.map_or("", field);
    stream.start_row(COPY_COLUMNS.len())?;
    stream.text(&event.ip.to_string())?;
    stream.timestamptz(&event.timestamp)?;
    // Bounded again here: a queued event may come from any producer of the queue.
    stream.text(&bounded_method(&event.method))?;
    stream.text(&event.path)?;
    stream.int4(i32::from(event.status));
    stream.int8(i64::try_from(event.duration_us).unwrap_or(i64::MAX));
    stream.text(&event.user_agent)?;
    stream.text(event.user_id.as_deref().unwrap_or_default())?;
    stream.text(event.query_string.as_deref().unwrap_or_default())?;
    stream.text(place(|l| &l.country_code))?;
    stream.text(place(|l| &l.country))?;
    stream.text(place(|l| &l.city))
}

/// Stores a batch's counts as its row of `request_count_pending` (PostgreSQL): one
/// array per column, for the fold to add to `request_count` ([`crate::count_fold`]).
async fn store_pending_counts(
    txn: &mut PgConnection,
    batch: &RequestLogBatch,
    counts: &[(CountKey<'_>, Count)],
) -> anyhow::Result<()> {
    if counts.is_empty() {
        return Ok(());
    }
    let mut columns = (
        Vec::with_capacity(counts.len()),
        Vec::with_capacity(counts.len()),
        Vec::with_capacity(counts.len()),
        Vec::with_capacity(counts.len()),
        Vec::with_capacity(counts.len()),
        Vec::with_capacity(counts.len()),
        Vec::with_capacity(counts.len()),
    );
    for ((hour, ip, section), count) in counts {
        columns.0.push(*hour);
        columns.1.push(ip.as_str());
        columns.2.push(*section);
        columns.3.push(count.requests);
        columns.4.push(count.first_seen);
        columns.5.push(count.last_seen);
        columns.6.push(count.min_path.as_str());
    }
    sqlx::query(
        "INSERT INTO request_count_pending \
         (batch_id, hour_start, ip_address, section, requests, first_seen, last_seen, min_path) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(batch.batch_id.to_string())
    .bind(columns.0)
    .bind(columns.1)
    .bind(columns.2)
    .bind(columns.3)
    .bind(columns.4)
    .bind(columns.5)
    .bind(columns.6)
    .execute(&mut *txn)
    .await
    .context("cannot store the batch's counts")?;
    Ok(())
}

/// The section of a stored path, `request_count`'s key: the path up to, not including, its
/// second `/` (`/admin/users` → `/admin`, `/admin` → `/admin`, `/` → `/`). Every path
/// below a one-segment prefix `P` (`P` itself or `P/…`) has the section `P`, so the
/// sensitive-path rule reads such prefixes from the counts. The SQL twin is
/// `iptrack_migration::request_count::section_sql`.
pub fn path_section(path: &str) -> &str {
    match path.get(1..).and_then(|rest| rest.find('/')) {
        Some(slash) => &path[..=slash],
        None => path,
    }
}

/// One `request_count` row's worth of a batch.
struct Count {
    requests: i64,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    min_path: String,
}

/// `request_count`'s key: hour, address, path section.
type CountKey<'a> = (DateTime<Utc>, String, &'a str);

/// A batch's counts, in key order, for both databases. The smallest path is the smallest
/// by bytes, as Rust, SQLite and PostgreSQL's `C` and `C.UTF-8` collations compare text
/// (paths are stored canonical, ASCII, so other collations differ at most on case and
/// punctuation of this example path, never on the counts).
fn count_events(batch: &RequestLogBatch) -> anyhow::Result<Vec<(CountKey<'_>, Count)>> {
    let mut counts: BTreeMap<CountKey<'_>, Count> = BTreeMap::new();
    for event in &batch.events {
        let hour = event
            .timestamp
            .duration_trunc(TimeDelta::hours(1))
            .context("an event's time has no hour")?;
        let key = (hour, event.ip.to_string(), path_section(&event.path));
        let count = counts.entry(key).or_insert_with(|| Count {
            requests: 0,
            first_seen: event.timestamp,
            last_seen: event.timestamp,
            min_path: event.path.clone(),
        });
        count.requests += 1;
        count.first_seen = count.first_seen.min(event.timestamp);
        count.last_seen = count.last_seen.max(event.timestamp);
        if event.path < count.min_path {
            count.min_path.clone_from(&event.path);
        }
    }
    Ok(counts.into_iter().collect())
}

/// Adds a batch's counts to `request_count` (SQLite), in key order, in multi-row upserts.
async fn add_counts(
    txn: &DatabaseTransaction,
    counts: &[(CountKey<'_>, Count)],
) -> anyhow::Result<()> {
    for chunk in counts.chunks(COUNTS_PER_STATEMENT) {
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 7);
        for ((hour, ip, section), count) in chunk {
            values.extend([
                Value::from(*hour),
                Value::from(ip.clone()),
                Value::from((*section).to_owned()),
                Value::from(count.requests),
                Value::from(count.first_seen),
                Value::from(count.last_seen),
                Value::from(count.min_path.clone()),
            ]);
        }
        let rows = vec!["(?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            format!(
                "INSERT INTO request_count (hour_start, ip_address, section, requests, \
                 first_seen, last_seen, min_path) VALUES {rows} {}",
                request_count::upsert_sql(DbBackend::Sqlite)
            ),
            values,
        ))
        .await
        .context("cannot add to request_count")?;
    }
    Ok(())
}

/// `request_rollup_minute`'s key: minute, status class code.
pub type MinuteKey = (DateTime<Utc>, i64);
/// `request_rollup_hour`'s key: hour, status class code, country code (`''` not located).
pub type HourKey = (DateTime<Utc>, i64, String);

/// A batch's counts for the two rollup tables, each in key order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RollupCounts {
    /// Requests per minute and class.
    pub minutes: Vec<(MinuteKey, i64)>,
    /// Requests per hour, class and country, with the largest country name of each.
    pub hours: Vec<(HourKey, (String, i64))>,
}

impl RollupCounts {
    /// Rows the batch upserts, both tables together.
    pub fn len(&self) -> usize {
        self.minutes.len() + self.hours.len()
    }

    pub fn is_empty(&self) -> bool {
        self.minutes.is_empty() && self.hours.is_empty()
    }
}

/// A batch's rollup counts: those of `GROUP BY minute, class` and `GROUP BY hour, class,
/// country_code` over the rows [`to_row`] makes.
///
/// The minute and hour are the ones of the time as the database stores it, which is what
/// the readers and the backfill group by: PostgreSQL keeps whole microseconds, cut toward
/// its epoch (2000-01-01) by the binary `COPY` ([`crate::pg_copy`]), so a time a fraction of
/// a microsecond before a minute can be stored in the next one; SQLite keeps the text.
pub fn rollup_events(
    backend: DbBackend,
    events: &[LogEvent],
    located: &HashMap<IpAddr, Location>,
) -> anyhow::Result<RollupCounts> {
    let mut minutes: BTreeMap<MinuteKey, i64> = BTreeMap::new();
    let mut hours: BTreeMap<HourKey, (String, i64)> = BTreeMap::new();
    for event in events {
        let stored = match backend {
            DbBackend::Postgres => micros_since_2000(&event.timestamp)
                .map(|micros| POSTGRES_EPOCH + TimeDelta::microseconds(micros))
                .context("an event's time is out of PostgreSQL's range")?,
            _ => event.timestamp,
        };
        let minute = stored
            .duration_trunc(TimeDelta::minutes(1))
            .context("an event's time has no minute")?;
        let hour = stored
            .duration_trunc(TimeDelta::hours(1))
            .context("an event's time has no hour")?;
        let class = StatusClass::of(i32::from(event.status)).code();
        *minutes.entry((minute, class)).or_default() += 1;
        let (code, name) = located
            .get(&event.ip)
            .map(|l| (l.country_code.clone(), l.country.clone()))
            .unwrap_or_default();
        let count = hours
            .entry((hour, class, code))
            .or_insert_with(|| (name.clone(), 0));
        if name > count.0 {
            count.0 = name;
        }
        count.1 += 1;
    }
    Ok(RollupCounts {
        minutes: minutes.into_iter().collect(),
        hours: hours.into_iter().collect(),
    })
}

/// The rollup upserts of `events` alone, in a transaction of their own: what the rollup
/// adds to a batch's write, timed by `bench/src/bin/dashboard_queries.rs`. Returns the
/// number of rollup rows upserted. (It adds counts without rows: a benchmark's database
/// only.)
pub async fn add_rollup_alone(
    db: &DatabaseConnection,
    events: &[LogEvent],
    located: &HashMap<IpAddr, Location>,
) -> anyhow::Result<usize> {
    let backend = db.get_database_backend();
    let counts = rollup_events(backend, events, located)?;
    if backend == DbBackend::Postgres {
        let mut txn = db
            .get_postgres_connection_pool()
            .begin()
            .await
            .context("cannot begin a transaction")?;
        upsert_rollup_postgres(&mut txn, &counts).await?;
        txn.commit().await.context("cannot commit")?;
    } else {
        let txn = db.begin().await.context("cannot begin a transaction")?;
        add_rollup(&txn, &counts).await?;
        txn.commit().await.context("cannot commit")?;
    }
    Ok(counts.len())
}

/// Adds a batch's rollup counts to both tables (PostgreSQL): one upsert of one array per
/// column each, in key order (see `upsert_counts_postgres`), minutes first, as every
/// batch does.
async fn upsert_rollup_postgres(
    txn: &mut PgConnection,
    counts: &RollupCounts,
) -> anyhow::Result<()> {
    if !counts.minutes.is_empty() {
        let (minutes, classes, requests): (Vec<_>, Vec<_>, Vec<_>) = counts
            .minutes
            .iter()
            .map(|((minute, class), n)| (*minute, *class, *n))
            .collect();
        // Built from constants only: no value reaches the text.
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO request_rollup_minute (minute, status_class, requests) \
             SELECT * FROM UNNEST($1::timestamptz[], $2::int8[], $3::int8[]) \
             ORDER BY 1, 2 {}",
            request_rollup::upsert_minute_sql()
        )))
        .bind(minutes)
        .bind(classes)
        .bind(requests)
        .execute(&mut *txn)
        .await
        .context("cannot add to request_rollup_minute")?;
    }
    if !counts.hours.is_empty() {
        let mut hours = Vec::with_capacity(counts.hours.len());
        let mut classes = Vec::with_capacity(counts.hours.len());
        let mut codes = Vec::with_capacity(counts.hours.len());
        let mut names = Vec::with_capacity(counts.hours.len());
        let mut requests = Vec::with_capacity(counts.hours.len());
        for ((hour, class, code), (name, n)) in &counts.hours {
            hours.push(*hour);
            classes.push(*class);
            codes.push(code.as_str());
            names.push(name.as_str());
            requests.push(*n);
        }
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO request_rollup_hour \
             (hour_start, status_class, country_code, country, requests) \
             SELECT * FROM UNNEST($1::timestamptz[], $2::int8[], $3::text[], $4::text[], \
                                  $5::int8[]) \
             ORDER BY 1, 2, 3 {}",
            request_rollup::upsert_hour_sql(DbBackend::Postgres)
        )))
        .bind(hours)
        .bind(classes)
        .bind(codes)
        .bind(names)
        .bind(requests)
        .execute(&mut *txn)
        .await
        .context("cannot add to request_rollup_hour")?;
    }
    Ok(())
}

/// Adds a batch's rollup counts to both tables (SQLite), in multi-row upserts.
async fn add_rollup(txn: &DatabaseTransaction, counts: &RollupCounts) -> anyhow::Result<()> {
    for chunk in counts.minutes.chunks(ROLLUP_PER_STATEMENT) {
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 3);
        for ((minute, class), n) in chunk {
            values.extend([Value::from(*minute), Value::from(*class), Value::from(*n)]);
        }
        let rows = vec!["(?, ?, ?)"; chunk.len()].join(", ");
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            format!(
                "INSERT INTO request_rollup_minute (minute, status_class, requests) \
                 VALUES {rows} {}",
                request_rollup::upsert_minute_sql()
            ),
            values,
        ))
        .await
        .context("cannot add to request_rollup_minute")?;
    }
    for chunk in counts.hours.chunks(ROLLUP_PER_STATEMENT) {
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 5);
        for ((hour, class, code), (name, n)) in chunk {
            values.extend([
                Value::from(*hour),
                Value::from(*class),
                Value::from(code.clone()),
                Value::from(name.clone()),
                Value::from(*n),
            ]);
        }
        let rows = vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            format!(
                "INSERT INTO request_rollup_hour \
                 (hour_start, status_class, country_code, country, requests) VALUES {rows} {}",
                request_rollup::upsert_hour_sql(DbBackend::Sqlite)
            ),
            values,
        ))
        .await
        .context("cannot add to request_rollup_hour")?;
    }
    Ok(())
}

/// The mapping from a logged request to its `request_log` row, for SQLite's INSERT;
/// [`copy_row`] writes the same values for PostgreSQL's `COPY`.
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
        // Bounded again here: a queued event may come from any producer of the queue.
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
    pub enqueued: Vec<IpAddr>,
    /// Addresses claimed elsewhere whose location was cached by now and written here.
    pub filled: usize,
}

/// The request-log job's steps around its insert (see the module documentation).
impl Geo {
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
            enqueued: mine,
            filled,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sea_orm::{ActiveModelTrait, Iterable};

    use super::*;

    /// The `COPY` of [`to_row`]'s values, field by field as a SeaORM `Value` each: what
    /// [`copy_row`] must write.
    fn copy_of_insert_row(event: &LogEvent, located: &HashMap<IpAddr, Location>) -> Vec<u8> {
        let row = to_row(event, located);
        let set: Vec<request_log::Column> = request_log::Column::iter()
            .filter(|&c| row.get(c).is_set())
            .collect();
        let names = |columns: &[request_log::Column]| -> Vec<&str> {
            columns.iter().map(|c| c.as_str()).collect()
        };
        assert_eq!(
            names(&set),
            names(&COPY_COLUMNS),
            "COPY_COLUMNS are the columns to_row sets, in its order"
        );
        let values: Vec<Value> = set
            .iter()
            .map(|&c| row.get(c).into_value().unwrap())
            .collect();
        let mut stream = BinaryCopy::new();
        stream.row(values.iter()).unwrap();
        stream.finish()
    }

    #[test]
    fn copy_rows_are_the_insert_rows() {
        let located_ip: IpAddr = "203.0.113.9".parse().unwrap();
        let located = HashMap::from([(
            located_ip,
            Location {
                country_code: "NZ".into(),
                country: "New Zealand".into(),
                city: "Wellington".into(),
            },
        )]);
        let event = |ip: &str| LogEvent {
            ip: ip.parse().unwrap(),
            timestamp: "2026-12-02T12:34:56.789012Z".parse().unwrap(),
            method: "GET".into(),
            path: "/login/\t\"x\"".into(),
            status: 429,
            duration_us: 1_234,
            user_agent: "curl/8.5".into(),
            user_id: None,
            query_string: None,
        };
        let events = [
            event("203.0.113.9"),
            LogEvent {
                method: "X".repeat(100),
                user_id: Some("alice".into()),
                query_string: Some("next=%2Fadmin".into()),
                duration_us: u64::MAX,
                user_agent: String::new(),
                ..event("2001:db8::1")
            },
            LogEvent {
                timestamp: "1999-12-31T23:59:59.9999995Z".parse().unwrap(),
                ..event("10.0.0.1")
            },
        ];
        for event in &events {
            let mut direct = BinaryCopy::new();
            copy_row(&mut direct, event, located.get(&event.ip)).unwrap();
            assert_eq!(
                direct.finish(),
                copy_of_insert_row(event, &located),
                "{event:?}"
            );
        }
    }
}
