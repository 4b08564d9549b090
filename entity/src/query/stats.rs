//! Traffic statistics over a time range: requests per minute, top addresses, countries and
//! paths, and how many requests were refused (403) or rate-limited (429).
//!
//! Each figure is one aggregate whose WHERE clause is a range on `request_log.timestamp`,
//! so the database reads only the range's rows through the time index, never the table.
//! The per-minute bucket is computed in SQL (the two backends spell it differently) and
//! minutes without requests are filled in here, so a chart gets every minute.

use chrono::{DateTime, Duration, DurationRound, NaiveDateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Select,
    sea_query::{Expr, Order},
};
use serde::Serialize;

use crate::request_log::{self, Column};

/// Longest range one stats request covers. With `since` rounded down to the minute, that
/// is 1,441 one-minute bars at most.
pub const MAX_RANGE: Duration = Duration::hours(24);
/// Most entries per "top" list.
pub const MAX_TOP: u64 = 100;

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stats {
    /// Start of the range (inclusive), rounded down to the minute.
    pub since: DateTime<Utc>,
    /// End of the range (exclusive).
    pub until: DateTime<Utc>,
    /// Requests in the range.
    pub total: i64,
    /// Requests answered 403 (blocked addresses included).
    pub forbidden_403: i64,
    /// Requests answered 429 (rate-limited).
    pub rate_limited_429: i64,
    /// One entry per minute of the range, oldest first, zeros included.
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

#[derive(Debug, FromQueryResult)]
struct Bucket {
    minute: String,
    requests: i64,
}

#[derive(Debug, FromQueryResult)]
struct Totals {
    total: i64,
    forbidden: i64,
    rate_limited: i64,
}

/// Statistics of `[since, until)` (`since` rounded down to the minute), with `top` entries
/// per list. Callers check the bounds (`MAX_RANGE`, `MAX_TOP`) and explain refusals; the
/// range is clamped here as a last guard.
pub async fn stats<C: ConnectionTrait>(
    db: &C,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    top: u64,
) -> Result<Stats, DbErr> {
    // The limit applies to the range asked for, not to the rounded one: clamping `until`
    // to the rounded `since` plus 24 h cut off the newest (up to a minute of) requests of
    // every full-length range, the dashboard's "24 hours" among them.
    let rounded = since.duration_trunc(Duration::minutes(1)).unwrap_or(since);
    let until = until.clamp(rounded, since + MAX_RANGE);
    let since = rounded;
    let q = Queries::new(db.get_database_backend(), since, until, top);
    let totals = q
        .totals()
        .into_model::<Totals>()
        .one(db)
        .await?
        .unwrap_or(Totals {
            total: 0,
            forbidden: 0,
            rate_limited: 0,
        });
    let buckets = q.per_minute().into_model::<Bucket>().all(db).await?;
    let top_addresses = q
        .top_addresses()
        .into_model::<AddressCount>()
        .all(db)
        .await?;
    let top_countries = q
        .top_countries()
        .into_model::<CountryCount>()
        .all(db)
        .await?;
    let top_paths = q.top_paths().into_model::<PathCount>().all(db).await?;

    Ok(Stats {
        since,
        until,
        total: totals.total,
        forbidden_403: totals.forbidden,
        rate_limited_429: totals.rate_limited,
        requests_per_minute: fill_minutes(since, until, &buckets),
        top_addresses,
        top_countries,
        top_paths,
    })
}

/// The statements behind [`stats`], one per figure.
#[derive(Debug, Clone, Copy)]
struct Queries {
    backend: DbBackend,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    top: u64,
}

impl Queries {
    fn new(backend: DbBackend, since: DateTime<Utc>, until: DateTime<Utc>, top: u64) -> Self {
        Self {
            backend,
            since,
            until,
            top: top.clamp(1, MAX_TOP),
        }
    }

    /// The rows of the range: the predicate every figure starts from.
    fn in_range(&self) -> Select<request_log::Entity> {
        request_log::Entity::find()
            .select_only()
            .filter(Column::Timestamp.gte(self.since))
            .filter(Column::Timestamp.lt(self.until))
    }

    fn totals(&self) -> Select<request_log::Entity> {
        self.in_range()
            .column_as(Expr::cust("COUNT(*)"), "total")
            .column_as(count_where(403), "forbidden")
            .column_as(count_where(429), "rate_limited")
    }

    fn per_minute(&self) -> Select<request_log::Entity> {
        self.in_range()
            .column_as(minute_bucket(self.backend), "minute")
            .column_as(Expr::cust("COUNT(*)"), "requests")
            .group_by(minute_bucket(self.backend))
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
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    top: u64,
) -> Vec<(&'static str, sea_orm::Statement)> {
    let q = Queries::new(backend, since, until, top);
    vec![
        ("totals", q.totals().build(backend)),
        ("requests per minute", q.per_minute().build(backend)),
        ("top addresses", q.top_addresses().build(backend)),
        ("top countries", q.top_countries().build(backend)),
        ("top paths", q.top_paths().build(backend)),
    ]
}

fn count_where(status: i32) -> Expr {
    Expr::cust(format!("COUNT(CASE WHEN status = {status} THEN 1 END)"))
}

/// `query` grouped by `column`, largest groups first (ties by value), `top` of them, with
/// the group size as `requests`.
fn top_by(
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

/// The minute of `timestamp` as text `YYYY-MM-DD?HH:MM`. SQLite stores timestamps as
/// RFC 3339 text, so the minute is its first 16 characters; PostgreSQL truncates the
/// `timestamptz` in UTC (not the session's time zone).
fn minute_bucket(backend: DbBackend) -> Expr {
    match backend {
        DbBackend::Postgres => Expr::cust(
            "to_char(date_trunc('minute', timestamp AT TIME ZONE 'UTC'), 'YYYY-MM-DD\"T\"HH24:MI')",
        ),
        _ => Expr::cust("substr(timestamp, 1, 16)"),
    }
}

/// One entry per minute of `[since, until)`, zeros where no bucket was returned.
fn fill_minutes(
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    buckets: &[Bucket],
) -> Vec<MinuteCount> {
    let counts: std::collections::HashMap<DateTime<Utc>, i64> = buckets
        .iter()
        .filter_map(|bucket| {
            let text = bucket.minute.replacen(' ', "T", 1);
            NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M")
                .ok()
                .map(|minute| (minute.and_utc(), bucket.requests))
        })
        .collect();
    let mut minutes = Vec::new();
    let mut minute = since;
    while minute < until {
        minutes.push(MinuteCount {
            minute,
            requests: counts.get(&minute).copied().unwrap_or(0),
        });
        minute += Duration::minutes(1);
    }
    minutes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_minute_of_the_range_gets_an_entry() {
        let since = DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z")
            .unwrap_or_default()
            .to_utc();
        let buckets = [
            Bucket {
                minute: "2026-11-21T10:01".into(),
                requests: 5,
            },
            Bucket {
                minute: "2026-11-21 10:03".into(),
                requests: 2,
            },
        ];
        let counts: Vec<i64> = fill_minutes(since, since + Duration::minutes(4), &buckets)
            .iter()
            .map(|m| m.requests)
            .collect();
        assert_eq!(counts, [0, 5, 0, 2]);
    }
}
