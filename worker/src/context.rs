//! What jobs get to do their work with.

use std::sync::Arc;

use iptrack_core::settings::ScheduleSettings;
use redis::aio::ConnectionManager;
use sea_orm::DatabaseConnection;

use crate::geo::Geo;

/// Dependencies of every job, handed to apalis as worker data.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub db: DatabaseConnection,
    /// Thresholds, sensitive paths and retention the jobs apply.
    pub rules: Arc<ScheduleSettings>,
    /// For announcements (blocklist changes made by automatic blocking).
    pub redis: ConnectionManager,
    pub redis_prefix: String,
    /// Geolocation (provider, cache, counters); `None` when it is off.
    pub geo: Option<Arc<Geo>>,
}
