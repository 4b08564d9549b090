//! Anomaly detection and retention: what the scheduler enqueues and when, and the rules
//! the flag and purge jobs apply.

use std::time::Duration;

use chrono::{Datelike, NaiveDate};
use cron::Schedule;

use super::{
    SettingsError,
    parse::{bounded, choice, invalid, required},
    registry::{Values, Variable},
};

const FLAG_SCHEDULE: Variable = Variable::new(
    "IPTRACK_FLAG_SCHEDULE",
    "0 0 * * * *",
    "cron (with seconds, UTC) for flag-suspicious-ips",
);
const FLAG_WINDOW_SECS: Variable = Variable::new(
    "IPTRACK_FLAG_WINDOW_SECS",
    "3600",
    "each run looks at this window, ending at its tick",
);
const FLAG_THRESHOLD: Variable = Variable::new(
    "IPTRACK_FLAG_THRESHOLD",
    "100",
    "more requests than this in a window flags an address",
);
const SENSITIVE_PATHS: Variable = Variable::new(
    "IPTRACK_SENSITIVE_PATHS",
    "/admin,/login",
    "requests to these paths (or below) flag an address",
);
const FLAG_CATCHUP_WINDOWS: Variable = Variable::new(
    "IPTRACK_FLAG_CATCHUP_WINDOWS",
    "24",
    "windows missed while no scheduler ran that are enqueued on return",
);
const PURGE_SCHEDULE: Variable = Variable::new(
    "IPTRACK_PURGE_SCHEDULE",
    "0 30 3 * * *",
    "cron for purge-logs",
);
const LOG_RETENTION_DAYS: Variable = Variable::new(
    "IPTRACK_LOG_RETENTION_DAYS",
    "30",
    "request logs older than this are purged",
);
const LOG_PARTITION: Variable = Variable::new(
    "IPTRACK_LOG_PARTITION",
    "day",
    "PostgreSQL: `day`, `week` (Monday to Sunday, UTC) or `month`, the period of each `request_log` partition; purge-logs makes them a week ahead and drops those wholly past the retention (README, \"Retention\")",
);
const AUTO_BLOCK_SECS: Variable = Variable::new(
    "IPTRACK_AUTO_BLOCK_SECS",
    "0",
    "block every flagged address for this long (never shortening a longer block)",
)
.shown_as("`0` (off)");

pub(super) const VARIABLES: &[&Variable] = &[
    &FLAG_SCHEDULE,
    &FLAG_WINDOW_SECS,
    &FLAG_THRESHOLD,
    &SENSITIVE_PATHS,
    &FLAG_CATCHUP_WINDOWS,
    &PURGE_SCHEDULE,
    &LOG_RETENTION_DAYS,
    &LOG_PARTITION,
    &AUTO_BLOCK_SECS,
];

/// The scheduler's schedules and the jobs' rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSettings {
    /// `IPTRACK_FLAG_SCHEDULE`: cron expression (with seconds, UTC) on which
    /// `flag-suspicious-ips` is enqueued; default `0 0 * * * *`, hourly at :00.
    pub flag_schedule: Schedule,
    /// `IPTRACK_FLAG_WINDOW_SECS`: each flag job looks at the window of this length that
    /// ends at its tick; default 3600 (the hour that just ended).
    pub flag_window: Duration,
    /// `IPTRACK_FLAG_THRESHOLD`: more requests than this in a window flags an address.
    pub flag_threshold: u64,
    /// `IPTRACK_SENSITIVE_PATHS`: comma-separated path prefixes; any request to one of them
    /// (or below it) flags the address. Default `/admin,/login`.
    pub sensitive_paths: Vec<String>,
    /// `IPTRACK_FLAG_CATCHUP_WINDOWS`: after downtime, the scheduler enqueues at most this
    /// many missed windows (the most recent ones).
    pub flag_catch_up_windows: usize,
    /// `IPTRACK_PURGE_SCHEDULE`: cron expression on which `purge-logs` is enqueued; default
    /// `0 30 3 * * *`, daily at 03:30 UTC.
    pub purge_schedule: Schedule,
    /// `IPTRACK_LOG_RETENTION_DAYS`: request logs older than this are purged.
    pub log_retention: Duration,
    /// `IPTRACK_LOG_PARTITION`: the period of each partition of PostgreSQL's `request_log`
    /// (`purge-logs` makes them ahead and drops them past the retention). Changing it
    /// changes the partitions made from then on; existing ones keep their ranges.
    pub log_partition: LogPartition,
    /// `IPTRACK_AUTO_BLOCK_SECS`: when set (not 0), every address the flag job flags is
    /// also blocked for this long. Off by default.
    pub auto_block: Option<Duration>,
}

impl ScheduleSettings {
    pub(super) fn from_values(values: &Values) -> Result<Self, SettingsError> {
        let get = |var| required(var, values.get(var));
        let sensitive = get(&SENSITIVE_PATHS)?;
        let auto_block: u64 = bounded(&AUTO_BLOCK_SECS, get(&AUTO_BLOCK_SECS)?, 0, 365 * 86_400)?;
        Ok(Self {
            flag_schedule: cron(&FLAG_SCHEDULE, get(&FLAG_SCHEDULE)?)?,
            flag_window: Duration::from_secs(bounded(
                &FLAG_WINDOW_SECS,
                get(&FLAG_WINDOW_SECS)?,
                1,
                7 * 86_400,
            )?),
            flag_threshold: bounded(&FLAG_THRESHOLD, get(&FLAG_THRESHOLD)?, 1, u64::MAX)?,
            sensitive_paths: path_prefixes(sensitive)
                .map_err(|reason| invalid(&SENSITIVE_PATHS, sensitive, reason))?,
            flag_catch_up_windows: bounded(
                &FLAG_CATCHUP_WINDOWS,
                get(&FLAG_CATCHUP_WINDOWS)?,
                0,
                10_000,
            )?,
            purge_schedule: cron(&PURGE_SCHEDULE, get(&PURGE_SCHEDULE)?)?,
            log_retention: Duration::from_secs(
                86_400 * bounded::<u64>(&LOG_RETENTION_DAYS, get(&LOG_RETENTION_DAYS)?, 1, 36_500)?,
            ),
            log_partition: choice(
                &LOG_PARTITION,
                get(&LOG_PARTITION)?,
                &[
                    ("day", LogPartition::Day),
                    ("week", LogPartition::Week),
                    ("month", LogPartition::Month),
                ],
            )?,
            auto_block: (auto_block > 0).then(|| Duration::from_secs(auto_block)),
        })
    }
}

/// The period of one partition of PostgreSQL's `request_log` (`IPTRACK_LOG_PARTITION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogPartition {
    /// A UTC day: retention is exact to the day, partitions stay small.
    Day,
    /// Monday to Sunday (UTC): fewer partitions for long retentions.
    Week,
    /// A calendar month (UTC).
    Month,
}

impl LogPartition {
    /// The first day of the period after the one holding `day`.
    pub fn next_start(self, day: NaiveDate) -> NaiveDate {
        match self {
            Self::Day => day + chrono::Days::new(1),
            Self::Week => {
                day + chrono::Days::new(7 - u64::from(day.weekday().num_days_from_monday()))
            }
            Self::Month => {
                let first = day.with_day(1).unwrap_or(day);
                first + chrono::Months::new(1)
            }
        }
    }
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        super::from_defaults(Self::from_values)
    }
}

/// Parses a cron expression with seconds, e.g. `0 0 * * * *`.
pub fn parse_cron(v: &str) -> Result<Schedule, String> {
    v.parse::<Schedule>()
        .map_err(|e| format!("{e}; expected a cron expression with seconds, e.g. \"0 0 * * * *\""))
}

fn cron(var: &Variable, v: &str) -> Result<Schedule, SettingsError> {
    parse_cron(v).map_err(|reason| invalid(var, v, reason))
}

fn path_prefixes(v: &str) -> Result<Vec<String>, String> {
    let prefixes: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        // Canonical, as the stored paths they are compared with are (`crate::path`).
        .map(|p| crate::path::canonical_path(p.trim_end_matches('/')).into_owned())
        .collect();
    if let Some(bad) = prefixes.iter().find(|p| !p.starts_with('/')) {
        return Err(format!("{bad:?} does not start with /"));
    }
    if prefixes.is_empty() {
        return Err("expected at least one path, e.g. /admin,/login".to_owned());
    }
    Ok(prefixes)
}
