//! Which certificates iptrack's HTTPS clients trust: the system's roots (on Debian, the
//! `ca-certificates` package) plus, where a setting names one, a PEM file of extra roots.
//! The geolocation provider (`IPTRACK_GEO_HTTP_CA_FILE`) and the blocklist feeds
//! (`IPTRACK_BLOCKLIST_FEEDS_CA_FILE`) both build their clients with [`with_extra_roots`].

use std::path::Path;

/// Why a CA file cannot be used; `reason` is the reader's or parser's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read certificates from {path}: {reason}")]
pub struct CaFileError {
    pub path: String,
    pub reason: String,
}

/// `builder` trusting the certificates of `ca_file` too, when given. A file without any
/// certificate is an error, not an empty trust.
pub fn with_extra_roots(
    builder: reqwest::ClientBuilder,
    ca_file: Option<&Path>,
) -> Result<reqwest::ClientBuilder, CaFileError> {
    let Some(path) = ca_file else {
        return Ok(builder);
    };
    let failed = |reason: String| CaFileError {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|error| failed(error.to_string()))?;
    let certificates =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| failed(error.to_string()))?;
    if certificates.is_empty() {
        return Err(failed("no PEM certificate in it".to_owned()));
    }
    Ok(builder.tls_certs_merge(certificates))
}
