//! [`MapError`], the one error type of this crate, and its mapping to the kernel's negative errno values.

use crate::def::MapType;
use thiserror::Error;

/// Linux errno values used by map operations.
pub mod errno {
    /// No such file or directory: missing element, empty queue.
    pub const ENOENT: i32 = 2;
    /// Argument list too long: map full, index out of range, map too big.
    pub const E2BIG: i32 = 7;
    /// Input/output error: shared map storage that cannot be made or read.
    pub const EIO: i32 = 5;
    /// Try again: ring buffer full.
    pub const EAGAIN: i32 = 11;
    /// Out of memory.
    pub const ENOMEM: i32 = 12;
    /// Device or resource busy.
    pub const EBUSY: i32 = 16;
    /// File exists.
    pub const EEXIST: i32 = 17;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// No space left on device: LPM trie full.
    pub const ENOSPC: i32 = 28;
    /// The kernel-internal "operation not supported" code that BPF returns to user space (524).
    pub const ENOTSUPP: i32 = 524;
}

/// Why a map could not be created or an operation failed.
///
/// [`MapError::errno`] gives the negative errno the kernel's helper or `bpf(2)` command returns in the
/// same situation. Errors of the hot paths (missing element, full map) carry no heap data.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MapError {
    /// The numeric map type is not one this crate implements (`-EINVAL`).
    #[error("unknown or unsupported map type {0}")]
    UnknownType(u32),
    /// The definition fails the kernel's creation checks (`-EINVAL`).
    #[error("invalid definition for {map_type} map `{name}`: {reason}")]
    InvalidDef {
        /// The map's name.
        name: String,
        /// The map's type.
        map_type: MapType,
        /// Which check failed.
        reason: &'static str,
    },
    /// The definition asks for more memory than allowed (`-E2BIG`).
    #[error("{map_type} map `{name}` is too big: {reason}")]
    TooBig {
        /// The map's name.
        name: String,
        /// The map's type.
        map_type: MapType,
        /// Which limit was exceeded.
        reason: &'static str,
    },
    /// The definition combines features the kernel does not support together (`-ENOTSUPP`).
    #[error("{map_type} map `{name}`: {reason} is not supported")]
    UnsupportedDef {
        /// The map's name.
        name: String,
        /// The map's type.
        map_type: MapType,
        /// What is not supported.
        reason: &'static str,
    },
    /// The number of possible CPUs given at creation is zero or above [`MAX_CPUS`](crate::MAX_CPUS)
    /// (`-EINVAL`).
    #[error("invalid number of CPUs {0}")]
    InvalidCpuCount(usize),
    /// The operation's flags are invalid for it (`-EINVAL`).
    #[error("invalid flags {flags:#x}")]
    InvalidFlags {
        /// The flags passed.
        flags: u64,
    },
    /// The key has the wrong length (`-EINVAL`).
    #[error("key is {got} bytes, expected {expected}")]
    KeySize {
        /// The map's key size.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// The value buffer has the wrong length (`-EINVAL`).
    #[error("value buffer is {got} bytes, expected {expected}")]
    ValueSize {
        /// The length this operation needs.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// A per-CPU operation named a CPU the map has no slot for (`-EINVAL`).
    #[error("CPU {cpu} out of range (map has {cpus} CPUs)")]
    CpuOutOfRange {
        /// The CPU given.
        cpu: usize,
        /// The map's number of CPUs.
        cpus: usize,
    },
    /// No element has this key, the iteration is over, or the queue is empty (`-ENOENT`).
    #[error("no such element")]
    NotFound,
    /// An element with this key exists and `BPF_NOEXIST` was given (`-EEXIST`).
    #[error("element exists")]
    Exists,
    /// The map has no free element (hash, queue and stack maps) (`-E2BIG`).
    #[error("map is full")]
    Full,
    /// An array index is not below `max_entries` (`-E2BIG`).
    #[error("index {index} out of range (max_entries {max_entries})")]
    IndexOutOfRange {
        /// The index given.
        index: u32,
        /// The map's `max_entries`.
        max_entries: u32,
    },
    /// The LPM trie is full, or a perf event array's slot (`-ENOSPC`).
    #[error("no space left (a full LPM trie or perf buffer)")]
    NoSpace,
    /// An LPM key's prefix length exceeds the map's data bits (`-EINVAL`).
    #[error("prefix length {prefixlen} exceeds the maximum {max}")]
    PrefixTooLong {
        /// The prefix length given.
        prefixlen: u32,
        /// The map's maximum prefix length.
        max: u32,
    },
    /// The ring buffer has no room for the record (`-EAGAIN`, as `bpf_ringbuf_output` returns).
    #[error("ring buffer is full")]
    RingFull,
    /// A pointer passed to submit or discard is not a reserved record (`-EINVAL`).
    #[error("{addr:#x} is not a reserved ring buffer record")]
    InvalidPointer {
        /// The address given.
        addr: usize,
    },
    /// A committed ring buffer record has an impossible header, e.g. after a program wrote past its
    /// reservation (`-EINVAL`).
    #[error("corrupt ring buffer record at position {pos}")]
    CorruptRecord {
        /// The consumer position of the record.
        pos: u64,
    },
    /// Another consumer is draining the ring buffer (`-EBUSY`).
    #[error("ring buffer is being consumed by another thread")]
    Busy,
    /// The operation is rejected for this map type with `-EINVAL` (e.g. deleting from an array).
    #[error("{op} is invalid on a {map_type} map")]
    InvalidOp {
        /// The map's type.
        map_type: MapType,
        /// The operation.
        op: &'static str,
    },
    /// The map type does not implement the operation (`-ENOTSUPP`, e.g. lookup on a ring buffer).
    #[error("{op} is not supported on a {map_type} map")]
    NotSupported {
        /// The map's type.
        map_type: MapType,
        /// The operation.
        op: &'static str,
    },
    /// The [`MapMemory`](crate::MapMemory) could not provide storage (`-ENOMEM`).
    #[error("out of memory allocating {size} bytes")]
    OutOfMemory {
        /// The size requested.
        size: usize,
    },
    /// Shared map storage ([`SharedMemory`](crate::SharedMemory), [`SharedMap`](crate::SharedMap))
    /// could not be made, mapped or read (`-EIO`): a file under the shared directory, and why.
    #[error("shared map storage {path}: {reason}")]
    Shared {
        /// The file or directory concerned.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// An external backend ([`MapBackend`](crate::MapBackend)) failed for a reason of its own
    /// (permissions, a read-only or corrupt store, I/O), with the errno it maps to.
    #[error("{message}")]
    External {
        /// The positive errno (`-errno` is what [`MapError::errno`] returns).
        errno: i32,
        /// What the backend said.
        message: String,
    },
}

impl MapError {
    /// The negative errno the kernel returns in the same situation (e.g. `-2` for [`MapError::NotFound`]).
    pub fn errno(&self) -> i32 {
        use errno::*;
        -match self {
            MapError::UnknownType(_)
            | MapError::InvalidDef { .. }
            | MapError::InvalidCpuCount(_)
            | MapError::InvalidFlags { .. }
            | MapError::KeySize { .. }
            | MapError::ValueSize { .. }
            | MapError::CpuOutOfRange { .. }
            | MapError::PrefixTooLong { .. }
            | MapError::InvalidPointer { .. }
            | MapError::CorruptRecord { .. }
            | MapError::InvalidOp { .. } => EINVAL,
            MapError::TooBig { .. } | MapError::Full | MapError::IndexOutOfRange { .. } => E2BIG,
            MapError::UnsupportedDef { .. } | MapError::NotSupported { .. } => ENOTSUPP,
            MapError::NotFound => ENOENT,
            MapError::Exists => EEXIST,
            MapError::NoSpace => ENOSPC,
            MapError::RingFull => EAGAIN,
            MapError::Busy => EBUSY,
            MapError::OutOfMemory { .. } => ENOMEM,
            MapError::Shared { .. } => EIO,
            MapError::External { errno, .. } => errno.saturating_abs(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_values_are_negative_kernel_codes() {
        assert_eq!(MapError::NotFound.errno(), -2);
        assert_eq!(MapError::Exists.errno(), -17);
        assert_eq!(MapError::Full.errno(), -7);
        assert_eq!(MapError::NoSpace.errno(), -28);
        assert_eq!(MapError::RingFull.errno(), -11);
        assert_eq!(MapError::Busy.errno(), -16);
        assert_eq!(MapError::OutOfMemory { size: 1 }.errno(), -12);
        let denied = MapError::External {
            errno: 13,
            message: "no".into(),
        };
        assert_eq!(denied.errno(), -13);
        assert_eq!(MapError::InvalidFlags { flags: 9 }.errno(), -22);
        assert_eq!(
            MapError::NotSupported {
                map_type: MapType::RingBuf,
                op: "lookup"
            }
            .errno(),
            -524
        );
    }
}
