//! Webhook delivery against a fake receiver (wiremock): what a hostile or broken receiver
//! can and cannot do to the worker. The end-to-end tests (tests/e2e/notifications.rs) run
//! the same code through the real binaries.

use std::time::{Duration, Instant};

use chrono::Utc;
use iptrack_core::{
    jobs::{Notice, NoticeKind},
    settings::{GeoSettings, NotifySettings, SecretUrl, WebhookFormat},
};
use iptrack_worker::jobs::deliver_notice::{DeliveryError, MAX_ANSWER_BYTES, Webhook};
use uuid::Uuid;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

const SECRET_PATH: &str = "/services/T0/B0/s3cr3t-token";

fn webhook(url: &str, timeout: Duration, retries: u32) -> Webhook {
    let settings = NotifySettings {
        webhook_url: Some(SecretUrl::new(url)),
        webhook_format: WebhookFormat::Json,
        timeout,
        retries,
        secret: None,
    };
    Webhook::from_settings(&settings, &GeoSettings::default())
        .unwrap()
        .unwrap()
}

fn notice() -> Notice {
    Notice {
        id: Uuid::new_v4(),
        kind: NoticeKind::Flag,
        address: "203.0.113.9".into(),
        rule: "volume".into(),
        reason: "101 requests in 1h (threshold 100)".into(),
        count: Some(101),
        window_secs: Some(3600),
        expires_at: None,
        ban_count: None,
        dry_run: false,
        at: Utc::now(),
        country_code: None,
        country: None,
        city: None,
    }
}

#[tokio::test]
async fn a_redirect_is_a_refusal_and_is_never_followed() {
    let server = MockServer::start().await;
    Mock::given(path(SECRET_PATH))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("location", format!("{}/elsewhere", server.uri())),
        )
        .mount(&server)
        .await;
    Mock::given(path("/elsewhere"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let hook = webhook(
        &format!("{}{SECRET_PATH}", server.uri()),
        Duration::from_secs(2),
        3,
    );
    let error = hook.deliver(&notice()).await.unwrap_err();
    assert!(
        matches!(error, DeliveryError::Refused { status: 307, .. }),
        "{error}"
    );
    let paths: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert_eq!(paths, [SECRET_PATH], "asked once, never redirected");
}

#[tokio::test]
async fn a_short_retry_after_is_waited_out_and_a_long_one_ends_the_attempts() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let hook = webhook(&server.uri(), Duration::from_secs(2), 3);
    let started = Instant::now();
    assert_eq!(hook.deliver(&notice()).await.unwrap(), 2);
    assert!(started.elapsed() >= Duration::from_secs(1));

    let slow = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "3600"))
        .mount(&slow)
        .await;
    let hook = webhook(&slow.uri(), Duration::from_secs(2), 3);
    let started = Instant::now();
    let error = hook.deliver(&notice()).await.unwrap_err();
    assert!(
        matches!(error, DeliveryError::Unavailable { attempts: 1, .. }),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "left for the queue's retry"
    );
}

#[tokio::test]
async fn a_receiver_that_never_answers_costs_one_timeout_per_attempt() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(300)))
        .mount(&server)
        .await;
    let hook = webhook(&server.uri(), Duration::from_millis(200), 1);
    let started = Instant::now();
    let error = hook.deliver(&notice()).await.unwrap_err();
    // Two attempts of 200 ms and a back-off of 1 s.
    assert!(
        matches!(error, DeliveryError::Unavailable { attempts: 2, .. }),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_refusal_is_read_only_for_its_first_bytes() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string("x\u{7}".repeat(5_000_000)))
        .mount(&server)
        .await;
    let hook = webhook(&server.uri(), Duration::from_secs(5), 3);
    match hook.deliver(&notice()).await.unwrap_err() {
        DeliveryError::Refused { status, answer, .. } => {
            assert_eq!(status, 400);
            assert!(answer.len() <= MAX_ANSWER_BYTES, "{}", answer.len());
            assert!(
                answer.starts_with("xxx"),
                "control characters dropped: {answer:?}"
            );
        }
        other => panic!("expected a refusal, got {other}"),
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn neither_errors_nor_debug_output_show_the_url() {
    // Nothing listens on this port: every attempt fails to connect.
    let port = iptrack_tests::free_port();
    let url = format!("http://127.0.0.1:{port}{SECRET_PATH}");
    let hook = webhook(&url, Duration::from_millis(200), 0);
    let error = hook.deliver(&notice()).await.unwrap_err();
    let shown = format!("{error} {error:?} {hook:?}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(
        shown.contains(&format!("http://127.0.0.1:{port}")),
        "{shown}"
    );
}
