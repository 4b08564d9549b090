//! One row per request seen by the `IpTracking` middleware (Django's `RequestLog`).

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "request_log")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Client address as text (`203.0.113.9`, `2001:db8::1`), resolved past trusted proxies.
    pub ip_address: String,
    /// When the response was produced, UTC.
    pub timestamp: DateTimeUtc,
    pub method: String,
    /// Path without query string, at most 2,048 bytes.
    pub path: String,
    /// HTTP status of the response (403 for blocked, 429 for rate-limited requests too).
    pub status: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
