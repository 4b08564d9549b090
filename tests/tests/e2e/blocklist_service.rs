//! The blocklist service's rules, through the real binaries: no block of everyone or of a
//! safelisted address in any spelling, wide blocks only on request, and notices that say
//! what the table holds.

use std::time::Duration;

use iptrack_tests::{Backend, TestDb, TestRedis, both_backends, eventually, process::Service};
use redis::AsyncCommands;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::{
    ADMIN_TOKEN, Stack, admin_json,
    blocking::{status_for, wait_for_status},
    iptrack,
};

const SAFELIST: &str = "198.51.100.0/28,2001:db8:5afe::/48";

/// Every way an attacker (or a slip of the finger) may spell "everyone".
const EVERYONE: &[&str] = &[
    "0.0.0.0/0",
    " 0.0.0.0/0",
    "0.0.0.0/0 ",
    "\t0.0.0.0/0\n",
    "::/0",
    " ::/0 ",
    "0::/0",
    "::0/0",
    "0:0:0:0:0:0:0:0/0",
    "0000:0000:0000:0000:0000:0000:0000:0000/0",
    "::ffff:0.0.0.0/96",
    "::FFFF:0.0.0.0/96",
    "::ffff:0:0/96",
    "0:0:0:0:0:ffff:0:0/96",
    "::fffe:0:0/95",
    "::/80",
    "::/1",
];

/// Blocks that overlap `SAFELIST`, in several spellings.
const SAFELISTED: &[&str] = &[
    "198.51.100.5",
    "198.51.100.0",
    "::ffff:198.51.100.5",
    "::ffff:c633:6405",
    "198.51.100.0/29",
    "198.51.100.0/24",
    "::ffff:198.51.100.0/120",
    "198.51.0.0/16",
    "198.0.0.0/8",
    "2001:db8:5afe::1",
    "2001:db8:5afe:1::/64",
    "2001:db8::/32",
    "2001::/16",
];

/// Wider than /16 (IPv4) or /32 (IPv6), allowed only with the override.
const WIDE: &[(&str, &str)] = &[
    ("10.0.0.0/8", "10.0.0.0/8"),
    ("::ffff:172.16.0.0/108", "172.16.0.0/12"),
    ("32.0.0.0/3", "32.0.0.0/3"),
    ("2400::/12", "2400::/12"),
];

fn stack(db: &TestDb, redis: &TestRedis) -> Stack {
    Stack::new(db, redis)
        .with("IPTRACK_SAFELIST", SAFELIST)
        .with("IPTRACK_ADMIN_TOKEN", ADMIN_TOKEN)
}

/// Clients that must still be served after all the refused attempts.
async fn everyone_is_still_served(client: &reqwest::Client, stack: &Stack) {
    for ip in [
        "203.0.113.5",
        "198.51.100.5",
        "2001:db8:1::5",
        "2001:db8:5afe::1",
    ] {
        assert_eq!(status_for(client, stack, ip).await, 200, "{ip}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_refuses_everyone_and_safelisted_addresses_even_with_allow_wide() {
    let (db, redis) = (TestDb::new(Backend::Sqlite).await, TestRedis::new());
    let mut stack = stack(&db, &redis);
    let _web = stack.serve_web().await;
    let client = reqwest::Client::new();

    let refused = |target: &str, allow_wide: bool, expected: &str| {
        let mut args = vec!["block", target];
        if allow_wide {
            args.push("--allow-wide");
        }
        let (code, stdout, stderr) = iptrack(&stack, &args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?} printed: {stderr}");
        assert!(stderr.contains(expected), "{args:?} printed: {stderr}");
        assert!(stdout.is_empty(), "{args:?} printed: {stdout}");
    };
    for target in EVERYONE {
        for allow_wide in [false, true] {
            refused(target, allow_wide, "iptrack never blocks everyone");
        }
    }
    for target in SAFELISTED {
        for allow_wide in [false, true] {
            refused(target, allow_wide, "of IPTRACK_SAFELIST");
        }
    }
    for (target, shown) in WIDE {
        refused(target, false, "--allow-wide");
        let (code, stdout, stderr) = iptrack(&stack, &["block", target, "--allow-wide"]);
        assert_eq!(code, 0, "{target}: {stderr}");
        assert_eq!(stdout.trim(), format!("blocked {shown} until unblocked"));
    }
    // The widest networks allowed by default need no override.
    for target in ["203.1.0.0/16", "2001:db9::/32"] {
        let (code, _, stderr) = iptrack(&stack, &["block", target]);
        assert_eq!(code, 0, "{target}: {stderr}");
    }

    let (_, stdout, _) = iptrack(&stack, &["blocked", "--json"]);
    let blocks: Value = serde_json::from_str(&stdout).unwrap();
    let mut stored: Vec<&str> = blocks
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["ip_address"].as_str().unwrap())
        .collect();
    stored.sort_unstable();
    assert_eq!(
        stored,
        [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "2001:db9::/32",
            "203.1.0.0/16",
            "2400::/12",
            "32.0.0.0/3"
        ]
    );
    wait_for_status(&client, &stack, "10.1.2.3", 403).await;
    everyone_is_still_served(&client, &stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_everyone_and_safelisted_addresses_even_with_allow_wide() {
    let (db, redis) = (TestDb::new(Backend::Sqlite).await, TestRedis::new());
    let mut stack = stack(&db, &redis);
    let _web = stack.serve_web().await;
    let client = reqwest::Client::new();
    let blocked = stack.url("/api/v1/blocked");
    let post = |body: Value| {
        client
            .post(&blocked)
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    };

    let refused = |body: Value, expected: &'static str| {
        let response = post(body.clone());
        async move {
            let response = response.await.unwrap();
            assert_eq!(response.status().as_u16(), 400, "{body}");
            let error: Value = response.json().await.unwrap();
            let text = error["error"].as_str().unwrap_or_default();
            assert!(text.contains(expected), "{body} → {error}");
        }
    };
    for target in EVERYONE {
        // The API's documented pattern refuses surrounding white space before the policy
        // is asked (the CLI trims it, and its policy refusal is tested above).
        let expected = if target.trim() == *target {
            "iptrack never blocks everyone"
        } else {
            "is not an IP address or a CIDR network"
        };
        refused(json!({"address": target}), expected).await;
        refused(
            json!({"address": target, "allow_wide": true, "reason": "I mean it"}),
            expected,
        )
        .await;
    }
    for target in SAFELISTED {
        refused(json!({"address": target}), "of IPTRACK_SAFELIST").await;
        refused(
            json!({"address": target, "allow_wide": true}),
            "of IPTRACK_SAFELIST",
        )
        .await;
    }
    for (target, shown) in WIDE {
        refused(json!({"address": target}), "\"allow_wide\": true").await;
        refused(
            json!({"address": target, "allow_wide": false}),
            "\"allow_wide\": true",
        )
        .await;
        // Only a JSON true overrides.
        refused(
            json!({"address": target, "allow_wide": "true"}),
            "invalid JSON body",
        )
        .await;
        refused(
            json!({"address": target, "allow_wide": 1}),
            "invalid JSON body",
        )
        .await;
        let response = post(json!({"address": target, "allow_wide": true}))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201, "{target}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["ip_address"], *shown);
    }

    let list = admin_json(&client, &blocked).await;
    assert_eq!(list.as_array().unwrap().len(), WIDE.len(), "{list}");
    wait_for_status(&client, &stack, "10.1.2.3", 403).await;
    everyone_is_still_served(&client, &stack).await;
    // The admin can still undo what was blocked.
    let response = client
        .delete(format!("{blocked}?address=10.0.0.0/8"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    wait_for_status(&client, &stack, "10.1.2.3", 200).await;
}

/// A block of everyone stored before the service refused them (or written around it)
/// is not enforced, and the admin API can remove it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_block_of_everyone_is_not_enforced_and_can_be_removed() {
    let (db, redis) = (TestDb::new(Backend::Sqlite).await, TestRedis::new());
    let conn = db.connect().await;
    for network in ["0.0.0.0/0", "::/0"] {
        conn.execute_unprepared(&format!(
            "INSERT INTO blocked_ip (ip_address, reason, created_at) \
             VALUES ('{network}', 'old', '2026-11-01T00:00:00+00:00')"
        ))
        .await
        .unwrap();
    }
    let mut stack = stack(&db, &redis);
    let _web = stack.serve_web().await;
    let client = reqwest::Client::new();
    everyone_is_still_served(&client, &stack).await;
    for network in ["0.0.0.0/0", "::/0"] {
        let response = client
            .delete(stack.url(&format!("/api/v1/blocked?address={network}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 204, "{network}");
    }
    assert_eq!(db.count(&conn, "blocked_ip").await, 0);
}

both_backends!(
    an_automatic_block_does_not_end_a_permanent_one_on_running_web_instances,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        // Only notices may reach the web: a reload would repair a wrong one and hide the bug.
        let stack = Stack::new(&db, &redis)
            .with("IPTRACK_BLOCKLIST_RELOAD_SECS", "3600")
            .with("IPTRACK_AUTO_BLOCK_SECS", "2");
        let _web = Service::start("iptrack-web", &[], &stack.env);
        let _worker = Service::start("iptrack-worker", &[], &stack.env);
        stack.wait_until_listening().await;
        let client = reqwest::Client::new();

        let (code, _, stderr) = iptrack(&stack, &["block", "203.0.113.80", "--reason", "manual"]);
        assert_eq!(code, 0, "{stderr}");
        wait_for_status(&client, &stack, "203.0.113.80", 403).await;
        // Blocked requests are logged; the sensitive-path rule flags the address.
        for _ in 0..3 {
            client
                .get(stack.url("/admin"))
                .header("x-forwarded-for", "203.0.113.80")
                .send()
                .await
                .unwrap();
        }
        let conn = db.connect().await;
        eventually(Duration::from_secs(10), "the /admin rows", || async {
            (db.count(&conn, "request_log WHERE path = '/admin'").await == 3).then_some(())
        })
        .await;

        let (code, stdout, stderr) = iptrack(&stack, &["flag-suspicious"]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        let mut redis_conn = redis.connection().await;
        let done_key = format!("{}:flag-suspicious-ips:done", redis.prefix);
        eventually(Duration::from_secs(15), "the flag job done", || {
            let (mut redis_conn, done_key) = (redis_conn.clone(), done_key.clone());
            async move { (redis_conn.scard::<_, u64>(done_key).await.unwrap() == 1).then_some(()) }
        })
        .await;
        let _: () = redis_conn.ping().await.unwrap();
        assert_eq!(
            db.count(&conn, "suspicious_ip WHERE ip_address = '203.0.113.80'")
                .await,
            1
        );
        assert_eq!(
            db.count(
                &conn,
                "blocked_ip WHERE ip_address = '203.0.113.80' AND expires_at IS NULL"
            )
            .await,
            1
        );
        // Past the automatic block's expiry, the permanent block still holds.
        tokio::time::sleep(Duration::from_secs(3)).await;
        for _ in 0..5 {
            assert_eq!(status_for(&client, &stack, "203.0.113.80").await, 403);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(status_for(&client, &stack, "203.0.113.81").await, 200);
    }
);
