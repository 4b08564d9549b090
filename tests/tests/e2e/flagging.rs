//! Flagging on demand from the CLI, and listing the flags.

use std::time::Duration;

use redis::AsyncCommands;

use iptrack_tests::{TestDb, TestRedis, both_backends, eventually, process::Service};

use crate::{Stack, iptrack};

both_backends!(
    flag_suspicious_on_demand_flags_what_was_just_logged,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let stack = Stack::new(&db, &redis);
        let _web = Service::start("iptrack-web", &[], &stack.env);
        let _worker = Service::start("iptrack-worker", &[], &stack.env);
        stack.wait_until_listening().await;
        let client = reqwest::Client::new();
        for _ in 0..3 {
            client
                .post(stack.url("/login"))
                .header("x-forwarded-for", "203.0.113.60")
                .send()
                .await
                .unwrap();
        }
        let conn = db.connect().await;
        eventually(Duration::from_secs(10), "3 rows", || async {
            (db.count(&conn, "request_log").await == 3).then_some(())
        })
        .await;

        let (code, stdout, _) = iptrack(&stack, &["flag-suspicious"]);
        assert_eq!(code, 0, "{stdout}");
        assert!(
            stdout.starts_with("enqueued flag-suspicious-ips for ["),
            "{stdout}"
        );
        eventually(Duration::from_secs(10), "a flag", || async {
            (db.count(&conn, "suspicious_ip").await == 1).then_some(())
        })
        .await;

        // Again over an overlapping window (it ends now, a little later): the same
        // incident, not a second flag.
        let (code, stdout, _) = iptrack(&stack, &["flag-suspicious"]);
        assert_eq!(code, 0, "{stdout}");
        let mut redis_conn = redis.connection().await;
        let done_key = format!("{}:flag-suspicious-ips:done", redis.prefix);
        let jobs_done = |n: u64| {
            let (redis_conn, done_key) = (redis_conn.clone(), done_key.clone());
            move || {
                let (mut redis_conn, done_key) = (redis_conn.clone(), done_key.clone());
                async move { (redis_conn.scard::<_, u64>(done_key).await.unwrap() == n).then_some(()) }
            }
        };
        eventually(Duration::from_secs(10), "both flag jobs done", jobs_done(2)).await;
        assert_eq!(db.count(&conn, "suspicious_ip").await, 1);
        assert_eq!(
            db.count(&conn, "suspicious_ip WHERE request_count = 3")
                .await,
            1
        );

        let (code, stdout, _) = iptrack(&stack, &["suspicious"]);
        assert_eq!(code, 0);
        assert!(stdout.contains("203.0.113.60"), "{stdout}");
        assert!(stdout.contains("first seen (UTC)"), "{stdout}");
        assert!(
            stdout.contains("3 requests to sensitive paths in 1h (e.g. /login)"),
            "{stdout}"
        );
        let (_, json, _) = iptrack(&stack, &["suspicious", "--json"]);
        let flags: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(flags[0]["ip_address"], "203.0.113.60");
        assert_eq!(flags[0]["rule"], "sensitive-path");
        assert_eq!(flags[0]["request_count"], 3);
        assert!(flags[0]["first_seen"].is_string() && flags[0]["last_seen"].is_string());

        // A window that ended before the requests flags nothing new.
        let (code, _, _) = iptrack(
            &stack,
            &["flag-suspicious", "--window-end", "2020-01-01T00:00:00Z"],
        );
        assert_eq!(code, 0);
        eventually(
            Duration::from_secs(10),
            "all three flag jobs done",
            jobs_done(3),
        )
        .await;
        assert_eq!(db.count(&conn, "suspicious_ip").await, 1);
        let _: () = redis_conn.ping().await.unwrap();
    }
);

both_backends!(
    a_scheduled_window_counts_every_logged_request_once,
    |backend| async move {
        use chrono::{DurationRound, TimeDelta, Timelike, Utc};

        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let stack = Stack::new(&db, &redis);
        let _web = Service::start("iptrack-web", &[], &stack.env);
        let _worker = Service::start("iptrack-worker", &[], &stack.env);
        stack.wait_until_listening().await;
        // All requests in one hour, however close to its end the test starts.
        let now = Utc::now();
        if now.minute() == 59 && now.second() >= 45 {
            tokio::time::sleep(Duration::from_secs(u64::from(75 - now.second()))).await;
        }
        let client = reqwest::Client::new();
        for path in ["/admin/a", "/admin/b", "/items/1", "/admin", "/items/2"]
            .into_iter()
            .chain(["/admin/c"; 5])
        {
            client
                .get(stack.url(path))
                .header("x-forwarded-for", "203.0.113.61")
                .send()
                .await
                .unwrap();
        }
        let conn = db.connect().await;
        eventually(Duration::from_secs(10), "10 rows", || async {
            (db.count(&conn, "request_log").await == 10).then_some(())
        })
        .await;
        // The worker folds pending counts on its own (PostgreSQL, every 10 s), nobody
        // reading them.
        eventually(Duration::from_secs(30), "the counts", || async {
            (db.count(
                &conn,
                "request_count WHERE section = '/admin' AND requests = 8",
            )
            .await
                == 1)
                .then_some(())
        })
        .await;
        if backend == iptrack_tests::Backend::Postgres {
            assert_eq!(db.count(&conn, "request_count_pending").await, 0);
        }

        // The scheduled window (whole hours) reads those counts: 8 sensitive requests.
        let window_end = (Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap()
            + TimeDelta::hours(1))
        .to_rfc3339();
        let (code, stdout, _) = iptrack(&stack, &["flag-suspicious", "--window-end", &window_end]);
        assert_eq!(code, 0, "{stdout}");
        eventually(Duration::from_secs(10), "a flag", || async {
            (db.count(
                &conn,
                "suspicious_ip WHERE ip_address = '203.0.113.61' \
                 AND rule = 'sensitive-path' AND request_count = 8",
            )
            .await
                == 1)
                .then_some(())
        })
        .await;
    }
);
