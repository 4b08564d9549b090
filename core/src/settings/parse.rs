//! Parsers shared by the settings of several components. Each error names the variable
//! and shows its value only as far as the variable allows (`Variable::shown_value`).

use std::{net::IpAddr, str::FromStr};

use ipnet::IpNet;

use super::{SettingsError, registry::Variable};

pub(crate) fn invalid(var: &Variable, value: &str, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        variable: var.name,
        value: var.shown_value(value),
        reason: reason.into(),
    }
}

/// Parses comma-separated CIDRs; a bare address means that one host. Host bits are
/// cleared (`10.1.2.3/8` is `10.0.0.0/8`).
pub fn parse_networks(v: &str) -> Result<Vec<IpNet>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<IpNet>()
                .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| format!("{part:?} is not an IP address or CIDR network"))
        })
        .collect()
}

pub(crate) fn networks(var: &Variable, v: &str) -> Result<Vec<IpNet>, SettingsError> {
    parse_networks(v).map_err(|reason| invalid(var, v, reason))
}

pub(crate) fn boolean(var: &Variable, v: &str) -> Result<bool, SettingsError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(invalid(var, v, "expected true or false")),
    }
}

pub(crate) fn bounded<T>(var: &Variable, v: &str, min: T, max: T) -> Result<T, SettingsError>
where
    T: FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let reason = || format!("expected a whole number from {min} to {max}");
    let n: T = v.parse().map_err(|_| invalid(var, v, reason()))?;
    if n < min || n > max {
        return Err(invalid(var, v, reason()));
    }
    Ok(n)
}

/// One of `choices` (`(spelling, value)`), ignoring case.
pub(crate) fn choice<T: Copy>(
    var: &Variable,
    v: &str,
    choices: &[(&str, T)],
) -> Result<T, SettingsError> {
    let lower = v.to_ascii_lowercase();
    choices
        .iter()
        .find(|(spelling, _)| *spelling == lower)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(spelling, _)| *spelling).collect();
            let expected = match names.split_last() {
                Some((last, [])) => (*last).to_owned(),
                Some((last, rest)) if rest.len() == 1 => format!("{} or {last}", rest[0]),
                Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                None => String::new(),
            };
            invalid(var, v, format!("expected {expected}"))
        })
}

/// A value that must be present: its default, or one the user gave. Only a declaration
/// without a default can be missing, and those are not read through this.
pub(crate) fn required<'v>(var: &Variable, v: Option<&'v str>) -> Result<&'v str, SettingsError> {
    v.ok_or_else(|| invalid(var, "", "required"))
}
