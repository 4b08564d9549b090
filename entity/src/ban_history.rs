//! Every automatic ban (a streaming rule's, or the hourly job's auto-block), kept after its
//! block ends: escalation reads an address's latest ban, `iptrack blocked` and the admin
//! API count them. Written only by the worker's ban step (`iptrack_worker::bans`).

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "ban_history")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The banned address, as `blocked_ip.ip_address` holds it.
    pub ip_address: String,
    /// The rule that fired: a streaming rule's name, or `flag-suspicious-ips`.
    pub rule: String,
    pub banned_at: DateTimeUtc,
    /// How long this ban was made to last (after escalation), in seconds.
    pub duration_secs: i64,
    pub expires_at: DateTimeUtc,
    /// Names the event that caused the ban, so a job run twice records it once.
    pub event_key: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// How many times each of `addresses` has been banned (addresses never banned are absent).
pub async fn counts<C: ConnectionTrait>(
    db: &C,
    addresses: &[String],
) -> Result<std::collections::HashMap<String, i64>, DbErr> {
    use sea_orm::{QueryFilter, QuerySelect};
    let mut counts = std::collections::HashMap::new();
    // Chunked: SQLite's and PostgreSQL's bind-parameter limits.
    for chunk in addresses.chunks(1_000) {
        let rows: Vec<(String, i64)> = Entity::find()
            .select_only()
            .column(Column::IpAddress)
            .column_as(Column::Id.count(), "bans")
            .filter(Column::IpAddress.is_in(chunk.iter().map(String::as_str)))
            .group_by(Column::IpAddress)
            .into_tuple()
            .all(db)
            .await?;
        counts.extend(rows);
    }
    Ok(counts)
}
