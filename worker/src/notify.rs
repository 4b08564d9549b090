//! Hands new flags and bans to the `notifications` queue, for webhook delivery.
//!
//! Whoever notices an event (the streaming rules, the hourly flag job) calls
//! [`Notifier::send`] with the key that names the event; the push claims that key in Redis
//! first, so several workers seeing one event queue one notice. Delivery is a job of its own
//! (`jobs::deliver_notice`), retried with back-off: a slow or failing receiver never holds up
//! the job that noticed the event.

use std::{sync::Arc, time::Duration};

use iptrack_core::{
    jobs::{NOTIFICATIONS_QUEUE, Notice},
    queue::{self, JobQueue},
    settings::Settings,
};
use redis::aio::ConnectionManager;

use crate::jobs::deliver_notice::{Webhook, WebhookSetupError};

/// How long an event's claim is remembered: longer than any redelivery of the job that
/// noticed it, so the same event is never announced twice.
const EVENT_CLAIM_TTL: Duration = Duration::from_secs(7 * 86_400);

/// Queues notices when `IPTRACK_WEBHOOK_URL` is set, and holds the webhook that the
/// `notifications` jobs deliver them to; does nothing otherwise.
#[derive(Debug, Clone)]
pub struct Notifier {
    queue: Option<JobQueue<Notice>>,
    webhook: Option<Arc<Webhook>>,
}

impl Notifier {
    /// Fails on a webhook setting that cannot work (an unreadable
    /// `IPTRACK_GEO_HTTP_CA_FILE`, which the webhook's TLS shares): a bad setting, status 2.
    pub fn from_settings(
        settings: &Settings,
        conn: ConnectionManager,
    ) -> Result<Self, WebhookSetupError> {
        let Some(webhook) = Webhook::from_settings(&settings.notify, &settings.geo)? else {
            return Ok(Self::off());
        };
        let config = queue::queue_config(
            &settings.redis.prefix,
            &settings.worker,
            NOTIFICATIONS_QUEUE,
        );
        Ok(Self {
            queue: Some(JobQueue::new(conn, config)),
            webhook: Some(Arc::new(webhook)),
        })
    }

    /// A notifier that never queues anything (notifications off).
    pub fn off() -> Self {
        Self {
            queue: None,
            webhook: None,
        }
    }

    /// Where the `notifications` jobs deliver; `None` when notifications are off.
    pub fn webhook(&self) -> Option<Arc<Webhook>> {
        self.webhook.clone()
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
