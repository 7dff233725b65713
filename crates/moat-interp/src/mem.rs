//! The memory a running program may touch, and the only place where the interpreter dereferences
//! program-computed addresses.
//!
//! A [`MemoryMap`] lists regions (the context buffer, the active stack frames, memory of maps and
//! helpers). Every load and store is checked against it before the access; the unsafe reads and writes
//! below are sound because a region is only ever added for memory that stays valid and exclusively
//! available to the program for the whole run (see [`MemoryMap::add_raw`]).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// One contiguous range of host memory a program may access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// First address.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// Whether stores are allowed.
    pub writable: bool,
}

impl Region {
    #[inline]
    fn contains(&self, addr: u64, len: u64) -> bool {
        let Some(off) = addr.checked_sub(self.start) else {
            return false;
        };
        off <= self.len && len <= self.len - off
    }
}

/// The regions reachable by one run. The stack is tracked separately: only the frames of active calls
/// are reachable, and that window moves with every call and return.
#[derive(Debug, Default)]
pub struct MemoryMap {
    regions: Vec<Region>,
    stack_lo: u64,
    stack_hi: u64,
}

impl MemoryMap {
    /// An empty map.
    pub fn new() -> MemoryMap {
        MemoryMap::default()
    }

    /// Adds the memory of `buf` as a region. The borrow is the caller's promise that the memory stays
    /// valid; [`crate::Interpreter::run`] keeps the borrow alive for the whole run.
    pub(crate) fn add_slice(&mut self, buf: &mut [u8], writable: bool) {
        self.regions.push(Region {
            start: buf.as_mut_ptr() as u64,
            len: buf.len() as u64,
            writable,
        });
    }

    /// Adds a raw region.
    ///
    /// # Safety
    /// `[start, start + len)` must be valid for reads (and writes, when `writable`) for as long as any
    /// program runs with this map, and must not be accessed through Rust references meanwhile except by
    /// helpers that synchronise with the program (atomics, locks).
    pub unsafe fn add_raw(&mut self, region: Region) {
        self.regions.push(region);
    }

    /// Removes every region starting at `start` (e.g. a released ring buffer reservation).
    pub fn remove(&mut self, start: u64) {
        self.regions.retain(|r| r.start != start);
    }

    /// The regions, stack excluded.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    pub(crate) fn set_stack_window(&mut self, lo: u64, hi: u64) {
        self.stack_lo = lo;
        self.stack_hi = hi;
    }

    /// Whether `len` bytes at `addr` are accessible (for writing when `write`).
    #[inline]
    pub fn check(&self, addr: u64, len: u64, write: bool) -> bool {
        if addr >= self.stack_lo && addr <= self.stack_hi && len <= self.stack_hi - addr {
            return true;
        }
        self.regions
            .iter()
            .any(|r| r.contains(addr, len) && (r.writable || !write))
    }

    /// Reads `N` bytes at a checked address.
    #[inline]
    pub(crate) fn load<const N: usize>(&self, addr: u64) -> Option<[u8; N]> {
        if !self.check(addr, N as u64, false) {
            return None;
        }
        // SAFETY: `check` proved that the N bytes lie inside one region (or the live stack window), which
        // is valid for reads for the whole run (the contract of `add_slice`/`add_raw`); unaligned reads of
        // plain bytes are allowed.
        Some(unsafe { std::ptr::read_unaligned(addr as *const [u8; N]) })
    }

    /// Writes `N` bytes at a checked address.
    #[inline]
    pub(crate) fn store<const N: usize>(&self, addr: u64, bytes: [u8; N]) -> Option<()> {
        if !self.check(addr, N as u64, true) {
            return None;
        }
        // SAFETY: `check` proved that the N bytes lie inside one writable region (or the live stack
        // window), valid for writes for the whole run.
        unsafe { std::ptr::write_unaligned(addr as *mut [u8; N], bytes) };
        Some(())
    }

    /// Copies `len` checked bytes out of program memory.
    pub fn read_bytes(&self, addr: u64, len: usize) -> Option<Vec<u8>> {
        if !self.check(addr, len as u64, false) {
            return None;
        }
        // SAFETY: `check` proved `[addr, addr + len)` readable for the run; we copy it out at once.
        Some(unsafe { std::slice::from_raw_parts(addr as *const u8, len) }.to_vec())
    }

    /// Copies bytes into checked, writable program memory.
    pub fn write_bytes(&self, addr: u64, data: &[u8]) -> Option<()> {
        if !self.check(addr, data.len() as u64, true) {
            return None;
        }
        // SAFETY: `check` proved `[addr, addr + data.len())` writable for the run; `data` is a Rust
        // slice, which cannot overlap program memory mutably borrowed by the map.
        unsafe { std::ptr::copy(data.as_ptr(), addr as *mut u8, data.len()) };
        Some(())
    }

    /// Atomically applies `f` to the 64-bit word at `addr` (8-aligned, checked) and returns the old value.
    pub(crate) fn atomic64(&self, addr: u64, f: impl Fn(&AtomicU64) -> u64) -> Option<u64> {
        if !addr.is_multiple_of(8) || !self.check(addr, 8, true) {
            return None;
        }
        // SAFETY: the word is inside a writable region valid for the run and 8-aligned, as AtomicU64
        // requires; all concurrent accesses to map memory go through atomics or plain racy-free helpers.
        let cell = unsafe { AtomicU64::from_ptr(addr as *mut u64) };
        Some(f(cell))
    }

    /// Atomically applies `f` to the 32-bit word at `addr` (4-aligned, checked) and returns the old value.
    pub(crate) fn atomic32(&self, addr: u64, f: impl Fn(&AtomicU32) -> u32) -> Option<u32> {
        if !addr.is_multiple_of(4) || !self.check(addr, 4, true) {
            return None;
        }
        // SAFETY: as in `atomic64`, with the 4-byte alignment AtomicU32 requires.
        let cell = unsafe { AtomicU32::from_ptr(addr as *mut u32) };
        Some(f(cell))
    }
}

/// The memory ordering of eBPF atomics: sequentially consistent, as the kernel's JITs emit `lock` ops.
pub(crate) const ORDER: Ordering = Ordering::SeqCst;
