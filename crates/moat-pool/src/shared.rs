//! Owned handles for runtimes: [`SharedPoolMap`], one persistent hash map that keeps its [`Pool`]
//! alive (so it can live in an `Arc` next to a loaded program) and is looked up without the pool lock,
//! handing out the address of a value inside the pool's mapping; and [`SharedTransaction`], a
//! transaction that holds its own reference to the pool (so it can stay open across the helper calls
//! of a program run).
//!
//! Lock-free lookups (`docs/pool-format.md` §10): the map's directory entry is decoded once and kept;
//! each lookup compares one word of the entry (its CRC) with the one seen last and decodes the entry
//! again only when it changed (access list, element count, the map deleted). The chain walk is the
//! locked one ([`crate::core::find`]): every link is checked to start a slot of the map's slab, so a
//! lookup racing a writer may see a torn value or miss an element being deleted next to it, as in a
//! kernel map, but never leaves the map's slab.

use crate::acl::{self, Perms, Principal};
use crate::core::{self, Core, MapRef, TxCore};
use crate::error::PoolError;
use crate::inplace::InPlaceValues;
use crate::layout::{self, Entry, ENTRY_LEN};
use crate::media::{rd64, FileMedia, Media};
use crate::pool::{Pool, PoolMap};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// `seen` bit: the word above it is the entry's CRC word when it was last decoded.
const VALID: u64 = 1;
/// `seen` bit: the handle's principal may read the map.
const READ: u64 = 2;
/// Offset in a directory entry of the word holding reserved bytes 248..252 (zero) and `entry_crc`:
/// it changes whenever anything in the entry does.
const CRC_WORD: u64 = 248;
/// Offset in a directory entry of the word holding `count` (low half) and `seed`.
const COUNT_WORD: u64 = 56;
/// Lock-free attempts at decoding an entry a writer is changing, before taking the lock.
const DECODE_TRIES: u32 = 16;

/// What a map was resolved as: its identity (extent, seed, name) and geometry, which never change
/// while the map lives.
#[derive(Debug)]
struct Resolved {
    pool: Arc<Pool>,
    e: Entry,
    entry_off: u64,
}

/// One persistent hash map of a pool, owned (it keeps the [`Pool`] mapped), used as one principal.
///
/// Lookups ([`lookup_ptr`](SharedPoolMap::lookup_ptr), [`lookup_into`](SharedPoolMap::lookup_into))
/// take no lock and return values as they are in the shared mapping, racing writers in this and other
/// processes like a kernel map's lookups race its updates. Writes ([`update`](SharedPoolMap::update),
/// [`delete`](SharedPoolMap::delete)) are failure-atomic transactions as [`PoolMap`]'s are;
/// [`Pool::begin_shared`] groups several. Every operation checks the principal's permissions.
#[derive(Debug)]
pub struct SharedPoolMap {
    map: Arc<Resolved>,
    r: MapRef,
    /// The entry's CRC word when last decoded, with [`VALID`] and [`READ`] (0: decode again).
    seen: AtomicU64,
}

impl Clone for SharedPoolMap {
    fn clone(&self) -> Self {
        SharedPoolMap {
            map: self.map.clone(),
            r: self.r.clone(),
            seen: AtomicU64::new(self.seen.load(Ordering::Relaxed)),
        }
    }
}

impl Pool {
    /// The map named `name` as an owned handle acting as the host user ([`Principal::host`]).
    ///
    /// Unlike [`Pool::map`], this does not require the host to have access: it only resolves the
    /// map's definition (which [`Pool::inspect`] shows anyone who can read the file), and every
    /// operation checks permissions. A runtime opens a map this way and checks each program that
    /// references it with [`SharedPoolMap::as_principal`].
    pub fn shared_map(self: &Arc<Self>, name: &str) -> Result<SharedPoolMap, PoolError> {
        let (r, e) = self.core.find_map(name, Principal::host())?;
        Ok(SharedPoolMap {
            map: Arc::new(Resolved {
                pool: self.clone(),
                entry_off: self.core.h.entry_off(r.idx),
                e,
            }),
            r,
            seen: AtomicU64::new(0),
        })
    }

    /// The map named `name`, used as `principal` ([`PoolError::AccessDenied`] unless it grants
    /// `principal` something), as an owned handle.
    pub fn shared_map_as(
        self: &Arc<Self>,
        name: &str,
        principal: Principal,
    ) -> Result<SharedPoolMap, PoolError> {
        self.shared_map(name)?.as_principal(principal)
    }

    /// Starts a transaction that owns its reference to the pool (for [`SharedPoolMap`]s). It holds the
    /// pool lock, which names the calling thread: commit, abort or drop it on that thread.
    pub fn begin_shared(self: &Arc<Self>) -> Result<SharedTransaction, PoolError> {
        Ok(SharedTransaction {
            tx: self.core.begin_shared()?,
            pool: self.clone(),
            _thread: PhantomData,
        })
    }
}

impl SharedPoolMap {
    /// The map's name.
    pub fn name(&self) -> &str {
        &self.r.name
    }

    /// Key size in bytes.
    pub fn key_size(&self) -> usize {
        self.map.e.key_size as usize
    }

    /// Value size in bytes.
    pub fn value_size(&self) -> usize {
        self.map.e.value_size as usize
    }

    /// Capacity.
    pub fn max_entries(&self) -> u32 {
        self.map.e.max_entries
    }

    /// The principal this handle acts as.
    pub fn principal(&self) -> Principal {
        self.r.principal
    }

    /// The pool the map is in.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.map.pool
    }

    /// This map used as `principal`, which must have some access ([`PoolError::AccessDenied`],
    /// operation "open", naming map and principal, otherwise): the check a runtime makes when it loads
    /// a program referencing the map. The handles share the resolved map.
    pub fn as_principal(&self, principal: Principal) -> Result<SharedPoolMap, PoolError> {
        let view = SharedPoolMap {
            map: self.map.clone(),
            r: MapRef {
                principal,
                ..self.r.clone()
            },
            seen: AtomicU64::new(0),
        };
        let (e, _) = view.fresh_entry()?;
        Core::<FileMedia>::may_open(&principal, &e)?;
        Ok(view)
    }

    /// What this handle's principal may do now.
    pub fn perms(&self) -> Result<Perms, PoolError> {
        let (e, _) = self.fresh_entry()?;
        Ok(acl::perms_of(
            &self.r.principal,
            e.owner_uid,
            e.owner_tag,
            &e.acl,
        ))
    }

    /// A borrowed [`PoolMap`] for the same map and principal: sealing, access lists, iteration.
    pub fn as_map(&self) -> PoolMap<'_> {
        PoolMap {
            pool: &self.map.pool,
            r: self.r.clone(),
            key_size: self.map.e.key_size,
            value_size: self.map.e.value_size,
            max_entries: self.map.e.max_entries,
        }
    }

    /// The address range (`(start, len)`) in this process of the map's element slots — keys, values
    /// and chain links of this map only, never another map's storage or the pool's metadata. Every
    /// pointer from [`lookup_ptr`](SharedPoolMap::lookup_ptr) lies in it. The range is mapped
    /// read-only unless the pool was opened with [`Protection::None`](crate::Protection::None).
    pub fn value_region(&self) -> (usize, usize) {
        let e = &self.map.e;
        let start = self
            .map
            .pool
            .core
            .m
            .ptr(e.slab_off)
            .map_or(0, |p| p.as_ptr() as usize);
        let len = u64::from(e.max_entries) * u64::from(e.elem_size);
        (start, usize::try_from(len).unwrap_or(0))
    }

    /// A writable alias of the map's slab for in-place atomic updates of its values (see
    /// [`InPlaceValues`] for what they guarantee). [`PoolError::Sealed`] for a sealed map,
    /// [`PoolError::AccessDenied`] (operation "write") if the principal may not write it.
    pub fn in_place_values(&self) -> Result<InPlaceValues, PoolError> {
        let (e, _) = self.fresh_entry()?;
        if e.sealed {
            return Err(PoolError::Sealed {
                map: e.name.clone(),
            });
        }
        if !acl::perms_of(&self.r.principal, e.owner_uid, e.owner_tag, &e.acl)
            .contains(Perms::WRITE)
        {
            return Err(PoolError::AccessDenied {
                map: e.name.clone(),
                principal: self.r.principal,
                op: "write",
            });
        }
        let (read_only_start, slab_len) = self.value_region();
        let (alias, lead) = self
            .map
            .pool
            .core
            .m
            .writable_alias(e.slab_off, slab_len as u64)?;
        Ok(InPlaceValues {
            map: self.clone(),
            alias,
            lead,
            slab_off: e.slab_off,
            read_only_start,
            slab_len,
            elem_size: e.elem_size as usize,
            value_off: (e.value_at(e.slab_off) - e.slab_off) as usize,
            value_size: e.value_size as usize,
        })
    }

    /// The address of the value of `key` in this process's mapping of the pool, or `None` if absent.
    /// Takes no lock (see the module documentation for what racing writers mean). The value stays
    /// dereferenceable (for reading) while the pool is mapped, which this handle ensures; after the
    /// element is deleted the slot is zeroed and may be reused.
    ///
    /// [`PoolError::AccessDenied`] if the principal may not read the map, [`PoolError::NoSuchMap`] if
    /// it was deleted, [`PoolError::KeySize`] for a key of the wrong length.
    pub fn lookup_ptr(&self, key: &[u8]) -> Result<Option<NonNull<u8>>, PoolError> {
        Ok(self
            .find(key)?
            .and_then(|elem| self.map.pool.core.m.ptr(self.map.e.value_at(elem))))
    }

    /// Copies the value of `key` into `out` (exactly `value_size` bytes) without taking the lock;
    /// `Ok(false)` if absent.
    pub fn lookup_into(&self, key: &[u8], out: &mut [u8]) -> Result<bool, PoolError> {
        if out.len() != self.value_size() {
            return Err(PoolError::ValueSize {
                expected: self.value_size(),
                got: out.len(),
            });
        }
        match self.find(key)? {
            Some(elem) => {
                self.map.pool.core.m.read(self.map.e.value_at(elem), out)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The value of `key`, or [`PoolError::NotFound`].
    pub fn lookup(&self, key: &[u8]) -> Result<Vec<u8>, PoolError> {
        let mut out = vec![0u8; self.value_size()];
        if self.lookup_into(key, &mut out)? {
            Ok(out)
        } else {
            Err(PoolError::NotFound)
        }
    }

    /// As [`PoolMap::update`]: a durable transaction of its own.
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), PoolError> {
        self.as_map().update(key, value, flags)
    }

    /// As [`PoolMap::delete`].
    pub fn delete(&self, key: &[u8]) -> Result<(), PoolError> {
        self.as_map().delete(key)
    }

    /// Writes the key after `key` into `out` (`key_size` bytes), or the first key if `key` is `None`
    /// or absent, as `BPF_MAP_GET_NEXT_KEY`; `Ok(false)` after the last key. Takes the lock.
    pub fn next_key(&self, key: Option<&[u8]>, out: &mut [u8]) -> Result<bool, PoolError> {
        self.map.pool.core.begin()?.next_key(&self.r, key, out)
    }

    /// The number of elements, read without the lock.
    pub fn len(&self) -> Result<u32, PoolError> {
        self.current()?;
        let word = rd64(&self.map.pool.core.m, self.map.entry_off + COUNT_WORD)?;
        Ok((word & 0xffff_ffff) as u32)
    }

    /// Whether the map has no element.
    pub fn is_empty(&self) -> Result<bool, PoolError> {
        Ok(self.len()? == 0)
    }

    /// Finds `key` without the lock: its element's offset.
    fn find(&self, key: &[u8]) -> Result<Option<u64>, PoolError> {
        if self.current()? & READ == 0 {
            return Err(PoolError::AccessDenied {
                map: self.r.name.clone(),
                principal: self.r.principal,
                op: "read",
            });
        }
        Ok(core::find(&self.map.pool.core.m, &self.map.e, key)?.map(|(_, elem)| elem))
    }

    /// The `seen` word for the entry as it is now: the cached one if the entry's CRC word has not
    /// changed, else from a fresh decode.
    fn current(&self) -> Result<u64, PoolError> {
        let word = rd64(&self.map.pool.core.m, self.map.entry_off + CRC_WORD)?;
        let seen = self.seen.load(Ordering::Acquire);
        if seen & VALID != 0 && seen & !(VALID | READ) == word {
            return Ok(seen);
        }
        let (e, word) = self.fresh_entry()?;
        let perms = acl::perms_of(&self.r.principal, e.owner_uid, e.owner_tag, &e.acl);
        let read = if perms.contains(Perms::READ) { READ } else { 0 };
        let seen = word | VALID | read;
        self.seen.store(seen, Ordering::Release);
        Ok(seen)
    }

    /// The map's directory entry as it is now, with its CRC word; [`PoolError::NoSuchMap`] if the map
    /// was deleted (the entry is free, or holds another map).
    ///
    /// Decoded without the lock while it reads consistently (its CRC matches); if a writer keeps
    /// changing it, read under the lock — unless this thread holds the lock already, in a transaction,
    /// and so is the only writer.
    fn fresh_entry(&self) -> Result<(Entry, u64), PoolError> {
        let c = &self.map.pool.core;
        let off = self.map.entry_off;
        let mut b = [0u8; ENTRY_LEN];
        for _ in 0..DECODE_TRIES {
            c.m.read(off, &mut b)?;
            if let Ok(found) = Entry::decode(&b, &c.h, self.r.idx, off) {
                return self.same_map(found, &b);
            }
            std::hint::spin_loop();
        }
        let _guard = match c.lock() {
            Ok(g) => Some(g),
            Err(PoolError::Deadlock) => None,
            Err(e) => return Err(e),
        };
        c.m.read(off, &mut b)?;
        let found = Entry::decode(&b, &c.h, self.r.idx, off)?;
        self.same_map(found, &b)
    }

    /// `found` with the CRC word of `b`, if it is still the map this handle resolved.
    fn same_map(
        &self,
        found: Option<Entry>,
        b: &[u8; ENTRY_LEN],
    ) -> Result<(Entry, u64), PoolError> {
        let was = &self.map.e;
        match found {
            Some(e)
                if e.extent_off == was.extent_off && e.seed == was.seed && e.name == was.name =>
            {
                Ok((e, layout::le64(b, CRC_WORD as usize)))
            }
            _ => Err(PoolError::NoSuchMap(was.name.clone())),
        }
    }
}

/// Several operations on [`SharedPoolMap`]s made durable together, or not at all; the owned
/// counterpart of [`Transaction`](crate::Transaction). It holds the pool lock, which names the thread
/// that began it, so it is neither `Send` nor `Sync`; dropped without
/// [`commit`](SharedTransaction::commit), it is rolled back. Operations that fail change nothing and
/// leave the transaction usable. Lookups through [`SharedPoolMap`] see its changes as they are made.
#[derive(Debug)]
pub struct SharedTransaction {
    pool: Arc<Pool>,
    tx: TxCore<'static, FileMedia>,
    /// The lock word names this thread.
    _thread: PhantomData<*const ()>,
}

impl SharedTransaction {
    /// The pool the transaction runs in.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    fn own(&self, map: &SharedPoolMap) -> Result<(), PoolError> {
        if Arc::ptr_eq(&self.pool, &map.map.pool) {
            Ok(())
        } else {
            Err(PoolError::ForeignMap(map.r.name.clone()))
        }
    }

    /// As [`SharedPoolMap::update`], inside the transaction, as the map handle's principal.
    pub fn update(
        &mut self,
        map: &SharedPoolMap,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<(), PoolError> {
        self.own(map)?;
        self.tx.update(&map.r, key, value, flags)
    }

    /// As [`SharedPoolMap::delete`], inside the transaction.
    pub fn delete(&mut self, map: &SharedPoolMap, key: &[u8]) -> Result<(), PoolError> {
        self.own(map)?;
        self.tx.delete(&map.r, key)
    }

    /// As [`SharedPoolMap::next_key`], inside the transaction (which holds the lock already).
    pub fn next_key(
        &self,
        map: &SharedPoolMap,
        key: Option<&[u8]>,
        out: &mut [u8],
    ) -> Result<bool, PoolError> {
        self.own(map)?;
        self.tx.next_key(&map.r, key, out)
    }

    /// Makes every change durable, atomically.
    pub fn commit(self) -> Result<(), PoolError> {
        self.tx.commit()
    }

    /// Undoes every change.
    pub fn abort(self) -> Result<(), PoolError> {
        self.tx.abort()
    }
}
