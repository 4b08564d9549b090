//! The HTTP provider over TLS, as real providers (ip-api Pro, ipgeolocation.io) require: a
//! fake provider (wiremock) behind a TLS front whose certificate a test CA signed. Trusted
//! through `IPTRACK_GEO_HTTP_CA_FILE` it answers; without that file the certificate is
//! refused, so the check really happens.

use std::{io::Write, net::SocketAddr, sync::Arc};

use iptrack_core::settings::GeoHttpFormat;
use iptrack_worker::geo::{GeoError, GeoProvider, GeoSetupError, Location, Lookup};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        ServerConfig,
        crypto::ring,
        pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer},
    },
};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

use crate::geo_fixtures::http_settings;

/// A CA, and a certificate for `localhost` it signed (the feed fetcher's tests use it too).
pub(crate) struct TestPki {
    pub(crate) ca_pem: String,
    leaf_der: Vec<u8>,
    leaf_key_der: Vec<u8>,
}

pub(crate) fn test_pki() -> TestPki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &Issuer::from_params(&ca_params, &ca_key))
        .unwrap();
    TestPki {
        ca_pem: ca.pem(),
        leaf_der: leaf.der().to_vec(),
        leaf_key_der: leaf_key.serialize_der(),
    }
}

/// Accepts TLS on a free port and forwards the decrypted bytes to `backend`.
pub(crate) async fn tls_front(backend: SocketAddr, pki: &TestPki) -> SocketAddr {
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![pki.leaf_der.clone().into()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.leaf_key_der.clone())),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A refused handshake (the client does not trust us) just ends here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    address
}

async fn provider_behind_tls() -> (MockServer, SocketAddr, TestPki) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/json/81.2.69.142"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": "success", "countryCode": "GB", "country": "United Kingdom", "city": "London"
        })))
        .mount(&server)
        .await;
    let pki = test_pki();
    let front = tls_front(*server.address(), &pki).await;
    (server, front, pki)
}

fn https_provider(front: SocketAddr, ca_file: Option<&std::path::Path>) -> GeoProvider {
    let url = format!("https://localhost:{}", front.port());
    let mut settings = http_settings(&url, GeoHttpFormat::IpApi);
    settings.http_ca_file = ca_file.map(std::path::Path::to_path_buf);
    GeoProvider::from_settings(&settings).unwrap().unwrap()
}

#[tokio::test]
async fn an_https_provider_signed_by_a_trusted_ca_answers() {
    let (_server, front, pki) = provider_behind_tls().await;
    let mut ca_file = tempfile::NamedTempFile::new().unwrap();
    ca_file.write_all(pki.ca_pem.as_bytes()).unwrap();

    let provider = https_provider(front, Some(ca_file.path()));
    let found = provider
        .lookup_many(&["81.2.69.142".parse().unwrap()])
        .await
        .unwrap();

    assert_eq!(
        found,
        [Lookup::Found(Location {
            country_code: "GB".into(),
            country: "United Kingdom".into(),
            city: "London".into(),
        })]
    );
}

#[tokio::test]
async fn an_https_provider_with_an_untrusted_certificate_is_refused() {
    let (server, front, _pki) = provider_behind_tls().await;

    let provider = https_provider(front, None);
    let result = provider
        .lookup_many(&["81.2.69.142".parse().unwrap()])
        .await;

    assert!(
        matches!(result, Err(GeoError::Unreachable { .. })),
        "{result:?}"
    );
    let requests = server.received_requests().await.unwrap_or_default();
    assert!(
        requests.is_empty(),
        "no request may pass an untrusted handshake"
    );
}

#[tokio::test]
async fn a_ca_file_without_certificates_stops_the_provider_from_starting() {
    let mut ca_file = tempfile::NamedTempFile::new().unwrap();
    ca_file.write_all(b"not a certificate\n").unwrap();
    let mut settings = http_settings("https://localhost:1", GeoHttpFormat::IpApi);
    settings.http_ca_file = Some(ca_file.path().to_path_buf());

    let error = GeoProvider::from_settings(&settings).unwrap_err();

    assert!(matches!(error, GeoSetupError::CaFile { .. }), "{error:?}");
    assert!(
        error.to_string().starts_with("IPTRACK_GEO_HTTP_CA_FILE:"),
        "{error}"
    );
}
