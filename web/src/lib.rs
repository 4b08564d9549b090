//! iptrack's web side.
//!
//! - [`IpTracking`]: actix-web middleware for any application. It resolves the client
//!   address, and after each response hands a [`LogEvent`](iptrack_core::jobs::LogEvent) to
//!   an in-process buffer without waiting on any I/O.
//! - [`LogPipeline`]: that buffer and the batcher task that pushes batches of events onto
//!   the Redis queue `request-logs`, retrying while Redis is away.
//! - [`blocklist`]: the in-memory blocklist the middleware consults, kept current from the
//!   `blocked_ip` table and Redis change notices.
//! - [`admin`]: the admin JSON API (`/api/v1/`), on when `IPTRACK_ADMIN_TOKEN` is set.
//! - [`ratelimit`]: per-route rate limits counted in Redis (in memory while Redis is
//!   away), applied by the middleware before the app, with the draft `RateLimit` headers.
//! - [`login`]: the reference server's form login (a session cookie), which tells the
//!   middleware who is authenticated.
//! - `dashboard`: the page at `/dashboard`, served with the admin API.
//! - [`forward_auth`]: `/forward-auth`, the middleware's decision for reverse proxies
//!   (nginx, Caddy, Traefik, Envoy) in front of apps in any language.
//! - [`startup`]: the reference server (`iptrack-web`) built from these.

pub mod admin;
mod batcher;
pub mod blocklist;
mod dashboard;
mod decision;
pub mod forward_auth;
pub mod login;
pub mod metrics;
mod middleware;
mod pipeline;
pub mod queue_metrics;
pub mod ratelimit;
pub mod request_metrics;
mod routes;
pub mod startup;

pub use blocklist::SharedBlocklist;
pub use decision::{Ruled, Verdict};
pub use middleware::{ClientIp, IpTracking};
pub use pipeline::{LogPipeline, LogSink};
pub use ratelimit::{Identity, RateLimiter};
pub use startup::{Application, WebOptions};
