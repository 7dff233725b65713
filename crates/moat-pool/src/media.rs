//! Where pool bytes live and how they are made durable: the [`Media`] trait every pool structure is written
//! through (store, flush, fence, write windows, the lock word), its implementation on a mapped file
//! ([`FileMedia`]) and a read-only one over `pread` for inspection ([`ReadMedia`]). Tests add a simulated
//! persistence domain (`sim.rs`) behind the same trait.

use crate::error::PoolError;
use crate::layout::{Header, PAGE};
use crate::sys::{self, FlushKind, Mapping};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

/// Byte storage with an explicit persistence protocol.
///
/// Writes are only allowed between [`open_window`](Media::open_window) and
/// [`close_window`](Media::close_window), by the holder of the pool lock. A write becomes durable once
/// it has been [`flush`](Media::flush)ed and a later [`fence`](Media::fence) has returned.
pub trait Media {
    /// Total length in bytes.
    fn len(&self) -> u64;
    /// Copies bytes at `off` into `buf`.
    fn read(&self, off: u64, buf: &mut [u8]) -> Result<(), PoolError>;
    /// Stores `data` at `off`.
    fn write(&self, off: u64, data: &[u8]) -> Result<(), PoolError>;
    /// Stores `len` zero bytes at `off`.
    fn zero(&self, off: u64, len: u64) -> Result<(), PoolError>;
    /// Starts writing back the cache lines of `off..off + len`.
    fn flush(&self, off: u64, len: u64);
    /// Waits until everything flushed before is durable.
    fn fence(&self) -> Result<(), PoolError>;
    /// The pool's lock word.
    fn lock_word(&self) -> &AtomicU64;
    /// Makes the pool writable for this thread's transaction.
    fn open_window(&self) -> Result<(), PoolError>;
    /// Makes the pool read-only again.
    fn close_window(&self) -> Result<(), PoolError>;
    /// Makes `off..off + len` (a sealed map's extent) read-only for good.
    fn seal(&self, off: u64, len: u64) -> Result<(), PoolError>;
    /// Records that the lock was taken over from a dead holder.
    fn note_steal(&self) {}
}

/// Reads a little-endian `u64` from media.
pub fn rd64<M: Media + ?Sized>(m: &M, off: u64) -> Result<u64, PoolError> {
    let mut b = [0u8; 8];
    m.read(off, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn out_of_range(off: u64) -> PoolError {
    PoolError::corrupt("pool range", off, "lies outside the file")
}

/// How writes reach durability on a [`FileMedia`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `Flush` on DAX (`MAP_SYNC` accepted), `Msync` otherwise.
    #[default]
    Auto,
    /// Cache-line write-back and `sfence` only: survives the crash of any process, and power loss on
    /// DAX persistent memory; on an ordinary file, not power loss.
    Flush,
    /// As `Flush`, plus `msync(MS_SYNC)` of the touched pages at every fence: survives power loss on
    /// ordinary files (much slower).
    Msync,
}

/// How the pool is protected against stray writes by the host process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protection {
    /// The pool is mapped read-only; the pages a transaction writes are made writable with `mprotect`
    /// for the transaction only.
    #[default]
    Mprotect,
    /// The pool is mapped read-only; a transaction writes through a second, writable mapping that exists
    /// only while it runs.
    TempMapping,
    /// The pool is mapped writable (fastest, unprotected).
    None,
}

/// The state of the write window.
#[derive(Debug, Default)]
struct Window {
    open: bool,
    /// Page-aligned ranges made writable by `mprotect` in this window.
    runs: Vec<(u64, u64)>,
    /// The temporary writable mapping.
    temp: Option<Mapping>,
    /// Pages touched since the last fence (for `msync`).
    dirty: Option<(u64, u64)>,
}

/// A pool file mapped shared.
#[derive(Debug)]
pub struct FileMedia {
    path: PathBuf,
    file: File,
    map: Mapping,
    lock: Mapping,
    sync: bool,
    msync: bool,
    protection: Protection,
    flush: FlushKind,
    window: Mutex<Window>,
}

impl FileMedia {
    /// Opens the pool at `path` read-write, checks its header and maps it.
    pub fn open(
        path: &Path,
        durability: Durability,
        protection: Protection,
    ) -> Result<(FileMedia, Header), PoolError> {
        let io = |op, source| PoolError::Io {
            path: path.to_path_buf(),
            op,
            source,
        };
        let file = File::options()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io("open", e))?;
        let header = read_header(&file, path)?;
        let len = usize::try_from(header.pool_size)
            .map_err(|_| PoolError::InvalidOptions("pool larger than the address space"))?;
        let (map, flags) = Mapping::map(
            file.as_raw_fd(),
            0,
            len,
            protection == Protection::None,
            true,
        )
        .map_err(|e| io("mmap", e))?;
        let (lock, _) = Mapping::map(
            file.as_raw_fd(),
            header.lock_off,
            PAGE as usize,
            true,
            false,
        )
        .map_err(|e| io("mmap lock page", e))?;
        reset_after_reboot(&lock);
        let msync = match durability {
            Durability::Auto => !flags.sync,
            Durability::Flush => false,
            Durability::Msync => true,
        };
        Ok((
            FileMedia {
                path: path.to_path_buf(),
                file,
                map,
                lock,
                sync: flags.sync,
                msync,
                protection,
                flush: sys::flush_kind(),
                window: Mutex::new(Window::default()),
            },
            header,
        ))
    }

    /// Whether the file is mapped with `MAP_SYNC` (DAX).
    pub fn is_sync(&self) -> bool {
        self.sync
    }

    /// Whether fences `msync`.
    pub fn uses_msync(&self) -> bool {
        self.msync
    }

    /// The protection mode.
    pub fn protection(&self) -> Protection {
        self.protection
    }

    /// The flush instruction used.
    pub fn flush_kind(&self) -> FlushKind {
        self.flush
    }

    /// The address range of the main mapping.
    pub fn mapped_range(&self) -> (usize, usize) {
        (self.map.addr(), self.map.len())
    }

    /// The address of byte `off` in this process's mapping (valid while the pool stays mapped).
    pub fn ptr(&self, off: u64) -> Option<NonNull<u8>> {
        self.map.ptr_at(usize::try_from(off).ok()?)
    }

    fn io(&self, op: &'static str, source: std::io::Error) -> PoolError {
        PoolError::Io {
            path: self.path.clone(),
            op,
            source,
        }
    }

    /// A second, writable mapping of the pages covering `off..off + len`, for in-place atomic
    /// updates of values ([`crate::InPlaceValues`]); returns it with the position of `off` in it.
    pub fn writable_alias(&self, off: u64, len: u64) -> Result<(Mapping, usize), PoolError> {
        let end = off.checked_add(len).ok_or_else(|| out_of_range(off))?;
        if len == 0 || end > self.len() {
            return Err(out_of_range(off));
        }
        let start = off & !(PAGE - 1);
        let stop = end.div_ceil(PAGE) * PAGE;
        let (m, _) = Mapping::map(
            self.file.as_raw_fd(),
            start,
            (stop - start) as usize,
            true,
            self.sync,
        )
        .map_err(|e| self.io("mmap in-place window", e))?;
        Ok((m, (off - start) as usize))
    }

    /// Makes `off..off + len` durable now: its cache lines written back and fenced, and on ordinary
    /// files (`msync` durability) its pages written to the file.
    pub fn persist(&self, off: u64, len: u64) -> Result<(), PoolError> {
        let (Ok(o), Ok(l)) = (usize::try_from(off), usize::try_from(len)) else {
            return Err(out_of_range(off));
        };
        self.map.flush(o, l, self.flush);
        sys::fence();
        if self.msync {
            self.map.msync(o, l).map_err(|e| self.io("msync", e))?;
        }
        Ok(())
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the pages of `off..off + len` writable in the current window.
    fn writable(&self, w: &mut Window, off: u64, len: u64) -> Result<(), PoolError> {
        if !w.open {
            return Err(PoolError::ReadOnly);
        }
        let end = off.checked_add(len).ok_or_else(|| out_of_range(off))?;
        if end > self.len() {
            return Err(out_of_range(off));
        }
        let start = off & !(PAGE - 1);
        let stop = end.div_ceil(PAGE) * PAGE;
        match self.protection {
            Protection::None => Ok(()),
            Protection::Mprotect => {
                if w.runs.iter().any(|&(a, b)| a <= start && stop <= b) {
                    return Ok(());
                }
                self.map
                    .protect(start as usize, (stop - start) as usize, true)
                    .map_err(|e| self.io("mprotect", e))?;
                w.runs.push((start, stop));
                Ok(())
            }
            Protection::TempMapping => {
                if w.temp.is_none() {
                    let (m, _) =
                        Mapping::map(self.file.as_raw_fd(), 0, self.map.len(), true, false)
                            .map_err(|e| self.io("mmap write window", e))?;
                    w.temp = Some(m);
                }
                Ok(())
            }
        }
    }

    fn mark_dirty(&self, off: u64, len: u64) {
        if !self.msync || len == 0 {
            return;
        }
        let mut w = self.window();
        let end = off.saturating_add(len);
        w.dirty = Some(match w.dirty {
            Some((a, b)) => (a.min(off), b.max(end)),
            None => (off, end),
        });
    }
}

/// The running kernel's boot id (16 bytes), or zeros if unknown.
fn boot_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let hex: Vec<u8> = text
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .map(|c| (c as char).to_digit(16).unwrap_or(0) as u8)
        .collect();
    for (i, pair) in hex.chunks_exact(2).take(16).enumerate() {
        id[i] = pair[0] << 4 | pair[1];
    }
    id
}

/// If the lock page was last used under another boot, no holder can be alive: frees the lock (§3).
fn reset_after_reboot(lock: &Mapping) {
    use std::sync::atomic::Ordering;
    let now = boot_id();
    let mut seen = [0u8; 16];
    if !lock.read(16, &mut seen) || seen == now || now == [0; 16] {
        return;
    }
    if let Some(word) = lock.atomic_u64(0) {
        let cur = word.load(Ordering::Acquire);
        let _ = word.compare_exchange(cur, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
    lock.write(16, &now);
}

/// Reads and checks the header of an open pool file.
fn read_header(file: &File, path: &Path) -> Result<Header, PoolError> {
    let len = file
        .metadata()
        .map_err(|source| PoolError::Io {
            path: path.to_path_buf(),
            op: "stat",
            source,
        })?
        .len();
    let mut b = vec![0u8; usize::try_from(len.min(256)).unwrap_or(256)];
    file.read_exact_at(&mut b, 0)
        .map_err(|source| PoolError::Io {
            path: path.to_path_buf(),
            op: "read header",
            source,
        })?;
    Header::decode(&b, len)
}

impl Media for FileMedia {
    fn len(&self) -> u64 {
        self.map.len() as u64
    }

    fn read(&self, off: u64, buf: &mut [u8]) -> Result<(), PoolError> {
        let o = usize::try_from(off).map_err(|_| out_of_range(off))?;
        if self.map.read(o, buf) {
            Ok(())
        } else {
            Err(out_of_range(off))
        }
    }

    fn write(&self, off: u64, data: &[u8]) -> Result<(), PoolError> {
        let mut w = self.window();
        self.writable(&mut w, off, data.len() as u64)?;
        let o = off as usize; // In range: checked by `writable`.
        let ok = match &w.temp {
            Some(t) => t.write(o, data),
            None => self.map.write(o, data),
        };
        if ok {
            Ok(())
        } else {
            Err(out_of_range(off))
        }
    }

    fn zero(&self, off: u64, len: u64) -> Result<(), PoolError> {
        let mut w = self.window();
        self.writable(&mut w, off, len)?;
        let (o, l) = (off as usize, len as usize); // In range: checked by `writable`.
        let ok = match &w.temp {
            Some(t) => t.zero(o, l),
            None => self.map.zero(o, l),
        };
        if ok {
            Ok(())
        } else {
            Err(out_of_range(off))
        }
    }

    fn flush(&self, off: u64, len: u64) {
        if let (Ok(o), Ok(l)) = (usize::try_from(off), usize::try_from(len)) {
            self.map.flush(o, l, self.flush);
        }
        self.mark_dirty(off, len);
    }

    fn fence(&self) -> Result<(), PoolError> {
        sys::fence();
        if self.msync {
            let dirty = self.window().dirty.take();
            if let Some((a, b)) = dirty {
                self.map
                    .msync(a as usize, (b - a) as usize)
                    .map_err(|e| self.io("msync", e))?;
            }
        }
        Ok(())
    }

    fn lock_word(&self) -> &AtomicU64 {
        // The lock page is page-aligned, so offset 0 is aligned; `atomic_u64` cannot fail here.
        static FALLBACK: AtomicU64 = AtomicU64::new(0);
        self.lock.atomic_u64(0).unwrap_or(&FALLBACK)
    }

    fn open_window(&self) -> Result<(), PoolError> {
        self.window().open = true;
        Ok(())
    }

    fn close_window(&self) -> Result<(), PoolError> {
        let mut w = self.window();
        w.open = false;
        w.temp = None;
        let runs = std::mem::take(&mut w.runs);
        // One call over the hull of the runs (pages between them are read-only already): fewer
        // syscalls, and the kernel merges the split areas back in one go.
        let lo = runs.iter().map(|r| r.0).min();
        let hi = runs.iter().map(|r| r.1).max();
        if let (Some(a), Some(b)) = (lo, hi) {
            self.map
                .protect(a as usize, (b - a) as usize, false)
                .map_err(|e| self.io("mprotect", e))?;
        }
        Ok(())
    }

    fn seal(&self, off: u64, len: u64) -> Result<(), PoolError> {
        let (o, l) = (
            usize::try_from(off).map_err(|_| out_of_range(off))?,
            usize::try_from(len).map_err(|_| out_of_range(off))?,
        );
        self.map
            .protect(o, l, false)
            .map_err(|e| self.io("mprotect sealed map", e))?;
        self.map.seal(o, l).map_err(|e| self.io("mseal", e))?;
        Ok(())
    }

    fn note_steal(&self) {
        if let Some(w) = self.lock.atomic_u64(8) {
            w.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// A pool file read with `pread`, never written: for inspecting a pool without mapping or recovering it.
#[derive(Debug)]
pub struct ReadMedia {
    file: File,
    path: PathBuf,
    len: u64,
    lock: AtomicU64,
}

impl ReadMedia {
    /// Opens `path` read-only and checks its header.
    pub fn open(path: &Path) -> Result<(ReadMedia, Header), PoolError> {
        let file = File::open(path).map_err(|source| PoolError::Io {
            path: path.to_path_buf(),
            op: "open",
            source,
        })?;
        let header = read_header(&file, path)?;
        Ok((
            ReadMedia {
                file,
                path: path.to_path_buf(),
                len: header.pool_size,
                lock: AtomicU64::new(0),
            },
            header,
        ))
    }
}

impl Media for ReadMedia {
    fn len(&self) -> u64 {
        self.len
    }

    fn read(&self, off: u64, buf: &mut [u8]) -> Result<(), PoolError> {
        if off
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > self.len)
        {
            return Err(out_of_range(off));
        }
        self.file
            .read_exact_at(buf, off)
            .map_err(|source| PoolError::Io {
                path: self.path.clone(),
                op: "read",
                source,
            })
    }

    fn write(&self, _: u64, _: &[u8]) -> Result<(), PoolError> {
        Err(PoolError::ReadOnly)
    }

    fn zero(&self, _: u64, _: u64) -> Result<(), PoolError> {
        Err(PoolError::ReadOnly)
    }

    fn flush(&self, _: u64, _: u64) {}

    fn fence(&self) -> Result<(), PoolError> {
        Ok(())
    }

    fn lock_word(&self) -> &AtomicU64 {
        &self.lock
    }

    fn open_window(&self) -> Result<(), PoolError> {
        Err(PoolError::ReadOnly)
    }

    fn close_window(&self) -> Result<(), PoolError> {
        Ok(())
    }

    fn seal(&self, _: u64, _: u64) -> Result<(), PoolError> {
        Ok(())
    }
}
