//! flag-suspicious-ips and purge-logs against real databases.

use chrono::{DateTime, Duration, Utc};
use iptrack_core::{
    jobs::{FlagSuspiciousIps, LogEvent, PurgeLogs, RequestLogBatch},
    settings::{LogPartition, Settings},
};
use iptrack_entity::{log_batch, request_count, suspicious_ip};
use iptrack_tests::{TestDb, both_backends};
use iptrack_worker::jobs::{
    flag_suspicious_ips::{Reading, counted, counted_sections, flag, flag_reading},
    purge_logs::purge,
    request_logs::{ingest, path_section},
};
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseConnection, EntityTrait, QueryOrder};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// `n` requests from `ip` to `path` at `time`.
fn requests(ip: &str, path: &str, time: DateTime<Utc>, n: usize) -> Vec<LogEvent> {
    (0..n)
        .map(|_| LogEvent {
            ip: ip.parse().unwrap(),
            timestamp: time,
            method: "GET".into(),
            path: path.into(),
            status: 200,
            duration_us: 120,
            user_agent: "curl/8.5.0".into(),
            user_id: None,
            query_string: None,
        })
        .collect()
}

async fn store(conn: &DatabaseConnection, events: Vec<LogEvent>) {
    ingest(conn, &RequestLogBatch::new(events)).await.unwrap();
}

async fn flags(conn: &DatabaseConnection) -> Vec<(String, String, String)> {
    suspicious_ip::Entity::find()
        .order_by_asc(suspicious_ip::Column::IpAddress)
        .order_by_asc(suspicious_ip::Column::Rule)
        .all(conn)
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.ip_address, f.rule, f.reason))
        .collect()
}

both_backends!(
    the_hourly_rules_flag_exactly_the_addresses_that_broke_them,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let conn = db.connect().await;
        let (start, end) = (at("2026-11-21T09:00:00Z"), at("2026-11-21T10:00:00Z"));
        let inside = start + Duration::minutes(30);
        // Over the threshold.
        store(&conn, requests("203.0.113.1", "/", inside, 101)).await;
        // At the threshold: not over it.
        store(&conn, requests("203.0.113.2", "/", inside, 100)).await;
        // Busy, but outside the window: the end is exclusive.
        store(&conn, requests("203.0.113.3", "/", end, 150)).await;
        store(
            &conn,
            requests("203.0.113.3", "/admin", start - Duration::seconds(1), 150),
        )
        .await;
        // Below a sensitive path.
        store(&conn, requests("203.0.113.4", "/admin/users", inside, 3)).await;
        // Paths that only start with the same letters.
        store(&conn, requests("203.0.113.5", "/administrator", inside, 1)).await;
        store(&conn, requests("203.0.113.5", "/loginx", inside, 1)).await;
        // Exactly at the start: inside.
        store(&conn, requests("2001:db8::6", "/login", start, 1)).await;

        let rules = Settings::default().schedules;
        let job = FlagSuspiciousIps {
            window_start: start,
            window_end: end,
        };
        let found = flag(&conn, &rules, &job).await.unwrap();
        assert_eq!((found.volume, found.sensitive, found.inserted), (1, 2, 3));
        let flagged: Vec<(&str, &str)> = found
            .addresses
            .iter()
            .map(|f| (f.address.as_str(), f.rule.as_str()))
            .collect();
        assert_eq!(
            flagged,
            [
                ("2001:db8::6", "sensitive-path"),
                ("203.0.113.1", "volume"),
                ("203.0.113.4", "sensitive-path")
            ]
        );
        // All three incidents are new: each is announced.
        assert_eq!(found.started.len(), 3);
        let expected = vec![
            (
                "2001:db8::6".to_owned(),
                "sensitive-path".to_owned(),
                "1 request to sensitive paths in 1h (e.g. /login)".to_owned(),
            ),
            (
                "203.0.113.1".to_owned(),
                "volume".to_owned(),
                "101 requests in 1h (threshold 100)".to_owned(),
            ),
            (
                "203.0.113.4".to_owned(),
                "sensitive-path".to_owned(),
                "3 requests to sensitive paths in 1h (e.g. /admin/users)".to_owned(),
            ),
        ];
        assert_eq!(flags(&conn).await, expected);

        // Running the same window again adds nothing.
        let again = flag(&conn, &rules, &job).await.unwrap();
        assert_eq!(again.inserted, 0);
        assert_eq!(flags(&conn).await, expected);
    }
);

both_backends!(
    threshold_and_sensitive_paths_follow_the_settings,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let conn = db.connect().await;
        let (start, end) = (at("2026-11-21T09:00:00Z"), at("2026-11-21T09:15:00Z"));
        let inside = start + Duration::minutes(1);
        store(&conn, requests("198.51.100.1", "/", inside, 3)).await;
        store(&conn, requests("198.51.100.2", "/wp_admin/x", inside, 1)).await;
        store(&conn, requests("198.51.100.3", "/wpXadmin/x", inside, 1)).await;
        store(&conn, requests("198.51.100.4", "/admin", inside, 1)).await;

        let mut rules = Settings::default().schedules;
        rules.flag_threshold = 2;
        rules.sensitive_paths = vec!["/wp_admin".into()];
        let job = FlagSuspiciousIps {
            window_start: start,
            window_end: end,
        };
        flag(&conn, &rules, &job).await.unwrap();
        let got: Vec<_> = flags(&conn)
            .await
            .into_iter()
            .map(|(ip, _, reason)| (ip, reason))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "198.51.100.1".to_owned(),
                    "3 requests in 15m (threshold 2)".to_owned()
                ),
                (
                    "198.51.100.2".to_owned(),
                    "1 request to sensitive paths in 15m (e.g. /wp_admin/x)".to_owned()
                ),
            ]
        );
    }
);

both_backends!(
    purging_deletes_only_what_is_older_than_the_retention,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let conn = db.connect().await;
        let now = Utc::now();
        store(
            &conn,
            requests("198.51.100.9", "/old", now - Duration::days(40), 25_000),
        )
        .await;
        store(
            &conn,
            requests("198.51.100.9", "/new", now - Duration::days(1), 10),
        )
        .await;
        log_batch::Entity::insert(log_batch::ActiveModel {
            batch_id: Set("old-batch".into()),
            events: Set(1),
            ingested_at: Set(now - Duration::days(40)),
        })
        .exec_without_returning(&conn)
        .await
        .unwrap();

        let purged = purge(
            &conn,
            &PurgeLogs {
                older_than: now - Duration::days(30),
            },
            LogPartition::Day,
            now,
        )
        .await
        .unwrap();
        // No partition of that day existed (PostgreSQL: the rows went to the DEFAULT
        // partition), so every old row is deleted row by row.
        assert_eq!(purged.deleted_rows, 25_000);
        assert!(purged.dropped_partitions.is_empty());
        assert_eq!(db.count(&conn, "request_log").await, 10);
        assert_eq!(db.count(&conn, "request_log WHERE path = '/new'").await, 10);
        // The two batches ingested just now stay; the old batch id is gone.
        assert_eq!(db.count(&conn, "log_batch").await, 2);
        // The old hour's counts went with its rows; the recent hour's stay.
        assert_eq!(
            count_rows(&conn)
                .await
                .into_iter()
                .map(|c| (c.section, c.requests))
                .collect::<Vec<_>>(),
            [("/new".to_owned(), 10)]
        );
    }
);

/// A busy mix over three hours: many addresses, some over the threshold, sensitive paths
/// and their look-alikes, requests on the hours' edges.
fn busy_mix() -> Vec<Vec<LogEvent>> {
    let mut batches = Vec::new();
    let paths = [
        "/",
        "/items/1",
        "/admin",
        "/admin/users",
        "/administrator",
        "/login",
        "/loginx",
        "//admin",
        "/login/",
        "/%61dmin",
    ];
    for hour in 8..11 {
        let base = at(&format!("2026-11-21T{hour:02}:00:00Z"));
        let mut batch = Vec::new();
        for i in 0..400_usize {
            let ip = format!("198.51.100.{}", i % 37);
            let path = paths[i % paths.len()];
            // The hour's first and last microsecond, and everything between.
            let offset = match i % 3 {
                0 => Duration::zero(),
                1 => Duration::seconds(3600) - Duration::microseconds(1),
                _ => Duration::seconds((i * 7 % 3600) as i64),
            };
            batch.extend(requests(&ip, path, base + offset, 1 + i % 4));
        }
        // One address over the threshold in this hour only.
        batch.extend(requests(
            &format!("203.0.113.{hour}"),
            "/items/2",
            base,
            101,
        ));
        batches.push(batch);
    }
    batches
}

both_backends!(counts_and_rows_give_the_same_flags, |backend| async move {
    let db = TestDb::new(backend).await;
    let conn = db.connect().await;
    for batch in busy_mix() {
        // In two batches each, so that counts are added to stored ones.
        let half = batch.len() / 2;
        store(&conn, batch[..half].to_vec()).await;
        store(&conn, batch[half..].to_vec()).await;
    }
    let rules = Settings::default().schedules;
    assert!(counted_sections(&rules.sensitive_paths).is_some());
    for (start, end) in [
        ("2026-11-21T09:00:00Z", "2026-11-21T10:00:00Z"),
        ("2026-11-21T08:00:00Z", "2026-11-21T11:00:00Z"),
        ("2026-11-21T10:00:00Z", "2026-11-21T11:00:00Z"),
        ("2026-11-21T11:00:00Z", "2026-11-21T12:00:00Z"),
    ] {
        let job = window(start, end);
        assert!(counted(&job));
        let rows = flag_reading(&conn, &rules, &job, Reading::Rows)
            .await
            .unwrap();
        let counts = flag_reading(&conn, &rules, &job, Reading::Counts)
            .await
            .unwrap();
        assert_eq!(
            (counts.volume, counts.sensitive, &counts.addresses),
            (rows.volume, rows.sensitive, &rows.addresses),
            "{start}–{end}"
        );
    }
    let busy = flag_reading(
        &conn,
        &rules,
        &window("2026-11-21T08:00:00Z", "2026-11-21T11:00:00Z"),
        Reading::Counts,
    )
    .await
    .unwrap();
    assert!(busy.volume == 3 && busy.sensitive > 10, "{busy:?}");

    // A prefix of two segments cannot be read from the counts: the rows are.
    assert_eq!(counted_sections(&["/api/admin".to_owned()]), None);
    // The migration's SQL counts what the job counted.
    let stored = count_rows(&conn).await;
    conn.execute_unprepared("DELETE FROM request_count")
        .await
        .unwrap();
    iptrack_migration::request_count::backfill(&conn)
        .await
        .unwrap();
    assert_eq!(count_rows(&conn).await, stored);
});

/// Every key's counts in `request_count`, pending ones folded in first, in key order.
async fn count_rows(conn: &DatabaseConnection) -> Vec<request_count::Model> {
    iptrack_worker::count_fold::fold_all(conn).await.unwrap();
    request_count::Entity::find()
        .order_by_asc(request_count::Column::HourStart)
        .order_by_asc(request_count::Column::IpAddress)
        .order_by_asc(request_count::Column::Section)
        .all(conn)
        .await
        .unwrap()
}

#[test]
fn a_path_section_is_the_path_up_to_its_second_slash() {
    for (path, section) in [
        ("/admin/users", "/admin"),
        ("/admin", "/admin"),
        ("/admin/", "/admin"),
        ("/", "/"),
        ("//admin", "/"),
        ("/administrator", "/administrator"),
    ] {
        assert_eq!(path_section(path), section, "{path}");
    }
}

/// `(first seen, last seen, request count, window start, window end)` of a flag.
type Incident = (
    DateTime<Utc>,
    DateTime<Utc>,
    i64,
    DateTime<Utc>,
    DateTime<Utc>,
);

/// Every flag of `ip`, oldest first.
async fn incidents(conn: &DatabaseConnection, ip: &str) -> Vec<Incident> {
    use sea_orm::{ColumnTrait, QueryFilter};
    suspicious_ip::Entity::find()
        .filter(suspicious_ip::Column::IpAddress.eq(ip))
        .order_by_asc(suspicious_ip::Column::FirstSeen)
        .all(conn)
        .await
        .unwrap()
        .into_iter()
        .map(|f| {
            (
                f.first_seen,
                f.last_seen,
                f.request_count,
                f.window_start,
                f.window_end,
            )
        })
        .collect()
}

fn window(start: &str, end: &str) -> FlagSuspiciousIps {
    FlagSuspiciousIps {
        window_start: at(start),
        window_end: at(end),
    }
}

both_backends!(
    a_flag_is_one_incident_while_the_activity_goes_on,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let conn = db.connect().await;
        let ip = "203.0.113.9";
        store(&conn, requests(ip, "/admin", at("2026-11-21T09:10:00Z"), 2)).await;
        store(&conn, requests(ip, "/admin", at("2026-11-21T09:50:00Z"), 3)).await;
        store(&conn, requests(ip, "/", at("2026-11-21T10:00:00Z"), 7)).await; // not sensitive
        store(&conn, requests(ip, "/login", at("2026-11-21T10:20:00Z"), 4)).await;
        let rules = Settings::default().schedules; // one-hour flag window: the quiet gap
        let first = window("2026-11-21T09:00:00Z", "2026-11-21T10:00:00Z");

        // The same window twice: the same row, unchanged.
        let found = flag(&conn, &rules, &first).await.unwrap();
        assert_eq!((found.inserted, found.updated), (1, 0));
        let once = incidents(&conn, ip).await;
        assert_eq!(
            once,
            [(
                at("2026-11-21T09:10:00Z"),
                at("2026-11-21T09:50:00Z"),
                5,
                at("2026-11-21T09:00:00Z"),
                at("2026-11-21T10:00:00Z")
            )]
        );
        assert_eq!(found.started.len(), 1);
        let again = flag(&conn, &rules, &first).await.unwrap();
        assert_eq!((again.inserted, again.updated), (0, 0));
        // Announced again (a crash may have lost the first notice); the event key, the
        // same for both runs, makes the notifier drop the repeat.
        assert_eq!(again.started, found.started);
        assert_eq!(incidents(&conn, ip).await, once);

        // An overlapping window: the incident goes on. 09:50's requests, seen by both
        // windows, count once: 2 + 3 + 4.
        let overlapping = window("2026-11-21T09:30:00Z", "2026-11-21T10:30:00Z");
        let found = flag(&conn, &rules, &overlapping).await.unwrap();
        assert_eq!((found.inserted, found.updated), (0, 1));
        assert!(
            found.started.is_empty(),
            "an incident that goes on is no new flag"
        );
        let extended = vec![(
            at("2026-11-21T09:10:00Z"),
            at("2026-11-21T10:20:00Z"),
            9,
            at("2026-11-21T09:00:00Z"),
            at("2026-11-21T10:30:00Z"),
        )];
        assert_eq!(incidents(&conn, ip).await, extended);
        // Re-running either window, in any order, changes nothing.
        for job in [&overlapping, &first, &overlapping] {
            let found = flag(&conn, &rules, job).await.unwrap();
            assert_eq!((found.inserted, found.updated), (0, 0));
            assert!(found.started.is_empty());
        }
        assert_eq!(incidents(&conn, ip).await, extended);

        // After a quiet gap longer than one flag window: a new incident.
        store(&conn, requests(ip, "/admin", at("2026-11-21T11:25:00Z"), 1)).await;
        let later = window("2026-11-21T11:00:00Z", "2026-11-21T12:00:00Z");
        let found = flag(&conn, &rules, &later).await.unwrap();
        assert_eq!((found.inserted, found.updated), (1, 0));
        let both = incidents(&conn, ip).await;
        assert_eq!(both.len(), 2, "{both:?}");
        assert_eq!(both[0], extended[0]);
        assert_eq!(
            both[1],
            (
                at("2026-11-21T11:25:00Z"),
                at("2026-11-21T11:25:00Z"),
                1,
                at("2026-11-21T11:00:00Z"),
                at("2026-11-21T12:00:00Z")
            )
        );
        assert_eq!(db.count(&conn, "suspicious_ip").await, 2);
    }
);

both_backends!(
    a_volume_incident_counts_every_request_of_its_span_once,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let conn = db.connect().await;
        let ip = "2001:db8::77";
        store(&conn, requests(ip, "/a", at("2026-11-21T09:40:00Z"), 3)).await;
        store(&conn, requests(ip, "/b", at("2026-11-21T09:55:00Z"), 3)).await;
        store(&conn, requests(ip, "/c", at("2026-11-21T10:05:00Z"), 3)).await;
        let mut rules = Settings::default().schedules;
        rules.flag_threshold = 5;
        for job in [
            window("2026-11-21T09:00:00Z", "2026-11-21T10:00:00Z"),
            window("2026-11-21T09:45:00Z", "2026-11-21T10:45:00Z"),
            window("2026-11-21T09:30:00Z", "2026-11-21T10:30:00Z"),
        ] {
            flag(&conn, &rules, &job).await.unwrap();
        }
        let rows = incidents(&conn, ip).await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(
            (rows[0].0, rows[0].1, rows[0].2),
            (at("2026-11-21T09:40:00Z"), at("2026-11-21T10:05:00Z"), 9)
        );
    }
);
