//! Database connections, tuned per backend.

use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

/// Connects to `database_url` (SQLite or PostgreSQL).
///
/// SQLite runs in WAL mode with a busy timeout: several worker processes then share one file,
/// waiting for the writer lock instead of failing with "database is locked".
pub async fn connect(database_url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(database_url.to_owned());
    options
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .max_connections(8)
        // sqlx logs every statement at INFO; far too loud for a log pipeline.
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30))
        });
    Database::connect(options).await
}
