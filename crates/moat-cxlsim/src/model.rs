//! From samples to delay. Each epoch, the samples whose thread was at a memory access to a CXL
//! tier measure the time spent waiting on that tier as if it were local DRAM. Two kinds of wait:
//!
//! - **latency-bound** (a dependent miss, a random access): on CXL each such wait grows by the
//!   path's extra latency in proportion, `wait × extra / local_latency` — the latency of one local
//!   miss comes from [`Calibration`], so overlapping misses (memory-level parallelism) scale the
//!   same way they overlap;
//! - **bandwidth-bound** (a stream the prefetchers cover): no latency is exposed, but the bytes
//!   must cross every link on the path. The bytes are measured, not assumed: between two samples
//!   of a thread streaming through a tier, the stream advanced from one address to the other in
//!   the time between them. A link slower than that stretches the transfer to
//!   `bytes / link_bandwidth`, and links shared by several devices (switches) carry their sum:
//!   that is congestion.
//!
//! A sample is bandwidth-bound when its thread's previous sample on the same tier was at a
//! lower address no farther than the local bandwidth could have streamed in between (plus a page),
//! the signature of a sequential pass; otherwise latency-bound.

use crate::topology::Topology;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Local DRAM as measured on this machine at start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// One dependent load that misses every cache (a pointer chase far larger than the LLC).
    pub latency: Duration,
    /// Sequential read bandwidth, bytes per second.
    pub bandwidth: f64,
}

impl Calibration {
    /// Measures both on `bytes` of memory (say 256 MiB; at least 64 KiB): a random cyclic
    /// pointer chase and a summing pass, each the median of five. Measure under the same
    /// sampling as the workload will run under: its interrupts cost a chase TLB and cache state,
    /// and the misses an epoch's waits stand for are counted in that currency.
    pub fn measure(bytes: usize) -> Calibration {
        let n = (bytes / 8).max(8192);
        // Sattolo's shuffle: one cycle through every slot, in a random order.
        let mut next: Vec<u64> = (0..n as u64).collect();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for i in (1..n).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let j = (seed % i as u64) as usize;
            next.swap(i, j);
        }
        let steps = n.min(2_000_000);
        let mut latencies = Vec::new();
        let mut bandwidths = Vec::new();
        for _ in 0..5 {
            let mut p = 0usize;
            let start = Instant::now();
            for _ in 0..steps {
                p = next[p] as usize;
            }
            black_box(p);
            latencies.push(start.elapsed() / steps as u32);
            let start = Instant::now();
            let sum: u64 = next.iter().fold(0u64, |a, &v| a.wrapping_add(v));
            black_box(sum);
            let secs = start.elapsed().as_secs_f64().max(1e-9);
            bandwidths.push((n * 8) as f64 / secs);
        }
        latencies.sort();
        bandwidths.sort_by(f64::total_cmp);
        Calibration {
            latency: latencies[2],
            bandwidth: bandwidths[2],
        }
    }
}

/// Wait measured on one tier in one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TierWait {
    /// Samples at latency-bound accesses.
    pub latency: u64,
    /// Samples at bandwidth-bound accesses.
    pub stream: u64,
    /// Bytes the streams moved: how far each thread's stream advanced between its samples.
    pub stream_bytes: u64,
    /// The time those bytes took (between the same samples), ns.
    pub stream_ns: u64,
}

/// The delay of one epoch, by cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delay {
    /// Extra latency of latency-bound accesses.
    pub latency: Duration,
    /// Transfers stretched by the narrowest (or most shared) link.
    pub bandwidth: Duration,
}

impl Delay {
    /// Both.
    pub fn total(&self) -> Duration {
        self.latency + self.bandwidth
    }
}

/// The delay the waits of one epoch (`waits[t - 1]` for tier `t`, each sample standing for
/// `period` of CPU time) would have cost on `topology`.
pub fn delay(
    topology: &Topology,
    calibration: &Calibration,
    period: Duration,
    waits: &[TierWait],
) -> Delay {
    let local = calibration.latency.as_secs_f64().max(1e-12);
    let p = period.as_secs_f64();
    let mut latency = 0.0;
    let mut link_bytes = vec![0.0f64; topology.nodes().len()];
    let mut link_wait = vec![0.0f64; topology.nodes().len()];
    for (i, w) in waits.iter().enumerate() {
        let tier = i + 1;
        let extra = topology.extra_latency(tier).as_secs_f64();
        let lat_wait = w.latency as f64 * p;
        latency += lat_wait * extra / local;
        // Misses move a line each; streams what they were seen to move.
        let bytes = lat_wait / local * 64.0 + w.stream_bytes as f64;
        for node in topology.path(tier) {
            link_bytes[node] += bytes;
            link_wait[node] += lat_wait + w.stream_ns as f64 * 1e-9;
        }
    }
    let bandwidth = topology
        .nodes()
        .iter()
        .enumerate()
        .map(|(i, n)| (link_bytes[i] / n.bandwidth - link_wait[i]).max(0.0))
        .fold(0.0f64, f64::max);
    Delay {
        latency: Duration::from_secs_f64(latency),
        bandwidth: Duration::from_secs_f64(bandwidth),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology;

    const CAL: Calibration = Calibration {
        latency: Duration::from_nanos(100),
        bandwidth: 10e9,
    };

    #[test]
    fn latency_bound_waits_grow_by_the_extra_latency() {
        // 1 000 samples of 10 µs: 10 ms waiting on dependent misses; +200 ns over 100 ns local.
        let t = topology::direct(Duration::from_nanos(200), 64e9);
        let d = delay(
            &t,
            &CAL,
            Duration::from_micros(10),
            &[TierWait {
                latency: 1000,
                ..TierWait::default()
            }],
        );
        assert_eq!(d.latency, Duration::from_millis(20));
        assert_eq!(
            d.bandwidth,
            Duration::ZERO,
            "0.64 GB/s of misses fits a 64 GB/s link"
        );
    }

    #[test]
    fn streams_pay_only_where_a_link_is_narrower_than_local_dram() {
        // 100 MB streamed in 10 ms (10 GB/s); through a 5 GB/s link that takes 20 ms.
        let narrow = topology::direct(Duration::from_nanos(200), 5e9);
        let w = [TierWait {
            stream: 1000,
            stream_bytes: 100_000_000,
            stream_ns: 10_000_000,
            ..TierWait::default()
        }];
        let d = delay(&narrow, &CAL, Duration::from_micros(10), &w);
        assert_eq!(d.latency, Duration::ZERO);
        assert_eq!(d.bandwidth, Duration::from_millis(10));
        let wide = topology::direct(Duration::from_nanos(200), 20e9);
        assert_eq!(
            delay(&wide, &CAL, Duration::from_micros(10), &w).total(),
            Duration::ZERO
        );
    }

    #[test]
    fn a_shared_switch_link_congests() {
        // Two devices behind one 5 GB/s switch link, each streaming 100 MB in 10 ms: 200 MB
        // through the switch link take 40 ms against the 20 ms of streaming: 20 ms late.
        let t = Topology::parse(
            "switch s parent=root latency=0ns bandwidth=5GB/s\n\
             device a parent=s latency=100ns bandwidth=10GB/s\n\
             device b parent=s latency=100ns bandwidth=10GB/s",
        )
        .expect("parses");
        let w = [TierWait {
            stream: 1000,
            stream_bytes: 100_000_000,
            stream_ns: 10_000_000,
            ..TierWait::default()
        }; 2];
        let d = delay(&t, &CAL, Duration::from_micros(10), &w);
        assert_eq!(d.bandwidth, Duration::from_millis(20));
    }

    #[test]
    fn calibration_measures_something_plausible() {
        let c = Calibration::measure(1 << 20);
        assert!(
            c.latency > Duration::ZERO && c.latency < Duration::from_micros(10),
            "{c:?}"
        );
        assert!(c.bandwidth > 1e8, "{c:?}");
    }
}
