//! Ids of the request-log batches already written. The worker inserts a batch's id in the
//! same transaction as its rows, so a batch delivered twice is written once.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "log_batch")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    /// The batch's UUID in text form (portable between SQLite and PostgreSQL).
    pub batch_id: String,
    /// Rows the batch inserted.
    pub events: i32,
    pub ingested_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
