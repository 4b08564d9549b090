//! The dashboard's views (issue 21) in headless Chromium, with the WebDriver client of
//! `dashboard.rs`: traffic from several addresses and countries, then an operator's
//! investigation: the address page from the top list (its requests, its flag), a one-minute
//! block from there (a real 403, the expiry shown), the requests view filtered by status and
//! by network, a 7-day range (hour buckets), a block arriving live (no reload, no poll), a
//! country clicked on the map, the notice when geolocation is off, a rule's ban and flag
//! arriving live, and client text (paths, user agents) shown as text. Screenshots of each
//! view land in `target/dashboard-<view>.png`.
//!
//! The first test's traffic of the hour goes through the real path: the site, behind the
//! test as a trusted proxy naming each client, then the worker, which locates the addresses
//! with the mmdb provider over `tests/fixtures/geo-city.mmdb` (written by
//! `scripts/make-geo-fixture.py`). Rows seeded in the database (the week's history, and the
//! statuses the reference server never answers) are stored without location, as rows stored
//! before their address's lookup are, and the worker's lookup fills them in too.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use chrono::{DateTime, Duration as TimeDelta, DurationRound, Utc};
use iptrack_entity::{ban_history, blocked_ip, request_log, suspicious_ip};
use iptrack_tests::{Backend, TestDb, TestRedis, both_backends, eventually, process::Service};
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::{
    Stack,
    dashboard::{Browser, ChromeDriver, target_dir},
};

const TOKEN: &str = "dashboard-views-token-0123456789";
const TOP: &str = "81.2.69.142";
const WAIT: Duration = Duration::from_secs(20);
/// The MaxMind-format fixture: which networks it locates where is in its generator,
/// `scripts/make-geo-fixture.py`.
const GEO_FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/geo-city.mmdb");

/// How a line of traffic reaches `request_log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// Sent to the site by the first test (seeded in the last 40 minutes by the second,
    /// which runs without geolocation): the status is what the site answers.
    Site,
    /// Seeded in the last 40 minutes: statuses the reference server never answers (301,
    /// 500), or answers only to a blocked address (403), while the test blocks that
    /// address later and must find it unblocked.
    Recent,
    /// Seeded over the last six days, one every six hours: the only way to have old rows.
    ThisWeek,
}

/// `count` requests from one address.
struct Traffic<'a> {
    ip: &'a str,
    /// country code, country, city ("" when not located): what the fixture says.
    place: (&'a str, &'a str, &'a str),
    via: Via,
    method: &'a str,
    path: &'a str,
    status: i32,
    user_agent: &'a str,
    count: i64,
}

impl Traffic<'_> {
    /// How long before the seeding base the i-th request is stored (or counted, for
    /// traffic sent to the site, which is stored after the base).
    fn minutes_ago(&self, i: i64) -> i64 {
        match self.via {
            Via::Site | Via::Recent => i % 40,
            Via::ThisWeek => 90 + i * 6 * 60,
        }
    }
}

const GB: (&str, &str, &str) = ("GB", "United Kingdom", "London");
const FR: (&str, &str, &str) = ("FR", "France", "Paris");
const DE: (&str, &str, &str) = ("DE", "Germany", "Berlin");
const JP: (&str, &str, &str) = ("JP", "Japan", "Tokyo");
/// A documentation address: not public, so never looked up.
const NOWHERE: (&str, &str, &str) = ("", "", "");
/// The French network (both French addresses).
const FRENCH_NETWORK: &str = "90.84.12.0/24";
const GERMAN: &str = "85.214.132.50";
/// An address the site refuses after 5 requests to `GET /login` (`IPTRACK_RATE_LIMITS`).
const LIMITED: &str = "90.84.12.8";

/// In the order sent: the limited address's accepted requests come before its 429s.
fn traffic() -> Vec<Traffic<'static>> {
    use Via::{Recent, Site, ThisWeek};
    let t = |ip, place, via, method, path, status, user_agent, count| Traffic {
        ip,
        place,
        via,
        method,
        path,
        status,
        user_agent,
        count,
    };
    let bot = "python-requests/2.31";
    let curl = "curl/8.5.0";
    let browser = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0";
    let german_v6 = "2a01:238:20a:202::50";
    vec![
        t(TOP, GB, Site, "POST", "/login", 401, bot, 50),
        t(TOP, GB, Site, "GET", "/", 200, bot, 20),
        t(TOP, GB, Recent, "GET", "/admin", 403, bot, 5),
        t(TOP, GB, ThisWeek, "GET", "/", 200, bot, 24),
        t(LIMITED, FR, Site, "GET", "/login", 200, curl, 5),
        t(LIMITED, FR, Site, "GET", "/login", 429, curl, 30),
        t("90.84.12.77", FR, Site, "GET", "/", 200, browser, 12),
        t(GERMAN, DE, Site, "GET", "/", 200, browser, 25),
        t(german_v6, DE, Site, "GET", "/missing", 404, browser, 3),
        t(GERMAN, DE, ThisWeek, "GET", "/", 200, browser, 20),
        t(
            "2001:db8::5",
            NOWHERE,
            Recent,
            "GET",
            "/items/2",
            500,
            "",
            4,
        ),
        t("2001:db8::5", NOWHERE, Site, "GET", "/", 200, "", 6),
        t("133.242.0.9", JP, Site, "GET", "/", 200, browser, 2),
        t("133.242.0.9", JP, Recent, "GET", "/old", 301, browser, 8),
    ]
}

/// Requests matching `which` less than `minutes` before the seeding base.
fn seeded(which: impl Fn(&Traffic<'_>) -> bool, minutes: i64) -> usize {
    traffic()
        .iter()
        .filter(|t| which(t))
        .map(|t| (0..t.count).filter(|&i| t.minutes_ago(i) < minutes).count())
        .sum()
}

/// Stores the lines `which` selects, located (`located`) or not, and a flag and an
/// expired ban of the top address.
async fn seed(
    conn: &DatabaseConnection,
    base: DateTime<Utc>,
    which: impl Fn(&Traffic<'_>) -> bool,
    located: bool,
) {
    let mut rows = Vec::new();
    for t in traffic().iter().filter(|t| which(t)) {
        let place = if located { t.place } else { NOWHERE };
        for i in 0..t.count {
            rows.push(request_log::ActiveModel {
                ip_address: Set(t.ip.to_owned()),
                timestamp: Set(base - TimeDelta::minutes(t.minutes_ago(i)) + TimeDelta::seconds(7)),
                method: Set(t.method.to_owned()),
                path: Set(t.path.to_owned()),
                status: Set(t.status),
                duration_us: Set(100),
                user_agent: Set(t.user_agent.to_owned()),
                user_id: Set(String::new()),
                query_string: Set(String::new()),
                country_code: Set(place.0.to_owned()),
                country: Set(place.1.to_owned()),
                city: Set(place.2.to_owned()),
                ..Default::default()
            });
        }
    }
    request_log::Entity::insert_many(rows)
        .exec(conn)
        .await
        .unwrap();
    // Written directly, not by the request-log job: count the dashboard's rollup.
    iptrack_tests::db::recount_rollup(conn).await;
    let now = Utc::now();
    suspicious_ip::Entity::insert(suspicious_ip::ActiveModel {
        ip_address: Set(TOP.to_owned()),
        rule: Set("login-burst".to_owned()),
        reason: Set("50 POST /login status 401 in 10m (threshold 20)".to_owned()),
        window_start: Set(now - TimeDelta::minutes(40)),
        window_end: Set(now),
        flagged_at: Set(now - TimeDelta::minutes(30)),
        first_seen: Set(now - TimeDelta::minutes(40)),
        last_seen: Set(now - TimeDelta::minutes(1)),
        request_count: Set(50),
        ..Default::default()
    })
    .exec(conn)
    .await
    .unwrap();
    ban_history::Entity::insert(ban_history::ActiveModel {
        ip_address: Set(TOP.to_owned()),
        rule: Set("login-burst".to_owned()),
        banned_at: Set(now - TimeDelta::minutes(30)),
        duration_secs: Set(600),
        expires_at: Set(now - TimeDelta::minutes(20)),
        event_key: Set(None),
        ..Default::default()
    })
    .exec(conn)
    .await
    .unwrap();
}

async fn sign_in(browser: &Browser, stack: &Stack, hash: &str) {
    browser.go(&stack.url(&format!("/dashboard{hash}"))).await;
    browser.type_into("#token", TOKEN).await;
    browser.click("#sign-in-button").await;
    browser
        .wait_for(
            WAIT,
            "the board",
            "return !document.getElementById('board').hidden;",
        )
        .await;
}

async fn save_screenshot(browser: &Browser, view: &str) {
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"));
    let path = target_dir().join(format!("dashboard-{view}.png"));
    std::fs::write(&path, png).unwrap();
    eprintln!("dashboard screenshot: {}", path.display());
}

/// The text of column `column` of every row of a table's body, as a JSON array.
fn column(table: &str, column: usize) -> String {
    format!(
        "return [...document.querySelectorAll('#{table} tbody tr:not(.empty)')] \
         .map(r => r.cells[{column}].textContent);"
    )
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the table has rows and every row's `column` satisfies `ok`; returns them.
async fn rows_where(
    browser: &Browser,
    table: &str,
    index: usize,
    what: &str,
    ok: impl Fn(&str) -> bool,
) -> Vec<String> {
    rows_exactly(browser, table, index, what, ok, None).await
}

/// As [`rows_where`], and `count` rows (when given): the table the previous filter left
/// may match `ok` too until the new page replaces it.
async fn rows_exactly(
    browser: &Browser,
    table: &str,
    index: usize,
    what: &str,
    ok: impl Fn(&str) -> bool,
    count: Option<usize>,
) -> Vec<String> {
    let script = column(table, index);
    eventually(WAIT, what, || async {
        let cells = strings(&browser.script(&script).await);
        (!cells.is_empty() && cells.iter().all(|c| ok(c)) && count.is_none_or(|n| cells.len() == n))
            .then_some(cells)
    })
    .await
}

/// `GET /` from `ip`; `sent` counts the request, which the site logs like any other.
async fn site_status(stack: &Stack, ip: &str, sent: &AtomicUsize) -> u16 {
    sent.fetch_add(1, Ordering::Relaxed);
    reqwest::Client::new()
        .get(stack.url("/"))
        .header("x-forwarded-for", ip)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Sends the traffic the site answers, each request from its address (the test is a
/// trusted proxy), and checks the site answered each with the status expected of it.
/// Waits until `/api/v1/meta` reports `geolocation` as `state`: each worker says at start
/// whether it geolocates.
async fn wait_for_geolocation(stack: &Stack, state: &str) {
    let client = reqwest::Client::new();
    eventually(
        Duration::from_secs(30),
        &format!("the worker to say geolocation is {state}"),
        || async {
            let meta: Value = client
                .get(stack.url("/api/v1/meta"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (meta["geolocation"] == state).then_some(())
        },
    )
    .await;
}

async fn send_site_traffic(stack: &Stack) {
    let client = reqwest::Client::new();
    for t in traffic().iter().filter(|t| t.via == Via::Site) {
        for i in 0..t.count {
            let mut request = client
                .request(t.method.parse().unwrap(), stack.url(t.path))
                .header("x-forwarded-for", t.ip);
            if !t.user_agent.is_empty() {
                request = request.header("user-agent", t.user_agent);
            }
            if t.method == "POST" {
                request = request.form(&[("username", "alice"), ("password", "guess")]);
            }
            let status = request.send().await.unwrap().status().as_u16();
            assert_eq!(
                i32::from(status),
                t.status,
                "{} {} from {} (request {i})",
                t.method,
                t.path,
                t.ip
            );
        }
    }
}

/// Waits until every line of traffic is stored and every row carries its address's place:
/// the seeded rows filled in by the worker's lookup, the site's stored with it.
async fn wait_until_stored_and_located(conn: &DatabaseConnection) {
    let places: HashMap<&str, (&str, &str, &str)> =
        traffic().iter().map(|t| (t.ip, t.place)).collect();
    let total = seeded(|_| true, i64::MAX);
    eventually(
        Duration::from_secs(30),
        "every row stored and located",
        || async {
            let rows = request_log::Entity::find().all(conn).await.unwrap();
            let located = rows
                .iter()
                .filter(|r| {
                    places.get(r.ip_address.as_str())
                        == Some(&(r.country_code.as_str(), r.country.as_str(), r.city.as_str()))
                })
                .count();
            (rows.len() == total && located == total).then_some(())
        },
    )
    .await;
}

both_backends!(
    an_operator_investigates_an_address_filters_requests_and_sees_bans_live,
    |backend: Backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let conn = db.connect().await;
        let base = (Utc::now() - TimeDelta::minutes(1))
            .duration_trunc(TimeDelta::minutes(1))
            .unwrap();
        // Stored before the site's traffic, so without location until the worker looks
        // the addresses up.
        seed(&conn, base, |t| t.via != Via::Site, false).await;
        let last_hour = seeded(|_| true, 58);
        let last_week = seeded(|_| true, 7 * 24 * 60 - 2);
        let germany_today = seeded(|t| t.place == DE, 24 * 60 - 2);
        let mut stack = Stack::new(&db, &redis)
            .with("IPTRACK_ADMIN_TOKEN", TOKEN)
            .with("IPTRACK_GEO_PROVIDER", "mmdb")
            .with("IPTRACK_GEO_MMDB", GEO_FIXTURE)
            .with("IPTRACK_BATCH_MAX_WAIT_MS", "10")
            .with("IPTRACK_DEMO_USER", "alice:correct horse")
            // The only limit: a sixth look at the login form within 10 minutes gets 429.
            .with(
                "IPTRACK_RATE_LIMITS",
                "form=GET /login anon=5 user=5 window=10m",
            )
            // No rule bans the top address's failed logins: the test blocks it itself.
            .with("IPTRACK_DETECT_RULES", "off");
        let _web = stack.serve_web().await;
        let _worker = Service::start("iptrack-worker", &[], &stack.env);
        wait_for_geolocation(&stack, "on").await;
        send_site_traffic(&stack).await;
        wait_until_stored_and_located(&conn).await;
        // Requests `site_status` sends below: logged too, so in the 7-day total.
        let sent = AtomicUsize::new(0);
        let driver = ChromeDriver::start().await;
        let browser = Browser::open(&driver).await;
        sign_in(&browser, &stack, "").await;

        // Overview: the chart holds every request of the hour, stacked by status class.
        browser
            .wait_for(
                WAIT,
                "the chart with the hour's requests",
                &format!(
                    "const c = window.iptrackCharts.get('requests-chart'); \
                     return c && c.data.datasets.flatMap(d => d.data).reduce((a, b) => a + b, 0) \
                     === {last_hour};"
                ),
            )
            .await;
        let per_class = browser
            .script(
                "return Object.fromEntries(window.iptrackCharts.get('requests-chart').data.datasets \
                 .map(d => [d.label, d.data.reduce((a, b) => a + b, 0)]));",
            )
            .await;
        // From `traffic()`: the site answered all but the 403s, 301s and 500s.
        assert_eq!(
            per_class,
            json!({"2xx": 70, "3xx": 8, "4xx": 53, "403": 5, "429": 30, "5xx": 4, "other": 0})
        );
        assert_eq!(
            browser
                .script("return document.getElementById('requests-chart').dataset.bucket;")
                .await,
            "minute"
        );
        rows_where(&browser, "suspicious", 1, "the flag", |c| {
            c == "login-burst"
        })
        .await;
        save_screenshot(&browser, "overview").await;

        // The address page, from the top list: its requests and its flag.
        let first = strings(&browser.script(&column("top-addresses", 0)).await);
        assert_eq!(first.first().map(String::as_str), Some(TOP));
        browser.click("#top-addresses tbody tr a.address").await;
        browser
            .wait_for(
                WAIT,
                "the address page",
                "return location.hash.startsWith('#/address/81.2.69.142') \
                 && !document.getElementById('view-address').hidden;",
            )
            .await;
        let addresses = rows_where(&browser, "address-requests", 1, "its requests", |c| {
            c == TOP
        })
        .await;
        assert_eq!(addresses.len(), 50, "one page of 50, newest first");
        let newest_first = |times: Value| {
            let times: Vec<i64> = times
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_i64().unwrap())
                .collect();
            times.windows(2).all(|w| w[0] >= w[1])
        };
        let row_times = "return [...document.querySelectorAll('#address-requests tbody tr')] \
                         .map(r => Date.parse(r.cells[0].textContent));";
        assert!(newest_first(browser.script(row_times).await));
        // The next page by its cursor: the other 49 of the address's 99 requests.
        browser.click("#address-older").await;
        rows_exactly(
            &browser,
            "address-requests",
            1,
            "the second page",
            |c| c == TOP,
            Some(99 - 50),
        )
        .await;
        browser.click("#address-newest").await;
        rows_exactly(
            &browser,
            "address-requests",
            1,
            "the first page",
            |c| c == TOP,
            Some(50),
        )
        .await;
        rows_where(&browser, "address-flags", 0, "its flag", |c| {
            c == "login-burst"
        })
        .await;
        rows_where(&browser, "address-bans", 0, "its ban history", |c| {
            c == "login-burst"
        })
        .await;
        let where_text = browser
            .wait_for(
                WAIT,
                "its place",
                "const t = document.getElementById('address-where').textContent; \
                 return t.includes('London') ? t : null;",
            )
            .await;
        assert!(
            where_text
                .as_str()
                .unwrap()
                .contains("London, United Kingdom (GB)"),
            "{where_text}"
        );
        assert_eq!(
            browser
                .script("return document.getElementById('address-block-status').textContent;")
                .await,
            "Not blocked."
        );

        // Block it there for one minute: the site refuses it, the page shows the expiry.
        browser
            .script("document.getElementById('address-block-duration').value = '60';")
            .await;
        browser.click("#address-block").await;
        let expires = rows_where(&browser, "address-blocks", 4, "the block's expiry", |c| {
            c.contains("(in ") && c.ends_with(" s)")
        })
        .await;
        eprintln!("block expires: {expires:?}");
        let block = blocked_ip::active(&conn, Utc::now())
            .await
            .unwrap()
            .into_iter()
            .find(|b| b.ip_address == TOP)
            .expect("the block is stored");
        let left = block.expires_at.expect("an expiry") - Utc::now();
        assert!(
            left > TimeDelta::seconds(50) && left <= TimeDelta::seconds(60),
            "{left}"
        );
        eventually(WAIT, "a 403 from the site", || async {
            (site_status(&stack, TOP, &sent).await == 403).then_some(())
        })
        .await;
        assert_eq!(
            browser
                .script("return document.getElementById('address-block-status').textContent;")
                .await,
            "Blocked: every request from it gets 403."
        );
        save_screenshot(&browser, "address").await;
        // Unblock from there: the site lets it in again.
        browser
            .click("#address-blocks button.unblock[data-address='81.2.69.142']")
            .await;
        browser
            .wait_for(
                WAIT,
                "the page to say not blocked",
                "return document.getElementById('address-block-status').textContent === 'Not blocked.' \
                 && !document.getElementById('address-block-form').hidden;",
            )
            .await;
        eventually(WAIT, "the site to let it in", || async {
            (site_status(&stack, TOP, &sent).await == 200).then_some(())
        })
        .await;

        // The requests view: status 429 through the form, then a network through the URL.
        browser.click("#nav a[data-view='requests']").await;
        browser.type_into("#f-status", "429").await;
        browser.click("#requests-apply").await;
        rows_exactly(
            &browser,
            "requests-table",
            4,
            "the 30 429s and nothing else",
            |c| c == "429",
            Some(30),
        )
        .await;
        assert!(
            browser
                .script("return location.hash;")
                .await
                .as_str()
                .unwrap()
                .contains("status=429")
        );
        browser
            .go(&stack.url(&format!(
                "/dashboard#/requests?network={}",
                FRENCH_NETWORK.replace('/', "%2F")
            )))
            .await;
        rows_exactly(
            &browser,
            "requests-table",
            1,
            "the network's 47 requests and nothing else",
            |c| c.starts_with("90.84.12."),
            Some(seeded(|t| t.place == FR, 60)),
        )
        .await;
        assert_eq!(
            browser
                .script("return document.getElementById('f-address').value;")
                .await,
            FRENCH_NETWORK
        );
        save_screenshot(&browser, "requests").await;

        // A 7-day range: hour buckets, every seeded request.
        browser.go(&stack.url("/dashboard#/")).await;
        browser
            .script(
                "const s = document.querySelector('#overview-range .range-preset'); \
                 s.value = '7d'; s.dispatchEvent(new Event('change'));",
            )
            .await;
        browser
            .wait_for(
                WAIT,
                "hour buckets",
                &format!(
                    "const c = window.iptrackCharts.get('requests-chart'); \
                     return location.hash.includes('range=7d') && c && c.iptrackBucket === 'hour' \
                     && c.data.datasets.flatMap(d => d.data).reduce((a, b) => a + b, 0) \
                     === {};",
                    last_week + sent.load(Ordering::Relaxed)
                ),
            )
            .await;
        let labels = browser
            .script("return window.iptrackCharts.get('requests-chart').data.labels.length;")
            .await;
        let labels = labels.as_i64().unwrap();
        assert!((168..=169).contains(&labels), "{labels} hour buckets");
        assert_eq!(
            browser
                .script("return document.getElementById('overview-chart-title').textContent;")
                .await,
            "Requests per hour, by status"
        );
        save_screenshot(&browser, "overview-7d").await;

        // Live: a block made elsewhere shows within 2 s, not by the 5 s poll.
        browser
            .wait_for(
                WAIT,
                "the live stream",
                "return window.iptrackDebug.liveConnected;",
            )
            .await;
        let polls = browser.script("return window.iptrackDebug.polls;").await;
        browser
            .wait_for(
                WAIT,
                "a poll to pass",
                &format!("return window.iptrackDebug.polls > {polls};"),
            )
            .await;
        let polls = browser.script("return window.iptrackDebug.polls;").await;
        let started = Instant::now();
        let response = reqwest::Client::new()
            .post(stack.url("/api/v1/blocked"))
            .bearer_auth(TOKEN)
            .json(&json!({"address": "192.0.2.99", "reason": "seen live", "duration_secs": 3600}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        browser
            .wait_for(
                Duration::from_secs(2),
                "the new block within 2 s",
                "return document.querySelector('#blocked tbody').textContent.includes('192.0.2.99');",
            )
            .await;
        eprintln!("the live block showed after {:?}", started.elapsed());
        assert_eq!(
            browser.script("return window.iptrackDebug.polls;").await,
            polls,
            "a poll ran: the update may not be the live stream's"
        );
        assert!(
            browser
                .script("return document.getElementById('live-feed').textContent;")
                .await
                .as_str()
                .unwrap()
                .contains("block 192.0.2.99")
        );

        // Countries: a table and a map; clicking Germany opens its requests.
        browser.click("#nav a[data-view='countries']").await;
        rows_where(&browser, "countries-table", 0, "the countries", |c| {
            !c.is_empty()
        })
        .await;
        let countries = strings(&browser.script(&column("countries-table", 0)).await);
        assert_eq!(
            countries,
            [
                "United Kingdom (GB)",
                "France (FR)",
                "Germany (DE)",
                "Japan (JP)"
            ]
        );
        let spot = browser
            .wait_for(
                WAIT,
                "Germany on the map",
                "const m = window.iptrackMap; if (!m || !m.scales.projection) return null; \
                 const i = m.data.datasets[0].data.findIndex(d => m.iptrackCodeOf(d.feature) === 'DE'); \
                 if (i < 0) return null; \
                 return m.scales.projection.geoPath.centroid(m.data.datasets[0].data[i].feature);",
            )
            .await;
        save_screenshot(&browser, "countries").await;
        let (x, y) = (spot[0].as_f64().unwrap(), spot[1].as_f64().unwrap());
        browser.click_at("#countries-map", x, y).await;
        browser
            .wait_for(
                WAIT,
                "the requests view filtered by Germany",
                "return location.hash.startsWith('#/requests?country=DE');",
            )
            .await;
        rows_exactly(
            &browser,
            "requests-table",
            5,
            "the day's German requests and nothing else",
            |c| c.starts_with("DE"),
            Some(germany_today),
        )
        .await;

        browser.close().await;
    }
);

both_backends!(
    with_geolocation_off_views_say_so_rule_bans_arrive_live_and_client_text_stays_text,
    |backend: Backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let conn = db.connect().await;
        let base = Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap();
        // Everything seeded, located as by a worker before geolocation was turned off.
        seed(&conn, base, |_| true, true).await;
        let mut stack = Stack::new(&db, &redis)
            .with("IPTRACK_ADMIN_TOKEN", TOKEN)
            .with("IPTRACK_GEO_PROVIDER", "none")
            // A rule that bans a password guesser, for the live ban below.
            .with("IPTRACK_RATE_LIMITS", "off")
            .with("IPTRACK_BATCH_MAX_WAIT_MS", "10")
            .with(
                "IPTRACK_DETECT_RULES",
                "guess=POST /login status=401 count=3 window=1m ban=1m",
            )
            .with("IPTRACK_DEMO_USER", "alice:correct horse");
        let _web = stack.serve_web().await;
        // The worker says whether it geolocates when it starts.
        let _worker = Service::start("iptrack-worker", &[], &stack.env);
        wait_for_geolocation(&stack, "off").await;
        let client = reqwest::Client::new();
        let driver = ChromeDriver::start().await;
        let browser = Browser::open(&driver).await;
        sign_in(&browser, &stack, "#/countries").await;
        let notice = "const n = document.getElementById('geo-notice'); \
                      return n.hidden ? null : n.textContent;";
        let text = browser.wait_for(WAIT, "the notice", notice).await;
        assert!(
            text.as_str()
                .unwrap()
                .starts_with("Countries unavailable because geolocation is off"),
            "{text}"
        );
        // The seeded rows were located before: the table still counts them.
        rows_where(&browser, "countries-table", 0, "the countries", |c| {
            !c.is_empty()
        })
        .await;
        save_screenshot(&browser, "geolocation-off").await;

        // A rule's ban and flag, on the open overview without a reload: the live feed
        // names them and the blocked list holds the address.
        browser.go(&stack.url("/dashboard#/")).await;
        browser
            .wait_for(
                WAIT,
                "the live stream",
                "return window.iptrackDebug.liveConnected;",
            )
            .await;
        let guesser = "198.51.100.99";
        for _ in 0..3 {
            let status = client
                .post(stack.url("/login"))
                .header("x-forwarded-for", guesser)
                .form(&[("username", "alice"), ("password", "guess")])
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 401);
        }
        browser
            .wait_for(
                WAIT,
                "the ban and the flag in the live feed",
                &format!(
                    "const t = document.getElementById('live-feed').textContent; \
                     return t.includes('ban {guesser} (guess)') && t.includes('flag {guesser} (guess)');"
                ),
            )
            .await;
        browser
            .wait_for(
                Duration::from_secs(2),
                "the banned address in the blocked list",
                &format!(
                    "return document.querySelector('#blocked tbody').textContent.includes('{guesser}');"
                ),
            )
            .await;
        save_screenshot(&browser, "live-ban").await;

        // Nothing the browser asked for (pages, files, API calls, no /favicon.ico either)
        // was logged as the site's traffic: every logged request came with a client
        // address. The guesser's requests stored first show the log has caught up.
        eventually(WAIT, "the guesser's requests stored", || async {
            let stored = request_log::Entity::find()
                .filter(request_log::Column::IpAddress.eq(guesser))
                .all(&conn)
                .await
                .unwrap();
            (stored.len() == 3).then_some(())
        })
        .await;
        let from_the_browser = request_log::Entity::find()
            .filter(request_log::Column::IpAddress.eq("127.0.0.1"))
            .all(&conn)
            .await
            .unwrap();
        assert_eq!(
            from_the_browser
                .iter()
                .map(|r| r.path.as_str())
                .collect::<Vec<_>>(),
            Vec::<&str>::new()
        );

        // Text from the site's clients is shown as text, never run as markup.
        let path = "/<img src=x onerror=\"window.pwned=1\">";
        let agent = "<script>window.pwned=2</script>";
        request_log::Entity::insert(request_log::ActiveModel {
            ip_address: Set("192.0.2.66".to_owned()),
            timestamp: Set(Utc::now()),
            method: Set("GET".to_owned()),
            path: Set(path.to_owned()),
            status: Set(404),
            duration_us: Set(100),
            user_agent: Set(agent.to_owned()),
            user_id: Set(String::new()),
            query_string: Set(String::new()),
            country_code: Set(String::new()),
            country: Set(String::new()),
            city: Set(String::new()),
            ..Default::default()
        })
        .exec(&conn)
        .await
        .unwrap();
        iptrack_tests::db::recount_rollup(&conn).await;
        for hash in ["#/requests?ip=192.0.2.66", "#/address/192.0.2.66"] {
            browser.go(&stack.url(&format!("/dashboard{hash}"))).await;
            let table = if hash.starts_with("#/requests") {
                "requests-table"
            } else {
                "address-requests"
            };
            rows_exactly(&browser, table, 3, "the row", |c| c == path, Some(1)).await;
            assert_eq!(strings(&browser.script(&column(table, 6)).await), [agent]);
            assert_eq!(
                browser
                    .script(
                        "return [document.querySelectorAll('main img, main script').length, \
                         window.pwned ?? null];"
                    )
                    .await,
                json!([0, null]),
                "{hash}"
            );
        }

        // A link with values that mean nothing says so instead of asking the API.
        for (hash, says) in [
            ("#/address/not-an-address", "That is not an IP address"),
            (
                "#/requests?network=198.51.100.0%2F99&status=abc",
                "Left out: \"198.51.100.0/99\" is not a network",
            ),
            (
                "#/countries?since=yesterday",
                "the time range in the link is not valid",
            ),
        ] {
            browser.go(&stack.url(&format!("/dashboard{hash}"))).await;
            let error = browser
                .wait_for(
                    WAIT,
                    "the complaint",
                    "const e = document.getElementById('view-error'); \
                     return e.hidden ? null : e.textContent;",
                )
                .await;
            assert!(error.as_str().unwrap().contains(says), "{hash}: {error}");
        }
        let german_page = format!("#/address/{GERMAN}");
        for (hash, says) in [
            ("#/", "the overview shows requests"),
            ("#/requests", "requests are shown without country"),
            (german_page.as_str(), "its country and city are unknown"),
        ] {
            browser.go(&stack.url(&format!("/dashboard{hash}"))).await;
            let text = browser.wait_for(WAIT, "the notice", notice).await;
            assert!(text.as_str().unwrap().contains(says), "{hash}: {text}");
        }
        browser.close().await;
    }
);
