//! The `mpk` backend: memory protection keys, virtualised so that any number of domains can exist.
//!
//! **Layer 1**: a domain that holds a hardware key has its committed memory tagged with it
//! (`pkey_mprotect`), and a run of one of its programs executes with PKRU allowing that key only
//! ([`KeyLease::pkru`]; the JIT's confined code switches to it on entry and back on exit and around
//! every call into Rust). The interpreter, which is host code, runs with key 0 allowed as well.
//!
//! **Layer 2**: x86 has 16 keys, key 0 is the host's and the kernel hands out at most 15. One of those
//! is the *parking* key: memory of every domain that holds no hardware key is tagged with it, and no
//! run ever enables it. Another is the *anchor* key: the last page of every domain's run area (the
//! JIT's run anchor: the host's stack pointer, the run's PKRU value, the run's Rust objects) carries
//! it, and runs may read it but never write it. The others are cached by the domains that run: [`Domain::activate`] returns
//! a [`KeyLease`] on the domain's key, taking the least recently used key of a domain that is not
//! running when it has none (its memory is re-tagged to the parking key, the new owner's to the key).
//! A key has at most one owner, so no two domains that can both be reached ever share a key; when
//! every key is held by a running domain, activation waits for one to finish.
//!
//! Host threads access domain memory (maps, contexts) with every key allowed: moat sets PKRU to 0 on
//! the threads that create domains or run programs ([`open_host_access`]); another thread of the host
//! that reads a domain's maps directly calls it first.

use crate::domain::Domain;
use crate::sys;
use crate::IsolateError;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, Weak};

/// One allocated protection key, freed on drop.
#[derive(Debug)]
pub struct Pkey {
    key: i32,
}

impl Pkey {
    /// Allocates a key. Fails with [`IsolateError::MpkUnavailable`] where the CPU or kernel has no
    /// protection keys, or all 15 usable keys are taken.
    pub fn alloc() -> Result<Pkey, IsolateError> {
        sys::pkey_alloc()
            .map(|key| Pkey { key })
            .map_err(|e| IsolateError::MpkUnavailable(e.to_string()))
    }

    /// The key's number (1-15).
    pub fn key(&self) -> i32 {
        self.key
    }
}

impl Drop for Pkey {
    fn drop(&mut self) {
        sys::pkey_free(self.key);
    }
}

/// Why `mpk` is unavailable here, or `None` where protection keys work.
pub fn unavailable() -> Option<String> {
    match cache() {
        Ok(_) => None,
        Err(e) => Some(e.clone()),
    }
}

/// The PKRU value allowing exactly `keys` (access and write) and denying every other key.
pub fn pkru_allowing(keys: &[i32]) -> u32 {
    let mut pkru = 0x5555_5555u32; // access-disable for all 16 keys
    for &k in keys {
        if (0..16).contains(&k) {
            pkru &= !(0b11 << (2 * k));
        }
    }
    pkru
}

/// Allows every key on the calling thread (PKRU = 0), where protection keys exist: what host code
/// that reads or writes domain memory directly needs. A no-op elsewhere.
pub fn open_host_access() {
    if let Ok(cache) = cache() {
        sys::write_pkru(&cache.parking, 0);
    }
}

/// What layer 2 has done so far in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyStats {
    /// Hardware keys domains share (the parking key excluded).
    pub hardware_keys: usize,
    /// Activations of a domain.
    pub activations: u64,
    /// Activations that had to give the domain a key (and re-tag memory).
    pub reassignments: u64,
    /// Activations that waited for a key because all were held by running domains.
    pub waits: u64,
}

/// Layer 2's statistics (all zero where protection keys are unavailable).
pub fn key_stats() -> KeyStats {
    match cache() {
        Ok(cache) => {
            let keys = lock(&cache.state);
            KeyStats {
                hardware_keys: keys.slots.len(),
                ..keys.stats
            }
        }
        Err(_) => KeyStats::default(),
    }
}

#[derive(Debug)]
struct Slot {
    key: Pkey,
    /// The domain holding the key: its id and a handle to re-tag its memory when it loses the key.
    owner: Option<(u64, Weak<crate::domain::Inner>)>,
    /// Runs of the owner in progress (the key cannot be taken while > 0).
    active: u32,
    /// Clock value of the last activation.
    last: u64,
}

#[derive(Debug)]
struct Keys {
    slots: Vec<Slot>,
    clock: u64,
    stats: KeyStats,
}

/// The process's keys. The parking and anchor keys never change, so they (and the proof that
/// protection keys exist, which PKRU accesses take) are read without the lock.
#[derive(Debug)]
struct Cache {
    parking: Pkey,
    anchor: Pkey,
    state: Mutex<Keys>,
    freed: Condvar,
}

fn lock(m: &Mutex<Keys>) -> MutexGuard<'_, Keys> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The process's key cache: the parking key and every other key the kernel gives (at least one).
fn cache() -> Result<&'static Cache, &'static String> {
    static CACHE: OnceLock<Result<Cache, String>> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            // The reason alone: callers wrap it in `MpkUnavailable` again.
            let reason = |e: IsolateError| match e {
                IsolateError::MpkUnavailable(reason) => reason,
                other => other.to_string(),
            };
            let parking = Pkey::alloc().map_err(reason)?;
            let anchor = Pkey::alloc().map_err(reason)?;
            let slots: Vec<Slot> = std::iter::from_fn(|| Pkey::alloc().ok())
                .take(15)
                .map(|key| Slot {
                    key,
                    owner: None,
                    active: 0,
                    last: 0,
                })
                .collect();
            if slots.is_empty() {
                return Err("only two protection keys are available; mpk needs three".to_string());
            }
            sys::write_pkru(&parking, 0);
            Ok(Cache {
                parking,
                anchor,
                state: Mutex::new(Keys {
                    slots,
                    clock: 0,
                    stats: KeyStats::default(),
                }),
                freed: Condvar::new(),
            })
        })
        .as_ref()
}

/// The keys a new `mpk` domain's memory is tagged with: the parking key (it gets a hardware key
/// when it first runs) and the anchor key (for its run anchor page).
pub(crate) fn new_domain_keys() -> Result<(i32, i32), IsolateError> {
    let cache = cache().map_err(|e| IsolateError::MpkUnavailable(e.clone()))?;
    sys::write_pkru(&cache.parking, 0);
    Ok((cache.parking.key(), cache.anchor.key()))
}

/// A domain's hold on a hardware key for the length of a run; released on drop.
#[derive(Debug)]
pub struct KeyLease {
    key: i32,
    anchor: i32,
    slot: usize,
}

impl KeyLease {
    /// The hardware key the domain's memory carries during the lease.
    pub fn key(&self) -> i32 {
        self.key
    }

    /// The PKRU value for the domain's runs: its key, the anchor key read-only, and with
    /// `with_host` key 0 (the host's memory) too.
    pub fn pkru(&self, with_host: bool) -> u32 {
        let allowed = if with_host {
            pkru_allowing(&[0, self.key])
        } else {
            pkru_allowing(&[self.key])
        };
        // Anchor key: access allowed (AD = 0), writes disabled (WD = 1).
        let shift = 2 * self.anchor;
        (allowed & !(0b11 << shift)) | (0b10 << shift)
    }

    /// Sets PKRU to `value` on this thread until the guard is dropped (then every key is allowed
    /// again, the host's setting).
    pub fn enter(&self, value: u32) -> PkruGuard<'_> {
        let cache = cache().ok();
        if let Some(c) = cache {
            sys::write_pkru(&c.parking, value);
        }
        PkruGuard { _lease: self }
    }
}

impl Drop for KeyLease {
    fn drop(&mut self) {
        if let Ok(cache) = cache() {
            let mut keys = lock(&cache.state);
            if let Some(s) = keys.slots.get_mut(self.slot) {
                s.active = s.active.saturating_sub(1);
            }
            drop(keys);
            cache.freed.notify_one();
        }
    }
}

/// PKRU narrowed for a run; dropping it allows every key again.
#[derive(Debug)]
pub struct PkruGuard<'a> {
    _lease: &'a KeyLease,
}

impl PkruGuard<'_> {
    /// The PKRU value in force.
    pub fn current(&self) -> u32 {
        cache().map_or(0, |c| sys::read_pkru(&c.parking))
    }
}

impl Drop for PkruGuard<'_> {
    fn drop(&mut self) {
        open_host_access();
    }
}

/// Gives `domain` a hardware key for a run (see the module docs).
pub(crate) fn activate(domain: &Domain) -> Result<KeyLease, IsolateError> {
    let cache = cache().map_err(|e| IsolateError::MpkUnavailable(e.clone()))?;
    let id = domain.id();
    let mut keys = lock(&cache.state);
    keys.clock += 1;
    keys.stats.activations += 1;
    let now = keys.clock;
    if let Some(i) = keys
        .slots
        .iter()
        .position(|s| s.owner.as_ref().is_some_and(|(o, _)| *o == id))
    {
        let s = &mut keys.slots[i];
        s.active += 1;
        s.last = now;
        let key = s.key.key();
        return Ok(KeyLease {
            key,
            anchor: cache.anchor.key(),
            slot: i,
        });
    }
    let mut waited = false;
    let victim = loop {
        // A key nobody holds (or whose holder is gone), else the least recently used idle one.
        let free = keys
            .slots
            .iter()
            .position(|s| s.owner.as_ref().is_none_or(|(_, w)| w.strong_count() == 0));
        let lru = || {
            keys.slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.active == 0)
                .min_by_key(|(_, s)| s.last)
                .map(|(i, _)| i)
        };
        if let Some(i) = free.or_else(lru) {
            break i;
        }
        if !waited {
            keys.stats.waits += 1;
            waited = true;
        }
        keys = cache.freed.wait(keys).unwrap_or_else(|e| e.into_inner());
    };
    keys.stats.reassignments += 1;
    let parking = cache.parking.key();
    let key = keys.slots[victim].key.key();
    if let Some((_, old)) = keys.slots[victim].owner.take() {
        if let Some(old) = old.upgrade() {
            crate::domain::retag(&old, parking).map_err(IsolateError::Map)?;
        }
    }
    crate::domain::retag(domain.inner(), key).map_err(IsolateError::Map)?;
    let s = &mut keys.slots[victim];
    s.owner = Some((id, std::sync::Arc::downgrade(domain.inner())));
    s.active = 1;
    s.last = now;
    Ok(KeyLease {
        key,
        anchor: cache.anchor.key(),
        slot: victim,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Domain, Isolation};

    #[test]
    fn pkru_values_allow_exactly_the_given_keys() {
        assert_eq!(pkru_allowing(&[]), 0x5555_5555);
        assert_eq!(pkru_allowing(&[0]), 0x5555_5554);
        assert_eq!(pkru_allowing(&[0, 1]), 0x5555_5550);
        assert_eq!(pkru_allowing(&[0, 15]), 0x1555_5554);
        assert_eq!(pkru_allowing(&[16, -1]), 0x5555_5555);
    }

    #[test]
    fn mpk_domains_get_keys_and_switch_pkru() {
        if let Some(why) = unavailable() {
            println!("skipped: mpk unavailable ({why})");
            return;
        }
        let d = Domain::new(Isolation::Mpk).expect("mpk domain");
        let lease = d.activate().expect("key");
        assert!((1..16).contains(&lease.key()));
        {
            let g = lease.enter(lease.pkru(true));
            assert_eq!(g.current(), lease.pkru(true));
            assert_eq!(
                g.current() & 0b11 | (g.current() >> (2 * lease.key())) & 0b11,
                0,
                "key 0 and the domain's key allowed"
            );
            let mut input = [1u8, 2];
            // The domain's own memory stays accessible inside the guard.
            d.with_context(&mut input, |c| c[0] = 5).expect("fits");
            assert_eq!(input, [5, 2]);
        }
        let after = cache().map(|c| sys::read_pkru(&c.parking));
        assert_eq!(after, Ok(0), "host access restored");
    }

    #[test]
    fn more_domains_than_keys_share_them_one_owner_at_a_time() {
        if let Some(why) = unavailable() {
            println!("skipped: mpk unavailable ({why})");
            return;
        }
        let domains: Vec<Domain> = (0..40)
            .map(|_| Domain::new(Isolation::Mpk).expect("domain"))
            .collect();
        let before = key_stats();
        for round in 0..3 {
            for d in &domains {
                let lease = d.activate().expect("key");
                let mut input = [round as u8];
                let _g = lease.enter(lease.pkru(true));
                d.with_context(&mut input, |c| c[0] += 1).expect("fits");
                assert_eq!(input, [round as u8 + 1]);
            }
        }
        let after = key_stats();
        assert!(after.hardware_keys >= 1);
        assert!(
            after.reassignments - before.reassignments >= 40,
            "{before:?} -> {after:?}"
        );
        // Two leases at once never share a key (with one key, the second would wait).
        if after.hardware_keys >= 2 {
            let a = domains[0].activate().expect("a");
            let b = domains[1].activate().expect("b");
            assert_ne!(a.key(), b.key());
        }
    }

    #[test]
    fn mpk_is_refused_cleanly_where_unavailable() {
        match unavailable() {
            Some(why) => {
                println!("mpk unavailable ({why}): Domain::new(Mpk) must fail with a typed error");
                assert!(matches!(
                    Domain::new(Isolation::Mpk),
                    Err(IsolateError::MpkUnavailable(_))
                ));
                assert_eq!(Isolation::detect(), Isolation::Sfi);
            }
            None => assert_eq!(Isolation::detect(), Isolation::Mpk),
        }
    }
}
