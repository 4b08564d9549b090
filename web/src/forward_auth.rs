//! `/forward-auth`: iptrack as the forward-auth service of a reverse proxy (nginx
//! `auth_request`, Caddy `forward_auth`, Traefik `forwardAuth`, Envoy `ext_authz` in HTTP
//! mode), so an app in any language gets iptrack's logging, blocking and rate limits.
//!
//! The proxy asks about the request it holds; iptrack answers with the middleware's own
//! decision (`iptrack_middleware`'s `decision.rs`) on that request and logs it through the same pipeline:
//! - the original request comes from `X-Forwarded-Method` + `X-Forwarded-Uri` (Traefik,
//!   Caddy, Envoy) or `X-Original-Method` + `X-Original-URI` (nginx); exactly one of the
//!   two pairs, each header exactly once, else 400 with a message. The URI is read with the
//!   parser actix-web reads a request line with (`http::Uri`), and its path, without the
//!   query string, put in the canonical form every rule matches (`iptrack_core::path`),
//!   so a path spelt to escape the router-served rules escapes these neither;
//! - the client is resolved from the proxy's forwarding header by the middleware's resolver
//!   (`IPTRACK_TRUSTED_PROXIES`, right to left); a chain that names no client is a 400 here
//!   rather than the middleware's fallback to the peer, which would make the proxy itself
//!   the client of every request;
//! - answers: 403 blocked, 429 limited (`Retry-After`, RateLimit headers), else 200 with no
//!   body and the client address in [`CLIENT_IP_HEADER`] for the proxy to pass upstream.
//!   The client is always anonymous: a rule's anonymous limit applies.
//! - only a trusted proxy may ask: a request from any other TCP peer is an ordinary
//!   request to `/forward-auth` (its own address, method and path; the decision on that,
//!   else 403), never the request it claims to describe.
//!
//! The status logged is the decision's (200, 403, 429): the upstream's own answer comes
//! after, and a forward-auth service never sees it (README, "Forward-auth").

use std::net::{IpAddr, Ipv4Addr};

use actix_web::{
    HttpRequest, HttpResponse,
    http::{
        Method, StatusCode, Uri,
        header::{ContentType, HeaderMap, HeaderName, HeaderValue},
    },
    web,
};
use iptrack_core::path::canonical_path;

use iptrack_middleware::{IpTracking, RequestFacts, Verdict};

/// The endpoint's path (and prefix: Envoy appends the original path to it).
pub const PATH: &str = "/forward-auth";

/// Answers of allowed requests carry the resolved client address in this header.
pub const CLIENT_IP_HEADER: HeaderName = HeaderName::from_static("x-iptrack-client-ip");

/// The longest method accepted: what `request_log.method` holds.
pub const MAX_METHOD_BYTES: usize = 16;

/// One proxy convention for describing the original request.
#[derive(Debug)]
pub struct HeaderPair {
    pub method: &'static str,
    pub uri: &'static str,
}

/// The header pairs read, as the proxies spell them; a proxy sends one pair.
pub const HEADER_PAIRS: [HeaderPair; 2] = [
    // Traefik, Caddy (and Envoy, configured to send them).
    HeaderPair {
        method: "X-Forwarded-Method",
        uri: "X-Forwarded-Uri",
    },
    // nginx's convention.
    HeaderPair {
        method: "X-Original-Method",
        uri: "X-Original-URI",
    },
];

#[derive(Debug, Clone)]
struct ForwardAuth {
    tracking: IpTracking,
}

/// Mounts `/forward-auth` (and below it, for Envoy's path prefix) for every method.
pub(crate) fn configure(tracking: IpTracking) -> impl Fn(&mut web::ServiceConfig) + Clone {
    let state = web::Data::new(ForwardAuth { tracking });
    move |cfg: &mut web::ServiceConfig| {
        cfg.service(
            web::resource([PATH.to_owned(), format!("{PATH}/{{tail:.*}}")])
                .app_data(state.clone())
                .to(forward_auth),
        );
    }
}

async fn forward_auth(req: HttpRequest, state: web::Data<ForwardAuth>) -> HttpResponse {
    let tracking = &state.tracking;
    let resolver = tracking.resolver();
    let peer = req
        .peer_addr()
        .map(|addr| addr.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let forwarding = || {
        req.headers()
            .get_all(resolver.header().name())
            .map(|value| value.as_bytes())
    };
    if !resolver.trusts(peer) {
        return untrusted(tracking, &req, resolver.resolve(peer, forwarding())).await;
    }
    let original = match Original::read(req.headers()) {
        Ok(original) => original,
        Err(problem) => {
            return bad_request(
                tracking,
                &req,
                resolver.resolve(peer, forwarding()),
                problem,
            );
        }
    };
    let Some(ip) = resolver.resolve_chain(peer, forwarding()) else {
        let problem = format!(
            "{}: missing or malformed; the proxy must send the client's address",
            resolver.header().name()
        );
        return bad_request(
            tracking,
            &req,
            resolver.resolve(peer, forwarding()),
            problem,
        );
    };

    // The path as the router-served request's: the URI's path without its query string,
    // in the canonical form rules match.
    let path = canonical_path(original.uri.path());
    let method = original.method.as_str();
    let query = tracking
        .log_query_string()
        .then(|| original.uri.query().unwrap_or_default());
    let request = RequestFacts::new(ip, method, &path, req.headers(), None, query);
    let verdict = tracking.decide(ip, method, &path).await;
    let response = verdict.refusal().unwrap_or_else(|| allowed(ip, &verdict));
    tracking.finish(request, response.status());
    response
}

/// 200, no body, the client address (and the RateLimit headers when a rule counted it).
fn allowed(ip: IpAddr, verdict: &Verdict) -> HttpResponse {
    let mut response = HttpResponse::Ok().finish();
    if let Ok(value) = HeaderValue::from_str(&ip.to_string()) {
        response.headers_mut().insert(CLIENT_IP_HEADER, value);
    }
    if let Verdict::Allowed(Some(ruled)) = verdict {
        ruled.insert_headers(response.headers_mut());
    }
    response
}

/// A peer that is no trusted proxy asked: an ordinary request to `/forward-auth` from its
/// own address, decided and logged as such, and refused.
async fn untrusted(tracking: &IpTracking, req: &HttpRequest, ip: IpAddr) -> HttpResponse {
    let path = canonical_path(req.path());
    let request = own_request(tracking, req, ip, &path);
    let verdict = tracking.decide(ip, req.method().as_str(), &path).await;
    let response = verdict.refusal().unwrap_or_else(|| {
        HttpResponse::Forbidden()
            .content_type(ContentType::plaintext())
            .body("Forbidden: only a trusted proxy (IPTRACK_TRUSTED_PROXIES) may ask\n")
    });
    tracking.finish(request, response.status());
    response
}

/// The proxy's request does not describe an original request: 400 saying why, logged as
/// the request to `/forward-auth` it is.
fn bad_request(
    tracking: &IpTracking,
    req: &HttpRequest,
    ip: IpAddr,
    problem: String,
) -> HttpResponse {
    let path = canonical_path(req.path());
    let request = own_request(tracking, req, ip, &path);
    tracking.finish(request, StatusCode::BAD_REQUEST);
    HttpResponse::BadRequest()
        .content_type(ContentType::plaintext())
        .body(format!("{problem}\n"))
}

fn own_request(tracking: &IpTracking, req: &HttpRequest, ip: IpAddr, path: &str) -> RequestFacts {
    let query = tracking.log_query_string().then(|| req.query_string());
    RequestFacts::new(ip, req.method().as_str(), path, req.headers(), None, query)
}

/// The request the proxy asks about.
#[derive(Debug)]
struct Original {
    method: Method,
    uri: Uri,
}

impl Original {
    /// Refuses anything ambiguous: no pair, both pairs (one may be the client's forgery that
    /// the proxy passed along), a header missing or repeated, a value that is no method or
    /// no request target.
    fn read(headers: &HeaderMap) -> Result<Self, String> {
        let sent: Vec<&HeaderPair> = HEADER_PAIRS
            .iter()
            .filter(|pair| headers.contains_key(pair.method) || headers.contains_key(pair.uri))
            .collect();
        let pair = match sent.as_slice() {
            [pair] => pair,
            [] => {
                return Err(
                    "missing X-Forwarded-Method and X-Forwarded-Uri (Traefik, Caddy, Envoy) or \
                     X-Original-Method and X-Original-URI (nginx)"
                        .to_owned(),
                );
            }
            _ => {
                return Err(
                    "both X-Forwarded-Method/X-Forwarded-Uri and X-Original-Method/X-Original-URI \
                     were sent; the proxy must send one pair and remove the other"
                        .to_owned(),
                );
            }
        };
        let method = one_value(headers, pair.method)?;
        let uri = one_value(headers, pair.uri)?;
        Ok(Self {
            method: parse_method(method)
                .map_err(|problem| format!("{}: {problem}", pair.method))?,
            uri: parse_target(uri).map_err(|problem| format!("{}: {problem}", pair.uri))?,
        })
    }
}

fn one_value<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h HeaderValue, String> {
    let mut values = headers.get_all(name);
    match (values.next(), values.next()) {
        (Some(value), None) => Ok(value),
        (None, _) => Err(format!("{name}: missing")),
        (Some(_), Some(_)) => Err(format!("{name}: sent more than once")),
    }
}

/// An HTTP method token, as the request line's; case kept (methods are case-sensitive, and
/// rules name upper-case ones, as the middleware compares them).
fn parse_method(value: &HeaderValue) -> Result<Method, &'static str> {
    let bytes = value.as_bytes();
    if bytes.len() > MAX_METHOD_BYTES {
        return Err("longer than 16 characters");
    }
    Method::from_bytes(bytes).map_err(|_| "not an HTTP method")
}

/// A request target in origin form (`/path?query`) or absolute form
/// (`http://host/path?query`, whose path the router would serve), parsed by the same
/// parser actix-web reads request lines with.
fn parse_target(value: &HeaderValue) -> Result<Uri, String> {
    let uri = Uri::try_from(value.as_bytes())
        .map_err(|error| format!("not a request target ({error})"))?;
    let path = uri.path();
    if !(path.starts_with('/') || path == "*") || (uri.scheme().is_none() && uri.host().is_some()) {
        return Err("not a request target (expected /path?query or http://host/path?query)".into());
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        map
    }

    fn path_of(uri: &[u8]) -> Result<String, String> {
        let original = Original::read(&headers(&[
            ("x-forwarded-method", b"POST"),
            ("x-forwarded-uri", uri),
        ]))?;
        Ok(canonical_path(original.uri.path()).into_owned())
    }

    #[test]
    fn the_path_is_the_canonical_path_without_the_query_string() {
        for (uri, path) in [
            (&b"/login"[..], "/login"),
            (b"/login?next=/admin", "/login"),
            (b"/%6cogin", "/login"),
            (b"/%6Cogi%6e?x", "/login"),
            (b"/login#frag", "/login"),
            (b"//login", "//login"),
            (b"/a/../login", "/a/../login"),
            (b"/%2e%2e/login", "/../login"),
            (b"/login%2f", "/login%2F"),
            (b"http://example.com/login?x=1", "/login"),
            (b"https://example.com/%6cogin", "/login"),
            (b"http://example.com", "/"),
            (b"/a{b}", "/a%7Bb%7D"),
        ] {
            assert_eq!(path_of(uri).as_deref(), Ok(path), "{uri:?}");
        }
    }

    #[test]
    fn what_is_no_request_target_is_refused() {
        let long = format!("/{}", "a".repeat(70_000));
        for uri in [
            &b""[..],
            b"login",
            b"example.com:443",
            b"/a b",
            b"/a\tb",
            b"/caf\xc3\xa9",
            long.as_bytes(),
        ] {
            let error = path_of(uri).unwrap_err();
            assert!(error.starts_with("X-Forwarded-Uri: "), "{uri:?}: {error}");
        }
    }

    #[test]
    fn exactly_one_pair_with_each_header_once() {
        let both = Original::read(&headers(&[
            ("x-forwarded-method", b"GET"),
            ("x-forwarded-uri", b"/"),
            ("x-original-uri", b"/login"),
        ]))
        .unwrap_err();
        assert!(both.contains("one pair"), "{both}");
        let none = Original::read(&HeaderMap::new()).unwrap_err();
        assert!(none.starts_with("missing"), "{none}");
        let twice = Original::read(&headers(&[
            ("x-original-method", b"POST"),
            ("x-original-uri", b"/"),
            ("x-original-uri", b"/login"),
        ]))
        .unwrap_err();
        assert_eq!(twice, "X-Original-URI: sent more than once");
        let half = Original::read(&headers(&[("x-original-uri", b"/login")])).unwrap_err();
        assert_eq!(half, "X-Original-Method: missing");
        let nginx = Original::read(&headers(&[
            ("x-original-method", b"POST"),
            ("x-original-uri", b"/%6cogin?a=b"),
        ]))
        .unwrap();
        assert_eq!(nginx.method, Method::POST);
        assert_eq!(nginx.uri.path(), "/%6cogin");
    }

    #[test]
    fn methods_are_tokens_kept_as_sent() {
        let method = |value: &[u8]| parse_method(&HeaderValue::from_bytes(value).unwrap());
        assert_eq!(method(b"POST"), Ok(Method::POST));
        assert_eq!(method(b"post").unwrap().as_str(), "post");
        assert_eq!(method(b"PROPFIND").unwrap().as_str(), "PROPFIND");
        for bad in [
            &b""[..],
            b"PO ST",
            b"GET,POST",
            b"A(B",
            b"AAAAAAAAAAAAAAAAA",
        ] {
            assert!(method(bad).is_err(), "{bad:?}");
        }
    }
}
