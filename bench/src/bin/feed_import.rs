//! A 100,000-entry blocklist feed: how long `import-blocklist`'s work takes on each
//! database (parse, first import, the same list again, a list with 10 % of its entries
//! replaced), how long a web instance takes to rebuild its matcher from `blocked_ip` with
//! them loaded (what it does on the import's reload notice), and the web's resident memory
//! with and without them (a real `iptrack-web` process).
//!
//! Run: `cargo build --release --workspace --bins && cargo run --release -p iptrack-bench --bin feed_import`

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeSet, HashMap},
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use clap::Parser;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use iptrack_bench::{XorShift, median, process_resident_mib};
use iptrack_core::{
    blocklist::{
        display_network,
        feed::{FeedName, parse_list},
        service::{BlocklistService, FeedImportRequest},
    },
    queue,
};
use iptrack_tests::{
    Backend, TestDb, TestRedis, free_port,
    process::{Service, wait_until_listening},
};

#[derive(Debug, Parser)]
struct Args {
    /// Entries in the list.
    #[arg(long, default_value_t = 100_000)]
    entries: usize,
    /// Runs of the matcher rebuild (the median is shown).
    #[arg(long, default_value_t = 5)]
    rebuilds: usize,
    /// `sqlite`, `postgres` or `both`.
    #[arg(long, default_value = "both")]
    backend: String,
}

/// `count` distinct entries: 70 % IPv4 addresses, 20 % IPv4 /24s, 10 % IPv6 /48s, as a
/// FireHOL-style text with a header.
fn list_text(rng: &mut XorShift, count: usize) -> (String, Vec<IpNet>) {
    let mut entries = BTreeSet::new();
    while entries.len() < count {
        let roll = rng.between(0, 9);
        let network = if roll < 7 {
            IpNet::from(IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32)))
        } else if roll < 9 {
            IpNet::V4(
                Ipv4Net::new(Ipv4Addr::from(rng.next_u64() as u32), 24)
                    .unwrap()
                    .trunc(),
            )
        } else {
            let high = 0x2001_0db8_0000_0000_u64 | (rng.next_u64() & 0xffff_ffff);
            IpNet::V6(
                Ipv6Net::new(Ipv6Addr::from(u128::from(high) << 64), 48)
                    .unwrap()
                    .trunc(),
            )
        };
        entries.insert(network);
    }
    let entries: Vec<IpNet> = entries.into_iter().collect();
    let mut text = String::from("#\n# bench feed\n# ipv4 hash:net ipset\n#\n");
    for network in &entries {
        writeln!(text, "{}", display_network(network)).unwrap();
    }
    (text, entries)
}

fn request(entries: BTreeSet<IpNet>, allow_shrink: bool) -> FeedImportRequest {
    FeedImportRequest {
        feed: FeedName::parse("bench").unwrap(),
        entries,
        origin: "bench".into(),
        allow_empty: false,
        allow_shrink,
    }
}

async fn web_rss(db: &TestDb, redis: &TestRedis, probe: &str) -> f64 {
    let port = free_port();
    let env: HashMap<String, String> = [
        ("DATABASE_URL", db.url.clone()),
        ("REDIS_URL", redis.url.clone()),
        ("IPTRACK_REDIS_PREFIX", redis.prefix.clone()),
        ("IPTRACK_BIND", format!("127.0.0.1:{port}")),
        ("IPTRACK_TRUSTED_PROXIES", "127.0.0.1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let web = Service::start("iptrack-web", &[], &env);
    let url = format!("http://127.0.0.1:{port}/");
    wait_until_listening(&url, Duration::from_secs(30)).await;
    let client = reqwest::Client::new();
    let expected = if probe.is_empty() { 200 } else { 403 };
    let claim = if probe.is_empty() { "192.0.2.1" } else { probe };
    // Until the list is loaded (a 403 for a listed address), then a moment to settle.
    for _ in 0..600 {
        let status = client
            .get(&url)
            .header("x-forwarded-for", claim)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if status == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    process_resident_mib(web.pid())
}

async fn run(backend: Backend, args: &Args) {
    let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
    let conn = db.connect().await;
    let service = BlocklistService::new(
        conn.clone(),
        queue::connect(&redis.url).unwrap(),
        redis.prefix.clone(),
        &[],
    );
    let mut rng = XorShift::new(0xfeed_0001);
    let (text, entries) = list_text(&mut rng, args.entries);

    let started = Instant::now();
    let parsed = parse_list(text.as_bytes()).unwrap();
    let parse = started.elapsed();
    assert_eq!(parsed.entries.len(), args.entries);

    let rss_empty = web_rss(&db, &redis, "").await;

    let started = Instant::now();
    let first = service
        .import_feed(request(parsed.entries.clone(), false))
        .await
        .unwrap();
    let first_time = started.elapsed();
    assert_eq!(first.added as usize, args.entries);

    let started = Instant::now();
    let same = service
        .import_feed(request(parsed.entries.clone(), false))
        .await
        .unwrap();
    let same_time = started.elapsed();
    assert_eq!(same.added + same.withdrawn, 0);

    // A tenth of the list replaced: as many withdrawn as added.
    let tenth = args.entries / 10;
    let mut changed: BTreeSet<IpNet> = entries[tenth..].iter().copied().collect();
    let (_, fresh) = list_text(&mut XorShift::new(0xfeed_0002), tenth * 2);
    for network in fresh {
        if changed.len() == args.entries {
            break;
        }
        if !entries.contains(&network) {
            changed.insert(network);
        }
    }
    let started = Instant::now();
    let replaced = service
        .import_feed(request(changed.clone(), false))
        .await
        .unwrap();
    let replaced_time = started.elapsed();

    let mut rebuilds = Vec::new();
    let mut held = 0;
    for _ in 0..args.rebuilds {
        let started = Instant::now();
        let list = iptrack_web::blocklist::load(&conn).await.unwrap();
        rebuilds.push(started.elapsed().as_secs_f64() * 1e3);
        held = list.len();
    }
    let probe = display_network(changed.iter().next().unwrap());
    let probe = probe.split('/').next().unwrap().to_owned();
    let rss_loaded = web_rss(&db, &redis, &probe).await;

    println!("== {backend:?}: a {}-entry feed", args.entries);
    println!(
        "parse:                     {:>8.0} ms",
        parse.as_secs_f64() * 1e3
    );
    println!(
        "first import:              {:>8.0} ms  ({} added)",
        first_time.as_secs_f64() * 1e3,
        first.added
    );
    println!(
        "same list again:           {:>8.0} ms  (nothing changed)",
        same_time.as_secs_f64() * 1e3
    );
    println!(
        "10 % replaced:             {:>8.0} ms  ({} added, {} withdrawn)",
        replaced_time.as_secs_f64() * 1e3,
        replaced.added,
        replaced.withdrawn
    );
    println!(
        "matcher rebuild (median of {}): {:>6.0} ms  ({held} entries)",
        args.rebuilds,
        median(&mut rebuilds).unwrap_or(0.0)
    );
    println!(
        "iptrack-web resident:      {rss_empty:>8.1} MiB empty, {rss_loaded:.1} MiB with the feed ({:+.1} MiB)",
        rss_loaded - rss_empty
    );
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let backends: &[Backend] = match args.backend.as_str() {
        "sqlite" => &[Backend::Sqlite],
        "postgres" => &[Backend::Postgres],
        _ => &[Backend::Sqlite, Backend::Postgres],
    };
    for backend in backends {
        run(*backend, &args).await;
    }
}
