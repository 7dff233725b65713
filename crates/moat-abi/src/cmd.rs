//! The commands of the `bpf(2)` system call (`enum bpf_cmd`), the pseudo sources of `lddw` that
//! name a map to `BPF_PROG_LOAD`, and the `perf_event_open(2)` ioctls that attach a program to a
//! perf event.

kernel_enum! {
    /// A `bpf(2)` command, `BPF_*`, named as `include/uapi/linux/bpf.h` names it.
    pub enum Cmd {
        MapCreate = 0 => "BPF_MAP_CREATE",
        MapLookupElem = 1 => "BPF_MAP_LOOKUP_ELEM",
        MapUpdateElem = 2 => "BPF_MAP_UPDATE_ELEM",
        MapDeleteElem = 3 => "BPF_MAP_DELETE_ELEM",
        MapGetNextKey = 4 => "BPF_MAP_GET_NEXT_KEY",
        ProgLoad = 5 => "BPF_PROG_LOAD",
        ObjPin = 6 => "BPF_OBJ_PIN",
        ObjGet = 7 => "BPF_OBJ_GET",
        ProgAttach = 8 => "BPF_PROG_ATTACH",
        ProgDetach = 9 => "BPF_PROG_DETACH",
        ProgTestRun = 10 => "BPF_PROG_TEST_RUN",
        ProgGetNextId = 11 => "BPF_PROG_GET_NEXT_ID",
        MapGetNextId = 12 => "BPF_MAP_GET_NEXT_ID",
        ProgGetFdById = 13 => "BPF_PROG_GET_FD_BY_ID",
        MapGetFdById = 14 => "BPF_MAP_GET_FD_BY_ID",
        ObjGetInfoByFd = 15 => "BPF_OBJ_GET_INFO_BY_FD",
        ProgQuery = 16 => "BPF_PROG_QUERY",
        RawTracepointOpen = 17 => "BPF_RAW_TRACEPOINT_OPEN",
        BtfLoad = 18 => "BPF_BTF_LOAD",
        BtfGetFdById = 19 => "BPF_BTF_GET_FD_BY_ID",
        TaskFdQuery = 20 => "BPF_TASK_FD_QUERY",
        MapLookupAndDeleteElem = 21 => "BPF_MAP_LOOKUP_AND_DELETE_ELEM",
        MapFreeze = 22 => "BPF_MAP_FREEZE",
        BtfGetNextId = 23 => "BPF_BTF_GET_NEXT_ID",
        MapLookupBatch = 24 => "BPF_MAP_LOOKUP_BATCH",
        MapLookupAndDeleteBatch = 25 => "BPF_MAP_LOOKUP_AND_DELETE_BATCH",
        MapUpdateBatch = 26 => "BPF_MAP_UPDATE_BATCH",
        MapDeleteBatch = 27 => "BPF_MAP_DELETE_BATCH",
        LinkCreate = 28 => "BPF_LINK_CREATE",
        LinkUpdate = 29 => "BPF_LINK_UPDATE",
        LinkGetFdById = 30 => "BPF_LINK_GET_FD_BY_ID",
        LinkGetNextId = 31 => "BPF_LINK_GET_NEXT_ID",
        EnableStats = 32 => "BPF_ENABLE_STATS",
        IterCreate = 33 => "BPF_ITER_CREATE",
        LinkDetach = 34 => "BPF_LINK_DETACH",
        ProgBindMap = 35 => "BPF_PROG_BIND_MAP",
        TokenCreate = 36 => "BPF_TOKEN_CREATE",
    }
}

/// `lddw` source `BPF_PSEUDO_MAP_FD`: the immediate is a map's descriptor.
pub const BPF_PSEUDO_MAP_FD: u8 = 1;
/// `lddw` source `BPF_PSEUDO_MAP_VALUE`: a map's descriptor and an offset into its first value.
pub const BPF_PSEUDO_MAP_VALUE: u8 = 2;
/// `lddw` source `BPF_PSEUDO_MAP_IDX`: an index into `BPF_PROG_LOAD`'s `fd_array`.
pub const BPF_PSEUDO_MAP_IDX: u8 = 5;
/// `lddw` source `BPF_PSEUDO_MAP_IDX_VALUE`: an `fd_array` index and an offset into the value.
pub const BPF_PSEUDO_MAP_IDX_VALUE: u8 = 6;

/// `PERF_EVENT_IOC_ENABLE`, `_IO('$', 0)`.
pub const PERF_EVENT_IOC_ENABLE: u64 = 0x2400;
/// `PERF_EVENT_IOC_DISABLE`, `_IO('$', 1)`.
pub const PERF_EVENT_IOC_DISABLE: u64 = 0x2401;
/// `PERF_EVENT_IOC_SET_BPF`, `_IOW('$', 8, __u32)`: attaches the program whose descriptor is the
/// argument.
pub const PERF_EVENT_IOC_SET_BPF: u64 = 0x4004_2408;

#[cfg(test)]
mod tests {
    use super::Cmd;

    #[test]
    fn table_is_consistent() {
        crate::check_table(
            Cmd::ALL,
            Cmd::as_u32,
            Cmd::from_u32,
            Cmd::name,
            Cmd::from_name,
        );
        assert_eq!(Cmd::ObjGetInfoByFd.as_u32(), 15);
        assert_eq!(Cmd::BtfLoad.as_u32(), 18);
        assert_eq!(Cmd::LinkCreate.as_u32(), 28);
        assert_eq!(Cmd::TokenCreate.as_u32(), 36);
    }
}
