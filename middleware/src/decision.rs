//! The one decision iptrack makes about a request before anything answers it: the client
//! is blocked (403), over a rate-limit rule (429), or allowed. The `IpTracking` middleware
//! asks it before the application; `/forward-auth` asks it on behalf of a proxy about the
//! request the proxy holds. One function, so a proxy's clients and an embedding app's clients
//! are refused by exactly the same rules.

use std::{net::IpAddr, sync::Arc};

use actix_web::{
    HttpResponse,
    http::header::{ContentType, HeaderMap},
};
use chrono::Utc;
use ipnet::IpNet;
use iptrack_core::settings::RateLimitRule;

use crate::{
    blocklist::SharedBlocklist,
    ratelimit::{self, RateLimiter},
};

/// What the decision consults: the blocklist, the safelist, the rate limiter.
#[derive(Debug, Clone, Default)]
pub(crate) struct Gate {
    pub(crate) blocklist: Option<SharedBlocklist>,
    pub(crate) safelist: Vec<IpNet>,
    pub(crate) rate_limiter: Option<RateLimiter>,
}

/// The outcome for one request.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// The client is blocked: 403.
    Blocked,
    /// Over this rule's limit: 429 with `Retry-After` and the RateLimit headers.
    Limited(Ruled),
    /// May go on; with the rule and count when a rule covered the request.
    Allowed(Option<Ruled>),
}

/// A rate-limit rule and its answer for one request.
#[derive(Debug, Clone)]
pub struct Ruled {
    pub rule: Arc<RateLimitRule>,
    pub decision: ratelimit::Decision,
}

/// A decision taken without I/O, or the one rate-limit check still to make.
#[derive(Debug)]
pub(crate) enum Pending {
    Done(Verdict),
    Limit {
        limiter: RateLimiter,
        rule: Arc<RateLimitRule>,
        ip: IpAddr,
    },
}

impl Gate {
    fn is_safelisted(&self, ip: IpAddr) -> bool {
        self.safelist.iter().any(|net| net.contains(&ip))
    }

    fn is_blocked(&self, ip: IpAddr) -> bool {
        let Some(blocklist) = &self.blocklist else {
            return false;
        };
        !self.is_safelisted(ip) && blocklist.load().blocks(ip, Utc::now())
    }

    /// The decision for a request from client `ip` with `method` and `path` (its canonical
    /// form, `iptrack_core::path::canonical_path`; rules match nothing else). Everything but
    /// the rate-limit check happens here, without I/O; [`Pending::settle`] makes that check.
    pub(crate) fn decide(&self, ip: IpAddr, method: &str, path: &str) -> Pending {
        if self.is_blocked(ip) {
            return Pending::Done(Verdict::Blocked);
        }
        match &self.rate_limiter {
            Some(limiter) if !self.is_safelisted(ip) => match limiter.rule_for(method, path) {
                Some(rule) => Pending::Limit {
                    limiter: limiter.clone(),
                    rule: Arc::clone(rule),
                    ip,
                },
                None => Pending::Done(Verdict::Allowed(None)),
            },
            _ => Pending::Done(Verdict::Allowed(None)),
        }
    }
}

impl Pending {
    /// The verdict, after the rate-limit check if one is due; `user` is the authenticated
    /// user (the rule's user limit then applies), `None` for an anonymous client.
    pub(crate) async fn settle(self, user: Option<&str>) -> Verdict {
        match self {
            Pending::Done(verdict) => verdict,
            Pending::Limit { limiter, rule, ip } => {
                let decision = limiter.check(&rule, ip, user).await;
                let ruled = Ruled { rule, decision };
                if decision.allowed {
                    Verdict::Allowed(Some(ruled))
                } else {
                    Verdict::Limited(ruled)
                }
            }
        }
    }
}

impl Verdict {
    /// The response that refuses the request, or `None` when it is allowed. A short body
    /// that reveals nothing about why a client is blocked.
    pub fn refusal(&self) -> Option<HttpResponse> {
        match self {
            Verdict::Blocked => Some(
                HttpResponse::Forbidden()
                    .content_type(ContentType::plaintext())
                    .body("Forbidden\n"),
            ),
            Verdict::Limited(ruled) => {
                let mut response = HttpResponse::TooManyRequests()
                    .content_type(ContentType::plaintext())
                    .body("Too many requests; see Retry-After\n");
                ruled.insert_headers(response.headers_mut());
                ratelimit::headers::insert_retry_after(response.headers_mut(), &ruled.decision);
                Some(response)
            }
            Verdict::Allowed(_) => None,
        }
    }
}

impl Ruled {
    /// The draft RateLimit headers, on refusals and on the answers to allowed requests.
    pub fn insert_headers(&self, headers: &mut HeaderMap) {
        ratelimit::headers::insert(headers, &self.rule.name, &self.decision);
    }
}
