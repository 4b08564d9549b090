pub mod block;
pub mod flag_suspicious;
pub mod import_blocklist;
pub mod logs;
pub mod migrate;
pub mod queues;
pub mod suspicious;
pub mod up;

use anyhow::Context;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use iptrack_core::{Settings, db};
use sea_orm::DatabaseConnection;

/// The database connection every command that reads or writes tables opens.
pub async fn connect_db(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    db::connect(settings.database.url.expose())
        .await
        .context("cannot connect to the database (DATABASE_URL)")
}

/// A table for listings, in the style every listing command shares.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_header(header);
    table
}
