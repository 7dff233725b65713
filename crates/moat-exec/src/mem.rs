//! The memory a running program may touch, and the only place where the interpreter dereferences
//! program-computed addresses.
//!
//! A [`MemoryMap`] lists regions (the context buffer, the active stack frames, memory of maps and
//! helpers). Every load and store is checked against it before the access; the unsafe reads and writes
//! below are sound because a region is only ever added for memory that stays valid and exclusively
//! available to the program for the whole run (see [`MemoryMap::add_raw`]).

use crate::{MAX_CALL_DEPTH, STACK_FRAME_SIZE};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Bytes of one run's stack: [`MAX_CALL_DEPTH`] frames of [`STACK_FRAME_SIZE`] bytes.
pub const STACK_BYTES: u64 = (MAX_CALL_DEPTH * STACK_FRAME_SIZE) as u64;

/// State shared by every frame, callback and tail call of one run, whatever engine runs them: the
/// instruction budget left, the tail calls taken and where the run's stack is.
#[derive(Debug)]
pub struct RunState {
    /// Instructions left.
    pub(crate) budget: u64,
    /// Tail calls taken so far.
    pub(crate) tail_calls: u32,
    /// One past the highest stack address.
    pub(crate) stack_top: u64,
    /// Opaque data of the engine that started the run (the JIT's run context), 0 for the interpreter.
    engine_data: u64,
}

impl RunState {
    /// The state of a run whose stack is the [`STACK_BYTES`] bytes below `stack_top`.
    ///
    /// # Safety
    /// `[stack_top - STACK_BYTES, stack_top)` must be valid for reads and writes, and accessed only by
    /// the run (through [`MemoryMap`]s whose stack window comes from this state), until the run ends and
    /// every such map has left the stack ([`MemoryMap::leave_stack`]).
    pub unsafe fn new(budget: u64, stack_top: u64) -> RunState {
        RunState {
            budget,
            tail_calls: 0,
            stack_top,
            engine_data: 0,
        }
    }

    /// Instructions left in the run's budget.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Sets the instructions left.
    pub fn set_budget(&mut self, budget: u64) {
        self.budget = budget;
    }

    /// One past the highest address of the run's stack.
    pub fn stack_top(&self) -> u64 {
        self.stack_top
    }

    /// Tail calls taken so far in the run.
    pub fn tail_calls(&self) -> u32 {
        self.tail_calls
    }

    /// The data the engine that started the run attached to it (0 if none).
    pub fn engine_data(&self) -> u64 {
        self.engine_data
    }

    /// Attaches engine data to the run.
    ///
    /// # Safety
    /// Engines trust this value to describe their own per-run context: only the engine that created the
    /// state may set it, to a value that stays valid for the run.
    pub unsafe fn set_engine_data(&mut self, data: u64) {
        self.engine_data = data;
    }
}

/// Runs `f` with a fresh zeroed stack of [`STACK_BYTES`] (on the native stack) and the run state
/// describing it; afterwards `mem` no longer reaches the stack.
pub fn with_stack<R>(
    budget: u64,
    mem: &mut MemoryMap,
    f: impl FnOnce(&mut MemoryMap, &mut RunState) -> R,
) -> R {
    let mut stack = [0u64; MAX_CALL_DEPTH * STACK_FRAME_SIZE / 8];
    let top = stack.as_mut_ptr() as u64 + STACK_BYTES;
    // SAFETY: `stack` is a local array of STACK_BYTES bytes, alive until this function returns; only
    // the run accesses it (through `mem`), and `mem` leaves it before we return.
    let mut state = unsafe { RunState::new(budget, top) };
    let result = f(mem, &mut state);
    mem.leave_stack();
    result
}

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

/// Read-only memory in which atomics still apply in place, through a writable alias (the values
/// of a persistent pool's map): in each `stride`-byte slot from `start`, the `value_len` bytes at
/// `value_off` may be changed by an atomic read-modify-write, at the same offset from `alias`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtomicAlias {
    /// First address of the read-only memory.
    pub start: u64,
    /// Its length.
    pub len: u64,
    /// The address of `start`'s byte in the writable alias.
    pub alias: u64,
    /// Slot size (non-zero).
    pub stride: u64,
    /// Offset of the changeable bytes in a slot.
    pub value_off: u64,
    /// Their length.
    pub value_len: u64,
}

impl AtomicAlias {
    /// The alias address of the `len` bytes at `addr`, if they lie in one slot's changeable bytes.
    #[inline]
    fn translate(&self, addr: u64, len: u64) -> Option<u64> {
        let rel = addr.checked_sub(self.start)?;
        if rel >= self.len || self.stride == 0 {
            return None;
        }
        let in_slot = (rel % self.stride).checked_sub(self.value_off)?;
        (in_slot.checked_add(len)? <= self.value_len).then_some(self.alias + rel)
    }
}

/// Where an address lies relative to a run's memory: what run-time errors report instead of the
/// address itself, which would tell a program (or whoever reads its errors) where the host's memory
/// is and so help defeat address-space layout randomisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locus {
    /// Relative to the top of the run's stack (`r10` of the main function).
    Stack {
        /// Signed distance from the stack top.
        off: i64,
    },
    /// Relative to the start of the run's memory region number `index` (in the order the run's
    /// memory map lists them: its input first, then map storage, then helper memory).
    Region {
        /// The region's position in the run's memory map.
        index: usize,
        /// Signed distance from the region's start.
        off: i64,
    },
    /// More than [`Locus::NEAR`] bytes away from the stack and from every region.
    Elsewhere,
}

impl Locus {
    /// How far from the stack or a region an address may lie to be described relative to it.
    pub const NEAR: u64 = 1 << 20;
}

impl std::fmt::Display for Locus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Locus::Stack { off } => write!(f, "stack top{off:+}"),
            Locus::Region { index, off } => write!(f, "memory region #{index}{off:+}"),
            Locus::Elsewhere => write!(f, "an address far from the program's memory"),
        }
    }
}

thread_local! {
    /// A region list a dropped [`MemoryMap`] left for the thread's next one.
    static SPARE_REGIONS: std::cell::Cell<Vec<Region>> = const { std::cell::Cell::new(Vec::new()) };
}

impl Drop for MemoryMap {
    fn drop(&mut self) {
        let list = std::mem::take(&mut self.regions);
        if list.capacity() > 0 && list.capacity() <= 64 {
            // During thread teardown the slot may be gone: the list is then simply freed.
            let _ = SPARE_REGIONS.try_with(|s| s.set(list));
        }
    }
}

/// The regions reachable by one run. The stack is tracked separately: only the frames of active calls
/// are reachable, and that window moves with every call and return.
#[derive(Debug, Default)]
pub struct MemoryMap {
    regions: Vec<Region>,
    aliases: Option<std::sync::Arc<[AtomicAlias]>>,
    stack_lo: u64,
    stack_hi: u64,
}

impl MemoryMap {
    /// An empty map.
    pub fn new() -> MemoryMap {
        MemoryMap::default()
    }

    /// An empty map with room for `regions` regions. The list is the thread's spare one where
    /// there is one (a map gives its list back when dropped), so a run allocates nothing.
    pub fn with_capacity(regions: usize) -> MemoryMap {
        let mut list = SPARE_REGIONS
            .try_with(std::cell::Cell::take)
            .unwrap_or_default();
        list.clear();
        list.reserve(regions);
        MemoryMap {
            regions: list,
            aliases: None,
            stack_lo: 0,
            stack_hi: 0,
        }
    }

    /// Adds the memory of `buf` as a region. The borrow is the caller's promise that the memory stays
    /// valid; [`crate::HelperCtx::with_region`] keeps the borrow alive while the region is listed.
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

    /// Replaces region number `index` (in the order they were added); `false` if there is none.
    /// What a runtime that keeps a map across runs uses to give the next run its own buffers.
    ///
    /// # Safety
    /// As [`MemoryMap::add_raw`], for the new region.
    pub unsafe fn set_raw(&mut self, index: usize, region: Region) -> bool {
        match self.regions.get_mut(index) {
            Some(r) => {
                *r = region;
                true
            }
            None => false,
        }
    }

    /// Keeps the first `n` regions only (those a run added after them are dropped).
    pub fn truncate(&mut self, n: usize) {
        self.regions.truncate(n);
    }

    /// Sets the read-only memory in which atomics act in place through writable aliases.
    ///
    /// # Safety
    /// As [`Linked::add_atomic_alias`](crate::Linked::add_atomic_alias): every alias must stay a
    /// writable mapping of its read-only memory while the map is used.
    pub unsafe fn set_atomic_aliases(&mut self, aliases: Option<std::sync::Arc<[AtomicAlias]>>) {
        self.aliases = aliases;
    }

    /// Runs `f` with a map of `buffers` (in order: the first is the packet of legacy `ldabs`/`ldind`
    /// loads) and the static regions of `linked`, the memory of one run besides its stack.
    pub fn with_buffers<R>(
        buffers: &mut [crate::Buffer<'_>],
        linked: &crate::Linked,
        f: impl FnOnce(&mut MemoryMap) -> R,
    ) -> R {
        // Room for helpers' temporary regions (`with_region`) too.
        let mut mem = MemoryMap::with_capacity(buffers.len() + linked.static_regions().len() + 4);
        for b in buffers.iter_mut() {
            mem.add_slice(b.bytes, b.writable);
        }
        for r in linked.static_regions() {
            // SAFETY: `Linked::add_static_region`'s contract: the region lives while `linked` does,
            // which is borrowed for this whole call.
            unsafe { mem.add_raw(*r) };
        }
        // SAFETY: `Linked::add_atomic_alias`'s contract, as for the static regions above.
        unsafe { mem.set_atomic_aliases(linked.atomic_aliases()) };
        // The buffers are mutably borrowed until `f` returns; the map does not outlive the call.
        f(&mut mem)
    }

    /// Removes every region starting at `start` (e.g. a released ring buffer reservation).
    pub fn remove(&mut self, start: u64) {
        self.regions.retain(|r| r.start != start);
    }

    /// The regions, stack excluded.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Makes the frames of the run's stack from the one whose top is `frame_top` up to the stack's top
    /// accessible (the live frames: the current one and its callers'). A `frame_top` outside the stack of
    /// `state` makes no stack accessible at all.
    pub fn enter_frame(&mut self, frame_top: u64, state: &RunState) {
        let base = state.stack_top - STACK_BYTES;
        match frame_top.checked_sub(STACK_FRAME_SIZE as u64) {
            Some(lo) if lo >= base && frame_top <= state.stack_top => {
                self.stack_lo = lo;
                self.stack_hi = state.stack_top;
            }
            _ => self.leave_stack(),
        }
    }

    /// Makes no stack accessible (the run's stack is gone).
    pub fn leave_stack(&mut self) {
        self.stack_lo = 0;
        self.stack_hi = 0;
    }

    /// Where `addr` lies relative to the run's stack (while a frame is entered) and regions: the
    /// nearest of them, if any is within [`Locus::NEAR`] bytes.
    pub fn locate(&self, addr: u64) -> Locus {
        let distance = |start: u64, end: u64| {
            if addr < start {
                start - addr
            } else {
                addr.saturating_sub(end)
            }
        };
        let offset = |from: u64| addr.wrapping_sub(from).cast_signed();
        let mut best = (Locus::NEAR + 1, Locus::Elsewhere);
        if self.stack_hi != 0 {
            let d = distance(self.stack_hi - STACK_BYTES, self.stack_hi);
            best = (
                d,
                Locus::Stack {
                    off: offset(self.stack_hi),
                },
            );
        }
        for (index, r) in self.regions.iter().enumerate() {
            let d = distance(r.start, r.start.saturating_add(r.len));
            if d < best.0 {
                best = (
                    d,
                    Locus::Region {
                        index,
                        off: offset(r.start),
                    },
                );
            }
        }
        if best.0 > Locus::NEAR {
            Locus::Elsewhere
        } else {
            best.1
        }
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
    pub fn load<const N: usize>(&self, addr: u64) -> Option<[u8; N]> {
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
    pub fn store<const N: usize>(&self, addr: u64, bytes: [u8; N]) -> Option<()> {
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

    /// Copies `out.len()` bytes of checked program memory at `addr` into `out`.
    pub fn read_into(&self, addr: u64, out: &mut [u8]) -> Option<()> {
        if !self.check(addr, out.len() as u64, false) {
            return None;
        }
        // SAFETY: `check` proved `[addr, addr + out.len())` readable for the run; `out` is a Rust
        // slice, which cannot overlap program memory mutably borrowed by the map.
        unsafe { std::ptr::copy(addr as *const u8, out.as_mut_ptr(), out.len()) };
        Some(())
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

    /// Where an atomic read-modify-write of the `len` bytes at `addr` (aligned to `len`) acts: `addr`
    /// itself in writable memory or the live stack, the alias address in read-only memory with an
    /// [`AtomicAlias`]; `None` if an atomic may not touch those bytes.
    #[inline]
    pub fn atomic_address(&self, addr: u64, len: u64) -> Option<u64> {
        if !addr.is_multiple_of(len) {
            return None;
        }
        if self.check(addr, len, true) {
            return Some(addr);
        }
        self.aliases
            .as_deref()?
            .iter()
            .find_map(|a| a.translate(addr, len))
    }

    /// Atomically applies `f` to the 64-bit word at `addr` (8-aligned, checked) and returns the old value.
    pub fn atomic64(&self, addr: u64, f: impl Fn(&AtomicU64) -> u64) -> Option<u64> {
        let addr = self.atomic_address(addr, 8)?;
        // SAFETY: the word is inside a writable region valid for the run (or the writable alias of
        // read-only map values, `Linked::add_atomic_alias`'s contract) and 8-aligned, as AtomicU64
        // requires; all concurrent accesses to map memory go through atomics or plain racy-free helpers.
        let cell = unsafe { AtomicU64::from_ptr(addr as *mut u64) };
        Some(f(cell))
    }

    /// Atomically applies `f` to the 32-bit word at `addr` (4-aligned, checked) and returns the old value.
    pub fn atomic32(&self, addr: u64, f: impl Fn(&AtomicU32) -> u32) -> Option<u32> {
        let addr = self.atomic_address(addr, 4)?;
        // SAFETY: as in `atomic64`, with the 4-byte alignment AtomicU32 requires.
        let cell = unsafe { AtomicU32::from_ptr(addr as *mut u32) };
        Some(f(cell))
    }
}

/// The memory ordering of eBPF atomics: sequentially consistent, as the kernel's JITs emit `lock` ops.
pub const ORDER: Ordering = Ordering::SeqCst;

#[cfg(test)]
mod tests {
    use super::*;

    /// Run-time errors describe addresses relative to the run's memory, never absolutely (issue 21).
    #[test]
    fn addresses_are_located_relative_to_the_stack_and_regions() {
        // On the heap, far from the stack (both on one native stack, the nearer would win).
        let mut input = vec![0u8; 64];
        let mut mem = MemoryMap::new();
        mem.add_slice(&mut input, true);
        let start = input.as_ptr() as u64;
        with_stack(1000, &mut mem, |mem, state| {
            let top = state.stack_top();
            mem.enter_frame(top, state);
            assert_eq!(mem.locate(top + 4096), Locus::Stack { off: 4096 });
            assert_eq!(mem.locate(top - 8), Locus::Stack { off: -8 });
            assert_eq!(mem.locate(start + 70), Locus::Region { index: 0, off: 70 });
            assert_eq!(mem.locate(start - 8), Locus::Region { index: 0, off: -8 });
            assert_eq!(mem.locate(0x40), Locus::Elsewhere);
            assert_eq!(mem.locate(u64::MAX), Locus::Elsewhere);
            let shown = format!("{}", mem.locate(top + 4096));
            assert_eq!(shown, "stack top+4096");
        });
        assert_eq!(mem.locate(start + 1), Locus::Region { index: 0, off: 1 });
    }
}
