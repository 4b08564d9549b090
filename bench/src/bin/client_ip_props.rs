//! The long run of the client-IP property tests (issue 10): the generators and model of
//! `iptrack_tests::forwarding`, with many more cases than CI runs.
//!
//! Run: `cargo run --release -p iptrack-bench --bin client_ip_props -- --cases 1000000`
//!
//! Prints the cases run per property, the time taken, and the first failure (shrunk) if
//! any; exits 1 on a failure. RELIABILITY.md, "Client-IP resolution", has the figures.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use clap::Parser;
use iptrack_tests::forwarding::{arbitrary_lines, check, check_arbitrary, scenario};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

#[derive(Debug, Parser)]
struct Args {
    /// Cases per property.
    #[arg(long, default_value_t = 1_000_000)]
    cases: u32,
    /// Seed of the generator (a run is repeatable); default: random.
    #[arg(long)]
    seed: Option<u64>,
}

fn runner(cases: u32, seed: Option<u64>) -> TestRunner {
    let config = Config {
        cases,
        // No regression files from a bench run; a failure is printed instead.
        failure_persistence: None,
        ..Config::default()
    };
    match seed {
        Some(seed) => {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&seed.to_le_bytes());
            TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
        }
        None => TestRunner::new(config),
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let started = Instant::now();
    let result = runner(args.cases, args.seed).run(&scenario(), |s| check(&s));
    let mut failed = report("structured scenarios:", args.cases, started, &result);

    let started = Instant::now();
    let result = runner(args.cases, args.seed).run(&arbitrary_lines(), |(t, h, p, l)| {
        check_arbitrary(&t, h, p, &l)
    });
    failed |= report("arbitrary bytes:     ", args.cases, started, &result);

    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

/// Prints one property's outcome; true when it failed.
fn report<E: std::fmt::Display>(
    what: &str,
    cases: u32,
    started: Instant,
    result: &Result<(), E>,
) -> bool {
    println!(
        "{what} {cases} cases in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        match result {
            Ok(()) => "all passed".to_owned(),
            Err(e) => format!("FAILED: {e}"),
        }
    );
    result.is_err()
}
