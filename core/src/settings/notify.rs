//! Notifications of new flags and bans: where they go, in what shape, and how hard a
//! delivery tries.

use std::time::Duration;

use secrecy::SecretString;

use super::{
    SecretUrl, SettingsError,
    parse::{bounded, choice, invalid, required},
    registry::{Values, Variable},
};

const WEBHOOK_URL: Variable = Variable::unset(
    "IPTRACK_WEBHOOK_URL",
    "(off)",
    "`http(s)://` URL that receives a JSON POST for every new flag and ban, e.g. `https://hooks.slack.com/services/…`; never logged (only its host is)",
)
// Hidden whole, not just a password: a Slack or Teams webhook carries its secret in the
// path, which a password-only redaction would print.
.secret();
const WEBHOOK_FORMAT: Variable = Variable::new(
    "IPTRACK_WEBHOOK_FORMAT",
    "json",
    "`json` (iptrack's notice) or `slack` (a Slack-compatible `{\"text\": …}` body)",
);
const WEBHOOK_TIMEOUT_MS: Variable = Variable::new(
    "IPTRACK_WEBHOOK_TIMEOUT_MS",
    "5000",
    "per delivery attempt, connecting and answering included",
);
const WEBHOOK_RETRIES: Variable = Variable::new(
    "IPTRACK_WEBHOOK_RETRIES",
    "4",
    "further attempts within one job after a timeout, 5xx, 408 or 429 (back-off 1 s doubling, `Retry-After` up to 30 s); then the job is retried later",
);
const WEBHOOK_SECRET: Variable = Variable::unset(
    "IPTRACK_WEBHOOK_SECRET",
    "(none: unsigned)",
    "signs each body: `X-Iptrack-Signature: sha256=` HMAC-SHA256 of the body, hex",
)
.secret();

pub(super) const VARIABLES: &[&Variable] = &[
    &WEBHOOK_URL,
    &WEBHOOK_FORMAT,
    &WEBHOOK_TIMEOUT_MS,
    &WEBHOOK_RETRIES,
    &WEBHOOK_SECRET,
];

/// The body a webhook receives (`IPTRACK_WEBHOOK_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// The notice as JSON (`iptrack_core::jobs::Notice`).
    Json,
    /// `{"text": "…"}`, which Slack, Mattermost and Rocket.Chat incoming webhooks take.
    Slack,
}

/// Where new flags and bans are announced (worker side).
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// `IPTRACK_WEBHOOK_URL`: unset = no notifications (nothing is queued).
    pub webhook_url: Option<SecretUrl>,
    /// `IPTRACK_WEBHOOK_FORMAT`: default `json`.
    pub webhook_format: WebhookFormat,
    /// `IPTRACK_WEBHOOK_TIMEOUT_MS`: one attempt, from connecting to the answer's status,
    /// so a receiver that never answers holds a delivery this long at most. Default 5000.
    pub timeout: Duration,
    /// `IPTRACK_WEBHOOK_RETRIES`: further attempts inside one job. Default 4.
    pub retries: u32,
    /// `IPTRACK_WEBHOOK_SECRET`: when set, each body is signed with it (HMAC-SHA256), so
    /// the receiver can tell iptrack's notices from anyone who learned the URL.
    pub secret: Option<SecretString>,
}

impl NotifySettings {
    pub(super) fn from_values(values: &Values) -> Result<Self, SettingsError> {
        let get = |var| required(var, values.get(var));
        let webhook_url = match values.get(&WEBHOOK_URL) {
            Some(url) => Some(webhook_url(url)?),
            None => None,
        };
        let webhook_format = choice(
            &WEBHOOK_FORMAT,
            get(&WEBHOOK_FORMAT)?,
            &[
                ("json", WebhookFormat::Json),
                ("slack", WebhookFormat::Slack),
            ],
        )?;
        Ok(Self {
            webhook_url,
            webhook_format,
            timeout: Duration::from_millis(bounded(
                &WEBHOOK_TIMEOUT_MS,
                get(&WEBHOOK_TIMEOUT_MS)?,
                100,
                60_000,
            )?),
            retries: bounded(&WEBHOOK_RETRIES, get(&WEBHOOK_RETRIES)?, 0, 10)?,
            secret: values
                .get(&WEBHOOK_SECRET)
                .map(|v| SecretString::from(v.to_owned())),
        })
    }
}

/// An absolute `http://` or `https://` URL with a host. Checked here so that a typo stops
/// start-up (status 2) instead of failing every delivery later.
fn webhook_url(url: &str) -> Result<SecretUrl, SettingsError> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    let host = rest.map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
    match host {
        Some(host) if !host.rsplit('@').next().unwrap_or_default().is_empty() => {
            Ok(SecretUrl::new(url))
        }
        Some(_) => Err(invalid(&WEBHOOK_URL, url, "the URL has no host")),
        None => Err(invalid(
            &WEBHOOK_URL,
            url,
            "expected an http:// or https:// URL",
        )),
    }
}

impl Default for NotifySettings {
    fn default() -> Self {
        super::from_defaults(Self::from_values)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use crate::settings::{NotifySettings, Settings, SettingsError};

    fn load(pairs: &[(&str, &str)]) -> Result<NotifySettings, SettingsError> {
        Settings::from_sources(None, |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .map(|settings| settings.notify)
    }

    #[test]
    fn a_webhook_url_must_be_http_or_https_with_a_host_and_is_never_shown() {
        let secret = "https://hooks.example.com/services/T0/B0/s3cr3t";
        assert!(load(&[("IPTRACK_WEBHOOK_URL", secret)]).is_ok());
        for bad in [
            "ftp://x/s3cr3t",
            "https:///s3cr3t",
            "https://user:s3cr3t@/x",
            "s3cr3t",
        ] {
            let error = load(&[("IPTRACK_WEBHOOK_URL", bad)])
                .unwrap_err()
                .to_string();
            assert!(error.contains("IPTRACK_WEBHOOK_URL"), "{error}");
            assert!(!error.contains("s3cr3t"), "{error}");
        }
    }

    #[test]
    fn delivery_bounds_are_checked() {
        assert!(load(&[("IPTRACK_WEBHOOK_TIMEOUT_MS", "0")]).is_err());
        assert!(load(&[("IPTRACK_WEBHOOK_RETRIES", "11")]).is_err());
        let settings = load(&[]).unwrap();
        assert_eq!(settings.timeout, Duration::from_secs(5));
        assert_eq!(settings.retries, 4);
        assert!(settings.webhook_url.is_none() && settings.secret.is_none());
    }
}
