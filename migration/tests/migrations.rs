//! The migrations build a schema the entities can use, on SQLite and PostgreSQL, and can
//! be rolled back and applied again.

#![allow(clippy::unwrap_used)]

use chrono::{SubsecRound, Utc};
use iptrack_entity::{
    ban_history, blocked_ip, blocklist_feed, log_batch, request_log, suspicious_ip,
};
use iptrack_migration::{Migrator, MigratorTrait, SchemaManager};
use iptrack_tests::{TestDb, both_backends};
use sea_orm::{ActiveValue::Set, EntityTrait};

both_backends!(
    every_entity_round_trips_through_the_migrated_schema,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let conn = db.connect().await;
        // Microseconds: what PostgreSQL keeps of a timestamp.
        let now = Utc::now().trunc_subsecs(6);

        let log = request_log::ActiveModel {
            ip_address: Set("2001:db8::1".into()),
            timestamp: Set(now),
            method: Set("POST".into()),
            path: Set("/login".into()),
            status: Set(429),
            ..Default::default()
        };
        let id = request_log::Entity::insert(log)
            .exec(&conn)
            .await
            .unwrap()
            .last_insert_id;
        let row = request_log::Entity::find_by_id(id)
            .one(&conn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                row.ip_address.as_str(),
                row.timestamp,
                row.method.as_str(),
                row.path.as_str(),
                row.status
            ),
            ("2001:db8::1", now, "POST", "/login", 429)
        );
        // Columns nobody set read as "unknown": zero and empty, never NULL.
        assert_eq!(
            (
                row.duration_us,
                row.user_agent.as_str(),
                row.user_id.as_str(),
                row.query_string.as_str(),
                row.country_code.as_str(),
                row.country.as_str(),
                row.city.as_str()
            ),
            (0, "", "", "", "", "", "")
        );

        let blocked = blocked_ip::ActiveModel {
            ip_address: Set("203.0.113.0/24".into()),
            reason: Set("scanner".into()),
            created_at: Set(now),
            expires_at: Set(None),
            ..Default::default()
        };
        let id = blocked_ip::Entity::insert(blocked)
            .exec(&conn)
            .await
            .unwrap()
            .last_insert_id;
        let row = blocked_ip::Entity::find_by_id(id)
            .one(&conn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (row.ip_address.as_str(), row.expires_at, row.source.as_str()),
            ("203.0.113.0/24", None, "manual")
        );

        let flagged = suspicious_ip::ActiveModel {
            ip_address: Set("198.51.100.7".into()),
            rule: Set("volume".into()),
            reason: Set("412 requests in 1h (threshold 100)".into()),
            window_start: Set(now - chrono::Duration::hours(1)),
            window_end: Set(now),
            flagged_at: Set(now),
            ..Default::default()
        };
        let id = suspicious_ip::Entity::insert(flagged)
            .exec(&conn)
            .await
            .unwrap()
            .last_insert_id;
        let row = suspicious_ip::Entity::find_by_id(id)
            .one(&conn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.reason, "412 requests in 1h (threshold 100)");
        // Nobody set the incident columns: the defaults hold, never NULL.
        assert_eq!(row.request_count, 0);
        let flagged = suspicious_ip::ActiveModel {
            ip_address: Set("198.51.100.7".into()),
            rule: Set("volume".into()),
            reason: Set("again".into()),
            window_start: Set(now - chrono::Duration::hours(1)),
            window_end: Set(now),
            flagged_at: Set(now),
            first_seen: Set(now - chrono::Duration::minutes(50)),
            last_seen: Set(now - chrono::Duration::minutes(5)),
            request_count: Set(412),
            ..Default::default()
        };
        // No longer unique per window: an incident's row is updated instead.
        let id = suspicious_ip::Entity::insert(flagged)
            .exec(&conn)
            .await
            .unwrap()
            .last_insert_id;
        let row = suspicious_ip::Entity::find_by_id(id)
            .one(&conn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (row.first_seen, row.last_seen, row.request_count),
            (
                now - chrono::Duration::minutes(50),
                now - chrono::Duration::minutes(5),
                412
            )
        );

        log_batch::Entity::insert(log_batch::ActiveModel {
            batch_id: Set("0190b1a2-0000-7000-8000-000000000000".into()),
            events: Set(3),
            ingested_at: Set(now),
        })
        .exec_without_returning(&conn)
        .await
        .unwrap();
        assert_eq!(db.count(&conn, "log_batch").await, 1);

        let feed = blocklist_feed::Model {
            name: "firehol1".into(),
            origin: "https://iplists.firehol.org/files/firehol_level1.netset".into(),
            imported_at: now,
            entries: 4_500,
            added: 4_400,
            withdrawn: 3,
            kept: 99,
            skipped: 1,
        };
        blocklist_feed::Entity::insert(blocklist_feed::ActiveModel::from(feed.clone()))
            .exec_without_returning(&conn)
            .await
            .unwrap();
        assert_eq!(
            blocklist_feed::Entity::find_by_id("firehol1")
                .one(&conn)
                .await
                .unwrap(),
            Some(feed)
        );
        let ban = |event_key: Option<&str>| ban_history::ActiveModel {
            ip_address: Set("198.51.100.7".into()),
            rule: Set("failed-login".into()),
            banned_at: Set(now),
            duration_secs: Set(600),
            expires_at: Set(now + chrono::Duration::minutes(10)),
            event_key: Set(event_key.map(str::to_owned)),
            ..Default::default()
        };
        let id = ban_history::Entity::insert(ban(Some("failed-login:198.51.100.7:1")))
            .exec(&conn)
            .await
            .unwrap()
            .last_insert_id;
        let row = ban_history::Entity::find_by_id(id)
            .one(&conn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (row.duration_secs, row.expires_at, row.event_key.as_deref()),
            (
                600,
                now + chrono::Duration::minutes(10),
                Some("failed-login:198.51.100.7:1")
            )
        );
        // One ban per event; bans without an event name never conflict.
        assert!(
            ban_history::Entity::insert(ban(Some("failed-login:198.51.100.7:1")))
                .exec(&conn)
                .await
                .is_err()
        );
        for _ in 0..2 {
            ban_history::Entity::insert(ban(None))
                .exec(&conn)
                .await
                .unwrap();
        }
        assert_eq!(
            ban_history::counts(&conn, &["198.51.100.7".to_owned()])
                .await
                .unwrap()["198.51.100.7"],
            3
        );
    }
);

both_backends!(the_indexes_the_jobs_need_exist, |backend| async move {
    let db = TestDb::new(backend).await;
    let conn = db.connect().await;
    let manager = SchemaManager::new(&conn);
    for index in [
        "idx_request_log_timestamp",
        "idx_request_log_ip_timestamp",
        "idx_request_log_timestamp_status",
    ] {
        assert!(
            manager.has_index("request_log", index).await.unwrap(),
            "{index} missing"
        );
    }
});

both_backends!(migrations_roll_back_and_apply_again, |backend| async move {
    let db = TestDb::empty(backend).await;
    let conn = db.connect().await;
    let manager = SchemaManager::new(&conn);
    Migrator::up(&conn, None).await.unwrap();
    Migrator::up(&conn, None).await.unwrap(); // nothing pending: a no-op
    for table in [
        "request_log",
        "blocked_ip",
        "suspicious_ip",
        "log_batch",
        "blocklist_feed",
        "ban_history",
        "request_count",
        "request_rollup_minute",
        "request_rollup_hour",
    ] {
        assert!(
            manager.has_table(table).await.unwrap(),
            "{table} missing after up"
        );
    }
    Migrator::down(&conn, None).await.unwrap();
    for table in [
        "request_log",
        "blocked_ip",
        "suspicious_ip",
        "log_batch",
        "blocklist_feed",
        "ban_history",
        "request_count",
        "request_rollup_minute",
        "request_rollup_hour",
        "request_rollup",
    ] {
        assert!(
            !manager.has_table(table).await.unwrap(),
            "{table} left after down"
        );
    }
    Migrator::up(&conn, None).await.unwrap();
    assert!(manager.has_table("request_log").await.unwrap());
});

/// Rolls back the migration `name` and every one after it.
async fn down_through(conn: &sea_orm::DatabaseConnection, name: &str) {
    let names: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let position = names
        .iter()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no migration {name}"));
    let steps = u32::try_from(names.len() - position).unwrap();
    Migrator::down(conn, Some(steps)).await.unwrap();
}

/// Every row of `request_log` as text, by id (the API pages by id, so ids must survive).
async fn request_log_rows(conn: &sea_orm::DatabaseConnection) -> Vec<(i64, String)> {
    use sea_orm::ConnectionTrait;
    conn.query_all_raw(sea_orm::Statement::from_string(
        conn.get_database_backend(),
        "SELECT id, r::text AS row FROM request_log r ORDER BY id",
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| {
        (
            row.try_get("", "id").unwrap(),
            row.try_get("", "row").unwrap(),
        )
    })
    .collect()
}

/// The partition holding the row `id` (`request_log` itself when not partitioned).
async fn holder(conn: &sea_orm::DatabaseConnection, id: i64) -> String {
    use sea_orm::ConnectionTrait;
    conn.query_one_raw(sea_orm::Statement::from_string(
        conn.get_database_backend(),
        format!("SELECT tableoid::regclass::text AS part FROM request_log WHERE id = {id}"),
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get("", "part")
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_request_log_is_partitioned_with_its_rows_and_ids_and_back() {
    use chrono::{Duration, NaiveDate};
    use iptrack_migration::request_log_partitions::{self as partitions, midnight};

    let db = TestDb::new(iptrack_tests::Backend::Postgres).await;
    let conn = db.connect().await;
    assert!(partitions::is_partitioned(&conn).await.unwrap());
    // Back to the plain table (000010 undone, and the migrations after it), filled the way
    // a running site's is: rows over several days, far in the past and the future, and an
    // id gap (rows deleted).
    down_through(&conn, "m20261202_000010_partition_request_log").await;
    assert!(!partitions::is_partitioned(&conn).await.unwrap());
    let now = Utc::now().trunc_subsecs(6);
    let today = midnight(now.date_naive());
    let far_past = midnight(NaiveDate::from_ymd_opt(2001, 9, 11).unwrap());
    let far_future = midnight(NaiveDate::from_ymd_opt(2099, 1, 1).unwrap());
    let times = [
        far_past,
        today - Duration::days(40),
        today - Duration::days(3) + Duration::hours(23),
        today - Duration::days(3),
        now,
        today + Duration::days(2),
        far_future,
    ];
    let log = |time| request_log::ActiveModel {
        ip_address: Set("198.51.100.4".into()),
        timestamp: Set(time),
        method: Set("GET".into()),
        path: Set("/x".into()),
        status: Set(200),
        country: Set("Ütopia, \"quoted\"".into()),
        ..Default::default()
    };
    for time in times {
        request_log::Entity::insert(log(time))
            .exec(&conn)
            .await
            .unwrap();
    }
    let last = request_log::Entity::insert(log(now))
        .exec(&conn)
        .await
        .unwrap()
        .last_insert_id;
    request_log::Entity::delete_by_id(last)
        .exec(&conn)
        .await
        .unwrap();
    let before = request_log_rows(&conn).await;
    assert_eq!(before.len(), times.len());

    Migrator::up(&conn, None).await.unwrap();
    assert!(partitions::is_partitioned(&conn).await.unwrap());
    assert_eq!(request_log_rows(&conn).await, before);
    // A partition per day holding rows, today and the week ahead; the far future waits
    // in the DEFAULT partition.
    let names: Vec<String> = partitions::list(&conn)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    let mut expected: Vec<String> = [
        far_past,
        today - Duration::days(40),
        today - Duration::days(3),
    ]
    .into_iter()
    .chain((0..=partitions::PREMAKE_DAYS).map(|d| today + Duration::days(d)))
    .map(partitions::partition_name)
    .collect();
    expected.sort();
    assert_eq!(names, expected);
    for (id, time) in before.iter().map(|(id, _)| *id).zip(times) {
        let part = holder(&conn, id).await;
        if time == far_future {
            assert_eq!(part, partitions::DEFAULT_PARTITION);
        } else {
            assert_eq!(
                part,
                partitions::partition_name(midnight(time.date_naive()))
            );
        }
    }
    let manager = SchemaManager::new(&conn);
    for index in [
        "idx_request_log_timestamp",
        "idx_request_log_ip_timestamp",
        "idx_request_log_timestamp_status",
    ] {
        assert!(
            manager.has_index("request_log", index).await.unwrap(),
            "{index}"
        );
    }
    // New rows: the next id after every id handed out (the deleted one too), in their
    // day's partition, through SeaORM's insert as through the worker's COPY.
    let id = request_log::Entity::insert(log(today + Duration::days(2) + Duration::hours(1)))
        .exec(&conn)
        .await
        .unwrap()
        .last_insert_id;
    assert_eq!(id, last + 1);
    assert_eq!(
        holder(&conn, id).await,
        partitions::partition_name(today + Duration::days(2))
    );
    let row = request_log::Entity::find_by_id(id)
        .one(&conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.country, "Ütopia, \"quoted\"");
    request_log::Entity::delete_by_id(before[0].0)
        .exec(&conn)
        .await
        .unwrap();
    let kept = request_log_rows(&conn).await;
    assert_eq!(kept.len(), before.len());

    // And back: one plain table, the same rows and ids, ids still continuing.
    down_through(&conn, "m20261202_000010_partition_request_log").await;
    assert!(!partitions::is_partitioned(&conn).await.unwrap());
    assert_eq!(request_log_rows(&conn).await, kept);
    assert_eq!(holder(&conn, id).await, "request_log");
    for index in [
        "idx_request_log_timestamp",
        "idx_request_log_ip_timestamp",
        "idx_request_log_timestamp_status",
    ] {
        assert!(
            manager.has_index("request_log", index).await.unwrap(),
            "{index}"
        );
    }
    let next = request_log::Entity::insert(log(now))
        .exec(&conn)
        .await
        .unwrap()
        .last_insert_id;
    assert_eq!(next, id + 1);
    assert_eq!(
        db.count(&conn, "pg_tables WHERE tablename LIKE 'request_log_%'")
            .await,
        0
    );
}

both_backends!(
    the_rollup_becomes_two_levels_with_its_counts_and_back,
    |backend| async move {
        use chrono::{DateTime, Duration, DurationRound, TimeDelta};
        use sea_orm::{FromQueryResult, Statement};

        #[derive(Debug, PartialEq, Eq, FromQueryResult)]
        struct Count {
            key: String,
            requests: i64,
        }
        async fn counts(conn: &sea_orm::DatabaseConnection, sql: &str) -> Vec<(String, i64)> {
            Count::find_by_statement(Statement::from_string(
                conn.get_database_backend(),
                sql.to_owned(),
            ))
            .all(conn)
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.key, c.requests))
            .collect()
        }
        let total = |table: &str| {
            format!("SELECT '' AS key, CAST(SUM(requests) AS BIGINT) AS requests FROM {table}")
        };
        let by_country = |table: &str| {
            format!(
                "SELECT country_code AS key, CAST(SUM(requests) AS BIGINT) AS requests \
                 FROM {table} GROUP BY country_code ORDER BY 1"
            )
        };
        let expected = [
            ("".to_owned(), 1),
            ("GB".to_owned(), 3),
            ("US".to_owned(), 2),
        ];

        let db = TestDb::new(backend).await;
        let conn = db.connect().await;
        let manager = SchemaManager::new(&conn);
        // Rows over two hours, two countries (one row not located) and three classes.
        let start: DateTime<Utc> = (Utc::now() - Duration::hours(5))
            .duration_trunc(TimeDelta::hours(1))
            .unwrap();
        for (i, (minutes, status, code)) in [
            (0, 200, "GB"),
            (0, 200, "GB"),
            (1, 404, "GB"),
            (59, 429, "US"),
            (60, 200, "US"),
            (61, 200, ""),
        ]
        .into_iter()
        .enumerate()
        {
            request_log::Entity::insert(request_log::ActiveModel {
                ip_address: Set(format!("198.51.100.{i}")),
                timestamp: Set(start + Duration::minutes(minutes) + Duration::seconds(7)),
                method: Set("GET".into()),
                path: Set("/x".into()),
                status: Set(status),
                country_code: Set(code.into()),
                country: Set(code.to_lowercase()),
                ..Default::default()
            })
            .exec(&conn)
            .await
            .unwrap();
        }

        // Down: the one minute × class × country table, counted from the rows.
        down_through(&conn, "m20261202_000011_rollup_levels").await;
        assert!(!manager.has_table("request_rollup_hour").await.unwrap());
        assert!(!manager.has_table("request_rollup_minute").await.unwrap());
        assert_eq!(counts(&conn, &by_country("request_rollup")).await, expected);
        assert_eq!(
            db.count(&conn, "request_rollup").await,
            5,
            "per (minute, class, country)"
        );

        // Up: converted from it, with the same counts, by minute and by hour and country.
        Migrator::up(&conn, None).await.unwrap();
        assert!(!manager.has_table("request_rollup").await.unwrap());
        assert_eq!(
            counts(&conn, &total("request_rollup_minute")).await,
            [(String::new(), 6)]
        );
        assert_eq!(
            db.count(&conn, "request_rollup_minute").await,
            5,
            "(minute, class): 0 2xx, 1 4xx, 59 429, 60 2xx, 61 2xx"
        );
        assert_eq!(
            counts(&conn, &by_country("request_rollup_hour")).await,
            expected
        );
        assert_eq!(
            db.count(&conn, "request_rollup_hour").await,
            5,
            "(hour, class, country): GB 2xx, GB 4xx, US 429; US 2xx, '' 2xx"
        );
    }
);

both_backends!(
    request_count_shards_merge_and_pending_counts_fold_in_both_ways,
    |backend| async move {
        use chrono::{DateTime, Duration};
        use iptrack_entity::request_count;
        use sea_orm::{ConnectionTrait, QueryOrder};

        let db = TestDb::new(backend).await;
        let conn = db.connect().await;
        let manager = SchemaManager::new(&conn);
        let hour: DateTime<Utc> = "2026-11-21T10:00:00Z".parse().unwrap();
        let shown = |rows: Vec<request_count::Model>| -> Vec<(String, i64, i64, i64, String)> {
            rows.into_iter()
                .map(|r| {
                    (
                        r.ip_address,
                        r.requests,
                        (r.first_seen - hour).num_minutes(),
                        (r.last_seen - hour).num_minutes(),
                        r.min_path,
                    )
                })
                .collect()
        };
        let stored = || async {
            request_count::Entity::find()
                .order_by_asc(request_count::Column::IpAddress)
                .all(&conn)
                .await
                .unwrap()
        };

        // Before 000013: one key counted in three shards (three batches), another in one.
        down_through(&conn, "m20261202_000013_request_count_pending").await;
        assert!(manager.has_column("request_count", "shard").await.unwrap());
        assert!(!manager.has_table("request_count_pending").await.unwrap());
        for (ip, shard, requests, minute, path) in [
            ("198.51.100.1", 0, 5, 10, "/b"),
            ("198.51.100.1", 3, 2, 5, "/a"),
            ("198.51.100.1", 15, 1, 50, "/c"),
            ("198.51.100.2", 7, 4, 20, "/d"),
        ] {
            let at = hour + Duration::minutes(minute);
            let marks = match conn.get_database_backend() {
                sea_orm::DbBackend::Postgres => "$1, $2, $3, $4, $5, $6, $7, $8",
                _ => "?, ?, ?, ?, ?, ?, ?, ?",
            };
            conn.execute_raw(sea_orm::Statement::from_sql_and_values(
                conn.get_database_backend(),
                format!(
                    "INSERT INTO request_count (hour_start, ip_address, section, shard, \
                     requests, first_seen, last_seen, min_path) VALUES ({marks})"
                ),
                [
                    hour.into(),
                    ip.into(),
                    "/".into(),
                    sea_orm::Value::from(shard as i16),
                    sea_orm::Value::from(requests as i64),
                    at.into(),
                    at.into(),
                    path.into(),
                ],
            ))
            .await
            .unwrap();
        }

        // Up: one row per key, the shards' counts merged; no shard column.
        Migrator::up(&conn, None).await.unwrap();
        assert!(!manager.has_column("request_count", "shard").await.unwrap());
        let merged = vec![
            ("198.51.100.1".to_owned(), 8, 5, 50, "/a".to_owned()),
            ("198.51.100.2".to_owned(), 4, 20, 20, "/d".to_owned()),
        ];
        assert_eq!(shown(stored().await), merged);

        let mut expected = merged;
        if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
            // A batch's counts still pending when the migration goes down: folded in,
            // adding to one stored key and making another.
            conn.execute_unprepared(&format!(
                "INSERT INTO request_count_pending VALUES ('b1', \
                 ARRAY['{hour}', '{hour}']::timestamptz[], \
                 ARRAY['198.51.100.2', '198.51.100.3'], ARRAY['/', '/'], ARRAY[3, 1], \
                 ARRAY['{early}', '{late}']::timestamptz[], \
                 ARRAY['{late}', '{late}']::timestamptz[], ARRAY['/c', '/e'])",
                hour = hour.to_rfc3339(),
                early = (hour + Duration::minutes(1)).to_rfc3339(),
                late = (hour + Duration::minutes(59)).to_rfc3339(),
            ))
            .await
            .unwrap();
            // The arrays are compressed with lz4 where the server has it.
            let has_lz4 = db
                .count(
                    &conn,
                    "pg_settings WHERE name = 'default_toast_compression' \
                     AND 'lz4' = ANY(enumvals)",
                )
                .await
                == 1;
            let lz4_columns = db
                .count(
                    &conn,
                    "pg_attribute WHERE attrelid = 'request_count_pending'::regclass \
                     AND attnum > 1 AND attcompression = 'l'",
                )
                .await;
            assert_eq!(lz4_columns, if has_lz4 { 7 } else { 0 });
            // A row whose arrays do not line up is refused at its insert (it would fail
            // every fold after it).
            for (addresses, requests) in [
                ("ARRAY['198.51.100.4']", "ARRAY[1, 2]"),
                ("ARRAY['198.51.100.4', NULL]", "ARRAY[1, 2]"),
            ] {
                let refused = conn
                    .execute_unprepared(&format!(
                        "INSERT INTO request_count_pending VALUES ('bad', \
                         ARRAY[now(), now()], {addresses}, ARRAY['/', '/'], {requests}, \
                         ARRAY[now(), now()], ARRAY[now(), now()], ARRAY['/', '/'])"
                    ))
                    .await
                    .unwrap_err();
                assert!(
                    refused
                        .to_string()
                        .contains("request_count_pending_aligned"),
                    "{refused}"
                );
            }
            expected = vec![
                ("198.51.100.1".to_owned(), 8, 5, 50, "/a".to_owned()),
                ("198.51.100.2".to_owned(), 7, 1, 59, "/c".to_owned()),
                ("198.51.100.3".to_owned(), 1, 59, 59, "/e".to_owned()),
            ];
        }
        // Down again: the shard column is back (stored rows are shard 0), nothing pending
        // is lost; up again: the same rows.
        down_through(&conn, "m20261202_000013_request_count_pending").await;
        assert!(manager.has_column("request_count", "shard").await.unwrap());
        assert!(!manager.has_table("request_count_pending").await.unwrap());
        assert_eq!(
            db.count(&conn, "request_count WHERE shard = 0").await,
            expected.len() as i64
        );
        Migrator::up(&conn, None).await.unwrap();
        assert_eq!(shown(stored().await), expected);
    }
);
