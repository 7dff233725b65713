//! Maps as a runtime uses them: storage from a custom [`MapMemory`], and programs reading and writing
//! values in place (also atomically) through the raw pointers that lookups and reservations return.

use moat_maps::{
    HeapMemory, Map, MapDef, MapError, MapMemory, MapType, BPF_ANY, BPF_F_NO_PREALLOC, BPF_NOEXIST,
};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// A [`MapMemory`] that counts live bytes and has a limit, standing in for a pool or an isolation
/// domain's region.
#[derive(Default)]
struct Counting {
    live: AtomicUsize,
    limit: usize,
}

// SAFETY: delegates to `HeapMemory`, which upholds the contract; it only adds accounting.
unsafe impl MapMemory for Counting {
    fn alloc(&self, size: usize, align: usize) -> Result<NonNull<u8>, MapError> {
        if self.live.load(Ordering::Relaxed) + size > self.limit {
            return Err(MapError::OutOfMemory { size });
        }
        let p = HeapMemory.alloc(size, align)?;
        self.live.fetch_add(size, Ordering::Relaxed);
        Ok(p)
    }

    unsafe fn free(&self, ptr: NonNull<u8>, size: usize, align: usize) {
        self.live.fetch_sub(size, Ordering::Relaxed);
        // SAFETY: forwarded unchanged from our caller, who upholds `free`'s contract.
        unsafe { HeapMemory.free(ptr, size, align) };
    }
}

fn map(def: MapDef) -> Map {
    Map::create_with(def, HeapMemory::shared(), 4).expect("valid map")
}

fn key(n: u32) -> [u8; 4] {
    n.to_ne_bytes()
}

/// Reads the `u64` a program would see at `p`.
fn read_u64(p: NonNull<u8>) -> u64 {
    // SAFETY: `p` is an 8-aligned value pointer of a live map with values of at least 8 bytes.
    unsafe { AtomicU64::from_ptr(p.as_ptr().cast()) }.load(Ordering::Relaxed)
}

/// Writes a `u64` at `p` as a program would.
fn write_u64(p: NonNull<u8>, v: u64) {
    // SAFETY: as for `read_u64`.
    unsafe { AtomicU64::from_ptr(p.as_ptr().cast()) }.store(v, Ordering::Relaxed)
}

#[test]
fn storage_comes_from_the_given_memory() {
    let mem = Arc::new(Counting {
        limit: 1 << 20,
        ..Counting::default()
    });
    let shared: Arc<dyn MapMemory> = mem.clone();
    let defs = [
        (MapDef::new(MapType::Hash, 4, 12, 10), 10 * 16),
        (MapDef::new(MapType::LruPercpuHash, 4, 4, 10), 10 * 8 * 2),
        (MapDef::new(MapType::Array, 4, 8, 10), 80),
        (MapDef::new(MapType::ProgArray, 4, 4, 10), 80),
        (
            MapDef::new(MapType::LpmTrie, 8, 4, 10).with_flags(BPF_F_NO_PREALLOC),
            80,
        ),
        (MapDef::new(MapType::Stack, 0, 4, 10), 80),
        (MapDef::new(MapType::RingBuf, 0, 0, 4096), 3 * 4096),
    ];
    for (def, bytes) in defs {
        let m = Map::create_with(def, Arc::clone(&shared), 2).unwrap();
        assert_eq!(mem.live.load(Ordering::Relaxed), bytes, "{}", m.map_type());
        for r in m.value_regions() {
            assert!(r.len <= bytes);
        }
        drop(m);
        assert_eq!(mem.live.load(Ordering::Relaxed), 0);
    }
    let small: Arc<dyn MapMemory> = Arc::new(Counting {
        limit: 100,
        ..Counting::default()
    });
    let err = Map::create_in(MapDef::new(MapType::Array, 4, 8, 100), small).unwrap_err();
    assert_eq!(err, MapError::OutOfMemory { size: 800 });
    assert_eq!(err.errno(), -12);
}

#[test]
fn pointers_survive_later_inserts() {
    for t in [MapType::Hash, MapType::LruHash, MapType::PercpuHash] {
        let m = map(MapDef::new(t, 4, 8, 4096));
        let one = m.host_value_size() / 8;
        m.update(&key(0), &vec![0xab; 8 * one], BPF_ANY).unwrap();
        let p = m.lookup_ptr(&key(0), 0).unwrap();
        assert_eq!(read_u64(p), 0xabab_abab_abab_abab);
        for k in 1..4096 {
            m.update(&key(k), &vec![k as u8; 8 * one], BPF_NOEXIST)
                .unwrap();
            if k % 512 == 0 {
                // A program lookup keeps 0 recent enough in the LRU map.
                assert_eq!(m.lookup_ptr(&key(0), 0), Some(p));
            }
        }
        assert_eq!(read_u64(p), 0xabab_abab_abab_abab, "{t}");
        assert_eq!(m.lookup_ptr(&key(0), 0), Some(p));
    }
    let l = map(MapDef::new(MapType::LpmTrie, 8, 8, 1000).with_flags(BPF_F_NO_PREALLOC));
    let lpm_key = |len: u32, a: u32| [len.to_ne_bytes(), a.to_be_bytes()].concat();
    l.update(&lpm_key(8, 0x0a00_0000), &7u64.to_ne_bytes(), BPF_ANY)
        .unwrap();
    let p = l.lookup_ptr(&lpm_key(32, 0x0a01_0203), 0).unwrap();
    for i in 1..1000 {
        l.update(&lpm_key(32, i), &[0; 8], BPF_ANY).unwrap();
    }
    assert_eq!(read_u64(p), 7);
}

#[test]
fn programs_write_values_in_place() {
    let a = map(MapDef::new(MapType::Array, 4, 8, 4));
    write_u64(a.lookup_ptr(&key(2), 0).unwrap(), 42);
    assert_eq!(a.lookup(&key(2)), Ok(42u64.to_ne_bytes().to_vec()));

    let h = map(MapDef::new(MapType::Hash, 4, 16, 4));
    h.update(&key(9), &[0; 16], BPF_ANY).unwrap();
    let p = h.lookup_ptr(&key(9), 0).unwrap();
    write_u64(p, 5);
    // SAFETY: the value is 16 bytes, so `p + 8` is its second aligned word.
    write_u64(unsafe { p.add(8) }, 6);
    let v = h.lookup(&key(9)).unwrap();
    assert_eq!(v[..8], 5u64.to_ne_bytes());
    assert_eq!(v[8..], 6u64.to_ne_bytes());

    // Per-CPU maps: each CPU's pointer addresses its own copy.
    let pc = map(MapDef::new(MapType::PercpuArray, 4, 8, 1));
    for cpu in 0..4 {
        write_u64(pc.lookup_ptr(&key(0), cpu).unwrap(), cpu as u64 + 100);
    }
    let all = pc.lookup(&key(0)).unwrap();
    for cpu in 0..4 {
        assert_eq!(all[cpu * 8..cpu * 8 + 8], (cpu as u64 + 100).to_ne_bytes());
    }
}

#[test]
fn programs_update_values_atomically_from_many_threads() {
    let a = map(MapDef::new(MapType::Array, 4, 8, 1));
    let h = map(MapDef::new(MapType::Hash, 4, 8, 64));
    h.update(&key(1), &[0; 8], BPF_ANY).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let (a, h) = (&a, &h);
            s.spawn(move || {
                for i in 0..10_000u32 {
                    for p in [a.lookup_ptr(&key(0), 0), h.lookup_ptr(&key(1), 0)] {
                        let p = p.expect("element exists");
                        // SAFETY: an 8-aligned, 8-byte value of a live map.
                        unsafe { AtomicU64::from_ptr(p.as_ptr().cast()) }
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    // Meanwhile other elements come and go.
                    let k = key(100 + t * 10 + i % 10);
                    let _ = h.update(&k, &[1; 8], BPF_ANY);
                    let _ = h.delete(&k);
                }
            });
        }
    });
    assert_eq!(a.lookup(&key(0)), Ok(40_000u64.to_ne_bytes().to_vec()));
    assert_eq!(h.lookup(&key(1)), Ok(40_000u64.to_ne_bytes().to_vec()));
}

#[test]
fn ring_records_are_written_through_reserved_pointers() {
    let r = map(MapDef::new(MapType::RingBuf, 0, 0, 4096));
    let p = r.ringbuf_reserve(16, 0).unwrap();
    assert_eq!(p.as_ptr() as usize % 8, 0);
    write_u64(p, 1);
    // SAFETY: the record is 16 bytes.
    write_u64(unsafe { p.add(8) }, 2);
    let q = r.ringbuf_reserve(8, 0).unwrap();
    write_u64(q, 3);
    r.ringbuf_discard(q.as_ptr(), 0).unwrap();
    r.ringbuf_submit(p.as_ptr(), 0).unwrap();
    let mut got = Vec::new();
    assert_eq!(
        r.ringbuf_consume(&mut |d: &[u8]| got.push(d.to_vec())),
        Ok(1)
    );
    assert_eq!(got, vec![[1u64.to_ne_bytes(), 2u64.to_ne_bytes()].concat()]);
}
