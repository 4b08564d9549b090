//! Building and running the reference server; used by `iptrack-web`, `iptrack up` and the
//! tests alike.

use std::{net::TcpListener, sync::Arc};

use actix_web::{
    App, HttpServer,
    dev::{Server, ServerHandle},
    web,
};
use anyhow::Context;
use futures::{StreamExt, stream::FuturesUnordered};
use iptrack_core::{
    blocklist::service::BlocklistService, client_ip::ClientIpResolver, db, queue,
    settings::Settings,
};
use tokio_util::sync::CancellationToken;

use crate::{
    admin::{self, AdminState, AdminToken},
    blocklist, forward_auth,
    login::{self, DemoAccount},
    metrics::RateLimitMetrics,
    middleware::IpTracking,
    pipeline::LogPipeline,
    ratelimit::RateLimiter,
    routes::{self, AppState},
};

/// How long a stopping server lets in-flight requests finish.
const SHUTDOWN_TIMEOUT_SECS: u64 = 10;

/// Options that are about this process rather than the deployment.
#[derive(Debug, Clone, Copy)]
pub struct WebOptions {
    /// `false` (`--no-tracking`) serves the same routes without the middleware, to measure
    /// what tracking costs.
    pub tracking: bool,
}

impl Default for WebOptions {
    fn default() -> Self {
        Self { tracking: true }
    }
}

/// A bound, not yet running, server.
pub struct Application {
    port: u16,
    /// Set with `IPTRACK_ADMIN_BIND`: the operators' listener.
    admin_port: Option<u16>,
    server: Server,
    admin_server: Option<Server>,
    pipeline: Option<LogPipeline>,
    /// Stops the blocklist sync task when the server stops.
    background: CancellationToken,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .field("admin_port", &self.admin_port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Binds `settings.bind` (port 0 picks a free port), and `settings.admin_bind` when
    /// set, and prepares the servers.
    pub async fn build(settings: &Settings, options: WebOptions) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.bind)
            .with_context(|| format!("cannot listen on {} (IPTRACK_BIND)", settings.bind))?;
        let admin_listener = settings
            .admin_bind
            .map(|address| {
                TcpListener::bind(address)
                    .with_context(|| format!("cannot listen on {address} (IPTRACK_ADMIN_BIND)"))
            })
            .transpose()?;
        let port = listener.local_addr()?.port();
        let redis = deadpool_redis::Config::from_url(settings.redis_url.clone())
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .context("cannot create the Redis pool (REDIS_URL)")?;
        let background = CancellationToken::new();
        let pipeline = if options.tracking {
            let conn = queue::connect(&settings.redis_url).context("REDIS_URL")?;
            Some(LogPipeline::start(settings, conn))
        } else {
            None
        };
        // Lazy: the web serves (and logs) while the database is away; the blocklist keeps
        // its last good copy and reloads when the database returns.
        let db = db::connect_lazy(&settings.database_url)
            .await
            .context("DATABASE_URL")?;
        let blocklist = options
            .tracking
            .then(|| blocklist::start(settings, db.clone(), background.clone()).0);
        let state_db = db.clone();
        let admin = match &settings.admin_token {
            Some(token) => Some((
                web::Data::new(AdminToken(token.clone())),
                web::Data::new(AdminState {
                    db,
                    blocklist: BlocklistService::new(
                        state_db.clone(),
                        queue::connect(&settings.redis_url).context("REDIS_URL")?,
                        settings.redis_prefix.clone(),
                        &settings.safelist,
                    ),
                    // DB-IP's licence asks for attribution wherever its data is shown.
                    dbip_attribution: settings.geo.uses_dbip(),
                }),
            )),
            None => None,
        };
        // What operators use: the admin API and dashboard (when a token is set) and
        // `/metrics`. Not site traffic (DESIGN.md): mounted outside the tracked scope, so
        // never logged, counted by a rule or refused by the blocklist; the API keeps its
        // token check.
        let operator = move |cfg: &mut web::ServiceConfig| {
            if let Some((token, state)) = &admin {
                cfg.app_data(token.clone()).app_data(state.clone());
                admin::configure(cfg);
            }
            routes::configure_metrics(cfg);
        };
        // Rate limits and the login (see docs/ARCHITECTURE.md, "Rate limits"). The limiter
        // has its own multiplexed connection: one round trip per ruled request.
        let rate_limit_metrics = Arc::new(RateLimitMetrics::default());
        let demo_account = web::Data::new(DemoAccount(settings.rate_limit.demo_user.clone()));
        let session_key = login::session_key(&settings.rate_limit);
        let rate_limiter = if options.tracking && !settings.rate_limit.rules.is_empty() {
            Some(RateLimiter::new(
                &settings.rate_limit,
                &settings.redis_prefix,
                queue::connect(&settings.redis_url).context("REDIS_URL")?,
                rate_limit_metrics.clone(),
            ))
        } else {
            None
        };

        let tracking = pipeline.as_ref().map(|pipeline| {
            let mut tracking = IpTracking::new(
                ClientIpResolver::new(settings.trusted_proxies.clone(), settings.proxy_header),
                pipeline.sink(),
            )
            .with_query_string(settings.log_pipeline.log_query_string)
            .with_identity(login::session_identity());
            if let Some(blocklist) = blocklist {
                tracking = tracking.with_blocklist(blocklist, settings.safelist.clone());
            }
            if let Some(limiter) = rate_limiter {
                tracking = tracking.with_rate_limiter(limiter);
            }
            tracking
        });
        let state = web::Data::new(AppState {
            redis,
            log_sink: pipeline.as_ref().map(LogPipeline::sink),
            db: state_db,
            redis_prefix: settings.redis_prefix.clone(),
            request_metrics: tracking.as_ref().map(IpTracking::metrics),
            rate_limit_metrics,
        });
        let site = move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(demo_account.clone());
            routes::configure_site(cfg);
        };
        let separate_admin = admin_listener.is_some();
        // `/forward-auth` for reverse proxies: outside the tracked scope, because it logs the
        // request it decides about, not itself (forward_auth.rs).
        let forward_auth = tracking.clone().map(forward_auth::configure);

        let public_state = state.clone();
        let public_operator = operator.clone();
        let server = HttpServer::new(move || {
            // The last `wrap` runs first: the session is decoded before tracking asks who
            // the user is.
            let app = App::new()
                .wrap(login::session_middleware(session_key.clone()))
                .app_data(public_state.clone())
                .configure(routes::configure_health);
            let app = if separate_admin {
                app
            } else {
                app.configure(public_operator.clone())
            };
            let app = match &forward_auth {
                Some(forward_auth) => app.configure(forward_auth.clone()),
                None => app,
            };
            // Registered last, the site scope gets every request no route above took,
            // unknown paths (404) included: those are site traffic, tracked like the rest.
            match &tracking {
                Some(tracking) => app.service(
                    web::scope("")
                        .wrap(tracking.clone())
                        .configure(site.clone()),
                ),
                None => app.configure(site.clone()),
            }
        })
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        .run();
        let (admin_server, admin_port) = match admin_listener {
            Some(admin_listener) => {
                let admin_port = admin_listener.local_addr()?.port();
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(state.clone())
                        .configure(routes::configure_health)
                        .configure(operator.clone())
                })
                // Operator traffic is light: one worker thread, not one per core.
                .workers(1)
                .listen(admin_listener)?
                .disable_signals()
                .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
                .run();
                (Some(server), Some(admin_port))
            }
            None => (None, None),
        };
        tracing::info!(
            address = %settings.bind.ip(),
            port,
            admin_port,
            tracking = options.tracking,
            "iptrack-web listening"
        );
        Ok(Self {
            port,
            admin_port,
            server,
            admin_server,
            pipeline,
            background,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The operators' port, when `IPTRACK_ADMIN_BIND` is set.
    pub fn admin_port(&self) -> Option<u16> {
        self.admin_port
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight requests finish and
    /// delivers the buffered log events before returning.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let handles: Vec<ServerHandle> = std::iter::once(&self.server)
            .chain(self.admin_server.as_ref())
            .map(Server::handle)
            .collect();
        let mut servers: FuturesUnordered<_> = std::iter::once(self.server)
            .chain(self.admin_server)
            .map(tokio::spawn)
            .collect();
        // A listener that ends by itself (an error) takes the other one down with it.
        let first = tokio::select! {
            served = servers.next() => served,
            _ = shutdown.cancelled() => None,
        };
        futures::future::join_all(handles.iter().map(|handle| handle.stop(true))).await;
        let mut results: Vec<_> = first.into_iter().collect();
        while let Some(served) = servers.next().await {
            results.push(served);
        }
        self.background.cancel();
        if let Some(pipeline) = self.pipeline {
            pipeline.finish().await;
        }
        for served in results {
            served
                .context("web server task failed")?
                .context("web server failed")?;
        }
        Ok(())
    }
}
