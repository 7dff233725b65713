//! Hash maps: `BPF_MAP_TYPE_HASH`, `PERCPU_HASH`, `LRU_HASH` and `LRU_PERCPU_HASH`.
//!
//! Values live in a preallocated pool of `max_entries` slots (see [`Slots`](crate::value)); a slot keeps
//! its address for the map's lifetime, so a pointer returned by a lookup stays dereferenceable, and keeps
//! showing its element until that element is deleted or evicted (after which the slot may be reused).
//! Updates of an existing key copy the new value into the same slot.
//!
//! The index (a `hashbrown` table from key to slot number, the keys, a free list) is on the Rust heap
//! behind one `RwLock`: host lookups share it, updates and deletes take it exclusively. Programs'
//! lookups take no lock: they read a second index of atomics kept beside it under a sequence lock
//! ([`ReadIndex`]), and take the read lock only while writers keep changing the index.
//!
//! In [shared](crate::MapMemory::is_shared) memory the map also keeps a key table beside the values:
//! per slot a state word and the key ([`KeyTable`]), written under the index lock like a sequence
//! lock, so that a reader in another process ([`SharedMap`](crate::SharedMap)) scans the elements
//! without the private index and never takes a half-written key or value for an element. Programs'
//! writes through value pointers are not covered (as in the kernel, such values may be read torn).
//!
//! LRU maps evict the least recently used element when a new key finds no free slot. "Used" means
//! inserted, updated, or looked up by a program ([`HashMap::lookup_ptr`]); host-side lookups do not count,
//! as in the kernel. The order is exact: every use stamps the slot with a global counter (under the
//! shared lock, with an atomic store), and eviction pops the oldest stamp from an ordered queue,
//! re-queueing entries whose stamp moved since they were queued. The kernel's LRU is an approximation
//! of this order.

use crate::def::{round8, MapDef, MapType};
use crate::error::MapError;
use crate::mem::{Block, MapMemory};
use crate::readidx::ReadIndex;
use crate::value::{Slots, ValueSrc};
use hashbrown::{DefaultHashBuilder, HashTable};
use moat_abi::{BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST};
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Recency bookkeeping of LRU maps.
#[derive(Debug)]
struct Lru {
    /// The global use counter; stamps are unique.
    clock: AtomicU64,
    /// The stamp of each slot's latest use.
    last_used: Box<[AtomicU64]>,
}

impl Lru {
    fn touch(&self, slot: usize) -> u64 {
        let stamp = self.clock.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(s) = self.last_used.get(slot) {
            s.store(stamp, Ordering::Relaxed);
        }
        stamp
    }

    fn stamp(&self, slot: usize) -> u64 {
        self.last_used
            .get(slot)
            .map_or(0, |s| s.load(Ordering::Relaxed))
    }
}

/// The index, guarded by the map's lock.
#[derive(Debug)]
struct State {
    /// Key hash to slot number; keys are compared in `keys`.
    table: HashTable<u32>,
    /// `key_size` bytes per slot.
    keys: Vec<u8>,
    /// Whether each slot holds an element.
    used: Vec<bool>,
    /// Free slots, lowest on top at first.
    free: Vec<u32>,
    len: usize,
    /// LRU maps: slots ordered by the stamp they were queued with (at most their latest stamp).
    queue: BTreeMap<u64, u32>,
    /// LRU maps: each used slot's key in `queue`.
    queued_at: Vec<u64>,
}

impl State {
    fn key(&self, slot: u32, key_size: usize) -> &[u8] {
        let start = slot as usize * key_size;
        self.keys.get(start..start + key_size).unwrap_or(&[])
    }
}

/// State word bit: the slot is being written; readers retry.
const KEY_BUSY: u64 = 1;
/// State word bit: the slot holds an element.
const KEY_USED: u64 = 2;
/// State word: one generation (the bits above the two flags count completed writes).
const KEY_GEN: u64 = 4;
/// How often a reader retries a slot that is being written before it skips it.
const READ_RETRIES: usize = 1000;

/// The key table of a hash map in shared memory: slot `i` is at `i * stride`, a `u64` state word
/// (`generation << 2 | used << 1 | busy`) then the key, padded to 8 bytes.
///
/// The one writer (holding the index lock) sets `busy`, writes, then stores the next generation with
/// `busy` clear; a reader copies the key and value between two loads of the word and keeps them only
/// if both loads are equal and show a used, not busy, slot.
#[derive(Debug)]
pub(crate) struct KeyTable {
    block: Block,
    stride: usize,
    key_size: usize,
}

impl KeyTable {
    pub(crate) fn stride(key_size: usize) -> usize {
        8 + round8(key_size as u64) as usize
    }

    fn new(memory: &Arc<dyn MapMemory>, n: usize, key_size: usize) -> Result<KeyTable, MapError> {
        let stride = KeyTable::stride(key_size);
        let len = stride
            .checked_mul(n)
            .ok_or(MapError::OutOfMemory { size: usize::MAX })?;
        Ok(KeyTable {
            // Outside the region programs may address: they never see keys.
            block: Block::beside(memory, len, 8)?,
            stride,
            key_size,
        })
    }

    /// A reader's view of `n` slots in `block`; `None` if it is too short.
    pub(crate) fn from_block(block: Block, n: u32, key_size: u32) -> Option<KeyTable> {
        let stride = KeyTable::stride(key_size as usize);
        (stride.checked_mul(n as usize)? <= block.len()).then_some(KeyTable {
            block,
            stride,
            key_size: key_size as usize,
        })
    }

    /// Marks `slot` busy; returns its word before.
    fn begin(&self, slot: usize) -> u64 {
        let word = self.block.atomic_u64(slot * self.stride);
        let before = word.load(Ordering::Relaxed);
        word.store(before | KEY_BUSY, Ordering::Relaxed);
        // Orders the busy mark before the writes that follow, for readers that fence after copying.
        fence(Ordering::Release);
        before
    }

    /// Ends a write begun with `before`: the next generation, used or not.
    fn end(&self, slot: usize, before: u64, used: bool) {
        let next = (before & !(KEY_BUSY | KEY_USED)).wrapping_add(KEY_GEN)
            | if used { KEY_USED } else { 0 };
        self.block
            .atomic_u64(slot * self.stride)
            .store(next, Ordering::Release);
    }

    fn write_key(&self, slot: usize, key: &[u8]) {
        self.block.write(slot * self.stride + 8, key);
    }

    /// Copies slot `slot`'s key into `key` and its value (through `read_value`) if it holds an
    /// element that no write changed meanwhile; `false` if it holds none or kept changing.
    pub(crate) fn read_entry(
        &self,
        slot: usize,
        key: &mut [u8],
        mut read_value: impl FnMut(),
    ) -> bool {
        let word = self.block.atomic_u64(slot * self.stride);
        for _ in 0..READ_RETRIES {
            let before = word.load(Ordering::Acquire);
            if before & KEY_BUSY != 0 {
                std::hint::spin_loop();
                continue;
            }
            if before & KEY_USED == 0 {
                return false;
            }
            self.block
                .read(slot * self.stride + 8, &mut key[..self.key_size]);
            read_value();
            fence(Ordering::Acquire);
            if word.load(Ordering::Relaxed) == before {
                return true;
            }
        }
        false
    }
}

/// A (per-CPU, LRU) hash map.
#[derive(Debug)]
pub(crate) struct HashMap {
    key_size: usize,
    pub(crate) slots: Slots,
    /// The key table readers in other processes scan (maps in shared memory only).
    table: Option<KeyTable>,
    lru: Option<Lru>,
    hasher: DefaultHashBuilder,
    /// What programs' lookups read without the lock ([`ReadIndex`]): the same elements as the
    /// table in `state`, linked once their value is written, unlinked before their slot is freed.
    index: ReadIndex,
    state: RwLock<State>,
}

impl HashMap {
    pub(crate) fn new(
        def: &MapDef,
        cpus: usize,
        memory: &Arc<dyn MapMemory>,
    ) -> Result<HashMap, MapError> {
        let n = def.max_entries as usize;
        let key_size = def.key_size as usize;
        let lru = matches!(def.map_type, MapType::LruHash | MapType::LruPercpuHash);
        let slots = Slots::new(
            memory,
            def.max_entries,
            def.value_size,
            def.map_type.is_percpu(),
            cpus,
        )?;
        let table = if memory.is_shared() {
            Some(KeyTable::new(memory, n, key_size)?)
        } else {
            None
        };
        let map = HashMap {
            key_size,
            slots,
            table,
            lru: lru.then(|| Lru {
                clock: AtomicU64::new(0),
                last_used: (0..n).map(|_| AtomicU64::new(0)).collect(),
            }),
            hasher: DefaultHashBuilder::default(),
            index: ReadIndex::new(n, key_size),
            state: RwLock::new(State {
                table: HashTable::with_capacity(n),
                keys: vec![0; n * key_size],
                used: vec![false; n],
                free: (0..def.max_entries).rev().collect(),
                len: 0,
                queue: BTreeMap::new(),
                queued_at: if lru { vec![0; n] } else { Vec::new() },
            }),
        };
        if memory.adopts() {
            map.read_back();
        }
        Ok(map)
    }

    /// Takes the elements of an adopted map ([`MapMemory::adopts`]) from its key table: each
    /// slot that holds one joins the index (and, for LRU maps, the queue, in slot order) and
    /// leaves the free list. A slot left half written by a writer that died stays free.
    fn read_back(&self) {
        let Some(table) = &self.table else {
            return;
        };
        let mut guard = self.write();
        let st = &mut *guard;
        let key_size = self.key_size;
        let mut key = vec![0u8; key_size];
        for slot in 0..st.used.len() {
            if !table.read_entry(slot, &mut key, || {}) {
                continue;
            }
            let hash = self.hasher.hash_one(&key);
            if self.find(st, hash, &key).is_some() {
                continue;
            }
            let start = slot * key_size;
            if let Some(k) = st.keys.get_mut(start..start + key_size) {
                k.copy_from_slice(&key);
            }
            st.used[slot] = true;
            let (index, keys) = (&mut st.table, &st.keys);
            index.insert_unique(hash, slot as u32, |&s| {
                let start = s as usize * key_size;
                self.hasher
                    .hash_one(keys.get(start..start + key_size).unwrap_or(&[]))
            });
            st.len += 1;
            self.index.link(slot as u32, hash, &key);
            if let Some(lru) = &self.lru {
                let stamp = lru.touch(slot);
                st.queue.insert(stamp, slot as u32);
                st.queued_at[slot] = stamp;
            }
        }
        let State { free, used, .. } = st;
        free.retain(|&s| !used[s as usize]);
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave the index inconsistent in a way that breaks memory
        // safety, so poisoning is ignored.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn find(&self, st: &State, hash: u64, key: &[u8]) -> Option<u32> {
        st.table
            .find(hash, |&s| st.key(s, self.key_size) == key)
            .copied()
    }

    /// The program-side lookup; counts as a use for LRU maps. Without the lock, through the
    /// [`ReadIndex`], unless writers keep changing the index.
    #[inline]
    pub(crate) fn lookup_ptr(&self, key: &[u8], cpu: usize) -> Option<NonNull<u8>> {
        let hash = self.hasher.hash_one(key);
        let slot = match self.index.find(hash, key) {
            Some(found) => found? as usize,
            None => {
                let st = self.read();
                self.find(&st, hash, key)? as usize
            }
        };
        if let Some(lru) = &self.lru {
            lru.touch(slot);
        }
        self.slots.ptr(slot, cpu)
    }

    /// The host-side lookup; `out` has the host value size.
    pub(crate) fn lookup_into(&self, key: &[u8], out: &mut [u8]) -> Result<(), MapError> {
        let hash = self.hasher.hash_one(key);
        let st = self.read();
        let slot = self.find(&st, hash, key).ok_or(MapError::NotFound)?;
        self.slots.read(slot as usize, out);
        Ok(())
    }

    /// `htab_map_update_elem` and its per-CPU and LRU variants.
    pub(crate) fn update(&self, key: &[u8], src: ValueSrc<'_>, flags: u64) -> Result<(), MapError> {
        if (flags & !BPF_F_LOCK) > BPF_EXIST || flags & BPF_F_LOCK != 0 {
            // `BPF_F_LOCK` needs a `bpf_spin_lock` in the value, which needs BTF.
            return Err(MapError::InvalidFlags { flags });
        }
        self.slots.check(src)?;
        let hash = self.hasher.hash_one(key);
        let mut guard = self.write();
        let st = &mut *guard;
        if let Some(slot) = self.find(st, hash, key) {
            if flags == BPF_NOEXIST {
                return Err(MapError::Exists);
            }
            let before = self.table.as_ref().map(|t| t.begin(slot as usize));
            self.slots.write(slot as usize, src, false);
            if let (Some(t), Some(before)) = (&self.table, before) {
                t.end(slot as usize, before, true);
            }
            if let Some(lru) = &self.lru {
                lru.touch(slot as usize);
            }
            return Ok(());
        }
        if flags == BPF_EXIST {
            return Err(MapError::NotFound);
        }
        let slot = match st.free.pop() {
            Some(s) => s,
            None => self.evict(st).ok_or(MapError::Full)?,
        };
        let start = slot as usize * self.key_size;
        if let Some(k) = st.keys.get_mut(start..start + self.key_size) {
            k.copy_from_slice(key);
        }
        if let Some(u) = st.used.get_mut(slot as usize) {
            *u = true;
        }
        let (table, keys, key_size) = (&mut st.table, &st.keys, self.key_size);
        table.insert_unique(hash, slot, |&s| {
            let start = s as usize * key_size;
            self.hasher
                .hash_one(keys.get(start..start + key_size).unwrap_or(&[]))
        });
        st.len += 1;
        let before = self.table.as_ref().map(|t| {
            let before = t.begin(slot as usize);
            t.write_key(slot as usize, key);
            before
        });
        self.slots.write(slot as usize, src, true);
        if let (Some(t), Some(before)) = (&self.table, before) {
            t.end(slot as usize, before, true);
        }
        // Lock-free readers find the element only now, with its value written.
        self.index.link(slot, hash, key);
        if let Some(lru) = &self.lru {
            let stamp = lru.touch(slot as usize);
            st.queue.insert(stamp, slot);
            if let Some(q) = st.queued_at.get_mut(slot as usize) {
                *q = stamp;
            }
        }
        Ok(())
    }

    /// Unlinks `slot` from the table, the used set and the LRU queue (not from the free list).
    fn unlink(&self, st: &mut State, slot: u32) {
        let hash = self.hasher.hash_one(st.key(slot, self.key_size));
        // Lock-free readers stop finding the element before its slot can be reused.
        self.index.unlink(slot, hash);
        if let Ok(entry) = st.table.find_entry(hash, |&s| s == slot) {
            entry.remove();
        }
        if let Some(u) = st.used.get_mut(slot as usize) {
            *u = false;
        }
        if let Some(t) = &self.table {
            let before = t.begin(slot as usize);
            t.end(slot as usize, before, false);
        }
        st.len -= 1;
        if let Some(&q) = st.queued_at.get(slot as usize) {
            st.queue.remove(&q);
        }
    }

    /// Frees the least recently used slot and returns it; `None` for non-LRU maps (or an empty map).
    fn evict(&self, st: &mut State) -> Option<u32> {
        let lru = self.lru.as_ref()?;
        // Each entry is re-queued at most once per eviction (its new key is its latest stamp), so this
        // loop ends after at most `2 * len` steps.
        while let Some((queued, slot)) = st.queue.pop_first() {
            let latest = lru.stamp(slot as usize);
            if latest == queued {
                self.unlink(st, slot);
                return Some(slot);
            }
            st.queue.insert(latest, slot);
            if let Some(q) = st.queued_at.get_mut(slot as usize) {
                *q = latest;
            }
        }
        None
    }

    pub(crate) fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        let hash = self.hasher.hash_one(key);
        let mut st = self.write();
        let slot = self.find(&st, hash, key).ok_or(MapError::NotFound)?;
        self.unlink(&mut st, slot);
        st.free.push(slot);
        Ok(())
    }

    /// Iteration in slot order: the slot after `key`'s, or the first used one if `key` is absent.
    pub(crate) fn next_key(&self, key: Option<&[u8]>, out: &mut [u8]) -> Result<(), MapError> {
        let st = self.read();
        let start = key
            .and_then(|k| self.find(&st, self.hasher.hash_one(k), k))
            .map_or(0, |s| s as usize + 1);
        let next = st
            .used
            .iter()
            .skip(start)
            .position(|&u| u)
            .ok_or(MapError::NotFound)?;
        let found = st.key((start + next) as u32, self.key_size);
        if out.len() != found.len() {
            return Err(MapError::KeySize {
                expected: found.len(),
                got: out.len(),
            });
        }
        out.copy_from_slice(found);
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.read().len
    }
}

#[cfg(test)]
mod tests {
    use crate::map::{test_map, u32b};
    use crate::{Map, MapDef, MapError, MapType, BPF_ANY, BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST};
    use std::collections::VecDeque;

    fn hash(t: MapType, max_entries: u32) -> Map {
        test_map(MapDef::new(t, 4, 8, max_entries))
    }

    fn val(n: u64) -> [u8; 8] {
        n.to_ne_bytes()
    }

    fn has(m: &Map, k: u32) -> bool {
        m.lookup(&u32b(k)).is_ok()
    }

    #[test]
    fn update_flags_follow_the_kernel() {
        let m = hash(MapType::Hash, 4);
        assert_eq!(
            m.update(&u32b(1), &val(10), BPF_EXIST),
            Err(MapError::NotFound)
        );
        assert_eq!(
            m.update(&u32b(1), &val(10), BPF_EXIST)
                .map_err(|e| e.errno()),
            Err(-2)
        );
        assert_eq!(m.update(&u32b(1), &val(10), BPF_NOEXIST), Ok(()));
        assert_eq!(
            m.update(&u32b(1), &val(11), BPF_NOEXIST),
            Err(MapError::Exists)
        );
        assert_eq!(
            m.update(&u32b(1), &val(11), BPF_NOEXIST)
                .map_err(|e| e.errno()),
            Err(-17)
        );
        assert_eq!(m.lookup(&u32b(1)), Ok(val(10).to_vec()));
        assert_eq!(m.update(&u32b(1), &val(12), BPF_EXIST), Ok(()));
        assert_eq!(m.update(&u32b(1), &val(13), BPF_ANY), Ok(()));
        assert_eq!(m.lookup(&u32b(1)), Ok(val(13).to_vec()));
        assert_eq!(
            m.update(&u32b(1), &val(0), 3),
            Err(MapError::InvalidFlags { flags: 3 })
        );
        assert_eq!(
            m.update(&u32b(1), &val(0), BPF_F_LOCK)
                .map_err(|e| e.errno()),
            Err(-22)
        );
        assert_eq!(
            m.update(&u32b(1), &val(0), BPF_F_LOCK | BPF_EXIST)
                .map_err(|e| e.errno()),
            Err(-22)
        );
        assert_eq!(
            m.update(&u32b(1), &[0; 4], BPF_ANY),
            Err(MapError::ValueSize {
                expected: 8,
                got: 4
            })
        );
        assert_eq!(
            m.update(&[0; 5], &val(0), BPF_ANY),
            Err(MapError::KeySize {
                expected: 4,
                got: 5
            })
        );
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn full_map_refuses_new_keys_but_updates_old_ones() {
        let m = hash(MapType::Hash, 3);
        for k in 0..3 {
            assert_eq!(m.update(&u32b(k), &val(k.into()), BPF_ANY), Ok(()));
        }
        assert_eq!(m.update(&u32b(3), &val(3), BPF_ANY), Err(MapError::Full));
        assert_eq!(
            m.update(&u32b(3), &val(3), BPF_NOEXIST)
                .map_err(|e| e.errno()),
            Err(-7)
        );
        assert_eq!(m.update(&u32b(2), &val(22), BPF_ANY), Ok(()));
        assert_eq!(m.update(&u32b(2), &val(23), BPF_EXIST), Ok(()));
        assert_eq!(m.delete(&u32b(0)), Ok(()));
        assert_eq!(m.update(&u32b(3), &val(3), BPF_ANY), Ok(()));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn delete_and_lookup() {
        let m = hash(MapType::Hash, 4);
        assert_eq!(m.delete(&u32b(1)), Err(MapError::NotFound));
        assert_eq!(m.delete(&u32b(1)).map_err(|e| e.errno()), Err(-2));
        m.update(&u32b(1), &val(1), BPF_ANY).unwrap();
        assert!(m.lookup_ptr(&u32b(1), 0).is_some());
        assert_eq!(m.delete(&u32b(1)), Ok(()));
        assert!(m.lookup_ptr(&u32b(1), 0).is_none());
        assert_eq!(m.lookup(&u32b(1)), Err(MapError::NotFound));
        assert_eq!(
            m.delete(&[1]),
            Err(MapError::KeySize {
                expected: 4,
                got: 1
            })
        );
        assert!(m.is_empty());
    }

    #[test]
    fn next_key_iterates_every_key_once_and_restarts_on_missing_keys() {
        let m = hash(MapType::Hash, 8);
        assert_eq!(m.next_key(None), Err(MapError::NotFound));
        for k in [5, 3, 9, 1] {
            m.update(&u32b(k), &val(0), BPF_ANY).unwrap();
        }
        let keys: Vec<Vec<u8>> = m.keys().collect();
        let mut sorted: Vec<u32> = keys
            .iter()
            .map(|k| u32::from_ne_bytes(k[..].try_into().unwrap()))
            .collect();
        sorted.sort();
        assert_eq!(sorted, [1, 3, 5, 9]);
        let first = m.next_key(None).unwrap();
        assert_eq!(m.next_key(Some(&u32b(1234))), Ok(first.clone()));
        assert_eq!(
            m.next_key(Some(keys.last().unwrap())),
            Err(MapError::NotFound)
        );
        // The order is stable, and deleting the current key while iterating visits every key.
        assert_eq!(m.keys().collect::<Vec<_>>(), keys);
        let mut seen = 0;
        let mut cur = m.next_key(None);
        while let Ok(k) = cur {
            cur = m.next_key(Some(&k));
            m.delete(&k).unwrap();
            seen += 1;
        }
        assert_eq!(seen, 4);
        assert!(m.is_empty());
    }

    #[test]
    fn lru_evicts_the_least_recently_used() {
        let m = hash(MapType::LruHash, 3);
        for k in 1..=3 {
            m.update(&u32b(k), &val(k.into()), BPF_ANY).unwrap();
        }
        // A program lookup of 1 makes 2 the oldest.
        assert!(m.lookup_ptr(&u32b(1), 0).is_some());
        assert_eq!(m.update(&u32b(4), &val(4), BPF_ANY), Ok(()));
        assert!(!has(&m, 2));
        assert!(has(&m, 1) && has(&m, 3) && has(&m, 4));
        // An update counts as a use; host lookups do not.
        m.update(&u32b(3), &val(33), BPF_EXIST).unwrap();
        assert!(m.lookup(&u32b(1)).is_ok());
        assert_eq!(m.update(&u32b(5), &val(5), BPF_NOEXIST), Ok(()));
        assert!(!has(&m, 1));
        assert_eq!(m.update(&u32b(6), &val(6), BPF_ANY), Ok(()));
        assert!(!has(&m, 4));
        assert_eq!(m.len(), 3);
        // Flags still apply.
        assert_eq!(
            m.update(&u32b(6), &val(6), BPF_NOEXIST),
            Err(MapError::Exists)
        );
        assert_eq!(
            m.update(&u32b(7), &val(7), BPF_EXIST),
            Err(MapError::NotFound)
        );
        assert_eq!(
            m.update(&u32b(7), &val(7), BPF_F_LOCK)
                .map_err(|e| e.errno()),
            Err(-22)
        );
        // Deleted elements leave free slots, used before evicting.
        m.delete(&u32b(6)).unwrap();
        m.update(&u32b(8), &val(8), BPF_ANY).unwrap();
        assert!(has(&m, 3) && has(&m, 5) && has(&m, 8));
    }

    #[test]
    fn lru_order_matches_an_exact_model() {
        let m = hash(MapType::LruHash, 8);
        let mut model: VecDeque<u32> = VecDeque::new(); // front = least recently used
        let mut x: u32 = 12345;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let k = x % 20;
            let touch = |model: &mut VecDeque<u32>, k| {
                model.retain(|&e| e != k);
                model.push_back(k);
            };
            match (x >> 8) % 4 {
                0 | 1 => {
                    m.update(&u32b(k), &val(k.into()), BPF_ANY).unwrap();
                    if !model.contains(&k) && model.len() == 8 {
                        model.pop_front();
                    }
                    touch(&mut model, k);
                }
                2 => {
                    let got = m.lookup_ptr(&u32b(k), 0).is_some();
                    assert_eq!(got, model.contains(&k));
                    if got {
                        touch(&mut model, k);
                    }
                }
                _ => {
                    let got = m.delete(&u32b(k));
                    assert_eq!(got.is_ok(), model.contains(&k));
                    model.retain(|&e| e != k);
                }
            }
            assert_eq!(m.len(), model.len());
        }
        for k in 0..20 {
            assert_eq!(has(&m, k), model.contains(&k), "key {k}");
        }
    }

    #[test]
    fn percpu_hash_values() {
        for t in [MapType::PercpuHash, MapType::LruPercpuHash] {
            let m = test_map(MapDef::new(t, 4, 4, 4));
            assert_eq!(m.host_value_size(), 32);
            // A program on CPU 1 creates the element: other CPUs read zero.
            assert_eq!(m.update_on_cpu(&u32b(1), &[7; 4], BPF_ANY, 1), Ok(()));
            let mut want = vec![0u8; 32];
            want[8..12].copy_from_slice(&[7; 4]);
            assert_eq!(m.lookup(&u32b(1)), Ok(want.clone()));
            // An existing element: only that CPU's copy changes.
            assert_eq!(m.update_on_cpu(&u32b(1), &[9; 4], BPF_EXIST, 3), Ok(()));
            want[24..28].copy_from_slice(&[9; 4]);
            assert_eq!(m.lookup(&u32b(1)), Ok(want));
            let all: Vec<u8> = (0..32).collect();
            assert_eq!(m.update(&u32b(1), &all, BPF_ANY), Ok(()));
            assert_eq!(m.lookup(&u32b(1)), Ok(all.clone()));
            assert_eq!(
                m.update(&u32b(2), &all[..4], BPF_ANY),
                Err(MapError::ValueSize {
                    expected: 32,
                    got: 4
                })
            );
            assert_eq!(
                m.update_on_cpu(&u32b(2), &all, BPF_ANY, 0),
                Err(MapError::ValueSize {
                    expected: 4,
                    got: 32
                })
            );
            assert_eq!(
                m.update_on_cpu(&u32b(2), &[0; 4], BPF_ANY, 9),
                Err(MapError::CpuOutOfRange { cpu: 9, cpus: 4 })
            );
            let c0 = m.lookup_ptr(&u32b(1), 0).unwrap().as_ptr() as usize;
            let c2 = m.lookup_ptr(&u32b(1), 2).unwrap().as_ptr() as usize;
            assert_eq!(c2 - c0, 16);
            assert!(m.lookup_ptr(&u32b(1), 4).is_none());
        }
    }

    #[test]
    fn freed_slots_are_reused_in_place() {
        let m = hash(MapType::Hash, 4);
        m.update(&u32b(1), &val(1), BPF_ANY).unwrap();
        let p = m.lookup_ptr(&u32b(1), 0).unwrap();
        m.update(&u32b(1), &val(2), BPF_ANY).unwrap();
        assert_eq!(m.lookup_ptr(&u32b(1), 0), Some(p), "updates write in place");
        m.delete(&u32b(1)).unwrap();
        m.update(&u32b(2), &val(2), BPF_ANY).unwrap();
        assert_eq!(
            m.lookup_ptr(&u32b(2), 0),
            Some(p),
            "the freed slot is reused first"
        );
        let region = m.value_regions()[0];
        assert!(region.contains(p.as_ptr() as usize, 8));
        assert_eq!(region.len, 4 * 8);
    }
}
