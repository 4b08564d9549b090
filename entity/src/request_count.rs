//! Requests per hour, address and path section, read by the hourly flag job. Exact: on
//! SQLite the request-log job adds to it in each batch's transaction; on PostgreSQL the
//! batch stores its counts in `request_count_pending` and a fold moves them here, which
//! the flag job runs before it reads (schema and the SQL that fills it:
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
    pub requests: i64,
    pub first_seen: DateTimeUtc,
    pub last_seen: DateTimeUtc,
    /// The smallest of the paths counted (the database's ordering of text).
    pub min_path: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
