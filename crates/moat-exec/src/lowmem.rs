//! Memory below 4 GiB, for program contexts whose pointer fields are 32 bits wide.
//!
//! The kernel's `struct xdp_md` and `struct __sk_buff` give programs packet pointers as `__u32`
//! fields (`data`, `data_end`); the kernel rewrites those loads into 64-bit pointer loads. moat instead
//! places the context and the packet in memory mapped below 4 GiB (`MAP_32BIT`), where a 32-bit field
//! holds the real address, so clang-compiled programs run unchanged on every engine.

use std::io;
use std::ptr::NonNull;

/// An anonymous, zero-filled mapping whose every address fits in 32 bits.
#[derive(Debug)]
pub struct LowBuffer {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned exclusively by this value (like a `Box<[u8]>`); moving it to another
// thread moves that ownership.
unsafe impl Send for LowBuffer {}

impl LowBuffer {
    /// Maps `len` bytes below 4 GiB.
    pub fn new(len: usize) -> io::Result<LowBuffer> {
        // SAFETY: an anonymous private mapping at a kernel-chosen address touches no existing memory;
        // the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len.max(1),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        if (ptr.as_ptr() as u64).saturating_add(len as u64) > u64::from(u32::MAX) {
            // SAFETY: `ptr` is the mapping just created with this length.
            unsafe { libc::munmap(ptr.as_ptr().cast(), len.max(1)) };
            return Err(io::Error::other("MAP_32BIT mapping is not below 4 GiB"));
        }
        Ok(LowBuffer { ptr, len })
    }

    /// The buffer's bytes.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` readable and writable bytes, alive and exclusively ours while
        // `self` is borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The buffer's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for LowBuffer {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` describe the mapping created in `new`, unmapped exactly once here.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len.max(1)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_buffers_fit_32_bit_fields_and_start_zeroed() {
        let mut b = LowBuffer::new(4096).expect("mmap");
        let s = b.as_mut_slice();
        assert!(s.iter().all(|&x| x == 0));
        assert!(s.as_ptr() as u64 + 4096 <= u64::from(u32::MAX));
        s[4095] = 1;
    }
}
