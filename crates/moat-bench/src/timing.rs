//! The timing loops the benchmark binaries share: calls of a closure in calibrated batches, timed
//! with `Instant` (the batches are long enough that the clock's cost vanishes).

use std::time::{Duration, Instant};

/// How many calls of `run` take about `batch` (measured over a quarter of it; at least one).
pub fn calibrate(batch: Duration, run: &mut dyn FnMut()) -> u128 {
    let start = Instant::now();
    let mut calls = 0u32;
    while start.elapsed() < batch / 4 || calls == 0 {
        run();
        calls += 1;
    }
    let per_call = start.elapsed() / calls;
    (batch.as_nanos() / per_call.as_nanos().max(1)).max(1)
}

/// Nanoseconds per call of `run` over one batch of `iters` calls.
pub fn time_batch(iters: u128, run: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        run();
    }
    start.elapsed().as_nanos() as f64 / iters.max(1) as f64
}

/// Nanoseconds per call of `run`: the median of `batches` batches of `iters` calls.
pub fn median_ns(iters: u128, batches: usize, run: &mut dyn FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..batches.max(1))
        .map(|_| time_batch(iters, run))
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}
