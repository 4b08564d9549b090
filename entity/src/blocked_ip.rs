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

/// A block in force as the API and `iptrack blocked` list it: the row, and how many
/// times its address has been banned automatically (`ban_history`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Listed {
    pub id: i64,
    /// A single address or a network in canonical CIDR form.
    pub ip_address: String,
    pub reason: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: DateTimeUtc,
    /// `None`: until unblocked.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<DateTimeUtc>,
    /// `manual`, `rule:NAME` (the rule that banned it) or `feed:NAME`.
    pub source: String,
    /// Automatic bans of this address so far (streaming rules and auto-block), this one
    /// included when it is one; escalation makes each longer than the last.
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub ban_count: i64,
}

/// [`active_of_source`], each with its address's ban count: what the API and the CLI list.
pub async fn active_listed<C: ConnectionTrait>(
    db: &C,
    now: DateTimeUtc,
    source: Option<&str>,
) -> Result<Vec<Listed>, DbErr> {
    let blocks = active_of_source(db, now, source).await?;
    let addresses: Vec<String> = blocks.iter().map(|b| b.ip_address.clone()).collect();
    let counts = super::ban_history::counts(db, &addresses).await?;
    Ok(blocks
        .into_iter()
        .map(|b| Listed {
            ban_count: counts.get(&b.ip_address).copied().unwrap_or(0),
            id: b.id,
            ip_address: b.ip_address,
            reason: b.reason,
            created_at: b.created_at,
            expires_at: b.expires_at,
            source: b.source,
        })
        .collect())
}
