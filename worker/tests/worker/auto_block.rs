//! Automatic blocking of flagged addresses.

use std::time::Duration;

use chrono::Utc;
use iptrack_core::{blocklist::change_channel, queue};
use iptrack_entity::blocked_ip;
use iptrack_tests::{TestDb, TestRedis, both_backends};
use iptrack_worker::jobs::flag_suspicious_ips::block_flagged;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

both_backends!(
    flagged_addresses_are_blocked_for_a_while_and_announced,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let conn = db.connect().await;
        let mut redis_conn = queue::connect(&redis.url).unwrap();
        // A manual, permanent block must survive an automatic one.
        blocked_ip::block(&conn, "203.0.113.1", "manual", None, false)
            .await
            .unwrap();

        let client = redis::Client::open(redis.url.as_str()).unwrap();
        let mut notices = client.get_async_pubsub().await.unwrap();
        notices
            .subscribe(change_channel(&redis.prefix))
            .await
            .unwrap();

        let flagged = ["203.0.113.1".to_owned(), "2001:db8::2".to_owned()];
        block_flagged(
            &conn,
            &mut redis_conn,
            &redis.prefix,
            &flagged,
            Duration::from_secs(600),
        )
        .await
        .unwrap();

        let manual = blocked_ip::Entity::find()
            .filter(blocked_ip::Column::IpAddress.eq("203.0.113.1"))
            .one(&conn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (manual.reason.as_str(), manual.expires_at),
            ("manual", None)
        );
        let auto = blocked_ip::Entity::find()
            .filter(blocked_ip::Column::IpAddress.eq("2001:db8::2"))
            .one(&conn)
            .await
            .unwrap()
            .unwrap();
        let remaining = auto.expires_at.unwrap() - Utc::now();
        assert!(
            remaining > chrono::Duration::seconds(590)
                && remaining <= chrono::Duration::seconds(600)
        );

        // Running it again (the job re-run for the same window) changes nothing but expiry.
        block_flagged(
            &conn,
            &mut redis_conn,
            &redis.prefix,
            &flagged,
            Duration::from_secs(600),
        )
        .await
        .unwrap();
        assert_eq!(db.count(&conn, "blocked_ip").await, 2);

        use futures::StreamExt;
        let mut stream = notices.into_on_message();
        let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap()
            .unwrap();
        let payload: String = first.get_payload().unwrap();
        assert!(payload.contains("\"op\":\"block\""), "{payload}");
    }
);
