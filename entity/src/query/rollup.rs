//! How the dashboard's views read a range from the pre-aggregates (migration
//! `m20261202_000011_rollup_levels`), each kept equal to a `GROUP BY` over `request_log`
//! by the request-log job and the geolocation fill, so a figure summed from them and the
//! edge rows is the figure the rows alone give:
//! - the charts: `request_rollup_minute` for the whole minutes of the range, `request_log`
//!   for the partial minutes at its edges ([`Split`]);
//! - figures by country: `request_rollup_hour` for the whole hours, and for a partial hour
//!   at an edge either its rows, or its hour in the rollup less the rows of the hour
//!   outside the range, whichever reads fewer rows ([`HourSplit`]);
//! - the figures counts cannot give: the hour summaries (`summaries`).

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, QueryFilter, QuerySelect, QueryTrait,
    sea_query::{Alias, Asterisk, Expr, ExprTrait, Query, SelectStatement, UnionType},
};

use super::{status_class, timeline::BucketSize};
use crate::request_log::{self, Column};

/// A range `[since, until)` cut into the whole minutes the rollup answers for and the rows
/// before and after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// `[first whole minute, end of the last whole minute)`, when there is one.
    pub minutes: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Split {
    pub fn new(since: DateTime<Utc>, until: DateTime<Utc>) -> Self {
        let first = ceil(BucketSize::Minute, since);
        let last = BucketSize::Minute.floor(until);
        Self {
            since,
            until,
            minutes: (first < last).then_some((first, last)),
        }
    }

    /// The parts of the range the rollup does not cover, as `[from, to)` ranges.
    pub fn row_ranges(&self) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        match self.minutes {
            None if self.since < self.until => vec![(self.since, self.until)],
            None => Vec::new(),
            Some((first, last)) => [(self.since, first), (last, self.until)]
                .into_iter()
                .filter(|(from, to)| from < to)
                .collect(),
        }
    }

    /// The `request_log` rows of [`row_ranges`](Self::row_ranges), if any.
    pub fn rows_condition(&self) -> Option<Condition> {
        ranges_condition(&self.row_ranges())
    }
}

/// The `request_log` rows in any of `ranges` (`None` for no range): each range one
/// index range on `timestamp`.
pub fn ranges_condition(ranges: &[(DateTime<Utc>, DateTime<Utc>)]) -> Option<Condition> {
    if ranges.is_empty() {
        return None;
    }
    Some(ranges.iter().fold(Condition::any(), |any, (from, to)| {
        any.add(
            Condition::all()
                .add(Column::Timestamp.gte(*from))
                .add(Column::Timestamp.lt(*to)),
        )
    }))
}

/// A range `[since, until)` as `request_rollup_hour` reads it: hours taken whole from the
/// rollup, rows added, and rows taken off (the parts of rollup hours outside the range).
///
/// A partial hour at an edge is read one of two ways, both exact: its rows in the range,
/// or its whole hour from the rollup less its rows outside the range. The second is
/// chosen when it reads fewer rows, judged by time: rows after `now` are not expected, so
/// the hour in progress, read up to now, costs no rows at all that way; a range starting
/// at 10:50 reads ten minutes of rows to take off instead of fifty to add.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HourSplit {
    /// `[from, to)` ranges of hour starts read from the rollup.
    pub hours: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// `request_log` ranges whose rows are added.
    pub added: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// `request_log` ranges whose rows are taken off.
    pub taken_off: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

impl HourSplit {
    /// The split of `[since, until)`, judged against the clock.
    pub fn new(since: DateTime<Utc>, until: DateTime<Utc>) -> Self {
        Self::at(since, until, Utc::now())
    }

    /// The split of `[since, until)` as if it were `now`.
    pub fn at(since: DateTime<Utc>, until: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        let mut split = Self::default();
        if since >= until {
            return split;
        }
        let hour = Duration::hours(1);
        let (first, last) = (BucketSize::Hour.floor(since), BucketSize::Hour.floor(until));
        let mut partial = Vec::new();
        if first == last {
            partial.push((first, since, until));
        } else {
            if since > first {
                partial.push((first, since, first + hour));
            }
            let whole_from = ceil(BucketSize::Hour, since);
            if whole_from < last {
                split.hours.push((whole_from, last));
            }
            if until > last {
                partial.push((last, last, until));
            }
        }
        // Rows expected in `[from, to)`: its time up to now.
        let cost = |from: DateTime<Utc>, to: DateTime<Utc>| {
            (Ord::min(to, now) - from).max(Duration::zero())
        };
        for (start, from, to) in partial {
            let end = start + hour;
            if cost(start, from) + cost(to, end) < cost(from, to) {
                split.hours.push((start, end));
                split.taken_off.extend(
                    [(start, from), (to, end)]
                        .into_iter()
                        .filter(|(a, b)| a < b),
                );
            } else {
                split.added.push((from, to));
            }
        }
        split.hours.sort();
        split.hours = split
            .hours
            .into_iter()
            .fold(Vec::new(), |mut merged, range| {
                match merged.last_mut() {
                    Some(last) if last.1 >= range.0 => last.1 = Ord::max(last.1, range.1),
                    _ => merged.push(range),
                }
                merged
            });
        split
    }

    /// The range's requests as signed parts with the columns `status_class`,
    /// `country_code`, `country` and `requests`: summed per country (or class) they are the
    /// range's counts, exactly; a country whose sum is 0 has no request in the range.
    /// One statement reads them all, so the rollup and the rows are of one snapshot. `None`
    /// for an empty range.
    pub fn parts(&self) -> Option<SelectStatement> {
        let class = status_class::case_sql("status");
        let mut parts: Vec<SelectStatement> = Vec::new();
        let hours = self.hours.iter().fold(Condition::any(), |any, (from, to)| {
            any.add(
                Condition::all()
                    .add(Expr::col(Alias::new("hour_start")).gte(*from))
                    .add(Expr::col(Alias::new("hour_start")).lt(*to)),
            )
        });
        if !self.hours.is_empty() {
            parts.push(
                Query::select()
                    .columns([
                        Alias::new("status_class"),
                        Alias::new("country_code"),
                        Alias::new("country"),
                        Alias::new("requests"),
                    ])
                    .from(Alias::new("request_rollup_hour"))
                    .cond_where(hours)
                    .to_owned(),
            );
        }
        for (ranges, sign, country) in [
            (&self.added, "", Expr::cust("MAX(country)")),
            // A name is taken from the added rows or the rollup, never from rows taken off.
            (&self.taken_off, "-", Expr::cust("''")),
        ] {
            if let Some(rows) = ranges_condition(ranges) {
                parts.push(
                    request_log::Entity::find()
                        .select_only()
                        .filter(rows)
                        .column_as(Expr::cust(class.clone()), "status_class")
                        .column(Column::CountryCode)
                        .column_as(country, "country")
                        .column_as(Expr::cust(format!("{sign}COUNT(*)")), "requests")
                        .group_by(Expr::cust(class.clone()))
                        .group_by(Column::CountryCode)
                        .into_query(),
                );
            }
        }
        let wrap = |part: SelectStatement, name: String| {
            Query::select()
                .column(Asterisk)
                .from_subquery(part, Alias::new(name))
                .to_owned()
        };
        let mut parts = parts
            .into_iter()
            .enumerate()
            .map(|(i, part)| wrap(part, format!("part{i}")));
        let mut union = parts.next()?;
        for part in parts {
            union.union(UnionType::All, part);
        }
        Some(union)
    }
}

/// The start of the first bucket of `size` at or after `time`.
pub fn ceil(size: BucketSize, time: DateTime<Utc>) -> DateTime<Utc> {
    let floor = size.floor(time);
    if floor == time {
        time
    } else {
        floor + size.duration()
    }
}

/// The hours wholly inside `[since, until)`, oldest first.
pub fn whole_hours(since: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut hours = Vec::new();
    let mut hour = ceil(BucketSize::Hour, since);
    while hour + Duration::hours(1) <= until {
        hours.push(hour);
        hour += Duration::hours(1);
    }
    hours
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
    fn a_range_splits_into_edge_rows_and_whole_minutes() {
        let split = Split::new(at("2026-12-02T10:00:30Z"), at("2026-12-02T10:05:10Z"));
        assert_eq!(
            split.minutes,
            Some((at("2026-12-02T10:01:00Z"), at("2026-12-02T10:05:00Z")))
        );
        assert_eq!(
            split.row_ranges(),
            [
                (at("2026-12-02T10:00:30Z"), at("2026-12-02T10:01:00Z")),
                (at("2026-12-02T10:05:00Z"), at("2026-12-02T10:05:10Z")),
            ]
        );
        let aligned = Split::new(at("2026-12-02T10:00:00Z"), at("2026-12-02T10:05:00Z"));
        assert!(aligned.row_ranges().is_empty());
        let inside = Split::new(at("2026-12-02T10:00:10Z"), at("2026-12-02T10:00:50Z"));
        assert_eq!(inside.minutes, None);
        assert_eq!(inside.row_ranges().len(), 1);
        let across = Split::new(at("2026-12-02T10:00:10Z"), at("2026-12-02T10:01:50Z"));
        assert_eq!(across.minutes, None);
        assert_eq!(
            across.row_ranges(),
            [(at("2026-12-02T10:00:10Z"), at("2026-12-02T10:01:50Z"))]
        );
    }

    #[test]
    fn a_partial_hour_is_read_the_cheaper_way() {
        let now = at("2026-12-02T12:20:00Z");
        // The last 24 hours: since 12:20 yesterday. Its first hour is cheaper as the
        // rollup's hour less 20 minutes of rows; the hour in progress as the rollup's hour
        // (nothing after now to take off).
        let day = HourSplit::at(now - Duration::hours(24), now, now);
        assert_eq!(
            day.hours,
            [(at("2026-12-01T12:00:00Z"), at("2026-12-02T13:00:00Z"))]
        );
        assert!(day.added.is_empty());
        assert_eq!(
            day.taken_off,
            [
                (at("2026-12-01T12:00:00Z"), at("2026-12-01T12:20:00Z")),
                (now, at("2026-12-02T13:00:00Z")),
            ]
        );
        // A range starting at :50 and ending at :10, both in the past: the rows.
        let past = HourSplit::at(at("2026-12-02T08:50:00Z"), at("2026-12-02T10:10:00Z"), now);
        assert_eq!(
            past.hours,
            [(at("2026-12-02T09:00:00Z"), at("2026-12-02T10:00:00Z"))]
        );
        assert_eq!(
            past.added,
            [
                (at("2026-12-02T08:50:00Z"), at("2026-12-02T09:00:00Z")),
                (at("2026-12-02T10:00:00Z"), at("2026-12-02T10:10:00Z")),
            ]
        );
        assert!(past.taken_off.is_empty());
        // Inside one past hour, most of it: the hour less both ends.
        let inside = HourSplit::at(at("2026-12-02T09:05:00Z"), at("2026-12-02T09:55:00Z"), now);
        assert_eq!(
            inside.hours,
            [(at("2026-12-02T09:00:00Z"), at("2026-12-02T10:00:00Z"))]
        );
        assert_eq!(inside.taken_off.len(), 2);
        // Aligned: the rollup alone.
        let aligned = HourSplit::at(at("2026-12-02T09:00:00Z"), at("2026-12-02T11:00:00Z"), now);
        assert_eq!(
            (
                aligned.hours.len(),
                aligned.added.len(),
                aligned.taken_off.len()
            ),
            (1, 0, 0)
        );
        assert_eq!(HourSplit::at(now, now, now), HourSplit::default());
        assert!(HourSplit::default().parts().is_none());
    }

    #[test]
    fn whole_hours_leave_out_the_partial_ones() {
        assert_eq!(
            whole_hours(at("2026-12-02T09:30:00Z"), at("2026-12-02T12:10:00Z")),
            [at("2026-12-02T10:00:00Z"), at("2026-12-02T11:00:00Z")]
        );
        assert!(whole_hours(at("2026-12-02T10:00:00Z"), at("2026-12-02T10:59:59Z")).is_empty());
    }
}
