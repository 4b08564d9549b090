//! Traffic statistics over a time range: requests per bucket and status class, top
//! addresses, countries and paths, and how many requests were refused (403) or
//! rate-limited (429).
//!
//! The figures come from the pre-aggregates (`rollup`, `summaries`), not from every row of
//! the range: the buckets from `request_rollup_minute`'s whole minutes plus the rows of the
//! partial minutes at the edges, top countries from `request_rollup_hour` and the rows of
//! the partial hours (both exact); top addresses and paths from the hour
//! summaries plus raw rows for the rest of the range (exact when no hour is summarized,
//! merged per-hour top lists otherwise: see `summaries`). The totals are the buckets'
//! sums, so the range is aggregated once for both.

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Select,
    sea_query::{Alias, Expr, ExprTrait, Order, Query, SelectStatement},
};
use serde::Serialize;

use super::{
    rollup::HourSplit,
    summaries::{self, Coverage},
    timeline::{self, Bucket, BucketSize, Timeline},
};
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
    let backend = db.get_database_backend();
    // Independent aggregates over the same range: run at once, each on a connection of
    // the pool, so the answer takes as long as the slowest rather than the sum.
    let top_lists = async {
        let coverage = Coverage::of(db, timeline.since, timeline.until).await?;
        futures::try_join!(
            summaries::top(
                db,
                &coverage,
                Column::IpAddress,
                "request_summary_address",
                q.top,
                q.top_by_key(Column::IpAddress),
            ),
            summaries::top(
                db,
                &coverage,
                Column::Path,
                "request_summary_path",
                q.top,
                q.top_by_key(Column::Path),
            ),
        )
    };
    let (buckets, (top_addresses, top_paths), top_countries) = futures::try_join!(
        timeline::series_all(db, timeline),
        top_lists,
        CountryCount::find_by_statement(backend.build(&q.top_countries())).all(db),
    )?;
    let top_addresses = top_addresses
        .into_iter()
        .map(|entry| AddressCount {
            ip_address: entry.key,
            requests: entry.requests,
        })
        .collect();
    let top_paths = top_paths
        .into_iter()
        .map(|entry| PathCount {
            path: entry.key,
            requests: entry.requests,
        })
        .collect();

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

    /// The rows of the range: the predicate every raw figure starts from.
    fn in_range(&self) -> Select<request_log::Entity> {
        request_log::Entity::find()
            .select_only()
            .filter(self.timeline.condition())
    }

    /// The raw top list by `column` over the whole range, as `key` and `requests`.
    fn top_by_key(&self, column: Column) -> Select<request_log::Entity> {
        top_by(self.in_range(), column, self.top).column_as(column, "key")
    }

    /// Top countries: `request_rollup_hour` and the edge rows, merged in one statement (so
    /// the order of ties and the `MAX` of names follow the database's collation, as they
    /// did over the rows alone).
    fn top_countries(&self) -> SelectStatement {
        let split = HourSplit::new(self.timeline.since, self.timeline.until);
        let Some(parts) = split.parts() else {
            // An empty range: no country.
            return Query::select()
                .expr_as(Expr::cust("''"), Alias::new("country_code"))
                .expr_as(Expr::cust("''"), Alias::new("country"))
                .expr_as(Expr::cust("CAST(0 AS BIGINT)"), Alias::new("requests"))
                .and_where(Expr::cust("1 = 0"))
                .to_owned();
        };
        Query::select()
            .column(Alias::new("country_code"))
            .expr_as(Expr::cust("MAX(country)"), Alias::new("country"))
            .expr_as(
                Expr::cust("CAST(SUM(requests) AS BIGINT)"),
                Alias::new("requests"),
            )
            .from_subquery(parts, Alias::new("parts"))
            .and_where(Expr::col(Alias::new("country_code")).ne(""))
            .group_by_col(Alias::new("country_code"))
            .and_having(Expr::cust("SUM(requests) > 0"))
            .order_by_expr(Expr::cust("SUM(requests)"), Order::Desc)
            .order_by(Alias::new("country_code"), Order::Asc)
            .limit(self.top)
            .to_owned()
    }
}

/// The SQL [`stats`] runs for a range, by figure, for `EXPLAIN` in the benchmark (the top
/// lists as they run with the summaries `coverage` finds).
pub fn statements(
    backend: DbBackend,
    timeline: &Timeline,
    top: u64,
    coverage: &Coverage,
) -> Vec<(&'static str, sea_orm::Statement)> {
    let q = Queries::new(timeline, top);
    let mut statements = timeline::statements_all(backend, timeline);
    statements.push(("top countries", backend.build(&q.top_countries())));
    for (name, column, table) in [
        (
            "top addresses",
            Column::IpAddress,
            "request_summary_address",
        ),
        ("top paths", Column::Path, "request_summary_path"),
    ] {
        statements.push((
            name,
            summaries::top_statement(backend, coverage, column, table, q.top)
                .unwrap_or_else(|| q.top_by_key(column).build(backend)),
        ));
    }
    statements
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
