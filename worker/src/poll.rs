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
