//! eBPF maps with the Linux kernel's semantics, for a userspace runtime whose programs (interpreted or
//! JIT-compiled) receive raw pointers to map values.
//!
//! [`Map`] implements hash, array, program-array, per-CPU hash and array, LRU hash (plain and per-CPU),
//! LPM-trie, queue, stack, ring-buffer, stack-trace and perf-event-array maps ([`MapType`]). Definitions are checked like the kernel's
//! `map_alloc_check`, operations take the kernel's flags, and every error maps to the errno the kernel
//! would return ([`MapError::errno`]).
//!
//! Values live at fixed, 8-byte-aligned addresses for the map's lifetime (preallocated slots, never
//! moved), so programs may keep pointers from [`Map::lookup_ptr`] and access values in place, also
//! atomically. All such storage comes from one [`MapMemory`] trait ([`HeapMemory`] by default), so a
//! runtime can put it in an isolation domain, and [`Map::value_regions`] tells which ranges programs
//! may touch. A hash map can also keep its elements in storage this crate does not manage — a
//! persistent pool, say — through a [`MapBackend`] ([`Map::external`]); every operation, program-side
//! or host-side, works on it unchanged.
//!
//! ```
//! use moat_maps::{Map, MapDef, MapError, MapType, BPF_ANY, BPF_NOEXIST};
//!
//! let map = Map::create(MapDef::new(MapType::Hash, 4, 8, 2).with_name("counts"))?;
//! map.update(&1u32.to_ne_bytes(), &10u64.to_ne_bytes(), BPF_ANY)?;
//! assert_eq!(map.lookup(&1u32.to_ne_bytes())?, 10u64.to_ne_bytes());
//! let again = map.update(&1u32.to_ne_bytes(), &11u64.to_ne_bytes(), BPF_NOEXIST);
//! assert_eq!(again.map_err(|e| e.errno()), Err(-17)); // -EEXIST
//!
//! // What a program's `bpf_map_lookup_elem` gets: the value's address, valid while `map` lives.
//! let ptr = map.lookup_ptr(&1u32.to_ne_bytes(), 0).expect("present");
//! assert!(map.value_regions()[0].contains(ptr.as_ptr() as usize, 8));
//! # Ok::<(), MapError>(())
//! ```
//!
//! Maps can also live in memory another process maps: [`SharedMemory`] puts each allocation of a map
//! in a file of its own (under `/dev/shm`), [`SharedMap::publish`] describes the map there, and a reader in
//! another process opens it as a [`SharedMap`] to dump its elements or consume its records while the
//! writer runs, and after it is gone (see the `shared` module for the files' layout).
//!
//! This crate depends on no other moat crate but [`moat_abi`] (the kernel's numbers: map types and
//! flags, re-exported here): it knows nothing of instructions, programs or the verifier. Checks that
//! the kernel leaves to the verifier (a program writing past its value, a read-only map written by a
//! program) are not made here. All `unsafe` code is in the `mem` and `shm` modules.

#![deny(missing_docs)]
#![deny(unsafe_code)]

mod array;
mod backend;
mod def;
mod error;
mod hash;
mod lpm;
mod map;
mod mem;
mod perfbuf;
mod queue;
mod readidx;
mod ringbuf;
mod shared;
mod shm;
mod stacktrace;
mod value;

pub use backend::MapBackend;
pub use def::{
    possible_cpus, MapDef, MapType, KMALLOC_MAX_SIZE, LPM_DATA_SIZE_MAX, LPM_KEY_HEADER, MAX_CPUS,
    MAX_MAP_BYTES, PAGE_SIZE, PCPU_MIN_UNIT_SIZE,
};
pub use error::{errno, MapError};
pub use map::{AtomicWindow, Keys, Map, MemRegion};
pub use mem::{HeapMemory, MapMemory};
pub use moat_abi::{
    BPF_ANY, BPF_EXIST, BPF_F_LOCK, BPF_F_MMAPABLE, BPF_F_NO_COMMON_LRU, BPF_F_NO_PREALLOC,
    BPF_F_NUMA_NODE, BPF_F_RDONLY, BPF_F_RDONLY_PROG, BPF_F_WRONLY, BPF_F_WRONLY_PROG,
    BPF_F_ZERO_SEED, BPF_NOEXIST,
};
pub use perfbuf::{BPF_F_CURRENT_CPU, BPF_F_INDEX_MASK, PERF_BUFFER_BYTES};
pub use ringbuf::{
    BPF_RB_AVAIL_DATA, BPF_RB_CONS_POS, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_PROD_POS,
    BPF_RB_RING_SIZE, BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT, BPF_RINGBUF_HDR_SZ,
    RINGBUF_MAX_RECORD_SZ,
};
pub use shared::SharedMap;
pub use shm::SharedMemory;
