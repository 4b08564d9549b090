//! `iptrack up` on a fresh database: the newcomer's first run.

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use iptrack_entity::request_log;
use iptrack_tests::{
    Backend, TestDb, TestRedis, both_backends, eventually, free_port, process::Service,
};
use sea_orm::EntityTrait;

use crate::{
    Stack, assert_stored_exactly_once, client_ip, holding_proxy, iptrack, jobs_in_flight,
    send_requests, terminate,
};

both_backends!(
    a_thousand_requests_to_iptrack_up_become_a_thousand_rows,
    |backend| async move {
        // No migrations applied: `iptrack up` must do it itself.
        let (db, redis) = (TestDb::empty(backend).await, TestRedis::new());
        let stack = Stack::new(&db, &redis);
        let mut up = Service::start("iptrack", &["up"], &stack.env);
        stack.wait_until_listening().await;

        let statuses = send_requests(&stack, 0..1_000).await;
        assert!(statuses.iter().all(|s| *s == 404), "unexpected statuses");
        let last_response = std::time::Instant::now();

        let conn = db.connect().await;
        eventually(Duration::from_secs(20), "1,000 rows", || async {
            (db.count(&conn, "request_log").await >= 1_000).then_some(())
        })
        .await;
        // Recorded for the curious; the figure that counts is measured in bench/.
        eprintln!(
            "rows complete {:?} after the last response",
            last_response.elapsed()
        );

        let rows = request_log::Entity::find().all(&conn).await.unwrap();
        let stored: BTreeSet<(String, String, String, i32)> = rows
            .into_iter()
            .map(|r| (r.ip_address, r.method, r.path, r.status))
            .collect();
        let expected: BTreeSet<_> = (0..1_000)
            .map(|i| (client_ip(i), "GET".to_owned(), format!("/items/{i}"), 404))
            .collect();
        assert_eq!(stored.len(), 1_000, "duplicate rows");
        assert_eq!(stored, expected);

        terminate(up.pid());
        let status = up
            .wait_for_exit(Duration::from_secs(30))
            .expect("iptrack up did not stop on SIGTERM");
        assert!(status.success(), "iptrack up exited with {status}");
    }
);

both_backends!(
    iptrack_up_flags_an_address_that_probes_the_admin_pages,
    |backend| async move {
        let (db, redis) = (TestDb::empty(backend).await, TestRedis::new());
        // A window every second, looking back a minute, so the test needs no real hour.
        let stack = Stack::new(&db, &redis)
            .with("IPTRACK_FLAG_SCHEDULE", "* * * * * *")
            .with("IPTRACK_FLAG_WINDOW_SECS", "60")
            .with("IPTRACK_FLAG_THRESHOLD", "5");
        let _up = Service::start("iptrack", &["up"], &stack.env);
        stack.wait_until_listening().await;

        let client = reqwest::Client::new();
        for _ in 0..8 {
            client
                .get(stack.url("/admin"))
                .header("x-forwarded-for", "203.0.113.50")
                .send()
                .await
                .unwrap();
        }
        client
            .get(stack.url("/"))
            .header("x-forwarded-for", "198.51.100.77")
            .send()
            .await
            .unwrap();

        let conn = db.connect().await;
        let rules: BTreeSet<String> = eventually(Duration::from_secs(30), "both flags", || async {
            let rules: BTreeSet<String> = iptrack_entity::suspicious_ip::Entity::find()
                .all(&conn)
                .await
                .unwrap()
                .into_iter()
                .filter(|f| f.ip_address == "203.0.113.50")
                .map(|f| f.rule)
                .collect();
            (rules.len() == 2).then_some(rules)
        })
        .await;
        assert_eq!(
            rules,
            BTreeSet::from(["sensitive-path".into(), "volume".into()])
        );
        assert_eq!(
            db.count(&conn, "suspicious_ip WHERE ip_address = '198.51.100.77'")
                .await,
            0,
            "a quiet address was flagged"
        );
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_automatic_blocking_a_flagged_prober_is_refused() {
    let (db, redis) = (
        TestDb::empty(iptrack_tests::Backend::Sqlite).await,
        TestRedis::new(),
    );
    let stack = Stack::new(&db, &redis)
        .with("IPTRACK_FLAG_SCHEDULE", "* * * * * *")
        .with("IPTRACK_FLAG_WINDOW_SECS", "60")
        .with("IPTRACK_AUTO_BLOCK_SECS", "600");
    let _up = Service::start("iptrack", &["up"], &stack.env);
    stack.wait_until_listening().await;
    let client = reqwest::Client::new();
    let get = |path: &'static str, ip: &'static str| {
        let request = client.get(stack.url(path)).header("x-forwarded-for", ip);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get("/admin", "203.0.113.51").await, 200);
    eventually(
        Duration::from_secs(30),
        "the prober to be refused",
        || async { (get("/", "203.0.113.51").await == 403).then_some(()) },
    )
    .await;
    assert_eq!(
        get("/", "198.51.100.51").await,
        200,
        "a quiet client was blocked"
    );
}

both_backends!(
    iptrack_up_stopped_right_after_load_leaves_no_job_in_flight,
    |backend| async move {
        let (db, redis) = (TestDb::empty(backend).await, TestRedis::new());
        // Orphan recovery only after a minute, so a job left in flight would miss the
        // limit below.
        let stack = Stack::new(&db, &redis)
            .with("IPTRACK_BATCH_MAX_EVENTS", "10")
            .with("IPTRACK_BATCH_MAX_WAIT_MS", "5")
            .with("IPTRACK_WORKER_HEARTBEAT_SECS", "20")
            .with("IPTRACK_WORKER_MISSED_HEARTBEATS", "3");
        // `iptrack up` reaches Redis through a proxy that can hold Redis's replies.
        let hold = Arc::new(AtomicBool::new(false));
        let target = redis
            .url
            .trim_start_matches("redis://")
            .trim_end_matches('/');
        let port = holding_proxy(target, hold.clone()).await;
        let mut up_env = stack.env.clone();
        up_env.insert("REDIS_URL".into(), format!("redis://127.0.0.1:{port}"));
        let mut up = Service::start("iptrack", &["up"], &up_env);
        stack.wait_until_listening().await;
        let statuses = send_requests(&stack, 0..200).await;
        assert!(statuses.iter().all(|s| *s == 404), "unexpected statuses");

        // Right after the load, a fetch has run on Redis and its reply is on the way when
        // the signal comes: the race of a stop under load, made certain.
        hold.store(true, Ordering::SeqCst);
        let statuses = send_requests(&stack, 200..400).await;
        assert!(statuses.iter().all(|s| *s == 404), "unexpected statuses");
        eventually(
            Duration::from_secs(15),
            "iptrack up to fetch jobs",
            || async { (jobs_in_flight(&redis, Some(up.pid())).await > 0).then_some(()) },
        )
        .await;
        terminate(up.pid());
        tokio::time::sleep(Duration::from_millis(500)).await;
        hold.store(false, Ordering::SeqCst);
        let status = up
            .wait_for_exit(Duration::from_secs(30))
            .expect("iptrack up did not stop on SIGTERM");
        assert!(status.success(), "iptrack up exited with {status}");
        assert_eq!(
            jobs_in_flight(&redis, None).await,
            0,
            "iptrack up kept jobs"
        );

        let _worker = Service::start("iptrack-worker", &[], &stack.env);
        assert_stored_exactly_once(&db, 400, Duration::from_secs(10)).await;
    }
);

/// A stack for `iptrack up` as a newcomer runs it: `REDIS_URL` unset, and the address it
/// probes for a running Redis (`IPTRACK_UP_REDIS_PROBE_URL`, default 127.0.0.1:6379, where
/// this machine runs one) pointed at `probe`.
fn without_redis_url(db: &TestDb, redis: &TestRedis, probe: &str) -> Stack {
    let mut stack = Stack::new(db, redis).with("IPTRACK_UP_REDIS_PROBE_URL", probe);
    stack.env.remove("REDIS_URL");
    stack
}

/// The SQLite file of a test database.
fn sqlite_file(db: &TestDb) -> String {
    let url = db.url.strip_prefix("sqlite://").unwrap();
    url.split('?').next().unwrap().to_owned()
}

/// Process ids of the redis-server processes working in `dir` (redis-server changes to
/// its `--dir` and rewrites its command line, so the working directory tells them apart).
fn redis_servers_in(dir: &std::path::Path) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            comm.starts_with("redis-server")
                && std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_url_and_no_redis_iptrack_up_runs_a_private_one_and_stops_it() {
    let (db, redis) = (TestDb::empty(Backend::Sqlite).await, TestRedis::new());
    let stack = without_redis_url(&db, &redis, &format!("redis://127.0.0.1:{}", free_port()));
    let dir = std::path::PathBuf::from(format!("{}.redis", sqlite_file(&db)));

    let mut up = Service::start("iptrack", &["up"], &stack.env);
    stack.wait_until_listening().await;
    let statuses = send_requests(&stack, 0..300).await;
    assert!(statuses.iter().all(|s| *s == 404), "unexpected statuses");
    assert_stored_exactly_once(&db, 300, Duration::from_secs(20)).await;
    assert!(
        redis.keys().await.is_empty(),
        "the shared Redis was used instead of a private one"
    );
    assert_eq!(redis_servers_in(&dir.canonicalize().unwrap()).len(), 1);
    assert!(
        dir.join("appendonlydir").is_dir(),
        "no append-only file beside the database"
    );

    terminate(up.pid());
    let status = up
        .wait_for_exit(Duration::from_secs(30))
        .expect("iptrack up did not stop on SIGTERM");
    assert!(status.success(), "iptrack up exited with {status}");
    let dir = dir.canonicalize().unwrap();
    assert_eq!(
        redis_servers_in(&dir),
        Vec::<u32>::new(),
        "redis-server outlived iptrack up"
    );

    // Killed outright, iptrack cannot stop its Redis; the closed pipe does.
    let mut up = Service::start("iptrack", &["up"], &stack.env);
    stack.wait_until_listening().await;
    assert_eq!(redis_servers_in(&dir).len(), 1);
    up.kill();
    eventually(
        Duration::from_secs(10),
        "redis-server to follow iptrack",
        || async { redis_servers_in(&dir).is_empty().then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_url_iptrack_up_uses_the_redis_that_answers_at_the_default_address() {
    let (db, redis) = (TestDb::empty(Backend::Sqlite).await, TestRedis::new());
    let stack = without_redis_url(&db, &redis, &redis.url);
    let _up = Service::start("iptrack", &["up"], &stack.env);
    stack.wait_until_listening().await;
    send_requests(&stack, 0..50).await;
    assert_stored_exactly_once(&db, 50, Duration::from_secs(20)).await;
    assert!(
        !redis.keys().await.is_empty(),
        "the running Redis was not used"
    );
    assert!(!std::path::Path::new(&format!("{}.redis", sqlite_file(&db))).exists());
}

#[tokio::test]
async fn without_redis_url_redis_or_redis_server_iptrack_up_exits_2_with_one_line() {
    let (db, redis) = (TestDb::empty(Backend::Sqlite).await, TestRedis::new());
    // `iptrack` runs with no PATH at all: no redis-server to find.
    let stack = without_redis_url(&db, &redis, &format!("redis://127.0.0.1:{}", free_port()));
    let (code, _, stderr) = iptrack(&stack, &["up"]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("redis-server") && stderr.contains("REDIS_URL"),
        "{stderr}"
    );
    assert!(
        !std::path::Path::new(&sqlite_file(&db)).exists(),
        "iptrack up created the database before refusing"
    );
}
