//! docker-compose.yml checked where docker cannot run: every iptrack service's command is
//! accepted by the real binary, every environment key is one the binaries read and every
//! value is one they accept, dependencies wait on healthchecks, and each setting carries a
//! comment.

use std::{
    collections::{BTreeSet, HashMap},
    process::Command,
};

use iptrack_core::settings::{KNOWN_VARIABLES, Settings};
use iptrack_tests::process::binary;
use yaml_rust2::{Yaml, YamlLoader};

/// The binaries the image holds (Dockerfile's build stage copies exactly these).
const IPTRACK_BINARIES: &[&str] = &[
    "iptrack-web",
    "iptrack-worker",
    "iptrack-scheduler",
    "iptrack",
];

/// Read by the logging setup (tracing's `EnvFilter`), not by `Settings`.
const LOGGING_VARIABLES: &[&str] = &["RUST_LOG"];

fn compose_text() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker-compose.yml");
    std::fs::read_to_string(path).expect("cannot read docker-compose.yml")
}

fn str_list(yaml: &Yaml) -> Vec<String> {
    yaml.as_vec()
        .expect("expected a list (use the exec form: [\"binary\", \"arg\"])")
        .iter()
        .map(|item| item.as_str().expect("expected a string").to_owned())
        .collect()
}

fn environment(service: &Yaml) -> HashMap<String, String> {
    match &service["environment"] {
        Yaml::BadValue => HashMap::new(),
        Yaml::Hash(map) => map
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Yaml::String(s) => interpolate_unset(s),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => panic!("environment value {other:?} is not a scalar"),
                };
                (k.as_str().expect("key").to_owned(), value)
            })
            .collect(),
        other => panic!("environment must be a mapping, got {other:?}"),
    }
}

/// A value as compose passes it when the user's environment sets none of the variables it
/// names: `${NAME:-default}` becomes the default, `${NAME}` nothing, `$$` one `$`.
fn interpolate_unset(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(body) = rest.strip_prefix('{') {
            let end = body
                .find('}')
                .unwrap_or_else(|| panic!("unclosed ${{ in {value:?}"));
            let (name, default) = body[..end].split_once(":-").unwrap_or((&body[..end], ""));
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
                "unsupported interpolation {:?} in {value:?}",
                &body[..end]
            );
            out.push_str(default);
            rest = &body[end + 1..];
        } else {
            panic!("a bare $ in {value:?}: write $$ or ${{NAME}}");
        }
    }
    out.push_str(rest);
    out
}

/// Runs `command --help` with an empty environment: clap rejects an unknown flag or
/// subcommand before it prints help. Returns the help text.
fn help_of(command: &[String]) -> String {
    let output = Command::new(binary(&command[0]))
        .args(&command[1..])
        .arg("--help")
        .env_clear()
        .output()
        .expect("cannot run the binary");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{command:?} is refused by the binary: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Variables named in clap's help as `[env: NAME=]` (flags that read the environment).
fn env_variables_in_help(help: &str) -> BTreeSet<String> {
    help.split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_compose_service_runs_a_real_command_with_known_settings_and_waits_on_health() {
    let text = compose_text();
    let docs = YamlLoader::load_from_str(&text).expect("docker-compose.yml is not valid YAML");
    let services = docs[0]["services"]
        .as_hash()
        .expect("docker-compose.yml has no services");
    let by_name: HashMap<&str, &Yaml> = services
        .iter()
        .map(|(k, v)| (k.as_str().expect("service name"), v))
        .collect();
    for needed in ["redis", "postgres", "migrate", "web", "worker", "scheduler"] {
        assert!(by_name.contains_key(needed), "service {needed} is missing");
    }

    let mut checked_commands = 0;
    for (name, service) in &by_name {
        let is_iptrack = service["image"].as_str() == Some("iptrack:latest");
        if !is_iptrack {
            // Redis and PostgreSQL: others wait on their health, so they must report it.
            assert!(
                !service["healthcheck"]["test"].is_badvalue(),
                "{name} has no healthcheck"
            );
            assert!(!service["volumes"].is_badvalue(), "{name} keeps no volume");
            continue;
        }

        let command = str_list(&service["command"]);
        assert!(
            IPTRACK_BINARIES.contains(&command[0].as_str()),
            "{name} runs {:?}, not an iptrack binary",
            command[0]
        );
        let help = help_of(&command);
        checked_commands += 1;

        let env = environment(service);
        let mut known: BTreeSet<String> = KNOWN_VARIABLES.iter().map(|v| v.to_string()).collect();
        known.extend(LOGGING_VARIABLES.iter().map(|v| v.to_string()));
        known.extend(env_variables_in_help(&help));
        for key in env.keys() {
            assert!(
                known.contains(key),
                "{name}: {key} is read by no iptrack binary (known: {known:?})"
            );
        }
        // The values must be ones the binaries accept, too.
        if let Err(error) = Settings::from_sources(None, |key| env.get(key).cloned()) {
            panic!("{name}: {error}");
        }
        if command[0] != "iptrack-scheduler" {
            assert!(
                env.contains_key("DATABASE_URL"),
                "{name} would use the default SQLite file inside its container"
            );
        }
        assert!(
            env.contains_key("REDIS_URL"),
            "{name} would look for Redis on 127.0.0.1"
        );

        let depends = service["depends_on"]
            .as_hash()
            .unwrap_or_else(|| panic!("{name}: depends_on must be a mapping with conditions"));
        let mut depends_on = BTreeSet::new();
        for (dependency, spec) in depends {
            let dependency = dependency.as_str().expect("dependency name");
            depends_on.insert(dependency);
            let target = by_name
                .get(dependency)
                .unwrap_or_else(|| panic!("{name} depends on unknown {dependency}"));
            match spec["condition"].as_str() {
                Some("service_healthy") => assert!(
                    !target["healthcheck"]["test"].is_badvalue(),
                    "{name} waits for {dependency} to be healthy, but it has no healthcheck"
                ),
                Some("service_completed_successfully") => assert_eq!(
                    target["restart"].as_str(),
                    Some("no"),
                    "{name} waits for {dependency} to complete; it must be a one-shot"
                ),
                other => panic!("{name} -> {dependency}: condition {other:?} waits on nothing"),
            }
        }
        assert!(
            depends_on.contains("redis"),
            "{name} does not wait for redis"
        );
        if env.contains_key("DATABASE_URL") {
            assert!(
                depends_on.contains("postgres"),
                "{name} does not wait for postgres"
            );
        }
        if *name != "migrate" {
            assert!(
                depends_on.contains("migrate"),
                "{name} does not wait for the migrations"
            );
        }
    }
    assert_eq!(
        checked_commands, 5,
        "migrate, web, worker, scheduler and (profile nginx) forward-auth"
    );

    // Scalable: nothing that two replicas could not both have.
    let worker = by_name["worker"];
    for fixed in ["container_name", "ports", "hostname"] {
        assert!(
            worker[fixed].is_badvalue(),
            "worker sets {fixed}; `--scale worker=4` would collide"
        );
    }
    assert!(
        !by_name["web"]["healthcheck"]["test"].is_badvalue(),
        "web has no healthcheck"
    );

    // The admin API comes from the user's environment and is off without it (README.md).
    let web_env = environment(by_name["web"]);
    let web_settings =
        Settings::from_sources(None, |key| web_env.get(key).cloned()).expect("web settings");
    assert!(
        web_settings.admin.token.is_none(),
        "the admin API must be off unless IPTRACK_ADMIN_TOKEN is set"
    );
    assert!(
        by_name["web"]["environment"]["IPTRACK_ADMIN_TOKEN"]
            .as_str()
            .is_some_and(|v| v.contains("${IPTRACK_ADMIN_TOKEN")),
        "web must take IPTRACK_ADMIN_TOKEN from the environment of `docker compose up`"
    );
    // Published on loopback unless the user says otherwise.
    let ports = str_list(&by_name["web"]["ports"]);
    assert!(
        ports
            .iter()
            .all(|p| interpolate_unset(p).starts_with("127.0.0.1:")),
        "web publishes beyond loopback by default: {ports:?}"
    );
}

#[test]
fn every_setting_in_the_compose_file_is_explained_by_a_comment() {
    let text = compose_text();
    let lines: Vec<&str> = text.lines().collect();
    let mut explained = BTreeSet::new();
    let mut in_environment = false;
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("environment:") {
            in_environment = true;
            continue;
        }
        if in_environment && !trimmed.starts_with('#') && !trimmed.is_empty() {
            let Some((key, _)) = trimmed.split_once(':') else {
                in_environment = false;
                continue;
            };
            if !is_setting_line(trimmed) {
                in_environment = false;
                continue;
            }
            if explained.contains(key) {
                continue;
            }
            // The first time a setting appears, a comment says why: directly above it, or
            // above the group of settings it belongs to.
            let above = lines[..i]
                .iter()
                .rev()
                .map(|l| l.trim_start())
                .find(|l| !is_setting_line(l));
            assert!(
                above.is_some_and(|l| l.starts_with('#')),
                "docker-compose.yml line {}: {key} has no comment explaining it",
                i + 1
            );
            explained.insert(key.to_owned());
        }
    }
    assert!(
        explained.contains("DATABASE_URL") && explained.contains("IPTRACK_BIND"),
        "the scan found no settings: {explained:?}"
    );
}

/// `KEY: value` with an environment-variable-like key.
fn is_setting_line(trimmed: &str) -> bool {
    trimmed.split_once(':').is_some_and(|(key, _)| {
        !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    })
}
