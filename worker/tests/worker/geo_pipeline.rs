//! Geolocation around the request-log job, with real Redis (own prefix) and both
//! databases: cache lifetimes, one lookup per address cluster-wide, private addresses kept
//! away from providers, and a provider that is down.

use std::{net::IpAddr, time::Duration};

use iptrack_core::{
    job_metrics::ClusterCounters,
    jobs::{GEOLOCATE_QUEUE, RequestLogBatch},
    queue,
    settings::{GeoHttpFormat, Settings},
};
use iptrack_entity::request_log;
use iptrack_tests::{Backend, TestDb, TestRedis, both_backends};
use iptrack_worker::{
    geo::{Geo, GeoProvider, Location, Lookup},
    jobs::request_logs::ingest_located,
};
use redis::AsyncCommands;
use sea_orm::{DatabaseConnection, EntityTrait};
use serde_json::json;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};

use crate::{
    batch,
    geo_fixtures::{dbip_layout, http, http_settings, mmdb},
};

const LONDON: &str = "81.2.69.142";

fn london() -> Location {
    Location {
        country_code: "GB".into(),
        country: "United Kingdom".into(),
        city: "London".into(),
    }
}

fn settings_for(db: &TestDb, redis: &TestRedis) -> Settings {
    let mut settings = iptrack_tests::settings(db, redis);
    settings.geo = http_settings("http://unused", GeoHttpFormat::IpApi);
    settings
}

fn geo(settings: &Settings, provider: GeoProvider) -> Geo {
    Geo::new(
        provider,
        &settings.geo,
        &settings.redis.prefix,
        &settings.worker,
        queue::connect(settings.redis.url.expose()).unwrap(),
    )
}

/// What the request-log job does with one batch: cache read, insert, claims.
async fn write_batch(geo: &Geo, db: &DatabaseConnection, batch: &RequestLogBatch) -> usize {
    let prepared = geo.before_insert(&batch.events).await;
    ingest_located(db, batch, &prepared.located).await.unwrap();
    geo.after_commit(db, &prepared).await.enqueued.len()
}

async fn rows(db: &DatabaseConnection) -> Vec<request_log::Model> {
    request_log::Entity::find().all(db).await.unwrap()
}

fn located(rows: &[request_log::Model]) -> usize {
    rows.iter()
        .filter(|r| r.country_code == "GB" && r.country == "United Kingdom" && r.city == "London")
        .count()
}

async fn geolocate_jobs_queued(settings: &Settings, redis: &TestRedis) -> usize {
    let config = queue::queue_config(&settings.redis.prefix, &settings.worker, GEOLOCATE_QUEUE);
    let mut conn = redis.connection().await;
    conn.hlen(config.job_data_hash()).await.unwrap()
}

#[tokio::test]
async fn found_and_not_found_answers_are_cached_for_their_own_lifetimes() {
    let (db, redis) = (TestDb::new(Backend::Sqlite).await, TestRedis::new());
    let settings = settings_for(&db, &redis);
    let geo = geo(&settings, mmdb(dbip_layout()));
    let (found_ip, missing_ip): (IpAddr, IpAddr) =
        (LONDON.parse().unwrap(), "8.8.8.8".parse().unwrap());
    geo.cache
        .put_many(&[
            (found_ip, Lookup::Found(london())),
            (missing_ip, Lookup::NotFound),
        ])
        .await
        .unwrap();
    let mut conn = redis.connection().await;
    let found_ttl: i64 = conn.ttl(geo.cache.location_key(found_ip)).await.unwrap();
    let missing_ttl: i64 = conn.ttl(geo.cache.location_key(missing_ip)).await.unwrap();
    assert!((86_390..=86_400).contains(&found_ttl), "{found_ttl}");
    assert!((3_590..=3_600).contains(&missing_ttl), "{missing_ttl}");
    assert!(geo.cache.location_key(found_ip).starts_with(&redis.prefix));
    assert_eq!(
        geo.cache
            .get_many(&[found_ip, missing_ip, "1.1.1.1".parse().unwrap()])
            .await
            .unwrap(),
        [Some(Lookup::Found(london())), Some(Lookup::NotFound), None]
    );
}

#[tokio::test]
async fn an_entry_expires_after_its_ttl_and_the_address_is_looked_up_again() {
    let (db, redis) = (TestDb::new(Backend::Sqlite).await, TestRedis::new());
    let mut settings = settings_for(&db, &redis);
    settings.geo.cache_ttl = Duration::from_secs(2);
    settings.geo.not_found_ttl = Duration::from_secs(2);
    settings.geo.claim_ttl = Duration::from_secs(1);
    let conn = db.connect().await;
    let geo = geo(&settings, mmdb(dbip_layout()));
    assert_eq!(write_batch(&geo, &conn, &batch("a", 2, LONDON)).await, 1);
    geo.locate(&conn, &[LONDON.parse().unwrap()]).await.unwrap();
    // Cached now: the next batch gets its location at insert, with no lookup.
    assert_eq!(write_batch(&geo, &conn, &batch("b", 2, LONDON)).await, 0);
    assert_eq!(located(&rows(&conn).await), 4);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(write_batch(&geo, &conn, &batch("c", 2, LONDON)).await, 1);
    // Cluster-wide counters (what `/metrics` shows): a and c missed, b was answered.
    let mut redis_conn = redis.connection().await;
    let counters = ClusterCounters::read(&mut redis_conn, &settings.redis.prefix)
        .await
        .unwrap();
    assert_eq!((counters.geo_cache_hits, counters.geo_cache_misses), (1, 2));
}

both_backends!(
    workers_seeing_one_address_at_once_make_one_lookup,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "status": "success", "countryCode": "GB", "country": "United Kingdom", "city": "London"
            })))
            .expect(1)
            .mount(&server)
            .await;
        let settings = settings_for(&db, &redis);
        let conn = db.connect().await;
        // Eight workers (each its own Geo, connection and claims), one batch each, at once.
        let workers: Vec<Geo> = (0..8)
            .map(|_| geo(&settings, http(&server.uri(), GeoHttpFormat::IpApi)))
            .collect();
        let claimed: Vec<usize> =
            futures::future::join_all(workers.iter().enumerate().map(|(i, worker)| {
                let conn = conn.clone();
                async move { write_batch(worker, &conn, &batch(&format!("w{i}"), 5, LONDON)).await }
            }))
            .await;
        assert_eq!(claimed.iter().sum::<usize>(), 1, "{claimed:?}");
        assert_eq!(geolocate_jobs_queued(&settings, &redis).await, 1);

        // The winner's job runs; every row of every batch gets the location.
        let winner = claimed.iter().position(|&n| n == 1).unwrap();
        workers[winner]
            .locate(&conn, &[LONDON.parse().unwrap()])
            .await
            .unwrap();
        assert_eq!(located(&rows(&conn).await), 40);
        // A re-delivered job reuses the cached answer: still one provider call.
        workers[winner]
            .locate(&conn, &[LONDON.parse().unwrap()])
            .await
            .unwrap();
        server.verify().await;
    }
);

both_backends!(
    a_batch_committed_while_another_worker_looks_its_address_up_gets_the_location,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let settings = settings_for(&db, &redis);
        let conn = db.connect().await;
        let (first, second) = (
            geo(&settings, mmdb(dbip_layout())),
            geo(&settings, mmdb(dbip_layout())),
        );
        assert_eq!(
            write_batch(&first, &conn, &batch("first", 3, LONDON)).await,
            1
        );

        // The second worker reads the cache (nothing yet) and commits its rows ...
        let late = batch("late", 3, LONDON);
        let prepared = second.before_insert(&late.events).await;
        assert!(prepared.located.is_empty());
        ingest_located(&conn, &late, &prepared.located)
            .await
            .unwrap();
        // ... the first worker's lookup completes in between ...
        first
            .locate(&conn, &[LONDON.parse().unwrap()])
            .await
            .unwrap();
        // ... and the second finds the claim taken, reads the cache again, fills its rows.
        let done = second.after_commit(&conn, &prepared).await;
        assert_eq!((done.enqueued.len(), done.filled), (0, 1));
        assert_eq!(located(&rows(&conn).await), 6);
    }
);

#[tokio::test]
async fn private_and_special_addresses_never_reach_the_provider() {
    let (db, redis) = (TestDb::new(Backend::Sqlite).await, TestRedis::new());
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let settings = settings_for(&db, &redis);
    let conn = db.connect().await;
    let geo = geo(&settings, http(&server.uri(), GeoHttpFormat::IpApi));
    let special = [
        "127.0.0.1",
        "10.0.0.7",
        "172.20.1.1",
        "192.168.0.9",
        "169.254.10.1",
        "0.0.0.0",
        "::1",
        "::",
        "fe80::1",
        "fd00::5",
        "::ffff:192.168.1.1",
    ];
    for (i, ip) in special.iter().enumerate() {
        assert_eq!(
            write_batch(&geo, &conn, &batch(&format!("p{i}"), 2, ip)).await,
            0
        );
    }
    let addresses: Vec<IpAddr> = special.iter().map(|ip| ip.parse().unwrap()).collect();
    assert_eq!(geo.locate(&conn, &addresses).await.unwrap(), 0);
    assert_eq!(geolocate_jobs_queued(&settings, &redis).await, 0);
    assert_eq!(rows(&conn).await.len(), 22);
    server.verify().await;
}

both_backends!(
    rows_are_stored_while_the_provider_is_down_and_located_when_it_returns,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&server)
            .await;
        let settings = settings_for(&db, &redis);
        let conn = db.connect().await;
        let geo = geo(&settings, http(&server.uri(), GeoHttpFormat::IpApi));

        assert_eq!(write_batch(&geo, &conn, &batch("down", 5, LONDON)).await, 1);
        let stored = rows(&conn).await;
        assert_eq!((stored.len(), located(&stored)), (5, 0));
        assert!(
            stored
                .iter()
                .all(|r| r.country_code.is_empty() && r.city.is_empty())
        );
        // The job fails (apalis retries it); nothing is cached, the rows stay as they are.
        assert!(geo.locate(&conn, &[LONDON.parse().unwrap()]).await.is_err());
        assert_eq!(
            geo.cache
                .get_many(&[LONDON.parse().unwrap()])
                .await
                .unwrap(),
            [None]
        );

        server.reset().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "status": "success", "countryCode": "GB", "country": "United Kingdom", "city": "London"
            })))
            .mount(&server)
            .await;
        geo.locate(&conn, &[LONDON.parse().unwrap()]).await.unwrap();
        assert_eq!(located(&rows(&conn).await), 5);
    }
);
