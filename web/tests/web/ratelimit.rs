//! Rate limits in process, against real Redis: the shared server with a key prefix of the
//! test's own, or a private server the test stops and starts.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use actix_web::{App, HttpRequest, HttpResponse, test, web};
use iptrack_core::{
    client_ip::{ClientIpResolver, ProxyHeader},
    queue,
    settings::{RateLimitSettings, Settings, parse_rules},
};
use iptrack_tests::{PrivateRedis, TestRedis};
use iptrack_web::{Identity, IpTracking, LogPipeline, RateLimiter, metrics::RateLimitMetrics};

const USER_HEADER: &str = "x-test-user";

/// A limiter with `rules` (the `IPTRACK_RATE_LIMITS` syntax) on `redis_url`, keys under
/// `prefix`.
fn limiter(rules: &str, redis_url: &str, prefix: &str) -> RateLimiter {
    let settings = RateLimitSettings {
        rules: parse_rules(rules).unwrap(),
        ..Default::default()
    };
    RateLimiter::new(
        &settings,
        prefix,
        queue::connect(redis_url).unwrap(),
        Arc::new(RateLimitMetrics::default()),
    )
}

/// The test's user is whoever the `x-test-user` header names.
fn header_identity() -> Identity {
    Arc::new(|req: &HttpRequest| {
        req.headers()
            .get(USER_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    })
}

/// The log pipeline goes to the shared Redis (under the test's prefix), so a private
/// Redis sees only the limiter's commands.
fn pipeline(redis: &TestRedis) -> LogPipeline {
    let mut settings = Settings::default();
    settings.redis.url = redis.url.as_str().into();
    settings.redis.prefix = redis.prefix.clone();
    LogPipeline::to_redis(
        &settings.log_pipeline,
        queue::connect(settings.redis.url.expose()).unwrap(),
        &settings.redis.prefix,
    )
}

macro_rules! limited_app {
    ($pipeline:expr, $limiter:expr) => {
        limited_app!($pipeline, $limiter, Vec::new())
    };
    ($pipeline:expr, $limiter:expr, $safelist:expr) => {
        test::init_service(
            App::new()
                .wrap(
                    IpTracking::new(
                        ClientIpResolver::new(Vec::new(), ProxyHeader::XForwardedFor),
                        $pipeline.sink(),
                    )
                    .with_blocklist(iptrack_web::SharedBlocklist::default(), $safelist)
                    .with_identity(header_identity())
                    .with_rate_limiter($limiter.clone()),
                )
                .route(
                    "/login",
                    web::post().to(|| async { HttpResponse::Unauthorized().finish() }),
                )
                .route(
                    "/login",
                    web::get().to(|| async { HttpResponse::Ok().body("form") }),
                ),
        )
        .await
    };
}

fn post_login(ip: &str) -> test::TestRequest {
    let ip: IpAddr = ip.parse().unwrap();
    test::TestRequest::post()
        .uri("/login")
        .peer_addr(SocketAddr::new(ip, 40000))
}

fn header<B>(response: &actix_web::dev::ServiceResponse<B>, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Sends `$request` `$n` times; the statuses.
macro_rules! statuses {
    ($app:expr, $n:expr, $request:expr) => {{
        let mut out = Vec::new();
        for _ in 0..$n {
            let response = test::call_service($app, ($request)().to_request()).await;
            out.push(response.status().as_u16());
        }
        out
    }};
}

#[actix_web::test]
async fn the_sixth_anonymous_login_post_from_one_address_is_refused_and_another_address_is_not() {
    let redis = TestRedis::new();
    let pipeline = pipeline(&redis);
    let limiter = limiter(
        iptrack_core::settings::DEFAULT_RATE_LIMITS,
        &redis.url,
        &redis.prefix,
    );
    let app = limited_app!(pipeline, limiter);

    for remaining in (0..5).rev() {
        let response = test::call_service(&app, post_login("192.0.2.1").to_request()).await;
        assert_eq!(response.status().as_u16(), 401, "the app answers");
        assert_eq!(header(&response, "ratelimit-policy"), "\"login\";q=5;w=60");
        let ratelimit = header(&response, "ratelimit");
        assert!(
            ratelimit.starts_with(&format!("\"login\";r={remaining};t=")),
            "{ratelimit}"
        );
    }
    let refused = test::call_service(&app, post_login("192.0.2.1").to_request()).await;
    assert_eq!(refused.status().as_u16(), 429);
    assert_eq!(header(&refused, "ratelimit-policy"), "\"login\";q=5;w=60");
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(
        header(&refused, "ratelimit"),
        format!("\"login\";r=0;t={retry_after}")
    );

    assert_eq!(statuses!(&app, 5, || post_login("192.0.2.2")), [401; 5]);
    // Only POST is ruled: the form itself is never limited and carries no header.
    let form = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/login")
            .peer_addr("192.0.2.1:1".parse().unwrap())
            .to_request(),
    )
    .await;
    assert_eq!(form.status().as_u16(), 200);
    assert!(form.headers().get("ratelimit").is_none());
    assert_eq!(limiter.metrics().limited.get(), 1);
    assert_eq!(
        limiter.metrics().fallback_decisions.get(),
        0,
        "decided by Redis"
    );

    // Every key the limiter wrote is under the prefix and expires.
    let mut conn = redis.connection().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:ratelimit:*", redis.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((1..=61_000).contains(&ttl), "{key} has TTL {ttl}");
    }
}

#[actix_web::test]
async fn an_authenticated_user_gets_ten_wherever_they_come_from() {
    let redis = TestRedis::new();
    let pipeline = pipeline(&redis);
    let limiter = limiter(
        iptrack_core::settings::DEFAULT_RATE_LIMITS,
        &redis.url,
        &redis.prefix,
    );
    let app = limited_app!(pipeline, limiter);

    let mut seen = Vec::new();
    for i in 0..11 {
        let request =
            post_login(&format!("198.51.100.{}", i + 1)).insert_header((USER_HEADER, "alice"));
        let response = test::call_service(&app, request.to_request()).await;
        if i == 0 {
            assert_eq!(header(&response, "ratelimit-policy"), "\"login\";q=10;w=60");
        }
        seen.push(response.status().as_u16());
    }
    let mut expected = vec![401; 10];
    expected.push(429);
    assert_eq!(seen, expected);

    // Another user, and the anonymous budget of an address alice used, are untouched.
    let bob = || post_login("198.51.100.1").insert_header((USER_HEADER, "bob"));
    assert_eq!(statuses!(&app, 10, bob), [401; 10]);
    assert_eq!(statuses!(&app, 5, || post_login("198.51.100.1")), [401; 5]);
}

#[actix_web::test]
async fn ipv6_clients_of_one_64_share_a_budget() {
    let redis = TestRedis::new();
    let pipeline = pipeline(&redis);
    let limiter = limiter(
        "login=POST /login anon=2 user=2 window=60s",
        &redis.url,
        &redis.prefix,
    );
    let app = limited_app!(pipeline, limiter);
    assert_eq!(statuses!(&app, 1, || post_login("2001:db8:1:1::1")), [401]);
    assert_eq!(
        statuses!(&app, 1, || post_login("2001:db8:1:1::ffff")),
        [401]
    );
    assert_eq!(
        statuses!(&app, 1, || post_login("2001:db8:1:1:abcd::9")),
        [429]
    );
    assert_eq!(
        statuses!(&app, 1, || post_login("2001:db8:1:2::1")),
        [401],
        "next /64"
    );
}

#[actix_web::test]
async fn safelisted_addresses_are_never_limited() {
    let redis = TestRedis::new();
    let pipeline = pipeline(&redis);
    let limiter = limiter(
        "login=POST /login anon=1 user=1 window=60s",
        &redis.url,
        &redis.prefix,
    );
    let app = limited_app!(pipeline, limiter, vec!["10.0.0.0/8".parse().unwrap()]);
    assert_eq!(statuses!(&app, 5, || post_login("10.1.2.3")), [401; 5]);
    assert_eq!(statuses!(&app, 2, || post_login("192.0.2.9")), [401, 429]);
}

#[actix_web::test]
async fn two_limiters_on_one_redis_share_one_budget() {
    let redis = TestRedis::new();
    let (pipeline_a, pipeline_b) = (pipeline(&redis), pipeline(&redis));
    let rules = iptrack_core::settings::DEFAULT_RATE_LIMITS;
    let a = limiter(rules, &redis.url, &redis.prefix);
    let b = limiter(rules, &redis.url, &redis.prefix);
    let app_a = limited_app!(pipeline_a, a);
    let app_b = limited_app!(pipeline_b, b);
    assert_eq!(statuses!(&app_a, 3, || post_login("192.0.2.7")), [401; 3]);
    assert_eq!(
        statuses!(&app_b, 3, || post_login("192.0.2.7")),
        [401, 401, 429]
    );
    assert_eq!(statuses!(&app_a, 1, || post_login("192.0.2.7")), [429]);
}

/// A fixed window would let a client send the limit just before a window boundary and the
/// limit again just after it. Here: 1 request, then 4 more 60% of a window later, then a
/// request every 50 ms for two windows; no window-long span may hold more than 5 accepted
/// requests (the span checked is 250 ms shorter, for the client's view of the times),
/// and the budget must come back as the early requests age out.
#[actix_web::test]
async fn no_window_long_span_holds_more_than_the_limit() {
    let redis = TestRedis::new();
    let pipeline = pipeline(&redis);
    let window = Duration::from_secs(2);
    let limiter = limiter(
        "edge=POST /login anon=5 user=5 window=2s",
        &redis.url,
        &redis.prefix,
    );
    let app = limited_app!(pipeline, limiter);
    let start = Instant::now();
    let mut accepted: Vec<Duration> = Vec::new();
    // Sends one request; records when it was accepted.
    macro_rules! send {
        () => {
            let response = test::call_service(&app, post_login("192.0.2.50").to_request()).await;
            if response.status().as_u16() != 429 {
                accepted.push(start.elapsed());
            }
        };
    }
    send!();
    tokio::time::sleep(window.mul_f32(0.6)).await;
    for _ in 0..4 {
        send!();
    }
    assert_eq!(accepted.len(), 5);
    while start.elapsed() < window * 3 {
        send!();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (i, &at) in accepted.iter().enumerate() {
        let in_span = accepted[i..]
            .iter()
            .take_while(|&&later| later < at + window - Duration::from_millis(250))
            .count();
        assert!(
            in_span <= 5,
            "{in_span} accepted within one window from {at:?}: {accepted:?}"
        );
    }
    // The first request frees one slot a window later, the four others 1.6 windows later
    // (less the client's view of the latency), and the cycle goes on.
    let slack = Duration::from_millis(100);
    assert!(accepted[5] + slack >= window, "{accepted:?}");
    assert!(accepted[6] + slack >= accepted[1] + window, "{accepted:?}");
    assert!(accepted.len() >= 10, "{accepted:?}");
}

#[actix_web::test]
async fn with_redis_stopped_the_same_limits_hold_in_memory_and_redis_is_used_again_when_it_returns()
{
    let shared = TestRedis::new();
    let pipeline = pipeline(&shared);
    let mut redis = PrivateRedis::start();
    let limiter = limiter(
        iptrack_core::settings::DEFAULT_RATE_LIMITS,
        &redis.url(),
        "private",
    );
    let app = limited_app!(pipeline, limiter);
    let metrics = limiter.metrics().clone();
    assert_eq!(statuses!(&app, 2, || post_login("192.0.2.60")), [401; 2]);

    redis.stop();
    // Answers, not errors: the in-memory log starts empty and holds the same limit.
    assert_eq!(
        statuses!(&app, 6, || post_login("192.0.2.61")),
        [401, 401, 401, 401, 401, 429]
    );
    assert!(metrics.fallback_decisions.get() >= 6);
    assert!(metrics.redis_failures.get() >= 1);
    assert!(
        metrics
            .render()
            .contains("iptrack_rate_limit_fallback_active 1")
    );

    redis.restart();
    let key = "private:ratelimit:login:ip:192.0.2.62";
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    iptrack_tests::eventually(Duration::from_secs(15), "the limiter back on Redis", || {
        let app = &app;
        let conn = conn.clone();
        async move {
            let mut conn = conn;
            test::call_service(app, post_login("192.0.2.62").to_request()).await;
            let counted: u32 = redis::cmd("ZCARD")
                .arg(key)
                .query_async(&mut conn)
                .await
                .ok()?;
            (counted > 0).then_some(())
        }
    })
    .await;
    assert!(
        metrics
            .render()
            .contains("iptrack_rate_limit_fallback_active 0")
    );
    let _: () = redis::cmd("PING").query_async(&mut conn).await.unwrap();
}

/// One round trip per ruled request, none for other requests: counted by the private
/// server itself.
#[actix_web::test]
async fn a_ruled_request_costs_one_redis_command_and_an_unruled_one_none() {
    let shared = TestRedis::new();
    let pipeline = pipeline(&shared);
    let redis = PrivateRedis::start();
    let limiter = limiter(
        "login=POST /login anon=1000 user=1000 window=60s",
        &redis.url(),
        "private",
    );
    let app = limited_app!(pipeline, limiter);
    // The first call loads the script (NOSCRIPT, then EVAL).
    statuses!(&app, 1, || post_login("192.0.2.70"));
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .unwrap();

    statuses!(&app, 20, || post_login("192.0.2.71"));
    statuses!(&app, 20, || {
        test::TestRequest::get()
            .uri("/login")
            .peer_addr("192.0.2.71:1".parse().unwrap())
    });

    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    let calls = |command: &str| -> u64 {
        stats
            .lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    };
    assert_eq!(calls("evalsha"), 20, "{stats}");
    assert_eq!(calls("eval") + calls("script|load"), 0, "{stats}");
    // commandstats also counts the commands the script runs inside Redis; what the
    // clients sent is everything else (this test's own CONFIG RESETSTAT included).
    let inside_script = [
        "time",
        "zremrangebyscore",
        "zcard",
        "zadd",
        "pexpire",
        "zrange",
    ];
    let sent: u64 = stats
        .lines()
        .filter_map(|line| line.strip_prefix("cmdstat_")?.split_once(":calls="))
        .filter(|(command, _)| !inside_script.contains(command))
        .map(|(_, rest)| rest.split(',').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(sent, 20 + 1, "{stats}");
}
