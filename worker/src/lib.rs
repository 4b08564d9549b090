//! iptrack's worker side: apalis workers over the Redis queues, one module per job.
//!
//! [`startup::run`] starts, per queue, `IPTRACK_WORKER_CONCURRENCY` apalis workers (each
//! under a [`supervisor`] that restarts it with back-off and a fresh unique name) plus the
//! [`maintenance`] loop that keeps apalis-redis's sets within bounds and, on PostgreSQL,
//! the [`count_fold`] loop that moves batches' pending counts into `request_count`.

pub mod bans;
pub mod context;
pub mod count_fold;
pub mod detect;
pub mod feeds;
pub mod geo;
pub mod jobs;
pub mod maintenance;
pub mod notify;
pub mod pg_copy;
pub mod poll;
pub mod startup;
pub mod supervisor;
pub mod tls;

pub use context::JobContext;
pub use startup::{RunningWorkers, start};
