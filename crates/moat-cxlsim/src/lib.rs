//! CXL memory simulation for unmodified programs (after CXLMemSim), in a VM without hardware
//! performance counters.
//!
//! A run is split into epochs. During an epoch the process's CPU time is sampled with the software
//! CPU clock ([`moat_kernel::sampling`]); each sample at a memory access ([`decode`]) is classified
//! by the address's tier ([`placement`], filled from the placement policy's map); at the epoch's end
//! the waits on each CXL tier become a delay ([`model`]) over the memory system described by a
//! [`topology`], which the caller injects by stopping the process for that long.
//!
//! The crate knows nothing of how the process was started or how the policy runs: `moat cxlsim`
//! (in `moat-cli`) starts the command with moat's agent and a placement program, feeds
//! [`Simulator::set_placement`] from the program's map, and injects the delays.
//!
//! The exact reference mode ([`exact`]) replaces the samples by every data access of the program
//! (from valgrind's `lackey`) through an LLC model ([`cache`]); its misses to CXL-placed memory feed
//! the same delay model, for validating the sampling mode.

pub mod cache;
pub mod decode;
pub mod exact;
pub mod model;
pub mod placement;
pub mod topology;

use moat_kernel::sampling::Sample;
use model::{Calibration, Delay, TierWait};
use placement::Placement;
use std::collections::HashMap;
use std::time::Duration;
use topology::Topology;

/// Reads `len` bytes of the process's memory at an address (fewer, or none, where unmapped).
pub type MemoryReader = Box<dyn FnMut(u64, usize) -> Vec<u8> + Send>;

/// A reader of process `pid`'s memory through `/proc/PID/mem`.
pub fn proc_mem_reader(pid: i32) -> std::io::Result<MemoryReader> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(format!("/proc/{pid}/mem"))?;
    Ok(Box::new(move |addr, len| {
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match file.read_at(&mut buf[got..], addr + got as u64) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        buf.truncate(got);
        buf
    }))
}

/// What one epoch measured and cost.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Epoch {
    /// Samples in the epoch (each `period` of CPU time).
    pub samples: u64,
    /// Of them, at a memory access to local DRAM.
    pub local: u64,
    /// Per CXL tier (index 0 = tier 1), the waits at its accesses.
    pub tiers: Vec<TierWait>,
    /// Samples lost by the kernel (ring full).
    pub lost: u64,
    /// The delay to inject.
    pub delay: Delay,
}

/// The simulation state between epochs.
pub struct Simulator {
    topology: Topology,
    calibration: Calibration,
    period: Duration,
    placement: Placement,
    reader: MemoryReader,
    code: HashMap<u64, Option<decode::Window>>,
    last: HashMap<u32, (u32, u64, u64)>,
    sites: HashMap<u64, u64>,
    current: Epoch,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("topology", &self.topology)
            .field("calibration", &self.calibration)
            .field("period", &self.period)
            .field("placed", &self.placement.len())
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// A simulation of `topology`, with samples of `period` each, reading code through `reader`.
    pub fn new(
        topology: Topology,
        calibration: Calibration,
        period: Duration,
        reader: MemoryReader,
    ) -> Simulator {
        let tiers = topology.tiers();
        Simulator {
            topology,
            calibration,
            period,
            placement: Placement::default(),
            reader,
            code: HashMap::new(),
            last: HashMap::new(),
            sites: HashMap::new(),
            current: Epoch {
                tiers: vec![TierWait::default(); tiers],
                ..Epoch::default()
            },
        }
    }

    /// The topology.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Replaces the placement (after a new dump of the policy's map).
    pub fn set_placement(&mut self, placement: Placement) {
        self.placement = placement;
    }

    /// The current placement.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// CXL samples per allocation call site, over the whole run so far.
    pub fn sites(&self) -> &HashMap<u64, u64> {
        &self.sites
    }

    /// Counts `lost` samples the kernel dropped.
    pub fn lost(&mut self, lost: u64) {
        self.current.lost += lost;
    }

    fn window(&mut self, ip: u64) -> Option<&decode::Window> {
        let reader = &mut self.reader;
        self.code
            .entry(ip)
            .or_insert_with(|| {
                let (start, len) = decode::Window::around(ip);
                let bytes = reader(start, len);
                (!bytes.is_empty()).then_some(decode::Window { start, bytes })
            })
            .as_ref()
    }

    /// Accounts one sample to the current epoch.
    pub fn add(&mut self, s: &Sample) {
        self.current.samples += 1;
        let Some(regs) = s.regs.filter(|_| s.user) else {
            return;
        };
        let Some(access) = self
            .window(s.ip)
            .and_then(|w| decode::access(w, s.ip, &regs))
        else {
            return;
        };
        let (tier, site) = self.placement.classify(access.address);
        if tier == 0 {
            self.current.local += 1;
            return;
        }
        let Some(wait) = self.current.tiers.get_mut(tier as usize - 1) else {
            return;
        };
        // A stream: the thread's previous sample on this tier was a little below this one.
        let reach = (s
            .time
            .saturating_sub(self.last.get(&s.tid).map_or(0, |l| l.2)) as f64
            * 1e-9
            * self.calibration.bandwidth
            * 2.0) as u64
            + placement::PAGE;
        let streaming = self.last.get(&s.tid).and_then(|&(t, addr, at)| {
            (t == tier && access.address >= addr && access.address - addr <= reach)
                .then(|| (access.address - addr, s.time.saturating_sub(at)))
        });
        match streaming {
            Some((bytes, ns)) => {
                wait.stream += 1;
                wait.stream_bytes += bytes;
                wait.stream_ns += ns;
            }
            None => wait.latency += 1,
        }
        self.last.insert(s.tid, (tier, access.address, s.time));
        if let Some(site) = site {
            *self.sites.entry(site).or_default() += 1;
        }
    }

    /// Closes the current epoch: its measurements and the delay to inject. Streams are measured
    /// within an epoch only: the time between two samples across an epoch's end would include the
    /// pause that injects its delay.
    pub fn end_epoch(&mut self) -> Epoch {
        self.last.clear();
        let tiers = self.topology.tiers();
        let mut epoch = std::mem::replace(
            &mut self.current,
            Epoch {
                tiers: vec![TierWait::default(); tiers],
                ..Epoch::default()
            },
        );
        epoch.delay = model::delay(&self.topology, &self.calibration, self.period, &epoch.tiers);
        epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_kernel::sampling::UserRegs;
    use placement::Placed;

    #[test]
    fn samples_at_cxl_loads_become_delay() {
        // The chase of `decode`'s test: `mov rsi, [rbp + rsi*8]` at 0x10d8, sampled at 0x10dd.
        let code = [
            0x48, 0x8b, 0x74, 0xf5, 0x00, 0x48, 0x83, 0xe8, 0x01, 0x75, 0xf5,
        ];
        let reader: MemoryReader = Box::new(move |addr, len| {
            (addr..addr + len as u64)
                .map(|a| {
                    a.checked_sub(0x10d8)
                        .and_then(|i| code.get(i as usize).copied())
                        .unwrap_or(0x90)
                })
                .collect()
        });
        let cal = Calibration {
            latency: Duration::from_nanos(100),
            bandwidth: 10e9,
        };
        let topo = topology::direct(Duration::from_nanos(200), 64e9);
        let mut sim = Simulator::new(topo, cal, Duration::from_micros(100), reader);
        let mut placement = Placement::default();
        placement.insert(
            0x7000_0000,
            Placed {
                size: 1 << 30,
                site: 0x4242,
                tier: 1,
                flags: 0,
            },
        );
        sim.set_placement(placement);
        let mut seed = 1u64;
        for i in 0..100u64 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut gprs = [0u64; 16];
            gprs[5] = 0x7000_0000;
            gprs[6] = (seed >> 40) % (1 << 27); // a random slot: latency-bound
            let user = i % 10 != 0; // one in ten in the kernel
            sim.add(&Sample {
                pid: 1,
                tid: 1,
                time: i * 100_000,
                ip: 0x10dd,
                user,
                regs: Some(UserRegs { gprs, rip: 0x10dd }),
            });
        }
        let e = sim.end_epoch();
        assert_eq!(e.samples, 100);
        assert_eq!(e.tiers[0].latency + e.tiers[0].stream, 90);
        assert!(e.tiers[0].latency >= 80, "{e:?}");
        // ~90 × 100 µs waiting, +200 over 100 ns: ~18 ms.
        assert!(e.delay.latency >= Duration::from_millis(16), "{e:?}");
        assert_eq!(sim.sites().get(&0x4242), Some(&90));
        // A fresh epoch starts empty.
        assert_eq!(sim.end_epoch().samples, 0);
    }
}
