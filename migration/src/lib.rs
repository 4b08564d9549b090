//! The database schema of iptrack as sea-orm-migration migrations. `iptrack migrate`,
//! `iptrack up` and the services' `--migrate` flag all run [`Migrator`]; the
//! `iptrack-migration` binary is sea-orm's standard migration CLI over the same list.

pub use sea_orm_migration::prelude::*;

mod m20261121_000001_create_tables;
mod m20261121_000002_request_log_details;
mod m20261201_000003_suspicious_incidents;
mod m20261201_000004_block_sources;
mod m20261201_000005_blocklist_feeds;
mod m20261201_000006_ban_history;
mod m20261201_000007_request_count;
mod m20261201_000008_dashboard_indexes;
mod m20261202_000009_request_rollup;
mod m20261202_000010_partition_request_log;
mod m20261202_000011_rollup_levels;
mod m20261202_000012_request_count_shards;
mod m20261202_000013_request_count_pending;
pub mod request_log_partitions;

/// The SQL that builds `request_count`, shared with the request-log job and the fold that
/// keep it and the benchmarks that fill `request_log` directly.
pub mod request_count {
    pub use crate::{
        m20261201_000007_request_count::{
            backfill, greatest, hour_sql, least, section_sql, upsert_sql,
        },
        m20261202_000013_request_count_pending::fold_sql,
    };
}

/// The SQL that builds `request_rollup_minute` and `request_rollup_hour`, shared with the
/// request-log job and the geolocation fill that keep them, the purge that trims them, and
/// the benchmarks and tests that fill `request_log` directly.
pub mod request_rollup {
    pub use crate::m20261201_000007_request_count::hour_sql;
    pub use crate::m20261202_000011_rollup_levels::{
        backfill, count_rows_sql, minute_sql, upsert_hour_sql, upsert_minute_sql,
    };
}

#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_create_tables::Migration),
            Box::new(m20261121_000002_request_log_details::Migration),
            Box::new(m20261201_000003_suspicious_incidents::Migration),
            Box::new(m20261201_000004_block_sources::Migration),
            Box::new(m20261201_000005_blocklist_feeds::Migration),
            Box::new(m20261201_000006_ban_history::Migration),
            Box::new(m20261201_000007_request_count::Migration),
            Box::new(m20261201_000008_dashboard_indexes::Migration),
            Box::new(m20261202_000009_request_rollup::Migration),
            Box::new(m20261202_000010_partition_request_log::Migration),
            Box::new(m20261202_000011_rollup_levels::Migration),
            Box::new(m20261202_000012_request_count_shards::Migration),
            Box::new(m20261202_000013_request_count_pending::Migration),
        ]
    }
}
