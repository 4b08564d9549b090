//! Hands new flags and bans to the `notifications` queue, for webhook delivery.
//!
//! Whoever notices an event (the streaming rules, the hourly flag job) calls
//! [`Notifier::send`] with the key that names the event; the push claims that key in Redis
//! first, so several workers seeing one event queue one notice. Delivery is a job of its own
//! (`jobs::deliver_notice`), retried with back-off: a slow or failing receiver never holds up
//! the job that noticed the event.

use std::time::Duration;

use iptrack_core::{
    jobs::{NOTIFICATIONS_QUEUE, Notice},
    queue::{self, JobQueue},
    settings::Settings,
};
use redis::aio::ConnectionManager;

/// How long an event's claim is remembered: longer than any redelivery of the job that
/// noticed it, so the same event is never announced twice.
const EVENT_CLAIM_TTL: Duration = Duration::from_secs(7 * 86_400);

/// Queues notices when `IPTRACK_WEBHOOK_URL` is set; does nothing otherwise.
#[derive(Debug, Clone)]
pub struct Notifier {
    queue: Option<JobQueue<Notice>>,
}

impl Notifier {
    pub fn from_settings(settings: &Settings, conn: ConnectionManager) -> Self {
        let queue = settings.notify.webhook_url.as_ref().map(|_| {
            let config = queue::queue_config(
                &settings.redis.prefix,
                &settings.worker,
                NOTIFICATIONS_QUEUE,
            );
            JobQueue::new(conn, config)
        });
        Self { queue }
    }

    /// A notifier that never queues anything (notifications off).
    pub fn off() -> Self {
        Self { queue: None }
    }

    pub fn is_on(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues `notice` unless the event named `event_key` (e.g. `ban:bruteforce:203.0.113.9:
    /// 1764590000`) was queued before, by this worker or another. Failures are logged, not
    /// returned: a lost notice must not fail the job that noticed the event.
    pub async fn send(&self, event_key: &str, notice: &Notice) {
        let Some(queue) = &self.queue else { return };
        match queue
            .clone()
            .push_once(event_key, EVENT_CLAIM_TTL, notice)
            .await
        {
            Ok(true) => tracing::debug!(event_key, "notice queued"),
            Ok(false) => tracing::debug!(event_key, "notice already queued by another worker"),
            Err(error) => tracing::warn!(event_key, "notice not queued: {error}"),
        }
    }
}
