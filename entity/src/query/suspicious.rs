//! Recent flags from `suspicious_ip`, newest first, through its `flagged_at` index.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::suspicious_ip::{self, Column};

pub const DEFAULT_LIMIT: u64 = 100;
pub const MAX_LIMIT: u64 = 1_000;

#[derive(Debug, Clone, Default)]
pub struct SuspiciousFilter {
    pub ip_address: Option<String>,
    /// `volume` or `sensitive-path`.
    pub rule: Option<String>,
    /// `flagged_at >= since`.
    pub since: Option<DateTime<Utc>>,
    /// `flagged_at < until`.
    pub until: Option<DateTime<Utc>>,
}

/// Up to `limit` (clamped to `1..=MAX_LIMIT`) flags matching `filter`.
pub async fn recent<C: ConnectionTrait>(
    db: &C,
    filter: &SuspiciousFilter,
    limit: u64,
) -> Result<Vec<suspicious_ip::Model>, DbErr> {
    let mut query = suspicious_ip::Entity::find();
    if let Some(since) = filter.since {
        query = query.filter(Column::FlaggedAt.gte(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(Column::FlaggedAt.lt(until));
    }
    if let Some(ip) = &filter.ip_address {
        query = query.filter(Column::IpAddress.eq(ip.as_str()));
    }
    if let Some(rule) = &filter.rule {
        query = query.filter(Column::Rule.eq(rule.as_str()));
    }
    query
        .order_by_desc(Column::FlaggedAt)
        .order_by_desc(Column::Id)
        .limit(limit.clamp(1, MAX_LIMIT))
        .all(db)
        .await
}
