//! `notifications`: delivers one [`Notice`] to `IPTRACK_WEBHOOK_URL`.
//!
//! Whoever noticed the event queued the notice once, cluster-wide (`crate::notify`); this
//! job POSTs it, as iptrack's JSON or as a Slack-compatible `{"text": …}` body, and is
//! fetched by one worker at a time like every job. So a slow or failing receiver delays
//! only the notices behind it, never the request-log stream or the job that noticed the
//! event (the queue has workers of its own).
//!
//! What counts as what, per attempt:
//! - 2xx: delivered;
//! - 408, 429, 5xx, a timeout, a connection error: tried again after a back-off (1 s,
//!   doubling, up to 30 s) or the receiver's `Retry-After` (seconds, up to 30 s), at most
//!   `IPTRACK_WEBHOOK_RETRIES` more times; then the job fails and apalis retries it later
//!   (its own back-off, 25 attempts in all), after which it lands in the queue's `:dead` set;
//! - any other status (3xx included: redirects are not followed, so a notice never goes to
//!   another address than the configured one): a permanent refusal, logged with the first
//!   bytes of the answer, never retried.
//!
//! Bounds against a hostile or broken receiver: each attempt (connect, send, status)
//! has `IPTRACK_WEBHOOK_TIMEOUT_MS`; at most [`MAX_ANSWER_BYTES`] of an answer are read,
//! and only of a refusal. The URL may carry a secret (Slack's are secret paths): it is
//! never logged, only its scheme, host and port, and reqwest's errors are logged without
//! it.
//!
//! Delivery is at least once: a receiver whose 2xx got lost gets the notice again, with
//! the same `id` (also in `X-Iptrack-Notice-Id`), so it can drop the repeat.

use std::{net::IpAddr, sync::Arc, time::Duration};

use apalis::prelude::{BoxDynError, Data};
use hmac::{Hmac, Mac};
use iptrack_core::{
    jobs::{NOTIFICATIONS_QUEUE, Notice, NoticeKind},
    settings::{GeoSettings, NotifySettings, WebhookFormat},
};
use reqwest::{StatusCode, header::HeaderMap};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::{
    context::JobContext,
    geo::{Geo, Lookup},
};

/// First back-off after a failed attempt; doubles each time up to [`MAX_WAIT`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between two attempts inside one job, `Retry-After` included. A receiver
/// asking for longer gets it from apalis's retry of the failed job instead, so one notice
/// never holds the queue's worker for minutes.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// Bytes of a refusal's answer read for the log line; the rest is never read.
pub const MAX_ANSWER_BYTES: usize = 300;
/// The header carrying the body's HMAC-SHA256 when `IPTRACK_WEBHOOK_SECRET` is set.
pub const SIGNATURE_HEADER: &str = "x-iptrack-signature";
/// The header carrying the notice's id, for receivers that deduplicate by header.
pub const NOTICE_ID_HEADER: &str = "x-iptrack-notice-id";

/// Why the webhook client cannot start: a bad setting (status 2).
#[derive(Debug, thiserror::Error)]
pub enum WebhookSetupError {
    /// The message never holds the URL: it may be the secret.
    #[error("IPTRACK_WEBHOOK_URL: not a valid URL")]
    Url,
    /// `IPTRACK_GEO_HTTP_CA_FILE`, which the webhook client trusts too.
    #[error("IPTRACK_GEO_HTTP_CA_FILE: {0}")]
    CaFile(#[from] crate::tls::CaFileError),
    #[error("cannot set up the webhook client: {0}")]
    Client(reqwest::Error),
}

/// The receiver of notices and how to talk to it.
pub struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
    /// `scheme://host:port`, the only part of the URL that logs show.
    shown: String,
    format: WebhookFormat,
    retries: u32,
    secret: Option<SecretString>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("receiver", &self.shown)
            .field("format", &self.format)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

/// How a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The receiver refused the notice for good (4xx other than 408/429, or a redirect).
    #[error("{receiver} refused the notice with status {status}: {answer:?}")]
    Refused {
        receiver: String,
        status: u16,
        /// The first [`MAX_ANSWER_BYTES`] of its answer, control characters removed.
        answer: String,
    },
    /// Every attempt of this job failed in a way worth trying again later.
    #[error("{receiver} did not take the notice after {attempts} attempts: {last}")]
    Unavailable {
        receiver: String,
        attempts: u32,
        last: String,
    },
    #[error("cannot encode the notice: {0}")]
    Encode(#[from] serde_json::Error),
}

/// What one attempt came to.
enum Attempt {
    Delivered,
    /// Try again, after the receiver's `Retry-After` when it gave one.
    Again {
        why: String,
        retry_after: Option<Duration>,
    },
    Refused {
        status: u16,
        answer: String,
    },
}

impl Webhook {
    /// The receiver `settings` name, or `None` when notifications are off. TLS as for the
    /// geolocation provider: the system's roots plus `IPTRACK_GEO_HTTP_CA_FILE`.
    pub fn from_settings(
        settings: &NotifySettings,
        geo: &GeoSettings,
    ) -> Result<Option<Self>, WebhookSetupError> {
        let Some(url) = &settings.webhook_url else {
            return Ok(None);
        };
        let url = reqwest::Url::parse(url.expose()).map_err(|_| WebhookSetupError::Url)?;
        let host = url.host_str().ok_or(WebhookSetupError::Url)?;
        let shown = match url.port() {
            Some(port) => format!("{}://{host}:{port}", url.scheme()),
            None => format!("{}://{host}", url.scheme()),
        };
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            // A redirect would send the notice (and the signature) somewhere the operator
            // did not configure; a receiver that moved is a configuration to fix.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("iptrack/", env!("CARGO_PKG_VERSION")));
        builder = crate::tls::with_extra_roots(builder, geo.http_ca_file.as_deref())?;
        let client = builder.build().map_err(WebhookSetupError::Client)?;
        Ok(Some(Self {
            client,
            url,
            shown,
            format: settings.webhook_format,
            retries: settings.retries,
            secret: settings.secret.clone(),
        }))
    }

    /// `scheme://host:port` of the receiver, for messages.
    pub fn receiver(&self) -> &str {
        &self.shown
    }

    /// The body the receiver gets for `notice`, in the configured format.
    pub fn body(&self, notice: &Notice) -> Result<Vec<u8>, serde_json::Error> {
        match self.format {
            WebhookFormat::Json => serde_json::to_vec(notice),
            WebhookFormat::Slack => {
                serde_json::to_vec(&serde_json::json!({ "text": slack_text(notice) }))
            }
        }
    }

    /// POSTs `notice`, retrying inside this call as the module documentation says; returns
    /// the number of attempts it took.
    pub async fn deliver(&self, notice: &Notice) -> Result<u32, DeliveryError> {
        let body = self.body(notice)?;
        let signature = self.secret.as_ref().map(|secret| sign(secret, &body));
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (why, retry_after) = match self.attempt(notice, &body, signature.as_deref()).await {
                Attempt::Delivered => return Ok(attempts),
                Attempt::Refused { status, answer } => {
                    return Err(DeliveryError::Refused {
                        receiver: self.shown.clone(),
                        status,
                        answer,
                    });
                }
                Attempt::Again { why, retry_after } => (why, retry_after),
            };
            let wait = retry_after.unwrap_or(backoff);
            if attempts > self.retries || wait > MAX_WAIT {
                return Err(DeliveryError::Unavailable {
                    receiver: self.shown.clone(),
                    attempts,
                    last: why,
                });
            }
            tracing::info!(
                receiver = %self.shown,
                notice_id = %notice.id,
                attempt = attempts,
                wait_ms = wait.as_millis() as u64,
                "webhook did not take the notice ({why}); trying again"
            );
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_WAIT);
        }
    }

    async fn attempt(&self, notice: &Notice, body: &[u8], signature: Option<&str>) -> Attempt {
        let mut request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(NOTICE_ID_HEADER, notice.id.to_string())
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header(SIGNATURE_HEADER, signature);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => Attempt::Delivered,
            Ok(response) if retryable(response.status()) => Attempt::Again {
                why: format!("status {}", response.status().as_u16()),
                retry_after: retry_after(response.headers()),
            },
            Ok(response) => Attempt::Refused {
                status: response.status().as_u16(),
                answer: first_bytes(response).await,
            },
            // Without the URL: reqwest's message would otherwise print it, secret and all.
            Err(error) => Attempt::Again {
                why: error.without_url().to_string(),
                retry_after: None,
            },
        }
    }
}

/// 408 (the receiver timed out reading us), 429 (slow down) and 5xx are worth another try;
/// every other non-2xx says the notice itself or the configuration is wrong.
fn retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// `Retry-After` in seconds. The HTTP-date form is not read (the back-off applies): no
/// webhook receiver we know sends it, and a clock-skewed date would be worse than none.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// At most [`MAX_ANSWER_BYTES`] of the answer, as text without control characters; what
/// follows is never read (the attempt's timeout bounds the reading too).
async fn first_bytes(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_ANSWER_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(MAX_ANSWER_BYTES);
    String::from_utf8_lossy(&bytes)
        .chars()
        .filter(|c| !c.is_control())
        .collect()
}

/// `sha256=<hex>`: HMAC-SHA256 of `body` keyed with the secret.
pub fn sign(secret: &SecretString, body: &[u8]) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256=");
    for byte in digest {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// The Slack-compatible message for `notice`: one line saying what happened, to which
/// address, where it is, by which rule and why.
pub fn slack_text(notice: &Notice) -> String {
    let place = [notice.city.as_deref(), notice.country.as_deref()]
        .into_iter()
        .flatten()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    let place = if place.is_empty() {
        String::new()
    } else {
        format!(" ({place})")
    };
    let dry_run = if notice.dry_run { " [dry run]" } else { "" };
    let what = match notice.kind {
        NoticeKind::Flag => format!("flagged {}{place}", notice.address),
        NoticeKind::Ban => {
            let until = notice.expires_at.map_or_else(
                || "until unblocked".to_owned(),
                |at| format!("until {}", at.format("%Y-%m-%d %H:%M:%S UTC")),
            );
            let nth = notice
                .ban_count
                .filter(|&n| n > 1)
                .map_or_else(String::new, |n| format!(", ban #{n}"));
            format!("banned {}{place} {until}{nth}", notice.address)
        }
    };
    // Reasons hold request paths, which clients choose: escaped, so `<!channel>` or
    // `<https://evil|click>` in a path is shown as text, never a mention or a link.
    slack_escape(&format!(
        "iptrack{dry_run}: {what}, rule {}: {}",
        notice.rule, notice.reason
    ))
}

/// Slack's three control characters in message text (api.slack.com, "Escaping text").
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `notice` with its country and city filled from the geolocation cache when it came
/// without them (the hourly job and the streaming rules do not look them up). A cache
/// that cannot be read leaves them empty: the notice goes out anyway.
pub async fn located(mut notice: Notice, geo: Option<&Geo>) -> Notice {
    let unknown =
        notice.country_code.is_none() && notice.country.is_none() && notice.city.is_none();
    let (Some(geo), Ok(ip), true) = (geo, notice.address.parse::<IpAddr>(), unknown) else {
        return notice;
    };
    match geo.cache.get_many(&[ip]).await {
        Ok(answers) => {
            if let Some(Some(Lookup::Found(location))) = answers.into_iter().next() {
                let known = |text: String| (!text.is_empty()).then_some(text);
                notice.country_code = known(location.country_code);
                notice.country = known(location.country);
                notice.city = known(location.city);
            }
        }
        Err(error) => tracing::debug!(%error, "geo cache unreadable; notice goes without location"),
    }
    notice
}

/// The apalis handler: the delivery, timed and counted in the cluster-wide job metrics. A
/// refusal is counted as a failure but ends the job (retrying cannot change the answer);
/// an unavailable receiver fails the job, for apalis to retry later.
pub async fn handle(notice: Notice, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    let started = std::time::Instant::now();
    let (ok, result) = match ctx.notifier.webhook() {
        Some(webhook) => run(webhook, notice, &ctx).await,
        None => {
            // Only workers with a webhook serve this queue; one without is misconfigured
            // relative to its peers: fail, so a worker that has one delivers it later.
            tracing::warn!(notice_id = %notice.id, "notice fetched by a worker without IPTRACK_WEBHOOK_URL");
            (false, Err("no IPTRACK_WEBHOOK_URL on this worker".into()))
        }
    };
    super::record_outcome(&ctx, NOTIFICATIONS_QUEUE, started, ok).await;
    result
}

async fn run(
    webhook: Arc<Webhook>,
    notice: Notice,
    ctx: &JobContext,
) -> (bool, Result<(), BoxDynError>) {
    let notice = located(notice, ctx.geo.as_deref()).await;
    match webhook.deliver(&notice).await {
        Ok(attempts) => {
            tracing::info!(
                receiver = webhook.receiver(),
                notice_id = %notice.id,
                kind = ?notice.kind,
                address = %notice.address,
                rule = %notice.rule,
                attempts,
                "notice delivered"
            );
            (true, Ok(()))
        }
        Err(error @ (DeliveryError::Refused { .. } | DeliveryError::Encode(_))) => {
            tracing::warn!(notice_id = %notice.id, address = %notice.address, "notice dropped: {error}");
            (false, Ok(()))
        }
        Err(error) => {
            // Logged here, once; apalis re-schedules the job with back-off.
            tracing::warn!(notice_id = %notice.id, address = %notice.address, "notice not delivered yet: {error}");
            (false, Err(error.into()))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    use super::*;

    fn notice(kind: NoticeKind) -> Notice {
        Notice {
            id: Uuid::nil(),
            kind,
            address: "203.0.113.9".to_owned(),
            rule: "sensitive-path".to_owned(),
            reason: "3 requests to sensitive paths in 1h (e.g. /admin/<!channel>&x)".to_owned(),
            count: Some(3),
            window_secs: Some(3600),
            expires_at: Some(Utc.with_ymd_and_hms(2026, 12, 1, 17, 0, 0).unwrap()),
            ban_count: Some(2),
            dry_run: false,
            at: Utc.with_ymd_and_hms(2026, 12, 1, 16, 0, 0).unwrap(),
            country_code: Some("NL".to_owned()),
            country: Some("Netherlands".to_owned()),
            city: Some("Amsterdam".to_owned()),
        }
    }

    #[test]
    fn slack_text_says_what_where_and_why_with_client_text_escaped() {
        assert_eq!(
            slack_text(&notice(NoticeKind::Ban)),
            "iptrack: banned 203.0.113.9 (Amsterdam, Netherlands) until 2026-12-01 17:00:00 UTC, \
             ban #2, rule sensitive-path: 3 requests to sensitive paths in 1h \
             (e.g. /admin/&lt;!channel&gt;&amp;x)"
        );
        let mut flag = notice(NoticeKind::Flag);
        flag.city = None;
        flag.dry_run = true;
        assert!(
            slack_text(&flag).starts_with(
                "iptrack [dry run]: flagged 203.0.113.9 (Netherlands), rule sensitive-path: "
            ),
            "{}",
            slack_text(&flag)
        );
    }

    #[test]
    fn the_signature_is_the_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        let secret = SecretString::from("Jefe".to_owned());
        assert_eq!(
            sign(&secret, b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn only_timeouts_rate_limits_and_server_errors_are_retried() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(retryable(StatusCode::from_u16(status).unwrap()), "{status}");
        }
        for status in [301, 307, 400, 401, 403, 404, 410, 413, 422] {
            assert!(
                !retryable(StatusCode::from_u16(status).unwrap()),
                "{status}"
            );
        }
    }
}
