//! One address's picture, for the dashboard's address page: its requests over time, what
//! it asked for and with which user agents, where it is, its flags and bans, and the
//! blocks in force that cover it.
//!
//! Every request-log figure reads the address's rows through `idx_request_log_ip_timestamp`
//! (address, then time), so the cost follows the address's traffic, not the table's.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, sea_query::Expr,
};
use serde::Serialize;

use super::{
    stats::{PathCount, top_by},
    timeline::{self, Bucket, BucketSize, Timeline},
};
use crate::{ban_history, blocked_ip, request_log, suspicious_ip};

/// Most flags and bans listed (newest first).
pub const MAX_HISTORY: u64 = 100;
/// The newest located row is looked for among this many of the address's newest rows, so
/// an address never located (geolocation off) costs a bounded read, not all its rows.
const LOCATION_SCAN: u64 = 20_000;

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddressProfile {
    /// The address in canonical form (IPv4-mapped IPv6 as IPv4).
    pub ip_address: String,
    /// Start of the range (inclusive), rounded down to the bucket.
    pub since: DateTime<Utc>,
    /// End of the range (exclusive).
    pub until: DateTime<Utc>,
    pub bucket: BucketSize,
    /// Requests in the range.
    pub requests: i64,
    /// The address's first and last request over all stored logs; `null` when none.
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    /// From the address's newest located request (among its newest 20,000); `null` when
    /// none is located.
    pub country_code: Option<String>,
    pub country: Option<String>,
    pub city: Option<String>,
    /// The range's requests per bucket and status class, oldest first.
    pub buckets: Vec<Bucket>,
    /// The range's requests by status, most first.
    pub statuses: Vec<StatusCount>,
    /// The range's most requested paths.
    pub top_paths: Vec<PathCount>,
    /// The range's most used user agents (empty text: none sent).
    pub user_agents: Vec<UserAgentCount>,
    /// Its flags, newest first (at most 100).
    pub flags: Vec<suspicious_ip::Model>,
    /// Its automatic bans, newest first (at most 100).
    pub bans: Vec<Ban>,
    /// Every block in force that covers it: its own, or a network's.
    pub blocks: Vec<CoveringBlock>,
    /// Whether any block covers it now.
    pub blocked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromQueryResult)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusCount {
    pub status: i32,
    pub requests: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromQueryResult)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserAgentCount {
    pub user_agent: String,
    pub requests: i64,
}

/// An automatic ban (`ban_history`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ban {
    /// The streaming rule that fired, or `flag-suspicious-ips`.
    pub rule: String,
    pub banned_at: DateTime<Utc>,
    /// How long it was made to last, after escalation.
    pub duration_secs: i64,
    pub expires_at: DateTime<Utc>,
}

/// A block in force covering the address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CoveringBlock {
    /// As stored: the address itself or a network holding it (`81.2.69.0/24`).
    pub ip_address: String,
    pub reason: String,
    /// `manual`, `rule:NAME` or `feed:NAME`.
    pub source: String,
    pub created_at: DateTime<Utc>,
    /// `null`: until unblocked.
    pub expires_at: Option<DateTime<Utc>>,
}

/// The picture of `ip` (canonical text) over the timeline's range. `block_entries` are the
/// `blocked_ip.ip_address` values that would cover it (the address and each network
/// holding it, as the blocklist stores them; `iptrack_core::blocklist::covering_entries`);
/// `now` decides which blocks are in force.
pub async fn profile<C: ConnectionTrait>(
    db: &C,
    ip: &str,
    block_entries: &[String],
    timeline: &Timeline,
    top: u64,
    now: DateTime<Utc>,
) -> Result<AddressProfile, DbErr> {
    use request_log::Column;
    let top = top.clamp(1, super::stats::MAX_TOP);
    let this = || Condition::all().add(Column::IpAddress.eq(ip));
    let in_range = || {
        request_log::Entity::find()
            .select_only()
            .filter(this())
            .filter(timeline.condition())
    };

    let buckets = timeline::series(db, timeline, this()).await?;
    let seen = |newest: bool| {
        let query = request_log::Entity::find()
            .select_only()
            .column(Column::Timestamp)
            .filter(this());
        let query = if newest {
            query.order_by_desc(Column::Timestamp)
        } else {
            query.order_by_asc(Column::Timestamp)
        };
        query.limit(1).into_tuple::<DateTime<Utc>>().one(db)
    };
    let first_seen = seen(false).await?;
    let last_seen = seen(true).await?;

    let oldest_scanned: Option<DateTime<Utc>> = request_log::Entity::find()
        .select_only()
        .column(Column::Timestamp)
        .filter(this())
        .order_by_desc(Column::Timestamp)
        .offset(LOCATION_SCAN - 1)
        .limit(1)
        .into_tuple()
        .one(db)
        .await?;
    let mut located = request_log::Entity::find()
        .select_only()
        .column(Column::CountryCode)
        .column(Column::Country)
        .column(Column::City)
        .filter(this())
        .filter(Column::CountryCode.ne(""));
    if let Some(oldest) = oldest_scanned {
        located = located.filter(Column::Timestamp.gte(oldest));
    }
    let location: Option<(String, String, String)> = located
        .order_by_desc(Column::Timestamp)
        .limit(1)
        .into_tuple()
        .one(db)
        .await?;

    let statuses = in_range()
        .column(Column::Status)
        .column_as(Expr::cust("COUNT(*)"), "requests")
        .group_by(Column::Status)
        .order_by_desc(Expr::cust("COUNT(*)"))
        .order_by_asc(Column::Status)
        .limit(super::stats::MAX_TOP)
        .into_model::<StatusCount>()
        .all(db)
        .await?;
    let top_paths = top_by(in_range(), Column::Path, top)
        .column(Column::Path)
        .into_model::<PathCount>()
        .all(db)
        .await?;
    let user_agents = top_by(in_range(), Column::UserAgent, top)
        .column(Column::UserAgent)
        .into_model::<UserAgentCount>()
        .all(db)
        .await?;

    let flags = suspicious_ip::Entity::find()
        .filter(suspicious_ip::Column::IpAddress.eq(ip))
        .order_by_desc(suspicious_ip::Column::FlaggedAt)
        .order_by_desc(suspicious_ip::Column::Id)
        .limit(MAX_HISTORY)
        .all(db)
        .await?;
    let bans = ban_history::Entity::find()
        .filter(ban_history::Column::IpAddress.eq(ip))
        .order_by_desc(ban_history::Column::BannedAt)
        .order_by_desc(ban_history::Column::Id)
        .limit(MAX_HISTORY)
        .all(db)
        .await?
        .into_iter()
        .map(|ban| Ban {
            rule: ban.rule,
            banned_at: ban.banned_at,
            duration_secs: ban.duration_secs,
            expires_at: ban.expires_at,
        })
        .collect();
    let blocks: Vec<CoveringBlock> = blocked_ip::Entity::find()
        .filter(blocked_ip::Column::IpAddress.is_in(block_entries.iter().map(String::as_str)))
        .filter(
            Condition::any()
                .add(blocked_ip::Column::ExpiresAt.is_null())
                .add(blocked_ip::Column::ExpiresAt.gt(now)),
        )
        .order_by_asc(blocked_ip::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|block| CoveringBlock {
            ip_address: block.ip_address,
            reason: block.reason,
            source: block.source,
            created_at: block.created_at,
            expires_at: block.expires_at,
        })
        .collect();

    let (country_code, country, city) = match location {
        Some((code, country, city)) => (Some(code), Some(country), Some(city)),
        None => (None, None, None),
    };
    Ok(AddressProfile {
        ip_address: ip.to_owned(),
        since: timeline.since,
        until: timeline.until,
        bucket: timeline.bucket,
        requests: buckets.iter().map(|b| b.requests).sum(),
        first_seen,
        last_seen,
        country_code,
        country,
        city,
        buckets,
        statuses,
        top_paths,
        user_agents,
        flags,
        bans,
        blocked: !blocks.is_empty(),
        blocks,
    })
}
