//! Hostile text through the real `iptrack-web` and `iptrack-worker` (issue 22, "COPY
//! ingest"): a path and a user agent full of what text and CSV formats must escape
//! (quotes, backslashes, `\N`, `\.`, tabs, commas), multi-byte characters, and lengths
//! past the stored limits, sent over a raw TCP stream so no client tidies them. Each is
//! stored exactly as the web bounds it (`bounded_path`, `bounded_header`), byte for byte,
//! whichever write the worker uses (binary `COPY` on PostgreSQL, `INSERT` on SQLite).

use std::time::Duration;

use iptrack_core::jobs::{MAX_USER_AGENT_BYTES, bounded_header, bounded_path};
use iptrack_tests::{TestDb, TestRedis, both_backends, eventually, process::Service};
use sea_orm::{ConnectionTrait, Statement};

use crate::{
    Stack,
    bad_input::{Outcome, raw_request},
};

/// (request-target as sent, `User-Agent` bytes as sent)
fn hostile_requests() -> Vec<(String, Vec<u8>)> {
    let agent = |s: &str| s.as_bytes().to_vec();
    // A two-byte character straddling the 512-byte cut.
    let mut straddling = vec![b'a'; MAX_USER_AGENT_BYTES - 1];
    straddling.extend_from_slice("ü tail".as_bytes());
    vec![
        (
            "/q'u\"o\\te%09%0A%0D%00%C3%BC/%5C%22,x;y|\\N\\.?x=1".to_owned(),
            agent("Mozilla/5.0 \"quoted\" \\back\\slash \\N \\. 'single'\ttab, comma; ü 日本 🦀"),
        ),
        (
            format!("/long/{}", "a\\\"%5C".repeat(800)),
            agent(&"x\\\"'\t,;|ü日".repeat(100)),
        ),
        ("/plain".to_owned(), straddling),
        // Not valid UTF-8: stored with replacement characters, never refused.
        ("/latin1".to_owned(), b"caf\xe9 \xff\xfe".to_vec()),
    ]
}

both_backends!(
    hostile_paths_and_user_agents_are_stored_exactly,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let stack = Stack::new(&db, &redis).with("IPTRACK_BATCH_MAX_WAIT_MS", "20");
        let _web = Service::start("iptrack-web", &[], &stack.env);
        let _worker = Service::start("iptrack-worker", &[], &stack.env);
        stack.wait_until_listening().await;

        let requests = hostile_requests();
        let mut expected = Vec::new();
        for (i, (target, agent)) in requests.iter().enumerate() {
            let ip = format!("203.0.113.{}", 200 + i);
            let head = [
                format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Forwarded-For: {ip}\r\nUser-Agent: ").as_bytes(),
                agent,
                b"\r\n\r\n",
            ]
            .concat();
            let outcome = raw_request(stack.port, &head).await;
            assert!(
                matches!(outcome, Outcome::Status(status) if status < 500),
                "{target}: {outcome:?}"
            );
            let path = target.split('?').next().unwrap_or_default();
            expected.push((
                ip,
                bounded_path(path),
                bounded_header(agent, MAX_USER_AGENT_BYTES),
            ));
        }

        let conn = db.connect().await;
        eventually(Duration::from_secs(20), "every request's row", || async {
            (db.count(&conn, "request_log").await == expected.len() as i64).then_some(())
        })
        .await;
        for (ip, path, agent) in expected {
            let rows = conn
                .query_all_raw(Statement::from_sql_and_values(
                    conn.get_database_backend(),
                    match conn.get_database_backend() {
                        sea_orm::DbBackend::Postgres => {
                            "SELECT path, user_agent FROM request_log WHERE ip_address = $1"
                        }
                        _ => "SELECT path, user_agent FROM request_log WHERE ip_address = ?",
                    },
                    [ip.clone().into()],
                ))
                .await
                .expect("query failed");
            assert_eq!(rows.len(), 1, "{ip}");
            let stored: (String, String) = (
                rows[0].try_get("", "path").unwrap(),
                rows[0].try_get("", "user_agent").unwrap(),
            );
            assert!(agent.len() <= MAX_USER_AGENT_BYTES && path.len() <= 2_048);
            assert_eq!(stored, (path, agent), "{ip}");
        }
    }
);
