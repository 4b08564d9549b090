//! A flag is an incident: one `suspicious_ip` row per address and rule while the activity
//! goes on, with its first and last matching request and how many requests it made. Rows
//! are updated as later windows see the same activity, so the unique (address, rule,
//! window start) index gives way to a lookup index on (address, rule, last seen).
//!
//! Rows written before this migration get their window as first and last seen and a
//! request count of 0 ("not counted"): their requests may already be purged.

#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// SQLite adds a NOT NULL column only with a constant default; every row gets a real
/// value from the UPDATE below or from the flag job.
const EPOCH: &str = "1970-01-01T00:00:00+00:00";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        for column in [
            timestamp_with_time_zone(SuspiciousIp::FirstSeen)
                .default(EPOCH)
                .to_owned(),
            timestamp_with_time_zone(SuspiciousIp::LastSeen)
                .default(EPOCH)
                .to_owned(),
            big_integer(SuspiciousIp::RequestCount)
                .default(0)
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(SuspiciousIp::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .exec_stmt(
                Query::update()
                    .table(SuspiciousIp::Table)
                    .value(
                        SuspiciousIp::FirstSeen,
                        Expr::col(SuspiciousIp::WindowStart),
                    )
                    .value(SuspiciousIp::LastSeen, Expr::col(SuspiciousIp::WindowEnd))
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_suspicious_ip_window")
                    .table(SuspiciousIp::Table)
                    .to_owned(),
            )
            .await?;
        // The flag job finds an address's open incident by its last activity.
        manager
            .create_index(
                Index::create()
                    .name("idx_suspicious_ip_incident")
                    .table(SuspiciousIp::Table)
                    .col(SuspiciousIp::IpAddress)
                    .col(SuspiciousIp::Rule)
                    .col(SuspiciousIp::LastSeen)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_suspicious_ip_incident")
                    .table(SuspiciousIp::Table)
                    .to_owned(),
            )
            .await?;
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
        for column in [
            SuspiciousIp::FirstSeen,
            SuspiciousIp::LastSeen,
            SuspiciousIp::RequestCount,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(SuspiciousIp::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum SuspiciousIp {
    Table,
    IpAddress,
    Rule,
    WindowStart,
    WindowEnd,
    FirstSeen,
    LastSeen,
    RequestCount,
}
