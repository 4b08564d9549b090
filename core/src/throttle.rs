//! The one throttle behind every "at most once per interval" warning: the web's full-buffer
//! and push-failure warnings, and the process-wide Redis-away report (`redis_status`).

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// Lets a warning through at most once per interval, from any thread, without a lock.
#[derive(Debug)]
pub struct RateLimitedWarning {
    origin: Instant,
    interval: Duration,
    /// Milliseconds since `origin` of the last warning, plus one (0 = never warned).
    last_ms: AtomicU64,
}

impl RateLimitedWarning {
    pub fn new(interval: Duration) -> Self {
        Self {
            origin: Instant::now(),
            interval,
            last_ms: AtomicU64::new(0),
        }
    }

    /// Whether the warning may be given now; the first call always may. Of callers racing
    /// at the end of an interval, exactly one gets `true`.
    pub fn should_fire(&self) -> bool {
        let now = u64::try_from(self.origin.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1);
        let last = self.last_ms.load(Ordering::Relaxed);
        let interval = u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < interval {
            return false;
        }
        self.last_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// Forgets the last warning: the next [`should_fire`](Self::should_fire) is `true`.
    pub fn reset(&self) {
        self.last_ms.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_first_then_once_per_interval_and_again_after_a_reset() {
        let warning = RateLimitedWarning::new(Duration::from_secs(3600));
        assert!(warning.should_fire());
        assert!(!warning.should_fire());
        warning.reset();
        assert!(warning.should_fire());
        assert!(!warning.should_fire());

        let every_moment = RateLimitedWarning::new(Duration::ZERO);
        assert!(every_moment.should_fire());
        std::thread::sleep(Duration::from_millis(2));
        assert!(every_moment.should_fire());
    }
}
