//! The ring of a perf event the tool opened for its perf buffer (`PERF_COUNT_SW_BPF_OUTPUT`), in
//! the kernel's layout, so that libbpf's `perf_buffer` reads it unchanged: a header page
//! (`struct perf_event_mmap_page`: `data_head` at 1024, `data_tail` at 1032, `data_offset` and
//! `data_size` after them) and the data pages, records wrapping around. The file is the event's
//! descriptor; the tool maps it, and the interposer maps it too and writes the records the traced
//! process's programs produced: `PERF_RECORD_SAMPLE` with the raw data padded as the kernel pads it.
//!
//! The one writer is the interposer (under its lock), the one reader libbpf: the head is
//! published with a release store after the record, the tail read with an acquire load.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

const DATA_HEAD: usize = 1024;
const DATA_TAIL: usize = 1032;
const DATA_OFFSET: usize = 1040;
const DATA_SIZE: usize = 1048;
/// `PERF_RECORD_SAMPLE`.
const RECORD_SAMPLE: u32 = 9;
/// `PERF_RECORD_LOST`.
const RECORD_LOST: u32 = 2;

/// The interposer's mapping of one event's ring.
pub(crate) struct KernelRing {
    base: NonNull<u8>,
    /// Bytes mapped: the header page and the data.
    len: usize,
    page: usize,
    /// Records dropped since the last `PERF_RECORD_LOST` (the ring was full).
    lost: u64,
}

// SAFETY: the mapping belongs to this value; it is only written under the server's lock.
unsafe impl Send for KernelRing {}

impl KernelRing {
    /// Maps `len` bytes of `file` (grown to them), the header page first, and fills in where the
    /// data is, as the kernel does when the event is mapped.
    pub(crate) fn map(file: &File, len: usize) -> io::Result<KernelRing> {
        let page = crate::sys::page_size();
        let data = len.saturating_sub(page);
        if len < 2 * page || !data.is_power_of_two() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        file.set_len(len as u64)?;
        // SAFETY: a new shared mapping of our own file, `len` bytes long (just sized); the kernel
        // picks the address.
        let got = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if got == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(got.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        let ring = KernelRing {
            base,
            len,
            page,
            lost: 0,
        };
        ring.word(DATA_OFFSET).store(page as u64, Ordering::Relaxed);
        ring.word(DATA_SIZE).store(data as u64, Ordering::Release);
        Ok(ring)
    }

    /// The header's 8-byte field at `off`.
    fn word(&self, off: usize) -> &AtomicU64 {
        debug_assert!(off + 8 <= self.page);
        // SAFETY: `off` is an aligned offset inside the header page of our live mapping; the
        // reader in the tool accesses the same words atomically (libbpf's `smp_load_acquire`).
        unsafe { &*self.base.as_ptr().add(off).cast::<AtomicU64>() }
    }

    fn data_len(&self) -> u64 {
        (self.len - self.page) as u64
    }

    /// Whether the tool has records left to read.
    pub(crate) fn has_data(&self) -> bool {
        self.word(DATA_HEAD).load(Ordering::Relaxed) != self.word(DATA_TAIL).load(Ordering::Acquire)
    }

    /// Appends one record: `header` and then `body`, `size` bytes in all (`header` + `body`
    /// padded to 8); `false` if the ring has no room.
    fn append(&self, header: &[u8], body: &[u8], size: usize) -> bool {
        let head = self.word(DATA_HEAD).load(Ordering::Relaxed);
        let tail = self.word(DATA_TAIL).load(Ordering::Acquire);
        let data_len = self.data_len();
        if data_len - head.wrapping_sub(tail) < size as u64 {
            return false;
        }
        let mut at = head;
        let mut put = |bytes: &[u8]| {
            for &b in bytes {
                let off = self.page + (at % data_len) as usize;
                // SAFETY: `off` lies in the data pages of our live mapping (`at % data_len`
                // < `data_len`); the reader does not look past `data_head`, not yet moved.
                unsafe { self.base.as_ptr().add(off).write_volatile(b) };
                at += 1;
            }
        };
        put(header);
        put(body);
        put(&[0u8; 8][..size - header.len() - body.len()]);
        self.word(DATA_HEAD)
            .store(head + size as u64, Ordering::Release);
        true
    }

    /// Writes `data` as the kernel writes a `bpf_perf_event_output` record: a sample header, the
    /// raw size, the data, zero padding to 8 bytes (the size the tool gets includes the padding).
    /// A full ring drops the record; the count of dropped records goes out as a
    /// `PERF_RECORD_LOST` once there is room. `false` if dropped.
    pub(crate) fn push_sample(&mut self, cpu_id: u64, data: &[u8]) -> bool {
        if self.lost > 0 {
            let mut lost = Vec::with_capacity(24);
            lost.extend_from_slice(&RECORD_LOST.to_ne_bytes());
            lost.extend_from_slice(&0u16.to_ne_bytes());
            lost.extend_from_slice(&24u16.to_ne_bytes());
            lost.extend_from_slice(&cpu_id.to_ne_bytes());
            lost.extend_from_slice(&self.lost.to_ne_bytes());
            if self.append(&lost, &[], 24) {
                self.lost = 0;
            }
        }
        let raw = (data.len() + 4).next_multiple_of(8) - 4;
        let size = 8 + 4 + raw;
        let ok = size <= usize::from(u16::MAX) && self.lost == 0 && {
            let mut header = Vec::with_capacity(12);
            header.extend_from_slice(&RECORD_SAMPLE.to_ne_bytes());
            header.extend_from_slice(&0u16.to_ne_bytes());
            header.extend_from_slice(&(size as u16).to_ne_bytes());
            header.extend_from_slice(&(raw as u32).to_ne_bytes());
            self.append(&header, data, size)
        };
        if !ok {
            self.lost += 1;
        }
        ok
    }
}

impl Drop for KernelRing {
    fn drop(&mut self) {
        // SAFETY: our own mapping of `len` bytes, no longer used.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}
