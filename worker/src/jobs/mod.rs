//! One module per job; each exposes the apalis handler and the plain function it wraps.

pub mod request_logs;
