//! External map storage: the [`MapBackend`] trait, through which a [`Map`](crate::Map) keeps its
//! elements somewhere this crate does not manage (a persistent pool, a remote store) while every
//! program-side and host-side operation keeps the kernel's semantics and error codes.
//!
//! A backend implements a hash map: fixed key and value sizes, `BPF_ANY` / `BPF_NOEXIST` /
//! `BPF_EXIST` update flags, values at stable addresses a program may read through
//! [`lookup_ptr`](MapBackend::lookup_ptr). [`Map::external`](crate::Map::external) checks the
//! definition and the sizes of keys and values before a backend sees them.

use crate::error::MapError;
use crate::map::MemRegion;
use std::any::Any;
use std::fmt;
use std::ptr::NonNull;

/// Storage for an external map ([`Map::external`](crate::Map::external)).
///
/// Keys passed in have the map's `key_size` and values its `value_size` (checked by [`Map`](crate::Map)
/// first). Errors are [`MapError`]s whose [`errno`](MapError::errno) is what the kernel would return;
/// a backend's own failures (permissions, I/O) use [`MapError::External`] with their errno.
///
/// The trait is `Any`, so an embedder can recognise its own backends behind a
/// [`Map::backend`](crate::Map::backend) (`(&**backend as &dyn Any).downcast_ref::<Mine>()`).
pub trait MapBackend: Any + Send + Sync + fmt::Debug {
    /// The address of the value of `key`, or `None` if absent (or unreadable for this backend's user).
    /// The value must stay dereferenceable for as long as the backend lives, and lie in one of
    /// [`value_regions`](MapBackend::value_regions).
    fn lookup_ptr(&self, key: &[u8]) -> Option<NonNull<u8>>;

    /// Copies the value of `key` into `out` (`value_size` bytes); [`MapError::NotFound`] if absent.
    fn lookup_into(&self, key: &[u8], out: &mut [u8]) -> Result<(), MapError>;

    /// Inserts or replaces `key` with the kernel's flag semantics ([`MapError::InvalidFlags`],
    /// [`MapError::Exists`], [`MapError::NotFound`], [`MapError::Full`]).
    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError>;

    /// Deletes `key`; [`MapError::NotFound`] if absent.
    fn delete(&self, key: &[u8]) -> Result<(), MapError>;

    /// Writes the key after `key` into `out` (`key_size` bytes), or the first key if `key` is `None`
    /// or absent; [`MapError::NotFound`] after the last key.
    fn next_key_into(&self, key: Option<&[u8]>, out: &mut [u8]) -> Result<(), MapError>;

    /// The number of elements.
    fn len(&self) -> usize;

    /// Whether [`len`](MapBackend::len) is 0.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The memory programs may read through pointers from [`lookup_ptr`](MapBackend::lookup_ptr).
    fn value_regions(&self) -> Vec<MemRegion>;

    /// Value memory that is read-only for programs' stores but where their atomic read-modify-writes
    /// apply in place, through a writable alias (counters in a persistent pool). None by default:
    /// the verifier then refuses atomics on read-only values.
    fn atomic_windows(&self) -> Vec<crate::AtomicWindow> {
        Vec::new()
    }

    /// What identifies the storage: two backends over the same storage (say, one map opened for two
    /// principals) return the same value, different storage different values. By default the
    /// backend's own address.
    fn identity(&self) -> usize {
        std::ptr::from_ref(self).cast::<()>() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Map, MapDef, MapType, BPF_ANY, BPF_EXIST, BPF_NOEXIST};
    use std::sync::{Arc, Mutex};

    /// A backend over a fixed slab of 4 elements with 4-byte keys and 8-byte values.
    #[derive(Debug, Default)]
    struct Slab {
        slots: Mutex<[Option<[u8; 4]>; 4]>,
        values: Box<[[u8; 8]; 4]>,
    }

    impl Slab {
        fn find(&self, key: &[u8]) -> Option<usize> {
            let slots = self.slots.lock().ok()?;
            slots
                .iter()
                .position(|s| s.as_ref().is_some_and(|k| k == key))
        }
    }

    impl MapBackend for Slab {
        fn lookup_ptr(&self, key: &[u8]) -> Option<NonNull<u8>> {
            self.find(key)
                .map(|i| NonNull::from(&self.values[i]).cast())
        }
        fn lookup_into(&self, key: &[u8], out: &mut [u8]) -> Result<(), MapError> {
            let i = self.find(key).ok_or(MapError::NotFound)?;
            out.copy_from_slice(&self.values[i]);
            Ok(())
        }
        fn update(&self, key: &[u8], _value: &[u8], flags: u64) -> Result<(), MapError> {
            let mut slots = self.slots.lock().map_err(|_| MapError::Busy)?;
            let found = slots.iter().any(|s| s.as_ref().is_some_and(|k| k == key));
            match (found, flags) {
                (true, BPF_NOEXIST) => return Err(MapError::Exists),
                (false, BPF_EXIST) => return Err(MapError::NotFound),
                (true, _) => return Ok(()),
                _ => {}
            }
            let free = slots
                .iter_mut()
                .find(|s| s.is_none())
                .ok_or(MapError::Full)?;
            *free = Some(key.try_into().map_err(|_| MapError::NotFound)?);
            Ok(())
        }
        fn delete(&self, _key: &[u8]) -> Result<(), MapError> {
            Err(MapError::External {
                errno: 1,
                message: "deletes are not permitted".into(),
            })
        }
        fn next_key_into(&self, key: Option<&[u8]>, out: &mut [u8]) -> Result<(), MapError> {
            let slots = self.slots.lock().map_err(|_| MapError::Busy)?;
            let keys: Vec<[u8; 4]> = slots.iter().flatten().copied().collect();
            let at = key
                .and_then(|k| keys.iter().position(|x| x == k))
                .map_or(0, |i| i + 1);
            out.copy_from_slice(keys.get(at).ok_or(MapError::NotFound)?);
            Ok(())
        }
        fn len(&self) -> usize {
            self.slots
                .lock()
                .map_or(0, |s| s.iter().filter(|x| x.is_some()).count())
        }
        fn value_regions(&self) -> Vec<MemRegion> {
            vec![MemRegion {
                addr: self.values.as_ptr() as usize,
                len: std::mem::size_of_val(&*self.values),
            }]
        }
    }

    #[test]
    fn an_external_map_goes_through_its_backend_with_checked_sizes() {
        let backend: Arc<dyn MapBackend> = Arc::new(Slab::default());
        let def = MapDef::new(MapType::Hash, 4, 8, 4).with_name("ext");
        let map = Map::external(def, backend.clone()).expect("hash def");
        assert_eq!(map.update(&[1; 4], &[0; 8], BPF_ANY), Ok(()));
        assert_eq!(
            map.update(&[1; 4], &[0; 8], BPF_NOEXIST),
            Err(MapError::Exists)
        );
        assert_eq!(
            map.update(&[1; 4], &[0; 7], BPF_ANY),
            Err(MapError::ValueSize {
                expected: 8,
                got: 7
            })
        );
        assert_eq!(
            map.update_on_cpu(&[1; 3], &[0; 8], BPF_ANY, 0),
            Err(MapError::KeySize {
                expected: 4,
                got: 3
            })
        );
        assert_eq!(map.lookup(&[1; 4]), Ok(vec![0; 8]));
        assert_eq!(map.lookup(&[2; 4]), Err(MapError::NotFound));
        let ptr = map.lookup_ptr(&[1; 4], 3).expect("present on any CPU");
        assert!(map.value_regions()[0].contains(ptr.as_ptr() as usize, 8));
        assert_eq!(map.delete(&[1; 4]).map_err(|e| e.errno()), Err(-1));
        assert_eq!(map.keys().collect::<Vec<_>>(), vec![vec![1; 4]]);
        assert_eq!(map.len(), 1);
        assert_eq!(map.host_value_size(), 8);
        assert_eq!(map.identity(), backend.identity());
        let any: &dyn Any = &**map.backend().expect("external");
        assert!(any.downcast_ref::<Slab>().is_some());
        assert!(map.push(&[0; 8], BPF_ANY).is_err());
        assert!(map.ringbuf_reserve(8, 0).is_none());
    }

    #[test]
    fn external_maps_must_be_valid_hash_maps() {
        let backend: Arc<dyn MapBackend> = Arc::new(Slab::default());
        let array = Map::external(MapDef::new(MapType::Array, 4, 8, 4), backend.clone());
        assert!(matches!(array, Err(MapError::InvalidDef { .. })));
        let empty = Map::external(MapDef::new(MapType::Hash, 0, 8, 4), backend);
        assert!(matches!(empty, Err(MapError::InvalidDef { .. })));
    }
}
