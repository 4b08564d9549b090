//! Addresses flagged by the hourly `flag-suspicious-ips` job (Django's `SuspiciousIP`).

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "suspicious_ip")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub ip_address: String,
    /// Why, in words: "412 requests in 1h (threshold 100)".
    pub reason: String,
    pub flagged_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
