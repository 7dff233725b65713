//! Stack trace maps (`BPF_MAP_TYPE_STACK_TRACE`), as the kernel's `stackmap.c` keeps them.
//!
//! A stack — a list of instruction addresses, innermost first — is stored under an id that is
//! its hash masked to the bucket count (`max_entries` rounded up to a power of two); the id is
//! what `bpf_get_stackid` returns and what user space looks up. Two stacks with the same id
//! collide: the second gets `-EEXIST` unless `BPF_F_REUSE_STACKID` lets it replace the first;
//! `BPF_F_FAST_STACK_CMP` takes a matching hash for a matching stack without comparing frames.
//! Programs cannot look stacks up (the verifier refuses it, as the kernel's does); user space
//! reads one as `value_size` bytes, the addresses followed by zeros, and deletes it.

use crate::def::MapDef;
use crate::error::MapError;
use moat_abi::{BPF_F_FAST_STACK_CMP, BPF_F_REUSE_STACKID};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::{Mutex, MutexGuard};

#[derive(Debug)]
struct Bucket {
    hash: u64,
    ips: Box<[u64]>,
}

/// A stack trace map.
#[derive(Debug)]
pub(crate) struct StackTraceMap {
    /// Frames per stack (`value_size / 8`).
    depth: usize,
    buckets: Box<[Mutex<Option<Bucket>>]>,
}

/// How many buckets a map of `max_entries` has: the next power of two, or `None` past `u32`.
pub(crate) fn bucket_count(max_entries: u32) -> Option<u32> {
    max_entries.checked_next_power_of_two()
}

impl StackTraceMap {
    pub(crate) fn new(def: &MapDef) -> Result<StackTraceMap, MapError> {
        let n = bucket_count(def.max_entries).unwrap_or(0) as usize;
        Ok(StackTraceMap {
            depth: def.value_size as usize / 8,
            buckets: (0..n).map(|_| Mutex::new(None)).collect(),
        })
    }

    fn bucket(&self, id: u32) -> Option<MutexGuard<'_, Option<Bucket>>> {
        self.buckets
            .get(id as usize)
            .map(|b| b.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn occupied(&self, i: usize) -> bool {
        self.buckets[i]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// The most frames one stack keeps.
    pub(crate) fn depth(&self) -> usize {
        self.depth
    }

    /// Stored stacks.
    pub(crate) fn len(&self) -> usize {
        (0..self.buckets.len())
            .filter(|&i| self.occupied(i))
            .count()
    }

    /// How many ids there are (what a walk over the keys may visit).
    pub(crate) fn ids(&self) -> usize {
        self.buckets.len()
    }

    /// `__bpf_get_stackid` after the walk: stores `ips` (already truncated to the map's depth and
    /// past the skipped frames) and returns its id.
    pub(crate) fn store(&self, ips: &[u64], skip: u64, flags: u64) -> Result<u32, MapError> {
        let ips = &ips[..ips.len().min(self.depth)];
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one((ips, skip));
        let id = (hash as usize & (self.buckets.len() - 1)) as u32;
        let mut bucket = self.bucket(id).ok_or(MapError::NotFound)?;
        if let Some(old) = bucket.as_ref() {
            if old.hash == hash && (flags & BPF_F_FAST_STACK_CMP != 0 || *old.ips == *ips) {
                return Ok(id);
            }
            if flags & BPF_F_REUSE_STACKID == 0 {
                return Err(MapError::Exists);
            }
        }
        *bucket = Some(Bucket {
            hash,
            ips: ips.into(),
        });
        Ok(id)
    }

    /// `bpf_stackmap_copy`: the stack under `id` as `out.len()` bytes, zero-padded.
    pub(crate) fn lookup_into(&self, id: u32, out: &mut [u8]) -> Result<(), MapError> {
        let bucket = self.bucket(id).ok_or(MapError::NotFound)?;
        let stack = bucket.as_ref().ok_or(MapError::NotFound)?;
        out.fill(0);
        for (dst, ip) in out.chunks_exact_mut(8).zip(stack.ips.iter()) {
            dst.copy_from_slice(&ip.to_ne_bytes());
        }
        Ok(())
    }

    /// `stack_map_delete_elem`.
    pub(crate) fn delete(&self, id: u32) -> Result<(), MapError> {
        let mut bucket = self.bucket(id).ok_or(MapError::InvalidOp {
            map_type: crate::def::MapType::StackTrace,
            op: "delete of an id past the last bucket",
        })?;
        bucket.take().map(|_| ()).ok_or(MapError::NotFound)
    }

    /// `stack_map_get_next_key`: the first stored id after `id` (from the start when `id` is
    /// `None` or past the end).
    pub(crate) fn next_key(&self, id: Option<u32>) -> Result<u32, MapError> {
        let start = match id {
            Some(i) if (i as usize) < self.buckets.len() => i as usize + 1,
            _ => 0,
        };
        (start..self.buckets.len())
            .find(|&i| self.occupied(i))
            .map(|i| i as u32)
            .ok_or(MapError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::def::MapType;

    fn map(entries: u32, depth: u32) -> StackTraceMap {
        StackTraceMap::new(&MapDef::new(MapType::StackTrace, 4, depth * 8, entries)).unwrap()
    }

    #[test]
    fn same_stack_same_id_and_lookup_pads_with_zeros() {
        let m = map(100, 4);
        assert_eq!(m.ids(), 128);
        let a = m.store(&[1, 2, 3], 0, 0).unwrap();
        assert_eq!(m.store(&[1, 2, 3], 0, 0).unwrap(), a);
        let mut out = [0xffu8; 32];
        m.lookup_into(a, &mut out).unwrap();
        let words: Vec<u64> = out
            .chunks(8)
            .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(words, [1, 2, 3, 0]);
        assert_eq!(m.len(), 1);
        assert_eq!(m.next_key(None).unwrap(), a);
        assert!(matches!(m.next_key(Some(a)), Err(MapError::NotFound)));
        m.delete(a).unwrap();
        assert!(matches!(m.delete(a), Err(MapError::NotFound)));
        assert!(matches!(m.delete(1 << 20), Err(MapError::InvalidOp { .. })));
    }

    #[test]
    fn deeper_stacks_are_truncated_to_the_value_size() {
        let m = map(8, 2);
        let a = m.store(&[7, 8, 9, 10], 0, 0).unwrap();
        let mut out = [0u8; 16];
        m.lookup_into(a, &mut out).unwrap();
        assert_eq!(u64::from_ne_bytes(out[8..].try_into().unwrap()), 8);
    }

    #[test]
    fn collisions_fail_unless_reuse_is_asked_for() {
        // One bucket: every stack collides.
        let m = map(1, 4);
        let a = m.store(&[1], 0, 0).unwrap();
        assert!(matches!(m.store(&[2], 0, 0), Err(MapError::Exists)));
        assert_eq!(m.store(&[2], 0, BPF_F_REUSE_STACKID).unwrap(), a);
        let mut out = [0u8; 32];
        m.lookup_into(a, &mut out).unwrap();
        assert_eq!(out[0], 2);
    }
}
