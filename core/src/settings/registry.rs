//! The one list of the variables iptrack reads. Each is declared once, beside the settings
//! it fills (`database.rs`, `geo.rs`, ...), with its name, its default and the line that
//! documents it; from that declaration come the loader's lookups and defaults, the config
//! file's key check, README's configuration table and `.env.example` (`docs.rs`).

use std::{collections::BTreeMap, sync::LazyLock};

/// How much of a variable's value may be shown in messages and `Debug` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// Shown as written.
    Public,
    /// Never shown (tokens, keys, passwords).
    Secret,
    /// A URL that may hold a password: shown with the password replaced by `***`.
    UrlWithPassword,
}

/// One environment variable (and config-file key).
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    pub name: &'static str,
    /// The value used when the variable is unset or empty, parsed like a user's value, so
    /// the documented default is the default in force. `None`: unset means off or none.
    pub default: Option<&'static str>,
    /// What README's default column says when the bare value does not tell the whole story
    /// (or there is none).
    pub shown_default: Option<&'static str>,
    /// README's description (markdown), also the comment above it in `.env.example`.
    pub doc: &'static str,
    pub exposure: Exposure,
    /// `.env.example` writes it commented out: its mere presence changes behaviour.
    pub commented_in_example: bool,
    /// Read from the environment by something other than the settings loader (`RUST_LOG`):
    /// documented, but not a config-file key.
    pub environment_only: bool,
}

impl Variable {
    /// A variable with a default value.
    pub const fn new(name: &'static str, default: &'static str, doc: &'static str) -> Self {
        Self {
            name,
            default: Some(default),
            shown_default: None,
            doc,
            exposure: Exposure::Public,
            commented_in_example: false,
            environment_only: false,
        }
    }

    /// A variable that is off or empty unless set; `shown` says what that means.
    pub const fn unset(name: &'static str, shown: &'static str, doc: &'static str) -> Self {
        Self {
            name,
            default: None,
            shown_default: Some(shown),
            doc,
            exposure: Exposure::Public,
            commented_in_example: false,
            environment_only: false,
        }
    }

    pub const fn shown_as(mut self, shown: &'static str) -> Self {
        self.shown_default = Some(shown);
        self
    }

    pub const fn secret(mut self) -> Self {
        self.exposure = Exposure::Secret;
        self
    }

    pub const fn url_with_password(mut self) -> Self {
        self.exposure = Exposure::UrlWithPassword;
        self
    }

    pub const fn commented_in_example(mut self) -> Self {
        self.commented_in_example = true;
        self
    }

    pub const fn environment_only(mut self) -> Self {
        self.environment_only = true;
        self
    }

    /// `value` as it may appear in a message about this variable.
    pub fn shown_value(&self, value: &str) -> String {
        match self.exposure {
            _ if value.is_empty() => String::new(),
            Exposure::Public => value.to_owned(),
            Exposure::Secret => "(hidden)".to_owned(),
            Exposure::UrlWithPassword => super::secret_url::redact(value),
        }
    }
}

/// Every variable, in the order README and `.env.example` list them: component by
/// component.
pub static VARIABLES: LazyLock<Vec<&'static Variable>> = LazyLock::new(|| {
    [
        super::database::VARIABLES,
        super::redis::VARIABLES,
        super::web::VARIABLES,
        super::client_ip::VARIABLES,
        super::admin::VARIABLES,
        super::blocklist::VARIABLES,
        super::feeds::VARIABLES,
        super::pipeline::VARIABLES,
        super::worker::VARIABLES,
        super::schedules::VARIABLES,
        super::telemetry::VARIABLES,
        super::rate_limit::VARIABLES,
        super::login::VARIABLES,
        super::geo::VARIABLES,
        super::notify::VARIABLES,
        super::detect::VARIABLES,
    ]
    .concat()
});

/// The names the settings loader reads: the environment variables looked up, and the only
/// keys a config file may hold (a misspelt key is refused rather than leaving a default in
/// force).
pub static KNOWN_VARIABLES: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    VARIABLES
        .iter()
        .filter(|v| !v.environment_only)
        .map(|v| v.name)
        .collect()
});

/// The raw values given (config file, then environment), looked up by declaration.
#[derive(Default)]
pub(crate) struct Values {
    given: BTreeMap<String, String>,
}

impl Values {
    pub(crate) fn new(given: BTreeMap<String, String>) -> Self {
        Self { given }
    }

    /// The value given for `var`, trimmed; empty counts as not given.
    pub(crate) fn given(&self, var: &Variable) -> Option<&str> {
        debug_assert!(
            KNOWN_VARIABLES.contains(&var.name),
            "{} is read but not registered in settings::registry::VARIABLES",
            var.name
        );
        self.given
            .get(var.name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The value in force: the one given, else the default.
    pub(crate) fn get(&self, var: &Variable) -> Option<&str> {
        self.given(var).or(var.default)
    }
}
