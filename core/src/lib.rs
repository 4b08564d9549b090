//! Shared foundation of iptrack: typed settings, client-IP resolution, the payloads of the
//! jobs that travel over Redis, the queue plumbing around apalis-redis, database
//! connection and telemetry setup. Every iptrack process depends on this crate; it depends
//! on no other iptrack crate.

pub mod blocklist;
pub mod client_ip;
pub mod db;
pub mod job_metrics;
pub mod jobs;
pub mod path;
pub mod process;
pub mod queue;
pub mod queue_stats;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

pub use settings::{Settings, SettingsError};
