//! Addresses flagged by the hourly `flag-suspicious-ips` job (Django's `SuspiciousIP`) or
//! by a streaming detection rule as its threshold is crossed.
//!
//! A row is an incident: one per address and rule while the activity goes on. A later
//! window that sees the same address break the same rule within one flag window
//! (`IPTRACK_FLAG_WINDOW_SECS`) of its last seen request updates the row; after a longer
//! quiet gap a new row starts.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = SuspiciousIp))]
#[sea_orm(table_name = "suspicious_ip")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub ip_address: String,
    /// Which rule flagged it: the hourly job's `volume` (too many requests) or
    /// `sensitive-path`, or a streaming rule's name (`IPTRACK_DETECT_RULES`).
    pub rule: String,
    /// Why, in words: "412 requests in 1h (threshold 100)".
    pub reason: String,
    /// The windows examined, `[window_start, window_end)`: from the start of the first
    /// window that saw the incident to the end of the latest one.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub window_start: DateTimeUtc,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub window_end: DateTimeUtc,
    /// When the job first flagged it (the row was created).
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub flagged_at: DateTimeUtc,
    /// The incident's first request that broke the rule.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub first_seen: DateTimeUtc,
    /// Its latest such request so far.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub last_seen: DateTimeUtc,
    /// Requests that broke the rule from `first_seen` to `last_seen`, each counted once
    /// however many windows saw it (0 on rows flagged before counts were kept).
    pub request_count: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
