//! The last import of each blocklist feed (`feed:NAME` in `blocked_ip.source`): where its
//! list came from, when, and what the import changed. Written by the blocklist service in
//! the import's own transaction, so it always describes the entries in force.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "blocklist_feed")]
pub struct Model {
    /// The feed's name (`firehol1`), without the `feed:` of `blocked_ip.source`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// The file or URL (password masked) the last import read.
    pub origin: String,
    pub imported_at: DateTimeUtc,
    /// Distinct entries the list held.
    pub entries: i64,
    /// Rows the import added.
    pub added: i64,
    /// Rows of this feed the import removed because the list no longer had them.
    pub withdrawn: i64,
    /// Entries already blocked by someone else (a person, a rule, another feed), left as
    /// they were.
    pub kept: i64,
    /// Entries refused by the policy (overlapping `IPTRACK_SAFELIST`), never blocked.
    pub skipped: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
