//! Streaming rule counting in Redis (`iptrack_worker::detect::count`): shared, exact at the
//! threshold, and blind to a batch delivered twice.

use iptrack_core::settings::parse_detect_rules;
use iptrack_tests::TestRedis;
use iptrack_worker::detect::{count, keys};
use redis::AsyncCommands;

use crate::batch;

async fn connection(redis: &TestRedis) -> redis::aio::ConnectionManager {
    iptrack_core::queue::connect(&redis.url).unwrap()
}

#[tokio::test]
async fn a_batch_delivered_again_counts_nothing_and_the_threshold_is_exact() {
    let redis = TestRedis::new();
    let conn = connection(&redis).await;
    let rules = parse_detect_rules("probe=GET /probe/* count=5 window=1m ban=1m").unwrap();
    let ip = "203.0.113.5";

    // Four requests, the first batch delivered twice (a killed worker's job re-queued).
    let first = batch("probe", 3, ip);
    assert!(
        count(&conn, &redis.prefix, &rules, &first)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        count(&conn, &redis.prefix, &rules, &first)
            .await
            .unwrap()
            .is_empty()
    );
    let second = batch("probe", 1, ip);
    assert!(
        count(&conn, &redis.prefix, &rules, &second)
            .await
            .unwrap()
            .is_empty()
    );
    let (counter, mark) = keys(&redis.prefix, "probe", ip.parse().unwrap());
    let mut raw = redis.connection().await;
    assert_eq!(raw.zcard::<_, u64>(&counter).await.unwrap(), 4);
    // Requests the rule does not count, and another address, change nothing.
    assert!(
        count(&conn, &redis.prefix, &rules, &batch("other", 3, ip))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        count(
            &conn,
            &redis.prefix,
            &rules,
            &batch("probe", 4, "203.0.113.6")
        )
        .await
        .unwrap()
        .is_empty()
    );
    assert_eq!(raw.zcard::<_, u64>(&counter).await.unwrap(), 4);

    // The fifth crosses, once.
    let crossing = batch("probe", 1, ip);
    let crossed = count(&conn, &redis.prefix, &rules, &crossing)
        .await
        .unwrap();
    assert_eq!(crossed.len(), 1);
    assert_eq!(
        (crossed[0].count, crossed[0].ip.to_string().as_str()),
        (5, ip)
    );
    assert!(
        !raw.exists::<_, bool>(&counter).await.unwrap(),
        "emptied at the crossing"
    );
    assert!(raw.exists::<_, bool>(&mark).await.unwrap());

    // The crossing batch delivered again: the same crossing, to act on again idempotently;
    // the batches before it delivered again: nothing.
    let again = count(&conn, &redis.prefix, &rules, &crossing)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].last_seen, crossed[0].last_seen);
    assert!(
        count(&conn, &redis.prefix, &rules, &first)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        count(&conn, &redis.prefix, &rules, &second)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!raw.exists::<_, bool>(&counter).await.unwrap());

    // New requests after the crossing (a later millisecond than its last) count afresh:
    // four more do not fire.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(
        count(&conn, &redis.prefix, &rules, &batch("probe", 4, ip))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(raw.zcard::<_, u64>(&counter).await.unwrap(), 4);
    assert!(raw.ttl::<_, i64>(&counter).await.unwrap() <= 60);
}

#[tokio::test]
async fn one_batch_over_the_threshold_fires_once_and_a_group_at_rest_stays_below_count() {
    let redis = TestRedis::new();
    let conn = connection(&redis).await;
    let rules = parse_detect_rules("probe=GET /probe/* count=3 window=1m").unwrap();
    let crossed = count(
        &conn,
        &redis.prefix,
        &rules,
        &batch("probe", 50, "2001:db8::7"),
    )
    .await
    .unwrap();
    assert_eq!(crossed.len(), 1);
    assert_eq!(crossed[0].count, 50, "all 50 were in the window");
    let (counter, _) = keys(&redis.prefix, "probe", "2001:db8::7".parse().unwrap());
    let mut raw = redis.connection().await;
    assert!(!raw.exists::<_, bool>(&counter).await.unwrap());
    let below = parse_detect_rules("probe=GET /probe/* count=100 window=1m").unwrap();
    for _ in 0..3 {
        assert!(
            count(
                &conn,
                &redis.prefix,
                &below,
                &batch("probe", 33, "2001:db8::8")
            )
            .await
            .unwrap()
            .is_empty()
        );
    }
    let (counter, _) = keys(&redis.prefix, "probe", "2001:db8::8".parse().unwrap());
    assert_eq!(raw.zcard::<_, u64>(&counter).await.unwrap(), 99);
    let crossed = count(
        &conn,
        &redis.prefix,
        &below,
        &batch("probe", 1, "2001:db8::8"),
    )
    .await
    .unwrap();
    assert_eq!(crossed.len(), 1);
    assert!(
        !raw.exists::<_, bool>(&counter).await.unwrap(),
        "emptied again: never more than count"
    );
}
