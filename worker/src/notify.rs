//! Announces new flags and bans: on the Redis notices channel, for the dashboards watching
//! live (always), and to the `notifications` queue, for webhook delivery (when a webhook
//! is set).
//!
//! Whoever notices an event (the streaming rules, the hourly flag job) calls
//! [`Notifier::send`] with the key that names the event; the push claims that key in Redis
//! first, so several workers seeing one event queue one notice. Delivery is a job of its own
//! (`jobs::deliver_notice`), retried with back-off: a slow or failing receiver never holds up
//! the job that noticed the event. The live announcement is a plain `PUBLISH`: a dashboard
//! that misses one (or sees one twice) only refreshes its lists.

use std::{sync::Arc, time::Duration};

use iptrack_core::{
    jobs::{self, NOTIFICATIONS_QUEUE, Notice},
    queue::{self, JobQueue},
    settings::Settings,
};
use redis::aio::ConnectionManager;

use crate::jobs::deliver_notice::{Webhook, WebhookSetupError};

/// How long an event's claim is remembered: longer than any redelivery of the job that
/// noticed it, so the same event is never announced twice.
const EVENT_CLAIM_TTL: Duration = Duration::from_secs(7 * 86_400);

/// Publishes notices for live dashboards; queues them too when `IPTRACK_WEBHOOK_URL` is
/// set, and holds the webhook that the `notifications` jobs deliver them to.
#[derive(Clone)]
pub struct Notifier {
    queue: Option<JobQueue<Notice>>,
    webhook: Option<Arc<Webhook>>,
    /// The connection and channel of the live announcement; `None` in tests of the jobs
    /// that run without Redis.
    live: Option<(ConnectionManager, String)>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("webhook", &self.webhook)
            .field(
                "live_channel",
                &self.live.as_ref().map(|(_, channel)| channel),
            )
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Fails on a webhook setting that cannot work (an unreadable
    /// `IPTRACK_GEO_HTTP_CA_FILE`, which the webhook's TLS shares): a bad setting, status 2.
    pub fn from_settings(
        settings: &Settings,
        conn: ConnectionManager,
    ) -> Result<Self, WebhookSetupError> {
        let live = Some((conn.clone(), jobs::notices_channel(&settings.redis.prefix)));
        let Some(webhook) = Webhook::from_settings(&settings.notify, &settings.geo)? else {
            return Ok(Self {
                live,
                ..Self::off()
            });
        };
        let config = queue::queue_config(
            &settings.redis.prefix,
            &settings.worker,
            NOTIFICATIONS_QUEUE,
        );
        Ok(Self {
            queue: Some(JobQueue::new(conn, config)),
            webhook: Some(Arc::new(webhook)),
            live,
        })
    }

    /// A notifier that announces nothing, live or by webhook.
    pub fn off() -> Self {
        Self {
            queue: None,
            webhook: None,
            live: None,
        }
    }

    /// Where the `notifications` jobs deliver; `None` when notifications are off.
    pub fn webhook(&self) -> Option<Arc<Webhook>> {
        self.webhook.clone()
    }

    /// Whether webhook notifications are on (and so `notifications` jobs to run).
    pub fn is_on(&self) -> bool {
        self.queue.is_some()
    }

    /// Publishes `notice` for live dashboards, and queues it for the webhook unless the
    /// event named `event_key` (e.g. `ban:bruteforce:203.0.113.9:1764590000`) was queued
    /// before, by this worker or another. Failures are logged, not returned: a lost notice
    /// must not fail the job that noticed the event.
    pub async fn send(&self, event_key: &str, notice: &Notice) {
        if let Some((conn, channel)) = &self.live {
            publish(conn.clone(), channel, event_key, notice).await;
        }
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

async fn publish(mut conn: ConnectionManager, channel: &str, event_key: &str, notice: &Notice) {
    let message = match serde_json::to_string(notice) {
        Ok(message) => message,
        Err(error) => {
            tracing::warn!(event_key, "notice not published: {error}");
            return;
        }
    };
    if let Err(error) = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(message)
        .query_async::<i64>(&mut conn)
        .await
    {
        tracing::warn!(event_key, "notice not published: {error}");
    }
}
