//! Forged forwarding headers against the real `iptrack-web` (issue 10, "Security"): from
//! an untrusted peer no header combination changes the client address, so a blocked client
//! stays blocked and a limited client stays limited; behind trusted proxies the right-most
//! untrusted address is the one blocked, limited and logged.
//!
//! Every address 127.0.0.0/8 is this machine, so a test can be a trusted proxy (connecting
//! from 127.0.0.1) and an untrusted client (connecting from 127.0.0.2 or .3) at once.

use std::{net::IpAddr, time::Duration};

use iptrack_tests::{TestDb, TestRedis, both_backends, eventually, process::Service};

use crate::{Stack, iptrack};

/// `X-Forwarded-For` values a forger might send (`None`: no such header).
fn forged_xff() -> Vec<Option<String>> {
    let many_hops = (0..40)
        .map(|i| format!("10.0.{i}.1"))
        .chain(["127.0.0.1".to_owned()])
        .collect::<Vec<_>>()
        .join(", ");
    [
        "198.51.100.1",
        "127.0.0.1",
        "198.51.100.1, 127.0.0.1",
        "2001:db8::1",
        "[2001:db8::1]:443",
        "::ffff:198.51.100.1",
        "::ffff:127.0.0.1",
        "unknown",
        "_hidden",
        "a:b*{}",
        "",
        &many_hops,
    ]
    .into_iter()
    .map(|v| Some(v.to_owned()))
    .chain([None])
    .collect()
}

/// `Forwarded` values a forger might send.
fn forged_forwarded() -> Vec<Option<String>> {
    let many_hops = (0..40)
        .map(|i| format!("for=10.0.{i}.1"))
        .collect::<Vec<_>>()
        .join(", ");
    [
        "for=198.51.100.1",
        "for=\"[2001:db8::1]:443\";proto=https",
        "for=_hidden",
        "for=unknown, for=198.51.100.2",
        "by=127.0.0.1;for=127.0.0.1",
        "for=198.51.100.3, for=127.0.0.1",
        "for=\"198.51.100.4:_obf\"",
        &many_hops,
    ]
    .into_iter()
    .map(|v| Some(v.to_owned()))
    .chain([None])
    .collect()
}

/// Every combination of the two lists, each with the usual decoy headers, and some with
/// the forwarding header repeated on two lines.
fn forged_header_sets() -> Vec<Vec<(&'static str, String)>> {
    let mut sets = Vec::new();
    for (i, xff) in forged_xff().into_iter().enumerate() {
        for forwarded in forged_forwarded() {
            let mut set = Vec::new();
            if let Some(xff) = &xff {
                set.push(("x-forwarded-for", xff.clone()));
                if i % 3 == 0 {
                    set.push(("x-forwarded-for", "198.51.100.9".to_owned()));
                }
            }
            if let Some(forwarded) = forwarded {
                set.push(("forwarded", forwarded));
            }
            set.push(("x-real-ip", "198.51.100.1".to_owned()));
            set.push(("true-client-ip", "198.51.100.1".to_owned()));
            sets.push(set);
        }
    }
    sets
}

/// A client whose connections come from `local` (an address of 127.0.0.0/8).
fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, String)],
) -> u16 {
    let mut request = client.request(method.clone(), url);
    if method == reqwest::Method::POST {
        request = request.form(&[("username", "mallory"), ("password", "guess")]);
    }
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.send().await.unwrap().status().as_u16()
}

/// A stack trusting `trusted` (comma-separated CIDRs; empty: none) with `header`.
fn configured(db: &TestDb, redis: &TestRedis, trusted: &str, header: &str) -> Stack {
    let mut stack = Stack::new(db, redis).with("IPTRACK_PROXY_HEADER", header);
    if trusted.is_empty() {
        stack.env.remove("IPTRACK_TRUSTED_PROXIES");
    } else {
        stack = stack.with("IPTRACK_TRUSTED_PROXIES", trusted);
    }
    stack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_client_gets_403_whatever_forwarding_headers_it_sends() {
    let (db, redis) = (
        TestDb::new(iptrack_tests::Backend::Sqlite).await,
        TestRedis::new(),
    );
    let base = Stack::new(&db, &redis).with("IPTRACK_BLOCKLIST_RELOAD_SECS", "3600");
    let (code, _, stderr) = iptrack(&base, &["block", "127.0.0.2"]);
    assert_eq!(code, 0, "{stderr}");
    for (trusted, header) in [
        ("", "x-forwarded-for"),
        ("127.0.0.1", "x-forwarded-for"),
        ("127.0.0.1", "forwarded"),
    ] {
        let mut stack =
            configured(&db, &redis, trusted, header).with("IPTRACK_BLOCKLIST_RELOAD_SECS", "3600");
        let _web = stack.serve_web().await;
        let blocked = client_from("127.0.0.2");
        let other = client_from("127.0.0.3");
        // The block is in force (the web loads the list just after it starts listening)
        // and nobody else is affected.
        eventually(
            Duration::from_secs(10),
            "the block to be loaded",
            || async {
                (send(&blocked, reqwest::Method::GET, &stack.url("/"), &[]).await == 403)
                    .then_some(())
            },
        )
        .await;
        assert_eq!(
            send(&other, reqwest::Method::GET, &stack.url("/"), &[]).await,
            200
        );
        for headers in forged_header_sets() {
            let status = send(&blocked, reqwest::Method::GET, &stack.url("/"), &headers).await;
            assert_eq!(status, 403, "trusted {trusted:?}, {header}: {headers:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_client_cannot_reset_its_limit_with_forwarding_headers() {
    let (db, redis) = (
        TestDb::new(iptrack_tests::Backend::Sqlite).await,
        TestRedis::new(),
    );
    for (i, (trusted, header)) in [
        ("", "x-forwarded-for"),
        ("127.0.0.1", "x-forwarded-for"),
        ("127.0.0.1", "forwarded"),
    ]
    .into_iter()
    .enumerate()
    {
        // A long window, so a slow machine cannot see the budget refill mid-test.
        let mut stack = configured(&db, &redis, trusted, header).with(
            "IPTRACK_RATE_LIMITS",
            &format!("login{i}=POST /login anon=5 user=10 window=600s"),
        );
        let _web = stack.serve_web().await;
        let limited = client_from("127.0.0.3");
        let sets = forged_header_sets();
        let login = stack.url("/login");
        let mut statuses = Vec::new();
        for headers in &sets[..5] {
            statuses.push(send(&limited, reqwest::Method::POST, &login, headers).await);
        }
        assert_eq!(statuses, [401; 5], "trusted {trusted:?}, {header}");
        for headers in &sets {
            let status = send(&limited, reqwest::Method::POST, &login, headers).await;
            assert_eq!(status, 429, "trusted {trusted:?}, {header}: {headers:?}");
        }
        // Another client still has its budget.
        let other = client_from("127.0.0.4");
        assert_eq!(send(&other, reqwest::Method::POST, &login, &[]).await, 401);
    }
}

/// The forwarding header a trusted proxy writes for `hops` (left to right).
fn proxy_header(header: &str, hops: &[&str]) -> (&'static str, String) {
    if header == "forwarded" {
        let elements: Vec<String> = hops
            .iter()
            .map(|hop| {
                if hop.contains(':') {
                    format!("for=\"[{hop}]\"")
                } else {
                    format!("for={hop}")
                }
            })
            .collect();
        ("forwarded", elements.join(", "))
    } else {
        ("x-forwarded-for", hops.join(", "))
    }
}

both_backends!(
    behind_trusted_proxies_the_rightmost_untrusted_address_is_blocked_limited_and_logged,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let base = Stack::new(&db, &redis);
        for blocked in ["203.0.113.50", "2001:db8::50"] {
            let (code, _, stderr) = iptrack(&base, &["block", blocked]);
            assert_eq!(code, 0, "{stderr}");
        }
        let _worker = Service::start("iptrack-worker", &[], &base.env);
        // Kept running to the end: a killed web loses the events it still buffers.
        let mut webs = Vec::new();
        for (i, header) in ["x-forwarded-for", "forwarded"].into_iter().enumerate() {
            let stack = Stack::new(&db, &redis)
                .with("IPTRACK_TRUSTED_PROXIES", "127.0.0.1,10.0.0.0/8")
                .with("IPTRACK_PROXY_HEADER", header)
                .with("IPTRACK_BATCH_MAX_WAIT_MS", "20")
                .with(
                    "IPTRACK_RATE_LIMITS",
                    &format!("login{i}=POST /login anon=5 user=10 window=600s"),
                );
            webs.push(Service::start("iptrack-web", &[], &stack.env));
            stack.wait_until_listening().await;
            let proxy = client_from("127.0.0.1");
            eventually(
                Duration::from_secs(10),
                "the blocks to be loaded",
                || async {
                    let headers = [proxy_header(header, &["203.0.113.50"])];
                    (send(&proxy, reqwest::Method::GET, &stack.url("/"), &headers).await == 403)
                        .then_some(())
                },
            )
            .await;
            let get = |hops: &[&str]| {
                let headers = [proxy_header(header, hops)];
                let (proxy, url) = (proxy.clone(), stack.url("/"));
                async move { send(&proxy, reqwest::Method::GET, &url, &headers).await }
            };
            // The client forged the left part; the proxies appended the rest.
            for (hops, expected) in [
                (&["198.51.100.77", "203.0.113.50", "10.0.0.7"][..], 403),
                (&["203.0.113.50"][..], 403),
                (&["2001:db8::50", "10.1.2.3", "10.0.0.7"][..], 403),
                (&["203.0.113.50", "198.51.100.77"][..], 200),
                (&["203.0.113.50", "2001:db8::77", "10.0.0.7"][..], 200),
            ] {
                assert_eq!(get(hops).await, expected, "{header}: {hops:?}");
            }

            let ip = if i == 0 {
                "203.0.113.51"
            } else {
                "2001:db8::51"
            };
            let login = stack.url("/login");
            let mut statuses = Vec::new();
            for n in 0..7 {
                let forged = format!("198.51.100.{}", 100 + n);
                let headers = [proxy_header(header, &[&forged, ip, "10.0.0.7"])];
                statuses.push(send(&proxy, reqwest::Method::POST, &login, &headers).await);
            }
            assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429], "{header}");
            let headers = [proxy_header(header, &[ip, "198.51.100.78"])];
            assert_eq!(
                send(&proxy, reqwest::Method::POST, &login, &headers).await,
                401,
                "{header}: a forged left-most entry limits nobody"
            );
        }

        let conn = db.connect().await;
        eventually(Duration::from_secs(20), "the rows of both webs", || async {
            let n = db.count(&conn, "request_log").await;
            (n >= 2 * (5 + 7 + 1 + 1)).then_some(())
        })
        .await;
        // The wait loops may have sent a few more; let their batches land too.
        tokio::time::sleep(Duration::from_secs(1)).await;
        for (sql, expected) in [
            // (the wait for the blocks to load adds at least one per web)
            (
                "ip_address = '203.0.113.50' AND status = 403 AND path = '/'",
                -1,
            ),
            ("ip_address = '2001:db8::50' AND status = 403", 2),
            ("ip_address = '198.51.100.77' AND status = 200", 2),
            ("ip_address = '2001:db8::77' AND status = 200", 2),
            ("ip_address = '203.0.113.51' AND status = 429", 2),
            ("ip_address = '2001:db8::51' AND status = 429", 2),
            ("ip_address = '198.51.100.78' AND status = 401", 2),
            // No forged left-most address and no proxy is ever the client.
            ("ip_address LIKE '198.51.100.1__'", 0),
            ("ip_address LIKE '10.%' OR ip_address = '127.0.0.1'", 0),
        ] {
            let n = db.count(&conn, &format!("request_log WHERE {sql}")).await;
            if expected < 0 {
                assert!(n >= 2 + 2 * 2, "{sql}: {n}");
            } else {
                assert_eq!(n, expected, "{sql}");
            }
        }
        // Every row is one of the addresses above: the right-most untrusted hop.
        let all = db.count(&conn, "request_log").await;
        let named = db
            .count(
                &conn,
                "request_log WHERE ip_address IN ('203.0.113.50', '2001:db8::50', \
                 '198.51.100.77', '2001:db8::77', '203.0.113.51', '2001:db8::51', '198.51.100.78')",
            )
            .await;
        assert_eq!(named, all);
    }
);
