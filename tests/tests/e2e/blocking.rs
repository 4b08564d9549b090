//! Blocking through the CLI, seen by every web instance, without I/O on the request path.

use std::time::Duration;

use iptrack_tests::{PrivateRedis, TestDb, TestRedis, both_backends, eventually, process::Service};

use crate::{Stack, iptrack};

/// The status `GET /` gets at `stack` for a client at `ip` (claimed via the trusted proxy).
pub(crate) async fn status_for(client: &reqwest::Client, stack: &Stack, ip: &str) -> u16 {
    client
        .get(stack.url("/"))
        .header("x-forwarded-for", ip)
        .send()
        .await
        .expect("request failed")
        .status()
        .as_u16()
}

pub(crate) async fn wait_for_status(
    client: &reqwest::Client,
    stack: &Stack,
    ip: &str,
    expected: u16,
) {
    eventually(
        Duration::from_secs(10),
        &format!("{ip} to get {expected}"),
        || async { (status_for(client, stack, ip).await == expected).then_some(()) },
    )
    .await;
}

both_backends!(
    a_block_and_an_unblock_reach_both_web_instances,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        // A reload interval far beyond the test: only the Redis notice can deliver the change.
        let first = Stack::new(&db, &redis).with("IPTRACK_BLOCKLIST_RELOAD_SECS", "3600");
        let second = Stack::new(&db, &redis).with("IPTRACK_BLOCKLIST_RELOAD_SECS", "3600");
        let _webs = [
            Service::start("iptrack-web", &[], &first.env),
            Service::start("iptrack-web", &[], &second.env),
        ];
        let _worker = Service::start("iptrack-worker", &[], &first.env);
        first.wait_until_listening().await;
        second.wait_until_listening().await;
        let client = reqwest::Client::new();
        for stack in [&first, &second] {
            assert_eq!(status_for(&client, stack, "203.0.113.66").await, 200);
        }

        let (code, stdout, stderr) =
            iptrack(&first, &["block", "203.0.113.66", "--reason", "scanner"]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(stdout.trim(), "blocked 203.0.113.66 until unblocked");
        for stack in [&first, &second] {
            wait_for_status(&client, stack, "203.0.113.66", 403).await;
            assert_eq!(
                status_for(&client, stack, "203.0.113.67").await,
                200,
                "a neighbour was blocked"
            );
        }
        let body = client
            .get(first.url("/admin"))
            .header("x-forwarded-for", "203.0.113.66")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "Forbidden\n");

        let (code, stdout, _) = iptrack(&first, &["unblock", "203.0.113.66"]);
        assert_eq!((code, stdout.trim()), (0, "unblocked 203.0.113.66"));
        for stack in [&first, &second] {
            wait_for_status(&client, stack, "203.0.113.66", 200).await;
        }

        // Blocked requests are logged like any other, with their 403.
        let conn = db.connect().await;
        eventually(Duration::from_secs(10), "403 rows", || async {
            (db.count(
                &conn,
                "request_log WHERE ip_address = '203.0.113.66' AND status = 403",
            )
            .await
                >= 3)
                .then_some(())
        })
        .await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_for_a_while_ends_on_time_without_a_reload() {
    let (db, redis) = (
        TestDb::new(iptrack_tests::Backend::Sqlite).await,
        TestRedis::new(),
    );
    let mut stack = Stack::new(&db, &redis).with("IPTRACK_BLOCKLIST_RELOAD_SECS", "3600");
    let _web = stack.serve_web().await;
    let client = reqwest::Client::new();

    let (code, stdout, stderr) = iptrack(&stack, &["block", "2001:db8::/32", "--for", "3s"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("blocked 2001:db8::/32 until "),
        "{stdout}"
    );
    wait_for_status(&client, &stack, "2001:db8::5", 403).await;
    assert_eq!(status_for(&client, &stack, "2001:db9::5").await, 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait_for_status(&client, &stack, "2001:db8::5", 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safelisted_client_is_never_blocked() {
    let (db, redis) = (
        TestDb::new(iptrack_tests::Backend::Sqlite).await,
        TestRedis::new(),
    );
    let mut stack = Stack::new(&db, &redis).with("IPTRACK_SAFELIST", "198.51.100.0/28");
    let _web = stack.serve_web().await;
    let client = reqwest::Client::new();

    // The blocklist service refuses a block that covers a safelisted address, so this one
    // is made as before the safelist was configured.
    let unsafelisted = Stack::new(&db, &redis);
    let (code, _, stderr) = iptrack(&unsafelisted, &["block", "198.51.100.0/24"]);
    assert_eq!(code, 0, "{stderr}");
    wait_for_status(&client, &stack, "198.51.100.100", 403).await;
    assert_eq!(status_for(&client, &stack, "198.51.100.5").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_made_while_redis_is_down_arrives_with_the_next_reload() {
    let mut private = PrivateRedis::start();
    let db = TestDb::new(iptrack_tests::Backend::Sqlite).await;
    let redis = TestRedis {
        url: private.url(),
        prefix: "iptrack".into(),
    };
    let mut stack = Stack::new(&db, &redis).with("IPTRACK_BLOCKLIST_RELOAD_SECS", "1");
    let _web = stack.serve_web().await;
    let client = reqwest::Client::new();
    private.stop();

    let (code, stdout, stderr) = iptrack(&stack, &["block", "203.0.113.99"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "blocked 203.0.113.99 until unblocked");
    assert!(stderr.contains("Redis unreachable"), "{stderr}");
    // The web kept serving through the outage and picks the block up from the table.
    wait_for_status(&client, &stack, "203.0.113.99", 403).await;
    assert_eq!(status_for(&client, &stack, "203.0.113.98").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_block_commands_refuse_bad_input_with_one_line_and_status_2() {
    let (db, redis) = (
        TestDb::new(iptrack_tests::Backend::Sqlite).await,
        TestRedis::new(),
    );
    let stack = Stack::new(&db, &redis);
    for (args, expected) in [
        (
            &["block", "203.0.113.7/24"][..],
            "203.0.113.7/24 has host bits set; did you mean 203.0.113.0/24?",
        ),
        (
            &["block", "nonsense"][..],
            "is not an IP address or CIDR network",
        ),
        (
            &["block", "10.0.0.0/33"][..],
            "is not an IP address or CIDR network",
        ),
        (
            &["block", "203.0.113.7", "--for", "3x"][..],
            "is not a duration; expected e.g. 30m, 12h, 7d",
        ),
        (
            &["unblock", "2001:db8::/129"][..],
            "is not an IP address or CIDR network",
        ),
        (
            &["flag-suspicious", "--window-end", "yesterday"][..],
            "expected RFC 3339",
        ),
        (&["blokc", "1.2.3.4"][..], "unrecognized subcommand"),
    ] {
        let (code, stdout, stderr) = iptrack(&stack, args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?} printed: {stderr}");
        assert!(stderr.contains(expected), "{args:?} printed: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_twice_updates_and_unblocking_the_unblocked_says_so() {
    let (db, redis) = (
        TestDb::new(iptrack_tests::Backend::Sqlite).await,
        TestRedis::new(),
    );
    let stack = Stack::new(&db, &redis);
    let (_, stdout, _) = iptrack(
        &stack,
        &["block", "::ffff:203.0.113.8", "--reason", "first"],
    );
    assert_eq!(stdout.trim(), "blocked 203.0.113.8 until unblocked");
    let (_, stdout, _) = iptrack(
        &stack,
        &["block", "203.0.113.8", "--reason", "second", "--for", "1h"],
    );
    assert!(
        stdout.starts_with("updated the block of 203.0.113.8 until "),
        "{stdout}"
    );
    let (code, stdout, _) = iptrack(&stack, &["blocked", "--json"]);
    assert_eq!(code, 0);
    let blocks: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let blocks = blocks.as_array().unwrap();
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0]["ip_address"], "203.0.113.8");
    assert_eq!(blocks[0]["reason"], "second");
    assert!(blocks[0]["expires_at"].is_string());

    let (_, stdout, _) = iptrack(&stack, &["unblock", "203.0.113.8"]);
    assert_eq!(stdout.trim(), "unblocked 203.0.113.8");
    let (code, stdout, _) = iptrack(&stack, &["unblock", "203.0.113.8"]);
    assert_eq!((code, stdout.trim()), (0, "203.0.113.8 is not blocked"));
    let (_, stdout, _) = iptrack(&stack, &["blocked"]);
    assert_eq!(stdout.trim(), "nothing is blocked");
}
