//! Pool behaviour through the public API: creation, reopening, the kernel's map semantics against a
//! model, transactions, ownership and access lists, sealing, secure deletion and corrupt files.

use moat_pool::{
    AclEntry, CreateOptions, Durability, Grantee, LogState, MapDef, OpenOptions, Perms, Pool,
    PoolError, Principal, BPF_ANY, BPF_EXIST, BPF_NOEXIST,
};
use std::collections::HashMap;
use std::path::PathBuf;

/// A fresh path in the test target's temporary directory.
fn temp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("moat-pool-tests");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(format!("{name}-{}.pool", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn k(x: u32) -> [u8; 4] {
    x.to_le_bytes()
}

fn v(x: u64) -> [u8; 8] {
    x.to_le_bytes()
}

#[test]
fn create_open_inspect_and_reopen_keep_contents() {
    let path = temp("basic");
    let info = Pool::create(&path, &CreateOptions::with_size(1 << 20)).expect("create");
    assert_eq!(info.size, 1 << 20);
    assert_eq!(info.log, LogState::Clean);
    assert!(info.maps.is_empty());
    assert!(matches!(
        Pool::create(&path, &CreateOptions::with_size(1 << 20)),
        Err(PoolError::Io { op: "create", .. })
    ));
    {
        let pool = Pool::open(&path).expect("open");
        let m = pool.create_map(&MapDef::new("m", 4, 8, 100)).expect("map");
        for i in 0..50 {
            m.update(&k(i), &v(u64::from(i) * 3), BPF_ANY)
                .expect("update");
        }
        m.delete(&k(7)).expect("delete");
        assert_eq!(m.len().expect("len"), 49);
        assert!(matches!(
            pool.create_map(&MapDef::new("m", 4, 8, 100)),
            Err(PoolError::MapExists(_))
        ));
    }
    let info = Pool::inspect(&path).expect("inspect");
    assert_eq!(info.maps.len(), 1);
    assert_eq!(info.maps[0].len, 49);
    assert!(info
        .to_string()
        .contains("map m: hash key 4 value 8 entries 49/100"));
    let pool = Pool::open(&path).expect("reopen");
    assert_eq!(pool.recovered(), Default::default());
    let m = pool.map("m").expect("map");
    assert_eq!(m.lookup(&k(9)).expect("present"), v(27));
    assert!(matches!(m.lookup(&k(7)), Err(PoolError::NotFound)));
    let r = pool.verify().expect("verify");
    assert_eq!((r.maps, r.elements), (1, 49));
    drop(m);
    drop(pool);
    std::fs::remove_file(&path).expect("rm");
}

/// The kernel's flag semantics, checked against a `HashMap` model on random operations.
mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Update(u8, u64, u64),
        Delete(u8),
        Lookup(u8),
        Tx(Vec<(u8, u64)>, bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..24, any::<u64>(), 0u64..4).prop_map(|(k, v, f)| Op::Update(k, v, f)),
            2 => (0u8..24).prop_map(Op::Delete),
            1 => (0u8..24).prop_map(Op::Lookup),
            1 => (proptest::collection::vec((0u8..24, any::<u64>()), 1..5), any::<bool>())
                .prop_map(|(w, c)| Op::Tx(w, c)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn map_matches_a_hashmap(ops in proptest::collection::vec(op(), 1..60)) {
            let path = temp(&format!("model-{:x}", rand_id()));
            Pool::create(&path, &CreateOptions::with_size(256 << 10)).expect("create");
            let opts = OpenOptions { durability: Durability::Flush, ..OpenOptions::default() };
            let pool = Pool::open_with(&path, &opts).expect("open");
            let m = pool.create_map(&MapDef::new("m", 4, 8, 16)).expect("map");
            let mut model: HashMap<u32, u64> = HashMap::new();
            for op in ops {
                match op {
                    Op::Update(key, val, flags) => {
                        let key = u32::from(key);
                        let got = m.update(&k(key), &v(val), flags).map_err(|e| e.errno());
                        let present = model.contains_key(&key);
                        let want = match flags {
                            f if f > BPF_EXIST => Err(-22),
                            BPF_NOEXIST if present => Err(-17),
                            BPF_EXIST if !present => Err(-2),
                            _ if !present && model.len() >= 16 => Err(-7),
                            _ => { model.insert(key, val); Ok(()) }
                        };
                        prop_assert_eq!(got, want);
                    }
                    Op::Delete(key) => {
                        let key = u32::from(key);
                        let got = m.delete(&k(key)).map_err(|e| e.errno());
                        let want = if model.remove(&key).is_some() { Ok(()) } else { Err(-2) };
                        prop_assert_eq!(got, want);
                    }
                    Op::Lookup(key) => {
                        let key = u32::from(key);
                        let got = m.lookup(&k(key)).map_err(|e| e.errno());
                        prop_assert_eq!(got, model.get(&key).map(|x| v(*x).to_vec()).ok_or(-2));
                    }
                    Op::Tx(writes, commit) => {
                        let mut tx = pool.begin().expect("begin");
                        let mut next = model.clone();
                        for (key, val) in writes {
                            let key = u32::from(key);
                            let r = tx.update(&m, &k(key), &v(val), BPF_ANY);
                            if r.is_ok() { next.insert(key, val); }
                        }
                        if commit {
                            tx.commit().expect("commit");
                            model = next;
                        } else {
                            tx.abort().expect("abort");
                        }
                    }
                }
            }
            let mut got: Vec<(u32, u64)> = m.entries().expect("entries").into_iter()
                .map(|(a, b)| (u32::from_le_bytes(a.try_into().expect("4")), u64::from_le_bytes(b.try_into().expect("8"))))
                .collect();
            got.sort_unstable();
            let mut want: Vec<(u32, u64)> = model.into_iter().collect();
            want.sort_unstable();
            prop_assert_eq!(got, want);
            pool.verify().expect("verify");
            drop(m);
            drop(pool);
            std::fs::remove_file(&path).expect("rm");
        }
    }

    fn rand_id() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }
}

#[test]
fn transactions_are_all_or_nothing() {
    let path = temp("tx");
    Pool::create(&path, &CreateOptions::with_size(1 << 20)).expect("create");
    let pool = Pool::open(&path).expect("open");
    let a = pool.create_map(&MapDef::new("a", 4, 8, 10)).expect("a");
    let b = pool.create_map(&MapDef::new("b", 4, 8, 10)).expect("b");
    a.update(&k(1), &v(100), BPF_ANY).expect("seed");
    // A transfer between maps that fails half-way changes nothing.
    let r = pool.transaction(|tx| {
        tx.update(&a, &k(1), &v(60), BPF_EXIST)?;
        tx.update(&b, &k(1), &v(40), BPF_NOEXIST)?;
        assert_eq!(
            tx.lookup(&a, &k(1))?,
            v(60),
            "a transaction sees its own writes"
        );
        tx.update(&b, &k(1), &v(40), BPF_NOEXIST) // -EEXIST: aborts everything
    });
    assert!(matches!(r, Err(PoolError::Exists)));
    assert_eq!(a.lookup(&k(1)).expect("a"), v(100));
    assert!(matches!(b.lookup(&k(1)), Err(PoolError::NotFound)));
    // Dropping a transaction rolls it back, including map creation and deletes.
    {
        let mut tx = pool.begin().expect("begin");
        tx.delete(&a, &k(1)).expect("delete");
        tx.update(&b, &k(2), &v(2), BPF_ANY).expect("insert");
        // An operation outside the transaction would deadlock: refused instead.
        assert!(matches!(a.lookup(&k(1)), Err(PoolError::Deadlock)));
    }
    assert_eq!(a.lookup(&k(1)).expect("a"), v(100));
    assert_eq!(b.len().expect("len"), 0);
    pool.transaction(|tx| {
        tx.update(&a, &k(1), &v(60), BPF_EXIST)?;
        tx.update(&b, &k(1), &v(40), BPF_NOEXIST)
    })
    .expect("commit");
    assert_eq!(a.lookup(&k(1)).expect("a"), v(60));
    assert_eq!(b.lookup(&k(1)).expect("b"), v(40));
    pool.verify().expect("verify");
    drop((a, b));
    drop(pool);
    std::fs::remove_file(&path).expect("rm");
}

#[test]
fn a_transaction_larger_than_the_log_is_refused_and_rolled_back() {
    let path = temp("logfull");
    let opts = CreateOptions {
        log_size: 8192,
        ..CreateOptions::with_size(1 << 20)
    };
    Pool::create(&path, &opts).expect("create");
    let pool = Pool::open(&path).expect("open");
    let m = pool
        .create_map(&MapDef::new("m", 4, 1024, 64))
        .expect("map");
    for i in 0..64 {
        m.update(&k(i), &[1u8; 1024], BPF_ANY).expect("insert");
    }
    // Overwriting all 64 values logs 64 KiB of old values: more than the log holds.
    let r = pool.transaction(|tx| {
        for i in 0..64 {
            tx.update(&m, &k(i), &[7u8; 1024], BPF_ANY)?;
        }
        Ok(())
    });
    assert!(matches!(r, Err(PoolError::LogFull { log_len: 8192 })));
    for i in 0..64 {
        assert_eq!(m.lookup(&k(i)).expect("present"), [1u8; 1024]);
    }
    pool.verify().expect("verify: rolled back, nothing leaked");
    drop(m);
    drop(pool);
    std::fs::remove_file(&path).expect("rm");
}

#[test]
fn owners_and_access_lists_are_enforced() {
    let path = temp("acl");
    Pool::create(&path, &CreateOptions::with_size(1 << 20)).expect("create");
    let pool = Pool::open(&path).expect("open");
    let me = Principal::host();
    let prog = Principal::program([1; 8]);
    let reader = Principal::program([2; 8]);
    let stranger = Principal {
        uid: me.uid.wrapping_add(1),
        tag: None,
    };
    // A map owned by program 1, readable by program 2.
    let def = MapDef::new("secret", 4, 8, 8)
        .with_owner(prog)
        .with_acl(vec![AclEntry {
            grantee: Grantee::Program([2; 8]),
            perms: Perms::READ,
        }]);
    let owned = pool.create_map(&def).expect("create");
    owned.update(&k(1), &v(1), BPF_ANY).expect("owner writes");
    let r = pool.map_as("secret", reader).expect("reader opens");
    assert_eq!(r.lookup(&k(1)).expect("reader reads"), v(1));
    assert!(matches!(
        r.update(&k(1), &v(2), BPF_ANY),
        Err(PoolError::AccessDenied { op: "write", .. })
    ));
    assert!(matches!(
        r.seal(),
        Err(PoolError::AccessDenied { op: "seal", .. })
    ));
    // The host (no tag) does not own a program's map.
    assert!(matches!(
        pool.map("secret"),
        Err(PoolError::AccessDenied { op: "open", .. })
    ));
    assert!(matches!(
        pool.map_as("secret", stranger),
        Err(PoolError::AccessDenied { .. })
    ));
    let e = pool.map_as("secret", stranger).expect_err("denied");
    assert_eq!(e.errno(), -13);
    // The owner grants the stranger read and write; revoking takes effect at once.
    owned
        .set_acl(&[AclEntry {
            grantee: Grantee::User(stranger.uid),
            perms: Perms::READ_WRITE,
        }])
        .expect("set acl");
    let s = pool.map_as("secret", stranger).expect("now allowed");
    s.update(&k(2), &v(2), BPF_ANY).expect("stranger writes");
    owned.set_acl(&[]).expect("revoke");
    assert!(matches!(
        s.lookup(&k(2)),
        Err(PoolError::AccessDenied { op: "read", .. })
    ));
    let info = pool.info().expect("info");
    assert_eq!(info.maps[0].owner_tag, Some([1; 8]));
    assert!(info.to_string().contains("program 0101010101010101"));
    drop((owned, r, s));
    drop(pool);
    std::fs::remove_file(&path).expect("rm");
}

#[test]
fn sealed_maps_are_read_only_and_checked_on_open() {
    let path = temp("seal");
    Pool::create(&path, &CreateOptions::with_size(1 << 20)).expect("create");
    let extent;
    {
        let pool = Pool::open(&path).expect("open");
        let m = pool.create_map(&MapDef::new("keys", 4, 8, 8)).expect("map");
        m.update(&k(1), &v(42), BPF_ANY).expect("update");
        m.seal().expect("seal");
        assert!(m.is_sealed().expect("sealed"));
        assert!(matches!(
            m.update(&k(1), &v(1), BPF_ANY),
            Err(PoolError::Sealed { .. })
        ));
        assert!(matches!(m.delete(&k(1)), Err(PoolError::Sealed { .. })));
        assert_eq!(m.lookup(&k(1)).expect("reads"), v(42));
        let e = m.update(&k(1), &v(1), BPF_ANY).expect_err("sealed");
        assert_eq!(e.errno(), -1);
        assert!(matches!(pool.delete_map(m), Err(PoolError::Sealed { .. })));
        extent = pool.info().expect("info").maps[0].extent_off;
    }
    // Reopening verifies the seal.
    {
        let pool = Pool::open(&path).expect("reopen");
        assert_eq!(
            pool.map("keys").expect("map").lookup(&k(1)).expect("v"),
            v(42)
        );
    }
    // Flip one byte of the sealed contents behind moat's back.
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("file");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, extent + 4000).expect("read");
    f.write_all_at(&[b[0] ^ 1], extent + 4000).expect("write");
    assert!(
        matches!(Pool::open(&path), Err(PoolError::SealBroken { ref map, .. }) if map == "keys")
    );
    std::fs::remove_file(&path).expect("rm");
}

#[test]
fn deleted_maps_are_zeroed_and_their_space_reused() {
    let path = temp("delmap");
    Pool::create(&path, &CreateOptions::with_size(256 << 10)).expect("create");
    let pool = Pool::open(&path).expect("open");
    let free0 = pool.info().expect("info").free_pages;
    let m = pool.create_map(&MapDef::new("a", 4, 8, 1000)).expect("map");
    m.update(&k(1), &v(0xdead_beef), BPF_ANY).expect("update");
    let extent = pool.info().expect("info").maps[0].extent_off;
    pool.delete_map(m).expect("delete map");
    assert_eq!(pool.info().expect("info").free_pages, free0);
    pool.verify().expect("free pages are zero");
    let m2 = pool
        .create_map(&MapDef::new("b", 4, 8, 1000))
        .expect("reuse");
    assert_eq!(pool.info().expect("info").maps[0].extent_off, extent);
    assert!(matches!(m2.lookup(&k(1)), Err(PoolError::NotFound)));
    drop(m2);
    drop(pool);
    std::fs::remove_file(&path).expect("rm");
}

/// Bad arguments are typed errors with the kernel's errno, never panics.
#[test]
fn bad_arguments_are_einval() {
    let path = temp("args");
    Pool::create(&path, &CreateOptions::with_size(256 << 10)).expect("create");
    let pool = Pool::open(&path).expect("open");
    let m = pool.create_map(&MapDef::new("m", 4, 8, 4)).expect("map");
    let check = |r: Result<(), PoolError>| assert_eq!(r.map_err(|e| e.errno()), Err(-22));
    check(m.update(&[1, 2, 3], &v(1), BPF_ANY));
    check(m.update(&k(1), &[1, 2, 3], BPF_ANY));
    check(m.update(&k(1), &v(1), 4));
    check(m.delete(&[0; 5]));
    for def in [
        MapDef::new("", 4, 8, 4),
        MapDef::new("x".repeat(32).as_str(), 4, 8, 4),
        MapDef::new("z", 0, 8, 4),
        MapDef::new("z", 4, 0, 4),
        MapDef::new("z", 4, 8, 0),
        MapDef::new("z", 513, 8, 4),
    ] {
        check(pool.create_map(&def).map(|_| ()));
    }
    assert!(matches!(
        pool.create_map(&MapDef::new("huge", 4, 65536, 1 << 20)),
        Err(PoolError::OutOfSpace { .. })
    ));
    assert!(matches!(pool.map("nope"), Err(PoolError::NoSuchMap(_))));
    for opts in [
        CreateOptions::with_size(4096),
        CreateOptions {
            log_size: 100,
            ..CreateOptions::default()
        },
        CreateOptions {
            max_maps: 0,
            ..CreateOptions::default()
        },
    ] {
        assert!(matches!(
            Pool::create(temp("bad"), &opts),
            Err(PoolError::InvalidOptions(_))
        ));
    }
    drop(m);
    drop(pool);
    std::fs::remove_file(&path).expect("rm");
}
