//! Where rows go.

use super::{
    SecretUrl, SettingsError,
    parse::{invalid, required},
    registry::{Values, Variable},
};

const DATABASE_URL: Variable = Variable::new(
    "DATABASE_URL",
    "sqlite://iptrack.db?mode=rwc",
    "SQLite file, or `postgres://user@host/db`",
)
.url_with_password();

pub(super) const VARIABLES: &[&Variable] = &[&DATABASE_URL];

/// The database every process but the scheduler connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    /// `DATABASE_URL`: SeaORM connection URL. SQLite (`sqlite://file.db?mode=rwc`) for a
    /// single machine, PostgreSQL (`postgres://user:password@host/db`) for production. It
    /// can hold a password, so it is shown only masked.
    pub url: SecretUrl,
}

/// Which database a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

impl DatabaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DatabaseKind::Sqlite => "sqlite",
            DatabaseKind::Postgres => "postgres",
        }
    }
}

impl DatabaseSettings {
    pub(super) fn from_values(values: &Values) -> Result<Self, SettingsError> {
        let v = required(&DATABASE_URL, values.get(&DATABASE_URL))?;
        let known = ["sqlite:", "postgres:", "postgresql:"];
        if !known.iter().any(|scheme| v.starts_with(scheme)) {
            return Err(invalid(
                &DATABASE_URL,
                v,
                "expected a sqlite:// or postgres:// URL",
            ));
        }
        Ok(Self {
            url: SecretUrl::new(v),
        })
    }

    /// The database backend the URL selects, for defaults, log lines and test names.
    pub fn kind(&self) -> DatabaseKind {
        if self.url.expose().starts_with("sqlite:") {
            DatabaseKind::Sqlite
        } else {
            DatabaseKind::Postgres
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        super::from_defaults(Self::from_values)
    }
}
