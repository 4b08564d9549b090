//! What each request-log row carries beyond the Django module's columns: how long the
//! response took, who asked (user agent, the application's user id, the query string when
//! the operator opts in), and where from (country and city, filled in by the geolocation
//! job after the row is written).
//!
//! Every column defaults to 0 or the empty string, "unknown", so rows written before this
//! migration (and rows whose location is not looked up yet) need no NULL handling.

#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement, so each column is its own ALTER TABLE.
        for column in new_columns() {
            manager
                .alter_table(
                    Table::alter()
                        .table(RequestLog::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            RequestLog::DurationUs,
            RequestLog::UserAgent,
            RequestLog::UserId,
            RequestLog::QueryString,
            RequestLog::CountryCode,
            RequestLog::Country,
            RequestLog::City,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(RequestLog::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

fn new_columns() -> Vec<ColumnDef> {
    vec![
        big_integer(RequestLog::DurationUs).default(0).to_owned(),
        text(RequestLog::UserAgent).default("").to_owned(),
        text(RequestLog::UserId).default("").to_owned(),
        text(RequestLog::QueryString).default("").to_owned(),
        string_len(RequestLog::CountryCode, 2)
            .default("")
            .to_owned(),
        text(RequestLog::Country).default("").to_owned(),
        text(RequestLog::City).default("").to_owned(),
    ]
}

#[derive(DeriveIden)]
enum RequestLog {
    Table,
    DurationUs,
    UserAgent,
    UserId,
    QueryString,
    CountryCode,
    Country,
    City,
}
