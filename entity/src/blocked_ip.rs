//! Blocked addresses and networks (Django's `BlockedIP`), the source of truth for the
//! blocklist every web instance holds in memory.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, utoipa::ToSchema)]
#[schema(as = BlockedIp)]
#[sea_orm(table_name = "blocked_ip")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// A single address (`203.0.113.9`) or a network in canonical CIDR form
    /// (`203.0.113.0/24`, host bits zero). Unique.
    #[sea_orm(unique)]
    pub ip_address: String,
    pub reason: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTimeUtc,
    /// The block stops applying at this time; `None` blocks until unblocked.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Blocks `ip_address` (canonical text, see `iptrack_core::blocklist::display_network`).
/// Blocking it again replaces reason and expiry, unless `keep_longer` is set and the
/// existing block already lasts as long or longer (automatic blocks never shorten a
/// manual one). Returns whether a row was inserted (`false`: one was updated or kept).
pub async fn block<C: ConnectionTrait>(
    db: &C,
    ip_address: &str,
    reason: &str,
    expires_at: Option<DateTimeUtc>,
    keep_longer: bool,
) -> Result<bool, DbErr> {
    use sea_orm::{ActiveValue::Set, QueryFilter, sea_query::OnConflict};
    let existed = Entity::find()
        .filter(Column::IpAddress.eq(ip_address))
        .one(db)
        .await?
        .is_some();
    let mut on_conflict = OnConflict::column(Column::IpAddress);
    on_conflict.update_columns([Column::Reason, Column::ExpiresAt]);
    if keep_longer {
        let (table, excluded) = (Entity.table_name(), "excluded");
        on_conflict.action_and_where(sea_orm::sea_query::Expr::cust(format!(
            "{table}.expires_at IS NOT NULL AND ({excluded}.expires_at IS NULL \
             OR {table}.expires_at < {excluded}.expires_at)"
        )));
    }
    let row = ActiveModel {
        ip_address: Set(ip_address.to_owned()),
        reason: Set(reason.to_owned()),
        created_at: Set(chrono::Utc::now()),
        expires_at: Set(expires_at),
        ..Default::default()
    };
    Entity::insert(row)
        .on_conflict(on_conflict)
        .exec_without_returning(db)
        .await?;
    Ok(!existed)
}

/// Removes the block of `ip_address`; returns whether there was one.
pub async fn unblock<C: ConnectionTrait>(db: &C, ip_address: &str) -> Result<bool, DbErr> {
    use sea_orm::QueryFilter;
    let result = Entity::delete_many()
        .filter(Column::IpAddress.eq(ip_address))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

/// Blocks in force at `now`, oldest first.
pub async fn active<C: ConnectionTrait>(db: &C, now: DateTimeUtc) -> Result<Vec<Model>, DbErr> {
    use sea_orm::{Condition, QueryFilter, QueryOrder};
    Entity::find()
        .filter(
            Condition::any()
                .add(Column::ExpiresAt.is_null())
                .add(Column::ExpiresAt.gt(now)),
        )
        .order_by_asc(Column::Id)
        .all(db)
        .await
}
