//! The pool engine, generic over [`Media`]: locking with recovery, undo-log transactions, the page and
//! slot allocators, the persistent hash map, map management, and the checks run on open and by
//! `verify`. The protocol is the one of `docs/pool-format.md` §4; the public wrappers are in `pool.rs`.

use crate::acl::{self, AclEntry, Perms, Principal, MAX_ACL};
use crate::error::PoolError;
use crate::layout::{
    self, crc, geometry, parse_state_word, state_word, Entry, Header, RecHeader, ENTRIES_MAX,
    ENTRY_LEN, KEY_MAX, NAME_MAX, PAGE, REC_FREE, REC_HEADER, REC_UNDO, REC_ZERO, STATE_COMMITTED,
    STATE_IDLE, VALUE_MAX,
};
use crate::lock::{self, Acquired};
use crate::media::{rd64, Media};
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

pub use moat_abi::{BPF_ANY, BPF_EXIST, BPF_NOEXIST};

/// `(key, value)` pairs of a map.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// A pool's media and checked header.
#[derive(Debug)]
pub struct Core<M: Media> {
    /// The media.
    pub m: M,
    /// The header, checked on open.
    pub h: Header,
    /// Per-map (by extent offset) word index where the slot search starts: a volatile hint only.
    hints: Mutex<HashMap<u64, u64>>,
}

/// Holds the pool lock; releases it on drop.
#[derive(Debug)]
pub struct Guard<'a, M: Media> {
    core: &'a Core<M>,
}

impl<M: Media> Drop for Guard<'_, M> {
    fn drop(&mut self) {
        lock::release(self.core.m.lock_word());
    }
}

/// What open-time checks and recovery found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Undo records rolled back.
    pub rolled_back: u32,
    /// Deferred frees completed after a commit.
    pub completed_frees: u32,
}

/// A resolved map: its directory slot plus what identifies it there.
#[derive(Debug, Clone)]
pub struct MapRef {
    /// Directory index.
    pub idx: u32,
    /// The extent offset when resolved (a recreated map with the same name is another map).
    pub extent_off: u64,
    /// The name.
    pub name: String,
    /// Who operates on it.
    pub principal: Principal,
}

/// What a new map looks like.
#[derive(Debug, Clone)]
pub struct NewMap {
    /// Name (1..=31 bytes).
    pub name: String,
    /// Key size.
    pub key_size: u32,
    /// Value size.
    pub value_size: u32,
    /// Capacity.
    pub max_entries: u32,
    /// Access list.
    pub acl: Vec<AclEntry>,
}

/// Counts from a successful deep check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verified {
    /// Live maps.
    pub maps: u32,
    /// Elements in all maps.
    pub elements: u64,
    /// Free heap pages.
    pub free_pages: u64,
}

fn is_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

impl<M: Media> Core<M> {
    /// Wraps media whose header was checked.
    pub fn new(m: M, h: Header) -> Core<M> {
        Core {
            m,
            h,
            hints: Mutex::new(HashMap::new()),
        }
    }

    /// Takes the pool lock and, if the log says so, runs recovery first.
    pub fn lock(&self) -> Result<Guard<'_, M>, PoolError> {
        let how = lock::acquire(self.m.lock_word())?;
        let guard = Guard { core: self };
        if how == Acquired::Stolen {
            self.m.note_steal();
        }
        if self.needs_recovery()? {
            self.with_window(|| self.recover().map(|_| ()))?;
        }
        Ok(guard)
    }

    /// Runs `f` with the write window open, closing it afterwards whatever happens.
    fn with_window<R>(&self, f: impl FnOnce() -> Result<R, PoolError>) -> Result<R, PoolError> {
        self.m.open_window()?;
        let r = f();
        let closed = self.m.close_window();
        let r = r?;
        closed?;
        Ok(r)
    }

    /// The log state word, checked.
    fn state(&self) -> Result<(u32, u8), PoolError> {
        let w = rd64(&self.m, self.h.log_off)?;
        parse_state_word(w)
            .ok_or_else(|| PoolError::corrupt("log state word", self.h.log_off, "check bits wrong"))
    }

    /// Whether the log holds a transaction to finish or undo (cheap: the state word and one header).
    fn needs_recovery(&self) -> Result<bool, PoolError> {
        let (gen, state) = self.state()?;
        if state == STATE_COMMITTED {
            return Ok(true);
        }
        let mut b = [0u8; REC_HEADER];
        self.m.read(self.h.records_off(), &mut b)?;
        let (r, _) = RecHeader::decode(&b);
        Ok(r.kind != 0 && r.gen == gen)
    }

    /// The valid records of generation `gen` (§4.2) with their data offsets, and the end of the last one.
    fn records(&self, gen: u32, state: u8) -> Result<(Vec<(RecHeader, u64)>, u64), PoolError> {
        let h = &self.h;
        let mut out = Vec::new();
        let mut pos = h.records_off();
        let mut seq = 0u32;
        let committed = state == STATE_COMMITTED;
        while let Some(data_off) = pos
            .checked_add(REC_HEADER as u64)
            .filter(|&e| e <= h.log_end())
        {
            let mut b = [0u8; REC_HEADER];
            self.m.read(pos, &mut b)?;
            if is_zero(&b) {
                break;
            }
            let (r, stored) = RecHeader::decode(&b);
            if r.gen != gen || r.seq != seq {
                break;
            }
            let what = || format!("log record {seq}");
            let torn = |reason| {
                if committed {
                    Err(PoolError::corrupt(what(), pos, reason))
                } else {
                    Ok(())
                }
            };
            let size = r.size();
            let shape_ok = match r.kind {
                REC_UNDO => u64::from(r.data_len) == r.target_len,
                REC_ZERO | REC_FREE => r.data_len == 0,
                _ => false,
            };
            if !shape_ok || pos.checked_add(size).is_none_or(|e| e > h.log_end()) {
                torn("malformed record")?;
                break;
            }
            let mut data = vec![0u8; r.data_len as usize];
            self.m.read(data_off, &mut data)?;
            if crc32c::crc32c_append(crc(&b[..48]), &data) != stored {
                torn("checksum mismatch")?;
                break;
            }
            // A record whose checksum is right was written by moat: a bad target is corruption.
            if r.target_len == 0 || !h.in_data(r.target_off, r.target_len) {
                return Err(PoolError::corrupt(
                    what(),
                    pos + 16,
                    "target outside the directory, bitmaps and heap",
                ));
            }
            if r.kind == REC_FREE {
                let end_bit = u64::from(r.bit_first) + u64::from(r.bit_count);
                if r.bit_count == 0 || !h.in_data(r.bitmap_off, end_bit.div_ceil(64) * 8) {
                    return Err(PoolError::corrupt(
                        what(),
                        pos + 32,
                        "bitmap range outside the pool data",
                    ));
                }
            }
            out.push((r, data_off));
            pos += size;
            seq += 1;
        }
        Ok((out, pos))
    }

    /// Zeroes `target`, then clears the bits of a `FREE` record (idempotent).
    fn do_free(&self, r: &RecHeader) -> Result<(), PoolError> {
        self.m.zero(r.target_off, r.target_len)?;
        self.m.flush(r.target_off, r.target_len);
        self.m.fence()?;
        let first = u64::from(r.bit_first);
        let end = first + u64::from(r.bit_count);
        let mut bit = first;
        while bit < end {
            let word_off = r.bitmap_off + bit / 64 * 8;
            let lo = bit % 64;
            let n = (end - bit).min(64 - lo);
            let mask = if n == 64 {
                u64::MAX
            } else {
                ((1u64 << n) - 1) << lo
            };
            let w = rd64(&self.m, word_off)?;
            if w & mask != 0 {
                self.m.write(word_off, &(w & !mask).to_le_bytes())?;
                self.m.flush(word_off, 8);
            }
            bit += n;
        }
        Ok(())
    }

    /// Stores and persists the log state word.
    fn set_state(&self, gen: u32, state: u8) -> Result<(), PoolError> {
        self.m
            .write(self.h.log_off, &state_word(gen, state).to_le_bytes())?;
        self.m.flush(self.h.log_off, 8);
        self.m.fence()
    }

    /// Zeroes the nonzero parts of the record area (from `from`), flushes and fences.
    fn scrub(&self, upto: Option<u64>) -> Result<(), PoolError> {
        let start = self.h.records_off();
        let end = upto.unwrap_or(self.h.log_end()).min(self.h.log_end());
        if let Some(upto) = upto {
            // Not flushed: the records are invalid already (their generation is over), and the next
            // transaction's records overwrite these lines in program order.
            return self.m.zero(start, upto.saturating_sub(start));
        }
        let mut buf = vec![0u8; PAGE as usize];
        let mut pos = start;
        while pos < end {
            let n = (end - pos).min(PAGE);
            let chunk = &mut buf[..n as usize];
            self.m.read(pos, chunk)?;
            if !is_zero(chunk) {
                self.m.zero(pos, n)?;
                self.m.flush(pos, n);
            }
            pos += n;
        }
        self.m.fence()
    }

    /// Finishes or undoes the transaction in the log (§4.3 Recovery); the window must be open.
    pub fn recover(&self) -> Result<Recovered, PoolError> {
        let (gen, state) = self.state()?;
        let (recs, _) = self.records(gen, state)?;
        let mut done = Recovered::default();
        if state == STATE_COMMITTED {
            for (r, _) in recs.iter().filter(|(r, _)| r.kind == REC_FREE) {
                self.do_free(r)?;
                done.completed_frees += 1;
            }
            self.m.fence()?;
        } else if !recs.is_empty() {
            for (r, data_off) in recs.iter().rev() {
                match r.kind {
                    REC_UNDO => {
                        let mut data = vec![0u8; r.data_len as usize];
                        self.m.read(*data_off, &mut data)?;
                        self.m.write(r.target_off, &data)?;
                        done.rolled_back += 1;
                    }
                    REC_ZERO => {
                        self.m.zero(r.target_off, r.target_len)?;
                        done.rolled_back += 1;
                    }
                    _ => continue,
                }
                self.m.flush(r.target_off, r.target_len);
            }
            self.m.fence()?;
        } else {
            return Ok(done);
        }
        self.set_state(gen.wrapping_add(1), STATE_IDLE)?;
        self.scrub(None)?;
        Ok(done)
    }

    /// What `open` does after mapping: lock, recover, scrub stale records, check the directory, the heap
    /// bitmap and sealed maps, and seal the extents of sealed maps. Returns the sealed extents.
    pub fn attach(&self) -> Result<(Recovered, Vec<(u64, u64)>), PoolError> {
        let how = lock::acquire(self.m.lock_word())?;
        let _guard = Guard { core: self };
        if how == Acquired::Stolen {
            self.m.note_steal();
        }
        let rec = self.with_window(|| {
            let rec = self.recover()?;
            self.scrub(None)?;
            Ok(rec)
        })?;
        let entries = self.directory()?;
        self.check_heap(&entries)?;
        let mut sealed = Vec::new();
        for (_, e) in &entries {
            if e.sealed {
                let computed = self.extent_crc(e)?;
                if computed != e.seal_crc {
                    return Err(PoolError::SealBroken {
                        map: e.name.clone(),
                        offset: e.extent_off,
                        stored: e.seal_crc,
                        computed,
                    });
                }
                self.m.seal(e.extent_off, e.extent_len())?;
                sealed.push((e.extent_off, e.extent_len()));
            }
        }
        Ok((rec, sealed))
    }

    /// Every live directory entry, checked (§5), with unique names and disjoint extents.
    pub fn directory(&self) -> Result<Vec<(u32, Entry)>, PoolError> {
        let mut out: Vec<(u32, Entry)> = Vec::new();
        for i in 0..self.h.dir_entries {
            let off = self.h.entry_off(i);
            let mut b = [0u8; ENTRY_LEN];
            self.m.read(off, &mut b)?;
            if let Some(e) = Entry::decode(&b, &self.h, i, off)? {
                out.push((i, e));
            }
        }
        for (a, (i, e)) in out.iter().enumerate() {
            for (j, f) in out.iter().skip(a + 1) {
                if e.name == f.name {
                    return Err(PoolError::corrupt(
                        format!("directory entry {j} (map `{}`)", f.name),
                        self.h.entry_off(*j),
                        "duplicate map name",
                    ));
                }
                let (e0, e1) = (e.extent_off, e.extent_off + e.extent_len());
                let (f0, f1) = (f.extent_off, f.extent_off + f.extent_len());
                if e0 < f1 && f0 < e1 {
                    return Err(PoolError::corrupt(
                        format!("directory entry {i} (map `{}`)", e.name),
                        self.h.entry_off(*i) + 64,
                        "extent overlaps another map's",
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The heap bitmap as words.
    fn heap_bitmap(&self) -> Result<Vec<u64>, PoolError> {
        let words = self.h.heap_pages.div_ceil(64);
        let mut raw = vec![0u8; usize::try_from(words * 8).unwrap_or(0)];
        self.m.read(self.h.bitmap_off, &mut raw)?;
        Ok(raw.chunks_exact(8).map(|c| layout::le64(c, 0)).collect())
    }

    /// Checks that the heap bitmap marks exactly the pages of live extents (no leak, no double use).
    fn check_heap(&self, entries: &[(u32, Entry)]) -> Result<u64, PoolError> {
        let bits = self.heap_bitmap()?;
        let mut want = vec![0u64; bits.len()];
        for (_, e) in entries {
            let first = e.first_page(&self.h);
            for p in first..first + u64::from(e.extent_pages) {
                if let Some(w) = want.get_mut((p / 64) as usize) {
                    *w |= 1 << (p % 64);
                }
            }
        }
        for (i, (&have, &want)) in bits.iter().zip(&want).enumerate() {
            if have != want {
                let bit = (have ^ want).trailing_zeros();
                let page = i as u64 * 64 + u64::from(bit);
                let reason = if have & (1 << bit) != 0 {
                    "page marked used but in no map (leak)"
                } else {
                    "page of a live map marked free"
                };
                return Err(PoolError::corrupt(
                    format!("heap bitmap bit {page}"),
                    self.h.bitmap_off + i as u64 * 8,
                    reason,
                ));
            }
        }
        Ok(self.h.heap_pages - bits.iter().map(|w| u64::from(w.count_ones())).sum::<u64>())
    }

    /// CRC32C of a map's whole extent.
    pub fn extent_crc(&self, e: &Entry) -> Result<u32, PoolError> {
        let mut c = 0u32;
        let mut buf = vec![0u8; 64 * 1024];
        let mut pos = e.extent_off;
        let end = e.extent_off + e.extent_len();
        while pos < end {
            let n = (end - pos).min(buf.len() as u64) as usize;
            self.m.read(pos, &mut buf[..n])?;
            c = crc32c::crc32c_append(c, &buf[..n]);
            pos += n as u64;
        }
        Ok(c)
    }

    /// Resolves a map by name for `principal`; it must grant `principal` some access.
    pub fn resolve(&self, name: &str, principal: Principal) -> Result<(MapRef, Entry), PoolError> {
        let (r, e) = self.find_map(name, principal)?;
        Self::may_open(&principal, &e)?;
        Ok((r, e))
    }

    /// Resolves a map by name, without checking access (every operation checks it).
    pub fn find_map(&self, name: &str, principal: Principal) -> Result<(MapRef, Entry), PoolError> {
        let _g = self.lock()?;
        for (idx, e) in self.directory()? {
            if e.name == name {
                let r = MapRef {
                    idx,
                    extent_off: e.extent_off,
                    name: e.name.clone(),
                    principal,
                };
                return Ok((r, e));
            }
        }
        Err(PoolError::NoSuchMap(name.to_string()))
    }

    /// [`PoolError::AccessDenied`] (operation "open") unless `principal` has some access to `e`.
    pub fn may_open(principal: &Principal, e: &Entry) -> Result<(), PoolError> {
        if acl::perms_of(principal, e.owner_uid, e.owner_tag, &e.acl) == Perms::NONE {
            return Err(PoolError::AccessDenied {
                map: e.name.clone(),
                principal: *principal,
                op: "open",
            });
        }
        Ok(())
    }

    /// Deep check: the log is clean, every chain is well formed, counts and slot bitmaps match the
    /// chains, free slots and free heap pages are zero (invariant Z), the heap bitmap matches the maps.
    pub fn verify_locked(&self) -> Result<Verified, PoolError> {
        let (gen, state) = self.state()?;
        if state != STATE_IDLE || !self.records(gen, state)?.0.is_empty() {
            return Err(PoolError::corrupt(
                "log",
                self.h.log_off,
                "transaction left after recovery",
            ));
        }
        let entries = self.directory()?;
        let free_pages = self.check_heap(&entries)?;
        let mut v = Verified {
            maps: entries.len() as u32,
            free_pages,
            ..Verified::default()
        };
        for (idx, e) in &entries {
            v.elements += u64::from(self.verify_map(*idx, e)?);
        }
        // Free heap pages are zero.
        let bits = self.heap_bitmap()?;
        let mut page = vec![0u8; PAGE as usize];
        for p in 0..self.h.heap_pages {
            if bits
                .get((p / 64) as usize)
                .is_some_and(|w| w & (1 << (p % 64)) == 0)
            {
                let off = self.h.heap_off + p * PAGE;
                self.m.read(off, &mut page)?;
                if !is_zero(&page) {
                    return Err(PoolError::corrupt(
                        format!("free heap page {p}"),
                        off,
                        "not zero",
                    ));
                }
            }
        }
        Ok(v)
    }

    /// Checks one map's chains, count, slot bitmap and free slots; returns its element count.
    fn verify_map(&self, idx: u32, e: &Entry) -> Result<u32, PoolError> {
        let what = || format!("map `{}`", e.name);
        let mut used = vec![false; e.max_entries as usize];
        let mut n = 0u32;
        let mut key = vec![0u8; e.key_size as usize];
        for b in 0..u64::from(e.n_buckets) {
            let mut link = e.buckets_off + b * 8;
            let mut cur = rd64(&self.m, link)?;
            while cur != 0 {
                let slot = e
                    .slot_of(cur)
                    .ok_or_else(|| PoolError::corrupt(what(), link, "link is not a slot"))?;
                if std::mem::replace(&mut used[slot as usize], true) {
                    return Err(PoolError::corrupt(
                        what(),
                        link,
                        "slot linked twice (cycle or shared tail)",
                    ));
                }
                self.m.read(e.key_at(cur), &mut key)?;
                if e.bucket_of(&key) != e.buckets_off + b * 8 {
                    return Err(PoolError::corrupt(
                        what(),
                        cur,
                        "element in the wrong bucket",
                    ));
                }
                n += 1;
                link = cur;
                cur = rd64(&self.m, cur)?;
            }
        }
        if n != e.count {
            return Err(PoolError::corrupt(
                what(),
                self.h.entry_off(idx) + 56,
                "count differs from the elements linked",
            ));
        }
        let mut slot = vec![0u8; e.elem_size as usize];
        for (i, &u) in used.iter().enumerate() {
            let i = i as u32;
            let word = rd64(&self.m, e.slots_off + u64::from(i / 64) * 8)?;
            let bit = word & (1 << (i % 64)) != 0;
            if bit != u {
                return Err(PoolError::corrupt(
                    what(),
                    e.slots_off + u64::from(i / 64) * 8,
                    if bit {
                        "slot marked used but unlinked (leak)"
                    } else {
                        "linked slot marked free"
                    },
                ));
            }
            if !u {
                self.m.read(e.slot_off(i), &mut slot)?;
                if !is_zero(&slot) {
                    return Err(PoolError::corrupt(
                        what(),
                        e.slot_off(i),
                        "free slot not zeroed",
                    ));
                }
            }
        }
        Ok(n)
    }

    /// Starts a transaction (takes the lock, recovering first if needed).
    pub fn begin(&self) -> Result<TxCore<'_, M>, PoolError> {
        TxCore::start(CoreRef::Borrowed(self))
    }

    /// Starts a transaction that holds its own reference to the core (so it can outlive the caller's
    /// borrow, e.g. across the helper calls of a program run).
    pub fn begin_shared(self: &Arc<Self>) -> Result<TxCore<'static, M>, PoolError>
    where
        M: 'static,
    {
        TxCore::start(CoreRef::Shared(self.clone()))
    }

    fn hint(&self, extent: u64) -> u64 {
        self.hints
            .lock()
            .map_or(0, |h| h.get(&extent).copied().unwrap_or(0))
    }

    fn set_hint(&self, extent: u64, word: u64) {
        if let Ok(mut h) = self.hints.lock() {
            h.insert(extent, word);
        }
    }
}

/// Finds `key` in the map `e` describes: the link pointing at its element, and the element. Every link
/// followed is checked to be the start of one of the map's slots and the walk is bounded by
/// `max_entries`, so a corrupt chain — or one read without the lock while a writer changes it — is
/// reported as corruption (or ends early), never followed outside the map's slab.
pub fn find<M: Media>(m: &M, e: &Entry, key: &[u8]) -> Result<Option<(u64, u64)>, PoolError> {
    let mut buf = [0u8; KEY_MAX as usize];
    let kb = match buf.get_mut(..key.len()) {
        Some(kb) if key.len() == e.key_size as usize => kb,
        _ => {
            return Err(PoolError::KeySize {
                expected: e.key_size as usize,
                got: key.len(),
            })
        }
    };
    let mut link = e.bucket_of(key);
    let mut cur = rd64(m, link)?;
    for _ in 0..=e.max_entries {
        if cur == 0 {
            return Ok(None);
        }
        if e.slot_of(cur).is_none() {
            return Err(PoolError::corrupt(
                format!("chain of map `{}`", e.name),
                link,
                "link is not a slot of the map",
            ));
        }
        m.read(e.key_at(cur), kb)?;
        if kb == key {
            return Ok(Some((link, cur)));
        }
        link = cur;
        cur = rd64(m, cur)?;
    }
    Err(PoolError::corrupt(
        format!("chain of map `{}`", e.name),
        link,
        "longer than max_entries (a cycle)",
    ))
}

/// How a transaction refers to its core: borrowed, or shared (for transactions that outlive a borrow).
#[derive(Debug)]
pub enum CoreRef<'a, M: Media> {
    /// Borrowed from the caller.
    Borrowed(&'a Core<M>),
    /// Kept alive by the transaction.
    Shared(Arc<Core<M>>),
}

impl<M: Media> Clone for CoreRef<'_, M> {
    fn clone(&self) -> Self {
        match self {
            CoreRef::Borrowed(c) => CoreRef::Borrowed(c),
            CoreRef::Shared(c) => CoreRef::Shared(c.clone()),
        }
    }
}

impl<M: Media> Deref for CoreRef<'_, M> {
    type Target = Core<M>;

    fn deref(&self) -> &Core<M> {
        match self {
            CoreRef::Borrowed(c) => c,
            CoreRef::Shared(c) => c,
        }
    }
}

/// A transaction in progress: holds the lock (released on drop); rolled back on drop unless committed.
#[derive(Debug)]
pub struct TxCore<'a, M: Media> {
    c: CoreRef<'a, M>,
    gen: u32,
    pos: u64,
    seq: u32,
    covered: Vec<(u64, u64)>,
    frees: bool,
    need_fence: bool,
    window: bool,
    finished: bool,
    seal_after: Vec<(u64, u64)>,
}

impl<M: Media> Drop for TxCore<'_, M> {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.abort_inner();
        }
        lock::release(self.c.m.lock_word());
    }
}

impl<'a, M: Media> TxCore<'a, M> {
    /// Takes the lock (recovering first if needed) and starts a transaction of the current generation.
    fn start(c: CoreRef<'a, M>) -> Result<TxCore<'a, M>, PoolError> {
        let guard = c.lock()?;
        let (gen, _) = c.state()?;
        // From here the transaction releases the lock when it is dropped.
        std::mem::forget(guard);
        let pos = c.h.records_off();
        Ok(TxCore {
            c,
            gen,
            pos,
            seq: 0,
            covered: Vec::new(),
            frees: false,
            need_fence: false,
            window: false,
            finished: false,
            seal_after: Vec::new(),
        })
    }

    fn covered(&self, off: u64, len: u64) -> bool {
        self.covered
            .iter()
            .any(|&(a, b)| a <= off && off + len <= b)
    }

    /// Appends one record and flushes it (the fence comes before the next store).
    fn append(&mut self, mut r: RecHeader, data: &[u8]) -> Result<(), PoolError> {
        if !self.window {
            self.c.m.open_window()?;
            self.window = true;
        }
        r.gen = self.gen;
        r.seq = self.seq;
        r.data_len = u32::try_from(data.len()).map_err(|_| PoolError::LogFull {
            log_len: self.c.h.log_len,
        })?;
        let size = r.size();
        if self.pos + size > self.c.h.log_end() {
            return Err(PoolError::LogFull {
                log_len: self.c.h.log_len,
            });
        }
        // The record area past the last record is zero (scrubbed), so the padding needs no store.
        self.c.m.write(self.pos, &r.encode(data))?;
        if !data.is_empty() {
            self.c.m.write(self.pos + REC_HEADER as u64, data)?;
        }
        self.c.m.flush(self.pos, size);
        self.pos += size;
        self.seq += 1;
        self.need_fence = true;
        Ok(())
    }

    /// Logs the old content of `off..off + len` unless this transaction did already.
    fn log_undo(&mut self, off: u64, len: u64) -> Result<(), PoolError> {
        if self.covered(off, len) {
            return Ok(());
        }
        let mut old = vec![0u8; len as usize];
        self.c.m.read(off, &mut old)?;
        self.append(
            RecHeader {
                kind: REC_UNDO,
                target_off: off,
                target_len: len,
                ..RecHeader::default()
            },
            &old,
        )?;
        self.covered.push((off, off + len));
        Ok(())
    }

    /// Logs that free (zero) space `off..off + len` is being filled: rolled back by zeroing.
    fn claim(&mut self, off: u64, len: u64) -> Result<(), PoolError> {
        if self.covered(off, len) {
            return Ok(());
        }
        self.append(
            RecHeader {
                kind: REC_ZERO,
                target_off: off,
                target_len: len,
                ..RecHeader::default()
            },
            &[],
        )?;
        self.covered.push((off, off + len));
        Ok(())
    }

    /// Schedules a secure free for after commit.
    fn free_later(
        &mut self,
        off: u64,
        len: u64,
        bitmap_off: u64,
        first: u32,
        count: u32,
    ) -> Result<(), PoolError> {
        self.append(
            RecHeader {
                kind: REC_FREE,
                target_off: off,
                target_len: len,
                bitmap_off,
                bit_first: first,
                bit_count: count,
                ..RecHeader::default()
            },
            &[],
        )?;
        self.frees = true;
        Ok(())
    }

    /// Stores to a range already logged in this transaction.
    fn store(&mut self, off: u64, data: &[u8]) -> Result<(), PoolError> {
        debug_assert!(
            self.covered(off, data.len() as u64),
            "store to unlogged range {off:#x}"
        );
        if self.need_fence {
            self.c.m.fence()?;
            self.need_fence = false;
        }
        self.c.m.write(off, data)?;
        self.c.m.flush(off, data.len() as u64);
        Ok(())
    }

    /// Commits: makes every change durable and the transaction permanent (§4.3 step 3).
    pub fn commit(mut self) -> Result<(), PoolError> {
        self.finished = true;
        if self.seq == 0 {
            return self.close();
        }
        let core = self.c.clone();
        let c = &*core;
        // Before the commit point an error rolls back; after it, recovery completes the frees.
        let pre = c.m.fence().and_then(|()| {
            if self.frees {
                c.set_state(self.gen, STATE_COMMITTED)
            } else {
                c.set_state(self.gen.wrapping_add(1), STATE_IDLE)
            }
        });
        if let Err(e) = pre {
            let _ = self.abort_inner();
            return Err(e);
        }
        let post = (|| {
            if self.frees {
                let (recs, _) = c.records(self.gen, STATE_COMMITTED)?;
                for (r, _) in recs.iter().filter(|(r, _)| r.kind == REC_FREE) {
                    c.do_free(r)?;
                }
                c.m.fence()?;
                c.set_state(self.gen.wrapping_add(1), STATE_IDLE)?;
            }
            c.scrub(Some(self.pos))
        })();
        let closed = self.close();
        post?;
        closed?;
        for (off, len) in std::mem::take(&mut self.seal_after) {
            c.m.seal(off, len)?;
        }
        Ok(())
    }

    /// Rolls back and ends the transaction.
    pub fn abort(mut self) -> Result<(), PoolError> {
        self.finished = true;
        self.abort_inner()
    }

    fn abort_inner(&mut self) -> Result<(), PoolError> {
        self.finished = true;
        let r = if self.seq > 0 {
            self.need_fence = false;
            self.c.m.fence().and_then(|()| self.c.recover().map(|_| ()))
        } else {
            Ok(())
        };
        let closed = self.close();
        r?;
        closed
    }

    fn close(&mut self) -> Result<(), PoolError> {
        if std::mem::take(&mut self.window) {
            self.c.m.close_window()
        } else {
            Ok(())
        }
    }

    /// Reads and checks a map's entry; it must still be the map `r` resolved.
    pub fn entry(&self, r: &MapRef) -> Result<Entry, PoolError> {
        let off = self.c.h.entry_off(r.idx);
        let mut b = [0u8; ENTRY_LEN];
        self.c.m.read(off, &mut b)?;
        Entry::decode(&b, &self.c.h, r.idx, off)?
            .filter(|e| e.extent_off == r.extent_off && e.name == r.name)
            .ok_or_else(|| PoolError::NoSuchMap(r.name.clone()))
    }

    fn need(r: &MapRef, e: &Entry, perms: Perms, op: &'static str) -> Result<(), PoolError> {
        if acl::perms_of(&r.principal, e.owner_uid, e.owner_tag, &e.acl).contains(perms) {
            Ok(())
        } else {
            Err(PoolError::AccessDenied {
                map: e.name.clone(),
                principal: r.principal,
                op,
            })
        }
    }

    fn need_owner(r: &MapRef, e: &Entry, op: &'static str) -> Result<(), PoolError> {
        if acl::is_owner(&r.principal, e.owner_uid, e.owner_tag) {
            Ok(())
        } else {
            Err(PoolError::AccessDenied {
                map: e.name.clone(),
                principal: r.principal,
                op,
            })
        }
    }

    fn check_key(e: &Entry, key: &[u8]) -> Result<(), PoolError> {
        if key.len() != e.key_size as usize {
            return Err(PoolError::KeySize {
                expected: e.key_size as usize,
                got: key.len(),
            });
        }
        Ok(())
    }

    /// Finds `key`: the link pointing at its element, and the element.
    fn find(&self, e: &Entry, key: &[u8]) -> Result<Option<(u64, u64)>, PoolError> {
        find(&self.c.m, e, key)
    }

    /// Copies the value of `key` into `out`; `Ok(false)` if absent.
    pub fn lookup_into(&self, r: &MapRef, key: &[u8], out: &mut [u8]) -> Result<bool, PoolError> {
        let e = self.entry(r)?;
        Self::need(r, &e, Perms::READ, "read")?;
        Self::check_key(&e, key)?;
        if out.len() != e.value_size as usize {
            return Err(PoolError::ValueSize {
                expected: e.value_size as usize,
                got: out.len(),
            });
        }
        match self.find(&e, key)? {
            Some((_, elem)) => {
                self.c.m.read(e.value_at(elem), out)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Inserts or replaces an element with the kernel's flag semantics.
    pub fn update(
        &mut self,
        r: &MapRef,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<(), PoolError> {
        if flags > BPF_EXIST {
            return Err(PoolError::InvalidFlags { flags });
        }
        let mut e = self.entry(r)?;
        Self::need(r, &e, Perms::WRITE, "write")?;
        if e.sealed {
            return Err(PoolError::Sealed { map: e.name });
        }
        Self::check_key(&e, key)?;
        if value.len() != e.value_size as usize {
            return Err(PoolError::ValueSize {
                expected: e.value_size as usize,
                got: value.len(),
            });
        }
        if let Some((_, elem)) = self.find(&e, key)? {
            if flags == BPF_NOEXIST {
                return Err(PoolError::Exists);
            }
            let at = e.value_at(elem);
            self.log_undo(at, value.len() as u64)?;
            return self.store(at, value);
        }
        if flags == BPF_EXIST {
            return Err(PoolError::NotFound);
        }
        if e.count >= e.max_entries {
            return Err(PoolError::Full);
        }
        let (slot, word_off, word) = self.find_slot(&e)?;
        let elem = e.slot_off(slot);
        let head_link = e.bucket_of(key);
        let head = rd64(&self.c.m, head_link)?;
        let entry_off = self.c.h.entry_off(r.idx);
        // Log everything first, so that one fence covers all records.
        self.log_undo(word_off, 8)?;
        self.claim(elem, u64::from(e.elem_size))?;
        self.log_undo(head_link, 8)?;
        self.log_undo(entry_off, ENTRY_LEN as u64)?;
        self.store(word_off, &(word | 1 << (slot % 64)).to_le_bytes())?;
        let mut body = vec![0u8; e.elem_size as usize];
        body[..8].copy_from_slice(&head.to_le_bytes());
        body[8..8 + key.len()].copy_from_slice(key);
        let v = (e.value_at(elem) - elem) as usize;
        body[v..v + value.len()].copy_from_slice(value);
        self.store(elem, &body)?;
        self.store(head_link, &elem.to_le_bytes())?;
        e.count += 1;
        self.store(entry_off, &e.encode())
    }

    /// A free slot of the map: (index, bitmap word offset, bitmap word).
    fn find_slot(&self, e: &Entry) -> Result<(u32, u64, u64), PoolError> {
        let words = u64::from(e.max_entries).div_ceil(64);
        let start = self.c.hint(e.extent_off) % words;
        for i in 0..words {
            let wi = (start + i) % words;
            let off = e.slots_off + wi * 8;
            let w = rd64(&self.c.m, off)?;
            let valid = if wi == words - 1 && !e.max_entries.is_multiple_of(64) {
                (1u64 << (e.max_entries % 64)) - 1
            } else {
                u64::MAX
            };
            let free = !w & valid;
            if free != 0 {
                self.c.set_hint(e.extent_off, wi);
                return Ok(((wi * 64) as u32 + free.trailing_zeros(), off, w));
            }
        }
        Err(PoolError::Full)
    }

    /// Deletes an element: unlinks it now; zeroes and frees its slot after commit (secure deletion).
    pub fn delete(&mut self, r: &MapRef, key: &[u8]) -> Result<(), PoolError> {
        let mut e = self.entry(r)?;
        Self::need(r, &e, Perms::WRITE, "write")?;
        if e.sealed {
            return Err(PoolError::Sealed { map: e.name });
        }
        Self::check_key(&e, key)?;
        let (link, elem) = self.find(&e, key)?.ok_or(PoolError::NotFound)?;
        let next = rd64(&self.c.m, elem)?;
        let slot = e.slot_of(elem).unwrap_or(0);
        let entry_off = self.c.h.entry_off(r.idx);
        self.log_undo(link, 8)?;
        self.log_undo(entry_off, ENTRY_LEN as u64)?;
        self.free_later(elem, u64::from(e.elem_size), e.slots_off, slot, 1)?;
        self.store(link, &next.to_le_bytes())?;
        e.count -= 1;
        self.store(entry_off, &e.encode())
    }

    /// Writes the key after `key` into `out` (bucket order, then chain order), or the first key if `key`
    /// is `None` or absent, as the kernel's `BPF_MAP_GET_NEXT_KEY`; `Ok(false)` after the last key.
    pub fn next_key(
        &self,
        r: &MapRef,
        key: Option<&[u8]>,
        out: &mut [u8],
    ) -> Result<bool, PoolError> {
        let e = self.entry(r)?;
        Self::need(r, &e, Perms::READ, "read")?;
        Self::check_key(&e, out)?;
        let m = &self.c.m;
        // The link to follow: after `key`'s element in its chain, else the next bucket heads.
        let mut bucket = 0u64;
        let (mut link, mut next) = (0u64, 0u64);
        if let Some(k) = key {
            Self::check_key(&e, k)?;
            if let Some((_, elem)) = self.find(&e, k)? {
                bucket = (e.bucket_of(k) - e.buckets_off) / 8 + 1;
                (link, next) = (elem, rd64(m, elem)?);
            }
        }
        while next == 0 {
            if bucket >= u64::from(e.n_buckets) {
                return Ok(false);
            }
            link = e.buckets_off + bucket * 8;
            next = rd64(m, link)?;
            bucket += 1;
        }
        if e.slot_of(next).is_none() {
            return Err(PoolError::corrupt(
                format!("chain of map `{}`", e.name),
                link,
                "link is not a slot of the map",
            ));
        }
        m.read(e.key_at(next), out)?;
        Ok(true)
    }

    /// Every element, in bucket order.
    pub fn entries(&self, r: &MapRef) -> Result<Entries, PoolError> {
        let e = self.entry(r)?;
        Self::need(r, &e, Perms::READ, "read")?;
        let m = &self.c.m;
        let mut heads = vec![0u8; e.n_buckets as usize * 8];
        m.read(e.buckets_off, &mut heads)?;
        let mut out = Vec::new();
        for (b, h) in heads.chunks_exact(8).enumerate() {
            let mut link = e.buckets_off + b as u64 * 8;
            let mut cur = layout::le64(h, 0);
            while cur != 0 {
                if e.slot_of(cur).is_none() || out.len() >= e.max_entries as usize {
                    return Err(PoolError::corrupt(
                        format!("chain of map `{}`", e.name),
                        link,
                        "link is not a slot, or a cycle",
                    ));
                }
                let mut k = vec![0u8; e.key_size as usize];
                let mut v = vec![0u8; e.value_size as usize];
                m.read(e.key_at(cur), &mut k)?;
                m.read(e.value_at(cur), &mut v)?;
                out.push((k, v));
                link = cur;
                cur = rd64(m, cur)?;
            }
        }
        Ok(out)
    }

    /// Creates a hash map owned by `owner`.
    pub fn create_map(&mut self, def: &NewMap, owner: Principal) -> Result<MapRef, PoolError> {
        let bad = |reason| PoolError::InvalidMapDef {
            name: def.name.clone(),
            reason,
        };
        if def.name.is_empty() || def.name.len() > NAME_MAX || def.name.contains('\0') {
            return Err(bad("name must be 1..=31 bytes without NUL"));
        }
        if !(1..=KEY_MAX).contains(&def.key_size) {
            return Err(bad("key_size must be 1..=512"));
        }
        if !(1..=VALUE_MAX).contains(&def.value_size) {
            return Err(bad("value_size must be 1..=65536"));
        }
        if !(1..=ENTRIES_MAX).contains(&def.max_entries) {
            return Err(bad("max_entries must be 1..=2^24"));
        }
        if def.acl.len() > MAX_ACL {
            return Err(bad("more than 7 access-list entries"));
        }
        let (n_buckets, slots, slab, elem_size, pages) =
            geometry(def.key_size, def.value_size, def.max_entries).ok_or(bad("too large"))?;
        let h = self.c.h;
        let dir = self.c.directory()?;
        if dir.iter().any(|(_, e)| e.name == def.name) {
            return Err(PoolError::MapExists(def.name.clone()));
        }
        let idx = (0..h.dir_entries)
            .find(|i| dir.iter().all(|(j, _)| j != i))
            .ok_or(PoolError::DirectoryFull {
                entries: h.dir_entries,
            })?;
        // First fit over the heap bitmap.
        let bits = self.c.heap_bitmap()?;
        let used = |p: u64| {
            bits.get((p / 64) as usize)
                .is_some_and(|w| w & (1 << (p % 64)) != 0)
        };
        let need = u64::from(pages);
        let mut first = None;
        let mut run = 0u64;
        for p in 0..h.heap_pages {
            if used(p) {
                run = 0;
            } else {
                run += 1;
                if run == need {
                    first = Some(p + 1 - need);
                    break;
                }
            }
        }
        let first = first.ok_or(PoolError::OutOfSpace { pages: need })?;
        let extent_off = h.heap_off + first * PAGE;
        let w0 = first / 64;
        let w1 = (first + need - 1) / 64;
        let words_off = h.bitmap_off + w0 * 8;
        let words_len = (w1 - w0 + 1) * 8;
        let entry_off = h.entry_off(idx);
        self.log_undo(words_off, words_len)?;
        self.claim(entry_off, ENTRY_LEN as u64)?;
        let mut words = Vec::with_capacity(words_len as usize);
        for wi in w0..=w1 {
            let mut w = bits.get(wi as usize).copied().unwrap_or(0);
            for p in first.max(wi * 64)..(first + need).min(wi * 64 + 64) {
                w |= 1 << (p % 64);
            }
            words.extend_from_slice(&w.to_le_bytes());
        }
        self.store(words_off, &words)?;
        let seed = crc(&[
            &extent_off.to_le_bytes()[..],
            &self.gen.to_le_bytes(),
            def.name.as_bytes(),
        ]
        .concat());
        let e = Entry {
            name: def.name.clone(),
            key_size: def.key_size,
            value_size: def.value_size,
            max_entries: def.max_entries,
            count: 0,
            seed,
            extent_off,
            extent_pages: pages,
            n_buckets,
            buckets_off: extent_off,
            slots_off: extent_off + slots,
            slab_off: extent_off + slab,
            elem_size,
            owner_uid: owner.uid,
            owner_tag: owner.tag_u64(),
            sealed: false,
            seal_crc: 0,
            acl: def.acl.clone(),
        };
        self.store(entry_off, &e.encode())?;
        Ok(MapRef {
            idx,
            extent_off,
            name: def.name.clone(),
            principal: owner,
        })
    }

    /// Deletes a map: its entry now, its extent zeroed and freed after commit.
    pub fn delete_map(&mut self, r: &MapRef) -> Result<(), PoolError> {
        let e = self.entry(r)?;
        Self::need_owner(r, &e, "delete")?;
        if e.sealed {
            return Err(PoolError::Sealed { map: e.name });
        }
        let entry_off = self.c.h.entry_off(r.idx);
        self.log_undo(entry_off, ENTRY_LEN as u64)?;
        let first = u32::try_from(e.first_page(&self.c.h)).unwrap_or(u32::MAX);
        self.free_later(
            e.extent_off,
            e.extent_len(),
            self.c.h.bitmap_off,
            first,
            e.extent_pages,
        )?;
        self.store(entry_off, &[0u8; ENTRY_LEN])
    }

    /// Seals a map: read-only for good, its contents checksummed (verified on every open).
    pub fn seal(&mut self, r: &MapRef) -> Result<(), PoolError> {
        let mut e = self.entry(r)?;
        Self::need_owner(r, &e, "seal")?;
        if e.sealed {
            return Ok(());
        }
        e.sealed = true;
        e.seal_crc = self.c.extent_crc(&e)?;
        let entry_off = self.c.h.entry_off(r.idx);
        self.log_undo(entry_off, ENTRY_LEN as u64)?;
        self.store(entry_off, &e.encode())?;
        self.seal_after.push((e.extent_off, e.extent_len()));
        Ok(())
    }

    /// Replaces a map's access list (owner only).
    pub fn set_acl(&mut self, r: &MapRef, list: &[AclEntry]) -> Result<(), PoolError> {
        let mut e = self.entry(r)?;
        Self::need_owner(r, &e, "change the access list of")?;
        if list.len() > MAX_ACL {
            return Err(PoolError::InvalidMapDef {
                name: e.name,
                reason: "more than 7 access-list entries",
            });
        }
        e.acl = list.to_vec();
        let entry_off = self.c.h.entry_off(r.idx);
        self.log_undo(entry_off, ENTRY_LEN as u64)?;
        self.store(entry_off, &e.encode())
    }
}
