//! The `mpk` backend: memory protection keys. A domain's arena is tagged with its own key
//! (`pkey_mprotect`, done by [`crate::Domain`]); [`PkruGuard`] sets PKRU for a run so that only the
//! domain's key and key 0 are accessible, and restores it when dropped.
//!
//! Key 0 stays accessible in this first cut because the engines' stacks and run contexts and the
//! helpers' host state still live in ordinary (key 0) memory; what PKRU adds is that no *other*
//! domain's memory is reachable while a program runs, whatever the software checks did. With key 0
//! enabled, helpers need no PKRU switch of their own.

use crate::sys;
use crate::IsolateError;

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

/// Why `mpk` is unavailable here, or `None` where a key can be allocated.
pub fn unavailable() -> Option<String> {
    match Pkey::alloc() {
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
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

/// PKRU set for a run in one domain; the previous value is restored on drop.
#[derive(Debug)]
pub struct PkruGuard<'a> {
    key: &'a Pkey,
    saved: u32,
}

impl<'a> PkruGuard<'a> {
    /// Allows only key 0 and `key` until the guard is dropped.
    pub fn enter(key: &'a Pkey) -> PkruGuard<'a> {
        let saved = sys::read_pkru(key);
        sys::write_pkru(key, pkru_allowing(&[0, key.key]));
        PkruGuard { key, saved }
    }

    /// The PKRU value in force.
    pub fn current(&self) -> u32 {
        sys::read_pkru(self.key)
    }
}

impl Drop for PkruGuard<'_> {
    fn drop(&mut self) {
        sys::write_pkru(self.key, self.saved);
    }
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
    fn mpk_domains_tag_memory_and_switch_pkru() {
        if let Some(why) = unavailable() {
            println!("skipped: mpk unavailable ({why})");
            return;
        }
        let d = Domain::new(Isolation::Mpk).expect("mpk domain");
        let key = d.pkey().expect("key");
        let before = {
            let g = PkruGuard::enter(key);
            assert_eq!(g.current(), pkru_allowing(&[0, key.key()]));
            let mut input = [1u8, 2];
            // The domain's own memory stays accessible inside the guard.
            d.with_context(&mut input, |c| c[0] = 5).expect("fits");
            assert_eq!(input, [5, 2]);
            g.saved
        };
        assert_eq!(sys::read_pkru(key), before, "restored");
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
