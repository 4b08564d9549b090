//! The index the dashboard's charts need on `request_log`: (timestamp, status).
//!
//! Every chart groups a time range's rows by bucket and status class, reading only
//! `timestamp` and `status`. With both in one index PostgreSQL answers from the index
//! alone (an index-only scan, no heap page per row), and SQLite's covering index does the
//! same; the time index alone visits every row of the range in the table.
//!
//! Lean on purpose: each index costs every insert. The other dashboard queries are
//! served by the indexes already there: `idx_request_log_timestamp` (log pages and top
//! lists by range), `idx_request_log_ip_timestamp` (an address's page, address filters),
//! `idx_suspicious_ip_incident` (an address's flags, by its leading column),
//! `idx_ban_history_ip_banned_at` (its bans) and the unique `blocked_ip.ip_address` (the
//! blocks covering it). BENCHMARKS.md has the measurements.

#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const NAME: &str = "idx_request_log_timestamp_status";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(NAME)
                    .table(RequestLog::Table)
                    .col(RequestLog::Timestamp)
                    .col(RequestLog::Status)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(NAME).table(RequestLog::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum RequestLog {
    Table,
    Timestamp,
    Status,
}
