//! `GET /api/v1/events`, the dashboard's live stream, through the real binaries: a manual
//! block, and a detection rule's flag and ban, reach an open stream as they happen; the
//! stream needs the token; a stopping web ends it rather than waiting for it.

use std::time::Duration;

use futures::StreamExt;
use iptrack_tests::{TestDb, TestRedis, both_backends, process::Service};
use serde_json::{Value, json};

use crate::{ADMIN_TOKEN, Stack, terminate};

/// An open event stream, read frame by frame.
struct EventStream {
    chunks: futures::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buffer: String,
    /// The server closed the stream (as opposed to it being quiet).
    ended: bool,
}

/// One parsed frame: its `event:` name and `data:` JSON.
#[derive(Debug)]
struct Event {
    name: String,
    data: Value,
}

impl EventStream {
    async fn open(stack: &Stack) -> Self {
        let response = reqwest::Client::new()
            .get(stack.url("/api/v1/events"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let mut stream = Self {
            chunks: response
                .bytes_stream()
                .map(|chunk| chunk.map(|bytes| bytes.to_vec()))
                .boxed(),
            buffer: String::new(),
            ended: false,
        };
        // The server says hello at once, so events from here on are ours to see.
        let hello = stream.next_frame(Duration::from_secs(5)).await.unwrap();
        assert!(hello.contains(": connected"), "{hello:?}");
        stream
    }

    /// The next complete frame (up to its blank line), or `None` when the stream ended or
    /// `limit` passed.
    async fn next_frame(&mut self, limit: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame = self.buffer[..end].to_owned();
                self.buffer.drain(..end + 2);
                return Some(frame);
            }
            match tokio::time::timeout_at(deadline, self.chunks.next()).await {
                Ok(Some(Ok(chunk))) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(_) => {
                    self.ended = true;
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    /// Events until one named `name` whose data satisfies `wanted`, within `limit`.
    async fn wait_for(
        &mut self,
        name: &str,
        limit: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> Event {
        let deadline = tokio::time::Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(frame) = self.next_frame(left).await else {
                panic!("no `{name}` event within {limit:?}; saw {seen:?}");
            };
            if let Some(event) = parse(&frame) {
                if event.name == name && wanted(&event.data) {
                    return event;
                }
                seen.push(event);
            }
        }
    }
}

/// A frame's event, or `None` for a comment (keep-alive, hello).
fn parse(frame: &str) -> Option<Event> {
    let mut name = None;
    let mut data = None;
    for line in frame.lines() {
        if let Some(value) = line.strip_prefix("event: ") {
            name = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("data: ") {
            data = Some(serde_json::from_str(value).expect("event data is one line of JSON"));
        }
    }
    Some(Event {
        name: name?,
        data: data.expect("an event carries data"),
    })
}

fn live_stack(db: &TestDb, redis: &TestRedis) -> Stack {
    Stack::new(db, redis)
        .with("IPTRACK_ADMIN_TOKEN", ADMIN_TOKEN)
        .with("IPTRACK_RATE_LIMITS", "off")
        .with("IPTRACK_BATCH_MAX_WAIT_MS", "10")
        .with(
            "IPTRACK_DETECT_RULES",
            "guess=POST /login status=401 count=3 window=1m ban=1m",
        )
        .with("IPTRACK_DEMO_USER", "alice:correct horse")
}

both_backends!(
    blocks_flags_and_bans_reach_an_open_event_stream_as_they_happen,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let stack = live_stack(&db, &redis);
        let _web = Service::start("iptrack-web", &[], &stack.env);
        let _worker = Service::start("iptrack-worker", &[], &stack.env);
        stack.wait_until_listening().await;
        let client = reqwest::Client::new();
        let mut events = EventStream::open(&stack).await;

        // A block made elsewhere (here the API; the CLI and the rules go through the same
        // service) is on the stream within a second or two.
        let response = client
            .post(stack.url("/api/v1/blocked"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"address": "203.0.113.0/24", "reason": "test", "duration_secs": 60}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let block = events
            .wait_for("block", Duration::from_secs(5), |data| {
                data["network"] == "203.0.113.0/24"
            })
            .await;
        assert!(block.data["expires_at"].is_string(), "{:?}", block.data);

        // A password guesser: the rule bans it and flags it; both notices arrive, the ban
        // as a blocklist change too.
        let guesser = "198.51.100.77";
        for _ in 0..3 {
            let status = client
                .post(stack.url("/login"))
                .header("x-forwarded-for", guesser)
                .form(&[("username", "alice"), ("password", "guess")])
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 401);
        }
        let limit = Duration::from_secs(15);
        let ban = events
            .wait_for("ban", limit, |data| data["address"] == guesser)
            .await;
        assert_eq!(ban.data["rule"], "guess");
        assert!(ban.data["expires_at"].is_string());
        events
            .wait_for("flag", limit, |data| data["address"] == guesser)
            .await;

        let response = client
            .delete(stack.url("/api/v1/blocked?address=203.0.113.0/24"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
        events
            .wait_for("unblock", Duration::from_secs(5), |data| {
                data["network"] == "203.0.113.0/24"
            })
            .await;
    }
);

both_backends!(
    the_event_stream_needs_the_token_and_ends_when_the_web_stops,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let stack = live_stack(&db, &redis);
        let mut web = Service::start("iptrack-web", &[], &stack.env);
        stack.wait_until_listening().await;
        let client = reqwest::Client::new();
        for token in [None, Some("wrong-token"), Some(&ADMIN_TOKEN[1..])] {
            let mut request = client.get(stack.url("/api/v1/events"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "token {token:?}");
        }

        let mut events = EventStream::open(&stack).await;
        terminate(web.pid());
        // The stream ends (rather than holding the graceful stop for its 10 s timeout),
        // and the web exits.
        while events.next_frame(Duration::from_secs(8)).await.is_some() {}
        assert!(events.ended, "the stream was still open 8 s after SIGTERM");
        let status = tokio::task::spawn_blocking(move || web.wait_for_exit(Duration::from_secs(8)))
            .await
            .unwrap();
        assert!(
            status.is_some_and(|status| status.success()),
            "iptrack-web did not stop cleanly with a stream open: {status:?}"
        );
    }
);
