//! `flag-suspicious-ips`: the Celery task of the Django module, as SQL aggregates.
//!
//! For the window `[window_start, window_end)` it flags
//! - addresses with more than `IPTRACK_FLAG_THRESHOLD` requests (rule `volume`);
//! - addresses that requested a sensitive path or anything below it (rule `sensitive-path`),
//!   compared in the canonical form the paths are stored in, so `/%61dmin` is `/admin`.
//!
//! Both are one GROUP BY over the time index each, never rows loaded into memory. A flag
//! is an incident: one `suspicious_ip` row per address and rule while the activity goes
//! on (first seen, last seen, request count updated by later windows), a new row only
//! after a quiet gap of one flag window (`IPTRACK_FLAG_WINDOW_SECS`). So running a window
//! again, or overlapping windows, adds no rows.
//!
//! With `IPTRACK_AUTO_BLOCK_SECS` set, every flagged address is also blocked for that long
//! through the blocklist service (never shortening a longer block; safelisted addresses
//! are skipped), which announces the block as stored to the web instances.

use std::time::Duration;

use anyhow::Context;
use apalis::prelude::{BoxDynError, Data};
use chrono::{DateTime, Utc};
use iptrack_core::{
    blocklist::parse_block_target, jobs::FlagSuspiciousIps, path::canonical_path,
    settings::ScheduleSettings,
};
use iptrack_entity::{request_log, suspicious_ip};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend,
    EntityTrait, QueryFilter, QuerySelect, Select, TransactionTrait,
    sea_query::{Expr, ExprTrait, LikeExpr, Query},
};

use crate::{
    bans::{BanOutcome, BanRequest, Bans},
    context::JobContext,
};

pub const RULE_VOLUME: &str = "volume";
pub const RULE_SENSITIVE_PATH: &str = "sensitive-path";
/// The rule name of the auto-block's bans (`blocked_ip.source` `rule:flag-suspicious-ips`).
pub const AUTO_BLOCK_RULE: &str = "flag-suspicious-ips";

/// Findings looked up and inserted per statement.
const ROWS_PER_STATEMENT: usize = 1_000;

/// What a run found and stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Flagged {
    /// Addresses over the request threshold.
    pub volume: usize,
    /// Addresses that requested a sensitive path.
    pub sensitive: usize,
    /// Incidents started: new `suspicious_ip` rows (0 when the window was flagged before).
    pub inserted: u64,
    /// Incidents that went on and were extended (0 when the window was flagged before).
    pub updated: u64,
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
        updated = flagged.updated,
        "suspicious addresses flagged"
    );
    if let Some(duration) = ctx.rules.auto_block
        && let Err(error) = block_flagged(&ctx.bans, &flagged.addresses, duration, &job).await
    {
        tracing::warn!(window_end = %job.window_end, "automatic blocking failed: {error:#}");
        return Err(error.into());
    }
    Ok(())
}

/// Bans each of `addresses` for `duration` (escalated for repeat offenders, see
/// `crate::bans`) through the blocklist service, which announces each block as stored.
/// Idempotent: the window's ban of an address is made once however often the window is
/// flagged, and a block already lasting as long or longer is kept as it is. Addresses the
/// policy refuses (safelisted) are skipped, not an error: the operator's safelist wins.
pub async fn block_flagged(
    bans: &Bans,
    addresses: &[String],
    duration: Duration,
    job: &FlagSuspiciousIps,
) -> anyhow::Result<()> {
    let mut blocked = 0_usize;
    for address in addresses {
        let network = parse_block_target(address)
            .with_context(|| format!("flagged address {address:?} is not an address"))?;
        let outcome = bans
            .ban(BanRequest {
                network,
                // The addresses of both rules arrive merged; the job's name says who.
                rule: AUTO_BLOCK_RULE.to_owned(),
                base: duration,
                reason: "automatic: flagged as suspicious".to_owned(),
                event_key: format!(
                    "{AUTO_BLOCK_RULE}:{address}:{}",
                    job.window_end.timestamp_millis()
                ),
            })
            .await
            .context("cannot block a flagged address")?;
        match outcome {
            BanOutcome::Banned { .. } | BanOutcome::AlreadyBlocked => blocked += 1,
            BanOutcome::Refused(refusal) => {
                tracing::info!(address, "not blocked automatically: {refusal}");
            }
        }
    }
    if blocked > 0 {
        tracing::info!(blocked, "flagged addresses blocked automatically");
    }
    Ok(())
}

/// Addresses with more than `threshold` requests in the window:
/// `(address, requests, first, last)`.
pub fn volume_query(job: &FlagSuspiciousIps, threshold: i64) -> Select<request_log::Entity> {
    request_log::Entity::find()
        .select_only()
        .column(request_log::Column::IpAddress)
        .column_as(request_log::Column::Id.count(), "requests")
        .column_as(request_log::Column::Timestamp.min(), "first_seen")
        .column_as(request_log::Column::Timestamp.max(), "last_seen")
        .filter(in_window(job))
        .group_by(request_log::Column::IpAddress)
        .having(Expr::col(request_log::Column::Id).count().gt(threshold))
}

/// Addresses that requested one of `prefixes` (or a path below one) in the window:
/// `(address, requests, an example path, first, last)`.
pub fn sensitive_query(
    job: &FlagSuspiciousIps,
    prefixes: &[String],
) -> Select<request_log::Entity> {
    request_log::Entity::find()
        .select_only()
        .column(request_log::Column::IpAddress)
        .column_as(request_log::Column::Id.count(), "requests")
        .column_as(request_log::Column::Path.min(), "example")
        .column_as(request_log::Column::Timestamp.min(), "first_seen")
        .column_as(request_log::Column::Timestamp.max(), "last_seen")
        .filter(in_window(job))
        .filter(sensitive_paths(prefixes))
        .group_by(request_log::Column::IpAddress)
}

/// Requests to one of `prefixes` or a path below one: the sensitive-path rule (and a
/// streaming rule's `/prefix/*`).
pub(crate) fn sensitive_paths(prefixes: &[String]) -> Condition {
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
    sensitive_paths
}

fn in_window(job: &FlagSuspiciousIps) -> Condition {
    Condition::all()
        .add(request_log::Column::Timestamp.gte(job.window_start))
        .add(request_log::Column::Timestamp.lt(job.window_end))
}

/// One address that broke one rule (the hourly job's, or a streaming rule's).
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    pub ip: String,
    pub rule: String,
    pub reason: String,
    pub requests: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// Flags the window `job` names according to `rules`: each finding extends the open
/// incident of its address and rule, or starts one (see [`record`]).
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
    type Seen = (String, i64, DateTime<Utc>, DateTime<Utc>);
    let heavy: Vec<Seen> = volume_query(job, threshold)
        .into_tuple()
        .all(db)
        .await
        .context("volume query failed")?;
    type SeenAt = (String, i64, String, DateTime<Utc>, DateTime<Utc>);
    let curious: Vec<SeenAt> = sensitive_query(job, &rules.sensitive_paths)
        .into_tuple()
        .all(db)
        .await
        .context("sensitive-path query failed")?;

    let mut addresses: Vec<String> = heavy
        .iter()
        .map(|(ip, ..)| ip.clone())
        .chain(curious.iter().map(|(ip, ..)| ip.clone()))
        .collect();
    addresses.sort();
    addresses.dedup();
    let found = Flagged {
        volume: heavy.len(),
        sensitive: curious.len(),
        inserted: 0,
        updated: 0,
        addresses,
    };
    let volume: Vec<Finding> = heavy
        .into_iter()
        .map(|(ip, n, first_seen, last_seen)| Finding {
            ip,
            rule: RULE_VOLUME.to_owned(),
            reason: format!("{} in {window} (threshold {threshold})", requests(n)),
            requests: n,
            first_seen,
            last_seen,
        })
        .collect();
    let sensitive: Vec<Finding> = curious
        .into_iter()
        .map(|(ip, n, example, first_seen, last_seen)| Finding {
            ip,
            rule: RULE_SENSITIVE_PATH.to_owned(),
            reason: format!(
                "{} to sensitive paths in {window} (e.g. {example})",
                requests(n)
            ),
            requests: n,
            first_seen,
            last_seen,
        })
        .collect();

    let gap = chrono::Duration::from_std(rules.flag_window).context("flag window")?;
    let txn = db.begin().await.context("cannot start a transaction")?;
    lock_flags(&txn)
        .await
        .context("cannot lock suspicious_ip")?;
    let window = (job.window_start, job.window_end);
    let (volume_inserted, volume_updated) = record(&txn, window, gap, &volume, &Condition::all())
        .await
        .context("cannot store volume flags")?;
    let (sensitive_inserted, sensitive_updated) = record(
        &txn,
        window,
        gap,
        &sensitive,
        &sensitive_paths(&rules.sensitive_paths),
    )
    .await
    .context("cannot store sensitive-path flags")?;
    txn.commit().await.context("cannot store flags")?;
    Ok(Flagged {
        inserted: volume_inserted + sensitive_inserted,
        updated: volume_updated + sensitive_updated,
        ..found
    })
}

/// One flag job writes incidents at a time, cluster-wide, so two windows of the same
/// activity flagged at once cannot both start an incident. SQLite: a first write takes
/// the database's write lock (and waits on its busy timeout rather than failing to
/// upgrade a read later). PostgreSQL: a transaction-scoped advisory lock.
pub(crate) async fn lock_flags(txn: &DatabaseTransaction) -> Result<(), sea_orm::DbErr> {
    let sql = match txn.get_database_backend() {
        DbBackend::Postgres => "SELECT pg_advisory_xact_lock(7346127001)",
        _ => "UPDATE suspicious_ip SET id = id WHERE 1 = 0",
    };
    txn.execute_unprepared(sql).await.map(|_| ())
}

/// Stores the findings of one rule seen in `window`; returns (incidents started,
/// incidents extended). The streaming rules store theirs here too (`crate::detect`).
///
/// A finding belongs to an incident of the same address and rule when its requests lie
/// within `gap` (one flag window) of the incident's: that is the activity going on. The
/// incident then widens to cover them, and its request count is taken again over its whole
/// span, so a request seen by several overlapping windows counts once, and a window
/// flagged again changes nothing. Otherwise, after a quiet gap, a new incident starts.
/// `counted` selects the `request_log` rows the rule counts (`Condition::all()`: every
/// request).
pub(crate) async fn record(
    txn: &DatabaseTransaction,
    (window_start, window_end): (DateTime<Utc>, DateTime<Utc>),
    gap: chrono::Duration,
    findings: &[Finding],
    counted: &Condition,
) -> Result<(u64, u64), sea_orm::DbErr> {
    let now = Utc::now();
    let (mut inserted, mut updated) = (0, 0);
    for chunk in findings.chunks(ROWS_PER_STATEMENT) {
        let Some(rule) = chunk.first().map(|finding| finding.rule.as_str()) else {
            continue;
        };
        // Every incident one of these findings could join, through the
        // (ip_address, rule, last_seen) index.
        let open = suspicious_ip::Entity::find()
            .filter(suspicious_ip::Column::Rule.eq(rule))
            .filter(suspicious_ip::Column::IpAddress.is_in(chunk.iter().map(|f| f.ip.as_str())))
            .filter(suspicious_ip::Column::LastSeen.gte(window_start - gap))
            .filter(suspicious_ip::Column::FirstSeen.lte(window_end + gap))
            .all(txn)
            .await?;
        let mut new_rows = Vec::new();
        for finding in chunk {
            let incident = open
                .iter()
                .filter(|row| {
                    row.ip_address == finding.ip
                        && row.last_seen + gap >= finding.first_seen
                        && row.first_seen - gap <= finding.last_seen
                })
                .max_by_key(|row| row.last_seen);
            let Some(incident) = incident else {
                new_rows.push(suspicious_ip::ActiveModel {
                    id: NotSet,
                    ip_address: Set(finding.ip.clone()),
                    rule: Set(finding.rule.clone()),
                    reason: Set(finding.reason.clone()),
                    window_start: Set(window_start),
                    window_end: Set(window_end),
                    flagged_at: Set(now),
                    first_seen: Set(finding.first_seen),
                    last_seen: Set(finding.last_seen),
                    request_count: Set(finding.requests),
                });
                continue;
            };
            let first_seen = Ord::min(incident.first_seen, finding.first_seen);
            let last_seen = Ord::max(incident.last_seen, finding.last_seen);
            let (merged_start, merged_end) = (
                Ord::min(incident.window_start, window_start),
                Ord::max(incident.window_end, window_end),
            );
            if (first_seen, last_seen, merged_start, merged_end)
                == (
                    incident.first_seen,
                    incident.last_seen,
                    incident.window_start,
                    incident.window_end,
                )
            {
                continue; // this window was seen before: nothing new
            }
            suspicious_ip::Entity::update_many()
                .col_expr(suspicious_ip::Column::FirstSeen, Expr::value(first_seen))
                .col_expr(suspicious_ip::Column::LastSeen, Expr::value(last_seen))
                .col_expr(
                    suspicious_ip::Column::WindowStart,
                    Expr::value(merged_start),
                )
                .col_expr(suspicious_ip::Column::WindowEnd, Expr::value(merged_end))
                .col_expr(
                    suspicious_ip::Column::RequestCount,
                    count_between(&finding.ip, first_seen, last_seen, counted),
                )
                .filter(suspicious_ip::Column::Id.eq(incident.id))
                .exec(txn)
                .await?;
            updated += 1;
        }
        if !new_rows.is_empty() {
            inserted += suspicious_ip::Entity::insert_many(new_rows)
                .exec_without_returning(txn)
                .await?;
        }
    }
    Ok((inserted, updated))
}

/// `(SELECT COUNT(*) FROM request_log WHERE …)`: the requests of `ip` from `first` to
/// `last` (inclusive) that break the rule.
fn count_between(ip: &str, first: DateTime<Utc>, last: DateTime<Utc>, counted: &Condition) -> Expr {
    let condition = Condition::all()
        .add(request_log::Column::IpAddress.eq(ip))
        .add(request_log::Column::Timestamp.gte(first))
        .add(request_log::Column::Timestamp.lte(last))
        .add(counted.clone());
    let count = Query::select()
        .expr(Expr::col(request_log::Column::Id).count())
        .from(request_log::Entity)
        .cond_where(condition)
        .to_owned();
    Expr::SubQuery(None, Box::new(count.into()))
}

/// `3600 s` → `1h`, `900 s` → `15m`, `90 s` → `90s`: how reasons name the window.
pub(crate) fn describe(window: Duration) -> String {
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
