//! The fold of pending counts (PostgreSQL): moves the counts that request-log batches
//! stored in `request_count_pending` into `request_count` (migration
//! `m20261202_000013_request_count_pending`).
//!
//! Every worker process tries a fold every [`INTERVAL`] ([`run`]). A transaction-scoped
//! advisory lock lets one fold through at a time and the others skip their turn, so
//! `request_count` has one writer: no batch and no second fold waits on its rows.
//! Whoever reads `request_count` (the flag job, the purge) calls [`fold_all`] first,
//! which waits for that lock, so the reader sees every batch committed before it began,
//! exactly once: a pending row leaves its table in the same statement that adds it.
//!
//! On SQLite batches add to `request_count` themselves: nothing is pending, and both
//! functions return at once.

use std::time::Duration;

use anyhow::Context;
use iptrack_migration::request_count;
use sea_orm::{
    DatabaseConnection, DbBackend,
    sqlx::{self, AssertSqlSafe, PgPool},
};
use tokio_util::sync::CancellationToken;

/// How often each worker process tries a fold. A fold upserts every key its batches
/// touched once, however many batches touched it, so the longer the interval the fewer
/// upserts and dead row versions a busy address costs (`ingest_rate`, 1 M requests from
/// 10,000 addresses: 10,000 updates of `request_count` instead of 110,000–135,000 at one
/// second, a tenth of the table's bloat, and 5.7 % of the box's CPU instead of 14.2 %
/// under `perf`; BENCHMARKS.md). Nothing reads `request_count` without
/// folding first, so the interval only bounds what waits: about 10 s of batches (some
/// 7 MB of pending arrays at 75,000 requests a second) and the reader's own fold.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Pending rows (batches) folded per transaction: a backlog is folded in bounded steps,
/// each holding its `request_count` row locks for one statement of at most this many
/// batches' keys.
const BATCHES_PER_FOLD: u32 = 2_000;

/// The advisory lock that makes the fold single-writer: "iptrk" and 13, the migration
/// that made the table. Any constant would do; it only has to be iptrack's own.
const FOLD_LOCK: i64 = 0x6970_7472_6b00_0013;

/// What folds did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Folded {
    /// Pending rows (one per batch) moved.
    pub batches: u64,
    /// `request_count` rows written (added to or inserted).
    pub keys: u64,
}

impl std::ops::AddAssign for Folded {
    fn add_assign(&mut self, other: Self) {
        self.batches += other.batches;
        self.keys += other.keys;
    }
}

/// Folds everything committed so far, waiting for a fold running elsewhere to end: what a
/// reader of `request_count` calls first.
pub async fn fold_all(db: &DatabaseConnection) -> anyhow::Result<Folded> {
    fold_pending(db, Lock::Wait).await
}

/// Folds what is pending unless another fold holds the lock (then folds nothing).
pub async fn try_fold(db: &DatabaseConnection) -> anyhow::Result<Folded> {
    fold_pending(db, Lock::Try).await
}

/// Folds in steps of [`BATCHES_PER_FOLD`] until a step finds fewer (or, with `Lock::Try`,
/// finds the lock taken).
async fn fold_pending(db: &DatabaseConnection, lock: Lock) -> anyhow::Result<Folded> {
    let mut total = Folded::default();
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(total);
    }
    let pool = db.get_postgres_connection_pool();
    while let Some(folded) = fold_once(pool, lock).await? {
        total += folded;
        if folded.batches < u64::from(BATCHES_PER_FOLD) {
            break;
        }
    }
    Ok(total)
}

/// Runs [`try_fold`] every [`INTERVAL`] until `shutdown`.
pub async fn run(db: DatabaseConnection, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        match try_fold(&db).await {
            Ok(folded) if folded.batches > 0 => {
                tracing::debug!(
                    batches = folded.batches,
                    keys = folded.keys,
                    "pending counts folded"
                );
            }
            Ok(_) => {}
            // Nothing is lost: the rows stay pending for the next fold.
            Err(error) => tracing::warn!("pending counts not folded: {error:#}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lock {
    Wait,
    Try,
}

/// One fold of up to [`BATCHES_PER_FOLD`] pending rows in a transaction of its own;
/// `None` when `Lock::Try` found the lock taken.
async fn fold_once(pool: &PgPool, lock: Lock) -> anyhow::Result<Option<Folded>> {
    let mut txn = pool.begin().await.context("cannot begin a transaction")?;
    let taken: bool = match lock {
        Lock::Wait => {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(FOLD_LOCK)
                .execute(&mut *txn)
                .await
                .context("cannot take the fold lock")?;
            true
        }
        Lock::Try => sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(FOLD_LOCK)
            .fetch_one(&mut *txn)
            .await
            .context("cannot try the fold lock")?,
    };
    if !taken {
        txn.rollback().await.context("cannot roll back")?;
        return Ok(None);
    }
    // Built from constants only: no value reaches the text.
    let (batches, keys): (i64, i64) = sqlx::query_as(AssertSqlSafe(request_count::fold_sql(Some(
        BATCHES_PER_FOLD,
    ))))
    .fetch_one(&mut *txn)
    .await
    .context("cannot fold pending counts")?;
    txn.commit().await.context("cannot commit the fold")?;
    Ok(Some(Folded {
        batches: u64::try_from(batches).unwrap_or_default(),
        keys: u64::try_from(keys).unwrap_or_default(),
    }))
}
