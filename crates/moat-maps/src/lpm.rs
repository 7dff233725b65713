//! Longest-prefix-match tries (`BPF_MAP_TYPE_LPM_TRIE`).
//!
//! A key is a `u32` prefix length in host byte order followed by `key_size - 4` data bytes, compared
//! most significant bit first. An element matches a lookup key when its prefix length is at most the
//! lookup's and their first `prefixlen` bits agree; a lookup returns the longest match.
//!
//! Instead of the kernel's binary trie, elements are indexed by their normalized key (prefix length plus
//! the data masked to it) in a hash table, together with the set of prefix lengths in use. A lookup
//! probes the lengths present, longest first, so it costs one hash probe per distinct prefix length at
//! most. Values live in preallocated slots, like hash maps'. Iteration (`next_key`) goes in slot order
//! and returns keys as last stored, including any bits beyond the prefix, as the kernel does.

use crate::def::{MapDef, LPM_KEY_HEADER};
use crate::error::MapError;
use crate::mem::MapMemory;
use crate::value::{Slots, ValueSrc};
use moat_abi::{BPF_EXIST, BPF_NOEXIST};
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

const HEADER: usize = LPM_KEY_HEADER as usize;

/// The largest key: header plus 256 data bytes.
const MAX_KEY: usize = HEADER + crate::def::LPM_DATA_SIZE_MAX as usize;

#[derive(Debug)]
struct State {
    /// Normalized key to slot.
    index: hashbrown::HashMap<Box<[u8]>, u32>,
    /// Each slot's key as given by its latest update.
    keys: Vec<u8>,
    used: Vec<bool>,
    free: Vec<u32>,
    /// Number of elements per prefix length.
    lens: BTreeMap<u32, usize>,
}

/// An LPM trie.
#[derive(Debug)]
pub(crate) struct LpmTrie {
    key_size: usize,
    max_prefixlen: u32,
    max_entries: usize,
    pub(crate) slots: Slots,
    state: RwLock<State>,
}

/// Splits an LPM key into prefix length and data.
fn split(key: &[u8]) -> (u32, &[u8]) {
    match key.split_first_chunk::<HEADER>() {
        Some((h, data)) => (u32::from_ne_bytes(*h), data),
        None => (u32::MAX, &[]),
    }
}

/// Writes the normalized key for `prefixlen` bits of `data` into `out`, which has room for a whole key,
/// and returns its used part.
fn normalize<'a>(prefixlen: u32, data: &[u8], out: &'a mut [u8; MAX_KEY]) -> &'a [u8] {
    let (header, body) = out.split_at_mut(HEADER);
    header.copy_from_slice(&prefixlen.to_ne_bytes());
    // Keys were checked to be at most `MAX_KEY` bytes; `zip` stops at the shorter side regardless.
    let len = HEADER + data.len().min(body.len());
    let full = (prefixlen / 8) as usize;
    let bits = prefixlen % 8;
    for (i, (o, &d)) in body.iter_mut().zip(data).enumerate() {
        *o = if i < full {
            d
        } else if i == full && bits > 0 {
            d & (0xffu8 << (8 - bits))
        } else {
            0
        };
    }
    out.get(..len).unwrap_or(&[])
}

impl LpmTrie {
    pub(crate) fn new(def: &MapDef, memory: &Arc<dyn MapMemory>) -> Result<LpmTrie, MapError> {
        let n = def.max_entries as usize;
        let key_size = def.key_size as usize;
        Ok(LpmTrie {
            key_size,
            max_prefixlen: (def.key_size - LPM_KEY_HEADER) * 8,
            max_entries: n,
            slots: Slots::new(memory, def.max_entries, def.value_size, false, 1)?,
            state: RwLock::new(State {
                index: hashbrown::HashMap::with_capacity(n),
                keys: vec![0; n * key_size],
                used: vec![false; n],
                free: (0..def.max_entries).rev().collect(),
                lens: BTreeMap::new(),
            }),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The slot of the longest prefix matching `key`.
    fn longest_match(&self, st: &State, key: &[u8]) -> Option<u32> {
        let (prefixlen, data) = split(key);
        if prefixlen > self.max_prefixlen {
            return None;
        }
        let mut buf = [0u8; MAX_KEY];
        st.lens
            .range(..=prefixlen)
            .rev()
            .find_map(|(&len, _)| st.index.get(normalize(len, data, &mut buf)).copied())
    }

    /// The slot of exactly this prefix.
    fn exact(&self, st: &State, key: &[u8]) -> Option<u32> {
        let (prefixlen, data) = split(key);
        if prefixlen > self.max_prefixlen {
            return None;
        }
        let mut buf = [0u8; MAX_KEY];
        st.index.get(normalize(prefixlen, data, &mut buf)).copied()
    }

    pub(crate) fn lookup_ptr(&self, key: &[u8]) -> Option<NonNull<u8>> {
        let st = self.read();
        let slot = self.longest_match(&st, key)?;
        self.slots.ptr(slot as usize, 0)
    }

    pub(crate) fn lookup_into(&self, key: &[u8], out: &mut [u8]) -> Result<(), MapError> {
        let st = self.read();
        let slot = self.longest_match(&st, key).ok_or(MapError::NotFound)?;
        self.slots.read(slot as usize, out);
        Ok(())
    }

    fn check_prefix(&self, key: &[u8]) -> Result<(), MapError> {
        let (prefixlen, _) = split(key);
        if prefixlen > self.max_prefixlen {
            return Err(MapError::PrefixTooLong {
                prefixlen,
                max: self.max_prefixlen,
            });
        }
        Ok(())
    }

    fn store_key(&self, st: &mut State, slot: u32, key: &[u8]) {
        let start = slot as usize * self.key_size;
        if let Some(k) = st.keys.get_mut(start..start + self.key_size) {
            k.copy_from_slice(key);
        }
    }

    /// `trie_update_elem`.
    pub(crate) fn update(&self, key: &[u8], src: ValueSrc<'_>, flags: u64) -> Result<(), MapError> {
        if flags > BPF_EXIST {
            return Err(MapError::InvalidFlags { flags });
        }
        self.check_prefix(key)?;
        self.slots.check(src)?;
        let mut st = self.write();
        if let Some(slot) = self.exact(&st, key) {
            if flags == BPF_NOEXIST {
                return Err(MapError::Exists);
            }
            self.store_key(&mut st, slot, key);
            self.slots.write(slot as usize, src, false);
            return Ok(());
        }
        if flags == BPF_EXIST {
            return Err(MapError::NotFound);
        }
        let slot = st.free.pop().ok_or(MapError::NoSpace)?;
        let (prefixlen, data) = split(key);
        let mut buf = [0u8; MAX_KEY];
        let norm: Box<[u8]> = normalize(prefixlen, data, &mut buf).into();
        st.index.insert(norm, slot);
        *st.lens.entry(prefixlen).or_insert(0) += 1;
        self.store_key(&mut st, slot, key);
        if let Some(u) = st.used.get_mut(slot as usize) {
            *u = true;
        }
        self.slots.write(slot as usize, src, true);
        Ok(())
    }

    /// `trie_delete_elem`: removes exactly this prefix.
    pub(crate) fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        self.check_prefix(key)?;
        let (prefixlen, data) = split(key);
        let mut buf = [0u8; MAX_KEY];
        let norm = normalize(prefixlen, data, &mut buf);
        let mut st = self.write();
        let slot = st.index.remove(norm).ok_or(MapError::NotFound)?;
        if let Some(n) = st.lens.get_mut(&prefixlen) {
            *n -= 1;
            if *n == 0 {
                st.lens.remove(&prefixlen);
            }
        }
        if let Some(u) = st.used.get_mut(slot as usize) {
            *u = false;
        }
        st.free.push(slot);
        Ok(())
    }

    /// Iteration in slot order; an absent key restarts from the first element.
    pub(crate) fn next_key(&self, key: Option<&[u8]>, out: &mut [u8]) -> Result<(), MapError> {
        let st = self.read();
        let start = key
            .and_then(|k| self.exact(&st, k))
            .map_or(0, |s| s as usize + 1);
        let next = start
            + st.used
                .iter()
                .skip(start)
                .position(|&u| u)
                .ok_or(MapError::NotFound)?;
        let begin = next * self.key_size;
        let found = st
            .keys
            .get(begin..begin + self.key_size)
            .ok_or(MapError::NotFound)?;
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
        self.max_entries - self.read().free.len()
    }
}

#[cfg(test)]
mod tests {
    use crate::map::{test_map, u32b};
    use crate::{
        Map, MapDef, MapError, MapType, BPF_ANY, BPF_EXIST, BPF_F_NO_PREALLOC, BPF_NOEXIST,
    };

    fn trie(data: u32, max_entries: u32) -> Map {
        test_map(
            MapDef::new(MapType::LpmTrie, 4 + data, 4, max_entries).with_flags(BPF_F_NO_PREALLOC),
        )
    }

    fn key(prefixlen: u32, data: &[u8]) -> Vec<u8> {
        let mut k = prefixlen.to_ne_bytes().to_vec();
        k.extend_from_slice(data);
        k
    }

    fn ip(prefixlen: u32, a: [u8; 4]) -> Vec<u8> {
        key(prefixlen, &a)
    }

    /// The value of the longest match for `a`/32, if any.
    fn route(m: &Map, a: [u8; 4]) -> Option<u32> {
        m.lookup(&ip(32, a))
            .ok()
            .map(|v| u32::from_ne_bytes(v[..].try_into().unwrap()))
    }

    #[test]
    fn longest_prefix_wins() {
        let m = trie(4, 16);
        m.update(&ip(8, [10, 0, 0, 0]), &u32b(8), BPF_ANY).unwrap();
        m.update(&ip(16, [10, 1, 0, 0]), &u32b(16), BPF_ANY)
            .unwrap();
        m.update(&ip(24, [10, 1, 2, 0]), &u32b(24), BPF_ANY)
            .unwrap();
        assert_eq!(route(&m, [10, 1, 2, 3]), Some(24));
        assert_eq!(route(&m, [10, 1, 3, 3]), Some(16));
        assert_eq!(route(&m, [10, 2, 0, 0]), Some(8));
        assert_eq!(route(&m, [11, 0, 0, 0]), None);
        assert_eq!(m.lookup(&ip(32, [11, 0, 0, 0])), Err(MapError::NotFound));
        // The lookup key's own prefix length caps the match.
        assert_eq!(m.lookup(&ip(12, [10, 1, 2, 3])), Ok(u32b(8).to_vec()));
        assert_eq!(m.lookup(&ip(16, [10, 1, 2, 3])), Ok(u32b(16).to_vec()));
        // A default route.
        m.update(&ip(0, [0; 4]), &u32b(0), BPF_ANY).unwrap();
        assert_eq!(route(&m, [11, 0, 0, 0]), Some(0));
        // Program-side lookups return the value's address.
        let p = m.lookup_ptr(&ip(32, [10, 1, 9, 9]), 0).unwrap();
        assert_eq!(m.lookup_ptr(&ip(16, [10, 1, 0, 0]), 0), Some(p));
        assert!(m.value_regions()[0].contains(p.as_ptr() as usize, 4));
        // Lookups with too long a prefix find nothing.
        assert!(m.lookup_ptr(&ip(33, [10, 1, 2, 3]), 0).is_none());
    }

    #[test]
    fn prefixes_need_not_be_byte_aligned() {
        let m = trie(4, 16);
        m.update(&ip(12, [192, 160, 0, 0]), &u32b(12), BPF_ANY)
            .unwrap();
        m.update(&ip(9, [192, 128, 0, 0]), &u32b(9), BPF_ANY)
            .unwrap();
        assert_eq!(route(&m, [192, 175, 1, 1]), Some(12));
        assert_eq!(route(&m, [192, 176, 1, 1]), Some(9));
        assert_eq!(route(&m, [192, 127, 1, 1]), None);
        assert_eq!(route(&m, [193, 160, 1, 1]), None);
    }

    #[test]
    fn bits_past_the_prefix_are_ignored_but_kept() {
        let m = trie(4, 16);
        m.update(&ip(8, [10, 9, 9, 9]), &u32b(1), BPF_ANY).unwrap();
        assert_eq!(
            m.update(&ip(8, [10, 0, 0, 0]), &u32b(2), BPF_NOEXIST),
            Err(MapError::Exists)
        );
        assert_eq!(m.lookup(&ip(8, [10, 0, 0, 0])), Ok(u32b(1).to_vec()));
        assert_eq!(m.next_key(None), Ok(ip(8, [10, 9, 9, 9])));
        m.update(&ip(8, [10, 7, 7, 7]), &u32b(3), BPF_EXIST)
            .unwrap();
        assert_eq!(m.next_key(None), Ok(ip(8, [10, 7, 7, 7])));
        assert_eq!(m.len(), 1);
        assert_eq!(m.delete(&ip(8, [10, 1, 1, 1])), Ok(()));
        assert!(m.is_empty());
    }

    #[test]
    fn update_and_delete_errors() {
        let m = trie(4, 2);
        assert_eq!(
            m.update(&ip(33, [0; 4]), &u32b(0), BPF_ANY),
            Err(MapError::PrefixTooLong {
                prefixlen: 33,
                max: 32
            })
        );
        assert_eq!(
            m.update(&ip(33, [0; 4]), &u32b(0), BPF_ANY)
                .map_err(|e| e.errno()),
            Err(-22)
        );
        assert_eq!(m.delete(&ip(33, [0; 4])).map_err(|e| e.errno()), Err(-22));
        assert_eq!(
            m.update(&ip(8, [1; 4]), &u32b(0), 3),
            Err(MapError::InvalidFlags { flags: 3 })
        );
        assert_eq!(
            m.update(&ip(8, [1; 4]), &u32b(0), 4).map_err(|e| e.errno()),
            Err(-22)
        );
        assert_eq!(
            m.update(&ip(8, [1; 4]), &u32b(0), BPF_EXIST),
            Err(MapError::NotFound)
        );
        assert_eq!(m.update(&ip(8, [1; 4]), &u32b(0), BPF_NOEXIST), Ok(()));
        assert_eq!(m.update(&ip(16, [1; 4]), &u32b(0), BPF_ANY), Ok(()));
        assert_eq!(
            m.update(&ip(24, [1; 4]), &u32b(0), BPF_ANY),
            Err(MapError::NoSpace)
        );
        assert_eq!(
            m.update(&ip(24, [1; 4]), &u32b(0), BPF_ANY)
                .map_err(|e| e.errno()),
            Err(-28)
        );
        // Replacing an element works in a full trie.
        assert_eq!(m.update(&ip(16, [1; 4]), &u32b(5), BPF_EXIST), Ok(()));
        // Deletes are exact.
        assert_eq!(m.delete(&ip(24, [1; 4])), Err(MapError::NotFound));
        assert_eq!(m.delete(&ip(16, [1; 4])), Ok(()));
        assert_eq!(route(&m, [1; 4]), Some(0));
        assert_eq!(m.update(&ip(24, [1; 4]), &u32b(0), BPF_ANY), Ok(()));
        assert_eq!(
            m.update(&[0; 4], &u32b(0), BPF_ANY),
            Err(MapError::KeySize {
                expected: 8,
                got: 4
            })
        );
        assert_eq!(
            m.update(&ip(1, [1; 4]), &[0; 8], BPF_ANY),
            Err(MapError::ValueSize {
                expected: 4,
                got: 8
            })
        );
    }

    #[test]
    fn next_key_visits_every_prefix() {
        let m = trie(4, 8);
        let prefixes = [
            ip(8, [10, 0, 0, 0]),
            ip(16, [10, 1, 0, 0]),
            ip(0, [0; 4]),
            ip(32, [1, 2, 3, 4]),
        ];
        for p in &prefixes {
            m.update(p, &u32b(0), BPF_ANY).unwrap();
        }
        let mut keys: Vec<Vec<u8>> = m.keys().collect();
        keys.sort();
        let mut want = prefixes.to_vec();
        want.sort();
        assert_eq!(keys, want);
        let last = m.keys().last().unwrap();
        assert_eq!(m.next_key(Some(&last)), Err(MapError::NotFound));
        assert_eq!(m.next_key(Some(&ip(7, [0; 4]))), m.next_key(None));
        assert_eq!(m.next_key(Some(&ip(99, [0; 4]))), m.next_key(None));
    }

    #[test]
    fn ipv6_prefixes() {
        let m = trie(16, 8);
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        m.update(&key(32, &a), &u32b(32), BPF_ANY).unwrap();
        let mut b = a;
        b[4] = 0x80;
        m.update(&key(33, &b), &u32b(33), BPF_ANY).unwrap();
        let mut probe = b;
        probe[15] = 1;
        assert_eq!(m.lookup(&key(128, &probe)), Ok(u32b(33).to_vec()));
        probe[4] = 0x7f;
        assert_eq!(m.lookup(&key(128, &probe)), Ok(u32b(32).to_vec()));
        assert_eq!(
            m.update(&key(129, &probe), &u32b(0), BPF_ANY)
                .map_err(|e| e.errno()),
            Err(-22)
        );
    }
}
