//! Streaming detection (`IPTRACK_DETECT_RULES`): a step of the `request-logs` job, run
//! after each batch is written, never on the request path.
//!
//! 1. **Count.** The batch's requests that match a rule are grouped by (rule, address) and
//!    counted in Redis by one Lua script (`count.lua`), shared by every worker: a sorted
//!    set `{prefix}:detect:count:{rule}:{address}` per group, member `{batch id}:{index}`
//!    (so a batch delivered again adds nothing), score the request's time in µs. The script trims
//!    what left the window (by Redis's clock) and sets the TTL to the window; a group holds
//!    fewer than `count` members at rest (memory per address is bounded by the rule). Scripts run one at a
//!    time, so two workers counting one address's batches at once see one crossing.
//! 2. **Cross.** The call that brings a group to `count` empties it and leaves a mark,
//!    `{prefix}:detect:crossed:{rule}:{address}` = `{time of the last request, µs}:{batch id}`,
//!    for one window. Members at or before the mark never count again; a re-delivery of
//!    the batch that crossed is told so and acts again on the same crossing, idempotently.
//! 3. **Act** ([`act`]): ban (`crate::bans`, escalated; not for `dry-run` rules), flag (a
//!    `suspicious_ip` incident, the hourly job's `record`), queue notices; each keyed by
//!    the crossing `{rule}:{address}:{µs}`, so it happens once however often it runs.
//!
//! Redis away: the batch is stored anyway, detection skips it (logged through the
//! Redis-away report). A database failure while acting fails the job, so apalis runs it
//! again and the re-delivery acts on the remembered crossing.

use std::{collections::BTreeMap, net::IpAddr, sync::LazyLock};

use anyhow::Context;
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use iptrack_core::{
    jobs::{Notice, NoticeKind, RequestLogBatch},
    settings::{DetectRule, PathPattern, StatusMatch},
};
use iptrack_entity::request_log;
use redis::{Script, aio::ConnectionManager};
use sea_orm::{ColumnTrait, Condition, TransactionTrait};
use uuid::Uuid;

use crate::{
    bans::{BanOutcome, BanRequest},
    context::JobContext,
    jobs::flag_suspicious_ips::{Finding, describe, lock_flags, record, sensitive_paths},
};

static COUNT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("count.lua")));

/// Groups per script call: a batch touching more (rule, address) pairs takes several
/// calls, so no single script holds Redis for long.
const GROUPS_PER_CALL: usize = 256;

/// A rule that an address has just driven to its threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossing {
    /// Index into `IPTRACK_DETECT_RULES`.
    pub rule: usize,
    pub ip: IpAddr,
    /// Requests counted in the window: at least the rule's `count` (more when one batch
    /// brought several at once).
    pub count: u64,
    pub first_seen: DateTime<Utc>,
    /// The request that crossed; names the crossing.
    pub last_seen: DateTime<Utc>,
}

/// The counter and crossing-mark keys of one rule and address.
pub fn keys(prefix: &str, rule: &str, ip: IpAddr) -> (String, String) {
    (
        format!("{prefix}:detect:count:{rule}:{ip}"),
        format!("{prefix}:detect:crossed:{rule}:{ip}"),
    )
}

/// Runs detection on a written batch (see the module documentation). Errors are database
/// failures while acting: the job fails and is retried.
pub async fn after_write(ctx: &JobContext, batch: &RequestLogBatch) -> anyhow::Result<()> {
    if ctx.detect.rules.is_empty() {
        return Ok(());
    }
    let crossings = match count(&ctx.redis, &ctx.redis_prefix, &ctx.detect.rules, batch).await {
        Ok(crossings) => crossings,
        Err(error) => {
            // The rows are stored; the requests of this batch simply go uncounted.
            iptrack_core::redis_status::report("streaming detection", &error);
            return Ok(());
        }
    };
    for crossing in &crossings {
        act(ctx, crossing).await?;
    }
    Ok(())
}

/// Counts the batch's matching requests; returns the crossings it made (or re-made, for a
/// batch delivered again).
pub async fn count(
    redis: &ConnectionManager,
    prefix: &str,
    rules: &[DetectRule],
    batch: &RequestLogBatch,
) -> Result<Vec<Crossing>, redis::RedisError> {
    let mut groups: BTreeMap<(usize, IpAddr), Vec<(i64, usize)>> = BTreeMap::new();
    for (index, event) in batch.events.iter().enumerate() {
        for (r, rule) in rules.iter().enumerate() {
            if rule.matches(&event.method, &event.path, event.status) {
                groups
                    .entry((r, event.ip))
                    .or_default()
                    .push((event.timestamp.timestamp_micros(), index));
            }
        }
    }
    let groups: Vec<_> = groups.into_iter().collect();
    let batch_id = batch.batch_id.to_string();
    let mut crossings = Vec::new();
    for chunk in groups.chunks(GROUPS_PER_CALL) {
        let mut invocation = COUNT.prepare_invoke();
        invocation.arg(&batch_id);
        for ((r, ip), members) in chunk {
            let rule = &rules[*r];
            let (counter, mark) = keys(prefix, &rule.name, *ip);
            invocation.key(counter).key(mark);
            invocation
                .arg(u64::try_from(rule.window.as_micros()).unwrap_or(u64::MAX))
                .arg(rule.count)
                .arg(members.len());
            for (us, index) in members {
                invocation.arg(*us).arg(format!("{batch_id}:{index}"));
            }
        }
        let answers: Vec<(i64, i64, i64, i64)> =
            invocation.invoke_async(&mut redis.clone()).await?;
        for (((r, ip), _), (state, counted, first, last)) in chunk.iter().zip(answers) {
            if state == 0 {
                continue;
            }
            let time = |us: i64| DateTime::<Utc>::from_timestamp_micros(us).unwrap_or_default();
            crossings.push(Crossing {
                rule: *r,
                ip: *ip,
                count: u64::try_from(counted).unwrap_or(0),
                first_seen: time(first),
                last_seen: time(last),
            });
        }
    }
    Ok(crossings)
}

/// Bans (unless the rule is a dry run or has no `ban=`), flags, and queues the notices of
/// one crossing. Each step is idempotent for the crossing.
pub async fn act(ctx: &JobContext, crossing: &Crossing) -> anyhow::Result<()> {
    let rule = &ctx.detect.rules[crossing.rule];
    let address = crossing.ip.to_string();
    let crossing_key = format!(
        "{}:{address}:{}",
        rule.name,
        crossing.last_seen.timestamp_micros()
    );
    let reason = format!(
        "{} {} in {} (threshold {})",
        crossing.count,
        rule.describe(),
        describe(rule.window),
        rule.count
    );
    let window_secs = Some(rule.window.as_secs());
    let notice = |kind| Notice {
        id: Uuid::new_v4(),
        kind,
        address: address.clone(),
        rule: rule.name.clone(),
        reason: reason.clone(),
        count: Some(crossing.count),
        window_secs,
        expires_at: None,
        ban_count: None,
        dry_run: rule.dry_run,
        at: Utc::now(),
        // Filled in from the geolocation cache when the notice is delivered.
        country_code: None,
        country: None,
        city: None,
    };

    // The ban first: it is what stops the address, and what detection latency measures.
    if let Some(base) = rule.ban.filter(|_| !rule.dry_run) {
        let outcome = ctx
            .bans
            .ban(BanRequest {
                network: IpNet::from(crossing.ip),
                rule: rule.name.clone(),
                base,
                reason: format!("automatic: {reason}"),
                event_key: crossing_key.clone(),
            })
            .await
            .with_context(|| format!("rule {}: cannot ban {address}", rule.name))?;
        match outcome {
            BanOutcome::Banned {
                expires_at,
                duration,
                bans,
                new,
            } => {
                tracing::info!(
                    rule = %rule.name, address, duration_secs = duration.as_secs(), bans, new,
                    "banned by a detection rule"
                );
                let ban = Notice {
                    expires_at: Some(expires_at),
                    ban_count: u32::try_from(bans).ok(),
                    ..notice(NoticeKind::Ban)
                };
                ctx.notifier
                    .send(&format!("ban:{crossing_key}"), &ban)
                    .await;
            }
            BanOutcome::AlreadyBlocked => {
                tracing::info!(rule = %rule.name, address, "not banned: a longer or manual block is in force");
            }
            BanOutcome::Refused(refusal) => {
                tracing::info!(rule = %rule.name, address, "not banned: {refusal}");
            }
        }
    }

    let window = chrono::Duration::from_std(rule.window).context("rule window")?;
    let finding = Finding {
        ip: address.clone(),
        rule: rule.name.clone(),
        reason: reason.clone(),
        requests: i64::try_from(crossing.count).unwrap_or(i64::MAX),
        first_seen: crossing.first_seen,
        last_seen: crossing.last_seen,
    };
    let txn = ctx.db.begin().await.context("cannot start a transaction")?;
    lock_flags(&txn)
        .await
        .context("cannot lock suspicious_ip")?;
    // The incident goes on while the address keeps crossing within one window of its
    // last; after a quiet window a new one starts.
    let inserted = record(
        &txn,
        (crossing.last_seen - window, crossing.last_seen),
        window,
        std::slice::from_ref(&finding),
        &counted_by(rule),
    )
    .await
    .with_context(|| format!("rule {}: cannot flag {address}", rule.name))?
    .inserted;
    txn.commit().await.context("cannot store the flag")?;
    if inserted > 0 {
        tracing::info!(rule = %rule.name, address, dry_run = rule.dry_run, "flagged by a detection rule");
        ctx.notifier
            .send(&format!("flag:{crossing_key}"), &notice(NoticeKind::Flag))
            .await;
    }
    Ok(())
}

/// The `request_log` rows `rule` counts, for an incident's request count.
fn counted_by(rule: &DetectRule) -> Condition {
    let mut condition = Condition::all();
    if !rule.methods.is_empty() {
        condition = condition.add(request_log::Column::Method.is_in(rule.methods.clone()));
    }
    condition = condition.add(match &rule.path {
        PathPattern::Exact(path) => {
            Condition::all().add(request_log::Column::Path.eq(path.clone()))
        }
        PathPattern::Prefix(prefix) => sensitive_paths(std::slice::from_ref(prefix)),
    });
    if !rule.statuses.is_empty() {
        let mut statuses = Condition::any();
        for status in &rule.statuses {
            statuses = statuses.add(match *status {
                StatusMatch::Code(code) => request_log::Column::Status.eq(i32::from(code)),
                StatusMatch::Class(class) => {
                    let low = i32::from(class) * 100;
                    request_log::Column::Status.between(low, low + 99)
                }
            });
        }
        condition = condition.add(statuses);
    }
    condition
}
