//! The shared-memory transport: one [`Comm`] per rank process over a region laid out as `layout.rs`
//! says. Point to point, each ordered pair of ranks has an SPSC ring of 64-byte slots: messages up to
//! `eager_max` bytes are copied into the ring (eager), larger ones announce themselves with a
//! request-to-send slot and stream through the pair's rendezvous chunks, copied in by the sender and
//! out by the receiver in a pipeline. Each rank also has an MPSC inbox of 64-byte cells that any rank
//! posts small messages to (the barrier's gather).
//!
//! Fast path: no locks and no system calls. A slot is published by one release store of its
//! sequence word (`pos + 1`) after its payload; the receiver polls that word only (one cache line for
//! a small message) and returns the slot by storing its `tail`, which the sender reads only when its
//! cached copy says the ring is full. Before publishing a message the sender zeroes the sequence
//! word of the slot the next message will start in, so a word the receiver polls never holds stale
//! payload bytes. On a cache-coherent device — DRAM, tmpfs, persistent memory or CXL memory attached
//! to this host — nothing needs flushing for another process to see the stores, so the fast path
//! flushes nothing; only [`Comm::create`] writes the header back (`Region::flush`), since it is what a
//! region on persistent media must still describe after a restart.
//!
//! Safety against a faulty or hostile peer: every header is checked before anything it describes is
//! read (kind, length against `eager_max` and the buffer, chunk numbers against the pair's epoch), a
//! sequence word that is neither "empty" nor the expected one is an error, and every read or write
//! is an offset checked against the region (`shm.rs`); nothing is read outside the ring or the pair's
//! chunks. Crash rules (as the pool lock's, `docs/pool-format.md` §3): each rank's owner word holds
//! the process's id and start time; a waiting peer notices the owner died ([`OmbError::PeerDead`]);
//! a new process takes a dead owner's rank over ([`Comm::attach`]) and recovers its rings: published
//! messages stay, an unpublished one was never visible, the pair's epoch is bumped so a rendezvous in
//! flight aborts on both sides ([`OmbError::Aborted`]), and the dead rank's claims in other ranks'
//! inboxes are recognised as dead by their incarnation number.

use crate::error::OmbError;
use crate::layout::{self, chunk_epoch, chunk_word, Geometry, CELL_PAYLOAD, HDR, LINE, READY};
use crate::shm::Shm;
use moat_pool::{process_dead, process_word, Region};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Slot kind: a message carried in the ring.
const EAGER: u64 = 1;
/// Slot kind: a request to send through the rendezvous chunks.
const RTS: u64 = 2;
/// Inbox cell kind: a posted message.
const POST: u64 = 1;
/// A tombstoned inbox cell (its claimer died before publishing it).
const TOMB: u64 = 1 << 63;
/// An intent word meaning "claiming nothing".
const NO_INTENT: u64 = u64::MAX;
/// The largest message (lengths travel as `u32`).
pub const MAX_MESSAGE: usize = u32::MAX as usize;
/// Spins before a waiter starts yielding the CPU: about 2 µs of `pause`, enough for a peer that
/// is running to answer; a peer that is not running (more runnable processes than cores) needs
/// this core, and `sched_yield` gives it.
const SPINS: u32 = 64;
/// Waiting iterations between two checks that the peer is alive.
const LIVENESS_EVERY: u32 = 1 << 14;

/// How long a rank waits for the creator to finish a region.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Emulated device cost: extra nanoseconds per cache line moved between the ranks (0 = none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Device {
    /// Added to every cache-line miss: each line a sender writes into the region and each line a
    /// receiver reads from it.
    pub miss_ns: u64,
}

impl Device {
    /// Plain memory.
    pub const DRAM: Device = Device { miss_ns: 0 };

    /// The published CXL type-3 memory latency over local DRAM (70–90 ns): 80 ns per miss.
    pub const CXL: Device = Device { miss_ns: 80 };

    /// Busy-waits the cost of `lines` misses.
    fn charge(&self, lines: usize) {
        if self.miss_ns == 0 || lines == 0 {
            return;
        }
        let d = Duration::from_nanos(self.miss_ns.saturating_mul(lines as u64));
        let t = Instant::now();
        while t.elapsed() < d {
            std::hint::spin_loop();
        }
    }
}

/// A waiting loop: spins, then yields; says when to check the peer's liveness.
struct Backoff {
    n: u32,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { n: 0 }
    }

    /// Waits a little; true when the caller should check that its peer lives.
    fn snooze(&mut self) -> bool {
        self.n = self.n.wrapping_add(1);
        if self.n < SPINS {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
        self.n.is_multiple_of(LIVENESS_EVERY)
    }
}

/// What this rank remembers of a ring it sends on.
#[derive(Debug, Clone, Copy, Default)]
struct Tx {
    head: u64,
    tail_seen: u64,
    chunk_head: u64,
    /// The pair's epoch `chunk_head` belongs to.
    epoch: u64,
}

/// One rank's endpoint of a world in a shared region.
#[derive(Debug)]
pub struct Comm {
    shm: Shm,
    g: Geometry,
    rank: usize,
    device: Device,
    tx: Vec<Tx>,
    rx: Vec<u64>,
    inbox_head: u64,
    incarnation: u64,
    me: u64,
}

/// Offsets of the words of a pair block and an inbox, relative to their block.
mod off {
    pub const HEAD: usize = 0;
    pub const CHUNK_HEAD: usize = 8;
    pub const TAIL: usize = 128;
    pub const EPOCH: usize = 256;
    pub const INBOX_TAIL: usize = 0;
    pub const INBOX_HEAD: usize = 128;
    pub const INTENTS: usize = 256;
    pub const OWNER: usize = 0;
    pub const INCARNATION: usize = 8;
}

impl Comm {
    /// Creates the region file at `path` (which must not exist) for a world of `g.ranks` ranks.
    pub fn create(path: impl AsRef<Path>, g: &Geometry) -> Result<(), OmbError> {
        g.check()?;
        let region = Region::create(path.as_ref(), g.region_len() as u64)?;
        let shm = Shm::new(region);
        let w = |off: usize, v: u64| -> Result<(), OmbError> {
            word(&shm, off)?.store(v, Ordering::Relaxed);
            Ok(())
        };
        if !shm.write(0, &g.encode()) {
            return Err(OmbError::InvalidOptions("region too small".into()));
        }
        for src in 0..g.n() {
            for dst in 0..g.n() {
                let ctl = g.pair(src, dst) + g.ctl_off();
                for c in 0..g.chunks as usize {
                    w(ctl + c * LINE, chunk_word(0, 2 * c as u64))?;
                }
            }
            let inbox = g.inbox(src);
            for r in 0..g.n() {
                w(inbox + off::INTENTS + r * LINE, NO_INTENT)?;
            }
            for i in 0..g.inbox_cells as usize {
                w(inbox + g.cells_off() + i * LINE, i as u64)?;
            }
        }
        shm.region().flush(0, g.region_len());
        shm.region().fence();
        word(&shm, layout::READY_OFF)?.store(READY, Ordering::Release);
        shm.region().flush(layout::READY_OFF, 8);
        shm.region().fence();
        Ok(())
    }

    /// Opens the region at `path` as `rank`, on plain memory. See [`Comm::attach_on`].
    pub fn attach(path: impl AsRef<Path>, rank: usize) -> Result<Comm, OmbError> {
        Comm::attach_on(path, rank, Device::DRAM)
    }

    /// Opens the region at `path` as `rank`, charging `device`'s cost per cache line.
    ///
    /// The rank must be free or owned by a dead process ([`OmbError::RankInUse`] otherwise); the new
    /// owner recovers the rank's rings first.
    pub fn attach_on(
        path: impl AsRef<Path>,
        rank: usize,
        device: Device,
    ) -> Result<Comm, OmbError> {
        let shm = Shm::new(Region::open(path.as_ref())?);
        let ready = word(&shm, layout::READY_OFF)?;
        let t = Instant::now();
        while ready.load(Ordering::Acquire) != READY {
            // A creator writes the magic first: other bytes there mean this is no region at all.
            let mut magic = [0u8; 8];
            if shm.read(0, &mut magic) && magic != [0; 8] && magic != layout::MAGIC {
                break;
            }
            if t.elapsed() > READY_TIMEOUT {
                return Err(OmbError::BadHeader {
                    field: "ready",
                    offset: layout::READY_OFF,
                    reason: "the creator never finished the region".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut hdr = [0u8; 64];
        if !shm.read(0, &mut hdr) {
            return Err(OmbError::BadHeader {
                field: "magic",
                offset: 0,
                reason: "region shorter than a header".into(),
            });
        }
        let g = Geometry::decode(&hdr, shm.len())?;
        if rank >= g.n() {
            return Err(OmbError::NoSuchRank { rank, size: g.n() });
        }
        let me = process_word();
        let owner = word(&shm, g.owner(rank) + off::OWNER)?;
        loop {
            let cur = owner.load(Ordering::Acquire);
            if cur == me {
                return Err(OmbError::RankInUse {
                    rank,
                    pid: std::process::id(),
                });
            }
            if cur != 0 && !process_dead(cur) {
                return Err(OmbError::RankInUse {
                    rank,
                    pid: (cur & 0xffff_ffff) as u32,
                });
            }
            if owner
                .compare_exchange(cur, me, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                break;
            }
        }
        let incarnation = word(&shm, g.owner(rank) + off::INCARNATION)?
            .fetch_add(1, Ordering::AcqRel)
            .wrapping_add(1);
        let mut comm = Comm {
            shm,
            g,
            rank,
            device,
            tx: vec![Tx::default(); g.n()],
            rx: vec![0; g.n()],
            inbox_head: 0,
            incarnation: incarnation & 0xffff,
            me,
        };
        // The first owner of a rank finds everything as the creator left it; later ones recover.
        if incarnation > 1 {
            comm.recover()?;
        }
        Ok(comm)
    }

    /// Recovers this rank's side of every ring: what a previous owner published stays, a
    /// rendezvous in flight is aborted (the pair's epoch changes), the positions are re-read.
    fn recover(&mut self) -> Result<(), OmbError> {
        let (g, rank) = (self.g, self.rank);
        for peer in 0..g.n() {
            // As the sender: find the end of what is published.
            let pair = g.pair(rank, peer);
            let tail = self.w(pair + off::TAIL)?.load(Ordering::Acquire);
            let mut head = self.w(pair + off::HEAD)?.load(Ordering::Acquire).max(tail);
            let slots = u64::from(g.ring_slots);
            let mut guard = 0;
            while guard < slots {
                let slot = self.slot_off(pair, head);
                if self.w(slot)?.load(Ordering::Acquire) != head + 1 {
                    break;
                }
                let hdr = self.w(slot + 8)?.load(Ordering::Relaxed);
                let k = match hdr >> 32 {
                    EAGER => slots_for((hdr & 0xffff_ffff) as usize) as u64,
                    _ => 1,
                };
                head += k;
                guard += k;
            }
            self.w(pair + off::HEAD)?.store(head, Ordering::Release);
            self.w(self.slot_off(pair, head))?
                .store(0, Ordering::Release);
            let (epoch, chunk_head) = self.bump_epoch(pair)?;
            self.tx[peer] = Tx {
                head,
                tail_seen: tail,
                chunk_head,
                epoch,
            };
            // As the receiver: skip a request to send whose transfer died with the old owner.
            let pair = g.pair(peer, rank);
            let mut tail = self.w(pair + off::TAIL)?.load(Ordering::Acquire);
            let slot = self.slot_off(pair, tail);
            if self.w(slot)?.load(Ordering::Acquire) == tail + 1
                && self.w(slot + 8)?.load(Ordering::Relaxed) >> 32 == RTS
            {
                tail += 1;
                self.w(pair + off::TAIL)?.store(tail, Ordering::Release);
                self.bump_epoch(pair)?;
            }
            self.rx[peer] = tail;
        }
        self.inbox_head = self
            .w(g.inbox(rank) + off::INBOX_HEAD)?
            .load(Ordering::Acquire);
        Ok(())
    }

    /// Bumps a pair's epoch and frees every chunk for the new epoch; returns the epoch and the chunk
    /// number the sender continues from.
    fn bump_epoch(&self, pair: usize) -> Result<(u64, u64), OmbError> {
        let g = self.g;
        let chunks = u64::from(g.chunks);
        let epoch = self.w(pair + off::EPOCH)?.fetch_add(1, Ordering::AcqRel) + 1;
        let old = self.w(pair + off::CHUNK_HEAD)?.load(Ordering::Acquire);
        let base = (old.div_ceil(chunks) + 1) * chunks;
        for q in base..base + chunks {
            let ctl = self.w(pair + g.ctl_off() + (q % chunks) as usize * LINE)?;
            // The receiver may be releasing a chunk of the old epoch at the same moment: retry until
            // our store wins over its compare-and-swap.
            let mut cur = ctl.load(Ordering::Acquire);
            while let Err(now) = ctl.compare_exchange(
                cur,
                chunk_word(epoch, 2 * q),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                cur = now;
            }
        }
        self.w(pair + off::CHUNK_HEAD)?
            .store(base, Ordering::Release);
        Ok((epoch, base))
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The world's size.
    pub fn size(&self) -> usize {
        self.g.n()
    }

    /// The region's geometry.
    pub fn geometry(&self) -> Geometry {
        self.g
    }

    /// The word at region offset `off`.
    fn w(&self, off: usize) -> Result<&AtomicU64, OmbError> {
        word(&self.shm, off)
    }

    /// The region offset of the slot of ring position `pos` in pair block `pair`.
    fn slot_off(&self, pair: usize, pos: u64) -> usize {
        pair + self.g.ring_off() + (pos % u64::from(self.g.ring_slots)) as usize * LINE
    }

    /// Fails with [`OmbError::PeerDead`] if `rank`'s owner died.
    fn check_alive(&self, rank: usize) -> Result<(), OmbError> {
        let owner = self
            .w(self.g.owner(rank) + off::OWNER)?
            .load(Ordering::Acquire);
        if process_dead(owner) {
            return Err(OmbError::PeerDead { rank });
        }
        Ok(())
    }

    fn check_rank(&self, rank: usize) -> Result<(), OmbError> {
        if rank >= self.g.n() {
            return Err(OmbError::NoSuchRank {
                rank,
                size: self.g.n(),
            });
        }
        Ok(())
    }

    /// Copies `data` into the ring of `pair` from byte `at` of the ring, wrapping at its end.
    fn ring_write(&self, pair: usize, at: usize, data: &[u8]) -> Result<(), OmbError> {
        let ring = pair + self.g.ring_off();
        let len = self.g.ring_slots as usize * LINE;
        let at = at % len;
        let first = data.len().min(len - at);
        let ok = self.shm.write(ring + at, &data[..first]) && self.shm.write(ring, &data[first..]);
        if !ok {
            return Err(OmbError::InvalidOptions("ring outside the region".into()));
        }
        Ok(())
    }

    /// Copies `out.len()` bytes out of the ring of `pair` from byte `at`, wrapping at its end.
    fn ring_read(&self, pair: usize, at: usize, out: &mut [u8]) -> Result<(), OmbError> {
        let ring = pair + self.g.ring_off();
        let len = self.g.ring_slots as usize * LINE;
        let at = at % len;
        let first = out.len().min(len - at);
        let (a, b) = out.split_at_mut(first);
        if !(self.shm.read(ring + at, a) && self.shm.read(ring, b)) {
            return Err(OmbError::InvalidOptions("ring outside the region".into()));
        }
        Ok(())
    }

    /// Sends `data` to `dst`: eagerly through the ring up to `eager_max` bytes, else by rendezvous.
    /// Returns when the data is in the region (eager) or has been copied out by the receiver
    /// (rendezvous, all but the last `chunks` chunks).
    pub fn send(&mut self, dst: usize, data: &[u8]) -> Result<(), OmbError> {
        self.check_rank(dst)?;
        if data.len() <= self.g.eager_max as usize {
            return self.publish(dst, EAGER, data.len(), data);
        }
        if data.len() > MAX_MESSAGE {
            return Err(OmbError::TooLarge {
                len: data.len(),
                max: MAX_MESSAGE,
            });
        }
        let pair = self.g.pair(self.rank, dst);
        let chunks = u64::from(self.g.chunks);
        let cs = self.g.chunk_size as usize;
        let epoch = self.w(pair + off::EPOCH)?.load(Ordering::Acquire);
        if epoch != self.tx[dst].epoch {
            // The receiver was replaced and renumbered the chunks.
            self.tx[dst].chunk_head = self.w(pair + off::CHUNK_HEAD)?.load(Ordering::Acquire);
            self.tx[dst].epoch = epoch;
        }
        let q0 = self.tx[dst].chunk_head;
        let mut rts = [0u8; 16];
        rts[..8].copy_from_slice(&q0.to_le_bytes());
        rts[8..].copy_from_slice(&epoch.to_le_bytes());
        self.publish(dst, RTS, data.len(), &rts)?;
        for (i, part) in data.chunks(cs).enumerate() {
            let q = q0 + i as u64;
            let c = (q % chunks) as usize;
            let ctl = self.w(pair + self.g.ctl_off() + c * LINE)?;
            let mut backoff = Backoff::new();
            loop {
                let v = ctl.load(Ordering::Acquire);
                if v == chunk_word(epoch, 2 * q) {
                    break;
                }
                if chunk_epoch(v) != epoch & 0xffff {
                    return Err(OmbError::Aborted {
                        rank: dst,
                        reason: "the receiver was replaced",
                    });
                }
                if backoff.snooze() {
                    self.check_alive(dst)?;
                }
            }
            if !self.shm.write(pair + self.g.data_off() + c * cs, part) {
                return Err(OmbError::InvalidOptions("chunk outside the region".into()));
            }
            self.device.charge(part.len().div_ceil(LINE));
            ctl.store(chunk_word(epoch, 2 * q + 1), Ordering::Release);
        }
        let next = q0 + data.len().div_ceil(cs) as u64;
        self.tx[dst].chunk_head = next;
        self.w(pair + off::CHUNK_HEAD)?
            .store(next, Ordering::Release);
        Ok(())
    }

    /// Publishes one ring message of `kind` announcing `len` bytes with `payload` in its slots.
    fn publish(
        &mut self,
        dst: usize,
        kind: u64,
        len: usize,
        payload: &[u8],
    ) -> Result<(), OmbError> {
        let pair = self.g.pair(self.rank, dst);
        let slots = u64::from(self.g.ring_slots);
        let k = slots_for(payload.len()) as u64;
        let tx = self.tx[dst];
        // One slot more than the message: the next message's first slot, zeroed below.
        if tx.head + k + 1 > tx.tail_seen + slots {
            let tail = self.w(pair + off::TAIL)?;
            let mut backoff = Backoff::new();
            loop {
                let t = tail.load(Ordering::Acquire);
                if tx.head + k < t + slots {
                    self.tx[dst].tail_seen = t;
                    break;
                }
                if backoff.snooze() {
                    self.check_alive(dst)?;
                }
            }
        }
        let pos = tx.head;
        let slot = self.slot_off(pair, pos);
        let at = (pos % slots) as usize * LINE;
        self.ring_write(pair, at + HDR, payload)?;
        self.w(self.slot_off(pair, pos + k))?
            .store(0, Ordering::Relaxed);
        self.w(slot + 8)?
            .store(len as u64 | (kind << 32), Ordering::Relaxed);
        self.device.charge(k as usize);
        self.w(slot)?.store(pos + 1, Ordering::Release);
        self.tx[dst].head = pos + k;
        self.w(pair + off::HEAD)?.store(pos + k, Ordering::Relaxed);
        Ok(())
    }

    /// Receives the next message from `src` into `buf`; returns its length.
    pub fn recv(&mut self, src: usize, buf: &mut [u8]) -> Result<usize, OmbError> {
        self.check_rank(src)?;
        let g = self.g;
        let pair = g.pair(src, self.rank);
        let pos = self.rx[src];
        let slot = self.slot_off(pair, pos);
        let seq = self.w(slot)?;
        let mut backoff = Backoff::new();
        loop {
            let s = seq.load(Ordering::Acquire);
            if s == pos + 1 {
                break;
            }
            if s != 0 {
                return Err(self.malformed(
                    src,
                    pos,
                    "sequence word is neither empty nor the next position",
                ));
            }
            if backoff.snooze() {
                self.check_alive(src)?;
            }
        }
        let hdr = self.w(slot + 8)?.load(Ordering::Relaxed);
        let len = (hdr & 0xffff_ffff) as usize;
        match hdr >> 32 {
            EAGER => {
                if len > g.eager_max as usize {
                    return Err(self.malformed(src, pos, "eager length above eager_max"));
                }
                let k = slots_for(len);
                self.device.charge(k);
                let at = (pos % u64::from(g.ring_slots)) as usize * LINE + HDR;
                let fit = len.min(buf.len());
                self.ring_read(pair, at, &mut buf[..fit])?;
                self.advance(src, pos + k as u64)?;
                if fit < len {
                    return Err(OmbError::Truncated {
                        src,
                        len,
                        cap: buf.len(),
                    });
                }
                Ok(len)
            }
            RTS => self.recv_rendezvous(src, pos, len, buf),
            _ => Err(self.malformed(src, pos, "unknown message kind")),
        }
    }

    /// The error for a malformed header from `src` at `pos`.
    fn malformed(&self, src: usize, pos: u64, reason: &'static str) -> OmbError {
        OmbError::MalformedHeader { src, pos, reason }
    }

    /// Moves the receive position from `src` to `pos` and tells the sender.
    fn advance(&mut self, src: usize, pos: u64) -> Result<(), OmbError> {
        self.rx[src] = pos;
        let pair = self.g.pair(src, self.rank);
        self.w(pair + off::TAIL)?.store(pos, Ordering::Release);
        Ok(())
    }

    /// Receives the chunks of the rendezvous announced at ring position `pos`.
    fn recv_rendezvous(
        &mut self,
        src: usize,
        pos: u64,
        len: usize,
        buf: &mut [u8],
    ) -> Result<usize, OmbError> {
        let g = self.g;
        let pair = g.pair(src, self.rank);
        if len <= g.eager_max as usize {
            return Err(self.malformed(src, pos, "rendezvous length within eager_max"));
        }
        let slot = self.slot_off(pair, pos);
        let q0 = self.w(slot + HDR)?.load(Ordering::Relaxed);
        let epoch = self.w(slot + HDR + 8)?.load(Ordering::Relaxed);
        self.device.charge(1);
        let cs = g.chunk_size as usize;
        let chunks = u64::from(g.chunks);
        if q0 >= 1 << 46 {
            self.advance(src, pos + 1)?;
            return Err(self.malformed(src, pos, "chunk number out of range"));
        }
        let mut got = 0;
        let mut result = Ok(len);
        for i in 0..len.div_ceil(cs) as u64 {
            let q = q0 + i;
            let c = (q % chunks) as usize;
            let ctl = self.w(pair + g.ctl_off() + c * LINE)?;
            let full = chunk_word(epoch, 2 * q + 1);
            let mut backoff = Backoff::new();
            loop {
                let v = ctl.load(Ordering::Acquire);
                if v == full {
                    break;
                }
                if chunk_epoch(v) != epoch & 0xffff {
                    result = Err(OmbError::Aborted {
                        rank: src,
                        reason: "the sender was replaced",
                    });
                    break;
                }
                if backoff.snooze() {
                    if let Err(e) = self.check_alive(src) {
                        result = Err(e);
                        break;
                    }
                }
            }
            if result.is_err() {
                break;
            }
            let part = (len - got).min(cs);
            let fit = part.min(buf.len().saturating_sub(got));
            if !self
                .shm
                .read(pair + g.data_off() + c * cs, &mut buf[got..got + fit])
            {
                return Err(OmbError::InvalidOptions("chunk outside the region".into()));
            }
            self.device.charge(part.div_ceil(LINE));
            got += part;
            // The copy is valid only if the chunk still held chunk q when it ended.
            if ctl
                .compare_exchange(
                    full,
                    chunk_word(epoch, 2 * (q + chunks)),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err()
            {
                result = Err(OmbError::Aborted {
                    rank: src,
                    reason: "the chunk changed while it was read",
                });
                break;
            }
        }
        self.advance(src, pos + 1)?;
        if result.is_ok() && len > buf.len() {
            return Err(OmbError::Truncated {
                src,
                len,
                cap: buf.len(),
            });
        }
        result
    }

    /// Posts a small message (at most 48 bytes) to `dst`'s inbox, which every rank shares.
    pub fn post(&mut self, dst: usize, data: &[u8]) -> Result<(), OmbError> {
        self.check_rank(dst)?;
        if data.len() > CELL_PAYLOAD {
            return Err(OmbError::TooLarge {
                len: data.len(),
                max: CELL_PAYLOAD,
            });
        }
        let g = self.g;
        let inbox = g.inbox(dst);
        let tail = self.w(inbox + off::INBOX_TAIL)?;
        let intent = self.w(inbox + off::INTENTS + self.rank * LINE)?;
        let mut backoff = Backoff::new();
        let p = loop {
            let p = tail.load(Ordering::Acquire);
            intent.store(p | (self.incarnation << 48), Ordering::SeqCst);
            let cell = self.cell_off(inbox, p);
            let s = self.w(cell)?.load(Ordering::Acquire);
            if s == p {
                if tail
                    .compare_exchange(p, p + 1, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
                {
                    break p;
                }
                continue;
            }
            if s < p && backoff.snooze() {
                self.check_alive(dst)?;
            }
        };
        let cell = self.cell_off(inbox, p);
        if !self.shm.write(cell + HDR, data) {
            return Err(OmbError::InvalidOptions("cell outside the region".into()));
        }
        self.w(cell + 8)?.store(
            data.len() as u64 | ((self.rank as u64) << 16) | (POST << 32),
            Ordering::Relaxed,
        );
        self.device.charge(1);
        let published = self
            .w(cell)?
            .compare_exchange(p, p + 1, Ordering::Release, Ordering::Relaxed)
            .is_ok();
        intent.store(NO_INTENT, Ordering::Release);
        if !published {
            return Err(OmbError::Aborted {
                rank: dst,
                reason: "the inbox cell was taken back from this rank",
            });
        }
        Ok(())
    }

    fn cell_off(&self, inbox: usize, p: u64) -> usize {
        inbox + self.g.cells_off() + (p % u64::from(self.g.inbox_cells)) as usize * LINE
    }

    /// Takes the next message from this rank's inbox into `buf` (at least 48 bytes); returns the
    /// sender and the length.
    pub fn take(&mut self, buf: &mut [u8]) -> Result<(usize, usize), OmbError> {
        let g = self.g;
        let inbox = g.inbox(self.rank);
        let cells = u64::from(g.inbox_cells);
        loop {
            let p = self.inbox_head;
            let cell = self.cell_off(inbox, p);
            let seq = self.w(cell)?;
            let mut backoff = Backoff::new();
            let s = loop {
                let s = seq.load(Ordering::Acquire);
                if s != p {
                    break s;
                }
                if backoff.snooze() && self.reclaim_stalled(inbox, p)? {
                    break seq.load(Ordering::Acquire);
                }
            };
            let release = |this: &mut Comm| -> Result<(), OmbError> {
                this.w(cell)?.store(p + cells, Ordering::Release);
                this.inbox_head = p + 1;
                this.w(inbox + off::INBOX_HEAD)?
                    .store(p + 1, Ordering::Release);
                Ok(())
            };
            if s == (p + 1) | TOMB {
                release(self)?;
                continue;
            }
            if s != p + 1 {
                return Err(OmbError::MalformedHeader {
                    src: g.n(),
                    pos: p,
                    reason: "inbox sequence word is neither empty nor the next position",
                });
            }
            let hdr = self.w(cell + 8)?.load(Ordering::Relaxed);
            let len = (hdr & 0xffff) as usize;
            let src = ((hdr >> 16) & 0xffff) as usize;
            self.device.charge(1);
            let bad = if hdr >> 32 != POST {
                Some("unknown inbox cell kind")
            } else if len > CELL_PAYLOAD {
                Some("inbox length above 48 bytes")
            } else if src >= g.n() {
                Some("inbox sender outside the world")
            } else if len > buf.len() {
                Some("inbox message larger than the buffer")
            } else {
                None
            };
            let copied = bad.is_none() && self.shm.read(cell + HDR, &mut buf[..len]);
            release(self)?;
            return match bad {
                Some(reason) => Err(OmbError::MalformedHeader {
                    src,
                    pos: p,
                    reason,
                }),
                None if copied => Ok((src, len)),
                None => Err(OmbError::InvalidOptions("cell outside the region".into())),
            };
        }
    }

    /// Tombstones inbox cell `p` if the rank that claimed it died before publishing it: the cell
    /// has been claimed (the tail is past it), no live producer's intent names it, and a dead one's
    /// does. Returns whether it did.
    fn reclaim_stalled(&self, inbox: usize, p: u64) -> Result<bool, OmbError> {
        let g = self.g;
        if self.w(inbox + off::INBOX_TAIL)?.load(Ordering::Acquire) <= p {
            return Ok(false);
        }
        let (mut live, mut dead) = (false, false);
        for r in 0..g.n() {
            let intent = self
                .w(inbox + off::INTENTS + r * LINE)?
                .load(Ordering::SeqCst);
            if intent == NO_INTENT || intent & ((1 << 48) - 1) != p {
                continue;
            }
            let owner = self.w(g.owner(r) + off::OWNER)?.load(Ordering::Acquire);
            let inc = self
                .w(g.owner(r) + off::INCARNATION)?
                .load(Ordering::Acquire)
                & 0xffff;
            if process_dead(owner) || inc != intent >> 48 {
                dead = true;
            } else {
                live = true;
            }
        }
        if live || !dead {
            return Ok(false);
        }
        let cell = self.cell_off(inbox, p);
        Ok(self
            .w(cell)?
            .compare_exchange(p, (p + 1) | TOMB, Ordering::AcqRel, Ordering::Acquire)
            .is_ok())
    }

    /// A barrier: every rank posts to rank 0's inbox, rank 0 answers each through its ring.
    pub fn barrier(&mut self) -> Result<(), OmbError> {
        let mut buf = [0u8; CELL_PAYLOAD];
        if self.rank == 0 {
            for _ in 1..self.size() {
                self.take(&mut buf)?;
            }
            for r in 1..self.size() {
                self.send(r, &[])?;
            }
        } else {
            self.post(0, &[])?;
            self.recv(0, &mut buf)?;
        }
        Ok(())
    }

    /// Claims a cell of `dst`'s inbox and never publishes it, as a process that dies in the middle
    /// of [`post`](Comm::post) would (tests of inbox recovery).
    #[doc(hidden)]
    pub fn claim_and_stall(&mut self, dst: usize) -> Result<(), OmbError> {
        let inbox = self.g.inbox(dst);
        let tail = self.w(inbox + off::INBOX_TAIL)?;
        let intent = self.w(inbox + off::INTENTS + self.rank * LINE)?;
        let p = tail.load(Ordering::Acquire);
        intent.store(p | (self.incarnation << 48), Ordering::SeqCst);
        tail.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// The ring position the next message from `src` is expected at (tests).
    #[doc(hidden)]
    pub fn recv_position(&self, src: usize) -> u64 {
        self.rx.get(src).copied().unwrap_or(0)
    }

    /// Writes raw bytes into the ring of `src → self` at `pos` (tests of hostile senders).
    #[doc(hidden)]
    pub fn forge_slot(
        &self,
        src: usize,
        pos: u64,
        words: [u64; 2],
        payload: &[u8],
    ) -> Result<(), OmbError> {
        let pair = self.g.pair(src, self.rank);
        let slot = self.slot_off(pair, pos);
        let at = (pos % u64::from(self.g.ring_slots)) as usize * LINE;
        self.ring_write(pair, at + HDR, payload)?;
        self.w(slot + 8)?.store(words[1], Ordering::Relaxed);
        self.w(slot)?.store(words[0], Ordering::Release);
        Ok(())
    }
}

impl Drop for Comm {
    fn drop(&mut self) {
        if let Ok(owner) = self.w(self.g.owner(self.rank) + off::OWNER) {
            let _ = owner.compare_exchange(self.me, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
}

/// The region word at `off`, or an error naming it.
fn word(shm: &Shm, off: usize) -> Result<&AtomicU64, OmbError> {
    shm.word(off).ok_or(OmbError::BadHeader {
        field: "word",
        offset: off,
        reason: "outside the region".to_string(),
    })
}

/// Ring slots a message with `payload` bytes occupies.
fn slots_for(payload: usize) -> usize {
    (HDR + payload).div_ceil(LINE)
}
