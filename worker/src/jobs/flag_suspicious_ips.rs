//! `flag-suspicious-ips`: the Celery task of the Django module, as SQL aggregates.
//!
//! For the window `[window_start, window_end)` it flags
//! - addresses with more than `IPTRACK_FLAG_THRESHOLD` requests (rule `volume`);
//! - addresses that requested a sensitive path or anything below it (rule `sensitive-path`).
//!
//! Both are one GROUP BY over the time index each, never rows loaded into memory. The rows
//! go to `suspicious_ip` with ON CONFLICT DO NOTHING on (address, rule, window start), so
//! running a window again adds nothing.

use std::time::Duration;

use anyhow::Context;
use apalis::prelude::{BoxDynError, Data};
use chrono::Utc;
use iptrack_core::{jobs::FlagSuspiciousIps, settings::ScheduleSettings};
use iptrack_entity::{request_log, suspicious_ip};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect,
    TryInsertResult,
    sea_query::{Expr, ExprTrait, LikeExpr},
};

use crate::context::JobContext;

pub const RULE_VOLUME: &str = "volume";
pub const RULE_SENSITIVE_PATH: &str = "sensitive-path";

/// Flags inserted per statement.
const ROWS_PER_STATEMENT: usize = 1_000;

/// What a run found and stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flagged {
    /// Addresses over the request threshold.
    pub volume: usize,
    /// Addresses that requested a sensitive path.
    pub sensitive: usize,
    /// New `suspicious_ip` rows (0 when the window was flagged before).
    pub inserted: u64,
}

/// The apalis handler.
pub async fn handle(job: FlagSuspiciousIps, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    match flag(&ctx.db, &ctx.rules, &job).await {
        Ok(found) => {
            tracing::info!(
                window_start = %job.window_start,
                window_end = %job.window_end,
                volume = found.volume,
                sensitive = found.sensitive,
                inserted = found.inserted,
                "suspicious addresses flagged"
            );
            Ok(())
        }
        Err(error) => {
            tracing::warn!(window_end = %job.window_end, "flagging failed: {error:#}");
            Err(error.into())
        }
    }
}

/// Flags the window `job` names according to `rules`.
pub async fn flag(
    db: &DatabaseConnection,
    rules: &ScheduleSettings,
    job: &FlagSuspiciousIps,
) -> anyhow::Result<Flagged> {
    let in_window = Condition::all()
        .add(request_log::Column::Timestamp.gte(job.window_start))
        .add(request_log::Column::Timestamp.lt(job.window_end));
    let window = describe(
        (job.window_end - job.window_start)
            .to_std()
            .unwrap_or_default(),
    );
    let threshold = i64::try_from(rules.flag_threshold).unwrap_or(i64::MAX);

    let heavy: Vec<(String, i64)> = request_log::Entity::find()
        .select_only()
        .column(request_log::Column::IpAddress)
        .column_as(request_log::Column::Id.count(), "requests")
        .filter(in_window.clone())
        .group_by(request_log::Column::IpAddress)
        .having(Expr::col(request_log::Column::Id).count().gt(threshold))
        .into_tuple()
        .all(db)
        .await
        .context("volume query failed")?;

    let mut sensitive_paths = Condition::any();
    for prefix in &rules.sensitive_paths {
        sensitive_paths = sensitive_paths
            .add(request_log::Column::Path.eq(prefix.as_str()))
            .add(
                Expr::col(request_log::Column::Path)
                    .like(LikeExpr::new(format!("{}/%", escape_like(prefix))).escape('\\')),
            );
    }
    let curious: Vec<(String, i64, String)> = request_log::Entity::find()
        .select_only()
        .column(request_log::Column::IpAddress)
        .column_as(request_log::Column::Id.count(), "requests")
        .column_as(request_log::Column::Path.min(), "example")
        .filter(in_window)
        .filter(sensitive_paths)
        .group_by(request_log::Column::IpAddress)
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
    let found = Flagged {
        volume: heavy.len(),
        sensitive: curious.len(),
        inserted: 0,
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
