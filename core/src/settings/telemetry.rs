//! The process's own logs.

use super::{
    SettingsError,
    parse::{choice, required},
    registry::{Values, Variable},
};

const LOG_FORMAT: Variable = Variable::new(
    "IPTRACK_LOG_FORMAT",
    "text",
    "`text` or `json` logs on stderr",
);
/// Read by `tracing-subscriber`'s `EnvFilter` (crate::telemetry), not by the loader; its
/// default is the filter used when it is unset.
pub(crate) const RUST_LOG: Variable = Variable::new(
    "RUST_LOG",
    "info,apalis_core=off,apalis_redis=off,sqlx=warn",
    "log filter (apalis is off because iptrack reports its worker failures itself, once per 30 s while Redis is away). actix-web logs each malformed request head at ERROR (`stream error: …`, target `actix_http::h1::dispatcher`) and answers it 400; add `,actix_http::h1::dispatcher=off` if clients flood the log that way",
)
.environment_only();

pub(super) const VARIABLES: &[&Variable] = &[&LOG_FORMAT, &RUST_LOG];

/// Output format of the process's own logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub(super) fn from_values(values: &Values) -> Result<Self, SettingsError> {
        choice(
            &LOG_FORMAT,
            required(&LOG_FORMAT, values.get(&LOG_FORMAT))?,
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        )
    }
}

impl Default for LogFormat {
    fn default() -> Self {
        super::from_defaults(Self::from_values)
    }
}
