//! `iptrack` with malformed arguments (issue 10, "Bad input"): every subcommand refuses
//! them with status 2 and exactly one line on stderr naming the problem, before touching
//! any service; `--help` still prints the full usage.

use std::{ffi::OsString, os::unix::ffi::OsStringExt, process::Command};

/// Runs the real `iptrack` with `args` and nothing of the developer's environment, so no
/// database or Redis is reachable: a refusal must come from the arguments alone.
fn run(args: &[OsString]) -> (i32, String, String) {
    let output = Command::new(iptrack_tests::process::binary("iptrack"))
        .args(args)
        .env_clear()
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .output()
        .expect("cannot run iptrack");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

#[test]
fn every_command_refuses_malformed_arguments_with_status_2_and_one_line_naming_the_problem() {
    let cases: Vec<(Vec<OsString>, &str)> = vec![
        (os(&[]), "subcommand"),
        (os(&["blokc", "1.2.3.4"]), "blokc"),
        (os(&["--config"]), "--config"),
        (
            os(&["--config", "/nonexistent/iptrack.toml", "blocked"]),
            "/nonexistent/iptrack.toml",
        ),
        (os(&["migrate", "--bogus"]), "--bogus"),
        (os(&["migrate", "extra"]), "extra"),
        (os(&["up", "--bogus"]), "--bogus"),
        (os(&["block"]), "<TARGET>"),
        (os(&["block", "300.1.1.1"]), "300.1.1.1"),
        (os(&["block", "1.2.3.4", "5.6.7.8"]), "5.6.7.8"),
        (os(&["block", "1.2.3.4", "--for"]), "--for"),
        (os(&["block", "1.2.3.4", "--for", "0s"]), "0s"),
        (os(&["block", "1.2.3.4", "--for", "-5m"]), "-5"),
        (
            os(&["block", "1.2.3.4", "--for", "99999999999999999999d"]),
            "99999999999999999999d",
        ),
        (os(&["block", "1.2.3.4", "--reason"]), "--reason"),
        (os(&["block", "1.2.3.4", "--colour", "red"]), "--colour"),
        (
            vec!["block".into(), OsString::from_vec(b"1.2.3.\xff".to_vec())],
            "UTF-8",
        ),
        (os(&["unblock"]), "<TARGET>"),
        (os(&["unblock", "::gg"]), "::gg"),
        (os(&["blocked", "--json=yes"]), "--json"),
        (os(&["blocked", "extra"]), "extra"),
        (
            os(&["flag-suspicious", "--window-end", "2026-13-01T00:00:00Z"]),
            "RFC 3339",
        ),
        (os(&["flag-suspicious", "--window-end"]), "--window-end"),
        (os(&["suspicious", "--limit", "0"]), "0"),
        (os(&["suspicious", "--limit", "abc"]), "abc"),
        (os(&["suspicious", "--limit", "100001"]), "100001"),
        (os(&["suspicious", "--limit", "-1"]), "-1"),
        (os(&["queues", "--jsno"]), "--jsno"),
        (os(&["logs", "--ip", "1.2.3"]), "1.2.3"),
        (os(&["logs", "--ip"]), "--ip"),
        (
            os(&["logs", "--network", "203.0.113.9/24"]),
            "give the network form, 203.0.113.0/24",
        ),
        (
            os(&["logs", "--network", "2001:db8::1/32"]),
            "give the network form, 2001:db8::/32",
        ),
        (
            os(&["logs", "--network", "nonsense"]),
            "not a network in CIDR form",
        ),
        (
            os(&["logs", "--ip", "1.2.3.4", "--network", "1.2.3.0/24"]),
            "cannot be used with",
        ),
        (os(&["logs", "--class", "418"]), "must be one of 2xx"),
        (os(&["logs", "--country", "DEU"]), "two-letter country code"),
        (os(&["logs", "--method", "G3T"]), "HTTP method"),
        (os(&["logs", "--status", "700"]), "HTTP status code"),
        (os(&["logs", "--until", "tomorrow"]), "RFC 3339"),
        (
            os(&[
                "logs",
                "--since",
                "2026-11-21T10:00:00Z",
                "--until",
                "2026-11-21T09:00:00Z",
            ]),
            "--since must be earlier than --until",
        ),
        (
            os(&["logs", "--limit", "99999999999999999999"]),
            "99999999999999999999",
        ),
    ];
    for (args, names) in cases {
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?} printed:\n{stderr}");
        assert!(
            stderr.starts_with("iptrack: "),
            "{args:?} printed: {stderr}"
        );
        assert!(stderr.contains(names), "{args:?} printed: {stderr}");
        assert_eq!(stdout, "", "{args:?}");
    }
}

#[test]
fn help_and_version_still_print_in_full() {
    for args in [&["--help"][..], &["block", "--help"], &["help", "logs"]] {
        let (code, stdout, stderr) = run(&os(args));
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(stdout.contains("Usage:"), "{args:?}: {stdout}");
        assert!(stdout.lines().count() > 3, "{args:?}: {stdout}");
    }
    let (code, stdout, _) = run(&os(&["--version"]));
    assert_eq!(code, 0);
    assert!(
        stdout.trim().ends_with(env!("CARGO_PKG_VERSION")),
        "{stdout}"
    );
}
