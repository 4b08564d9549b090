//! `flag-suspicious-ips`: the Celery task of the Django module, as SQL aggregates.
//!
//! For the window `[window_start, window_end)` it flags
//! - addresses with more than `IPTRACK_FLAG_THRESHOLD` requests (rule `volume`);
//! - addresses that requested a sensitive path or anything below it (rule `sensitive-path`),
//!   compared in the canonical form the paths are stored in, so `/%61dmin` is `/admin`.
//!
//! Both are one GROUP BY each, never rows loaded into memory. A window of whole hours (the
//! schedule's: hourly at :00, one hour long) is read from `request_count`, the per-hour,
//! per-address counts kept exactly from each batch (folded in first on PostgreSQL:
//! [`crate::count_fold`]): a few rows per address
//! instead of every request, so a busy site's million requests an hour cost what its
//! addresses do. Any other window, and a sensitive path of more than one segment
//! (`/api/admin`), is read from `request_log` over the time index, as before; both give the
//! same flags. A flag
//! is an incident: one `suspicious_ip` row per address and rule while the activity goes
//! on (first seen, last seen, request count updated by later windows), a new row only
//! after a quiet gap of one flag window (`IPTRACK_FLAG_WINDOW_SECS`). So running a window
//! again, or overlapping windows, adds no rows.
//!
//! With `IPTRACK_AUTO_BLOCK_SECS` set, every flagged address is also blocked for that long
//! through the blocklist service (never shortening a longer block; safelisted addresses
//! are skipped), which announces the block as stored to the web instances. The block's
//! source is the rule that flagged the address (`rule:volume`, `rule:sensitive-path`).
//!
//! With `IPTRACK_WEBHOOK_URL` set, each incident the window starts is announced (a `flag`
//! notice), and each automatic block that took effect (a `ban` notice), under event keys
//! made of rule, address and window end: a re-run of the window queues nothing new, and
//! one that follows a crash between the commit and the notices queues the lost ones.

use std::time::Duration;

use anyhow::Context;
use apalis::prelude::{BoxDynError, Data};
use chrono::{DateTime, Utc};
use iptrack_core::{
    blocklist::parse_block_target,
    jobs::{FlagSuspiciousIps, Notice, NoticeKind},
    path::canonical_path,
    settings::ScheduleSettings,
};
use iptrack_entity::{request_count, request_log, suspicious_ip};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend,
    EntityTrait, QueryFilter, QuerySelect, Select, TransactionTrait,
    sea_query::{Expr, ExprTrait, LikeExpr, Query},
};

use super::request_logs::path_section;
use crate::{
    bans::{BanOutcome, BanRequest, Bans},
    context::JobContext,
    notify::Notifier,
};

pub const RULE_VOLUME: &str = "volume";
pub const RULE_SENSITIVE_PATH: &str = "sensitive-path";

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
    /// Every address flagged, by either rule, sorted, each once, with the rule that
    /// flagged it (`volume` when both did).
    pub addresses: Vec<FlaggedAddress>,
    /// The incidents this window started: new rows, and rows this very window started
    /// before (a re-run), whose notices the event key then drops as repeats.
    pub started: Vec<FlaggedAddress>,
}

/// An address one rule flagged in the window, and what the rule found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlaggedAddress {
    pub address: String,
    /// [`RULE_VOLUME`] or [`RULE_SENSITIVE_PATH`] (or a streaming rule's name).
    pub rule: String,
    /// In words, as `suspicious_ip.reason` holds it.
    pub reason: String,
    /// The requests the rule counted in the window.
    pub requests: i64,
}

/// An automatic block that took effect: the address is blocked until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub flagged: FlaggedAddress,
    pub expires_at: DateTime<Utc>,
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
    announce_flags(&ctx.notifier, &job, &flagged.started).await;
    if let Some(duration) = ctx.rules.auto_block {
        match block_flagged(&ctx.bans, &flagged.addresses, duration, &job).await {
            Ok(bans) => announce_bans(&ctx.notifier, &job, &bans).await,
            Err(error) => {
                tracing::warn!(window_end = %job.window_end, "automatic blocking failed: {error:#}");
                return Err(error.into());
            }
        }
    }
    Ok(())
}

/// The key naming one event of this job: kind, rule, address and window end. The
/// streaming rules' keys start differently, so an hourly flag never hides theirs.
fn event_key(kind: &str, job: &FlagSuspiciousIps, flagged: &FlaggedAddress) -> String {
    format!(
        "{kind}:hourly:{}:{}:{}",
        flagged.rule,
        flagged.address,
        job.window_end.timestamp_micros()
    )
}

fn notice_of(kind: NoticeKind, job: &FlagSuspiciousIps, flagged: &FlaggedAddress) -> Notice {
    Notice {
        id: uuid::Uuid::new_v4(),
        kind,
        address: flagged.address.clone(),
        rule: flagged.rule.to_owned(),
        reason: flagged.reason.clone(),
        count: u64::try_from(flagged.requests).ok(),
        window_secs: u64::try_from((job.window_end - job.window_start).num_seconds()).ok(),
        expires_at: None,
        ban_count: None,
        dry_run: false,
        at: Utc::now(),
        country_code: None,
        country: None,
        city: None,
    }
}

/// A `flag` notice for each incident the window started (failures are logged by the
/// notifier and never fail the job).
async fn announce_flags(notifier: &Notifier, job: &FlagSuspiciousIps, started: &[FlaggedAddress]) {
    for flagged in started {
        let notice = notice_of(NoticeKind::Flag, job, flagged);
        notifier
            .send(&event_key("flag", job, flagged), &notice)
            .await;
    }
}

/// A `ban` notice for each automatic block that took effect.
async fn announce_bans(notifier: &Notifier, job: &FlagSuspiciousIps, bans: &[Ban]) {
    for ban in bans {
        let notice = Notice {
            expires_at: Some(ban.expires_at),
            ..notice_of(NoticeKind::Ban, job, &ban.flagged)
        };
        notifier
            .send(&event_key("ban", job, &ban.flagged), &notice)
            .await;
    }
}

/// Bans each of `addresses` for `duration` (escalated for repeat offenders, see
/// `crate::bans`) through the blocklist service, which announces each block as stored,
/// with the flagging rule as its source. Idempotent: the window's ban of an address is
/// made once however often the window is flagged (its event key), and a block already
/// lasting as long or longer, or a manual one, is kept as it is. Addresses the policy
/// refuses (safelisted, trusted proxies) are skipped, not an error: the operator's
/// settings win over the rules. Returns the bans that took effect.
pub async fn block_flagged(
    bans: &Bans,
    addresses: &[FlaggedAddress],
    duration: Duration,
    job: &FlagSuspiciousIps,
) -> anyhow::Result<Vec<Ban>> {
    let mut made = Vec::new();
    for flagged in addresses {
        let address = &flagged.address;
        let network = parse_block_target(address)
            .with_context(|| format!("flagged address {address:?} is not an address"))?;
        let outcome = bans
            .ban(BanRequest {
                network,
                rule: flagged.rule.clone(),
                base: duration,
                reason: "automatic: flagged as suspicious".to_owned(),
                event_key: format!(
                    "{}:{address}:{}",
                    flagged.rule,
                    job.window_end.timestamp_millis()
                ),
            })
            .await
            .context("cannot block a flagged address")?;
        match outcome {
            BanOutcome::Banned { expires_at, .. } => made.push(Ban {
                flagged: flagged.clone(),
                expires_at,
            }),
            BanOutcome::AlreadyBlocked => {}
            BanOutcome::Refused(refusal) => {
                tracing::info!(address, "not blocked automatically: {refusal}");
            }
        }
    }
    if !made.is_empty() {
        tracing::info!(
            blocked = made.len(),
            "flagged addresses blocked automatically"
        );
    }
    Ok(made)
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

/// Requests to one of `prefixes` or a path below one: the sensitive-path rule.
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

/// [`volume_query`] over `request_count`, for a window of whole hours.
pub fn counted_volume_query(
    job: &FlagSuspiciousIps,
    threshold: i64,
) -> Select<request_count::Entity> {
    request_count::Entity::find()
        .select_only()
        .column(request_count::Column::IpAddress)
        // PostgreSQL sums bigints as numeric.
        .column_as(Expr::cust("CAST(SUM(requests) AS BIGINT)"), "total")
        .column_as(request_count::Column::FirstSeen.min(), "first_seen")
        .column_as(request_count::Column::LastSeen.max(), "last_seen")
        .filter(in_counted_window(job))
        .group_by(request_count::Column::IpAddress)
        .having(
            Expr::col(request_count::Column::Requests)
                .sum()
                .gt(threshold),
        )
}

/// [`sensitive_query`] over `request_count`, for a window of whole hours and prefixes of
/// one segment each (`sections`, see [`counted_sections`]).
pub fn counted_sensitive_query(
    job: &FlagSuspiciousIps,
    sections: &[String],
) -> Select<request_count::Entity> {
    request_count::Entity::find()
        .select_only()
        .column(request_count::Column::IpAddress)
        .column_as(Expr::cust("CAST(SUM(requests) AS BIGINT)"), "total")
        .column_as(request_count::Column::MinPath.min(), "example")
        .column_as(request_count::Column::FirstSeen.min(), "first_seen")
        .column_as(request_count::Column::LastSeen.max(), "last_seen")
        .filter(in_counted_window(job))
        .filter(request_count::Column::Section.is_in(sections.iter().map(String::as_str)))
        .group_by(request_count::Column::IpAddress)
}

/// Whether `request_count` holds exactly the window: it starts and ends on whole hours.
pub fn counted(job: &FlagSuspiciousIps) -> bool {
    let whole_hour = |at: DateTime<Utc>| {
        at.timestamp().rem_euclid(3600) == 0 && at.timestamp_subsec_nanos() == 0
    };
    job.window_start < job.window_end && whole_hour(job.window_start) && whole_hour(job.window_end)
}

/// The sensitive prefixes as `request_count` sections, when every one is a single
/// segment (`/admin`, not `/api/admin`): then a path is sensitive exactly when its section
/// is one of them. `None`: the rule must read the rows.
pub fn counted_sections(prefixes: &[String]) -> Option<Vec<String>> {
    prefixes
        .iter()
        .map(|prefix| {
            let canonical = canonical_path(prefix).into_owned();
            (canonical.starts_with('/') && path_section(&canonical) == canonical)
                .then_some(canonical)
        })
        .collect()
}

fn in_counted_window(job: &FlagSuspiciousIps) -> Condition {
    // One hour (the schedule's window) as an equality: the primary key then hands the
    // rows over in address order, and both databases group them without sorting or
    // hashing (a range, even of one hour, makes them sort 80,000 addresses first).
    if job.window_end - job.window_start == chrono::Duration::hours(1) {
        return Condition::all().add(request_count::Column::HourStart.eq(job.window_start));
    }
    Condition::all()
        .add(request_count::Column::HourStart.gte(job.window_start))
        .add(request_count::Column::HourStart.lt(job.window_end))
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

impl Finding {
    fn flagged(&self) -> FlaggedAddress {
        FlaggedAddress {
            address: self.ip.clone(),
            rule: self.rule.clone(),
            reason: self.reason.clone(),
            requests: self.requests,
        }
    }
}

/// Where [`flag_reading`] reads the window's requests from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// `request_count` where it holds the window exactly, else `request_log` (what the
    /// job does).
    Counts,
    /// `request_log` always: the fallback, kept callable so that tests and the benchmark
    /// can compare the two on the same data.
    Rows,
}

/// Flags the window `job` names according to `rules`: each finding extends the open
/// incident of its address and rule, or starts one (see [`record`]).
pub async fn flag(
    db: &DatabaseConnection,
    rules: &ScheduleSettings,
    job: &FlagSuspiciousIps,
) -> anyhow::Result<Flagged> {
    flag_reading(db, rules, job, Reading::Counts).await
}

/// [`flag`], reading the requests as `reading` says.
pub async fn flag_reading(
    db: &DatabaseConnection,
    rules: &ScheduleSettings,
    job: &FlagSuspiciousIps,
    reading: Reading,
) -> anyhow::Result<Flagged> {
    let window = describe(
        (job.window_end - job.window_start)
            .to_std()
            .unwrap_or_default(),
    );
    let threshold = i64::try_from(rules.flag_threshold).unwrap_or(i64::MAX);
    let counts = reading == Reading::Counts && counted(job);
    if counts {
        // Batches committed before now, whose counts may still be pending, count too.
        crate::count_fold::fold_all(db)
            .await
            .context("cannot fold pending counts")?;
    }
    type Seen = (String, i64, DateTime<Utc>, DateTime<Utc>);
    let heavy: Vec<Seen> = if counts {
        counted_volume_query(job, threshold)
            .into_tuple()
            .all(db)
            .await
    } else {
        volume_query(job, threshold).into_tuple().all(db).await
    }
    .context("volume query failed")?;
    type SeenAt = (String, i64, String, DateTime<Utc>, DateTime<Utc>);
    let sections = counts
        .then(|| counted_sections(&rules.sensitive_paths))
        .flatten();
    let curious: Vec<SeenAt> = match &sections {
        Some(sections) => {
            counted_sensitive_query(job, sections)
                .into_tuple()
                .all(db)
                .await
        }
        None => {
            sensitive_query(job, &rules.sensitive_paths)
                .into_tuple()
                .all(db)
                .await
        }
    }
    .context("sensitive-path query failed")?;

    let (volume_found, sensitive_found) = (heavy.len(), curious.len());
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
    // Volume first, and a stable sort: an address both rules flagged keeps `volume`.
    let mut addresses: Vec<FlaggedAddress> = volume
        .iter()
        .chain(&sensitive)
        .map(Finding::flagged)
        .collect();
    addresses.sort_by(|a, b| a.address.cmp(&b.address));
    addresses.dedup_by(|later, earlier| later.address == earlier.address);

    let gap = chrono::Duration::from_std(rules.flag_window).context("flag window")?;
    let txn = db.begin().await.context("cannot start a transaction")?;
    lock_flags(&txn)
        .await
        .context("cannot lock suspicious_ip")?;
    let window = (job.window_start, job.window_end);
    let volume_recorded = record(&txn, window, gap, &volume, &Condition::all())
        .await
        .context("cannot store volume flags")?;
    let sensitive_recorded = record(
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
        volume: volume_found,
        sensitive: sensitive_found,
        inserted: volume_recorded.inserted + sensitive_recorded.inserted,
        updated: volume_recorded.updated + sensitive_recorded.updated,
        addresses,
        started: [volume_recorded.started, sensitive_recorded.started].concat(),
    })
}

/// What [`record`] did with one rule's findings.
pub(crate) struct Recorded {
    pub inserted: u64,
    pub updated: u64,
    /// See [`Flagged::started`].
    pub started: Vec<FlaggedAddress>,
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

/// Stores the findings of one rule seen in `window`; returns the incidents started and
/// extended. The streaming rules store theirs here too (`crate::detect`).
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
) -> Result<Recorded, sea_orm::DbErr> {
    let now = Utc::now();
    let (mut inserted, mut updated, mut started) = (0, 0, Vec::new());
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
                started.push(finding.flagged());
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
                // This window was seen before: nothing new. If it started the incident,
                // its notice may have been lost to a crash after the commit: again (the
                // notice's event key drops it if it was queued).
                if (incident.window_start, incident.window_end) == (window_start, window_end) {
                    started.push(finding.flagged());
                }
                continue;
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
    Ok(Recorded {
        inserted,
        updated,
        started,
    })
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
