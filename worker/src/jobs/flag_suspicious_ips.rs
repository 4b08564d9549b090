//! `flag-suspicious-ips`: the Celery task of the Django module, as SQL aggregates.
//!
//! For the window `[window_start, window_end)` it flags
//! - addresses with more than `IPTRACK_FLAG_THRESHOLD` requests (rule `volume`);
//! - addresses that requested a sensitive path or anything below it (rule `sensitive-path`),
//!   compared in the canonical form the paths are stored in, so `/%61dmin` is `/admin`.
//!
//! Both are one GROUP BY over the time index each, never rows loaded into memory. The rows
//! go to `suspicious_ip` with ON CONFLICT DO NOTHING on (address, rule, window start), so
//! running a window again adds nothing.
//!
//! With `IPTRACK_AUTO_BLOCK_SECS` set, every flagged address is also blocked for that long
//! (never shortening a longer block) and the change is announced to the web instances.

use std::time::Duration;

use anyhow::Context;
use apalis::prelude::{BoxDynError, Data};
use chrono::Utc;
use iptrack_core::{
    blocklist::{BlocklistChange, parse_block_target, publish_change},
    jobs::FlagSuspiciousIps,
    path::canonical_path,
    settings::ScheduleSettings,
};
use iptrack_entity::{blocked_ip, request_log, suspicious_ip};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect, Select,
    TryInsertResult,
    sea_query::{Expr, ExprTrait, LikeExpr},
};

use crate::context::JobContext;

pub const RULE_VOLUME: &str = "volume";
pub const RULE_SENSITIVE_PATH: &str = "sensitive-path";

/// Flags inserted per statement.
const ROWS_PER_STATEMENT: usize = 1_000;

/// What a run found and stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Flagged {
    /// Addresses over the request threshold.
    pub volume: usize,
    /// Addresses that requested a sensitive path.
    pub sensitive: usize,
    /// New `suspicious_ip` rows (0 when the window was flagged before).
    pub inserted: u64,
    /// Every address flagged, by either rule, sorted, each once.
    pub addresses: Vec<String>,
}

/// The apalis handler: the job, timed and counted in the cluster-wide job metrics.
pub async fn handle(job: FlagSuspiciousIps, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    let started = std::time::Instant::now();
    let result = run(job, ctx.clone()).await;
    super::record_outcome(
        &ctx,
        iptrack_core::jobs::FLAG_SUSPICIOUS_IPS_QUEUE,
        started,
        result.is_ok(),
    )
    .await;
    result
}

async fn run(job: FlagSuspiciousIps, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    let flagged = match flag(&ctx.db, &ctx.rules, &job).await {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(window_end = %job.window_end, "flagging failed: {error:#}");
            return Err(error.into());
        }
    };
    tracing::info!(
        window_start = %job.window_start,
        window_end = %job.window_end,
        volume = flagged.volume,
        sensitive = flagged.sensitive,
        inserted = flagged.inserted,
        "suspicious addresses flagged"
    );
    if let Some(duration) = ctx.rules.auto_block {
        let mut redis = ctx.redis.clone();
        if let Err(error) = block_flagged(
            &ctx.db,
            &mut redis,
            &ctx.redis_prefix,
            &flagged.addresses,
            duration,
        )
        .await
        {
            tracing::warn!(window_end = %job.window_end, "automatic blocking failed: {error:#}");
            return Err(error.into());
        }
    }
    Ok(())
}

/// Blocks each of `addresses` for `duration` from now and announces each block.
/// Idempotent: a block already lasting as long or longer is kept as it is.
pub async fn block_flagged(
    db: &DatabaseConnection,
    redis: &mut redis::aio::ConnectionManager,
    redis_prefix: &str,
    addresses: &[String],
    duration: Duration,
) -> anyhow::Result<()> {
    let expires_at = Utc::now() + chrono::Duration::from_std(duration)?;
    for address in addresses {
        let network = parse_block_target(address)
            .with_context(|| format!("flagged address {address:?} is not an address"))?;
        blocked_ip::block(
            db,
            address,
            "automatic: flagged as suspicious",
            Some(expires_at),
            true,
        )
        .await
        .context("cannot write blocked_ip")?;
        let change = BlocklistChange::Block {
            network,
            expires_at: Some(expires_at),
        };
        // The web instances' periodic reload covers a notice that does not get through.
        if let Err(error) = publish_change(redis, redis_prefix, &change).await {
            tracing::warn!(%error, address, "blocked, but the change notice failed");
        }
    }
    if !addresses.is_empty() {
        tracing::info!(
            blocked = addresses.len(),
            "flagged addresses blocked automatically"
        );
    }
    Ok(())
}

/// Addresses with more than `threshold` requests in the window: `(address, requests)`.
pub fn volume_query(job: &FlagSuspiciousIps, threshold: i64) -> Select<request_log::Entity> {
    request_log::Entity::find()
        .select_only()
        .column(request_log::Column::IpAddress)
        .column_as(request_log::Column::Id.count(), "requests")
        .filter(in_window(job))
        .group_by(request_log::Column::IpAddress)
        .having(Expr::col(request_log::Column::Id).count().gt(threshold))
}

/// Addresses that requested one of `prefixes` (or a path below one) in the window:
/// `(address, requests, an example path)`.
pub fn sensitive_query(
    job: &FlagSuspiciousIps,
    prefixes: &[String],
) -> Select<request_log::Entity> {
    let mut sensitive_paths = Condition::any();
    for prefix in prefixes {
        // Stored paths are canonical (`bounded_path`), so the prefix must be too, or
        // `/%61dmin` in a setting would match nothing and `/admin` miss its re-spellings.
        let canonical = canonical_path(prefix);
        let prefix: &str = &canonical;
        sensitive_paths = sensitive_paths
            .add(request_log::Column::Path.eq(prefix))
            .add(
                Expr::col(request_log::Column::Path)
                    .like(LikeExpr::new(format!("{}/%", escape_like(prefix))).escape('\\')),
            );
    }
    request_log::Entity::find()
        .select_only()
        .column(request_log::Column::IpAddress)
        .column_as(request_log::Column::Id.count(), "requests")
        .column_as(request_log::Column::Path.min(), "example")
        .filter(in_window(job))
        .filter(sensitive_paths)
        .group_by(request_log::Column::IpAddress)
}

fn in_window(job: &FlagSuspiciousIps) -> Condition {
    Condition::all()
        .add(request_log::Column::Timestamp.gte(job.window_start))
        .add(request_log::Column::Timestamp.lt(job.window_end))
}

/// Flags the window `job` names according to `rules`.
pub async fn flag(
    db: &DatabaseConnection,
    rules: &ScheduleSettings,
    job: &FlagSuspiciousIps,
) -> anyhow::Result<Flagged> {
    let window = describe(
        (job.window_end - job.window_start)
            .to_std()
            .unwrap_or_default(),
    );
    let threshold = i64::try_from(rules.flag_threshold).unwrap_or(i64::MAX);
    let heavy: Vec<(String, i64)> = volume_query(job, threshold)
        .into_tuple()
        .all(db)
        .await
        .context("volume query failed")?;
    let curious: Vec<(String, i64, String)> = sensitive_query(job, &rules.sensitive_paths)
        .into_tuple()
        .all(db)
        .await
        .context("sensitive-path query failed")?;

    let now = Utc::now();
    let row = |ip: String, rule: &str, reason: String| suspicious_ip::ActiveModel {
        id: NotSet,
        ip_address: Set(ip),
        rule: Set(rule.to_owned()),
        reason: Set(reason),
        window_start: Set(job.window_start),
        window_end: Set(job.window_end),
        flagged_at: Set(now),
    };
    let mut addresses: Vec<String> = heavy
        .iter()
        .map(|(ip, _)| ip.clone())
        .chain(curious.iter().map(|(ip, _, _)| ip.clone()))
        .collect();
    addresses.sort();
    addresses.dedup();
    let found = Flagged {
        volume: heavy.len(),
        sensitive: curious.len(),
        inserted: 0,
        addresses,
    };
    let rows: Vec<_> = heavy
        .into_iter()
        .map(|(ip, n)| {
            let reason = format!("{} in {window} (threshold {threshold})", requests(n));
            row(ip, RULE_VOLUME, reason)
        })
        .chain(curious.into_iter().map(|(ip, n, example)| {
            let reason = format!(
                "{} to sensitive paths in {window} (e.g. {example})",
                requests(n)
            );
            row(ip, RULE_SENSITIVE_PATH, reason)
        }))
        .collect();

    let mut inserted = 0;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let result = suspicious_ip::Entity::insert_many(chunk.iter().cloned())
            .on_conflict_do_nothing_on([
                suspicious_ip::Column::IpAddress,
                suspicious_ip::Column::Rule,
                suspicious_ip::Column::WindowStart,
            ])
            .exec_without_returning(db)
            .await
            .context("cannot store flags")?;
        if let TryInsertResult::Inserted(n) = result {
            inserted += n;
        }
    }
    Ok(Flagged { inserted, ..found })
}

/// `3600 s` → `1h`, `900 s` → `15m`, `90 s` → `90s`: how reasons name the window.
fn describe(window: Duration) -> String {
    let secs = window.as_secs();
    if secs > 0 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs > 0 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

fn requests(n: i64) -> String {
    if n == 1 {
        "1 request".to_owned()
    } else {
        format!("{n} requests")
    }
}

/// Escapes LIKE's wildcards so a configured path matches only itself.
fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_named_the_way_people_say_them() {
        assert_eq!(describe(Duration::from_secs(3600)), "1h");
        assert_eq!(describe(Duration::from_secs(900)), "15m");
        assert_eq!(describe(Duration::from_secs(90)), "90s");
    }

    #[test]
    fn like_wildcards_in_paths_are_escaped() {
        assert_eq!(escape_like("/my_admin%"), "/my\\_admin\\%");
    }
}
