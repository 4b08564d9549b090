//! iptrack's web side.
//!
//! - [`IpTracking`]: actix-web middleware for any application. It resolves the client
//!   address, and after each response hands a [`LogEvent`](iptrack_core::jobs::LogEvent) to
//!   an in-process buffer without waiting on any I/O.
//! - [`LogPipeline`]: that buffer and the batcher task that pushes batches of events onto
//!   the Redis queue `request-logs`, retrying while Redis is away.
//! - [`startup`]: the reference server (`iptrack-web`) built from the two.

mod batcher;
pub mod metrics;
mod middleware;
mod pipeline;
mod routes;
pub mod startup;

pub use middleware::{ClientIp, IpTracking};
pub use pipeline::{LogPipeline, LogSink};
pub use startup::{Application, WebOptions};
