//! `union bpf_attr` and the info structures `BPF_OBJ_GET_INFO_BY_FD` fills, as byte buffers read
//! at the offsets `include/uapi/linux/bpf.h` gives their fields. A field past the end of what the
//! caller passed reads as zero, as the kernel treats a shorter `bpf_attr`.

/// A copy of the caller's `bpf_attr` (or of an info structure), its fields read and written by
/// offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr(pub Vec<u8>);

impl Attr {
    /// The 32-bit field at `off` (0 past the end).
    pub fn u32(&self, off: usize) -> u32 {
        self.0
            .get(off..off + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes)
    }

    /// The 64-bit field at `off` (0 past the end).
    pub fn u64(&self, off: usize) -> u64 {
        self.0
            .get(off..off + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    }

    /// A descriptor field (a signed 32-bit number).
    pub fn fd(&self, off: usize) -> i32 {
        self.u32(off) as i32
    }

    /// A NUL-padded name of `len` bytes at `off` (`map_name`, `prog_name`).
    pub fn name(&self, off: usize, len: usize) -> String {
        let bytes = self.0.get(off..off + len).unwrap_or(&[]);
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    }

    /// Writes a 32-bit field, if the buffer reaches it.
    pub fn set_u32(&mut self, off: usize, v: u32) {
        if let Some(b) = self.0.get_mut(off..off + 4) {
            b.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// Writes `bytes` at `off`, as far as the buffer reaches.
    pub fn set_bytes(&mut self, off: usize, bytes: &[u8]) {
        let Some(room) = self.0.get_mut(off..) else {
            return;
        };
        let n = room.len().min(bytes.len());
        room[..n].copy_from_slice(&bytes[..n]);
    }
}

/// Field offsets of `bpf_attr` for `BPF_MAP_CREATE`.
pub mod map_create {
    pub const MAP_TYPE: usize = 0;
    pub const KEY_SIZE: usize = 4;
    pub const VALUE_SIZE: usize = 8;
    pub const MAX_ENTRIES: usize = 12;
    pub const MAP_FLAGS: usize = 16;
    pub const INNER_MAP_FD: usize = 20;
    pub const MAP_NAME: usize = 28;
    pub const BTF_FD: usize = 48;
    pub const BTF_KEY_TYPE_ID: usize = 52;
    pub const BTF_VALUE_TYPE_ID: usize = 56;
    pub const MAP_EXTRA: usize = 64;
}

/// Field offsets of `bpf_attr` for the element commands (`BPF_MAP_*_ELEM`, `BPF_MAP_GET_NEXT_KEY`,
/// `BPF_MAP_FREEZE`).
pub mod elem {
    pub const MAP_FD: usize = 0;
    pub const KEY: usize = 8;
    /// `value`, or `next_key` for `BPF_MAP_GET_NEXT_KEY`.
    pub const VALUE: usize = 16;
    pub const FLAGS: usize = 24;
}

/// Field offsets of `bpf_attr` for the batch commands (`BPF_MAP_*_BATCH`).
pub mod batch {
    pub const IN_BATCH: usize = 0;
    pub const OUT_BATCH: usize = 8;
    pub const KEYS: usize = 16;
    pub const VALUES: usize = 24;
    pub const COUNT: usize = 32;
    pub const MAP_FD: usize = 36;
    pub const ELEM_FLAGS: usize = 40;
}

/// Field offsets of `bpf_attr` for `BPF_PROG_LOAD`.
pub mod prog_load {
    pub const PROG_TYPE: usize = 0;
    pub const INSN_CNT: usize = 4;
    pub const INSNS: usize = 8;
    pub const LICENSE: usize = 16;
    pub const LOG_LEVEL: usize = 24;
    pub const LOG_SIZE: usize = 28;
    pub const LOG_BUF: usize = 32;
    pub const PROG_NAME: usize = 48;
    pub const ATTACH_BTF_ID: usize = 108;
    pub const FD_ARRAY: usize = 120;
    pub const LOG_TRUE_SIZE: usize = 140;
}

/// Field offsets of `bpf_attr` for `BPF_BTF_LOAD`.
pub mod btf_load {
    pub const BTF: usize = 0;
    pub const LOG_BUF: usize = 8;
    pub const SIZE: usize = 16;
    pub const LOG_SIZE: usize = 20;
    pub const LOG_LEVEL: usize = 24;
}

/// Field offsets of `bpf_attr` for `BPF_OBJ_GET_INFO_BY_FD`.
pub mod info {
    pub const FD: usize = 0;
    pub const LEN: usize = 4;
    pub const INFO: usize = 8;
}

/// Field offsets of `bpf_attr` for `BPF_LINK_CREATE` and `BPF_PROG_BIND_MAP`.
pub mod link {
    pub const PROG_FD: usize = 0;
    pub const TARGET_FD: usize = 4;
    /// `BPF_PROG_BIND_MAP`'s `map_fd`.
    pub const BIND_MAP_FD: usize = 4;
}

/// Field offsets of `bpf_attr` for `BPF_OBJ_PIN` and `BPF_OBJ_GET`.
pub mod obj {
    pub const PATHNAME: usize = 0;
    pub const BPF_FD: usize = 8;
}

/// Field offsets of `struct bpf_map_info` (88 bytes).
pub mod map_info {
    pub const SIZE: usize = 88;
    pub const TYPE: usize = 0;
    pub const ID: usize = 4;
    pub const KEY_SIZE: usize = 8;
    pub const VALUE_SIZE: usize = 12;
    pub const MAX_ENTRIES: usize = 16;
    pub const MAP_FLAGS: usize = 20;
    pub const NAME: usize = 24;
    pub const BTF_ID: usize = 64;
    pub const BTF_KEY_TYPE_ID: usize = 68;
    pub const BTF_VALUE_TYPE_ID: usize = 72;
}

/// Field offsets of `struct bpf_prog_info` (up to `btf_id`, the part moat fills).
pub mod prog_info {
    pub const SIZE: usize = 232;
    pub const TYPE: usize = 0;
    pub const ID: usize = 4;
    pub const XLATED_PROG_LEN: usize = 20;
    pub const NAME: usize = 64;
    pub const GPL_COMPATIBLE: usize = 84;
}

/// Field offsets of `struct bpf_btf_info` (32 bytes).
pub mod btf_info {
    pub const SIZE: usize = 32;
    pub const BTF_SIZE: usize = 8;
    pub const ID: usize = 12;
}

/// Field offsets of `struct perf_event_attr` that the uprobe PMU reads.
pub mod perf {
    pub const TYPE: usize = 0;
    pub const SIZE: usize = 4;
    pub const CONFIG: usize = 8;
    /// `config1`: the path of the probed file (`uprobe_path`).
    pub const CONFIG1: usize = 56;
    /// `config2`: the offset in the file (`probe_offset`).
    pub const CONFIG2: usize = 64;
    /// The smallest `perf_event_attr` that has `config2` (`PERF_ATTR_SIZE_VER1`).
    pub const MIN_SIZE: usize = 72;
}

#[cfg(test)]
mod tests {
    use super::Attr;

    #[test]
    fn fields_past_the_end_read_as_zero_and_are_not_written() {
        let mut a = Attr(vec![1, 0, 0, 0, 2, 0]);
        assert_eq!(a.u32(0), 1);
        assert_eq!(a.u32(4), 0);
        assert_eq!(a.u64(0), 0);
        a.set_u32(4, 7);
        assert_eq!(a.0, vec![1, 0, 0, 0, 2, 0]);
        a.set_bytes(4, b"xyz");
        assert_eq!(a.0, vec![1, 0, 0, 0, b'x', b'y']);
    }

    #[test]
    fn names_stop_at_nul() {
        let mut bytes = vec![0u8; 20];
        bytes[2..6].copy_from_slice(b"hist");
        assert_eq!(Attr(bytes).name(2, 16), "hist");
    }
}
