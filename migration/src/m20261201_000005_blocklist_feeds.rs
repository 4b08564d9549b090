//! `blocklist_feed`: one row per imported blocklist source (`feed:NAME` in
//! `blocked_ip.source`), recording its last import: where the list came from, when, and
//! what the import did. The admin API's list of sources shows it; the entries themselves
//! are `blocked_ip` rows.

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
                    .table(BlocklistFeed::Table)
                    .if_not_exists()
                    .col(text(BlocklistFeed::Name).primary_key())
                    .col(text(BlocklistFeed::Origin))
                    .col(timestamp_with_time_zone(BlocklistFeed::ImportedAt))
                    .col(big_integer(BlocklistFeed::Entries))
                    .col(big_integer(BlocklistFeed::Added))
                    .col(big_integer(BlocklistFeed::Withdrawn))
                    .col(big_integer(BlocklistFeed::Kept))
                    .col(big_integer(BlocklistFeed::Skipped))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(BlocklistFeed::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum BlocklistFeed {
    Table,
    Name,
    Origin,
    ImportedAt,
    Entries,
    Added,
    Withdrawn,
    Kept,
    Skipped,
}
