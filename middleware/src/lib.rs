//! The `IpTracking` actix-web middleware, for any application.
//!
//! It resolves each client's address (forwarding headers only from trusted proxies),
//! answers 403 to blocked clients and 429 over a rate limit, and after each response hands
//! a [`LogEvent`](iptrack_core::jobs::LogEvent) to an in-process buffer without waiting on
//! any I/O; a batcher task pushes batches of them onto the Redis queue `request-logs`,
//! which `iptrack-worker` writes to the database.
//!
//! Start here: [`IpTracking::builder`] takes a small configuration and returns a
//! [`TrackingGuard`], which holds the background tasks, hands out the middleware, and
//! delivers the buffered events when you call [`TrackingGuard::shutdown`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use actix_web::{App, HttpServer};
//! use iptrack_middleware::IpTracking;
//!
//! let tracking = IpTracking::builder()
//!     .redis_url("redis://127.0.0.1:6379")
//!     .build()
//!     .await?;
//! let middleware = tracking.middleware();
//! HttpServer::new(move || App::new().wrap(middleware.clone()))
//!     .bind("127.0.0.1:8000")?
//!     .run()
//!     .await?;
//! tracking.shutdown().await; // after the server: no new events, deliver the buffer
//! # Ok(()) }
//! ```
//!
//! This crate holds the middleware's parts and nothing of the reference server (login,
//! admin API, dashboard live in `iptrack-web`):
//! - [`IpTracking`] and [`ClientIp`]: the middleware and the address it resolved.
//! - [`LogPipeline`]: the buffer and its batcher.
//! - [`blocklist`]: the in-memory blocklist, kept current from `blocked_ip` and Redis notices.
//! - [`ratelimit`]: per-route limits counted in Redis (in memory while Redis is away).
//! - [`metrics`], [`request_metrics`]: the counters the reference server renders at
//!   `/metrics`.

mod batcher;
pub mod blocklist;
mod decision;
pub mod metrics;
mod middleware;
mod pipeline;
pub mod ratelimit;
pub mod request_metrics;
mod tracking;

pub use blocklist::SharedBlocklist;
pub use decision::{Ruled, Verdict};
pub use middleware::{ClientIp, IpTracking, RequestFacts};
pub use pipeline::{FINAL_FLUSH_GRACE, LogPipeline, LogSink};
pub use ratelimit::{Identity, RateLimiter};
pub use tracking::{BuildError, IpTrackingBuilder, TrackingGuard};
