//! Room on the pages of the counting tables (PostgreSQL): `request_count`,
//! `request_rollup_minute` and `request_rollup_hour` are updated in place by every batch
//! (a busy address's hour row once per batch), and none of the columns an update changes
//! is indexed. PostgreSQL can then write the new version on the same page without a new
//! index entry (a HOT update), but only when the page has room; at the default fillfactor
//! of 100 a page is full once its rows are inserted, so the first updates of every row
//! move it to another page and add an index entry, and dead versions pile up until vacuum.
//! A fillfactor of 70 keeps 30 % of each new page for those updates. Pages already written
//! keep their layout until they are rewritten. SQLite has no such setting; nothing changes
//! there. BENCHMARKS.md ("Request logging") has the measurement.

#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The tables each batch updates in place.
pub const COUNTING_TABLES: [&str; 3] = [
    "request_count",
    "request_rollup_minute",
    "request_rollup_hour",
];

/// Their fillfactor.
pub const FILLFACTOR: u8 = 70;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_fillfactor(manager, FILLFACTOR).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_fillfactor(manager, 100).await
    }
}

async fn set_fillfactor(manager: &SchemaManager<'_>, fillfactor: u8) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    if conn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    for table in COUNTING_TABLES {
        // Table names and the number are constants: nothing from outside reaches the text.
        conn.execute_unprepared(&format!(
            "ALTER TABLE {table} SET (fillfactor = {fillfactor})"
        ))
        .await?;
    }
    Ok(())
}
