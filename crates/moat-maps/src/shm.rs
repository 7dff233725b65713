//! Map storage another process can map: [`SharedMemory`], a [`MapMemory`] whose every allocation is
//! a file of its own in a directory on a `tmpfs` (`/dev/shm/...`), and `Segment`, a reader's mapping
//! of such a file.
//!
//! # Files
//!
//! A map created in `SharedMemory::new(dir, tag, ..)` puts its `n`-th allocation (counting from 0,
//! in the order the map makes them, see [`SharedMap`](crate::SharedMap)) in file `dir/TAG.n`,
//! created empty (readable by its owner only), sized to the allocation rounded up to whole pages and mapped `MAP_SHARED`. The
//! files are sparse: `tmpfs` gives a page memory when it is first written, so storage grows as a map
//! fills, and every map has segments of its own sized by its `max_entries` (no common segment to
//! outgrow). Files outlive the process that made them (a crash leaves them for the reader); a map
//! that is dropped removes its files, and whoever made the directory removes it.
//!
//! When the map would otherwise live in an isolation domain (`inner`, whose allocations are whole
//! pages no one else uses, such as a domain's arena), each allocation is first taken from `inner` and
//! the file is mapped over it (`MAP_FIXED`), so the value keeps the address the domain's programs
//! may reach; freeing maps anonymous zero pages back before returning the range to `inner`. What
//! programs never address ([`MapMemory::alloc_beside`]: a hash map's key table) is mapped wherever
//! the kernel likes instead, taking no room in the domain.
//!
//! A limit of sparse files: if the `tmpfs` is full when a page of a map is first written, the
//! writing thread gets `SIGBUS`, as with any shared memory on `/dev/shm` (the kernel reserves no
//! room ahead). Reserving every segment whole (`fallocate`) would avoid it at the price of the
//! growth above; this module does not.
//!
//! This module and `mem` are the crate's only `unsafe` code.
#![expect(unsafe_code, reason = "mmap of shared map storage")]

use crate::error::MapError;
use crate::mem::MapMemory;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// The page size shared segments are rounded to.
const PAGE: usize = crate::def::PAGE_SIZE as usize;

fn shared_error(path: &Path, reason: impl ToString) -> MapError {
    MapError::Shared {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// One live allocation: its file, whether its range came from `inner`, and whether this memory made
/// the file (and removes it when freed) or adopted another process's.
#[derive(Debug)]
struct Live {
    path: PathBuf,
    len: usize,
    from_inner: bool,
    made: bool,
}

/// [`MapMemory`] in files another process maps too (see the module docs).
pub struct SharedMemory {
    dir: PathBuf,
    tag: String,
    next: AtomicU32,
    inner: Option<Arc<dyn MapMemory>>,
    live: Mutex<HashMap<usize, Live>>,
    /// Allocations open the files another process made instead of making new ones.
    adopting: bool,
}

impl std::fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMemory")
            .field("dir", &self.dir)
            .field("tag", &self.tag)
            .finish()
    }
}

impl SharedMemory {
    /// Storage for one map in files `dir/TAG.0`, `dir/TAG.1`, ... (`dir` must exist). With `inner`,
    /// every allocation also takes its address range from `inner` (see the module docs); `inner`
    /// must hand out ranges of whole pages that nothing else touches.
    pub fn new(
        dir: impl Into<PathBuf>,
        tag: impl Into<String>,
        inner: Option<Arc<dyn MapMemory>>,
    ) -> Arc<SharedMemory> {
        SharedMemory::made(dir.into(), tag.into(), inner, false)
    }

    /// The storage of map `tag` that another process made in `dir` (with [`SharedMemory::new`]),
    /// for a second writer of it ([`Map::adopt`](crate::Map::adopt)): allocation `n` maps the
    /// existing file `dir/TAG.n` with its contents (over `inner`'s range as for `new`), and freeing
    /// it leaves the file to its maker. The files must exist, each at least as long as the
    /// allocation ([`MapError::Shared`] otherwise).
    pub fn adopting(
        dir: impl Into<PathBuf>,
        tag: impl Into<String>,
        inner: Option<Arc<dyn MapMemory>>,
    ) -> Arc<SharedMemory> {
        SharedMemory::made(dir.into(), tag.into(), inner, true)
    }

    fn made(
        dir: PathBuf,
        tag: String,
        inner: Option<Arc<dyn MapMemory>>,
        adopting: bool,
    ) -> Arc<SharedMemory> {
        Arc::new(SharedMemory {
            dir,
            tag,
            next: AtomicU32::new(0),
            inner,
            live: Mutex::new(HashMap::new()),
            adopting,
        })
    }

    /// The file of allocation `n` of map `tag` in `dir`.
    pub(crate) fn file(dir: &Path, tag: &str, n: u32) -> PathBuf {
        dir.join(format!("{tag}.{n}"))
    }

    /// Maps `file` (`len` bytes), over an allocation of `inner` when `over_inner`.
    fn map_file(
        &self,
        file: &File,
        path: &Path,
        len: usize,
        over_inner: bool,
    ) -> Result<NonNull<u8>, MapError> {
        let inner = match (&self.inner, over_inner) {
            (Some(inner), true) => Some(inner.alloc(len, PAGE)?),
            _ => None,
        };
        let (addr, flags) = match inner {
            Some(p) => (p.as_ptr().cast(), libc::MAP_SHARED | libc::MAP_FIXED),
            None => (std::ptr::null_mut(), libc::MAP_SHARED),
        };
        // SAFETY: a shared mapping of our own file. With `MAP_FIXED` the range is a whole-page
        // allocation from `inner` that we own exclusively (the contract of `SharedMemory::new`), so
        // replacing its pages affects no other object; without it the kernel picks a free range.
        let got = unsafe {
            libc::mmap(
                addr,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                file.as_raw_fd(),
                0,
            )
        };
        if got == libc::MAP_FAILED {
            let err = std::io::Error::last_os_error();
            if let (Some(inner), Some(p)) = (&self.inner, inner) {
                // SAFETY: `p` came from `inner.alloc(len, PAGE)` just above and was not mapped over.
                unsafe { inner.free(p, len, PAGE) };
            }
            return Err(shared_error(path, format!("mmap: {err}")));
        }
        NonNull::new(got.cast()).ok_or_else(|| shared_error(path, "mmap returned null"))
    }
}

impl SharedMemory {
    /// A new file of at least `size` bytes, mapped (over `inner`'s range when `over_inner`).
    fn alloc_file(
        &self,
        size: usize,
        align: usize,
        over_inner: bool,
    ) -> Result<NonNull<u8>, MapError> {
        if size == 0 || align > PAGE || !align.is_power_of_two() {
            return Err(MapError::OutOfMemory { size });
        }
        let len = size
            .checked_next_multiple_of(PAGE)
            .ok_or(MapError::OutOfMemory { size })?;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = SharedMemory::file(&self.dir, &self.tag, n);
        let made = !self.adopting;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(made)
            .mode(0o600)
            .open(&path)
            .map_err(|e| shared_error(&path, e))?;
        let remove = |path: &Path| {
            if made {
                let _ = std::fs::remove_file(path);
            }
        };
        if made {
            if let Err(e) = file.set_len(len as u64) {
                remove(&path);
                return Err(shared_error(&path, e));
            }
        } else {
            let have = file.metadata().map_err(|e| shared_error(&path, e))?.len();
            if have < len as u64 {
                return Err(shared_error(
                    &path,
                    format!("{have} bytes, the map needs {len}"),
                ));
            }
        }
        let ptr = match self.map_file(&file, &path, len, over_inner) {
            Ok(p) => p,
            Err(e) => {
                remove(&path);
                return Err(e);
            }
        };
        let live = Live {
            path,
            len,
            from_inner: over_inner && self.inner.is_some(),
            made,
        };
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ptr.as_ptr() as usize, live);
        Ok(ptr)
    }
}

// SAFETY: `alloc` and `alloc_beside` return a fresh `MAP_SHARED` mapping (`alloc`'s placed over an
// allocation of `inner` that no one else uses, when there is an `inner`) of a file of at least
// `size` bytes: a new file, zero-filled, or when adopting another process's map, that map's own
// file, whose contents are what the map's code wrote there (the contract `MapMemory` allows an
// adopted map: it reads its state back instead of assuming zeroes), page-aligned (every `align` this crate asks
// for is at most a page; larger ones are refused), and mapped until `free` unmaps it; mappings may
// be used from any thread.
unsafe impl MapMemory for SharedMemory {
    fn alloc(&self, size: usize, align: usize) -> Result<NonNull<u8>, MapError> {
        self.alloc_file(size, align, true)
    }

    /// Outside `inner`'s range: what programs never address does not take room in it.
    fn alloc_beside(&self, size: usize, align: usize) -> Result<NonNull<u8>, MapError> {
        self.alloc_file(size, align, false)
    }

    unsafe fn free(&self, ptr: NonNull<u8>, _size: usize, _align: usize) {
        let addr = ptr.as_ptr() as usize;
        let Some(live) = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&addr)
        else {
            return;
        };
        if live.made {
            let _ = std::fs::remove_file(&live.path);
        }
        match (&self.inner, live.from_inner) {
            (Some(inner), true) => {
                // SAFETY: the range is our mapping over `inner`'s allocation, no longer used (the
                // caller's contract); anonymous zero pages take the place of the file's pages, as
                // `inner` had them before.
                let got = unsafe {
                    libc::mmap(
                        ptr.as_ptr().cast(),
                        live.len,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                        -1,
                        0,
                    )
                };
                if got != libc::MAP_FAILED {
                    // SAFETY: `ptr` came from `inner.alloc(live.len, PAGE)` in `map_file`, freed once
                    // (its `live` entry is gone).
                    unsafe { inner.free(ptr, live.len, PAGE) };
                }
                // (If the range could not be restored it stays mapped and is not reused: leaked.)
            }
            _ => {
                // SAFETY: our own mapping of `live.len` bytes, no longer used (the caller's contract).
                unsafe { libc::munmap(ptr.as_ptr().cast(), live.len) };
            }
        }
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn adopts(&self) -> bool {
        self.adopting
    }
}

/// A reader's mapping of one shared file (read and write: a ring buffer's reader moves its
/// consumer position), unmapped on drop.
#[derive(Debug)]
pub(crate) struct Segment {
    ptr: NonNull<u8>,
    len: usize,
    /// The file, to find which parts were ever written ([`Segment::data_ranges`]).
    file: File,
}

// SAFETY: the mapping is plain shared memory owned by this value; this crate accesses it through
// atomics only (`Block`).
unsafe impl Send for Segment {}
// SAFETY: as for `Send`.
unsafe impl Sync for Segment {}

impl Segment {
    /// Maps the whole of file `path`, which must hold at least `min_len` bytes.
    pub(crate) fn open(path: &Path, min_len: usize) -> Result<Arc<Segment>, MapError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| shared_error(path, e))?;
        let len = file.metadata().map_err(|e| shared_error(path, e))?.len();
        let len = usize::try_from(len).map_err(|e| shared_error(path, e))?;
        if len < min_len || len == 0 {
            return Err(shared_error(
                path,
                format!("{len} bytes, expected at least {min_len}"),
            ));
        }
        // SAFETY: a new shared mapping of a file we opened read-write; the kernel picks the range.
        // Files of shared maps never shrink while they exist (they are only removed), so the
        // mapping never reaches past the end of its file.
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
            return Err(shared_error(
                path,
                format!("mmap: {}", std::io::Error::last_os_error()),
            ));
        }
        let ptr = NonNull::new(got.cast()).ok_or_else(|| shared_error(path, "mmap: null"))?;
        Ok(Arc::new(Segment { ptr, len, file }))
    }

    /// The byte ranges of the file that hold data, in order: everything else is a hole, never
    /// written, so it reads as zeroes. Readers skip holes rather than read them, since reading a
    /// hole of a `tmpfs` file through a shared mapping gives it memory: a scan of a sparse map would
    /// otherwise make it as large as its `max_entries`. (Page-granular; the whole file when the
    /// file system cannot tell.)
    pub(crate) fn data_ranges(&self) -> Vec<std::ops::Range<usize>> {
        let fd = self.file.as_raw_fd();
        let mut ranges = Vec::new();
        let mut off: usize = 0;
        while off < self.len {
            let Ok(at) = libc::off_t::try_from(off) else {
                break;
            };
            // SAFETY: `lseek` on our own descriptor has no memory effects; it moves the file's
            // offset, which nothing else uses.
            let data = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
            if data < 0 {
                if std::io::Error::last_os_error().raw_os_error() != Some(libc::ENXIO) {
                    // SEEK_DATA unsupported: all of it.
                    return std::iter::once(0..self.len).collect();
                }
                break;
            }
            // SAFETY: as above.
            let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
            let (Ok(start), Ok(end)) = (usize::try_from(data), usize::try_from(hole)) else {
                return std::iter::once(0..self.len).collect();
            };
            let end = end.min(self.len);
            if end <= start {
                break;
            }
            ranges.push(start..end);
            off = end;
        }
        ranges
    }

    /// A block over the first `len` bytes of the mapping (at most its length).
    pub(crate) fn block(self: &Arc<Segment>, len: usize) -> Option<crate::mem::Block> {
        if len == 0 || len > self.len {
            return None;
        }
        let owner: Arc<dyn Send + Sync> = self.clone();
        // SAFETY: the range is inside our mapping (checked), page-aligned, read-write, and stays
        // mapped while `owner` (this segment) lives; `Block` accesses it through atomics only.
        Some(unsafe { crate::mem::Block::view(self.ptr, len, owner) })
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: our own mapping; every block over it holds an `Arc` of this segment, so none is
        // left when it is dropped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HeapMemory, Map, MapDef, MapType, BPF_ANY};
    use std::sync::atomic::AtomicUsize;

    /// Heap memory that counts the bytes it hands out.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    // SAFETY: every call is `HeapMemory`'s, which meets the contract.
    unsafe impl MapMemory for Counting {
        fn alloc(&self, size: usize, align: usize) -> Result<NonNull<u8>, MapError> {
            self.0.fetch_add(size, Ordering::Relaxed);
            HeapMemory.alloc(size, align)
        }

        unsafe fn free(&self, ptr: NonNull<u8>, size: usize, align: usize) {
            self.0.fetch_sub(size, Ordering::Relaxed);
            // SAFETY: the caller's contract, passed on to the allocator that made `ptr`.
            unsafe { HeapMemory.free(ptr, size, align) };
        }
    }

    #[test]
    fn values_take_inner_ranges_and_key_tables_do_not() {
        let dir = std::env::temp_dir().join(format!("moat-maps-shm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("directory");
        let inner = Arc::new(Counting::default());
        let memory: Arc<dyn MapMemory> =
            SharedMemory::new(&dir, "h", Some(inner.clone() as Arc<dyn MapMemory>));
        // 1 000 values of 8 bytes (two pages) and 1 000 keys of 16 (four pages of table).
        let map = Map::create_with(MapDef::new(MapType::Hash, 8, 8, 1000), memory, 1).expect("map");
        assert_eq!(inner.0.load(Ordering::Relaxed), 2 * PAGE, "only the values");
        map.update(&[1; 8], &[2; 8], BPF_ANY).expect("update");
        let p = map.lookup_ptr(&[1; 8], 0).expect("present");
        assert!(map.value_regions()[0].contains(p.as_ptr() as usize, 8));
        let table = std::fs::metadata(dir.join("h.1")).expect("key table").len();
        assert_eq!(table, 4 * PAGE as u64);
        drop(map);
        assert_eq!(inner.0.load(Ordering::Relaxed), 0, "returned");
        assert_eq!(
            std::fs::read_dir(&dir).expect("dir").count(),
            0,
            "files removed"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
