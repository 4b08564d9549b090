//! A worker killed with SIGKILL while it holds jobs loses no row and duplicates none.

use std::time::Duration;

use iptrack_tests::{Backend, TestDb, TestRedis, both_backends, eventually, process::Service};
use redis::AsyncCommands;
use sea_orm::{ConnectionTrait, TransactionTrait};

use crate::{Stack, assert_stored_exactly_once, send_requests};

both_backends!(
    a_worker_killed_mid_stream_loses_and_duplicates_nothing,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        // Small batches: many jobs in flight at once.
        let stack = Stack::new(&db, &redis)
            .with("IPTRACK_BATCH_MAX_EVENTS", "10")
            .with("IPTRACK_BATCH_MAX_WAIT_MS", "5");
        let mut doomed = Service::start("iptrack-worker", &[], &stack.env);
        let survivor = Service::start("iptrack-worker", &[], &stack.env);
        let _web = Service::start("iptrack-web", &[], &stack.env);
        stack.wait_until_listening().await;
        // Both workers registered before the database is locked: a worker still connecting
        // would wait on the lock instead of taking jobs.
        let mut redis_conn = redis.connection().await;
        let workers_key = format!("{}:request-logs:workers", redis.prefix);
        for pid in [doomed.pid(), survivor.pid()] {
            eventually(Duration::from_secs(30), "both workers to register", || {
                let mut redis_conn = redis_conn.clone();
                let workers_key = workers_key.clone();
                async move {
                    let names: Vec<String> = redis_conn.zrange(workers_key, 0, -1).await.unwrap();
                    names
                        .iter()
                        .any(|n| n.contains(&format!("-{pid}-")))
                        .then_some(())
                }
            })
            .await;
        }

        // Stall every write so the workers are certain to hold jobs when one is killed.
        let conn = db.connect().await;
        let lock = conn.begin().await.unwrap();
        match backend {
            Backend::Postgres => lock.execute_unprepared("LOCK TABLE log_batch IN EXCLUSIVE MODE"),
            Backend::Sqlite => lock.execute_unprepared(
                "INSERT INTO log_batch (batch_id, events, ingested_at) VALUES ('lock', 0, '2000-01-01')",
            ),
        }
        .await
        .unwrap();

        send_requests(&stack, 0..300).await;
        let doomed_pid = doomed.pid().to_string();
        eventually(
            Duration::from_secs(20),
            "the doomed worker to hold jobs",
            || {
                let mut redis_conn = redis_conn.clone();
                let pattern = format!("{}:request-logs:inflight:*-{doomed_pid}-*", redis.prefix);
                async move {
                    let keys: Vec<String> = redis_conn.keys(pattern).await.unwrap();
                    for key in keys {
                        if redis_conn.scard::<_, u64>(&key).await.unwrap() > 0 {
                            return Some(());
                        }
                    }
                    None
                }
            },
        )
        .await;
        doomed.kill();
        lock.rollback().await.unwrap();

        send_requests(&stack, 300..500).await;
        assert_stored_exactly_once(&db, 500, Duration::from_secs(60)).await;
        let _: () = redis_conn.ping().await.unwrap();
    }
);
