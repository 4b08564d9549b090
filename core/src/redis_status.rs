//! One warning per interval while Redis is away, naming it, for the whole process.
//!
//! Every part of a process that talks to Redis (the web's batcher, rate limiter and
//! blocklist sync, the workers and their maintenance, the scheduler) fails at once when
//! Redis goes away, and each retries on its own clock. Logged separately that was about
//! six lines a second of "Connection refused", none saying which server was meant. So
//! every part reports its failure here instead: the first failure, and then one every
//! [`REPORT_INTERVAL`], becomes a single warning naming the URL (password redacted); the
//! rest are counted. The first success after that logs one line saying Redis is back.

use std::{
    fmt::Display,
    sync::{
        LazyLock, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::settings::SecretUrl;
pub use crate::settings::redact_url as redact;
use crate::throttle::RateLimitedWarning;

/// How often, at most, a process says that Redis is away.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(30);

static AWAY: AtomicBool = AtomicBool::new(false);
static REPORTS: LazyLock<RateLimitedWarning> =
    LazyLock::new(|| RateLimitedWarning::new(REPORT_INTERVAL));
static STATE: Mutex<State> = Mutex::new(State {
    url: String::new(),
    away_since: None,
    unreported: 0,
});

#[derive(Debug)]
struct State {
    /// The redacted `REDIS_URL`.
    url: String,
    away_since: Option<Instant>,
    /// Failures since the last warning.
    unreported: u64,
}

/// Sets the URL the reports name (password masked); call once at start with `REDIS_URL`.
pub fn init(redis_url: &SecretUrl) {
    if let Ok(mut state) = STATE.lock() {
        state.url = redis_url.redacted();
    }
}

/// Reports a failed Redis call of `component`. Errors that say the server is unreachable
/// go into the shared report; any other error (a bad reply, a script error) is logged at
/// once, since it means something other than an outage.
pub fn report(component: &str, error: &redis::RedisError) {
    if is_unreachable(error) {
        unreachable(component, error);
    } else {
        tracing::warn!(component, %error, "Redis command failed");
    }
}

/// [`report`] for a queue operation's error; an encoding error is logged at once.
pub fn report_queue(component: &str, error: &crate::queue::QueueError) {
    match error {
        crate::queue::QueueError::Redis(error) => report(component, error),
        other => tracing::warn!(component, error = %other, "queue operation failed"),
    }
}

/// Reports that `component` could not reach Redis, for errors known to be just that
/// (an apalis worker ends only on a failed Redis call).
pub fn unreachable(component: &str, error: &dyn Display) {
    AWAY.store(true, Ordering::Relaxed);
    let Ok(mut state) = STATE.lock() else {
        return;
    };
    let now = Instant::now();
    state.away_since.get_or_insert(now);
    state.unreported += 1;
    if !REPORTS.should_fire() {
        return;
    }
    let away_secs = state
        .away_since
        .map_or(0, |t| now.duration_since(t).as_secs());
    tracing::warn!(
        redis = %state.url,
        away_secs,
        failures = state.unreported,
        "Redis at {} is unreachable ({component}: {error}); retrying, next report in {} s",
        state.url,
        REPORT_INTERVAL.as_secs()
    );
    state.unreported = 0;
}

/// Reports a successful Redis call; after an outage, logs once that Redis is back.
pub fn answered() {
    if !AWAY.swap(false, Ordering::Relaxed) {
        return;
    }
    let Ok(mut state) = STATE.lock() else {
        return;
    };
    let away_secs = state.away_since.take().map_or(0, |t| t.elapsed().as_secs());
    REPORTS.reset();
    state.unreported = 0;
    tracing::info!(redis = %state.url, away_secs, "Redis at {} answers again", state.url);
}

/// Whether a failure is recorded and no success has been since.
pub fn is_away() -> bool {
    AWAY.load(Ordering::Relaxed)
}

/// Whether `error` means the server could not be reached (as opposed to a reply it gave).
pub fn is_unreachable(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_refusal()
        || error.is_connection_dropped()
        || error.is_timeout()
}
