//! Two levels of pre-aggregate instead of one (issue 21, BENCHMARKS.md "Dashboard views").
//!
//! `request_rollup` (minute × status class × country) made the dashboard's reads about a
//! third of a raw scan on a busy site: with traffic from a hundred countries in every
//! minute, a day is a million rollup rows. It is replaced by:
//!
//! - `request_rollup_minute`: requests per minute × status class. The chart's buckets:
//!   at most 1,440 × 6 rows a day, whatever the traffic.
//! - `request_rollup_hour`: requests per hour × status class × country. The countries
//!   view, top countries and the hours' totals the summaries are checked against: a
//!   day is 24 hours of at most (classes × countries) rows.
//!
//! Both stay **exact** as the one table did: the request-log job upserts a batch's counts
//! into both in the batch's own transaction, and the geolocation fill moves a row's count
//! from country `''` to its country in `request_rollup_hour` in the transaction of its
//! UPDATE. The migration fills them from `request_rollup` (its sums per coarser key, so a
//! large database converts in seconds) and drops it; [`backfill`] counts them from
//! `request_log` instead, for benchmarks and tests that fill the rows with SQL. Stop
//! workers of older versions before migrating: a batch they write afterwards is counted in
//! the dropped table only.

#![allow(elided_lifetimes_in_paths)]

use iptrack_entity::query::status_class::case_sql;
use sea_orm_migration::{
    prelude::*,
    schema::*,
    sea_orm::{ConnectionTrait, DbBackend},
};

use crate::m20261201_000007_request_count::{greatest, hour_sql};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RequestRollupMinute::Table)
                    .col(timestamp_with_time_zone(RequestRollupMinute::Minute))
                    // `status_class::StatusClass`'s code (its place in `ALL`).
                    .col(big_integer(RequestRollupMinute::StatusClass))
                    .col(big_integer(RequestRollupMinute::Requests))
                    .primary_key(
                        Index::create()
                            .col(RequestRollupMinute::Minute)
                            .col(RequestRollupMinute::StatusClass),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RequestRollupHour::Table)
                    .col(timestamp_with_time_zone(RequestRollupHour::HourStart))
                    .col(big_integer(RequestRollupHour::StatusClass))
                    // '' for rows not located (yet).
                    .col(string(RequestRollupHour::CountryCode))
                    // The largest name of the code's rows in the hour, as the views'
                    // `MAX(country)` over the rows gives.
                    .col(string(RequestRollupHour::Country))
                    .col(big_integer(RequestRollupHour::Requests))
                    .primary_key(
                        Index::create()
                            .col(RequestRollupHour::HourStart)
                            .col(RequestRollupHour::StatusClass)
                            .col(RequestRollupHour::CountryCode),
                    )
                    .to_owned(),
            )
            .await?;
        let conn = manager.get_connection();
        let backend = conn.get_database_backend();
        let hour = hour_sql(backend, "minute");
        conn.execute_unprepared(
            "INSERT INTO request_rollup_minute (minute, status_class, requests) \
             SELECT minute, status_class, SUM(requests) FROM request_rollup \
             GROUP BY minute, status_class HAVING SUM(requests) <> 0",
        )
        .await?;
        conn.execute_unprepared(&format!(
            "INSERT INTO request_rollup_hour \
             (hour_start, status_class, country_code, country, requests) \
             SELECT {hour}, status_class, country_code, MAX(country), SUM(requests) \
             FROM request_rollup GROUP BY {hour}, status_class, country_code \
             HAVING SUM(requests) <> 0"
        ))
        .await?;
        manager
            .drop_table(Table::drop().table(RequestRollup::Table).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::m20261202_000009_request_rollup::create_rollup(manager).await?;
        crate::m20261202_000009_request_rollup::backfill(manager.get_connection()).await?;
        for table in [
            RequestRollupHour::Table.into_iden(),
            RequestRollupMinute::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

/// The minute a `timestamp` column's value falls in, as the same type, in SQL.
pub fn minute_sql(backend: DbBackend, column: &str) -> String {
    match backend {
        DbBackend::Postgres => {
            format!("(date_trunc('minute', {column} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')")
        }
        // RFC 3339 text in UTC, as sqlx writes a `DateTime<Utc>` (see `hour_sql`).
        _ => format!("(substr({column}, 1, 16) || ':00+00:00')"),
    }
}

/// The `ON CONFLICT` clause that adds counts to `request_rollup_minute`.
pub fn upsert_minute_sql() -> &'static str {
    "ON CONFLICT (minute, status_class) DO UPDATE SET \
     requests = request_rollup_minute.requests + excluded.requests"
}

/// The `ON CONFLICT` clause that adds counts to `request_rollup_hour` (the ingest, the
/// geolocation fill, the recount after a purge and [`backfill`]): requests add up, the
/// country name is the largest.
pub fn upsert_hour_sql(backend: DbBackend) -> String {
    format!(
        "ON CONFLICT (hour_start, status_class, country_code) DO UPDATE SET \
         requests = request_rollup_hour.requests + excluded.requests, \
         country = {}(request_rollup_hour.country, excluded.country)",
        greatest(backend)
    )
}

/// The statements that count the `request_log` rows meeting `condition` (SQL over the
/// table's columns; `true` for all) into both rollup tables, adding to what is there.
pub fn count_rows_sql(backend: DbBackend, condition: &str) -> [String; 2] {
    let (minute, hour, class) = (
        minute_sql(backend, "\"timestamp\""),
        hour_sql(backend, "\"timestamp\""),
        case_sql("status"),
    );
    [
        format!(
            "INSERT INTO request_rollup_minute (minute, status_class, requests) \
             SELECT {minute}, {class}, COUNT(*) FROM request_log WHERE {condition} \
             GROUP BY {minute}, {class} {}",
            upsert_minute_sql()
        ),
        format!(
            "INSERT INTO request_rollup_hour \
             (hour_start, status_class, country_code, country, requests) \
             SELECT {hour}, {class}, country_code, MAX(country), COUNT(*) FROM request_log \
             WHERE {condition} GROUP BY {hour}, {class}, country_code {}",
            upsert_hour_sql(backend)
        ),
    ]
}

/// Counts every row of `request_log` into both rollup tables (adding to what is there),
/// one `INSERT … SELECT … GROUP BY` each. Benchmarks and tests that fill `request_log`
/// with SQL run it after.
pub async fn backfill<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    for statement in count_rows_sql(conn.get_database_backend(), "true") {
        conn.execute_unprepared(&statement).await?;
    }
    Ok(())
}

#[derive(DeriveIden)]
enum RequestRollup {
    Table,
}

#[derive(DeriveIden)]
enum RequestRollupMinute {
    Table,
    Minute,
    StatusClass,
    Requests,
}

#[derive(DeriveIden)]
enum RequestRollupHour {
    Table,
    HourStart,
    StatusClass,
    CountryCode,
    Country,
    Requests,
}
