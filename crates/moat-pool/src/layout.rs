//! The on-disk format of `docs/pool-format.md` as code: the header (§2), the log's state word and record
//! header (§4), directory entries (§5) and the hash map extent geometry (§7). Every decoder checks what
//! it reads and reports the field and offset of the first problem; nothing here panics on hostile bytes.

use crate::acl::{AclEntry, MAX_ACL};
use crate::error::PoolError;

/// The page size pools are laid out in.
pub const PAGE: u64 = 4096;
/// The header's magic.
pub const MAGIC: [u8; 8] = *b"MOATPOOL";
/// The layout version this build reads and writes.
pub const VERSION: u32 = 1;
/// Bytes covered by the header (the CRC is the last 4).
pub const HEADER_LEN: usize = 256;
/// Size of one directory entry.
pub const ENTRY_LEN: usize = 256;
/// Size of the log header.
pub const LOG_HEADER: u64 = 64;
/// Size of a log record header.
pub const REC_HEADER: usize = 56;
/// Smallest and largest log.
pub const LOG_MIN: u64 = 2 * PAGE;
/// Largest log (64 MiB).
pub const LOG_MAX: u64 = 64 << 20;
/// Most directory entries.
pub const DIR_MAX: u32 = 4096;
/// Longest map name, in bytes.
pub const NAME_MAX: usize = 31;
/// Largest key.
pub const KEY_MAX: u32 = 512;
/// Largest value.
pub const VALUE_MAX: u32 = 65536;
/// Most entries per map.
pub const ENTRIES_MAX: u32 = 1 << 24;

/// Map type code of a hash map.
pub const TYPE_HASH: u32 = 1;

/// Log state: no committed transaction pending.
pub const STATE_IDLE: u8 = 0;
/// Log state: a transaction committed, its `FREE` records may still have to run.
pub const STATE_COMMITTED: u8 = 1;

/// Log record kinds (§4.2).
pub const REC_UNDO: u32 = 1;
/// Log record kind: zero on rollback.
pub const REC_ZERO: u32 = 2;
/// Log record kind: deferred secure free.
pub const REC_FREE: u32 = 3;

/// Rounds `x` up to a multiple of `to` (a power of two), `None` on overflow.
pub fn round_up(x: u64, to: u64) -> Option<u64> {
    Some(x.checked_add(to - 1)? & !(to - 1))
}

/// CRC32C of `data`.
pub fn crc(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Reads a little-endian `u32` at `off` of `b` (0 if out of range; callers pass fixed-size buffers).
pub fn le32(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

/// Reads a little-endian `u64` at `off` of `b` (0 if out of range).
pub fn le64(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// Stores a little-endian `u32` at `off` of `b` (ignored if out of range).
pub fn put32(b: &mut [u8], off: usize, v: u32) {
    if let Some(s) = b.get_mut(off..off + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// Stores a little-endian `u64` at `off` of `b` (ignored if out of range).
pub fn put64(b: &mut [u8], off: usize, v: u64) {
    if let Some(s) = b.get_mut(off..off + 8) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// The decoded, checked pool header (§2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The pool's UUID.
    pub uuid: [u8; 16],
    /// The file's length.
    pub pool_size: u64,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// The creator's uid.
    pub owner_uid: u32,
    /// The creating program's tag (0 = host).
    pub owner_tag: u64,
    /// Offset of the lock page.
    pub lock_off: u64,
    /// Offset of the log.
    pub log_off: u64,
    /// Length of the log.
    pub log_len: u64,
    /// Offset of the directory.
    pub dir_off: u64,
    /// Number of directory entries.
    pub dir_entries: u32,
    /// Offset of the heap bitmap.
    pub bitmap_off: u64,
    /// Offset of the heap.
    pub heap_off: u64,
    /// Heap pages.
    pub heap_pages: u64,
}

impl Header {
    /// Lays out a new pool of `pool_size` bytes; `InvalidOptions` if it cannot hold one heap page.
    pub fn plan(
        pool_size: u64,
        log_len: u64,
        dir_entries: u32,
        uuid: [u8; 16],
        created: u64,
        owner_uid: u32,
        owner_tag: u64,
    ) -> Result<Header, PoolError> {
        if !pool_size.is_multiple_of(PAGE) {
            return Err(PoolError::InvalidOptions(
                "pool size must be a multiple of 4096",
            ));
        }
        if !log_len.is_multiple_of(PAGE) || !(LOG_MIN..=LOG_MAX).contains(&log_len) {
            return Err(PoolError::InvalidOptions(
                "log size must be a multiple of 4096 between 8 KiB and 64 MiB",
            ));
        }
        if !(1..=DIR_MAX).contains(&dir_entries) {
            return Err(PoolError::InvalidOptions(
                "directory entries must be 1..=4096",
            ));
        }
        let too_small = PoolError::InvalidOptions("pool size too small for its log and directory");
        let log_off = 2 * PAGE;
        let dir_off = log_off + log_len;
        let dir_len = round_up(u64::from(dir_entries) * ENTRY_LEN as u64, PAGE)
            .ok_or(PoolError::InvalidOptions("directory too large"))?;
        let bitmap_off = dir_off + dir_len;
        // Solve for the heap: pages after bitmap_off, each needing one bit.
        let rest = pool_size.checked_sub(bitmap_off).ok_or(too_small)?;
        let mut heap_pages = rest / PAGE;
        let mut bitmap_len;
        loop {
            bitmap_len = round_up(heap_pages.div_ceil(64) * 8, PAGE).unwrap_or(u64::MAX);
            if heap_pages == 0 || bitmap_len + heap_pages * PAGE <= rest {
                break;
            }
            heap_pages -= 1;
        }
        if heap_pages == 0 {
            return Err(PoolError::InvalidOptions(
                "pool size too small for its log and directory",
            ));
        }
        let heap_off = bitmap_off + bitmap_len;
        // Any pages left over are added to the heap only if the bitmap still has room; otherwise the
        // pool size is rounded down so that the regions end exactly at its end.
        let pool_size = heap_off + heap_pages * PAGE;
        Ok(Header {
            uuid,
            pool_size,
            created,
            owner_uid,
            owner_tag,
            lock_off: PAGE,
            log_off,
            log_len,
            dir_off,
            dir_entries,
            bitmap_off,
            heap_off,
            heap_pages,
        })
    }

    /// The 256 header bytes, CRC included.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        put32(&mut b, 8, VERSION);
        put32(&mut b, 12, HEADER_LEN as u32);
        b[16..32].copy_from_slice(&self.uuid);
        put64(&mut b, 32, self.pool_size);
        put64(&mut b, 40, self.created);
        put32(&mut b, 48, self.owner_uid);
        put32(&mut b, 52, 0);
        put64(&mut b, 56, self.owner_tag);
        put64(&mut b, 64, self.lock_off);
        put64(&mut b, 72, self.log_off);
        put64(&mut b, 80, self.log_len);
        put64(&mut b, 88, self.dir_off);
        put32(&mut b, 96, self.dir_entries);
        put64(&mut b, 104, self.bitmap_off);
        put64(&mut b, 112, self.heap_off);
        put64(&mut b, 120, self.heap_pages);
        let c = crc(&b[..252]);
        put32(&mut b, 252, c);
        b
    }

    /// Decodes and checks a header read from a file of `file_len` bytes (§2, checks in order).
    pub fn decode(b: &[u8], file_len: u64) -> Result<Header, PoolError> {
        let Some(b) = b.get(..HEADER_LEN) else {
            return Err(PoolError::TruncatedHeader {
                len: b.len() as u64,
            });
        };
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&b[0..8]);
        if magic != MAGIC {
            return Err(PoolError::BadMagic { found: magic });
        }
        let version = le32(b, 8);
        if version != VERSION {
            return Err(PoolError::UnsupportedVersion {
                found: version,
                supported: VERSION,
            });
        }
        let bad = |field, offset, value: u64, reason| PoolError::BadHeaderField {
            field,
            offset,
            value,
            reason,
        };
        if le32(b, 12) != HEADER_LEN as u32 {
            return Err(bad("header_len", 12, le32(b, 12).into(), "is not 256"));
        }
        let stored = le32(b, 252);
        let computed = crc(&b[..252]);
        if stored != computed {
            return Err(PoolError::HeaderChecksum { stored, computed });
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[16..32]);
        let h = Header {
            uuid,
            pool_size: le64(b, 32),
            created: le64(b, 40),
            owner_uid: le32(b, 48),
            owner_tag: le64(b, 56),
            lock_off: le64(b, 64),
            log_off: le64(b, 72),
            log_len: le64(b, 80),
            dir_off: le64(b, 88),
            dir_entries: le32(b, 96),
            bitmap_off: le64(b, 104),
            heap_off: le64(b, 112),
            heap_pages: le64(b, 120),
        };
        if !h.pool_size.is_multiple_of(PAGE) {
            return Err(bad(
                "pool_size",
                32,
                h.pool_size,
                "is not a multiple of 4096",
            ));
        }
        if le32(b, 52) != 0 {
            return Err(bad("flags", 52, le32(b, 52).into(), "has unknown bits"));
        }
        if h.lock_off != PAGE {
            return Err(bad("lock_off", 64, h.lock_off, "is not 4096"));
        }
        if h.log_off != 2 * PAGE {
            return Err(bad("log_off", 72, h.log_off, "is not 8192"));
        }
        if !h.log_len.is_multiple_of(PAGE) || !(LOG_MIN..=LOG_MAX).contains(&h.log_len) {
            return Err(bad(
                "log_len",
                80,
                h.log_len,
                "is not a multiple of 4096 in 8 KiB..=64 MiB",
            ));
        }
        if h.dir_off != h.log_off + h.log_len {
            return Err(bad("dir_off", 88, h.dir_off, "does not follow the log"));
        }
        if !(1..=DIR_MAX).contains(&h.dir_entries) {
            return Err(bad(
                "dir_entries",
                96,
                h.dir_entries.into(),
                "is not in 1..=4096",
            ));
        }
        if le32(b, 100) != 0 || b[128..252].iter().any(|&x| x != 0) {
            return Err(bad("reserved", 100, 0, "is not zero"));
        }
        let dir_len = round_up(u64::from(h.dir_entries) * ENTRY_LEN as u64, PAGE).unwrap_or(0);
        if h.bitmap_off != h.dir_off + dir_len {
            return Err(bad(
                "bitmap_off",
                104,
                h.bitmap_off,
                "does not follow the directory",
            ));
        }
        let bitmap_len = h
            .heap_pages
            .checked_add(63)
            .map(|x| x / 64 * 8)
            .and_then(|x| round_up(x, PAGE));
        if h.heap_pages == 0 || bitmap_len.is_none() {
            return Err(bad("heap_pages", 120, h.heap_pages, "is impossible"));
        }
        if Some(h.heap_off) != bitmap_len.and_then(|l| h.bitmap_off.checked_add(l)) {
            return Err(bad(
                "heap_off",
                112,
                h.heap_off,
                "does not follow the heap bitmap",
            ));
        }
        let end = h
            .heap_pages
            .checked_mul(PAGE)
            .and_then(|l| l.checked_add(h.heap_off));
        if end != Some(h.pool_size) {
            return Err(bad(
                "heap_pages",
                120,
                h.heap_pages,
                "does not end the heap at pool_size",
            ));
        }
        if h.pool_size != file_len {
            return Err(PoolError::SizeMismatch {
                header: h.pool_size,
                file: file_len,
            });
        }
        Ok(h)
    }

    /// Offset of directory entry `i`.
    pub fn entry_off(&self, i: u32) -> u64 {
        self.dir_off + u64::from(i) * ENTRY_LEN as u64
    }

    /// Offset of the first log record.
    pub fn records_off(&self) -> u64 {
        self.log_off + LOG_HEADER
    }

    /// End of the log.
    pub fn log_end(&self) -> u64 {
        self.log_off + self.log_len
    }

    /// Whether `off..off + len` lies in the mutable data regions (directory, bitmap, heap), the only
    /// places log records may target.
    pub fn in_data(&self, off: u64, len: u64) -> bool {
        off >= self.dir_off && off.checked_add(len).is_some_and(|e| e <= self.pool_size)
    }
}

/// Encodes a log state word (§4.1).
pub fn state_word(gen: u32, state: u8) -> u64 {
    let low = u64::from(gen) | (u64::from(state) << 32);
    let check = u64::from(crc(&low.to_le_bytes()[..5]) & 0x00ff_ffff);
    low | (check << 40)
}

/// Decodes a log state word: `(gen, state)`, or `None` if its check bits are wrong or the state unknown.
pub fn parse_state_word(w: u64) -> Option<(u32, u8)> {
    let gen = (w & 0xffff_ffff) as u32;
    let state = ((w >> 32) & 0xff) as u8;
    if state > STATE_COMMITTED || state_word(gen, state) != w {
        return None;
    }
    Some((gen, state))
}

/// A log record header (§4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecHeader {
    /// `REC_UNDO`, `REC_ZERO` or `REC_FREE`.
    pub kind: u32,
    /// The transaction's generation.
    pub gen: u32,
    /// Index in the transaction.
    pub seq: u32,
    /// Bytes of data following.
    pub data_len: u32,
    /// Target range start.
    pub target_off: u64,
    /// Target range length.
    pub target_len: u64,
    /// `REC_FREE`: bitmap to clear bits in.
    pub bitmap_off: u64,
    /// `REC_FREE`: first bit.
    pub bit_first: u32,
    /// `REC_FREE`: number of bits.
    pub bit_count: u32,
}

impl RecHeader {
    /// The header bytes with the CRC over them and `data`.
    pub fn encode(&self, data: &[u8]) -> [u8; REC_HEADER] {
        let mut b = [0u8; REC_HEADER];
        put32(&mut b, 0, self.kind);
        put32(&mut b, 4, self.gen);
        put32(&mut b, 8, self.seq);
        put32(&mut b, 12, self.data_len);
        put64(&mut b, 16, self.target_off);
        put64(&mut b, 24, self.target_len);
        put64(&mut b, 32, self.bitmap_off);
        put32(&mut b, 40, self.bit_first);
        put32(&mut b, 44, self.bit_count);
        let c = crc32c::crc32c_append(crc(&b[..48]), data);
        put32(&mut b, 48, c);
        b
    }

    /// Decodes header bytes without checking anything.
    pub fn decode(b: &[u8; REC_HEADER]) -> (RecHeader, u32) {
        (
            RecHeader {
                kind: le32(b, 0),
                gen: le32(b, 4),
                seq: le32(b, 8),
                data_len: le32(b, 12),
                target_off: le64(b, 16),
                target_len: le64(b, 24),
                bitmap_off: le64(b, 32),
                bit_first: le32(b, 40),
                bit_count: le32(b, 44),
            },
            le32(b, 48),
        )
    }

    /// The record's total size in the log.
    pub fn size(&self) -> u64 {
        REC_HEADER as u64 + round_up(u64::from(self.data_len), 8).unwrap_or(u64::MAX)
    }
}

/// A decoded directory entry (§5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Map name.
    pub name: String,
    /// Key size.
    pub key_size: u32,
    /// Value size.
    pub value_size: u32,
    /// Capacity.
    pub max_entries: u32,
    /// Elements present.
    pub count: u32,
    /// Hash seed.
    pub seed: u32,
    /// Extent start.
    pub extent_off: u64,
    /// Extent pages.
    pub extent_pages: u32,
    /// Buckets (power of two).
    pub n_buckets: u32,
    /// Bucket array.
    pub buckets_off: u64,
    /// Slot bitmap.
    pub slots_off: u64,
    /// Slab.
    pub slab_off: u64,
    /// Slot size.
    pub elem_size: u32,
    /// Owner uid.
    pub owner_uid: u32,
    /// Owner program tag (0 = host).
    pub owner_tag: u64,
    /// Whether sealed.
    pub sealed: bool,
    /// CRC32C of the extent when sealed.
    pub seal_crc: u32,
    /// Access list.
    pub acl: Vec<AclEntry>,
}

/// The geometry of a hash map's extent: (n_buckets, slots bitmap offset, slab offset, element size,
/// extent pages), all offsets relative to the extent.
pub fn geometry(
    key_size: u32,
    value_size: u32,
    max_entries: u32,
) -> Option<(u32, u64, u64, u32, u32)> {
    let n_buckets = max_entries.checked_next_power_of_two()?;
    let elem = 8 + round_up(u64::from(key_size), 8)? + round_up(u64::from(value_size), 8)?;
    let slots = u64::from(n_buckets) * 8;
    let slab = slots + u64::from(max_entries).div_ceil(64) * 8;
    let end = slab.checked_add(elem.checked_mul(u64::from(max_entries))?)?;
    let pages = round_up(end, PAGE)? / PAGE;
    Some((
        n_buckets,
        slots,
        slab,
        u32::try_from(elem).ok()?,
        u32::try_from(pages).ok()?,
    ))
}

impl Entry {
    /// The 256 entry bytes, CRC included.
    pub fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut b = [0u8; ENTRY_LEN];
        put32(&mut b, 0, 1);
        put32(&mut b, 4, TYPE_HASH);
        let name = self.name.as_bytes();
        let n = name.len().min(NAME_MAX);
        b[8..8 + n].copy_from_slice(&name[..n]);
        put32(&mut b, 40, self.key_size);
        put32(&mut b, 44, self.value_size);
        put32(&mut b, 48, self.max_entries);
        put32(&mut b, 52, 0);
        put32(&mut b, 56, self.count);
        put32(&mut b, 60, self.seed);
        put64(&mut b, 64, self.extent_off);
        put32(&mut b, 72, self.extent_pages);
        put32(&mut b, 76, self.n_buckets);
        put64(&mut b, 80, self.buckets_off);
        put64(&mut b, 88, self.slots_off);
        put64(&mut b, 96, self.slab_off);
        put32(&mut b, 104, self.elem_size);
        put32(&mut b, 108, self.owner_uid);
        put64(&mut b, 112, self.owner_tag);
        put32(&mut b, 120, u32::from(self.sealed));
        put32(&mut b, 124, self.seal_crc);
        for (i, e) in self.acl.iter().take(MAX_ACL).enumerate() {
            b[128 + i * 16..144 + i * 16].copy_from_slice(&e.encode());
        }
        let c = crc(&b[..252]);
        put32(&mut b, 252, c);
        b
    }

    /// Decodes and checks entry `index` (at `offset`) against the pool header `h`. `Ok(None)` for a free
    /// entry.
    pub fn decode(
        b: &[u8; ENTRY_LEN],
        h: &Header,
        index: u32,
        offset: u64,
    ) -> Result<Option<Entry>, PoolError> {
        let what = || format!("directory entry {index}");
        let state = le32(b, 0);
        if state == 0 {
            return if b.iter().all(|&x| x == 0) {
                Ok(None)
            } else {
                Err(PoolError::corrupt(what(), offset, "free entry is not zero"))
            };
        }
        if state != 1 {
            return Err(PoolError::corrupt(what(), offset, "unknown state"));
        }
        if crc(&b[..252]) != le32(b, 252) {
            return Err(PoolError::corrupt(
                what(),
                offset + 252,
                "checksum mismatch",
            ));
        }
        if le32(b, 4) != TYPE_HASH {
            return Err(PoolError::corrupt(what(), offset + 4, "unknown map type"));
        }
        let raw = &b[8..40];
        let len = raw.iter().position(|&x| x == 0).unwrap_or(raw.len());
        let name = std::str::from_utf8(&raw[..len])
            .ok()
            .filter(|n| !n.is_empty() && n.len() <= NAME_MAX)
            .ok_or_else(|| {
                PoolError::corrupt(what(), offset + 8, "name is not 1..=31 bytes of UTF-8")
            })?
            .to_string();
        let what = || format!("directory entry {index} (map `{name}`)");
        let mut acl = Vec::new();
        for i in 0..MAX_ACL {
            let mut e = [0u8; 16];
            e.copy_from_slice(&b[128 + i * 16..144 + i * 16]);
            match AclEntry::decode(&e) {
                Ok(Some(e)) => acl.push(e),
                Ok(None) => {}
                Err(reason) => {
                    return Err(PoolError::corrupt(
                        what(),
                        offset + 128 + 16 * i as u64,
                        reason,
                    ))
                }
            }
        }
        let e = Entry {
            name: name.clone(),
            key_size: le32(b, 40),
            value_size: le32(b, 44),
            max_entries: le32(b, 48),
            count: le32(b, 56),
            seed: le32(b, 60),
            extent_off: le64(b, 64),
            extent_pages: le32(b, 72),
            n_buckets: le32(b, 76),
            buckets_off: le64(b, 80),
            slots_off: le64(b, 88),
            slab_off: le64(b, 96),
            elem_size: le32(b, 104),
            owner_uid: le32(b, 108),
            owner_tag: le64(b, 112),
            sealed: le32(b, 120) != 0,
            seal_crc: le32(b, 124),
            acl,
        };
        let bad =
            |field_off: u64, reason| Err(PoolError::corrupt(what(), offset + field_off, reason));
        if le32(b, 52) != 0 || le32(b, 120) > 1 {
            return bad(52, "unknown flags");
        }
        if !(1..=KEY_MAX).contains(&e.key_size)
            || !(1..=VALUE_MAX).contains(&e.value_size)
            || !(1..=ENTRIES_MAX).contains(&e.max_entries)
        {
            return bad(40, "key, value or entry count out of range");
        }
        if e.count > e.max_entries {
            return bad(56, "count above max_entries");
        }
        let Some((nb, slots, slab, elem, pages)) =
            geometry(e.key_size, e.value_size, e.max_entries)
        else {
            return bad(40, "impossible geometry");
        };
        if e.n_buckets != nb
            || e.elem_size != elem
            || e.extent_pages != pages
            || e.buckets_off != e.extent_off
            || e.slots_off != e.extent_off + slots
            || e.slab_off != e.extent_off + slab
        {
            return bad(64, "extent geometry does not match the sizes");
        }
        let ext_len = u64::from(pages) * PAGE;
        if e.extent_off < h.heap_off
            || !(e.extent_off - h.heap_off).is_multiple_of(PAGE)
            || !h.in_data(e.extent_off, ext_len)
        {
            return bad(64, "extent outside the heap");
        }
        Ok(Some(e))
    }

    /// The extent's length in bytes.
    pub fn extent_len(&self) -> u64 {
        u64::from(self.extent_pages) * PAGE
    }

    /// The first heap page of the extent.
    pub fn first_page(&self, h: &Header) -> u64 {
        (self.extent_off - h.heap_off) / PAGE
    }

    /// Offset of the key in an element.
    pub fn key_at(&self, elem: u64) -> u64 {
        elem + 8
    }

    /// Offset of the value in an element.
    pub fn value_at(&self, elem: u64) -> u64 {
        elem + 8 + round_up(u64::from(self.key_size), 8).unwrap_or(0)
    }

    /// The slot index of the element at `elem`, if `elem` is the start of a slot of this map.
    pub fn slot_of(&self, elem: u64) -> Option<u32> {
        let rel = elem.checked_sub(self.slab_off)?;
        let size = u64::from(self.elem_size);
        if rel % size != 0 || rel / size >= u64::from(self.max_entries) {
            return None;
        }
        u32::try_from(rel / size).ok()
    }

    /// The offset of slot `i`.
    pub fn slot_off(&self, i: u32) -> u64 {
        self.slab_off + u64::from(i) * u64::from(self.elem_size)
    }

    /// The bucket an element with `key` hashes to.
    pub fn bucket_of(&self, key: &[u8]) -> u64 {
        let h = crc32c::crc32c_append(crc(&self.seed.to_le_bytes()), key);
        self.buckets_off + u64::from(h & (self.n_buckets - 1)) * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header::plan(1 << 20, 2 * PAGE, 16, [7; 16], 1, 1000, 0).expect("fits")
    }

    #[test]
    fn crc32c_is_castagnoli() {
        assert_eq!(crc(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn header_round_trips_and_regions_tile_the_file() {
        let h = header();
        let d = Header::decode(&h.encode(), h.pool_size).expect("valid");
        assert_eq!(d, h);
        assert_eq!(h.heap_off + h.heap_pages * PAGE, h.pool_size);
        assert!(h.bitmap_off + h.heap_pages.div_ceil(64) * 8 <= h.heap_off);
    }

    #[test]
    fn plan_refuses_impossible_sizes() {
        for (size, log, dir) in [
            (3 * PAGE, 2 * PAGE, 1),
            (1 << 20, 3000, 1),
            (1 << 20, 2 * PAGE, 0),
            (1 << 20, 2 * PAGE, 5000),
            (1000, 2 * PAGE, 1),
        ] {
            assert!(matches!(
                Header::plan(size, log, dir, [0; 16], 0, 0, 0),
                Err(PoolError::InvalidOptions(_))
            ));
        }
    }

    /// Each corruption of one header field is reported as that field.
    #[test]
    fn corrupt_header_fields_are_named() {
        let h = header();
        let check = |off: usize, val: u64, width: usize, expect: &dyn Fn(&PoolError) -> bool| {
            let mut b = h.encode();
            b[off..off + width].copy_from_slice(&val.to_le_bytes()[..width]);
            if off != 252 && off >= 12 {
                let c = crc(&b[..252]);
                put32(&mut b, 252, c);
            }
            let err = Header::decode(&b, h.pool_size).expect_err("corrupt");
            assert!(expect(&err), "offset {off}: {err}");
        };
        check(0, 0x4c4f4f5054414f4e, 8, &|e| {
            matches!(e, PoolError::BadMagic { .. })
        });
        check(8, 2, 4, &|e| {
            matches!(e, PoolError::UnsupportedVersion { found: 2, .. })
        });
        check(252, 1, 4, &|e| {
            matches!(e, PoolError::HeaderChecksum { .. })
        });
        let field = |name: &'static str| move |e: &PoolError| matches!(e, PoolError::BadHeaderField { field, .. } if *field == name);
        check(12, 100, 4, &field("header_len"));
        check(32, h.pool_size + 1, 8, &field("pool_size"));
        check(52, 1, 4, &field("flags"));
        check(64, 0, 8, &field("lock_off"));
        check(72, 0, 8, &field("log_off"));
        check(80, 3 * PAGE, 8, &field("dir_off"));
        check(80, 100, 8, &field("log_len"));
        check(88, 0, 8, &field("dir_off"));
        check(96, 0, 4, &field("dir_entries"));
        check(104, 0, 8, &field("bitmap_off"));
        check(112, 0, 8, &field("heap_off"));
        check(120, h.heap_pages + 1, 8, &field("heap_pages"));
        check(200, 1, 1, &field("reserved"));
        let b = h.encode();
        assert!(matches!(
            Header::decode(&b, h.pool_size + PAGE),
            Err(PoolError::SizeMismatch { .. })
        ));
        assert!(matches!(
            Header::decode(&b[..100], 100),
            Err(PoolError::TruncatedHeader { len: 100 })
        ));
    }

    #[test]
    fn state_words_check_themselves() {
        for gen in [0, 1, 0xffff_ffff] {
            for state in [STATE_IDLE, STATE_COMMITTED] {
                let w = state_word(gen, state);
                assert_eq!(parse_state_word(w), Some((gen, state)));
                for bit in 0..64 {
                    assert_eq!(parse_state_word(w ^ (1 << bit)), None, "bit {bit}");
                }
            }
        }
        assert_eq!(
            parse_state_word(0),
            None,
            "an all-zero word is not valid (the check of 0 is not 0)"
        );
    }

    proptest::proptest! {
        #[test]
        fn hostile_headers_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300), len in 0u64..1 << 30) {
            let _ = Header::decode(&bytes, len);
        }

        #[test]
        fn hostile_entries_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 256..=256)) {
            let mut b = [0u8; 256];
            b.copy_from_slice(&bytes);
            let _ = Entry::decode(&b, &header(), 0, 0);
            // The same with a valid CRC, so the field checks run.
            let c = crc(&b[..252]);
            put32(&mut b, 252, c);
            put32(&mut b, 0, 1);
            let _ = Entry::decode(&b, &header(), 0, 0);
        }
    }
}
