//! `GET /api/v1/events`: blocks, unblocks, flags and bans as they happen, as Server-Sent
//! Events, so the dashboard shows a new ban within a second rather than at its next poll.
//!
//! The token travels in the `Authorization` header like every API call (the dashboard
//! reads the stream with `fetch`, not `EventSource`, which cannot send headers), so it
//! never lands in a URL, a proxy's access log or the browser's history.

use std::time::Duration;

use actix_web::{HttpResponse, get, http::header, web::Bytes};
use futures::{StreamExt, stream};
use tokio::sync::broadcast::error::RecvError;

use super::{AdminState, ApiError, ErrorBody, auth::Admin};
use crate::live::{LiveEvent, Viewer};

/// A comment line this often keeps idle proxies and load balancers from closing the
/// stream, and lets a server notice a viewer that has gone.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How soon a client reconnects after the stream ends (SSE's `retry` field).
const RECONNECT_MS: u32 = 2_000;

#[utoipa::path(
    operation_id = "stream_events",
    tag = "events",
    responses(
        (status = 200, description = "A Server-Sent Events stream that stays open: events \
            `block`, `unblock` and `reload` (blocklist changes, data as published on the \
            blocklist channel), `flag` and `ban` (data: the notice, as a webhook receives it), \
            and `resync` (events may have been missed: reload what you show); a comment every \
            15 s while idle", content_type = "text/event-stream", body = String),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 503, description = "Too many streams are open on this instance", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/events")]
pub(super) async fn open(
    _: Admin,
    state: actix_web::web::Data<AdminState>,
) -> Result<HttpResponse, ApiError> {
    let viewer = state.live.watch().ok_or_else(|| {
        ApiError::Busy(format!(
            "{} event streams are open on this instance; close one and retry",
            crate::live::MAX_VIEWERS
        ))
    })?;
    // The first bytes go out at once: the client knows it is connected (and a test knows
    // from when events count), and the reconnect delay is set.
    let hello = Bytes::from(format!("retry: {RECONNECT_MS}\n: connected\n\n"));
    let events = stream::unfold(
        (
            viewer,
            tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE),
        ),
        |(mut viewer, mut keep_alive)| async move {
            let frame = next_frame(&mut viewer, &mut keep_alive).await?;
            Some((
                Ok::<_, std::convert::Infallible>(frame),
                (viewer, keep_alive),
            ))
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // nginx buffers proxied responses unless told not to; a buffered stream is no
        // stream.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream::once(async { Ok(hello) }).chain(events)))
}

/// The next bytes to send, or `None` when the stream ends (the server is stopping, or the
/// relay is gone).
async fn next_frame(viewer: &mut Viewer, keep_alive: &mut tokio::time::Interval) -> Option<Bytes> {
    tokio::select! {
        received = viewer.events.recv() => match received {
            Ok(event) => Some(frame(&event)),
            // The viewer fell behind the buffer: what it missed is gone.
            Err(RecvError::Lagged(_)) => Some(frame(&LiveEvent::resync())),
            Err(RecvError::Closed) => None,
        },
        _ = keep_alive.tick() => Some(Bytes::from_static(b": keep-alive\n\n")),
        _ = viewer.shutdown.cancelled() => None,
    }
}

fn frame(event: &LiveEvent) -> Bytes {
    Bytes::from(format!("event: {}\ndata: {}\n\n", event.name, event.data))
}
