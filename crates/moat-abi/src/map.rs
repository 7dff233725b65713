//! Map types (`enum bpf_map_type`), the flags of `BPF_MAP_UPDATE_ELEM` and the flags of
//! `BPF_MAP_CREATE`.

kernel_enum! {
    /// A map type, `BPF_MAP_TYPE_*`, named as libbpf's `map_type_name` names it.
    pub enum MapType {
        Unspec = 0 => "unspec",
        Hash = 1 => "hash",
        Array = 2 => "array",
        ProgArray = 3 => "prog_array",
        PerfEventArray = 4 => "perf_event_array",
        PercpuHash = 5 => "percpu_hash",
        PercpuArray = 6 => "percpu_array",
        StackTrace = 7 => "stack_trace",
        CgroupArray = 8 => "cgroup_array",
        LruHash = 9 => "lru_hash",
        LruPercpuHash = 10 => "lru_percpu_hash",
        LpmTrie = 11 => "lpm_trie",
        ArrayOfMaps = 12 => "array_of_maps",
        HashOfMaps = 13 => "hash_of_maps",
        Devmap = 14 => "devmap",
        Sockmap = 15 => "sockmap",
        Cpumap = 16 => "cpumap",
        Xskmap = 17 => "xskmap",
        Sockhash = 18 => "sockhash",
        CgroupStorage = 19 => "cgroup_storage",
        ReuseportSockarray = 20 => "reuseport_sockarray",
        PercpuCgroupStorage = 21 => "percpu_cgroup_storage",
        Queue = 22 => "queue",
        Stack = 23 => "stack",
        SkStorage = 24 => "sk_storage",
        DevmapHash = 25 => "devmap_hash",
        StructOps = 26 => "struct_ops",
        RingBuf = 27 => "ringbuf",
        InodeStorage = 28 => "inode_storage",
        TaskStorage = 29 => "task_storage",
        BloomFilter = 30 => "bloom_filter",
        UserRingBuf = 31 => "user_ringbuf",
        CgrpStorage = 32 => "cgrp_storage",
        Arena = 33 => "arena",
    }
}

impl MapType {
    /// Whether user space reads and writes one value per possible CPU (`BPF_MAP_LOOKUP_ELEM` fills
    /// `value_size` rounded up to 8, times the number of CPUs).
    pub const fn is_percpu(self) -> bool {
        matches!(
            self,
            MapType::PercpuHash
                | MapType::PercpuArray
                | MapType::LruPercpuHash
                | MapType::PercpuCgroupStorage
        )
    }
}

/// Update flag: create a new element or update an existing one.
pub const BPF_ANY: u64 = 0;
/// Update flag: create a new element only if it does not exist.
pub const BPF_NOEXIST: u64 = 1;
/// Update flag: update an existing element only (for `push`: overwrite the oldest when full).
pub const BPF_EXIST: u64 = 2;
/// Update flag: update the value under its `bpf_spin_lock`.
pub const BPF_F_LOCK: u64 = 4;

/// Map flag: do not preallocate elements (required by LPM tries).
pub const BPF_F_NO_PREALLOC: u32 = 1 << 0;
/// Map flag: per-CPU LRU lists instead of one common list.
pub const BPF_F_NO_COMMON_LRU: u32 = 1 << 1;
/// Map flag: the `numa_node` attribute is valid.
pub const BPF_F_NUMA_NODE: u32 = 1 << 2;
/// Map flag: read-only from user space.
pub const BPF_F_RDONLY: u32 = 1 << 3;
/// Map flag: write-only from user space.
pub const BPF_F_WRONLY: u32 = 1 << 4;
/// Map flag: stack trace maps store build id and offset instead of addresses.
pub const BPF_F_STACK_BUILD_ID: u32 = 1 << 5;
/// Map flag: zero hash seed (for tests).
pub const BPF_F_ZERO_SEED: u32 = 1 << 6;
/// Map flag: read-only from programs.
pub const BPF_F_RDONLY_PROG: u32 = 1 << 7;
/// Map flag: write-only from programs.
pub const BPF_F_WRONLY_PROG: u32 = 1 << 8;
/// Map flag: clone socket storage to accepted sockets.
pub const BPF_F_CLONE: u32 = 1 << 9;
/// Map flag: the map may be memory-mapped.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;
/// Map flag: perf event arrays keep their events when the map's last user-space reference closes.
pub const BPF_F_PRESERVE_ELEMS: u32 = 1 << 11;
/// Map flag: an inner map whose `max_entries` may differ between instances.
pub const BPF_F_INNER_MAP: u32 = 1 << 12;
/// Map flag: a struct_ops map registered by a `bpf_link`.
pub const BPF_F_LINK: u32 = 1 << 13;
/// Map flag (`BPF_OBJ_PIN`/`BPF_OBJ_GET`): the path is relative to a descriptor.
pub const BPF_F_PATH_FD: u32 = 1 << 14;
/// Map flag: `value_type_btf_obj_fd` is set.
pub const BPF_F_VTYPE_BTF_OBJ_FD: u32 = 1 << 15;
/// Map flag: a BPF token descriptor is passed.
pub const BPF_F_TOKEN_FD: u32 = 1 << 16;
/// Map flag: arena page faults from user space raise `SIGSEGV`.
pub const BPF_F_SEGV_ON_FAULT: u32 = 1 << 17;
/// Map flag: arena pointers are not converted to user-space pointers.
pub const BPF_F_NO_USER_CONV: u32 = 1 << 18;
/// Map flag: ring buffers overwrite the oldest records when full.
pub const BPF_F_RB_OVERWRITE: u32 = 1 << 19;

/// `bpf_get_stackid`/`bpf_get_stack` flags: how many frames to skip (the low 8 bits).
pub const BPF_F_SKIP_FIELD_MASK: u64 = 0xff;
/// `bpf_get_stackid`/`bpf_get_stack` flag: the user stack instead of the kernel's.
pub const BPF_F_USER_STACK: u64 = 1 << 8;
/// `bpf_get_stackid` flag: a stack whose hash matches a stored one is that one (no comparison).
pub const BPF_F_FAST_STACK_CMP: u64 = 1 << 9;
/// `bpf_get_stackid` flag: a new stack replaces a different one stored under the same id.
pub const BPF_F_REUSE_STACKID: u64 = 1 << 10;
/// `bpf_get_stack` flag: build ids and offsets instead of addresses.
pub const BPF_F_USER_BUILD_ID: u64 = 1 << 11;
/// The deepest stack the kernel records (`sysctl kernel.perf_event_max_stack`'s default).
pub const PERF_MAX_STACK_DEPTH: u32 = 127;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_map_type_round_trips_and_is_unique() {
        crate::check_table(
            MapType::ALL,
            MapType::as_u32,
            MapType::from_u32,
            MapType::name,
            MapType::from_name,
        );
        // Numbered without gaps up to the newest type.
        let max = MapType::ALL.iter().map(|t| t.as_u32()).max();
        assert_eq!(Some(MapType::ALL.len() as u32 - 1), max);
        assert_eq!(MapType::from_u32(34), None);
    }

    #[test]
    fn known_numbers() {
        assert_eq!(MapType::Hash.as_u32(), 1);
        assert_eq!(MapType::ProgArray as u32, 3);
        assert_eq!(MapType::LpmTrie.as_u32(), 11);
        assert_eq!(MapType::Queue.as_u32(), 22);
        assert_eq!(MapType::RingBuf.as_u32(), 27);
        assert_eq!(MapType::Arena.as_u32(), 33);
        assert_eq!(
            MapType::from_name("lru_percpu_hash"),
            Some(MapType::LruPercpuHash)
        );
        assert_eq!(MapType::PercpuArray.to_string(), "percpu_array");
        assert_eq!(BPF_F_RDONLY_PROG, 0x80);
        assert_eq!(BPF_F_MMAPABLE, 0x400);
        assert_eq!((BPF_ANY, BPF_NOEXIST, BPF_EXIST, BPF_F_LOCK), (0, 1, 2, 4));
    }
}
