//! Shared foundation of iptrack: typed settings, client-IP resolution, the payloads of the
//! jobs that travel over Redis, the queue plumbing around apalis-redis, database
//! connection and telemetry setup, and the blocklist service. Every iptrack process depends
//! on this crate; of the other iptrack crates it depends only on `iptrack-entity`, whose
//! `blocked_ip` table the blocklist service writes.

pub mod blocklist;
pub mod client_ip;
pub mod db;
pub mod geo_attribution;
pub mod job_metrics;
pub mod jobs;
pub mod path;
pub mod process;
pub mod queue;
pub mod queue_stats;
pub mod redis_client;
pub mod redis_status;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod throttle;

pub use settings::{Settings, SettingsError};
