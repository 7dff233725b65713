//! The exact reference mode: every data access of the program, in program order, goes through an
//! LLC model ([`cache`](crate::cache)); each miss to an address placed on a CXL tier counts
//! toward that tier's delay, with the same delay model as the sampling mode
//! ([`model::delay`](crate::model::delay)).
//!
//! The accesses come from valgrind's `lackey` tool (`--trace-mem=yes`), whose lines
//! `I  ADDR,SIZE` (instruction fetches, ignored), ` L ADDR,SIZE` (load), ` S ADDR,SIZE` (store)
//! and ` M ADDR,SIZE` (modify: one access) are parsed here without allocating ([`parse`]).
//!
//! Placement in order: the placement policy runs inside the traced program (moat's agent runs
//! under valgrind with it), so when this side reads access `n` the program has already executed
//! it — the program is never behind its own trace. A placement made before access `n` is
//! therefore in the policy's shared map when access `n` is classified. The caller's
//! [`PlacementSource`] is asked on every miss whether the policy placed
//! anything since the last look (a cheap counter read) and, if so, for the new placement: an
//! access to a block allocated just before is tiered. Frees become visible at the next placement
//! or at the caller's periodic refresh ([`Exact::set_placement`]).
//!
//! Misses are latency-bound unless they continue a stream: a miss to the line just above or below
//! one of the tier's last few misses is bandwidth-bound (prefetchers would have covered it), its 64 bytes
//! costing their transfer time at the local bandwidth; the links then stretch it as in sampling
//! mode. A latency-bound miss waits one local miss latency on local DRAM and `extra` more on CXL.

use crate::cache::Cache;
use crate::model::{self, Calibration, TierWait};
use crate::placement::Placement;
use crate::topology::Topology;
use crate::Epoch;
use std::collections::HashMap;
use std::time::Duration;

/// What kind of access a trace line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An instruction fetch (`I`).
    Instruction,
    /// A load (`L`).
    Load,
    /// A store (`S`).
    Store,
    /// A load and a store of the same bytes (`M`).
    Modify,
}

/// Parses one lackey line (without its newline): the access, or `None` for any other line
/// (valgrind's own `==PID==` messages).
pub fn parse(line: &[u8]) -> Option<(Kind, u64, u32)> {
    let (kind, rest) = match line {
        [b'I', b' ', b' ', rest @ ..] => (Kind::Instruction, rest),
        [b' ', k, b' ', rest @ ..] => (
            match k {
                b'L' => Kind::Load,
                b'S' => Kind::Store,
                b'M' => Kind::Modify,
                _ => return None,
            },
            rest,
        ),
        _ => return None,
    };
    let comma = rest.iter().position(|&b| b == b',')?;
    let (hex, size) = (rest.get(..comma)?, rest.get(comma + 1..)?);
    if hex.is_empty() || hex.len() > 16 || size.is_empty() || size.len() > 9 {
        return None;
    }
    let mut address = 0u64;
    for &b in hex {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        address = address << 4 | u64::from(d);
    }
    let mut n = 0u32;
    for &b in size {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(b - b'0');
    }
    Some((kind, address, n))
}

/// Where the exact mode learns the placement.
pub trait PlacementSource {
    /// The placement, if the policy placed anything since the last call (`None`: unchanged).
    fn changed(&mut self) -> Option<Placement>;
}

/// A source that never changes (tests, and placement set only through
/// [`Exact::set_placement`]).
#[derive(Debug, Default)]
pub struct Fixed;

impl PlacementSource for Fixed {
    fn changed(&mut self) -> Option<Placement> {
        None
    }
}

/// Totals of an exact run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Data accesses (loads, stores, modifies; an access across two lines counts twice).
    pub accesses: u64,
    /// LLC misses to local DRAM.
    pub local_misses: u64,
    /// Of them, continuing a sequential stream.
    pub local_stream_misses: u64,
    /// LLC misses to CXL tiers (all tiers).
    pub cxl_misses: u64,
    /// Of them, continuing a sequential stream.
    pub cxl_stream_misses: u64,
    /// Trace lines that were neither accesses nor valgrind's messages.
    pub unparsed: u64,
}

/// How many recent miss lines per tier a stream may continue.
const STREAMS: usize = 4;

/// Whether a miss to `line` continues a stream of `recent` misses (the line just above or below
/// one of them); `line` joins them.
fn streams(recent: &mut [u64; STREAMS], line: u64) -> bool {
    let continues =
        recent.contains(&line.wrapping_sub(1)) || recent.contains(&line.wrapping_add(1));
    recent.rotate_right(1);
    recent[0] = line;
    continues
}

impl Counts {
    /// Latency-bound misses, local and CXL.
    pub fn latency_misses(&self) -> u64 {
        (self.local_misses - self.local_stream_misses) + (self.cxl_misses - self.cxl_stream_misses)
    }

    /// The memory-level parallelism the run's latency-bound misses must have had to fit in its
    /// native run time: `max(1, misses × local miss latency / native)`. Misses one after another
    /// (a pointer chase) give 1; independent misses that the core overlapped (random loads) more,
    /// and each then exposes only `extra / parallelism` of a CXL tier's extra latency — the
    /// assumption the sampling mode makes by scaling measured waits.
    pub fn parallelism(&self, local: Duration, native: Duration) -> f64 {
        let waited = self.latency_misses() as f64 * local.as_secs_f64();
        (waited / native.as_secs_f64().max(1e-9)).max(1.0)
    }
}

/// The exact mode's state.
pub struct Exact {
    cache: Cache,
    topology: Topology,
    calibration: Calibration,
    placement: Placement,
    source: Box<dyn PlacementSource + Send>,
    recent: Vec<[u64; STREAMS]>,
    local_recent: [u64; STREAMS],
    sites: HashMap<u64, u64>,
    counts: Counts,
    current: Epoch,
    partial: Vec<u8>,
    messages: Vec<String>,
}

impl std::fmt::Debug for Exact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exact")
            .field("geometry", &self.cache.geometry())
            .field("counts", &self.counts)
            .field("placed", &self.placement.len())
            .finish_non_exhaustive()
    }
}

impl Exact {
    /// An exact run over `cache`, learning placement from `source`.
    pub fn new(
        cache: Cache,
        topology: Topology,
        calibration: Calibration,
        source: Box<dyn PlacementSource + Send>,
    ) -> Exact {
        let tiers = topology.tiers();
        Exact {
            cache,
            topology,
            calibration,
            placement: Placement::default(),
            source,
            recent: vec![[u64::MAX; STREAMS]; tiers],
            local_recent: [u64::MAX; STREAMS],
            sites: HashMap::new(),
            counts: Counts::default(),
            current: Epoch {
                tiers: vec![TierWait::default(); tiers],
                ..Epoch::default()
            },
            partial: Vec::new(),
            messages: Vec::new(),
        }
    }

    /// The period that makes [`model::delay`] read an epoch's miss counts: one latency-bound
    /// miss waits one local miss latency (before [`Counts::parallelism`] divides it).
    pub fn period(&self) -> Duration {
        self.calibration.latency
    }

    /// Replaces the placement (a periodic refresh, which also brings frees in).
    pub fn set_placement(&mut self, placement: Placement) {
        self.placement = placement;
    }

    /// The current placement.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// The cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Totals so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// CXL misses per allocation call site, over the whole run so far.
    pub fn sites(&self) -> &HashMap<u64, u64> {
        &self.sites
    }

    /// Valgrind's own lines seen in the trace (its `==PID==` messages), the last 50.
    pub fn messages(&self) -> &[String] {
        &self.messages
    }

    /// One data access of `size` bytes at `address`.
    pub fn access(&mut self, address: u64, size: u32) {
        let first = self.cache.line_of(address);
        let last = self
            .cache
            .line_of(address.saturating_add(u64::from(size.max(1)) - 1));
        let line_bytes = self.cache.geometry().line;
        for line in first..=last {
            self.counts.accesses += 1;
            self.current.samples += 1;
            let at = if line == first {
                address
            } else {
                line * line_bytes
            };
            if !self.cache.access(at) {
                self.miss(at, line);
            }
        }
    }

    fn miss(&mut self, address: u64, line: u64) {
        // Every miss asks whether the policy placed anything since (a counter read): a block
        // allocated just before this access is tiered, and a block placed inside a range already
        // known (a `malloc` inside the `mmap` that holds it) names its own site.
        if let Some(p) = self.source.changed() {
            self.placement = p;
        }
        let (tier, site) = self.placement.classify(address);
        if tier == 0 {
            self.counts.local_misses += 1;
            self.current.local += 1;
            if streams(&mut self.local_recent, line) {
                self.counts.local_stream_misses += 1;
            }
            return;
        }
        let t = tier as usize - 1;
        let (Some(wait), Some(recent)) = (self.current.tiers.get_mut(t), self.recent.get_mut(t))
        else {
            // A tier the topology does not have: the policy's mistake, counted as local.
            self.counts.local_misses += 1;
            self.current.local += 1;
            return;
        };
        self.counts.cxl_misses += 1;
        if streams(recent, line) {
            let bytes = self.cache.geometry().line;
            wait.stream += 1;
            wait.stream_bytes += bytes;
            wait.stream_ns += (bytes as f64 / self.calibration.bandwidth.max(1.0) * 1e9) as u64;
            self.counts.cxl_stream_misses += 1;
        } else {
            wait.latency += 1;
        }
        if let Some(site) = site {
            *self.sites.entry(site).or_default() += 1;
        }
    }

    /// Feeds trace bytes (any split: a line cut at the end is kept for the next call).
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        if !self.partial.is_empty() {
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                self.partial.extend_from_slice(rest);
                return;
            };
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&rest[..nl]);
            self.line(&line);
            rest = &rest[nl + 1..];
        }
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(nl);
            self.line(line);
            rest = &tail[1..];
        }
        self.partial.extend_from_slice(rest);
    }

    fn line(&mut self, line: &[u8]) {
        match parse(line) {
            Some((Kind::Instruction, _, _)) => {}
            Some((_, address, size)) => self.access(address, size),
            None if line.starts_with(b"==") || line.starts_with(b"--") || line.is_empty() => {
                if self.messages.len() >= 50 {
                    self.messages.remove(0);
                }
                self.messages
                    .push(String::from_utf8_lossy(line).trim_end().to_string());
            }
            None => self.counts.unparsed += 1,
        }
    }

    /// Closes the current epoch: its counts (`samples`: accesses, `local`: local misses,
    /// `tiers`: CXL misses latency-bound and streaming) and the delay they cost.
    pub fn end_epoch(&mut self) -> Epoch {
        let tiers = self.topology.tiers();
        let mut epoch = std::mem::replace(
            &mut self.current,
            Epoch {
                tiers: vec![TierWait::default(); tiers],
                ..Epoch::default()
            },
        );
        epoch.delay = model::delay(
            &self.topology,
            &self.calibration,
            self.period(),
            &epoch.tiers,
        );
        epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Geometry;
    use crate::placement::Placed;
    use crate::topology;

    const CAL: Calibration = Calibration {
        latency: Duration::from_nanos(100),
        bandwidth: 10e9,
    };

    fn exact(source: Box<dyn PlacementSource + Send>) -> Exact {
        let cache = Cache::new(Geometry {
            size: 32 << 10,
            ways: 8,
            line: 64,
        })
        .expect("geometry");
        Exact::new(
            cache,
            topology::direct(Duration::from_nanos(200), 64e9),
            CAL,
            source,
        )
    }

    fn placed(start: u64, size: u64) -> Placement {
        let mut p = Placement::default();
        p.insert(
            start,
            Placed {
                size,
                site: 0x77,
                tier: 1,
                flags: 0,
            },
        );
        p
    }

    #[test]
    fn lines_parse_without_surprises() {
        assert_eq!(
            parse(b" L 1ffefffe58,8"),
            Some((Kind::Load, 0x1ffefffe58, 8))
        );
        assert_eq!(parse(b" S 0402008,4"), Some((Kind::Store, 0x402008, 4)));
        assert_eq!(
            parse(b" M 04a2a010,16"),
            Some((Kind::Modify, 0x4a2a010, 16))
        );
        assert_eq!(
            parse(b"I  04011a0,3"),
            Some((Kind::Instruction, 0x4011a0, 3))
        );
        for bad in [
            &b"==123== Lackey"[..],
            b" X 10,8",
            b" L ,8",
            b" L 10,",
            b" L 1g,8",
            b" L 10,8x",
            b" L 11111111111111111,8",
            b"",
        ] {
            assert_eq!(parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_stream_over_cxl_misses_once_per_line_and_streams() {
        let mut e = exact(Box::new(Fixed));
        e.set_placement(placed(0x100_0000, 1 << 20));
        // Two passes of 8-byte loads over 256 KiB of CXL memory, fed in odd-sized pieces.
        let mut trace = Vec::new();
        for _ in 0..2 {
            for a in (0..256u64 << 10).step_by(8) {
                trace.extend_from_slice(
                    format!(" L {:x},8\nI  0400000,3\n", 0x100_0000 + a).as_bytes(),
                );
            }
        }
        trace.extend_from_slice(b"==1== done\n");
        for chunk in trace.chunks(4093) {
            e.feed(chunk);
        }
        let c = e.counts();
        assert_eq!(c.accesses, 2 * 32768);
        assert_eq!(c.cxl_misses, 2 * 4096);
        assert_eq!(c.local_misses, 0);
        assert_eq!(c.unparsed, 0);
        assert_eq!(e.messages(), ["==1== done"]);
        let epoch = e.end_epoch();
        // The first line of each pass starts a stream; the rest continue it.
        assert_eq!(epoch.tiers[0].latency, 2);
        assert_eq!(epoch.tiers[0].stream, 2 * 4095);
        assert_eq!(e.sites().get(&0x77), Some(&(2 * 4096)));
        // Downwards, interleaved with random misses (a shuffle's two hands): still a stream.
        for i in (0..1000u64).rev() {
            e.access(0x100_0000 + 0x8_0000 + i * 64, 8);
            e.access(0x100_0000 + 0x10_0000 + ((i * 7919) % 1000) * 4096, 8);
        }
        let epoch = e.end_epoch();
        assert_eq!(epoch.tiers[0].stream, 999, "{epoch:?}");
    }

    #[test]
    fn parallelism_is_what_the_native_time_allows() {
        let c = Counts {
            local_misses: 1000,
            local_stream_misses: 500,
            cxl_misses: 1500,
            cxl_stream_misses: 0,
            ..Counts::default()
        };
        assert_eq!(c.latency_misses(), 2000);
        // 2000 misses of 100 ns (200 µs) in 400 µs: one after another, with time to spare; in
        // 2 µs: a hundred at a time.
        let local = Duration::from_nanos(100);
        assert_eq!(c.parallelism(local, Duration::from_micros(400)), 1.0);
        assert!((c.parallelism(local, Duration::from_micros(2)) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn random_misses_wait_the_extra_latency_each() {
        let mut e = exact(Box::new(Fixed));
        e.set_placement(placed(0x100_0000, 1 << 30));
        // 1000 loads 1 MiB apart, none sequential: 1000 latency-bound misses at +200 ns.
        for i in 0..1000u64 {
            e.access(0x100_0000 + i * (1 << 20) % (1 << 30), 8);
        }
        let epoch = e.end_epoch();
        assert_eq!(epoch.tiers[0].latency, 1000);
        assert_eq!(epoch.delay.latency, Duration::from_micros(200));
    }

    /// A source whose placement appears after a given number of looks, like a policy that
    /// placed a block the trace is about to reach.
    struct Later(u32, Option<Placement>);

    impl PlacementSource for Later {
        fn changed(&mut self) -> Option<Placement> {
            self.0 = self.0.saturating_sub(1);
            if self.0 == 0 {
                self.1.take()
            } else {
                None
            }
        }
    }

    #[test]
    fn a_block_placed_just_before_its_first_access_is_tiered() {
        // The first miss asks the source, which now reports the block: the miss is CXL's.
        let mut e = exact(Box::new(Later(1, Some(placed(0x200_0000, 4096)))));
        e.access(0x200_0000, 8);
        assert_eq!(e.counts().cxl_misses, 1);
        // Misses elsewhere stay local, and a line straddling access counts both lines.
        e.access(0x300_0000 + 60, 8);
        assert_eq!(e.counts().local_misses, 2);
        assert_eq!(e.counts().accesses, 3);
    }
}
