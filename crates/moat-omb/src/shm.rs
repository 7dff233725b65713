//! The one module with `unsafe` code: bounds-checked access to a shared region that other processes
//! write concurrently — 8-byte atomics for the protocol's words, and bulk copies in and out for
//! payloads — and the process-control calls the launcher and tests need (`kill`).
//!
//! The region is never seen as Rust data: no reference to plain bytes in it is ever made. Words are
//! `AtomicU64`s (every process uses atomic instructions on them); payload bytes are copied with
//! `ptr::copy_nonoverlapping` into or out of the caller's own buffers, only while the protocol gives
//! this process the slot (its sequence word says so). A hostile or crashed peer writing a slot at the
//! same time can only make the copied bytes wrong — the destination is a `[u8]`, for which every bit
//! pattern is valid — and the protocol's checks after the copy (`ring.rs`) reject such a message.
#![expect(
    unsafe_code,
    reason = "the one module that dereferences addresses in the shared region"
)]

use moat_pool::Region;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

/// A mapped region and its bounds: every access names an offset, checked against the length.
#[derive(Debug)]
pub struct Shm {
    region: Region,
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the region is shared memory that any thread may access; every access is an atomic word
// operation or a copy between the region and a caller-owned buffer, never a Rust reference to plain
// data, so use from several threads is as sound as use from several processes.
unsafe impl Send for Shm {}
// SAFETY: as above.
unsafe impl Sync for Shm {}

impl Shm {
    /// Takes over a mapped region.
    pub fn new(region: Region) -> Shm {
        let base = region.base();
        let len = region.len();
        Shm { region, base, len }
    }

    /// The underlying region.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The region's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether `off..off + len` lies inside the region.
    fn inside(&self, off: usize, len: usize) -> bool {
        off.checked_add(len).is_some_and(|end| end <= self.len)
    }

    /// The 8-byte word at `off` as an atomic; `None` when out of range or misaligned.
    pub fn word(&self, off: usize) -> Option<&AtomicU64> {
        if !self.inside(off, 8) || !off.is_multiple_of(8) {
            return None;
        }
        // SAFETY: `off..off + 8` is inside the mapping (checked) and 8-aligned (the base is
        // page-aligned and `off` a multiple of 8); the mapping lives as long as `self`, and every
        // process accesses the protocol's words with atomic instructions only.
        Some(unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(off).cast::<u64>()) })
    }

    /// Copies `data` into the region at `off`; false (nothing copied) when out of range.
    pub fn write(&self, off: usize, data: &[u8]) -> bool {
        if !self.inside(off, data.len()) {
            return false;
        }
        // SAFETY: the destination range is inside the mapping (checked) and cannot overlap `data`,
        // which is a Rust buffer outside it (the region is never lent out as a slice). Concurrent
        // writers can only be a misbehaving peer (the protocol gives the slot to us): see the module
        // documentation.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.as_ptr().add(off), data.len());
        }
        true
    }

    /// Copies `out.len()` bytes at `off` out of the region; false (nothing copied) when out of range.
    pub fn read(&self, off: usize, out: &mut [u8]) -> bool {
        if !self.inside(off, out.len()) {
            return false;
        }
        // SAFETY: the source range is inside the mapping (checked) and cannot overlap `out`, a Rust
        // buffer outside it. Any byte values are valid for `u8`; a racing (misbehaving) writer makes
        // the content wrong, which the protocol's re-check of the sequence word detects.
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.as_ptr().add(off), out.as_mut_ptr(), out.len());
        }
        true
    }
}

/// Sends `SIGKILL` to process `pid` (tests and the launcher's clean-up of rank processes it
/// started). Returns whether the signal was sent.
pub fn kill(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: `kill` has no memory-safety preconditions; a positive pid names one process.
    unsafe { libc::kill(pid, libc::SIGKILL) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_outside_the_region_are_refused() {
        let path = std::env::temp_dir().join(format!("moat-omb-shm-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let shm = Shm::new(Region::create(&path, 4096).unwrap());
        std::fs::remove_file(&path).unwrap();
        assert!(shm.word(4088).is_some());
        assert!(shm.word(4092).is_none());
        assert!(shm.word(4).is_none());
        assert!(shm.word(usize::MAX - 3).is_none());
        assert!(shm.write(4090, &[1; 6]));
        assert!(!shm.write(4091, &[1; 6]));
        let mut out = [0u8; 6];
        assert!(shm.read(4090, &mut out));
        assert_eq!(out, [1; 6]);
        assert!(!shm.read(usize::MAX, &mut out));
    }
}
