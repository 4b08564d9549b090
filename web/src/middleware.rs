//! The `IpTracking` middleware: resolve the client address, let the application answer,
//! then record the request in the log buffer. Nothing here waits on I/O.

use std::{
    future::{Ready, ready},
    net::{IpAddr, Ipv4Addr},
    rc::Rc,
    sync::Arc,
};

use actix_web::{
    Error, FromRequest, HttpMessage, HttpRequest,
    body::MessageBody,
    dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready},
};
use chrono::Utc;
use futures::future::LocalBoxFuture;
use iptrack_core::{
    client_ip::ClientIpResolver,
    jobs::{LogEvent, bounded_path},
};

use crate::pipeline::LogSink;

/// Wrap an actix-web `App` (or scope) with this to log every request through iptrack.
///
/// ```ignore
/// let pipeline = LogPipeline::start(&settings, redis_conn);
/// let tracking = IpTracking::new(resolver, pipeline.sink());
/// HttpServer::new(move || App::new().wrap(tracking.clone()).service(...))
/// ```
#[derive(Debug, Clone)]
pub struct IpTracking {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    resolver: ClientIpResolver,
    sink: LogSink,
}

impl IpTracking {
    pub fn new(resolver: ClientIpResolver, sink: LogSink) -> Self {
        Self {
            inner: Arc::new(Inner { resolver, sink }),
        }
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
    type Response = ServiceResponse<B>;
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
    type Response = ServiceResponse<B>;
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
        // `path()` is the raw (still percent-encoded) URI path: ASCII, without the query.
        let path = bounded_path(req.path());
        let method = req.method().as_str().to_owned();

        let inner = self.inner.clone();
        let response = self.service.call(req);
        Box::pin(async move {
            let result = response.await;
            let status = match &result {
                Ok(response) => response.status(),
                Err(error) => error.as_response_error().status_code(),
            };
            inner.sink.record(LogEvent {
                ip,
                timestamp: Utc::now(),
                method,
                path,
                status: status.as_u16(),
            });
            result
        })
    }
}
