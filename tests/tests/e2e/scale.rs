//! Horizontal scale without docker: the process mix `docker compose up --scale` would run —
//! two webs, three workers, two schedulers — against one Redis prefix and one PostgreSQL
//! database, the way docker-compose.yml wires them.

use std::{process::Command, time::Duration};

use chrono::{DateTime, Utc};
use iptrack_tests::{
    Backend, TestDb, TestRedis, eventually,
    process::{Service, binary},
};
use redis::AsyncCommands;

use crate::{
    Stack, assert_stored_exactly_once,
    blocking::{status_for, wait_for_status},
    iptrack, send_requests, terminate,
};

/// Short windows so that several pass during the test.
const FLAG_EVERY_SECS: i64 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_webs_three_workers_and_two_schedulers_share_one_redis_and_one_database() {
    let (db, redis) = (TestDb::empty(Backend::Postgres).await, TestRedis::new());
    // One environment for the whole cluster, as in docker-compose.yml; only the web's
    // listening port differs between the two webs.
    let with_cluster_settings = |stack: Stack| {
        stack
            .with(
                "IPTRACK_FLAG_SCHEDULE",
                &format!("*/{FLAG_EVERY_SECS} * * * * *"),
            )
            .with("IPTRACK_FLAG_WINDOW_SECS", &FLAG_EVERY_SECS.to_string())
            // Only the Redis notice can deliver a block within the test.
            .with("IPTRACK_BLOCKLIST_RELOAD_SECS", "3600")
    };
    let first = with_cluster_settings(Stack::new(&db, &redis));
    let second = with_cluster_settings(Stack::new(&db, &redis));

    // The one-shot migration, like compose's `migrate` service.
    let migrate = Command::new(binary("iptrack"))
        .arg("migrate")
        .env_clear()
        .envs(&first.env)
        .status()
        .unwrap();
    assert!(migrate.success(), "iptrack migrate failed");

    let mut processes = vec![
        Service::start("iptrack-worker", &[], &first.env),
        Service::start("iptrack-worker", &[], &first.env),
        Service::start("iptrack-worker", &[], &first.env),
        Service::start("iptrack-scheduler", &[], &first.env),
        Service::start("iptrack-scheduler", &[], &first.env),
        Service::start("iptrack-web", &[], &first.env),
        Service::start("iptrack-web", &[], &second.env),
    ];
    first.wait_until_listening().await;
    second.wait_until_listening().await;

    // Load through both webs at once: every request stored exactly once.
    let (a, b) = tokio::join!(
        send_requests(&first, 0..600),
        send_requests(&second, 600..1200)
    );
    assert!(
        a.iter().chain(&b).all(|status| *status == 404),
        "unexpected statuses"
    );
    assert_stored_exactly_once(&db, 1200, Duration::from_secs(60)).await;

    // A block made with the CLI reaches both webs.
    let client = reqwest::Client::new();
    let (code, _, stderr) = iptrack(&first, &["block", "203.0.113.66"]);
    assert_eq!(code, 0, "{stderr}");
    for stack in [&first, &second] {
        wait_for_status(&client, stack, "203.0.113.66", 403).await;
        assert_eq!(status_for(&client, stack, "203.0.113.67").await, 200);
    }

    // The rate limit is shared: the default rule allows 5 anonymous login attempts a
    // minute per address, counted in Redis, so attempts alternating between the two webs
    // use one budget and the sixth is refused whichever web it reaches.
    let mut login_statuses = Vec::new();
    for attempt in 0..7 {
        let stack = if attempt % 2 == 0 { &first } else { &second };
        let response = client
            .post(stack.url("/login"))
            .header("x-forwarded-for", "198.51.100.77")
            .form(&[("username", "mallory"), ("password", "guess")])
            .send()
            .await
            .unwrap();
        login_statuses.push(response.status().as_u16());
    }
    assert_eq!(
        login_statuses,
        [401, 401, 401, 401, 401, 429, 429],
        "five attempts across both webs, then refused on either"
    );

    // One flag job per window, with two schedulers racing for every tick.
    let mut conn = redis.connection().await;
    let queue = format!("{}:flag-suspicious-ips", redis.prefix);
    // Completed jobs keep no payload; each window enqueued left its claim, `…:claim:<end>`.
    let (windows, done) = eventually(Duration::from_secs(30), "4 flag windows run", || {
        let (mut conn, queue) = (conn.clone(), queue.clone());
        async move {
            let (claims, done): (Vec<String>, u64) = redis::pipe()
                .keys(format!("{queue}:claim:*"))
                .scard(format!("{queue}:done"))
                .query_async(&mut conn)
                .await
                .unwrap();
            (claims.len() >= 4 && done >= claims.len() as u64).then_some((claims, done))
        }
    })
    .await;
    assert_eq!(
        done,
        windows.len() as u64,
        "more flag jobs ran than windows were claimed: {windows:?}"
    );
    let mut ends: Vec<DateTime<Utc>> = windows
        .iter()
        .map(|claim| {
            let end = claim.rsplit(':').next().unwrap().parse().unwrap();
            DateTime::from_timestamp(end, 0).unwrap()
        })
        .collect();
    ends.sort();
    for pair in ends.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]).num_seconds(),
            FLAG_EVERY_SECS,
            "a window was skipped: {ends:?}"
        );
    }

    // `iptrack queues` agrees with Redis about the busy queue, and sees all workers.
    let (code, json, stderr) = iptrack(&first, &["queues", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let queues: serde_json::Value = serde_json::from_str(&json).unwrap();
    let logs = &queues[0];
    assert_eq!(logs["queue"], "request-logs");
    let done: u64 = conn
        .scard(format!("{}:request-logs:done", redis.prefix))
        .await
        .unwrap();
    assert_eq!(logs["done"], done);
    assert!(done > 0);
    assert_eq!(logs["due"], 0);
    // The default request-log slots on PostgreSQL in each of three processes.
    let workers = logs["workers"].as_array().unwrap();
    assert_eq!(
        workers.len(),
        3 * iptrack_core::settings::WorkerSettings::POSTGRES_CONCURRENCY,
        "{workers:?}"
    );
    let now = Utc::now().timestamp();
    for worker in workers {
        assert!(
            now - worker["last_heartbeat"].as_i64().unwrap() < 15,
            "{worker}"
        );
    }

    // Graceful shutdown of every process on SIGTERM.
    for process in &processes {
        terminate(process.pid());
    }
    for process in &mut processes {
        let status = process
            .wait_for_exit(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{} ignored SIGTERM", process.name));
        assert!(status.success(), "{} exited with {status}", process.name);
    }
}
