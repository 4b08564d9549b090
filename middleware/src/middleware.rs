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
    Error, FromRequest, HttpMessage, HttpRequest, HttpResponse,
    body::{EitherBody, MessageBody},
    dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready},
    http::{
        StatusCode,
        header::{self, ContentType},
    },
};
use chrono::Utc;
use futures::future::LocalBoxFuture;
use ipnet::IpNet;
use iptrack_core::{
    client_ip::ClientIpResolver,
    jobs::{
        LogEvent, MAX_PATH_BYTES, MAX_USER_AGENT_BYTES, bounded_canonical_path, bounded_header,
    },
    path::canonical_path,
};

use crate::{
    blocklist::SharedBlocklist,
    pipeline::LogSink,
    ratelimit::{self, Identity, RateLimiter},
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
    blocklist: Option<SharedBlocklist>,
    safelist: Vec<IpNet>,
    log_query_string: bool,
    /// Requests by status and blocked requests, for `/metrics`.
    metrics: Arc<RequestMetrics>,
    rate_limiter: Option<RateLimiter>,
    identity: Option<Identity>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("resolver", &self.resolver)
            .field("blocklist", &self.blocklist)
            .field("safelist", &self.safelist)
            .field("rate_limiter", &self.rate_limiter)
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
                blocklist: None,
                safelist: Vec::new(),
                log_query_string: false,
                metrics: Arc::new(RequestMetrics::default()),
                rate_limiter: None,
                identity: None,
            }),
        }
    }

    /// Also answers 403 to clients `blocklist` blocks, except those in `safelist`.
    pub fn with_blocklist(self, blocklist: SharedBlocklist, safelist: Vec<IpNet>) -> Self {
        let inner = Arc::unwrap_or_clone(self.inner);
        Self {
            inner: Arc::new(Inner {
                blocklist: Some(blocklist),
                safelist,
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
                rate_limiter: Some(limiter),
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

    fn is_safelisted(&self, ip: IpAddr) -> bool {
        self.safelist.iter().any(|net| net.contains(&ip))
    }

    fn is_blocked(&self, ip: IpAddr) -> bool {
        let Some(blocklist) = &self.blocklist else {
            return false;
        };
        !self.is_safelisted(ip) && blocklist.load().blocks(ip, Utc::now())
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

        if self.inner.is_blocked(ip) {
            // A short body that reveals nothing about why; logged like any request.
            let response = HttpResponse::Forbidden()
                .content_type(ContentType::plaintext())
                .body("Forbidden\n");
            self.inner.metrics.count_blocked();
            self.inner.finish(request, StatusCode::FORBIDDEN);
            let (request, _) = req.into_parts();
            let response = ServiceResponse::new(request, response).map_into_right_body();
            return Box::pin(async move { Ok(response) });
        }

        let inner = self.inner.clone();
        let ruled = match &inner.rate_limiter {
            Some(limiter) if !inner.is_safelisted(ip) => limiter
                .rule_for(req.method().as_str(), &path)
                .map(|rule| (limiter.clone(), Arc::clone(rule))),
            _ => None,
        };
        let Some((limiter, rule)) = ruled else {
            let response = self.service.call(req);
            return Box::pin(async move {
                let result = response.await;
                inner.finish(request, status_of(&result));
                result.map(ServiceResponse::map_into_left_body)
            });
        };

        let service = Rc::clone(&self.service);
        Box::pin(async move {
            let decision = limiter.check(&rule, ip, request.user_id.as_deref()).await;
            if !decision.allowed {
                let mut response = HttpResponse::TooManyRequests()
                    .content_type(ContentType::plaintext())
                    .body("Too many requests; see Retry-After\n");
                ratelimit::headers::insert(response.headers_mut(), &rule.name, &decision);
                ratelimit::headers::insert_retry_after(response.headers_mut(), &decision);
                inner.finish(request, StatusCode::TOO_MANY_REQUESTS);
                let (request, _) = req.into_parts();
                return Ok(ServiceResponse::new(request, response).map_into_right_body());
            }
            let mut result = service.call(req).await;
            if let Ok(response) = &mut result {
                ratelimit::headers::insert(response.headers_mut(), &rule.name, &decision);
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
struct RequestFacts {
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
        // The query string is stored raw (still percent-encoded), as the client sent it.
        let query = req.query_string();
        Self {
            ip,
            started: Instant::now(),
            method: req.method().as_str().to_owned(),
            path: bounded_canonical_path(path),
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .map(|value| bounded_header(value.as_bytes(), MAX_USER_AGENT_BYTES))
                .unwrap_or_default(),
            user_id,
            query_string: (with_query_string && !query.is_empty())
                .then(|| bounded_header(query.as_bytes(), MAX_PATH_BYTES)),
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
