//! The scheduler's clock: the time-stamp counter (invariant on every CPU this runs on, ~10 ns to
//! read against ~35 ns for the monotonic clock in a virtual machine), in nanoseconds since the
//! clock was made.

use crate::sys;
use std::time::{Duration, Instant};

/// A TSC clock calibrated against the monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: u64,
    /// Nanoseconds per tick.
    period: f64,
}

impl Clock {
    /// Calibrates the counter over 20 ms.
    pub fn new() -> Clock {
        let (t0, c0) = (Instant::now(), sys::rdtsc());
        while t0.elapsed() < Duration::from_millis(20) {
            std::hint::spin_loop();
        }
        let (ns, c1) = (t0.elapsed().as_nanos() as f64, sys::rdtsc());
        Clock {
            origin: c0,
            period: ns / (c1.wrapping_sub(c0).max(1)) as f64,
        }
    }

    /// Nanoseconds since the clock was made.
    pub fn now(&self) -> u64 {
        (sys::rdtsc().wrapping_sub(self.origin) as f64 * self.period) as u64
    }

    /// Spins for `ns` nanoseconds without leaving the executable's code (no system call, no vDSO):
    /// the synthetic work of tests and benchmarks, preemptible by signal anywhere.
    pub fn spin(&self, ns: u64) {
        let end = self.now().saturating_add(ns);
        while self.now() < end {
            std::hint::spin_loop();
        }
    }

    /// As [`Clock::spin`], with a cooperative preemption point ([`crate::checkpoint`]) every
    /// `every` nanoseconds; the time spent switched out does not count as work.
    pub fn spin_cooperatively(&self, ns: u64, every: u64) {
        let mut left = ns;
        while left > 0 {
            let chunk = left.min(every.max(1));
            self.spin(chunk);
            left -= chunk;
            crate::checkpoint();
        }
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}
