//! Ring buffers (`BPF_MAP_TYPE_RINGBUF`): many producers (programs), one consumer (the host).
//!
//! The storage is one block laid out like the kernel's memory-mapped ring: a page holding the consumer
//! position, a page holding the producer position (both `u64`, at the start of their page), then
//! `max_entries` data bytes (the word after the consumer position may hold a label, see
//! `RingBuf::set_tag`). Positions only grow; a position's offset in the data is `pos & (size - 1)`.
//!
//! Each record starts with the kernel's 8-byte header: a `u32` length whose bit 31 (busy) is set while
//! the record is reserved and bit 30 (discard) when it was discarded, then a `u32` that here holds the
//! header's data offset in 8-byte units (the kernel stores a page offset; both serve to validate the
//! pointer on submit). Records take `round_up(len + 8, 8)` bytes.
//!
//! Reservation takes a producer mutex; submit and discard are a single atomic store; the consumer needs
//! no lock shared with producers. Unlike the kernel, the data area is not mapped twice back to back, so a
//! record never wraps: when it would cross the end of the data, the producer first fills the rest with a
//! discarded padding record. Positions therefore advance by that padding too, and a record larger than
//! half the ring may fail to fit even in an empty ring. As in the kernel, the ring never fills up
//! completely (at least 8 bytes stay free).

use crate::def::{round8, MapDef, PAGE_SIZE};
use crate::error::MapError;
use crate::mem::{Block, MapMemory};
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, TryLockError};

/// Header bit: the record is reserved and not yet submitted or discarded.
pub const BPF_RINGBUF_BUSY_BIT: u32 = 1 << 31;
/// Header bit: the record was discarded; consumers skip it.
pub const BPF_RINGBUF_DISCARD_BIT: u32 = 1 << 30;
/// Size of a record header.
pub const BPF_RINGBUF_HDR_SZ: u64 = 8;
/// The largest record length (the kernel's `RINGBUF_MAX_RECORD_SZ`).
pub const RINGBUF_MAX_RECORD_SZ: u64 = (u32::MAX / 4) as u64;

/// Submit/output flag: do not notify the consumer (accepted; this crate sends no notifications).
pub const BPF_RB_NO_WAKEUP: u64 = 1 << 0;
/// Submit/output flag: notify the consumer (accepted; this crate sends no notifications).
pub const BPF_RB_FORCE_WAKEUP: u64 = 1 << 1;

/// `bpf_ringbuf_query` flag: bytes committed or reserved and not yet consumed.
pub const BPF_RB_AVAIL_DATA: u64 = 0;
/// `bpf_ringbuf_query` flag: the data size.
pub const BPF_RB_RING_SIZE: u64 = 1;
/// `bpf_ringbuf_query` flag: the consumer position.
pub const BPF_RB_CONS_POS: u64 = 2;
/// `bpf_ringbuf_query` flag: the producer position.
pub const BPF_RB_PROD_POS: u64 = 3;

const PAGE: usize = PAGE_SIZE as usize;
const CONS_OFF: usize = 0;
/// A word after the consumer position this crate uses to label rings ([`RingBuf::set_tag`]).
const TAG_OFF: usize = 8;
const PROD_OFF: usize = PAGE;
pub(crate) const DATA_OFF: usize = 2 * PAGE;
const HDR: usize = BPF_RINGBUF_HDR_SZ as usize;

/// A ring buffer.
#[derive(Debug)]
pub(crate) struct RingBuf {
    /// Data size, a power of two.
    size: u64,
    block: Block,
    /// Serializes reservations.
    producer: Mutex<()>,
    /// Serializes consumers; holds the buffer records are copied into.
    consumer: Mutex<Vec<u8>>,
}

impl RingBuf {
    pub(crate) fn new(def: &MapDef, memory: &Arc<dyn MapMemory>) -> Result<RingBuf, MapError> {
        let size = u64::from(def.max_entries);
        Ok(RingBuf {
            size,
            block: Block::new(memory, DATA_OFF + size as usize, PAGE)?,
            producer: Mutex::new(()),
            consumer: Mutex::new(Vec::new()),
        })
    }

    /// A reader's view of another process's ring of `size` data bytes in `block`; `None` if the block
    /// is too short or `size` not a power of two.
    pub(crate) fn from_block(block: Block, size: u64) -> Option<RingBuf> {
        let fits = usize::try_from(size)
            .ok()
            .and_then(|s| s.checked_add(DATA_OFF))
            .is_some_and(|end| end <= block.len());
        (size.is_power_of_two() && fits).then(|| RingBuf {
            size,
            block,
            producer: Mutex::new(()),
            consumer: Mutex::new(Vec::new()),
        })
    }

    /// Stores `tag` in the consumer page after the position (a perf event array's slot number, so a
    /// reader knows which ring a shared file holds).
    pub(crate) fn set_tag(&self, tag: u64) {
        self.block.atomic_u64(TAG_OFF).store(tag, Ordering::Release);
    }

    /// The tag stored by [`RingBuf::set_tag`] (0 before).
    pub(crate) fn tag(&self) -> u64 {
        self.block.atomic_u64(TAG_OFF).load(Ordering::Acquire)
    }

    fn mask(&self) -> u64 {
        self.size - 1
    }

    fn cons_pos(&self) -> u64 {
        self.block.atomic_u64(CONS_OFF).load(Ordering::Acquire)
    }

    fn prod_pos(&self) -> u64 {
        self.block.atomic_u64(PROD_OFF).load(Ordering::Acquire)
    }

    /// Writes a header at data offset `off` (multiple of 8, below `size`).
    fn write_header(&self, off: usize, len: u32) {
        self.block
            .atomic_u32(DATA_OFF + off + 4)
            .store((off / HDR) as u32, Ordering::Relaxed);
        self.block
            .atomic_u32(DATA_OFF + off)
            .store(len, Ordering::Relaxed);
    }

    /// `bpf_ringbuf_reserve`: a pointer to `size` writable bytes, or `None` if the flags are not zero, the
    /// record is too large or there is no room.
    pub(crate) fn reserve(&self, size: u64, flags: u64) -> Option<NonNull<u8>> {
        if flags != 0 || size > RINGBUF_MAX_RECORD_SZ {
            return None;
        }
        let total = round8(size + BPF_RINGBUF_HDR_SZ);
        if total > self.size {
            return None;
        }
        let _guard = self.producer.lock().unwrap_or_else(|e| e.into_inner());
        let cons = self.cons_pos();
        // Only reservations store the producer position, and they hold the lock.
        let prod = self.block.atomic_u64(PROD_OFF).load(Ordering::Relaxed);
        let off = prod & self.mask();
        let to_end = self.size - off;
        let pad = if total > to_end { to_end } else { 0 };
        let new_prod = prod.wrapping_add(pad + total);
        if new_prod.wrapping_sub(cons) > self.mask() {
            return None;
        }
        if pad > 0 {
            self.write_header(
                off as usize,
                (pad - BPF_RINGBUF_HDR_SZ) as u32 | BPF_RINGBUF_DISCARD_BIT,
            );
        }
        let rec = ((prod + pad) & self.mask()) as usize;
        self.write_header(rec, size as u32 | BPF_RINGBUF_BUSY_BIT);
        // Publishes the headers written above to the consumer.
        self.block
            .atomic_u64(PROD_OFF)
            .store(new_prod, Ordering::Release);
        Some(self.block.ptr_at(DATA_OFF + rec + HDR))
    }

    /// `bpf_ringbuf_submit` / `bpf_ringbuf_discard`: commits the record whose data starts at `ptr`.
    pub(crate) fn commit(&self, ptr: *mut u8, discard: bool) -> Result<(), MapError> {
        let addr = ptr as usize;
        let invalid = MapError::InvalidPointer { addr };
        let rel = addr
            .checked_sub(self.block.addr() + DATA_OFF + HDR)
            .ok_or(invalid.clone())?;
        if rel % HDR != 0 || rel as u64 + BPF_RINGBUF_HDR_SZ > self.size {
            return Err(invalid);
        }
        let tag = self
            .block
            .atomic_u32(DATA_OFF + rel + 4)
            .load(Ordering::Relaxed);
        let len = self.block.atomic_u32(DATA_OFF + rel);
        let cur = len.load(Ordering::Relaxed);
        if tag as usize != rel / HDR || cur & BPF_RINGBUF_BUSY_BIT == 0 {
            return Err(invalid);
        }
        let new = (cur & !BPF_RINGBUF_BUSY_BIT) | if discard { BPF_RINGBUF_DISCARD_BIT } else { 0 };
        // Release: the consumer that sees the busy bit clear also sees the record's data.
        len.compare_exchange(cur, new, Ordering::Release, Ordering::Relaxed)
            .map(|_| ())
            .map_err(|_| invalid)
    }

    /// `bpf_ringbuf_output`: reserve, copy and submit.
    pub(crate) fn output(&self, data: &[u8], flags: u64) -> Result<(), MapError> {
        if flags & !(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP) != 0 {
            return Err(MapError::InvalidFlags { flags });
        }
        let ptr = self
            .reserve(data.len() as u64, 0)
            .ok_or(MapError::RingFull)?;
        let off = ptr.as_ptr() as usize - self.block.addr();
        self.block.write(off, data);
        self.commit(ptr.as_ptr(), false)
    }

    /// `bpf_ringbuf_query`; unknown flags give 0.
    pub(crate) fn query(&self, flag: u64) -> u64 {
        match flag {
            BPF_RB_AVAIL_DATA => self.prod_pos().wrapping_sub(self.cons_pos()),
            BPF_RB_RING_SIZE => self.size,
            BPF_RB_CONS_POS => self.cons_pos(),
            BPF_RB_PROD_POS => self.prod_pos(),
            _ => 0,
        }
    }

    /// Hands committed records to `f` in order, skipping discarded ones and stopping at the first record
    /// still reserved. Returns the number of records handed over.
    pub(crate) fn consume(&self, f: &mut dyn FnMut(&[u8])) -> Result<usize, MapError> {
        let mut buf = match self.consumer.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(MapError::Busy),
        };
        let cons_word = self.block.atomic_u64(CONS_OFF);
        let mut cons = cons_word.load(Ordering::Relaxed);
        let mut count = 0;
        loop {
            let prod = self.prod_pos();
            let avail = prod.wrapping_sub(cons);
            if avail == 0 || avail > self.size {
                break;
            }
            let off = (cons & self.mask()) as usize;
            let hdr = self
                .block
                .atomic_u32(DATA_OFF + off)
                .load(Ordering::Acquire);
            if hdr & BPF_RINGBUF_BUSY_BIT != 0 {
                break;
            }
            let len = u64::from(hdr & !(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT));
            let total = round8(len + BPF_RINGBUF_HDR_SZ);
            if total > avail || off as u64 + total > self.size {
                return Err(MapError::CorruptRecord { pos: cons });
            }
            if hdr & BPF_RINGBUF_DISCARD_BIT == 0 {
                buf.resize(len as usize, 0);
                self.block.read(DATA_OFF + off + HDR, &mut buf);
                f(&buf);
                count += 1;
            }
            cons = cons.wrapping_add(total);
            // Release: producers that see the new position no longer need the record's bytes.
            cons_word.store(cons, Ordering::Release);
        }
        Ok(count)
    }

    /// The data area, where programs write reserved records.
    pub(crate) fn region(&self) -> crate::MemRegion {
        crate::MemRegion {
            addr: self.block.addr() + DATA_OFF,
            len: self.size as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::test_map;
    use crate::{Map, MapType};

    fn ring(size: u32) -> Map {
        test_map(MapDef::new(MapType::RingBuf, 0, 0, size))
    }

    fn drain(m: &Map) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        m.ringbuf_consume(&mut |r: &[u8]| got.push(r.to_vec()))
            .unwrap();
        got
    }

    #[test]
    fn records_come_out_in_order() {
        let m = ring(4096);
        for n in 0..10u8 {
            assert_eq!(m.ringbuf_output(&vec![n; usize::from(n) + 1], 0), Ok(()));
        }
        let got = drain(&m);
        assert_eq!(got.len(), 10);
        for (n, r) in got.iter().enumerate() {
            assert_eq!(r, &vec![n as u8; n + 1]);
        }
        assert!(drain(&m).is_empty());
        assert_eq!(m.ringbuf_query(BPF_RB_AVAIL_DATA), 0);
    }

    #[test]
    fn query_reports_positions() {
        let m = ring(4096);
        assert_eq!(m.ringbuf_query(BPF_RB_RING_SIZE), 4096);
        m.ringbuf_output(&[1; 5], BPF_RB_NO_WAKEUP).unwrap();
        m.ringbuf_output(&[1; 16], BPF_RB_FORCE_WAKEUP).unwrap();
        // 8 + 5 rounds to 16, 8 + 16 is 24.
        assert_eq!(m.ringbuf_query(BPF_RB_PROD_POS), 40);
        assert_eq!(m.ringbuf_query(BPF_RB_AVAIL_DATA), 40);
        assert_eq!(m.ringbuf_query(BPF_RB_CONS_POS), 0);
        assert_eq!(m.len(), 40);
        assert_eq!(drain(&m).len(), 2);
        assert_eq!(m.ringbuf_query(BPF_RB_CONS_POS), 40);
        assert_eq!(m.ringbuf_query(BPF_RB_AVAIL_DATA), 0);
        assert_eq!(m.ringbuf_query(99), 0);
    }

    #[test]
    fn discarded_records_are_skipped_and_busy_ones_block() {
        let m = ring(4096);
        let a = m.ringbuf_reserve(8, 0).unwrap();
        let b = m.ringbuf_reserve(8, 0).unwrap();
        let c = m.ringbuf_reserve(8, 0).unwrap();
        assert_ne!(a, b);
        // Nothing is committed yet.
        assert!(drain(&m).is_empty());
        // Committing out of order: the consumer stops at the first busy record.
        m.ringbuf_submit(c.as_ptr(), 0).unwrap();
        m.ringbuf_discard(b.as_ptr(), 0).unwrap();
        assert!(drain(&m).is_empty());
        m.ringbuf_submit(a.as_ptr(), 0).unwrap();
        let got = drain(&m);
        assert_eq!(
            got,
            vec![vec![0; 8], vec![0; 8]],
            "a and c, not the discarded b"
        );
    }

    #[test]
    fn full_ring_refuses_records() {
        let m = ring(4096);
        // 4096 - 8 bytes at most can be in use: 255 records of 16 bytes.
        let mut n = 0;
        while m.ringbuf_output(&[7; 8], 0).is_ok() {
            n += 1;
        }
        assert_eq!(n, 255);
        assert_eq!(m.ringbuf_output(&[7; 8], 0), Err(MapError::RingFull));
        assert_eq!(
            m.ringbuf_output(&[7; 8], 0).map_err(|e| e.errno()),
            Err(-11)
        );
        assert!(m.ringbuf_reserve(1, 0).is_none());
        assert_eq!(drain(&m).len(), 255);
        assert!(m.ringbuf_reserve(1, 0).is_some());
        // Too large for the ring, or bad flags.
        assert!(m.ringbuf_reserve(4096, 0).is_none());
        assert!(m.ringbuf_reserve(u64::MAX, 0).is_none());
        assert!(m.ringbuf_reserve(8, 1).is_none());
        assert_eq!(m.ringbuf_output(&[0; 4096], 0), Err(MapError::RingFull));
        assert_eq!(
            m.ringbuf_output(&[0; 8], 4),
            Err(MapError::InvalidFlags { flags: 4 })
        );
    }

    #[test]
    fn records_wrap_with_padding() {
        let m = ring(4096);
        let mut next = 0u32;
        let mut expect = 0u32;
        for round in 0..200 {
            // Sizes that do not divide the ring, so records regularly meet its end.
            let len = 100 + (round * 37) % 900;
            while m.ringbuf_output(&vec![next as u8; len], 0).is_ok() {
                next += 1;
            }
            for r in drain(&m) {
                assert!(r.iter().all(|&b| b == expect as u8));
                expect += 1;
            }
            assert_eq!(expect, next);
        }
        assert!(m.ringbuf_query(BPF_RB_CONS_POS) > 100 * 4096);
        assert_eq!(
            m.ringbuf_query(BPF_RB_PROD_POS),
            m.ringbuf_query(BPF_RB_CONS_POS)
        );
    }

    #[test]
    fn bad_pointers_are_refused() {
        let m = ring(4096);
        let a = m.ringbuf_reserve(16, 0).unwrap();
        let addr = a.as_ptr() as usize;
        let bad = |p: *mut u8| Err(MapError::InvalidPointer { addr: p as usize });
        assert_eq!(
            m.ringbuf_submit(std::ptr::null_mut(), 0),
            bad(std::ptr::null_mut())
        );
        assert_eq!(
            m.ringbuf_submit(a.as_ptr().wrapping_add(8), 0),
            bad(a.as_ptr().wrapping_add(8))
        );
        assert_eq!(
            m.ringbuf_submit(a.as_ptr().wrapping_add(3), 0),
            bad(a.as_ptr().wrapping_add(3))
        );
        assert_eq!(
            m.ringbuf_submit(a.as_ptr().wrapping_add(1 << 20), 0)
                .map_err(|e| e.errno()),
            Err(-22)
        );
        assert_eq!(m.ringbuf_submit(a.as_ptr(), 0), Ok(()));
        assert_eq!(
            m.ringbuf_submit(a.as_ptr(), 0),
            Err(MapError::InvalidPointer { addr })
        );
        assert_eq!(
            m.ringbuf_discard(a.as_ptr(), 0),
            Err(MapError::InvalidPointer { addr })
        );
        assert!(m.value_regions()[0].contains(addr, 16));
    }

    #[test]
    fn one_consumer_at_a_time() {
        let m = ring(4096);
        m.ringbuf_output(&[1], 0).unwrap();
        m.ringbuf_output(&[2], 0).unwrap();
        let mut inner = None;
        let n = m
            .ringbuf_consume(&mut |_: &[u8]| {
                inner.get_or_insert_with(|| m.ringbuf_consume(&mut |_: &[u8]| {}));
            })
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(inner, Some(Err(MapError::Busy)));
        assert_eq!(MapError::Busy.errno(), -16);
    }

    #[test]
    fn other_operations_are_not_supported() {
        let m = ring(4096);
        let ns = |op| {
            Some(MapError::NotSupported {
                map_type: MapType::RingBuf,
                op,
            })
        };
        assert_eq!(m.lookup(&[]).err(), ns("lookup"));
        assert_eq!(m.update(&[], &[], 0).err(), ns("update"));
        assert_eq!(m.delete(&[]).err(), ns("delete"));
        assert_eq!(m.next_key(None).err(), ns("next_key"));
        assert_eq!(m.push(&[], 0).err(), ns("push"));
        assert_eq!(m.lookup(&[]).map_err(|e| e.errno()), Err(-524));
        assert!(m.lookup_ptr(&[], 0).is_none());
        assert_eq!(m.host_value_size(), 0);
    }

    #[test]
    fn producers_on_many_threads() {
        let m = ring(1 << 14);
        const PER_THREAD: u32 = 5000;
        let mut last = [None::<u32>; 3];
        let mut count = 0;
        std::thread::scope(|s| {
            for t in 0..3u32 {
                let m = &m;
                s.spawn(move || {
                    for seq in 0..PER_THREAD {
                        let mut rec = [0u8; 12];
                        rec[..4].copy_from_slice(&t.to_ne_bytes());
                        rec[4..8].copy_from_slice(&seq.to_ne_bytes());
                        rec[8..].copy_from_slice(&(t ^ seq).to_ne_bytes());
                        // Half via reserve and submit, half via output.
                        loop {
                            let ok = if seq % 2 == 0 {
                                m.ringbuf_output(&rec, 0).is_ok()
                            } else if let Some(p) = m.ringbuf_reserve(12, 0) {
                                let ring = m.kind_for_tests().expect("a ring buffer");
                                let off = p.as_ptr() as usize - ring.block.addr();
                                ring.block.write(off, &rec);
                                m.ringbuf_submit(p.as_ptr(), 0).unwrap();
                                true
                            } else {
                                false
                            };
                            if ok {
                                break;
                            }
                            std::thread::yield_now();
                        }
                    }
                });
            }
            while count < 3 * PER_THREAD {
                m.ringbuf_consume(&mut |r: &[u8]| {
                    let word = |i: usize| u32::from_ne_bytes(r[i..i + 4].try_into().unwrap());
                    let (t, seq, check) = (word(0), word(4), word(8));
                    assert_eq!(check, t ^ seq);
                    let prev = &mut last[t as usize];
                    assert_eq!(seq, prev.map_or(0, |p| p + 1), "thread {t} out of order");
                    *prev = Some(seq);
                    count += 1;
                })
                .unwrap();
                std::thread::yield_now();
            }
        });
        assert_eq!(last, [Some(PER_THREAD - 1); 3]);
    }
}
