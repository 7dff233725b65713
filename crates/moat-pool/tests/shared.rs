//! Owned map handles and transactions ([`SharedPoolMap`], [`SharedTransaction`]): lock-free lookups
//! and value pointers confined to the map's own slots, the cached directory entry following access
//! list changes and map deletion, iteration, and transactions grouped across calls.

use moat_pool::{
    AclEntry, CreateOptions, Grantee, MapDef, Perms, Pool, PoolError, Principal, BPF_ANY,
    BPF_NOEXIST,
};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn temp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("moat-pool-tests");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(format!("shared-{name}-{}.pool", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn pool(name: &str) -> Arc<Pool> {
    let path = temp(name);
    Pool::create(&path, &CreateOptions::with_size(4 << 20)).expect("create");
    Arc::new(Pool::open(&path).expect("open"))
}

fn k(x: u32) -> [u8; 4] {
    x.to_le_bytes()
}

fn v(x: u64) -> [u8; 8] {
    x.to_le_bytes()
}

#[test]
fn value_pointers_lie_in_the_maps_own_slots_and_show_updates() {
    let pool = pool("ptr");
    pool.create_map(&MapDef::new("a", 4, 8, 100)).expect("a");
    pool.create_map(&MapDef::new("b", 4, 8, 100)).expect("b");
    let a = pool.shared_map("a").expect("a");
    let b = pool.shared_map("b").expect("b");
    a.update(&k(1), &v(10), BPF_ANY).expect("update");
    b.update(&k(1), &v(20), BPF_ANY).expect("update");
    let (start, len) = a.value_region();
    let ptr = a.lookup_ptr(&k(1)).expect("lookup").expect("present");
    let addr = ptr.as_ptr() as usize;
    assert!(addr >= start && addr + 8 <= start + len);
    // The region is inside the pool's mapping and disjoint from the other map's storage.
    let (pool_start, pool_len) = pool.mapped_range();
    assert!(start >= pool_start && start + len <= pool_start + pool_len);
    let (b_start, b_len) = b.value_region();
    assert!(start + len <= b_start || b_start + b_len <= start);
    let info = pool.info().expect("info");
    for m in &info.maps {
        let ext = pool_start + m.extent_off as usize;
        let inside = start >= ext && start + len <= ext + m.extent_len as usize;
        assert_eq!(inside, m.name == "a", "map {}", m.name);
    }
    assert_eq!(a.lookup(&k(1)).expect("value"), v(10));
    a.update(&k(1), &v(11), BPF_ANY).expect("update");
    // The same slot now holds the new value.
    assert_eq!(a.lookup_ptr(&k(1)).expect("lookup"), Some(ptr));
    assert_eq!(a.lookup(&k(1)).expect("value"), v(11));
    assert_eq!(a.lookup_ptr(&k(2)).expect("lookup"), None);
    assert!(matches!(
        a.lookup_ptr(&[1, 2]),
        Err(PoolError::KeySize {
            expected: 4,
            got: 2
        })
    ));
    assert_eq!(a.len().expect("len"), 1);
}

#[test]
fn the_cached_entry_follows_access_lists_and_deletion() {
    let pool = pool("acl");
    let tag = [7u8; 8];
    let owner = Principal::program(tag);
    pool.create_map(&MapDef::new("m", 4, 8, 16).with_owner(owner))
        .expect("map");
    let host = pool.shared_map("m").expect("resolves without access");
    assert!(matches!(
        host.lookup_ptr(&k(1)),
        Err(PoolError::AccessDenied { op: "read", .. })
    ));
    let err = pool
        .shared_map_as("m", Principal::host())
        .expect_err("no access");
    assert!(err.to_string().contains("may not open map `m`"), "{err}");
    let prog = host.as_principal(owner).expect("owner");
    prog.update(&k(1), &v(1), BPF_ANY).expect("owner writes");
    assert_eq!(prog.perms().expect("perms"), Perms::READ_WRITE);
    // Granting the host user read access is seen by the host's next lookup.
    prog.as_map()
        .set_acl(&[AclEntry {
            grantee: Grantee::User(Principal::host().uid),
            perms: Perms::READ,
        }])
        .expect("acl");
    assert_eq!(host.lookup(&k(1)).expect("readable now"), v(1));
    assert!(matches!(
        host.update(&k(2), &v(2), BPF_ANY),
        Err(PoolError::AccessDenied { op: "write", .. })
    ));
    prog.as_map().set_acl(&[]).expect("revoke");
    assert!(matches!(
        host.lookup(&k(1)),
        Err(PoolError::AccessDenied { .. })
    ));
    // Deleted (and recreated under the same name): old handles see no map.
    pool.delete_map(pool.map_as("m", owner).expect("map"))
        .expect("delete");
    pool.create_map(&MapDef::new("m", 4, 8, 16)).expect("again");
    assert!(matches!(
        prog.lookup_ptr(&k(1)),
        Err(PoolError::NoSuchMap(_))
    ));
    assert!(matches!(prog.len(), Err(PoolError::NoSuchMap(_))));
    let fresh = pool.shared_map("m").expect("new map");
    assert_eq!(fresh.lookup_ptr(&k(1)).expect("lookup"), None);
}

#[test]
fn next_key_visits_every_key_once() {
    let pool = pool("keys");
    pool.create_map(&MapDef::new("m", 4, 8, 64)).expect("map");
    let m = pool.shared_map("m").expect("m");
    for i in 0..40 {
        m.update(&k(i), &v(u64::from(i)), BPF_ANY).expect("update");
    }
    let mut seen = Vec::new();
    let mut key = [0u8; 4];
    let mut prev: Option<[u8; 4]> = None;
    while m
        .next_key(prev.as_ref().map(|p| &p[..]), &mut key)
        .expect("next")
    {
        seen.push(u32::from_le_bytes(key));
        prev = Some(key);
        assert!(seen.len() <= 40, "iteration does not end");
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..40).collect::<Vec<_>>());
    // An absent key restarts from the first.
    assert!(m.next_key(Some(&k(999)), &mut key).expect("first"));
}

#[test]
fn shared_transactions_group_updates_and_roll_back_when_dropped() {
    let pool = pool("tx");
    pool.create_map(&MapDef::new("m", 4, 8, 16)).expect("map");
    let m = pool.shared_map("m").expect("m");
    let mut tx = pool.begin_shared().expect("begin");
    tx.update(&m, &k(1), &v(1), BPF_ANY).expect("in tx");
    tx.update(&m, &k(2), &v(2), BPF_ANY).expect("in tx");
    // Lock-free lookups see the transaction's own changes; locked operations would deadlock.
    assert_eq!(m.lookup(&k(1)).expect("own write"), v(1));
    assert!(matches!(
        m.update(&k(3), &v(3), BPF_ANY),
        Err(PoolError::Deadlock)
    ));
    assert!(matches!(
        tx.update(&m, &k(1), &v(9), BPF_NOEXIST),
        Err(PoolError::Exists)
    ));
    let mut key = [0u8; 4];
    assert!(tx.next_key(&m, None, &mut key).expect("next in tx"));
    tx.abort().expect("abort");
    assert_eq!(m.len().expect("len"), 0);
    let mut tx = pool.begin_shared().expect("begin");
    tx.update(&m, &k(1), &v(1), BPF_ANY).expect("in tx");
    drop(tx);
    assert!(matches!(m.lookup(&k(1)), Err(PoolError::NotFound)));
    let mut tx = pool.begin_shared().expect("begin");
    tx.update(&m, &k(1), &v(1), BPF_ANY).expect("in tx");
    tx.update(&m, &k(2), &v(2), BPF_ANY).expect("in tx");
    tx.delete(&m, &k(1)).expect("in tx");
    tx.commit().expect("commit");
    assert_eq!(m.len().expect("len"), 1);
    assert_eq!(m.lookup(&k(2)).expect("committed"), v(2));
    let other = self::pool("tx-other");
    let mut tx = other.begin_shared().expect("begin");
    assert!(matches!(
        tx.update(&m, &k(1), &v(1), BPF_ANY),
        Err(PoolError::ForeignMap(_))
    ));
    pool.verify().expect("consistent");
}

/// A reader thread looks up without the lock while a writer inserts, overwrites and deletes: every
/// lookup succeeds, and a value found is one some writer stored (its first word names its key) or a
/// slot being zeroed after a delete.
#[test]
fn lock_free_lookups_race_writers_safely() {
    let pool = pool("race");
    pool.create_map(&MapDef::new("m", 4, 16, 32)).expect("map");
    let m = pool.shared_map("m").expect("m");
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut found = 0u64;
            let mut out = [0u8; 16];
            while !stop.load(Ordering::Relaxed) {
                for i in 0..48 {
                    if m.lookup_into(&k(i), &mut out).expect("lookup never fails") {
                        let first = u64::from_le_bytes(out[..8].try_into().expect("8 bytes"));
                        assert!(first == 0 || first < 48, "value {out:?} for key {i}");
                        found += 1;
                    }
                }
            }
            found
        });
        let mut x = 1u64;
        for n in 0..3000u64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let key = ((x >> 33) % 48) as u32;
            let mut value = [0u8; 16];
            value[..8].copy_from_slice(&u64::from(key).to_le_bytes());
            value[8..].copy_from_slice(&n.to_le_bytes());
            match (x >> 20) % 3 {
                0 => match m.delete(&k(key)) {
                    Ok(()) | Err(PoolError::NotFound) => {}
                    Err(e) => panic!("delete: {e}"),
                },
                _ => match m.update(&k(key), &value, BPF_ANY) {
                    Ok(()) | Err(PoolError::Full) => {}
                    Err(e) => panic!("update: {e}"),
                },
            }
        }
        stop.store(true, Ordering::Relaxed);
        assert!(reader.join().expect("reader") > 0);
    });
    pool.verify().expect("consistent");
}

#[test]
fn in_place_atomics_count_without_transactions_and_persist() {
    let path = temp("inplace");
    Pool::create(&path, &CreateOptions::with_size(4 << 20)).expect("create");
    let pool = Arc::new(Pool::open(&path).expect("open"));
    pool.create_map(&MapDef::new("counts", 4, 16, 64))
        .expect("map");
    let map = pool.shared_map("counts").expect("map");
    map.update(&k(1), &[0u8; 16], BPF_ANY).expect("insert");
    let values = Arc::new(map.in_place_values().expect("in-place window"));
    // Four threads, 10 000 adds each, on both words of the value.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let values = values.clone();
            std::thread::spawn(move || {
                for _ in 0..10_000 {
                    values
                        .fetch_add(&k(1), 0, 1)
                        .expect("add")
                        .expect("present");
                    values
                        .fetch_add(&k(1), 8, 3)
                        .expect("add")
                        .expect("present");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let mut want = 40_000u64.to_le_bytes().to_vec();
    want.extend(120_000u64.to_le_bytes());
    assert_eq!(map.lookup(&k(1)).expect("value"), want);
    // Another opener of the file (another process would be the same) sees them at once.
    let other = Pool::open(&path).expect("second open");
    assert_eq!(
        other
            .map("counts")
            .expect("map")
            .lookup(&k(1))
            .expect("value"),
        want
    );
    // Only value words: not a key, not a chain link, not past the value, not misaligned.
    let w = values.value_window();
    let value = map
        .lookup_ptr(&k(1))
        .expect("lookup")
        .expect("present")
        .as_ptr() as usize;
    assert_eq!(w.translate(value, 8), Some(w.alias + (value - w.start)));
    assert_eq!(
        w.translate(value + 8, 8),
        Some(w.alias + (value + 8 - w.start))
    );
    assert_eq!(w.translate(value + 12, 8), None, "past the value");
    assert_eq!(w.translate(value - 8, 8), None, "the key");
    assert_eq!(w.translate(value - 16, 8), None, "the chain link");
    assert_eq!(w.translate(w.start + w.len, 8), None, "past the slab");
    assert!(values.fetch_add(&k(1), 4, 1).is_err(), "misaligned");
    assert_eq!(values.fetch_add(&k(9), 0, 1).expect("absent"), None);
    // Dropping the window is a durability point; reopening finds the counts.
    values.sync().expect("sync");
    drop((values, map, pool, other));
    let again = Pool::open(&path).expect("reopen");
    assert_eq!(
        again
            .map("counts")
            .expect("map")
            .lookup(&k(1))
            .expect("value"),
        want
    );
    let report = again.verify().expect("consistent");
    assert_eq!((report.maps, report.elements), (1, 1));
}

#[test]
fn in_place_windows_need_write_access_and_an_unsealed_map() {
    let pool = pool("inplace-deny");
    let owner = Principal::program([3; 8]);
    pool.create_map(&MapDef::new("m", 4, 8, 16).with_owner(owner))
        .expect("map");
    let owned = pool.shared_map_as("m", owner).expect("owner");
    owned
        .as_map()
        .set_acl(&[AclEntry {
            grantee: Grantee::User(Principal::host().uid),
            perms: Perms::READ,
        }])
        .expect("acl");
    let reader = pool.shared_map("m").expect("reader");
    assert!(matches!(
        reader.in_place_values(),
        Err(PoolError::AccessDenied { op: "write", .. })
    ));
    assert!(owned.in_place_values().is_ok());
    owned.as_map().seal().expect("seal");
    assert!(matches!(
        owned.in_place_values(),
        Err(PoolError::Sealed { .. })
    ));
}
