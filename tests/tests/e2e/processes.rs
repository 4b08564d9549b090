//! The services as separate processes, the way a deployment runs them.

use std::{process::Command, time::Duration};

use iptrack_core::{jobs::REQUEST_LOGS_QUEUE, queue};
use iptrack_tests::{
    Backend, TestDb, TestRedis, both_backends,
    process::{Service, binary},
};
use redis::AsyncCommands;

use crate::{Stack, assert_stored_exactly_once, send_requests, terminate};

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
    let jobs = queue::queue_config(&settings, REQUEST_LOGS_QUEUE).job_data_hash();
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
