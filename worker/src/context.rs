//! What jobs get to do their work with.

use std::sync::Arc;

use iptrack_core::{
    blocklist::service::BlocklistService,
    settings::{DetectSettings, ScheduleSettings},
};
use redis::aio::ConnectionManager;
use sea_orm::DatabaseConnection;

use crate::{bans::Bans, feeds::FeedFetcher, geo::Geo, notify::Notifier};

/// Dependencies of every job, handed to apalis as worker data.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub db: DatabaseConnection,
    /// Thresholds, sensitive paths and retention the jobs apply.
    pub rules: Arc<ScheduleSettings>,
    /// For the cluster-wide job metrics.
    pub redis: ConnectionManager,
    pub redis_prefix: String,
    /// Automatic blocking writes and announces blocks through it, like every other caller.
    pub blocklist: BlocklistService,
    /// Geolocation (provider, cache, the geolocate queue); `None` when it is off.
    pub geo: Option<Arc<Geo>>,
    /// New flags and bans go to the webhook through it (a no-op when none is set).
    pub notifier: Notifier,
    /// Fetches blocklist feeds' lists (`blocklist-feeds` jobs).
    pub feeds: FeedFetcher,
    /// The streaming rules the request-log job applies (`crate::detect`).
    pub detect: Arc<DetectSettings>,
    /// Automatic bans (streaming rules and auto-block), escalated for repeat offenders.
    pub bans: Bans,
}
