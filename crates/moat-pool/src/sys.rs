//! The operating-system and CPU primitives pools need: shared file mappings (with `MAP_SYNC` where the file
//! system is DAX), `mprotect`/`mseal`/`msync`, cache-line write-back (`clwb`, `clflushopt` or `clflush`
//! as CPUID says) and `sfence`, and the calling thread's id.
//!
//! This is the only module of the crate with `unsafe` code. [`Mapping`] owns one mapping and offers
//! bounds-checked copies in and out of it; nothing else ever sees its address as a pointer.
#![expect(
    unsafe_code,
    reason = "the one module that maps files and runs cache instructions"
)]

use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;

/// The instruction used to write a dirty cache line back to memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushKind {
    /// `clwb`: write back and keep the line cached (cheapest).
    Clwb,
    /// `clflushopt`: write back and evict, weakly ordered.
    Clflushopt,
    /// `clflush`: write back and evict, strongly ordered (always available on x86-64).
    Clflush,
    /// No cache-flush instruction (not x86-64): only the fence and `msync` order persistence.
    None,
}

/// The best flush instruction this CPU has (CPUID leaf 7: EBX bit 24 = CLWB, bit 23 = CLFLUSHOPT).
pub fn flush_kind() -> FlushKind {
    static KIND: OnceLock<FlushKind> = OnceLock::new();
    *KIND.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let ebx = std::arch::x86_64::__cpuid_count(7, 0).ebx;
            if ebx & (1 << 24) != 0 {
                FlushKind::Clwb
            } else if ebx & (1 << 23) != 0 {
                FlushKind::Clflushopt
            } else {
                FlushKind::Clflush
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            FlushKind::None
        }
    })
}

/// Orders all earlier flushes and stores before later stores (`sfence`).
pub fn fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` has no operands and no effect besides ordering; SSE is part of x86-64.
    unsafe {
        std::arch::x86_64::_mm_sfence();
    }
    #[cfg(not(target_arch = "x86_64"))]
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}

/// The calling thread's Linux thread id.
pub fn gettid() -> u32 {
    // SAFETY: `gettid` has no preconditions and cannot fail.
    let tid = unsafe { libc::gettid() };
    u32::try_from(tid).unwrap_or(0)
}

/// The system page size (4096 on every platform moat runs on; pools require it).
pub fn page_size() -> usize {
    // SAFETY: `sysconf` has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// A shared mapping of (part of) a file, unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; it may be used from any thread. Callers serialise writes
// with the pool lock (see `Mapping::write`).
unsafe impl Send for Mapping {}
// SAFETY: as above; every `&self` method that touches the memory does so with atomic loads and stores
// (`read`, `write`, `zero`, `atomic_u64`), so concurrent use from several threads never races
// non-atomically; the rest are system calls on the range.
unsafe impl Sync for Mapping {}

/// How a mapping was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapFlags {
    /// Whether `MAP_SHARED_VALIDATE | MAP_SYNC` was accepted (the file is on a DAX file system).
    pub sync: bool,
}

impl Mapping {
    /// Maps `len` bytes of `fd` from `offset` (a multiple of the page size), shared, readable and, if
    /// `writable`, writable. With `try_sync`, `MAP_SHARED_VALIDATE | MAP_SYNC` is tried first and plain
    /// `MAP_SHARED` used if the file system refuses it.
    pub fn map(
        fd: RawFd,
        offset: u64,
        len: usize,
        writable: bool,
        try_sync: bool,
    ) -> io::Result<(Mapping, MapFlags)> {
        if len == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        if try_sync {
            // SAFETY: a fresh mapping chosen by the kernel (null hint) aliases no Rust object.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    prot,
                    libc::MAP_SHARED_VALIDATE | libc::MAP_SYNC,
                    fd,
                    off,
                )
            };
            if p != libc::MAP_FAILED {
                if let Some(base) = NonNull::new(p.cast::<u8>()) {
                    return Ok((Mapping { base, len }, MapFlags { sync: true }));
                }
            }
        }
        // SAFETY: as above.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd, off) };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok((Mapping { base, len }, MapFlags { sync: false }))
    }

    /// The mapping's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The mapping's start address (for reporting and for tests that make stray writes on purpose).
    pub fn addr(&self) -> usize {
        self.base.as_ptr() as usize
    }

    /// Whether `off..off + len` lies inside the mapping.
    fn inside(&self, off: usize, len: usize) -> bool {
        off.checked_add(len).is_some_and(|end| end <= self.len)
    }

    /// The word at byte `off + i` as an atomic, if `off + i` is 8-aligned and 8 bytes of the range
    /// `off..off + len` (already checked to lie inside the mapping) are left from there.
    fn word_at(&self, off: usize, i: usize, len: usize) -> Option<&AtomicU64> {
        if len - i < 8 || !(self.addr() + off + i).is_multiple_of(8) {
            return None;
        }
        // SAFETY: `off + i..off + i + 8` lies inside the mapping (the caller checked `off..off + len`)
        // and is 8-aligned (checked); the memory lives as long as `self`. Every access this crate makes
        // to pool data is atomic (word or byte), so concurrent readers and writers never race
        // non-atomically on the Rust side.
        Some(unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(off + i).cast::<u64>()) })
    }

    /// The byte at `off + i` as an atomic (`off + i` is inside the mapping: checked by the caller).
    fn byte_at(&self, off: usize, i: usize) -> &AtomicU8 {
        // SAFETY: inside the mapping (checked by the caller), and bytes need no alignment; the memory
        // lives as long as `self`.
        unsafe { AtomicU8::from_ptr(self.base.as_ptr().add(off + i)) }
    }

    /// Copies `buf.len()` bytes at `off` out of the mapping. Returns false (copying nothing) if the range
    /// is outside the mapping.
    ///
    /// The copy is made of atomic loads (8-byte words where aligned, with acquire ordering, bytes
    /// elsewhere), so it may race with writers — in other processes, or in this one for lock-free
    /// lookups: a racing read sees each word either old or new (a torn value, like a kernel map's),
    /// never undefined behaviour, and a word written with [`write`](Mapping::write) (release ordering,
    /// such as a link to a new element) shows everything written before it.
    pub fn read(&self, off: usize, buf: &mut [u8]) -> bool {
        if !self.inside(off, buf.len()) {
            return false;
        }
        let len = buf.len();
        let mut i = 0;
        while i < len {
            if let Some(w) = self.word_at(off, i, len) {
                buf[i..i + 8].copy_from_slice(&w.load(Ordering::Acquire).to_ne_bytes());
                i += 8;
            } else {
                buf[i] = self.byte_at(off, i).load(Ordering::Relaxed);
                i += 1;
            }
        }
        true
    }

    /// Stores `len` bytes at `off`, byte `i` being `byte(i)`, with atomic stores (words where aligned).
    /// The range is inside the mapping (checked by the callers).
    fn store(&self, off: usize, len: usize, byte: impl Fn(usize) -> u8) {
        let mut i = 0;
        while i < len {
            if let Some(w) = self.word_at(off, i, len) {
                let word: [u8; 8] = std::array::from_fn(|j| byte(i + j));
                w.store(u64::from_ne_bytes(word), Ordering::Release);
                i += 8;
            } else {
                self.byte_at(off, i).store(byte(i), Ordering::Relaxed);
                i += 1;
            }
        }
    }

    /// Copies `data` into the mapping at `off`. Returns false (copying nothing) if the range is outside
    /// the mapping.
    ///
    /// The caller must hold the pool lock and have made the pages writable (a write to a read-only page
    /// is a `SIGSEGV`, which is exactly what stray-write protection wants for everyone else). The stores
    /// are atomic (see [`read`](Mapping::read)).
    pub fn write(&self, off: usize, data: &[u8]) -> bool {
        if !self.inside(off, data.len()) {
            return false;
        }
        self.store(off, data.len(), |i| data[i]);
        true
    }

    /// Sets `len` bytes at `off` to zero; false if the range is outside the mapping. Same rules as
    /// [`write`](Mapping::write).
    pub fn zero(&self, off: usize, len: usize) -> bool {
        if !self.inside(off, len) {
            return false;
        }
        self.store(off, len, |_| 0);
        true
    }

    /// The address of byte `off` of the mapping, for handing out pointers into it (map values that
    /// programs read); `None` if `off` is outside the mapping. The pointer is valid while `self` lives.
    pub fn ptr_at(&self, off: usize) -> Option<NonNull<u8>> {
        if !self.inside(off, 1) {
            return None;
        }
        NonNull::new(self.base.as_ptr().wrapping_add(off))
    }

    /// The 8-byte-aligned word at `off` as an atomic (the lock word), or `None` if out of range or
    /// misaligned.
    pub fn atomic_u64(&self, off: usize) -> Option<&AtomicU64> {
        if !self.inside(off, 8) || !(self.addr() + off).is_multiple_of(8) {
            return None;
        }
        // SAFETY: in range and aligned (checked); the memory lives as long as `self`, and every process
        // accesses this word with atomic instructions only.
        Some(unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(off).cast::<u64>()) })
    }

    /// Writes back every cache line of `off..off + len` (clamped to the mapping) with `kind`.
    pub fn flush(&self, off: usize, len: usize, kind: FlushKind) {
        let end = off.saturating_add(len).min(self.len);
        if off >= end {
            return;
        }
        let start = (self.addr() + off) & !63;
        let stop = self.addr() + end;
        let mut line = start;
        while line < stop {
            flush_line(line, kind);
            line += 64;
        }
    }

    /// Changes the protection of the pages covering `off..off + len`.
    pub fn protect(&self, off: usize, len: usize, writable: bool) -> io::Result<()> {
        let (addr, len) = self.page_range(off, len)?;
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: the range lies inside our own mapping (checked by `page_range`); changing its
        // protection cannot invalidate Rust references because none point into it.
        let rc = unsafe { libc::mprotect(addr as *mut libc::c_void, len, prot) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Seals the pages covering `off..off + len` with `mseal(2)` (their protection can no longer change
    /// and they can no longer be unmapped). `Ok(false)` when the kernel has no `mseal`.
    pub fn seal(&self, off: usize, len: usize) -> io::Result<bool> {
        let (addr, len) = self.page_range(off, len)?;
        // SAFETY: `mseal` only changes the sealing attribute of our own mapping's pages.
        let rc = unsafe { libc::syscall(libc::SYS_mseal, addr, len, 0usize) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENOSYS) => Ok(false),
            _ => Err(err),
        }
    }

    /// `msync(MS_SYNC)` of the pages covering `off..off + len`.
    pub fn msync(&self, off: usize, len: usize) -> io::Result<()> {
        let (addr, len) = self.page_range(off, len)?;
        // SAFETY: the range lies inside our own mapping (checked).
        let rc = unsafe { libc::msync(addr as *mut libc::c_void, len, libc::MS_SYNC) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// The page-aligned address range covering `off..off + len`, checked to lie inside the mapping.
    fn page_range(&self, off: usize, len: usize) -> io::Result<(usize, usize)> {
        let page = page_size();
        let end = off
            .checked_add(len)
            .filter(|&e| e <= self.len)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        let start = off & !(page - 1);
        let end = end.div_ceil(page).saturating_mul(page).min(self.len);
        Ok((self.addr() + start, end.saturating_sub(start)))
    }
}

/// Writes back the cache line at `addr`.
fn flush_line(addr: usize, kind: FlushKind) {
    #[cfg(target_arch = "x86_64")]
    {
        let p = addr as *const u8;
        match kind {
            // SAFETY: `addr` is inside a live mapping (callers clamp to it); the cache instructions only
            // need the address to be mapped readable, and change no memory contents.
            FlushKind::Clwb => unsafe {
                std::arch::asm!("clwb [{0}]", in(reg) p, options(nostack, preserves_flags));
            },
            // SAFETY: as above.
            FlushKind::Clflushopt => unsafe {
                std::arch::asm!("clflushopt [{0}]", in(reg) p, options(nostack, preserves_flags));
            },
            // SAFETY: as above.
            FlushKind::Clflush => unsafe { std::arch::x86_64::_mm_clflush(p) },
            FlushKind::None => {}
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (addr, kind);
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base..base + len` is our own mapping and nothing refers into it any more. If parts of
        // it were `mseal`ed, the kernel refuses (EPERM) and the mapping stays, which is what sealing means.
        unsafe {
            libc::munmap(self.base.as_ptr().cast::<libc::c_void>(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_kind_is_detected() {
        // On this project's x86-64 machines at least `clflush` exists.
        #[cfg(target_arch = "x86_64")]
        assert_ne!(flush_kind(), FlushKind::None);
        fence();
        assert_ne!(gettid(), 0);
        assert_eq!(page_size(), 4096);
    }
}
