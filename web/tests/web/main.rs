//! The middleware and its log pipeline in process, against a real (private) Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod events;
mod pipeline;
mod ratelimit;
