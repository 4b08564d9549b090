//! apalis worker tuning; the defaults work around apalis-redis 1.0's sharp edges (see
//! docs/ARCHITECTURE.md).

use std::time::Duration;

use super::{
    DatabaseKind, SettingsError,
    parse::{bounded, required},
    registry::{Values, Variable},
};

const WORKER_CONCURRENCY: Variable = Variable::unset(
    "IPTRACK_WORKER_CONCURRENCY",
    "`8` on PostgreSQL, `2` on SQLite",
    "request-log batches a worker process writes at once (its database pool holds this many connections plus 3)",
);
const WORKER_POLL_MS: Variable = Variable::new(
    "IPTRACK_WORKER_POLL_MS",
    "100",
    "how often an idle worker looks for jobs",
);
const WORKER_HEARTBEAT_SECS: Variable =
    Variable::new("IPTRACK_WORKER_HEARTBEAT_SECS", "5", "worker heartbeat");
const WORKER_MISSED_HEARTBEATS: Variable = Variable::new(
    "IPTRACK_WORKER_MISSED_HEARTBEATS",
    "3",
    "a worker silent this many heartbeats is dead; its jobs are re-queued",
);

pub(super) const VARIABLES: &[&Variable] = &[
    &WORKER_CONCURRENCY,
    &WORKER_POLL_MS,
    &WORKER_HEARTBEAT_SECS,
    &WORKER_MISSED_HEARTBEATS,
];

/// apalis worker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSettings {
    /// `IPTRACK_WORKER_CONCURRENCY`: request-log batches one worker process writes at once
    /// (one apalis worker, with its own unique name, per slot; each takes one job at a time).
    /// Default: 8 on PostgreSQL, 2 on SQLite. A batch spends most of its time waiting on the
    /// database (its INSERT, then the commit's WAL flush), so PostgreSQL, which writes
    /// concurrent transactions side by side and flushes their commits together, ingests
    /// about 2.7 times as fast with 8 in flight as with 2 (BENCHMARKS.md, "Ingest"). SQLite
    /// has one writer at a time: more slots only queue on its lock.
    pub concurrency: usize,
    /// `IPTRACK_WORKER_POLL_MS`: how often an idle worker looks for new jobs. Without a
    /// working poll strategy an idle apalis-redis worker wakes only on its heartbeat.
    pub poll_interval: Duration,
    /// `IPTRACK_WORKER_HEARTBEAT_SECS`: worker heartbeat. apalis-redis defaults to 30 s.
    pub heartbeat: Duration,
    /// `IPTRACK_WORKER_MISSED_HEARTBEATS`: after heartbeat × this, a silent worker's
    /// in-flight jobs go back to the queue. apalis-redis defaults to 10 (5 minutes in all).
    pub missed_heartbeats: usize,
}

impl WorkerSettings {
    /// Default request-log slots on PostgreSQL (see [`WorkerSettings::concurrency`]).
    pub const POSTGRES_CONCURRENCY: usize = 8;
    /// Default request-log slots on SQLite (see [`WorkerSettings::concurrency`]).
    pub const SQLITE_CONCURRENCY: usize = 2;

    /// Database connections a worker process needs: one per request-log slot, plus the
    /// flag, purge and geolocate workers and the count fold, so none of them waits for a
    /// connection.
    pub fn database_connections(&self) -> u32 {
        u32::try_from(self.concurrency + 4).unwrap_or(u32::MAX)
    }

    /// `database` decides the default concurrency.
    pub(super) fn from_values(
        values: &Values,
        database: DatabaseKind,
    ) -> Result<Self, SettingsError> {
        let get = |var| required(var, values.get(var));
        Ok(Self {
            concurrency: match values.get(&WORKER_CONCURRENCY) {
                Some(v) => bounded(&WORKER_CONCURRENCY, v, 1, 64)?,
                None => match database {
                    DatabaseKind::Postgres => Self::POSTGRES_CONCURRENCY,
                    DatabaseKind::Sqlite => Self::SQLITE_CONCURRENCY,
                },
            },
            poll_interval: Duration::from_millis(bounded(
                &WORKER_POLL_MS,
                get(&WORKER_POLL_MS)?,
                10,
                60_000,
            )?),
            heartbeat: Duration::from_secs(bounded(
                &WORKER_HEARTBEAT_SECS,
                get(&WORKER_HEARTBEAT_SECS)?,
                1,
                300,
            )?),
            missed_heartbeats: bounded(
                &WORKER_MISSED_HEARTBEATS,
                get(&WORKER_MISSED_HEARTBEATS)?,
                2,
                100,
            )?,
        })
    }
}

impl Default for WorkerSettings {
    /// The defaults for the default database, SQLite.
    fn default() -> Self {
        super::from_defaults(|values| Self::from_values(values, DatabaseKind::Sqlite))
    }
}
