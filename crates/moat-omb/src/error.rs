//! The transport's typed errors: what went wrong and where (rank, ring position, region offset).

use thiserror::Error;

/// An error of the shared-memory transport or of a benchmark transport.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OmbError {
    /// The region file could not be created, opened or mapped.
    #[error("region: {0}")]
    Region(#[from] moat_pool::PoolError),
    /// A socket or process operation failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The region's header is not a valid moat-omb header.
    #[error("region header field `{field}` at offset {offset}: {reason}")]
    BadHeader {
        /// The field.
        field: &'static str,
        /// Its offset in the region.
        offset: usize,
        /// Why it was refused.
        reason: String,
    },
    /// Options out of range.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// A rank outside the world.
    #[error("rank {rank} is outside a world of {size}")]
    NoSuchRank {
        /// The rank asked for.
        rank: usize,
        /// The world's size.
        size: usize,
    },
    /// Another live process owns this rank.
    #[error("rank {rank} is owned by live process {pid}")]
    RankInUse {
        /// The rank.
        rank: usize,
        /// The owner's process id.
        pid: u32,
    },
    /// A message header in a ring is malformed (written by a faulty or hostile peer); the message
    /// was not read.
    #[error("malformed message header from rank {src} at ring position {pos}: {reason}")]
    MalformedHeader {
        /// The sending rank.
        src: usize,
        /// The ring position of the header.
        pos: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A message is larger than the receive buffer (it was consumed and dropped).
    #[error("message of {len} bytes from rank {src} does not fit a {cap}-byte buffer")]
    Truncated {
        /// The sending rank.
        src: usize,
        /// The message's length.
        len: usize,
        /// The buffer's length.
        cap: usize,
    },
    /// A message is larger than the transport carries.
    #[error("message of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The peer process died (its rank can be taken over by a new process, which recovers the
    /// rings).
    #[error("peer rank {rank} died")]
    PeerDead {
        /// The dead rank.
        rank: usize,
    },
    /// A rendezvous transfer was aborted because its peer died or was replaced mid-transfer.
    #[error("transfer with rank {rank} aborted: {reason}")]
    Aborted {
        /// The peer.
        rank: usize,
        /// Why.
        reason: &'static str,
    },
    /// A benchmark transport is unavailable here (tool missing, no permission).
    #[error("{transport} unavailable: {reason}")]
    Unavailable {
        /// The transport.
        transport: String,
        /// Why.
        reason: String,
    },
}

impl OmbError {
    /// An [`OmbError::Io`] for `op`.
    pub fn io(op: impl Into<String>, source: std::io::Error) -> OmbError {
        OmbError::Io {
            op: op.into(),
            source,
        }
    }
}
