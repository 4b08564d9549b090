//! The Redis client behind every iptrack connection: `redis://`, or `rediss://` (TLS by
//! rustls) checked against the system's roots or, when set, `IPTRACK_REDIS_CA_FILE`.

use std::{path::Path, sync::Once};

use redis::{Client, ErrorKind, RedisError, TlsCertificates};

use crate::settings::RedisSettings;

/// A client for the Redis of `settings` (`REDIS_URL`, `IPTRACK_REDIS_CA_FILE`).
pub fn client(settings: &RedisSettings) -> Result<Client, RedisError> {
    open(settings.url.expose(), settings.ca_file.as_deref())
}

/// A client for `url`; for a `rediss://` URL with `ca_file`, the server's certificate must
/// chain to the certificates in that PEM file rather than to the system's roots.
pub fn open(url: &str, ca_file: Option<&Path>) -> Result<Client, RedisError> {
    install_crypto_provider();
    let Some(path) = ca_file else {
        return Client::open(url);
    };
    let pem = std::fs::read(path).map_err(|error| {
        RedisError::from((
            ErrorKind::InvalidClientConfig,
            "cannot read IPTRACK_REDIS_CA_FILE",
            format!("{}: {error}", path.display()),
        ))
    })?;
    Client::build_with_tls(
        url,
        TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        },
    )
}

/// redis's TLS builds its rustls configuration with the process's default crypto
/// provider. Both of rustls's providers are compiled in (ring through sqlx, aws-lc-rs
/// through reqwest), so rustls cannot choose one by itself and would panic at the first
/// `rediss://` connection: install aws-lc-rs, reqwest's, once.
fn install_crypto_provider() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // Err means something else in the process installed one first; that one serves.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}
