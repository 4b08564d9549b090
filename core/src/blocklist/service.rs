//! The one place that changes the blocklist: validate, write `blocked_ip`, announce.
//!
//! `iptrack block`/`unblock`, the admin API and automatic blocking all go through
//! [`BlocklistService`]; nothing else writes `blocked_ip` or publishes change notices. The
//! notice carries the block *as stored*, read back in the writing transaction, never as
//! requested: an automatic block that the table refused to shorten must not make the web
//! instances forget a longer or permanent one until their next reload.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, SubsecRound, Utc};
use ipnet::IpNet;
use iptrack_entity::{
    blocked_ip::{self, Column, Entity},
    blocklist_feed,
};
use redis::aio::ConnectionManager;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    EntityName, EntityTrait, QueryFilter, QuerySelect, Statement, TransactionTrait, Value,
    sea_query::{ArrayType, Expr, OnConflict, Query},
};
use tracing::instrument;

use super::{
    BlockSource, BlocklistChange, canonical_network, display_network,
    feed::FeedName,
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

/// The whole list of one feed, to become its entries in `blocked_ip`.
#[derive(Debug, Clone)]
pub struct FeedImportRequest {
    pub feed: FeedName,
    /// From `feed::parse_list`; canonicalised again here.
    pub entries: BTreeSet<IpNet>,
    /// The file or URL read (any password masked), recorded in `blocklist_feed`.
    pub origin: String,
    /// Let a list with no entries withdraw everything the feed had. Off for scheduled
    /// refreshes: an empty answer is far likelier a broken download than an empty list.
    pub allow_empty: bool,
    /// Let a list with fewer than half the feed's current entries replace them. Off for
    /// scheduled refreshes: a truncated download looks like this.
    pub allow_shrink: bool,
}

/// What a feed import did.
#[derive(Debug)]
pub struct FeedImported {
    /// Distinct entries the list held.
    pub entries: usize,
    /// Rows added for this feed (an expired block of anyone's is taken over too).
    pub added: u64,
    /// Rows of this feed removed because the list no longer has them.
    pub withdrawn: u64,
    /// Entries this feed already held.
    pub unchanged: u64,
    /// Entries blocked by someone else (a person, a rule, another feed), left as they are.
    pub kept: u64,
    /// Entries the policy refuses (they overlap `IPTRACK_SAFELIST`): never blocked.
    pub skipped: Vec<(IpNet, Refusal)>,
    /// Whether the web instances were told to reload (`Ok` also when nothing changed and
    /// nothing was announced); a failure is repaired by their periodic reloads.
    pub notice: Result<(), redis::RedisError>,
}

/// Why a feed's list is not imported. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedRefusal {
    #[error(
        "the list of feed {feed} has no entries to block; nothing was changed (to withdraw all of its entries: iptrack import-blocklist --allow-empty)"
    )]
    Empty { feed: String },
    #[error(
        "the list of feed {feed} has {entries} entries, fewer than half of the {current} it holds; a truncated download looks like this, so nothing was changed (if the list really shrank: iptrack import-blocklist --allow-shrink)"
    )]
    Shrunk {
        feed: String,
        entries: usize,
        current: usize,
    },
    /// A block of everyone: the list is broken or hostile.
    #[error(transparent)]
    Policy(Refusal),
}

#[derive(Debug, thiserror::Error)]
pub enum FeedImportError {
    /// The list is the caller's input error (exit 2); a scheduled refresh keeps the
    /// feed's previous entries.
    #[error(transparent)]
    Refused(#[from] FeedRefusal),
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

    /// Makes `request.entries` the whole of the feed's entries, in one transaction: adds
    /// what is new, withdraws what the list no longer has, never touches a row of another
    /// source (a person's, a rule's, another feed's: such an entry is `kept`), then tells
    /// the web instances to reload once.
    ///
    /// Feeds may block wide networks (Spamhaus DROP lists /11s, FireHOL level1 the bogon
    /// /3 and /8s): the policy's `allow_wide` is on. A block of everyone refuses the whole
    /// list; an entry overlapping the safelist is skipped and reported, so an operator's
    /// safelist never stops a feed from refreshing.
    #[instrument(skip_all, fields(feed = %request.feed, entries = request.entries.len()))]
    pub async fn import_feed(
        &self,
        request: FeedImportRequest,
    ) -> Result<FeedImported, FeedImportError> {
        let mut wanted = BTreeSet::new();
        let mut skipped = Vec::new();
        for network in &request.entries {
            let network = canonical_network(network.trunc());
            match self.policy.check(&network, true) {
                Ok(()) => {
                    wanted.insert(display_network(&network));
                }
                Err(refusal @ Refusal::Everyone { .. }) => {
                    return Err(FeedRefusal::Policy(refusal).into());
                }
                Err(refusal) => skipped.push((network, refusal)),
            }
        }
        let written = write_feed(&self.db, &request, &wanted, skipped.len()).await?;
        let notice = if written.added + written.withdrawn > 0 {
            self.announce(&BlocklistChange::Reload).await
        } else {
            Ok(())
        };
        Ok(FeedImported {
            entries: request.entries.len(),
            added: written.added,
            withdrawn: written.withdrawn,
            unchanged: written.unchanged,
            kept: written.kept,
            skipped,
            notice,
        })
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

/// Rows per multi-row INSERT or DELETE on SQLite: 5 bound values per inserted row keeps a
/// statement under SQLite's 32,766 bind parameters.
const SQLITE_ROWS_PER_STATEMENT: usize = 6_000;

/// What [`write_feed`] changed.
struct FeedWritten {
    added: u64,
    withdrawn: u64,
    unchanged: u64,
    kept: u64,
}

/// The feed's part of [`BlocklistService::import_feed`], in one transaction.
async fn write_feed(
    db: &DatabaseConnection,
    request: &FeedImportRequest,
    wanted: &BTreeSet<String>,
    skipped: usize,
) -> Result<FeedWritten, FeedImportError> {
    let feed = request.feed.as_str().to_owned();
    let source = BlockSource::Feed(feed.clone()).stored();
    let txn = db.begin().await?;
    lock_feeds(&txn).await?;
    let current: HashSet<String> = Entity::find()
        .select_only()
        .column(Column::IpAddress)
        .filter(Column::Source.eq(&source))
        .into_tuple::<String>()
        .all(&txn)
        .await?
        .into_iter()
        .collect();
    if wanted.is_empty() && !request.allow_empty {
        return Err(FeedRefusal::Empty { feed }.into());
    }
    // An empty list that is allowed is the deliberate withdrawal of the whole feed.
    let allow_shrink = request.allow_shrink || (wanted.is_empty() && request.allow_empty);
    if wanted.len() * 2 < current.len() && !allow_shrink {
        return Err(FeedRefusal::Shrunk {
            feed,
            entries: wanted.len(),
            current: current.len(),
        }
        .into());
    }
    let withdraw: Vec<&str> = current
        .iter()
        .filter(|address| !wanted.contains(*address))
        .map(String::as_str)
        .collect();
    let add: Vec<&str> = wanted
        .iter()
        .filter(|address| !current.contains(*address))
        .map(String::as_str)
        .collect();
    // Whole microseconds, as PostgreSQL keeps them, so both databases store one instant.
    let now = Utc::now().trunc_subsecs(6);
    let reason = format!("listed by feed {feed}");
    let (withdrawn, added) = match txn.get_database_backend() {
        DbBackend::Postgres => (
            withdraw_postgres(&txn, &source, &withdraw).await?,
            add_postgres(&txn, &source, &reason, now, &add).await?,
        ),
        _ => (
            withdraw_sqlite(&txn, &source, &withdraw).await?,
            add_sqlite(&txn, &source, &reason, now, &add).await?,
        ),
    };
    let kept = (add.len() as u64).saturating_sub(added);
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let record = blocklist_feed::ActiveModel {
        name: Set(feed),
        origin: Set(request.origin.clone()),
        imported_at: Set(now),
        entries: Set(count(request.entries.len() as u64)),
        added: Set(count(added)),
        withdrawn: Set(count(withdrawn)),
        kept: Set(count(kept)),
        skipped: Set(count(skipped as u64)),
    };
    blocklist_feed::Entity::insert(record)
        .on_conflict(
            OnConflict::column(blocklist_feed::Column::Name)
                .update_columns([
                    blocklist_feed::Column::Origin,
                    blocklist_feed::Column::ImportedAt,
                    blocklist_feed::Column::Entries,
                    blocklist_feed::Column::Added,
                    blocklist_feed::Column::Withdrawn,
                    blocklist_feed::Column::Kept,
                    blocklist_feed::Column::Skipped,
                ])
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    txn.commit().await?;
    Ok(FeedWritten {
        added,
        withdrawn,
        unchanged: (wanted.len() - add.len()) as u64,
        kept,
    })
}

/// Feed imports write one at a time, cluster-wide: two imports of one feed (the CLI and a
/// scheduled refresh) must not both read the old entries and both add. SQLite: a first
/// write takes the database's write lock (before any read, so the transaction never fails
/// to upgrade a read snapshot). PostgreSQL: a transaction-scoped advisory lock.
async fn lock_feeds(txn: &DatabaseTransaction) -> Result<(), DbErr> {
    let sql = match txn.get_database_backend() {
        DbBackend::Postgres => "SELECT pg_advisory_xact_lock(7346127002)",
        _ => "UPDATE blocklist_feed SET name = name WHERE 1 = 0",
    };
    txn.execute_unprepared(sql).await.map(|_| ())
}

/// Removes `addresses` of `source`, and only of it.
async fn withdraw_sqlite(
    txn: &DatabaseTransaction,
    source: &str,
    addresses: &[&str],
) -> Result<u64, DbErr> {
    let mut removed = 0;
    for chunk in addresses.chunks(SQLITE_ROWS_PER_STATEMENT) {
        removed += Entity::delete_many()
            .filter(Column::Source.eq(source))
            .filter(Column::IpAddress.is_in(chunk.iter().copied()))
            .exec(txn)
            .await?
            .rows_affected;
    }
    Ok(removed)
}

/// [`withdraw_sqlite`] in one statement: one array parameter instead of one per address.
async fn withdraw_postgres(
    txn: &DatabaseTransaction,
    source: &str,
    addresses: &[&str],
) -> Result<u64, DbErr> {
    if addresses.is_empty() {
        return Ok(0);
    }
    let result = txn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "DELETE FROM blocked_ip WHERE source = $1 AND ip_address = ANY($2::text[])",
            [Value::from(source), text_array(addresses)],
        ))
        .await?;
    Ok(result.rows_affected())
}

/// Inserts the feed's new entries; an address with a live block of anyone else's is left
/// alone (`ON CONFLICT … DO UPDATE … WHERE` its block has expired: a dead row is taken
/// over, or the feed's entry would stay out for good). Returns the rows written.
async fn add_sqlite(
    txn: &DatabaseTransaction,
    source: &str,
    reason: &str,
    now: DateTime<Utc>,
    addresses: &[&str],
) -> Result<u64, DbErr> {
    let mut written = 0;
    for chunk in addresses.chunks(SQLITE_ROWS_PER_STATEMENT) {
        let mut insert = Query::insert();
        insert.into_table(Entity).columns([
            Column::IpAddress,
            Column::Reason,
            Column::CreatedAt,
            Column::ExpiresAt,
            Column::Source,
        ]);
        for address in chunk {
            insert
                .values([
                    (*address).into(),
                    reason.into(),
                    now.into(),
                    Option::<DateTime<Utc>>::None.into(),
                    source.into(),
                ])
                .map_err(|error| DbErr::Custom(error.to_string()))?;
        }
        insert.on_conflict(
            OnConflict::column(Column::IpAddress)
                .update_columns([
                    Column::Reason,
                    Column::CreatedAt,
                    Column::ExpiresAt,
                    Column::Source,
                ])
                .action_and_where(expired_by(now))
                .to_owned(),
        );
        written += txn.execute(&insert).await?.rows_affected();
    }
    Ok(written)
}

/// [`add_sqlite`] as one `INSERT … SELECT FROM UNNEST` of one text array: PostgreSQL
/// parses one small statement whatever the list's size (as `request-logs` does).
async fn add_postgres(
    txn: &DatabaseTransaction,
    source: &str,
    reason: &str,
    now: DateTime<Utc>,
    addresses: &[&str],
) -> Result<u64, DbErr> {
    if addresses.is_empty() {
        return Ok(0);
    }
    let result = txn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO blocked_ip (ip_address, reason, created_at, expires_at, source) \
             SELECT address, $2, $3::timestamptz, NULL, $4 FROM UNNEST($1::text[]) AS new(address) \
             ON CONFLICT (ip_address) DO UPDATE SET reason = excluded.reason, \
             created_at = excluded.created_at, expires_at = NULL, source = excluded.source \
             WHERE blocked_ip.expires_at IS NOT NULL AND blocked_ip.expires_at <= $3::timestamptz",
            [
                text_array(addresses),
                Value::from(reason),
                Value::from(now),
                Value::from(source),
            ],
        ))
        .await?;
    Ok(result.rows_affected())
}

/// `blocked_ip.expires_at IS NOT NULL AND blocked_ip.expires_at <= now`: the stored row
/// (in an upsert's conflict action) is no block any more.
fn expired_by(now: DateTime<Utc>) -> Expr {
    // sea-query's ExprTrait only here: in scope beside ColumnTrait, `.eq` is ambiguous.
    use sea_orm::sea_query::ExprTrait;
    let expires_at = Expr::col((Entity, Column::ExpiresAt));
    expires_at.clone().is_not_null().and(expires_at.lte(now))
}

fn text_array(texts: &[&str]) -> Value {
    Value::Array(
        ArrayType::String,
        Some(Box::new(texts.iter().map(|t| Value::from(*t)).collect())),
    )
}
