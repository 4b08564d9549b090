//! The embedding API: one builder from a small configuration, one guard that owns what
//! runs in the background and delivers the buffered events on an explicit shutdown.

use std::sync::Arc;

use iptrack_core::{
    db, queue,
    settings::{
        BlocklistSettings, ClientIpSettings, LogPipelineSettings, RateLimitSettings, RedisSettings,
        SecretUrl, Settings,
    },
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    blocklist::{self, SharedBlocklist},
    metrics::RateLimitMetrics,
    middleware::IpTracking,
    pipeline::{LogPipeline, LogSink},
    ratelimit::{Identity, RateLimiter},
};

/// Why the middleware could not be set up. Secrets in the URLs are never shown.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot use the Redis at {url}: {source}")]
    Redis {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("cannot use the database at {url}: {source}")]
    Database {
        url: String,
        #[source]
        source: sea_orm::DbErr,
    },
}

impl IpTracking {
    /// Sets up the middleware and its background tasks; see [`IpTrackingBuilder`].
    pub fn builder() -> IpTrackingBuilder {
        IpTrackingBuilder::default()
    }

    /// A builder holding everything from iptrack's settings (the environment, README's
    /// "Configuration"), as the reference server uses them.
    pub fn from_settings(settings: &Settings) -> IpTrackingBuilder {
        IpTrackingBuilder::from_settings(settings)
    }
}

/// What the middleware needs. Every part has iptrack's default (README, "Configuration");
/// [`IpTrackingBuilder::from_settings`] takes them all from iptrack's environment.
///
/// Without [`blocklist`](Self::blocklist) nobody is blocked; without
/// [`rate_limits`](Self::rate_limits) nothing is limited; the request log is always on.
#[derive(Default)]
pub struct IpTrackingBuilder {
    redis: RedisSettings,
    client_ip: ClientIpSettings,
    log_pipeline: LogPipelineSettings,
    blocklist: Option<(SecretUrl, BlocklistSettings)>,
    rate_limits: Option<RateLimitSettings>,
    identity: Option<Identity>,
    /// A connection the embedding app already holds, for the log pipeline's pushes.
    connection: Option<redis::aio::ConnectionManager>,
}

impl std::fmt::Debug for IpTrackingBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpTrackingBuilder")
            .field("redis", &self.redis)
            .field("client_ip", &self.client_ip)
            .field("log_pipeline", &self.log_pipeline)
            .field("blocklist", &self.blocklist)
            .field("rate_limits", &self.rate_limits)
            .field("identity", &self.identity.is_some())
            .field("connection", &self.connection.is_some())
            .finish()
    }
}

impl IpTrackingBuilder {
    /// Everything from iptrack's settings (`Settings::load`): the same Redis, prefix,
    /// proxies, pipeline bounds, blocklist (from `DATABASE_URL`) and rate limits as the
    /// reference server.
    pub fn from_settings(settings: &Settings) -> Self {
        let builder = Self {
            redis: settings.redis.clone(),
            client_ip: settings.client_ip.clone(),
            log_pipeline: settings.log_pipeline,
            ..Self::default()
        }
        .blocklist(settings.database.url.clone(), settings.blocklist.clone());
        if settings.rate_limit.rules.is_empty() {
            builder
        } else {
            builder.rate_limits(settings.rate_limit.clone())
        }
    }

    /// `REDIS_URL`: where the request-log queue (and rate-limit counters, blocklist
    /// notices) live. Default `redis://127.0.0.1:6379`.
    pub fn redis_url(mut self, url: impl Into<SecretUrl>) -> Self {
        self.redis.url = url.into();
        self
    }

    /// `IPTRACK_REDIS_PREFIX`: the worker must use the same. Default `iptrack`.
    pub fn redis_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.redis.prefix = prefix.into();
        self
    }

    /// `IPTRACK_TRUSTED_PROXIES` and `IPTRACK_PROXY_HEADER`. Default: no proxy trusted,
    /// forwarding headers ignored.
    pub fn client_ip(mut self, settings: ClientIpSettings) -> Self {
        self.client_ip = settings;
        self
    }

    /// Buffer and batch bounds, and whether query strings are stored.
    pub fn log_pipeline(mut self, settings: LogPipelineSettings) -> Self {
        self.log_pipeline = settings;
        self
    }

    /// Answer 403 to blocked clients: the list is loaded from `blocked_ip` in the database
    /// at `database_url` (connected lazily, so the app starts while it is away) and kept
    /// current through Redis. The safelist is never blocked nor rate-limited.
    pub fn blocklist(
        mut self,
        database_url: impl Into<SecretUrl>,
        settings: BlocklistSettings,
    ) -> Self {
        self.blocklist = Some((database_url.into(), settings));
        self
    }

    /// Apply these rate limits (429 over a limit), counted in Redis.
    pub fn rate_limits(mut self, settings: RateLimitSettings) -> Self {
        self.rate_limits = Some(settings);
        self
    }

    /// Say who sent each request (a user id for the log and for a rule's user limit).
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Push the request logs over `connection` (a multiplexed connection to the same
    /// Redis the app already holds) instead of opening one more. The rate limiter and the
    /// blocklist sync still open their own: the limiter's round trip is on the request path
    /// and must not queue behind a batch push, and a subscribed connection carries nothing
    /// else.
    pub fn redis_connection(mut self, connection: redis::aio::ConnectionManager) -> Self {
        self.connection = Some(connection);
        self
    }

    /// Starts the background tasks (the batcher, the blocklist's) and returns their guard.
    /// Call it inside the Tokio runtime that will serve, and call
    /// [`TrackingGuard::shutdown`] after the server stops.
    pub async fn build(self) -> Result<TrackingGuard, BuildError> {
        let redis_error = |source| BuildError::Redis {
            url: self.redis.url.redacted(),
            source,
        };
        let connect = || queue::connect_to(&self.redis).map_err(redis_error);
        let background = CancellationToken::new();
        let pipeline_connection = match self.connection.clone() {
            Some(connection) => connection,
            None => connect()?,
        };
        let pipeline =
            LogPipeline::to_redis(&self.log_pipeline, pipeline_connection, &self.redis.prefix);
        let mut middleware = IpTracking::new(self.client_ip.resolver(), pipeline.sink())
            .with_query_string(self.log_pipeline.log_query_string);
        let (blocklist, blocklist_task) = match &self.blocklist {
            Some((database_url, settings)) => {
                let db = db::connect_lazy(database_url.expose())
                    .await
                    .map_err(|source| BuildError::Database {
                        url: database_url.redacted(),
                        source,
                    })?;
                let (list, task) = blocklist::start(settings, db, &self.redis, background.clone());
                middleware = middleware.with_blocklist(list.clone(), settings.safelist.clone());
                (Some(list), Some(task))
            }
            None => (None, None),
        };
        // The limiter has its own multiplexed connection: one round trip per ruled request.
        let rate_limit_metrics = Arc::new(RateLimitMetrics::default());
        if let Some(rules) = &self.rate_limits {
            middleware = middleware.with_rate_limiter(RateLimiter::new(
                rules,
                &self.redis.prefix,
                connect()?,
                rate_limit_metrics.clone(),
            ));
        }
        if let Some(identity) = self.identity {
            middleware = middleware.with_identity(identity);
        }
        Ok(TrackingGuard {
            middleware,
            pipeline: Some(pipeline),
            blocklist,
            blocklist_task,
            background,
            rate_limit_metrics,
        })
    }
}

/// Owns the middleware's background tasks. Call [`shutdown`](Self::shutdown) once the
/// server has stopped: it delivers the events still buffered. Dropped without it, the
/// guard warns and only asks the tasks to stop; events still buffered are delivered only
/// if the runtime keeps running long enough.
#[derive(Debug)]
#[must_use = "call .shutdown().await after the server stops, or buffered request logs are lost"]
pub struct TrackingGuard {
    middleware: IpTracking,
    pipeline: Option<LogPipeline>,
    blocklist: Option<SharedBlocklist>,
    blocklist_task: Option<JoinHandle<()>>,
    background: CancellationToken,
    rate_limit_metrics: Arc<RateLimitMetrics>,
}

impl TrackingGuard {
    /// The middleware to `wrap` around an app or scope; cheap to clone (once per worker).
    pub fn middleware(&self) -> IpTracking {
        self.middleware.clone()
    }

    /// The write end of the request-log buffer (its counters, its fill level).
    pub fn sink(&self) -> Option<LogSink> {
        self.pipeline.as_ref().map(LogPipeline::sink)
    }

    /// The blocklist as the middleware sees it, when one was asked for.
    pub fn blocklist(&self) -> Option<&SharedBlocklist> {
        self.blocklist.as_ref()
    }

    /// The rate limiter's counters (zero when no rate limits were given).
    pub fn rate_limit_metrics(&self) -> Arc<RateLimitMetrics> {
        self.rate_limit_metrics.clone()
    }

    /// Stops the background tasks and delivers what the log buffer holds (trying for at
    /// most [`FINAL_FLUSH_GRACE`](crate::FINAL_FLUSH_GRACE)). Call it after the server has
    /// stopped, so that no new events arrive.
    pub async fn shutdown(mut self) {
        self.background.cancel();
        if let Some(pipeline) = self.pipeline.take() {
            pipeline.finish().await;
        }
        if let Some(task) = self.blocklist_task.take()
            && let Err(error) = task.await
        {
            tracing::error!(%error, "blocklist task failed");
        }
    }
}

impl Drop for TrackingGuard {
    fn drop(&mut self) {
        self.background.cancel();
        if let Some(pipeline) = self.pipeline.take() {
            tracing::warn!(
                buffered_events = pipeline.sink().buffered(),
                "iptrack's TrackingGuard was dropped without shutdown(): request logs still \
                 buffered are delivered only if the runtime keeps running; call \
                 guard.shutdown().await after the server stops"
            );
            pipeline.stop_without_waiting();
        }
    }
}
