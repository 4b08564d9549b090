//! iptrack's reference web server (`iptrack-web`), built on the `IpTracking` middleware
//! of `iptrack-middleware`.
//!
//! An application that only wants the middleware depends on `iptrack-middleware`, not on
//! this crate, and so compiles none of the server's admin API, dashboard or login.
//!
//! - [`admin`]: the admin JSON API (`/api/v1/`), on when `IPTRACK_ADMIN_TOKEN` is set.
//! - [`login`]: the reference server's form login (a session cookie), which tells the
//!   middleware who is authenticated.
//! - `dashboard`: the page at `/dashboard`, served with the admin API.
//! - [`live`]: the relay behind `/api/v1/events`, the dashboard's live stream.
//! - [`forward_auth`]: `/forward-auth`, the middleware's decision for reverse proxies
//!   (nginx, Caddy, Traefik, Envoy) in front of apps in any language.
//! - [`startup`]: the reference server built from these and the middleware.
//!
//! The middleware's names are re-exported here too, for code written against this crate.

pub mod admin;
mod dashboard;
pub mod forward_auth;
pub mod live;
pub mod login;
pub mod queue_metrics;
mod routes;
pub mod startup;

pub use iptrack_middleware::{
    ClientIp, Identity, IpTracking, IpTrackingBuilder, LogPipeline, LogSink, RateLimiter,
    SharedBlocklist, TrackingGuard, blocklist, metrics, ratelimit, request_metrics,
};
pub use startup::{Application, WebOptions};
