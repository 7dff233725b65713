//! Map definitions: [`MapType`], [`MapDef`] and the creation checks of the kernel's
//! `map_alloc_check` callbacks.
//!
//! The kernel's flags ([`moat_abi`]'s, re-exported by the crate) are taken as the kernel takes them,
//! with these differences: `BPF_F_LOCK` is always rejected with `-EINVAL` (maps without BTF have no
//! `bpf_spin_lock`); hash maps always preallocate, whatever `BPF_F_NO_PREALLOC` says (LPM tries
//! require it); `BPF_F_NO_COMMON_LRU` is accepted but one common LRU list is kept; `BPF_F_NUMA_NODE`
//! is accepted and ignored where the kernel allows it; `BPF_F_ZERO_SEED` is accepted (iteration
//! order never depends on a seed); `BPF_F_RDONLY_PROG` and `BPF_F_WRONLY_PROG` are the verifier's to
//! enforce, not this crate's.

use crate::error::MapError;
use moat_abi::{
    BPF_F_MMAPABLE, BPF_F_NO_COMMON_LRU, BPF_F_NO_PREALLOC, BPF_F_NUMA_NODE, BPF_F_RDONLY,
    BPF_F_RDONLY_PROG, BPF_F_WRONLY, BPF_F_WRONLY_PROG, BPF_F_ZERO_SEED,
};
use std::fmt;

/// The access flags.
const ACCESS_MASK: u32 = BPF_F_RDONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY | BPF_F_WRONLY_PROG;

/// The kernel's `KMALLOC_MAX_SIZE` on x86-64 (4 MiB): bound on hash elements and queue values.
pub const KMALLOC_MAX_SIZE: u64 = 4 << 20;
/// The kernel's `PCPU_MIN_UNIT_SIZE` (32 KiB): bound on per-CPU value sizes (rounded up to 8).
pub const PCPU_MIN_UNIT_SIZE: u64 = 32 << 10;
/// Upper bound on the storage one map may use (values, keys and ring pages), 1 GiB. Larger definitions
/// fail with [`MapError::TooBig`].
pub const MAX_MAP_BYTES: u64 = 1 << 30;
/// Upper bound on the number of CPUs of per-CPU maps.
pub const MAX_CPUS: usize = 4096;
/// The page size ring buffers are sized in: `max_entries` must be a power-of-two multiple of it.
pub const PAGE_SIZE: u64 = 4096;
/// The LPM key header: a `u32` prefix length in host byte order, followed by the data bytes.
pub const LPM_KEY_HEADER: u32 = 4;
/// Maximum number of LPM data bytes.
pub const LPM_DATA_SIZE_MAX: u32 = 256;

/// Rounds `n` up to a multiple of 8.
pub(crate) fn round8(n: u64) -> u64 {
    n.saturating_add(7) & !7
}

/// The map types this crate implements. Their numbers and names are the kernel's
/// ([`moat_abi::MapType`]); [`MapType::abi`] and [`MapType::from_abi`] convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum MapType {
    /// `BPF_MAP_TYPE_HASH`.
    Hash,
    /// `BPF_MAP_TYPE_ARRAY`.
    Array,
    /// `BPF_MAP_TYPE_PROG_ARRAY`: program indices for tail calls.
    ProgArray,
    /// `BPF_MAP_TYPE_PERCPU_HASH`.
    PercpuHash,
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`.
    PercpuArray,
    /// `BPF_MAP_TYPE_LRU_HASH`.
    LruHash,
    /// `BPF_MAP_TYPE_LRU_PERCPU_HASH`.
    LruPercpuHash,
    /// `BPF_MAP_TYPE_LPM_TRIE`.
    LpmTrie,
    /// `BPF_MAP_TYPE_QUEUE`.
    Queue,
    /// `BPF_MAP_TYPE_STACK`.
    Stack,
    /// `BPF_MAP_TYPE_RINGBUF`.
    RingBuf,
    /// `BPF_MAP_TYPE_STACK_TRACE`.
    StackTrace,
    /// `BPF_MAP_TYPE_PERF_EVENT_ARRAY`.
    PerfEventArray,
}

impl MapType {
    /// Every implemented type.
    pub const ALL: [MapType; 13] = [
        MapType::Hash,
        MapType::Array,
        MapType::ProgArray,
        MapType::PercpuHash,
        MapType::PercpuArray,
        MapType::LruHash,
        MapType::LruPercpuHash,
        MapType::LpmTrie,
        MapType::Queue,
        MapType::Stack,
        MapType::RingBuf,
        MapType::StackTrace,
        MapType::PerfEventArray,
    ];

    /// The kernel's map type this is.
    pub const fn abi(self) -> moat_abi::MapType {
        use moat_abi::MapType as Abi;
        match self {
            MapType::Hash => Abi::Hash,
            MapType::Array => Abi::Array,
            MapType::ProgArray => Abi::ProgArray,
            MapType::PercpuHash => Abi::PercpuHash,
            MapType::PercpuArray => Abi::PercpuArray,
            MapType::LruHash => Abi::LruHash,
            MapType::LruPercpuHash => Abi::LruPercpuHash,
            MapType::LpmTrie => Abi::LpmTrie,
            MapType::Queue => Abi::Queue,
            MapType::Stack => Abi::Stack,
            MapType::RingBuf => Abi::RingBuf,
            MapType::StackTrace => Abi::StackTrace,
            MapType::PerfEventArray => Abi::PerfEventArray,
        }
    }

    /// The implemented type that is the kernel's `abi`, if this crate implements it.
    pub fn from_abi(abi: moat_abi::MapType) -> Option<MapType> {
        MapType::ALL.into_iter().find(|t| t.abi() == abi)
    }

    /// The type numbered `raw`, if this crate implements it. [`TryFrom<u32>`] gives a typed error
    /// instead.
    pub fn from_u32(raw: u32) -> Option<MapType> {
        moat_abi::MapType::from_u32(raw).and_then(MapType::from_abi)
    }

    /// The kernel's number for this type.
    pub fn as_u32(self) -> u32 {
        self.abi().as_u32()
    }

    /// Whether values exist once per CPU.
    pub fn is_percpu(self) -> bool {
        self.abi().is_percpu()
    }

    /// Whether this is a hash map (per-CPU and LRU kinds too): elements under arbitrary keys,
    /// indexed by their one writer.
    pub fn is_hash(self) -> bool {
        matches!(
            self,
            MapType::Hash | MapType::PercpuHash | MapType::LruHash | MapType::LruPercpuHash
        )
    }

    /// The kernel's name for the type, as `bpftool` prints it (`"hash"`, `"lru_percpu_hash"`, ...).
    pub fn name(self) -> &'static str {
        self.abi().name()
    }
}

impl From<MapType> for moat_abi::MapType {
    fn from(t: MapType) -> moat_abi::MapType {
        t.abi()
    }
}

impl fmt::Display for MapType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<u32> for MapType {
    type Error = MapError;

    fn try_from(raw: u32) -> Result<MapType, MapError> {
        MapType::from_u32(raw).ok_or(MapError::UnknownType(raw))
    }
}

/// A map definition, as in `bpf_attr` for `BPF_MAP_CREATE` (or a `.maps` section entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapDef {
    /// The map type.
    pub map_type: MapType,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Maximum number of elements (for ring buffers, the data size in bytes).
    pub max_entries: u32,
    /// `BPF_F_*` map flags.
    pub flags: u32,
    /// The map's name, for error messages.
    pub name: String,
}

impl MapDef {
    /// A definition with no flags and an empty name.
    pub fn new(map_type: MapType, key_size: u32, value_size: u32, max_entries: u32) -> MapDef {
        MapDef {
            map_type,
            key_size,
            value_size,
            max_entries,
            flags: 0,
            name: String::new(),
        }
    }

    /// A definition with a numeric map type, as read from an object file.
    pub fn try_from_raw(
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        flags: u32,
        name: impl Into<String>,
    ) -> Result<MapDef, MapError> {
        Ok(MapDef {
            map_type: MapType::try_from(map_type)?,
            key_size,
            value_size,
            max_entries,
            flags,
            name: name.into(),
        })
    }

    /// The same definition with these map flags.
    pub fn with_flags(mut self, flags: u32) -> MapDef {
        self.flags = flags;
        self
    }

    /// The same definition with this name.
    pub fn with_name(mut self, name: impl Into<String>) -> MapDef {
        self.name = name.into();
        self
    }

    fn invalid(&self, reason: &'static str) -> MapError {
        MapError::InvalidDef {
            name: self.name.clone(),
            map_type: self.map_type,
            reason,
        }
    }

    fn too_big(&self, reason: &'static str) -> MapError {
        MapError::TooBig {
            name: self.name.clone(),
            map_type: self.map_type,
            reason,
        }
    }

    /// Runs the kernel's creation checks for this type and returns the bytes of storage the map needs
    /// (values, keys and ring pages) for `cpus` possible CPUs.
    pub(crate) fn check(&self, cpus: usize) -> Result<u64, MapError> {
        if cpus == 0 || cpus > MAX_CPUS {
            return Err(MapError::InvalidCpuCount(cpus));
        }
        let flags = self.flags;
        let access_ok = flags & BPF_F_RDONLY_PROG == 0 || flags & BPF_F_WRONLY_PROG == 0;
        let entries = u64::from(self.max_entries);
        let key = u64::from(self.key_size);
        let value = u64::from(self.value_size);
        let cpus = cpus as u64;
        let bytes = match self.map_type {
            MapType::Array | MapType::PercpuArray | MapType::ProgArray => {
                let percpu = self.map_type == MapType::PercpuArray;
                let mask = match self.map_type {
                    MapType::Array => BPF_F_NUMA_NODE | BPF_F_MMAPABLE | ACCESS_MASK,
                    MapType::PercpuArray => ACCESS_MASK,
                    _ => BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY,
                };
                if self.map_type == MapType::ProgArray && self.value_size != 4 {
                    return Err(self.invalid("prog_array value_size must be 4"));
                }
                if flags & !mask != 0 || !access_ok {
                    return Err(self.invalid("unsupported map flags"));
                }
                if self.max_entries == 0 || self.key_size != 4 || self.value_size == 0 {
                    return Err(
                        self.invalid("array maps need key_size 4, value_size > 0, max_entries > 0")
                    );
                }
                if value > i32::MAX as u64 {
                    return Err(self.too_big("value_size above INT_MAX"));
                }
                if percpu && round8(value) > PCPU_MIN_UNIT_SIZE {
                    return Err(self.too_big("per-CPU value_size above 32 KiB"));
                }
                let per = if self.map_type == MapType::ProgArray {
                    8
                } else {
                    round8(value)
                };
                entries
                    .saturating_mul(per)
                    .saturating_mul(if percpu { cpus } else { 1 })
            }
            MapType::Hash | MapType::PercpuHash | MapType::LruHash | MapType::LruPercpuHash => {
                let lru = matches!(self.map_type, MapType::LruHash | MapType::LruPercpuHash);
                let percpu = self.map_type.is_percpu();
                let mask = BPF_F_NO_PREALLOC
                    | BPF_F_NO_COMMON_LRU
                    | BPF_F_NUMA_NODE
                    | ACCESS_MASK
                    | BPF_F_ZERO_SEED;
                if flags & !mask != 0 || !access_ok {
                    return Err(self.invalid("unsupported map flags"));
                }
                if !lru && flags & BPF_F_NO_COMMON_LRU != 0 {
                    return Err(self.invalid("BPF_F_NO_COMMON_LRU needs an LRU map"));
                }
                if lru && flags & BPF_F_NO_PREALLOC != 0 {
                    return Err(MapError::UnsupportedDef {
                        name: self.name.clone(),
                        map_type: self.map_type,
                        reason: "an LRU map without preallocation",
                    });
                }
                if percpu && flags & BPF_F_NUMA_NODE != 0 {
                    return Err(self.invalid("per-CPU maps take no NUMA node"));
                }
                if self.max_entries == 0 || self.key_size == 0 || self.value_size == 0 {
                    return Err(
                        self.invalid("hash maps need key_size, value_size and max_entries > 0")
                    );
                }
                // The kernel subtracts sizeof(struct htab_elem), 48 bytes on x86-64.
                if key + value >= KMALLOC_MAX_SIZE - 48 {
                    return Err(self.too_big("key_size + value_size above KMALLOC_MAX_SIZE"));
                }
                if percpu && round8(value) > PCPU_MIN_UNIT_SIZE {
                    return Err(self.too_big("per-CPU value_size above 32 KiB"));
                }
                entries.saturating_mul(
                    round8(value)
                        .saturating_mul(if percpu { cpus } else { 1 })
                        .saturating_add(key),
                )
            }
            MapType::LpmTrie => {
                let mask = BPF_F_NO_PREALLOC | BPF_F_NUMA_NODE | ACCESS_MASK;
                if self.max_entries == 0
                    || flags & BPF_F_NO_PREALLOC == 0
                    || flags & !mask != 0
                    || !access_ok
                {
                    return Err(self
                        .invalid("LPM tries need max_entries > 0 and exactly BPF_F_NO_PREALLOC"));
                }
                if key < u64::from(LPM_KEY_HEADER) + 1
                    || key > u64::from(LPM_KEY_HEADER + LPM_DATA_SIZE_MAX)
                {
                    return Err(self.invalid("LPM key_size must be 4 + 1..=256 data bytes"));
                }
                // LPM_VAL_SIZE_MAX = KMALLOC_MAX_SIZE - LPM_DATA_SIZE_MAX - sizeof(lpm_trie_node).
                if value == 0 || value > KMALLOC_MAX_SIZE - 256 - 48 {
                    return Err(self.invalid("LPM value_size out of range"));
                }
                entries.saturating_mul(key + round8(value))
            }
            MapType::Queue | MapType::Stack => {
                let mask = BPF_F_NUMA_NODE | ACCESS_MASK;
                if self.max_entries == 0
                    || self.key_size != 0
                    || self.value_size == 0
                    || flags & !mask != 0
                    || !access_ok
                {
                    return Err(self
                        .invalid("queue/stack need key_size 0, value_size > 0, max_entries > 0"));
                }
                if value > KMALLOC_MAX_SIZE {
                    return Err(self.too_big("value_size above KMALLOC_MAX_SIZE"));
                }
                entries.saturating_mul(round8(value))
            }
            MapType::RingBuf => {
                if flags & !BPF_F_NUMA_NODE != 0 {
                    return Err(self.invalid("unsupported map flags"));
                }
                if self.key_size != 0
                    || self.value_size != 0
                    || !self.max_entries.is_power_of_two()
                    || entries % PAGE_SIZE != 0
                {
                    return Err(self.invalid(
                        "ring buffers need key_size 0, value_size 0 and a power-of-2 multiple of the page size",
                    ));
                }
                entries + 2 * PAGE_SIZE
            }
            MapType::PerfEventArray => {
                // `array_map_alloc_check` with `fd_array_map_alloc_check`'s value size.
                let mask =
                    BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY | moat_abi::BPF_F_PRESERVE_ELEMS;
                if flags & !mask != 0 {
                    return Err(self.invalid("unsupported map flags"));
                }
                if self.max_entries == 0 || self.key_size != 4 || self.value_size != 4 {
                    return Err(self.invalid(
                        "perf event arrays need key_size 4, value_size 4 and max_entries > 0",
                    ));
                }
                entries.saturating_mul(crate::perfbuf::PERF_BUFFER_BYTES as u64)
            }
            MapType::StackTrace => {
                let mask =
                    BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY | moat_abi::BPF_F_STACK_BUILD_ID;
                if flags & !mask != 0 {
                    return Err(self.invalid("unsupported map flags"));
                }
                if flags & moat_abi::BPF_F_STACK_BUILD_ID != 0 {
                    return Err(MapError::UnsupportedDef {
                        name: self.name.clone(),
                        map_type: self.map_type,
                        reason: "stacks as build ids (BPF_F_STACK_BUILD_ID)",
                    });
                }
                if self.max_entries == 0
                    || self.key_size != 4
                    || value < 8
                    || value % 8 != 0
                    || value / 8 > u64::from(moat_abi::PERF_MAX_STACK_DEPTH)
                {
                    return Err(self.invalid(
                        "stack trace maps need key_size 4, value_size a multiple of 8 up to 127 frames, max_entries > 0",
                    ));
                }
                let buckets = crate::stacktrace::bucket_count(self.max_entries)
                    .ok_or_else(|| self.too_big("max_entries rounds up past 2^32"))?;
                u64::from(buckets).saturating_mul(value + 16)
            }
        };
        // The products above saturate, so absurd inputs land in this check instead of overflowing.
        if bytes > MAX_MAP_BYTES || usize::try_from(bytes).is_err() {
            return Err(self.too_big("storage above MAX_MAP_BYTES"));
        }
        Ok(bytes)
    }
}

/// The number of possible CPUs: one more than the highest CPU listed in
/// `/sys/devices/system/cpu/possible`, else [`std::thread::available_parallelism`], else 1.
pub fn possible_cpus() -> usize {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| parse_cpu_list(&s))
        .filter(|&n| n <= MAX_CPUS)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .clamp(1, MAX_CPUS)
}

/// Parses a kernel CPU list such as `0-3,5,7-8` into one more than its highest CPU.
fn parse_cpu_list(s: &str) -> Option<usize> {
    let mut max: Option<usize> = None;
    for part in s.trim().split(',') {
        let last = match part.split_once('-') {
            Some((_, hi)) => hi,
            None => part,
        };
        let n: usize = last.trim().parse().ok()?;
        max = Some(max.map_or(n, |m| m.max(n)));
    }
    max?.checked_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_types_round_trip_their_kernel_numbers() {
        for t in MapType::ALL {
            assert_eq!(MapType::from_u32(t.as_u32()), Some(t));
            assert_eq!(MapType::try_from(t.as_u32()), Ok(t));
        }
        assert_eq!(MapType::Hash.as_u32(), 1);
        assert_eq!(MapType::RingBuf.as_u32(), 27);
        assert_eq!(MapType::PerfEventArray.as_u32(), 4);
        assert_eq!(MapType::StackTrace.as_u32(), 7);
        // BPF_MAP_TYPE_CGROUP_ARRAY: not implemented.
        assert_eq!(MapType::from_u32(8), None);
        assert_eq!(MapType::try_from(8), Err(MapError::UnknownType(8)));
        assert_eq!(MapType::try_from(999).map_err(|e| e.errno()), Err(-22));
        assert!(matches!(
            MapDef::try_from_raw(12, 4, 4, 1, 0, "x"),
            Err(MapError::UnknownType(12))
        ));
    }

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list("0\n"), Some(1));
        assert_eq!(parse_cpu_list("0-3\n"), Some(4));
        assert_eq!(parse_cpu_list("0-3,5,7-8"), Some(9));
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(parse_cpu_list(""), None);
        assert!(possible_cpus() >= 1);
    }

    fn check(def: MapDef) -> Result<u64, i32> {
        def.check(4).map_err(|e| e.errno())
    }

    #[test]
    fn array_checks() {
        let a = MapDef::new(MapType::Array, 4, 8, 10);
        assert_eq!(check(a.clone()), Ok(80));
        assert_eq!(
            check(MapDef {
                key_size: 8,
                ..a.clone()
            }),
            Err(-22)
        );
        assert_eq!(
            check(MapDef {
                value_size: 0,
                ..a.clone()
            }),
            Err(-22)
        );
        assert_eq!(
            check(MapDef {
                max_entries: 0,
                ..a.clone()
            }),
            Err(-22)
        );
        assert_eq!(check(a.clone().with_flags(BPF_F_NO_PREALLOC)), Err(-22));
        assert_eq!(check(a.clone().with_flags(BPF_F_MMAPABLE)), Ok(80));
        assert_eq!(
            check(a.clone().with_flags(BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG)),
            Err(-22)
        );
        assert_eq!(
            check(MapDef {
                max_entries: u32::MAX,
                ..a.clone()
            }),
            Err(-7)
        );
        let p = MapDef::new(MapType::PercpuArray, 4, 12, 10);
        assert_eq!(check(p.clone()), Ok(10 * 16 * 4));
        assert_eq!(check(p.clone().with_flags(BPF_F_MMAPABLE)), Err(-22));
        assert_eq!(
            check(MapDef {
                value_size: 40 << 10,
                ..p
            }),
            Err(-7)
        );
        let g = MapDef::new(MapType::ProgArray, 4, 4, 10);
        assert_eq!(check(g.clone()), Ok(80));
        assert_eq!(
            check(MapDef {
                value_size: 8,
                ..g.clone()
            }),
            Err(-22)
        );
        assert_eq!(check(g.with_flags(BPF_F_RDONLY_PROG)), Err(-22));
    }

    #[test]
    fn hash_checks() {
        let h = MapDef::new(MapType::Hash, 4, 4, 10);
        assert_eq!(check(h.clone()), Ok(10 * (4 + 8)));
        assert_eq!(check(h.clone().with_flags(BPF_F_NO_PREALLOC)), Ok(120));
        assert_eq!(check(h.clone().with_flags(BPF_F_NO_COMMON_LRU)), Err(-22));
        assert_eq!(check(h.clone().with_flags(1 << 20)), Err(-22));
        assert_eq!(
            check(MapDef {
                key_size: 0,
                ..h.clone()
            }),
            Err(-22)
        );
        assert_eq!(
            check(MapDef {
                value_size: 0,
                ..h.clone()
            }),
            Err(-22)
        );
        assert_eq!(
            check(MapDef {
                max_entries: 0,
                ..h.clone()
            }),
            Err(-22)
        );
        assert_eq!(
            check(MapDef {
                value_size: 4 << 20,
                ..h.clone()
            }),
            Err(-7)
        );
        assert_eq!(
            check(MapDef {
                max_entries: 1 << 30,
                ..h.clone()
            }),
            Err(-7)
        );
        let l = MapDef::new(MapType::LruHash, 4, 4, 10);
        assert_eq!(check(l.clone().with_flags(BPF_F_NO_COMMON_LRU)), Ok(120));
        assert_eq!(check(l.with_flags(BPF_F_NO_PREALLOC)), Err(-524));
        let p = MapDef::new(MapType::PercpuHash, 4, 4, 10);
        assert_eq!(check(p.clone()), Ok(10 * (4 + 8 * 4)));
        assert_eq!(check(p.clone().with_flags(BPF_F_NUMA_NODE)), Err(-22));
        assert_eq!(
            check(MapDef {
                value_size: 33 << 10,
                ..p
            }),
            Err(-7)
        );
    }

    #[test]
    fn lpm_queue_ringbuf_checks() {
        let l = MapDef::new(MapType::LpmTrie, 8, 4, 10).with_flags(BPF_F_NO_PREALLOC);
        assert_eq!(check(l.clone()), Ok(10 * (8 + 8)));
        assert_eq!(check(l.clone().with_flags(0)), Err(-22));
        assert_eq!(
            check(MapDef {
                key_size: 4,
                ..l.clone()
            }),
            Err(-22)
        );
        assert_eq!(
            check(MapDef {
                key_size: 261,
                ..l.clone()
            }),
            Err(-22)
        );
        assert_eq!(
            check(MapDef {
                key_size: 260,
                ..l.clone()
            }),
            Ok(10 * (260 + 8))
        );
        assert_eq!(check(MapDef { value_size: 0, ..l }), Err(-22));
        let q = MapDef::new(MapType::Queue, 0, 4, 10);
        assert_eq!(check(q.clone()), Ok(80));
        assert_eq!(
            check(MapDef {
                key_size: 4,
                ..q.clone()
            }),
            Err(-22)
        );
        assert_eq!(
            check(MapDef {
                value_size: 0,
                ..q.clone()
            }),
            Err(-22)
        );
        assert_eq!(
            check(MapDef {
                value_size: (4 << 20) + 1,
                ..q.clone()
            }),
            Err(-7)
        );
        assert_eq!(
            check(MapDef {
                map_type: MapType::Stack,
                ..q
            }),
            Ok(80)
        );
        let r = MapDef::new(MapType::RingBuf, 0, 0, 4096);
        assert_eq!(check(r.clone()), Ok(3 * 4096));
        assert_eq!(
            check(MapDef {
                max_entries: 3 * 4096,
                ..r.clone()
            }),
            Err(-22)
        );
        assert_eq!(
            check(MapDef {
                max_entries: 2048,
                ..r.clone()
            }),
            Err(-22)
        );
        assert_eq!(
            check(MapDef {
                key_size: 4,
                ..r.clone()
            }),
            Err(-22)
        );
        assert_eq!(
            check(MapDef {
                max_entries: 1 << 31,
                ..r.clone()
            }),
            Err(-7)
        );
        assert_eq!(check(r.with_flags(BPF_F_NO_PREALLOC)), Err(-22));
    }

    #[test]
    fn cpu_count_is_checked() {
        let a = MapDef::new(MapType::PercpuArray, 4, 8, 1);
        assert_eq!(a.check(0), Err(MapError::InvalidCpuCount(0)));
        assert_eq!(
            a.check(MAX_CPUS + 1),
            Err(MapError::InvalidCpuCount(MAX_CPUS + 1))
        );
    }
}
