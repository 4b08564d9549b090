//! The `http` provider: ip-api (`/json/{ip}`, `/batch`) or ipgeolocation.io v3
//! (`/v3/ipgeo`), at a configurable base URL.
//!
//! Each request is bounded by `IPTRACK_GEO_HTTP_TIMEOUT_MS`; timeouts, connection errors
//! and 5xx answers are retried `IPTRACK_GEO_HTTP_RETRIES` times with exponential back-off.
//! A 429 is honoured: the provider's `Retry-After` (or ip-api's `X-Ttl`) is waited out when
//! it is short, otherwise the job fails and apalis retries it later. Either way the
//! request-log rows are already stored; only their location waits.

use std::{net::IpAddr, time::Duration};

use futures::future;
use iptrack_core::settings::{GeoHttpFormat, GeoSettings};
use reqwest::{Response, StatusCode, header::HeaderMap};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{GeoError, GeoSetupError, Location, Lookup, countries::country_name};

/// First back-off after a failed attempt; doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest 429 wait served inside the job; a longer one fails the job for apalis to retry.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(10);
/// ipgeolocation.io has no batch endpoint for free keys: this many single lookups at once.
const PARALLEL_SINGLE_LOOKUPS: usize = 8;

/// A client of one HTTP geolocation API.
#[derive(Debug, Clone)]
pub struct HttpProvider {
    client: reqwest::Client,
    base: String,
    format: GeoHttpFormat,
    api_key: Option<SecretString>,
    retries: u32,
}

impl HttpProvider {
    /// A client for `settings`' provider. TLS is rustls: certificates are checked against
    /// the system's roots (on Debian, the `ca-certificates` package) plus
    /// `IPTRACK_GEO_HTTP_CA_FILE`.
    pub fn new(settings: &GeoSettings) -> Result<Self, GeoSetupError> {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.http_timeout)
            .connect_timeout(settings.http_timeout)
            .user_agent(concat!("iptrack/", env!("CARGO_PKG_VERSION")));
        builder = crate::tls::with_extra_roots(builder, settings.http_ca_file.as_deref())?;
        let client = builder.build().map_err(GeoSetupError::HttpClient)?;
        Ok(Self {
            client,
            base: settings.http_url.clone().unwrap_or_default(),
            format: settings.http_format,
            api_key: settings.api_key.clone(),
            retries: settings.http_retries,
        })
    }

    /// Looks up `addresses`, in order: one batch call per 100 for ip-api (a single call
    /// for one address), parallel single calls for ipgeolocation.
    pub async fn lookup_many(&self, addresses: &[IpAddr]) -> Result<Vec<Lookup>, GeoError> {
        match (self.format, addresses) {
            (_, []) => Ok(Vec::new()),
            (GeoHttpFormat::IpApi, [ip]) => Ok(vec![self.ip_api_single(*ip).await?]),
            (GeoHttpFormat::IpApi, _) => {
                let mut found = Vec::with_capacity(addresses.len());
                for chunk in addresses.chunks(iptrack_core::jobs::GEOLOCATE_MAX_ADDRESSES) {
                    found.extend(self.ip_api_batch(chunk).await?);
                }
                Ok(found)
            }
            (GeoHttpFormat::IpGeolocation, _) => {
                let mut found = Vec::with_capacity(addresses.len());
                for chunk in addresses.chunks(PARALLEL_SINGLE_LOOKUPS) {
                    // Built in a loop, not an iterator adapter: a future holding a
                    // borrowed iterator's closure is not provably `Send` to rustc.
                    let mut calls = Vec::with_capacity(chunk.len());
                    for &ip in chunk {
                        calls.push(self.ipgeolocation(ip));
                    }
                    for answer in future::join_all(calls).await {
                        found.push(answer?);
                    }
                }
                Ok(found)
            }
        }
    }

    async fn ip_api_single(&self, ip: IpAddr) -> Result<Lookup, GeoError> {
        let url = format!("{}/json/{ip}", self.base);
        let response = self
            .send(|| self.client.get(&url).query(&[("fields", IP_API_FIELDS)]))
            .await?;
        let answer: IpApiAnswer = decode(response).await?;
        Ok(answer.into_lookup())
    }

    async fn ip_api_batch(&self, addresses: &[IpAddr]) -> Result<Vec<Lookup>, GeoError> {
        let url = format!("{}/batch", self.base);
        let body: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
        let response = self
            .send(|| {
                self.client
                    .post(&url)
                    .query(&[("fields", IP_API_FIELDS)])
                    .json(&body)
            })
            .await?;
        let answers: Vec<IpApiAnswer> = decode(response).await?;
        if answers.len() != addresses.len() {
            return Err(GeoError::BadResponse(format!(
                "batch of {} addresses answered with {} results",
                addresses.len(),
                answers.len()
            )));
        }
        Ok(answers.into_iter().map(IpApiAnswer::into_lookup).collect())
    }

    async fn ipgeolocation(&self, ip: IpAddr) -> Result<Lookup, GeoError> {
        let url = format!("{}/v3/ipgeo", self.base);
        let key = self
            .api_key
            .as_ref()
            .map(|k| k.expose_secret().to_owned())
            .unwrap_or_default();
        let ip_text = ip.to_string();
        let response = self
            .send(|| {
                self.client
                    .get(&url)
                    .query(&[("apiKey", key.as_str()), ("ip", ip_text.as_str())])
            })
            .await;
        match response {
            Ok(response) => Ok(decode::<IpGeolocationAnswer>(response).await?.into_lookup()),
            // 423: a bogon/private address; 404: nothing known. Both are "not found".
            Err(GeoError::Status {
                status: 404 | 423, ..
            }) => Ok(Lookup::NotFound),
            Err(error) => Err(error),
        }
    }

    /// Sends the request `build` makes, retrying timeouts, connection errors and 5xx with
    /// back-off, and waiting out a short 429. A 4xx other than 429 is returned at once.
    async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Response, GeoError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let retry_allowed = attempt <= self.retries;
            match build().send().await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) if response.status() == StatusCode::TOO_MANY_REQUESTS => {
                    let wait = rate_limit_wait(response.headers());
                    if !retry_allowed || wait > MAX_RATE_LIMIT_WAIT {
                        return Err(GeoError::RateLimited {
                            wait_secs: wait.as_secs(),
                        });
                    }
                    tracing::info!(
                        wait_ms = wait.as_millis() as u64,
                        "geolocation provider rate limit; waiting"
                    );
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Ok(response) if response.status().is_server_error() && retry_allowed => {
                    tracing::debug!(
                        status = response.status().as_u16(),
                        attempt,
                        "geolocation provider error; retrying"
                    );
                }
                Ok(response) => {
                    return Err(GeoError::Status {
                        status: response.status().as_u16(),
                        attempts: attempt,
                    });
                }
                Err(error) if (error.is_timeout() || error.is_connect()) && retry_allowed => {
                    tracing::debug!(%error, attempt, "geolocation provider unreachable; retrying");
                }
                Err(source) => {
                    return Err(GeoError::Unreachable {
                        attempts: attempt,
                        source,
                    });
                }
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
}

/// How long a 429 asks to wait: `Retry-After` (seconds), else ip-api's `X-Ttl` (seconds
/// until its window resets), else one second.
fn rate_limit_wait(headers: &HeaderMap) -> Duration {
    ["retry-after", "x-ttl"]
        .iter()
        .find_map(|name| {
            headers
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .map_or(Duration::from_secs(1), Duration::from_secs)
}

/// Largest answer body read. A batch of 100 ip-api answers is about 10 kB; without a bound,
/// a provider streaming an endless body would be buffered in memory until the timeout.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

async fn decode<T: serde::de::DeserializeOwned>(mut response: Response) -> Result<T, GeoError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| GeoError::BadResponse(e.to_string()))?
    {
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(GeoError::BadResponse(format!(
                "answer longer than {MAX_BODY_BYTES} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&bytes).map_err(|e| GeoError::BadResponse(e.to_string()))
}

/// The fields ip-api returns (single and batch; batch answers keep the request's order).
const IP_API_FIELDS: &str = "status,message,countryCode,country,city";

/// ip-api's answer: `status` is `success` or `fail` (with `message`: `private range`,
/// `reserved range`, `invalid query`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IpApiAnswer {
    status: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    country_code: Option<String>,
    #[serde(default)]
    country: Option<String>,
    #[serde(default)]
    city: Option<String>,
}

impl IpApiAnswer {
    fn into_lookup(self) -> Lookup {
        if self.status != "success" {
            tracing::debug!(message = ?self.message, "ip-api: no location");
            return Lookup::NotFound;
        }
        location(self.country_code, self.country, self.city)
    }
}

/// ipgeolocation.io v3: `{"ip": ..., "location": {"country_code2", "country_name", "city"}}`.
#[derive(Debug, Deserialize)]
struct IpGeolocationAnswer {
    #[serde(default)]
    location: Option<IpGeolocationPlace>,
}

#[derive(Debug, Deserialize)]
struct IpGeolocationPlace {
    #[serde(default)]
    country_code2: Option<String>,
    #[serde(default)]
    country_name: Option<String>,
    #[serde(default)]
    city: Option<String>,
}

impl IpGeolocationAnswer {
    fn into_lookup(self) -> Lookup {
        match self.location {
            Some(p) => location(p.country_code2, p.country_name, p.city),
            None => Lookup::NotFound,
        }
    }
}

/// A location from a provider's fields; the country name falls back to our table so rows
/// agree across providers when a provider leaves it out.
fn location(code: Option<String>, country: Option<String>, city: Option<String>) -> Lookup {
    let code = code.unwrap_or_default().trim().to_ascii_uppercase();
    let country = country
        .filter(|c| !c.is_empty())
        .or_else(|| country_name(&code).map(str::to_owned))
        .unwrap_or_default();
    Lookup::from_location(Location {
        country_code: code,
        country,
        city: city.unwrap_or_default(),
    })
}
