//! `iptrack migrate`: bring the database schema up to date.

use anyhow::Context;
use iptrack_core::Settings;
use iptrack_migration::{Migrator, MigratorTrait};

pub async fn run(settings: &Settings) -> anyhow::Result<()> {
    let db = super::connect_db(settings).await?;
    Migrator::up(&db, None).await.context("migration failed")?;
    tracing::info!(
        database = settings.database.kind().as_str(),
        "database schema is up to date"
    );
    Ok(())
}
