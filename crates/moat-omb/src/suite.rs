//! The OSU micro-benchmarks over any [`Transport`]: `latency`, `bw`, `bibw`, `mbw_mr`, `multi_lat`,
//! `barrier`, `bcast` and `allreduce` (sum of `f64`), with OSU's message sizes, warm-up and iteration
//! counts (osu_util.h: 10 000 iterations and 100 warm-up below 8 KiB, 1 000 and 10 above; windows
//! of 64 for the bandwidth tests, with 100/10 and 20/2 iterations; collectives 1 000/200 and
//! 100/10), and OSU's output format. Every rank process runs [`run`]; rank 0's rows are the result.
//!
//! Collectives use the same algorithms on every transport here (binomial trees; the pool's barrier
//! gathers through its MPSC inbox), so a difference between transports is the transport's.
//! `bibw` sends a window while receiving one: the pool sends as many eager messages as its ring
//! holds before receiving, TCP writes from a second thread; with messages above the eager limit
//! the pool alternates directions (its rendezvous has no non-blocking send): lower rank first.

use crate::comm::Comm;
use crate::error::OmbError;
use crate::layout;
use std::fmt;
use std::str::FromStr;
use std::time::Instant;

/// A transport the benchmarks run over: blocking, in-order, point-to-point messages between ranks.
pub trait Transport {
    /// This rank.
    fn rank(&self) -> usize;
    /// Ranks in the world.
    fn size(&self) -> usize;
    /// Sends `data` to `dst`.
    fn send(&mut self, dst: usize, data: &[u8]) -> Result<(), OmbError>;
    /// Receives the next message from `src` into `buf`; returns its length.
    fn recv(&mut self, src: usize, buf: &mut [u8]) -> Result<usize, OmbError>;
    /// Sends to and receives from `peer` at once (both directions progress).
    fn sendrecv(&mut self, peer: usize, data: &[u8], buf: &mut [u8]) -> Result<usize, OmbError> {
        if self.rank() < peer {
            self.send(peer, data)?;
            self.recv(peer, buf)
        } else {
            let n = self.recv(peer, buf)?;
            self.send(peer, data)?;
            Ok(n)
        }
    }
    /// Sends `window` copies of `data` to `peer` while receiving `window` messages from it (the
    /// window of `bibw`: OSU posts them all non-blocking).
    fn exchange(
        &mut self,
        peer: usize,
        window: usize,
        data: &[u8],
        buf: &mut [u8],
    ) -> Result<(), OmbError> {
        for _ in 0..window {
            self.sendrecv(peer, data, buf)?;
        }
        Ok(())
    }
    /// Waits until every rank has called it.
    fn barrier(&mut self) -> Result<(), OmbError> {
        let mut b = [0u8; 1];
        if self.rank() == 0 {
            for r in 1..self.size() {
                self.recv(r, &mut b)?;
            }
            for r in 1..self.size() {
                self.send(r, &[])?;
            }
        } else {
            self.send(0, &[])?;
            self.recv(0, &mut b)?;
        }
        Ok(())
    }
}

impl Transport for Comm {
    fn rank(&self) -> usize {
        Comm::rank(self)
    }
    fn size(&self) -> usize {
        Comm::size(self)
    }
    fn send(&mut self, dst: usize, data: &[u8]) -> Result<(), OmbError> {
        Comm::send(self, dst, data)
    }
    fn recv(&mut self, src: usize, buf: &mut [u8]) -> Result<usize, OmbError> {
        Comm::recv(self, src, buf)
    }
    fn sendrecv(&mut self, peer: usize, data: &[u8], buf: &mut [u8]) -> Result<usize, OmbError> {
        // Eager messages are buffered by the ring: send first on both sides.
        if data.len() <= self.geometry().eager_max as usize {
            Comm::send(self, peer, data)?;
            return Comm::recv(self, peer, buf);
        }
        if Comm::rank(self) < peer {
            Comm::send(self, peer, data)?;
            Comm::recv(self, peer, buf)
        } else {
            let n = Comm::recv(self, peer, buf)?;
            Comm::send(self, peer, data)?;
            Ok(n)
        }
    }
    fn exchange(
        &mut self,
        peer: usize,
        window: usize,
        data: &[u8],
        buf: &mut [u8],
    ) -> Result<(), OmbError> {
        let g = self.geometry();
        if data.len() > g.eager_max as usize {
            for _ in 0..window {
                self.sendrecv(peer, data, buf)?;
            }
            return Ok(());
        }
        // As many eager messages as the ring holds go out before the first is received, on both
        // sides at once.
        let slots = (layout::HDR + data.len()).div_ceil(layout::LINE) + 1;
        let batch = ((g.ring_slots as usize - 1) / slots).max(1);
        let mut left = window;
        while left > 0 {
            let n = left.min(batch);
            for _ in 0..n {
                Comm::send(self, peer, data)?;
            }
            for _ in 0..n {
                Comm::recv(self, peer, buf)?;
            }
            left -= n;
        }
        Ok(())
    }
    fn barrier(&mut self) -> Result<(), OmbError> {
        Comm::barrier(self)
    }
}

/// One benchmark of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bench {
    /// `osu_latency`: ping-pong, one-way latency.
    Latency,
    /// `osu_bw`: windows of 64 messages one way, then an acknowledgement.
    Bw,
    /// `osu_bibw`: windows both ways.
    Bibw,
    /// `osu_mbw_mr`: pairs of ranks streaming windows; bandwidth and message rate.
    MbwMr,
    /// `osu_multi_lat`: pairs of ranks ping-ponging at once.
    MultiLat,
    /// `osu_barrier`.
    Barrier,
    /// `osu_bcast` from rank 0.
    Bcast,
    /// `osu_allreduce`, sum of `f64`.
    Allreduce,
}

impl Bench {
    /// Every benchmark, in the suite's order.
    pub const ALL: [Bench; 8] = [
        Bench::Latency,
        Bench::Bw,
        Bench::Bibw,
        Bench::MbwMr,
        Bench::MultiLat,
        Bench::Barrier,
        Bench::Bcast,
        Bench::Allreduce,
    ];

    /// The name (`latency`, `bw`, …).
    pub fn name(self) -> &'static str {
        match self {
            Bench::Latency => "latency",
            Bench::Bw => "bw",
            Bench::Bibw => "bibw",
            Bench::MbwMr => "mbw_mr",
            Bench::MultiLat => "multi_lat",
            Bench::Barrier => "barrier",
            Bench::Bcast => "bcast",
            Bench::Allreduce => "allreduce",
        }
    }

    /// OSU's title line.
    pub fn title(self) -> &'static str {
        match self {
            Bench::Latency => "OSU MPI Latency Test",
            Bench::Bw => "OSU MPI Bandwidth Test",
            Bench::Bibw => "OSU MPI Bi-Directional Bandwidth Test",
            Bench::MbwMr => "OSU MPI Multiple Bandwidth / Message Rate Test",
            Bench::MultiLat => "OSU MPI Multi Latency Test",
            Bench::Barrier => "OSU MPI Barrier Latency Test",
            Bench::Bcast => "OSU MPI Broadcast Latency Test",
            Bench::Allreduce => "OSU MPI Allreduce Latency Test",
        }
    }

    /// OSU's column headers after `# Size`.
    pub fn columns(self) -> &'static str {
        match self {
            Bench::Latency | Bench::MultiLat => "Latency (us)",
            Bench::Bw | Bench::Bibw => "Bandwidth (MB/s)",
            Bench::MbwMr => "MB/s        Messages/s",
            Bench::Barrier | Bench::Bcast | Bench::Allreduce => "Avg Latency(us)",
        }
    }

    /// Whether the result is a bandwidth (higher is better).
    pub fn is_bandwidth(self) -> bool {
        matches!(self, Bench::Bw | Bench::Bibw | Bench::MbwMr)
    }

    /// Whether the benchmark has message sizes (the barrier has none).
    pub fn has_sizes(self) -> bool {
        self != Bench::Barrier
    }

    /// The number used to name it on the C driver's command line.
    pub fn index(self) -> usize {
        Bench::ALL.iter().position(|&b| b == self).unwrap_or(0)
    }
}

impl FromStr for Bench {
    type Err = OmbError;
    fn from_str(s: &str) -> Result<Bench, OmbError> {
        Bench::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| OmbError::InvalidOptions(format!("unknown benchmark `{s}`")))
    }
}

impl fmt::Display for Bench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// OSU's boundary between small and large messages.
pub const LARGE_MESSAGE: usize = 8192;

/// Sizes and counts of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Smallest message size.
    pub min: usize,
    /// Largest message size.
    pub max: usize,
    /// Iterations for messages up to [`LARGE_MESSAGE`]; `None` = OSU's count for the benchmark.
    pub iters: Option<usize>,
    /// Iterations above it.
    pub iters_large: Option<usize>,
    /// Window of the bandwidth tests.
    pub window: usize,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            min: 1,
            max: 4 << 20,
            iters: None,
            iters_large: None,
            window: 64,
        }
    }
}

impl Params {
    /// The message sizes: 0 for the barrier; else powers of two from `min` to `max` (OSU starts
    /// at 1, collectives at 1 too; `min` 0 adds a 0-byte row to the point-to-point tests).
    pub fn sizes(&self, bench: Bench) -> Vec<usize> {
        if !bench.has_sizes() {
            return vec![0];
        }
        let mut v = Vec::new();
        if self.min == 0 && !matches!(bench, Bench::Bcast | Bench::Allreduce) {
            v.push(0);
        }
        let mut s = self.min.max(1).next_power_of_two();
        if bench == Bench::Allreduce {
            s = s.max(8);
        }
        while s <= self.max {
            v.push(s);
            s *= 2;
        }
        v
    }

    /// `(iterations, warm-up)` for `bench` at `size`, as OSU's defaults (or the overrides, with a
    /// tenth as warm-up).
    pub fn counts(&self, bench: Bench, size: usize) -> (usize, usize) {
        let large = size > LARGE_MESSAGE;
        let osu = match (bench, large) {
            (Bench::Latency | Bench::MultiLat, false) => (10_000, 100),
            (Bench::Latency | Bench::MultiLat, true) => (1_000, 10),
            (Bench::Bw | Bench::Bibw | Bench::MbwMr, false) => (100, 10),
            (Bench::Bw | Bench::Bibw | Bench::MbwMr, true) => (20, 2),
            (_, false) => (1_000, 200),
            (_, true) => (100, 10),
        };
        match (large, self.iters, self.iters_large) {
            (false, Some(i), _) | (true, _, Some(i)) => (i.max(1), (i / 10).max(1)),
            _ => osu,
        }
    }
}

/// One result row: size, value (µs or MB/s), and the message rate for `mbw_mr`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    /// Message size in bytes.
    pub size: usize,
    /// Latency in µs or bandwidth in MB/s (10^6 bytes per second, as OSU).
    pub value: f64,
    /// Messages per second (`mbw_mr`).
    pub rate: Option<f64>,
}

impl Row {
    /// The row as OSU prints it.
    pub fn osu_line(&self) -> String {
        match self.rate {
            Some(r) => format!("{:<10}{:>18.2}{:>18.2}", self.size, self.value, r),
            None => format!("{:<10}{:>18.2}", self.size, self.value),
        }
    }
}

/// Runs `bench` on this rank over `t`; `row` is called on rank 0 with each result as it is made.
pub fn run(
    bench: Bench,
    t: &mut dyn Transport,
    params: &Params,
    row: &mut dyn FnMut(Row),
) -> Result<(), OmbError> {
    let max = params.sizes(bench).last().copied().unwrap_or(0);
    let mut sbuf = vec![b'a'; max.max(8)];
    let mut rbuf = vec![b'b'; max.max(8)];
    t.barrier()?;
    for size in params.sizes(bench) {
        let (iters, skip) = params.counts(bench, size);
        let value = match bench {
            Bench::Latency | Bench::MultiLat => latency(t, size, iters, skip, &sbuf, &mut rbuf)?,
            Bench::Bw | Bench::MbwMr => bw(t, size, iters, skip, params.window, &sbuf, &mut rbuf)?,
            Bench::Bibw => bibw(t, size, iters, skip, params.window, &sbuf, &mut rbuf)?,
            Bench::Barrier => collective(t, iters, skip, |t| t.barrier())?,
            Bench::Bcast => collective(t, iters, skip, |t| bcast(t, &mut sbuf[..size]))?,
            Bench::Allreduce => collective(t, iters, skip, |t| {
                allreduce(t, &sbuf[..size], &mut rbuf[..size])
            })?,
        };
        if t.rank() == 0 {
            let rate = (bench == Bench::MbwMr).then(|| value * 1e6 / size.max(1) as f64);
            row(Row { size, value, rate });
        }
        t.barrier()?;
    }
    Ok(())
}

/// The pair partner in the two-halves pairing of `mbw_mr` and `multi_lat` (None: odd one out).
fn partner(t: &dyn Transport) -> Option<usize> {
    let half = t.size() / 2;
    match t.rank() {
        r if r < half => Some(r + half),
        r if r < 2 * half => Some(r - half),
        _ => None,
    }
}

fn latency(
    t: &mut dyn Transport,
    size: usize,
    iters: usize,
    skip: usize,
    sbuf: &[u8],
    rbuf: &mut [u8],
) -> Result<f64, OmbError> {
    let Some(peer) = partner(t) else {
        return Ok(0.0);
    };
    let first = t.rank() < peer;
    let mut start = Instant::now();
    for i in 0..iters + skip {
        if i == skip {
            start = Instant::now();
        }
        if first {
            t.send(peer, &sbuf[..size])?;
            t.recv(peer, rbuf)?;
        } else {
            t.recv(peer, rbuf)?;
            t.send(peer, &sbuf[..size])?;
        }
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / (2.0 * iters as f64))
}

fn bw(
    t: &mut dyn Transport,
    size: usize,
    iters: usize,
    skip: usize,
    window: usize,
    sbuf: &[u8],
    rbuf: &mut [u8],
) -> Result<f64, OmbError> {
    let Some(peer) = partner(t) else {
        return Ok(0.0);
    };
    let sender = t.rank() < peer;
    let mut start = Instant::now();
    for i in 0..iters + skip {
        if i == skip {
            start = Instant::now();
        }
        if sender {
            for _ in 0..window {
                t.send(peer, &sbuf[..size])?;
            }
            t.recv(peer, rbuf)?;
        } else {
            for _ in 0..window {
                t.recv(peer, rbuf)?;
            }
            t.send(peer, &sbuf[..4.min(size)])?;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(size as f64 * (iters * window) as f64 / 1e6 / secs)
}

fn bibw(
    t: &mut dyn Transport,
    size: usize,
    iters: usize,
    skip: usize,
    window: usize,
    sbuf: &[u8],
    rbuf: &mut [u8],
) -> Result<f64, OmbError> {
    let Some(peer) = partner(t) else {
        return Ok(0.0);
    };
    let mut start = Instant::now();
    for i in 0..iters + skip {
        if i == skip {
            start = Instant::now();
        }
        t.exchange(peer, window, &sbuf[..size], rbuf)?;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(2.0 * size as f64 * (iters * window) as f64 / 1e6 / secs)
}

fn collective(
    t: &mut dyn Transport,
    iters: usize,
    skip: usize,
    mut op: impl FnMut(&mut dyn Transport) -> Result<(), OmbError>,
) -> Result<f64, OmbError> {
    let mut total = 0.0;
    for i in 0..iters + skip {
        let start = Instant::now();
        op(t)?;
        if i >= skip {
            total += start.elapsed().as_secs_f64();
        }
        t.barrier()?;
    }
    Ok(total * 1e6 / iters as f64)
}

/// Broadcast from rank 0 down a binomial tree.
pub fn bcast(t: &mut dyn Transport, buf: &mut [u8]) -> Result<(), OmbError> {
    let (rank, n) = (t.rank(), t.size());
    let mut mask = 1;
    while mask < n {
        if rank < mask {
            if rank + mask < n {
                t.send(rank + mask, buf)?;
            }
        } else if rank < 2 * mask {
            t.recv(rank - mask, buf)?;
        }
        mask <<= 1;
    }
    Ok(())
}

/// Sum of `f64`s over all ranks into every rank's `out`: binomial reduction to rank 0, then a
/// broadcast. `data` and `out` hold little-endian `f64`s (a trailing partial one is ignored).
pub fn allreduce(t: &mut dyn Transport, data: &[u8], out: &mut [u8]) -> Result<(), OmbError> {
    let (rank, n) = (t.rank(), t.size());
    out.copy_from_slice(data);
    let mut tmp = vec![0u8; data.len()];
    let mut mask = 1;
    while mask < n {
        if rank & mask != 0 {
            t.send(rank - mask, out)?;
            break;
        }
        if rank + mask < n {
            t.recv(rank + mask, &mut tmp)?;
            for (o, x) in out.chunks_exact_mut(8).zip(tmp.chunks_exact(8)) {
                let sum = f64::from_le_bytes(o.try_into().unwrap_or([0; 8]))
                    + f64::from_le_bytes(x.try_into().unwrap_or([0; 8]));
                o.copy_from_slice(&sum.to_le_bytes());
            }
        }
        mask <<= 1;
    }
    bcast(t, out)
}

/// The reference for bandwidth: MB/s of `copy_from_slice` of `size` bytes between two buffers of
/// this process, the same window and iteration counts as `bw` (OSU's), best of three runs.
pub fn memcpy_bw(size: usize, params: &Params) -> f64 {
    let (iters, skip) = params.counts(Bench::Bw, size);
    let src = vec![b'a'; size.max(1)];
    let mut dst = vec![b'b'; size.max(1)];
    let mut best = 0.0f64;
    for _ in 0..3 {
        let mut start = Instant::now();
        for i in 0..iters + skip {
            if i == skip {
                start = Instant::now();
            }
            for _ in 0..params.window {
                dst.copy_from_slice(std::hint::black_box(&src));
                std::hint::black_box(&mut dst);
            }
        }
        let secs = start.elapsed().as_secs_f64();
        best = best.max(size as f64 * (iters * params.window) as f64 / 1e6 / secs);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_counts_follow_osu() {
        let p = Params::default();
        let sizes = p.sizes(Bench::Latency);
        assert_eq!(
            (sizes[0], sizes.len(), *sizes.last().unwrap()),
            (1, 23, 4 << 20)
        );
        assert_eq!(p.sizes(Bench::Barrier), vec![0]);
        assert_eq!(p.sizes(Bench::Allreduce)[0], 8);
        assert_eq!(p.counts(Bench::Latency, 8), (10_000, 100));
        assert_eq!(p.counts(Bench::Latency, 16384), (1_000, 10));
        assert_eq!(p.counts(Bench::Bw, 16384), (20, 2));
        assert_eq!("mbw_mr".parse::<Bench>().unwrap(), Bench::MbwMr);
        assert_eq!(
            Row {
                size: 8,
                value: 0.123,
                rate: None
            }
            .osu_line(),
            "8                       0.12"
        );
    }
}
