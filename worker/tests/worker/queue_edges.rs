//! Each of apalis-redis 1.0's sharp edges that the request-log pipeline meets, with the
//! workaround proven: every test here fails when its workaround is taken out.

use std::time::Duration;

use apalis::prelude::TaskSink;
use apalis_redis::RedisStorage;
use iptrack_core::{
    jobs::{REQUEST_LOGS_QUEUE, RequestLogBatch},
    queue::{self, JobQueue},
    settings::Settings,
};
use iptrack_tests::{Backend, PrivateRedis, TestDb, TestRedis, eventually};
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

use crate::batch;

fn job_queue(settings: &Settings) -> JobQueue<RequestLogBatch> {
    JobQueue::new(
        queue::connect(settings.redis.url.expose()).unwrap(),
        queue::queue_config(&settings.redis.prefix, &settings.worker, REQUEST_LOGS_QUEUE),
    )
}

async fn wait_for_rows(db: &TestDb, expected: i64, limit: Duration) {
    let conn = db.connect().await;
    eventually(limit, &format!("{expected} request_log rows"), || async {
        (db.count(&conn, "request_log").await == expected).then_some(())
    })
    .await;
}

/// apalis-redis's own push lands in `:scheduled`, and its fetch fails with "too many
/// results to unpack" once 8,000 due jobs wait there. Our push goes to the active list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_jobs_queued_while_no_worker_ran_are_all_written() {
    let (db, redis) = (TestDb::new(Backend::Sqlite).await, TestRedis::new());
    let settings = iptrack_tests::settings(&db, &redis);
    let mut jobs = job_queue(&settings);
    let batches: Vec<_> = (0..10_000)
        .map(|i| batch(&format!("b{i}"), 1, "198.51.100.9"))
        .collect();
    for chunk in batches.chunks(1_000) {
        jobs.push(chunk).await.unwrap();
    }
    let config = queue::queue_config(&settings.redis.prefix, &settings.worker, REQUEST_LOGS_QUEUE);
    let mut conn = redis.connection().await;
    let (active, scheduled): (u64, u64) = redis::pipe()
        .llen(config.active_jobs_list())
        .zcard(config.scheduled_jobs_set())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        (active, scheduled),
        (10_000, 0),
        "pushed jobs must bypass `:scheduled`"
    );

    let stop = CancellationToken::new();
    let workers = iptrack_worker::start(&settings, stop.clone())
        .await
        .unwrap();
    wait_for_rows(&db, 10_000, Duration::from_secs(120)).await;
    stop.cancel();
    workers.wait().await;
}

/// Retries wait in `:scheduled` (apalis-redis's handle_results puts them there). After an
/// outage thousands can be due at once; the maintenance loop moves them in chunks before
/// apalis-redis's fetch would choke on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nine_thousand_due_retries_are_promoted_and_written() {
    let (db, redis) = (TestDb::new(Backend::Sqlite).await, TestRedis::new());
    let settings = iptrack_tests::settings(&db, &redis);
    // apalis-redis's own push: every job lands in `:scheduled`, due now, exactly as retries do.
    let mut storage =
        RedisStorage::<RequestLogBatch>::new(queue::connect(settings.redis.url.expose()).unwrap())
            .with_config(queue::queue_config(
                &settings.redis.prefix,
                &settings.worker,
                REQUEST_LOGS_QUEUE,
            ));
    let batches: Vec<_> = (0..9_000)
        .map(|i| batch(&format!("r{i}"), 1, "198.51.100.10"))
        .collect();
    storage.push_bulk(batches).await.unwrap();
    let mut conn = redis.connection().await;
    let scheduled: u64 = conn
        .zcard(
            queue::queue_config(&settings.redis.prefix, &settings.worker, REQUEST_LOGS_QUEUE)
                .scheduled_jobs_set(),
        )
        .await
        .unwrap();
    assert_eq!(scheduled, 9_000);

    let stop = CancellationToken::new();
    let workers = iptrack_worker::start(&settings, stop.clone())
        .await
        .unwrap();
    wait_for_rows(&db, 9_000, Duration::from_secs(120)).await;
    stop.cancel();
    workers.wait().await;
}

/// An idle worker looks for work every poll interval, not only at its heartbeat (30 s
/// here). The sharp edge behind this (apalis-core's IntervalStrategy not re-arming its
/// timer) is proven deterministically in `poll.rs`'s unit tests: end to end, the Redis
/// round trip of each fetch usually re-arms it by accident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_picks_up_a_new_job_well_before_its_heartbeat() {
    let (db, redis) = (TestDb::new(Backend::Sqlite).await, TestRedis::new());
    let mut settings = iptrack_tests::settings(&db, &redis);
    settings.worker.heartbeat = Duration::from_secs(30);
    settings.worker.concurrency = 1;
    let stop = CancellationToken::new();
    let workers = iptrack_worker::start(&settings, stop.clone())
        .await
        .unwrap();
    let mut jobs = job_queue(&settings);

    jobs.push(&[batch("first", 1, "198.51.100.11")])
        .await
        .unwrap();
    wait_for_rows(&db, 1, Duration::from_secs(10)).await;
    // Idle for a while, then a new job arrives.
    tokio::time::sleep(Duration::from_secs(2)).await;
    jobs.push(&[batch("second", 1, "198.51.100.11")])
        .await
        .unwrap();
    wait_for_rows(&db, 2, Duration::from_secs(10)).await;

    stop.cancel();
    workers.wait().await;
}

/// apalis-redis refuses to register a worker name that heartbeated recently, so workers
/// sharing a name would leave all but one unable to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_registers_under_a_name_of_its_own() {
    let (db, redis) = (TestDb::new(Backend::Sqlite).await, TestRedis::new());
    let mut settings = iptrack_tests::settings(&db, &redis);
    settings.worker.concurrency = 3;
    let stop = CancellationToken::new();
    let workers = iptrack_worker::start(&settings, stop.clone())
        .await
        .unwrap();
    let workers_set =
        queue::queue_config(&settings.redis.prefix, &settings.worker, REQUEST_LOGS_QUEUE)
            .workers_set();
    let mut conn = redis.connection().await;
    eventually(Duration::from_secs(10), "three registered workers", || {
        let mut conn = conn.clone();
        let key = workers_set.clone();
        async move { (conn.zcard::<_, u64>(key).await.unwrap() == 3).then_some(()) }
    })
    .await;
    // A second process (same queue) registers its own three.
    let stop_other = CancellationToken::new();
    let other = iptrack_worker::start(&settings, stop_other.clone())
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "six registered workers", || {
        let mut conn = conn.clone();
        let key = workers_set.clone();
        async move { (conn.zcard::<_, u64>(key).await.unwrap() == 6).then_some(()) }
    })
    .await;
    // A name ends in the worker's generation. The first start's workers registered at
    // once (generation 0). The second start runs in this same test process, so its first
    // names are the first start's (same host and pid): refused, each worker restarted once
    // under generation 1 and registered.
    let names: Vec<String> = conn.zrange(&workers_set, 0, -1).await.unwrap();
    for index in 0..3 {
        let mut generations: Vec<&str> = names
            .iter()
            .filter(|name| name.contains(&format!("-request-logs-{index}-")))
            .filter_map(|name| name.rsplit('-').next())
            .collect();
        generations.sort_unstable();
        assert_eq!(generations, ["0", "1"], "worker {index}: {names:?}");
    }
    let _: () = conn.ping().await.unwrap();

    stop.cancel();
    stop_other.cancel();
    workers.wait().await;
    other.wait().await;
}

/// A worker that dies (SIGKILL, lost machine) leaves jobs in its in-flight set. They return
/// to the queue after heartbeat × missed heartbeats; apalis-redis's defaults make that
/// 5 minutes, iptrack's settings seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_jobs_return_to_the_queue_within_seconds() {
    let (db, redis) = (TestDb::new(Backend::Sqlite).await, TestRedis::new());
    let settings = iptrack_tests::settings(&db, &redis);
    let config = queue::queue_config(&settings.redis.prefix, &settings.worker, REQUEST_LOGS_QUEUE);
    let mut jobs = job_queue(&settings);
    jobs.push(&[batch("orphan", 5, "198.51.100.12")])
        .await
        .unwrap();

    // The state a killed worker leaves: registered, heartbeat just now, the job in flight.
    let mut conn = redis.connection().await;
    let job_id: String = conn.lpop(config.active_jobs_list(), None).await.unwrap();
    let ghost = "ghost-worker";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let _: () = conn.zadd(config.workers_set(), ghost, now).await.unwrap();
    let _: () = conn
        .sadd(format!("{}:{ghost}", config.inflight_jobs_set()), &job_id)
        .await
        .unwrap();

    let stop = CancellationToken::new();
    let workers = iptrack_worker::start(&settings, stop.clone())
        .await
        .unwrap();
    wait_for_rows(&db, 5, Duration::from_secs(20)).await;
    stop.cancel();
    workers.wait().await;
}

/// An apalis-redis worker ends at the first Redis error. Restarted at once it would spin
/// while Redis is away; the supervisor backs off, and the worker works again once Redis
/// is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_backs_off_while_redis_is_down_and_resumes_when_it_returns() {
    let mut private = PrivateRedis::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let redis = TestRedis {
        url: private.url(),
        prefix: "iptrack".into(),
    };
    let mut settings = iptrack_tests::settings(&db, &redis);
    settings.worker.concurrency = 1;
    let stop = CancellationToken::new();
    let workers = iptrack_worker::start(&settings, stop.clone())
        .await
        .unwrap();
    let mut jobs = job_queue(&settings);
    jobs.push(&[batch("before", 1, "198.51.100.13")])
        .await
        .unwrap();
    wait_for_rows(&db, 1, Duration::from_secs(10)).await;

    private.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;

    private.restart();
    let mut jobs = job_queue(&settings);
    eventually(
        Duration::from_secs(10),
        "a push after Redis returned",
        || {
            let mut jobs = jobs.clone();
            async move { jobs.push(&[batch("after", 1, "198.51.100.13")]).await.ok() }
        },
    )
    .await;
    jobs.push(&[]).await.unwrap();
    wait_for_rows(&db, 2, Duration::from_secs(30)).await;
    // A worker's name ends in its generation: with back-off (100 ms doubling) the outage
    // cost a handful of restarts; without it, thousands.
    let workers_set =
        queue::queue_config(&settings.redis.prefix, &settings.worker, REQUEST_LOGS_QUEUE)
            .workers_set();
    let names: Vec<String> = redis
        .connection()
        .await
        .zrange(workers_set, 0, -1)
        .await
        .unwrap();
    let generation = names
        .iter()
        .filter_map(|name| name.rsplit('-').next()?.parse::<u64>().ok())
        .max();
    assert!(
        generation.is_some_and(|g| (1..=10).contains(&g)),
        "{names:?}: the restart loop does not back off"
    );
    stop.cancel();
    workers.wait().await;
}

/// apalis-redis keeps every completed job (payload and metadata) forever: 62 MB after
/// 300,000 requests. The maintenance loop drops each completed job's payload and keeps
/// only a bounded trace; live workers' metadata hashes carry a TTL, and a stopped worker
/// leaves none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_jobs_leave_no_payload_and_a_bounded_trace_in_redis() {
    let (db, redis) = (TestDb::new(Backend::Sqlite).await, TestRedis::new());
    let settings = iptrack_tests::settings(&db, &redis);
    let config = queue::queue_config(&settings.redis.prefix, &settings.worker, REQUEST_LOGS_QUEUE);
    let mut jobs = job_queue(&settings);
    let batches: Vec<_> = (0..1_500)
        .map(|i| batch(&format!("d{i}"), 20, "198.51.100.14"))
        .collect();
    let payload_bytes: usize = batches
        .iter()
        .map(|b| serde_json::to_vec(b).unwrap().len())
        .sum();
    for chunk in batches.chunks(500) {
        jobs.push(chunk).await.unwrap();
    }
    let stop = CancellationToken::new();
    let workers = iptrack_worker::start(&settings, stop.clone())
        .await
        .unwrap();
    wait_for_rows(&db, 30_000, Duration::from_secs(120)).await;

    let mut conn = redis.connection().await;
    let (done_key, data_key) = (config.done_jobs_set(), config.job_data_hash());
    eventually(
        Duration::from_secs(10),
        "completed payloads dropped",
        || {
            let (mut conn, done_key, data_key) = (conn.clone(), done_key.clone(), data_key.clone());
            async move {
                let done: u64 = conn.scard(done_key).await.unwrap();
                let payloads: u64 = conn.hlen(data_key).await.unwrap();
                (done <= queue::DONE_JOBS_KEPT as u64 && payloads == 0).then_some(())
            }
        },
    )
    .await;
    let done: Vec<String> = conn.smembers(&done_key).await.unwrap();
    assert!(!done.is_empty(), "no trace of the completed jobs kept");

    // Everything iptrack keeps under the prefix, measured by Redis itself.
    let keys: Vec<String> = redis.keys().await;
    let mut used = 0_u64;
    for key in &keys {
        let bytes: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        used += bytes.unwrap_or(0);
    }
    assert!(
        payload_bytes > 4_000_000,
        "the test's payloads are too small to tell"
    );
    assert!(
        used < 1_000_000,
        "{used} bytes in Redis after {payload_bytes} bytes of completed payloads: {keys:?}"
    );

    // Every live worker's metadata hash expires unless renewed.
    let metadata: Vec<String> = keys
        .iter()
        .filter(|k| k.contains(":workers:metadata:"))
        .cloned()
        .collect();
    assert!(!metadata.is_empty(), "no worker metadata among {keys:?}");
    for key in &metadata {
        let ttl: i64 = conn.ttl(key).await.unwrap();
        assert!(
            ttl > 0 && ttl <= queue::WORKER_KEY_TTL.as_secs() as i64,
            "{key} has TTL {ttl}"
        );
    }

    stop.cancel();
    workers.wait().await;
    let left: Vec<String> = redis
        .keys()
        .await
        .into_iter()
        .filter(|k| k.contains(":workers:metadata:") || k.contains(":inflight:"))
        .collect();
    assert!(left.is_empty(), "stopped workers left {left:?}");
}
