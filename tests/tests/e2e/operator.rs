//! Operator traffic is not site traffic (issue 16, "The operator flags and locks out
//! themselves"): the admin API, the dashboard, `/metrics`, `/healthz` and `/readyz` are
//! never logged, never counted by a rule, never refused by the blocklist (the API keeps
//! its token); and with `IPTRACK_ADMIN_BIND` they live on a listener of their own.

use std::time::Duration;

use iptrack_tests::{TestDb, TestRedis, both_backends, eventually, free_port, process::Service};
use serde_json::json;

use crate::{ADMIN_TOKEN, Stack, iptrack};

/// What the dashboard fetches on each refresh, its own files, and the other operator
/// endpoints.
fn operator_paths() -> Vec<String> {
    let until = chrono::Utc::now();
    let since = until - chrono::Duration::hours(1);
    vec![
        format!(
            "/api/v1/stats?since={}&until={}",
            since.format("%Y-%m-%dT%H:%M:%SZ"),
            until.format("%Y-%m-%dT%H:%M:%SZ")
        ),
        "/api/v1/suspicious?limit=50".to_owned(),
        "/api/v1/blocked".to_owned(),
        "/api/v1/meta".to_owned(),
        // The views' own calls (issue 21): an address page, the requests view, countries.
        format!(
            "/api/v1/addresses/203.0.113.1?since={}",
            since.format("%Y-%m-%dT%H:%M:%SZ")
        ),
        "/api/v1/logs?network=203.0.113.0%2F24&limit=100".to_owned(),
        "/api/v1/countries".to_owned(),
        "/dashboard".to_owned(),
        "/dashboard/app.js".to_owned(),
        "/dashboard/views/countries.js".to_owned(),
        "/dashboard/vendor/countries-110m.json".to_owned(),
        "/metrics".to_owned(),
        "/healthz".to_owned(),
        "/readyz".to_owned(),
    ]
}

/// `GET base + path` with the admin token from `ip` (via the trusted proxy); the status.
async fn operator_get(client: &reqwest::Client, base: &str, path: &str, ip: &str) -> u16 {
    client
        .get(format!("{base}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .header("x-forwarded-for", ip)
        .send()
        .await
        .expect("request failed")
        .status()
        .as_u16()
}

both_backends!(
    dashboard_polling_is_neither_logged_nor_limited_nor_flagged,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        // A rule over every path, a low volume threshold: had operator traffic counted,
        // polling would be refused by the sixth call and flagged for volume.
        let stack = Stack::new(&db, &redis)
            .with("IPTRACK_ADMIN_TOKEN", ADMIN_TOKEN)
            .with("IPTRACK_RATE_LIMITS", "all=* /* anon=5 user=5 window=60s")
            .with("IPTRACK_FLAG_THRESHOLD", "5")
            .with("IPTRACK_BATCH_MAX_WAIT_MS", "20");
        let _web = Service::start("iptrack-web", &[], &stack.env);
        let _worker = Service::start("iptrack-worker", &[], &stack.env);
        stack.wait_until_listening().await;
        let client = reqwest::Client::new();
        let base = stack.url("");
        let site = |path: &'static str| {
            client
                .get(stack.url(path))
                .header("x-forwarded-for", "203.0.113.1")
                .send()
        };

        assert_eq!(site("/").await.unwrap().status().as_u16(), 200);
        let mut polled = 0;
        for _ in 0..10 {
            for path in operator_paths() {
                let status = operator_get(&client, &base, &path, "198.51.100.9").await;
                assert_eq!(status, 200, "GET {path}");
                polled += 1;
            }
        }
        assert_eq!(site("/after").await.unwrap().status().as_u16(), 404);

        // Both site requests are stored; the polls, in between, are not.
        let conn = db.connect().await;
        eventually(
            Duration::from_secs(20),
            "the site requests' rows",
            || async {
                (db.count(&conn, "request_log WHERE ip_address = '203.0.113.1'")
                    .await
                    == 2)
                    .then_some(())
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            db.count(&conn, "request_log WHERE ip_address = '198.51.100.9'")
                .await,
            0,
            "{polled} operator requests"
        );
        assert_eq!(db.count(&conn, "request_log").await, 2);

        let (code, stdout, stderr) = iptrack(&stack, &["flag-suspicious"]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        let done_key = format!("{}:flag-suspicious-ips:done", redis.prefix);
        let mut redis_conn = redis.connection().await;
        eventually(Duration::from_secs(20), "the flag job", || {
            let (mut redis_conn, done_key) = (redis_conn.clone(), done_key.clone());
            async move {
                let done: u64 = redis::AsyncCommands::scard(&mut redis_conn, done_key)
                    .await
                    .unwrap();
                (done == 1).then_some(())
            }
        })
        .await;
        assert_eq!(db.count(&conn, "suspicious_ip").await, 0);
        let _: () = redis::AsyncCommands::ping(&mut redis_conn).await.unwrap();
    }
);

both_backends!(
    a_blocked_operator_still_reaches_the_api_and_dashboard_and_can_lift_the_block,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let mut stack = Stack::new(&db, &redis).with("IPTRACK_ADMIN_TOKEN", ADMIN_TOKEN);
        let _web = stack.serve_web().await;
        let client = reqwest::Client::new();
        // No forwarding header: the client is the TCP peer, 127.0.0.1, the operator.
        let response = client
            .post(stack.url("/api/v1/blocked"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"address": "127.0.0.1", "reason": "the operator blocks themselves"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        eventually(Duration::from_secs(10), "the block to apply", || async {
            let status = client.get(stack.url("/")).send().await.unwrap().status();
            (status == 403).then_some(())
        })
        .await;

        for path in operator_paths() {
            let status = client
                .get(stack.url(&path))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status.as_u16(), 200, "GET {path} while blocked");
        }
        // Still token-protected.
        let status = client
            .get(stack.url("/api/v1/blocked"))
            .bearer_auth("a-wrong-token-0123456789")
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 401);

        let response = client
            .delete(stack.url("/api/v1/blocked?address=127.0.0.1"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 204);
        eventually(Duration::from_secs(10), "the block to lift", || async {
            let status = client.get(stack.url("/")).send().await.unwrap().status();
            (status == 200).then_some(())
        })
        .await;
    }
);

/// `iptrack-web` and `iptrack up` alike: with `IPTRACK_ADMIN_BIND` the operator endpoints
/// answer on the admin port only, and a block of the operator's address does not reach it.
async fn the_admin_listener_serves_operators_only(up: bool) {
    let (db, redis) = (
        TestDb::new(iptrack_tests::Backend::Sqlite).await,
        TestRedis::new(),
    );
    let mut stack = Stack::new(&db, &redis)
        .with("IPTRACK_ADMIN_TOKEN", ADMIN_TOKEN)
        .with("IPTRACK_ADMIN_BIND", &format!("127.0.0.1:{}", free_port()));
    // `iptrack up` as the process it is; the reference server's own case in-process.
    let (_up, _web, admin_port) = if up {
        let process = Service::start("iptrack", &["up"], &stack.env);
        stack.wait_until_listening().await;
        let port = stack.env["IPTRACK_ADMIN_BIND"].rsplit(':').next().unwrap();
        (Some(process), None, port.parse::<u16>().unwrap())
    } else {
        let web = stack.serve_web().await;
        let port = web.admin_port.expect("no admin listener");
        (None, Some(web), port)
    };
    let admin = format!("http://127.0.0.1:{admin_port}");
    iptrack_tests::process::wait_until_listening(&admin, Duration::from_secs(30)).await;
    let client = reqwest::Client::new();
    let public = stack.url("");

    for path in operator_paths() {
        let status = operator_get(&client, &admin, &path, "198.51.100.9").await;
        assert_eq!(status, 200, "admin port: GET {path}");
        let status = operator_get(&client, &public, &path, "198.51.100.9").await;
        let health = path == "/healthz" || path == "/readyz";
        assert_eq!(
            status,
            if health { 200 } else { 404 },
            "public port: GET {path}"
        );
    }
    assert_eq!(
        operator_get(&client, &public, "/", "198.51.100.9").await,
        200
    );

    // The operator blocks their own address: the site refuses it, the admin port not.
    let response = client
        .post(format!("{admin}/api/v1/blocked"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"address": "127.0.0.1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    eventually(Duration::from_secs(10), "the block to apply", || async {
        let status = client.get(stack.url("/")).send().await.unwrap().status();
        (status == 403).then_some(())
    })
    .await;
    let status = client
        .get(format!("{admin}/dashboard"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 200);
    let status = client
        .get(format!("{admin}/api/v1/blocked"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 401, "the admin port still wants the token");
    let response = client
        .delete(format!("{admin}/api/v1/blocked?address=127.0.0.1"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_admin_bind_iptrack_web_serves_operators_on_their_own_port() {
    the_admin_listener_serves_operators_only(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_admin_bind_iptrack_up_serves_operators_on_their_own_port() {
    the_admin_listener_serves_operators_only(true).await;
}
