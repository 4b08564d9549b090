//! Blocked addresses and networks (Django's `BlockedIP`), the source of truth for the
//! blocklist every web instance holds in memory. Only `iptrack_core::blocklist::service`
//! writes this table: it validates each change and announces it to the web instances.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = BlockedIp))]
#[sea_orm(table_name = "blocked_ip")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// A single address (`203.0.113.9`) or a network in canonical CIDR form
    /// (`203.0.113.0/24`, host bits zero). Unique.
    #[sea_orm(unique)]
    pub ip_address: String,
    pub reason: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: DateTimeUtc,
    /// The block stops applying at this time; `None` blocks until unblocked.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<DateTimeUtc>,
    /// Who made it: `manual` (a person), `rule:NAME` (a detection rule, or the hourly flag
    /// job's `rule:volume` / `rule:sensitive-path`) or `feed:NAME` (an imported blocklist).
    pub source: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Blocks in force at `now`, oldest first.
pub async fn active<C: ConnectionTrait>(db: &C, now: DateTimeUtc) -> Result<Vec<Model>, DbErr> {
    active_of_source(db, now, None).await
}

/// Blocks in force at `now` made by `source` (`manual`, `rule:NAME`, `feed:NAME`; all
/// when `None`), oldest first.
pub async fn active_of_source<C: ConnectionTrait>(
    db: &C,
    now: DateTimeUtc,
    source: Option<&str>,
) -> Result<Vec<Model>, DbErr> {
    use sea_orm::{Condition, QueryFilter, QueryOrder};
    let mut query = Entity::find().filter(
        Condition::any()
            .add(Column::ExpiresAt.is_null())
            .add(Column::ExpiresAt.gt(now)),
    );
    if let Some(source) = source {
        query = query.filter(Column::Source.eq(source));
    }
    query.order_by_asc(Column::Id).all(db).await
}
