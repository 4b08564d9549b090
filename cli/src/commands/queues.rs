//! `iptrack queues`: what each queue holds and which workers serve it, read from Redis the
//! way the redis-cli commands in README.md read it (see `iptrack_core::queue_stats`).

use crate::output::say;
use anyhow::Context;
use chrono::{DateTime, Utc};
use iptrack_core::{Settings, jobs::ALL_QUEUES, queue, queue_stats::QueueStats};

pub async fn run(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let mut conn = queue::connect_to(&settings.redis).context("REDIS_URL")?;
    let stats = QueueStats::read_all(&mut conn, &settings.redis.prefix, ALL_QUEUES)
        .await
        .context("cannot read the queues from Redis (REDIS_URL)")?;
    if json {
        say!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(());
    }
    let mut table = super::table(&["queue", "due", "scheduled", "in flight", "done", "dead"]);
    for q in &stats {
        table.add_row(vec![
            q.queue.clone(),
            q.due.to_string(),
            q.scheduled.to_string(),
            q.in_flight.to_string(),
            q.done.to_string(),
            q.dead.to_string(),
        ]);
    }
    say!("{table}");

    let now = Utc::now().timestamp();
    let mut workers = super::table(&["queue", "worker", "last heartbeat (UTC)", "in flight"]);
    let mut any = false;
    for q in &stats {
        for w in &q.workers {
            any = true;
            let heartbeat = if w.last_heartbeat == 0 {
                "unregistered".to_owned()
            } else {
                DateTime::<Utc>::from_timestamp(w.last_heartbeat, 0).map_or_else(
                    || w.last_heartbeat.to_string(),
                    |t| {
                        format!(
                            "{} ({}s ago)",
                            t.format("%Y-%m-%d %H:%M:%S"),
                            now - w.last_heartbeat
                        )
                    },
                )
            };
            workers.add_row(vec![
                q.queue.clone(),
                w.name.clone(),
                heartbeat,
                w.in_flight.to_string(),
            ]);
        }
    }
    if any {
        say!("{workers}");
    } else {
        say!("no workers registered");
    }
    Ok(())
}
