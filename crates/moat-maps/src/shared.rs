//! Maps read from another process: the writer side publishes a map made in
//! [`SharedMemory`](crate::SharedMemory) ([`SharedMap::publish`]); a reader opens it as a [`SharedMap`] and dumps its
//! elements or consumes its records straight from the shared files, without the writer's help
//! (also after the writer is gone).
//!
//! # The directory
//!
//! For each map with tag `TAG` (any file-name-safe string, unique in the directory):
//!
//! - `TAG.map`, the descriptor, written (via a temporary file and a rename, so never seen half
//!   written) once the map exists: `key=value` lines `type` (the kernel's number), `key_size`,
//!   `value_size`, `max_entries`, `flags`, `cpus`, and `name` last;
//! - `TAG.0`, `TAG.1`, ...: the map's allocations in the order it makes them:
//!   - array and per-CPU array: `TAG.0`, the value slots (`value.rs`: slot `i` at
//!     `i * stride`, per-CPU copies each padded to 8 bytes);
//!   - hash, per-CPU hash, LRU hash, LRU per-CPU hash: `TAG.0` the value slots as for arrays,
//!     `TAG.1` the key table (`hash.rs`: per slot a state word, then the key), which says which
//!     slots hold elements and under which key;
//!   - ring buffer: `TAG.0`, the kernel's ring layout (`ringbuf.rs`: consumer page, producer page,
//!     data); the reader is the consumer and moves the consumer position;
//!   - perf event array: one ring like a ring buffer's per slot that got records, made at its
//!     first record, so in no particular order; the word after the consumer position holds the
//!     slot number plus one (0 while the ring is being made).
//!
//! Readers skip the parts of the files never written (`SEEK_DATA`/`SEEK_HOLE`): reading a hole of a
//! `tmpfs` file through a shared mapping gives it memory, so a reader scanning a sparse map would
//! otherwise grow it to its `max_entries`.
//!
//! Only one reader may consume a map's records at a time (ring buffers have a single consumer).
//! Readers may look elements up and iterate keys (`bpf(2)`'s lookup and get-next-key, for a
//! loader that serves them to a tool) and update arrays in place; hash maps gain and lose elements
//! only in the writer, whose index is private. A second process may take the writer's place
//! ([`Map::adopt`](crate::Map::adopt): a map over the same files, its index read back from the key
//! table), the maker going on as a reader.

use crate::array::ArrayMap;
use crate::def::{MapDef, MapType};
use crate::error::MapError;
use crate::hash::KeyTable;
use crate::map::Map;
use crate::perfbuf::PERF_BUFFER_BYTES;
use crate::ringbuf::{RingBuf, DATA_OFF};
use crate::shm::{Segment, SharedMemory};
use crate::value::Slots;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn io_error(path: &Path, e: impl ToString) -> MapError {
    MapError::Shared {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// What a reader holds of one map.
#[derive(Debug)]
enum View {
    /// The array and the segment of its values.
    Array(ArrayMap, Arc<Segment>),
    /// The values, the key table and the key table's segment.
    Hash(Slots, KeyTable, Arc<Segment>),
    Ring(RingBuf),
    /// Rings found so far as `(slot, ring)`, and the next allocation number to look for.
    Perf(Vec<(u32, RingBuf)>, u32),
}

/// A map another process made in [`SharedMemory`] and published ([`SharedMap::publish`]), read through its files.
#[derive(Debug)]
pub struct SharedMap {
    def: MapDef,
    cpus: usize,
    dir: PathBuf,
    tag: String,
    view: View,
}

/// The definition and CPU count in map `tag`'s descriptor in `dir`.
fn read_descriptor(dir: &Path, tag: &str) -> Result<(MapDef, usize), MapError> {
    let path = dir.join(format!("{tag}.map"));
    let text = std::fs::read_to_string(&path).map_err(|e| io_error(&path, e))?;
    parse_descriptor(&text, &path)
}

/// Parses a descriptor.
fn parse_descriptor(text: &str, path: &Path) -> Result<(MapDef, usize), MapError> {
    let field = |key: &str| -> Result<&str, MapError> {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .ok_or_else(|| io_error(path, format!("no `{key}` in the descriptor")))
    };
    let num = |key: &str| -> Result<u32, MapError> {
        field(key)?
            .parse::<u32>()
            .map_err(|e| io_error(path, format!("`{key}`: {e}")))
    };
    let raw = num("type")?;
    let map_type = MapType::from_u32(raw).ok_or(MapError::UnknownType(raw))?;
    let def = MapDef::new(
        map_type,
        num("key_size")?,
        num("value_size")?,
        num("max_entries")?,
    )
    .with_flags(num("flags")?)
    .with_name(field("name")?);
    let cpus = num("cpus")? as usize;
    def.check(cpus)?;
    if !SharedMap::supports(map_type) {
        return Err(MapError::NotSupported {
            map_type,
            op: "shared storage",
        });
    }
    Ok((def, cpus))
}

impl crate::Map {
    /// Takes over map `tag`, which another process made in [`SharedMemory`] and published in `dir`
    /// ([`SharedMap::publish`]): a map of this process over the same files (over `inner`'s range,
    /// as [`SharedMemory::new`] places them), holding the elements they hold. The values keep
    /// being shared: what this map's programs write, the maker and its readers see.
    ///
    /// Arrays (per-CPU too) may be written by both; a hash map (per-CPU and LRU kinds too) has one
    /// writer, whose index is private, so the maker must stop changing it and go on as a reader
    /// ([`SharedMap`]). A perf event array's rings are made by the process that writes records
    /// (each at its first record, as [`SharedMemory::new`] makes them): adopting one gives a map
    /// that makes them in `dir`, where the maker consumes them as a reader. Other types:
    /// [`MapError::NotSupported`]. A missing or short file: [`MapError::Shared`].
    pub fn adopt(
        dir: &Path,
        tag: &str,
        inner: Option<std::sync::Arc<dyn crate::MapMemory>>,
    ) -> Result<crate::Map, MapError> {
        let (def, cpus) = read_descriptor(dir, tag)?;
        if !crate::Map::adoptable(def.map_type) {
            return Err(MapError::NotSupported {
                map_type: def.map_type,
                op: "adoption by a second process",
            });
        }
        if def.map_type == MapType::PerfEventArray {
            return crate::Map::create_with(def, SharedMemory::new(dir, tag, inner), cpus);
        }
        crate::Map::create_with(def, SharedMemory::adopting(dir, tag, inner), cpus)
    }

    /// Whether maps of type `t` can be taken over by a second process ([`Map::adopt`](crate::Map::adopt)):
    /// arrays, hash maps and perf event arrays.
    pub fn adoptable(t: MapType) -> bool {
        matches!(
            t,
            MapType::Array | MapType::PercpuArray | MapType::PerfEventArray
        ) || t.is_hash()
    }
}

impl SharedMap {
    /// Whether maps of type `t` can live in [`SharedMemory`] and be read as a [`SharedMap`].
    pub fn supports(t: MapType) -> bool {
        t.is_hash()
            || matches!(
                t,
                MapType::Array | MapType::PercpuArray | MapType::RingBuf | MapType::PerfEventArray
            )
    }

    /// Writes the descriptor `dir/TAG.map` of `map`, which was created in
    /// `SharedMemory::new(dir, tag, ..)`: from now on readers may open it.
    pub fn publish(map: &Map, dir: &Path, tag: &str) -> Result<(), MapError> {
        let def = map.def();
        if !SharedMap::supports(def.map_type) {
            return Err(MapError::NotSupported {
                map_type: def.map_type,
                op: "shared storage",
            });
        }
        let text = format!(
            "type={}\nkey_size={}\nvalue_size={}\nmax_entries={}\nflags={}\ncpus={}\nname={}\n",
            def.map_type.as_u32(),
            def.key_size,
            def.value_size,
            def.max_entries,
            def.flags,
            map.cpus(),
            def.name.replace('\n', " ")
        );
        let path = dir.join(format!("{tag}.map"));
        let tmp = dir.join(format!(".{tag}.map.tmp"));
        std::fs::write(&tmp, text).map_err(|e| io_error(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))
    }

    /// The tags of the maps published in `dir`, sorted.
    pub fn list(dir: &Path) -> Vec<String> {
        let mut tags: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                (!name.starts_with('.'))
                    .then(|| name.strip_suffix(".map").map(str::to_string))
                    .flatten()
            })
            .collect();
        tags.sort();
        tags
    }

    /// Opens map `tag` published in `dir`. [`MapError::Shared`] if a file is missing or too
    /// short, [`MapError::InvalidDef`] (and the other creation errors) for an impossible
    /// descriptor.
    pub fn open(dir: &Path, tag: &str) -> Result<SharedMap, MapError> {
        let (def, cpus) = read_descriptor(dir, tag)?;
        let mapped = |n: u32, len: usize| {
            let file = SharedMemory::file(dir, tag, n);
            let segment = Segment::open(&file, len)?;
            let block = segment
                .block(len)
                .ok_or_else(|| io_error(&file, "too short"))?;
            Ok::<_, MapError>((segment, block))
        };
        let segment = |n: u32, len: usize| mapped(n, len).map(|(_, block)| block);
        let percpu = def.map_type.is_percpu();
        let short = |n: u32| io_error(&SharedMemory::file(dir, tag, n), "too short for the map");
        let slots_len = |def: &MapDef| {
            let elem = crate::def::round8(u64::from(def.value_size)) as usize;
            elem * if percpu { cpus } else { 1 } * def.max_entries as usize
        };
        let view = match def.map_type {
            MapType::Array | MapType::PercpuArray => {
                let (values, block) = mapped(0, slots_len(&def))?;
                let slots = Slots::from_block(block, def.max_entries, def.value_size, percpu, cpus)
                    .ok_or_else(|| short(0))?;
                View::Array(ArrayMap::from_slots(&def, slots), values)
            }
            MapType::RingBuf => {
                let size = u64::from(def.max_entries);
                let block = segment(0, DATA_OFF + def.max_entries as usize)?;
                View::Ring(RingBuf::from_block(block, size).ok_or_else(|| short(0))?)
            }
            MapType::PerfEventArray => View::Perf(Vec::new(), 0),
            _ => {
                let slots = Slots::from_block(
                    segment(0, slots_len(&def))?,
                    def.max_entries,
                    def.value_size,
                    percpu,
                    cpus,
                )
                .ok_or_else(|| short(0))?;
                let key_len = KeyTable::stride(def.key_size as usize) * def.max_entries as usize;
                let (keys, block) = mapped(1, key_len)?;
                let table = KeyTable::from_block(block, def.max_entries, def.key_size)
                    .ok_or_else(|| short(1))?;
                View::Hash(slots, table, keys)
            }
        };
        Ok(SharedMap {
            def,
            cpus,
            dir: dir.to_path_buf(),
            tag: tag.to_string(),
            view,
        })
    }

    /// The map's definition.
    pub fn def(&self) -> &MapDef {
        &self.def
    }

    /// The map's name.
    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// The number of CPUs the map was made for.
    pub fn cpus(&self) -> usize {
        self.cpus
    }

    /// The length of a host-side value (all CPUs' copies for per-CPU maps; 0 for rings).
    pub fn host_value_size(&self) -> usize {
        match &self.view {
            View::Array(a, _) => a.slots.host_size(),
            View::Hash(slots, ..) => slots.host_size(),
            View::Ring(_) | View::Perf(..) => 0,
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), MapError> {
        let expected = self.def.key_size as usize;
        if key.len() != expected {
            return Err(MapError::KeySize {
                expected,
                got: key.len(),
            });
        }
        Ok(())
    }

    /// The hash slots from `from` on whose state word lies in a written part of the key table
    /// (`keys`): the others never held an element, and are not read (reading a hole of a `tmpfs`
    /// file through the mapping would give it memory).
    fn written_slots(&self, keys: &Segment, from: usize) -> impl Iterator<Item = usize> {
        let stride = KeyTable::stride(self.def.key_size as usize);
        let max = self.def.max_entries as usize;
        keys.data_ranges().into_iter().flat_map(move |r| {
            let first = r.start.div_ceil(stride).max(from);
            let end = r.end.div_ceil(stride).min(max);
            first..end.max(first)
        })
    }

    /// The slot holding `key` and its value, or `None`.
    fn find(&self, key: &[u8]) -> Option<(usize, Vec<u8>)> {
        match &self.view {
            View::Array(a, _) => {
                let index = u32::from_ne_bytes(key.try_into().ok()?);
                let mut value = vec![0; a.slots.host_size()];
                a.lookup_into(index, &mut value).ok()?;
                Some((index as usize, value))
            }
            View::Hash(slots, table, keys) => {
                let mut found = vec![0; key.len()];
                let mut value = vec![0; slots.host_size()];
                self.written_slots(keys, 0).find_map(|i| {
                    (table.read_entry(i, &mut found, || slots.read(i, &mut value)) && found == key)
                        .then(|| (i, value.clone()))
                })
            }
            View::Ring(_) | View::Perf(..) => None,
        }
    }

    /// `BPF_MAP_LOOKUP_ELEM` from the reader's side: a copy of the value of `key`
    /// ([`host_value_size`](SharedMap::host_value_size) bytes). [`MapError::NotFound`] if absent,
    /// [`MapError::KeySize`] for a key of the wrong length, [`MapError::NotSupported`] on rings.
    /// A hash map is scanned (the index is the writer's).
    pub fn lookup(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        if matches!(self.view, View::Ring(_) | View::Perf(..)) {
            return Err(MapError::NotSupported {
                map_type: self.def.map_type,
                op: "lookup",
            });
        }
        self.check_key(key)?;
        self.find(key).map(|(_, v)| v).ok_or(MapError::NotFound)
    }

    /// As [`lookup`](SharedMap::lookup), into `out` ([`host_value_size`](SharedMap::host_value_size)
    /// bytes, else [`MapError::ValueSize`]): an array's value is copied with no allocation, for
    /// readers that look one up often.
    pub fn lookup_into(&self, key: &[u8], out: &mut [u8]) -> Result<(), MapError> {
        if out.len() != self.host_value_size() {
            return Err(MapError::ValueSize {
                expected: self.host_value_size(),
                got: out.len(),
            });
        }
        match &self.view {
            View::Array(a, _) => {
                self.check_key(key)?;
                let index = u32::from_ne_bytes(key.try_into().map_err(|_| MapError::NotFound)?);
                a.lookup_into(index, out)
            }
            _ => {
                let value = self.lookup(key)?;
                out.copy_from_slice(&value);
                Ok(())
            }
        }
    }

    /// `BPF_MAP_GET_NEXT_KEY` from the reader's side, in the writer's order (slot order): the key
    /// after `key`, or the first one when `key` is `None` or absent; [`MapError::NotFound`] after
    /// the last.
    pub fn next_key(&self, key: Option<&[u8]>) -> Result<Vec<u8>, MapError> {
        if let Some(k) = key {
            self.check_key(k)?;
        }
        match &self.view {
            View::Array(a, _) => {
                let index = key.and_then(|k| k.try_into().ok()).map(u32::from_ne_bytes);
                a.next_key(index).map(|i| i.to_ne_bytes().to_vec())
            }
            View::Hash(slots, table, keys) => {
                let start = key
                    .and_then(|k| self.find(k))
                    .map_or(0, |(slot, _)| slot + 1);
                let mut found = vec![0; self.def.key_size as usize];
                let mut value = vec![0; slots.host_size()];
                self.written_slots(keys, start)
                    .find(|&i| table.read_entry(i, &mut found, || slots.read(i, &mut value)))
                    .map(|_| found)
                    .ok_or(MapError::NotFound)
            }
            View::Ring(_) | View::Perf(..) => Err(MapError::NotSupported {
                map_type: self.def.map_type,
                op: "next_key",
            }),
        }
    }

    /// `BPF_MAP_UPDATE_ELEM` from the reader's side, for arrays (and per-CPU arrays, all CPUs'
    /// copies in `value`): the value is copied into the slot in place, as the writer's own
    /// host-side update does (`BPF_ANY` / `BPF_EXIST`). Hash maps refuse ([`MapError::NotSupported`]):
    /// their index is private to the writer, the one process that may add or remove elements.
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        let View::Array(a, _) = &self.view else {
            return Err(MapError::NotSupported {
                map_type: self.def.map_type,
                op: "update from another process",
            });
        };
        self.check_key(key)?;
        let index = u32::from_ne_bytes(key.try_into().map_err(|_| MapError::NotFound)?);
        a.update(index, crate::value::ValueSrc::Host(value), flags)
    }

    /// Every element as `(key, host-side value)`, in slot order (the order of
    /// [`Map::keys`](crate::Map::keys)): each index of an array, each element of a hash map
    /// (skipping a slot that is being written and stays so through many retries). Nothing for ring
    /// buffers and perf event arrays.
    pub fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        match &self.view {
            View::Array(a, values) => {
                // Slots never written read as zeroes, without touching (and so growing) them.
                let written = values.data_ranges();
                let stride = a.slots.stride;
                for i in 0..self.def.max_entries {
                    let mut value = vec![0; a.slots.host_size()];
                    let start = i as usize * stride;
                    if written
                        .iter()
                        .any(|r| r.start < start + stride && start < r.end)
                    {
                        a.slots.read(i as usize, &mut value);
                    }
                    out.push((i.to_ne_bytes().to_vec(), value));
                }
            }
            View::Hash(slots, table, keys) => {
                let mut key = vec![0; self.def.key_size as usize];
                let mut value = vec![0; slots.host_size()];
                for i in self.written_slots(keys, 0) {
                    if table.read_entry(i, &mut key, || slots.read(i, &mut value)) {
                        out.push((key.clone(), value.clone()));
                    }
                }
            }
            View::Ring(_) | View::Perf(..) => {}
        }
        out
    }

    /// Consumes the committed records of a ring buffer (slot 0) or of every slot of a perf event
    /// array, passing each to `f` as `(slot, record)`, in order per slot; how many. 0 for other
    /// maps. [`MapError::CorruptRecord`] if a ring holds an impossible header.
    pub fn consume(&mut self, f: &mut dyn FnMut(u32, &[u8])) -> Result<usize, MapError> {
        match &mut self.view {
            View::Ring(ring) => ring.consume(&mut |r| f(0, r)),
            View::Perf(rings, next) => {
                // Rings made since the last call.
                loop {
                    let file = SharedMemory::file(&self.dir, &self.tag, *next);
                    let len = DATA_OFF + PERF_BUFFER_BYTES;
                    let Ok(segment) = Segment::open(&file, len) else {
                        break;
                    };
                    let ring = segment
                        .block(len)
                        .and_then(|b| RingBuf::from_block(b, PERF_BUFFER_BYTES as u64));
                    let Some(ring) = ring else { break };
                    let Some(slot) = ring.tag().checked_sub(1) else {
                        // Still being made: looked at again next time.
                        break;
                    };
                    rings.push((u32::try_from(slot).unwrap_or(u32::MAX), ring));
                    rings.sort_by_key(|(slot, _)| *slot);
                    *next += 1;
                }
                let mut n = 0;
                for (slot, ring) in rings.iter() {
                    n += ring.consume(&mut |r| f(*slot, r))?;
                }
                Ok(n)
            }
            View::Array(..) | View::Hash(..) => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MapMemory, BPF_ANY, BPF_F_CURRENT_CPU};
    use std::sync::Arc;

    /// A fresh directory under `/dev/shm` (or the temporary directory), removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let base = Path::new("/dev/shm");
            let base = if base.is_dir() {
                base.to_path_buf()
            } else {
                std::env::temp_dir()
            };
            let dir = base.join(format!("moat-maps-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir(&dir).expect("directory");
            Dir(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn shared_map(dir: &Dir, tag: &str, def: MapDef) -> Map {
        let memory: Arc<dyn MapMemory> = SharedMemory::new(&dir.0, tag, None);
        let map = Map::create_with(def, memory, 2).expect("map");
        SharedMap::publish(&map, &dir.0, tag).expect("published");
        map
    }

    /// What the writer's own host-side view holds, for comparison with the reader's.
    fn model(map: &Map) -> Vec<(Vec<u8>, Vec<u8>)> {
        map.keys()
            .map(|k| {
                let v = map.lookup(&k).expect("present");
                (k, v)
            })
            .collect()
    }

    #[test]
    fn readers_see_what_writers_stored_for_every_shareable_type() {
        let dir = Dir::new("types");
        for (i, t) in [
            MapType::Array,
            MapType::PercpuArray,
            MapType::Hash,
            MapType::PercpuHash,
            MapType::LruHash,
            MapType::LruPercpuHash,
        ]
        .into_iter()
        .enumerate()
        {
            let tag = format!("m{i}");
            let map = shared_map(&dir, &tag, MapDef::new(t, 4, 12, 8).with_name(t.name()));
            for k in [1u32, 5, 7, 3] {
                let mut v = [0u8; 12];
                v[..4].copy_from_slice(&(k * 10).to_ne_bytes());
                map.update_on_cpu(&k.to_ne_bytes(), &v, BPF_ANY, 1)
                    .expect("update");
            }
            if !matches!(t, MapType::Array | MapType::PercpuArray) {
                map.delete(&5u32.to_ne_bytes()).expect("delete");
            }
            let reader = SharedMap::open(&dir.0, &tag).expect("opens");
            assert_eq!(reader.name(), t.name());
            assert_eq!(reader.cpus(), 2);
            assert_eq!(reader.entries(), model(&map), "{t}");
        }
        let mut tags = SharedMap::list(&dir.0);
        tags.sort();
        assert_eq!(tags, ["m0", "m1", "m2", "m3", "m4", "m5"]);
    }

    #[test]
    fn ring_and_perf_records_are_consumed_by_the_reader() {
        let dir = Dir::new("rings");
        let ring = shared_map(&dir, "r", MapDef::new(MapType::RingBuf, 0, 0, 4096));
        let perf = shared_map(&dir, "p", MapDef::new(MapType::PerfEventArray, 4, 4, 2));
        let mut ring_reader = SharedMap::open(&dir.0, "r").expect("ring");
        let mut perf_reader = SharedMap::open(&dir.0, "p").expect("perf");
        let mut got = Vec::new();
        assert_eq!(perf_reader.consume(&mut |_, _| {}), Ok(0));
        for round in 0..50u8 {
            ring.ringbuf_output(&[round; 100], 0).expect("fits");
            perf.perf_output(&[round; 3], BPF_F_CURRENT_CPU, usize::from(round % 2))
                .expect("fits");
            ring_reader
                .consume(&mut |slot, r| got.push((9, slot, r.to_vec())))
                .expect("consumes");
            perf_reader
                .consume(&mut |slot, r| got.push((1, slot, r.to_vec())))
                .expect("consumes");
        }
        let want: Vec<_> = (0..50u8)
            .flat_map(|r| [(9, 0, vec![r; 100]), (1, u32::from(r % 2), vec![r; 3])])
            .collect();
        assert_eq!(got, want);
        // The writer sees the reader's consumer position.
        assert_eq!(ring.ringbuf_query(crate::BPF_RB_AVAIL_DATA), 0);
        assert_eq!(perf.perf_consume(&mut |_, _| {}), 0);
    }

    #[test]
    fn maps_grow_a_segment_each_and_remove_their_files() {
        let dir = Dir::new("files");
        let map = shared_map(&dir, "h", MapDef::new(MapType::Hash, 8, 8, 1000));
        let files = |d: &Dir| {
            let mut f: Vec<String> = std::fs::read_dir(&d.0)
                .expect("dir")
                .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
                .collect();
            f.sort();
            f
        };
        assert_eq!(files(&dir), ["h.0", "h.1", "h.map"]);
        let len = std::fs::metadata(dir.0.join("h.0")).expect("file").len();
        assert_eq!(len, 8192, "1000 values of 8 bytes, in whole pages");
        let perf = shared_map(&dir, "p", MapDef::new(MapType::PerfEventArray, 4, 4, 4));
        assert_eq!(files(&dir).len(), 4, "no ring before the first record");
        perf.perf_output(b"x", 3, 0).expect("fits");
        assert!(files(&dir).contains(&"p.0".to_string()));
        drop(map);
        drop(perf);
        assert_eq!(files(&dir), ["h.map", "p.map"]);
        assert!(matches!(
            SharedMap::open(&dir.0, "h"),
            Err(MapError::Shared { .. })
        ));
        assert!(matches!(
            SharedMap::open(&dir.0, "none"),
            Err(MapError::Shared { .. })
        ));
    }

    #[test]
    fn a_reader_scanning_while_a_writer_updates_never_sees_torn_keys() {
        let dir = Dir::new("torn");
        // 24-byte keys and values: every key is one byte repeated, its value the same byte, so a
        // torn key (or a key with another key's value) shows as mixed bytes.
        let map = shared_map(&dir, "t", MapDef::new(MapType::Hash, 24, 24, 16));
        let reader = SharedMap::open(&dir.0, "t").expect("opens");
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut x = 7u64;
                for _ in 0..200_000 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let b = (x >> 40) as u8 % 40;
                    if (x >> 20).is_multiple_of(3) {
                        let _ = map.delete(&[b; 24]);
                    } else {
                        let _ = map.update(&[b; 24], &[b; 24], BPF_ANY);
                    }
                }
                stop.store(true, std::sync::atomic::Ordering::Release);
            });
            let mut scans = 0;
            let mut seen = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) || scans == 0 {
                for (k, v) in reader.entries() {
                    assert!(k.iter().all(|&b| b == k[0]), "torn key {k:?}");
                    assert_eq!(v, k, "a value that is not its key's");
                    assert!(k[0] < 40);
                    seen += 1;
                }
                scans += 1;
            }
            assert!(seen > 0);
        });
        assert_eq!(reader.entries(), model(&map));
    }

    #[test]
    fn maps_over_an_inner_memory_keep_its_addresses() {
        let dir = Dir::new("inner");
        // Whole-page heap allocations stand in for a domain's arena.
        let memory: Arc<dyn MapMemory> =
            SharedMemory::new(&dir.0, "a", Some(crate::HeapMemory::shared()));
        let map = Map::create_with(MapDef::new(MapType::Array, 4, 8, 600), memory, 1).expect("map");
        SharedMap::publish(&map, &dir.0, "a").expect("published");
        let reader = SharedMap::open(&dir.0, "a").expect("opens");
        let p = map.lookup_ptr(&599u32.to_ne_bytes(), 0).expect("in range");
        assert!(map.value_regions()[0].contains(p.as_ptr() as usize, 8));
        map.update(&599u32.to_ne_bytes(), &77u64.to_ne_bytes(), BPF_ANY)
            .expect("update");
        assert_eq!(
            reader.entries().last(),
            Some(&(599u32.to_ne_bytes().to_vec(), 77u64.to_ne_bytes().to_vec()))
        );
        drop(map);
        // The range went back to the heap as anonymous memory: the heap can use it again.
        let again = vec![1u8; 8192];
        assert!(again.iter().all(|&b| b == 1));
    }

    #[test]
    fn readers_look_up_iterate_and_update_arrays_like_the_writer() {
        let dir = Dir::new("ops");
        let hash = shared_map(&dir, "h", MapDef::new(MapType::Hash, 4, 8, 8));
        let array = shared_map(&dir, "a", MapDef::new(MapType::PercpuArray, 4, 4, 3));
        for k in [9u32, 4, 6] {
            hash.update(&k.to_ne_bytes(), &u64::from(k).to_ne_bytes(), BPF_ANY)
                .expect("update");
        }
        let h = SharedMap::open(&dir.0, "h").expect("hash");
        let a = SharedMap::open(&dir.0, "a").expect("array");
        // Every key, in the writer's order, with its value; the same errors as the writer's.
        let mut keys = Vec::new();
        let mut at = None;
        while let Ok(k) = h.next_key(at.as_deref()) {
            assert_eq!(h.lookup(&k), hash.lookup(&k));
            keys.push(k.clone());
            at = Some(k);
        }
        assert_eq!(keys, hash.keys().collect::<Vec<_>>());
        assert_eq!(h.next_key(Some(&77u32.to_ne_bytes())), hash.next_key(None));
        assert_eq!(h.lookup(&5u32.to_ne_bytes()), Err(MapError::NotFound));
        assert!(matches!(h.lookup(&[0; 2]), Err(MapError::KeySize { .. })));
        assert!(matches!(
            h.update(&9u32.to_ne_bytes(), &[0; 8], BPF_ANY),
            Err(MapError::NotSupported { .. })
        ));
        // Arrays: updates from the reader are seen by the writer, with the writer's rules.
        assert_eq!(a.host_value_size(), array.host_value_size());
        let all: Vec<u8> = (0..16).collect();
        assert_eq!(a.update(&1u32.to_ne_bytes(), &all, BPF_ANY), Ok(()));
        assert_eq!(array.lookup(&1u32.to_ne_bytes()), Ok(all.clone()));
        assert_eq!(a.lookup(&1u32.to_ne_bytes()), Ok(all.clone()));
        for (key, flags, value) in [
            (1u32, crate::BPF_NOEXIST, all.clone()),
            (3, BPF_ANY, all.clone()),
            (1, 9, all.clone()),
            (1, BPF_ANY, vec![0; 4]),
            (7, crate::BPF_F_LOCK, all.clone()),
            (1, crate::BPF_F_LOCK, all.clone()),
        ] {
            assert_eq!(
                a.update(&key.to_ne_bytes(), &value, flags),
                array.update(&key.to_ne_bytes(), &value, flags),
                "key {key} flags {flags}"
            );
        }
        assert_eq!(a.next_key(None), array.next_key(None));
        assert_eq!(
            a.next_key(Some(&2u32.to_ne_bytes())),
            Err(MapError::NotFound)
        );
    }

    #[test]
    fn reading_a_sparse_map_does_not_grow_it() {
        use std::os::unix::fs::MetadataExt;
        let dir = Dir::new("sparse");
        let used = |files: &[&str]| -> u64 {
            files
                .iter()
                .map(|f| std::fs::metadata(dir.0.join(f)).expect("file").blocks() * 512)
                .sum()
        };
        // 100 000 slots each: 1.6 MB of key table, 800 KB of values.
        let hash = shared_map(&dir, "h", MapDef::new(MapType::Hash, 8, 8, 100_000));
        let array = shared_map(&dir, "a", MapDef::new(MapType::Array, 4, 8, 100_000));
        for k in [3u64, 70_000, 99_999] {
            hash.update(&k.to_ne_bytes(), &k.to_ne_bytes(), BPF_ANY)
                .expect("update");
        }
        array
            .update(&50_000u32.to_ne_bytes(), &7u64.to_ne_bytes(), BPF_ANY)
            .expect("update");
        let before = used(&["h.0", "h.1", "a.0"]);
        assert!(before <= 6 * 4096, "{before} bytes after 4 writes");
        let h = SharedMap::open(&dir.0, "h").expect("hash");
        let a = SharedMap::open(&dir.0, "a").expect("array");
        let (hash_entries, array_entries) = (h.entries(), a.entries());
        assert_eq!(h.next_key(None), hash.next_key(None));
        assert_eq!(h.lookup(&1u64.to_ne_bytes()), Err(MapError::NotFound));
        let after = used(&["h.0", "h.1", "a.0"]);
        assert_eq!(after, before, "the reader grew the files");
        // (The writer's own host-side reads of every array index do touch every page.)
        assert_eq!(hash_entries, model(&hash));
        assert_eq!(array_entries.len(), 100_000);
        assert_eq!(array_entries[50_000].1, 7u64.to_ne_bytes());
        assert_eq!(array_entries, model(&array));
    }

    #[test]
    fn bad_descriptors_are_errors() {
        let dir = Dir::new("bad");
        let write = |text: &str| std::fs::write(dir.0.join("x.map"), text).expect("written");
        write("type=1\nkey_size=4\n");
        assert!(matches!(
            SharedMap::open(&dir.0, "x"),
            Err(MapError::Shared { .. })
        ));
        write("type=999\nkey_size=4\nvalue_size=4\nmax_entries=1\nflags=0\ncpus=1\nname=x\n");
        assert_eq!(
            SharedMap::open(&dir.0, "x").map(|_| ()),
            Err(MapError::UnknownType(999))
        );
        write("type=2\nkey_size=8\nvalue_size=4\nmax_entries=1\nflags=0\ncpus=1\nname=x\n");
        assert!(matches!(
            SharedMap::open(&dir.0, "x"),
            Err(MapError::InvalidDef { .. })
        ));
        // A valid descriptor whose files are missing.
        write("type=2\nkey_size=4\nvalue_size=4\nmax_entries=1\nflags=0\ncpus=1\nname=x\n");
        assert!(matches!(
            SharedMap::open(&dir.0, "x"),
            Err(MapError::Shared { .. })
        ));
        let stack = Map::create(MapDef::new(MapType::Queue, 0, 4, 4)).expect("queue");
        assert!(matches!(
            SharedMap::publish(&stack, &dir.0, "q"),
            Err(MapError::NotSupported { .. })
        ));
    }

    #[test]
    fn an_adopted_map_holds_the_makers_elements_and_shares_its_writes() {
        let dir = Dir::new("adopt");
        for map_type in [
            MapType::Hash,
            MapType::LruHash,
            MapType::PercpuHash,
            MapType::Array,
        ] {
            let tag = format!("{map_type:?}");
            let maker = shared_map(&dir, &tag, MapDef::new(map_type, 4, 8, 16));
            // A hole in the slots: the adopted map must keep slot numbers and free lists right.
            let copies = maker.host_value_size() / 8;
            let val = |v: u64| v.to_ne_bytes().repeat(copies);
            for k in 0..5u32 {
                let v = u64::from(k) * 10;
                maker
                    .update(&k.to_ne_bytes(), &val(v), BPF_ANY)
                    .expect("update");
            }
            if map_type != MapType::Array {
                maker.delete(&2u32.to_ne_bytes()).expect("delete");
            }
            let before = model(&maker);
            let adopted = Map::adopt(&dir.0, &tag, None).expect("adopted");
            assert_eq!(model(&adopted), before, "{map_type:?}: adopted elements");
            // Programs' lookups (the lock-free index) find them too.
            assert!(adopted.lookup_ptr(&4u32.to_ne_bytes(), 0).is_some());
            assert_eq!(
                adopted.lookup_ptr(&2u32.to_ne_bytes(), 0).is_some(),
                map_type == MapType::Array
            );
            // The adopted map's writes reach the maker's readers.
            adopted
                .update(&7u32.to_ne_bytes(), &val(70), BPF_ANY)
                .expect("adopted update");
            let reader = SharedMap::open(&dir.0, &tag).expect("reader");
            assert_eq!(
                reader.lookup(&7u32.to_ne_bytes()).expect("new element"),
                val(70)
            );
            let len = if map_type == MapType::Array { 16 } else { 5 };
            assert_eq!(adopted.len(), len, "{map_type:?}: one added");
            if map_type != MapType::Array {
                // Freed slots are reused, used ones not: the map fills to its size exactly.
                for k in 100..111u32 {
                    adopted
                        .update(&k.to_ne_bytes(), &val(1), BPF_ANY)
                        .expect("room");
                }
                assert_eq!(adopted.len(), 16);
                let full = adopted.update(&200u32.to_ne_bytes(), &val(1), BPF_ANY);
                assert_eq!(full.is_err(), map_type != MapType::LruHash, "{map_type:?}");
            }
            // Dropping the adopted map leaves the maker's files.
            drop(adopted);
            assert!(
                SharedMap::open(&dir.0, &tag).is_ok(),
                "{map_type:?}: files kept"
            );
        }
    }

    #[test]
    fn an_adopted_perf_event_array_writes_records_its_maker_consumes() {
        let dir = Dir::new("adopt-perf");
        let _maker = shared_map(&dir, "perf", MapDef::new(MapType::PerfEventArray, 4, 4, 4));
        let adopted = Map::adopt(&dir.0, "perf", None).expect("adopted");
        adopted.perf_output(b"one", 2, 0).expect("slot 2");
        adopted
            .perf_output(b"two", BPF_F_CURRENT_CPU, 1)
            .expect("current CPU");
        let mut reader = SharedMap::open(&dir.0, "perf").expect("reader");
        let mut got = Vec::new();
        reader
            .consume(&mut |slot, r| got.push((slot, r.to_vec())))
            .expect("consumed");
        got.sort();
        assert_eq!(got, vec![(1, b"two".to_vec()), (2, b"one".to_vec())]);
    }

    #[test]
    fn lookup_into_reads_what_lookup_reads() {
        let dir = Dir::new("lookup-into");
        let array = shared_map(&dir, "a", MapDef::new(MapType::Array, 4, 8, 4));
        let hash = shared_map(&dir, "h", MapDef::new(MapType::Hash, 4, 8, 4));
        for m in [&array, &hash] {
            m.update(&1u32.to_ne_bytes(), &9u64.to_ne_bytes(), BPF_ANY)
                .expect("update");
        }
        for tag in ["a", "h"] {
            let r = SharedMap::open(&dir.0, tag).expect("reader");
            let mut out = [0u8; 8];
            r.lookup_into(&1u32.to_ne_bytes(), &mut out).expect("found");
            assert_eq!(out.to_vec(), r.lookup(&1u32.to_ne_bytes()).expect("found"));
            assert!(matches!(
                r.lookup_into(&1u32.to_ne_bytes(), &mut [0u8; 4]),
                Err(MapError::ValueSize { .. })
            ));
        }
        let r = SharedMap::open(&dir.0, "h").expect("reader");
        assert!(matches!(
            r.lookup_into(&2u32.to_ne_bytes(), &mut [0u8; 8]),
            Err(MapError::NotFound)
        ));
    }

    #[test]
    fn only_arrays_hash_maps_and_perf_event_arrays_are_adopted() {
        let dir = Dir::new("adopt-kinds");
        let _ring = shared_map(&dir, "ring", MapDef::new(MapType::RingBuf, 0, 0, 4096));
        assert!(matches!(
            Map::adopt(&dir.0, "ring", None),
            Err(MapError::NotSupported { .. })
        ));
        assert!(matches!(
            Map::adopt(&dir.0, "missing", None),
            Err(MapError::Shared { .. })
        ));
    }
}
