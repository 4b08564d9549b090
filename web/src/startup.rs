//! Building and running the reference server; used by `iptrack-web`, `iptrack up` and the
//! tests alike.

use std::net::TcpListener;

use actix_web::{
    App, HttpServer,
    dev::{Server, ServerHandle},
    web,
};
use anyhow::Context;
use futures::{StreamExt, stream::FuturesUnordered};
use iptrack_core::{blocklist::service::BlocklistService, db, queue, settings::Settings};
use iptrack_middleware::{IpTracking, TrackingGuard};
use tokio_util::sync::CancellationToken;

use crate::{
    admin::{self, AdminState, AdminToken, GeoAttribution},
    forward_auth,
    login::{self, DemoAccount},
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
    /// The middleware's background tasks; `None` with `--no-tracking`.
    tracking: Option<TrackingGuard>,
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
    /// Binds `settings.web.bind` (port 0 picks a free port), and `settings.admin.bind` when
    /// set, and prepares the servers.
    pub async fn build(settings: &Settings, options: WebOptions) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.web.bind)
            .with_context(|| format!("cannot listen on {} (IPTRACK_BIND)", settings.web.bind))?;
        let admin_listener = settings
            .admin
            .bind
            .map(|address| {
                TcpListener::bind(address)
                    .with_context(|| format!("cannot listen on {address} (IPTRACK_ADMIN_BIND)"))
            })
            .transpose()?;
        let port = listener.local_addr()?.port();
        let redis = deadpool_redis::Config::from_url(settings.redis.url.expose())
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .context("cannot create the Redis pool (REDIS_URL)")?;
        // The middleware and its background tasks, as any embedding app gets them, plus the
        // login's notion of who is signed in. The blocklist's database connection is lazy:
        // the web serves (and logs) while the database is away, keeping its last good copy.
        let tracking = if options.tracking {
            Some(
                IpTracking::from_settings(settings)
                    .identity(login::session_identity())
                    .build()
                    .await?,
            )
        } else {
            None
        };
        let db = db::connect_lazy(settings.database.url.expose())
            .await
            .context("DATABASE_URL")?;
        let state_db = db.clone();
        let admin = match &settings.admin.token {
            Some(token) => {
                let conn = queue::connect(settings.redis.url.expose()).context("REDIS_URL")?;
                Some((
                    web::Data::new(AdminToken(token.clone())),
                    web::Data::new(AdminState {
                        db,
                        blocklist: BlocklistService::new(
                            state_db.clone(),
                            conn.clone(),
                            settings.redis.prefix.clone(),
                            &settings.blocklist.safelist,
                        ),
                        // DB-IP's licence asks for attribution wherever its data is shown;
                        // the workers, which open the data, say whether it is theirs.
                        geo_attribution: GeoAttribution::new(conn, &settings.redis.prefix),
                    }),
                ))
            }
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
        // Rate limits and the login (see docs/ARCHITECTURE.md, "Rate limits").
        let rate_limit_metrics = tracking
            .as_ref()
            .map_or_else(Default::default, TrackingGuard::rate_limit_metrics);
        let demo_account = web::Data::new(DemoAccount(settings.login.demo_user.clone()));
        let session_key = login::session_key(&settings.login);
        let middleware = tracking.as_ref().map(TrackingGuard::middleware);
        let state = web::Data::new(AppState {
            redis,
            log_sink: tracking.as_ref().and_then(TrackingGuard::sink),
            db: state_db,
            redis_prefix: settings.redis.prefix.clone(),
            request_metrics: middleware.as_ref().map(IpTracking::metrics),
            rate_limit_metrics,
        });
        let site = move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(demo_account.clone());
            routes::configure_site(cfg);
        };
        let separate_admin = admin_listener.is_some();
        // `/forward-auth` for reverse proxies: outside the tracked scope, because it logs the
        // request it decides about, not itself (forward_auth.rs).
        let forward_auth = middleware.clone().map(forward_auth::configure);

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
            match &middleware {
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
            address = %settings.web.bind.ip(),
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
            tracking,
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
        if let Some(tracking) = self.tracking {
            tracking.shutdown().await;
        }
        for served in results {
            served
                .context("web server task failed")?
                .context("web server failed")?;
        }
        Ok(())
    }
}
