//! In-place atomic updates of a pool map's values: the counter idiom (`__sync_fetch_and_add` on a
//! looked-up value) without a transaction per update.
//!
//! [`InPlaceValues`] is a second, writable mapping of one map's slab (the main mapping stays
//! read-only, `docs/pool-format.md` §9). Runtimes translate an atomic read-modify-write on a value's
//! read-only address to the same byte of this alias, after checking that the word lies inside the
//! *value* part of a slot ([`InPlaceValues::value_window`]): never a chain link or a key, so an
//! atomic can change what a program counts, never the map's structure.
//!
//! What an in-place update guarantees (§11 of the format document):
//! - **Failure-atomic per word**: an aligned 4- or 8-byte store is never torn, in memory or in
//!   the file, so a crash leaves each word old or new.
//! - **Visible at once** to every process that maps the pool, and **kept when the process dies**
//!   (the pages are the file's, shared).
//! - **Durable** (against power loss or an OS crash) at the next durability point:
//!   [`InPlaceValues::sync`], called when the handle is dropped (a program unloaded, the runtime
//!   dropped, `moat run` ending), or any later transaction of the pool that writes back these pages.
//!   No `msync` per update.
//! - **Outside transactions**: an atomic is applied when it runs, joins no transaction and is not
//!   rolled back; an update of the same element racing it may overwrite it (as in the kernel, where
//!   `bpf_map_update_elem` racing `lock xadd` on the same value loses one of them), and recovery of
//!   an interrupted transaction restores that transaction's old bytes.

use crate::error::PoolError;
use crate::shared::SharedPoolMap;
use crate::sys::Mapping;
use std::sync::atomic::Ordering;

/// A writable alias of one pool map's slab, for in-place atomic updates of its values.
#[derive(Debug)]
pub struct InPlaceValues {
    pub(crate) map: SharedPoolMap,
    pub(crate) alias: Mapping,
    /// Where the slab starts in `alias`.
    pub(crate) lead: usize,
    /// Pool offset of the slab.
    pub(crate) slab_off: u64,
    /// The slab's address in the pool's read-only mapping.
    pub(crate) read_only_start: usize,
    pub(crate) slab_len: usize,
    pub(crate) elem_size: usize,
    pub(crate) value_off: usize,
    pub(crate) value_size: usize,
}

/// Which bytes of a slab an atomic may change: in every `stride`-byte slot from `start`, the
/// `value_len` bytes at `value_off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueWindow {
    /// The slab's first address in the read-only mapping (programs' pointers).
    pub start: usize,
    /// The slab's length.
    pub len: usize,
    /// The same byte as `start` in the writable alias.
    pub alias: usize,
    /// Slot size.
    pub stride: usize,
    /// Offset of the value in a slot.
    pub value_off: usize,
    /// The value's length.
    pub value_len: usize,
}

impl ValueWindow {
    /// The alias address of the `len` bytes at `addr`, if they lie inside one slot's value.
    pub fn translate(&self, addr: usize, len: usize) -> Option<usize> {
        let rel = addr.checked_sub(self.start)?;
        if rel >= self.len || self.stride == 0 {
            return None;
        }
        let in_slot = (rel % self.stride).checked_sub(self.value_off)?;
        if in_slot.checked_add(len)? > self.value_len {
            return None;
        }
        Some(self.alias + rel)
    }
}

impl InPlaceValues {
    /// Where atomics may write, as addresses in this process.
    pub fn value_window(&self) -> ValueWindow {
        ValueWindow {
            start: self.read_only_start,
            len: self.slab_len,
            alias: self.alias.addr() + self.lead,
            stride: self.elem_size,
            value_off: self.value_off,
            value_len: self.value_size,
        }
    }

    /// Atomically adds `delta` to the 8-byte word at `offset` in the value of `key` and returns the
    /// old word (native byte order, as a program's `lock xadd` sees it): a host-side counter
    /// update with the same guarantees as a program's. `Ok(None)` if the key is absent;
    /// [`PoolError::InvalidOptions`] if the word is not 8-aligned inside the value.
    pub fn fetch_add(
        &self,
        key: &[u8],
        offset: usize,
        delta: u64,
    ) -> Result<Option<u64>, PoolError> {
        let Some(value) = self.map.lookup_ptr(key)? else {
            return Ok(None);
        };
        let addr = (value.as_ptr() as usize)
            .checked_add(offset)
            .filter(|a| a.is_multiple_of(8))
            .and_then(|a| self.value_window().translate(a, 8))
            .ok_or(PoolError::InvalidOptions(
                "an in-place word must be 8-aligned inside the value",
            ))?;
        let word =
            self.alias
                .atomic_u64(addr - self.alias.addr())
                .ok_or(PoolError::InvalidOptions(
                    "an in-place word must lie in the map",
                ))?;
        Ok(Some(word.fetch_add(delta, Ordering::SeqCst)))
    }

    /// The durability point: writes the slab's changed lines and pages back to the pool's media
    /// (cache-line write-back and fence; `msync` of the slab on ordinary files).
    pub fn sync(&self) -> Result<(), PoolError> {
        self.map
            .pool()
            .core
            .m
            .persist(self.slab_off, self.slab_len as u64)
    }
}

impl Drop for InPlaceValues {
    fn drop(&mut self) {
        // The last durability point; an error here has nobody to go to (the data stay in the
        // file's pages, written back by the kernel in its own time).
        let _ = self.sync();
    }
}
