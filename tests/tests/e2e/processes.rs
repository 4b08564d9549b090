//! The services as separate processes, the way a deployment runs them.

use std::{
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use iptrack_core::{jobs::REQUEST_LOGS_QUEUE, queue};
use iptrack_tests::{
    Backend, TestDb, TestRedis, both_backends, eventually,
    process::{Service, binary},
};
use redis::AsyncCommands;

use crate::{
    Stack, assert_stored_exactly_once, holding_proxy, jobs_in_flight, send_requests, terminate,
};

both_backends!(
    a_web_and_two_workers_store_every_request_exactly_once,
    |backend| async move {
        let (db, redis) = (TestDb::empty(backend).await, TestRedis::new());
        let stack = Stack::new(&db, &redis);
        let migrate = Command::new(binary("iptrack"))
            .arg("migrate")
            .env_clear()
            .envs(&stack.env)
            .status()
            .unwrap();
        assert!(migrate.success(), "iptrack migrate failed");
        let _workers = [
            Service::start("iptrack-worker", &[], &stack.env),
            Service::start("iptrack-worker", &[], &stack.env),
        ];
        let mut web = Service::start("iptrack-web", &[], &stack.env);
        stack.wait_until_listening().await;

        send_requests(&stack, 0..500).await;
        assert_stored_exactly_once(&db, 500, Duration::from_secs(20)).await;

        terminate(web.pid());
        let status = web
            .wait_for_exit(Duration::from_secs(30))
            .expect("iptrack-web ignored SIGTERM");
        assert!(status.success(), "iptrack-web exited with {status}");
    }
);

#[tokio::test]
async fn on_sigterm_the_web_delivers_the_events_it_still_holds() {
    let (db, redis) = (TestDb::new(Backend::Sqlite).await, TestRedis::new());
    // Batches that neither fill nor age while the test runs: only the shutdown flush can
    // deliver these events.
    let stack = Stack::new(&db, &redis)
        .with("IPTRACK_BATCH_MAX_EVENTS", "5000")
        .with("IPTRACK_BATCH_MAX_WAIT_MS", "60000");
    let mut web = Service::start("iptrack-web", &[], &stack.env);
    stack.wait_until_listening().await;
    send_requests(&stack, 0..300).await;

    let settings = iptrack_tests::settings(&db, &redis);
    let jobs = queue::queue_config(&settings.redis.prefix, &settings.worker, REQUEST_LOGS_QUEUE)
        .job_data_hash();
    let mut conn = redis.connection().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let queued: usize = conn.hlen(&jobs).await.unwrap();
    assert_eq!(queued, 0, "the events are still in the web's buffer");

    terminate(web.pid());
    let status = web
        .wait_for_exit(Duration::from_secs(30))
        .expect("iptrack-web ignored SIGTERM");
    assert!(status.success(), "iptrack-web exited with {status}");

    let _worker = Service::start("iptrack-worker", &[], &stack.env);
    assert_stored_exactly_once(&db, 300, Duration::from_secs(20)).await;
}

#[test]
fn an_invalid_setting_stops_start_up_with_one_line_naming_it() {
    for name in ["iptrack-web", "iptrack-worker", "iptrack"] {
        let mut command = Command::new(binary(name));
        if name == "iptrack" {
            command.arg("migrate");
        }
        let output = command
            .env_clear()
            .env("IPTRACK_BIND", "not-an-address")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{name} exit status");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{name} printed: {stderr}");
        assert!(stderr.contains("IPTRACK_BIND"), "{name} printed: {stderr}");
    }
}

both_backends!(
    a_worker_stopped_by_sigterm_while_fetching_hands_back_the_jobs_it_fetched,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        // Orphan recovery only after a minute: only a hand-back brings the jobs back within
        // the test's limit.
        let stack = Stack::new(&db, &redis)
            .with("IPTRACK_BATCH_MAX_EVENTS", "10")
            .with("IPTRACK_BATCH_MAX_WAIT_MS", "5")
            .with("IPTRACK_WORKER_HEARTBEAT_SECS", "20")
            .with("IPTRACK_WORKER_MISSED_HEARTBEATS", "3");
        // The worker reaches Redis through a proxy that can hold Redis's replies.
        let hold = Arc::new(AtomicBool::new(false));
        let target = redis
            .url
            .trim_start_matches("redis://")
            .trim_end_matches('/');
        let port = holding_proxy(target, hold.clone()).await;
        let mut worker_env = stack.env.clone();
        worker_env.insert("REDIS_URL".into(), format!("redis://127.0.0.1:{port}"));
        let mut worker = Service::start("iptrack-worker", &[], &worker_env);
        let _web = Service::start("iptrack-web", &[], &stack.env);
        stack.wait_until_listening().await;
        let pid = worker.pid();
        let redis_conn = redis.connection().await;
        let workers_key = format!("{}:request-logs:workers", redis.prefix);
        eventually(Duration::from_secs(30), "the worker to register", || {
            let (mut redis_conn, workers_key) = (redis_conn.clone(), workers_key.clone());
            async move {
                let names: Vec<String> = redis_conn.zrange(workers_key, 0, -1).await.unwrap();
                names
                    .iter()
                    .any(|n| n.contains(&format!("-{pid}-")))
                    .then_some(())
            }
        })
        .await;

        // The worker's next fetch runs on Redis (moving jobs into its in-flight set), and
        // the signal comes while it still waits for the reply: the race of a stop under load.
        hold.store(true, Ordering::SeqCst);
        let statuses = send_requests(&stack, 0..300).await;
        assert!(statuses.iter().all(|s| *s == 404), "unexpected statuses");
        eventually(
            Duration::from_secs(15),
            "the worker to fetch jobs",
            || async { (jobs_in_flight(&redis, Some(pid)).await > 0).then_some(()) },
        )
        .await;
        terminate(pid);
        tokio::time::sleep(Duration::from_millis(500)).await;
        hold.store(false, Ordering::SeqCst);
        let status = worker
            .wait_for_exit(Duration::from_secs(30))
            .expect("iptrack-worker ignored SIGTERM");
        assert!(status.success(), "iptrack-worker exited with {status}");
        assert_eq!(
            jobs_in_flight(&redis, None).await,
            0,
            "the stopped worker kept jobs"
        );

        // A new worker gets every event in far less than orphan recovery's minute.
        let started = Instant::now();
        let _next = Service::start("iptrack-worker", &[], &stack.env);
        assert_stored_exactly_once(&db, 300, Duration::from_secs(10)).await;
        eprintln!(
            "all rows {:?} after the new worker started",
            started.elapsed()
        );
    }
);

both_backends!(
    request_log_timestamps_are_stored_in_whole_microseconds,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let stack = Stack::new(&db, &redis);
        let _worker = Service::start("iptrack-worker", &[], &stack.env);
        let _web = Service::start("iptrack-web", &[], &stack.env);
        stack.wait_until_listening().await;
        send_requests(&stack, 0..50).await;
        assert_stored_exactly_once(&db, 50, Duration::from_secs(20)).await;

        use chrono::Timelike;
        use sea_orm::EntityTrait;
        let conn = db.connect().await;
        let rows = iptrack_entity::request_log::Entity::find()
            .all(&conn)
            .await
            .unwrap();
        let finer: Vec<_> = rows
            .iter()
            .map(|r| r.timestamp)
            .filter(|t| t.nanosecond() % 1_000 != 0)
            .collect();
        assert!(
            finer.is_empty(),
            "stored finer than microseconds: {finer:?}"
        );
    }
);

/// Runs `binary args` for `run_for` with its stderr on a pipe, then SIGTERM; returns
/// its exit status and everything it wrote to stderr.
fn stderr_of(
    binary_name: &str,
    args: &[&str],
    env: &std::collections::HashMap<String, String>,
    run_for: Duration,
) -> (std::process::ExitStatus, String) {
    let child = Command::new(binary(binary_name))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(run_for);
    terminate(child.id());
    let output = child.wait_with_output().unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn logs_written_to_a_pipe_carry_no_colour_codes() {
    let (db, redis) = (TestDb::new(Backend::Sqlite).await, TestRedis::new());
    let stack = Stack::new(&db, &redis).with("RUST_LOG", "info");
    let (status, stderr) = stderr_of("iptrack-worker", &[], &stack.env, Duration::from_secs(2));
    assert!(
        status.success(),
        "iptrack-worker exited with {status}: {stderr}"
    );
    assert!(
        stderr.contains("iptrack-worker started"),
        "no log line to judge: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes in piped logs: {stderr:?}"
    );
}

#[tokio::test]
async fn while_redis_is_away_each_process_says_so_once_naming_the_url_without_its_password() {
    let (db, redis) = (TestDb::new(Backend::Sqlite).await, TestRedis::new());
    let port = iptrack_tests::free_port();
    // RUST_LOG unset: the default filter, as a user runs it.
    let stack =
        Stack::new(&db, &redis).with("REDIS_URL", &format!("redis://:s3cret@127.0.0.1:{port}"));
    let shown = format!("redis://:***@127.0.0.1:{port}");
    for (binary_name, args) in [
        ("iptrack-web", &[][..]),
        ("iptrack-worker", &[]),
        ("iptrack-scheduler", &[]),
        ("iptrack", &["up"]),
    ] {
        let (status, stderr) = stderr_of(binary_name, args, &stack.env, Duration::from_secs(4));
        assert!(
            status.success(),
            "{binary_name} exited with {status}: {stderr}"
        );
        assert!(
            !stderr.contains("s3cret"),
            "{binary_name} logged the password: {stderr}"
        );
        let reports = stderr
            .lines()
            .filter(|l| l.contains(&shown) && l.contains("unreachable"))
            .count();
        let refused = stderr
            .lines()
            .filter(|l| l.to_lowercase().contains("refused"))
            .count();
        assert_eq!(reports, 1, "{binary_name}: {stderr}");
        assert!(refused <= 1, "{binary_name} repeats itself: {stderr}");
    }
}
