//! `iptrack up` on a fresh database: the newcomer's first run.

use std::{collections::BTreeSet, time::Duration};

use iptrack_entity::request_log;
use iptrack_tests::{TestDb, TestRedis, both_backends, eventually, process::Service};
use sea_orm::EntityTrait;

use crate::{Stack, client_ip, send_requests, terminate};

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
