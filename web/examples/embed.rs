//! iptrack in your own actix-web app: the `IpTracking` middleware with the blocklist and
//! rate limits, and a graceful shutdown that delivers the buffered request logs.
//!
//! An app needs only the `iptrack-middleware` crate (and `iptrack-core` for the settings);
//! this example lives beside the reference server so that CI builds it with it.
//!
//! The middleware only records: events go from an in-process buffer to the Redis queue
//! `request-logs`, and an `iptrack-worker` (or `iptrack up`) using the same `REDIS_URL`,
//! `IPTRACK_REDIS_PREFIX` and `DATABASE_URL` writes them to `request_log`. Without a worker
//! the events wait in Redis.
//!
//! Run it with the same environment as iptrack (README, "Configuration"):
//!
//! ```sh
//! cargo run -p iptrack-web --example embed   # listens on IPTRACK_BIND (127.0.0.1:8000)
//! ```

use actix_web::{App, HttpServer, Responder, get};
use anyhow::Context;
use iptrack_core::{Settings, shutdown, telemetry};
use iptrack_middleware::{ClientIp, IpTracking};
use tokio_util::sync::CancellationToken;

/// One of your routes; `ClientIp` is the address the middleware resolved (forwarding
/// headers count only from `IPTRACK_TRUSTED_PROXIES`).
#[get("/")]
async fn hello(ClientIp(ip): ClientIp) -> impl Responder {
    format!("hello, {ip}\n")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load(None)?;
    telemetry::init(settings.log_format);
    let stop = CancellationToken::new();
    shutdown::cancel_on_signal(stop.clone());

    // Everything from the environment: Redis, trusted proxies, the blocklist (loaded from
    // `blocked_ip` at DATABASE_URL, connected lazily so the app serves while the database
    // is away) and IPTRACK_RATE_LIMITS. Or spell out only what you need:
    //     IpTracking::builder().redis_url("redis://127.0.0.1:6379").build().await?
    let tracking = IpTracking::from_settings(&settings).build().await?;
    let middleware = tracking.middleware();

    let bind = settings.web.bind;
    let server = HttpServer::new(move || App::new().wrap(middleware.clone()).service(hello))
        // Signals are handled above, so the order of shutdown is ours.
        .disable_signals()
        .bind(bind)
        .with_context(|| format!("cannot listen on {bind} (IPTRACK_BIND)"))?
        .run();
    tracing::info!("listening on http://{bind}");
    let handle = server.handle();
    let mut served = tokio::spawn(server);
    let served = tokio::select! {
        result = &mut served => result,
        _ = stop.cancelled() => {
            // Finish the requests in progress, then stop.
            handle.stop(true).await;
            served.await
        }
    };

    // After the server has stopped no new events arrive: deliver what the buffer holds.
    tracking.shutdown().await;
    served
        .context("server task failed")?
        .context("server failed")
}
