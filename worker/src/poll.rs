//! A poll strategy that really wakes an idle worker every interval.
//!
//! apalis-core 1.0's `IntervalStrategy` replaces its timer when it fires but does not poll
//! the new one, so no wake-up is registered: after one tick an idle worker sleeps until its
//! next heartbeat (30 s by default). Here the interval is polled until it is pending, which
//! always leaves a wake-up registered for the next tick.

use std::{
    task::{Context, Poll},
    time::Duration,
};

use apalis_core::backend::ext::poll_strategy::{PollSnapshot, PollStrategy};
use tokio::time::{Interval, MissedTickBehavior};

#[derive(Debug)]
pub struct TickStrategy {
    period: Duration,
    interval: Option<Interval>,
}

impl TickStrategy {
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            interval: None,
        }
    }
}

impl Clone for TickStrategy {
    fn clone(&self) -> Self {
        Self::new(self.period)
    }
}

impl PollStrategy for TickStrategy {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        let period = self.period;
        // Created on first use: an Interval needs the runtime, which a builder may lack.
        let interval = self.interval.get_or_insert_with(|| {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            interval
        });
        let mut ticked = false;
        while interval.poll_tick(cx).is_ready() {
            ticked = true;
        }
        if ticked {
            Poll::Ready(Some(()))
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        task::{Wake, Waker},
    };

    use apalis_core::backend::ext::poll_strategy::IntervalStrategy;

    use super::*;

    const PERIOD: Duration = Duration::from_millis(50);

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Polls `strategy` the way a worker does after being woken: once, then waits (without
    /// polling) for longer than a period, and reports how many wake-ups arrived meanwhile.
    async fn wakes_after_a_tick(strategy: &mut impl PollStrategy) -> usize {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let snapshot = PollSnapshot::new();
        // Wait for the first tick to be due, then take it, as a woken worker does.
        let _ = strategy.poll_drive(&mut cx, &snapshot);
        tokio::time::sleep(PERIOD * 3).await;
        let _ = strategy.poll_drive(&mut cx, &snapshot);
        counter.0.store(0, Ordering::SeqCst);
        // An idle worker is polled again only when something wakes it.
        tokio::time::sleep(PERIOD * 6).await;
        counter.0.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn after_a_tick_the_next_wake_up_is_already_armed() {
        let wakes = wakes_after_a_tick(&mut TickStrategy::new(PERIOD)).await;
        assert!(wakes >= 1, "an idle worker would never be woken again");
    }

    /// The sharp edge this module exists for. If apalis fixes IntervalStrategy this test
    /// fails, and TickStrategy can go.
    #[tokio::test]
    async fn apalis_interval_strategy_arms_no_wake_up_after_a_tick() {
        let wakes = wakes_after_a_tick(&mut IntervalStrategy::new(PERIOD)).await;
        assert_eq!(
            wakes, 0,
            "apalis-core's IntervalStrategy now re-arms itself"
        );
    }
}
