//! Starting the scheduler; used by `iptrack-scheduler`, `iptrack up` and tests.

use std::time::Duration;

use anyhow::Context;
use apalis::prelude::{BoxDynError, Data, WorkerBuilder};
use apalis_cron::{CronScheduler, Tick};
use chrono::{DateTime, TimeZone, Utc};
use cron::Schedule;
use iptrack_core::{
    queue, redis_status,
    settings::{FeedSchedule, Settings},
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{enqueue::Enqueuer, windows::feed_slot};

/// The scheduler's running cron loops.
#[derive(Debug)]
pub struct RunningScheduler {
    tasks: JoinSet<()>,
}

impl RunningScheduler {
    /// Waits until the cron loops have stopped (after the shutdown token is cancelled).
    pub async fn wait(self) {
        iptrack_core::shutdown::join_all(self.tasks, "scheduler").await;
    }
}

/// When `request-summaries` is enqueued: every 5 minutes, so a closed hour is summarized
/// a few minutes after it ends, and an hour that late rows made stale soon after they came.
const SUMMARIES_SCHEDULE: &str = "0 */5 * * * *";

/// What each tick handler needs.
#[derive(Debug, Clone)]
struct TickContext {
    enqueuer: Enqueuer,
    flag_schedule: Schedule,
}

/// Enqueues what is due and starts the cron loops; they run until `shutdown`.
pub async fn start(
    settings: &Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningScheduler> {
    let flag_schedule = settings.schedules.flag_schedule.clone();
    let purge_schedule = settings.schedules.purge_schedule.clone();
    let summaries_schedule: Schedule = SUMMARIES_SCHEDULE
        .parse()
        .context("the request-summaries schedule")?;
    let conn = queue::connect_to(&settings.redis).context("REDIS_URL")?;
    let mut enqueuer = Enqueuer::new(&settings.schedules, &settings.redis.prefix, conn);

    // Windows that ended while no scheduler ran.
    match enqueuer.enqueue_due(&flag_schedule, Utc::now(), None).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            windows = n,
            "caught up on missed flag-suspicious-ips windows"
        ),
        Err(error) => {
            redis_status::report_queue("scheduler catch-up, retried at the next tick", &error)
        }
    }

    let mut tasks = JoinSet::new();
    for feed in &settings.feeds.feeds {
        tasks.spawn(refresh_feed(
            feed.clone(),
            enqueuer.clone(),
            shutdown.clone(),
        ));
    }
    let context = TickContext {
        enqueuer,
        flag_schedule: flag_schedule.clone(),
    };
    tasks.spawn(run_cron(
        "iptrack-scheduler-flag-suspicious-ips",
        flag_schedule,
        context.clone(),
        shutdown.clone(),
        on_flag_tick,
    ));
    tasks.spawn(run_cron(
        "iptrack-scheduler-purge-logs",
        purge_schedule,
        context.clone(),
        shutdown.clone(),
        on_purge_tick,
    ));
    tasks.spawn(run_cron(
        "iptrack-scheduler-request-summaries",
        summaries_schedule,
        context,
        shutdown,
        on_summaries_tick,
    ));
    tracing::info!(
        flag_schedule = %settings.schedules.flag_schedule,
        purge_schedule = %settings.schedules.purge_schedule,
        blocklist_feeds = settings.feeds.feeds.len(),
        "iptrack-scheduler started"
    );
    Ok(RunningScheduler { tasks })
}

/// Runs an apalis-cron worker until `shutdown`; should it end early, starts it again.
async fn run_cron<F, Fut>(
    name: &'static str,
    schedule: Schedule,
    context: TickContext,
    shutdown: CancellationToken,
    handler: F,
) where
    F: Fn(Tick, Data<TickContext>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxDynError>> + Send + 'static,
{
    while !shutdown.is_cancelled() {
        let stop = shutdown.clone();
        let result = WorkerBuilder::new(name)
            .backend(CronScheduler::new(schedule.clone()))
            .data(context.clone())
            .build(handler.clone())
            .run_until(async move {
                stop.cancelled().await;
                Ok::<(), std::io::Error>(())
            })
            .await;
        if shutdown.is_cancelled() {
            return;
        }
        tracing::warn!(cron = name, ?result, "cron loop ended; restarting in 1 s");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// How soon a refresh whose enqueue failed (Redis away) is tried again, within its slot.
const FEED_RETRY: Duration = Duration::from_secs(5);

/// Enqueues a refresh of `feed` at start and at the start of each of its slots, once per
/// slot cluster-wide (`Enqueuer::feed_refresh`). An interval, not a cron expression:
/// `@90m` has no cron spelling. A scheduler (re)started within a slot enqueues that slot's
/// refresh unless another did, so a feed is loaded soon after a first deployment.
async fn refresh_feed(feed: FeedSchedule, mut enqueuer: Enqueuer, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let (slot, next_slot) = feed_slot(Utc::now(), feed.interval);
        let wait = match enqueuer.feed_refresh(&feed, slot).await {
            Ok(_) => {
                redis_status::answered();
                // Just past the next slot's start, so the clock has reached it.
                let millis = next_slot.saturating_mul(1000) - Utc::now().timestamp_millis();
                Duration::from_millis(u64::try_from(millis).unwrap_or(0) + 10)
                    .min(feed.interval + Duration::from_millis(10))
            }
            Err(error) => {
                redis_status::report_queue("scheduler, blocklist feed refresh retried", &error);
                FEED_RETRY.min(feed.interval)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

fn tick_time(tick: &Tick) -> DateTime<Utc> {
    i64::try_from(tick.get_timestamp())
        .ok()
        .and_then(|secs| Utc.timestamp_opt(secs, 0).single())
        .unwrap_or_else(Utc::now)
}

/// The window ending at this tick, plus any earlier one a failed tick left behind.
async fn on_flag_tick(tick: Tick, context: Data<TickContext>) -> Result<(), BoxDynError> {
    let now = tick_time(&tick);
    let mut enqueuer = context.enqueuer.clone();
    enqueuer
        .enqueue_due(&context.flag_schedule, now, Some(now))
        .await
        .map_err(|error| {
            redis_status::report_queue(
                "scheduler, flag-suspicious-ips caught up at the next tick",
                &error,
            );
            error.into()
        })
        .map(|_| redis_status::answered())
}

async fn on_purge_tick(tick: Tick, context: Data<TickContext>) -> Result<(), BoxDynError> {
    let mut enqueuer = context.enqueuer.clone();
    enqueuer
        .purge(tick_time(&tick))
        .await
        .map_err(|error| {
            redis_status::report_queue("scheduler, purge-logs", &error);
            error.into()
        })
        .map(|_| redis_status::answered())
}

async fn on_summaries_tick(tick: Tick, context: Data<TickContext>) -> Result<(), BoxDynError> {
    let mut enqueuer = context.enqueuer.clone();
    enqueuer
        .summarize(tick_time(&tick))
        .await
        .map_err(|error| {
            redis_status::report_queue("scheduler, request-summaries", &error);
            error.into()
        })
        .map(|_| redis_status::answered())
}
