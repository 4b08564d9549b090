//! The fallback while Redis is unreachable: the same sliding log, per instance, in a
//! bounded cache (moka) whose entries expire once idle for the longest window.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use moka::sync::Cache;

use super::Decision;

pub(super) struct MemoryLog {
    /// Key (the same text as the Redis key) → times of the client's accepted requests,
    /// oldest first. Idle for the longest window, an entry holds nothing that still counts,
    /// so expiring it then loses nothing; the capacity bounds memory under a flood of
    /// distinct clients.
    clients: Cache<String, Arc<Mutex<VecDeque<Instant>>>>,
}

impl MemoryLog {
    pub(super) fn new(capacity: u64, longest_window: Duration) -> Self {
        Self {
            clients: Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(longest_window)
                .build(),
        }
    }

    pub(super) fn record(&self, key: &str, limit: u32, window: Duration) -> Decision {
        let log = self.clients.get_with_by_ref(key, Arc::default);
        let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        while log
            .front()
            .is_some_and(|&at| now.duration_since(at) >= window)
        {
            log.pop_front();
        }
        let limit_len = usize::try_from(limit).unwrap_or(usize::MAX);
        let allowed = log.len() < limit_len;
        if allowed {
            log.push_back(now);
        }
        let reset = log
            .front()
            .map(|&oldest| window.saturating_sub(now.duration_since(oldest)))
            .unwrap_or_default();
        Decision {
            allowed,
            limit,
            remaining: u32::try_from(limit_len.saturating_sub(log.len())).unwrap_or(0),
            reset,
            window,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_allows_the_limit_per_window_then_frees_a_slot_as_the_oldest_ages_out() {
        let memory = MemoryLog::new(10, Duration::from_millis(200));
        let window = Duration::from_millis(200);
        for remaining in (0..3).rev() {
            let decision = memory.record("k", 3, window);
            assert!(decision.allowed);
            assert_eq!(decision.remaining, remaining);
        }
        let denied = memory.record("k", 3, window);
        assert!(!denied.allowed);
        assert!(denied.reset <= window && denied.reset > Duration::ZERO);
        assert!(memory.record("other", 3, window).allowed);
        std::thread::sleep(window);
        assert!(memory.record("k", 3, window).allowed);
    }
}
