//! Rate limits on the routes the settings name (`IPTRACK_RATE_LIMITS`).
//!
//! - Who: an authenticated user (the app's [`Identity`] hook says who) is limited by user
//!   id wherever they come from; anyone else by address, IPv6 grouped by network
//!   (`IPTRACK_RATE_LIMIT_IPV6_PREFIX`, default /64).
//! - How: a sliding log per client in Redis, one atomic script call per ruled request
//!   ([`redis_store`]), so every web instance shares one budget.
//! - When Redis is unreachable: the same rules on a bounded in-memory log per instance
//!   ([`memory`]), the process's one Redis-away report (`iptrack_core::redis_status`, at
//!   most one warning per interval for all its parts), and a counter on `/metrics`;
//!   the shared counters are tried again after [`REDIS_RETRY_AFTER`].
//! - What the client sees: [`headers`].

pub mod headers;
mod memory;
mod redis_store;

use std::{
    fmt::Write,
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use actix_web::HttpRequest;
use ipnet::IpNet;
use iptrack_core::settings::{RateLimitRule, RateLimitSettings};
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};

use crate::metrics::RateLimitMetrics;

/// How long one Redis decision may take before the request is decided in memory instead:
/// a login must not hang on a stalled Redis.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(500);
/// After a failure, requests are decided in memory this long before Redis is tried again,
/// so an outage costs one timeout per interval rather than one per request.
pub const REDIS_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Clients the in-memory fallback remembers at most; beyond, the least recently seen go.
pub const FALLBACK_CAPACITY: u64 = 100_000;

/// The app's knowledge of who sent a request: a user id, or `None` for an anonymous
/// client. Called for every request, before the app, so it must not do I/O (read what the
/// session middleware already decoded, for instance).
pub type Identity = Arc<dyn Fn(&HttpRequest) -> Option<String> + Send + Sync>;

/// Who a limit is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject<'a> {
    User(&'a str),
    Address(IpAddr),
}

/// The answer to one ruled request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The limit that applied (anonymous or authenticated).
    pub limit: u32,
    /// Requests left in the current window after this one.
    pub remaining: u32,
    /// Until the oldest counted request leaves the window and one more is allowed.
    pub reset: Duration,
    pub window: Duration,
}

/// The rules, the shared Redis counters and the in-memory fallback.
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    /// Shared, so a ruled request takes its rule along without copying it.
    rules: Vec<Arc<RateLimitRule>>,
    ipv6_prefix: u8,
    key_prefix: String,
    redis: redis_store::RedisLog,
    memory: memory::MemoryLog,
    metrics: Arc<RateLimitMetrics>,
    health: Mutex<Health>,
}

/// Whether Redis is being used.
#[derive(Debug, Default)]
struct Health {
    /// `Some` while deciding in memory: Redis is tried again from this instant.
    retry_redis_at: Option<Instant>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("rules", &self.inner.rules)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// `redis_prefix` is `IPTRACK_REDIS_PREFIX`; keys are
    /// `<prefix>:ratelimit:<rule>:ip:<address or network>` and
    /// `<prefix>:ratelimit:<rule>:user:<sha-256 of the user id>`.
    pub fn new(
        settings: &RateLimitSettings,
        redis_prefix: &str,
        redis: ConnectionManager,
        metrics: Arc<RateLimitMetrics>,
    ) -> Self {
        let longest_window = settings
            .rules
            .iter()
            .map(|rule| rule.window)
            .max()
            .unwrap_or(Duration::from_secs(1));
        Self {
            inner: Arc::new(Inner {
                rules: settings.rules.iter().cloned().map(Arc::new).collect(),
                ipv6_prefix: settings.ipv6_prefix,
                key_prefix: format!("{redis_prefix}:ratelimit"),
                redis: redis_store::RedisLog::new(redis),
                memory: memory::MemoryLog::new(FALLBACK_CAPACITY, longest_window),
                metrics,
                health: Mutex::new(Health::default()),
            }),
        }
    }

    /// The first rule covering this request, if any; the only check unruled requests pay.
    pub fn rule_for(&self, method: &str, path: &str) -> Option<&Arc<RateLimitRule>> {
        self.inner
            .rules
            .iter()
            .find(|rule| rule.matches(method, path))
    }

    pub fn metrics(&self) -> &Arc<RateLimitMetrics> {
        &self.inner.metrics
    }

    /// Counts this request against `rule` for the user, or else the address, and says
    /// whether it may go on. Never fails: without Redis, this instance decides alone.
    pub async fn check(&self, rule: &RateLimitRule, ip: IpAddr, user: Option<&str>) -> Decision {
        let inner = &self.inner;
        let (subject, limit) = match user {
            Some(user) => (Subject::User(user), rule.user_limit),
            None => (Subject::Address(ip), rule.anonymous_limit),
        };
        let key = inner.key(rule, subject);
        let decision = if inner.redis_may_be_tried() {
            match tokio::time::timeout(REDIS_TIMEOUT, inner.redis.record(&key, limit, rule.window))
                .await
            {
                Ok(Ok(decision)) => {
                    inner.redis_answered();
                    Some(decision)
                }
                Ok(Err(error)) => {
                    inner.redis_failed(&error.to_string());
                    None
                }
                Err(_) => {
                    inner.redis_failed("timed out");
                    None
                }
            }
        } else {
            None
        };
        let decision = decision.unwrap_or_else(|| {
            RateLimitMetrics::add(&inner.metrics.fallback_decisions);
            inner.memory.record(&key, limit, rule.window)
        });
        if !decision.allowed {
            RateLimitMetrics::add(&inner.metrics.limited);
        }
        decision
    }
}

impl Inner {
    fn key(&self, rule: &RateLimitRule, subject: Subject<'_>) -> String {
        let mut key = format!("{}:{}:", self.key_prefix, rule.name);
        match subject {
            // Formatted from the parsed address, never from header text.
            Subject::Address(IpAddr::V4(ip)) => {
                let _ = write!(key, "ip:{ip}");
            }
            Subject::Address(IpAddr::V6(ip)) => {
                let net = IpNet::new(IpAddr::V6(ip), self.ipv6_prefix)
                    .map(|net| net.trunc())
                    .unwrap_or_else(|_| IpNet::from(IpAddr::V6(ip)));
                let _ = write!(key, "ip:{net}");
            }
            // A user id is the app's text: hashed, so no key can be steered or overlong.
            Subject::User(user) => {
                key.push_str("user:");
                for byte in Sha256::digest(user.as_bytes()) {
                    let _ = write!(key, "{byte:02x}");
                }
            }
        }
        key
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn redis_may_be_tried(&self) -> bool {
        self.health()
            .retry_redis_at
            .is_none_or(|at| Instant::now() >= at)
    }

    fn redis_answered(&self) {
        let mut health = self.health();
        if health.retry_redis_at.take().is_some() {
            self.metrics.set_fallback_active(false);
            tracing::info!("rate limits use the shared Redis counters again");
        }
    }

    fn redis_failed(&self, error: &str) {
        RateLimitMetrics::add(&self.metrics.redis_failures);
        self.health().retry_redis_at = Some(Instant::now() + REDIS_RETRY_AFTER);
        self.metrics.set_fallback_active(true);
        // The process's one report for every part that lost Redis: it throttles the
        // warning and counts the failures in between.
        iptrack_core::redis_status::unreachable(
            "rate limiter, counting per instance in memory until it returns",
            &error,
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn limiter(ipv6_prefix: u8) -> RateLimiter {
        let settings = RateLimitSettings {
            ipv6_prefix,
            ..Default::default()
        };
        let client = redis::Client::open("redis://127.0.0.1:1").unwrap();
        let config = redis::aio::ConnectionManagerConfig::new();
        let conn = ConnectionManager::new_lazy_with_config(client, config).unwrap();
        RateLimiter::new(&settings, "p", conn, Arc::default())
    }

    #[tokio::test]
    async fn keys_hold_only_parsed_addresses_networks_and_hashed_user_ids() {
        let limiter = limiter(64);
        let rule = Arc::clone(limiter.rule_for("POST", "/login").unwrap());
        let key = |subject| limiter.inner.key(&rule, subject);
        assert_eq!(
            key(Subject::Address("192.0.2.7".parse().unwrap())),
            "p:ratelimit:login:ip:192.0.2.7"
        );
        assert_eq!(
            key(Subject::Address("2001:db8:1:2:3:4:5:6".parse().unwrap())),
            "p:ratelimit:login:ip:2001:db8:1:2::/64"
        );
        let user = key(Subject::User("alice\r\n*"));
        assert!(user.starts_with("p:ratelimit:login:user:"), "{user}");
        assert_eq!(user.len(), "p:ratelimit:login:user:".len() + 64);
        assert!(!user.contains("alice"));
    }
}
