//! Whose forwarding headers are believed when resolving a client's address.

use ipnet::IpNet;

use super::{
    SettingsError,
    parse::{choice, networks, required},
    registry::{Values, Variable},
};
use crate::client_ip::{ClientIpResolver, ProxyHeader};

const TRUSTED_PROXIES: Variable = Variable::unset(
    "IPTRACK_TRUSTED_PROXIES",
    "(none)",
    "comma-separated CIDRs whose forwarding header is believed; none = headers ignored",
);
const PROXY_HEADER: Variable = Variable::new(
    "IPTRACK_PROXY_HEADER",
    "x-forwarded-for",
    "the header those proxies write: `x-forwarded-for` or `forwarded` (RFC 7239)",
);

pub(super) const VARIABLES: &[&Variable] = &[&TRUSTED_PROXIES, &PROXY_HEADER];

/// How the middleware (and forward-auth) finds the client's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIpSettings {
    /// `IPTRACK_TRUSTED_PROXIES`: comma-separated CIDRs of reverse proxies whose forwarding
    /// header is believed. Empty (the default) means forwarding headers are ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// `IPTRACK_PROXY_HEADER`: which header the trusted proxies write, `x-forwarded-for`
    /// (default) or `forwarded`. Only one is read: a header the proxy does not rewrite is
    /// entirely client-controlled and would let a client choose its own address.
    pub proxy_header: ProxyHeader,
}

impl ClientIpSettings {
    pub(super) fn from_values(values: &Values) -> Result<Self, SettingsError> {
        let trusted_proxies = match values.get(&TRUSTED_PROXIES) {
            Some(v) => networks(&TRUSTED_PROXIES, v)?,
            None => Vec::new(),
        };
        let proxy_header = choice(
            &PROXY_HEADER,
            required(&PROXY_HEADER, values.get(&PROXY_HEADER))?,
            &[
                ("x-forwarded-for", ProxyHeader::XForwardedFor),
                ("forwarded", ProxyHeader::Forwarded),
            ],
        )?;
        Ok(Self {
            trusted_proxies,
            proxy_header,
        })
    }

    /// The resolver these settings describe.
    pub fn resolver(&self) -> ClientIpResolver {
        ClientIpResolver::new(self.trusted_proxies.clone(), self.proxy_header)
    }
}

impl Default for ClientIpSettings {
    fn default() -> Self {
        super::from_defaults(Self::from_values)
    }
}
