//! Every automatic ban, kept after its block is gone: escalating bans make a repeat
//! offender's next ban longer than its last (`IPTRACK_BAN_ESCALATION`), and `iptrack
//! blocked` and the admin API show how many times an address has been banned.
//!
//! `event_key` names the event that caused the ban (a streaming rule's crossing, or an
//! hourly window's flag); a job that runs again finds its key taken and records nothing
//! twice. NULL is allowed (and never conflicts) for bans with no such name.

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
                    .table(BanHistory::Table)
                    .if_not_exists()
                    .col(big_pk_auto(BanHistory::Id))
                    .col(string_len(BanHistory::IpAddress, 49))
                    .col(text(BanHistory::Rule))
                    .col(timestamp_with_time_zone(BanHistory::BannedAt))
                    .col(big_integer(BanHistory::DurationSecs))
                    .col(timestamp_with_time_zone(BanHistory::ExpiresAt))
                    .col(text_null(BanHistory::EventKey).unique_key())
                    .to_owned(),
            )
            .await?;
        // Escalation reads an address's latest ban; the ban counts group by address.
        manager
            .create_index(
                Index::create()
                    .name("idx_ban_history_ip_banned_at")
                    .table(BanHistory::Table)
                    .col(BanHistory::IpAddress)
                    .col(BanHistory::BannedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(BanHistory::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum BanHistory {
    Table,
    Id,
    IpAddress,
    Rule,
    BannedAt,
    DurationSecs,
    ExpiresAt,
    EventKey,
}
