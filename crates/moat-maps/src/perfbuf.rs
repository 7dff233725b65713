//! Perf event arrays (`BPF_MAP_TYPE_PERF_EVENT_ARRAY`): the per-CPU buffers `bpf_perf_event_output`
//! writes records into and user space drains.
//!
//! In the kernel each slot holds a perf event whose ring buffer user space maps; a record goes to the
//! slot of the CPU the program runs on (`BPF_F_CURRENT_CPU`) or to an explicit slot, and a full ring
//! drops it (`-ENOSPC`) and counts it lost. Here every slot is a bounded queue of records
//! ([`PERF_BUFFER_BYTES`] per slot, the size of libbpf's default 8-page buffers' payload order of
//! magnitude); the values user space writes into slots (perf event descriptors, in the kernel) are
//! kept and read back as written, so loaders that fill them work unchanged. Unlike the kernel, a
//! slot with no value stored still takes records (moat's own tracer drains every slot).

use crate::def::MapDef;
use crate::error::MapError;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Bytes of records one slot holds before new ones are dropped (counted in [`PerfEventArray::lost`]).
pub const PERF_BUFFER_BYTES: usize = 256 * 1024;

/// `bpf_perf_event_output`'s flag: the record goes to the current CPU's slot.
pub const BPF_F_CURRENT_CPU: u64 = 0xffff_ffff;
/// `bpf_perf_event_output`'s flags: the slot index (or [`BPF_F_CURRENT_CPU`]).
pub const BPF_F_INDEX_MASK: u64 = 0xffff_ffff;

#[derive(Debug, Default)]
struct Slot {
    /// The value user space stored (a perf event descriptor, in the kernel).
    value: Option<u32>,
    records: VecDeque<Vec<u8>>,
    bytes: usize,
}

/// A perf event array.
#[derive(Debug)]
pub(crate) struct PerfEventArray {
    slots: Box<[Mutex<Slot>]>,
    lost: AtomicU64,
}

impl PerfEventArray {
    pub(crate) fn new(def: &MapDef) -> PerfEventArray {
        PerfEventArray {
            slots: (0..def.max_entries).map(|_| Mutex::default()).collect(),
            lost: AtomicU64::new(0),
        }
    }

    fn slot(&self, index: u32) -> Option<MutexGuard<'_, Slot>> {
        self.slots
            .get(index as usize)
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// `bpf_perf_event_output` from a program on `cpu`: appends `data` to the slot `flags` names.
    pub(crate) fn output(&self, data: &[u8], flags: u64, cpu: usize) -> Result<(), MapError> {
        if flags & !BPF_F_INDEX_MASK != 0 {
            return Err(MapError::InvalidFlags { flags });
        }
        let index = match flags & BPF_F_INDEX_MASK {
            BPF_F_CURRENT_CPU => u32::try_from(cpu).unwrap_or(u32::MAX),
            i => i as u32,
        };
        let mut slot = self.slot(index).ok_or(MapError::IndexOutOfRange {
            index,
            max_entries: self.slots.len() as u32,
        })?;
        if slot.bytes + data.len() > PERF_BUFFER_BYTES {
            drop(slot);
            self.lost.fetch_add(1, Ordering::Relaxed);
            return Err(MapError::NoSpace);
        }
        slot.bytes += data.len();
        slot.records.push_back(data.to_vec());
        Ok(())
    }

    /// Hands every record to `f` as `(slot, record)`, oldest first per slot; how many.
    pub(crate) fn consume(&self, f: &mut dyn FnMut(u32, &[u8])) -> usize {
        let mut n = 0;
        for index in 0..self.slots.len() as u32 {
            let records: Vec<Vec<u8>> = match self.slot(index) {
                Some(mut s) => {
                    s.bytes = 0;
                    s.records.drain(..).collect()
                }
                None => continue,
            };
            for r in &records {
                f(index, r);
            }
            n += records.len();
        }
        n
    }

    /// Records dropped because their slot was full.
    pub(crate) fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Slots with a value stored.
    pub(crate) fn len(&self) -> usize {
        (0..self.slots.len() as u32)
            .filter(|&i| self.slot(i).is_some_and(|s| s.value.is_some()))
            .count()
    }

    /// `BPF_MAP_UPDATE_ELEM` from user space: stores the slot's value.
    pub(crate) fn update(&self, index: u32, value: u32) -> Result<(), MapError> {
        let mut slot = self.slot(index).ok_or(MapError::IndexOutOfRange {
            index,
            max_entries: self.slots.len() as u32,
        })?;
        slot.value = Some(value);
        Ok(())
    }

    /// `BPF_MAP_LOOKUP_ELEM`: the slot's value.
    pub(crate) fn lookup(&self, index: u32) -> Result<u32, MapError> {
        self.slot(index)
            .and_then(|s| s.value)
            .ok_or(MapError::NotFound)
    }

    /// `BPF_MAP_DELETE_ELEM`: forgets the slot's value.
    pub(crate) fn delete(&self, index: u32) -> Result<(), MapError> {
        let mut slot = self.slot(index).ok_or(MapError::IndexOutOfRange {
            index,
            max_entries: self.slots.len() as u32,
        })?;
        slot.value.take().map(|_| ()).ok_or(MapError::NotFound)
    }

    /// The first slot with a value after `index`.
    pub(crate) fn next_key(&self, index: Option<u32>) -> Result<u32, MapError> {
        let start = match index {
            Some(i) if (i as usize) < self.slots.len() => i + 1,
            _ => 0,
        };
        (start..self.slots.len() as u32)
            .find(|&i| self.slot(i).is_some_and(|s| s.value.is_some()))
            .ok_or(MapError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::def::MapType;

    fn array(n: u32) -> PerfEventArray {
        PerfEventArray::new(&MapDef::new(MapType::PerfEventArray, 4, 4, n))
    }

    #[test]
    fn records_go_to_the_named_or_current_slot() {
        let a = array(4);
        a.output(b"one", BPF_F_CURRENT_CPU, 2).unwrap();
        a.output(b"two", 1, 3).unwrap();
        let mut seen = Vec::new();
        assert_eq!(a.consume(&mut |slot, r| seen.push((slot, r.to_vec()))), 2);
        assert_eq!(seen, [(1, b"two".to_vec()), (2, b"one".to_vec())]);
        assert_eq!(a.consume(&mut |_, _| {}), 0);
        assert!(matches!(
            a.output(b"x", 9, 0),
            Err(MapError::IndexOutOfRange { index: 9, .. })
        ));
        assert!(matches!(
            a.output(b"x", 1 << 40, 0),
            Err(MapError::InvalidFlags { .. })
        ));
    }

    #[test]
    fn a_full_slot_drops_and_counts() {
        let a = array(1);
        let big = vec![0u8; PERF_BUFFER_BYTES];
        a.output(&big, 0, 0).unwrap();
        assert!(matches!(a.output(b"more", 0, 0), Err(MapError::NoSpace)));
        assert_eq!(a.lost(), 1);
        a.consume(&mut |_, _| {});
        a.output(b"more", 0, 0).unwrap();
    }

    #[test]
    fn user_space_values_are_kept() {
        let a = array(2);
        assert!(matches!(a.lookup(0), Err(MapError::NotFound)));
        a.update(1, 7).unwrap();
        assert_eq!(a.lookup(1).unwrap(), 7);
        assert_eq!(a.next_key(None).unwrap(), 1);
        assert_eq!(a.len(), 1);
        a.delete(1).unwrap();
        assert!(matches!(a.next_key(None), Err(MapError::NotFound)));
    }
}
