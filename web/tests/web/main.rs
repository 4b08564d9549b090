//! The middleware and its log pipeline in process, against a real (private) Redis; the
//! canonical path against the router it must agree with.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod embedding;
mod events;
mod pipeline;
mod ratelimit;
mod router_paths;
