//! Spellings of one path (issue 16, "Percent-encoded paths bypass the login limit and the
//! sensitive-path rule"), sent over a raw TCP stream to the real `iptrack-web`, because
//! HTTP clients normalise what they send. For each spelling: either the router does not
//! serve the handler, or the request meets the rule that covers the handler (the login
//! limit, the sensitive-path flag), once; and the stored path is the canonical one.

use std::{collections::BTreeSet, time::Duration};

use iptrack_tests::{TestDb, TestRedis, both_backends, eventually, process::Service};
use sea_orm::{ConnectionTrait, Statement};

use crate::{
    Stack,
    bad_input::{Outcome, raw_request},
    iptrack,
};

/// (as sent, whether the router serves the handler with it, the path stored)
type Spelling = (&'static str, bool, &'static str);

const LOGIN_SPELLINGS: &[Spelling] = &[
    ("/login", true, "/login"),
    ("/%6cogin", true, "/login"),
    ("/%6Cogin", true, "/login"),
    ("/logi%6e", true, "/login"),
    ("/login?x=1", true, "/login"),
    ("/login/", false, "/login/"),
    ("//login", false, "//login"),
    ("/./login", false, "/./login"),
    ("/Login", false, "/Login"),
    ("/login%2f", false, "/login%2F"),
    ("/login;x", false, "/login;x"),
];

const ADMIN_SPELLINGS: &[Spelling] = &[
    ("/admin", true, "/admin"),
    ("/%61dmin", true, "/admin"),
    ("/admi%6e", true, "/admin"),
    ("/admi%6E", true, "/admin"),
    ("/admin?x=1", true, "/admin"),
    ("/admin/", false, "/admin/"),
    ("//admin", false, "//admin"),
    ("/./admin", false, "/./admin"),
    ("/Admin", false, "/Admin"),
    ("/admin%2f", false, "/admin%2F"),
    ("/admin;x", false, "/admin;x"),
];

/// A request with `target` exactly as written, from `client` (the trusted-proxy header).
fn raw(method: &str, target: &str, client: &str) -> Vec<u8> {
    let body = "username=mallory&password=guess";
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         X-Forwarded-For: {client}\r\n"
    );
    if method == "POST" {
        request.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        request.push_str("\r\n");
    }
    request.into_bytes()
}

/// The paths stored for `ip`, in arrival order.
async fn stored_paths(conn: &sea_orm::DatabaseConnection, ip: &str) -> Vec<String> {
    let rows = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            format!("SELECT path FROM request_log WHERE ip_address = '{ip}' ORDER BY id"),
        ))
        .await
        .expect("query failed");
    rows.iter()
        .map(|row| row.try_get::<String>("", "path").expect("no path"))
        .collect()
}

both_backends!(
    every_spelling_the_router_serves_meets_the_login_limit_and_the_sensitive_path_rule,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let stack = Stack::new(&db, &redis).with("IPTRACK_BATCH_MAX_WAIT_MS", "20");
        let _web = Service::start("iptrack-web", &[], &stack.env);
        let _worker = Service::start("iptrack-worker", &[], &stack.env);
        stack.wait_until_listening().await;

        // Each login spelling from an address of its own: six anonymous posts in a minute,
        // the sixth over the default limit of five.
        let mut sent = 0;
        for (i, &(target, served, _)) in LOGIN_SPELLINGS.iter().enumerate() {
            let ip = format!("203.0.113.{}", i + 1);
            let mut statuses = Vec::new();
            for _ in 0..6 {
                statuses.push(raw_request(stack.port, &raw("POST", target, &ip)).await);
                sent += 1;
            }
            let expected = if served {
                let mut expected = vec![Outcome::Status(401); 5];
                expected.push(Outcome::Status(429));
                expected
            } else {
                vec![Outcome::Status(404); 6]
            };
            assert_eq!(statuses, expected, "POST {target}");
        }
        // Spellings mixed from one address share one budget, each request counted once.
        let mut statuses = Vec::new();
        for target in [
            "/%6cogin",
            "/login",
            "/%6Cogin",
            "/logi%6e",
            "/login?x=1",
            "/login",
        ] {
            statuses.push(raw_request(stack.port, &raw("POST", target, "198.51.100.77")).await);
            sent += 1;
        }
        let mut expected = vec![Outcome::Status(401); 5];
        expected.push(Outcome::Status(429));
        assert_eq!(statuses, expected, "mixed spellings from one address");

        // Each admin spelling from an address of its own, once.
        for (i, &(target, served, _)) in ADMIN_SPELLINGS.iter().enumerate() {
            let ip = format!("203.0.113.{}", 101 + i);
            let status = raw_request(stack.port, &raw("GET", target, &ip)).await;
            sent += 1;
            let expected = Outcome::Status(if served { 200 } else { 404 });
            assert_eq!(status, expected, "GET {target}");
        }

        let conn = db.connect().await;
        eventually(Duration::from_secs(20), "every request's row", || async {
            (db.count(&conn, "request_log").await == sent).then_some(())
        })
        .await;
        for (i, &(target, _, stored)) in LOGIN_SPELLINGS.iter().enumerate() {
            let ip = format!("203.0.113.{}", i + 1);
            assert_eq!(stored_paths(&conn, &ip).await, vec![stored; 6], "{target}");
        }
        assert_eq!(
            stored_paths(&conn, "198.51.100.77").await,
            vec!["/login"; 6]
        );
        for (i, &(target, _, stored)) in ADMIN_SPELLINGS.iter().enumerate() {
            let ip = format!("203.0.113.{}", 101 + i);
            assert_eq!(stored_paths(&conn, &ip).await, [stored], "{target}");
        }

        // The hourly rule, run now over the last hour: every address that reached the
        // admin page by any spelling is flagged.
        let (code, stdout, stderr) = iptrack(&stack, &["flag-suspicious"]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        let admin_served: BTreeSet<String> = ADMIN_SPELLINGS
            .iter()
            .enumerate()
            .filter(|(_, spelling)| spelling.1)
            .map(|(i, _)| format!("203.0.113.{}", 101 + i))
            .collect();
        let flagged = eventually(Duration::from_secs(20), "the flags", || async {
            let rows = conn
                .query_all_raw(Statement::from_string(
                    conn.get_database_backend(),
                    "SELECT ip_address FROM suspicious_ip WHERE rule = 'sensitive-path'".to_owned(),
                ))
                .await
                .expect("query failed");
            let flagged: BTreeSet<String> = rows
                .iter()
                .map(|row| row.try_get::<String>("", "ip_address").expect("no address"))
                .collect();
            (!flagged.is_empty()).then_some(flagged)
        })
        .await;
        let missed: Vec<_> = admin_served.difference(&flagged).collect();
        assert!(
            missed.is_empty(),
            "not flagged: {missed:?} (flagged: {flagged:?})"
        );
    }
);
