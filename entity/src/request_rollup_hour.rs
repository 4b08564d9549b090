//! Requests per hour, status class and country: kept exactly by the request-log job and
//! the geolocation fill, read by the dashboard's countries view, its top countries and the
//! check of the hour summaries (see `query::rollup` and migration
//! `m20261202_000011_rollup_levels`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "request_rollup_hour")]
pub struct Model {
    /// Start of the hour, UTC.
    #[sea_orm(primary_key, auto_increment = false)]
    pub hour_start: DateTimeUtc,
    /// `query::status_class::StatusClass::code` of the rows' status.
    #[sea_orm(primary_key, auto_increment = false)]
    pub status_class: i64,
    /// `''` for rows not located (yet).
    #[sea_orm(primary_key, auto_increment = false)]
    pub country_code: String,
    /// The largest of the rows' country names.
    pub country: String,
    pub requests: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
