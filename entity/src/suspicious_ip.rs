//! Addresses flagged by the hourly `flag-suspicious-ips` job (Django's `SuspiciousIP`).

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, utoipa::ToSchema)]
#[schema(as = SuspiciousIp)]
#[sea_orm(table_name = "suspicious_ip")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub ip_address: String,
    /// Which rule flagged it: `volume` (too many requests) or `sensitive-path`.
    pub rule: String,
    /// Why, in words: "412 requests in 1h (threshold 100)".
    pub reason: String,
    /// The window examined, `[window_start, window_end)`. Unique with address and rule.
    #[schema(value_type = String, format = DateTime)]
    pub window_start: DateTimeUtc,
    #[schema(value_type = String, format = DateTime)]
    pub window_end: DateTimeUtc,
    #[schema(value_type = String, format = DateTime)]
    pub flagged_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
