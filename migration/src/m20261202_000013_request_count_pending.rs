//! Counts that wait to be folded: `request_count_pending` (PostgreSQL).
//!
//! Every batch used to upsert about one `request_count` row per address in its own
//! transaction. On PostgreSQL that upsert cost as much as the `COPY` of the rows itself
//! (an index probe and a new row version per address), and it was the reason one worker
//! reached only 0.57 of `psql \copy` (BENCHMARKS.md, "Request logging"). A batch now
//! stores its counts as one row of arrays here, in the same transaction as its rows (so
//! they stay exact and idempotent by batch id, as before), and a fold
//! (`worker/src/count_fold.rs`) moves pending rows into `request_count`: one upsert per
//! key for every batch folded together, and one `DELETE` per batch, not per address.
//!
//! One fold runs at a time, so concurrent batches no longer meet on count rows, and the
//! shards of migration 000012 serve nothing: they are merged back into one row per key
//! and the column goes (000012's own `down`).
//!
//! SQLite has one writer at a time: no two batches ever waited on each other there, and a
//! batch keeps adding to `request_count` in its transaction. It gets no pending table.
//!
//! Down folds what is pending, drops the table and gives the shards back (000012's `up`).

#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::{
    prelude::*,
    sea_orm::{ConnectionTrait, DbBackend},
};

use crate::{
    m20261201_000007_request_count::upsert_sql, m20261202_000012_request_count_shards as shards,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// In one transaction on SQLite too, as 000012: the shards' merge and the rebuild of
    /// `request_count` are all or nothing, on one connection.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        shards::Migration.down(manager).await?;
        let conn = manager.get_connection();
        if conn.get_database_backend() == DbBackend::Postgres {
            // One row per batch: its counts as one array per column, a key per index. The
            // arrays are what `request_count` would have been given; nothing is indexed
            // but the batch id (a fold takes whole batches). Arrays of unequal lengths
            // would unnest into NULLs that `request_count` refuses, failing every fold
            // after them: such a row is refused here instead, failing only its batch.
            conn.execute_unprepared(
                "CREATE TABLE request_count_pending (\
                   batch_id varchar(36) PRIMARY KEY, \
                   hour_start timestamptz[] NOT NULL, \
                   ip_address text[] NOT NULL, \
                   section text[] NOT NULL, \
                   requests int8[] NOT NULL, \
                   first_seen timestamptz[] NOT NULL, \
                   last_seen timestamptz[] NOT NULL, \
                   min_path text[] NOT NULL, \
                   CONSTRAINT request_count_pending_aligned CHECK (\
                     cardinality(ip_address) = cardinality(hour_start) \
                     AND cardinality(section) = cardinality(hour_start) \
                     AND cardinality(requests) = cardinality(hour_start) \
                     AND cardinality(first_seen) = cardinality(hour_start) \
                     AND cardinality(last_seen) = cardinality(hour_start) \
                     AND cardinality(min_path) = cardinality(hour_start) \
                     AND array_position(ip_address, NULL) IS NULL \
                     AND array_position(section, NULL) IS NULL \
                     AND array_position(min_path, NULL) IS NULL \
                     AND array_position(requests, NULL) IS NULL \
                     AND array_position(hour_start, NULL) IS NULL \
                     AND array_position(first_seen, NULL) IS NULL \
                     AND array_position(last_seen, NULL) IS NULL))",
            )
            .await?;
            compress_with_lz4(conn).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        if conn.get_database_backend() == DbBackend::Postgres {
            conn.execute_unprepared(&fold_sql(None)).await?;
            conn.execute_unprepared("DROP TABLE request_count_pending")
                .await?;
        }
        shards::Migration.up(manager).await
    }
}

/// Compresses the pending arrays with lz4 where the server was built with it (PostgreSQL
/// 14 and later; Debian's and the official images are): a batch's arrays are compressed
/// once and read once by the fold, and pglz's compression cost 2.5 % of a busy box's CPU
/// under `perf` (BENCHMARKS.md, "Counts folded outside the batch"). Elsewhere they keep
/// the default.
async fn compress_with_lz4<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    let lz4 = conn
        .query_one_raw(sea_orm_migration::sea_orm::Statement::from_string(
            DbBackend::Postgres,
            "SELECT 1 AS lz4 FROM pg_settings \
             WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)",
        ))
        .await?
        .is_some();
    if lz4 {
        conn.execute_unprepared(
            "ALTER TABLE request_count_pending \
             ALTER COLUMN hour_start SET COMPRESSION lz4, \
             ALTER COLUMN ip_address SET COMPRESSION lz4, \
             ALTER COLUMN section SET COMPRESSION lz4, \
             ALTER COLUMN requests SET COMPRESSION lz4, \
             ALTER COLUMN first_seen SET COMPRESSION lz4, \
             ALTER COLUMN last_seen SET COMPRESSION lz4, \
             ALTER COLUMN min_path SET COMPRESSION lz4",
        )
        .await?;
    }
    Ok(())
}

/// One fold (PostgreSQL): deletes up to `batches` pending rows (all of them without a
/// limit), oldest batch ids first, and adds their counts to `request_count` in one
/// upsert, in key order. Returns one row: `batches` (pending rows folded) and `keys`
/// (`request_count` rows written).
///
/// One statement, so the counts leave the pending table and reach `request_count` in one
/// commit: a reader that folds before it reads (the flag job) sees every batch committed
/// before its fold exactly once. A batch committing meanwhile is not in the `DELETE`'s
/// snapshot and waits for the next fold.
pub fn fold_sql(batches: Option<u32>) -> String {
    let chosen = match batches {
        Some(limit) => format!(
            "WHERE batch_id IN (SELECT batch_id FROM request_count_pending \
                                ORDER BY batch_id LIMIT {limit})"
        ),
        None => String::new(),
    };
    format!(
        "WITH moved AS (DELETE FROM request_count_pending {chosen} RETURNING *), \
         counts AS (\
           SELECT c.* FROM moved, \
           UNNEST(moved.hour_start, moved.ip_address, moved.section, moved.requests, \
                  moved.first_seen, moved.last_seen, moved.min_path) \
           AS c(hour_start, ip_address, section, requests, first_seen, last_seen, min_path)), \
         added AS (\
           INSERT INTO request_count \
           (hour_start, ip_address, section, requests, first_seen, last_seen, min_path) \
           SELECT hour_start, ip_address, section, SUM(requests)::int8, MIN(first_seen), \
                  MAX(last_seen), MIN(min_path) \
           FROM counts GROUP BY hour_start, ip_address, section \
           ORDER BY hour_start, ip_address, section {} \
           RETURNING 1) \
         SELECT (SELECT COUNT(*) FROM moved) AS batches, (SELECT COUNT(*) FROM added) AS keys",
        upsert_sql(DbBackend::Postgres)
    )
}
