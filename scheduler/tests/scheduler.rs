//! The scheduler against a real Redis: one job per window, catch-up after downtime.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use iptrack_core::{
    jobs::{FLAG_SUSPICIOUS_IPS_QUEUE, FlagSuspiciousIps},
    queue,
    settings::Settings,
};
use iptrack_tests::{Backend, TestDb, TestRedis};
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

/// The flag jobs waiting in the queue, oldest first.
async fn enqueued_windows(redis: &TestRedis, settings: &Settings) -> Vec<FlagSuspiciousIps> {
    let config = queue::queue_config(
        &settings.redis.prefix,
        &settings.worker,
        FLAG_SUSPICIOUS_IPS_QUEUE,
    );
    let mut conn = redis.connection().await;
    let ids: Vec<String> = conn.lrange(config.active_jobs_list(), 0, -1).await.unwrap();
    let mut jobs = Vec::new();
    for id in ids {
        let data: Vec<u8> = conn.hget(config.job_data_hash(), &id).await.unwrap();
        jobs.push(serde_json::from_slice(&data).unwrap());
    }
    jobs
}

fn last_window_key(settings: &Settings) -> String {
    let config = queue::queue_config(
        &settings.redis.prefix,
        &settings.worker,
        FLAG_SUSPICIOUS_IPS_QUEUE,
    );
    format!("{}:last-window-end", config.queue.as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_enqueue_exactly_one_job_per_window() {
    let (db, redis) = (TestDb::empty(Backend::Sqlite).await, TestRedis::new());
    let mut settings = iptrack_tests::settings(&db, &redis);
    settings.schedules.flag_schedule = "* * * * * *".parse().unwrap();
    settings.schedules.flag_window = Duration::from_secs(1);

    let stop = CancellationToken::new();
    let first = iptrack_scheduler::start(&settings, stop.clone())
        .await
        .unwrap();
    let second = iptrack_scheduler::start(&settings, stop.clone())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    stop.cancel();
    first.wait().await;
    second.wait().await;

    let jobs = enqueued_windows(&redis, &settings).await;
    let ends: Vec<i64> = jobs.iter().map(|j| j.window_end.timestamp()).collect();
    assert!(
        ends.len() >= 3,
        "only {} windows enqueued in 4.5 s",
        ends.len()
    );
    for pair in ends.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            1,
            "windows not consecutive and unique: {ends:?}"
        );
    }
    for job in &jobs {
        assert_eq!((job.window_end - job.window_start).num_seconds(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_back_from_downtime_enqueues_the_most_recent_missed_windows() {
    let (db, redis) = (TestDb::empty(Backend::Sqlite).await, TestRedis::new());
    let mut settings = iptrack_tests::settings(&db, &redis);
    // Yearly, so no tick fires during the test; the last run was years ago.
    settings.schedules.flag_schedule = "0 0 0 1 1 *".parse().unwrap();
    settings.schedules.flag_catch_up_windows = 3;
    let mut conn = redis.connection().await;
    let _: () = conn
        .set(last_window_key(&settings), "1577836800") // 2020-01-01T00:00:00Z
        .await
        .unwrap();

    let stop = CancellationToken::new();
    let scheduler = iptrack_scheduler::start(&settings, stop.clone())
        .await
        .unwrap();
    stop.cancel();
    scheduler.wait().await;

    let ends: Vec<DateTime<Utc>> = enqueued_windows(&redis, &settings)
        .await
        .iter()
        .map(|j| j.window_end)
        .collect();
    let year = chrono::Datelike::year(&Utc::now());
    let expected: Vec<DateTime<Utc>> = (year - 2..=year)
        .map(|y| format!("{y}-01-01T00:00:00Z").parse().unwrap())
        .collect();
    assert_eq!(ends, expected);

    // A second start finds nothing missed.
    let stop = CancellationToken::new();
    let again = iptrack_scheduler::start(&settings, stop.clone())
        .await
        .unwrap();
    stop.cancel();
    again.wait().await;
    assert_eq!(enqueued_windows(&redis, &settings).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_enqueues_nothing_until_its_first_tick() {
    let (db, redis) = (TestDb::empty(Backend::Sqlite).await, TestRedis::new());
    let settings = iptrack_tests::settings(&db, &redis);
    let stop = CancellationToken::new();
    let scheduler = iptrack_scheduler::start(&settings, stop.clone())
        .await
        .unwrap();
    stop.cancel();
    scheduler.wait().await;
    assert!(enqueued_windows(&redis, &settings).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_enqueue_one_feed_refresh_per_slot() {
    use iptrack_core::{
        blocklist::feed::FeedName,
        jobs::{BLOCKLIST_FEEDS_QUEUE, RefreshBlocklistFeed},
        settings::FeedSchedule,
    };
    use iptrack_scheduler::enqueue::Enqueuer;

    let (db, redis) = (TestDb::empty(Backend::Sqlite).await, TestRedis::new());
    let settings = iptrack_tests::settings(&db, &redis);
    let feed = FeedSchedule {
        name: FeedName::parse("firehol1").unwrap(),
        url: "http://127.0.0.1:9/level1.netset".into(),
        interval: Duration::from_secs(3600),
    };
    let connect = || queue::connect(&redis.url).unwrap();
    let mut first = Enqueuer::new(&settings.schedules, &settings.redis.prefix, connect());
    let mut second = Enqueuer::new(&settings.schedules, &settings.redis.prefix, connect());
    assert!(first.feed_refresh(&feed, 100).await.unwrap());
    assert!(!second.feed_refresh(&feed, 100).await.unwrap());
    assert!(!first.feed_refresh(&feed, 100).await.unwrap());
    assert!(second.feed_refresh(&feed, 101).await.unwrap());
    // Another interval is another series of slots.
    let daily = FeedSchedule {
        interval: Duration::from_secs(86_400),
        ..feed.clone()
    };
    assert!(first.feed_refresh(&daily, 100).await.unwrap());

    let config = queue::queue_config(
        &settings.redis.prefix,
        &settings.worker,
        BLOCKLIST_FEEDS_QUEUE,
    );
    let mut conn = redis.connection().await;
    let ids: Vec<String> = conn.lrange(config.active_jobs_list(), 0, -1).await.unwrap();
    assert_eq!(ids.len(), 3);
    let data: Vec<u8> = conn.hget(config.job_data_hash(), &ids[0]).await.unwrap();
    let job: RefreshBlocklistFeed = serde_json::from_slice(&data).unwrap();
    assert_eq!(
        job,
        RefreshBlocklistFeed {
            source: "firehol1".into(),
            url: "http://127.0.0.1:9/level1.netset".into(),
        }
    );
}
