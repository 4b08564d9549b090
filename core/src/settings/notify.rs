//! Notifications of new flags and bans: where they go and in what shape.

use super::{
    SecretUrl, SettingsError,
    parse::{choice, invalid, required},
    registry::{Values, Variable},
};

const WEBHOOK_URL: Variable = Variable::unset(
    "IPTRACK_WEBHOOK_URL",
    "(off)",
    "`http(s)://` URL that receives a JSON POST for every new flag and ban, e.g. `https://hooks.slack.com/services/…`",
)
.url_with_password();
const WEBHOOK_FORMAT: Variable = Variable::new(
    "IPTRACK_WEBHOOK_FORMAT",
    "json",
    "`json` (iptrack's notice) or `slack` (a Slack-compatible `{\"text\": …}` body)",
);

pub(super) const VARIABLES: &[&Variable] = &[&WEBHOOK_URL, &WEBHOOK_FORMAT];

/// The body a webhook receives (`IPTRACK_WEBHOOK_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// The notice as JSON (`iptrack_core::jobs::Notice`).
    Json,
    /// `{"text": "…"}`, which Slack, Mattermost and Rocket.Chat incoming webhooks take.
    Slack,
}

/// Where new flags and bans are announced (worker side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySettings {
    /// `IPTRACK_WEBHOOK_URL`: unset = no notifications (nothing is queued).
    pub webhook_url: Option<SecretUrl>,
    /// `IPTRACK_WEBHOOK_FORMAT`: default `json`.
    pub webhook_format: WebhookFormat,
}

impl NotifySettings {
    pub(super) fn from_values(values: &Values) -> Result<Self, SettingsError> {
        let webhook_url = match values.get(&WEBHOOK_URL) {
            Some(url) => {
                let lower = url.to_ascii_lowercase();
                if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                    return Err(invalid(
                        &WEBHOOK_URL,
                        url,
                        "expected an http:// or https:// URL",
                    ));
                }
                Some(SecretUrl::new(url))
            }
            None => None,
        };
        let webhook_format = choice(
            &WEBHOOK_FORMAT,
            required(&WEBHOOK_FORMAT, values.get(&WEBHOOK_FORMAT))?,
            &[
                ("json", WebhookFormat::Json),
                ("slack", WebhookFormat::Slack),
            ],
        )?;
        Ok(Self {
            webhook_url,
            webhook_format,
        })
    }
}

impl Default for NotifySettings {
    fn default() -> Self {
        super::from_defaults(Self::from_values)
    }
}
