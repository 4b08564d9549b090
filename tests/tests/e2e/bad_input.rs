//! Hostile requests at the HTTP level (issue 10, "Bad input"): invalid UTF-8 in the path,
//! 64 KiB paths, a 100 KiB header, thousands of headers, sent over a raw TCP stream to the
//! real `iptrack-web`; then the admin API's malformed queries and bodies.

use std::time::Duration;

use iptrack_tests::{TestDb, TestRedis, both_backends, eventually, process::Service};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{Stack, admin_json};

/// How a raw request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Status(u16),
    /// The server closed (or reset) the connection without a status line.
    Closed,
}

impl Outcome {
    /// Served, refused with a 4xx, or closed: anything but a server error.
    fn is_clean(self) -> bool {
        match self {
            Outcome::Status(status) => status < 500,
            Outcome::Closed => true,
        }
    }
}

/// Writes `request` as is and reads the answer's status line (10 s at most).
pub async fn raw_request(port: u16, request: &[u8]) -> Outcome {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("cannot connect");
    // The server may answer and close before it has read everything (a refused head):
    // a failed write is then no failure of the test, the answer is what counts.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer and no close within 10 s");
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .map_or(Outcome::Closed, Outcome::Status)
}

/// A GET with `target` as sent, from `client` (the trusted-proxy header), plus `extra`
/// header lines.
fn get(target: &[u8], client: &str, extra: &[u8]) -> Vec<u8> {
    [
        b"GET ".as_slice(),
        target,
        b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Forwarded-For: ",
        client.as_bytes(),
        b"\r\n",
        extra,
        b"\r\n",
    ]
    .concat()
}

async fn query_i64(conn: &sea_orm::DatabaseConnection, sql: &str) -> Option<i64> {
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .expect("query failed")?;
    row.try_get::<Option<i64>>("", "n").expect("not a number")
}

both_backends!(
    hostile_requests_are_answered_or_refused_cleanly_and_stored_bounded,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let stack = Stack::new(&db, &redis).with("IPTRACK_BATCH_MAX_WAIT_MS", "20");
        let _web = Service::start("iptrack-web", &[], &stack.env);
        let _worker = Service::start("iptrack-worker", &[], &stack.env);
        stack.wait_until_listening().await;
        let client = reqwest::Client::new();

        let long_path = |len: usize| [b"/".as_slice(), &vec![b'a'; len - 1]].concat();
        let many_headers: Vec<u8> = (0..5_000)
            .flat_map(|i| format!("X-Header-{i}: {i}\r\n").into_bytes())
            .collect();
        let big_header = [b"X-Big: ".as_slice(), &vec![b'b'; 100 * 1024], b"\r\n"].concat();
        let big_agent = [b"User-Agent: ".as_slice(), &vec![b'u'; 100 * 1024], b"\r\n"].concat();
        // (what, request, the client address it claims)
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "raw invalid UTF-8 path",
                get(b"/\xff\xfe/caf\xc3\xa9", "198.51.100.1", b""),
                "198.51.100.1",
            ),
            (
                "percent-encoded invalid UTF-8 path",
                get(b"/%FF%FE%C0%AE", "198.51.100.2", b""),
                "198.51.100.2",
            ),
            (
                "64 KiB path",
                get(&long_path(64 * 1024), "198.51.100.3", b""),
                "198.51.100.3",
            ),
            (
                "60,000-byte path",
                get(&long_path(60_000), "198.51.100.4", b""),
                "198.51.100.4",
            ),
            (
                "100 KiB header",
                get(b"/big-header", "198.51.100.5", &big_header),
                "198.51.100.5",
            ),
            (
                "100 KiB user agent",
                get(b"/big-agent", "198.51.100.6", &big_agent),
                "198.51.100.6",
            ),
            (
                "5,000 headers",
                get(b"/many-headers", "198.51.100.7", &many_headers),
                "198.51.100.7",
            ),
            (
                // request_log.method is VARCHAR(16): unbounded, this one row failed its whole
                // batch on PostgreSQL, so the requests sharing it were never logged.
                "64-byte extension method",
                [
                    "A".repeat(64).as_bytes(),
                    b" /long-method HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n",
                    b"X-Forwarded-For: 198.51.100.8\r\n\r\n",
                ]
                .concat(),
                "198.51.100.8",
            ),
        ];
        let mut outcomes = Vec::new();
        for (what, request, ip) in &cases {
            let outcome = raw_request(stack.port, request).await;
            assert!(outcome.is_clean(), "{what}: {outcome:?}");
            // The server is still there and serving.
            let status = client.get(stack.url("/")).send().await.unwrap().status();
            assert_eq!(status.as_u16(), 200, "after {what}");
            outcomes.push((*what, outcome, *ip));
        }
        eprintln!("outcomes: {outcomes:?}");
        // The percent-encoded path reaches the app (404) and is logged as sent.
        assert_eq!(outcomes[1].1, Outcome::Status(404));

        let conn = db.connect().await;
        let served: Vec<&str> = outcomes
            .iter()
            .filter(
                |(_, outcome, _)| matches!(outcome, Outcome::Status(s) if *s < 400 || *s == 404),
            )
            .map(|(_, _, ip)| *ip)
            .collect();
        let list = served
            .iter()
            .map(|ip| format!("'{ip}'"))
            .collect::<Vec<_>>()
            .join(",");
        eventually(
            Duration::from_secs(20),
            "the served requests' rows",
            || async {
                let n = db
                    .count(&conn, &format!("request_log WHERE ip_address IN ({list})"))
                    .await;
                (n == served.len() as i64).then_some(())
            },
        )
        .await;
        let longest_path = query_i64(
            &conn,
            "SELECT CAST(MAX(LENGTH(path)) AS BIGINT) AS n FROM request_log",
        )
        .await;
        assert!(longest_path <= Some(2048), "{longest_path:?}");
        let longest_agent = query_i64(
            &conn,
            "SELECT CAST(MAX(LENGTH(user_agent)) AS BIGINT) AS n FROM request_log",
        )
        .await;
        assert!(longest_agent <= Some(512), "{longest_agent:?}");
        assert_eq!(
            db.count(
                &conn,
                "request_log WHERE ip_address = '198.51.100.2' AND path = '/%FF%FE%C0%AE'"
            )
            .await,
            1
        );
        assert_eq!(
            db.count(
                &conn,
                &format!(
                    "request_log WHERE ip_address = '198.51.100.8' AND method = '{}'",
                    "A".repeat(16)
                )
            )
            .await,
            1,
            "a long method is stored cut to 16 bytes"
        );
        if served.contains(&"198.51.100.4") {
            assert_eq!(
                query_i64(
                    &conn,
                    "SELECT CAST(LENGTH(path) AS BIGINT) AS n FROM request_log WHERE ip_address = '198.51.100.4'"
                )
                .await,
                Some(2048),
                "a long path is stored cut to 2,048 bytes"
            );
        }
    }
);

use crate::ADMIN_TOKEN as TOKEN;

/// `(method, path and query, body)` and the status it must get.
type Case = (&'static str, String, Option<Vec<u8>>, u16);

both_backends!(
    malformed_admin_requests_get_400_or_413_with_a_message_and_never_500,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let mut stack = Stack::new(&db, &redis).with("IPTRACK_ADMIN_TOKEN", TOKEN);
        let _web = stack.serve_web().await;
        let client = reqwest::Client::new();
        let json = |text: &str| Some(text.as_bytes().to_vec());
        // 8,000 levels: far past serde_json's recursion limit (128), within the 16 KiB body limit.
        let deep = format!("{}{}", "[".repeat(4_000), "]".repeat(4_000));
        let mut cases: Vec<Case> = Vec::new();
        for query in [
            "cursor=zz",
            "cursor=",
            "cursor=414243",
            "cursor=3a",
            &format!("cursor={}", "0".repeat(200)),
            "limit=0",
            "limit=-1",
            "limit=1001",
            "limit=abc",
            "limit=1e3",
            "limit=99999999999999999999999",
            "limit=1&limit=2",
            "colour=red",
            "since=yesterday",
            "since=2026-11-21T10:00:00Z&until=2026-11-21T09:00:00Z",
            "status=999",
            "status=two",
            "ip=%FF",
            "ip=1.2.3.4%00",
            "path=%00",
            "path=/login%00x",
            "network=203.0.113.7/24",
            "network=203.0.113.0",
            "network=203.0.113.0/33",
            "network=2001:db8::1/32",
            "network=%00",
            "ip=203.0.113.1&network=203.0.113.0/24",
            "method=",
            "method=G%20T",
            "method=ABCDEFGHIJKLMNOPQ",
            "class=4XX",
            "class=%00",
            "country=GBR",
            "country=%00",
            "country=",
        ] {
            cases.push(("GET", format!("/api/v1/logs?{query}"), None, 400));
        }
        for query in [
            "rule=Bogus",
            "rule=bo_gus",
            "rule=%00",
            "limit=0",
            "ip=nope",
            "since=%FF",
        ] {
            cases.push(("GET", format!("/api/v1/suspicious?{query}"), None, 400));
        }
        for query in [
            "top=0",
            "top=101",
            "since=2026-08-21T00:00:00Z&until=2026-11-20T00:00:01Z",
            "since=2026-11-19T00:00:00Z&until=2026-11-21T00:00:00Z&bucket=minute",
            "since=2026-08-23T00:00:00Z&until=2026-11-21T00:00:00Z&bucket=hour",
            "bucket=week",
            "bucket=%00",
            "since=bad",
            "until=2026-13-01T00:00:00Z",
        ] {
            cases.push(("GET", format!("/api/v1/stats?{query}"), None, 400));
        }
        for path in [
            "not-an-address",
            "1.2.3",
            "1.2.3.4%00",
            "203.0.113.0%2F24",
            "203.0.113.1?bucket=week",
            "203.0.113.1?since=2026-08-21T00:00:00Z&until=2026-11-20T00:00:01Z",
            "203.0.113.1?top=0",
            "203.0.113.1?colour=red",
        ] {
            cases.push(("GET", format!("/api/v1/addresses/{path}"), None, 400));
        }
        for query in [
            "since=2026-08-21T00:00:00Z&until=2026-11-20T00:00:01Z",
            "since=2026-11-21T00:00:00Z&until=2026-11-20T00:00:00Z",
            "until=never",
            "colour=red",
        ] {
            cases.push(("GET", format!("/api/v1/countries?{query}"), None, 400));
        }
        // Extreme but valid times are answered, not failed.
        for query in ["until=0000-01-01T00:00:00Z", "until=9999-12-31T23:59:59Z"] {
            cases.push(("GET", format!("/api/v1/stats?{query}"), None, 200));
            cases.push(("GET", format!("/api/v1/countries?{query}"), None, 200));
            cases.push((
                "GET",
                format!("/api/v1/addresses/::ffff:203.0.113.1?{query}"),
                None,
                200,
            ));
        }
        // So is a longer range, in hours or days.
        for query in [
            "since=2026-11-14T00:00:00Z&until=2026-11-21T00:00:00Z",
            "since=2026-08-23T00:00:00Z&until=2026-11-21T00:00:00Z&bucket=day",
        ] {
            cases.push(("GET", format!("/api/v1/stats?{query}"), None, 200));
        }
        for (body, status) in [
            (json("null"), 400),
            (json("[]"), 400),
            (json("\"1.2.3.4\""), 400),
            (json(""), 400),
            (json(&deep), 400),
            (json(r#"{"address": ["1.2.3.4"]}"#), 400),
            (json(r#"{"address": "1.2.3.4", "address": "5.6.7.8"}"#), 400),
            // JSON Schema's `integer` takes 1e3 (it is 1000); a fraction is refused.
            (json(r#"{"address": "1.2.3.4", "duration_secs": 1.5}"#), 400),
            (json(r#"{"address": "1.2.3.4", "duration_secs": -1}"#), 400),
            (
                json(r#"{"address": "1.2.3.4", "duration_secs": 18446744073709551616}"#),
                400,
            ),
            (json(r#"{"address": "1.2.3.4", "reason": 7}"#), 400),
            (
                json(r#"{"address": "1.2.3.4", "reason": "nul \u0000 here"}"#),
                400,
            ),
            (json(r#"{"address": "\u0000"}"#), 400),
            (Some(b"{\"address\": \"\xff\xfe\"}".to_vec()), 400),
            (Some(vec![b' '; 1024 * 1024]), 413),
        ] {
            cases.push(("POST", "/api/v1/blocked".to_owned(), body, status));
        }
        for query in [
            "address=",
            "address=%00",
            "address=1.2.3.4&address=5.6.7.8",
            "address=1.2.3.4/99",
            "adress=1.2.3.4",
        ] {
            cases.push(("DELETE", format!("/api/v1/blocked?{query}"), None, 400));
        }

        for (method, path, body, expected) in cases {
            let mut request = client
                .request(method.parse().unwrap(), stack.url(&path))
                .bearer_auth(TOKEN);
            if let Some(body) = body {
                request = request
                    .header("content-type", "application/json")
                    .body(body);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            assert_eq!(status, expected, "{method} {path}: {text}");
            let body: Value = serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}"));
            if expected != 200 {
                let message = body["error"].as_str().unwrap_or_default();
                assert!(!message.is_empty(), "{method} {path}: {text}");
                assert_ne!(message, "internal error", "{method} {path}");
            }
        }

        // A body far over the limit without a declared length (chunked) is cut off too.
        let chunks =
            futures::stream::iter((0..64).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024])));
        let response = client
            .post(stack.url("/api/v1/blocked"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 413);

        // Nothing of that was stored.
        let list = admin_json(&client, &stack.url("/api/v1/blocked")).await;
        assert_eq!(list, serde_json::json!([]));
    }
);
