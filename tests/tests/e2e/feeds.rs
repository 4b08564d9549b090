//! Blocklist feeds through the real binaries: `iptrack import-blocklist` from files (FireHOL
//! and Spamhaus DROP formats), the web refusing what a feed lists, a re-import withdrawing
//! only the feed's own entries, bad lists changing nothing, and `IPTRACK_BLOCKLIST_FEEDS`
//! refreshed by `iptrack-scheduler` and `iptrack-worker` from a local HTTP server.

use std::{path::Path, time::Duration};

use iptrack_tests::{TestDb, TestRedis, both_backends, eventually, process::Service};
use serde_json::Value;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

use crate::{
    ADMIN_TOKEN, Stack, admin_json,
    blocking::{status_for, wait_for_status},
    iptrack,
};

fn write(dir: &Path, name: &str, text: &str) -> String {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    file.display().to_string()
}

/// A FireHOL `.netset` as published: a `#` header, then one entry a line.
const FIREHOL: &str = "\
#
# firehol_level1
# ipv4 hash:net ipset
#
# Maintainer      : FireHOL
# This File Date  : Tue Dec  1 12:00:00 UTC 2026
#
203.0.113.0/24
198.51.100.7
192.0.2.1
100.64.0.0/10
2001:db8:bad::/48
";

/// Spamhaus DROP: `;` comments, `NETWORK ; SBLnnn` lines, CRLF.
const DROP: &str = "; Spamhaus DROP List 2026/12/01 - (c) 2026 The Spamhaus Project\r\n\
                    ; Last-Modified: Tue, 01 Dec 2026 12:00:00 GMT\r\n\
                    198.18.0.0/15 ; SBL256894\r\n\
                    192.0.2.1 ; SBL000002\r\n";

/// `iptrack blocked --json` rows as (address, source), in the table's order.
fn blocked(stack: &Stack, source: Option<&str>) -> Vec<(String, String)> {
    let mut args = vec!["blocked", "--json"];
    if let Some(source) = source {
        args.extend(["--source", source]);
    }
    let (code, stdout, stderr) = iptrack(stack, &args);
    assert_eq!(code, 0, "{stderr}");
    let rows: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    let mut rows: Vec<(String, String)> = rows
        .iter()
        .map(|row| {
            (
                row["ip_address"].as_str().unwrap().to_owned(),
                row["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn pairs(rows: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = rows
        .iter()
        .map(|(a, s)| ((*a).to_owned(), (*s).to_owned()))
        .collect();
    rows.sort();
    rows
}

both_backends!(
    an_imported_feed_is_blocked_and_a_re_import_withdraws_only_its_own_entries,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        // Only the import's reload notice can bring the entries within the test.
        let stack = Stack::new(&db, &redis)
            .with("IPTRACK_BLOCKLIST_RELOAD_SECS", "3600")
            .with("IPTRACK_SAFELIST", "100.64.1.1")
            .with("IPTRACK_ADMIN_TOKEN", ADMIN_TOKEN);
        let _web = Service::start("iptrack-web", &[], &stack.env);
        stack.wait_until_listening().await;
        let client = reqwest::Client::new();
        let dir = tempfile::tempdir().unwrap();

        let (code, _, stderr) = iptrack(&stack, &["block", "198.51.100.7", "--reason", "mine"]);
        assert_eq!(code, 0, "{stderr}");

        let firehol = write(dir.path(), "firehol_level1.netset", FIREHOL);
        let (code, stdout, stderr) = iptrack(
            &stack,
            &["import-blocklist", "--source", "firehol1", &firehol],
        );
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.contains(
                "5 entries; 3 added, 0 withdrawn, 0 unchanged, 1 kept (blocked by another source), 1 skipped (safelisted)"
            ),
            "{stdout}"
        );
        assert!(
            stderr.contains("skipped 100.64.0.0/10: 100.64.0.0/10 overlaps 100.64.1.1"),
            "{stderr}"
        );
        let drop = write(dir.path(), "drop.txt", DROP);
        let (code, stdout, stderr) =
            iptrack(&stack, &["import-blocklist", "--source", "drop", &drop]);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.contains("2 entries; 1 added, 0 withdrawn, 0 unchanged, 1 kept"),
            "{stdout}"
        );

        for ip in [
            "203.0.113.50",
            "198.51.100.7",
            "192.0.2.1",
            "2001:db8:bad::1",
            "198.19.255.1",
        ] {
            wait_for_status(&client, &stack, ip, 403).await;
        }
        for ip in ["203.0.114.1", "100.64.1.1", "100.64.2.2", "2001:db8:bae::1"] {
            assert_eq!(status_for(&client, &stack, ip).await, 200, "{ip}");
        }
        assert_eq!(
            blocked(&stack, None),
            pairs(&[
                ("198.51.100.7", "manual"),
                ("203.0.113.0/24", "feed:firehol1"),
                ("192.0.2.1", "feed:firehol1"),
                ("2001:db8:bad::/48", "feed:firehol1"),
                ("198.18.0.0/15", "feed:drop"),
            ])
        );
        assert_eq!(
            blocked(&stack, Some("feed:drop")),
            pairs(&[("198.18.0.0/15", "feed:drop")])
        );

        // The list drops 192.0.2.1 and the manually blocked 198.51.100.7.
        let fewer = write(
            dir.path(),
            "fewer.netset",
            "# firehol_level1, later\n203.0.113.0/24\n2001:db8:bad::/48\n",
        );
        let (code, stdout, stderr) = iptrack(
            &stack,
            &["import-blocklist", "--source", "firehol1", &fewer],
        );
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.contains("2 entries; 0 added, 1 withdrawn, 2 unchanged, 0 kept"),
            "{stdout}"
        );
        wait_for_status(&client, &stack, "192.0.2.1", 200).await;
        for ip in [
            "203.0.113.50",
            "198.51.100.7",
            "198.19.255.1",
            "2001:db8:bad::1",
        ] {
            assert_eq!(status_for(&client, &stack, ip).await, 403, "{ip}");
        }
        // 192.0.2.1 was firehol1's; drop, which lists it too, takes it at its next import.
        let (code, stdout, stderr) =
            iptrack(&stack, &["import-blocklist", "--source", "drop", &drop]);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.contains("1 added, 0 withdrawn, 1 unchanged"),
            "{stdout}"
        );
        wait_for_status(&client, &stack, "192.0.2.1", 403).await;

        // What the admin API says of the sources.
        let sources = admin_json(&client, &stack.url("/api/v1/blocklist/sources")).await;
        let by_name = |name: &str| {
            sources
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["source"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("{name} missing in {sources}"))
        };
        assert_eq!(by_name("manual")["entries"], 1);
        assert!(by_name("manual")["last_import"].is_null());
        let firehol1 = by_name("feed:firehol1");
        assert_eq!(firehol1["entries"], 2, "{firehol1}");
        assert_eq!(firehol1["last_import"]["withdrawn"], 1, "{firehol1}");
        assert_eq!(firehol1["last_import"]["listed"], 2, "{firehol1}");
        assert!(
            firehol1["last_import"]["origin"]
                .as_str()
                .unwrap()
                .ends_with("fewer.netset")
        );
        assert_eq!(by_name("feed:drop")["entries"], 2);
        let listed = admin_json(&client, &stack.url("/api/v1/blocked?source=feed:drop")).await;
        assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    }
);

both_backends!(
    a_bad_list_fails_the_import_naming_its_line_and_changes_nothing,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let stack = Stack::new(&db, &redis);
        let dir = tempfile::tempdir().unwrap();
        let firehol = write(dir.path(), "firehol.netset", FIREHOL);
        let (code, _, stderr) = iptrack(
            &stack,
            &["import-blocklist", "--source", "firehol1", &firehol],
        );
        assert_eq!(code, 0, "{stderr}");
        let before = blocked(&stack, None);
        assert_eq!(before.len(), 5);

        let shrunk = write(dir.path(), "shrunk.netset", "203.0.113.0/24\n");
        for (name, text, expected) in [
            (
                "garbage.netset",
                "203.0.113.0/24\n# fine\n<html><body>503</body></html>\n192.0.2.9\n",
                "line 3: \"<html><body>503</body></html>\" is not an IP address or CIDR network",
            ),
            (
                "hostbits.netset",
                "203.0.113.0/24 ; SBL1\n198.51.100.7/24 ; SBL2\n",
                "line 2: 198.51.100.7/24 has host bits set; did you mean 198.51.100.0/24?",
            ),
            (
                "everyone.netset",
                "203.0.113.0/24\n0.0.0.0/0\n",
                "line 2: 0.0.0.0/0 covers every IPv4 or every IPv6 address",
            ),
            (
                "empty.netset",
                "# nothing\n\n",
                "the list of feed firehol1 has no entries to block; nothing was changed",
            ),
        ] {
            let file = write(dir.path(), name, text);
            let (code, stdout, stderr) =
                iptrack(&stack, &["import-blocklist", "--source", "firehol1", &file]);
            assert_eq!(code, 2, "{name}: {stdout}{stderr}");
            assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
            assert!(stderr.contains(expected), "{name}: {stderr}");
            // Said once: an error chain must not repeat its own message.
            assert_eq!(stderr.matches(expected).count(), 1, "{name}: {stderr}");
            assert_eq!(
                blocked(&stack, None),
                before,
                "{name} changed the blocklist"
            );
        }
        let (code, _, stderr) = iptrack(
            &stack,
            &["import-blocklist", "--source", "firehol1", &shrunk],
        );
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains("has 1 entries, fewer than half of the 5 it holds"),
            "{stderr}"
        );
        assert_eq!(blocked(&stack, None), before);
        for (args, expected) in [
            (
                vec!["import-blocklist", "--source", "Fire_Hol", firehol.as_str()],
                "is not a feed name",
            ),
            (
                vec!["import-blocklist", "--source", "x", "/nonexistent/list"],
                "cannot read /nonexistent/list: No such file or directory (os error 2)",
            ),
            (vec!["blocked", "--source", "feed:"], "is not a source"),
        ] {
            let (code, stdout, stderr) = iptrack(&stack, &args);
            assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
            assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
            assert!(stderr.contains(expected), "{args:?}: {stderr}");
            assert_eq!(
                stderr.matches("(os error").count(),
                usize::from(expected.contains("(os error")),
                "{args:?}: {stderr}"
            );
        }

        // The operator may accept a list that really shrank, or withdraw a feed whole.
        let (code, stdout, stderr) = iptrack(
            &stack,
            &[
                "import-blocklist",
                "--source",
                "firehol1",
                "--allow-shrink",
                &shrunk,
            ],
        );
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("4 withdrawn"), "{stdout}");
        let empty = write(dir.path(), "none.netset", "");
        let (code, stdout, stderr) = iptrack(
            &stack,
            &[
                "import-blocklist",
                "--source",
                "firehol1",
                "--allow-empty",
                &empty,
            ],
        );
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("1 withdrawn"), "{stdout}");
        assert_eq!(blocked(&stack, None), Vec::new());
    }
);

/// Serves `body` with `status` at `/level1.netset`, replacing what was served before.
async fn serve(server: &MockServer, status: u16, body: &str) {
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/level1.netset"))
        .respond_with(ResponseTemplate::new(status).set_body_string(body))
        .mount(server)
        .await;
}

/// Waits until the feed's server has been asked `more` more times.
async fn wait_for_fetches(server: &MockServer, more: usize) {
    eventually(
        Duration::from_secs(30),
        &format!("{more} more fetches"),
        || async {
            let seen = server.received_requests().await.unwrap_or_default().len();
            (seen >= more).then_some(())
        },
    )
    .await;
}

both_backends!(
    a_feed_is_refreshed_by_the_scheduler_and_workers_and_a_bad_download_keeps_its_entries,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let server = MockServer::start().await;
        serve(&server, 200, "198.51.100.0/24\n203.0.113.9\n192.0.2.0/28\n").await;
        let stack = Stack::new(&db, &redis)
            .with("IPTRACK_BLOCKLIST_RELOAD_SECS", "3600")
            .with(
                "IPTRACK_BLOCKLIST_FEEDS",
                &format!("level1={}/level1.netset@1s", server.uri()),
            );
        let _web = Service::start("iptrack-web", &[], &stack.env);
        let _worker = Service::start("iptrack-worker", &[], &stack.env);
        // Two schedulers: still one refresh per interval.
        let _schedulers = [
            Service::start("iptrack-scheduler", &[], &stack.env),
            Service::start("iptrack-scheduler", &[], &stack.env),
        ];
        stack.wait_until_listening().await;
        let client = reqwest::Client::new();
        for ip in ["198.51.100.200", "203.0.113.9", "192.0.2.15"] {
            wait_for_status(&client, &stack, ip, 403).await;
        }
        assert_eq!(status_for(&client, &stack, "192.0.2.16").await, 200);

        // Two schedulers, a 1 s interval: about one fetch a second, not two.
        let before = server.received_requests().await.unwrap().len();
        tokio::time::sleep(Duration::from_secs(6)).await;
        let fetched = server.received_requests().await.unwrap().len() - before;
        assert!((3..=9).contains(&fetched), "{fetched} fetches in 6 s");

        // Broken downloads: an empty 200, an error page served with 200, a 500, a list
        // cut to one line. Each is fetched and refused; the entries stay.
        for (status, body) in [
            (200, ""),
            (200, "<html><body>Service Unavailable</body></html>\n"),
            (500, "oops"),
            (200, "198.51.100.0/24\n"),
        ] {
            serve(&server, status, body).await;
            wait_for_fetches(&server, 3).await;
            for ip in ["198.51.100.200", "203.0.113.9", "192.0.2.15"] {
                assert_eq!(
                    status_for(&client, &stack, ip).await,
                    403,
                    "{ip} after {status} {body:?}"
                );
            }
        }

        // A real change: 203.0.113.9 leaves the list, 2001:db8::/32 joins it.
        serve(
            &server,
            200,
            "198.51.100.0/24\n192.0.2.0/28\n2001:db8::/32\n",
        )
        .await;
        wait_for_status(&client, &stack, "203.0.113.9", 200).await;
        wait_for_status(&client, &stack, "2001:db8::77", 403).await;
        assert_eq!(status_for(&client, &stack, "198.51.100.200").await, 403);
        let conn = db.connect().await;
        assert_eq!(
            db.count(&conn, "blocked_ip WHERE source = 'feed:level1'")
                .await,
            3
        );
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_feed_setting_stops_the_scheduler_with_status_2_naming_it() {
    let (db, redis) = (
        TestDb::new(iptrack_tests::Backend::Sqlite).await,
        TestRedis::new(),
    );
    let stack = Stack::new(&db, &redis).with(
        "IPTRACK_BLOCKLIST_FEEDS",
        "firehol1=https://user:s3cret@iplists.example/level1.netset@often",
    );
    for binary in ["iptrack-scheduler", "iptrack-worker"] {
        let output = std::process::Command::new(iptrack_tests::process::binary(binary))
            .env_clear()
            .envs(&stack.env)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{binary}: {stderr}");
        assert!(stderr.contains("IPTRACK_BLOCKLIST_FEEDS"), "{stderr}");
        assert!(stderr.contains("\"often\" is not an interval"), "{stderr}");
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }
}

both_backends!(
    a_large_import_is_announced_once_keeps_live_blocks_and_takes_over_expired_ones,
    |backend| async move {
        use futures::StreamExt;
        use iptrack_core::blocklist::{
            BlockSource, change_channel,
            feed::FeedName,
            parse_block_target,
            service::{BlockMode, BlockRequest, BlocklistService, FeedImportRequest},
        };

        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let conn = db.connect().await;
        let service = BlocklistService::new(
            conn.clone(),
            iptrack_core::queue::connect(&redis.url).unwrap(),
            redis.prefix.clone(),
            &[],
        );
        let now = chrono::Utc::now();
        for (address, source, expires_at) in [
            (
                "10.0.0.1",
                BlockSource::Rule("volume".into()),
                now + chrono::Duration::hours(1),
            ),
            (
                "10.0.0.2",
                BlockSource::Rule("volume".into()),
                now - chrono::Duration::hours(1),
            ),
            (
                "10.0.0.3",
                BlockSource::Manual,
                now - chrono::Duration::hours(1),
            ),
        ] {
            service
                .block(BlockRequest {
                    network: parse_block_target(address).unwrap(),
                    reason: "before".into(),
                    expires_at: Some(expires_at),
                    allow_wide: false,
                    mode: BlockMode::Replace,
                    source,
                })
                .await
                .unwrap();
        }
        let mut pubsub = redis::Client::open(redis.url.as_str())
            .unwrap()
            .get_async_pubsub()
            .await
            .unwrap();
        pubsub
            .subscribe(change_channel(&redis.prefix))
            .await
            .unwrap();

        // More rows than one SQLite statement takes (6,000).
        let entries = |count: u32| {
            (0..count)
                .map(|i| parse_block_target(&format!("10.0.{}.{}", i / 250, i % 250 + 1)).unwrap())
                .collect()
        };
        let request = |count: u32| FeedImportRequest {
            feed: FeedName::parse("big").unwrap(),
            entries: entries(count),
            origin: "test".into(),
            allow_empty: false,
            allow_shrink: false,
        };
        let imported = service.import_feed(request(20_000)).await.unwrap();
        assert_eq!(
            (
                imported.entries,
                imported.added,
                imported.kept,
                imported.withdrawn
            ),
            (20_000, 19_999, 1, 0)
        );
        assert_eq!(
            db.count(
                &conn,
                "blocked_ip WHERE source = 'feed:big' AND expires_at IS NULL"
            )
            .await,
            19_999
        );
        assert_eq!(
            db.count(
                &conn,
                "blocked_ip WHERE ip_address = '10.0.0.1' AND source = 'rule:volume'"
            )
            .await,
            1,
            "a live block of a rule was changed"
        );
        assert_eq!(
            db.count(
                &conn,
                "blocked_ip WHERE ip_address IN ('10.0.0.2', '10.0.0.3') AND source = 'feed:big'"
            )
            .await,
            2,
            "expired rows were not taken over"
        );

        let mut messages = pubsub.on_message();
        let first = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .expect("no notice")
            .unwrap();
        assert_eq!(first.get_payload::<String>().unwrap(), r#"{"op":"reload"}"#);
        assert!(
            tokio::time::timeout(Duration::from_millis(500), messages.next())
                .await
                .is_err(),
            "more than one notice for one import"
        );
        drop(messages);

        // Three quarters of the list: a quarter withdrawn, the rule's block untouched.
        let imported = service.import_feed(request(15_000)).await.unwrap();
        assert_eq!(
            (imported.added, imported.withdrawn, imported.unchanged),
            (0, 5_000, 14_999)
        );
        assert_eq!(
            db.count(&conn, "blocked_ip WHERE source = 'feed:big'")
                .await,
            14_999
        );
        assert_eq!(
            db.count(&conn, "blocked_ip WHERE source = 'rule:volume'")
                .await,
            1
        );
        // Nothing changed: no notice, nothing written.
        let again = service.import_feed(request(15_000)).await.unwrap();
        assert_eq!((again.added, again.withdrawn), (0, 0));
    }
);
