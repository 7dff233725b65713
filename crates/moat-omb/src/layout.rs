//! The region's format: a header page, a rank table, one block per ordered pair of ranks (an SPSC
//! ring of 64-byte slots and a rendezvous buffer of chunks) and one MPSC inbox per rank. All fields
//! are fixed-width little-endian words at offsets computed from the header's geometry, which every
//! process checks on attach ([`Geometry::decode`]).
//!
//! | region offset | content |
//! |---|---|
//! | 0 | header (below), the rest of the page zero |
//! | 4096 | rank table: per rank 128 bytes, word 0 = owner (`pid \| start << 32`, 0 = none) |
//! | `pairs_off` | `ranks²` pair blocks (`src · ranks + dst`), each `pair_len` bytes |
//! | `inbox_off` | `ranks` inboxes, each `inbox_len` bytes |
//!
//! Header: `magic` "MOATOMB1" (0), `version` u32 = 1 (8), `ranks` (12), `ring_slots` (16),
//! `eager_max` (20), `chunk_size` (24), `chunks` (28), `inbox_cells` (32), reserved (36), `region_len`
//! u64 (40), `ready` u64 (48) = [`READY`], stored last by the creator.
//!
//! Pair block: producer line (`head`, `chunk_head`) at 0, consumer line (`tail`) at 128, `epoch` at
//! 256, `chunks` chunk-control words at 384 (one per 64-byte line), the ring (`ring_slots` × 64
//! bytes) at `ring_off`, the chunk buffers (`chunks` × `chunk_size`) at `data_off`. Control words
//! that different processes write sit on different 128-byte pairs of lines (the adjacent-line
//! prefetcher fetches lines in pairs).
//!
//! Inbox: `tail` (next position to claim) at 0, `head` (next to consume) at 128, one intent word per
//! producer rank at 256 + 64·rank, cells (`inbox_cells` × 64 bytes) at `cells_off`.

use crate::error::OmbError;

/// The region's magic bytes.
pub const MAGIC: [u8; 8] = *b"MOATOMB1";
/// The format version.
pub const VERSION: u32 = 1;
/// `ready` once the creator has initialised everything.
pub const READY: u64 = 0x0059_4441_4552; // "READY"
/// A page.
pub const PAGE: usize = 4096;
/// A cache line, and a ring slot.
pub const LINE: usize = 64;
/// Bytes of a message header in its first slot (sequence word, then length, kind, tag).
pub const HDR: usize = 16;
/// Payload bytes of an inbox cell (a 64-byte cell with a 16-byte header).
pub const CELL_PAYLOAD: usize = LINE - HDR;
/// The largest world.
pub const MAX_RANKS: usize = 64;

/// Offsets in the header.
mod field {
    pub const VERSION: usize = 8;
    pub const RANKS: usize = 12;
    pub const RING_SLOTS: usize = 16;
    pub const EAGER_MAX: usize = 20;
    pub const CHUNK_SIZE: usize = 24;
    pub const CHUNKS: usize = 28;
    pub const INBOX_CELLS: usize = 32;
    pub const REGION_LEN: usize = 40;
    pub const READY: usize = 48;
}

/// The offset of the `ready` word.
pub const READY_OFF: usize = field::READY;

fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

/// The shape of a region: how many ranks, how big the rings, where the eager protocol ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Processes in the world (1..=64).
    pub ranks: u32,
    /// Slots per SPSC ring (a power of two, 64..=65536).
    pub ring_slots: u32,
    /// The largest message sent eagerly (through the ring); larger ones use the rendezvous buffer.
    /// At most `ring_slots / 2` slots' worth.
    pub eager_max: u32,
    /// Bytes per rendezvous chunk (a multiple of 4096, at most 16 MiB).
    pub chunk_size: u32,
    /// Rendezvous chunks per pair (a power of two, 2..=1024).
    pub chunks: u32,
    /// Cells per MPSC inbox (a power of two, 16..=65536).
    pub inbox_cells: u32,
}

impl Default for Geometry {
    fn default() -> Geometry {
        Geometry {
            ranks: 2,
            ring_slots: 1024,
            eager_max: 8192,
            chunk_size: 64 << 10,
            chunks: 8,
            inbox_cells: 256,
        }
    }
}

impl Geometry {
    /// The default geometry for `ranks` ranks.
    pub fn with_ranks(ranks: u32) -> Geometry {
        Geometry {
            ranks,
            ..Geometry::default()
        }
    }

    /// Checks every field's range.
    pub fn check(&self) -> Result<(), OmbError> {
        let bad = |field: &'static str, offset, reason: &str| {
            Err(OmbError::BadHeader {
                field,
                offset,
                reason: reason.to_string(),
            })
        };
        let pow2 = |v: u32, lo: u32, hi: u32| v.is_power_of_two() && (lo..=hi).contains(&v);
        if !(1..=MAX_RANKS as u32).contains(&self.ranks) {
            return bad("ranks", field::RANKS, "must be 1..=64");
        }
        if !pow2(self.ring_slots, 64, 65536) {
            return bad(
                "ring_slots",
                field::RING_SLOTS,
                "must be a power of two in 64..=65536",
            );
        }
        let most = (self.ring_slots as usize / 2) * LINE - HDR;
        if self.eager_max < 16 || self.eager_max as usize > most {
            return bad(
                "eager_max",
                field::EAGER_MAX,
                "must be at least 16 and fit half the ring",
            );
        }
        if self.chunk_size == 0
            || !(self.chunk_size as usize).is_multiple_of(PAGE)
            || self.chunk_size > 16 << 20
        {
            return bad(
                "chunk_size",
                field::CHUNK_SIZE,
                "must be a multiple of 4096, at most 16 MiB",
            );
        }
        if !pow2(self.chunks, 2, 1024) {
            return bad(
                "chunks",
                field::CHUNKS,
                "must be a power of two in 2..=1024",
            );
        }
        if !pow2(self.inbox_cells, 16, 65536) {
            return bad(
                "inbox_cells",
                field::INBOX_CELLS,
                "must be a power of two in 16..=65536",
            );
        }
        Ok(())
    }

    /// The ranks, as an index bound.
    pub fn n(&self) -> usize {
        self.ranks as usize
    }

    /// Start of the chunk-control words in a pair block.
    pub fn ctl_off(&self) -> usize {
        384
    }

    /// Start of the ring in a pair block.
    pub fn ring_off(&self) -> usize {
        round_up(self.ctl_off() + self.chunks as usize * LINE, PAGE)
    }

    /// Start of the chunk buffers in a pair block.
    pub fn data_off(&self) -> usize {
        self.ring_off() + self.ring_slots as usize * LINE
    }

    /// Bytes of a pair block.
    pub fn pair_len(&self) -> usize {
        round_up(
            self.data_off() + self.chunks as usize * self.chunk_size as usize,
            PAGE,
        )
    }

    /// Start of the pair blocks.
    pub fn pairs_off(&self) -> usize {
        PAGE + round_up(self.n() * 128, PAGE)
    }

    /// The pair block of `src → dst`.
    pub fn pair(&self, src: usize, dst: usize) -> usize {
        self.pairs_off() + (src * self.n() + dst) * self.pair_len()
    }

    /// Start of the cells in an inbox.
    pub fn cells_off(&self) -> usize {
        round_up(256 + self.n() * LINE, PAGE)
    }

    /// Bytes of an inbox.
    pub fn inbox_len(&self) -> usize {
        round_up(self.cells_off() + self.inbox_cells as usize * LINE, PAGE)
    }

    /// Start of the inboxes.
    pub fn inbox_off(&self) -> usize {
        self.pairs_off() + self.n() * self.n() * self.pair_len()
    }

    /// The inbox of `rank`.
    pub fn inbox(&self, rank: usize) -> usize {
        self.inbox_off() + rank * self.inbox_len()
    }

    /// The owner word of `rank`.
    pub fn owner(&self, rank: usize) -> usize {
        PAGE + rank * 128
    }

    /// The region's total length.
    pub fn region_len(&self) -> usize {
        self.inbox_off() + self.n() * self.inbox_len()
    }

    /// The header's bytes (the `ready` word zero: the creator stores it last).
    pub fn encode(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[..8].copy_from_slice(&MAGIC);
        let put = |b: &mut [u8; 64], off: usize, v: u32| {
            b[off..off + 4].copy_from_slice(&v.to_le_bytes());
        };
        put(&mut b, field::VERSION, VERSION);
        put(&mut b, field::RANKS, self.ranks);
        put(&mut b, field::RING_SLOTS, self.ring_slots);
        put(&mut b, field::EAGER_MAX, self.eager_max);
        put(&mut b, field::CHUNK_SIZE, self.chunk_size);
        put(&mut b, field::CHUNKS, self.chunks);
        put(&mut b, field::INBOX_CELLS, self.inbox_cells);
        b[field::REGION_LEN..field::REGION_LEN + 8]
            .copy_from_slice(&(self.region_len() as u64).to_le_bytes());
        b
    }

    /// Decodes and checks a header read from a region of `file_len` bytes.
    pub fn decode(b: &[u8; 64], file_len: usize) -> Result<Geometry, OmbError> {
        let bad = |field: &'static str, offset, reason: String| OmbError::BadHeader {
            field,
            offset,
            reason,
        };
        if b[..8] != MAGIC {
            return Err(bad("magic", 0, format!("{:02x?} is not MOATOMB1", &b[..8])));
        }
        let word = |off: usize| u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]]);
        if word(field::VERSION) != VERSION {
            return Err(bad(
                "version",
                field::VERSION,
                format!("{} (this build reads {VERSION})", word(field::VERSION)),
            ));
        }
        let g = Geometry {
            ranks: word(field::RANKS),
            ring_slots: word(field::RING_SLOTS),
            eager_max: word(field::EAGER_MAX),
            chunk_size: word(field::CHUNK_SIZE),
            chunks: word(field::CHUNKS),
            inbox_cells: word(field::INBOX_CELLS),
        };
        g.check()?;
        let mut len = [0u8; 8];
        len.copy_from_slice(&b[field::REGION_LEN..field::REGION_LEN + 8]);
        let len = u64::from_le_bytes(len);
        if len != g.region_len() as u64 || g.region_len() > file_len {
            return Err(bad(
                "region_len",
                field::REGION_LEN,
                format!(
                    "{len}, the geometry needs {} and the file has {file_len}",
                    g.region_len()
                ),
            ));
        }
        Ok(g)
    }
}

/// A chunk-control word: the pair's epoch (low 16 bits) over the chunk state: `2q` = free for
/// chunk number `q`, `2q + 1` = holds chunk `q`.
pub fn chunk_word(epoch: u64, state: u64) -> u64 {
    ((epoch & 0xffff) << 48) | (state & ((1 << 48) - 1))
}

/// The epoch bits of a chunk-control word.
pub fn chunk_epoch(word: u64) -> u64 {
    word >> 48
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_round_trips_and_blocks_do_not_overlap() {
        let g = Geometry::with_ranks(4);
        g.check().unwrap();
        assert_eq!(Geometry::decode(&g.encode(), g.region_len()).unwrap(), g);
        assert!(g.ring_off() >= g.ctl_off() + g.chunks as usize * LINE);
        assert!(g.pair(0, 1) >= g.pair(0, 0) + g.pair_len());
        assert_eq!(g.pair(0, 0) % PAGE, 0);
        assert_eq!(g.inbox(0), g.pair(3, 3) + g.pair_len());
        assert!(matches!(
            Geometry::decode(&g.encode(), g.region_len() - 1),
            Err(OmbError::BadHeader {
                field: "region_len",
                ..
            })
        ));
        let mut b = g.encode();
        b[field::RING_SLOTS] = 3;
        assert!(matches!(
            Geometry::decode(&b, g.region_len()),
            Err(OmbError::BadHeader {
                field: "ring_slots",
                ..
            })
        ));
    }
}
