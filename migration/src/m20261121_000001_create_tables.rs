//! The three tables of the Django module (request_log, blocked_ip, suspicious_ip) plus
//! log_batch, which makes request-log ingestion idempotent.

// sea-orm-migration's async_trait methods take `&SchemaManager` with an elided lifetime;
// writing `<'_>` makes it early-bound and no longer matches the trait.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RequestLog::Table)
                    .if_not_exists()
                    .col(big_pk_auto(RequestLog::Id))
                    .col(string_len(RequestLog::IpAddress, 45))
                    .col(timestamp_with_time_zone(RequestLog::Timestamp))
                    .col(string_len(RequestLog::Method, 16))
                    .col(text(RequestLog::Path))
                    .col(integer(RequestLog::Status))
                    .to_owned(),
            )
            .await?;
        // The hourly job and the admin API read time windows ...
        manager
            .create_index(
                Index::create()
                    .name("idx_request_log_timestamp")
                    .table(RequestLog::Table)
                    .col(RequestLog::Timestamp)
                    .to_owned(),
            )
            .await?;
        // ... and one address's requests over time (GROUP BY ip within a window).
        manager
            .create_index(
                Index::create()
                    .name("idx_request_log_ip_timestamp")
                    .table(RequestLog::Table)
                    .col(RequestLog::IpAddress)
                    .col(RequestLog::Timestamp)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(LogBatch::Table)
                    .if_not_exists()
                    .col(string_len(LogBatch::BatchId, 36).primary_key())
                    .col(integer(LogBatch::Events))
                    .col(timestamp_with_time_zone(LogBatch::IngestedAt))
                    .to_owned(),
            )
            .await?;
        // Retention deletes old batch ids by age.
        manager
            .create_index(
                Index::create()
                    .name("idx_log_batch_ingested_at")
                    .table(LogBatch::Table)
                    .col(LogBatch::IngestedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(BlockedIp::Table)
                    .if_not_exists()
                    .col(big_pk_auto(BlockedIp::Id))
                    .col(string_len_uniq(BlockedIp::IpAddress, 49))
                    .col(text(BlockedIp::Reason))
                    .col(timestamp_with_time_zone(BlockedIp::CreatedAt))
                    .col(timestamp_with_time_zone_null(BlockedIp::ExpiresAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SuspiciousIp::Table)
                    .if_not_exists()
                    .col(big_pk_auto(SuspiciousIp::Id))
                    .col(string_len(SuspiciousIp::IpAddress, 45))
                    .col(string_len(SuspiciousIp::Rule, 32))
                    .col(text(SuspiciousIp::Reason))
                    .col(timestamp_with_time_zone(SuspiciousIp::WindowStart))
                    .col(timestamp_with_time_zone(SuspiciousIp::WindowEnd))
                    .col(timestamp_with_time_zone(SuspiciousIp::FlaggedAt))
                    .to_owned(),
            )
            .await?;
        // One flag per address, rule and window: re-running a window adds nothing.
        manager
            .create_index(
                Index::create()
                    .name("idx_suspicious_ip_window")
                    .table(SuspiciousIp::Table)
                    .col(SuspiciousIp::IpAddress)
                    .col(SuspiciousIp::Rule)
                    .col(SuspiciousIp::WindowStart)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_suspicious_ip_flagged_at")
                    .table(SuspiciousIp::Table)
                    .col(SuspiciousIp::FlaggedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            SuspiciousIp::Table.into_iden(),
            BlockedIp::Table.into_iden(),
            LogBatch::Table.into_iden(),
            RequestLog::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum RequestLog {
    Table,
    Id,
    IpAddress,
    Timestamp,
    Method,
    Path,
    Status,
}

#[derive(DeriveIden)]
enum LogBatch {
    Table,
    BatchId,
    Events,
    IngestedAt,
}

#[derive(DeriveIden)]
enum BlockedIp {
    Table,
    Id,
    IpAddress,
    Reason,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum SuspiciousIp {
    Table,
    Id,
    IpAddress,
    Rule,
    Reason,
    WindowStart,
    WindowEnd,
    FlaggedAt,
}
