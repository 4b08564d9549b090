//! Keeps this instance's copy of the blocklist current.
//!
//! Readers (the middleware) load the current [`Blocklist`] from an `ArcSwap`: no lock, no
//! I/O. One task here writes it: a full load from `blocked_ip` at start, then every change
//! notice from Redis applied at once, plus a full reload every `IPTRACK_BLOCKLIST_RELOAD_SECS`,
//! after every (re)subscription (which repairs notices lost while disconnected), and when a
//! notice asks for one (a feed import: one notice for any number of rows).

use std::{sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use chrono::Utc;
use futures::{FutureExt, StreamExt};
use iptrack_core::{
    blocklist::{
        Blocklist, BlocklistChange, change_channel, parse_block_target, policy::covers_everyone,
    },
    settings::{BlocklistSettings, RedisSettings},
};
use iptrack_entity::blocked_ip;
use sea_orm::DatabaseConnection;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The blocklist as the middleware reads it.
pub type SharedBlocklist = Arc<ArcSwap<Blocklist>>;

/// Wait before subscribing again after the Redis connection failed.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// Starts keeping a blocklist current from `db`'s `blocked_ip` and the change notices
/// published under the prefix of the Redis `redis` names; returns it (empty until the first
/// load) and the task, which ends when `shutdown` is cancelled.
pub fn start(
    settings: &BlocklistSettings,
    db: DatabaseConnection,
    redis: &RedisSettings,
    shutdown: CancellationToken,
) -> (SharedBlocklist, JoinHandle<()>) {
    let shared: SharedBlocklist = Arc::new(ArcSwap::from_pointee(Blocklist::new()));
    let task = tokio::spawn(run(
        shared.clone(),
        db,
        redis.clone(),
        change_channel(&redis.prefix),
        settings.reload,
        shutdown,
    ));
    (shared, task)
}

async fn run(
    shared: SharedBlocklist,
    db: DatabaseConnection,
    redis: RedisSettings,
    channel: String,
    reload_every: Duration,
    shutdown: CancellationToken,
) {
    let mut redis_failing = false;
    loop {
        let subscription = subscribe(&redis, &channel).await;
        // Whatever happened while not subscribed is in the table.
        reload(&shared, &db).await;
        let mut reload_timer = tokio::time::interval(reload_every);
        reload_timer.reset();
        match subscription {
            Ok(pubsub) => {
                if redis_failing {
                    tracing::info!("blocklist notices flow again");
                    redis_failing = false;
                }
                let mut messages = pubsub.into_on_message();
                loop {
                    tokio::select! {
                        message = messages.next() => match message {
                            Some(first) => {
                                // Apply every notice already waiting with one copy of the
                                // list: a copy of a large list costs milliseconds.
                                let mut batch = vec![first];
                                while let Some(Some(more)) = messages.next().now_or_never() {
                                    batch.push(more);
                                }
                                if apply(&shared, &batch) == Applied::ReloadAsked {
                                    // The table holds every change announced so far, this
                                    // batch's included (each is published after its commit).
                                    reload(&shared, &db).await;
                                }
                            }
                            None => break, // connection lost: subscribe again
                        },
                        _ = reload_timer.tick() => reload(&shared, &db).await,
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
            Err(error) => {
                if !redis_failing {
                    redis_failing = true;
                    iptrack_core::redis_status::report(
                        "blocklist sync, relying on periodic reloads",
                        &error,
                    );
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RESUBSCRIBE_DELAY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn subscribe(redis: &RedisSettings, channel: &str) -> redis::RedisResult<redis::aio::PubSub> {
    let client = iptrack_core::redis_client::client(redis)?;
    let mut pubsub = tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub())
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out")))??;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

/// What [`apply`] did with a batch of notices.
#[derive(Debug, PartialEq, Eq)]
enum Applied {
    Done,
    /// A notice asked for a full reload (a feed import changed many rows).
    ReloadAsked,
}

fn apply(shared: &SharedBlocklist, messages: &[redis::Msg]) -> Applied {
    let changes: Vec<BlocklistChange> = messages
        .iter()
        .filter_map(|message| {
            serde_json::from_slice(message.get_payload_bytes())
                .inspect_err(
                    |error| tracing::warn!(%error, "ignoring a malformed blocklist notice"),
                )
                .ok()
        })
        .filter(|change| match change {
            BlocklistChange::Block { network, .. } => enforceable(network),
            BlocklistChange::Unblock { .. } | BlocklistChange::Reload => true,
        })
        .collect();
    // The other changes are applied all the same: should the reload fail (the database
    // away), the list still has them.
    let outcome = if changes.contains(&BlocklistChange::Reload) {
        Applied::ReloadAsked
    } else {
        Applied::Done
    };
    let changes: Vec<BlocklistChange> = changes
        .into_iter()
        .filter(|change| *change != BlocklistChange::Reload)
        .collect();
    if changes.is_empty() {
        return outcome;
    }
    shared.rcu(|current| {
        let mut next = Blocklist::clone(current);
        for change in &changes {
            next.apply(change);
        }
        next
    });
    tracing::debug!(changes = changes.len(), "blocklist changes applied");
    outcome
}

/// Replaces the blocklist with what `blocked_ip` holds. On failure the old list stays.
async fn reload(shared: &SharedBlocklist, db: &DatabaseConnection) {
    match load(db).await {
        Ok(list) => {
            tracing::debug!(entries = list.len(), "blocklist reloaded");
            shared.store(Arc::new(list));
        }
        Err(error) => {
            tracing::warn!(%error, "cannot reload the blocklist; keeping the current one");
        }
    }
}

/// The matcher built from the blocks in force in `blocked_ip`: what every (re)load does,
/// public for the benchmark of its cost (`bench/src/bin/feed_import.rs`).
pub async fn load(db: &DatabaseConnection) -> Result<Blocklist, sea_orm::DbErr> {
    let rows = blocked_ip::active(db, Utc::now()).await?;
    let mut list = Blocklist::new();
    for row in rows {
        match parse_block_target(&row.ip_address) {
            Ok(network) if enforceable(&network) => list.insert(network, row.expires_at),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, id = row.id, "skipping a malformed blocked_ip row")
            }
        }
    }
    Ok(list)
}

/// The blocklist service refuses blocks of everyone; a row or notice from before that rule
/// (or written around the service) is not enforced either, so it cannot lock out every
/// client, the operator's unblock included.
fn enforceable(network: &ipnet::IpNet) -> bool {
    if covers_everyone(network) {
        tracing::warn!(%network, "ignoring a block of everyone; remove it with iptrack unblock");
        return false;
    }
    true
}
