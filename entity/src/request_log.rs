//! One row per request seen by the `IpTracking` middleware (Django's `RequestLog`).

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = RequestLog))]
#[sea_orm(table_name = "request_log")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Client address as text (`203.0.113.9`, `2001:db8::1`), resolved past trusted proxies.
    pub ip_address: String,
    /// When the response was produced, UTC.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub timestamp: DateTimeUtc,
    pub method: String,
    /// Path without query string, at most 2,048 bytes.
    pub path: String,
    /// HTTP status of the response (403 for blocked, 429 for rate-limited requests too).
    pub status: i32,
    /// Time from the request reaching the middleware to the response, in microseconds.
    pub duration_us: i64,
    /// `User-Agent` header, at most 512 bytes; empty when absent.
    pub user_agent: String,
    /// The application's id of the authenticated user; empty for anonymous requests.
    pub user_id: String,
    /// Query string without `?`; empty unless `IPTRACK_LOG_QUERY_STRING` is on (it can
    /// carry secrets).
    pub query_string: String,
    /// ISO 3166-1 alpha-2 code; empty while unknown (not looked up yet, private, not found).
    pub country_code: String,
    /// English country name; empty while unknown.
    pub country: String,
    /// City name; empty while unknown.
    pub city: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
