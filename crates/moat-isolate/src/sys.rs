//! The only module of `moat-isolate` with `unsafe`: the domain's reserved address range (mmap,
//! mprotect, guard pages), raw copies into it, protection keys (`pkey_alloc`, `pkey_mprotect`) and
//! the PKRU register.
//!
//! A [`Reservation`] is one anonymous mapping: `guard` bytes of `PROT_NONE` on each side of an inner
//! range of `size` bytes (a power of two) aligned to `size`. The inner range starts `PROT_NONE` too and
//! is made readable and writable ("committed") prefix by prefix as the domain's allocator grows, so
//! everything of the reservation that holds no live data faults on access.
#![expect(
    unsafe_code,
    reason = "the one module that maps, protects and copies domain memory"
)]

use std::io;

/// One reserved, aligned, guarded address range, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Reservation {
    /// First byte of the whole mapping (the leading guard).
    map_start: usize,
    /// Bytes of the whole mapping.
    map_len: usize,
    /// First byte of the inner range, a multiple of `size`.
    base: usize,
    /// Bytes of the inner range.
    size: usize,
}

/// The system's page size.
pub(crate) fn page_size() -> usize {
    // SAFETY: `sysconf` only reads a configuration value.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(4096)
}

impl Reservation {
    /// Reserves `size` bytes (a power of two, at least a page) aligned to `size`, with `guard` bytes
    /// (a multiple of the page size) of inaccessible memory on each side. Nothing is accessible yet.
    pub(crate) fn new(size: usize, guard: usize) -> io::Result<Reservation> {
        let page = page_size();
        if !size.is_power_of_two() || size < page || !guard.is_multiple_of(page) {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let over = size
            .checked_mul(2)
            .and_then(|s| s.checked_add(2 * guard))
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: an anonymous private mapping at a kernel-chosen address touches no existing memory;
        // the result is checked before use.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                over,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let raw = raw as usize;
        // The first multiple of `size` with room for the leading guard; it exists inside `over`.
        let base = (raw + guard).next_multiple_of(size);
        let map_start = base - guard;
        let map_len = size + 2 * guard;
        let head = map_start - raw;
        let tail = (raw + over) - (map_start + map_len);
        // SAFETY: both ranges are page-aligned parts of the mapping just created, outside the range
        // we keep; unmapping them touches nothing else.
        unsafe {
            if head > 0 {
                libc::munmap(raw as *mut libc::c_void, head);
            }
            if tail > 0 {
                libc::munmap((map_start + map_len) as *mut libc::c_void, tail);
            }
        }
        Ok(Reservation {
            map_start,
            map_len,
            base,
            size,
        })
    }

    /// The inner range's first address.
    pub(crate) fn base(&self) -> usize {
        self.base
    }

    /// The inner range's size.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    fn check(&self, off: usize, len: usize) -> io::Result<()> {
        match off.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(io::Error::from(io::ErrorKind::InvalidInput)),
        }
    }

    /// Makes `[off, off + len)` of the inner range (page-aligned) readable and writable, tagged with
    /// protection key `pkey` when given.
    pub(crate) fn commit(&self, off: usize, len: usize, pkey: Option<i32>) -> io::Result<()> {
        self.check(off, len)?;
        let addr = (self.base + off) as *mut libc::c_void;
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: the range lies inside our own reservation (checked), which no Rust object
        // references as anything but raw memory; changing its protection affects nothing else.
        let rc = unsafe {
            match pkey {
                None => libc::mprotect(addr, len, prot) as libc::c_long,
                Some(key) => libc::syscall(
                    libc::SYS_pkey_mprotect,
                    addr,
                    len,
                    prot,
                    libc::c_long::from(key),
                ),
            }
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Makes `[off, off + len)` of the inner range (page-aligned) inaccessible: a guard page.
    pub(crate) fn guard(&self, off: usize, len: usize) -> io::Result<()> {
        self.check(off, len)?;
        // SAFETY: the range lies inside our own reservation (checked) and holds no live Rust object;
        // making it inaccessible affects nothing else.
        let rc =
            unsafe { libc::mprotect((self.base + off) as *mut libc::c_void, len, libc::PROT_NONE) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Zeroes `len` committed bytes at `off`.
    pub(crate) fn zero(&self, off: usize, len: usize) {
        if self.check(off, len).is_ok() {
            // SAFETY: the range is inside the reservation (checked) and committed (the callers only
            // pass allocated ranges); it is raw memory no Rust reference points into.
            unsafe { std::ptr::write_bytes((self.base + off) as *mut u8, 0, len) };
        }
    }

    /// The committed bytes `[off, off + len)` as a slice, borrowed as long as `token`.
    ///
    /// The token is the proof of exclusive access: each range handed out this way belongs to exactly
    /// one token (the domain's context area has one, behind a mutex), and nothing else of the crate
    /// ever accesses that range.
    pub(crate) fn slice_mut<'t>(
        &self,
        off: usize,
        len: usize,
        token: &'t mut ContextToken,
    ) -> Option<&'t mut [u8]> {
        self.check(off, len).ok()?;
        if off < token.off || off + len > token.off + token.len {
            return None;
        }
        // SAFETY: the range is inside the token's committed range, which only the token's holder
        // accesses (the token is borrowed mutably for the slice's lifetime); the reservation
        // outlives the token's holder (both belong to one domain).
        Some(unsafe { std::slice::from_raw_parts_mut((self.base + off) as *mut u8, len) })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: `map_start`/`map_len` describe the mapping kept in `new`, unmapped exactly once
        // here; every user of the memory (maps, contexts) holds the domain alive.
        unsafe { libc::munmap(self.map_start as *mut libc::c_void, self.map_len) };
    }
}

/// An anonymous mapping below 4 GiB (`MAP_32BIT`), for contexts whose pointer fields are 32 bits
/// wide; owned like a `Box<[u8]>` and unmapped on drop.
#[derive(Debug)]
pub(crate) struct LowMapping {
    addr: usize,
    len: usize,
    /// The protection key it carries (`mpk`).
    key: Option<i32>,
}

impl LowMapping {
    /// Maps `len` bytes below 4 GiB, tagged with `key` when given.
    pub(crate) fn new(len: usize, key: Option<i32>) -> io::Result<LowMapping> {
        // SAFETY: an anonymous private mapping at a kernel-chosen address touches no existing
        // memory; the result is checked before use.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut low = LowMapping {
            addr: raw as usize,
            len,
            key: None,
        };
        if (low.addr as u64).saturating_add(len as u64) > u64::from(u32::MAX) {
            return Err(io::Error::other("MAP_32BIT mapping is not below 4 GiB"));
        }
        if let Some(key) = key {
            low.tag(key)?;
        }
        Ok(low)
    }

    /// Tags the mapping with protection key `key` (no-op if it carries it already).
    pub(crate) fn tag(&mut self, key: i32) -> io::Result<()> {
        if self.key == Some(key) {
            return Ok(());
        }
        // SAFETY: the range is exactly our own mapping; changing its key affects nothing else.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pkey_mprotect,
                self.addr as *mut libc::c_void,
                self.len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::c_long::from(key),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        self.key = Some(key);
        Ok(())
    }

    /// `(start, len)` of the mapping.
    pub(crate) fn range(&self) -> (u64, u64) {
        (self.addr as u64, self.len as u64)
    }

    /// The mapping's bytes, borrowed as long as `self` is (mutably: exclusive).
    pub(crate) fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `len` readable and writable bytes mapped by `new`, alive and exclusively ours
        // while `self` is borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.addr as *mut u8, self.len) }
    }
}

impl Drop for LowMapping {
    fn drop(&mut self) {
        // SAFETY: the mapping created in `new`, unmapped exactly once; no borrow of it outlives
        // `self`.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
    }
}

/// Exclusive access to one committed range of a reservation (see [`Reservation::slice_mut`]).
#[derive(Debug)]
pub(crate) struct ContextToken {
    off: usize,
    len: usize,
}

impl ContextToken {
    /// The token of `[off, off + len)`. The caller creates exactly one per range.
    pub(crate) fn new(off: usize, len: usize) -> ContextToken {
        ContextToken { off, len }
    }

    /// The range `(off, len)` the token grants.
    pub(crate) fn range(&self) -> (usize, usize) {
        (self.off, self.len)
    }
}

/// Allocates a protection key with all access allowed to the current thread.
pub(crate) fn pkey_alloc() -> io::Result<i32> {
    // SAFETY: `pkey_alloc(0, 0)` only allocates a key; it touches no memory of ours.
    let rc = unsafe { libc::syscall(libc::SYS_pkey_alloc, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    i32::try_from(rc).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// Frees a key from [`pkey_alloc`].
pub(crate) fn pkey_free(key: i32) {
    // SAFETY: frees a key we allocated; memory still tagged with it keeps its tag (the kernel's rule),
    // which is why domains free their key only after unmapping their memory.
    unsafe { libc::syscall(libc::SYS_pkey_free, libc::c_long::from(key)) };
}

/// Reads PKRU. Only called while a protection key exists, which implies the CPU and kernel support
/// PKU (`pkey_alloc` fails otherwise), so the instruction cannot fault.
#[cfg(target_arch = "x86_64")]
pub(crate) fn read_pkru(_proof: &crate::mpk::Pkey) -> u32 {
    let eax: u32;
    // SAFETY: `rdpkru` (0f 01 ee) reads PKRU into eax (edx zeroed) with ecx = 0; the CPU supports it
    // (see above). It touches no memory.
    unsafe {
        std::arch::asm!(".byte 0x0f, 0x01, 0xee", in("ecx") 0u32, out("eax") eax, out("edx") _,
            options(nomem, nostack, preserves_flags));
    }
    eax
}

/// Writes PKRU (same precondition as [`read_pkru`]).
#[cfg(target_arch = "x86_64")]
pub(crate) fn write_pkru(_proof: &crate::mpk::Pkey, value: u32) {
    // SAFETY: `wrpkru` (0f 01 ef) writes eax to PKRU with ecx = edx = 0; the CPU supports it. It
    // changes which keys this thread may access, which the caller restores (`PkruGuard`); Rust's own
    // memory (key 0) stays accessible under every value this crate writes.
    unsafe {
        std::arch::asm!(".byte 0x0f, 0x01, 0xef", in("eax") value, in("ecx") 0u32, in("edx") 0u32,
            options(nostack, preserves_flags));
    }
}

/// Reads PKRU (no PKU outside x86-64: always 0).
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn read_pkru(_proof: &crate::mpk::Pkey) -> u32 {
    0
}

/// Writes PKRU (no-op outside x86-64).
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn write_pkru(_proof: &crate::mpk::Pkey, _value: u32) {}

/// Map memory allocated from a domain's arena.
// SAFETY: `DomainMemory::alloc` hands out page-committed, zeroed, aligned, disjoint ranges of the
// domain's reservation (the arena's allocator never gives a range twice until it is freed, and zeroes
// it on free); the reservation lives as long as any `DomainMemory` (each holds the domain), at a fixed
// address; the allocator is behind a mutex, so any thread may use it.
unsafe impl moat_maps::MapMemory for crate::domain::DomainMemory {
    fn alloc(
        &self,
        size: usize,
        align: usize,
    ) -> Result<std::ptr::NonNull<u8>, moat_maps::MapError> {
        let addr = self.alloc_addr(size, align)?;
        std::ptr::NonNull::new(addr as *mut u8).ok_or(moat_maps::MapError::OutOfMemory { size })
    }

    unsafe fn free(&self, ptr: std::ptr::NonNull<u8>, size: usize, _align: usize) {
        self.free_addr(ptr.as_ptr() as usize, size);
    }
}
