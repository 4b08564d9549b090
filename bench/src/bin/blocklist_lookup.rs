//! Cost of the blocklist check the middleware makes on every request, with 100,000 entries
//! (addresses and networks of both families), and the matcher's memory.
//!
//! Run: `cargo run --release -p iptrack-bench --bin blocklist_lookup`

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Instant,
};

use chrono::Utc;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use iptrack_bench::{XorShift, median, resident_bytes};
use iptrack_core::blocklist::Blocklist;

const LOOKUPS: usize = 2_000_000;
const RUNS: usize = 7;

fn main() {
    let mut rng = XorShift::new(0x1b1a_c0de);
    let entries = entries(&mut rng);
    let before = resident_bytes().unwrap_or(0);
    let mut list = Blocklist::new();
    let started = Instant::now();
    for (network, expiry) in &entries {
        list.insert(*network, *expiry);
    }
    let build = started.elapsed();
    // Random networks sometimes coincide; top up to exactly 100,000 distinct entries.
    let mut entries = entries;
    while list.len() < 100_000 {
        let network = IpNet::from(IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32)));
        list.insert(network, None);
        entries.push((network, None));
    }
    let after = resident_bytes().unwrap_or(0);
    println!(
        "entries: {} (built in {:.0} ms); resident memory grew by {:.1} MiB",
        list.len(),
        build.as_secs_f64() * 1e3,
        (after.saturating_sub(before)) as f64 / (1 << 20) as f64
    );

    let probes: Vec<IpAddr> = (0..LOOKUPS).map(|i| probe(&mut rng, i, &entries)).collect();
    let mut per_check = Vec::new();
    let mut hits = 0;
    for _ in 0..RUNS {
        let started = Instant::now();
        hits = 0;
        for ip in &probes {
            // As the middleware does it: the clock is read on every check.
            if list.blocks(black_box(*ip), Utc::now()) {
                hits += 1;
            }
        }
        per_check.push(started.elapsed().as_nanos() as f64 / LOOKUPS as f64);
    }
    let fastest = per_check.iter().copied().fold(f64::MAX, f64::min);
    println!(
        "check: median {:.0} ns, fastest {:.0} ns over {RUNS} runs of {LOOKUPS} lookups ({:.0} % blocked)",
        median(&mut per_check).unwrap(),
        fastest,
        100.0 * hits as f64 / LOOKUPS as f64
    );

    // Applying one change notice: clone, change, swap (the swap itself is a pointer store).
    let mut per_change = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let mut next = list.clone();
        next.insert(IpNet::from(IpAddr::from([192, 0, 2, 1])), None);
        black_box(&next);
        per_change.push(started.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "applying a change notice (clone + insert): median {:.1} ms",
        median(&mut per_change).unwrap()
    );
}

/// 100,000 entries: 40k IPv4 addresses, 20k IPv4 networks (/16 to /30), 25k IPv6 addresses,
/// 15k IPv6 networks (/32 to /64); one in ten expires in an hour.
fn entries(rng: &mut XorShift) -> Vec<(IpNet, Option<chrono::DateTime<Utc>>)> {
    let mut out = Vec::with_capacity(100_000);
    let expiry = |rng: &mut XorShift| {
        (rng.between(0, 9) == 0).then(|| Utc::now() + chrono::Duration::hours(1))
    };
    for _ in 0..40_000 {
        let ip = Ipv4Addr::from(rng.next_u64() as u32);
        out.push((IpNet::from(IpAddr::V4(ip)), expiry(rng)));
    }
    for _ in 0..20_000 {
        let net = Ipv4Net::new(
            Ipv4Addr::from(rng.next_u64() as u32),
            rng.between(16, 30) as u8,
        )
        .unwrap();
        out.push((IpNet::V4(net.trunc()), expiry(rng)));
    }
    for _ in 0..25_000 {
        let ip = Ipv6Addr::from(((0x2001_0db8_u128) << 96) | u128::from(rng.next_u64()));
        out.push((IpNet::from(IpAddr::V6(ip)), expiry(rng)));
    }
    for _ in 0..15_000 {
        let bits = ((0x2001_0db8_u128) << 96) | (u128::from(rng.next_u64()) << 32);
        let net = Ipv6Net::new(Ipv6Addr::from(bits), rng.between(32, 64) as u8).unwrap();
        out.push((IpNet::V6(net.trunc()), expiry(rng)));
    }
    out
}

/// Lookup mix: a quarter exact blocked addresses, the rest random of both families.
fn probe(
    rng: &mut XorShift,
    i: usize,
    entries: &[(IpNet, Option<chrono::DateTime<Utc>>)],
) -> IpAddr {
    match i % 4 {
        0 => entries[rng.between(0, entries.len() as u64 - 1) as usize]
            .0
            .addr(),
        1 => IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32)),
        2 => IpAddr::V6(Ipv6Addr::from(
            ((0x2001_0db8_u128) << 96) | u128::from(rng.next_u64()),
        )),
        _ => IpAddr::V6(Ipv6Addr::from(
            u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64()),
        )),
    }
}
