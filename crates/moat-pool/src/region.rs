//! Raw shared regions: a file mapped shared and writable, with the pool's mapping primitives
//! (`MAP_SYNC` where the file system is DAX, the CPU's best cache-line write-back and `sfence`) and
//! its notion of a live process (id plus start time, as the pool lock records holders, §3 of
//! `docs/pool-format.md`), for structures that keep their own crash rules instead of the undo log —
//! message rings (`moat-omb`), whose consistency comes from sequence numbers published last.
//!
//! A [`Region`] hands out its base address; what is stored there, and how concurrent processes
//! access it, is the user's protocol. Nothing here is written through the pool's undo log, and a
//! region file is not a pool file.

use crate::error::PoolError;
use crate::lock;
use crate::sys::{self, FlushKind, Mapping};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

/// A file mapped shared and writable by every process that opens it, unmapped on drop.
#[derive(Debug)]
pub struct Region {
    path: PathBuf,
    _file: File,
    map: Mapping,
    sync: bool,
    flush: FlushKind,
}

impl Region {
    /// Creates the file at `path` (which must not exist) with `len` zero bytes and maps it.
    pub fn create(path: impl AsRef<Path>, len: u64) -> Result<Region, PoolError> {
        let path = path.as_ref();
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| io(path, "create", e))?;
        if let Err(e) = file.set_len(len) {
            let _ = std::fs::remove_file(path);
            return Err(io(path, "set_len", e));
        }
        Region::map(path, file)
    }

    /// Opens and maps the existing file at `path`, all of it.
    pub fn open(path: impl AsRef<Path>) -> Result<Region, PoolError> {
        let path = path.as_ref();
        let file = File::options()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io(path, "open", e))?;
        Region::map(path, file)
    }

    fn map(path: &Path, file: File) -> Result<Region, PoolError> {
        let len = file.metadata().map_err(|e| io(path, "stat", e))?.len();
        let len = usize::try_from(len)
            .map_err(|_| PoolError::InvalidOptions("region larger than the address space"))?;
        let (map, flags) =
            Mapping::map(file.as_raw_fd(), 0, len, true, true).map_err(|e| io(path, "mmap", e))?;
        Ok(Region {
            path: path.to_path_buf(),
            _file: file,
            map,
            sync: flags.sync,
            flush: sys::flush_kind(),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The mapping's length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the region is empty (never: mappings have at least one byte).
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The address of the first byte in this process, page-aligned, valid while `self` lives. Other
    /// processes may write the region at any time: access it with atomics or copies that tolerate
    /// concurrent change, never through Rust references to plain data.
    pub fn base(&self) -> NonNull<u8> {
        // A mapping is never empty, so offset 0 is inside it.
        self.map.ptr_at(0).unwrap_or(NonNull::dangling())
    }

    /// Whether the file is mapped with `MAP_SYNC` (a DAX file system: persistent or CXL memory).
    pub fn is_sync(&self) -> bool {
        self.sync
    }

    /// The write-back instruction [`flush`](Region::flush) uses.
    pub fn flush_kind(&self) -> FlushKind {
        self.flush
    }

    /// Writes back every cache line of `off..off + len` (clamped to the region), without a fence.
    pub fn flush(&self, off: usize, len: usize) {
        self.map.flush(off, len, self.flush);
    }

    /// Orders earlier write-backs and stores before later stores (`sfence`).
    pub fn fence(&self) {
        sys::fence();
    }
}

fn io(path: &Path, op: &'static str, source: std::io::Error) -> PoolError {
    PoolError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// This process's identity word: `pid | (start_time_low32 << 32)` (start time in clock ticks since
/// boot, as `/proc/<pid>/stat` says), so that a reused process id is not mistaken for it.
pub fn process_word() -> u64 {
    let pid = std::process::id();
    let start = lock::thread_stat(pid).map_or(0, |(_, s)| s);
    u64::from(pid) | ((start & 0xffff_ffff) << 32)
}

/// Whether the process recorded in `word` (a [`process_word`]) is certainly dead: exited, a zombie,
/// or its id reused by a process that started at another time. 0 (nobody) counts as dead.
pub fn process_dead(word: u64) -> bool {
    word == 0 || lock::holder_dead(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_is_shared_between_two_mappings() {
        let path = std::env::temp_dir().join(format!("moat-region-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let a = Region::create(&path, 8192).unwrap();
        let b = Region::open(&path).unwrap();
        assert_eq!((a.len(), b.len()), (8192, 8192));
        assert!(Region::create(&path, 4096).is_err());
        a.flush(0, 128);
        a.fence();
        assert!(!process_dead(process_word()));
        assert!(process_dead(0));
        std::fs::remove_file(&path).unwrap();
    }
}
