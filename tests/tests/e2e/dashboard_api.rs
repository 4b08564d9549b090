//! The admin API behind the dashboard's views (issue 21): `/stats` in minute, hour and day
//! buckets by status class, `/logs` filtered by network, method, class and country with a
//! bounded scan, `/addresses/{ip}`, `/countries`, and `/meta`'s geolocation state; against
//! the real `iptrack-web` (and `iptrack-worker`) over a seeded database, on both backends.

use std::collections::BTreeSet;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, DurationRound, Utc};
use iptrack_entity::{ban_history, blocked_ip, request_log, suspicious_ip};
use iptrack_tests::{TestDb, TestRedis, both_backends, eventually, process::Service};
use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait};
use serde_json::Value;

use crate::{ADMIN_TOKEN as TOKEN, Stack};

/// One seeded request.
#[derive(Debug, Clone, Copy)]
struct Req {
    ip: &'static str,
    at: DateTime<Utc>,
    method: &'static str,
    path: &'static str,
    status: i32,
    country_code: &'static str,
}

impl Req {
    fn new(ip: &'static str, at: DateTime<Utc>, status: i32) -> Self {
        Self {
            ip,
            at,
            method: "GET",
            path: "/",
            status,
            country_code: "",
        }
    }

    fn method(self, method: &'static str) -> Self {
        Self { method, ..self }
    }

    fn path(self, path: &'static str) -> Self {
        Self { path, ..self }
    }

    fn country(self, country_code: &'static str) -> Self {
        Self {
            country_code,
            ..self
        }
    }

    fn model(&self) -> request_log::ActiveModel {
        let (country, city) = match self.country_code {
            "GB" => ("United Kingdom", "London"),
            "DE" => ("Germany", "Berlin"),
            "FR" => ("France", "Paris"),
            _ => ("", ""),
        };
        request_log::ActiveModel {
            ip_address: Set(self.ip.to_owned()),
            timestamp: Set(self.at),
            method: Set(self.method.to_owned()),
            path: Set(self.path.to_owned()),
            status: Set(self.status),
            duration_us: Set(100),
            user_agent: Set(format!("agent-{}", self.method.to_lowercase())),
            user_id: Set(String::new()),
            query_string: Set(String::new()),
            country_code: Set(self.country_code.to_owned()),
            country: Set(country.to_owned()),
            city: Set(city.to_owned()),
            ..Default::default()
        }
    }
}

async fn seed(conn: &DatabaseConnection, rows: &[Req]) {
    // Chunked: both databases limit the bind parameters of one statement.
    for chunk in rows.chunks(1_000) {
        request_log::Entity::insert_many(chunk.iter().map(Req::model))
            .exec(conn)
            .await
            .unwrap();
    }
    // Written directly, not by the request-log job: count the dashboard's rollup.
    iptrack_tests::db::recount_rollup(conn).await;
}

/// The real `iptrack-web` with the admin API on, for a seeded database.
struct Web {
    stack: Stack,
    client: reqwest::Client,
    _web: Service,
}

impl Web {
    async fn start(db: &TestDb, redis: &TestRedis) -> Self {
        let stack = Stack::new(db, redis).with("IPTRACK_ADMIN_TOKEN", TOKEN);
        let web = Service::start("iptrack-web", &[], &stack.env);
        stack.wait_until_listening().await;
        Self {
            stack,
            client: reqwest::Client::new(),
            _web: web,
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.stack.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `GET path`, which must answer 200; its body.
    async fn ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    /// `GET path`, which must answer 400 with a message containing `message`.
    async fn refused(&self, path: &str, message: &str) {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(message), "{path}: {error}");
    }
}

fn text(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The top of the current hour: a bucket boundary that is not in the future.
fn this_hour() -> DateTime<Utc> {
    Utc::now().duration_trunc(Duration::hours(1)).unwrap()
}

/// The addresses of a `/logs` page's rows, sorted.
fn addresses(page: &Value) -> Vec<String> {
    let mut ips: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["ip_address"].as_str().unwrap().to_owned())
        .collect();
    ips.sort();
    ips
}

both_backends!(
    a_week_of_stats_comes_in_hour_buckets_counted_by_status_class,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let conn = db.connect().await;
        let until = this_hour();
        let since = until - Duration::days(7);
        let hour_ago = until - Duration::hours(1) + Duration::minutes(10);
        let days_ago = until - Duration::days(3) + Duration::minutes(5);
        let mut rows = Vec::new();
        for status in [200, 201, 301, 404, 401, 403, 403, 429, 500, 101] {
            rows.push(Req::new("203.0.113.1", hour_ago, status));
        }
        rows.extend([200, 429, 429].map(|s| Req::new("2001:db8::1", days_ago, s)));
        // Outside the range: before it, and at `until` (exclusive).
        rows.push(Req::new("203.0.113.1", since - Duration::seconds(1), 200));
        rows.push(Req::new("203.0.113.1", until, 200));
        seed(&conn, &rows).await;
        let web = Web::start(&db, &redis).await;

        let stats = web
            .ok(&format!(
                "/api/v1/stats?since={}&until={}",
                text(since),
                text(until)
            ))
            .await;
        assert_eq!(stats["bucket"], "hour");
        let buckets = stats["buckets"].as_array().unwrap();
        assert_eq!(buckets.len(), 168);
        assert_eq!(
            buckets[0]["start"]
                .as_str()
                .unwrap()
                .parse::<DateTime<Utc>>()
                .unwrap(),
            since
        );
        assert_eq!(stats["requests_per_minute"], Value::Array(Vec::new()));
        let last = &buckets[167];
        assert_eq!(
            last["start"]
                .as_str()
                .unwrap()
                .parse::<DateTime<Utc>>()
                .unwrap(),
            until - Duration::hours(1)
        );
        assert_eq!(last["requests"], 10);
        assert_eq!(
            last["classes"],
            serde_json::json!({"2xx": 2, "3xx": 1, "4xx": 2, "403": 2, "429": 1, "5xx": 1, "other": 1})
        );
        let earlier = &buckets[167 - 71];
        assert_eq!(earlier["requests"], 3, "{earlier}");
        assert_eq!(earlier["classes"]["429"], 2);
        assert_eq!(earlier["classes"]["2xx"], 1);
        // Every other bucket is there, empty, with all seven classes.
        let empty: Vec<&Value> = buckets.iter().filter(|b| b["requests"] == 0).collect();
        assert_eq!(empty.len(), 166);
        assert!(
            empty
                .iter()
                .all(|b| b["classes"].as_object().unwrap().len() == 7)
        );
        assert_eq!(
            (
                &stats["total"],
                &stats["forbidden_403"],
                &stats["rate_limited_429"]
            ),
            (&Value::from(13), &Value::from(2), &Value::from(3))
        );

        // Days when asked for, minutes (and the old per-minute list) for an hour.
        let days = web
            .ok(&format!(
                "/api/v1/stats?since={}&until={}&bucket=day",
                text(since),
                text(until)
            ))
            .await;
        assert_eq!(days["bucket"], "day");
        let day_counts: i64 = days["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["requests"].as_i64().unwrap())
            .sum();
        // The range starts at its day's midnight: the row a second before `since` is in
        // unless `since` is itself a midnight.
        let midnight = since.duration_trunc(Duration::days(1)).unwrap();
        assert_eq!(day_counts, if midnight == since { 13 } else { 14 });
        assert_eq!(days["total"], day_counts);
        let hour = web
            .ok(&format!(
                "/api/v1/stats?since={}&until={}",
                text(until - Duration::hours(1)),
                text(until)
            ))
            .await;
        assert_eq!(hour["bucket"], "minute");
        assert_eq!(hour["buckets"].as_array().unwrap().len(), 60);
        let per_minute = hour["requests_per_minute"].as_array().unwrap();
        assert_eq!(per_minute.len(), 60);
        assert_eq!(per_minute[10]["requests"], 10);
        assert_eq!(hour["buckets"][10]["classes"]["403"], 2);
        // 31 days: day buckets, chosen by the length.
        let month = web
            .ok(&format!(
                "/api/v1/stats?since={}&until={}",
                text(until - Duration::days(31)),
                text(until)
            ))
            .await;
        assert_eq!(month["bucket"], "day");
        assert_eq!(month["total"], 14);

        web.refused(
            &format!(
                "/api/v1/stats?since={}&until={}",
                text(until - Duration::days(91)),
                text(until)
            ),
            "at most 90 days",
        )
        .await;
        web.refused(
            &format!(
                "/api/v1/stats?since={}&until={}&bucket=minute",
                text(until - Duration::days(2)),
                text(until)
            ),
            "2880 buckets",
        )
        .await;
        web.refused("/api/v1/stats?bucket=weekly", "bucket must be one of")
            .await;
    }
);

both_backends!(
    logs_filter_by_network_method_class_and_country_exactly,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let conn = db.connect().await;
        let at = Utc::now() - Duration::minutes(30);
        let rows = [
            Req::new("203.0.113.5", at, 200).country("GB"),
            Req::new("203.0.113.200", at, 403)
                .method("POST")
                .path("/login")
                .country("GB"),
            Req::new("203.0.114.1", at, 429).country("DE"),
            Req::new("2001:db8:1::5", at, 404),
            Req::new("2001:db8:2::5", at, 500)
                .method("DELETE")
                .country("FR"),
            Req::new("198.51.100.7", at, 302).method("PUT"),
            Req::new("198.51.100.8", at, 101),
        ];
        seed(&conn, &rows).await;
        let web = Web::start(&db, &redis).await;

        for (query, expected) in [
            (
                "network=203.0.113.0/24",
                &["203.0.113.200", "203.0.113.5"][..],
            ),
            // The IPv4-mapped form of the same network: addresses are stored as IPv4.
            (
                "network=::ffff:203.0.113.0/120",
                &["203.0.113.200", "203.0.113.5"],
            ),
            ("network=203.0.112.0/23", &["203.0.113.200", "203.0.113.5"]),
            ("network=2001:db8:1::/48", &["2001:db8:1::5"]),
            ("network=2001:db8::/32", &["2001:db8:1::5", "2001:db8:2::5"]),
            ("network=198.51.100.8/32", &["198.51.100.8"]),
            ("network=192.0.2.0/24", &[]),
            ("method=post", &["203.0.113.200"]),
            (
                "method=GET",
                &[
                    "198.51.100.8",
                    "2001:db8:1::5",
                    "203.0.113.5",
                    "203.0.114.1",
                ],
            ),
            ("class=2xx", &["203.0.113.5"]),
            ("class=3xx", &["198.51.100.7"]),
            ("class=4xx", &["2001:db8:1::5"]),
            ("class=403", &["203.0.113.200"]),
            ("class=429", &["203.0.114.1"]),
            ("class=5xx", &["2001:db8:2::5"]),
            ("class=other", &["198.51.100.8"]),
            ("country=gb", &["203.0.113.200", "203.0.113.5"]),
            ("country=FR", &["2001:db8:2::5"]),
            (
                "country=unknown",
                &["198.51.100.7", "198.51.100.8", "2001:db8:1::5"],
            ),
            (
                "network=203.0.113.0/24&class=403&method=POST&country=GB&path=/log",
                &["203.0.113.200"],
            ),
            ("network=203.0.113.0/24&class=2xx&method=POST", &[]),
        ] {
            let page = web.ok(&format!("/api/v1/logs?{query}")).await;
            assert_eq!(addresses(&page), expected, "{query}");
            assert!(page["next_cursor"].is_null(), "{query}: {page}");
        }
        // A row carries every column the requests view shows.
        let page = web.ok("/api/v1/logs?class=403").await;
        let row = &page["items"][0];
        for (field, value) in [
            ("method", "POST"),
            ("path", "/login"),
            ("country_code", "GB"),
            ("country", "United Kingdom"),
            ("city", "London"),
            ("user_agent", "agent-post"),
        ] {
            assert_eq!(row[field], value, "{field}");
        }
        assert_eq!(row["status"], 403);

        for (query, message) in [
            (
                "network=203.0.113.7/24",
                "host bits set; give the network form, 203.0.113.0/24",
            ),
            ("network=2001:db8::1/32", "2001:db8::/32"),
            ("network=203.0.113.0", "is not a network in CIDR form"),
            ("ip=203.0.113.5&network=203.0.113.0/24", "not both"),
            (
                "class=4XX",
                "class must be one of 2xx, 3xx, 4xx, 403, 429, 5xx, other",
            ),
            ("method=G-T", "is not an HTTP method"),
            ("country=GBR", "two-letter country code"),
        ] {
            web.refused(&format!("/api/v1/logs?{query}"), message).await;
        }
    }
);

both_backends!(
    a_sparse_filter_stops_after_20000_rows_with_a_cursor_to_go_on,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let conn = db.connect().await;
        let newest = Utc::now() - Duration::minutes(1);
        // The oldest row is the only match; 20,005 newer ones do not match.
        let mut rows = vec![Req::new("192.0.2.9", newest - Duration::hours(2), 418)];
        rows.extend(
            (0..20_005).map(|i| Req::new("10.0.0.1", newest - Duration::milliseconds(i), 200)),
        );
        seed(&conn, &rows).await;
        let web = Web::start(&db, &redis).await;

        for filter in ["class=4xx", "network=192.0.2.0/24", "status=418"] {
            let first = web.ok(&format!("/api/v1/logs?{filter}&limit=10")).await;
            assert_eq!(first["items"], Value::Array(Vec::new()), "{filter}");
            let cursor = first["next_cursor"]
                .as_str()
                .unwrap_or_else(|| panic!("{filter}: no next_cursor: {first}"));
            let second = web
                .ok(&format!("/api/v1/logs?{filter}&limit=10&cursor={cursor}"))
                .await;
            assert_eq!(addresses(&second), ["192.0.2.9"], "{filter}");
            assert!(second["next_cursor"].is_null(), "{filter}: {second}");
        }
        // Unfiltered pages are full, as before.
        let page = web.ok("/api/v1/logs?limit=1000").await;
        assert_eq!(page["items"].as_array().unwrap().len(), 1000);
        // A match within the bound comes on the first page.
        let page = web.ok("/api/v1/logs?network=10.0.0.0/8&limit=5").await;
        assert_eq!(page["items"].as_array().unwrap().len(), 5);
        assert!(page["next_cursor"].is_string());
    }
);

both_backends!(
    an_address_page_shows_its_traffic_flags_bans_and_covering_blocks,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let conn = db.connect().await;
        let now = Utc::now().duration_trunc(Duration::seconds(1)).unwrap();
        let ip = "81.2.69.142";
        let mut rows = Vec::new();
        rows.extend((0..5).map(|i| {
            Req::new(ip, now - Duration::minutes(10 + i), 200)
                .path("/login")
                .country("GB")
        }));
        rows.extend((0..3).map(|i| {
            Req::new(ip, now - Duration::minutes(20 + i), 403)
                .method("POST")
                .path("/admin")
        }));
        // Two days ago: in its history (first seen), not in the default 24 h.
        rows.push(Req::new(ip, now - Duration::days(2), 200).path("/old"));
        rows.push(Req::new("81.2.69.143", now - Duration::minutes(5), 200));
        seed(&conn, &rows).await;

        let flag = |rule: &str, hours_ago: i64| suspicious_ip::ActiveModel {
            ip_address: Set(ip.to_owned()),
            rule: Set(rule.to_owned()),
            reason: Set(format!("{rule} test")),
            window_start: Set(now - Duration::hours(hours_ago + 1)),
            window_end: Set(now - Duration::hours(hours_ago)),
            flagged_at: Set(now - Duration::hours(hours_ago)),
            first_seen: Set(now - Duration::hours(hours_ago + 1)),
            last_seen: Set(now - Duration::hours(hours_ago)),
            request_count: Set(7),
            ..Default::default()
        };
        suspicious_ip::Entity::insert_many([flag("volume", 3), flag("failed-login", 1)])
            .exec(&conn)
            .await
            .unwrap();
        ban_history::Entity::insert(ban_history::ActiveModel {
            ip_address: Set(ip.to_owned()),
            rule: Set("failed-login".to_owned()),
            banned_at: Set(now - Duration::hours(1)),
            duration_secs: Set(600),
            expires_at: Set(now - Duration::minutes(50)),
            event_key: Set(None),
            ..Default::default()
        })
        .exec(&conn)
        .await
        .unwrap();
        let block = |target: &str, expires_at: Option<DateTime<Utc>>| blocked_ip::ActiveModel {
            ip_address: Set(target.to_owned()),
            reason: Set(format!("block of {target}")),
            created_at: Set(now - Duration::hours(2)),
            expires_at: Set(expires_at),
            source: Set("manual".to_owned()),
            ..Default::default()
        };
        blocked_ip::Entity::insert_many([
            block("81.2.69.0/24", None),
            // Its own block, expired: not in force, not shown.
            block(ip, Some(now - Duration::minutes(1))),
            // A neighbour's network: does not cover it.
            block("81.2.70.0/24", None),
            block("2001:db8:5::/48", Some(now + Duration::hours(1))),
        ])
        .exec(&conn)
        .await
        .unwrap();
        let web = Web::start(&db, &redis).await;

        // Any textual form; answered canonical.
        let page = web.ok("/api/v1/addresses/::ffff:81.2.69.142").await;
        assert_eq!(page["ip_address"], ip);
        assert_eq!(page["bucket"], "minute");
        assert_eq!(page["requests"], 8);
        assert_eq!(page["buckets"].as_array().unwrap().len(), 1441);
        let forbidden: i64 = page["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["classes"]["403"].as_i64().unwrap())
            .sum();
        assert_eq!(forbidden, 3);
        let first_seen: DateTime<Utc> = page["first_seen"].as_str().unwrap().parse().unwrap();
        assert_eq!(first_seen, now - Duration::days(2));
        let last_seen: DateTime<Utc> = page["last_seen"].as_str().unwrap().parse().unwrap();
        assert_eq!(last_seen, now - Duration::minutes(10));
        assert_eq!(
            (&page["country_code"], &page["country"], &page["city"]),
            (
                &Value::from("GB"),
                &Value::from("United Kingdom"),
                &Value::from("London")
            )
        );
        assert_eq!(
            page["statuses"],
            serde_json::json!([{"status": 200, "requests": 5}, {"status": 403, "requests": 3}])
        );
        assert_eq!(
            page["top_paths"],
            serde_json::json!([{"path": "/login", "requests": 5}, {"path": "/admin", "requests": 3}])
        );
        assert_eq!(
            page["user_agents"],
            serde_json::json!([
                {"user_agent": "agent-get", "requests": 5},
                {"user_agent": "agent-post", "requests": 3}
            ])
        );
        let rules: Vec<&str> = page["flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["rule"].as_str().unwrap())
            .collect();
        assert_eq!(rules, ["failed-login", "volume"]);
        assert_eq!(page["flags"][0]["request_count"], 7);
        assert_eq!(page["bans"][0]["rule"], "failed-login");
        assert_eq!(page["bans"][0]["duration_secs"], 600);
        let blocks: Vec<&str> = page["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["ip_address"].as_str().unwrap())
            .collect();
        assert_eq!(blocks, ["81.2.69.0/24"]);
        assert_eq!(page["blocks"][0]["source"], "manual");
        assert_eq!(page["blocked"], true);

        // A longer range reaches the old request, in hour buckets.
        let week = web
            .ok(&format!(
                "/api/v1/addresses/{ip}?since={}&until={}",
                text(now - Duration::days(7)),
                text(now + Duration::seconds(1))
            ))
            .await;
        assert_eq!(week["bucket"], "hour");
        assert_eq!(week["requests"], 9);
        let week_paths: BTreeSet<&str> = week["top_paths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["path"].as_str().unwrap())
            .collect();
        assert!(week_paths.contains("/old"), "{week}");

        // An IPv6 address inside a network block.
        let v6 = web.ok("/api/v1/addresses/2001:db8:5:0::1").await;
        assert_eq!(v6["ip_address"], "2001:db8:5::1");
        assert_eq!(v6["blocks"][0]["ip_address"], "2001:db8:5::/48");
        assert_eq!(v6["blocked"], true);

        // Never seen: zeros and empties, not 404.
        let unknown = web.ok("/api/v1/addresses/198.51.100.99").await;
        assert_eq!(unknown["requests"], 0);
        assert!(unknown["first_seen"].is_null() && unknown["last_seen"].is_null());
        assert!(unknown["country_code"].is_null());
        assert_eq!(unknown["flags"], Value::Array(Vec::new()));
        assert_eq!(unknown["blocks"], Value::Array(Vec::new()));
        assert_eq!(unknown["blocked"], false);
        assert!(
            unknown["buckets"]
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b["requests"] == 0)
        );

        for (path, message) in [
            ("not-an-address", "is not an IP address"),
            ("81.2.69.0%2F24", "is not an IP address"),
            (
                "81.2.69.142?bucket=minute&since=2026-11-01T00:00:00Z&until=2026-11-03T00:00:00Z",
                "buckets",
            ),
            (
                "81.2.69.142?since=2026-08-01T00:00:00Z&until=2026-11-01T00:00:00Z",
                "at most 90 days",
            ),
        ] {
            web.refused(&format!("/api/v1/addresses/{path}"), message)
                .await;
        }
    }
);

both_backends!(
    countries_count_requests_refusals_addresses_and_flags,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let conn = db.connect().await;
        let at = Utc::now() - Duration::hours(2);
        let rows = [
            Req::new("81.2.69.1", at, 200).country("GB"),
            Req::new("81.2.69.1", at, 403).country("GB"),
            Req::new("81.2.69.2", at, 429).country("GB"),
            Req::new("81.2.69.3", at, 200).country("GB"),
            Req::new("2001:db8::1", at, 200).country("DE"),
            Req::new("2001:db8::1", at, 200).country("DE"),
            Req::new("203.0.113.9", at, 200),
            // Two days ago: outside the default 24 h.
            Req::new("81.2.69.4", at - Duration::days(2), 200).country("FR"),
        ];
        seed(&conn, &rows).await;
        suspicious_ip::Entity::insert(suspicious_ip::ActiveModel {
            ip_address: Set("81.2.69.2".to_owned()),
            rule: Set("volume".to_owned()),
            reason: Set("test".to_owned()),
            window_start: Set(at),
            window_end: Set(at),
            flagged_at: Set(at),
            first_seen: Set(at),
            last_seen: Set(at),
            request_count: Set(1),
            ..Default::default()
        })
        .exec(&conn)
        .await
        .unwrap();
        let web = Web::start(&db, &redis).await;

        let countries = web.ok("/api/v1/countries").await;
        assert_eq!(
            countries["countries"],
            serde_json::json!([
                {"country_code": "GB", "country": "United Kingdom", "requests": 4,
                 "forbidden_403": 1, "rate_limited_429": 1, "addresses": 3,
                 "flagged_addresses": 1},
                {"country_code": "DE", "country": "Germany", "requests": 2,
                 "forbidden_403": 0, "rate_limited_429": 0, "addresses": 1,
                 "flagged_addresses": 0},
            ])
        );
        assert_eq!(countries["unlocated_requests"], 1);
        let week = web
            .ok(&format!(
                "/api/v1/countries?since={}",
                text(at - Duration::days(7))
            ))
            .await;
        assert_eq!(week["countries"].as_array().unwrap().len(), 3);
        web.refused(
            &format!(
                "/api/v1/countries?since={}&until={}",
                text(at - Duration::days(91)),
                text(at)
            ),
            "at most 90 days",
        )
        .await;
    }
);

both_backends!(
    meta_says_whether_the_workers_geolocate,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let web = Web::start(&db, &redis).await;
        assert_eq!(web.ok("/api/v1/meta").await["geolocation"], "unknown");
        let geolocation = || async {
            web.ok("/api/v1/meta").await["geolocation"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        let mut env = web.stack.env.clone();
        env.insert("IPTRACK_GEO_PROVIDER".to_owned(), "none".to_owned());
        let mut off = Service::start("iptrack-worker", &[], &env);
        eventually(StdDuration::from_secs(20), "geolocation off", || async {
            (geolocation().await == "off").then_some(())
        })
        .await;
        off.kill();
        // The worker started last decides: one with a provider says on.
        env.insert("IPTRACK_GEO_PROVIDER".to_owned(), "http".to_owned());
        env.insert(
            "IPTRACK_GEO_HTTP_URL".to_owned(),
            "http://127.0.0.1:9".to_owned(),
        );
        let _on = Service::start("iptrack-worker", &[], &env);
        eventually(StdDuration::from_secs(20), "geolocation on", || async {
            (geolocation().await == "on").then_some(())
        })
        .await;
    }
);
