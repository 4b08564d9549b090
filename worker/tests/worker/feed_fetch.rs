//! Fetching a feed's list: over TLS trusted through `IPTRACK_BLOCKLIST_FEEDS_CA_FILE` (and
//! refused without it), bounded in size whatever the server says, 200 only.

use std::io::Write;

use iptrack_core::{blocklist::feed::MAX_LIST_BYTES, settings::FeedSettings};
use iptrack_worker::feeds::{FeedFetcher, FeedSetupError, FetchError};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

use crate::geo_https::{test_pki, tls_front};

async fn serving(status: u16, body: Vec<u8>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/level1.netset"))
        .respond_with(ResponseTemplate::new(status).set_body_bytes(body))
        .mount(&server)
        .await;
    server
}

fn fetcher(ca_file: Option<&std::path::Path>) -> FeedFetcher {
    FeedFetcher::new(&FeedSettings {
        feeds: Vec::new(),
        ca_file: ca_file.map(std::path::Path::to_path_buf),
    })
    .unwrap()
}

#[tokio::test]
async fn an_https_feed_is_fetched_only_when_its_certificate_is_trusted() {
    let server = serving(200, b"203.0.113.0/24\n".to_vec()).await;
    let pki = test_pki();
    let front = tls_front(*server.address(), &pki).await;
    let url = format!("https://localhost:{}/level1.netset", front.port());
    let mut ca_file = tempfile::NamedTempFile::new().unwrap();
    ca_file.write_all(pki.ca_pem.as_bytes()).unwrap();

    let body = fetcher(Some(ca_file.path())).fetch(&url).await.unwrap();
    assert_eq!(body, b"203.0.113.0/24\n");

    let refused = fetcher(None).fetch(&url).await;
    assert!(
        matches!(refused, Err(FetchError::Transport { .. })),
        "{refused:?}"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_answer_larger_than_a_list_or_not_200_is_refused() {
    let server = serving(200, vec![b'\n'; MAX_LIST_BYTES + 1]).await;
    let url = format!("{}/level1.netset", server.uri());
    let error = fetcher(None).fetch(&url).await.unwrap_err();
    assert!(matches!(error, FetchError::TooLarge { .. }), "{error:?}");

    let exactly = serving(200, vec![b'\n'; MAX_LIST_BYTES]).await;
    let body = fetcher(None)
        .fetch(&format!("{}/level1.netset", exactly.uri()))
        .await
        .unwrap();
    assert_eq!(body.len(), MAX_LIST_BYTES);

    for status in [204, 404, 503] {
        let server = serving(status, b"203.0.113.0/24\n".to_vec()).await;
        let error = fetcher(None)
            .fetch(&format!("{}/level1.netset", server.uri()))
            .await
            .unwrap_err();
        assert!(
            matches!(error, FetchError::Status { status: s, .. } if s == status),
            "{error:?}"
        );
    }
}

#[tokio::test]
async fn a_ca_file_without_certificates_is_a_setting_error_naming_it() {
    let mut ca_file = tempfile::NamedTempFile::new().unwrap();
    ca_file.write_all(b"not a certificate\n").unwrap();
    let error = FeedFetcher::new(&FeedSettings {
        feeds: Vec::new(),
        ca_file: Some(ca_file.path().to_path_buf()),
    })
    .unwrap_err();
    assert!(matches!(error, FeedSetupError::CaFile(_)), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("IPTRACK_BLOCKLIST_FEEDS_CA_FILE: cannot read certificates from"),
        "{error}"
    );
}
