//! The index of a hash map that programs' lookups read without taking the map's lock: chains of
//! slots per bucket, each slot with its key's hash and its key, all in atomics.
//!
//! Only writers holding the map's write lock change it, each change between two increments of a
//! sequence number (a sequence lock): the number is odd while a change is in progress. A reader
//! walks the chain of its key's bucket with relaxed loads between two loads of the number and
//! keeps what it found only if the number was even and unchanged, so that it saw the index as it
//! was between two changes: a key present then is found, a key absent then is not, and the slot
//! found held the key. After [`READ_ATTEMPTS`] failed attempts (writers kept changing the index)
//! the reader gives up and the caller takes the read lock. Walks are bounded by the number of
//! slots, so a view torn by a concurrent change never loops.
//!
//! Changes of a value in place (an update of an existing key) do not touch the index, so readers
//! racing them never retry; values are read or written through the returned pointer without
//! synchronisation, as in the kernel.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Walks a reader attempts before it takes the lock.
const READ_ATTEMPTS: usize = 64;

/// Chain links are slot numbers plus one; 0 ends a chain.
const NIL: u32 = 0;

/// Keys of at most this many 8-byte words are compared without allocating.
const INLINE_WORDS: usize = 8;

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct ReadIndex {
    seq: AtomicU64,
    mask: usize,
    /// Per bucket, the first slot of its chain (plus one).
    heads: Box<[AtomicU32]>,
    /// Per slot, the next slot of its chain (plus one).
    next: Box<[AtomicU32]>,
    /// Per slot, the hash of its key.
    hashes: Box<[AtomicU64]>,
    /// 8-byte words per key (the key zero-padded).
    words: usize,
    /// Per slot, its key in `words` words.
    keys: Box<[AtomicU64]>,
}

/// `key` in 8-byte words, the last one zero-extended.
fn to_words(key: &[u8], out: &mut [u64]) {
    for (w, chunk) in out.iter_mut().zip(key.chunks(8)) {
        *w = word(chunk);
    }
}

/// Up to 8 bytes as one word. Whole loads for the common sizes: a byte-wise copy into a buffer
/// read back at once stalls the load on every lookup.
#[inline]
fn word(chunk: &[u8]) -> u64 {
    if let Ok(b) = <[u8; 8]>::try_from(chunk) {
        return u64::from_ne_bytes(b);
    }
    if let Ok(b) = <[u8; 4]>::try_from(chunk) {
        return u64::from(u32::from_ne_bytes(b));
    }
    chunk
        .iter()
        .enumerate()
        .fold(0, |w, (i, &b)| w | u64::from(b) << (8 * i))
}

fn atomics<T>(n: usize, f: impl Fn() -> T) -> Box<[T]> {
    (0..n).map(|_| f()).collect()
}

impl ReadIndex {
    /// An empty index of `slots` slots for keys of `key_size` bytes.
    pub(crate) fn new(slots: usize, key_size: usize) -> ReadIndex {
        let buckets = slots.max(1).next_power_of_two();
        let words = key_size.div_ceil(8);
        ReadIndex {
            seq: AtomicU64::new(0),
            mask: buckets - 1,
            heads: atomics(buckets, || AtomicU32::new(NIL)),
            next: atomics(slots, || AtomicU32::new(NIL)),
            hashes: atomics(slots, || AtomicU64::new(0)),
            words,
            keys: atomics(slots.saturating_mul(words), || AtomicU64::new(0)),
        }
    }

    fn head(&self, hash: u64) -> Option<&AtomicU32> {
        // The high bits: the map's table uses the low ones.
        self.heads.get((hash >> 32) as usize & self.mask)
    }

    fn key_equals(&self, slot: usize, key: &[u64]) -> bool {
        let start = slot * self.words;
        self.keys.get(start..start + self.words).is_some_and(|k| {
            k.iter()
                .zip(key)
                .all(|(a, b)| a.load(Ordering::Relaxed) == *b)
        })
    }

    /// One walk of `hash`'s chain for `key` (in words).
    fn walk(&self, hash: u64, key: &[u64]) -> Option<u32> {
        let mut link = self.head(hash)?.load(Ordering::Relaxed);
        for _ in 0..=self.next.len() {
            if link == NIL {
                return None;
            }
            let slot = (link - 1) as usize;
            if self.hashes.get(slot)?.load(Ordering::Relaxed) == hash && self.key_equals(slot, key)
            {
                return Some(link - 1);
            }
            link = self.next.get(slot)?.load(Ordering::Relaxed);
        }
        None
    }

    /// The slot holding `key` (whose hash is `hash`): `Some(None)` if it holds none, `None` if
    /// writers kept changing the index (the caller then asks under the lock).
    #[inline]
    pub(crate) fn find(&self, hash: u64, key: &[u8]) -> Option<Option<u32>> {
        if key.len().div_ceil(8) != self.words {
            return None;
        }
        // Keys of one word (`u32`, `u64`: most maps' keys) skip the word buffer.
        if self.words == 1 {
            return self.find_words(hash, &[word(key)]);
        }
        let mut inline = [0u64; INLINE_WORDS];
        let mut heap = Vec::new();
        let words: &mut [u64] = if self.words <= INLINE_WORDS {
            &mut inline[..self.words]
        } else {
            heap.resize(self.words, 0);
            &mut heap
        };
        to_words(key, words);
        self.find_words(hash, words)
    }

    #[inline]
    fn find_words(&self, hash: u64, words: &[u64]) -> Option<Option<u32>> {
        for _ in 0..READ_ATTEMPTS {
            let before = self.seq.load(Ordering::Acquire);
            if before & 1 != 0 {
                std::hint::spin_loop();
                continue;
            }
            let found = self.walk(hash, words);
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                return Some(found);
            }
        }
        None
    }

    /// Starts a change (the caller holds the map's write lock).
    fn begin(&self) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        // Orders the odd number before the changes, for readers that fence after their walk.
        fence(Ordering::Release);
    }

    /// Ends a change begun with [`ReadIndex::begin`].
    fn end(&self) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Release);
    }

    /// Adds `slot`, now holding `key` (hash `hash`), at the head of its chain. Under the map's
    /// write lock; the slot must be in no chain.
    pub(crate) fn link(&self, slot: u32, hash: u64, key: &[u8]) {
        let (Some(head), Some(next), Some(h)) = (
            self.head(hash),
            self.next.get(slot as usize),
            self.hashes.get(slot as usize),
        ) else {
            return;
        };
        let start = slot as usize * self.words;
        let Some(stored) = self.keys.get(start..start + self.words) else {
            return;
        };
        self.begin();
        for (s, chunk) in stored.iter().zip(key.chunks(8)) {
            s.store(word(chunk), Ordering::Relaxed);
        }
        h.store(hash, Ordering::Relaxed);
        next.store(head.load(Ordering::Relaxed), Ordering::Relaxed);
        head.store(slot + 1, Ordering::Relaxed);
        self.end();
    }

    /// Removes `slot` (whose key's hash is `hash`) from its chain. Under the map's write lock.
    pub(crate) fn unlink(&self, slot: u32, hash: u64) {
        let Some(head) = self.head(hash) else {
            return;
        };
        let Some(after) = self
            .next
            .get(slot as usize)
            .map(|n| n.load(Ordering::Relaxed))
        else {
            return;
        };
        // The link that points to `slot`: the bucket's head or a predecessor's `next`.
        let mut at = head;
        for _ in 0..=self.next.len() {
            let link = at.load(Ordering::Relaxed);
            if link == NIL {
                return;
            }
            if link == slot + 1 {
                self.begin();
                at.store(after, Ordering::Relaxed);
                self.end();
                return;
            }
            let Some(n) = self.next.get((link - 1) as usize) else {
                return;
            };
            at = n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ReadIndex;

    #[test]
    fn chains_find_linked_keys_and_lose_unlinked_ones() {
        let idx = ReadIndex::new(8, 12);
        // Three keys in one bucket (same hash), one elsewhere.
        let key = |i: u8| [i; 12];
        for (slot, i) in [(0u32, 1u8), (1, 2), (2, 3)] {
            idx.link(slot, 7 << 32, &key(i));
        }
        idx.link(5, 9 << 32, &key(4));
        assert_eq!(idx.find(7 << 32, &key(1)), Some(Some(0)));
        assert_eq!(idx.find(7 << 32, &key(2)), Some(Some(1)));
        assert_eq!(idx.find(7 << 32, &key(3)), Some(Some(2)));
        assert_eq!(idx.find(9 << 32, &key(4)), Some(Some(5)));
        assert_eq!(idx.find(7 << 32, &key(4)), Some(None));
        idx.unlink(1, 7 << 32);
        assert_eq!(idx.find(7 << 32, &key(2)), Some(None));
        assert_eq!(idx.find(7 << 32, &key(1)), Some(Some(0)));
        assert_eq!(idx.find(7 << 32, &key(3)), Some(Some(2)));
        idx.unlink(2, 7 << 32);
        idx.unlink(0, 7 << 32);
        assert_eq!(idx.find(7 << 32, &key(1)), Some(None));
        assert_eq!(idx.find(7 << 32, &[1; 5]), None, "a key of another size");
    }

    /// A writer keeps moving slots between two buckets (unlink, relink under another hash) ahead
    /// of and between keys nobody moves; readers walking the first bucket must find every one of
    /// those, every time, although a slot they stand on may move to the other chain mid-walk.
    #[test]
    fn readers_never_miss_keys_while_slots_move_between_chains() {
        const STABLE: u32 = 4;
        const MOVING: u32 = 12;
        let idx = ReadIndex::new((STABLE + MOVING) as usize, 4);
        let (a, b) = (1u64 << 32, 2u64 << 32);
        let lock = std::sync::Mutex::new(());
        for k in 0..STABLE {
            idx.link(k, a, &k.to_ne_bytes());
        }
        for k in STABLE..STABLE + MOVING {
            idx.link(k, a, &k.to_ne_bytes());
        }
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let (idx, lock, done) = (&idx, &lock, &done);
            s.spawn(move || {
                let mut in_a = vec![true; MOVING as usize];
                for i in 0..200_000usize {
                    let m = i % MOVING as usize;
                    let slot = STABLE + m as u32;
                    let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
                    let (from, to) = if in_a[m] { (a, b) } else { (b, a) };
                    idx.unlink(slot, from);
                    idx.link(slot, to, &slot.to_ne_bytes());
                    in_a[m] = !in_a[m];
                }
                done.store(true, std::sync::atomic::Ordering::Relaxed);
            });
            for _ in 0..2 {
                s.spawn(move || {
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        for k in 0..STABLE {
                            // Giving up (writers too busy) is allowed; a wrong answer is not.
                            if let Some(found) = idx.find(a, &k.to_ne_bytes()) {
                                assert_eq!(found, Some(k), "key {k}");
                            }
                        }
                    }
                });
            }
        });
    }
}
