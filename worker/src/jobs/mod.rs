//! One module per job; each exposes the apalis handler and the plain function it wraps.

pub mod flag_suspicious_ips;
pub mod geolocate;
pub mod purge_logs;
pub mod request_logs;
