//! A warning that would otherwise repeat for every event (a full buffer, a failing push),
//! let through at most once per interval.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// Lets a warning through at most once per interval, from any thread.
#[derive(Debug)]
pub(crate) struct RateLimitedWarning {
    origin: Instant,
    interval: Duration,
    /// Milliseconds since `origin` of the last warning, plus one (0 = never warned).
    last_ms: AtomicU64,
}

impl RateLimitedWarning {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            origin: Instant::now(),
            interval,
            last_ms: AtomicU64::new(0),
        }
    }

    pub(crate) fn should_fire(&self) -> bool {
        let now = self.origin.elapsed().as_millis() as u64 + 1;
        let last = self.last_ms.load(Ordering::Relaxed);
        if last != 0 && now - last < self.interval.as_millis() as u64 {
            return false;
        }
        self.last_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}
