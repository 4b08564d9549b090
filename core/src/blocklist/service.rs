//! The one place that changes the blocklist: validate, write `blocked_ip`, announce.
//!
//! `iptrack block`/`unblock`, the admin API and automatic blocking all go through
//! [`BlocklistService`]; nothing else writes `blocked_ip` or publishes change notices. The
//! notice carries the block *as stored*, read back in the writing transaction, never as
//! requested: an automatic block that the table refused to shorten must not make the web
//! instances forget a longer or permanent one until their next reload.

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use iptrack_entity::blocked_ip::{self, Column, Entity};
use redis::aio::ConnectionManager;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, DatabaseConnection, DbErr, EntityName, EntityTrait, QueryFilter, TransactionTrait,
    sea_query::{Expr, OnConflict},
};
use tracing::instrument;

use super::{
    BlockSource, BlocklistChange, canonical_network, display_network,
    policy::{BlockPolicy, Refusal},
    publish_change,
};

/// How a block meets one already stored for the same network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockMode {
    /// A person's decision: reason and expiry are replaced, also by a shorter block.
    Replace,
    /// Automatic blocking: the stored block is only ever extended, never shortened, and a
    /// manual block is never changed at all (its reason, expiry and source stay).
    Extend,
}

/// A block to make.
#[derive(Debug, Clone)]
pub struct BlockRequest {
    /// From `parse_block_target`; canonicalised again here.
    pub network: IpNet,
    pub reason: String,
    /// `None`: until unblocked.
    pub expires_at: Option<DateTime<Utc>>,
    /// Allows networks wider than the policy's default widest (`/0` and safelisted
    /// addresses stay refused).
    pub allow_wide: bool,
    pub mode: BlockMode,
    /// Stored as `blocked_ip.source`; replaced along with reason and expiry.
    pub source: BlockSource,
}

/// What a block left in the table.
#[derive(Debug)]
pub struct Blocked {
    /// The row as stored (reason and expiry may be the older block's, see [`BlockMode`]).
    pub block: blocked_ip::Model,
    /// Whether the row is new (`false`: an existing block was updated or kept).
    pub created: bool,
    /// Whether the web instances were told; a failure is repaired by their reloads.
    pub notice: Result<(), redis::RedisError>,
}

/// What an unblock did.
#[derive(Debug)]
pub struct Unblocked {
    /// Whether there was a block to remove (no notice is sent when there was none).
    pub removed: bool,
    pub notice: Result<(), redis::RedisError>,
}

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The policy refuses the block: the caller's input is wrong (400, exit 2).
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("cannot write blocked_ip")]
    Database(#[from] DbErr),
}

/// Validates, writes and announces blocklist changes.
#[derive(Debug, Clone)]
pub struct BlocklistService {
    db: DatabaseConnection,
    redis: ConnectionManager,
    redis_prefix: String,
    policy: BlockPolicy,
}

impl BlocklistService {
    /// `safelist` is `IPTRACK_SAFELIST`: blocks overlapping it are refused.
    pub fn new(
        db: DatabaseConnection,
        redis: ConnectionManager,
        redis_prefix: impl Into<String>,
        safelist: &[IpNet],
    ) -> Self {
        Self {
            db,
            redis,
            redis_prefix: redis_prefix.into(),
            policy: BlockPolicy::new(safelist),
        }
    }

    pub fn policy(&self) -> &BlockPolicy {
        &self.policy
    }

    /// Checks `request` against the policy, writes it, and announces what was stored.
    #[instrument(skip_all, fields(network = %request.network, mode = ?request.mode))]
    pub async fn block(&self, request: BlockRequest) -> Result<Blocked, BlockError> {
        let network = canonical_network(request.network.trunc());
        self.policy.check(&network, request.allow_wide)?;
        let address = display_network(&network);
        let (block, created) = write_block(&self.db, &address, &request).await?;
        let notice = self
            .announce(&BlocklistChange::Block {
                network,
                expires_at: block.expires_at,
            })
            .await;
        Ok(Blocked {
            block,
            created,
            notice,
        })
    }

    /// Removes the block of exactly `network` (not of networks inside or around it).
    /// Never refused: an unblock must always be able to undo a block, whatever its form.
    #[instrument(skip_all, fields(%network))]
    pub async fn unblock(&self, network: IpNet) -> Result<Unblocked, BlockError> {
        let network = canonical_network(network.trunc());
        let result = Entity::delete_many()
            .filter(Column::IpAddress.eq(display_network(&network)))
            .exec(&self.db)
            .await?;
        let removed = result.rows_affected > 0;
        let notice = if removed {
            self.announce(&BlocklistChange::Unblock { network }).await
        } else {
            Ok(())
        };
        Ok(Unblocked { removed, notice })
    }

    async fn announce(&self, change: &BlocklistChange) -> Result<(), redis::RedisError> {
        let mut redis = self.redis.clone();
        publish_change(&mut redis, &self.redis_prefix, change).await
    }
}

/// Upserts the block of `address` and reads back what the table holds, in one transaction.
async fn write_block(
    db: &DatabaseConnection,
    address: &str,
    request: &BlockRequest,
) -> Result<(blocked_ip::Model, bool), DbErr> {
    let txn = db.begin().await?;
    // A write first, so that SQLite takes its write lock now (waiting on its busy timeout)
    // rather than failing to upgrade a read snapshot later; it also says whether the row
    // existed, and on PostgreSQL locks it until the read-back.
    let existed = Entity::update_many()
        .col_expr(Column::IpAddress, Expr::col(Column::IpAddress))
        .filter(Column::IpAddress.eq(address))
        .exec(&txn)
        .await?
        .rows_affected
        > 0;
    let mut on_conflict = OnConflict::column(Column::IpAddress);
    on_conflict.update_columns([Column::Reason, Column::ExpiresAt, Column::Source]);
    if request.mode == BlockMode::Extend {
        let (table, excluded) = (Entity.table_name(), "excluded");
        let manual = BlockSource::Manual.stored();
        on_conflict.action_and_where(Expr::cust(format!(
            "{table}.source <> '{manual}' AND {table}.expires_at IS NOT NULL \
             AND ({excluded}.expires_at IS NULL OR {table}.expires_at < {excluded}.expires_at)"
        )));
    }
    let row = blocked_ip::ActiveModel {
        ip_address: Set(address.to_owned()),
        reason: Set(request.reason.clone()),
        created_at: Set(Utc::now()),
        expires_at: Set(request.expires_at),
        source: Set(request.source.stored()),
        ..Default::default()
    };
    Entity::insert(row)
        .on_conflict(on_conflict)
        .exec_without_returning(&txn)
        .await?;
    let stored = Entity::find()
        .filter(Column::IpAddress.eq(address))
        .one(&txn)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("blocked_ip {address} after upsert")))?;
    txn.commit().await?;
    Ok((stored, !existed))
}
