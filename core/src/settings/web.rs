//! The web process's public listener.

use std::net::SocketAddr;

use super::{
    SettingsError,
    parse::{invalid, required},
    registry::{Values, Variable},
};

const BIND: Variable = Variable::new("IPTRACK_BIND", "127.0.0.1:8000", "web listen address");

pub(super) const VARIABLES: &[&Variable] = &[&BIND];

/// The reference server's (and the embedding example's) listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebSettings {
    /// `IPTRACK_BIND`: address the web server listens on (port 0: any free port).
    pub bind: SocketAddr,
}

impl WebSettings {
    pub(super) fn from_values(values: &Values) -> Result<Self, SettingsError> {
        let v = required(&BIND, values.get(&BIND))?;
        let bind = v
            .parse()
            .map_err(|e| invalid(&BIND, v, format!("{e}; expected host:port")))?;
        Ok(Self { bind })
    }
}

impl Default for WebSettings {
    fn default() -> Self {
        super::from_defaults(Self::from_values)
    }
}
