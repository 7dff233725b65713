//! [`PoolError`], the one error type of this crate: what went wrong and where (file, field, byte offset,
//! map), with the errno a kernel-like interface would return ([`PoolError::errno`]).

use crate::acl::Principal;
use std::path::PathBuf;
use thiserror::Error;

/// Linux errno values returned by [`PoolError::errno`].
pub mod errno {
    /// Operation not permitted: a sealed map was written.
    pub const EPERM: i32 = 1;
    /// No such element or map.
    pub const ENOENT: i32 = 2;
    /// Map full.
    pub const E2BIG: i32 = 7;
    /// I/O error or corrupt pool.
    pub const EIO: i32 = 5;
    /// Permission denied by an access list.
    pub const EACCES: i32 = 13;
    /// Element or map exists.
    pub const EEXIST: i32 = 17;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// Pool out of space (heap, directory or log).
    pub const ENOSPC: i32 = 28;
    /// Resource deadlock would occur: this thread already holds the pool lock.
    pub const EDEADLK: i32 = 35;
    /// The pool's data is corrupt (`EUCLEAN`, "structure needs cleaning").
    pub const EUCLEAN: i32 = 117;
}

/// Why a pool operation failed.
///
/// Corruption is always reported with the damaged structure and its byte offset in the file; recovery
/// never writes to a pool it found corrupt. Errors of the map hot paths (missing element, full map) carry
/// no heap data.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A system call on the pool file failed.
    #[error("{path}: {op}: {source}")]
    Io {
        /// The pool file.
        path: PathBuf,
        /// What was being done (`open`, `mmap`, `msync`, …).
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is too short to hold a pool header.
    #[error("truncated header: the file is {len} bytes, a header needs 256")]
    TruncatedHeader {
        /// The file's length.
        len: u64,
    },
    /// The first 8 bytes are not `MOATPOOL`.
    #[error("not a moat pool: magic at offset 0 is {found:02x?}")]
    BadMagic {
        /// The bytes found.
        found: [u8; 8],
    },
    /// The layout version (offset 8) is not one this build reads.
    #[error("unsupported layout version {found} at offset 8 (this build reads {supported})")]
    UnsupportedVersion {
        /// The version found.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The header's CRC32C (offset 252) does not match its bytes 0..252.
    #[error("header checksum at offset 252 is {stored:#010x}, computed {computed:#010x}")]
    HeaderChecksum {
        /// The stored checksum.
        stored: u32,
        /// The checksum of the header's bytes.
        computed: u32,
    },
    /// A header field has an impossible value.
    #[error("header field `{field}` at offset {offset}: value {value} {reason}")]
    BadHeaderField {
        /// The field's name as in `docs/pool-format.md`.
        field: &'static str,
        /// The field's offset in the header.
        offset: u64,
        /// The value found.
        value: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The header's `pool_size` differs from the file's length.
    #[error("pool_size (offset 32) is {header} but the file is {file} bytes")]
    SizeMismatch {
        /// `pool_size` in the header.
        header: u64,
        /// The file's length.
        file: u64,
    },
    /// A structure inside the pool is damaged.
    #[error("corrupt {what} at offset {offset:#x}: {reason}")]
    Corrupt {
        /// The damaged structure (`log record 3`, `directory entry 2 (map \`x\`)`, …).
        what: String,
        /// Its byte offset in the file.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A sealed map's contents no longer match the checksum taken when it was sealed.
    #[error("sealed map `{map}`: content checksum {computed:#010x} differs from the sealed {stored:#010x} (extent at offset {offset:#x})")]
    SealBroken {
        /// The map.
        map: String,
        /// The extent's offset.
        offset: u64,
        /// The checksum stored at sealing.
        stored: u32,
        /// The checksum of the contents now.
        computed: u32,
    },
    /// Pool creation or open options are impossible.
    #[error("invalid pool options: {0}")]
    InvalidOptions(&'static str),
    /// A map definition is impossible.
    #[error("invalid definition for map `{name}`: {reason}")]
    InvalidMapDef {
        /// The map's name.
        name: String,
        /// Which check failed.
        reason: &'static str,
    },
    /// No map has this name.
    #[error("no map named `{0}`")]
    NoSuchMap(String),
    /// A map with this name exists already.
    #[error("a map named `{0}` exists already")]
    MapExists(String),
    /// Every directory entry is in use.
    #[error("the map directory is full ({entries} entries)")]
    DirectoryFull {
        /// The directory's size.
        entries: u32,
    },
    /// The heap has no free run of pages this long.
    #[error("the pool heap has no run of {pages} free pages")]
    OutOfSpace {
        /// The pages needed.
        pages: u64,
    },
    /// The transaction's undo records do not fit in the log; the transaction was rolled back.
    #[error("transaction too large for the {log_len}-byte log")]
    LogFull {
        /// The log's length.
        log_len: u64,
    },
    /// An access list denies this operation.
    #[error("{principal} may not {op} map `{map}`")]
    AccessDenied {
        /// The map.
        map: String,
        /// Who asked.
        principal: Principal,
        /// `read`, `write`, `seal`, `change the access list of` or `delete`.
        op: &'static str,
    },
    /// The map is sealed and can no longer be written.
    #[error("map `{map}` is sealed (read-only)")]
    Sealed {
        /// The map.
        map: String,
    },
    /// The key has the wrong length (`-EINVAL`).
    #[error("key is {got} bytes, expected {expected}")]
    KeySize {
        /// The map's key size.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// The value has the wrong length (`-EINVAL`).
    #[error("value is {got} bytes, expected {expected}")]
    ValueSize {
        /// The map's value size.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// Update flags other than `BPF_ANY`, `BPF_NOEXIST` or `BPF_EXIST` (`-EINVAL`).
    #[error("invalid flags {flags:#x}")]
    InvalidFlags {
        /// The flags given.
        flags: u64,
    },
    /// No element has this key (`-ENOENT`).
    #[error("no such element")]
    NotFound,
    /// The element exists and `BPF_NOEXIST` was given (`-EEXIST`).
    #[error("element exists")]
    Exists,
    /// The map holds `max_entries` elements (`-E2BIG`).
    #[error("map is full")]
    Full,
    /// This thread already holds the pool's lock (a nested transaction or an operation inside one).
    #[error("this thread already holds the pool lock (operation nested in a transaction?)")]
    Deadlock,
    /// A map handle of another pool was passed to a transaction.
    #[error("map `{0}` belongs to another pool")]
    ForeignMap(String),
    /// The pool was opened read-only (or by inspection) and cannot be written.
    #[error("the pool is open read-only")]
    ReadOnly,
}

impl PoolError {
    /// The negative errno a kernel-like interface returns for this error.
    pub fn errno(&self) -> i32 {
        use errno::*;
        -match self {
            PoolError::NotFound | PoolError::NoSuchMap(_) => ENOENT,
            PoolError::Exists | PoolError::MapExists(_) => EEXIST,
            PoolError::Full => E2BIG,
            PoolError::KeySize { .. }
            | PoolError::ValueSize { .. }
            | PoolError::InvalidFlags { .. }
            | PoolError::InvalidOptions(_)
            | PoolError::InvalidMapDef { .. }
            | PoolError::ForeignMap(_) => EINVAL,
            PoolError::Sealed { .. } | PoolError::ReadOnly => EPERM,
            PoolError::AccessDenied { .. } => EACCES,
            PoolError::DirectoryFull { .. }
            | PoolError::OutOfSpace { .. }
            | PoolError::LogFull { .. } => ENOSPC,
            PoolError::Deadlock => EDEADLK,
            PoolError::Io { .. } => EIO,
            PoolError::TruncatedHeader { .. }
            | PoolError::BadMagic { .. }
            | PoolError::UnsupportedVersion { .. }
            | PoolError::HeaderChecksum { .. }
            | PoolError::BadHeaderField { .. }
            | PoolError::SizeMismatch { .. }
            | PoolError::Corrupt { .. }
            | PoolError::SealBroken { .. } => EUCLEAN,
        }
    }

    /// A [`PoolError::Corrupt`].
    pub(crate) fn corrupt(what: impl Into<String>, offset: u64, reason: &'static str) -> PoolError {
        PoolError::Corrupt {
            what: what.into(),
            offset,
            reason,
        }
    }
}
