//! Pre-aggregates for the dashboard's overview and countries views (issue 21,
//! BENCHMARKS.md "Dashboard views"): a group-by over every request of a busy day cannot
//! answer in 200 ms, so the views read these instead and only the edges of a range raw.
//!
//! - `request_rollup`: requests per minute × status class × country, **exact**. (Replaced
//!   by two coarser tables in `m20261202_000011_rollup_levels`.) The
//!   request-log job upserts a batch's counts in the batch's own transaction (idempotent
//!   by the same `log_batch` claim as the rows), and the geolocation fill moves a row's
//!   count from country `''` to its country in the transaction of its UPDATE, so the
//!   table equals `GROUP BY minute, class, country_code` over `request_log` at all times.
//!   The rows already in `request_log` are counted in here by this migration ([`backfill`]).
//!   Stop workers of older versions before migrating: a batch they write afterwards is not
//!   counted.
//! - `request_summary` and its three detail tables: per closed hour, the top 1,000
//!   addresses and paths and a distinct-address sketch per country, written by the
//!   `request-summaries` job. Each summary stores how many rows (and unlocated rows) it
//!   summarized; a reader uses it only while the rollup still holds that many for the
//!   hour, so a late row sends the hour back to raw rows until the job summarizes it again.

#![allow(elided_lifetimes_in_paths)]

use iptrack_entity::query::status_class::case_sql;
use sea_orm_migration::{
    prelude::*,
    schema::*,
    sea_orm::{ConnectionTrait, DbBackend},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_rollup(manager).await?;
        manager
            .create_table(
                Table::create()
                    .table(RequestSummary::Table)
                    .col(timestamp_with_time_zone(RequestSummary::HourStart).primary_key())
                    .col(big_integer(RequestSummary::SummarizedRows))
                    .col(big_integer(RequestSummary::UnlocatedRows))
                    .col(timestamp_with_time_zone(RequestSummary::SummarizedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RequestSummaryAddress::Table)
                    .col(timestamp_with_time_zone(RequestSummaryAddress::HourStart))
                    .col(string_len(RequestSummaryAddress::IpAddress, 45))
                    .col(string(RequestSummaryAddress::CountryCode))
                    .col(big_integer(RequestSummaryAddress::Requests))
                    .col(big_integer(RequestSummaryAddress::Forbidden403))
                    .col(big_integer(RequestSummaryAddress::RateLimited429))
                    .primary_key(
                        Index::create()
                            .col(RequestSummaryAddress::HourStart)
                            .col(RequestSummaryAddress::IpAddress),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RequestSummaryPath::Table)
                    .col(timestamp_with_time_zone(RequestSummaryPath::HourStart))
                    .col(text(RequestSummaryPath::Path))
                    .col(big_integer(RequestSummaryPath::Requests))
                    .primary_key(
                        Index::create()
                            .col(RequestSummaryPath::HourStart)
                            .col(RequestSummaryPath::Path),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RequestSummaryCountry::Table)
                    .col(timestamp_with_time_zone(RequestSummaryCountry::HourStart))
                    .col(string(RequestSummaryCountry::CountryCode))
                    .col(blob(RequestSummaryCountry::AddressesSketch))
                    .primary_key(
                        Index::create()
                            .col(RequestSummaryCountry::HourStart)
                            .col(RequestSummaryCountry::CountryCode),
                    )
                    .to_owned(),
            )
            .await?;
        backfill(manager.get_connection()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            RequestSummaryCountry::Table.into_iden(),
            RequestSummaryPath::Table.into_iden(),
            RequestSummaryAddress::Table.into_iden(),
            RequestSummary::Table.into_iden(),
            RequestRollup::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

/// Creates `request_rollup` as this migration made it (also migration 000011's `down`,
/// which brings it back).
pub(crate) async fn create_rollup(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(RequestRollup::Table)
                .col(timestamp_with_time_zone(RequestRollup::Minute))
                // `status_class::StatusClass`'s code (its place in `ALL`).
                .col(big_integer(RequestRollup::StatusClass))
                // '' for rows not located (yet).
                .col(string(RequestRollup::CountryCode))
                // The largest name of the code's rows in the minute, as the views'
                // `MAX(country)` over the rows gives.
                .col(string(RequestRollup::Country))
                .col(big_integer(RequestRollup::Requests))
                // Every reader reads a range of minutes.
                .primary_key(
                    Index::create()
                        .col(RequestRollup::Minute)
                        .col(RequestRollup::StatusClass)
                        .col(RequestRollup::CountryCode),
                )
                .to_owned(),
        )
        .await
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

/// The `ON CONFLICT` clause that adds counts to `request_rollup` (the ingest, the
/// geolocation fill and [`backfill`]): requests add up, the country name is the largest.
pub fn upsert_sql(backend: DbBackend) -> String {
    format!(
        "ON CONFLICT (minute, status_class, country_code) DO UPDATE SET \
         requests = request_rollup.requests + excluded.requests, \
         country = {}(request_rollup.country, excluded.country)",
        super::m20261201_000007_request_count::greatest(backend)
    )
}

/// Counts every row of `request_log` into `request_rollup` (adding to what is there), in
/// one `INSERT … SELECT … GROUP BY`. The migration runs it once; benchmarks that fill
/// `request_log` with SQL run it after.
pub async fn backfill<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    let backend = conn.get_database_backend();
    let (minute, class) = (minute_sql(backend, "\"timestamp\""), case_sql("status"));
    conn.execute_unprepared(&format!(
        "INSERT INTO request_rollup (minute, status_class, country_code, country, requests) \
         SELECT {minute}, {class}, country_code, MAX(country), COUNT(*) \
         FROM request_log WHERE true GROUP BY {minute}, {class}, country_code {}",
        upsert_sql(backend)
    ))
    .await
    .map(|_| ())
}

#[derive(DeriveIden)]
enum RequestRollup {
    Table,
    Minute,
    StatusClass,
    CountryCode,
    Country,
    Requests,
}

#[derive(DeriveIden)]
enum RequestSummary {
    Table,
    HourStart,
    SummarizedRows,
    UnlocatedRows,
    SummarizedAt,
}

#[derive(DeriveIden)]
enum RequestSummaryAddress {
    Table,
    HourStart,
    IpAddress,
    CountryCode,
    Requests,
    #[sea_orm(iden = "forbidden_403")]
    Forbidden403,
    #[sea_orm(iden = "rate_limited_429")]
    RateLimited429,
}

#[derive(DeriveIden)]
enum RequestSummaryPath {
    Table,
    HourStart,
    Path,
    Requests,
}

#[derive(DeriveIden)]
enum RequestSummaryCountry {
    Table,
    HourStart,
    CountryCode,
    AddressesSketch,
}
