//! Perf event arrays (`BPF_MAP_TYPE_PERF_EVENT_ARRAY`): the per-CPU buffers `bpf_perf_event_output`
//! writes records into and user space drains.
//!
//! In the kernel each slot holds a perf event whose ring buffer user space maps; a record goes to the
//! slot of the CPU the program runs on (`BPF_F_CURRENT_CPU`) or to an explicit slot, and a full ring
//! drops it (`-ENOSPC`) and counts it lost. Here every slot is a ring buffer of this crate
//! ([`RingBuf`], [`PERF_BUFFER_BYTES`] of data, records with the ring's 8-byte headers) in the map's
//! memory, made when the slot gets its first record (so a map in shared memory grows by one
//! segment per slot used, each labelled with its slot number for readers). The values user space
//! writes into slots (perf event descriptors, in the kernel) are kept and read back as written, so
//! loaders that fill them work unchanged. Unlike the kernel, a slot with no value stored still takes
//! records (moat's own tracer drains every slot).

use crate::def::MapDef;
use crate::error::MapError;
use crate::mem::MapMemory;
use crate::ringbuf::RingBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Bytes of record data (headers included) one slot's ring holds; records that do not fit are
/// dropped (counted in [`Map::perf_lost`](crate::Map::perf_lost)).
pub const PERF_BUFFER_BYTES: usize = 256 * 1024;

/// `bpf_perf_event_output`'s flag: the record goes to the current CPU's slot.
pub const BPF_F_CURRENT_CPU: u64 = 0xffff_ffff;
/// `bpf_perf_event_output`'s flags: the slot index (or [`BPF_F_CURRENT_CPU`]).
pub const BPF_F_INDEX_MASK: u64 = 0xffff_ffff;

/// A perf event array.
pub(crate) struct PerfEventArray {
    /// The value user space stored in each slot (a perf event descriptor, in the kernel).
    values: Box<[Mutex<Option<u32>>]>,
    /// Each slot's ring, made at its first record.
    rings: Box<[OnceLock<RingBuf>]>,
    /// Serialises the making of rings.
    making: Mutex<()>,
    memory: Arc<dyn MapMemory>,
    lost: AtomicU64,
}

impl std::fmt::Debug for PerfEventArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerfEventArray")
            .field("slots", &self.values.len())
            .field("lost", &self.lost)
            .finish()
    }
}

/// The ring definition of one slot.
pub(crate) fn slot_ring_def() -> MapDef {
    MapDef::new(crate::MapType::RingBuf, 0, 0, PERF_BUFFER_BYTES as u32)
}

impl PerfEventArray {
    pub(crate) fn new(def: &MapDef, memory: &Arc<dyn MapMemory>) -> PerfEventArray {
        PerfEventArray {
            values: (0..def.max_entries).map(|_| Mutex::default()).collect(),
            rings: (0..def.max_entries).map(|_| OnceLock::new()).collect(),
            making: Mutex::new(()),
            memory: Arc::clone(memory),
            lost: AtomicU64::new(0),
        }
    }

    fn value(&self, index: u32) -> Option<MutexGuard<'_, Option<u32>>> {
        self.values
            .get(index as usize)
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Slot `index`'s ring, made now if it has none; `None` if the memory cannot be had.
    fn ring(&self, index: u32) -> Option<&RingBuf> {
        let cell = self.rings.get(index as usize)?;
        if let Some(r) = cell.get() {
            return Some(r);
        }
        let _making = self.making.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = cell.get() {
            return Some(r);
        }
        let ring = RingBuf::new(&slot_ring_def(), &self.memory).ok()?;
        ring.set_tag(u64::from(index) + 1);
        Some(cell.get_or_init(|| ring))
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
        if index as usize >= self.rings.len() {
            return Err(MapError::IndexOutOfRange {
                index,
                max_entries: self.rings.len() as u32,
            });
        }
        let stored = self.ring(index).map(|r| r.output(data, 0));
        if !matches!(stored, Some(Ok(()))) {
            self.lost.fetch_add(1, Ordering::Relaxed);
            return Err(MapError::NoSpace);
        }
        Ok(())
    }

    /// Hands every record to `f` as `(slot, record)`, oldest first per slot; how many.
    pub(crate) fn consume(&self, f: &mut dyn FnMut(u32, &[u8])) -> usize {
        let mut n = 0;
        for (index, cell) in self.rings.iter().enumerate() {
            if let Some(ring) = cell.get() {
                n += ring
                    .consume(&mut |r| f(index as u32, r))
                    .unwrap_or_default();
            }
        }
        n
    }

    /// Records dropped because their slot was full.
    pub(crate) fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Slots with a value stored.
    pub(crate) fn len(&self) -> usize {
        (0..self.values.len() as u32)
            .filter(|&i| self.value(i).is_some_and(|s| s.is_some()))
            .count()
    }

    /// `BPF_MAP_UPDATE_ELEM` from user space: stores the slot's value.
    pub(crate) fn update(&self, index: u32, value: u32) -> Result<(), MapError> {
        let mut slot = self.value(index).ok_or(MapError::IndexOutOfRange {
            index,
            max_entries: self.values.len() as u32,
        })?;
        *slot = Some(value);
        Ok(())
    }

    /// `BPF_MAP_LOOKUP_ELEM`: the slot's value.
    pub(crate) fn lookup(&self, index: u32) -> Result<u32, MapError> {
        self.value(index).and_then(|s| *s).ok_or(MapError::NotFound)
    }

    /// `BPF_MAP_DELETE_ELEM`: forgets the slot's value.
    pub(crate) fn delete(&self, index: u32) -> Result<(), MapError> {
        let mut slot = self.value(index).ok_or(MapError::IndexOutOfRange {
            index,
            max_entries: self.values.len() as u32,
        })?;
        slot.take().map(|_| ()).ok_or(MapError::NotFound)
    }

    /// The first slot with a value after `index`.
    pub(crate) fn next_key(&self, index: Option<u32>) -> Result<u32, MapError> {
        let start = match index {
            Some(i) if (i as usize) < self.values.len() => i + 1,
            _ => 0,
        };
        (start..self.values.len() as u32)
            .find(|&i| self.value(i).is_some_and(|s| s.is_some()))
            .ok_or(MapError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::def::MapType;

    fn array(n: u32) -> PerfEventArray {
        PerfEventArray::new(
            &MapDef::new(MapType::PerfEventArray, 4, 4, n),
            &crate::HeapMemory::shared(),
        )
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
        // Records of 1 KiB take 1 KiB + 8 bytes of header: 255 fit in 256 KiB (8 bytes stay free).
        let rec = vec![0u8; 1024];
        let mut stored = 0;
        while a.output(&rec, 0, 0).is_ok() {
            stored += 1;
        }
        assert_eq!(stored, PERF_BUFFER_BYTES / 1032);
        assert!(matches!(a.output(b"more", 0, 0), Err(MapError::NoSpace)));
        assert_eq!(a.lost(), 2);
        assert_eq!(a.consume(&mut |_, _| {}), stored);
        a.output(b"more", 0, 0).unwrap();
        // A record larger than the ring never fits.
        assert!(matches!(
            a.output(&vec![0; PERF_BUFFER_BYTES], 0, 0),
            Err(MapError::NoSpace)
        ));
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
