//! `geolocate`: look up up to 100 claimed addresses, cache the answers, fill in the rows.
//!
//! Pushed by the request-log job for the addresses it claimed (see `request_logs`). A
//! provider failure fails the job and apalis retries it with back-off; the rows are
//! already stored and simply wait for their location.

use std::{collections::BTreeMap, net::IpAddr};

use anyhow::Context;
use apalis::prelude::{BoxDynError, Data};
use chrono::{DateTime, Utc};
use iptrack_core::jobs::GeolocateAddresses;
use iptrack_entity::query::status_class::case_sql;
use iptrack_migration::request_rollup;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, TransactionTrait, Value,
    sqlx::{self, AssertSqlSafe, PgPool},
};

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
/// request-log job's step 4 with answers another worker cached), and moves those rows'
/// counts in `request_rollup_hour` from country `''` to the location's country in the same
/// transaction, so the rollup keeps equal to the rows (`request_rollup_minute` has no
/// country, so nothing moves there). Returns how many rows were filled.
pub async fn fill_rows(
    db: &DatabaseConnection,
    ip: IpAddr,
    location: &Location,
) -> anyhow::Result<u64> {
    match db.get_database_backend() {
        // A PostgreSQL `DatabaseConnection` is always a sqlx pool (see `request_logs`).
        DbBackend::Postgres => fill_rows_postgres(db.get_postgres_connection_pool(), ip, location)
            .await
            .context("cannot fill in the location of rows"),
        _ => fill_rows_sqlite(db, ip, location)
            .await
            .context("cannot fill in the location of rows"),
    }
}

/// The UPDATE's WHERE beside the address: rows with no location yet.
const NOT_LOCATED: &str = "country_code = '' AND city = ''";

/// PostgreSQL: one statement. A data-modifying CTE updates the rows and returns their
/// times and statuses; one upsert, in key order like the request-log job's (so the two
/// never deadlock), takes their counts off country `''` and adds them to the new country.
/// The rollup rows left at zero go in a second statement of the transaction (one
/// statement may not modify a row twice).
async fn fill_rows_postgres(
    pool: &PgPool,
    ip: IpAddr,
    location: &Location,
) -> Result<u64, sqlx::Error> {
    let (hour, class) = (
        request_rollup::hour_sql(DbBackend::Postgres, "\"timestamp\""),
        case_sql("status"),
    );
    let mut txn = pool.begin().await?;
    // Built from constants only: no value reaches the text.
    let (filled, first, last): (i64, Option<DateTime<Utc>>, Option<DateTime<Utc>>) =
        sqlx::query_as(AssertSqlSafe(format!(
            "WITH filled AS ( \
               UPDATE request_log SET country_code = $1, country = $2, city = $3 \
               WHERE ip_address = $4 AND {NOT_LOCATED} RETURNING \"timestamp\", status), \
             moved AS ( \
               SELECT {hour} AS hour_start, {class} AS status_class, COUNT(*) AS requests \
               FROM filled GROUP BY 1, 2), \
             upserted AS ( \
               INSERT INTO request_rollup_hour \
               (hour_start, status_class, country_code, country, requests) \
               SELECT hour_start, status_class, '', '', -requests FROM moved \
               UNION ALL \
               SELECT hour_start, status_class, $1, $2, requests FROM moved \
               ORDER BY 1, 2, 3 {} RETURNING 1) \
             SELECT CAST(COALESCE(SUM(requests), 0) AS BIGINT), MIN(hour_start), \
                    MAX(hour_start) \
             FROM moved",
            request_rollup::upsert_hour_sql(DbBackend::Postgres)
        )))
        .bind(&location.country_code)
        .bind(&location.country)
        .bind(&location.city)
        .bind(ip.to_string())
        .fetch_one(&mut *txn)
        .await?;
    if let (Some(first), Some(last)) = (first, last) {
        sqlx::query(
            "DELETE FROM request_rollup_hour WHERE hour_start BETWEEN $1 AND $2 \
             AND country_code = '' AND requests = 0",
        )
        .bind(first)
        .bind(last)
        .execute(&mut *txn)
        .await?;
    }
    txn.commit().await?;
    Ok(u64::try_from(filled).unwrap_or_default())
}

/// SQLite: the UPDATE first, returning each filled row's hour and class (SQLite's
/// `RETURNING`): counting before it would read before writing, and a read transaction
/// that another writer overtakes cannot become a write transaction. The counts then move
/// in the same transaction.
async fn fill_rows_sqlite(
    db: &DatabaseConnection,
    ip: IpAddr,
    location: &Location,
) -> Result<u64, DbErr> {
    let (hour, class) = (
        request_rollup::hour_sql(DbBackend::Sqlite, "\"timestamp\""),
        case_sql("status"),
    );
    let txn = db.begin().await?;
    let filled = txn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            format!(
                "UPDATE request_log SET country_code = ?, country = ?, city = ? \
                 WHERE ip_address = ? AND {NOT_LOCATED} \
                 RETURNING {hour} AS hour_start, {class} AS status_class"
            ),
            [
                location.country_code.clone().into(),
                location.country.clone().into(),
                location.city.clone().into(),
                ip.to_string().into(),
            ],
        ))
        .await?;
    let mut moved: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for row in &filled {
        let key = (
            row.try_get::<String>("", "hour_start")?,
            row.try_get::<i64>("", "status_class")?,
        );
        *moved.entry(key).or_default() += 1;
    }
    let counts: Vec<(&(String, i64), &i64)> = moved.iter().collect();
    for chunk in counts.chunks(3_000) {
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 10);
        for ((hour, class), n) in chunk {
            for (code, name, delta) in [
                (String::new(), String::new(), -**n),
                (location.country_code.clone(), location.country.clone(), **n),
            ] {
                values.extend([
                    Value::from(hour.clone()),
                    Value::from(*class),
                    Value::from(code),
                    Value::from(name),
                    Value::from(delta),
                ]);
            }
        }
        let rows = vec!["(?, ?, ?, ?, ?)"; chunk.len() * 2].join(", ");
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            format!(
                "INSERT INTO request_rollup_hour \
                 (hour_start, status_class, country_code, country, requests) VALUES {rows} {}",
                request_rollup::upsert_hour_sql(DbBackend::Sqlite)
            ),
            values,
        ))
        .await?;
    }
    let bounds = (moved.keys().next(), moved.keys().next_back());
    if let (Some((first, _)), Some((last, _))) = bounds {
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "DELETE FROM request_rollup_hour WHERE hour_start BETWEEN ? AND ? \
             AND country_code = '' AND requests = 0",
            [first.clone().into(), last.clone().into()],
        ))
        .await?;
    }
    txn.commit().await?;
    Ok(filled.len() as u64)
}
