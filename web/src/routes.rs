//! Routes of the reference server: a few pages to track (the site), and the health and
//! metrics endpoints, which are not site traffic (see `startup.rs`).

use actix_web::{HttpResponse, Responder, get, http::header::ContentType, web};

use std::{sync::Arc, time::Duration};

use iptrack_middleware::{LogSink, metrics::RateLimitMetrics, request_metrics::RequestMetrics};

use crate::queue_metrics::ClusterSnapshot;

/// How long `/readyz` waits for each dependency.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// What handlers share.
pub(crate) struct AppState {
    /// The process's shared multiplexed connection (the log pipeline and the admin API
    /// use it too).
    pub(crate) redis: redis::aio::ConnectionManager,
    /// `None` when the server runs with `--no-tracking`.
    pub(crate) log_sink: Option<LogSink>,
    /// For `/readyz`: the web writes nothing there itself, but the blocklist and the admin
    /// API read it, so a web that cannot reach it is not fully in service.
    pub(crate) db: sea_orm::DatabaseConnection,
    /// Queue keys and worker counters live under this prefix (`/metrics` reads them).
    pub(crate) redis_prefix: String,
    /// `None` when the server runs with `--no-tracking`.
    pub(crate) request_metrics: Option<Arc<RequestMetrics>>,
    /// The rate limiter's counters (zero when no rule is configured).
    pub(crate) rate_limit_metrics: Arc<RateLimitMetrics>,
}

/// The site: what the middleware tracks, limits and blocks.
pub(crate) fn configure_site(cfg: &mut web::ServiceConfig) {
    cfg.service(index)
        .service(login_form)
        .service(crate::login::submit)
        .service(admin);
}

/// Health endpoints: probes, not site traffic.
pub(crate) fn configure_health(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz).service(readyz);
}

/// Prometheus scrapes: not site traffic.
pub(crate) fn configure_metrics(cfg: &mut web::ServiceConfig) {
    cfg.service(metrics);
}

fn page(title: &str, body: &str) -> HttpResponse {
    HttpResponse::Ok().content_type(ContentType::html()).body(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1>{body}</body></html>"
    ))
}

#[get("/")]
async fn index() -> impl Responder {
    page(
        "iptrack reference server",
        "<p>Every request to this server is logged by iptrack.</p>\
         <p><a href=\"/login\">Log in</a> · <a href=\"/admin\">Admin</a></p>",
    )
}

#[get("/login")]
async fn login_form() -> impl Responder {
    page(
        "Log in",
        "<form method=\"post\" action=\"/login\">\
         <label>User <input name=\"username\"></label> \
         <label>Password <input name=\"password\" type=\"password\"></label> \
         <button>Log in</button></form>",
    )
}

#[get("/admin")]
async fn admin() -> impl Responder {
    page(
        "Administration",
        "<p>A sensitive page: requests to it mark an address as suspicious.</p>",
    )
}

/// The process is up.
#[get("/healthz")]
async fn healthz() -> impl Responder {
    HttpResponse::Ok().body("ok\n")
}

/// The process can do its work: Redis and the database answer. 503 names what does not.
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> impl Responder {
    let redis = async {
        let ping = async {
            redis::cmd("PING")
                .query_async::<String>(&mut state.redis.clone())
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(READY_TIMEOUT, ping).await {
            Ok(Ok(_)) => None,
            Ok(Err(error)) => Some(format!("redis unavailable: {error}")),
            Err(_) => Some("redis unavailable: timed out".to_owned()),
        }
    };
    let database = async {
        match tokio::time::timeout(READY_TIMEOUT, state.db.ping()).await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(format!("database unavailable: {error}")),
            Err(_) => Some("database unavailable: timed out".to_owned()),
        }
    };
    let (redis, database) = tokio::join!(redis, database);
    let problems: Vec<String> = [redis, database].into_iter().flatten().collect();
    if problems.is_empty() {
        HttpResponse::Ok().body("ready\n")
    } else {
        HttpResponse::ServiceUnavailable().body(format!("{}\n", problems.join("\n")))
    }
}

/// Prometheus text format: this process's pipeline, request and rate-limit counters, then
/// the cluster-wide queue depths and worker counters read from Redis.
#[get("/metrics")]
async fn metrics(state: web::Data<AppState>) -> impl Responder {
    let mut body = match &state.log_sink {
        Some(sink) => sink.metrics().render(sink.buffered()),
        None => String::new(),
    };
    if let Some(requests) = &state.request_metrics {
        body.push_str(&requests.render());
    }
    body.push_str(&state.rate_limit_metrics.render());
    let mut conn = state.redis.clone();
    let cluster = ClusterSnapshot::read(&mut conn, &state.redis_prefix);
    body.push_str(
        &tokio::time::timeout(READY_TIMEOUT, cluster)
            .await
            .unwrap_or_else(|_| ClusterSnapshot::unavailable())
            .render(),
    );
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}
