//! Who made each block: `manual` (a person, through the CLI, API or dashboard),
//! `rule:NAME` (a detection rule or the hourly flag job's automatic blocking) or
//! `feed:NAME` (an imported blocklist). Automatic blocks never change a manual one, and a
//! feed's re-import withdraws only its own entries; both need to know whose a row is.
//!
//! Rows written before this migration were made by a person or by the hourly job; they are
//! all taken as manual, the side that is never changed or withdrawn automatically.

#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(BlockedIp::Table)
                    .add_column(text(BlockedIp::Source).default("manual").to_owned())
                    .to_owned(),
            )
            .await?;
        // A feed's re-import reads and deletes by source.
        manager
            .create_index(
                Index::create()
                    .name("idx_blocked_ip_source")
                    .table(BlockedIp::Table)
                    .col(BlockedIp::Source)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_blocked_ip_source")
                    .table(BlockedIp::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(BlockedIp::Table)
                    .drop_column(BlockedIp::Source)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum BlockedIp {
    Table,
    Source,
}
