//! Raw map storage: the [`MapMemory`] allocation trait, its heap implementation [`HeapMemory`], and
//! `Block`, the crate-private owner of one allocation.
//!
//! With `shm` (shared-memory mappings), this is the only module of the crate that contains `unsafe`
//! code. Every other module reaches map memory through `Block`'s safe, bounds-checked methods.
//!
//! Values are shared with BPF programs, which read and write them through raw pointers while host threads
//! copy them. So that such overlapping host accesses are never undefined behaviour on the Rust side, every
//! host copy goes through relaxed atomic loads and stores (64-bit words where aligned, single bytes
//! elsewhere). Concurrent accesses may still observe torn values, exactly as in the kernel, where map
//! values are not protected by any lock either.
#![expect(unsafe_code, reason = "the one module that owns raw map memory")]

use crate::error::MapError;
use std::alloc::Layout;
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

/// Where maps get their storage from.
///
/// All memory that holds map values (and ring-buffer pages) is allocated through this trait, so that a
/// runtime can place it in a persistent shared pool or in an isolation domain's region. Index structures
/// (hash tables of keys, free lists) live on the ordinary Rust heap and are never visible to programs.
///
/// # Safety
///
/// Maps dereference the memory this trait returns, so an implementation must guarantee that a
/// successful [`alloc`](MapMemory::alloc):
///
/// - returns a pointer to `size` bytes that are readable and writable, zero-filled (or, where
///   [`adopts`](MapMemory::adopts) says so, holding another process's map state), aligned to at
///   least `align`, and not part of any other live allocation;
/// - keeps that memory valid and at the same address until [`free`](MapMemory::free) is called for it;
/// - is safe to use from any thread (hence the `Send + Sync` bound);
///
/// and so must a successful [`alloc_beside`](MapMemory::alloc_beside).
pub unsafe trait MapMemory: Send + Sync {
    /// Allocates `size` zeroed bytes aligned to `align` (a power of two). `size` is never zero.
    ///
    /// Returns [`MapError::OutOfMemory`] when the memory cannot be provided.
    fn alloc(&self, size: usize, align: usize) -> Result<NonNull<u8>, MapError>;

    /// Returns memory obtained from [`alloc`](MapMemory::alloc).
    ///
    /// # Safety
    ///
    /// `ptr` must come from a call `self.alloc(size, align)` with the same `size` and `align`, and must
    /// not have been freed already. No reference or pointer into the memory may be used afterwards.
    unsafe fn free(&self, ptr: NonNull<u8>, size: usize, align: usize);

    /// Allocates memory for what a map keeps beside its values and programs never address (a
    /// shared hash map's key table), with the same guarantees as [`alloc`](MapMemory::alloc), and
    /// freed with [`free`](MapMemory::free) likewise. By default the same as `alloc`; memory that
    /// confines programs to a region may place it outside.
    fn alloc_beside(&self, size: usize, align: usize) -> Result<NonNull<u8>, MapError> {
        self.alloc(size, align)
    }

    /// Whether other processes read this memory while the map lives (as
    /// [`SharedMemory`](crate::SharedMemory) does). Hash maps then also keep a table of their keys in
    /// it, which a reader scans without the private index ([`SharedMap`](crate::SharedMap)).
    fn is_shared(&self) -> bool {
        false
    }

    /// Whether allocations hold the state of a map another process made (a shared map taken over
    /// by a second writer, [`SharedMemory::adopting`](crate::SharedMemory::adopting)) instead of
    /// zeroes, in the order that map made them: a map made here reads its elements back.
    fn adopts(&self) -> bool {
        false
    }
}

/// [`MapMemory`] on the process heap ([`std::alloc::alloc_zeroed`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct HeapMemory;

impl HeapMemory {
    /// A shared handle, ready for [`Map::create_in`](crate::Map::create_in).
    pub fn shared() -> Arc<dyn MapMemory> {
        Arc::new(HeapMemory)
    }
}

// SAFETY: `alloc_zeroed` with a valid non-zero-sized layout returns zeroed, suitably aligned memory that
// stays valid until `dealloc` with the same layout, which `free` performs; the global allocator is
// thread-safe.
unsafe impl MapMemory for HeapMemory {
    fn alloc(&self, size: usize, align: usize) -> Result<NonNull<u8>, MapError> {
        let layout =
            Layout::from_size_align(size, align).map_err(|_| MapError::OutOfMemory { size })?;
        if layout.size() == 0 {
            return Err(MapError::OutOfMemory { size });
        }
        // SAFETY: the layout has a non-zero size, checked just above.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        NonNull::new(ptr).ok_or(MapError::OutOfMemory { size })
    }

    unsafe fn free(&self, ptr: NonNull<u8>, size: usize, align: usize) {
        // Cannot fail: the same layout was accepted by `alloc`.
        if let Ok(layout) = Layout::from_size_align(size, align) {
            // SAFETY: the caller guarantees `ptr` came from `alloc(size, align)`, i.e. from
            // `alloc_zeroed(layout)` with this same layout, and is freed only once.
            unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) };
        }
    }
}

/// The minimum alignment of every block, so that values can be accessed as 64-bit words.
pub(crate) const MIN_ALIGN: usize = 8;

/// One allocation from a [`MapMemory`], freed on drop.
///
/// Its address never changes. All accessors take byte offsets into the block and check them; an
/// out-of-range offset is a bug in this crate (inputs are validated before they reach a block), so it
/// panics rather than touching memory outside the block.
pub(crate) struct Block {
    ptr: NonNull<u8>,
    len: usize,
    align: usize,
    owner: Owner,
}

/// Who returns a block's memory.
enum Owner {
    /// Allocated from a [`MapMemory`], freed on drop.
    Memory(Arc<dyn MapMemory>),
    /// A reader's view of another process's block (a mapped file); the mapping outlives the block.
    Mapping {
        /// Held, never read: keeps the mapping alive.
        _keep: Arc<dyn Send + Sync>,
    },
}

// SAFETY: a `Block` owns its memory exclusively (the `MapMemory` contract says it is not part of any
// other allocation and may be used from any thread), and all shared access goes through atomics.
unsafe impl Send for Block {}
// SAFETY: every method taking `&self` accesses the memory through atomic operations only, so concurrent
// use from several threads is free of data races on the Rust side.
unsafe impl Sync for Block {}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Block")
            .field("addr", &format_args!("{:#x}", self.addr()))
            .field("len", &self.len)
            .finish()
    }
}

impl Block {
    /// Allocates `len` zeroed bytes aligned to `align` (raised to at least [`MIN_ALIGN`]).
    pub(crate) fn new(
        memory: &Arc<dyn MapMemory>,
        len: usize,
        align: usize,
    ) -> Result<Block, MapError> {
        Block::alloc(memory, len, align, false)
    }

    /// [`Block::new`] through [`MapMemory::alloc_beside`]: storage programs never address.
    pub(crate) fn beside(
        memory: &Arc<dyn MapMemory>,
        len: usize,
        align: usize,
    ) -> Result<Block, MapError> {
        Block::alloc(memory, len, align, true)
    }

    fn alloc(
        memory: &Arc<dyn MapMemory>,
        len: usize,
        align: usize,
        beside: bool,
    ) -> Result<Block, MapError> {
        let align = align.max(MIN_ALIGN);
        if len == 0 || !align.is_power_of_two() {
            return Err(MapError::OutOfMemory { size: len });
        }
        let ptr = if beside {
            memory.alloc_beside(len, align)?
        } else {
            memory.alloc(len, align)?
        };
        let block = Block {
            ptr,
            len,
            align,
            owner: Owner::Memory(Arc::clone(memory)),
        };
        if block.addr() & (align - 1) != 0 {
            // A misbehaving implementation: refuse the memory rather than misalign atomics. Dropping
            // `block` returns it.
            return Err(MapError::OutOfMemory { size: len });
        }
        Ok(block)
    }

    /// A view of `len` bytes at `ptr` that `mapping` keeps valid (a reader's mapping of a shared
    /// block); dropping the view frees nothing.
    ///
    /// # Safety
    ///
    /// `ptr..ptr + len` must be readable and writable, 8-byte aligned, stay mapped at that address as
    /// long as `mapping` lives, and be accessed by this process through atomics only.
    pub(crate) unsafe fn view(
        ptr: NonNull<u8>,
        len: usize,
        mapping: Arc<dyn Send + Sync>,
    ) -> Block {
        Block {
            ptr,
            len,
            align: MIN_ALIGN,
            owner: Owner::Mapping { _keep: mapping },
        }
    }

    /// The block's start address.
    pub(crate) fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// The block's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Panics unless `off..off + len` lies inside the block.
    fn check(&self, off: usize, len: usize) {
        let end = off.checked_add(len);
        assert!(
            end.is_some_and(|end| end <= self.len),
            "moat-maps bug: access {off}+{len} outside a block of {} bytes",
            self.len
        );
    }

    /// A raw pointer to byte `off`, which must be inside the block or one past its end.
    pub(crate) fn ptr_at(&self, off: usize) -> NonNull<u8> {
        self.check(off, 0);
        // SAFETY: `off <= self.len`, so the result stays inside the allocation (or one past its end) and
        // is non-null.
        unsafe { self.ptr.add(off) }
    }

    /// The byte at `off` as an atomic.
    fn byte(&self, off: usize) -> &AtomicU8 {
        self.check(off, 1);
        // SAFETY: `off` is in bounds (checked); `AtomicU8` has alignment 1; the memory lives as long as
        // `self`, and all Rust-side accesses to it are atomic.
        unsafe { AtomicU8::from_ptr(self.ptr.as_ptr().add(off)) }
    }

    /// The 64-bit word at `off` (8-byte aligned) as an atomic.
    pub(crate) fn atomic_u64(&self, off: usize) -> &AtomicU64 {
        self.check(off, 8);
        assert!(
            off & 7 == 0,
            "moat-maps bug: unaligned 64-bit access at {off}"
        );
        // SAFETY: `off..off + 8` is in bounds (checked) and, since the block is at least 8-aligned and
        // `off` is a multiple of 8, suitably aligned; the memory lives as long as `self`, and all
        // Rust-side accesses to it are atomic.
        unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(off).cast::<u64>()) }
    }

    /// The 32-bit word at `off` (4-byte aligned) as an atomic.
    pub(crate) fn atomic_u32(&self, off: usize) -> &AtomicU32 {
        self.check(off, 4);
        assert!(
            off & 3 == 0,
            "moat-maps bug: unaligned 32-bit access at {off}"
        );
        // SAFETY: as for `atomic_u64`, with 4-byte size and alignment.
        unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(off).cast::<u32>()) }
    }

    /// Copies `dst.len()` bytes starting at `off` out of the block.
    pub(crate) fn read(&self, off: usize, dst: &mut [u8]) {
        self.check(off, dst.len());
        let mut i = 0;
        let mut rest = dst;
        // Leading bytes up to an 8-byte boundary.
        while (off + i) & 7 != 0 {
            let Some((b, tail)) = rest.split_first_mut() else {
                return;
            };
            *b = self.byte(off + i).load(Ordering::Relaxed);
            rest = tail;
            i += 1;
        }
        let mut words = rest.chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(
                &self
                    .atomic_u64(off + i)
                    .load(Ordering::Relaxed)
                    .to_ne_bytes(),
            );
            i += 8;
        }
        for b in words.into_remainder() {
            *b = self.byte(off + i).load(Ordering::Relaxed);
            i += 1;
        }
    }

    /// Copies `src` into the block starting at `off`.
    pub(crate) fn write(&self, off: usize, src: &[u8]) {
        self.check(off, src.len());
        let mut i = 0;
        let mut rest = src;
        while (off + i) & 7 != 0 {
            let Some((b, tail)) = rest.split_first() else {
                return;
            };
            self.byte(off + i).store(*b, Ordering::Relaxed);
            rest = tail;
            i += 1;
        }
        let words = rest.chunks_exact(8);
        let tail = words.remainder();
        for w in words {
            let mut word = [0u8; 8];
            word.copy_from_slice(w);
            self.atomic_u64(off + i)
                .store(u64::from_ne_bytes(word), Ordering::Relaxed);
            i += 8;
        }
        for b in tail {
            self.byte(off + i).store(*b, Ordering::Relaxed);
            i += 1;
        }
    }

    /// Sets `len` bytes starting at `off` to zero.
    pub(crate) fn zero(&self, off: usize, len: usize) {
        self.check(off, len);
        let mut i = 0;
        while i < len && (off + i) & 7 != 0 {
            self.byte(off + i).store(0, Ordering::Relaxed);
            i += 1;
        }
        while i + 8 <= len {
            self.atomic_u64(off + i).store(0, Ordering::Relaxed);
            i += 8;
        }
        while i < len {
            self.byte(off + i).store(0, Ordering::Relaxed);
            i += 1;
        }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if let Owner::Memory(memory) = &self.owner {
            // SAFETY: `ptr` came from `memory.alloc(self.len, self.align)` in `Block::new` and is
            // freed only here; no reference into the block can outlive `self`. (Raw pointers handed
            // to programs must not be used after the map is dropped, as documented on `Map`.)
            unsafe { memory.free(self.ptr, self.len, self.align) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(len: usize) -> Block {
        Block::new(&HeapMemory::shared(), len, 8).expect("allocates")
    }

    #[test]
    fn starts_zeroed_and_aligned() {
        let b = block(4096);
        assert_eq!(b.addr() % 8, 0);
        let mut buf = vec![1u8; 4096];
        b.read(0, &mut buf);
        assert!(buf.iter().all(|&x| x == 0));
    }

    #[test]
    fn unaligned_copies_round_trip() {
        let b = block(64);
        for off in 0..16 {
            for len in 0..40 {
                let src: Vec<u8> = (0..len)
                    .map(|i| (i as u8).wrapping_mul(7).wrapping_add(off as u8))
                    .collect();
                b.zero(0, 64);
                b.write(off, &src);
                let mut dst = vec![0u8; len];
                b.read(off, &mut dst);
                assert_eq!(dst, src, "off {off} len {len}");
                // Bytes around the copy are untouched.
                let mut all = [0u8; 64];
                b.read(0, &mut all);
                assert!(all[..off].iter().all(|&x| x == 0));
                assert!(all[off + len..].iter().all(|&x| x == 0));
            }
        }
    }

    #[test]
    fn zero_clears_a_range() {
        let b = block(32);
        b.write(0, &[0xff; 32]);
        b.zero(3, 21);
        let mut all = [0u8; 32];
        b.read(0, &mut all);
        assert!(all[..3].iter().all(|&x| x == 0xff));
        assert!(all[3..24].iter().all(|&x| x == 0));
        assert!(all[24..].iter().all(|&x| x == 0xff));
    }

    #[test]
    fn heap_memory_refuses_zero_size_and_bad_alignment() {
        let m = HeapMemory;
        assert!(matches!(m.alloc(0, 8), Err(MapError::OutOfMemory { .. })));
        assert!(matches!(m.alloc(8, 3), Err(MapError::OutOfMemory { .. })));
        assert!(matches!(
            Block::new(&HeapMemory::shared(), 0, 8),
            Err(MapError::OutOfMemory { .. })
        ));
    }
}
