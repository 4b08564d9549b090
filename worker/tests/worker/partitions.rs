//! PostgreSQL's partitioned `request_log` kept by `purge-logs`: old partitions dropped
//! whole, the rest kept row for row, partitions made ahead, rows of the DEFAULT partition
//! moved into the partitions made for them, two purges at once. Rows are written through
//! the request-log job's own path (binary COPY). SQLite has no partitions: its purge is
//! tested in `flag.rs` (`purging_deletes_only_what_is_older_than_the_retention`).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, SubsecRound, Utc};
use iptrack_core::{
    jobs::{LogEvent, PurgeLogs, RequestLogBatch},
    settings::LogPartition,
};
use iptrack_migration::request_log_partitions::{self as partitions, midnight};
use iptrack_tests::{Backend, TestDb};
use iptrack_worker::jobs::{purge_logs::purge, request_logs::ingest};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait};

fn events(times: &[DateTime<Utc>], per_time: usize) -> Vec<LogEvent> {
    times
        .iter()
        .flat_map(|&timestamp| {
            (0..per_time).map(move |i| LogEvent {
                ip: "198.51.100.7".parse().unwrap(),
                timestamp,
                method: "GET".into(),
                path: format!("/items/{i}"),
                status: 200,
                duration_us: 90,
                user_agent: "curl/8.5.0".into(),
                user_id: None,
                query_string: None,
            })
        })
        .collect()
}

/// Writes `events` the way the worker does (COPY on PostgreSQL).
async fn store(conn: &DatabaseConnection, events: Vec<LogEvent>) {
    ingest(conn, &RequestLogBatch::new(events)).await.unwrap();
}

/// Rows per UTC day.
async fn rows_by_day(conn: &DatabaseConnection) -> BTreeMap<String, i64> {
    conn.query_all_raw(Statement::from_string(
        conn.get_database_backend(),
        "SELECT to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, count(*) AS n \
         FROM request_log GROUP BY 1",
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| {
        (
            row.try_get("", "day").unwrap(),
            row.try_get("", "n").unwrap(),
        )
    })
    .collect()
}

/// Rows per partition (`request_log_default` included).
async fn rows_by_partition(conn: &DatabaseConnection) -> BTreeMap<String, i64> {
    conn.query_all_raw(Statement::from_string(
        conn.get_database_backend(),
        "SELECT tableoid::regclass::text AS part, count(*) AS n FROM request_log GROUP BY 1",
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| {
        (
            row.try_get("", "part").unwrap(),
            row.try_get("", "n").unwrap(),
        )
    })
    .collect()
}

async fn partition_names(conn: &DatabaseConnection) -> Vec<String> {
    partitions::list(conn)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect()
}

fn name_of(day: DateTime<Utc>) -> String {
    partitions::partition_name(day)
}

/// Daily partitions over `[from, until)`, as a deployment that ran `purge-logs` every
/// day for that long would have (made while the table is empty, as premake does).
async fn daily_partitions(conn: &DatabaseConnection, from: DateTime<Utc>, until: DateTime<Utc>) {
    let txn = conn.begin().await.unwrap();
    partitions::lock_for_create(&txn).await.unwrap();
    partitions::cover(&txn, from, until, |d| LogPartition::Day.next_start(d))
        .await
        .unwrap();
    txn.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_drops_whole_old_partitions_and_keeps_every_other_row_exactly() {
    let db = TestDb::new(Backend::Postgres).await;
    let conn = db.connect().await;
    // Microseconds, as PostgreSQL keeps them (a row at `cutoff` must not fall before it).
    let now = Utc::now().trunc_subsecs(6);
    let today = midnight(now.date_naive());
    daily_partitions(&conn, today - Duration::days(45), today).await;
    let cutoff = now - Duration::days(30);
    let far_past = midnight(NaiveDate::from_ymd_opt(1999, 12, 31).unwrap());
    let far_future = midnight(NaiveDate::from_ymd_opt(2090, 6, 1).unwrap());
    let times: Vec<DateTime<Utc>> = [
        far_past,
        today - Duration::days(44),
        today - Duration::days(31) + Duration::hours(23),
        cutoff - Duration::seconds(1),
        cutoff,
        cutoff + Duration::hours(1),
        today - Duration::days(1),
        now,
        today + Duration::days(6),
        far_future,
    ]
    .into();
    store(&conn, events(&times, 3)).await;
    let before = rows_by_day(&conn).await;
    let before_parts = rows_by_partition(&conn).await;
    // The odd timestamps went to the DEFAULT partition, the others to their day's.
    assert_eq!(before_parts["request_log_default"], 6);
    assert_eq!(before_parts[&name_of(today)], 3);

    let purged = purge(
        &conn,
        &PurgeLogs { older_than: cutoff },
        LogPartition::Day,
        now,
    )
    .await
    .unwrap();

    // Every partition wholly before the cutoff went; the cutoff's own day stays.
    let cutoff_day = midnight(cutoff.date_naive());
    let mut expected_dropped: Vec<String> = (1..=45)
        .map(|d| today - Duration::days(d))
        .filter(|d| *d < cutoff_day)
        .map(name_of)
        .collect();
    expected_dropped.sort();
    let mut dropped = purged.dropped_partitions.clone();
    dropped.sort();
    assert_eq!(dropped, expected_dropped);
    let names = partition_names(&conn).await;
    assert_eq!(names.first(), Some(&name_of(cutoff_day)));
    // Only the boundary day's old rows and the DEFAULT partition's old row were deleted
    // one by one; the rows of dropped partitions never were.
    assert_eq!(purged.deleted_rows, 3 + 3);
    let after = rows_by_day(&conn).await;
    let day = |t: DateTime<Utc>| t.format("%Y-%m-%d").to_string();
    let mut expected = before.clone();
    for gone in [
        far_past,
        today - Duration::days(44),
        today - Duration::days(31),
    ] {
        expected.remove(&day(gone));
    }
    let boundary = day(cutoff - Duration::seconds(1));
    *expected.get_mut(&boundary).unwrap() -= 3;
    if expected[&boundary] == 0 {
        expected.remove(&boundary);
    }
    assert_eq!(after, expected);
    assert_eq!(
        db.count(
            &conn,
            &format!("request_log WHERE timestamp < '{}'", cutoff.to_rfc3339())
        )
        .await,
        0
    );
    // The far-future row waits in the DEFAULT partition; nothing else is left there.
    assert_eq!(rows_by_partition(&conn).await["request_log_default"], 3);

    // A second purge the same day finds nothing to do.
    let again = purge(
        &conn,
        &PurgeLogs { older_than: cutoff },
        LogPartition::Day,
        now,
    )
    .await
    .unwrap();
    assert_eq!(
        (
            again.deleted_rows,
            again.dropped_partitions.len(),
            again.created_partitions.len()
        ),
        (0, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_makes_partitions_ahead_in_its_period_and_moves_the_default_partitions_rows() {
    let db = TestDb::new(Backend::Postgres).await;
    let conn = db.connect().await;
    // Microseconds, as PostgreSQL keeps them (a row at `cutoff` must not fall before it).
    let now = Utc::now().trunc_subsecs(6);
    let today = midnight(now.date_naive());
    // The migration made today and the week ahead.
    let made: Vec<String> = (0..=partitions::PREMAKE_DAYS)
        .map(|d| name_of(today + Duration::days(d)))
        .collect();
    assert_eq!(partition_names(&conn).await, made);

    // Rows past the partitions made (the scheduler was down, or a producer's clock is
    // ahead) wait in the DEFAULT partition.
    let later = [
        today + Duration::days(10) + Duration::hours(5),
        today + Duration::days(20) + Duration::hours(7),
    ];
    store(&conn, events(&later, 4)).await;
    assert_eq!(rows_by_partition(&conn).await["request_log_default"], 8);
    let before = rows_by_day(&conn).await;

    // Two weeks on, weekly partitions.
    let two_weeks_on = now + Duration::days(14);
    let purged = purge(
        &conn,
        &PurgeLogs {
            older_than: two_weeks_on - Duration::days(30),
        },
        LogPartition::Week,
        two_weeks_on,
    )
    .await
    .unwrap();

    // From the retention's first day to a week past the new today, without gaps, in
    // weeks that start on Mondays (cut short where the migration's days begin).
    let cutoff_day = midnight((two_weeks_on - Duration::days(30)).date_naive());
    let horizon =
        midnight(two_weeks_on.date_naive()) + Duration::days(partitions::PREMAKE_DAYS + 1);
    let list = partitions::list(&conn).await.unwrap();
    assert_eq!(list.first().and_then(|p| p.start), Some(cutoff_day));
    // The last week may reach past the horizon (it ends on a Monday).
    let last_end = list.last().and_then(|p| p.end).unwrap();
    assert!(
        last_end >= horizon && last_end < horizon + Duration::days(7),
        "{last_end}"
    );
    for pair in list.windows(2) {
        assert_eq!(pair[0].end, pair[1].start, "{pair:?}");
    }
    let created: Vec<String> = purged
        .created_partitions
        .iter()
        .map(|c| c.name.clone())
        .collect();
    for partition in list.iter().filter(|p| created.contains(&p.name)) {
        let (start, end) = (partition.start.unwrap(), partition.end.unwrap());
        assert!(
            end == midnight(LogPartition::Week.next_start(start.date_naive())) || end == today,
            "{partition:?}"
        );
    }
    assert!(created.len() >= 4, "{created:?}");
    assert_eq!(
        purged
            .created_partitions
            .iter()
            .map(|c| c.moved_rows)
            .sum::<u64>(),
        8
    );
    assert_eq!(purged.deleted_rows, 0);
    // The rows left the DEFAULT partition for the partitions of their ranges, none lost.
    let parts = rows_by_partition(&conn).await;
    assert!(!parts.contains_key("request_log_default"), "{parts:?}");
    for time in later {
        let holder = list.iter().find(|p| p.contains(time)).unwrap();
        assert_eq!(parts[&holder.name], 4, "{time}");
    }
    assert_eq!(rows_by_day(&conn).await, before);
    // New rows go straight to their partition.
    store(&conn, events(&[later[1] + Duration::minutes(1)], 1)).await;
    assert!(
        !rows_by_partition(&conn)
            .await
            .contains_key("request_log_default")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_purges_at_once_both_succeed_and_do_each_change_once() {
    let db = TestDb::new(Backend::Postgres).await;
    let conn = db.connect().await;
    // Microseconds, as PostgreSQL keeps them (a row at `cutoff` must not fall before it).
    let now = Utc::now().trunc_subsecs(6);
    let today = midnight(now.date_naive());
    // Daily partitions until 25 days ago; the scheduler was away since.
    daily_partitions(
        &conn,
        today - Duration::days(40),
        today - Duration::days(25),
    )
    .await;
    store(
        &conn,
        events(
            &[
                today - Duration::days(39),
                today - Duration::days(35),
                today - Duration::days(2),
                today + Duration::days(12),
            ],
            5,
        ),
    )
    .await;
    let job = PurgeLogs {
        older_than: today - Duration::days(30),
    };
    let (other, second) = (conn.clone(), conn.clone());
    let (a, b) = tokio::join!(
        async move { purge(&other, &job, LogPartition::Day, now).await },
        async move { purge(&second, &job, LogPartition::Day, now).await },
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    // Each partition was dropped, and made, by exactly one of them.
    let mut dropped: Vec<String> =
        [a.dropped_partitions.clone(), b.dropped_partitions.clone()].concat();
    dropped.sort();
    let expected_dropped: Vec<String> = (31..=40)
        .rev()
        .map(|d| name_of(today - Duration::days(d)))
        .collect();
    assert_eq!(dropped, expected_dropped);
    let mut created: Vec<String> = a
        .created_partitions
        .iter()
        .chain(&b.created_partitions)
        .map(|c| c.name.clone())
        .collect();
    created.sort();
    // The retention's days without one, up to today's (made by the migration).
    let expected_created: Vec<String> = (1..=25)
        .rev()
        .map(|d| name_of(today - Duration::days(d)))
        .collect();
    assert_eq!(created, expected_created);
    assert_eq!(a.deleted_rows + b.deleted_rows, 0);
    assert_eq!(
        rows_by_day(&conn)
            .await
            .values()
            .copied()
            .collect::<Vec<_>>(),
        [5, 5]
    );
    // The row of two days ago moved to its partition; the one past the horizon waits.
    let parts = rows_by_partition(&conn).await;
    assert_eq!(parts[&name_of(today - Duration::days(2))], 5);
    assert_eq!(parts["request_log_default"], 5);
}
