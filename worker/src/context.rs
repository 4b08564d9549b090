//! What jobs get to do their work with.

use sea_orm::DatabaseConnection;

/// Dependencies of every job, handed to apalis as worker data.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub db: DatabaseConnection,
}
