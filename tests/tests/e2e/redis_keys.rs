//! What request data can put into Redis key names (issue 10, "Security"): after requests
//! carrying hostile header text through a trusted proxy, every key under the test's prefix
//! has a known shape whose variable part parses as an address, a network, a hash, a job id
//! or a token iptrack itself made. Never raw header text.

use std::{net::IpAddr, time::Duration};

use ipnet::IpNet;
use iptrack_core::jobs::ALL_QUEUES;
use iptrack_tests::{TestDb, TestRedis, eventually, process::Service};
use redis::AsyncCommands;

use crate::{Stack, bad_input::raw_request};

const RULES: [&str; 2] = ["login", "pages"];

/// Header text an attacker sends, in the header the trusted proxy's is appended to.
fn hostile_values() -> Vec<Vec<u8>> {
    let mut values: Vec<Vec<u8>> = [
        "a:b*{}",
        "*",
        "{x}",
        "1.2.3.4:*",
        "iptrack:ratelimit:login:ip:1.2.3.4",
        "198.51.100.7 ",
        "\t198.51.100.8",
        "for=198.51.100.9",
    ]
    .iter()
    .map(|v| v.as_bytes().to_vec())
    .collect();
    values.push(b"a:b*{}\r".to_vec());
    values.push(b"198.51.100.10\xa0".to_vec());
    values.push(b"198.51.100.11\xff".to_vec());
    values.push(vec![b'x'; 8_000]);
    values.push([b"1.2.3.4, ".as_slice(), &vec![b'y'; 60_000]].concat());
    values
}

/// Valid client addresses (some public, so the worker claims their geolocation).
const VALID: [&str; 7] = [
    "198.51.100.20",
    "2001:db8:1:2:3:4:5:6",
    "[2001:db8::9]:443",
    "::ffff:198.51.100.21",
    "198.51.100.22:8080",
    "8.8.4.4",
    "2a00:1450:4001::1",
];

/// Whether `token` is a name iptrack makes for itself: worker names
/// (`host-pid-queue-index-generation`), job ids (ULID), claim windows (times).
fn is_own_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 128
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'+'))
}

/// `None` if `rest` (a key without its prefix) has a known shape with a valid variable
/// part; otherwise why not.
fn unknown_shape(rest: &str) -> Option<String> {
    if let Some(tail) = rest.strip_prefix("ratelimit:") {
        let (rule, subject) = tail.split_once(':')?;
        if !RULES.contains(&rule) {
            return Some(format!("unknown rule {rule:?}"));
        }
        if let Some(address) = subject.strip_prefix("ip:") {
            let valid = address.parse::<IpAddr>().is_ok() || address.parse::<IpNet>().is_ok();
            return (!valid).then(|| format!("{address:?} is no address"));
        }
        if let Some(hash) = subject.strip_prefix("user:") {
            let valid = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
            return (!valid).then(|| format!("{hash:?} is no SHA-256"));
        }
        return Some("unknown rate-limit subject".to_owned());
    }
    for kind in ["geo:claim:", "geo:loc:"] {
        if let Some(address) = rest.strip_prefix(kind) {
            return address
                .parse::<IpAddr>()
                .is_err()
                .then(|| format!("{address:?} is no address"));
        }
    }
    for kind in ["detect:count:", "detect:crossed:"] {
        if let Some(tail) = rest.strip_prefix(kind) {
            let Some((rule, address)) = tail.split_once(':') else {
                return Some("no rule".to_owned());
            };
            if !iptrack_core::settings::DetectSettings::default()
                .rules
                .iter()
                .any(|r| r.name == rule)
            {
                return Some(format!("unknown detection rule {rule:?}"));
            }
            return address
                .parse::<IpAddr>()
                .is_err()
                .then(|| format!("{address:?} is no address"));
        }
    }
    if rest == "metrics" || rest == "geo:attribution" || rest == "geo:geolocation" {
        return None;
    }
    for queue in ALL_QUEUES {
        if rest == *queue {
            return None;
        }
        if let Some(tail) = rest.strip_prefix(&format!("{queue}:")) {
            return (!is_own_token(tail)).then(|| format!("{tail:?} in queue {queue}"));
        }
    }
    Some("unknown key".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keys_hold_only_validated_addresses_whatever_the_headers_said() {
    let (db, redis) = (
        TestDb::new(iptrack_tests::Backend::Sqlite).await,
        TestRedis::new(),
    );
    let stack = Stack::new(&db, &redis)
        .with(
            "IPTRACK_RATE_LIMITS",
            "login=POST /login anon=5 user=10 window=60s; pages=GET /* anon=10000 user=10000 window=60s",
        )
        .with("IPTRACK_DEMO_USER", "alice:correct horse")
        .with("IPTRACK_BATCH_MAX_WAIT_MS", "20")
        // Geolocation on, so the worker's claims are among the keys; nothing answers there.
        .with("IPTRACK_GEO_PROVIDER", "http")
        .with("IPTRACK_GEO_HTTP_URL", "http://127.0.0.1:9");
    let _web = Service::start("iptrack-web", &[], &stack.env);
    let _worker = Service::start("iptrack-worker", &[], &stack.env);
    stack.wait_until_listening().await;

    // Hostile text alone and left of a valid hop, in every header an attacker might try.
    let mut sent = 0;
    for value in hostile_values() {
        for line in [
            value.clone(),
            [value.as_slice(), b", 198.51.100.30"].concat(),
        ] {
            for (method, target, extra) in [
                ("GET", "/", ""),
                ("POST", "/login", "Content-Length: 0\r\n"),
            ] {
                let request = [
                    format!(
                        "{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}"
                    )
                    .as_bytes(),
                    b"X-Forwarded-For: ",
                    &line,
                    b"\r\nForwarded: for=\"",
                    &value,
                    b"\"\r\nUser-Agent: ",
                    &value[..value.len().min(1000)],
                    b"\r\n\r\n",
                ]
                .concat();
                let outcome = raw_request(stack.port, &request).await;
                assert!(
                    !matches!(outcome, crate::bad_input::Outcome::Status(s) if s >= 500),
                    "{outcome:?}"
                );
                sent += 1;
            }
        }
    }
    let client = reqwest::Client::new();
    for ip in VALID {
        for method in [reqwest::Method::GET, reqwest::Method::POST] {
            let url = stack.url(if method == reqwest::Method::GET {
                "/"
            } else {
                "/login"
            });
            client
                .request(method, url)
                .header("x-forwarded-for", ip)
                .send()
                .await
                .unwrap();
        }
    }
    // A signed-in user's requests are limited by a hash of the user id.
    let response = client
        .post(stack.url("/login"))
        .header("x-forwarded-for", "198.51.100.40")
        .form(&[("username", "alice"), ("password", "correct horse")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    client
        .post(stack.url("/login"))
        .header("cookie", cookie)
        .header("x-forwarded-for", "a:b*{}")
        .send()
        .await
        .unwrap();
    assert!(sent > 0);

    // The worker has stored the rows and claimed the public addresses' lookups.
    let mut conn = redis.connection().await;
    let claims = format!("{}:geo:claim:*", redis.prefix);
    eventually(Duration::from_secs(20), "geolocation claims", || {
        let mut conn = conn.clone();
        let claims = claims.clone();
        async move {
            let keys: Vec<String> = conn.keys(&claims).await.unwrap();
            (keys.len() >= 2).then_some(())
        }
    })
    .await;

    let pattern = format!("{}:*", redis.prefix);
    let mut keys: Vec<String> = Vec::new();
    let mut iter: redis::AsyncIter<'_, String> = conn.scan_match(&pattern).await.unwrap();
    while let Some(key) = iter.next_item().await {
        keys.push(key.unwrap());
    }
    drop(iter);
    keys.sort();
    eprintln!("{} keys:\n{}", keys.len(), keys.join("\n"));
    let prefix = format!("{}:", redis.prefix);
    let mut problems = Vec::new();
    for key in &keys {
        let rest = &key[prefix.len()..];
        if let Some(why) = unknown_shape(rest) {
            problems.push(format!("{key}: {why}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let rate_keys: Vec<&String> = keys.iter().filter(|k| k.contains(":ratelimit:")).collect();
    for expected in [
        "ratelimit:pages:ip:198.51.100.20",
        "ratelimit:login:ip:198.51.100.20",
        "ratelimit:pages:ip:2001:db8:1:2::/64",
        "ratelimit:pages:ip:2001:db8::/64",
        "ratelimit:pages:ip:198.51.100.21",
        "ratelimit:pages:ip:198.51.100.22",
        "ratelimit:pages:ip:198.51.100.30",
        // Malformed forwarding falls back to the peer, the proxy.
        "ratelimit:pages:ip:127.0.0.1",
    ] {
        assert!(
            keys.contains(&format!("{prefix}{expected}")),
            "{expected} missing from {rate_keys:?}"
        );
    }
    assert!(
        rate_keys.iter().any(|k| k.contains(":login:user:")),
        "{rate_keys:?}"
    );
}
