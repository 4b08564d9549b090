//! What jobs get to do their work with.

use std::sync::Arc;

use iptrack_core::settings::ScheduleSettings;
use redis::aio::ConnectionManager;
use sea_orm::DatabaseConnection;

/// Dependencies of every job, handed to apalis as worker data.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub db: DatabaseConnection,
    /// Thresholds, sensitive paths and retention the jobs apply.
    pub rules: Arc<ScheduleSettings>,
    /// For announcements (blocklist changes made by automatic blocking).
    pub redis: ConnectionManager,
    pub redis_prefix: String,
}
