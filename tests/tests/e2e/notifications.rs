//! Webhook notices of new flags and bans, with the real binaries and a fake receiver
//! (wiremock) in the test. Flags come from the hourly job (`iptrack flag-suspicious`), so
//! these tests do not depend on the streaming rules.

use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use iptrack_core::jobs::{FLAG_SUSPICIOUS_IPS_QUEUE, NOTIFICATIONS_QUEUE};
use iptrack_tests::{Backend, TestDb, TestRedis, both_backends, eventually, process::Service};
use redis::AsyncCommands;
use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

use crate::{Stack, iptrack};

/// The receiver's path: webhook URLs carry their secret in the path (Slack's do).
const HOOK_PATH: &str = "/services/T000/B000/s3cr3t-hook-token";
const SECRET: &str = "signing-secret-for-the-test";

/// A stack whose workers deliver to `receiver`.
fn notifying_stack(db: &TestDb, redis: &TestRedis, receiver: &MockServer) -> Stack {
    Stack::new(db, redis).with(
        "IPTRACK_WEBHOOK_URL",
        &format!("{}{HOOK_PATH}", receiver.uri()),
    )
}

/// `n` requests to `path` from `ip` (through the trusted-proxy header).
async fn requests_from(stack: &Stack, ip: &str, verb: &str, target: &str, n: usize) {
    let client = reqwest::Client::new();
    for _ in 0..n {
        let request = match verb {
            "POST" => client.post(stack.url(target)),
            _ => client.get(stack.url(target)),
        };
        request.header("x-forwarded-for", ip).send().await.unwrap();
    }
}

/// Waits for `rows` request_log rows.
async fn rows_stored(db: &TestDb, rows: i64) {
    let conn = db.connect().await;
    eventually(Duration::from_secs(20), &format!("{rows} rows"), || async {
        (db.count(&conn, "request_log").await >= rows).then_some(())
    })
    .await;
}

/// `iptrack flag-suspicious` for the hour ending at `window_end` (RFC 3339).
fn flag_now(stack: &Stack, window_end: &str) {
    let (code, stdout, stderr) = iptrack(stack, &["flag-suspicious", "--window-end", window_end]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

/// Waits until the receiver got `n` requests; returns them.
async fn received(receiver: &MockServer, n: usize, limit: Duration) -> Vec<wiremock::Request> {
    eventually(limit, &format!("{n} webhook requests"), || async {
        let got = receiver.received_requests().await.unwrap_or_default();
        (got.len() >= n).then_some(got)
    })
    .await
}

/// Waits until `n` jobs of `queue` are done.
async fn jobs_done(redis: &TestRedis, queue_name: &str, n: u64) {
    let conn = redis.connection().await;
    let done = format!("{}:{queue_name}:done", redis.prefix);
    eventually(
        Duration::from_secs(20),
        &format!("{n} {queue_name} jobs done"),
        || {
            let (mut conn, done) = (conn.clone(), done.clone());
            async move { (conn.scard::<_, u64>(done).await.unwrap() >= n).then_some(()) }
        },
    )
    .await;
}

fn body(request: &wiremock::Request) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}

fn header<'r>(request: &'r wiremock::Request, name: &str) -> &'r str {
    request
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// `sha256=<hex>` of the body, computed here independently of the worker's code.
fn expected_signature(body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

both_backends!(
    each_new_flag_and_ban_reaches_the_webhook_exactly_once_with_two_workers_running,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let receiver = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(HOOK_PATH))
            .respond_with(ResponseTemplate::new(200))
            .mount(&receiver)
            .await;
        let stack = notifying_stack(&db, &redis, &receiver)
            .with("IPTRACK_WEBHOOK_SECRET", SECRET)
            .with("IPTRACK_AUTO_BLOCK_SECS", "600")
            // Geolocation on, so the notice is located from the workers' cache. The
            // provider is never asked: documentation addresses are not looked up.
            .with("IPTRACK_GEO_PROVIDER", "http")
            .with("IPTRACK_GEO_HTTP_URL", &receiver.uri());
        // What a geolocate job would have cached for the first address.
        let mut conn = redis.connection().await;
        let _: () = conn
            .set_ex(
                format!("{}:geo:loc:203.0.113.60", redis.prefix),
                json!({"Found": {"country_code": "NL", "country": "Netherlands", "city": "Amsterdam"}})
                    .to_string(),
                3600,
            )
            .await
            .unwrap();
        let _workers = [
            Service::start("iptrack-worker", &[], &stack.env),
            Service::start("iptrack-worker", &[], &stack.env),
        ];
        let _web = Service::start("iptrack-web", &[], &stack.env);
        stack.wait_until_listening().await;
        requests_from(&stack, "203.0.113.60", "POST", "/login", 3).await;
        requests_from(&stack, "2001:db8::61", "GET", "/admin", 2).await;
        rows_stored(&db, 5).await;

        // The same window twice: two jobs, which the two workers may well run at once.
        // Both find the two incidents this window started and make both blocks; the
        // event keys let one notice per event through.
        let window_end = (Utc::now() + chrono::Duration::minutes(1)).to_rfc3339();
        flag_now(&stack, &window_end);
        flag_now(&stack, &window_end);
        jobs_done(&redis, FLAG_SUSPICIOUS_IPS_QUEUE, 2).await;
        let got = received(&receiver, 4, Duration::from_secs(20)).await;
        // Let a duplicate land, if there were one.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let got_later = receiver.received_requests().await.unwrap();
        assert_eq!(
            got_later.len(),
            4,
            "{:#?}",
            got_later.iter().map(body).collect::<Vec<_>>()
        );

        let mut notices: Vec<Value> = got.iter().map(body).collect();
        notices.sort_by_key(|n| (n["kind"].to_string(), n["address"].to_string()));
        let summary: Vec<(&str, &str, &str)> = notices
            .iter()
            .map(|n| {
                (
                    n["kind"].as_str().unwrap(),
                    n["address"].as_str().unwrap(),
                    n["rule"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("ban", "2001:db8::61", "sensitive-path"),
                ("ban", "203.0.113.60", "sensitive-path"),
                ("flag", "2001:db8::61", "sensitive-path"),
                ("flag", "203.0.113.60", "sensitive-path"),
            ]
        );
        let flag = &notices[3];
        assert_eq!(
            flag["reason"],
            "3 requests to sensitive paths in 1h (e.g. /login)"
        );
        assert_eq!(
            (flag["count"].as_u64(), flag["window_secs"].as_u64()),
            (Some(3), Some(3600))
        );
        assert!(flag["expires_at"].is_null() && flag["at"].is_string());
        assert_eq!(
            (&flag["country_code"], &flag["country"], &flag["city"]),
            (&json!("NL"), &json!("Netherlands"), &json!("Amsterdam"))
        );
        // Nothing cached for the other address: unknown, not made up.
        assert!(notices[2]["country"].is_null() && notices[2]["city"].is_null());
        assert_eq!(notices[2]["count"], 2);
        let ban = &notices[1];
        let expires: chrono::DateTime<Utc> = ban["expires_at"].as_str().unwrap().parse().unwrap();
        let remaining = expires - Utc::now();
        assert!(
            remaining > chrono::Duration::seconds(540)
                && remaining <= chrono::Duration::seconds(600),
            "{remaining}"
        );
        let mut ids: Vec<&str> = notices.iter().map(|n| n["id"].as_str().unwrap()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 4, "one id per event");

        for request in &got {
            assert_eq!(header(request, "content-type"), "application/json");
            assert_eq!(
                header(request, "x-iptrack-signature"),
                expected_signature(&request.body)
            );
            assert_eq!(header(request, "x-iptrack-notice-id"), body(request)["id"]);
        }

        // The automatic blocks name the rule that flagged the address.
        let conn = db.connect().await;
        assert_eq!(
            db.count(&conn, "blocked_ip WHERE source = 'rule:sensitive-path'")
                .await,
            2
        );
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_twice_with_503_gets_the_notice_once_it_recovers() {
    let (db, redis) = (TestDb::new(Backend::Sqlite).await, TestRedis::new());
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let stack = notifying_stack(&db, &redis, &receiver);
    let _worker = Service::start("iptrack-worker", &[], &stack.env);
    let _web = Service::start("iptrack-web", &[], &stack.env);
    stack.wait_until_listening().await;
    requests_from(&stack, "203.0.113.70", "GET", "/admin", 1).await;
    rows_stored(&db, 1).await;
    flag_now(
        &stack,
        &(Utc::now() + chrono::Duration::minutes(1)).to_rfc3339(),
    );

    // 503, back-off 1 s, 503, back-off 2 s, accepted.
    let got = received(&receiver, 3, Duration::from_secs(30)).await;
    jobs_done(&redis, NOTIFICATIONS_QUEUE, 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got_later = receiver.received_requests().await.unwrap();
    assert_eq!(got_later.len(), 3, "delivered, then left alone");
    let ids: Vec<&str> = got
        .iter()
        .map(|r| header(r, "x-iptrack-notice-id"))
        .collect();
    assert!(
        !ids[0].is_empty() && ids.iter().all(|id| *id == ids[0]),
        "{ids:?}"
    );
    assert!(
        got.iter().all(|r| r.body == got[0].body),
        "the same notice each time"
    );
    assert!(
        got[2].headers.get("x-iptrack-signature").is_none(),
        "no secret, no signature"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slack_format_posts_one_text_field() {
    let (db, redis) = (TestDb::new(Backend::Postgres).await, TestRedis::new());
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&receiver)
        .await;
    let stack = notifying_stack(&db, &redis, &receiver).with("IPTRACK_WEBHOOK_FORMAT", "slack");
    let _worker = Service::start("iptrack-worker", &[], &stack.env);
    let _web = Service::start("iptrack-web", &[], &stack.env);
    stack.wait_until_listening().await;
    requests_from(&stack, "203.0.113.80", "GET", "/admin/users", 2).await;
    rows_stored(&db, 2).await;
    flag_now(
        &stack,
        &(Utc::now() + chrono::Duration::minutes(1)).to_rfc3339(),
    );

    let got = received(&receiver, 1, Duration::from_secs(20)).await;
    let message = body(&got[0]);
    assert_eq!(
        message,
        json!({"text": "iptrack: flagged 203.0.113.80, rule sensitive-path: \
                        2 requests to sensitive paths in 1h (e.g. /admin/users)"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_holds_up_no_other_job() {
    let (db, redis) = (TestDb::new(Backend::Sqlite).await, TestRedis::new());
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(600)))
        .mount(&receiver)
        .await;
    let stack = notifying_stack(&db, &redis, &receiver)
        .with("IPTRACK_WEBHOOK_TIMEOUT_MS", "500")
        .with("IPTRACK_WEBHOOK_RETRIES", "10");
    let _worker = Service::start("iptrack-worker", &[], &stack.env);
    let _web = Service::start("iptrack-web", &[], &stack.env);
    stack.wait_until_listening().await;
    requests_from(&stack, "203.0.113.90", "GET", "/admin", 1).await;
    rows_stored(&db, 1).await;
    flag_now(
        &stack,
        &(Utc::now() + chrono::Duration::minutes(1)).to_rfc3339(),
    );
    // The delivery is under way, its attempts timing out one after the other.
    received(&receiver, 2, Duration::from_secs(20)).await;

    // Meanwhile the worker process goes on writing request logs and flagging.
    requests_from(&stack, "203.0.113.91", "GET", "/admin", 20).await;
    rows_stored(&db, 21).await;
    flag_now(
        &stack,
        &(Utc::now() + chrono::Duration::minutes(2)).to_rfc3339(),
    );
    jobs_done(&redis, FLAG_SUSPICIOUS_IPS_QUEUE, 2).await;
    let conn = db.connect().await;
    assert_eq!(db.count(&conn, "suspicious_ip").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_refusing_with_404_is_asked_once_and_not_again() {
    let (db, redis) = (TestDb::new(Backend::Sqlite).await, TestRedis::new());
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        // A long answer: only its first bytes are read for the log.
        .respond_with(ResponseTemplate::new(404).set_body_string("no such hook ".repeat(100_000)))
        .mount(&receiver)
        .await;
    let stack = notifying_stack(&db, &redis, &receiver);
    let _worker = Service::start("iptrack-worker", &[], &stack.env);
    let _web = Service::start("iptrack-web", &[], &stack.env);
    stack.wait_until_listening().await;
    requests_from(&stack, "203.0.113.95", "GET", "/admin", 1).await;
    rows_stored(&db, 1).await;
    flag_now(
        &stack,
        &(Utc::now() + chrono::Duration::minutes(1)).to_rfc3339(),
    );

    received(&receiver, 1, Duration::from_secs(20)).await;
    jobs_done(&redis, NOTIFICATIONS_QUEUE, 1).await;
    // Longer than the first back-offs of both the job and apalis.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(receiver.received_requests().await.unwrap().len(), 1);
}

#[test]
fn a_webhook_whose_certificates_cannot_be_read_stops_the_worker_with_one_line() {
    let output = std::process::Command::new(iptrack_tests::process::binary("iptrack-worker"))
        .env_clear()
        .env(
            "IPTRACK_WEBHOOK_URL",
            "https://hooks.example.com/services/s3cr3t",
        )
        .env("IPTRACK_GEO_HTTP_CA_FILE", "/nonexistent/ca.pem")
        .env("IPTRACK_GEO_PROVIDER", "none")
        .env("DATABASE_URL", "sqlite::memory:")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("IPTRACK_GEO_HTTP_CA_FILE"), "{stderr}");
    assert!(!stderr.contains("s3cr3t"), "{stderr}");
}
