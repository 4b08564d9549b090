//! Streaming detection (`IPTRACK_DETECT_RULES`) through the real binaries: the web logs,
//! the workers count and ban, the web answers 403.

use std::{process::Command, time::Duration};

use iptrack_tests::{
    TestDb, TestRedis, both_backends, eventually,
    process::{Service, binary},
};
use redis::AsyncCommands;

use crate::{
    ADMIN_TOKEN, Stack, admin_json,
    blocking::{status_for, wait_for_status},
    iptrack,
};

/// `POST /login` with a wrong password from `ip`; the status.
async fn wrong_login(client: &reqwest::Client, stack: &Stack, ip: &str) -> u16 {
    client
        .post(stack.url("/login"))
        .header("x-forwarded-for", ip)
        .form(&[("username", "alice"), ("password", "guess")])
        .send()
        .await
        .expect("request failed")
        .status()
        .as_u16()
}

/// `GET path` from `ip`; the status.
async fn get(client: &reqwest::Client, stack: &Stack, ip: &str, path: &str) -> u16 {
    client
        .get(stack.url(path))
        .header("x-forwarded-for", ip)
        .send()
        .await
        .expect("request failed")
        .status()
        .as_u16()
}

/// A stack whose batches close after a few milliseconds, as a busy site's fill up.
fn quick_stack(db: &TestDb, redis: &TestRedis) -> Stack {
    Stack::new(db, redis)
        .with("IPTRACK_DEMO_USER", "alice:correct horse")
        .with("IPTRACK_BATCH_MAX_WAIT_MS", "10")
        .with("IPTRACK_BLOCKLIST_RELOAD_SECS", "3600")
}

both_backends!(
    the_default_rule_bans_a_password_guesser_within_seconds_and_not_a_user_who_mistypes,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        // The default rules: failed-login, 10 failures (401, or 429 from the login rate
        // limit) in 10 minutes ban for 10 minutes.
        let stack = quick_stack(&db, &redis).with("IPTRACK_ADMIN_TOKEN", ADMIN_TOKEN);
        let _web = Service::start("iptrack-web", &[], &stack.env);
        let _worker = Service::start("iptrack-worker", &[], &stack.env);
        stack.wait_until_listening().await;
        let client = reqwest::Client::new();

        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(wrong_login(&client, &stack, "203.0.113.81").await);
        }
        for _ in 0..10 {
            statuses.push(wrong_login(&client, &stack, "203.0.113.80").await);
        }
        // Five failures a minute, then the rate limit: both count.
        assert_eq!(
            &statuses[3..],
            [401, 401, 401, 401, 401, 429, 429, 429, 429, 429]
        );
        wait_for_status(&client, &stack, "203.0.113.80", 403).await;
        assert_eq!(
            status_for(&client, &stack, "203.0.113.81").await,
            200,
            "three mistyped passwords are no attack"
        );

        let conn = db.connect().await;
        assert_eq!(
            db.count(
                &conn,
                "blocked_ip WHERE ip_address = '203.0.113.80' AND source = 'rule:failed-login' \
                 AND expires_at IS NOT NULL"
            )
            .await,
            1
        );
        eventually(Duration::from_secs(10), "the flag", || async {
            (db.count(
                &conn,
                "suspicious_ip WHERE ip_address = '203.0.113.80' AND rule = 'failed-login' \
                 AND request_count = 10",
            )
            .await
                == 1)
                .then_some(())
        })
        .await;
        assert_eq!(db.count(&conn, "suspicious_ip").await, 1);
        assert_eq!(db.count(&conn, "blocked_ip").await, 1);

        // The admin API: the ban with its rule and count, and the rules in force.
        let blocked = admin_json(&client, &stack.url("/api/v1/blocked")).await;
        assert_eq!(
            (&blocked[0]["source"], &blocked[0]["ban_count"]),
            (
                &serde_json::json!("rule:failed-login"),
                &serde_json::json!(1)
            )
        );
        let rules = admin_json(&client, &stack.url("/api/v1/rules")).await;
        assert_eq!(
            rules,
            serde_json::json!({
                "rules": [{
                    "name": "failed-login", "methods": ["POST"], "path": "/login",
                    "statuses": ["401", "429"], "count": 10, "window_secs": 600,
                    "ban_secs": 600, "dry_run": false
                }],
                "escalation": {"factor": 2.0, "max_secs": 86400, "memory_secs": 604800}
            })
        );

        let (code, stdout, stderr) = iptrack(&stack, &["blocked"]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("rule:failed-login"), "{stdout}");
        let (_, json, _) = iptrack(&stack, &["blocked", "--json"]);
        let blocks: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(blocks[0]["ip_address"], "203.0.113.80");
        assert_eq!(blocks[0]["ban_count"], 1);
        assert!(
            blocks[0]["reason"]
                .as_str()
                .unwrap()
                .contains("10 POST /login status 401,429 in 10m (threshold 10)"),
            "{blocks}"
        );
    }
);

both_backends!(
    a_ban_ends_on_time_and_a_second_offence_is_banned_twice_as_long,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let stack = quick_stack(&db, &redis)
            .with("IPTRACK_RATE_LIMITS", "off")
            .with(
                "IPTRACK_DETECT_RULES",
                "guess=POST /login status=401 count=3 window=1m ban=2s",
            );
        let _web = Service::start("iptrack-web", &[], &stack.env);
        let _worker = Service::start("iptrack-worker", &[], &stack.env);
        stack.wait_until_listening().await;
        let client = reqwest::Client::new();
        let conn = db.connect().await;
        let ip = "198.51.100.90";

        for offence in 1..=2 {
            for _ in 0..3 {
                assert_eq!(wrong_login(&client, &stack, ip).await, 401);
            }
            wait_for_status(&client, &stack, ip, 403).await;
            eventually(
                Duration::from_secs(10),
                &format!("ban {offence} in ban_history"),
                || async { (db.count(&conn, "ban_history").await == offence).then_some(()) },
            )
            .await;
            // No reload within the test: the web instance lets the ban lapse on its own.
            wait_for_status(&client, &stack, ip, 200).await;
        }
        let durations = db
            .count(
                &conn,
                "ban_history WHERE ip_address = '198.51.100.90' AND rule = 'guess' \
                 AND ((duration_secs = 2 AND id = (SELECT MIN(id) FROM ban_history)) \
                   OR (duration_secs = 4 AND id = (SELECT MAX(id) FROM ban_history)))",
            )
            .await;
        assert_eq!(durations, 2, "the first ban 2 s, the second 4 s");
        // The web lifted the ban at its stored expiry (to the microsecond), not before.
        let (_, json, _) = iptrack(&stack, &["blocked", "--json"]);
        assert_eq!(json.trim(), "[]", "both bans are over");
        // Seconds apart, within one window: one incident that went on, both offences counted.
        assert_eq!(
            db.count(
                &conn,
                "suspicious_ip WHERE rule = 'guess' AND request_count = 6"
            )
            .await,
            1
        );
    }
);

both_backends!(
    a_dry_run_rule_flags_without_blocking,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let stack = quick_stack(&db, &redis).with(
            "IPTRACK_DETECT_RULES",
            "probe=GET /wp-admin/* status=4xx count=3 window=1m ban=1h dry-run",
        );
        let _web = Service::start("iptrack-web", &[], &stack.env);
        let _worker = Service::start("iptrack-worker", &[], &stack.env);
        stack.wait_until_listening().await;
        let client = reqwest::Client::new();
        // The canonical path: every spelling the router merges counts for the rule.
        for path in ["/wp-admin/x", "/wp-%61dmin/y", "/wp-admin"] {
            assert_eq!(get(&client, &stack, "198.51.100.91", path).await, 404);
        }
        let conn = db.connect().await;
        eventually(Duration::from_secs(10), "the flag", || async {
            (db.count(
                &conn,
                "suspicious_ip WHERE ip_address = '198.51.100.91' AND rule = 'probe'",
            )
            .await
                == 1)
                .then_some(())
        })
        .await;
        assert_eq!(db.count(&conn, "blocked_ip").await, 0);
        assert_eq!(db.count(&conn, "ban_history").await, 0);
        assert_eq!(status_for(&client, &stack, "198.51.100.91").await, 200);
    }
);

both_backends!(
    two_workers_count_each_request_once_and_fire_exactly_at_the_threshold,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        // One event per batch, so the requests are spread over both workers' jobs.
        let stack = quick_stack(&db, &redis)
            .with("IPTRACK_BATCH_MAX_EVENTS", "1")
            .with("IPTRACK_WORKER_CONCURRENCY", "2")
            .with(
                "IPTRACK_DETECT_RULES",
                "exact=GET /probe/* status=404 count=20 window=5m ban=1h",
            );
        let _web = Service::start("iptrack-web", &[], &stack.env);
        let _workers = [
            Service::start("iptrack-worker", &[], &stack.env),
            Service::start("iptrack-worker", &[], &stack.env),
        ];
        stack.wait_until_listening().await;
        let client = reqwest::Client::new();
        let ip = "203.0.113.95";
        let requests = (0..19).map(|i| {
            let client = client.clone();
            let stack = &stack;
            async move { get(&client, stack, ip, &format!("/probe/{i}")).await }
        });
        let statuses = futures::future::join_all(requests).await;
        assert!(statuses.iter().all(|&s| s == 404), "{statuses:?}");

        // All 19 counted, once each, by whichever worker wrote them.
        let mut conn = redis.connection().await;
        let counter = format!("{}:detect:count:exact:{ip}", redis.prefix);
        eventually(Duration::from_secs(15), "19 requests counted", || {
            let (mut conn, counter) = (conn.clone(), counter.clone());
            async move { (conn.zcard::<_, u64>(&counter).await.unwrap() == 19).then_some(()) }
        })
        .await;
        let db_conn = db.connect().await;
        assert_eq!(
            db.count(&db_conn, "request_log WHERE ip_address = '203.0.113.95'")
                .await,
            19
        );
        assert_eq!(db.count(&db_conn, "suspicious_ip").await, 0, "19 < 20");
        assert_eq!(status_for(&client, &stack, ip).await, 200);

        assert_eq!(get(&client, &stack, ip, "/probe/19").await, 404);
        wait_for_status(&client, &stack, ip, 403).await;
        eventually(Duration::from_secs(10), "one flag of 20", || async {
            (db.count(
                &db_conn,
                "suspicious_ip WHERE rule = 'exact' AND request_count = 20",
            )
            .await
                == 1)
                .then_some(())
        })
        .await;
        // The crossing emptied the counter; one ban, one flag.
        assert!(!conn.exists::<_, bool>(&counter).await.unwrap());
        assert_eq!(db.count(&db_conn, "ban_history").await, 1);
        assert_eq!(db.count(&db_conn, "suspicious_ip").await, 1);
    }
);

#[test]
fn a_bad_detection_rule_stops_every_process_with_one_line_naming_it() {
    for name in [
        "iptrack-web",
        "iptrack-worker",
        "iptrack-scheduler",
        "iptrack",
    ] {
        let mut command = Command::new(binary(name));
        if name == "iptrack" {
            command.arg("migrate");
        }
        let output = command
            .env_clear()
            .env(
                "IPTRACK_DETECT_RULES",
                "ok=* /x count=1 window=1m; brute-force=POST /login count=0 window=5m",
            )
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{name} exit status");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{name} printed: {stderr}");
        assert!(
            stderr.contains("IPTRACK_DETECT_RULES") && stderr.contains("rule \"brute-force\""),
            "{name} printed: {stderr}"
        );
    }
}
