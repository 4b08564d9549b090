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

/// The refresh slot of a feed refreshed every `interval` at `now`: slots are aligned to
/// the Unix epoch (a 6 h feed refreshes at 00:00, 06:00, … UTC), so every scheduler,
/// whenever it started, agrees on them. Returns the slot's number and when the next one
/// starts (unix seconds).
pub fn feed_slot(now: DateTime<Utc>, interval: std::time::Duration) -> (i64, i64) {
    let length = i64::try_from(interval.as_secs()).unwrap_or(i64::MAX).max(1);
    let slot = now.timestamp().div_euclid(length);
    (slot, slot.saturating_add(1).saturating_mul(length))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn feed_slots_are_aligned_to_the_epoch() {
        let six_hours = std::time::Duration::from_secs(6 * 3600);
        let (slot, next) = feed_slot(at("2026-11-21T07:30:00Z"), six_hours);
        assert_eq!(
            (slot, next),
            (
                at("2026-11-21T06:00:00Z").timestamp() / (6 * 3600),
                at("2026-11-21T12:00:00Z").timestamp()
            )
        );
        assert_eq!(
            feed_slot(at("2026-11-21T06:00:00Z"), six_hours).0,
            slot,
            "a slot starts at its boundary"
        );
        assert_eq!(feed_slot(at("2026-11-21T05:59:59Z"), six_hours).0, slot - 1);
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
