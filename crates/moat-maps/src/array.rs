//! Array maps (`BPF_MAP_TYPE_ARRAY`, `BPF_MAP_TYPE_PERCPU_ARRAY`) and program arrays
//! (`BPF_MAP_TYPE_PROG_ARRAY`).
//!
//! Arrays are one contiguous block of `max_entries` preallocated, zeroed slots and take no lock: as in
//! the kernel, updates copy into the slot in place, so concurrent readers may see a torn value.
//! Elements always exist, hence `delete` fails with `-EINVAL` and `BPF_NOEXIST` with `-EEXIST`.

use crate::def::MapDef;
use crate::error::MapError;
use crate::mem::{Block, MapMemory};
use crate::value::{Slots, ValueSrc};
use moat_abi::{BPF_ANY, BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST};
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The `BPF_MAP_GET_NEXT_KEY` rule of arrays: from no key or an out-of-range index, start at 0.
pub(crate) fn next_index(index: Option<u32>, max_entries: u32) -> Result<u32, MapError> {
    match index {
        Some(i) if i < max_entries => {
            if i == max_entries - 1 {
                Err(MapError::NotFound)
            } else {
                Ok(i + 1)
            }
        }
        _ => Ok(0),
    }
}

/// An array or per-CPU array.
#[derive(Debug)]
pub(crate) struct ArrayMap {
    max_entries: u32,
    percpu: bool,
    pub(crate) slots: Slots,
}

impl ArrayMap {
    pub(crate) fn new(
        def: &MapDef,
        cpus: usize,
        memory: &Arc<dyn MapMemory>,
    ) -> Result<ArrayMap, MapError> {
        let percpu = def.map_type.is_percpu();
        Ok(ArrayMap {
            max_entries: def.max_entries,
            percpu,
            slots: Slots::new(memory, def.max_entries, def.value_size, percpu, cpus)?,
        })
    }

    /// An array over `slots` (a reader's view of another process's array).
    pub(crate) fn from_slots(def: &MapDef, slots: Slots) -> ArrayMap {
        ArrayMap {
            max_entries: def.max_entries,
            percpu: def.map_type.is_percpu(),
            slots,
        }
    }

    /// The program-side lookup: the value's address (this CPU's copy for per-CPU arrays).
    pub(crate) fn lookup_ptr(&self, index: u32, cpu: usize) -> Option<NonNull<u8>> {
        if index >= self.max_entries {
            return None;
        }
        self.slots.ptr(index as usize, cpu)
    }

    /// The host-side lookup.
    pub(crate) fn lookup_into(&self, index: u32, out: &mut [u8]) -> Result<(), MapError> {
        if index >= self.max_entries {
            return Err(MapError::NotFound);
        }
        self.slots.read(index as usize, out);
        Ok(())
    }

    /// `array_map_update_elem` / `bpf_percpu_array_update`.
    pub(crate) fn update(&self, index: u32, src: ValueSrc<'_>, flags: u64) -> Result<(), MapError> {
        let host_percpu = self.percpu && matches!(src, ValueSrc::Host(_));
        // The per-CPU host path compares the flags whole, so `BPF_F_LOCK` is invalid there up front.
        if (flags & !BPF_F_LOCK) > BPF_EXIST || (host_percpu && flags > BPF_EXIST) {
            return Err(MapError::InvalidFlags { flags });
        }
        if index >= self.max_entries {
            return Err(MapError::IndexOutOfRange {
                index,
                max_entries: self.max_entries,
            });
        }
        if flags & BPF_NOEXIST != 0 {
            return Err(MapError::Exists);
        }
        if flags & BPF_F_LOCK != 0 {
            // No BTF, so the value has no `bpf_spin_lock`.
            return Err(MapError::InvalidFlags { flags });
        }
        self.slots.check(src)?;
        self.slots.write(index as usize, src, false);
        Ok(())
    }

    pub(crate) fn next_key(&self, index: Option<u32>) -> Result<u32, MapError> {
        next_index(index, self.max_entries)
    }
}

/// The bit marking a program array slot as set; the low 32 bits hold the program index.
const PROG_SET: u64 = 1 << 32;

/// A program array: `max_entries` optional program indices, resolved by the runtime for tail calls.
///
/// The slots live in map memory like every other map's (as 64-bit words), although programs never
/// address them.
#[derive(Debug)]
pub(crate) struct ProgArray {
    max_entries: u32,
    block: Block,
}

impl ProgArray {
    pub(crate) fn new(def: &MapDef, memory: &Arc<dyn MapMemory>) -> Result<ProgArray, MapError> {
        Ok(ProgArray {
            max_entries: def.max_entries,
            block: Block::new(memory, def.max_entries as usize * 8, 8)?,
        })
    }

    fn raw(&self, index: u32) -> Option<u64> {
        (index < self.max_entries).then(|| {
            self.block
                .atomic_u64(index as usize * 8)
                .load(Ordering::Acquire)
        })
    }

    /// The program index stored at `index`.
    pub(crate) fn get(&self, index: u32) -> Option<u32> {
        self.raw(index)
            .filter(|&w| w & PROG_SET != 0)
            .map(|w| w as u32)
    }

    /// `bpf_fd_array_map_update_elem`: only `BPF_ANY` is accepted.
    pub(crate) fn update(&self, index: u32, prog: u32, flags: u64) -> Result<(), MapError> {
        if flags != BPF_ANY {
            return Err(MapError::InvalidFlags { flags });
        }
        if index >= self.max_entries {
            return Err(MapError::IndexOutOfRange {
                index,
                max_entries: self.max_entries,
            });
        }
        self.block
            .atomic_u64(index as usize * 8)
            .store(PROG_SET | u64::from(prog), Ordering::Release);
        Ok(())
    }

    /// `fd_array_map_delete_elem`: `-E2BIG` out of range, `-ENOENT` if empty.
    pub(crate) fn delete(&self, index: u32) -> Result<(), MapError> {
        if index >= self.max_entries {
            return Err(MapError::IndexOutOfRange {
                index,
                max_entries: self.max_entries,
            });
        }
        let old = self
            .block
            .atomic_u64(index as usize * 8)
            .swap(0, Ordering::AcqRel);
        if old & PROG_SET == 0 {
            return Err(MapError::NotFound);
        }
        Ok(())
    }

    /// The number of set slots.
    pub(crate) fn len(&self) -> usize {
        (0..self.max_entries)
            .filter(|&i| self.get(i).is_some())
            .count()
    }

    pub(crate) fn next_key(&self, index: Option<u32>) -> Result<u32, MapError> {
        next_index(index, self.max_entries)
    }
}

#[cfg(test)]
mod tests {
    use crate::map::{test_map, u32b};
    use crate::{MapDef, MapError, MapType, BPF_ANY, BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST};

    fn array(value_size: u32, max_entries: u32) -> crate::Map {
        test_map(MapDef::new(MapType::Array, 4, value_size, max_entries))
    }

    #[test]
    fn elements_always_exist_and_start_zeroed() {
        let m = array(12, 4);
        assert_eq!(m.len(), 4);
        assert_eq!(m.lookup(&u32b(3)), Ok(vec![0; 12]));
        assert_eq!(m.lookup(&u32b(4)), Err(MapError::NotFound));
        assert_eq!(m.lookup(&u32b(4)).map_err(|e| e.errno()), Err(-2));
        assert!(m.lookup_ptr(&u32b(3), 0).is_some());
        assert!(m.lookup_ptr(&u32b(4), 0).is_none());
        assert!(m.lookup_ptr(&u32b(u32::MAX), 0).is_none());
    }

    #[test]
    fn update_flags_follow_the_kernel() {
        let m = array(4, 4);
        assert_eq!(m.update(&u32b(1), &u32b(7), BPF_ANY), Ok(()));
        assert_eq!(m.update(&u32b(1), &u32b(8), BPF_EXIST), Ok(()));
        assert_eq!(m.lookup(&u32b(1)), Ok(u32b(8).to_vec()));
        assert_eq!(
            m.update(&u32b(1), &u32b(9), BPF_NOEXIST),
            Err(MapError::Exists)
        );
        assert_eq!(
            m.update(&u32b(1), &u32b(9), BPF_NOEXIST)
                .map_err(|e| e.errno()),
            Err(-17)
        );
        assert_eq!(
            m.update(&u32b(1), &u32b(9), 3),
            Err(MapError::InvalidFlags { flags: 3 })
        );
        assert_eq!(
            m.update(&u32b(1), &u32b(9), BPF_F_LOCK),
            Err(MapError::InvalidFlags { flags: BPF_F_LOCK })
        );
        assert_eq!(
            m.update(&u32b(4), &u32b(9), BPF_ANY),
            Err(MapError::IndexOutOfRange {
                index: 4,
                max_entries: 4
            })
        );
        assert_eq!(
            m.update(&u32b(4), &u32b(9), BPF_ANY).map_err(|e| e.errno()),
            Err(-7)
        );
        // The range check comes before the NOEXIST check, as in the kernel.
        assert_eq!(
            m.update(&u32b(9), &u32b(9), BPF_NOEXIST)
                .map_err(|e| e.errno()),
            Err(-7)
        );
        assert_eq!(m.lookup(&u32b(1)), Ok(u32b(8).to_vec()));
    }

    #[test]
    fn delete_is_invalid() {
        let m = array(4, 4);
        assert_eq!(
            m.delete(&u32b(0)),
            Err(MapError::InvalidOp {
                map_type: MapType::Array,
                op: "delete"
            })
        );
        assert_eq!(m.delete(&u32b(0)).map_err(|e| e.errno()), Err(-22));
    }

    #[test]
    fn bad_lengths_are_einval() {
        let m = array(4, 4);
        assert_eq!(
            m.lookup(&[0; 8]),
            Err(MapError::KeySize {
                expected: 4,
                got: 8
            })
        );
        assert_eq!(
            m.update(&[0; 3], &u32b(1), BPF_ANY).map_err(|e| e.errno()),
            Err(-22)
        );
        assert_eq!(
            m.update(&u32b(0), &[1; 5], BPF_ANY),
            Err(MapError::ValueSize {
                expected: 4,
                got: 5
            })
        );
        assert_eq!(
            m.lookup_into(&u32b(0), &mut [0; 3]),
            Err(MapError::ValueSize {
                expected: 4,
                got: 3
            })
        );
        assert!(m.lookup_ptr(&[0; 2], 0).is_none());
    }

    #[test]
    fn next_key_goes_by_index() {
        let m = array(4, 3);
        assert_eq!(m.next_key(None), Ok(u32b(0).to_vec()));
        assert_eq!(m.next_key(Some(&u32b(0))), Ok(u32b(1).to_vec()));
        assert_eq!(m.next_key(Some(&u32b(1))), Ok(u32b(2).to_vec()));
        assert_eq!(m.next_key(Some(&u32b(2))), Err(MapError::NotFound));
        assert_eq!(m.next_key(Some(&u32b(77))), Ok(u32b(0).to_vec()));
        assert_eq!(
            m.next_key(Some(&[0; 2])),
            Err(MapError::KeySize {
                expected: 4,
                got: 2
            })
        );
        assert_eq!(m.keys().count(), 3);
    }

    #[test]
    fn values_are_aligned_slots_in_one_region() {
        let m = array(12, 5);
        let regions = m.value_regions();
        assert_eq!(regions.len(), 1);
        assert_eq!(regions[0].len, 5 * 16);
        let p0 = m.lookup_ptr(&u32b(0), 0).unwrap().as_ptr() as usize;
        let p4 = m.lookup_ptr(&u32b(4), 0).unwrap().as_ptr() as usize;
        assert_eq!(p0 % 8, 0);
        assert_eq!(p4 - p0, 4 * 16);
        assert!(regions[0].contains(p4, 12));
        assert!(!regions[0].contains(p4, 17));
    }

    #[test]
    fn percpu_arrays_keep_one_copy_per_cpu() {
        let m = test_map(MapDef::new(MapType::PercpuArray, 4, 4, 2));
        assert_eq!(m.cpus(), 4);
        assert_eq!(m.host_value_size(), 32);
        let all: Vec<u8> = (0..32).collect();
        assert_eq!(m.update(&u32b(1), &all, BPF_ANY), Ok(()));
        assert_eq!(m.lookup(&u32b(1)), Ok(all.clone()));
        assert_eq!(
            m.update(&u32b(1), &u32b(1), BPF_ANY),
            Err(MapError::ValueSize {
                expected: 32,
                got: 4
            })
        );
        // A program on CPU 2 changes only its copy.
        assert_eq!(m.update_on_cpu(&u32b(1), &[0xaa; 4], BPF_ANY, 2), Ok(()));
        let mut want = all.clone();
        want[16..20].copy_from_slice(&[0xaa; 4]);
        assert_eq!(m.lookup(&u32b(1)), Ok(want));
        assert_eq!(
            m.update_on_cpu(&u32b(1), &[0; 4], BPF_ANY, 4),
            Err(MapError::CpuOutOfRange { cpu: 4, cpus: 4 })
        );
        assert_eq!(
            m.update(&u32b(1), &all, BPF_F_LOCK).map_err(|e| e.errno()),
            Err(-22)
        );
        assert_eq!(m.update(&u32b(1), &all, BPF_NOEXIST), Err(MapError::Exists));
        assert_eq!(
            m.update(&u32b(2), &all, BPF_ANY).map_err(|e| e.errno()),
            Err(-7)
        );
        let c0 = m.lookup_ptr(&u32b(1), 0).unwrap().as_ptr() as usize;
        let c3 = m.lookup_ptr(&u32b(1), 3).unwrap().as_ptr() as usize;
        assert_eq!(c3 - c0, 3 * 8);
        assert!(m.lookup_ptr(&u32b(1), 4).is_none());
    }

    #[test]
    fn prog_arrays_hold_program_indices() {
        let m = test_map(MapDef::new(MapType::ProgArray, 4, 4, 4));
        assert_eq!(m.get_prog(0), None);
        assert_eq!(m.lookup(&u32b(0)), Err(MapError::NotFound));
        assert_eq!(m.update(&u32b(0), &u32b(17), BPF_ANY), Ok(()));
        assert_eq!(m.get_prog(0), Some(17));
        assert_eq!(m.get_prog(4), None);
        assert_eq!(m.lookup(&u32b(0)), Ok(u32b(17).to_vec()));
        assert_eq!(m.len(), 1);
        assert_eq!(
            m.update(&u32b(0), &u32b(1), BPF_EXIST),
            Err(MapError::InvalidFlags { flags: BPF_EXIST })
        );
        assert_eq!(
            m.update(&u32b(0), &u32b(1), BPF_NOEXIST)
                .map_err(|e| e.errno()),
            Err(-22)
        );
        assert_eq!(
            m.update(&u32b(4), &u32b(1), BPF_ANY).map_err(|e| e.errno()),
            Err(-7)
        );
        assert_eq!(
            m.update(&u32b(1), &[0; 8], BPF_ANY),
            Err(MapError::ValueSize {
                expected: 4,
                got: 8
            })
        );
        assert_eq!(
            m.update_on_cpu(&u32b(1), &u32b(1), BPF_ANY, 0),
            Err(MapError::NotSupported {
                map_type: MapType::ProgArray,
                op: "program-side update"
            })
        );
        assert_eq!(m.delete(&u32b(0)), Ok(()));
        assert_eq!(m.delete(&u32b(0)), Err(MapError::NotFound));
        assert_eq!(m.delete(&u32b(4)).map_err(|e| e.errno()), Err(-7));
        assert_eq!(m.get_prog(0), None);
        assert!(m.lookup_ptr(&u32b(0), 0).is_none());
        assert!(m.value_regions().is_empty());
        assert_eq!(m.next_key(Some(&u32b(3))), Err(MapError::NotFound));
    }
}
