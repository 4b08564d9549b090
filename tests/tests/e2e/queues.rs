//! `iptrack queues` shows the numbers the redis-cli commands in README.md show.

use std::process::Command;

use chrono::Utc;
use iptrack_tests::{Backend, TestDb, TestRedis};

use crate::{Stack, iptrack};

/// Runs `redis-cli -u URL <args>` and returns its output, trimmed.
fn redis_cli(redis: &TestRedis, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .arg("-u")
        .arg(&redis.url)
        .args(args)
        .output()
        .expect("cannot run redis-cli (is it installed?)");
    assert!(output.status.success(), "redis-cli {args:?} failed");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn redis_cli_number(redis: &TestRedis, args: &[&str]) -> u64 {
    let text = redis_cli(redis, args);
    text.parse()
        .unwrap_or_else(|_| panic!("redis-cli {args:?} printed {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_shows_what_redis_cli_shows_for_jobs_in_every_state() {
    let (db, redis) = (TestDb::new(Backend::Sqlite).await, TestRedis::new());
    let stack = Stack::new(&db, &redis);
    let q = format!("{}:request-logs", redis.prefix);
    let now = Utc::now().timestamp();
    // Jobs in each state, in apalis-redis 1.0's layout (core/src/queue_stats.rs): three
    // due, two scheduled retries, three in flight on two live workers and one on a worker
    // that has vanished, four done, one dead.
    let mut conn = redis.connection().await;
    let _: () = redis::pipe()
        .rpush(format!("{q}:active"), &["a", "b", "c"])
        .zadd(format!("{q}:scheduled"), "d", now + 3600)
        .zadd(format!("{q}:scheduled"), "e", now + 60)
        .zadd(format!("{q}:workers"), "worker-live", now)
        .zadd(format!("{q}:workers"), "worker-slow", now - 100)
        .sadd(format!("{q}:inflight:worker-live"), &["f", "g"])
        .sadd(format!("{q}:inflight:worker-slow"), "h")
        .sadd(format!("{q}:inflight:worker-gone"), "i")
        .sadd(format!("{q}:done"), &["j", "k", "l", "m"])
        .sadd(format!("{q}:dead"), "n")
        .sadd(format!("{}:purge-logs:done", redis.prefix), "o")
        .query_async(&mut conn)
        .await
        .unwrap();

    let (code, json, stderr) = iptrack(&stack, &["queues", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let queues: serde_json::Value = serde_json::from_str(&json).unwrap();
    let names: Vec<&str> = queues
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["queue"].as_str().unwrap())
        .collect();
    // Every queue iptrack uses, in its order, whether or not it holds jobs.
    assert_eq!(names, iptrack_core::jobs::ALL_QUEUES);
    let logs = &queues[0];

    // The README's commands, run as a user would.
    assert_eq!(
        logs["due"],
        redis_cli_number(&redis, &["LLEN", &format!("{q}:active")])
    );
    assert_eq!(
        logs["scheduled"],
        redis_cli_number(&redis, &["ZCARD", &format!("{q}:scheduled")])
    );
    assert_eq!(
        logs["done"],
        redis_cli_number(&redis, &["SCARD", &format!("{q}:done")])
    );
    assert_eq!(
        logs["dead"],
        redis_cli_number(&redis, &["SCARD", &format!("{q}:dead")])
    );
    let inflight_keys = redis_cli(&redis, &["--scan", "--pattern", &format!("{q}:inflight:*")]);
    let mut in_flight_total = 0;
    for key in inflight_keys.lines() {
        let worker = key.rsplit(':').next().unwrap();
        let count = redis_cli_number(&redis, &["SCARD", key]);
        in_flight_total += count;
        let shown = logs["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == worker)
            .unwrap_or_else(|| panic!("{worker} is not listed: {logs}"));
        assert_eq!(shown["in_flight"], count, "{worker}");
    }
    assert_eq!(logs["in_flight"], in_flight_total);
    let heartbeats = redis_cli(
        &redis,
        &["ZRANGE", &format!("{q}:workers"), "0", "-1", "WITHSCORES"],
    );
    let heartbeats: Vec<&str> = heartbeats.lines().collect();
    for pair in heartbeats.chunks(2) {
        let shown = logs["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == pair[0])
            .unwrap();
        assert_eq!(shown["last_heartbeat"].to_string(), pair[1]);
    }
    // The figures themselves, so that a reader (and a broken redis-cli) cannot fool us.
    assert_eq!(
        (
            &logs["due"],
            &logs["scheduled"],
            &logs["in_flight"],
            &logs["done"],
            &logs["dead"]
        ),
        (&3.into(), &2.into(), &4.into(), &4.into(), &1.into())
    );
    let workers: Vec<(&str, i64)> = logs["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["name"].as_str().unwrap(),
                w["in_flight"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        workers,
        [("worker-gone", 1), ("worker-slow", 1), ("worker-live", 2)],
        "oldest heartbeat first; an unregistered worker's jobs are still shown"
    );
    assert_eq!(queues[2]["done"], 1);
    assert_eq!(queues[1]["done"], 0);

    // The table shows the same.
    let (code, table, _) = iptrack(&stack, &["queues"]);
    assert_eq!(code, 0);
    let row = table
        .lines()
        .find(|line| line.contains("request-logs") && !line.contains("worker"))
        .unwrap_or_else(|| panic!("no request-logs row in:\n{table}"));
    // The table has outer borders only: cells are separated by spaces.
    let cells: Vec<&str> = row.split_whitespace().filter(|c| *c != "│").collect();
    assert_eq!(cells, ["request-logs", "3", "2", "4", "4", "1"], "{table}");
    assert!(table.contains("worker-live"), "{table}");
    assert!(table.contains("unregistered"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_says_plainly_when_nothing_is_there_and_refuses_bad_flags() {
    let (db, redis) = (TestDb::new(Backend::Sqlite).await, TestRedis::new());
    let stack = Stack::new(&db, &redis);
    let (code, table, stderr) = iptrack(&stack, &["queues"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(table.contains("no workers registered"), "{table}");
    let (code, _, stderr) = iptrack(&stack, &["queues", "--jsno"]);
    assert_eq!(code, 2);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_ends_the_command_quietly() {
    // `iptrack queues | head -1`, `iptrack logs | less` quit early: the pipe's reading end
    // is closed before the command writes (here, before it starts, so every write fails).
    let (db, redis) = (TestDb::new(Backend::Sqlite).await, TestRedis::new());
    let stack = Stack::new(&db, &redis);
    for args in [&["queues"][..], &["logs"], &["suspicious"], &["blocked"]] {
        let (reader, writer) = std::io::pipe().expect("cannot make a pipe");
        drop(reader);
        let output = Command::new(iptrack_tests::process::binary("iptrack"))
            .args(args)
            .env_clear()
            .envs(&stack.env)
            .stdout(writer)
            .output()
            .expect("cannot run iptrack");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
