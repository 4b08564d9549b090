//! The admin API's read endpoints (`suspicious`, `logs`, `stats`, `meta`), its OpenAPI
//! document, and `iptrack logs`, through the reference server (in-process) over a seeded
//! database.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, DurationRound, Utc};
use iptrack_entity::{request_log, suspicious_ip};
use iptrack_tests::{TestDb, TestRedis, both_backends};
use reqwest::Method;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, sea_query::Expr,
};
use serde_json::Value;

use crate::{Stack, iptrack};

use crate::ADMIN_TOKEN as TOKEN;

/// One seeded request: (address, minutes before the base time, path, status, country code).
type Row = (&'static str, i64, &'static str, i32, &'static str);

fn api_stack(db: &TestDb, redis: &TestRedis) -> Stack {
    Stack::new(db, redis).with("IPTRACK_ADMIN_TOKEN", TOKEN)
}

/// A whole minute a little in the past, so "now" ranges include every seeded row.
fn base_time() -> DateTime<Utc> {
    (Utc::now() - Duration::minutes(5))
        .duration_trunc(Duration::minutes(1))
        .unwrap()
}

pub async fn seed_logs(conn: &DatabaseConnection, base: DateTime<Utc>, rows: &[Row]) {
    let models =
        rows.iter().map(
            |&(ip, minutes_ago, path, status, country)| request_log::ActiveModel {
                ip_address: Set(ip.to_owned()),
                timestamp: Set(base - Duration::minutes(minutes_ago) + Duration::seconds(7)),
                method: Set("GET".to_owned()),
                path: Set(path.to_owned()),
                status: Set(status),
                duration_us: Set(100),
                user_agent: Set(String::new()),
                user_id: Set(String::new()),
                query_string: Set(String::new()),
                country_code: Set(country.to_owned()),
                country: Set(match country {
                    "DE" => "Germany",
                    "FR" => "France",
                    _ => "",
                }
                .to_owned()),
                city: Set(String::new()),
                ..Default::default()
            },
        );
    request_log::Entity::insert_many(models)
        .exec(conn)
        .await
        .unwrap();
    // Written directly, not by the request-log job: count the dashboard's rollup.
    iptrack_tests::db::recount_rollup(conn).await;
}

async fn get(client: &reqwest::Client, stack: &Stack, path: &str) -> (u16, Value) {
    let response = client
        .get(stack.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn start(db: &TestDb, redis: &TestRedis) -> (Stack, crate::in_process::WebApp) {
    let mut stack = api_stack(db, redis);
    let web = stack.serve_web().await;
    (stack, web)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_exactly_the_routed_admin_operations() {
    let (db, redis) = (
        TestDb::new(iptrack_tests::Backend::Sqlite).await,
        TestRedis::new(),
    );
    let (stack, _web) = start(&db, &redis).await;
    let client = reqwest::Client::new();
    // The document itself needs no token: it holds no data.
    let doc: Value = client
        .get(stack.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut documented = BTreeSet::new();
    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            documented.insert((method.to_uppercase(), path.clone()));
            assert!(
                operation_ids.insert(operation["operationId"].as_str().unwrap().to_owned()),
                "{method} {path}: operationId not unique"
            );
            assert!(
                operation["responses"]["401"].is_object(),
                "{method} {path} documents no 401"
            );
            assert!(operation["security"].is_array(), "{method} {path}");
        }
    }
    let admin_routes: BTreeSet<(String, String)> = [
        ("GET", "/api/v1/blocked"),
        ("POST", "/api/v1/blocked"),
        ("DELETE", "/api/v1/blocked"),
        ("GET", "/api/v1/suspicious"),
        ("GET", "/api/v1/logs"),
        ("GET", "/api/v1/stats"),
        ("GET", "/api/v1/addresses/{ip}"),
        ("GET", "/api/v1/countries"),
        ("GET", "/api/v1/meta"),
        ("GET", "/api/v1/blocklist/sources"),
        ("GET", "/api/v1/rules"),
        ("GET", "/api/v1/events"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(documented, admin_routes, "document and admin routes differ");

    // Every documented operation is routed: with no token it is refused (401), not
    // missing (404) or of another method (405), as an unrouted path is.
    for (method, path) in documented
        .iter()
        .chain([&("GET".to_owned(), "/api/v1/nothing".to_owned())])
    {
        let response = client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                stack.url(path),
            )
            .send()
            .await
            .unwrap();
        let expected = if path.ends_with("/nothing") { 404 } else { 401 };
        assert_eq!(response.status().as_u16(), expected, "{method} {path}");
    }

    // The parameters a handler reads are the ones documented.
    let logs_params: BTreeSet<&str> = doc["paths"]["/api/v1/logs"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        logs_params,
        BTreeSet::from([
            "ip", "network", "path", "method", "status", "class", "country", "since", "until",
            "cursor", "limit"
        ])
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["RequestLog"].is_object());
}

/// A path the document declares, asked with a method it does not declare, answers 405
/// with `Allow` listing exactly the declared methods (RFC 9110, 15.5.6), not 404 as if
/// the path did not exist. The methods come from the document, so an endpoint added
/// later is covered without touching this test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_documented_path_answers_405_with_allow_for_an_undeclared_method() {
    let (db, redis) = (
        TestDb::new(iptrack_tests::Backend::Sqlite).await,
        TestRedis::new(),
    );
    let (stack, _web) = start(&db, &redis).await;
    let client = reqwest::Client::new();
    let doc: Value = client
        .get(stack.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let methods = [
        "GET", "POST", "PUT", "PATCH", "DELETE", "TRACE", "OPTIONS", "HEAD",
    ];
    let mut paths: Vec<(String, BTreeSet<String>)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let declared = item
                .as_object()
                .unwrap()
                .keys()
                .map(|m| m.to_uppercase())
                .collect();
            (path.clone(), declared)
        })
        .collect();
    assert!(paths.len() >= 5, "{doc}");
    paths.push((
        "/api/v1/openapi.json".to_owned(),
        BTreeSet::from(["GET".to_owned()]),
    ));
    for (path, declared) in &paths {
        for method in methods.iter().filter(|m| !declared.contains(**m)) {
            let response = client
                .request(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    stack.url(path),
                )
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 405, "{method} {path}");
            let allow: BTreeSet<String> = response.headers()["allow"]
                .to_str()
                .unwrap()
                .split(',')
                .map(|m| m.trim().to_owned())
                .collect();
            assert_eq!(&allow, declared, "{method} {path}");
            if *method != "HEAD" {
                let body: Value = response.json().await.unwrap();
                assert!(body["error"].as_str().unwrap().contains(method), "{body}");
            }
        }
    }
    // A path the document does not declare is still missing, whatever the method.
    for method in ["GET", "TRACE"] {
        let response = client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                stack.url("/api/v1/nothing"),
            )
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 404, "{method}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_endpoint_refuses_a_wrong_token() {
    let (db, redis) = (
        TestDb::new(iptrack_tests::Backend::Sqlite).await,
        TestRedis::new(),
    );
    let (stack, _web) = start(&db, &redis).await;
    let client = reqwest::Client::new();
    for path in [
        "/api/v1/suspicious",
        "/api/v1/logs",
        "/api/v1/stats",
        "/api/v1/meta",
        "/api/v1/countries",
        "/api/v1/addresses/203.0.113.1",
    ] {
        for token in ["wrong", &TOKEN[1..], &format!("{TOKEN}x")] {
            let response = client
                .get(stack.url(path))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 401, "{path} {token}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
        }
        let (status, _) = get(&client, &stack, path).await;
        assert_eq!(status, 200, "{path}");
    }
    let (_, meta) = get(&client, &stack, "/api/v1/meta").await;
    // Without the DB-IP database there is nothing to credit.
    assert!(meta["geo_attribution"].is_null());
    // No worker has started: nobody has said whether requests are geolocated.
    assert_eq!(meta["geolocation"], "unknown");
}

both_backends!(
    logs_are_filtered_and_paged_without_gaps_or_repeats,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let base = base_time();
        let conn = db.connect().await;
        // 30 rows at one instant (ties only the id can order), plus a few others.
        let mut rows: Vec<Row> = (0..30)
            .map(|_| ("198.51.100.1", 1, "/same", 200, ""))
            .collect();
        rows.extend([
            ("198.51.100.2", 2, "/login", 401, ""),
            ("198.51.100.2", 3, "/login_x", 200, ""),
            ("198.51.100.2", 4, "/loginXYZ", 200, ""),
            ("2001:db8::7", 10, "/admin", 403, ""),
        ]);
        seed_logs(&conn, base, &rows).await;
        let (stack, _web) = start(&db, &redis).await;
        let client = reqwest::Client::new();

        let mut seen = Vec::new();
        let mut next = String::from("/api/v1/logs?limit=7");
        let mut pages = 0;
        loop {
            let (status, page) = get(&client, &stack, &next).await;
            assert_eq!(status, 200, "{page}");
            pages += 1;
            let items = page["items"].as_array().unwrap();
            assert!(items.len() <= 7);
            seen.extend(items.iter().map(|row| row["id"].as_i64().unwrap()));
            match page["next_cursor"].as_str() {
                Some(cursor) => next = format!("/api/v1/logs?limit=7&cursor={cursor}"),
                None => break,
            }
        }
        assert_eq!(pages, 5);
        let distinct: BTreeSet<i64> = seen.iter().copied().collect();
        assert_eq!((seen.len(), distinct.len()), (34, 34), "{seen:?}");
        // Newest first: the 30 tied rows come before the older ones.
        let (_, first) = get(&client, &stack, "/api/v1/logs?limit=1").await;
        assert_eq!(first["items"][0]["path"], "/same");

        for (query, expected) in [
            ("ip=198.51.100.2", 3),
            ("ip=::ffff:198.51.100.2", 3),
            ("ip=2001:db8:0::7", 1),
            // `_` is a literal, not LIKE's any-character.
            ("path=/login_", 1),
            ("path=/login", 3),
            ("status=403", 1),
            ("status=401&ip=198.51.100.2", 1),
            (
                &format!("since={}", (base - Duration::minutes(3)).to_rfc3339())
                    .replace('+', "%2B"),
                32,
            ),
            (
                &format!("until={}", (base - Duration::minutes(3)).to_rfc3339())
                    .replace('+', "%2B"),
                2,
            ),
        ] {
            let (status, page) = get(&client, &stack, &format!("/api/v1/logs?{query}")).await;
            assert_eq!(status, 200, "{query}: {page}");
            assert_eq!(page["items"].as_array().unwrap().len(), expected, "{query}");
        }

        for (query, message) in [
            ("cursor=zz", "invalid cursor"),
            ("cursor=3132", "invalid cursor"),
            ("limit=0", "limit must be a whole number from 1 to 1000"),
            ("limit=1001", "limit must be a whole number from 1 to 1000"),
            ("limit=ten", "limit must be"),
            ("status=abc", "status must be an HTTP status code"),
            ("status=700", "status must be an HTTP status code"),
            ("ip=nonsense", "is not an IP address"),
            ("since=yesterday", "since:"),
            (
                "since=2026-11-21T10:00:00Z&until=2026-11-21T09:00:00Z",
                "since must be earlier",
            ),
            ("colour=red", "unknown field"),
        ] {
            let (status, body) = get(&client, &stack, &format!("/api/v1/logs?{query}")).await;
            assert_eq!(status, 400, "{query}");
            let error = body["error"].as_str().unwrap_or_default();
            assert!(error.contains(message), "{query} → {error}");
        }

        // The CLI reads through the same query.
        let (code, out, err) = iptrack(
            &stack,
            &["logs", "--ip", "198.51.100.2", "--limit", "2", "--json"],
        );
        assert_eq!(code, 0, "{err}");
        let listed: Value = serde_json::from_str(&out).unwrap();
        let paths: Vec<&str> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["path"].as_str().unwrap())
            .collect();
        assert_eq!(paths, ["/login", "/login_x"]);
        // More than one page's worth follows the cursor.
        let (code, out, _) = iptrack(&stack, &["logs", "--limit", "1500", "--json"]);
        assert_eq!(code, 0);
        assert_eq!(
            serde_json::from_str::<Value>(&out)
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            34
        );
        let (code, _, err) = iptrack(&stack, &["logs", "--ip", "not-an-ip"]);
        assert_eq!(code, 2);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("is not an IP address"), "{err}");
    }
);

both_backends!(
    iptrack_logs_takes_the_api_filters_and_lists_exactly_the_matching_rows,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let base = base_time();
        let conn = db.connect().await;
        seed_logs(
            &conn,
            base,
            &[
                ("203.0.113.1", 0, "/a", 200, "DE"),
                ("203.0.113.200", 1, "/b", 429, "FR"),
                ("198.51.100.7", 2, "/c", 429, ""),
                ("2001:db8::9", 3, "/d", 403, ""),
                ("2001:db9::1", 4, "/e", 200, "DE"),
                ("203.0.114.1", 5, "/post", 200, "DE"),
            ],
        )
        .await;
        request_log::Entity::update_many()
            .col_expr(request_log::Column::Method, Expr::value("POST"))
            .filter(request_log::Column::Path.eq("/post"))
            .exec(&conn)
            .await
            .unwrap();
        let stack = api_stack(&db, &redis);
        let time = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let (since, until) = (time(base - Duration::minutes(2)), time(base));
        let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
            (vec!["--network", "203.0.113.0/24"], vec!["/a", "/b"]),
            (vec!["--network", "2001:db8::/32"], vec!["/d"]),
            (vec!["--class", "429"], vec!["/b", "/c"]),
            (vec!["--country", "unknown"], vec!["/c", "/d"]),
            (vec!["--method", "post"], vec!["/post"]),
            (vec!["--status", "403"], vec!["/d"]),
            (
                vec!["--country", "de", "--status", "200", "--path", "/"],
                vec!["/a", "/e", "/post"],
            ),
            (vec!["--since", &since, "--until", &until], vec!["/b", "/c"]),
            (vec!["--class", "2xx", "--limit", "2"], vec!["/a", "/e"]),
            (vec!["--ip", "::ffff:198.51.100.7"], vec!["/c"]),
        ];
        for (filter, expected) in cases {
            let mut args = vec!["logs", "--json"];
            args.extend(&filter);
            let (code, out, err) = iptrack(&stack, &args);
            assert_eq!(code, 0, "{filter:?}: {err}");
            let listed: Value = serde_json::from_str(&out).unwrap();
            let paths: Vec<&str> = listed
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["path"].as_str().unwrap())
                .collect();
            assert_eq!(paths, expected, "{filter:?}");
        }
    }
);

both_backends!(
    stats_count_per_minute_and_rank_the_top_entries,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let base = base_time();
        let conn = db.connect().await;
        let mut rows: Vec<Row> = Vec::new();
        rows.extend((0..5).map(|_| ("203.0.113.1", 0, "/a", 200, "DE")));
        rows.extend((0..3).map(|_| ("203.0.113.2", 2, "/b", 403, "FR")));
        rows.extend((0..2).map(|_| ("2001:db8::9", 2, "/a", 429, "DE")));
        rows.push(("203.0.113.3", 4, "/c", 200, ""));
        // Outside the range asked for below: must count nowhere.
        rows.push(("203.0.113.1", 90, "/a", 403, "DE"));
        seed_logs(&conn, base, &rows).await;
        let (stack, _web) = start(&db, &redis).await;
        let client = reqwest::Client::new();

        let since = base - Duration::minutes(9);
        let until = base + Duration::minutes(1);
        let query = format!(
            "/api/v1/stats?since={}&until={}&top=2",
            since.format("%Y-%m-%dT%H:%M:%SZ"),
            until.format("%Y-%m-%dT%H:%M:%SZ")
        );
        let (status, stats) = get(&client, &stack, &query).await;
        assert_eq!(status, 200, "{stats}");
        assert_eq!(
            (
                &stats["total"],
                &stats["forbidden_403"],
                &stats["rate_limited_429"]
            ),
            (&Value::from(11), &Value::from(3), &Value::from(2))
        );
        let minutes = stats["requests_per_minute"].as_array().unwrap();
        assert_eq!(minutes.len(), 10);
        let counts: Vec<i64> = minutes
            .iter()
            .map(|m| m["requests"].as_i64().unwrap())
            .collect();
        assert_eq!(counts, [0, 0, 0, 0, 0, 1, 0, 5, 0, 5]);
        let last = DateTime::parse_from_rfc3339(minutes[9]["minute"].as_str().unwrap()).unwrap();
        assert_eq!(last, base);
        let top = |list: &str, key: &str| -> Vec<(String, i64)> {
            stats[list]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e[key].as_str().unwrap().to_owned(),
                        e["requests"].as_i64().unwrap(),
                    )
                })
                .collect()
        };
        assert_eq!(
            top("top_addresses", "ip_address"),
            [("203.0.113.1".to_owned(), 5), ("203.0.113.2".to_owned(), 3)]
        );
        assert_eq!(
            top("top_countries", "country_code"),
            [("DE".to_owned(), 7), ("FR".to_owned(), 3)]
        );
        assert_eq!(stats["top_countries"][0]["country"], "Germany");
        assert_eq!(
            top("top_paths", "path"),
            [("/a".to_owned(), 7), ("/b".to_owned(), 3)]
        );

        // The default range is the last hour: the row from 90 minutes ago is outside it.
        let (_, recent) = get(&client, &stack, "/api/v1/stats").await;
        assert_eq!(recent["total"], 11);
        // From the minute an hour ago to the current (partial) one.
        let minutes = recent["requests_per_minute"].as_array().unwrap().len();
        assert!((60..=61).contains(&minutes), "{minutes}");

        for (query, message) in [
            (
                "since=2026-08-21T00:00:00Z&until=2026-11-20T00:00:01Z",
                "at most 90 days",
            ),
            (
                "since=2026-11-19T00:00:00Z&until=2026-11-21T00:00:00Z&bucket=minute",
                "at most 1500",
            ),
            (
                "since=2026-11-21T00:00:00Z&until=2026-11-21T00:00:00Z",
                "since must be earlier",
            ),
            ("top=0", "top must be a whole number from 1 to 100"),
            ("top=101", "top must be"),
            ("until=soon", "until:"),
            ("bucket=week", "bucket must be one of minute, hour, day"),
            ("colour=red", "unknown field"),
        ] {
            let (status, body) = get(&client, &stack, &format!("/api/v1/stats?{query}")).await;
            assert_eq!(status, 400, "{query}");
            let error = body["error"].as_str().unwrap_or_default();
            assert!(error.contains(message), "{query} → {error}");
        }
    }
);

both_backends!(
    suspicious_flags_are_listed_newest_first_and_filtered,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let conn = db.connect().await;
        let now = Utc::now().duration_trunc(Duration::seconds(1)).unwrap();
        let flags = [
            ("198.51.100.5", "volume", 3),
            ("198.51.100.5", "sensitive-path", 2),
            ("198.51.100.6", "volume", 1),
        ]
        .map(|(ip, rule, hours_ago)| suspicious_ip::ActiveModel {
            ip_address: Set(ip.to_owned()),
            rule: Set(rule.to_owned()),
            reason: Set(format!("{rule} test")),
            window_start: Set(now - Duration::hours(hours_ago + 1)),
            window_end: Set(now - Duration::hours(hours_ago)),
            flagged_at: Set(now - Duration::hours(hours_ago)),
            first_seen: Set(now - Duration::hours(hours_ago + 1)),
            last_seen: Set(now - Duration::hours(hours_ago) - Duration::minutes(1)),
            request_count: Set(hours_ago * 10),
            ..Default::default()
        });
        suspicious_ip::Entity::insert_many(flags)
            .exec(&conn)
            .await
            .unwrap();
        let (stack, _web) = start(&db, &redis).await;
        let client = reqwest::Client::new();
        let listed = |body: &Value| -> Vec<(String, String)> {
            body.as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    (
                        f["ip_address"].as_str().unwrap().to_owned(),
                        f["rule"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        };
        let (_, all) = get(&client, &stack, "/api/v1/suspicious").await;
        assert_eq!(
            listed(&all),
            [
                ("198.51.100.6".to_owned(), "volume".to_owned()),
                ("198.51.100.5".to_owned(), "sensitive-path".to_owned()),
                ("198.51.100.5".to_owned(), "volume".to_owned()),
            ]
        );
        // An incident's span and size.
        let newest = &all[0];
        assert_eq!(newest["request_count"], 10);
        for (field, expected) in [
            ("first_seen", now - Duration::hours(2)),
            ("last_seen", now - Duration::hours(1) - Duration::minutes(1)),
            ("flagged_at", now - Duration::hours(1)),
        ] {
            let shown: chrono::DateTime<Utc> = newest[field].as_str().unwrap().parse().unwrap();
            assert_eq!(shown, expected, "{field}");
        }
        let since = (now - Duration::minutes(150)).format("%Y-%m-%dT%H:%M:%SZ");
        for (query, expected) in [
            ("rule=volume", 2),
            ("ip=198.51.100.5", 2),
            ("ip=198.51.100.5&rule=volume", 1),
            (&format!("since={since}"), 2),
            ("limit=1", 1),
            // A streaming rule's name: none flagged here.
            ("rule=failed-login", 0),
        ] {
            let (status, body) = get(&client, &stack, &format!("/api/v1/suspicious?{query}")).await;
            assert_eq!(status, 200, "{query}");
            assert_eq!(body.as_array().unwrap().len(), expected, "{query}");
        }
        for (query, message) in [
            ("rule=Speed%21", "rule must be a rule name"),
            ("limit=5000", "limit must be"),
            ("ip=1.2.3", "is not an IP address"),
            ("until=tomorrow", "until:"),
        ] {
            let (status, body) = get(&client, &stack, &format!("/api/v1/suspicious?{query}")).await;
            assert_eq!(status, 400, "{query}");
            let error = body["error"].as_str().unwrap_or_default();
            assert!(error.contains(message), "{query} → {error}");
        }
    }
);

both_backends!(
    a_full_24_hour_range_keeps_its_newest_minute,
    |backend| async move {
        // The dashboard's "24 hours" asks for exactly 24 h ending now, at some second of a
        // minute. Rounding `since` down to the minute once also pulled `until` back to the
        // whole minute, so the requests of the current minute were missing.
        let db = TestDb::new(backend).await;
        let conn = db.connect().await;
        let base = base_time();
        // At base + 7 s (the newest minute) and 1,439 minutes earlier (the oldest).
        seed_logs(
            &conn,
            base,
            &[
                ("203.0.113.1", 0, "/", 200, ""),
                ("203.0.113.2", 1439, "/", 200, ""),
            ],
        )
        .await;
        let until = base + Duration::seconds(30);
        let since = until - Duration::hours(24);
        let timeline = iptrack_entity::query::timeline::Timeline::new(since, until, None).unwrap();
        let stats = iptrack_entity::query::stats::stats(&conn, &timeline, 10)
            .await
            .unwrap();
        assert_eq!(stats.total, 2, "{stats:?}");
        assert_eq!(stats.until, until);
        let minutes = &stats.requests_per_minute;
        assert_eq!(minutes.len(), 1441);
        assert_eq!(
            minutes.last().map(|m| (m.minute, m.requests)),
            Some((base, 1))
        );
        assert_eq!(minutes.iter().map(|m| m.requests).sum::<i64>(), 2);
    }
);
