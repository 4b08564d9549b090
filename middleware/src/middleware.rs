//! The `IpTracking` middleware: resolve the client address, refuse it with 403 when it is
//! blocked, refuse it with 429 when a rate limit says so, otherwise let the application
//! answer; then record the request (refused ones too) in the log buffer. The only I/O
//! here is the rate-limit check, and only on routes a rule covers.

use std::{
    future::{Ready, ready},
    net::{IpAddr, Ipv4Addr},
    rc::Rc,
    sync::Arc,
    time::Instant,
};

use actix_web::{
    Error, FromRequest, HttpMessage, HttpRequest,
    body::{EitherBody, MessageBody},
    dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready},
    http::{StatusCode, header},
};
use futures::future::LocalBoxFuture;
use ipnet::IpNet;
use iptrack_core::{
    client_ip::ClientIpResolver,
    jobs::{
        LogEvent, MAX_PATH_BYTES, MAX_USER_AGENT_BYTES, bounded_canonical_path, bounded_header,
        bounded_method,
    },
    path::canonical_path,
};

use crate::{
    blocklist::SharedBlocklist,
    decision::{Gate, Pending, Verdict},
    pipeline::LogSink,
    ratelimit::{Identity, RateLimiter},
    request_metrics::RequestMetrics,
};

/// Wrap an actix-web `App` (or scope) with this to log every request through iptrack.
///
/// Most applications get one from [`IpTracking::builder`], which also starts what it needs
/// in the background:
///
/// ```ignore
/// let guard = IpTracking::builder().redis_url(url).build().await?;
/// let tracking = guard.middleware();
/// HttpServer::new(move || App::new().wrap(tracking.clone()).service(...))
/// ```
#[derive(Debug, Clone)]
pub struct IpTracking {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    resolver: ClientIpResolver,
    sink: LogSink,
    /// Blocklist, safelist and rate limiter: what the decision consults (`decision.rs`).
    gate: Gate,
    log_query_string: bool,
    /// Requests by status and blocked requests, for `/metrics`.
    metrics: Arc<RequestMetrics>,
    identity: Option<Identity>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("resolver", &self.resolver)
            .field("gate", &self.gate)
            .field("identity", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

impl IpTracking {
    /// Logs every request; blocks nothing.
    pub fn new(resolver: ClientIpResolver, sink: LogSink) -> Self {
        Self {
            inner: Arc::new(Inner {
                resolver,
                sink,
                gate: Gate::default(),
                log_query_string: false,
                metrics: Arc::new(RequestMetrics::default()),
                identity: None,
            }),
        }
    }

    /// Also answers 403 to clients `blocklist` blocks, except those in `safelist`.
    pub fn with_blocklist(self, blocklist: SharedBlocklist, safelist: Vec<IpNet>) -> Self {
        let inner = Arc::unwrap_or_clone(self.inner);
        Self {
            inner: Arc::new(Inner {
                gate: Gate {
                    blocklist: Some(blocklist),
                    safelist,
                    ..inner.gate
                },
                ..inner
            }),
        }
    }
}

impl IpTracking {
    /// The request counters this middleware keeps (rendered at `/metrics`).
    pub fn metrics(&self) -> Arc<RequestMetrics> {
        self.inner.metrics.clone()
    }

    /// Also stores each request's query string. Off by default: query strings carry
    /// tokens, e-mail addresses and password-reset codes.
    pub fn with_query_string(self, on: bool) -> Self {
        let inner = Arc::unwrap_or_clone(self.inner);
        Self {
            inner: Arc::new(Inner {
                log_query_string: on,
                ..inner
            }),
        }
    }
}

impl IpTracking {
    /// Also applies `limiter`'s rules (429 over the limit), except to the safelist (see
    /// [`IpTracking::with_blocklist`]).
    pub fn with_rate_limiter(self, limiter: RateLimiter) -> Self {
        let inner = Arc::unwrap_or_clone(self.inner);
        Self {
            inner: Arc::new(Inner {
                gate: Gate {
                    rate_limiter: Some(limiter),
                    ..inner.gate
                },
                ..inner
            }),
        }
    }

    /// Says who sent each request: the user id goes into the request log and selects a
    /// rule's authenticated limit. Without it every client is anonymous.
    pub fn with_identity(self, identity: Identity) -> Self {
        let inner = Arc::unwrap_or_clone(self.inner);
        Self {
            inner: Arc::new(Inner {
                identity: Some(identity),
                ..inner
            }),
        }
    }
}

impl Inner {
    /// Every answered request ends here, whoever answered it (the app, the blocklist or the
    /// rate limiter): counted by status for `/metrics` and handed to the log buffer.
    fn finish(&self, request: RequestFacts, status: StatusCode) {
        self.metrics.count_status(status.as_u16());
        self.sink.record(request.into_event(status));
    }

    /// Answers a refused request with the decision's response, counted and logged.
    fn refuse<B>(
        &self,
        req: ServiceRequest,
        request: RequestFacts,
        verdict: &Verdict,
    ) -> ServiceResponse<EitherBody<B>> {
        if matches!(verdict, Verdict::Blocked) {
            self.metrics.count_blocked();
        }
        let response = verdict.refusal().unwrap_or_else(|| {
            // Unreachable: only refusals get here; a 500 rather than a panic if one did.
            actix_web::HttpResponse::InternalServerError().finish()
        });
        self.finish(request, response.status());
        let (request, _) = req.into_parts();
        ServiceResponse::new(request, response).map_into_right_body()
    }
}

/// What `/forward-auth` (iptrack-web's `forward_auth.rs`) shares with the middleware: the
/// same resolver, the same decision and the same way into the log, for a request the
/// application describes by its parts instead of serving it.
impl IpTracking {
    pub fn resolver(&self) -> &ClientIpResolver {
        &self.inner.resolver
    }

    pub fn log_query_string(&self) -> bool {
        self.inner.log_query_string
    }

    /// The middleware's decision for client `ip`, `method` and canonical `path`.
    pub async fn decide(&self, ip: IpAddr, method: &str, path: &str) -> Verdict {
        let verdict = self.inner.gate.decide(ip, method, path).settle(None).await;
        if matches!(verdict, Verdict::Blocked) {
            self.inner.metrics.count_blocked();
        }
        verdict
    }

    /// Counts and logs an answered request, as the middleware does its own.
    pub fn finish(&self, request: RequestFacts, status: StatusCode) {
        self.inner.finish(request, status);
    }
}

/// The resolved client address, available to handlers as an extractor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl FromRequest for ClientIp {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    /// Outside the middleware the peer address is all there is.
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let ip = req
            .extensions()
            .get::<ClientIp>()
            .copied()
            .unwrap_or_else(|| {
                ClientIp(
                    req.peer_addr()
                        .map(|addr| addr.ip().to_canonical())
                        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                )
            });
        ready(Ok(ip))
    }
}

impl<S, B> Transform<S, ServiceRequest> for IpTracking
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = IpTrackingMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(IpTrackingMiddleware {
            service: Rc::new(service),
            inner: self.inner.clone(),
        }))
    }
}

#[doc(hidden)]
#[derive(Debug)]
pub struct IpTrackingMiddleware<S> {
    service: Rc<S>,
    inner: Arc<Inner>,
}

impl<S, B> Service<ServiceRequest> for IpTrackingMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let resolver = &self.inner.resolver;
        let peer = req
            .peer_addr()
            .map(|addr| addr.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let forwarding = req
            .headers()
            .get_all(resolver.header().name())
            .map(|value| value.as_bytes());
        let ip = resolver.resolve(peer, forwarding);
        req.extensions_mut().insert(ClientIp(ip));
        let user_id = self
            .inner
            .identity
            .as_ref()
            .and_then(|identity| identity(req.request()));
        // The router decodes escapes before it matches routes, so rules must match the
        // path in the canonical form that merges every spelling of it (`/%6cogin` is
        // `/login`). Borrowed, no allocation, for a path already in that form.
        let path = canonical_path(req.path());
        let request = RequestFacts::read(&req, &path, ip, user_id, self.inner.log_query_string);

        let inner = self.inner.clone();
        let pending = match inner.gate.decide(ip, req.method().as_str(), &path) {
            Pending::Done(Verdict::Allowed(_)) => {
                // No rule covers the request: no I/O before the app.
                let response = self.service.call(req);
                return Box::pin(async move {
                    let result = response.await;
                    inner.finish(request, status_of(&result));
                    result.map(ServiceResponse::map_into_left_body)
                });
            }
            // Blocked: refused at once, and logged like any request.
            Pending::Done(verdict) => {
                return Box::pin(async move { Ok(inner.refuse(req, request, &verdict)) });
            }
            pending => pending,
        };

        let service = Rc::clone(&self.service);
        Box::pin(async move {
            let verdict = pending.settle(request.user_id.as_deref()).await;
            let Verdict::Allowed(ruled) = &verdict else {
                return Ok(inner.refuse(req, request, &verdict));
            };
            let mut result = service.call(req).await;
            if let (Ok(response), Some(ruled)) = (&mut result, ruled) {
                ruled.insert_headers(response.headers_mut());
            }
            inner.finish(request, status_of(&result));
            result.map(ServiceResponse::map_into_left_body)
        })
    }
}

fn status_of<B>(result: &Result<ServiceResponse<B>, Error>) -> StatusCode {
    match result {
        Ok(response) => response.status(),
        Err(error) => error.as_response_error().status_code(),
    }
}

/// What the log keeps of a request, read before the app sees it (the app may consume
/// the request) and turned into a [`LogEvent`] once the status is known.
#[derive(Debug)]
pub struct RequestFacts {
    ip: IpAddr,
    started: Instant,
    method: String,
    path: String,
    user_agent: String,
    user_id: Option<String>,
    query_string: Option<String>,
}

impl RequestFacts {
    /// `path` is the request's canonical path.
    fn read(
        req: &ServiceRequest,
        path: &str,
        ip: IpAddr,
        user_id: Option<String>,
        with_query_string: bool,
    ) -> Self {
        let query = with_query_string.then(|| req.query_string());
        Self::new(
            ip,
            req.method().as_str(),
            path,
            req.headers(),
            user_id,
            query,
        )
    }

    /// A request described by its parts (`/forward-auth` describes the proxy's request this
    /// way): `path` canonical, `query` raw (still percent-encoded, as the client sent it) or
    /// `None` when query strings are not logged; the user agent is read from `headers`.
    pub fn new(
        ip: IpAddr,
        method: &str,
        path: &str,
        headers: &header::HeaderMap,
        user_id: Option<String>,
        query: Option<&str>,
    ) -> Self {
        Self {
            ip,
            started: Instant::now(),
            method: bounded_method(method),
            path: bounded_canonical_path(path),
            user_agent: headers
                .get(header::USER_AGENT)
                .map(|value| bounded_header(value.as_bytes(), MAX_USER_AGENT_BYTES))
                .unwrap_or_default(),
            user_id,
            query_string: query
                .filter(|query| !query.is_empty())
                .map(|query| bounded_header(query.as_bytes(), MAX_PATH_BYTES)),
        }
    }

    fn into_event(self, status: StatusCode) -> LogEvent {
        LogEvent {
            ip: self.ip,
            timestamp: iptrack_core::jobs::event_time(),
            method: self.method,
            path: self.path,
            status: status.as_u16(),
            duration_us: u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            user_agent: self.user_agent,
            user_id: self.user_id,
            query_string: self.query_string,
        }
    }
}
