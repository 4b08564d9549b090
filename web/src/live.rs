//! Live events for the dashboard: the blocklist changes and the flag and ban notices that
//! reach this web instance over Redis, relayed to every open `GET /api/v1/events` stream.
//!
//! One subscription per instance, not one per viewer: a task subscribes to the blocklist
//! channel (`iptrack_core::blocklist::change_channel`, which every block and unblock is
//! announced on, the rules' bans included) and the notices channel
//! (`iptrack_core::jobs::notices_channel`, new flags and bans from the workers) and hands
//! each message to a broadcast channel the streams read. Events carry what the dashboard
//! needs to know that something changed; it then reads the tables, so a missed event costs
//! only the wait for the next poll. After a lost subscription the task says `resync`: the
//! events published meanwhile are gone, and a viewer should reload what it shows.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use iptrack_core::{
    blocklist::{BlocklistChange, change_channel},
    jobs::{Notice, notices_channel},
    settings::RedisSettings,
};
use tokio::sync::{Semaphore, broadcast};
use tokio_util::sync::CancellationToken;

/// Events kept for a viewer that reads slowly; past that it gets `resync` instead of the
/// ones it missed.
const BUFFERED_EVENTS: usize = 256;
/// Streams open at once per instance. Each holds a connection; an operator has a few tabs,
/// so the bound only stops a token holder's script from exhausting the instance's sockets.
pub const MAX_VIEWERS: usize = 64;
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// One event of the stream: its SSE name and its JSON data (one line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveEvent {
    pub name: &'static str,
    pub data: String,
}

impl LiveEvent {
    /// The viewer may have missed events and should reload what it shows.
    pub fn resync() -> Self {
        Self {
            name: "resync",
            data: "{}".to_owned(),
        }
    }

    /// The event a blocklist-channel message stands for; `None` for one that is not a
    /// change (nothing else is published there, so that is a bug or a stranger).
    fn from_blocklist(payload: &[u8]) -> Option<Self> {
        let change: BlocklistChange = serde_json::from_slice(payload).ok()?;
        let name = match change {
            BlocklistChange::Block { .. } => "block",
            BlocklistChange::Unblock { .. } => "unblock",
            BlocklistChange::Reload => "reload",
        };
        // Re-encoded rather than passed on: serde_json's compact form never holds a line
        // break, which would end an SSE event early and let text from the channel forge
        // fields of the next one.
        let data = serde_json::to_string(&change).ok()?;
        Some(Self { name, data })
    }

    fn from_notice(payload: &[u8]) -> Option<Self> {
        let notice: Notice = serde_json::from_slice(payload).ok()?;
        let name = match notice.kind {
            iptrack_core::jobs::NoticeKind::Flag => "flag",
            iptrack_core::jobs::NoticeKind::Ban => "ban",
        };
        let data = serde_json::to_string(&notice).ok()?;
        Some(Self { name, data })
    }
}

/// The relay: a handle to subscribe to, shared by every stream of this instance.
#[derive(Debug, Clone)]
pub struct LiveEvents {
    sender: broadcast::Sender<LiveEvent>,
    viewers: Arc<Semaphore>,
    shutdown: CancellationToken,
}

/// A viewer's subscription; its permit returns when it is dropped (the stream ended).
#[derive(Debug)]
pub struct Viewer {
    pub events: broadcast::Receiver<LiveEvent>,
    /// Ends the stream when the server stops, so a graceful shutdown does not wait for
    /// viewers that would never leave.
    pub shutdown: CancellationToken,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl LiveEvents {
    /// Starts relaying; the task ends when `shutdown` is cancelled.
    pub fn start(redis: &RedisSettings, shutdown: CancellationToken) -> Self {
        let (sender, _) = broadcast::channel(BUFFERED_EVENTS);
        tokio::spawn(relay(redis.clone(), sender.clone(), shutdown.clone()));
        Self {
            sender,
            viewers: Arc::new(Semaphore::new(MAX_VIEWERS)),
            shutdown,
        }
    }

    /// A new viewer, or `None` when [`MAX_VIEWERS`] streams are open.
    pub fn watch(&self) -> Option<Viewer> {
        let permit = self.viewers.clone().try_acquire_owned().ok()?;
        Some(Viewer {
            events: self.sender.subscribe(),
            shutdown: self.shutdown.clone(),
            _permit: permit,
        })
    }
}

async fn relay(
    redis: RedisSettings,
    sender: broadcast::Sender<LiveEvent>,
    shutdown: CancellationToken,
) {
    let blocklist = change_channel(&redis.prefix);
    let notices = notices_channel(&redis.prefix);
    // Whether a subscription was lost or refused since the last one; the next one then
    // tells viewers to resync.
    let mut interrupted = false;
    let mut reported = false;
    loop {
        match subscribe(&redis, &[&blocklist, &notices]).await {
            Ok(pubsub) => {
                if interrupted {
                    tracing::info!("live events flow again");
                    // Whatever was published while we were away is lost.
                    let _ = sender.send(LiveEvent::resync());
                }
                reported = false;
                let mut messages = pubsub.into_on_message();
                loop {
                    tokio::select! {
                        message = messages.next() => match message {
                            Some(message) => {
                                let payload = message.get_payload_bytes();
                                let event = if message.get_channel_name() == blocklist {
                                    LiveEvent::from_blocklist(payload)
                                } else {
                                    LiveEvent::from_notice(payload)
                                };
                                match event {
                                    // No viewer is not an error.
                                    Some(event) => { let _ = sender.send(event); }
                                    None => tracing::warn!(
                                        channel = message.get_channel_name(),
                                        "ignoring a malformed live notice"
                                    ),
                                }
                            }
                            None => break, // connection lost: subscribe again
                        },
                        _ = shutdown.cancelled() => return,
                    }
                }
                interrupted = true;
            }
            Err(error) => {
                interrupted = true;
                if !reported {
                    reported = true;
                    iptrack_core::redis_status::report("live events for the dashboard", &error);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RESUBSCRIBE_DELAY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn subscribe(
    redis: &RedisSettings,
    channels: &[&str],
) -> redis::RedisResult<redis::aio::PubSub> {
    let client = iptrack_core::redis_client::client(redis)?;
    let mut pubsub = tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub())
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out")))??;
    for channel in channels {
        pubsub.subscribe(*channel).await?;
    }
    Ok(pubsub)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_blocklist_change_becomes_an_event_named_after_its_operation() {
        let event = LiveEvent::from_blocklist(
            br#"{"op":"block","network":"203.0.113.9/32","expires_at":null}"#,
        )
        .unwrap();
        assert_eq!(event.name, "block");
        assert!(event.data.contains("203.0.113.9/32"));
        assert_eq!(
            LiveEvent::from_blocklist(br#"{"op":"reload"}"#)
                .unwrap()
                .name,
            "reload"
        );
    }

    #[test]
    fn text_that_is_not_a_change_or_notice_is_no_event() {
        assert_eq!(
            LiveEvent::from_blocklist(b"data: forged\n\nevent: ban"),
            None
        );
        assert_eq!(LiveEvent::from_notice(br#"{"kind":"ban"}"#), None);
    }

    #[test]
    fn event_data_is_one_line_whatever_the_notice_holds() {
        let notice = format!(
            r#"{{"id":"{}","kind":"flag","address":"203.0.113.9","rule":"r",
                "reason":"line one\nevent: ban\ndata: forged","at":"2026-12-01T00:00:00Z"}}"#,
            uuid_text()
        );
        let event = LiveEvent::from_notice(notice.as_bytes()).unwrap();
        assert_eq!(event.name, "flag");
        assert!(!event.data.contains('\n'), "{}", event.data);
        assert!(!event.data.contains('\r'));
    }

    fn uuid_text() -> &'static str {
        "67e55044-10b1-426f-9247-bb680e5fe0c8"
    }
}
