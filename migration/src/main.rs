//! sea-orm's migration CLI (`up`, `down`, `status`, `fresh`, ...) over iptrack's migrations.
//! Reads `DATABASE_URL`.

#[tokio::main]
async fn main() {
    sea_orm_migration::cli::run_cli(iptrack_migration::Migrator).await;
}
