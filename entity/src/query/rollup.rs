//! How the dashboard's views read a range from the pre-aggregates: `request_rollup` for
//! the whole minutes of the range (exact), `request_log` for the partial minutes at its
//! edges, and the hour summaries (`summaries`) for the figures minute counts cannot give.
//!
//! The rollup is kept equal to `GROUP BY minute, status class, country_code` over
//! `request_log` by the request-log job and the geolocation fill (migration
//! `m20261202_000009_request_rollup`), so a figure summed from it plus the edge rows is
//! the figure the rows alone give.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ColumnTrait, Condition};

use super::timeline::BucketSize;
use crate::request_log::Column;

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
    fn whole_hours_leave_out_the_partial_ones() {
        assert_eq!(
            whole_hours(at("2026-12-02T09:30:00Z"), at("2026-12-02T12:10:00Z")),
            [at("2026-12-02T10:00:00Z"), at("2026-12-02T11:00:00Z")]
        );
        assert!(whole_hours(at("2026-12-02T10:00:00Z"), at("2026-12-02T10:59:59Z")).is_empty());
    }
}
