//! A TLS Redis (`rediss://`) signed by a private CA, as managed Redis services run it
//! (issue 22): with `IPTRACK_REDIS_CA_FILE` the web, the worker and the CLI reach it (queue,
//! readiness, blocklist notices), requests become rows; without the CA the server's
//! certificate is refused. The server has no plain-text port, so nothing passes unencrypted.

use std::time::Duration;

use iptrack_tests::{
    TestDb, TestRedis, both_backends,
    process::{Service, binary},
    tls_redis::TlsRedis,
};

use crate::{
    Stack, assert_stored_exactly_once,
    blocking::{status_for, wait_for_status},
    iptrack, send_requests,
};

both_backends!(
    web_and_worker_log_requests_through_a_tls_redis_signed_by_a_private_ca,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let tls = TlsRedis::start();
        let ca = tls.ca_file();
        // A reload interval far beyond the test: only the notice (over TLS) delivers a block.
        let stack = Stack::new(&db, &redis)
            .with("REDIS_URL", &tls.url())
            .with("IPTRACK_REDIS_CA_FILE", ca.to_str().unwrap())
            .with("IPTRACK_BLOCKLIST_RELOAD_SECS", "3600");
        let _worker = Service::start("iptrack-worker", &[], &stack.env);
        let _web = Service::start("iptrack-web", &[], &stack.env);
        stack.wait_until_listening().await;

        send_requests(&stack, 0..100).await;
        assert_stored_exactly_once(&db, 100, Duration::from_secs(60)).await;

        let client = reqwest::Client::new();
        let ready = client.get(stack.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());

        let (code, stdout, stderr) = iptrack(&stack, &["block", "203.0.113.44"]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        wait_for_status(&client, &stack, "203.0.113.44", 403).await;
        assert_eq!(status_for(&client, &stack, "203.0.113.45").await, 200);
    }
);

#[test]
fn a_tls_redis_certificate_from_an_untrusted_ca_is_refused() {
    let tls = TlsRedis::start();
    let queues = |ca: Option<&str>| {
        let mut command = std::process::Command::new(binary("iptrack"));
        command
            .arg("queues")
            .env_clear()
            .env("REDIS_URL", tls.url())
            .env(
                "IPTRACK_REDIS_PREFIX",
                format!("iptrack-tls-{}", std::process::id()),
            );
        if let Some(ca) = ca {
            command.env("IPTRACK_REDIS_CA_FILE", ca);
        }
        command.output().unwrap()
    };
    // The system's roots do not hold the test's CA.
    let refused = queues(None);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "accepted an unknown CA: {stderr}"
    );
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");

    let trusted = queues(Some(tls.ca_file().to_str().unwrap()));
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
}
