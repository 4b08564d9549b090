//! Which windows are due: pure functions over a cron schedule.

use chrono::{DateTime, Utc};
use cron::Schedule;

/// Most schedule ticks examined when catching up (a per-second schedule after a week of
/// downtime is 600,000 ticks; this bounds the walk, not what is enqueued).
const MAX_TICKS_WALKED: usize = 1_000_000;

/// The ticks of `schedule` after `last` and at or before `now`, at most the `limit` most
/// recent ones, oldest first.
pub fn missed_ticks(
    schedule: &Schedule,
    last: DateTime<Utc>,
    now: DateTime<Utc>,
    limit: usize,
) -> Vec<DateTime<Utc>> {
    let mut recent = std::collections::VecDeque::with_capacity(limit.min(1024));
    if limit == 0 {
        return Vec::new();
    }
    for tick in schedule
        .after(&last)
        .take(MAX_TICKS_WALKED)
        .take_while(|tick| *tick <= now)
    {
        if recent.len() == limit {
            recent.pop_front();
        }
        recent.push_back(tick);
    }
    recent.into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn ticks_between_the_last_run_and_now_are_due_oldest_first() {
        let hourly: Schedule = "0 0 * * * *".parse().unwrap();
        let due = missed_ticks(
            &hourly,
            at("2026-11-21T07:00:00Z"),
            at("2026-11-21T10:30:00Z"),
            24,
        );
        assert_eq!(
            due,
            [
                at("2026-11-21T08:00:00Z"),
                at("2026-11-21T09:00:00Z"),
                at("2026-11-21T10:00:00Z")
            ]
        );
    }

    #[test]
    fn only_the_most_recent_windows_are_caught_up() {
        let hourly: Schedule = "0 0 * * * *".parse().unwrap();
        let due = missed_ticks(
            &hourly,
            at("2026-11-01T00:00:00Z"),
            at("2026-11-21T10:30:00Z"),
            2,
        );
        assert_eq!(
            due,
            [at("2026-11-21T09:00:00Z"), at("2026-11-21T10:00:00Z")]
        );
        assert!(
            missed_ticks(
                &hourly,
                at("2026-11-01T00:00:00Z"),
                at("2026-11-21T10:30:00Z"),
                0
            )
            .is_empty()
        );
    }

    #[test]
    fn a_tick_exactly_now_is_due_and_the_last_one_is_not_again() {
        let hourly: Schedule = "0 0 * * * *".parse().unwrap();
        let due = missed_ticks(
            &hourly,
            at("2026-11-21T09:00:00Z"),
            at("2026-11-21T10:00:00Z"),
            24,
        );
        assert_eq!(due, [at("2026-11-21T10:00:00Z")]);
    }
}
