//! Requests per hour, address and path section (in up to `SHARDS` rows each, summed by
//! readers), kept exactly by the request-log job in each batch's transaction, read by the
//! hourly flag job (schema and the SQL that fills it:
//! `iptrack_migration::request_count`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "request_count")]
pub struct Model {
    /// The start of the hour (UTC) the requests fall in.
    #[sea_orm(primary_key, auto_increment = false)]
    pub hour_start: DateTimeUtc,
    #[sea_orm(primary_key, auto_increment = false)]
    pub ip_address: String,
    /// The path up to its second `/` (`/admin/users` → `/admin`; `/` → `/`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub section: String,
    /// Which of the key's count rows: a batch adds to the one its batch id picks, so
    /// concurrent batches rarely wait on each other's rows. A key's counts are the sum over
    /// its shards (migration `m20261202_000012_request_count_shards`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub shard: i16,
    pub requests: i64,
    pub first_seen: DateTimeUtc,
    pub last_seen: DateTimeUtc,
    /// The smallest of the paths counted (the database's ordering of text).
    pub min_path: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
