//! Routes of the reference server: a few pages to track, and health endpoints.

use actix_web::{HttpResponse, Responder, get, http::header::ContentType, web};

use crate::{metrics::RateLimitMetrics, pipeline::LogSink};

/// What handlers share.
pub(crate) struct AppState {
    pub(crate) redis: deadpool_redis::Pool,
    /// `None` when the server runs with `--no-tracking`.
    pub(crate) log_sink: Option<LogSink>,
    /// The rate limiter's counters (zero when no rule is configured).
    pub(crate) rate_limit_metrics: std::sync::Arc<RateLimitMetrics>,
}

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(index)
        .service(login_form)
        .service(crate::login::submit)
        .service(admin)
        .service(healthz)
        .service(readyz)
        .service(metrics);
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

/// The process can do its work: Redis answers.
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> impl Responder {
    let ping = async {
        let mut conn = state.redis.get().await.map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query_async::<String>(&mut *conn)
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => HttpResponse::Ok().body("ready\n"),
        Ok(Err(error)) => {
            HttpResponse::ServiceUnavailable().body(format!("redis unavailable: {error}\n"))
        }
        Err(_) => HttpResponse::ServiceUnavailable().body("redis unavailable: timed out\n"),
    }
}

/// Prometheus text format.
#[get("/metrics")]
async fn metrics(state: web::Data<AppState>) -> impl Responder {
    let mut body = match &state.log_sink {
        Some(sink) => sink.metrics().render(sink.buffered()),
        None => String::new(),
    };
    body.push_str(&state.rate_limit_metrics.render());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}
