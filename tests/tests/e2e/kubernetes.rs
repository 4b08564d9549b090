//! deploy/kubernetes/ checked against the real binaries where no cluster runs (as compose.rs
//! does for docker-compose.yml): every environment key a manifest or config.env sets is a
//! setting iptrack reads, with a value it accepts; every container runs a command the
//! binary accepts; and the Redis list KEDA's ScaledObject watches is the one where the
//! web's request-log batches wait: the name core/src/queue.rs computes, seen filling in a
//! real run of iptrack-web and emptying once iptrack-worker starts.
//! (scripts/k8s-check.sh validates the objects themselves against the Kubernetes schemas.)

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use iptrack_core::{
    jobs::REQUEST_LOGS_QUEUE,
    queue,
    settings::{KNOWN_VARIABLES, Settings, WorkerSettings},
};
use iptrack_tests::{TestDb, TestRedis, both_backends, eventually, process::Service};
use redis::AsyncCommands;
use yaml_rust2::{Yaml, YamlLoader};

use crate::{Stack, assert_stored_exactly_once, send_requests};

/// The binaries the image holds (Dockerfile's build stage copies exactly these).
const IPTRACK_BINARIES: &[&str] = &[
    "iptrack-web",
    "iptrack-worker",
    "iptrack-scheduler",
    "iptrack",
];

/// Read by the logging setup (tracing's `EnvFilter`), not by `Settings`.
const LOGGING_VARIABLES: &[&str] = &["RUST_LOG"];

fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

/// Every file below `dir` whose name satisfies `keep`, sorted.
fn files_below(dir: &Path, keep: &dyn Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("cannot list deploy/kubernetes") {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_below(&path, keep));
        } else if keep(path.file_name().unwrap().to_str().unwrap()) {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// Every YAML document of deploy/kubernetes/, with its file.
fn documents() -> Vec<(PathBuf, Yaml)> {
    files_below(&manifests(), &|name| name.ends_with(".yaml"))
        .into_iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let docs = YamlLoader::load_from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()));
            docs.into_iter().map(move |doc| (path.clone(), doc))
        })
        .collect()
}

/// The `KEY=VALUE` lines of a kustomize env file (blank lines and `#` comments skipped).
fn env_file(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: not KEY=VALUE: {line}", path.display()));
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

/// The containers of a workload's pod template (none for other kinds).
fn containers(doc: &Yaml) -> Vec<&Yaml> {
    doc["spec"]["template"]["spec"]["containers"]
        .as_vec()
        .map(|list| list.iter().collect())
        .unwrap_or_default()
}

fn known_variables() -> BTreeSet<String> {
    KNOWN_VARIABLES
        .iter()
        .chain(LOGGING_VARIABLES)
        .map(|v| v.to_string())
        .collect()
}

/// The base's settings, with the example overlay's on top, and the example Secret's.
fn example_environment() -> BTreeMap<String, String> {
    let mut env = env_file(&manifests().join("base/config.env"));
    env.extend(env_file(&manifests().join("overlays/example/config.env")));
    let (_, secret) = documents()
        .into_iter()
        .find(|(_, doc)| doc["kind"].as_str() == Some("Secret"))
        .expect("the example overlay has no Secret");
    for (key, value) in secret["stringData"].as_hash().expect("stringData") {
        env.insert(
            key.as_str().unwrap().to_owned(),
            value.as_str().unwrap().to_owned(),
        );
    }
    env
}

#[test]
fn every_environment_key_in_the_kubernetes_manifests_is_a_setting_iptrack_reads() {
    let known = known_variables();
    let env_files = files_below(&manifests(), &|name| name.ends_with(".env"));
    assert!(env_files.len() >= 2, "no config.env found: {env_files:?}");
    for path in &env_files {
        for key in env_file(path).keys() {
            assert!(
                known.contains(key),
                "{}: {key} is read by no iptrack binary",
                path.display()
            );
        }
    }

    let mut workloads = BTreeSet::new();
    for (path, doc) in documents() {
        for container in containers(&doc) {
            let name = doc["metadata"]["name"].as_str().unwrap().to_owned();
            let command: Vec<&str> = container["command"]
                .as_vec()
                .unwrap_or_else(|| panic!("{name}: no command (the image's default is the web)"))
                .iter()
                .map(|arg| arg.as_str().unwrap())
                .collect();
            assert!(
                IPTRACK_BINARIES.contains(&command[0]),
                "{name} runs {:?}, not an iptrack binary",
                command[0]
            );
            // clap refuses an unknown flag or subcommand before it prints help.
            let help = Command::new(iptrack_tests::process::binary(command[0]))
                .args(&command[1..])
                .arg("--help")
                .env_clear()
                .output()
                .unwrap();
            assert!(help.status.success(), "{name}: {command:?} is refused");
            for env in container["env"].as_vec().into_iter().flatten() {
                let key = env["name"].as_str().unwrap();
                assert!(
                    known.contains(key),
                    "{}: {name} sets {key}, which no iptrack binary reads",
                    path.display()
                );
            }
            workloads.insert(name);
        }
    }
    assert_eq!(
        workloads,
        BTreeSet::from(
            [
                "iptrack-migrate",
                "iptrack-scheduler",
                "iptrack-web",
                "iptrack-worker"
            ]
            .map(str::to_owned)
        ),
    );

    // The values too: the example overlay's settings start every process. Keys the
    // Secret holds for KEDA only (KEDA_REDIS_*) are not iptrack's and not read.
    let env = example_environment();
    if let Err(error) = Settings::from_sources(None, |key| env.get(key).cloned()) {
        panic!("the example overlay's settings are refused: {error}");
    }
    for key in env.keys().filter(|key| !known.contains(*key)) {
        assert!(
            key.starts_with("KEDA_"),
            "the Secret holds {key}, which nobody reads"
        );
    }
}

/// The `listName` of the ScaledObject's redis trigger.
fn keda_list_name() -> String {
    let (_, scaled) = documents()
        .into_iter()
        .find(|(_, doc)| doc["kind"].as_str() == Some("ScaledObject"))
        .expect("no ScaledObject");
    let trigger = &scaled["spec"]["triggers"][0];
    assert_eq!(trigger["type"].as_str(), Some("redis"));
    trigger["metadata"]["listName"]
        .as_str()
        .expect("listName")
        .to_owned()
}

/// The prefix config.env gives every process.
fn configured_prefix() -> String {
    env_file(&manifests().join("base/config.env"))
        .get("IPTRACK_REDIS_PREFIX")
        .cloned()
        .unwrap_or_else(|| iptrack_core::settings::RedisSettings::default().prefix)
}

fn request_logs_list(prefix: &str) -> String {
    queue::queue_config(prefix, &WorkerSettings::default(), REQUEST_LOGS_QUEUE).active_jobs_list()
}

#[test]
fn keda_watches_the_list_core_queue_names_for_request_log_batches() {
    assert_eq!(keda_list_name(), request_logs_list(&configured_prefix()));
}

both_backends!(
    the_list_keda_watches_fills_while_no_worker_runs_and_empties_when_one_does,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let stack = Stack::new(&db, &redis).with("IPTRACK_BATCH_MAX_EVENTS", "10");
        // The manifest's key, under this test's prefix instead of config.env's.
        let watched = keda_list_name().replacen(&configured_prefix(), &redis.prefix, 1);
        assert_eq!(watched, request_logs_list(&redis.prefix));

        let _web = Service::start("iptrack-web", &[], &stack.env);
        stack.wait_until_listening().await;
        send_requests(&stack, 0..100).await;
        let conn = redis.connection().await;
        eventually(
            Duration::from_secs(20),
            "batches waiting in the list",
            || {
                let (mut conn, watched) = (conn.clone(), watched.clone());
                async move { (conn.llen::<_, u64>(&watched).await.unwrap() >= 10).then_some(()) }
            },
        )
        .await;

        let _worker = Service::start("iptrack-worker", &[], &stack.env);
        assert_stored_exactly_once(&db, 100, Duration::from_secs(60)).await;
        let mut conn = conn.clone();
        assert_eq!(conn.llen::<_, u64>(&watched).await.unwrap(), 0);
    }
);
