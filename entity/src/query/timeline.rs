//! Requests over time in buckets (a minute, an hour or a day, UTC), by status class: the
//! charts of the dashboard's overview and address pages.
//!
//! The database groups the range's rows by bucket and class (one GROUP BY through the
//! time index, or the address index when the rows are one address's); the buckets without
//! requests are filled in here, so a chart gets every bucket of the range, oldest first.

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult,
    QueryFilter, QuerySelect, QueryTrait, Select,
    sea_query::{Alias, Expr, ExprTrait, Query, SelectStatement},
};
use serde::Serialize;

use super::{
    rollup,
    status_class::{self, ClassCounts, StatusClass},
};
use crate::request_log::{self, Column};

/// Longest range a chart covers.
pub const MAX_RANGE: Duration = Duration::days(90);
/// Most buckets one answer holds: a day of minutes (1,441 with the rounding) fits, two
/// do not.
pub const MAX_BUCKETS: i64 = 1_500;

/// How long one bucket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum BucketSize {
    Minute,
    Hour,
    Day,
}

impl BucketSize {
    pub const ALL: [BucketSize; 3] = [BucketSize::Minute, BucketSize::Hour, BucketSize::Day];

    pub fn name(self) -> &'static str {
        match self {
            BucketSize::Minute => "minute",
            BucketSize::Hour => "hour",
            BucketSize::Day => "day",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|size| size.name() == name)
    }

    fn seconds(self) -> i64 {
        match self {
            BucketSize::Minute => 60,
            BucketSize::Hour => 3_600,
            BucketSize::Day => 86_400,
        }
    }

    pub fn duration(self) -> Duration {
        Duration::seconds(self.seconds())
    }

    /// The size chosen for a range of `length` when none is asked for: minutes up to a
    /// day, hours up to two weeks, days beyond.
    pub fn for_range(length: Duration) -> Self {
        if length <= Duration::hours(24) {
            BucketSize::Minute
        } else if length <= Duration::days(14) {
            BucketSize::Hour
        } else {
            BucketSize::Day
        }
    }

    /// The start of the bucket `time` falls in. Whole seconds since the epoch rather than
    /// chrono's `duration_trunc`, which works in nanoseconds and so fails outside the
    /// years 1677-2262 (a client may send any valid RFC 3339 time).
    pub fn floor(self, time: DateTime<Utc>) -> DateTime<Utc> {
        let secs = time.timestamp();
        DateTime::from_timestamp(secs - secs.rem_euclid(self.seconds()), 0).unwrap_or(time)
    }

    /// SQL giving the start of the bucket of a `column` holding a time, as text
    /// `YYYY-MM-DD?HH:MM` (`?` is `T` or a space): `timestamp` of `request_log` or `minute`
    /// of `request_rollup_minute`. PostgreSQL truncates the `timestamptz` in UTC, not the
    /// session's zone, and formats only each group's value (the GROUP BY is on the
    /// truncated timestamp). SQLite stores timestamps as RFC 3339 text in UTC, so a bucket
    /// is a prefix of it.
    pub(crate) fn group_sql(self, backend: DbBackend, column: &str) -> String {
        match backend {
            DbBackend::Postgres => {
                format!("date_trunc('{}', {column} AT TIME ZONE 'UTC')", self.name())
            }
            _ => match self {
                BucketSize::Minute => format!("substr({column}, 1, 16)"),
                BucketSize::Hour => format!("substr({column}, 1, 13)"),
                BucketSize::Day => format!("substr({column}, 1, 10)"),
            },
        }
    }

    pub(crate) fn label_sql(self, backend: DbBackend, column: &str) -> String {
        match backend {
            DbBackend::Postgres => format!(
                "to_char({}, 'YYYY-MM-DD\"T\"HH24:MI')",
                self.group_sql(backend, column)
            ),
            _ => match self {
                BucketSize::Minute => self.group_sql(backend, column),
                BucketSize::Hour => format!("{} || ':00'", self.group_sql(backend, column)),
                BucketSize::Day => format!("{} || 'T00:00'", self.group_sql(backend, column)),
            },
        }
    }
}

/// Why a range cannot be charted; each a 400 for the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("since must be earlier than until")]
    Empty,
    #[error("the range from since to until may be at most 90 days")]
    TooLong,
    #[error(
        "bucket={bucket} makes {count} buckets over this range, and at most 1500 are \
         allowed: choose a larger bucket or a shorter range"
    )]
    TooManyBuckets { bucket: &'static str, count: i64 },
}

/// A range cut into buckets: `[since, until)` with `since` at a bucket's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    /// The asked `since` rounded down to its bucket.
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub bucket: BucketSize,
}

impl Timeline {
    /// The range `[since, until)` in buckets of `bucket`, or of the size its length calls
    /// for. The length limit applies to the range asked for, before rounding.
    pub fn new(
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        bucket: Option<BucketSize>,
    ) -> Result<Self, RangeError> {
        if since >= until {
            return Err(RangeError::Empty);
        }
        if until - since > MAX_RANGE {
            return Err(RangeError::TooLong);
        }
        let bucket = bucket.unwrap_or_else(|| BucketSize::for_range(until - since));
        let timeline = Self {
            since: bucket.floor(since),
            until,
            bucket,
        };
        let count = timeline.bucket_count();
        if count > MAX_BUCKETS {
            return Err(RangeError::TooManyBuckets {
                bucket: bucket.name(),
                count,
            });
        }
        Ok(timeline)
    }

    /// How many buckets the range has (the last may be partial).
    pub fn bucket_count(&self) -> i64 {
        let secs = Ord::max((self.until - self.since).num_seconds(), 0);
        let size = self.bucket.seconds();
        (secs + size - 1) / size
    }

    /// The rows of the range.
    pub(crate) fn condition(&self) -> Condition {
        Condition::all()
            .add(Column::Timestamp.gte(self.since))
            .add(Column::Timestamp.lt(self.until))
    }

    /// The GROUP BY behind [`series`], over the range's rows that also meet `scope`.
    pub(crate) fn query(
        &self,
        backend: DbBackend,
        scope: Condition,
    ) -> Select<request_log::Entity> {
        self.query_rows(backend, self.condition().add(scope))
    }

    /// The GROUP BY by bucket and class over the `request_log` rows that meet `rows`.
    fn query_rows(&self, backend: DbBackend, rows: Condition) -> Select<request_log::Entity> {
        let case = status_class::case_sql("status");
        request_log::Entity::find()
            .select_only()
            .column_as(
                Expr::cust(self.bucket.label_sql(backend, "\"timestamp\"")),
                "bucket",
            )
            .column_as(Expr::cust(case.clone()), "class")
            .column_as(Expr::cust("COUNT(*)"), "requests")
            .filter(rows)
            .group_by(Expr::cust(self.bucket.group_sql(backend, "\"timestamp\"")))
            .group_by(Expr::cust(case))
    }

    /// The same grouping over `request_rollup_minute`'s minutes `[from, to)`.
    fn query_rollup(
        &self,
        backend: DbBackend,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> SelectStatement {
        let minute = "\"minute\"";
        Query::select()
            .expr_as(
                Expr::cust(self.bucket.label_sql(backend, minute)),
                Alias::new("bucket"),
            )
            .expr_as(Expr::cust("status_class"), Alias::new("class"))
            .expr_as(
                Expr::cust("CAST(SUM(requests) AS BIGINT)"),
                Alias::new("requests"),
            )
            .from(Alias::new("request_rollup_minute"))
            .and_where(Expr::col(Alias::new("minute")).gte(from))
            .and_where(Expr::col(Alias::new("minute")).lt(to))
            .add_group_by([
                Expr::cust(self.bucket.group_sql(backend, minute)),
                Expr::cust("status_class"),
            ])
            .to_owned()
    }
}

/// One bucket of a chart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Bucket {
    /// Start of the bucket, UTC.
    pub start: DateTime<Utc>,
    /// Requests in the bucket (the sum of `classes`).
    pub requests: i64,
    /// The same requests by status class.
    pub classes: ClassCounts,
}

#[derive(Debug, FromQueryResult)]
struct Group {
    bucket: String,
    class: i64,
    requests: i64,
}

/// Every bucket of `timeline`, oldest first, counting the range's rows that meet `scope`
/// (one address's rows, say). For every row of the range, [`series_all`] is far cheaper.
pub async fn series<C: ConnectionTrait>(
    db: &C,
    timeline: &Timeline,
    scope: Condition,
) -> Result<Vec<Bucket>, DbErr> {
    let groups = timeline
        .query(db.get_database_backend(), scope)
        .into_model::<Group>()
        .all(db)
        .await?;
    Ok(fill(timeline, &groups))
}

/// Every bucket of `timeline`, oldest first, counting every row of the range: the whole
/// minutes from `request_rollup_minute`, the partial minute at the end (`until` need not
/// be a minute's start; `since` is a bucket's) from `request_log`. Exact: the rollup
/// equals the rows grouped by minute and class.
pub async fn series_all<C: ConnectionTrait>(
    db: &C,
    timeline: &Timeline,
) -> Result<Vec<Bucket>, DbErr> {
    let backend = db.get_database_backend();
    let split = rollup::Split::new(timeline.since, timeline.until);
    let (from_rollup, from_rows) = futures::try_join!(
        async {
            match split.minutes {
                Some((from, to)) => {
                    Group::find_by_statement(
                        backend.build(&timeline.query_rollup(backend, from, to)),
                    )
                    .all(db)
                    .await
                }
                None => Ok(Vec::new()),
            }
        },
        async {
            match split.rows_condition() {
                Some(rows) => {
                    timeline
                        .query_rows(backend, rows)
                        .into_model::<Group>()
                        .all(db)
                        .await
                }
                None => Ok(Vec::new()),
            }
        },
    )?;
    let mut groups = from_rollup;
    groups.extend(from_rows);
    Ok(fill(timeline, &groups))
}

/// The SQL of [`series`], for `EXPLAIN` in the benchmarks.
pub fn statement(backend: DbBackend, timeline: &Timeline, scope: Condition) -> sea_orm::Statement {
    timeline.query(backend, scope).build(backend)
}

/// The SQL of [`series_all`]: the rollup's part and the rows' part, for `EXPLAIN`.
pub fn statements_all(
    backend: DbBackend,
    timeline: &Timeline,
) -> Vec<(&'static str, sea_orm::Statement)> {
    let split = rollup::Split::new(timeline.since, timeline.until);
    let mut statements = Vec::new();
    if let Some((from, to)) = split.minutes {
        statements.push((
            "buckets by class (rollup)",
            backend.build(&timeline.query_rollup(backend, from, to)),
        ));
    }
    if let Some(rows) = split.rows_condition() {
        statements.push((
            "buckets by class (edge rows)",
            timeline.query_rows(backend, rows).build(backend),
        ));
    }
    statements
}

/// One bucket per step of the range, the groups' counts where there were any.
fn fill(timeline: &Timeline, groups: &[Group]) -> Vec<Bucket> {
    let mut counts: HashMap<DateTime<Utc>, ClassCounts> = HashMap::new();
    for group in groups {
        let text = group.bucket.replacen(' ', "T", 1);
        let (Ok(start), Some(class)) = (
            NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M"),
            StatusClass::from_code(group.class),
        ) else {
            continue;
        };
        *counts.entry(start.and_utc()).or_default().get_mut(class) += group.requests;
    }
    let step = timeline.bucket.duration();
    let mut buckets = Vec::with_capacity(timeline.bucket_count().clamp(0, MAX_BUCKETS) as usize);
    let mut start = timeline.since;
    while start < timeline.until && (buckets.len() as i64) < MAX_BUCKETS {
        let classes = counts.get(&start).copied().unwrap_or_default();
        buckets.push(Bucket {
            start,
            requests: classes.total(),
            classes,
        });
        start += step;
    }
    buckets
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
    fn the_bucket_follows_the_range_length() {
        let until = at("2026-11-21T10:00:30Z");
        for (hours, bucket, count) in [
            (1, BucketSize::Minute, 61),
            (24, BucketSize::Minute, 1441),
            (25, BucketSize::Hour, 26),
            (7 * 24, BucketSize::Hour, 169),
            (14 * 24, BucketSize::Hour, 337),
            (15 * 24, BucketSize::Day, 16),
            (90 * 24, BucketSize::Day, 91),
        ] {
            let timeline = Timeline::new(until - Duration::hours(hours), until, None);
            assert_eq!(
                timeline.map(|t| (t.bucket, t.bucket_count())),
                Ok((bucket, count)),
                "{hours} h"
            );
        }
    }

    #[test]
    fn too_long_ranges_and_too_many_buckets_are_refused() {
        let until = at("2026-11-21T10:00:00Z");
        assert_eq!(
            Timeline::new(until - Duration::days(91), until, None),
            Err(RangeError::TooLong)
        );
        assert_eq!(
            Timeline::new(until - Duration::days(2), until, Some(BucketSize::Minute)),
            Err(RangeError::TooManyBuckets {
                bucket: "minute",
                count: 2880
            })
        );
        assert_eq!(Timeline::new(until, until, None), Err(RangeError::Empty));
        assert!(Timeline::new(until - Duration::days(90), until, Some(BucketSize::Day)).is_ok());
    }

    #[test]
    fn since_is_rounded_down_to_its_bucket_even_far_from_now() {
        assert_eq!(
            BucketSize::Hour.floor(at("2026-11-21T10:59:59.9Z")),
            at("2026-11-21T10:00:00Z")
        );
        assert_eq!(
            BucketSize::Day.floor(at("2026-11-21T10:59:59Z")),
            at("2026-11-21T00:00:00Z")
        );
        assert_eq!(
            BucketSize::Minute.floor(at("9999-12-31T23:59:59Z")),
            at("9999-12-31T23:59:00Z")
        );
        assert_eq!(
            BucketSize::Minute.floor(at("0000-01-01T00:00:30Z")),
            at("0000-01-01T00:00:00Z")
        );
    }

    #[test]
    fn every_bucket_gets_an_entry_with_its_classes() {
        let timeline = Timeline::new(
            at("2026-11-21T10:00:00Z"),
            at("2026-11-21T14:00:00Z"),
            Some(BucketSize::Hour),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let groups = [
            Group {
                bucket: "2026-11-21T11:00".into(),
                class: 0,
                requests: 5,
            },
            Group {
                bucket: "2026-11-21 11:00".into(),
                class: 3,
                requests: 2,
            },
            Group {
                bucket: "2026-11-21T13:00".into(),
                class: 4,
                requests: 1,
            },
        ];
        let buckets = fill(&timeline, &groups);
        let shown: Vec<(i64, i64, i64)> = buckets
            .iter()
            .map(|b| (b.requests, b.classes.forbidden_403, b.classes.too_many_429))
            .collect();
        assert_eq!(shown, [(0, 0, 0), (7, 2, 0), (0, 0, 0), (1, 0, 1)]);
        assert_eq!(buckets[1].start, at("2026-11-21T11:00:00Z"));
    }
}
