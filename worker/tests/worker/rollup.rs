//! The dashboard's pre-aggregates: `request_rollup_minute` and `request_rollup_hour` equal
//! GROUP BYs over `request_log` through ingest (batches delivered again included),
//! geolocation fills and purges; ranges with partial hours read exact counts either way;
//! and an hour summary made stale by a late row sends its hour back to raw rows, so the
//! figures stay exact, until the job summarizes the hour again.

use std::{collections::HashMap, net::IpAddr};

use chrono::{DateTime, Duration, DurationRound, TimeDelta, Utc};
use iptrack_core::{
    jobs::{LogEvent, PurgeLogs, RequestLogBatch},
    settings::LogPartition,
};
use iptrack_entity::query::{
    countries, stats, status_class::case_sql, summaries::Coverage, timeline::Timeline,
};
use iptrack_migration::request_rollup::{hour_sql, minute_sql};
use iptrack_tests::{TestDb, both_backends};
use iptrack_worker::{
    geo::Location,
    jobs::{
        geolocate::fill_rows,
        purge_logs::purge,
        request_logs::{Ingested, ingest, ingest_located},
        request_summaries::summarize_due,
    },
};
use sea_orm::{DatabaseConnection, FromQueryResult, Statement};

use crate::batch;

#[derive(Debug, PartialEq, Eq, FromQueryResult)]
struct MinuteGroup {
    minute: DateTime<Utc>,
    class: i64,
    requests: i64,
}

#[derive(Debug, PartialEq, Eq, FromQueryResult)]
struct HourGroup {
    hour_start: DateTime<Utc>,
    class: i64,
    country_code: String,
    country: String,
    requests: i64,
}

/// Both rollups, and the same groupings over the rows, in one order.
async fn rollup_and_raw(
    conn: &DatabaseConnection,
) -> (
    (Vec<MinuteGroup>, Vec<HourGroup>),
    (Vec<MinuteGroup>, Vec<HourGroup>),
) {
    let backend = conn.get_database_backend();
    let query = |sql: String| Statement::from_string(backend, sql);
    let (minute, hour, class) = (
        minute_sql(backend, "\"timestamp\""),
        hour_sql(backend, "\"timestamp\""),
        case_sql("status"),
    );
    let minutes = MinuteGroup::find_by_statement(query(
        "SELECT minute, status_class AS class, requests FROM request_rollup_minute \
         ORDER BY 1, 2"
            .into(),
    ))
    .all(conn)
    .await
    .unwrap();
    let hours = HourGroup::find_by_statement(query(
        "SELECT hour_start, status_class AS class, country_code, country, requests \
         FROM request_rollup_hour ORDER BY 1, 2, 3"
            .into(),
    ))
    .all(conn)
    .await
    .unwrap();
    let raw_minutes = MinuteGroup::find_by_statement(query(format!(
        "SELECT {minute} AS minute, {class} AS class, COUNT(*) AS requests FROM request_log \
         GROUP BY {minute}, {class} ORDER BY 1, 2"
    )))
    .all(conn)
    .await
    .unwrap();
    let raw_hours = HourGroup::find_by_statement(query(format!(
        "SELECT {hour} AS hour_start, {class} AS class, country_code, \
         MAX(country) AS country, COUNT(*) AS requests FROM request_log \
         GROUP BY {hour}, {class}, country_code ORDER BY 1, 2, 3"
    )))
    .all(conn)
    .await
    .unwrap();
    ((minutes, hours), (raw_minutes, raw_hours))
}

async fn assert_rollup_is_raw(conn: &DatabaseConnection, step: &str) {
    let (rollup, raw) = rollup_and_raw(conn).await;
    assert!(!raw.0.is_empty(), "{step}: no rows");
    assert_eq!(rollup.0, raw.0, "{step}: request_rollup_minute");
    assert_eq!(rollup.1, raw.1, "{step}: request_rollup_hour");
}

fn event(ip: &str, at: DateTime<Utc>, status: u16, path: &str) -> LogEvent {
    LogEvent {
        ip: ip.parse().unwrap(),
        timestamp: at,
        method: "GET".into(),
        path: path.into(),
        status,
        duration_us: 50,
        user_agent: "test".into(),
        user_id: None,
        query_string: None,
    }
}

fn location(code: &str, name: &str) -> Location {
    Location {
        country_code: code.into(),
        country: name.into(),
        city: format!("{name} City"),
    }
}

/// The whole hours of `[since, until)` read from their summaries.
async fn summarized(
    conn: &DatabaseConnection,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    Coverage::of(conn, since, until).await.unwrap().summarized
}

const GB: &str = "81.2.69.142";
const US: &str = "198.51.100.20";
const PRIVATE: &str = "10.1.2.3";

/// Traffic over a few minutes of `start`'s hour: every class, three addresses, times on
/// and between minute boundaries, some with nanoseconds (PostgreSQL keeps microseconds).
fn traffic(start: DateTime<Utc>) -> Vec<RequestLogBatch> {
    let statuses = [200, 301, 404, 403, 429, 500, 101, 999];
    let at = |seconds: i64, nanos: i64| {
        start + Duration::seconds(seconds) + Duration::nanoseconds(nanos)
    };
    let mut batches = Vec::new();
    for (n, ip) in [GB, US, PRIVATE].into_iter().enumerate() {
        let events = (0..40)
            .map(|i| {
                let seconds = (i as i64) * 17 + n as i64 * 5;
                event(
                    ip,
                    at(seconds, (i as i64 % 3) * 333),
                    statuses[i % statuses.len()],
                    &format!("/p/{}", i % 4),
                )
            })
            .chain([event(ip, at(119, 999_999_999), 200, "/edge")])
            .collect();
        batches.push(RequestLogBatch::new(events));
    }
    batches
}

both_backends!(
    the_rollup_equals_the_rows_grouped_through_ingest_geolocation_and_purge,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let conn = db.connect().await;
        let start = (Utc::now() - Duration::hours(2))
            .duration_trunc(TimeDelta::hours(1))
            .unwrap();
        let batches = traffic(start);
        // The US address is located at ingest (cached), the others not yet.
        let located: HashMap<IpAddr, Location> =
            [(US.parse().unwrap(), location("US", "United States"))].into();
        for batch in &batches {
            assert!(matches!(
                ingest_located(&conn, batch, &located).await.unwrap(),
                Ingested::Rows(_)
            ));
        }
        assert_rollup_is_raw(&conn, "after ingest").await;

        // Delivered again: nothing counted twice.
        for batch in &batches {
            assert_eq!(
                ingest_located(&conn, batch, &located).await.unwrap(),
                Ingested::AlreadyWritten
            );
        }
        assert_rollup_is_raw(&conn, "after re-delivery").await;

        // Geolocation fills the GB address: its counts move from '' to GB.
        let filled = fill_rows(
            &conn,
            GB.parse().unwrap(),
            &location("GB", "United Kingdom"),
        )
        .await
        .unwrap();
        assert_eq!(filled, 41);
        assert_rollup_is_raw(&conn, "after the fill").await;
        // Filled again (another worker's answer): nothing left to move.
        assert_eq!(
            fill_rows(&conn, GB.parse().unwrap(), &location("GB", "Britain"))
                .await
                .unwrap(),
            0
        );
        // A later batch of the GB address before its location is cached, then filled.
        let late = RequestLogBatch::new(vec![
            event(GB, start + Duration::seconds(30), 403, "/late"),
            event(GB, start + Duration::seconds(30), 200, "/late"),
        ]);
        ingest(&conn, &late).await.unwrap();
        assert_rollup_is_raw(&conn, "a late unlocated batch").await;
        fill_rows(
            &conn,
            GB.parse().unwrap(),
            &location("GB", "United Kingdom"),
        )
        .await
        .unwrap();
        let ((_, hours), _) = rollup_and_raw(&conn).await;
        assert!(
            hours
                .iter()
                .all(|g| !g.country_code.is_empty() || g.requests > 0),
            "no rollup row is left at zero"
        );
        assert_rollup_is_raw(&conn, "after the second fill").await;

        // Purged up to the middle of a minute: that minute, and its hour, are counted again
        // from their rows.
        let cutoff = start + Duration::seconds(60) + Duration::seconds(25);
        purge(
            &conn,
            &PurgeLogs { older_than: cutoff },
            LogPartition::Day,
            Utc::now(),
        )
        .await
        .unwrap();
        assert_rollup_is_raw(&conn, "after the purge").await;
    }
);

both_backends!(
    a_late_row_sends_a_summarized_hour_back_to_raw_rows_until_it_is_summarized_again,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let conn = db.connect().await;
        let hour = (Utc::now() - Duration::hours(3))
            .duration_trunc(TimeDelta::hours(1))
            .unwrap();
        let mut events = Vec::new();
        for (ip, n) in [(GB, 7), (US, 5), (PRIVATE, 3)] {
            for i in 0..n {
                events.push(event(ip, hour + Duration::minutes(i * 7), 200, "/a"));
            }
        }
        let located: HashMap<IpAddr, Location> = [
            (GB.parse().unwrap(), location("GB", "United Kingdom")),
            (US.parse().unwrap(), location("US", "United States")),
        ]
        .into();
        ingest_located(&conn, &RequestLogBatch::new(events), &located)
            .await
            .unwrap();
        // Rows in the current hour too: read raw.
        ingest(&conn, &batch("now", 4, US)).await.unwrap();
        let now = Utc::now();

        // A range with partial hours at both ends around the summarized one.
        let since = hour - Duration::minutes(30);
        let timeline = Timeline::new(since, now, None).unwrap();
        assert!(
            summarized(&conn, since, now).await.is_empty(),
            "nothing summarized yet"
        );
        let exact = stats::stats(&conn, &timeline, 10).await.unwrap();

        assert_eq!(
            summarize_due(&conn, now, Duration::hours(24))
                .await
                .unwrap(),
            1
        );
        assert_eq!(summarized(&conn, since, now).await, [hour]);
        assert_eq!(
            summarize_due(&conn, now, Duration::hours(24))
                .await
                .unwrap(),
            0
        );
        let from_summaries = stats::stats(&conn, &timeline, 10).await.unwrap();
        assert_eq!(from_summaries.top_addresses, exact.top_addresses);
        assert_eq!(from_summaries.top_paths, exact.top_paths);
        assert_eq!(from_summaries.total, 19);
        let by_country = countries::countries(&conn, since, now).await.unwrap();
        let addresses: Vec<(String, i64, i64)> = by_country
            .countries
            .iter()
            .map(|c| (c.country_code.clone(), c.requests, c.addresses))
            .collect();
        assert_eq!(
            addresses,
            [("GB".to_owned(), 7, 1), ("US".to_owned(), 5, 1)]
        );
        assert_eq!(by_country.unlocated_requests, 7);
        // Most of a past hour: read as the hour's rollup less the rows at both ends. A
        // minute of it: read from its rows. Both exact.
        for ((from, to), expected, unlocated) in [
            ((5, 55), [("GB", 6), ("US", 4)], 2),
            ((0, 1), [("GB", 1), ("US", 1)], 1),
        ] {
            let part = countries::countries(
                &conn,
                hour + Duration::minutes(from),
                hour + Duration::minutes(to),
            )
            .await
            .unwrap();
            let requests: Vec<(&str, i64)> = part
                .countries
                .iter()
                .map(|c| (c.country_code.as_str(), c.requests))
                .collect();
            assert_eq!(requests, expected, "{from}-{to} min");
            assert_eq!(part.unlocated_requests, unlocated, "{from}-{to} min");
        }

        // A late row in the summarized hour, from a new address: the hour is read raw.
        ingest(
            &conn,
            &RequestLogBatch::new(
                (0..10)
                    .map(|_| event("203.0.113.77", hour + Duration::minutes(50), 404, "/late"))
                    .collect(),
            ),
        )
        .await
        .unwrap();
        assert!(
            summarized(&conn, since, now).await.is_empty(),
            "the stale summary is not used"
        );
        let late = stats::stats(&conn, &timeline, 10).await.unwrap();
        assert_eq!(late.total, 29);
        assert_eq!(late.top_addresses[0].ip_address, "203.0.113.77");
        assert_eq!(late.top_addresses[0].requests, 10);
        assert_eq!(late.top_paths[0].path, "/a");
        assert_eq!(late.top_paths[0].requests, 15);
        assert_eq!(late.top_paths[1].path, "/late");
        assert_eq!(late.top_paths[1].requests, 10);

        // Summarized again: used again, with the same figures.
        assert_eq!(
            summarize_due(&conn, now, Duration::hours(24))
                .await
                .unwrap(),
            1
        );
        assert_eq!(summarized(&conn, since, now).await, [hour]);
        let again = stats::stats(&conn, &timeline, 10).await.unwrap();
        assert_eq!(again.top_addresses, late.top_addresses);
        assert_eq!(again.top_paths, late.top_paths);
        assert_eq!(again.total, 29);

        // A location filled in later changes the hour's unlocated rows: raw again.
        fill_rows(
            &conn,
            "203.0.113.77".parse().unwrap(),
            &location("AU", "Australia"),
        )
        .await
        .unwrap();
        assert!(
            summarized(&conn, since, now).await.is_empty(),
            "a fill makes the summary stale"
        );
        let filled = countries::countries(&conn, since, now).await.unwrap();
        assert_eq!(
            filled
                .countries
                .iter()
                .find(|c| c.country_code == "AU")
                .map(|c| (c.requests, c.addresses)),
            Some((10, 1))
        );
    }
);
