//! Database connections, tuned per backend.

pub mod nodelay;

use std::time::Duration;

use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DbErr, sqlx::postgres::PgConnectOptions,
};

/// Like [`connect`], but without connecting yet: for processes that must start (and serve)
/// while the database is away. Each query then fails until it is back.
pub async fn connect_lazy(database_url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = options(database_url);
    options.connect_lazy(true);
    Database::connect(options).await
}

/// Connects to `database_url` (SQLite or PostgreSQL).
///
/// SQLite runs in WAL mode with a busy timeout: several worker processes then share one file,
/// waiting for the writer lock instead of failing with "database is locked".
pub async fn connect(database_url: &str) -> Result<DatabaseConnection, DbErr> {
    Database::connect(options(database_url)).await
}

/// [`connect`] with a pool of up to `max_connections` (a worker sizes it to its slots).
pub async fn connect_with_pool(
    database_url: &str,
    max_connections: u32,
) -> Result<DatabaseConnection, DbErr> {
    let mut options = options(database_url);
    options.max_connections(max_connections);
    Database::connect(options).await
}

fn options(database_url: &str) -> ConnectOptions {
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
    if let Some((host, port)) = postgres_tcp_server(database_url) {
        // Every new pooled connection: its socket is found and changed right after connect.
        options.map_sqlx_postgres_pool_opts(move |pool| {
            let host = host.clone();
            pool.after_connect(move |_, _| {
                let host = host.clone();
                Box::pin(async move {
                    nodelay::enable(&host, port).await;
                    Ok(())
                })
            })
        });
    }
    options
}

/// The host and port a PostgreSQL `database_url` connects to over TCP (`None` for SQLite
/// and for a Unix socket), as sqlx reads them (`PGHOST` and `PGPORT` fill what the URL
/// leaves out).
fn postgres_tcp_server(database_url: &str) -> Option<(String, u16)> {
    if !database_url.starts_with("postgres") {
        return None;
    }
    let options: PgConnectOptions = database_url.parse().ok()?;
    if options.get_socket().is_some() || options.get_host().starts_with('/') {
        return None;
    }
    Some((options.get_host().to_owned(), options.get_port()))
}
