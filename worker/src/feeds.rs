//! Fetching a blocklist feed's list over HTTP(S), bounded: used by the `blocklist-feeds`
//! job (`jobs/refresh_feed.rs`) and by `iptrack import-blocklist URL`.
//!
//! The list's server is someone else's, and may be hostile or broken: the answer must be
//! a 200, its body is read chunk by chunk and abandoned past
//! `iptrack_core::blocklist::feed::MAX_LIST_BYTES` (a `Content-Length` above it is refused
//! before reading), the whole fetch has [`FETCH_TIMEOUT`], and at most [`MAX_REDIRECTS`]
//! redirects are followed. TLS as for the geolocation provider (`crate::tls`): the
//! system's roots plus `IPTRACK_BLOCKLIST_FEEDS_CA_FILE`.

use std::time::Duration;

use iptrack_core::{
    blocklist::feed::MAX_LIST_BYTES,
    settings::{FeedSettings, redact_url},
};

/// The whole fetch: connect, headers and body. FireHOL's largest lists are a few MB.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Connecting alone.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Redirects followed (FireHOL's and Spamhaus's URLs answer directly).
pub const MAX_REDIRECTS: usize = 5;

/// Why feeds cannot be fetched at all: a setting to fix (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum FeedSetupError {
    #[error("IPTRACK_BLOCKLIST_FEEDS_CA_FILE: {0}")]
    CaFile(#[from] crate::tls::CaFileError),
    #[error("cannot set up the HTTP client for blocklist feeds: {0}")]
    HttpClient(reqwest::Error),
}

/// Why one fetch failed. The feed's entries stay as they are.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connection, TLS, timeout or a broken body: worth trying again.
    #[error("cannot fetch {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}, not 200")]
    Status { url: String, status: u16 },
    /// The answer is too large to be a list: the caller's input (exit status 2).
    #[error("{url} sent more than {MAX_LIST_BYTES} bytes; not a list iptrack imports")]
    TooLarge { url: String },
}

/// An HTTP(S) client for feed lists.
#[derive(Debug, Clone)]
pub struct FeedFetcher {
    client: reqwest::Client,
}

impl FeedFetcher {
    pub fn new(settings: &FeedSettings) -> Result<Self, FeedSetupError> {
        let builder = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .user_agent(concat!("iptrack/", env!("CARGO_PKG_VERSION")));
        let builder = crate::tls::with_extra_roots(builder, settings.ca_file.as_deref())?;
        Ok(Self {
            client: builder.build().map_err(FeedSetupError::HttpClient)?,
        })
    }

    /// The body at `url`, at most `MAX_LIST_BYTES`. Errors name the URL with any
    /// password masked.
    pub async fn fetch(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let shown = redact_url(url);
        let transport = |source: reqwest::Error| FetchError::Transport {
            url: shown.clone(),
            source: source.without_url(),
        };
        let mut response = self.client.get(url).send().await.map_err(transport)?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(FetchError::Status {
                url: shown,
                status: response.status().as_u16(),
            });
        }
        let too_large = || FetchError::TooLarge { url: shown.clone() };
        if response
            .content_length()
            .is_some_and(|length| length > MAX_LIST_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_LIST_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
