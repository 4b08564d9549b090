//! The admin API's blocklist endpoints, through the reference server run in-process.

use std::time::Duration;

use iptrack_tests::{TestDb, TestRedis, both_backends, eventually};
use serde_json::{Value, json};

use crate::{Stack, admin_json};

use crate::ADMIN_TOKEN as TOKEN;

fn api_stack(db: &TestDb, redis: &TestRedis) -> Stack {
    Stack::new(db, redis)
        .with("IPTRACK_ADMIN_TOKEN", TOKEN)
        .with("IPTRACK_BLOCKLIST_RELOAD_SECS", "3600")
}

async fn status_for(client: &reqwest::Client, stack: &Stack, ip: &str) -> u16 {
    let response = client
        .get(stack.url("/"))
        .header("x-forwarded-for", ip)
        .send()
        .await;
    response.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_token_the_api_does_not_exist() {
    let (db, redis) = (
        TestDb::new(iptrack_tests::Backend::Sqlite).await,
        TestRedis::new(),
    );
    let mut stack = Stack::new(&db, &redis);
    let _web = stack.serve_web().await;
    let response = reqwest::Client::new()
        .get(stack.url("/api/v1/blocked"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_token_gets_401() {
    let (db, redis) = (
        TestDb::new(iptrack_tests::Backend::Sqlite).await,
        TestRedis::new(),
    );
    let mut stack = api_stack(&db, &redis);
    let _web = stack.serve_web().await;
    let client = reqwest::Client::new();
    let almost = format!("{}X", &TOKEN[..TOKEN.len() - 1]);
    for authorization in [
        None,
        Some("Bearer wrong".to_owned()),
        Some(format!("Basic {TOKEN}")),
        Some(format!("Bearer {almost}")),
    ] {
        let mut request = client.get(stack.url("/api/v1/blocked"));
        if let Some(value) = &authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{authorization:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "missing or wrong bearer token");
    }
    // HTTP auth schemes are case-insensitive (RFC 9110, section 11.1); tokens are not.
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let response = client
            .get(stack.url("/api/v1/blocked"))
            .header("authorization", format!("{scheme} {TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{scheme}");
    }
}

both_backends!(
    blocks_added_through_the_api_are_enforced_listed_and_removed,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let mut stack = api_stack(&db, &redis);
        let _web = stack.serve_web().await;
        let client = reqwest::Client::new();
        let blocked = stack.url("/api/v1/blocked");

        let response = client
            .post(&blocked)
            .bearer_auth(TOKEN)
            .json(&json!({"address": "203.0.113.70", "reason": "api test", "duration_secs": 600}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            (body["ip_address"].as_str(), body["reason"].as_str()),
            (Some("203.0.113.70"), Some("api test"))
        );
        assert!(body["expires_at"].is_string());
        eventually(Duration::from_secs(10), "the block to apply", || async {
            (status_for(&client, &stack, "203.0.113.70").await == 403).then_some(())
        })
        .await;

        // Again: an update, not a second row.
        let response = client
            .post(&blocked)
            .bearer_auth(TOKEN)
            .json(&json!({"address": "::ffff:203.0.113.70", "reason": "updated"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let list = admin_json(&client, &blocked).await;
        let list = list.as_array().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["reason"], "updated");
        assert!(list[0]["expires_at"].is_null());

        let response = client
            .delete(format!("{blocked}?address=203.0.113.70"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 204);
        eventually(Duration::from_secs(10), "the unblock to apply", || async {
            (status_for(&client, &stack, "203.0.113.70").await == 200).then_some(())
        })
        .await;
        let response = client
            .delete(format!("{blocked}?address=203.0.113.70"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 404);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "203.0.113.70 is not blocked");
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_400_or_413_with_a_message() {
    let (db, redis) = (
        TestDb::new(iptrack_tests::Backend::Sqlite).await,
        TestRedis::new(),
    );
    let mut stack = api_stack(&db, &redis);
    let _web = stack.serve_web().await;
    let client = reqwest::Client::new();
    let blocked = stack.url("/api/v1/blocked");
    let post_raw = |body: String| {
        client
            .post(&blocked)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (body, status, message) in [
        ("{not json".to_owned(), 400, "invalid JSON body"),
        (r#"{"address": 5}"#.to_owned(), 400, "invalid JSON body"),
        (
            r#"{"address": "1.2.3.4", "colour": "red"}"#.to_owned(),
            400,
            "unknown field",
        ),
        (
            r#"{"address": "203.0.113.7/24"}"#.to_owned(),
            400,
            "host bits set; did you mean 203.0.113.0/24?",
        ),
        (
            r#"{"address": "nonsense"}"#.to_owned(),
            400,
            "is not an IP address or a CIDR network",
        ),
        (
            r#"{"address": "1.2.3.4", "duration_secs": 0}"#.to_owned(),
            400,
            "duration_secs must be from 1",
        ),
        (
            r#"{"address": "1.2.3.4", "duration_secs": -5}"#.to_owned(),
            400,
            "duration_secs must be from 1",
        ),
        (
            format!(
                r#"{{"address": "1.2.3.4", "reason": "{}"}}"#,
                "x".repeat(600)
            ),
            400,
            "reason is longer than 500",
        ),
        (
            format!(
                r#"{{"address": "1.2.3.4", "reason": "{}"}}"#,
                "x".repeat(20_000)
            ),
            413,
            "larger than",
        ),
    ] {
        let response = post_raw(body.clone()).await.unwrap();
        assert_eq!(
            response.status().as_u16(),
            status,
            "{}",
            &body[..body.len().min(80)]
        );
        let error: Value = response.json().await.unwrap();
        let text = error["error"].as_str().unwrap_or_default();
        assert!(
            text.contains(message),
            "{} → {text}",
            &body[..body.len().min(80)]
        );
    }
    let response = client
        .post(&blocked)
        .bearer_auth(TOKEN)
        .body("address=1.2.3.4")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    for url in [blocked.clone(), format!("{blocked}?address=1.2.3.4/8")] {
        let response = client.delete(&url).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 400, "{url}");
        let error: Value = response.json().await.unwrap();
        assert!(error["error"].is_string());
    }
    // Nothing of that was stored.
    let list = admin_json(&client, &blocked).await;
    assert_eq!(list, json!([]));
}

/// Wrong tokens that share 0, half, all but one of the token's characters, or differ in
/// length only. Their timing is measured in `bench/src/bin/token_timing.rs`; here only the
/// answer is checked (timings on a shared CI machine are noise).
fn wrong_tokens() -> Vec<String> {
    let n = TOKEN.len();
    let flip = |c: char| if c == 'X' { 'Y' } else { 'X' };
    let with_prefix = |k: usize| {
        let rest: String = TOKEN[k..].chars().map(flip).collect();
        format!("{}{rest}", &TOKEN[..k])
    };
    vec![
        with_prefix(0),
        with_prefix(n / 2),
        with_prefix(n - 1),
        TOKEN[..n - 1].to_owned(),
        format!("{TOKEN}X"),
        TOKEN.to_uppercase(),
        String::new(),
        "X".repeat(4096),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_endpoint_refuses_every_wrong_token_and_changes_nothing() {
    let (db, redis) = (
        TestDb::new(iptrack_tests::Backend::Sqlite).await,
        TestRedis::new(),
    );
    let mut stack = api_stack(&db, &redis);
    let _web = stack.serve_web().await;
    let client = reqwest::Client::new();
    let response = client
        .post(stack.url("/api/v1/blocked"))
        .bearer_auth(TOKEN)
        .json(&json!({"address": "198.51.100.200", "reason": "secret reason"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let endpoints = [
        (reqwest::Method::GET, "/api/v1/blocked"),
        (reqwest::Method::POST, "/api/v1/blocked"),
        (
            reqwest::Method::DELETE,
            "/api/v1/blocked?address=198.51.100.200",
        ),
        (reqwest::Method::GET, "/api/v1/suspicious"),
        (reqwest::Method::GET, "/api/v1/logs"),
        (reqwest::Method::GET, "/api/v1/stats"),
        (reqwest::Method::GET, "/api/v1/meta"),
        (reqwest::Method::GET, "/api/v1/blocklist/sources"),
    ];
    let mut authorizations: Vec<Option<Vec<u8>>> = wrong_tokens()
        .into_iter()
        .map(|token| Some(format!("Bearer {token}").into_bytes()))
        .collect();
    authorizations.extend([
        None,
        Some(format!("bearer {}", TOKEN.to_uppercase()).into_bytes()),
        Some(format!("Bearer{TOKEN}").into_bytes()),
        Some(format!("Token {TOKEN}").into_bytes()),
        Some([b"Bearer ".as_slice(), TOKEN.as_bytes(), b"\xff"].concat()),
    ]);
    for (method, path) in &endpoints {
        for authorization in &authorizations {
            let mut request = client
                .request(method.clone(), stack.url(path))
                .json(&json!({"address": "203.0.113.9"}));
            if let Some(value) = authorization {
                request = request.header(
                    "authorization",
                    reqwest::header::HeaderValue::from_bytes(value).unwrap(),
                );
            }
            let response = request.send().await.unwrap();
            let shown = authorization.as_deref().map(<[u8]>::escape_ascii);
            assert_eq!(
                response.status().as_u16(),
                401,
                "{method} {path} with {:?}",
                shown.map(|s| s.to_string())
            );
        }
    }
    // The dashboard's files carry no data and need no token; its data is the API's.
    let page = client.get(stack.url("/dashboard")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let page = page.text().await.unwrap();
    assert!(
        !page.contains("198.51.100.200") && !page.contains("secret reason"),
        "the page itself holds no data"
    );
    // None of the refused POSTs blocked, none of the refused DELETEs unblocked.
    let list = admin_json(&client, &stack.url("/api/v1/blocked")).await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["ip_address"], "198.51.100.200");
}
