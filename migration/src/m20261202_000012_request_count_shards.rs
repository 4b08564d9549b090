//! Count rows per writer: a `shard` column in `request_count`'s key.
//!
//! Every batch upserts the hour rows of its addresses in its own transaction and holds
//! their locks until it commits. Concurrent batches share most of those rows (a busy
//! address appears in every batch), so each waited for the other's commit: PostgreSQL's
//! most sampled wait during ingest was `Lock:transactionid`, and the request-log job
//! scaled with its slots only up to 8 (BENCHMARKS.md, "Request logging"). A batch now adds
//! its counts to one of 16 rows per key, chosen from its batch id, so two
//! concurrent batches meet on a row only when their shards match. Readers already sum a
//! key's rows (the flag job groups by address over hours and sections), so they read the
//! sum over shards unchanged.
//!
//! The rows already stored become shard 0. Down merges every key's shards into one row
//! before the column goes.
//!
//! Migration 000013 folds counts outside the batches' transactions, one fold at a time,
//! and runs this `down` to merge the shards away again.

#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::{
    prelude::*,
    schema::*,
    sea_orm::{ConnectionTrait, DbBackend},
};

use crate::m20261201_000007_request_count::upsert_on;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// In one transaction on SQLite too (sea-orm runs SQLite migrations without one): a
    /// rebuild is then all or nothing, on one connection.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        match conn.get_database_backend() {
            DbBackend::Postgres => {
                conn.execute_unprepared(
                    "ALTER TABLE request_count ADD COLUMN shard smallint NOT NULL DEFAULT 0; \
                     ALTER TABLE request_count DROP CONSTRAINT request_count_pkey; \
                     ALTER TABLE request_count \
                     ADD PRIMARY KEY (hour_start, ip_address, section, shard)",
                )
                .await?;
                Ok(())
            }
            // SQLite cannot change a primary key: the table is built again.
            _ => rebuild_sqlite(manager, true).await,
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        let backend = conn.get_database_backend();
        conn.execute_unprepared(&format!(
            "INSERT INTO request_count \
             (hour_start, ip_address, section, shard, requests, first_seen, last_seen, min_path) \
             SELECT hour_start, ip_address, section, 0, SUM(requests), MIN(first_seen), \
                    MAX(last_seen), MIN(min_path) \
             FROM request_count WHERE shard <> 0 GROUP BY hour_start, ip_address, section {}",
            upsert_sql(backend)
        ))
        .await?;
        conn.execute_unprepared("DELETE FROM request_count WHERE shard <> 0")
            .await?;
        match backend {
            DbBackend::Postgres => {
                conn.execute_unprepared(
                    "ALTER TABLE request_count DROP CONSTRAINT request_count_pkey; \
                     ALTER TABLE request_count \
                     ADD PRIMARY KEY (hour_start, ip_address, section); \
                     ALTER TABLE request_count DROP COLUMN shard",
                )
                .await?;
                Ok(())
            }
            _ => rebuild_sqlite(manager, false).await,
        }
    }
}

/// Builds `request_count` again on SQLite with the shard in its key (`sharded`) or without,
/// keeping its rows (as shard 0 when the column is new): the old table is renamed, the new
/// one made under the name and filled from it, the old one dropped.
///
/// Runs in the migration's transaction (see `use_transaction`), so on one connection.
/// That connection's copy of the schema is read afresh first: SQLite checks a name for
/// `ALTER TABLE … RENAME` and `CREATE TABLE` against the copy it holds, and a pooled
/// connection's copy can predate a rebuild done on another connection (000013 rebuilds
/// right after this migration's own), making it see `request_count_old` still there.
async fn rebuild_sqlite(manager: &SchemaManager<'_>, sharded: bool) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    conn.execute_unprepared("SELECT COUNT(*) FROM sqlite_master")
        .await?;
    conn.execute_unprepared("ALTER TABLE request_count RENAME TO request_count_old")
        .await?;
    let mut table = Table::create();
    table
        .table(Alias::new("request_count"))
        .col(timestamp_with_time_zone(RequestCount::HourStart))
        .col(string_len(RequestCount::IpAddress, 45))
        .col(text(RequestCount::Section))
        .col(big_integer(RequestCount::Requests))
        .col(timestamp_with_time_zone(RequestCount::FirstSeen))
        .col(timestamp_with_time_zone(RequestCount::LastSeen))
        .col(text(RequestCount::MinPath));
    let mut key = Index::create();
    key.col(RequestCount::HourStart)
        .col(RequestCount::IpAddress)
        .col(RequestCount::Section);
    if sharded {
        table.col(small_integer(RequestCount::Shard).default(0));
        key.col(RequestCount::Shard);
    }
    manager
        .create_table(table.primary_key(&mut key).to_owned())
        .await?;
    let columns = "hour_start, ip_address, section, requests, first_seen, last_seen, min_path";
    conn.execute_unprepared(&format!(
        "INSERT INTO request_count ({columns}) SELECT {columns} FROM request_count_old"
    ))
    .await?;
    conn.execute_unprepared("DROP TABLE request_count_old")
        .await?;
    Ok(())
}

/// The `ON CONFLICT` clause that adds counts to a sharded `request_count` row.
fn upsert_sql(backend: DbBackend) -> String {
    upsert_on(backend, "hour_start, ip_address, section, shard")
}

#[derive(DeriveIden)]
enum RequestCount {
    HourStart,
    IpAddress,
    Section,
    Shard,
    Requests,
    FirstSeen,
    LastSeen,
    MinPath,
}
