//! Enqueueing the scheduled jobs, once per window across every scheduler.

use std::{sync::LazyLock, time::Duration};

use chrono::{DateTime, TimeZone, Utc};
use cron::Schedule;
use iptrack_core::{
    jobs::{
        BLOCKLIST_FEEDS_QUEUE, FLAG_SUSPICIOUS_IPS_QUEUE, FlagSuspiciousIps, PURGE_LOGS_QUEUE,
        PurgeLogs, REQUEST_SUMMARIES_QUEUE, RefreshBlocklistFeed, SummarizeRequests,
    },
    queue::{self, JobQueue, QueueError},
    settings::{FeedSchedule, ScheduleSettings},
};
use redis::{AsyncCommands, Script, aio::ConnectionManager};

use crate::windows::missed_ticks;

/// How long a window's claim is remembered. Longer than any catch-up reaches back
/// (24 hourly windows by default), so no window is enqueued twice.
const CLAIM_TTL: Duration = Duration::from_secs(7 * 86_400);

/// How long a `request-summaries` tick's claim is remembered: longer than the ticks'
/// spacing and any clock skew between schedulers, short enough not to pile up keys.
const SUMMARY_CLAIM_TTL: Duration = Duration::from_secs(3_600);

/// Sets a key to a number only if that is greater than what it holds.
static SET_IF_GREATER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"local current = tonumber(redis.call("get", KEYS[1]) or "-1")
           if tonumber(ARGV[1]) > current then redis.call("set", KEYS[1], ARGV[1]) end
           return 1"#,
    )
});

/// Pushes the scheduler's jobs.
#[derive(Debug, Clone)]
pub struct Enqueuer {
    conn: ConnectionManager,
    flag: JobQueue<FlagSuspiciousIps>,
    purge: JobQueue<PurgeLogs>,
    feeds: JobQueue<RefreshBlocklistFeed>,
    summaries: JobQueue<SummarizeRequests>,
    rules: ScheduleSettings,
    /// Redis key holding the end (unix seconds) of the latest window enqueued by anyone.
    last_window_key: String,
}

impl Enqueuer {
    /// Pushes onto the queues under `redis_prefix` (`IPTRACK_REDIS_PREFIX`), by `rules`.
    pub fn new(rules: &ScheduleSettings, redis_prefix: &str, conn: ConnectionManager) -> Self {
        let flag_config = queue::producer_config(redis_prefix, FLAG_SUSPICIOUS_IPS_QUEUE);
        let last_window_key = format!("{}:last-window-end", flag_config.queue.as_ref());
        Self {
            flag: JobQueue::new(conn.clone(), flag_config),
            purge: JobQueue::new(
                conn.clone(),
                queue::producer_config(redis_prefix, PURGE_LOGS_QUEUE),
            ),
            feeds: JobQueue::new(
                conn.clone(),
                queue::producer_config(redis_prefix, BLOCKLIST_FEEDS_QUEUE),
            ),
            summaries: JobQueue::new(
                conn.clone(),
                queue::producer_config(redis_prefix, REQUEST_SUMMARIES_QUEUE),
            ),
            conn,
            rules: rules.clone(),
            last_window_key,
        }
    }

    /// Enqueues `flag-suspicious-ips` for the window ending at `window_end` unless some
    /// scheduler already did. Returns whether this call enqueued it.
    pub async fn flag_window(&mut self, window_end: DateTime<Utc>) -> Result<bool, QueueError> {
        let job = match FlagSuspiciousIps::ending_at(window_end, self.rules.flag_window) {
            Ok(job) => job,
            // Neither enqueued nor claimed: an empty window would flag nothing and count
            // as done (see `FlagSuspiciousIps::ending_at`).
            Err(error) => {
                tracing::error!("{error}; flag-suspicious-ips not enqueued");
                return Ok(false);
            }
        };
        let claim = window_end.timestamp().to_string();
        let pushed = self.flag.push_once(&claim, CLAIM_TTL, &job).await?;
        let _: i64 = SET_IF_GREATER
            .key(&self.last_window_key)
            .arg(window_end.timestamp())
            .invoke_async(&mut self.conn)
            .await?;
        if pushed {
            tracing::info!(%window_end, "flag-suspicious-ips enqueued");
        }
        Ok(pushed)
    }

    /// Enqueues every window of `schedule` that ended after the last one enqueued and at or
    /// before `now` (at most the configured number, the most recent). When no window was
    /// ever enqueued, `first` (if given) is the only one due. Returns how many this call
    /// enqueued.
    pub async fn enqueue_due(
        &mut self,
        schedule: &Schedule,
        now: DateTime<Utc>,
        first: Option<DateTime<Utc>>,
    ) -> Result<usize, QueueError> {
        let last: Option<i64> = self.conn.get(&self.last_window_key).await?;
        let due = match last.and_then(|secs| Utc.timestamp_opt(secs, 0).single()) {
            Some(last) => missed_ticks(schedule, last, now, self.rules.flag_catch_up_windows),
            None => first.into_iter().collect(),
        };
        let mut pushed = 0;
        for window_end in due {
            if self.flag_window(window_end).await? {
                pushed += 1;
            }
        }
        Ok(pushed)
    }

    /// Enqueues a refresh of `feed` for its refresh slot `slot` (`windows::feed_slot`)
    /// unless some scheduler already did. The claim names the interval too, so a changed
    /// interval starts its own slots. Returns whether this call enqueued it.
    pub async fn feed_refresh(
        &mut self,
        feed: &FeedSchedule,
        slot: i64,
    ) -> Result<bool, QueueError> {
        let claim = format!("{}:{}:{slot}", feed.name, feed.interval.as_secs());
        // The slot's length, plus a minute for clocks that disagree a little: a scheduler
        // whose clock lags must not find the slot unclaimed after it ended elsewhere.
        let ttl = feed.interval + Duration::from_secs(60);
        let job = RefreshBlocklistFeed {
            source: feed.name.to_string(),
            url: feed.url.expose().to_owned(),
        };
        let pushed = self.feeds.push_once(&claim, ttl, &job).await?;
        if pushed {
            tracing::info!(feed = %feed.name, url = %feed.url.redacted(), "blocklist feed refresh enqueued");
        }
        Ok(pushed)
    }

    /// Enqueues `purge-logs` for the purge tick at `tick` unless some scheduler already did.
    pub async fn purge(&mut self, tick: DateTime<Utc>) -> Result<bool, QueueError> {
        let retention = chrono::Duration::from_std(self.rules.log_retention).unwrap_or_default();
        let job = PurgeLogs {
            older_than: tick - retention,
        };
        let pushed = self
            .purge
            .push_once(&tick.timestamp().to_string(), CLAIM_TTL, &job)
            .await?;
        if pushed {
            tracing::info!(older_than = %job.older_than, "purge-logs enqueued");
        }
        Ok(pushed)
    }

    /// Enqueues `request-summaries` for the tick at `tick` unless some scheduler already
    /// did (the claim outlives the ticks' spacing, so one job per tick cluster-wide).
    pub async fn summarize(&mut self, tick: DateTime<Utc>) -> Result<bool, QueueError> {
        let job = SummarizeRequests { now: tick };
        let pushed = self
            .summaries
            .push_once(&tick.timestamp().to_string(), SUMMARY_CLAIM_TTL, &job)
            .await?;
        if pushed {
            tracing::debug!(now = %tick, "request-summaries enqueued");
        }
        Ok(pushed)
    }
}
