//! Building and running the reference server; used by `iptrack-web`, `iptrack up` and the
//! tests alike.

use std::net::{SocketAddr, TcpListener};

use actix_web::{
    App, HttpServer,
    body::MessageBody,
    dev::{Server, ServerHandle, ServiceFactory, ServiceRequest, ServiceResponse},
    middleware::Condition,
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
    live::LiveEvents,
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
    /// Stops the dashboard's live-event relay and ends its open streams: cancelled before
    /// the graceful stop, which would otherwise wait out its timeout on streams that never
    /// end by themselves.
    live_stop: CancellationToken,
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
        let listener = bind(settings.web.bind, "IPTRACK_BIND")?;
        let admin_listener = settings
            .admin
            .bind
            .map(|address| bind(address, "IPTRACK_ADMIN_BIND"))
            .transpose()?;
        let port = listener.local_addr()?.port();
        // One multiplexed connection for the log pipeline, the admin API's blocklist writes
        // and attribution, `/readyz` and `/metrics`. The middleware's rate limiter and
        // blocklist sync open their own (IpTrackingBuilder::redis_connection says why).
        let redis = queue::connect_to(&settings.redis).context("REDIS_URL")?;
        // The middleware and its background tasks, as any embedding app gets them, plus the
        // login's notion of who is signed in. The blocklist's database connection is lazy:
        // the web serves (and logs) while the database is away, keeping its last good copy.
        let tracking = if options.tracking {
            Some(
                IpTracking::from_settings(settings)
                    .identity(login::session_identity())
                    .redis_connection(redis.clone())
                    .build()
                    .await?,
            )
        } else {
            None
        };
        let db = db::connect_lazy(settings.database.url.expose())
            .await
            .context("DATABASE_URL")?;
        let live_stop = CancellationToken::new();
        let admin = settings.admin.token.as_ref().map(|token| {
            (
                web::Data::new(AdminToken(token.clone())),
                web::Data::new(AdminState {
                    db: db.clone(),
                    blocklist: BlocklistService::new(
                        db.clone(),
                        redis.clone(),
                        settings.redis.prefix.clone(),
                        &settings.blocklist.safelist,
                    ),
                    // DB-IP's licence asks for attribution wherever its data is shown; the
                    // workers, which open the data, say whether it is theirs.
                    geo_attribution: GeoAttribution::new(redis.clone(), &settings.redis.prefix),
                    detect: std::sync::Arc::new(settings.detect.clone()),
                    live: LiveEvents::start(&settings.redis, live_stop.clone()),
                }),
            )
        });
        // Rate limits and the login (see docs/ARCHITECTURE.md, "Rate limits").
        let rate_limit_metrics = tracking
            .as_ref()
            .map_or_else(Default::default, TrackingGuard::rate_limit_metrics);
        let middleware = tracking.as_ref().map(TrackingGuard::middleware);
        let state = web::Data::new(AppState {
            redis,
            log_sink: tracking.as_ref().and_then(TrackingGuard::sink),
            db,
            redis_prefix: settings.redis.prefix.clone(),
            request_metrics: middleware.as_ref().map(IpTracking::metrics),
            rate_limit_metrics,
        });
        let routes = Routes {
            state,
            admin,
            demo_account: web::Data::new(DemoAccount(settings.login.demo_user.clone())),
            session_key: login::session_key(&settings.login),
            tracking: middleware,
        };

        let (server, admin_server, admin_port) = match admin_listener {
            None => (serve(listener, routes, Serves::Everything)?, None, None),
            Some(admin_listener) => {
                let admin_port = admin_listener.local_addr()?.port();
                (
                    serve(listener, routes.clone(), Serves::Site)?,
                    Some(serve(admin_listener, routes, Serves::Operator)?),
                    Some(admin_port),
                )
            }
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
            live_stop,
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
        self.live_stop.cancel();
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

fn bind(address: SocketAddr, variable: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).with_context(|| format!("cannot listen on {address} ({variable})"))
}

/// What one listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serves {
    /// The site and the operators' routes: no `IPTRACK_ADMIN_BIND`.
    Everything,
    /// The site only; the operators' routes are on their own listener.
    Site,
    /// The operators' routes only (`IPTRACK_ADMIN_BIND`).
    Operator,
}

impl Serves {
    fn site(self) -> bool {
        self != Self::Operator
    }

    fn operator(self) -> bool {
        self != Self::Site
    }
}

/// Everything a listener's app is made of; cloned for each server worker thread.
#[derive(Clone)]
struct Routes {
    state: web::Data<AppState>,
    /// Set when `IPTRACK_ADMIN_TOKEN` is.
    admin: Option<(web::Data<AdminToken>, web::Data<AdminState>)>,
    demo_account: web::Data<DemoAccount>,
    session_key: actix_web::cookie::Key,
    /// `None` with `--no-tracking`.
    tracking: Option<IpTracking>,
}

impl Routes {
    /// The app of a listener that serves `serves`. The health endpoints are everywhere.
    ///
    /// What operators use (the admin API and dashboard when a token is set, and `/metrics`)
    /// is not site traffic: it is mounted outside the tracked scope, so never logged,
    /// counted by a rule or refused by the blocklist; the API keeps its token check.
    /// Registered last, the tracked site scope gets every request no route above took,
    /// unknown paths (404) included: those are site traffic, tracked like the rest.
    fn app(
        self,
        serves: Serves,
    ) -> App<
        impl ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<impl MessageBody>,
            Error = actix_web::Error,
            InitError = (),
        >,
    > {
        // The last `wrap` runs first: the session is decoded before tracking asks who the
        // user is. Only the site has logins.
        let app = App::new()
            .wrap(Condition::new(
                serves.site(),
                login::session_middleware(self.session_key.clone()),
            ))
            .app_data(self.state.clone())
            .configure(routes::configure_health)
            .configure(|cfg| {
                if !serves.operator() {
                    return;
                }
                if let Some((token, state)) = &self.admin {
                    cfg.app_data(token.clone()).app_data(state.clone());
                    admin::configure(cfg);
                }
                routes::configure_metrics(cfg);
            });
        if !serves.site() {
            return app;
        }
        // `/forward-auth` for reverse proxies: outside the tracked scope, because it logs the
        // request it decides about, not itself (forward_auth.rs).
        let app = match &self.tracking {
            Some(tracking) => app.configure(forward_auth::configure(tracking.clone())),
            None => app,
        };
        let site = |cfg: &mut web::ServiceConfig| {
            cfg.app_data(self.demo_account.clone());
            routes::configure_site(cfg);
        };
        match &self.tracking {
            Some(tracking) => app.service(web::scope("").wrap(tracking.clone()).configure(site)),
            None => app.configure(site),
        }
    }
}

/// Runs `routes` for `serves` on `listener`, stopped by [`Application::run_until_stopped`].
fn serve(listener: TcpListener, routes: Routes, serves: Serves) -> std::io::Result<Server> {
    let server = HttpServer::new(move || routes.clone().app(serves));
    // Operator traffic is light: one worker thread, not one per core.
    let server = match serves {
        Serves::Operator => server.workers(1),
        Serves::Everything | Serves::Site => server,
    };
    Ok(server
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        .run())
}
