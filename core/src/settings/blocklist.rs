//! The blocklist as each web instance holds it, and the addresses it never applies to.

use std::time::Duration;

use ipnet::IpNet;

use super::{
    SettingsError,
    parse::{bounded, networks, required},
    registry::{Values, Variable},
};

const SAFELIST: Variable = Variable::unset(
    "IPTRACK_SAFELIST",
    "(none)",
    "comma-separated CIDRs that are never blocked",
);
const BLOCKLIST_RELOAD_SECS: Variable = Variable::new(
    "IPTRACK_BLOCKLIST_RELOAD_SECS",
    "60",
    "each web instance reloads the whole blocklist this often (repairs missed notices)",
);

pub(super) const VARIABLES: &[&Variable] = &[&SAFELIST, &BLOCKLIST_RELOAD_SECS];

/// What the blocklist matcher (web) and the blocklist service (everywhere) need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlocklistSettings {
    /// `IPTRACK_SAFELIST`: comma-separated CIDRs that blocks (and rate limits) never apply
    /// to, e.g. your monitoring and office. Canonical: an IPv4-mapped IPv6 entry
    /// (`::ffff:192.0.2.1`, `::ffff:192.0.2.0/120`) is kept as the IPv4 address or network
    /// it means, since client addresses are compared in that form.
    pub safelist: Vec<IpNet>,
    /// `IPTRACK_BLOCKLIST_RELOAD_SECS`: each web instance reloads the whole blocklist this
    /// often, repairing any change notice it missed. Default 60.
    pub reload: Duration,
}

impl BlocklistSettings {
    pub(super) fn from_values(values: &Values) -> Result<Self, SettingsError> {
        let safelist = match values.get(&SAFELIST) {
            Some(v) => networks(&SAFELIST, v)?
                .into_iter()
                .map(crate::blocklist::canonical_network)
                .collect(),
            None => Vec::new(),
        };
        let reload = required(&BLOCKLIST_RELOAD_SECS, values.get(&BLOCKLIST_RELOAD_SECS))?;
        Ok(Self {
            safelist,
            reload: Duration::from_secs(bounded(&BLOCKLIST_RELOAD_SECS, reload, 1, 86_400)?),
        })
    }
}

impl Default for BlocklistSettings {
    fn default() -> Self {
        super::from_defaults(Self::from_values)
    }
}
