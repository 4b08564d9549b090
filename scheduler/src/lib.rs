//! iptrack's scheduler, the Celery Beat of this system. It only enqueues: on each tick of
//! `IPTRACK_FLAG_SCHEDULE` it pushes `flag-suspicious-ips` for the window that just ended,
//! and on `IPTRACK_PURGE_SCHEDULE` it pushes `purge-logs`. Workers do the work.
//!
//! Several schedulers may run (for availability); each window is claimed in Redis by the
//! same atomic script that pushes its job, so exactly one job per window is enqueued.
//! A scheduler that was down across ticks enqueues the windows it missed when it comes
//! back (at most `IPTRACK_FLAG_CATCHUP_WINDOWS`, the most recent).

pub mod enqueue;
pub mod startup;
pub mod windows;

pub use startup::{RunningScheduler, start};
