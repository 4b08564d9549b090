//! The request-logs job writes a batch once, whole, in one transaction.

use chrono::SubsecRound;
use iptrack_entity::request_log;
use iptrack_tests::{TestDb, both_backends};
use iptrack_worker::jobs::request_logs::{Ingested, ingest};
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
