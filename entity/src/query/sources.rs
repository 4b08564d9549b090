//! Who blocks what: the blocklist's sources (`manual`, `rule:NAME`, `feed:NAME`) with
//! their blocks in force and, for feeds, their last import. For `GET
//! /api/v1/blocklist/sources`. Reads `blocked_ip` through `idx_blocked_ip_source` and the
//! small `blocklist_feed` table.

use std::collections::BTreeMap;

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
    prelude::DateTimeUtc, sea_query::Expr,
};
use serde::Serialize;

use crate::{blocked_ip, blocklist_feed};

/// One source of blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Source {
    /// As `blocked_ip.source` holds it: `manual`, `rule:NAME` or `feed:NAME`.
    pub source: String,
    /// Blocks of this source in force now.
    pub entries: i64,
    /// A feed's last import; `null` for other sources (and for a feed's rows written
    /// before any import was recorded).
    pub last_import: Option<LastImport>,
}

/// What a feed's last import did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LastImport {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: DateTimeUtc,
    /// The file or URL read (any password masked).
    pub origin: String,
    /// Distinct entries in the list.
    pub listed: i64,
    pub added: i64,
    pub withdrawn: i64,
    /// Listed entries another source already blocked, left as they were.
    pub kept: i64,
    /// Listed entries overlapping `IPTRACK_SAFELIST`, never blocked.
    pub skipped: i64,
}

/// Every source with a block in force or a recorded import, by name.
pub async fn all<C: ConnectionTrait>(db: &C, now: DateTimeUtc) -> Result<Vec<Source>, DbErr> {
    let counts: Vec<(String, i64)> = blocked_ip::Entity::find()
        .select_only()
        .column(blocked_ip::Column::Source)
        .column_as(Expr::cust("COUNT(*)"), "entries")
        .filter(
            Condition::any()
                .add(blocked_ip::Column::ExpiresAt.is_null())
                .add(blocked_ip::Column::ExpiresAt.gt(now)),
        )
        .group_by(blocked_ip::Column::Source)
        .into_tuple()
        .all(db)
        .await?;
    let mut sources: BTreeMap<String, Source> = counts
        .into_iter()
        .map(|(source, entries)| {
            (
                source.clone(),
                Source {
                    source,
                    entries,
                    last_import: None,
                },
            )
        })
        .collect();
    for feed in blocklist_feed::Entity::find().all(db).await? {
        let source = format!("feed:{}", feed.name);
        sources
            .entry(source.clone())
            .or_insert(Source {
                source,
                entries: 0,
                last_import: None,
            })
            .last_import = Some(LastImport {
            at: feed.imported_at,
            origin: feed.origin,
            listed: feed.entries,
            added: feed.added,
            withdrawn: feed.withdrawn,
            kept: feed.kept,
            skipped: feed.skipped,
        });
    }
    Ok(sources.into_values().collect())
}
