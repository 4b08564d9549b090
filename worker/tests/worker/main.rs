//! Worker tests against a real Redis and real databases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auto_block;
mod detect;
mod feed_fetch;
mod flag;
mod geo_fixtures;
mod geo_http;
mod geo_https;
mod geo_mmdb;
mod geo_pipeline;
mod ingest;
mod partitions;
mod queue_edges;
mod rollup;
mod supervisor;
mod webhook;

use std::net::IpAddr;

use chrono::Utc;
use iptrack_core::jobs::{LogEvent, RequestLogBatch};

/// A batch of `n` GET events from `ip`, with paths `/{tag}/{i}`.
pub fn batch(tag: &str, n: usize, ip: &str) -> RequestLogBatch {
    let ip: IpAddr = ip.parse().unwrap();
    RequestLogBatch::new(
        (0..n)
            .map(|i| LogEvent {
                ip,
                timestamp: Utc::now(),
                method: "GET".into(),
                path: format!("/{tag}/{i}"),
                status: 200,
                duration_us: 120,
                user_agent: "curl/8.5.0".into(),
                user_id: None,
                query_string: None,
            })
            .collect(),
    )
}
