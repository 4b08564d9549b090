//! `iptrack migrate`: bring the database schema up to date.

use anyhow::Context;
use iptrack_core::{Settings, db};
use iptrack_migration::{Migrator, MigratorTrait};

pub async fn run(settings: &Settings) -> anyhow::Result<()> {
    let db = db::connect(&settings.database_url)
        .await
        .context("cannot connect to the database (DATABASE_URL)")?;
    Migrator::up(&db, None).await.context("migration failed")?;
    tracing::info!(
        database = settings.database_kind(),
        "database schema is up to date"
    );
    Ok(())
}
