//! PostgreSQL's `request_log` becomes a declaratively partitioned table, `PARTITION BY
//! RANGE (timestamp)`: one table per day (the `purge-logs` job makes them ahead and drops
//! those past the retention whole, see `request_log_partitions`), so the table never grows
//! into one heap and retention costs no row deletes and leaves no bloat. The flag, stats
//! and logs queries all bound `timestamp`, so they read only their range's partitions.
//!
//! Rows already there are moved in the same transaction (sea-orm-migration runs each
//! PostgreSQL migration in one): ids, columns, defaults and indexes stay; the primary key
//! becomes `(id, timestamp)` because a partitioned table's unique keys must hold the
//! partition key. Ids stay unique: one identity sequence gives them all, continuing after
//! the old one. Nothing references `request_log` by foreign key.
//!
//! SQLite keeps its one table: this migration does nothing there.
//!
//! Stop the workers before migrating a large table: the conversion holds the table for
//! the time it takes to copy the rows (batches written meanwhile wait, they are not lost).

#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

use crate::request_log_partitions;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        request_log_partitions::partition(manager.get_connection(), chrono::Utc::now()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        request_log_partitions::unpartition(manager.get_connection()).await
    }
}
