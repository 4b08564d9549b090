//! The optional TOML config file (`--config FILE`, `IPTRACK_CONFIG`): the same keys as the
//! environment variables.

use std::{collections::BTreeMap, path::Path};

use super::{KNOWN_VARIABLES, SettingsError};

/// The file's values as text, keyed by variable name. A key that names no variable is
/// refused, so a typo does not silently leave a default in force.
pub(super) fn read(path: &Path) -> Result<BTreeMap<String, String>, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    // The parser's own message quotes the offending line, which may hold a secret
    // (`DATABASE_URL = postgres://app:pw@db` without quotes): say only where and what.
    let table: toml::Table = text.parse().map_err(|error: toml::de::Error| {
        let line = error.span().map_or(0, |span| {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            before.iter().filter(|&&b| b == b'\n').count()
        }) + 1;
        SettingsError::ParseFile {
            path: path.to_owned(),
            line,
            message: error.message().trim().to_owned(),
        }
    })?;
    let mut values = BTreeMap::new();
    for (key, value) in table {
        if !KNOWN_VARIABLES.contains(&key.as_str()) {
            return Err(SettingsError::UnknownKey {
                path: path.to_owned(),
                key,
            });
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => {
                // A list of CIDRs reads naturally as a TOML array.
                let parts: Option<Vec<String>> = items
                    .into_iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect();
                parts
                    .ok_or_else(|| SettingsError::UnsupportedValue {
                        path: path.to_owned(),
                        key: key.clone(),
                    })?
                    .join(",")
            }
            _ => {
                return Err(SettingsError::UnsupportedValue {
                    path: path.to_owned(),
                    key,
                });
            }
        };
        values.insert(key, text);
    }
    Ok(values)
}
