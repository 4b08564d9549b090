//! A fresh database per test, built by the real migrations.

use iptrack_migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database of the test's own: a SQLite file in a temporary directory, or a PostgreSQL
/// database `iptrack_test_<uuid>` dropped when this value is.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    postgres_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

fn postgres_server_url() -> String {
    std::env::var("IPTRACK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

impl TestDb {
    /// Creates the database and applies every migration.
    pub async fn new(backend: Backend) -> Self {
        let db = Self::empty(backend).await;
        let conn = db.connect().await;
        Migrator::up(&conn, None).await.expect("migrations failed");
        conn.close().await.expect("cannot close");
        db
    }

    /// Creates the database without applying migrations.
    pub async fn empty(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("cannot create a temporary directory");
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("iptrack.db").display()
                );
                Self {
                    url,
                    backend,
                    postgres_name: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let name = format!("iptrack_test_{}", uuid::Uuid::new_v4().simple());
                let server = postgres_server_url();
                let admin = Database::connect(format!("{server}/postgres"))
                    .await
                    .expect("cannot connect to PostgreSQL (IPTRACK_TEST_POSTGRES_URL)");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("cannot create the test database");
                admin.close().await.expect("cannot close");
                Self {
                    url: format!("{server}/{name}"),
                    backend,
                    postgres_name: Some(name),
                    _dir: None,
                }
            }
        }
    }

    /// A fresh, migrated database on a PostgreSQL server of the test's own
    /// ([`crate::postgres_server::PrivatePostgres`]); not dropped afterwards, the whole
    /// cluster is deleted with the server.
    pub async fn on_private_postgres(server_url: &str) -> Self {
        let name = format!("iptrack_test_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(format!("{server_url}/postgres"))
            .await
            .expect("cannot connect to the private PostgreSQL server");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("cannot create the test database");
        admin.close().await.expect("cannot close");
        let db = Self {
            url: format!("{server_url}/{name}"),
            backend: Backend::Postgres,
            postgres_name: None,
            _dir: None,
        };
        let conn = db.connect().await;
        Migrator::up(&conn, None).await.expect("migrations failed");
        conn.close().await.expect("cannot close");
        db
    }

    /// A connection configured the way iptrack's processes configure theirs.
    pub async fn connect(&self) -> DatabaseConnection {
        iptrack_core::db::connect(&self.url)
            .await
            .expect("cannot connect to the test database")
    }

    /// `SELECT COUNT(*)` of `sql_from` (e.g. `"request_log WHERE status = 200"`).
    pub async fn count(&self, conn: &DatabaseConnection, sql_from: &str) -> i64 {
        let row = conn
            .query_one_raw(sea_orm::Statement::from_string(
                conn.get_database_backend(),
                format!("SELECT COUNT(*) AS n FROM {sql_from}"),
            ))
            .await
            .expect("count query failed")
            .expect("count returned no row");
        row.try_get::<i64>("", "n").expect("count is not a number")
    }
}

/// Counts `request_rollup_minute` and `request_rollup_hour` again from `request_log`, for
/// tests that seed `request_log` directly instead of through the request-log job (which
/// keeps the rollups, and which the dashboard's views read). On PostgreSQL the tables are
/// locked first (in the order every batch writes them), so a batch a running worker
/// commits meanwhile is counted once: by itself, after this.
pub async fn recount_rollup(conn: &DatabaseConnection) {
    use sea_orm::TransactionTrait;
    let txn = conn.begin().await.expect("cannot begin");
    if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
        txn.execute_unprepared(
            "LOCK TABLE request_rollup_minute, request_rollup_hour IN EXCLUSIVE MODE",
        )
        .await
        .expect("cannot lock the rollups");
    }
    for table in ["request_rollup_minute", "request_rollup_hour"] {
        txn.execute_unprepared(&format!("DELETE FROM {table}"))
            .await
            .unwrap_or_else(|e| panic!("cannot empty {table}: {e}"));
    }
    iptrack_migration::request_rollup::backfill(&txn)
        .await
        .expect("cannot count the rollups");
    txn.commit().await.expect("cannot commit");
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.postgres_name.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot be blocked on; use a thread
        // with a runtime of its own. FORCE ends connections the test left open.
        let server = postgres_server_url();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cannot build a runtime");
            runtime.block_on(async move {
                let admin = Database::connect(format!("{server}/postgres")).await?;
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await?;
                admin.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop a test database: {dropped:?}");
        }
    }
}
