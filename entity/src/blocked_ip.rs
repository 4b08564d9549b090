//! Blocked addresses and networks (Django's `BlockedIP`), the source of truth for the
//! blocklist every web instance holds in memory.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "blocked_ip")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// A single address (`203.0.113.9`) or a network in canonical CIDR form
    /// (`203.0.113.0/24`, host bits zero). Unique.
    #[sea_orm(unique)]
    pub ip_address: String,
    pub reason: String,
    pub created_at: DateTimeUtc,
    /// The block stops applying at this time; `None` blocks until unblocked.
    pub expires_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
