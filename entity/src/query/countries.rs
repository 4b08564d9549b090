//! Requests per country over a range, with the refusals and the flagged addresses among
//! them: the dashboard's countries table and map.
//!
//! Read from the pre-aggregates (`rollup`, `summaries`), never every row of the range:
//! - requests, 403, 429 and the requests not located: `request_rollup_hour` and the rows
//!   of the partial hours at the edges, in one statement (exact; `rollup::HourSplit`);
//! - distinct addresses: with no summarized hour in the range, counted over the rows
//!   (exact); otherwise the hours' HyperLogLog sketches merged with the rest's addresses
//!   (an estimate, see `summaries`);
//! - flagged addresses: from `suspicious_ip` (a small set), each flagged address probed in
//!   the range through `idx_request_log_ip_timestamp` (exact).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    QuerySelect, QueryTrait, Select,
    sea_query::{Alias, Expr, Order, Query, SelectStatement},
};
use serde::Serialize;

use super::{
    rollup::HourSplit,
    status_class::StatusClass,
    summaries::{self, Coverage},
};
use crate::request_log::{self, Column};

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Countries {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Located requests by country, most first.
    pub countries: Vec<CountryStats>,
    /// Requests in the range with no country (not located yet, private, or not found).
    pub unlocated_requests: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromQueryResult)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CountryStats {
    /// ISO 3166-1 alpha-2.
    pub country_code: String,
    pub country: String,
    pub requests: i64,
    /// Requests answered 403 (blocked addresses included).
    pub forbidden_403: i64,
    /// Requests answered 429 (rate-limited).
    pub rate_limited_429: i64,
    /// Distinct addresses seen from it in the range.
    pub addresses: i64,
    /// Of those, how many have ever been flagged (a `suspicious_ip` row).
    pub flagged_addresses: i64,
}

fn in_range(since: DateTime<Utc>, until: DateTime<Utc>) -> Select<request_log::Entity> {
    request_log::Entity::find()
        .select_only()
        .filter(Column::Timestamp.gte(since))
        .filter(Column::Timestamp.lt(until))
}

/// Requests, 403 and 429 per country code (`''`: not located), from `request_rollup_hour`
/// and the rows of the partial hours ([`HourSplit`]), in one statement. PostgreSQL's `SUM`
/// of `bigint` is `numeric`: cast back, so both backends read `i64`.
fn per_country(since: DateTime<Utc>, until: DateTime<Utc>) -> SelectStatement {
    let class_sum = |class: StatusClass| {
        format!(
            "CAST(SUM(CASE WHEN status_class = {} THEN requests ELSE 0 END) AS BIGINT)",
            class.code()
        )
    };
    let parts = HourSplit::new(since, until).parts().unwrap_or_else(|| {
        // An empty range: nothing.
        in_range(since, since)
            .column_as(Expr::cust("0"), "status_class")
            .column(Column::CountryCode)
            .column(Column::Country)
            .column_as(Expr::cust("0"), "requests")
            .into_query()
    });
    Query::select()
        .column(Alias::new("country_code"))
        .expr_as(Expr::cust("MAX(country)"), Alias::new("country"))
        .expr_as(
            Expr::cust("CAST(SUM(requests) AS BIGINT)"),
            Alias::new("requests"),
        )
        .expr_as(
            Expr::cust(class_sum(StatusClass::Forbidden403)),
            Alias::new("forbidden_403"),
        )
        .expr_as(
            Expr::cust(class_sum(StatusClass::TooMany429)),
            Alias::new("rate_limited_429"),
        )
        .from_subquery(parts, Alias::new("parts"))
        .group_by_col(Alias::new("country_code"))
        .and_having(Expr::cust("SUM(requests) > 0"))
        .order_by_expr(Expr::cust("SUM(requests)"), Order::Desc)
        .order_by(Alias::new("country_code"), Order::Asc)
        .to_owned()
}

/// Distinct addresses per located country over the rows of the range (exact): first per
/// country and address, then per country, which hashes instead of sorting the range as
/// `COUNT(DISTINCT ...)` does.
fn addresses_exact(since: DateTime<Utc>, until: DateTime<Utc>) -> SelectStatement {
    let per_address = in_range(since, until)
        .filter(Column::CountryCode.ne(""))
        .column(Column::CountryCode)
        .column(Column::IpAddress)
        .group_by(Column::CountryCode)
        .group_by(Column::IpAddress)
        .into_query();
    Query::select()
        .column(Alias::new("country_code"))
        .expr_as(Expr::cust("COUNT(*)"), Alias::new("n"))
        .from_subquery(per_address, Alias::new("per_address"))
        .group_by_col(Alias::new("country_code"))
        .to_owned()
}

/// Flagged addresses per located country in the range: the distinct addresses of
/// `suspicious_ip` (small), each looked up in the range by its address index.
fn flagged(since: DateTime<Utc>, until: DateTime<Utc>) -> SelectStatement {
    in_range(since, until)
        .filter(Column::CountryCode.ne(""))
        .filter(Expr::cust(
            "ip_address IN (SELECT DISTINCT ip_address FROM suspicious_ip)",
        ))
        .column(Column::CountryCode)
        .column_as(Expr::cust("COUNT(DISTINCT ip_address)"), "n")
        .group_by(Column::CountryCode)
        .into_query()
}

#[derive(Debug, FromQueryResult)]
struct CountryTotals {
    country_code: String,
    country: String,
    requests: i64,
    forbidden_403: i64,
    rate_limited_429: i64,
}

#[derive(Debug, FromQueryResult)]
struct PerCountry {
    country_code: String,
    n: i64,
}

/// The SQL of [`countries`], for `EXPLAIN` in the benchmarks (distinct addresses as they
/// run over the rows; with summarized hours they are read from the sketches).
pub fn statements(
    backend: DbBackend,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<(&'static str, sea_orm::Statement)> {
    vec![
        ("per country", backend.build(&per_country(since, until))),
        (
            "addresses (no summary)",
            backend.build(&addresses_exact(since, until)),
        ),
        ("flagged addresses", backend.build(&flagged(since, until))),
    ]
}

/// Countries of `[since, until)`; callers check the range's bounds.
pub async fn countries<C: ConnectionTrait>(
    db: &C,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Countries, DbErr> {
    let backend = db.get_database_backend();
    let addresses = async {
        let coverage = Coverage::of(db, since, until).await?;
        if coverage.summarized.is_empty() {
            Ok(
                PerCountry::find_by_statement(backend.build(&addresses_exact(since, until)))
                    .all(db)
                    .await?
                    .into_iter()
                    .map(|row| (row.country_code, row.n))
                    .collect::<HashMap<_, _>>(),
            )
        } else {
            summaries::estimated_addresses(db, &coverage).await
        }
    };
    // Independent aggregates over the same range: run at once (see `stats`).
    let (totals, addresses, flagged) = futures::try_join!(
        CountryTotals::find_by_statement(backend.build(&per_country(since, until))).all(db),
        addresses,
        PerCountry::find_by_statement(backend.build(&flagged(since, until))).all(db),
    )?;
    let flagged: HashMap<String, i64> = flagged
        .into_iter()
        .map(|row| (row.country_code, row.n))
        .collect();
    let mut unlocated_requests = 0;
    let mut countries = Vec::with_capacity(totals.len());
    for row in totals {
        if row.country_code.is_empty() {
            unlocated_requests += row.requests;
            continue;
        }
        countries.push(CountryStats {
            addresses: addresses
                .get(&row.country_code)
                .copied()
                .unwrap_or_default(),
            flagged_addresses: flagged.get(&row.country_code).copied().unwrap_or_default(),
            country_code: row.country_code,
            country: row.country,
            requests: row.requests,
            forbidden_403: row.forbidden_403,
            rate_limited_429: row.rate_limited_429,
        });
    }
    Ok(Countries {
        since,
        until,
        countries,
        unlocated_requests,
    })
}
