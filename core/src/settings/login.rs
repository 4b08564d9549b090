//! The reference server's login: its session cookie's key and its one account. Not part
//! of the middleware; the login decides who is authenticated, and so which of a rate-limit
//! rule's two limits applies.

use secrecy::SecretString;

use super::{
    SettingsError,
    parse::invalid,
    registry::{Values, Variable},
};

const SESSION_KEY: Variable = Variable::unset(
    "IPTRACK_SESSION_KEY",
    "(random per process)",
    "secret, at least 32 characters, for the reference server's session cookie; the same on every web instance",
)
.secret();
const DEMO_USER: Variable = Variable::unset(
    "IPTRACK_DEMO_USER",
    "(none: logins fail)",
    "`name:password` of the reference server's one account",
)
.secret();

pub(super) const VARIABLES: &[&Variable] = &[&SESSION_KEY, &DEMO_USER];

/// The reference server's login.
#[derive(Debug, Clone, Default)]
pub struct LoginSettings {
    /// `IPTRACK_SESSION_KEY`: secret (at least 32 characters) that signs and encrypts the
    /// reference server's session cookie. Give every web instance the same one so they
    /// accept each other's sessions; unset, each process makes up its own.
    pub session_key: Option<SecretString>,
    /// `IPTRACK_DEMO_USER`: `name:password` of the reference server's one account. Unset,
    /// every login fails (401).
    pub demo_user: Option<DemoUser>,
}

/// The reference server's demo account.
#[derive(Debug, Clone)]
pub struct DemoUser {
    pub name: String,
    pub password: SecretString,
}

impl LoginSettings {
    pub(super) fn from_values(values: &Values) -> Result<Self, SettingsError> {
        let session_key = match values.get(&SESSION_KEY) {
            Some(v) if v.len() < 32 => {
                return Err(invalid(&SESSION_KEY, v, "must be at least 32 characters"));
            }
            Some(v) => Some(SecretString::from(v.to_owned())),
            None => None,
        };
        let demo_user = match values.get(&DEMO_USER) {
            Some(v) => Some(demo_user(v)?),
            None => None,
        };
        Ok(Self {
            session_key,
            demo_user,
        })
    }
}

/// `name:password`, split at the first colon. The variable is secret: errors never show it.
fn demo_user(v: &str) -> Result<DemoUser, SettingsError> {
    let (name, password) = v
        .split_once(':')
        .filter(|(name, password)| !name.is_empty() && !password.is_empty())
        .ok_or_else(|| invalid(&DEMO_USER, v, "expected name:password, both non-empty"))?;
    if name.len() > 64 || name.chars().any(char::is_control) {
        return Err(invalid(
            &DEMO_USER,
            v,
            "the name must be at most 64 printable characters",
        ));
    }
    Ok(DemoUser {
        name: name.to_owned(),
        password: SecretString::from(password.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::{Settings, SettingsError};

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_sources(None, |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn bad_login_settings_name_the_variable_and_never_show_it() {
        assert!(load(&[]).unwrap().login.demo_user.is_none());
        let err = load(&[("IPTRACK_SESSION_KEY", "short")]).unwrap_err();
        assert!(err.to_string().contains("IPTRACK_SESSION_KEY"));
        let err = load(&[("IPTRACK_DEMO_USER", "alice")]).unwrap_err();
        assert!(err.to_string().contains("IPTRACK_DEMO_USER"));
        let err = load(&[("IPTRACK_DEMO_USER", "alice:")]).unwrap_err();
        assert!(!err.to_string().contains("alice"), "secrets are not echoed");
    }

    #[test]
    fn the_demo_user_splits_at_the_first_colon() {
        use secrecy::ExposeSecret;
        let s = load(&[("IPTRACK_DEMO_USER", "alice:pa:ss")]).unwrap().login;
        let user = s.demo_user.unwrap();
        assert_eq!(user.name, "alice");
        assert_eq!(user.password.expose_secret(), "pa:ss");
    }
}
