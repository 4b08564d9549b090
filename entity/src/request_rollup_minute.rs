//! Requests per minute and status class: kept exactly by the request-log job, read by the
//! dashboard's charts (see `query::timeline` and migration `m20261202_000011_rollup_levels`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "request_rollup_minute")]
pub struct Model {
    /// Start of the minute, UTC.
    #[sea_orm(primary_key, auto_increment = false)]
    pub minute: DateTimeUtc,
    /// `query::status_class::StatusClass::code` of the rows' status.
    #[sea_orm(primary_key, auto_increment = false)]
    pub status_class: i64,
    pub requests: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
