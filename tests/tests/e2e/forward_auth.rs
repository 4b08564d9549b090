//! iptrack as the forward-auth service of real reverse proxies (issue 19): Debian's nginx
//! and Caddy run the configurations shipped in `deploy/` (only addresses filled in) in front
//! of a small upstream, with the real `iptrack-web` and `iptrack-worker` behind them.
//!
//! Every address in 127.0.0.0/8 is this machine: the proxies and iptrack talk over
//! 127.0.0.1 (the one trusted proxy address), and each test client connects from an address
//! of its own (127.0.0.2, .3, ...), which the proxy reports as the client.
//!
//! Traefik and Envoy are not packaged in Debian: their configurations are parsed and their
//! header and path settings compared with what iptrack reads.

use std::{net::SocketAddr, time::Duration};

use iptrack_tests::{
    Backend, TestDb, TestRedis, both_backends, eventually,
    process::Service,
    proxies::{Proxy, repo_file},
};
use iptrack_web::forward_auth::{CLIENT_IP_HEADER, HEADER_PAIRS, PATH};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::any};
use yaml_rust2::{Yaml, YamlLoader};

use crate::{Stack, iptrack};

#[derive(Debug, Clone, Copy)]
enum Kind {
    Nginx,
    Caddy,
}

/// A client whose connections come from `address`.
fn client_from(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// Headers a client may forge to pass for someone else, or for another request.
const FORGED: &[(&str, &str)] = &[
    ("x-forwarded-for", "198.51.100.7"),
    ("forwarded", "for=198.51.100.8"),
    ("x-real-ip", "198.51.100.9"),
    ("x-forwarded-method", "GET"),
    ("x-forwarded-uri", "/elsewhere"),
    ("x-original-method", "GET"),
    ("x-original-uri", "/elsewhere"),
    ("x-iptrack-client-ip", "198.51.100.10"),
];

fn forged(mut request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    for (name, value) in FORGED {
        request = request.header(*name, *value);
    }
    request
}

/// The client addresses the upstream was told, in order.
async fn clients_seen_upstream(upstream: &MockServer) -> Vec<String> {
    upstream
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|request| {
            request
                .headers
                .get(CLIENT_IP_HEADER.as_str())
                .and_then(|value| value.to_str().ok())
                .unwrap_or("(none)")
                .to_owned()
        })
        .collect()
}

async fn rows(db: &TestDb, conn: &sea_orm::DatabaseConnection, filter: &str) -> i64 {
    db.count(conn, &format!("request_log WHERE {filter}")).await
}

async fn through_the_proxy(kind: Kind, backend: Backend) {
    let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
    // Stack trusts 127.0.0.1: the proxy's address, and the only one.
    let stack = Stack::new(&db, &redis).with("IPTRACK_BATCH_MAX_WAIT_MS", "20");
    let _web = Service::start("iptrack-web", &[], &stack.env);
    let _worker = Service::start("iptrack-worker", &[], &stack.env);
    stack.wait_until_listening().await;
    let upstream = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_string("upstream\n"))
        .mount(&upstream)
        .await;
    let iptrack_address = SocketAddr::from(([127, 0, 0, 1], stack.port));
    let proxy = match kind {
        Kind::Nginx => Proxy::nginx(iptrack_address, *upstream.address()).await,
        Kind::Caddy => Proxy::caddy(iptrack_address, *upstream.address()).await,
    };
    let name = proxy.name;

    // Allowed: the request reaches the upstream, with the client iptrack resolved; a
    // client's own X-Iptrack-Client-Ip or forwarding headers change nothing.
    let alice = client_from("127.0.0.2");
    let response = alice
        .get(proxy.url("/hello?x=1"))
        .header("user-agent", "forward-auth-test/1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{name}: {}", proxy.log());
    assert_eq!(response.text().await.unwrap(), "upstream\n");
    let response = forged(alice.get(proxy.url("/hello"))).send().await.unwrap();
    assert_eq!(response.status(), 200, "{name}");
    assert_eq!(
        clients_seen_upstream(&upstream).await,
        ["127.0.0.2", "127.0.0.2"],
        "{name}"
    );

    // The sixth anonymous POST /login in a minute (the default rule: 5), however the path
    // is spelt, gets 429 with Retry-After from the proxy; forged headers change nothing.
    let bob = client_from("127.0.0.3");
    for path in [
        "/login",
        "/%6cogin",
        "/login?next=/admin",
        "/logi%6E",
        "/login",
    ] {
        let status = bob.post(proxy.url(path)).send().await.unwrap().status();
        assert_eq!(status, 200, "{name}: POST {path}");
    }
    for attempt in [
        bob.post(proxy.url("/login")),
        forged(bob.post(proxy.url("/login"))),
    ] {
        let response = attempt.send().await.unwrap();
        assert_eq!(response.status(), 429, "{name}: {}", proxy.log());
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry_after), "{name}: {retry_after}");
        assert_eq!(
            response.headers()["ratelimit-policy"],
            "\"login\";q=5;w=60",
            "{name}"
        );
    }
    let status = bob.get(proxy.url("/login")).send().await.unwrap().status();
    assert_eq!(status, 200, "{name}: the rule is for POST only");

    // Blocked: 403 through the proxy, forged headers or not, and never upstream.
    let (code, _, stderr) = iptrack(&stack, &["block", "127.0.0.4", "--reason", "test"]);
    assert_eq!(code, 0, "{stderr}");
    let carol = client_from("127.0.0.4");
    eventually(
        Duration::from_secs(10),
        "the block to reach the web",
        || async {
            let status = carol.get(proxy.url("/")).send().await.unwrap().status();
            (status == 403).then_some(())
        },
    )
    .await;
    // What reached the upstream before the block did; nothing of carol's may follow.
    let carol_upstream = |seen: Vec<String>| seen.iter().filter(|ip| *ip == "127.0.0.4").count();
    let before_block = carol_upstream(clients_seen_upstream(&upstream).await);
    let status = forged(carol.get(proxy.url("/"))).send().await.unwrap();
    assert_eq!(status.status(), 403, "{name}");

    // A peer that is no trusted proxy asks iptrack directly, describing someone else's
    // request: refused, logged as its own request, and the block stays.
    let mallory = client_from("127.0.0.5");
    let response = mallory
        .post(stack.url("/forward-auth"))
        .header("x-original-method", "GET")
        .header("x-original-uri", "/innocent")
        .header("x-forwarded-for", "127.0.0.4")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(response.text().await.unwrap().contains("trusted proxy"));
    let status = carol.get(proxy.url("/")).send().await.unwrap().status();
    assert_eq!(status, 403, "{name}: still blocked");
    assert_eq!(
        carol_upstream(clients_seen_upstream(&upstream).await),
        before_block,
        "{name}: a blocked client reached the upstream"
    );

    // A trusted proxy that does not describe the request: 400 saying what is missing.
    let response = reqwest::Client::new()
        .get(stack.url("/forward-auth"))
        .header("x-forwarded-for", "198.51.100.20")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body = response.text().await.unwrap();
    assert!(body.contains("X-Forwarded-Uri"), "{body}");

    // Every decision is logged as the original request: client, method, canonical path,
    // the decision's status; the untrusted call and the 400 as requests to /forward-auth.
    let conn = db.connect().await;
    eventually(Duration::from_secs(15), "the decisions' rows", || async {
        (rows(&db, &conn, "ip_address = '127.0.0.5'").await == 1
            && rows(&db, &conn, "status = 400").await == 1)
            .then_some(())
    })
    .await;
    let expected: &[(&str, i64)] = &[
        (
            "ip_address = '127.0.0.2' AND method = 'GET' AND path = '/hello' AND status = 200 \
             AND user_agent = 'forward-auth-test/1'",
            1,
        ),
        ("ip_address = '127.0.0.2'", 2),
        (
            "ip_address = '127.0.0.3' AND method = 'POST' AND path = '/login' AND status = 200",
            5,
        ),
        (
            "ip_address = '127.0.0.3' AND method = 'POST' AND path = '/login' AND status = 429",
            2,
        ),
        (
            "ip_address = '127.0.0.3' AND method = 'GET' AND path = '/login' AND status = 200",
            1,
        ),
        (
            "ip_address = '127.0.0.5' AND method = 'POST' AND path = '/forward-auth' \
             AND status = 403",
            1,
        ),
        (
            "ip_address = '198.51.100.20' AND method = 'GET' AND path = '/forward-auth' \
             AND status = 400",
            1,
        ),
        ("path = '/innocent' OR path = '/elsewhere'", 0),
        ("path = '/forward-auth'", 2),
    ];
    for (filter, expected) in expected {
        let found = rows(&db, &conn, filter).await;
        assert_eq!(found, *expected, "{name}: rows where {filter}");
    }
    let carol_rows = rows(
        &db,
        &conn,
        "ip_address = '127.0.0.4' AND path = '/' AND status = 403",
    )
    .await;
    assert!(
        carol_rows >= 3,
        "{name}: {carol_rows} rows of the blocked client"
    );
}

both_backends!(
    nginx_asks_iptrack_about_every_request,
    |backend| async move { through_the_proxy(Kind::Nginx, backend).await }
);

both_backends!(
    caddy_asks_iptrack_about_every_request,
    |backend| async move { through_the_proxy(Kind::Caddy, backend).await }
);

/// `iptrack up` serves the same endpoint: asked as nginx asks, it answers and logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iptrack_up_answers_forward_auth() {
    let (db, redis) = (TestDb::empty(Backend::Sqlite).await, TestRedis::new());
    let stack = Stack::new(&db, &redis).with("IPTRACK_BATCH_MAX_WAIT_MS", "20");
    let _up = Service::start("iptrack", &["up"], &stack.env);
    stack.wait_until_listening().await;
    let client = reqwest::Client::new();
    let ask = |method: &'static str, uri: &'static str| {
        client
            .get(stack.url("/forward-auth"))
            .header("x-original-method", method)
            .header("x-original-uri", uri)
            .header("x-forwarded-for", "203.0.113.5")
            .send()
    };
    let response = ask("GET", "/anything?a=b").await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[CLIENT_IP_HEADER.as_str()], "203.0.113.5");
    assert!(response.text().await.unwrap().is_empty());
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(ask("POST", "/%6cogin").await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);
    let conn = db.connect().await;
    eventually(Duration::from_secs(15), "the decisions' rows", || async {
        let rows = db
            .count(
                &conn,
                "request_log WHERE ip_address = '203.0.113.5' AND method = 'POST' \
                 AND path = '/login'",
            )
            .await;
        (rows == 6).then_some(())
    })
    .await;
}

fn yaml(relative: &str) -> Yaml {
    let text = std::fs::read_to_string(repo_file(relative)).unwrap();
    YamlLoader::load_from_str(&text)
        .unwrap_or_else(|error| panic!("{relative}: {error}"))
        .remove(0)
}

fn strings(list: &Yaml) -> Vec<String> {
    list.as_vec()
        .unwrap_or_else(|| panic!("expected a list, got {list:?}"))
        .iter()
        .map(|item| item.as_str().unwrap().to_owned())
        .collect()
}

/// Traefik sends the original request as the first of iptrack's header pairs (its
/// documented `X-Forwarded-Method`/`X-Forwarded-Uri`), the client as `X-Forwarded-For`.
#[test]
fn the_traefik_configurations_ask_what_iptrack_reads() {
    assert_eq!(
        (HEADER_PAIRS[0].method, HEADER_PAIRS[0].uri),
        ("X-Forwarded-Method", "X-Forwarded-Uri")
    );
    let dynamic = yaml("deploy/traefik/dynamic.yml");
    let middleware = &dynamic["http"]["middlewares"]["iptrack"]["forwardAuth"];
    let labels = yaml("deploy/traefik/labels.yml");
    let labels = &labels["services"]["app"]["labels"];
    let label = |key: &str| {
        labels[format!("traefik.http.middlewares.iptrack.forwardauth.{key}").as_str()]
            .as_str()
            .unwrap_or_else(|| panic!("labels.yml has no {key}"))
            .to_owned()
    };
    for (address, request_headers, response_headers, trust) in [
        (
            middleware["address"].as_str().unwrap().to_owned(),
            strings(&middleware["authRequestHeaders"]),
            strings(&middleware["authResponseHeaders"]),
            middleware["trustForwardHeader"].as_bool().unwrap(),
        ),
        (
            label("address"),
            label("authRequestHeaders")
                .split(',')
                .map(str::to_owned)
                .collect(),
            label("authResponseHeaders")
                .split(',')
                .map(str::to_owned)
                .collect(),
            label("trustForwardHeader") == "true",
        ),
    ] {
        assert!(address.ends_with(PATH), "{address}");
        assert!(!trust, "Traefik must write X-Forwarded-* itself");
        // Only the user agent goes along: no client header can add a second pair.
        assert_eq!(request_headers, ["User-Agent"]);
        assert!(
            response_headers
                .iter()
                .any(|h| h.eq_ignore_ascii_case(CLIENT_IP_HEADER.as_str())),
            "{response_headers:?}"
        );
    }
    assert_eq!(
        strings(&dynamic["http"]["routers"]["app"]["middlewares"]),
        ["iptrack"]
    );
    assert_eq!(
        labels["traefik.http.routers.app.middlewares"].as_str(),
        Some("iptrack")
    );
}

#[test]
fn the_envoy_configuration_asks_what_iptrack_reads() {
    let config = yaml("deploy/envoy/envoy.yaml");
    let manager = &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(manager["use_remote_address"].as_bool(), Some(true));
    let filters = manager["http_filters"].as_vec().unwrap();
    let names: Vec<&str> = filters
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["envoy.filters.http.ext_authz", "envoy.filters.http.router"],
        "ext_authz must run before the router"
    );
    let ext_authz = &filters[0]["typed_config"];
    assert_eq!(ext_authz["failure_mode_allow"].as_bool(), Some(false));
    let service = &ext_authz["http_service"];
    // Envoy appends the original path to the prefix; iptrack serves everything below it.
    assert_eq!(service["path_prefix"].as_str(), Some(PATH));
    let added: Vec<(String, String)> = service["authorization_request"]["headers_to_add"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["key"].as_str().unwrap().to_ascii_lowercase(),
                h["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        (HEADER_PAIRS[0].method, "%REQ(:METHOD)%"),
        (HEADER_PAIRS[0].uri, "%REQ(:PATH)%"),
        // The resolver's default header, replaced by the TCP peer Envoy saw.
        (
            iptrack_core::client_ip::ProxyHeader::XForwardedFor.name(),
            "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
        ),
    ];
    for (header, value) in expected {
        assert!(
            added.contains(&(header.to_ascii_lowercase(), value.to_owned())),
            "{header}: {value} missing from {added:?}"
        );
    }
    let allowed: Vec<String> = service["authorization_request"]["allowed_headers"]["patterns"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|p| p["exact"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(allowed, ["user-agent"], "no client header may add a pair");
    let upstream: Vec<&str> =
        service["authorization_response"]["allowed_upstream_headers"]["patterns"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|p| p["exact"].as_str().unwrap())
            .collect();
    assert_eq!(upstream, [CLIENT_IP_HEADER.as_str()]);
    let client: Vec<&str> = service["authorization_response"]["allowed_client_headers"]["patterns"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|p| p["exact"].as_str().unwrap())
        .collect();
    assert!(client.contains(&"retry-after"), "{client:?}");
}
