//! The web's request-log pipeline: the in-process buffer and the batches pushed to Redis.

use std::time::Duration;

use super::{
    SettingsError,
    parse::{boolean, bounded, required},
    registry::{Values, Variable},
};

const LOG_BUFFER: Variable = Variable::new(
    "IPTRACK_LOG_BUFFER",
    "100000",
    "events held in memory while Redis is slow or away; beyond it events are dropped and counted",
);
const BATCH_MAX_EVENTS: Variable = Variable::new(
    "IPTRACK_BATCH_MAX_EVENTS",
    "1000",
    "a batch closes at this many events (max 5,000) ...",
);
const BATCH_MAX_WAIT_MS: Variable = Variable::new(
    "IPTRACK_BATCH_MAX_WAIT_MS",
    "100",
    "... or this long after its first event",
);
const LOG_QUERY_STRING: Variable = Variable::new(
    "IPTRACK_LOG_QUERY_STRING",
    "false",
    "also store query strings (off by default: they carry tokens and e-mail addresses)",
);

pub(super) const VARIABLES: &[&Variable] = &[
    &LOG_BUFFER,
    &BATCH_MAX_EVENTS,
    &BATCH_MAX_WAIT_MS,
    &LOG_QUERY_STRING,
];

/// Bounds of the in-process log buffer and of the batches the web pushes to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPipelineSettings {
    /// `IPTRACK_LOG_BUFFER`: events held in memory while Redis is slow or down. When full,
    /// new events are dropped (and counted); requests are still served.
    pub buffer_capacity: usize,
    /// `IPTRACK_BATCH_MAX_EVENTS`: a batch closes when it holds this many events ...
    pub batch_max_events: usize,
    /// `IPTRACK_BATCH_MAX_WAIT_MS`: ... or when its first event is this old.
    pub batch_max_wait: Duration,
    /// `IPTRACK_LOG_QUERY_STRING`: also store each request's query string. Off by default:
    /// query strings carry tokens, e-mail addresses and reset codes.
    pub log_query_string: bool,
}

impl LogPipelineSettings {
    pub(super) fn from_values(values: &Values) -> Result<Self, SettingsError> {
        let get = |var| required(var, values.get(var));
        Ok(Self {
            buffer_capacity: bounded(&LOG_BUFFER, get(&LOG_BUFFER)?, 1, 10_000_000)?,
            // 5,000 rows keep one multi-row INSERT under PostgreSQL's 65,535 bind parameters.
            batch_max_events: bounded(&BATCH_MAX_EVENTS, get(&BATCH_MAX_EVENTS)?, 1, 5_000)?,
            batch_max_wait: Duration::from_millis(bounded(
                &BATCH_MAX_WAIT_MS,
                get(&BATCH_MAX_WAIT_MS)?,
                1,
                60_000,
            )?),
            log_query_string: boolean(&LOG_QUERY_STRING, get(&LOG_QUERY_STRING)?)?,
        })
    }
}

impl Default for LogPipelineSettings {
    fn default() -> Self {
        super::from_defaults(Self::from_values)
    }
}
