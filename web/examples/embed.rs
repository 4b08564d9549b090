//! iptrack in your own actix-web app: the `IpTracking` middleware with the blocklist, and
//! a graceful shutdown that delivers the buffered request logs.
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
use iptrack_core::{Settings, client_ip::ClientIpResolver, db, queue, shutdown, telemetry};
use iptrack_web::{ClientIp, IpTracking, LogPipeline, blocklist};
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

    // The log buffer and the task that pushes its batches to Redis.
    let pipeline = LogPipeline::start(
        &settings,
        queue::connect(&settings.redis_url).context("REDIS_URL")?,
    );
    // Optional: answer 403 to blocked clients. The list lives in memory, loaded from
    // `blocked_ip` and kept current by a background task; the database is connected lazily,
    // so the app starts and serves while it is away.
    let db = db::connect_lazy(&settings.database_url)
        .await
        .context("DATABASE_URL")?;
    let background = CancellationToken::new();
    let (blocklist, blocklist_sync) = blocklist::start(&settings, db, background.clone());
    let tracking = IpTracking::new(
        ClientIpResolver::new(settings.trusted_proxies.clone(), settings.proxy_header),
        pipeline.sink(),
    )
    .with_blocklist(blocklist, settings.safelist.clone());

    let server = HttpServer::new(move || App::new().wrap(tracking.clone()).service(hello))
        // Signals are handled above, so the order of shutdown is ours.
        .disable_signals()
        .bind(settings.bind)
        .with_context(|| format!("cannot listen on {} (IPTRACK_BIND)", settings.bind))?
        .run();
    tracing::info!("listening on http://{}", settings.bind);
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

    // After the server has stopped, no new events arrive: deliver what the buffer holds.
    pipeline.finish().await;
    background.cancel();
    blocklist_sync.await.context("blocklist task failed")?;
    served
        .context("server task failed")?
        .context("server failed")
}
