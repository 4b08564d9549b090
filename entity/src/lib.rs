//! SeaORM entities of iptrack's tables. The schema itself is owned by `iptrack-migration`;
//! its tests check that these entities match what the migrations build.

pub mod ban_history;
pub mod blocked_ip;
pub mod blocklist_feed;
pub mod log_batch;
pub mod query;
pub mod request_count;
pub mod request_log;
pub mod request_rollup_hour;
pub mod request_rollup_minute;
pub mod suspicious_ip;
