//! Starting the workers of every queue; used by `iptrack-worker`, `iptrack up` and tests.

use std::sync::Arc;

use anyhow::Context;
use apalis::prelude::{BackendExt, WorkerBuilder, WorkerBuilderExt};
use apalis_redis::RedisStorage;
use iptrack_core::{
    blocklist::service::BlocklistService,
    db,
    jobs::{
        ALL_QUEUES, BLOCKLIST_FEEDS_QUEUE, FLAG_SUSPICIOUS_IPS_QUEUE, FlagSuspiciousIps,
        GEOLOCATE_QUEUE, GeolocateAddresses, NOTIFICATIONS_QUEUE, Notice, PURGE_LOGS_QUEUE,
        PurgeLogs, REQUEST_LOGS_QUEUE, REQUEST_SUMMARIES_QUEUE, RefreshBlocklistFeed,
        RequestLogBatch, SummarizeRequests,
    },
    queue,
    settings::Settings,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{
    bans::Bans,
    context::JobContext,
    count_fold,
    feeds::FeedFetcher,
    geo::Geo,
    jobs::{
        deliver_notice, flag_suspicious_ips, geolocate, purge_logs, refresh_feed, request_logs,
        request_summaries,
    },
    maintenance,
    notify::Notifier,
    poll::TickStrategy,
    supervisor::supervise,
};

/// The running workers of one process.
#[derive(Debug)]
pub struct RunningWorkers {
    /// How many apalis workers are supervised (all queues).
    pub supervised: usize,
    tasks: JoinSet<()>,
}

impl RunningWorkers {
    /// Waits until every worker has stopped (after the shutdown token is cancelled, each
    /// finishes the job it is running first).
    pub async fn wait(self) {
        iptrack_core::shutdown::join_all(self.tasks, "worker").await;
    }
}

/// Starts `$count` supervised apalis workers for `$queue`, each running `$handler` on
/// `$job` payloads. A macro rather than a function: apalis's builder bounds for a generic
/// handler run to a dozen lines of where-clauses.
macro_rules! spawn_queue {
    ($tasks:expr, $env:expr, $queue:expr, $job:ty, $handler:path, $count:expr) => {
        let config =
            queue::queue_config(&$env.settings.redis.prefix, &$env.settings.worker, $queue);
        for index in 0..$count {
            let (conn, config, context) = ($env.conn.clone(), config.clone(), $env.context.clone());
            let (poll_interval, stop) = ($env.settings.worker.poll_interval, $env.shutdown.clone());
            $tasks.spawn(supervise(
                $queue,
                index,
                $env.shutdown.clone(),
                move |name| {
                    let backend = RedisStorage::<$job>::new(conn.clone())
                        .with_config(config.clone())
                        .poll_with_strategy(TickStrategy::new(poll_interval));
                    // One job at a time per apalis worker: apalis fetches again as soon as
                    // the service is ready, so without a limit one worker would take every
                    // waiting job and open more transactions than its pool holds.
                    let worker = WorkerBuilder::new(name.clone())
                        .backend(backend)
                        .concurrency(1)
                        .data(context.clone())
                        .build($handler);
                    let stop = stop.clone();
                    let (mut conn, config) = (conn.clone(), config.clone());
                    async move {
                        let ended = worker
                            .run_until(async move {
                                stop.cancelled().await;
                                Ok::<(), std::io::Error>(())
                            })
                            .await;
                        // Only a worker that ran and was stopped holds jobs under this
                        // name. One that ended with an error may never have registered
                        // (apalis refuses a name that heartbeated recently), and the name
                        // may then belong to a live worker whose jobs are not ours to move;
                        // orphan recovery re-queues what a failed worker held.
                        if ended.is_ok() {
                            hand_back(&mut conn, &config, &name).await;
                        }
                        ended
                    }
                },
            ));
        }
    };
}

/// Tells the web whether this worker geolocates and whether the locations it writes need
/// DB-IP's credit (`iptrack_core::geo_attribution`), retrying while Redis is away, in the
/// background so that start-up does not wait on Redis.
async fn publish_attribution(
    mut conn: redis::aio::ConnectionManager,
    prefix: String,
    geolocates: bool,
    dbip: bool,
    shutdown: CancellationToken,
) {
    use iptrack_core::geo_attribution;
    let mut delay = std::time::Duration::from_secs(1);
    loop {
        let published = async {
            geo_attribution::publish(&mut conn, &prefix, dbip).await?;
            geo_attribution::publish_geolocation(&mut conn, &prefix, geolocates).await
        };
        match published.await {
            Ok(()) => return,
            Err(error) => iptrack_core::redis_status::report("geolocation attribution", &error),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return,
        }
        delay = (delay * 2).min(std::time::Duration::from_secs(30));
    }
}

/// Returns the jobs a stopped apalis worker still holds to its queue, at once: left in its
/// in-flight set they would wait for another worker's orphan recovery (heartbeat × missed
/// heartbeats), and for ever if none runs. After a crash or a lost connection this may
/// fail; orphan recovery remains the fallback.
async fn hand_back(
    conn: &mut redis::aio::ConnectionManager,
    config: &queue::QueueConfig,
    name: &str,
) {
    match queue::hand_back(conn, config, name).await {
        Ok(0) => {}
        Ok(jobs) => tracing::info!(worker = %name, jobs, "stopped worker handed its jobs back"),
        Err(error) => tracing::debug!(
            worker = %name,
            %error,
            "cannot hand jobs back; orphan recovery will re-queue them"
        ),
    }
}

/// What every queue's workers share.
struct QueueEnv<'a> {
    settings: &'a Settings,
    conn: redis::aio::ConnectionManager,
    context: JobContext,
    shutdown: CancellationToken,
}

/// Connects to the database and Redis and starts the workers; they run until `shutdown`.
pub async fn start(
    settings: &Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningWorkers> {
    let conn = queue::connect_to(&settings.redis).context("REDIS_URL")?;
    // First, before any connection is made: an explicit provider that cannot start stops
    // the worker (exit status 2, one line).
    let geo = Geo::from_settings(
        &settings.geo,
        &settings.redis.prefix,
        &settings.worker,
        conn.clone(),
    )?;
    // Likewise a feed CA file that cannot be read.
    let feeds = FeedFetcher::new(&settings.feeds)?;
    let geo_workers = usize::from(geo.is_some());
    let geolocates = geo.is_some();
    // Also before connecting: a webhook whose TLS settings cannot work is a bad setting.
    let notifier = Notifier::from_settings(settings, conn.clone())?;
    let notify_workers = usize::from(notifier.is_on());
    let dbip = geo
        .as_ref()
        .is_some_and(|geo| geo.provider.requires_dbip_credit(&settings.geo));
    let db = db::connect_with_pool(
        settings.database.url.expose(),
        settings.worker.database_connections(),
    )
    .await
    .context("cannot connect to the database (DATABASE_URL)")?;
    let queues: Vec<_> = ALL_QUEUES
        .iter()
        .map(|name| queue::queue_config(&settings.redis.prefix, &settings.worker, name))
        .collect();

    // Bring a large retry backlog into the active lists before any worker fetches.
    if let Err(error) = maintenance::run_once(&mut conn.clone(), &queues).await {
        iptrack_core::redis_status::report("queue maintenance at start", &error);
    }

    let blocklist = BlocklistService::new(
        db.clone(),
        conn.clone(),
        settings.redis.prefix.clone(),
        &settings.blocklist.safelist,
    );
    let env = QueueEnv {
        settings,
        conn: conn.clone(),
        context: JobContext {
            db: db.clone(),
            blocklist: blocklist.clone(),
            rules: Arc::new(settings.schedules.clone()),
            redis: conn.clone(),
            redis_prefix: settings.redis.prefix.clone(),
            geo: geo.map(Arc::new),
            notifier,
            feeds,
            detect: Arc::new(settings.detect.clone()),
            bans: Bans::new(
                db.clone(),
                blocklist.clone(),
                &settings.detect,
                &settings.client_ip.trusted_proxies,
            ),
        },
        shutdown: shutdown.clone(),
    };
    let mut tasks = JoinSet::new();
    tasks.spawn(publish_attribution(
        conn.clone(),
        settings.redis.prefix.clone(),
        geolocates,
        dbip,
        shutdown.clone(),
    ));
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        tasks.spawn(count_fold::run(db.clone(), shutdown.clone()));
    }
    tasks.spawn(maintenance::run(conn, queues, shutdown));
    spawn_queue!(
        tasks,
        env,
        REQUEST_LOGS_QUEUE,
        RequestLogBatch,
        request_logs::handle,
        settings.worker.concurrency
    );
    // Hourly and daily jobs: one worker each per process is plenty.
    spawn_queue!(
        tasks,
        env,
        FLAG_SUSPICIOUS_IPS_QUEUE,
        FlagSuspiciousIps,
        flag_suspicious_ips::handle,
        1
    );
    spawn_queue!(
        tasks,
        env,
        PURGE_LOGS_QUEUE,
        PurgeLogs,
        purge_logs::handle,
        1
    );
    spawn_queue!(
        tasks,
        env,
        REQUEST_SUMMARIES_QUEUE,
        SummarizeRequests,
        request_summaries::handle,
        1
    );
    // One feed worker per process: refreshes come once per feed and interval, and two
    // imports write one after the other anyway (the service serialises them).
    spawn_queue!(
        tasks,
        env,
        BLOCKLIST_FEEDS_QUEUE,
        RefreshBlocklistFeed,
        refresh_feed::handle,
        1
    );
    // One geolocate worker per process: each job carries up to 100 addresses, and an
    // HTTP provider's rate limit is per client, not per worker.
    spawn_queue!(
        tasks,
        env,
        GEOLOCATE_QUEUE,
        GeolocateAddresses,
        geolocate::handle,
        geo_workers
    );
    // One notifications worker per process, and only with a webhook: a worker without one
    // could not deliver. One is enough (a notice a minute is a busy day), and it keeps the
    // receiver's load to one request at a time per worker process.
    spawn_queue!(
        tasks,
        env,
        NOTIFICATIONS_QUEUE,
        Notice,
        deliver_notice::handle,
        notify_workers
    );
    tracing::info!(
        database = settings.database.kind().as_str(),
        webhook = %env
            .context
            .notifier
            .webhook()
            .map_or_else(|| "off".to_owned(), |w| w.receiver().to_owned()),
        geolocation = env
            .context
            .geo
            .as_ref()
            .map_or("off", |g| g.provider.kind()),
        request_log_workers = settings.worker.concurrency,
        "iptrack-worker started"
    );
    Ok(RunningWorkers {
        // One per request-log slot, plus the flag, purge and feed workers (and geolocate and
        // notifications).
        supervised: settings.worker.concurrency + 3 + geo_workers + notify_workers,
        tasks,
    })
}
