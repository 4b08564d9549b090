//! The request-logs job writes a batch once, whole, in one transaction.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use apalis::prelude::Data;
use chrono::SubsecRound;
use iptrack_core::{Settings, blocklist::service::BlocklistService};
use iptrack_entity::request_log;
use iptrack_tests::{Backend, TestDb, TestRedis, both_backends, eventually};
use iptrack_worker::{
    context::JobContext,
    jobs::request_logs::{self, Ingested, ingest},
};
use redis::aio::ConnectionManager;
use sea_orm::{EntityTrait, QueryOrder};

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
