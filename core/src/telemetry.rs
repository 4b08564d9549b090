//! Logging setup: `tracing` with `RUST_LOG` filtering (default: `info`, sqlx at `warn`,
//! apalis off), text or JSON.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::settings::{LogFormat, RUST_LOG};

/// Installs the global subscriber. Safe to call more than once (later calls do nothing),
/// which `iptrack up` relies on when it runs web, worker and scheduler in one process.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // apalis logs every fetch at debug, and each worker's end at warn and error: a
        // Redis outage meant several lines a second. The supervisor reports those ends
        // (through `redis_status`, once per interval), so apalis's own lines are off.
        EnvFilter::new(RUST_LOG.default.unwrap_or("info"))
    });
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_ansi(colour(
                        std::io::stderr().is_terminal(),
                        std::env::var_os("NO_COLOR"),
                    ))
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init(),
    };
}

/// Whether text logs are coloured: only on a terminal, since escape codes are noise in a
/// file, a pipe or a log collector; and never when `NO_COLOR` is set to anything but the
/// empty string (<https://no-color.org>).
fn colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::colour;

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("".into())));
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None));
    }
}
