//! The dashboard in headless Chromium (Debian's `chromium` and `chromium-driver`, which
//! `.ci/run` installs), driven over WebDriver: sign in, see the chart drawn with data,
//! block an address with its button, and keep a screenshot (`target/dashboard.png`).
//!
//! WebDriver is plain JSON over HTTP, so the few commands needed are sent with reqwest
//! rather than through a client library.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use base64::Engine;
use chrono::{Duration as TimeDelta, DurationRound, Utc};
use iptrack_entity::blocked_ip;
use iptrack_tests::{TestDb, TestRedis, eventually, free_port};
use serde_json::{Value, json};

use crate::{Stack, admin_queries::seed_logs};

const TOKEN: &str = "dashboard-test-token-0123456789";
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// `chromedriver` on a free port, stopped when dropped.
pub(crate) struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    pub(crate) async fn start() -> Self {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "cannot start chromedriver: install chromium and chromium-driver (.ci/run does)",
            );
        let url = format!("http://127.0.0.1:{port}");
        iptrack_tests::process::wait_until_listening(&url, Duration::from_secs(20)).await;
        Self { child, url }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session.
pub(crate) struct Browser {
    http: reqwest::Client,
    session: String,
}

impl Browser {
    pub(crate) async fn open(driver: &ChromeDriver) -> Self {
        let http = reqwest::Client::new();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1100"]
            }
        }}});
        let response: Value = http
            .post(format!("{}/session", driver.url))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = response["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {response}"))
            .to_owned();
        Self {
            http,
            session: format!("{}/session/{session}", driver.url),
        }
    }

    pub(crate) async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response: Value = request.send().await.unwrap().json().await.unwrap();
        assert!(
            response["value"]["error"].is_null(),
            "WebDriver {path}: {}",
            response["value"]
        );
        response["value"].clone()
    }

    /// Whether a `click` found its element and clicked it; false when the page replaced
    /// the element in between (a refresh redraws its tables every 5 s).
    async fn try_click(&self, css: &str) -> bool {
        let element = self.find(css).await;
        let response: Value = self
            .http
            .post(format!("{}/element/{element}/click", self.session))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match response["value"]["error"].as_str() {
            None => true,
            Some("stale element reference") => false,
            Some(_) => panic!("WebDriver click {css}: {}", response["value"]),
        }
    }

    pub(crate) async fn go(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    pub(crate) async fn find(&self, css: &str) -> String {
        let element = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        element[ELEMENT_KEY].as_str().unwrap().to_owned()
    }

    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    pub(crate) async fn click(&self, css: &str) {
        for _ in 0..5 {
            if self.try_click(css).await {
                return;
            }
        }
        panic!("{css} was replaced five times before it could be clicked");
    }

    pub(crate) async fn script(&self, script: &str) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    pub(crate) async fn screenshot(&self) -> Vec<u8> {
        let encoded = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap())
            .unwrap()
    }

    /// A real mouse click at (`x`, `y`) CSS pixels from the element's top-left corner
    /// (a canvas has no elements to click, only places).
    pub(crate) async fn click_at(&self, css: &str, x: f64, y: f64) {
        let element = self.find(css).await;
        let rect = self
            .command(
                reqwest::Method::GET,
                &format!("/element/{element}/rect"),
                None,
            )
            .await;
        // WebDriver offsets are from the element's centre.
        let dx = (x - rect["width"].as_f64().unwrap() / 2.0).round() as i64;
        let dy = (y - rect["height"].as_f64().unwrap() / 2.0).round() as i64;
        self.command(
            reqwest::Method::POST,
            "/actions",
            Some(json!({"actions": [{"type": "pointer", "id": "mouse",
            "parameters": {"pointerType": "mouse"},
            "actions": [
                {"type": "pointerMove", "duration": 0, "x": dx, "y": dy,
                 "origin": {"element-6066-11e4-a52e-4f735466cecf": element}},
                {"type": "pointerDown", "button": 0},
                {"type": "pointerUp", "button": 0}
            ]}]})),
        )
        .await;
    }

    /// Waits until `script` returns something other than null or false; returns it.
    pub(crate) async fn wait_for(&self, limit: Duration, what: &str, script: &str) -> Value {
        eventually(limit, what, || async {
            let value = self.script(script).await;
            (!value.is_null() && value != json!(false)).then_some(value)
        })
        .await
    }

    pub(crate) async fn close(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

/// `target/` of this build (the test binary lives in `target/debug/deps/`).
pub(crate) fn target_dir() -> PathBuf {
    let binary = iptrack_tests::process::binary("iptrack-web");
    binary.parent().and_then(|p| p.parent()).unwrap().to_owned()
}

/// Sum of the chart's data (every status class), or null before the chart exists.
const CHART_TOTAL: &str = "const c = window.iptrackCharts && window.iptrackCharts.get('requests-chart'); \
    return c ? c.data.datasets.flatMap(d => d.data).reduce((a, b) => a + b, 0) : null;";

/// Pixels of the canvas painted in the bar colour (#3b6fd8): proof the bars were drawn,
/// not only that data arrived.
const BAR_PIXELS: &str = "const c = document.getElementById('requests-chart'); \
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; \
    for (let i = 0; i < d.length; i += 4) { \
      if (Math.abs(d[i] - 59) < 8 && Math.abs(d[i + 1] - 111) < 8 && Math.abs(d[i + 2] - 216) < 8 && d[i + 3] > 200) n++; \
    } return n;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_sees_the_traffic_and_blocks_an_address() {
    let (db, redis) = (
        TestDb::new(iptrack_tests::Backend::Sqlite).await,
        TestRedis::new(),
    );
    let conn = db.connect().await;
    let base = (Utc::now() - TimeDelta::minutes(2))
        .duration_trunc(TimeDelta::minutes(1))
        .unwrap();
    let mut rows = Vec::new();
    rows.extend((0..40).map(|i| ("203.0.113.50", i % 20, "/login", 401, "DE")));
    rows.extend((0..25).map(|i| ("198.51.100.8", i % 30, "/", 200, "FR")));
    rows.extend((0..10).map(|i| ("2001:db8::5", i, "/items/1", 200, "")));
    seed_logs(&conn, base, &rows).await;

    let mut stack = Stack::new(&db, &redis).with("IPTRACK_ADMIN_TOKEN", TOKEN);
    let _web = stack.serve_web().await;
    let driver = ChromeDriver::start().await;
    let browser = Browser::open(&driver).await;

    browser.go(&stack.url("/dashboard")).await;
    // A wrong token is refused and the board stays hidden.
    browser.type_into("#token", "not-the-token").await;
    browser.click("#sign-in-button").await;
    eventually(Duration::from_secs(10), "the refusal", || async {
        let text = browser
            .script("return document.getElementById('sign-in-error').textContent;")
            .await;
        text.as_str()
            .is_some_and(|t| t.contains("refused"))
            .then_some(())
    })
    .await;
    assert_eq!(
        browser
            .script("return document.getElementById('board').hidden;")
            .await,
        true
    );

    browser.type_into("#token", TOKEN).await;
    browser.click("#sign-in-button").await;
    eventually(
        Duration::from_secs(20),
        "the chart with every seeded request",
        || async { (browser.script(CHART_TOTAL).await == json!(rows.len())).then_some(()) },
    )
    .await;
    let painted = browser.script(BAR_PIXELS).await.as_i64().unwrap();
    assert!(painted > 200, "only {painted} pixels of bars drawn");
    assert_eq!(
        browser
            .script("return document.querySelector('#top-countries tbody tr td').textContent;")
            .await,
        "Germany (DE)"
    );

    browser
        .click("#top-addresses button.block[data-address='203.0.113.50']")
        .await;
    eventually(
        Duration::from_secs(15),
        "the address in the blocked list",
        || async {
            let text = browser
                .script("return document.querySelector('#blocked tbody').textContent;")
                .await;
            text.as_str()
                .is_some_and(|t| t.contains("203.0.113.50"))
                .then_some(())
        },
    )
    .await;
    let blocks = blocked_ip::active(&conn, Utc::now()).await.unwrap();
    assert_eq!(
        blocks
            .iter()
            .map(|b| b.ip_address.as_str())
            .collect::<Vec<_>>(),
        ["203.0.113.50"]
    );
    // The block is enforced: that address now gets 403.
    eventually(Duration::from_secs(15), "the block to apply", || async {
        let status = reqwest::Client::new()
            .get(stack.url("/"))
            .header("x-forwarded-for", "203.0.113.50")
            .send()
            .await
            .unwrap()
            .status();
        (status == 403).then_some(())
    })
    .await;

    // Everything the page loaded came from this server: no CDN.
    let origins = browser
        .script(
            "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin) \
             .concat([location.origin]);",
        )
        .await;
    let origin = stack.url("");
    for loaded in origins.as_array().unwrap() {
        assert_eq!(loaded.as_str().unwrap(), origin);
    }
    // No DB-IP database here, so no attribution line.
    assert_eq!(
        browser
            .script("return document.getElementById('geo-attribution').hidden;")
            .await,
        true
    );

    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"));
    let path = target_dir().join("dashboard.png");
    std::fs::write(&path, png).unwrap();
    eprintln!("dashboard screenshot: {}", path.display());
    browser.close().await;
}

/// Whether the element matched by `css` takes up room on the page (false for anything
/// inside a `display: none` subtree, which is what `hidden` must give).
fn shown(css: &str) -> String {
    format!(
        "const e = document.querySelector({css:?}); \
         return e !== null && e.getClientRects().length > 0;"
    )
}

/// How many of the board's controls and charts take up room on the page.
const BOARD_ELEMENTS_SHOWN: &str = "return [...document.querySelectorAll(\
    '#board canvas, #board table, #board button, #board select, #board input')] \
    .filter(e => e.getClientRects().length > 0).length;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_shows_only_when_signed_in_and_blocks_expire_and_cover_their_network() {
    let (db, redis) = (
        TestDb::new(iptrack_tests::Backend::Sqlite).await,
        TestRedis::new(),
    );
    let conn = db.connect().await;
    let base = (Utc::now() - TimeDelta::minutes(2))
        .duration_trunc(TimeDelta::minutes(1))
        .unwrap();
    let mut rows = Vec::new();
    rows.extend((0..30).map(|i| ("203.0.113.50", i % 20, "/login", 401, "DE")));
    rows.extend((0..20).map(|i| ("198.51.100.8", i % 20, "/", 200, "FR")));
    rows.extend((0..10).map(|i| ("2001:db8::5", i, "/items/1", 200, "")));
    seed_logs(&conn, base, &rows).await;
    let mut stack = Stack::new(&db, &redis).with("IPTRACK_ADMIN_TOKEN", TOKEN);
    // Networks that cover two of the three addresses, one of them permanent, blocked the
    // way an operator does (the CLI, through the blocklist service).
    for args in [
        &["block", "203.0.113.0/24", "--reason", "a bad network"][..],
        &[
            "block",
            "2001:db8::/32",
            "--reason",
            "documentation prefix",
            "--for",
            "2d",
        ][..],
    ] {
        let (code, _, stderr) = crate::iptrack(&stack, args);
        assert_eq!(code, 0, "iptrack {args:?}: {stderr}");
    }
    let _web = stack.serve_web().await;
    let driver = ChromeDriver::start().await;
    let browser = Browser::open(&driver).await;

    browser.go(&stack.url("/dashboard")).await;
    // Before signing in: the sign-in box and nothing of the board under it.
    assert_eq!(browser.script(&shown("#sign-in")).await, true);
    assert_eq!(browser.script(BOARD_ELEMENTS_SHOWN).await, 0);

    browser.type_into("#token", TOKEN).await;
    browser.click("#sign-in-button").await;
    eventually(Duration::from_secs(20), "the seeded traffic", || async {
        (browser.script(CHART_TOTAL).await == json!(rows.len())).then_some(())
    })
    .await;
    assert!(browser.script(BOARD_ELEMENTS_SHOWN).await.as_i64().unwrap() > 5);

    // An address inside a blocked network gets no Block button: it is blocked already.
    let row_text = |address: &str| {
        format!(
            "return [...document.querySelectorAll('#top-addresses tbody tr')] \
             .filter(r => r.cells[0].textContent === {address:?}) \
             .map(r => r.cells[2].textContent + '|' + r.querySelectorAll('button').length)[0] ?? null;"
        )
    };
    assert_eq!(
        browser.script(&row_text("203.0.113.50")).await,
        "blocked by 203.0.113.0/24|0"
    );
    assert_eq!(
        browser.script(&row_text("2001:db8::5")).await,
        "blocked by 2001:db8::/32|0"
    );
    assert_eq!(browser.script(&row_text("198.51.100.8")).await, "Block|1");
    // A block without an expiry reads as the CLI says it: "never".
    let expires = |address: &str| {
        format!(
            "return [...document.querySelectorAll('#blocked tbody tr')] \
             .filter(r => r.cells[0].textContent === {address:?}) \
             .map(r => r.cells[4].textContent)[0] ?? null;"
        )
    };
    assert_eq!(browser.script(&expires("203.0.113.0/24")).await, "never");

    // A block from the dashboard lasts as long as chosen.
    browser
        .script(
            "const s = document.getElementById('block-duration'); s.value = '3600'; \
             s.dispatchEvent(new Event('change')); return s.value;",
        )
        .await;
    browser
        .click("#top-addresses button.block[data-address='198.51.100.8']")
        .await;
    let block = eventually(Duration::from_secs(15), "the new block", || async {
        blocked_ip::active(&conn, Utc::now())
            .await
            .unwrap()
            .into_iter()
            .find(|b| b.ip_address == "198.51.100.8")
    })
    .await;
    let expires_at = block.expires_at.expect("a block with an expiry");
    let left = expires_at - Utc::now();
    assert!(
        left > TimeDelta::minutes(58) && left <= TimeDelta::hours(1),
        "expires in {left}"
    );
    eventually(
        Duration::from_secs(15),
        "the row to read blocked",
        || async { (browser.script(&row_text("198.51.100.8")).await == "blocked|0").then_some(()) },
    )
    .await;
    assert_ne!(browser.script(&expires("198.51.100.8")).await, "never");

    let png = browser.screenshot().await;
    let path = target_dir().join("dashboard-blocks.png");
    std::fs::write(&path, png).unwrap();
    eprintln!("dashboard screenshot: {}", path.display());

    // Signing out leaves nothing of the board on screen, and none of its data in the page.
    browser.click("#sign-out").await;
    assert_eq!(browser.script(&shown("#sign-in")).await, true);
    assert_eq!(browser.script(BOARD_ELEMENTS_SHOWN).await, 0);
    assert_eq!(browser.script(&shown("#sign-out")).await, false);
    assert_eq!(
        browser
            .script("return document.querySelector('#board').textContent.includes('203.0.113');")
            .await,
        false
    );
    let png = browser.screenshot().await;
    std::fs::write(target_dir().join("dashboard-signed-out.png"), png).unwrap();
    browser.close().await;
}

/// The dashboard's files with their types, a tag that makes a reload a 304, and the
/// headers that keep them from being framed or sniffed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_files_are_served_with_their_types_and_revalidate_with_a_304() {
    let (db, redis) = (
        TestDb::new(iptrack_tests::Backend::Sqlite).await,
        TestRedis::new(),
    );
    let mut stack = Stack::new(&db, &redis).with("IPTRACK_ADMIN_TOKEN", TOKEN);
    let _web = stack.serve_web().await;
    let client = reqwest::Client::new();
    for (path, content_type) in [
        ("/dashboard", "text/html; charset=utf-8"),
        (
            "/dashboard/views/address.js",
            "text/javascript; charset=utf-8",
        ),
        (
            "/dashboard/vendor/chartjs-chart-geo.umd.min.js",
            "text/javascript; charset=utf-8",
        ),
        ("/dashboard/vendor/countries-110m.json", "application/json"),
        (
            "/dashboard/vendor/iso-country-codes.json",
            "application/json",
        ),
        (
            "/dashboard/vendor/world-atlas-LICENSE",
            "text/plain; charset=utf-8",
        ),
    ] {
        let response = client.get(stack.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(
            header("content-type").as_deref(),
            Some(content_type),
            "{path}"
        );
        assert_eq!(
            header("cache-control").as_deref(),
            Some("no-cache"),
            "{path}"
        );
        assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
        assert!(
            header("content-security-policy")
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        let etag = header("etag").expect("an ETag");
        assert!(!response.bytes().await.unwrap().is_empty());
        let again = client
            .get(stack.url(path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert!(again.bytes().await.unwrap().is_empty());
        let stale = client
            .get(stack.url(path))
            .header("if-none-match", "\"0000000000000000\"")
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), 200, "{path}");
    }
}
