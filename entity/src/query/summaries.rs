//! Hour summaries: the dashboard's figures that minute counts cannot give (top addresses,
//! top paths, distinct addresses per country), kept per closed hour by the
//! `request-summaries` job and merged here with raw rows for the rest of a range.
//!
//! What is exact and what is not (README, "Admin API"; docs/ARCHITECTURE.md):
//! - A summary stores how many rows, and unlocated rows, it summarized. It is used only
//!   while `request_rollup_hour` (exact) still holds that many for its hour; a late row or a
//!   location filled in sends the hour back to raw rows until the job summarizes it again.
//! - With no summarized hour in a range, every figure is the raw, exact one.
//! - Top lists over summarized hours merge each hour's top [`SUMMARY_TOP`] and the raw
//!   part's top [`SUMMARY_TOP`]: exact while every hour has at most that many addresses or
//!   paths; otherwise an entry's count is a lower bound (its requests in hours where it was
//!   outside the top are not counted), and an entry outside every part's top is missing.
//! - Distinct addresses per country over summarized hours are HyperLogLog estimates
//!   (precision 10: about 3 % standard error; exact below a few hundred addresses).

use std::collections::{HashMap, HashSet};

use cardinality_estimator::CardinalityEstimator;
use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Select, Statement,
    sea_query::{Alias, Asterisk, Expr, ExprTrait, Order, Query, SelectStatement, UnionType},
};

use super::rollup::{self, ranges_condition};
use crate::request_log::{self, Column};

/// Entries per list and hour in a summary.
pub const SUMMARY_TOP: u64 = 1_000;

/// A set of addresses, estimated: HyperLogLog with 2^10 registers of 6 bits (about 800
/// bytes once past the exact small sizes), hashed by wyhash (the crate's default; named
/// because the precision is not).
pub type AddressSketch = CardinalityEstimator<str, wyhash::WyHash, 10, 6>;

/// A sketch as stored in `request_summary_country.addresses_sketch`.
pub fn encode_sketch(sketch: &AddressSketch) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(sketch)
}

/// A stored sketch; `None` when the bytes are not one (never written so: skipped).
pub fn decode_sketch(bytes: &[u8]) -> Option<AddressSketch> {
    postcard::from_bytes(bytes).ok()
}

/// An hour's exact totals in `request_rollup_hour`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HourTotals {
    pub hour: DateTime<Utc>,
    pub rows: i64,
    pub unlocated_rows: i64,
}

#[derive(Debug, FromQueryResult)]
struct TotalsRow {
    hour_start: DateTime<Utc>,
    total_rows: i64,
    unlocated_rows: i64,
}

/// The exact totals of every hour with rows in `[from, to)` (hour starts), from
/// `request_rollup_hour`.
pub async fn hour_totals<C: ConnectionTrait>(
    db: &C,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<HourTotals>, DbErr> {
    let backend = db.get_database_backend();
    let query = Query::select()
        .column(Alias::new("hour_start"))
        .expr_as(
            Expr::cust("CAST(SUM(requests) AS BIGINT)"),
            Alias::new("total_rows"),
        )
        .expr_as(
            Expr::cust("CAST(SUM(CASE WHEN country_code = '' THEN requests ELSE 0 END) AS BIGINT)"),
            Alias::new("unlocated_rows"),
        )
        .from(Alias::new("request_rollup_hour"))
        .and_where(Expr::col(Alias::new("hour_start")).gte(from))
        .and_where(Expr::col(Alias::new("hour_start")).lt(to))
        .group_by_col(Alias::new("hour_start"))
        .and_having(Expr::cust("SUM(requests) > 0"))
        .to_owned();
    Ok(TotalsRow::find_by_statement(backend.build(&query))
        .all(db)
        .await?
        .into_iter()
        .map(|row| HourTotals {
            hour: row.hour_start,
            rows: row.total_rows,
            unlocated_rows: row.unlocated_rows,
        })
        .collect())
}

#[derive(Debug, FromQueryResult)]
struct SummaryRow {
    hour_start: DateTime<Utc>,
    summarized_rows: i64,
    unlocated_rows: i64,
}

/// The stored summaries of hours in `[from, to)`, with what each summarized.
pub async fn stored<C: ConnectionTrait>(
    db: &C,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<HourTotals>, DbErr> {
    let backend = db.get_database_backend();
    let query = Query::select()
        .columns([
            Alias::new("hour_start"),
            Alias::new("summarized_rows"),
            Alias::new("unlocated_rows"),
        ])
        .from(Alias::new("request_summary"))
        .and_where(Expr::col(Alias::new("hour_start")).gte(from))
        .and_where(Expr::col(Alias::new("hour_start")).lt(to))
        .to_owned();
    Ok(SummaryRow::find_by_statement(backend.build(&query))
        .all(db)
        .await?
        .into_iter()
        .map(|row| HourTotals {
            hour: row.hour_start,
            rows: row.summarized_rows,
            unlocated_rows: row.unlocated_rows,
        })
        .collect())
}

/// How a range `[since, until)` is read: the whole hours with a current summary, and the
/// rest from `request_log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// Hours read from their summaries, oldest first.
    pub summarized: Vec<DateTime<Utc>>,
    /// The rest of the range, as `[from, to)` ranges of `request_log` rows.
    pub raw: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Coverage {
    /// Which whole hours of `[since, until)` have a summary that is current (it summarized
    /// exactly the rows and unlocated rows the rollup holds for the hour now).
    pub async fn of<C: ConnectionTrait>(
        db: &C,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Self, DbErr> {
        let hours = rollup::whole_hours(since, until);
        let (Some(&first), Some(&last)) = (hours.first(), hours.last()) else {
            return Ok(Self::raw_only(since, until));
        };
        let end = last + Duration::hours(1);
        let (summaries, totals) =
            futures::try_join!(stored(db, first, end), hour_totals(db, first, end))?;
        if summaries.is_empty() {
            return Ok(Self::raw_only(since, until));
        }
        let totals: HashSet<HourTotals> = totals.into_iter().collect();
        let current: HashSet<DateTime<Utc>> = summaries
            .into_iter()
            .filter(|summary| totals.contains(summary))
            .map(|summary| summary.hour)
            .collect();
        Ok(Self::new(since, until, current))
    }

    fn raw_only(since: DateTime<Utc>, until: DateTime<Utc>) -> Self {
        Self {
            summarized: Vec::new(),
            raw: (since < until)
                .then_some((since, until))
                .into_iter()
                .collect(),
        }
    }

    /// The coverage of `[since, until)` when the hours in `current` have current summaries.
    pub fn new(
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        current: HashSet<DateTime<Utc>>,
    ) -> Self {
        let summarized: Vec<DateTime<Utc>> = rollup::whole_hours(since, until)
            .into_iter()
            .filter(|hour| current.contains(hour))
            .collect();
        let mut raw = Vec::new();
        let mut from = since;
        for &hour in &summarized {
            if from < hour {
                raw.push((from, hour));
            }
            from = hour + Duration::hours(1);
        }
        if from < until {
            raw.push((from, until));
        }
        Self { summarized, raw }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct KeyCount {
    pub key: String,
    pub requests: i64,
}

/// A top list merged from summaries and raw rows (see the module documentation): `key`
/// is `ip_address` or `path`, `table` the summary table holding it. `exact` is the query
/// for a range with no summarized hour (the raw top list as it always was).
pub(crate) async fn top<C: ConnectionTrait>(
    db: &C,
    coverage: &Coverage,
    key: Column,
    table: &str,
    top: u64,
    exact: Select<request_log::Entity>,
) -> Result<Vec<KeyCount>, DbErr> {
    let backend = db.get_database_backend();
    Ok(match top_statement(backend, coverage, key, table, top) {
        Some(statement) => KeyCount::find_by_statement(statement).all(db).await?,
        None => exact.into_model::<KeyCount>().all(db).await?,
    })
}

/// The merged statement of [`top`], `None` when no hour is summarized.
pub(crate) fn top_statement(
    backend: DbBackend,
    coverage: &Coverage,
    key: Column,
    table: &str,
    top: u64,
) -> Option<Statement> {
    if coverage.summarized.is_empty() {
        return None;
    }
    let key_name = match key {
        Column::IpAddress => "ip_address",
        _ => "path",
    };
    // Each part is its own subquery, so its ORDER BY and LIMIT hold inside the UNION on
    // SQLite too.
    let wrap = |part: SelectStatement, name: &str| {
        Query::select()
            .column(Asterisk)
            .from_subquery(part, Alias::new(name))
            .to_owned()
    };
    let summarized = Query::select()
        .expr_as(Expr::col(Alias::new(key_name)), Alias::new("key"))
        .expr_as(Expr::cust("SUM(requests)"), Alias::new("requests"))
        .from(Alias::new(table))
        .and_where(Expr::col(Alias::new("hour_start")).is_in(coverage.summarized.iter().copied()))
        .group_by_col(Alias::new(key_name))
        .order_by_expr(Expr::cust("SUM(requests)"), Order::Desc)
        .order_by(Alias::new(key_name), Order::Asc)
        .limit(SUMMARY_TOP)
        .to_owned();
    let mut parts = wrap(summarized, "summarized");
    if let Some(rows) = ranges_condition(&coverage.raw) {
        let raw = request_log::Entity::find()
            .select_only()
            .filter(rows)
            .column_as(key, "key")
            .column_as(Expr::cust("COUNT(*)"), "requests")
            .group_by(key)
            .order_by(Expr::cust("COUNT(*)"), Order::Desc)
            .order_by_asc(key)
            .limit(SUMMARY_TOP)
            .into_query();
        parts.union(UnionType::All, wrap(raw, "raw"));
    }
    let merged = Query::select()
        .column(Alias::new("key"))
        .expr_as(
            Expr::cust("CAST(SUM(requests) AS BIGINT)"),
            Alias::new("requests"),
        )
        .from_subquery(parts, Alias::new("parts"))
        .group_by_col(Alias::new("key"))
        .order_by_expr(Expr::cust("SUM(requests)"), Order::Desc)
        .order_by(Alias::new("key"), Order::Asc)
        .limit(top)
        .to_owned();
    Some(backend.build(&merged))
}

#[derive(Debug, FromQueryResult)]
struct SketchRow {
    country_code: String,
    addresses_sketch: Vec<u8>,
}

#[derive(Debug, FromQueryResult)]
struct CountryAddress {
    country_code: String,
    ip_address: String,
}

/// Distinct addresses per located country over a coverage with summarized hours: their
/// sketches merged, the raw part's addresses added (estimates; see the module
/// documentation).
pub(crate) async fn estimated_addresses<C: ConnectionTrait>(
    db: &C,
    coverage: &Coverage,
) -> Result<HashMap<String, i64>, DbErr> {
    let backend = db.get_database_backend();
    let sketches = Query::select()
        .columns([Alias::new("country_code"), Alias::new("addresses_sketch")])
        .from(Alias::new("request_summary_country"))
        .and_where(Expr::col(Alias::new("hour_start")).is_in(coverage.summarized.iter().copied()))
        .to_owned();
    let (stored, raw) = futures::try_join!(
        SketchRow::find_by_statement(backend.build(&sketches)).all(db),
        async {
            match ranges_condition(&coverage.raw) {
                Some(rows) => {
                    request_log::Entity::find()
                        .select_only()
                        .distinct()
                        .column(Column::CountryCode)
                        .column(Column::IpAddress)
                        .filter(rows)
                        .filter(sea_orm::ColumnTrait::ne(&Column::CountryCode, ""))
                        .into_model::<CountryAddress>()
                        .all(db)
                        .await
                }
                None => Ok(Vec::new()),
            }
        },
    )?;
    let mut merged: HashMap<String, AddressSketch> = HashMap::new();
    for row in stored {
        if let Some(sketch) = decode_sketch(&row.addresses_sketch) {
            merged.entry(row.country_code).or_default().merge(&sketch);
        }
    }
    for row in raw {
        merged
            .entry(row.country_code)
            .or_default()
            .insert(&row.ip_address);
    }
    Ok(merged
        .into_iter()
        .map(|(code, sketch)| (code, i64::try_from(sketch.estimate()).unwrap_or(i64::MAX)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.to_utc())
            .unwrap_or_default()
    }

    #[test]
    fn the_raw_part_is_what_summarized_hours_leave() {
        let (since, until) = (at("2026-12-02T09:30:00Z"), at("2026-12-02T13:10:00Z"));
        let current = [at("2026-12-02T10:00:00Z"), at("2026-12-02T12:00:00Z")];
        let coverage = Coverage::new(since, until, current.into_iter().collect());
        assert_eq!(coverage.summarized, current);
        assert_eq!(
            coverage.raw,
            [
                (since, at("2026-12-02T10:00:00Z")),
                (at("2026-12-02T11:00:00Z"), at("2026-12-02T12:00:00Z")),
                (at("2026-12-02T13:00:00Z"), until),
            ]
        );
        let none = Coverage::new(since, until, HashSet::new());
        assert_eq!(none.raw, [(since, until)]);
    }

    #[test]
    fn a_sketch_survives_storage_and_merges() {
        let mut a = AddressSketch::new();
        let mut b = AddressSketch::new();
        for i in 0..5_000 {
            a.insert(&format!("10.0.{}.{}", i / 256, i % 256));
            b.insert(&format!("10.1.{}.{}", i / 256, i % 256));
        }
        let bytes = encode_sketch(&a).unwrap_or_default();
        assert!(bytes.len() < 1_000, "{}", bytes.len());
        let mut merged = decode_sketch(&bytes).unwrap_or_default();
        merged.merge(&b);
        let estimate = merged.estimate() as f64;
        assert!((estimate - 10_000.0).abs() < 1_000.0, "{estimate}");
        assert_eq!(decode_sketch(b"not a sketch"), None);
    }
}
