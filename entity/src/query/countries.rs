//! Requests per country over a range, with the refusals and the flagged addresses among
//! them: the dashboard's countries table and map.
//!
//! Two aggregates over the range's rows through the time index (the flagged addresses
//! are a semi-join against `suspicious_ip`, a small table), and one count of the rows
//! not located.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Select,
    sea_query::{Expr, Order, Query},
};
use serde::Serialize;

use crate::{
    request_log::{self, Column},
    suspicious_ip,
};

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
    #[sea_orm(skip)]
    pub flagged_addresses: i64,
}

#[derive(Debug, FromQueryResult)]
struct Flagged {
    country_code: String,
    flagged: i64,
}

fn in_range(since: DateTime<Utc>, until: DateTime<Utc>) -> Select<request_log::Entity> {
    request_log::Entity::find()
        .select_only()
        .filter(Column::Timestamp.gte(since))
        .filter(Column::Timestamp.lt(until))
}

fn per_country(since: DateTime<Utc>, until: DateTime<Utc>) -> Select<request_log::Entity> {
    in_range(since, until)
        .filter(Column::CountryCode.ne(""))
        .column(Column::CountryCode)
        // Names of one code can differ between provider versions; any one of them will do.
        .column_as(Column::Country.max(), "country")
        .column_as(Expr::cust("COUNT(*)"), "requests")
        .column_as(
            Expr::cust("COUNT(CASE WHEN status = 403 THEN 1 END)"),
            "forbidden_403",
        )
        .column_as(
            Expr::cust("COUNT(CASE WHEN status = 429 THEN 1 END)"),
            "rate_limited_429",
        )
        .column_as(Expr::cust("COUNT(DISTINCT ip_address)"), "addresses")
        .group_by(Column::CountryCode)
        .order_by(Expr::cust("COUNT(*)"), Order::Desc)
        .order_by(Column::CountryCode, Order::Asc)
}

fn flagged_per_country(since: DateTime<Utc>, until: DateTime<Utc>) -> Select<request_log::Entity> {
    in_range(since, until)
        .filter(Column::CountryCode.ne(""))
        .filter(
            Column::IpAddress.in_subquery(
                Query::select()
                    .column(suspicious_ip::Column::IpAddress)
                    .from(suspicious_ip::Entity)
                    .to_owned(),
            ),
        )
        .column(Column::CountryCode)
        .column_as(Expr::cust("COUNT(DISTINCT ip_address)"), "flagged")
        .group_by(Column::CountryCode)
}

/// The SQL of [`countries`]'s aggregates, for `EXPLAIN` in the benchmarks.
pub fn statements(
    backend: DbBackend,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<(&'static str, sea_orm::Statement)> {
    vec![
        ("per country", per_country(since, until).build(backend)),
        (
            "flagged per country",
            flagged_per_country(since, until).build(backend),
        ),
    ]
}

/// Countries of `[since, until)`; callers check the range's bounds.
pub async fn countries<C: ConnectionTrait>(
    db: &C,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Countries, DbErr> {
    // Independent aggregates over the same range: run at once (see `stats`).
    let (mut countries, flagged, unlocated_requests) = futures::try_join!(
        per_country(since, until)
            .into_model::<CountryStats>()
            .all(db),
        flagged_per_country(since, until)
            .into_model::<Flagged>()
            .all(db),
        in_range(since, until)
            .filter(Column::CountryCode.eq(""))
            .column_as(Expr::cust("COUNT(*)"), "n")
            .into_tuple::<i64>()
            .one(db),
    )?;
    let flagged: HashMap<String, i64> = flagged
        .into_iter()
        .map(|f| (f.country_code, f.flagged))
        .collect();
    for country in &mut countries {
        country.flagged_addresses = flagged.get(&country.country_code).copied().unwrap_or(0);
    }
    Ok(Countries {
        since,
        until,
        countries,
        unlocated_requests: unlocated_requests.unwrap_or(0),
    })
}
