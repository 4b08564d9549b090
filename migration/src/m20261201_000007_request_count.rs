//! `request_count`: requests per hour, address and path section (the path up to its second
//! `/`: `/admin/users` → `/admin`), with the first and last request and the smallest path.
//! The request-log job keeps it exactly, in the batch's own transaction (so the batch id
//! that makes a batch idempotent makes its counts idempotent too); the hourly flag job
//! reads it instead of every request of its window (docs/ARCHITECTURE.md, "Scheduler").
//!
//! Nothing in it depends on a setting: the volume threshold and the sensitive paths are
//! applied when it is read, so changing them needs no rebuild.
//!
//! The rows already in `request_log` are counted in here by this migration, with the same
//! SQL ([`backfill`]), so every hour is covered. Stop workers of older versions before
//! migrating: a batch they write afterwards is not counted.

#![allow(elided_lifetimes_in_paths)]

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
        manager
            .create_table(
                Table::create()
                    .table(RequestCount::Table)
                    .col(timestamp_with_time_zone(RequestCount::HourStart))
                    .col(string_len(RequestCount::IpAddress, 45))
                    .col(text(RequestCount::Section))
                    .col(big_integer(RequestCount::Requests))
                    .col(timestamp_with_time_zone(RequestCount::FirstSeen))
                    .col(timestamp_with_time_zone(RequestCount::LastSeen))
                    .col(text(RequestCount::MinPath))
                    // The flag job reads one window's hours, grouped by address.
                    .primary_key(
                        Index::create()
                            .col(RequestCount::HourStart)
                            .col(RequestCount::IpAddress)
                            .col(RequestCount::Section),
                    )
                    .to_owned(),
            )
            .await?;
        backfill(manager.get_connection()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RequestCount::Table).to_owned())
            .await
    }
}

/// The hour a `timestamp` column's value falls in, as the same type, in SQL.
pub fn hour_sql(backend: DbBackend, column: &str) -> String {
    match backend {
        DbBackend::Postgres => {
            format!("(date_trunc('hour', {column} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')")
        }
        // RFC 3339 text in UTC (`2026-11-21T09:10:00.5+00:00`), as sqlx writes it.
        _ => format!("(substr({column}, 1, 13) || ':00:00+00:00')"),
    }
}

/// The section of a `path` column's value (up to, not including, its second `/`), in SQL;
/// `iptrack_worker`'s `path_section` is the same in Rust. Paths are stored canonical
/// (ASCII), so characters and bytes agree.
pub fn section_sql(backend: DbBackend, column: &str) -> String {
    let find = match backend {
        DbBackend::Postgres => "strpos",
        _ => "instr",
    };
    format!(
        "(CASE WHEN {find}(substr({column}, 2), '/') = 0 THEN {column} \
         ELSE substr({column}, 1, {find}(substr({column}, 2), '/')) END)"
    )
}

/// The `ON CONFLICT` clause that adds counts to a `request_count` row: the key this
/// migration made, which is the key again since 000013 took 000012's shard out of it (the
/// request-log job's SQLite upsert, the fold, [`backfill`]).
pub fn upsert_sql(backend: DbBackend) -> String {
    upsert_on(backend, "hour_start, ip_address, section")
}

/// Counts every row of `request_log` into `request_count` with one `INSERT … SELECT …
/// GROUP BY`, adding to what is there. This migration runs it once; benchmarks and tests
/// that fill `request_log` with SQL run it after.
pub async fn backfill<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    let backend = conn.get_database_backend();
    let upsert = upsert_sql(backend);
    let (hour, section) = (
        hour_sql(backend, "\"timestamp\""),
        section_sql(backend, "path"),
    );
    conn.execute_unprepared(&format!(
        "INSERT INTO request_count \
         (hour_start, ip_address, section, requests, first_seen, last_seen, min_path) \
         SELECT {hour}, ip_address, {section}, COUNT(*), MIN(\"timestamp\"), \
                MAX(\"timestamp\"), MIN(path) \
         FROM request_log WHERE true GROUP BY {hour}, ip_address, {section} {upsert}"
    ))
    .await
    .map(|_| ())
}

/// The `ON CONFLICT` clause that adds counts to the `request_count` row with the same `key`
/// columns: requests add up, first and last seen widen, the smallest path stays.
pub(crate) fn upsert_on(backend: DbBackend, key: &str) -> String {
    let (least, greatest) = (least(backend), greatest(backend));
    format!(
        "ON CONFLICT ({key}) DO UPDATE SET \
         requests = request_count.requests + excluded.requests, \
         first_seen = {least}(request_count.first_seen, excluded.first_seen), \
         last_seen = {greatest}(request_count.last_seen, excluded.last_seen), \
         min_path = {least}(request_count.min_path, excluded.min_path)"
    )
}

/// The two-argument minimum: `LEAST` on PostgreSQL, `MIN` (scalar) on SQLite.
pub fn least(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "LEAST",
        _ => "MIN",
    }
}

/// The two-argument maximum.
pub fn greatest(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "GREATEST",
        _ => "MAX",
    }
}

#[derive(DeriveIden)]
enum RequestCount {
    Table,
    HourStart,
    IpAddress,
    Section,
    Requests,
    FirstSeen,
    LastSeen,
    MinPath,
}
