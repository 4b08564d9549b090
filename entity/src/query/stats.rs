//! Traffic statistics over a time range: requests per bucket and status class, top
//! addresses, countries and paths, and how many requests were refused (403) or
//! rate-limited (429).
//!
//! Each figure is one aggregate whose WHERE clause is a range on `request_log.timestamp`,
//! so the database reads only the range's rows through the time index, never the table.
//! The buckets come from `timeline` (grouped in SQL, empty ones filled in there); the
//! totals are their sums, so the range is aggregated once for both.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select,
    sea_query::{Expr, Order},
};
use serde::Serialize;

use super::timeline::{self, Bucket, BucketSize, Timeline};
use crate::request_log::{self, Column};

/// Most entries per "top" list.
pub const MAX_TOP: u64 = 100;

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stats {
    /// Start of the range (inclusive), rounded down to the bucket.
    pub since: DateTime<Utc>,
    /// End of the range (exclusive).
    pub until: DateTime<Utc>,
    /// Requests in the range.
    pub total: i64,
    /// Requests answered 403 (blocked addresses included).
    pub forbidden_403: i64,
    /// Requests answered 429 (rate-limited).
    pub rate_limited_429: i64,
    /// How long each of `buckets` is.
    pub bucket: BucketSize,
    /// One entry per bucket of the range, oldest first, zeros included.
    pub buckets: Vec<Bucket>,
    /// One entry per minute of the range, oldest first, zeros included, when `bucket` is
    /// `minute`; empty otherwise (kept for the clients written before `buckets`).
    pub requests_per_minute: Vec<MinuteCount>,
    pub top_addresses: Vec<AddressCount>,
    /// Countries of located requests (requests not located yet are left out).
    pub top_countries: Vec<CountryCount>,
    pub top_paths: Vec<PathCount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MinuteCount {
    /// Start of the minute, UTC.
    pub minute: DateTime<Utc>,
    pub requests: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromQueryResult)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddressCount {
    pub ip_address: String,
    pub requests: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromQueryResult)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CountryCount {
    /// ISO 3166-1 alpha-2.
    pub country_code: String,
    pub country: String,
    pub requests: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromQueryResult)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PathCount {
    pub path: String,
    pub requests: i64,
}

/// Statistics of the timeline's range, with `top` entries per list (clamped to
/// `1..=MAX_TOP`; callers check the bound and explain refusals).
pub async fn stats<C: ConnectionTrait>(
    db: &C,
    timeline: &Timeline,
    top: u64,
) -> Result<Stats, DbErr> {
    let q = Queries::new(timeline, top);
    // Independent aggregates over the same range: run at once, each on a connection of
    // the pool, so the answer takes as long as the slowest rather than the sum.
    let (buckets, top_addresses, top_countries, top_paths) = futures::try_join!(
        timeline::series(db, timeline, Condition::all()),
        q.top_addresses().into_model::<AddressCount>().all(db),
        q.top_countries().into_model::<CountryCount>().all(db),
        q.top_paths().into_model::<PathCount>().all(db),
    )?;

    let requests_per_minute = if timeline.bucket == BucketSize::Minute {
        buckets
            .iter()
            .map(|b| MinuteCount {
                minute: b.start,
                requests: b.requests,
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(Stats {
        since: timeline.since,
        until: timeline.until,
        total: buckets.iter().map(|b| b.requests).sum(),
        forbidden_403: buckets.iter().map(|b| b.classes.forbidden_403).sum(),
        rate_limited_429: buckets.iter().map(|b| b.classes.too_many_429).sum(),
        bucket: timeline.bucket,
        buckets,
        requests_per_minute,
        top_addresses,
        top_countries,
        top_paths,
    })
}

/// The statements behind [`stats`], one per top list.
#[derive(Debug, Clone, Copy)]
struct Queries {
    timeline: Timeline,
    top: u64,
}

impl Queries {
    fn new(timeline: &Timeline, top: u64) -> Self {
        Self {
            timeline: *timeline,
            top: top.clamp(1, MAX_TOP),
        }
    }

    /// The rows of the range: the predicate every figure starts from.
    fn in_range(&self) -> Select<request_log::Entity> {
        request_log::Entity::find()
            .select_only()
            .filter(self.timeline.condition())
    }

    fn top_addresses(&self) -> Select<request_log::Entity> {
        top_by(self.in_range(), Column::IpAddress, self.top).column(Column::IpAddress)
    }

    fn top_countries(&self) -> Select<request_log::Entity> {
        top_by(
            self.in_range().filter(Column::CountryCode.ne("")),
            Column::CountryCode,
            self.top,
        )
        .column(Column::CountryCode)
        // Names of one code can differ between provider versions; any one of them will do.
        .column_as(Column::Country.max(), "country")
    }

    fn top_paths(&self) -> Select<request_log::Entity> {
        top_by(self.in_range(), Column::Path, self.top).column(Column::Path)
    }
}

/// The SQL [`stats`] runs for a range, by figure, for `EXPLAIN` in the benchmark.
pub fn statements(
    backend: DbBackend,
    timeline: &Timeline,
    top: u64,
) -> Vec<(&'static str, sea_orm::Statement)> {
    let q = Queries::new(timeline, top);
    vec![
        (
            "buckets by class",
            timeline::statement(backend, timeline, Condition::all()),
        ),
        ("top addresses", q.top_addresses().build(backend)),
        ("top countries", q.top_countries().build(backend)),
        ("top paths", q.top_paths().build(backend)),
    ]
}

/// `query` grouped by `column`, largest groups first (ties by value), `top` of them, with
/// the group size as `requests`.
pub(crate) fn top_by(
    query: Select<request_log::Entity>,
    column: Column,
    top: u64,
) -> Select<request_log::Entity> {
    query
        .column_as(Expr::cust("COUNT(*)"), "requests")
        .group_by(column)
        .order_by(Expr::cust("COUNT(*)"), Order::Desc)
        .order_by_asc(column)
        .limit(top)
}
