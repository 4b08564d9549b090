//! The restart back-off of [`supervisor::supervise`] on paused time: minutes of a failing
//! worker run in milliseconds, and every delay is exact. (The end-to-end check that a
//! real worker backs off while a real Redis is down is `queue_edges.rs`; it runs on the
//! wall clock, since Redis and the database cannot be paused.)

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use iptrack_worker::supervisor::{self, RESTART_MAX, RESTART_MIN};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Supervises a worker whose `n`th run lasts `runs[n]` and then fails; returns the pause
/// between the end of each run and the next start.
async fn pauses_before_restarts(runs: &[Duration]) -> Vec<Duration> {
    let shutdown = CancellationToken::new();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let ends = Arc::new(Mutex::new(Vec::new()));
    let worker = {
        let (shutdown, starts, ends, runs) = (
            shutdown.clone(),
            starts.clone(),
            ends.clone(),
            runs.to_vec(),
        );
        move |_name: String| {
            let (shutdown, starts, ends, runs) =
                (shutdown.clone(), starts.clone(), ends.clone(), runs.clone());
            async move {
                let n = {
                    let mut starts = starts.lock().unwrap();
                    starts.push(Instant::now());
                    starts.len() - 1
                };
                let Some(&run) = runs.get(n) else {
                    shutdown.cancel();
                    return Ok(());
                };
                tokio::time::sleep(run).await;
                ends.lock().unwrap().push(Instant::now());
                Err("connection refused")
            }
        }
    };
    supervisor::supervise("test-queue", 0, shutdown, worker).await;
    let (starts, ends) = (starts.lock().unwrap(), ends.lock().unwrap());
    assert_eq!(starts.len(), runs.len() + 1);
    ends.iter()
        .zip(&starts[1..])
        .map(|(&end, &start)| start - end)
        .collect()
}

fn millis(durations: &[Duration]) -> Vec<u128> {
    durations.iter().map(Duration::as_millis).collect()
}

#[tokio::test(start_paused = true)]
async fn a_failing_worker_is_restarted_after_doubling_delays_up_to_the_maximum() {
    let pauses = pauses_before_restarts(&[Duration::ZERO; 12]).await;
    let mut expected = Vec::new();
    let mut delay = RESTART_MIN;
    for _ in 0..12 {
        expected.push(delay);
        delay = (delay * 2).min(RESTART_MAX);
    }
    assert_eq!(millis(&pauses), millis(&expected));
    assert_eq!(millis(&pauses[..4]), [100, 200, 400, 800]);
    assert_eq!(pauses[11], RESTART_MAX);
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_ran_a_minute_before_failing_restarts_after_the_minimum_delay_again() {
    let runs = [
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::from_secs(60),
        Duration::ZERO,
    ];
    let pauses = pauses_before_restarts(&runs).await;
    assert_eq!(millis(&pauses), [100, 200, 400, 100, 200]);
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_failed_within_a_minute_keeps_backing_off() {
    let runs = [
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::from_secs(59),
        Duration::ZERO,
    ];
    let pauses = pauses_before_restarts(&runs).await;
    assert_eq!(millis(&pauses), [100, 200, 400, 800, 1_600]);
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_during_the_back_off_stops_at_once() {
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let stopper = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            shutdown.cancel();
        })
    };
    supervisor::supervise("test-queue", 0, shutdown, |_name| async {
        Err::<(), _>("connection refused")
    })
    .await;
    stopper.await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(5));
}
