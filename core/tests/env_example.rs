//! `.env.example` is what README tells a user to load with `set -a; . ./my.env; set +a`.
//! These tests load it exactly that way, with a real shell, and check that every value
//! arrives intact and that iptrack accepts the result.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::HashMap, path::PathBuf, process::Command};

use iptrack_core::settings::{KNOWN_VARIABLES, Settings, docs};

fn env_example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.env.example")
}

/// Sources the file in a clean `sh` the way README says, and returns the environment it
/// exports. Fails on anything the shell writes to stderr (a value with an unquoted space
/// runs the rest as a command; an unquoted `*` is expanded against the directory).
fn sourced_environment() -> HashMap<String, String> {
    let output = Command::new("sh")
        .arg("-c")
        .arg(r#"set -eu; set -a; . "$1"; set +a; env"#)
        .arg("sh")
        .arg(env_example())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // An empty directory: a glob that escaped its quotes would expand to nothing useful
        // and change the value, which the comparison below catches.
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cannot run sh");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.is_empty(),
        "sourcing .env.example failed ({}): {stderr}",
        output.status
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn env_example_loads_in_a_posix_shell_with_every_value_intact() {
    let env = sourced_environment();
    // Values with spaces and cron stars are the ones an unquoted file breaks.
    assert_eq!(env["IPTRACK_FLAG_SCHEDULE"], "0 0 * * * *");
    assert_eq!(env["IPTRACK_PURGE_SCHEDULE"], "0 30 3 * * *");
    assert_eq!(
        env["IPTRACK_RATE_LIMITS"],
        "login=POST /login anon=5 user=10 window=60s"
    );
}

#[test]
fn env_example_as_loaded_is_accepted_and_equals_the_defaults() {
    let env = sourced_environment();
    let loaded = Settings::from_sources(None, |name| env.get(name).cloned())
        .expect("iptrack refuses .env.example");
    let defaults = Settings::default();
    // The file promises "the values shown are the defaults".
    assert_eq!(loaded.schedules, defaults.schedules);
    assert_eq!(loaded.rate_limit.rules, defaults.rate_limit.rules);
    assert_eq!(loaded.web, defaults.web);
    assert_eq!(loaded.redis, defaults.redis);
    assert_eq!(loaded.database, defaults.database);
    assert_eq!(loaded.client_ip, defaults.client_ip);
    assert_eq!(loaded.blocklist, defaults.blocklist);
    assert_eq!(loaded.log_pipeline, defaults.log_pipeline);
    assert_eq!(loaded.worker, defaults.worker);
    assert_eq!(loaded.log_format, defaults.log_format);
    assert_eq!(loaded.geo.mmdb_paths, defaults.geo.mmdb_paths);
    assert!(loaded.admin.token.is_none() && loaded.admin.bind.is_none());
    assert!(
        !loaded.redis.url_given,
        "REDIS_URL stays unset, for `iptrack up`"
    );
}

#[test]
fn env_example_names_every_setting() {
    let text = std::fs::read_to_string(env_example()).unwrap();
    let missing: Vec<_> = KNOWN_VARIABLES
        .iter()
        .filter(|name| {
            !text.lines().any(|line| {
                let line = line.trim_start_matches(['#', ' ']);
                line.strip_prefix(**name)
                    .is_some_and(|rest| rest.starts_with('='))
            })
        })
        .collect();
    assert!(missing.is_empty(), ".env.example lacks {missing:?}");
}

const REGENERATE: &str = "regenerate with `cargo run -p iptrack-core --example settings-docs`";

#[test]
fn env_example_is_the_one_generated_from_the_declarations() {
    let text = std::fs::read_to_string(env_example()).unwrap();
    assert!(
        text == docs::env_example(),
        ".env.example differs from the variables declared in core/src/settings/; {REGENERATE}"
    );
}

#[test]
fn readme_configuration_table_is_the_one_generated_from_the_declarations() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let generated = docs::readme_with_table(&readme).unwrap_or_else(|| {
        panic!(
            "README.md lacks the lines {:?} and {:?} around its configuration table",
            docs::README_TABLE_START,
            docs::README_TABLE_END
        )
    });
    assert!(
        readme == generated,
        "README.md's configuration table differs from the variables declared in core/src/settings/; {REGENERATE}"
    );
}
