//! The operators' side of the web process: the admin API's token and its own listener.

use std::net::SocketAddr;

use secrecy::SecretString;

use super::{
    SettingsError,
    parse::invalid,
    registry::{Values, Variable},
};

const ADMIN_TOKEN: Variable = Variable::unset(
    "IPTRACK_ADMIN_TOKEN",
    "(none: API off)",
    "bearer token of the admin API, at least 16 characters",
)
.secret();
const ADMIN_BIND: Variable = Variable::unset(
    "IPTRACK_ADMIN_BIND",
    "(none: on `IPTRACK_BIND`)",
    "own listen address for the admin API, dashboard and `/metrics`, which then leave the public listener; never logged, limited or blocked (the API still needs the token). Keep it private, e.g. `127.0.0.1:8001`",
);

pub(super) const VARIABLES: &[&Variable] = &[&ADMIN_TOKEN, &ADMIN_BIND];

/// The admin API (`/api/v1/`), the dashboard and `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct AdminSettings {
    /// `IPTRACK_ADMIN_TOKEN`: bearer token of the admin API (`/api/v1/`). Unset, the API
    /// is off (404). At least 16 characters.
    pub token: Option<SecretString>,
    /// `IPTRACK_ADMIN_BIND`: when set, the admin API, the dashboard and `/metrics` are
    /// served on a listener of their own at this address, and no longer on `IPTRACK_BIND`.
    /// Nothing there is logged, rate-limited or blocked (the API still needs the token), so
    /// an operator cannot lock themselves out; keep it on a private interface.
    pub bind: Option<SocketAddr>,
}

impl AdminSettings {
    /// `public_bind` is `IPTRACK_BIND`, which the admin listener must not take.
    pub(super) fn from_values(
        values: &Values,
        public_bind: SocketAddr,
    ) -> Result<Self, SettingsError> {
        let token = match values.get(&ADMIN_TOKEN) {
            Some(v) if v.len() < 16 => {
                return Err(invalid(&ADMIN_TOKEN, v, "must be at least 16 characters"));
            }
            Some(v) => Some(SecretString::from(v.to_owned())),
            None => None,
        };
        let bind = match values.get(&ADMIN_BIND) {
            Some(v) => {
                let bind: SocketAddr = v
                    .parse()
                    .map_err(|e| invalid(&ADMIN_BIND, v, format!("{e}; expected host:port")))?;
                if bind == public_bind && bind.port() != 0 {
                    return Err(invalid(
                        &ADMIN_BIND,
                        v,
                        "must differ from IPTRACK_BIND (the point is a listener of its own)",
                    ));
                }
                Some(bind)
            }
            None => None,
        };
        Ok(Self { token, bind })
    }
}
