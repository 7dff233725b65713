//! Maps: `BPF_MAP_CREATE` and the element commands.

use crate::{errno_of, sys, unavailable, KernelError};
use moat_abi::MapType;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

/// Whether user space sees one value slot per possible CPU.
pub(crate) fn is_per_cpu(map_type: u32) -> bool {
    MapType::from_u32(map_type).is_some_and(MapType::is_percpu)
}

/// Which map command failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapOp {
    /// `BPF_MAP_CREATE`.
    Create,
    /// `BPF_MAP_LOOKUP_ELEM`.
    Lookup,
    /// `BPF_MAP_UPDATE_ELEM`.
    Update,
    /// `BPF_MAP_DELETE_ELEM`.
    Delete,
    /// `BPF_MAP_GET_NEXT_KEY`.
    NextKey,
    /// `BPF_MAP_LOOKUP_AND_DELETE_ELEM`.
    LookupAndDelete,
}

impl fmt::Display for MapOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MapOp::Create => "BPF_MAP_CREATE",
            MapOp::Lookup => "BPF_MAP_LOOKUP_ELEM",
            MapOp::Update => "BPF_MAP_UPDATE_ELEM",
            MapOp::Delete => "BPF_MAP_DELETE_ELEM",
            MapOp::NextKey => "BPF_MAP_GET_NEXT_KEY",
            MapOp::LookupAndDelete => "BPF_MAP_LOOKUP_AND_DELETE_ELEM",
        })
    }
}

/// A kernel map; the descriptor is closed on drop (the map lives on while a loaded program uses it).
#[derive(Debug)]
pub struct Map {
    inner: sys::MapFd,
    map_type: u32,
    value_size: u32,
    max_entries: u32,
}

fn map_err(op: MapOp, e: &io::Error) -> KernelError {
    KernelError::Map {
        op,
        errno: errno_of(e),
    }
}

/// Creates a map (`BPF_MAP_CREATE`). `map_type` is a [`MapType`] or any `BPF_MAP_TYPE_*` number;
/// `flags` are `BPF_F_*` map flags ([`moat_abi::BPF_F_NO_PREALLOC`], ...).
pub fn create_map(
    map_type: impl Into<u32>,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
) -> Result<Map, KernelError> {
    create(
        map_type.into(),
        key_size,
        value_size,
        max_entries,
        flags,
        None,
    )
}

/// Creates a map of maps (`BPF_MAP_TYPE_ARRAY_OF_MAPS`, `BPF_MAP_TYPE_HASH_OF_MAPS`): its values
/// are maps like `inner` (the kernel takes the inner maps' type and sizes from it); user space
/// stores map descriptors as 4-byte values.
pub fn create_map_of_maps(
    map_type: impl Into<u32>,
    key_size: u32,
    max_entries: u32,
    flags: u32,
    inner: &Map,
) -> Result<Map, KernelError> {
    create(
        map_type.into(),
        key_size,
        4,
        max_entries,
        flags,
        Some(inner.inner.fd()),
    )
}

fn create(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
    inner_map: Option<std::os::fd::BorrowedFd<'_>>,
) -> Result<Map, KernelError> {
    let inner = sys::MapFd::create(
        map_type,
        key_size,
        value_size,
        max_entries,
        flags,
        inner_map,
    )
    .map_err(|e| unavailable(errno_of(&e)).unwrap_or_else(|| map_err(MapOp::Create, &e)))?;
    Ok(Map {
        inner,
        map_type,
        value_size,
        max_entries,
    })
}

/// `Ok(None)` for `ENOENT`, the error otherwise.
fn none_if_enoent<T>(op: MapOp, r: io::Result<T>) -> Result<Option<T>, KernelError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(map_err(op, &e)),
    }
}

impl Map {
    /// The raw descriptor: the `imm` of a `lddw dst, map_fd` (`src = 1`, `BPF_PSEUDO_MAP_FD`).
    pub fn fd(&self) -> RawFd {
        self.inner.fd().as_raw_fd()
    }

    /// The `BPF_MAP_TYPE_*` it was created with.
    pub fn map_type(&self) -> u32 {
        self.map_type
    }

    /// Key size in bytes.
    pub fn key_size(&self) -> usize {
        self.inner.key_size()
    }

    /// Value size in bytes as the map was created (per CPU, for per-CPU maps).
    pub fn value_size(&self) -> u32 {
        self.value_size
    }

    /// Bytes of a value as user space reads and writes it: `value_size`, or for per-CPU maps
    /// `round_up(value_size, 8) * possible_cpus()`, CPU 0's slot first.
    pub fn value_buf_size(&self) -> usize {
        self.inner.value_buf()
    }

    /// The `max_entries` it was created with.
    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }

    fn check(&self, what: &'static str, expected: usize, found: usize) -> Result<(), KernelError> {
        if expected == found {
            Ok(())
        } else {
            Err(KernelError::BadLength {
                what,
                expected,
                found,
            })
        }
    }

    /// Keys of zero-sized-key maps (queue, stack) are passed as null.
    fn key_arg<'a>(&self, key: &'a [u8]) -> Result<Option<&'a [u8]>, KernelError> {
        self.check("key", self.key_size(), key.len())?;
        Ok((!key.is_empty()).then_some(key))
    }

    /// Stores `value` at `key` (`BPF_MAP_UPDATE_ELEM`); `flags` is [`BPF_ANY`], [`BPF_NOEXIST`] or
    /// [`BPF_EXIST`] (possibly with `BPF_F_LOCK`). For a queue or stack, `key` is empty: a push.
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), KernelError> {
        let key = self.key_arg(key)?;
        self.check("value", self.value_buf_size(), value.len())?;
        self.inner
            .update(key, value, flags)
            .map_err(|e| map_err(MapOp::Update, &e))
    }

    /// The value at `key` (`BPF_MAP_LOOKUP_ELEM`), `None` if absent. For a queue or stack, `key` is
    /// empty: a peek.
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KernelError> {
        let key = self.key_arg(key)?;
        none_if_enoent(MapOp::Lookup, self.inner.lookup(key, false))
    }

    /// Removes and returns the value at `key` (`BPF_MAP_LOOKUP_AND_DELETE_ELEM`), `None` if absent; for
    /// a queue or stack, `key` is empty: a pop.
    pub fn lookup_and_delete(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KernelError> {
        let key = self.key_arg(key)?;
        none_if_enoent(MapOp::LookupAndDelete, self.inner.lookup(key, true))
    }

    /// Removes `key` (`BPF_MAP_DELETE_ELEM`); a missing key is a [`KernelError::Map`] with `ENOENT`.
    pub fn delete(&self, key: &[u8]) -> Result<(), KernelError> {
        self.check("key", self.key_size(), key.len())?;
        self.inner
            .delete(key)
            .map_err(|e| map_err(MapOp::Delete, &e))
    }

    /// The key after `key`, or the first key for `None` (`BPF_MAP_GET_NEXT_KEY`); `None` at the end.
    pub fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, KernelError> {
        if let Some(k) = key {
            self.check("key", self.key_size(), k.len())?;
        }
        none_if_enoent(MapOp::NextKey, self.inner.next_key(key))
    }

    /// All keys, in the kernel's iteration order (at most `max_entries`, should the map change
    /// underneath and iteration restart).
    pub fn keys(&self) -> Result<Vec<Vec<u8>>, KernelError> {
        let mut keys = Vec::new();
        while keys.len() < self.max_entries as usize {
            match self.next_key(keys.last().map(Vec::as_slice))? {
                Some(k) => keys.push(k),
                None => break,
            }
        }
        Ok(keys)
    }
}

impl AsFd for Map {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.fd()
    }
}
