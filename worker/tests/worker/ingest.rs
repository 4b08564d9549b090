//! The request-logs job writes a batch once, whole, in one transaction.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use apalis::prelude::Data;
use chrono::{DateTime, SubsecRound, Utc};
use futures::StreamExt;
use iptrack_core::{Settings, blocklist::service::BlocklistService, jobs::RequestLogBatch};
use iptrack_entity::{request_count, request_log};
use iptrack_tests::{Backend, TestDb, TestRedis, both_backends, eventually};
use iptrack_worker::{
    context::JobContext,
    count_fold::{self, Folded},
    jobs::request_logs::{self, Ingested, ingest},
};
use redis::aio::ConnectionManager;
use sea_orm::{DatabaseConnection, EntityTrait, QueryOrder};

use crate::batch;

both_backends!(a_batch_is_written_with_every_field, |backend| async move {
    let db = TestDb::new(backend).await;
    let conn = db.connect().await;
    let mut batch = batch("shop", 3, "::ffff:203.0.113.9");
    batch.events[1].method = "POST".into();
    batch.events[1].status = 403;
    batch.events[2].ip = "2001:db8::7".parse().unwrap();

    assert_eq!(ingest(&conn, &batch).await.unwrap(), Ingested::Rows(3));

    let rows = request_log::Entity::find()
        .order_by_asc(request_log::Column::Id)
        .all(&conn)
        .await
        .unwrap();
    let got: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.ip_address.as_str(),
                r.method.as_str(),
                r.path.as_str(),
                r.status,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("::ffff:203.0.113.9", "GET", "/shop/0", 200),
            ("::ffff:203.0.113.9", "POST", "/shop/1", 403),
            ("2001:db8::7", "GET", "/shop/2", 200),
        ]
    );
    // PostgreSQL keeps microseconds, SQLite all of it.
    assert_eq!(
        rows[0].timestamp.trunc_subsecs(6),
        batch.events[0].timestamp.trunc_subsecs(6)
    );
});

both_backends!(
    a_batch_delivered_twice_is_written_once,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let conn = db.connect().await;
        let batch = batch("twice", 25, "198.51.100.1");
        assert_eq!(ingest(&conn, &batch).await.unwrap(), Ingested::Rows(25));
        assert_eq!(
            ingest(&conn, &batch).await.unwrap(),
            Ingested::AlreadyWritten
        );
        assert_eq!(db.count(&conn, "request_log").await, 25);
    }
);

both_backends!(
    the_same_batch_delivered_to_two_workers_at_once_is_written_once,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let (a, b) = (db.connect().await, db.connect().await);
        let batch = batch("race", 2_000, "198.51.100.2");
        let (first, second) = tokio::join!(ingest(&a, &batch), ingest(&b, &batch));
        let mut outcomes = [first.unwrap(), second.unwrap()];
        outcomes.sort_by_key(|o| matches!(o, Ingested::AlreadyWritten));
        assert_eq!(outcomes, [Ingested::Rows(2_000), Ingested::AlreadyWritten]);
        assert_eq!(db.count(&a, "request_log").await, 2_000);
    }
);

both_backends!(
    a_batch_larger_than_one_statement_is_written_whole,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let conn = db.connect().await;
        let batch = batch("big", 12_345, "198.51.100.3");
        assert_eq!(ingest(&conn, &batch).await.unwrap(), Ingested::Rows(12_345));
        assert_eq!(db.count(&conn, "request_log").await, 12_345);
    }
);

/// Text an attacker controls in every text column the worker writes: quotes, backslashes
/// and the `\N` and `\.` a text-format `COPY` would read as NULL and end of data, tabs,
/// newlines and commas (text and CSV delimiters), multi-byte characters, long values; and
/// the edges of the other columns (an extension method, a status above 599, a duration
/// past `i64::MAX`, an IPv6 address, a time before 2000, PostgreSQL's epoch).
fn hostile_batch() -> RequestLogBatch {
    let mut batch = batch("hostile", 5, "203.0.113.50");
    let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    batch.events[0].path = "/a'b\"c\\d\te\nf\r\ng,h;i|\\N\\.".into();
    batch.events[0].user_agent =
        "Mozilla \"quoted\" \\N \\. \t tab\nnewline\r\n ü 日本 🦀 \u{7f} \u{1}".into();
    batch.events[1].user_agent = "x\\\"'\t\n\r,;|ü".repeat(400);
    batch.events[1].user_id = Some("o'brien\\\"; DROP TABLE request_log; --".into());
    batch.events[1].timestamp = at("1999-12-31T23:59:59.999999Z");
    batch.events[2].query_string = Some("a=1&b=\\x00&c=%00\n\\.\n".into());
    batch.events[2].method = "M-SEARCH".into();
    batch.events[2].status = 999;
    batch.events[2].timestamp = at("2000-01-01T00:00:00Z");
    batch.events[3].duration_us = u64::MAX;
    batch.events[3].ip = "2001:db8::1".parse().unwrap();
    batch.events[4].path = format!("/{}", "%22%5C".repeat(300));
    batch.events[4].user_id = Some(String::new());
    batch
}

type Stored = (
    String,
    DateTime<Utc>,
    String,
    String,
    i32,
    i64,
    String,
    String,
    String,
);

/// Every stored column but the generated id, in id order.
async fn stored_rows(conn: &DatabaseConnection) -> Vec<Stored> {
    request_log::Entity::find()
        .order_by_asc(request_log::Column::Id)
        .all(conn)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.ip_address,
                r.timestamp,
                r.method,
                r.path,
                r.status,
                r.duration_us,
                r.user_agent,
                r.user_id,
                r.query_string,
            )
        })
        .collect()
}

/// `batch` with its events' times moved into 10:00–11:00 on 2026-11-21, whole
/// microseconds apart and distinct per `nth` batch: counts then fall in one hour however
/// close to an hour's end the test runs.
fn in_one_hour(mut batch: RequestLogBatch, nth: i64) -> RequestLogBatch {
    let base: DateTime<Utc> = "2026-11-21T10:15:00Z".parse().unwrap();
    for (i, event) in batch.events.iter_mut().enumerate() {
        event.timestamp = base + chrono::Duration::milliseconds(nth * 100 + i as i64);
    }
    batch
}

/// `request_count` in key order, pending counts folded in first.
async fn stored_counts(conn: &DatabaseConnection) -> Vec<request_count::Model> {
    count_fold::fold_all(conn).await.unwrap();
    request_count::Entity::find()
        .order_by_asc(request_count::Column::HourStart)
        .order_by_asc(request_count::Column::IpAddress)
        .order_by_asc(request_count::Column::Section)
        .all(conn)
        .await
        .unwrap()
}

/// PostgreSQL's binary `COPY` stores exactly what SQLite's `INSERT` stores, and exactly
/// what the events carried: the one row mapping feeds both writes.
#[tokio::test]
async fn copy_on_postgres_stores_what_the_insert_stores_on_sqlite() {
    let (pg, lite) = (
        TestDb::new(Backend::Postgres).await,
        TestDb::new(Backend::Sqlite).await,
    );
    let (pg_conn, lite_conn) = (pg.connect().await, lite.connect().await);
    let mut batch = hostile_batch();
    // Whole microseconds, as the web makes them (`event_time`): what PostgreSQL keeps.
    for event in &mut batch.events {
        event.timestamp = event.timestamp.trunc_subsecs(6);
    }
    assert_eq!(ingest(&pg_conn, &batch).await.unwrap(), Ingested::Rows(5));
    assert_eq!(ingest(&lite_conn, &batch).await.unwrap(), Ingested::Rows(5));

    let expected: Vec<Stored> = batch
        .events
        .iter()
        .map(|e| {
            (
                e.ip.to_string(),
                e.timestamp,
                e.method.clone(),
                e.path.clone(),
                i32::from(e.status),
                i64::try_from(e.duration_us).unwrap_or(i64::MAX),
                e.user_agent.clone(),
                e.user_id.clone().unwrap_or_default(),
                e.query_string.clone().unwrap_or_default(),
            )
        })
        .collect();
    let from_copy = stored_rows(&pg_conn).await;
    assert_eq!(from_copy, expected);
    assert_eq!(from_copy, stored_rows(&lite_conn).await);
    // The counts too, the same on both.
    let counts = stored_counts(&pg_conn).await;
    assert_eq!(counts.iter().map(|c| c.requests).sum::<i64>(), 5);
    assert_eq!(counts, stored_counts(&lite_conn).await);

    // Delivered again: nothing more on either.
    for conn in [&pg_conn, &lite_conn] {
        assert_eq!(
            ingest(conn, &batch).await.unwrap(),
            Ingested::AlreadyWritten
        );
    }
    assert_eq!(stored_rows(&pg_conn).await, expected);
    assert_eq!(stored_counts(&pg_conn).await, counts);
}

/// PostgreSQL's `text` cannot hold NUL. The web never produces one (header values cannot
/// carry it, paths are stored percent-encoded), but any producer can push to the queue: the
/// batch fails whole, as the `INSERT` it replaced did, and leaves no trace, not even its
/// claim, so it is retried rather than marked written.
#[tokio::test]
async fn a_nul_in_text_fails_the_whole_batch_on_postgres_and_claims_nothing() {
    let db = TestDb::new(Backend::Postgres).await;
    let conn = db.connect().await;
    let mut batch = batch("nul", 3, "198.51.100.4");
    batch.events[1].user_agent = "a\0b".into();
    assert!(ingest(&conn, &batch).await.is_err());
    for table in [
        "request_log",
        "request_count",
        "request_count_pending",
        "log_batch",
    ] {
        assert_eq!(db.count(&conn, table).await, 0, "{table}");
    }
    // The connection went back to the pool usable.
    batch.events[1].user_agent = "ab".into();
    assert_eq!(ingest(&conn, &batch).await.unwrap(), Ingested::Rows(3));
}

/// apalis drops a job's future when its worker stops (any Redis error ends an apalis-redis
/// worker), at whatever point the job had reached. The batch must still be written, and
/// the pooled connection must not go back to the pool inside a transaction: sqlx 0.9.0
/// leaves one open when a future is dropped during `BEGIN` (launchbadge/sqlx#4393), and
/// the next job to borrow the connection would then run its statements in it.
#[tokio::test]
async fn a_job_dropped_midway_still_writes_its_batch_and_leaves_no_transaction_open() {
    let db = TestDb::new(Backend::Postgres).await;
    let redis = TestRedis::new();
    // One connection, so each job borrows the connection the job before it used.
    let conn = iptrack_core::db::connect_with_pool(&db.url, 1)
        .await
        .unwrap();
    let redis_conn = ConnectionManager::new(redis::Client::open(redis.url.as_str()).unwrap())
        .await
        .unwrap();
    let ctx = JobContext {
        db: conn.clone(),
        rules: Arc::new(Settings::default().schedules),
        redis: redis_conn.clone(),
        redis_prefix: redis.prefix.clone(),
        blocklist: BlocklistService::new(
            conn.clone(),
            redis_conn.clone(),
            redis.prefix.clone(),
            &[],
        ),
        geo: None,
        notifier: iptrack_worker::notify::Notifier::off(),
        feeds: iptrack_worker::feeds::FeedFetcher::new(&Default::default()).unwrap(),
        detect: Arc::new(Settings::default().detect),
        bans: iptrack_worker::bans::Bans::new(
            conn.clone(),
            BlocklistService::new(conn.clone(), redis_conn, redis.prefix.clone(), &[]),
            &Settings::default().detect,
            &[],
        ),
    };
    // A separate connection watches the sessions of this database.
    let observer = db.connect().await;
    for job in 0..60_u64 {
        // An open, idle connection in the pool first, as between jobs in a busy worker.
        db.count(&conn, "log_batch").await;
        // Drop each job a little later than the one before: 0 to 1.2 ms in, which spans
        // BEGIN, the inserts and COMMIT on loopback.
        let drop_at = Instant::now() + Duration::from_micros(job * 20);
        let mut running = Box::pin(request_logs::handle(
            batch(&format!("dropped{job}"), 5, "198.51.100.7"),
            Data::new(ctx.clone()),
        ));
        while futures::poll!(running.as_mut()).is_pending() && Instant::now() < drop_at {
            tokio::task::yield_now().await;
        }
        drop(running);

        let written = format!("request_log WHERE path LIKE '/dropped{job}/%'");
        eventually(
            Duration::from_secs(10),
            "the dropped job's rows",
            || async { (db.count(&observer, &written).await == 5).then_some(()) },
        )
        .await;
        // The job has committed, so a session of this database still inside a
        // transaction is one left open.
        let left_open = db
            .count(
                &observer,
                "pg_stat_activity WHERE datname = current_database() \
                 AND state LIKE 'idle in transaction%'",
            )
            .await;
        assert_eq!(
            left_open,
            0,
            "job {job}, dropped after {} µs, left its pooled connection in a transaction",
            job * 20
        );
    }
}

both_backends!(
    a_busy_address_is_counted_exactly_while_batches_and_folds_run_at_once,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let conn = db.connect().await;
        // 32 batches of one address and section in one hour, 8 at a time, while folds run
        // (on PostgreSQL; on SQLite a fold has nothing to do).
        let batches: Vec<RequestLogBatch> = (0..32)
            .map(|i| {
                let mut batch = in_one_hour(batch("busy", 5, "198.51.100.77"), i);
                batch.events[0].path = format!("/busy/{i:02}");
                batch
            })
            .collect();
        let ingesting = futures::stream::iter(&batches)
            .map(|batch| {
                let conn = conn.clone();
                async move { ingest(&conn, batch).await.unwrap() }
            })
            .buffer_unordered(8)
            .collect::<Vec<Ingested>>();
        let folding = async {
            let mut folded = Folded::default();
            for _ in 0..20 {
                folded += count_fold::try_fold(&conn).await.unwrap();
                tokio::task::yield_now().await;
            }
            folded
        };
        let (written, _) = tokio::join!(ingesting, folding);
        assert!(written.iter().all(|w| *w == Ingested::Rows(5)));

        let counts = stored_counts(&conn).await;
        let first = batches.iter().flat_map(|b| &b.events).map(|e| e.timestamp);
        let last = first.clone();
        assert_eq!(counts.len(), 1, "{counts:?}");
        let count = &counts[0];
        assert_eq!((count.section.as_str(), count.requests), ("/busy", 160));
        assert_eq!(count.min_path, "/busy/00");
        assert_eq!(
            (count.first_seen, count.last_seen),
            (first.min().unwrap(), last.max().unwrap())
        );
        if backend == Backend::Postgres {
            assert_eq!(db.count(&conn, "request_count_pending").await, 0);
        }
        // Delivered again: each batch finds its id and adds nothing, pending or folded.
        for batch in &batches {
            assert_eq!(
                ingest(&conn, batch).await.unwrap(),
                Ingested::AlreadyWritten
            );
        }
        assert_eq!(stored_counts(&conn).await, counts);
    }
);

/// On PostgreSQL a batch's counts wait in `request_count_pending`, one row per batch,
/// until a fold adds them to `request_count` and deletes the row, in one statement.
#[tokio::test]
async fn on_postgres_a_batch_leaves_its_counts_pending_until_a_fold() {
    let db = TestDb::new(Backend::Postgres).await;
    let conn = db.connect().await;
    let (a, b) = (
        in_one_hour(batch("wait", 4, "198.51.100.78"), 0),
        in_one_hour(batch("wait", 6, "198.51.100.79"), 1),
    );
    for batch in [&a, &b] {
        ingest(&conn, batch).await.unwrap();
    }
    assert_eq!(db.count(&conn, "request_count").await, 0);
    assert_eq!(db.count(&conn, "request_count_pending").await, 2);

    let folded = count_fold::fold_all(&conn).await.unwrap();
    assert_eq!(
        folded,
        Folded {
            batches: 2,
            keys: 2
        }
    );
    assert_eq!(db.count(&conn, "request_count_pending").await, 0);
    assert_eq!(
        db.count(&conn, "request_count WHERE section = '/wait'")
            .await,
        2
    );
    // Nothing pending: a fold writes nothing.
    assert_eq!(
        count_fold::try_fold(&conn).await.unwrap(),
        Folded::default()
    );
    // A batch of the same address adds to its folded row.
    ingest(&conn, &in_one_hour(batch("wait", 3, "198.51.100.78"), 2))
        .await
        .unwrap();
    count_fold::fold_all(&conn).await.unwrap();
    assert_eq!(
        db.count(
            &conn,
            "request_count WHERE ip_address = '198.51.100.78' AND requests = 7"
        )
        .await,
        1
    );
}

/// sqlx 0.9.0 connects with Nagle's algorithm on, which held every batch's `COPY` up to
/// 40 ms (core/src/db/nodelay.rs). Every connection iptrack's pools open gets
/// `TCP_NODELAY`. Each connection is told apart by its local port (other tests of this
/// process have connections of their own to the same server, and their pools' hooks
/// change every socket to it, so a bare sqlx connection here would not stay as sqlx left
/// it: the module's unit tests show the change, and what it leaves alone, on plain
/// sockets).
#[tokio::test]
async fn postgres_connections_have_nagle_off() {
    use iptrack_core::db::nodelay::connections_to;
    use sea_orm::sqlx::{pool::PoolConnection, postgres::Postgres};

    let db = TestDb::new(Backend::Postgres).await;
    let options: sea_orm::sqlx::postgres::PgConnectOptions = db.url.parse().unwrap();
    let servers: Vec<std::net::SocketAddr> =
        tokio::net::lookup_host((options.get_host(), options.get_port()))
            .await
            .unwrap()
            .collect();
    // Whether the connection's socket, found by the port the server sees, has Nagle off.
    async fn nagle_off(
        conn: &mut PoolConnection<Postgres>,
        servers: &[std::net::SocketAddr],
    ) -> bool {
        let port: i32 = sea_orm::sqlx::query_scalar("SELECT inet_client_port()")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        let sockets = connections_to(servers);
        let found = sockets
            .iter()
            .find(|(local, _)| i32::from(local.port()) == port);
        found
            .unwrap_or_else(|| panic!("no socket from port {port} in {sockets:?}"))
            .1
    }

    let conn = iptrack_core::db::connect_with_pool(&db.url, 3)
        .await
        .unwrap();
    let pool = conn.get_postgres_connection_pool();
    // Three held at once: three connections, each through the pool's after_connect.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(pool.acquire().await.unwrap());
    }
    for conn in &mut held {
        assert!(
            nagle_off(conn, &servers).await,
            "a connection of iptrack's pool has Nagle on"
        );
    }
}
