//! Rate limits across real web processes: one budget shared through Redis, the login's
//! session accepted by every instance, refused requests in the request log.

use std::time::Duration;

use iptrack_tests::{TestDb, TestRedis, both_backends, eventually, process::Service};

use crate::Stack;

const SESSION_KEY: &str = "a session key shared by both web instances of the test";

/// `POST /login` at `stack` from `ip` (claimed via the trusted proxy), with `cookie` if
/// given. Returns the status and the session cookie the response sets, if any.
async fn post_login(
    client: &reqwest::Client,
    stack: &Stack,
    ip: &str,
    credentials: (&str, &str),
    cookie: Option<&str>,
) -> (u16, Option<String>) {
    let mut request = client
        .post(stack.url("/login"))
        .header("x-forwarded-for", ip)
        .form(&[("username", credentials.0), ("password", credentials.1)]);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.expect("request failed");
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    (response.status().as_u16(), cookie)
}

both_backends!(
    two_web_processes_share_one_budget_and_log_the_refusals,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let stack = |db, redis| {
            Stack::new(db, redis)
                .with("IPTRACK_DEMO_USER", "alice:correct horse")
                .with("IPTRACK_SESSION_KEY", SESSION_KEY)
                .with("IPTRACK_BATCH_MAX_WAIT_MS", "20")
        };
        let (first, second) = (stack(&db, &redis), stack(&db, &redis));
        let _webs = [
            Service::start("iptrack-web", &[], &first.env),
            Service::start("iptrack-web", &[], &second.env),
        ];
        let _worker = Service::start("iptrack-worker", &[], &first.env);
        first.wait_until_listening().await;
        second.wait_until_listening().await;
        let client = reqwest::Client::new();
        let wrong = ("alice", "wrong");

        // Anonymous: five posts from one address across both instances, then 429 on both.
        let mut statuses = Vec::new();
        for i in 0..7 {
            let web = if i % 2 == 0 { &first } else { &second };
            statuses.push(
                post_login(&client, web, "203.0.113.10", wrong, None)
                    .await
                    .0,
            );
        }
        assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429]);
        let other = post_login(&client, &first, "203.0.113.11", wrong, None).await;
        assert_eq!(other.0, 401, "another address is unaffected");

        // A real login on one instance; its session works on the other, and the user gets
        // ten posts a minute whatever the address.
        let (status, cookie) = post_login(
            &client,
            &first,
            "203.0.113.20",
            ("alice", "correct horse"),
            None,
        )
        .await;
        assert_eq!(status, 200);
        let cookie = cookie.expect("the login sets a session cookie");
        let mut statuses = Vec::new();
        for i in 0..11 {
            let web = if i % 2 == 0 { &second } else { &first };
            let ip = format!("198.51.100.{}", i + 1);
            statuses.push(post_login(&client, web, &ip, wrong, Some(&cookie)).await.0);
        }
        let mut expected = vec![401; 10];
        expected.push(429);
        assert_eq!(statuses, expected);

        let metrics = client
            .get(second.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(metrics.contains("iptrack_rate_limited_total "), "{metrics}");
        assert!(
            metrics.contains("iptrack_rate_limit_fallback_active 0"),
            "{metrics}"
        );

        // The refusals are logged like any request, the user's with its user id.
        let conn = db.connect().await;
        eventually(
            Duration::from_secs(15),
            "429 rows and the session's 11 rows with its user id",
            || async {
                let anonymous = db
                    .count(
                        &conn,
                        "request_log WHERE ip_address = '203.0.113.10' AND status = 429",
                    )
                    .await;
                let user = db
                    .count(
                        &conn,
                        "request_log WHERE user_id = 'alice' AND status = 429 AND path = '/login'",
                    )
                    .await;
                // Every request of the session carries the user id. Counted in the wait: the
                // two instances' batches land separately, so the 429 row may come first.
                let session = db.count(&conn, "request_log WHERE user_id = 'alice'").await;
                (anonymous == 2 && user == 1 && session == 11).then_some(())
            },
        )
        .await;
    }
);

#[test]
fn a_bad_rate_limit_rule_stops_the_web_with_one_line_naming_the_variable() {
    let output = std::process::Command::new(iptrack_tests::process::binary("iptrack-web"))
        .env_clear()
        .env("IPTRACK_RATE_LIMITS", "login=POST /login anon=five")
        .env("IPTRACK_BIND", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("IPTRACK_RATE_LIMITS"), "{stderr}");
}
