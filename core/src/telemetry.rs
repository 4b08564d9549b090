//! Logging setup: `tracing` with `RUST_LOG` filtering (default: `info`, with apalis and sqlx
//! at `warn`), text or JSON.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::settings::LogFormat;

/// Installs the global subscriber. Safe to call more than once (later calls do nothing),
/// which `iptrack up` relies on when it runs web, worker and scheduler in one process.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // apalis logs every fetch at debug and every worker error at error; keep ours at info.
        EnvFilter::new("info,apalis_core=warn,apalis_redis=warn,sqlx=warn")
    });
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Text => registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init(),
    };
}
