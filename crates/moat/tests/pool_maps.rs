//! Persistent pool maps used by programs, on both engines: the C example counting into a pinned pool
//! map from separate processes and surviving `SIGKILL` mid-storm; program-side transactions committed,
//! aborted, left open or cut short by an error; read-only values (verifier and run-time checks);
//! access lists, incompatible pinned definitions and sealed maps.
//!
//! The child processes are this test binary run again on its ignored test `pool_child`, with
//! `MOAT_POOL_CHILD` saying what to do. `MOAT_POOL_KILL_ROUNDS` sets the number of kill rounds
//! (default 30).

mod common;

use moat::pool::{
    AclEntry, CreateOptions, Grantee, MapDef as PoolDef, Perms, Pool, PoolError, Principal,
};
use moat::{
    Arg, Callback, Engine, Error, HelperError, HelperProto, LoadedProgram, Map, MapDef, MapType,
    ObjectOptions, PoolMapError, ProgType, Ret, RunErrorKind, Runtime, Verification, BPF_ANY,
};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ENGINES: [Engine; 2] = [Engine::Interp, Engine::Jit];

/// The key `pool_counter` counts every packet under.
const ALL: u32 = 256;

fn temp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("moat-pool-maps");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(format!("{name}-{}.pool", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn new_pool(name: &str) -> (PathBuf, Arc<Pool>) {
    let path = temp(name);
    Pool::create(&path, &CreateOptions::with_size(4 << 20)).expect("create pool");
    let pool = Arc::new(Pool::open(&path).expect("open pool"));
    (path, pool)
}

fn runtime(pool: &Arc<Pool>, engine: Engine) -> Runtime {
    let mut rt = Runtime::new();
    rt.set_engine(engine);
    rt.set_pool(pool.clone());
    rt.set_buffer_size(8);
    rt
}

/// An Ethernet + IPv4 (UDP) frame of 42 bytes.
fn udp_frame() -> Vec<u8> {
    let mut f = vec![0u8; 42];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&28u16.to_be_bytes());
    f[23] = 17;
    f
}

fn pool_counter() -> Vec<u8> {
    std::fs::read(common::workspace_root().join("examples/c/pool_counter.o")).expect("object")
}

/// `(packets, bytes)` under `key` of `pool_counts`, read from the pool file itself.
fn counts(pool: &Pool, key: u32) -> (u64, u64) {
    let map = pool.map("pool_counts").expect("pool_counts");
    match map.lookup(&key.to_ne_bytes()) {
        Ok(v) => (
            u64::from_ne_bytes(v[..8].try_into().expect("8 bytes")),
            u64::from_ne_bytes(v[8..].try_into().expect("8 bytes")),
        ),
        Err(PoolError::NotFound) => (0, 0),
        Err(e) => panic!("lookup: {e}"),
    }
}

/// Every message of an error and its sources, joined.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn load(rt: &Runtime, src: &str, maps: &[Arc<Map>]) -> Result<LoadedProgram, Error> {
    let bytes = moat_isa::assemble_bytes(src).expect("assembles");
    rt.load_with_maps(&bytes, ProgType::Buffer, maps)
}

/// Runs `pool_counter` `runs` times (or forever if `runs` is 0), printing `ran N` after each run.
fn count_packets(path: &Path, engine: Engine, runs: u64) {
    let mut rt = Runtime::new();
    rt.set_engine(engine);
    rt.open_pool(path).expect("child opens the pool");
    let obj = rt
        .load_object(&pool_counter(), ObjectOptions::default())
        .expect("loads");
    let prog = obj.program("count_packets").expect("program");
    let mut frame = udp_frame();
    let mut out = std::io::stdout().lock();
    let mut n = 0u64;
    while runs == 0 || n < runs {
        assert_eq!(prog.run(&mut frame).expect("runs"), 2, "XDP_PASS");
        n += 1;
        // After the run returned, `n` runs are committed.
        let _ = writeln!(out, "ran {n}");
        let _ = out.flush();
    }
}

/// The body of the child processes (ignored unless run by the tests below with `MOAT_POOL_CHILD`).
#[test]
#[ignore = "the child process of the cross-process tests, run by them"]
fn pool_child() {
    let role = std::env::var("MOAT_POOL_CHILD").expect("MOAT_POOL_CHILD set by the parent test");
    let path = PathBuf::from(std::env::var("MOAT_POOL_PATH").expect("MOAT_POOL_PATH"));
    let engine = match std::env::var("MOAT_POOL_ENGINE").as_deref() {
        Ok("jit") => Engine::Jit,
        _ => Engine::Interp,
    };
    match role.as_str() {
        "count" => count_packets(&path, engine, 50),
        "storm" => count_packets(&path, engine, 0),
        other => panic!("unknown child role {other}"),
    }
}

fn child(role: &str, path: &Path, engine: Engine) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["pool_child", "--exact", "--ignored", "--nocapture"])
        .env("MOAT_POOL_CHILD", role)
        .env("MOAT_POOL_PATH", path)
        .env(
            "MOAT_POOL_ENGINE",
            if engine == Engine::Jit {
                "jit"
            } else {
                "interp"
            },
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

/// The last `ran N` a child printed.
fn last_ran(text: &str) -> u64 {
    text.lines()
        .rev()
        .filter_map(|l| l.strip_prefix("ran "))
        .find_map(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn two_processes_count_into_the_same_pinned_pool_map() {
    let (path, pool) = new_pool("processes");
    drop(pool);
    for engine in ENGINES {
        let out = child("count", &path, engine).output().expect("child runs");
        assert!(out.status.success(), "child failed: {out:?}");
        assert_eq!(last_ran(&String::from_utf8_lossy(&out.stdout)), 50);
    }
    // A third process (this one) sees both processes' counts.
    let pool = Pool::open(&path).expect("reopen");
    assert_eq!(counts(&pool, 17), (100, 100 * 42));
    assert_eq!(counts(&pool, ALL), (100, 100 * 42));
    pool.verify().expect("consistent");
}

#[test]
fn a_pool_map_survives_sigkill_mid_storm_of_program_updates() {
    let rounds: u64 = std::env::var("MOAT_POOL_KILL_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(30);
    let (path, pool) = new_pool("storm");
    drop(pool);
    let mut total = 0u64;
    let (mut rolled_back, mut unreported) = (0, 0);
    for round in 0..rounds {
        let engine = ENGINES[(round % 2) as usize];
        let mut child = child("storm", &path, engine).spawn().expect("child starts");
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        // Kill after a varying number of runs, mostly in the middle of the next one.
        let target = 5 + (round * 7) % 23;
        let start = Instant::now();
        let mut seen = 0;
        while seen < target && start.elapsed() < Duration::from_secs(60) {
            match lines.next() {
                Some(Ok(l)) => seen = last_ran(&l).max(seen),
                _ => break,
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        let reported = last_ran(&rest.join("\n")).max(seen);
        assert!(
            reported >= target,
            "round {round}: the child ran only {reported} times"
        );
        // Reopening recovers (rolls back an interrupted transaction, takes over the dead lock).
        let pool = Pool::open(&path).expect("reopen after SIGKILL");
        pool.verify().expect("consistent after SIGKILL");
        if pool.recovered().rolled_back > 0 {
            rolled_back += 1;
        }
        let (packets, bytes) = counts(&pool, ALL);
        // Both counters of a run change in one transaction: never one without the other.
        assert_eq!(counts(&pool, 17), (packets, bytes), "round {round}");
        assert_eq!(bytes, packets * 42, "round {round}");
        // Every run the child reported is there; at most the one it was killed in besides.
        let done = packets - total;
        assert!(
            done == reported || done == reported + 1,
            "round {round}: {done} runs in the pool, {reported} reported"
        );
        unreported += done - reported;
        total = packets;
    }
    eprintln!(
        "{rounds} kill rounds, {total} runs: {rolled_back} killed mid-transaction (rolled back on \
         reopen), {unreported} killed after a commit they did not report"
    );
}

/// Inserts keys 1 and 2 in one transaction, then, by the input's first byte: 0 commits, 1 aborts, 2
/// returns with the transaction open, 3 fails (an embedder helper that errors), 4 begins twice.
/// Returns the last helper's result.
const TX: &str = "
    ldxb %r6, [%r1]
    call 0x6d6f0001
    jne %r0, 0, out
    stw [%r10-4], 1
    stdw [%r10-16], 11
    lddw %r1, map_idx(0)
    mov %r2, %r10
    add %r2, -4
    mov %r3, %r10
    add %r3, -16
    mov %r4, 0
    call 2
    stw [%r10-4], 2
    stdw [%r10-16], 22
    lddw %r1, map_idx(0)
    mov %r2, %r10
    add %r2, -4
    mov %r3, %r10
    add %r3, -16
    mov %r4, 0
    call 2
    jeq %r6, 1, abort
    jeq %r6, 2, out
    jeq %r6, 3, fail
    jeq %r6, 4, again
    call 0x6d6f0002
    exit
abort:
    call 0x6d6f0003
    exit
fail:
    call 1000
    exit
again:
    call 0x6d6f0001
out:
    exit
";

#[test]
fn program_transactions_are_all_or_nothing_on_both_engines() {
    for engine in ENGINES {
        let (_path, pool) = new_pool(&format!("tx-{engine:?}"));
        let mut rt = runtime(&pool, engine);
        let proto = HelperProto {
            name: "fail".into(),
            args: [Arg::None; 5],
            ret: Ret::Integer,
            callback: Callback::None,
        };
        rt.register_helper_with_proto(1000, proto, |_, _| {
            Err(HelperError::Failed("embedder helper failed".into()))
        });
        let map = rt
            .pool_map(MapDef::new(MapType::Hash, 4, 8, 16).with_name("tx"))
            .expect("pool map");
        let prog = load(&rt, TX, std::slice::from_ref(&map)).expect("verified and loaded");
        assert!(prog.verified().is_some());
        let key = |k: u32| map.lookup(&k.to_ne_bytes()).ok();
        // Rolled back: aborted, left open, ended by an error.
        assert_eq!(prog.run(&mut [1, 0, 0, 0, 0, 0, 0, 0]).expect("runs"), 0);
        assert_eq!((key(1), key(2)), (None, None), "{engine:?}: aborted");
        assert_eq!(prog.run(&mut [2, 0, 0, 0, 0, 0, 0, 0]).expect("runs"), 0);
        assert_eq!((key(1), key(2)), (None, None), "{engine:?}: left open");
        let err = prog.run(&mut [3, 0, 0, 0, 0, 0, 0, 0]).expect_err("fails");
        assert!(
            matches!(&err, Error::Run(r) if matches!(r.kind, RunErrorKind::Helper { id: 1000, .. }))
        );
        assert_eq!((key(1), key(2)), (None, None), "{engine:?}: run error");
        // The lock was released each time: the host can write on this very thread.
        map.update(&9u32.to_ne_bytes(), &[9; 8], BPF_ANY)
            .expect("the lock is free");
        // A second begin in the same run: -EBUSY (and the run's transaction is still rolled back).
        let r0 = prog.run(&mut [4, 0, 0, 0, 0, 0, 0, 0]).expect("runs");
        assert_eq!(r0 as i64, -16, "{engine:?}: -EBUSY");
        assert_eq!(key(1), None);
        // Committed: both visible, to this process and to a fresh mapping of the file.
        assert_eq!(prog.run(&mut [0; 8]).expect("runs"), 0);
        assert_eq!(key(1), Some(11u64.to_ne_bytes().to_vec()), "{engine:?}");
        assert_eq!(key(2), Some(22u64.to_ne_bytes().to_vec()), "{engine:?}");
        pool.verify().expect("consistent");
        // Commit or abort with no transaction open: -ENOENT.
        let lone = load(&rt, "call 0x6d6f0002\nexit", std::slice::from_ref(&map)).expect("loads");
        assert_eq!(lone.run(&mut [0; 8]).expect("runs") as i64, -2);
    }
}

#[test]
fn without_pool_maps_begin_is_einval_and_pinning_without_a_pool_is_ignored() {
    let mut rt = Runtime::new();
    rt.set_buffer_size(8);
    let prog = load(&rt, "call 0x6d6f0001\nexit", &[]).expect("loads");
    assert_eq!(prog.run(&mut [0; 8]).expect("runs") as i64, -22);
    // Without a pool the pinned map is an ordinary map, and the program counts nothing.
    let obj = rt
        .load_object(&pool_counter(), ObjectOptions::default())
        .expect("loads");
    let map = obj.map("pool_counts").expect("map");
    assert!(moat::PoolBackend::of(map).is_none());
    obj.program("count_packets")
        .expect("program")
        .run(&mut udp_frame())
        .expect("runs");
    assert!(map.is_empty());
    let err = rt
        .pool_map(MapDef::new(MapType::Hash, 4, 8, 1).with_name("x"))
        .expect_err("no pool");
    assert!(matches!(
        err,
        Error::Pool {
            source: PoolMapError::NoPool,
            ..
        }
    ));
}

const STORE: &str = "
    stw [%r10-4], 1
    lddw %r1, map_idx(0)
    mov %r2, %r10
    add %r2, -4
    call 1
    jeq %r0, 0, out
    stdw [%r0], 99
out:
    mov %r0, 0
    exit
";

#[test]
fn direct_stores_into_pool_values_are_rejected_by_the_verifier() {
    let (_path, pool) = new_pool("verifier");
    for engine in ENGINES {
        let rt = runtime(&pool, engine);
        let map = rt
            .pool_map(MapDef::new(MapType::Hash, 4, 8, 4).with_name("ro"))
            .expect("pool map");
        assert!(map.def().flags & moat::BPF_F_RDONLY_PROG != 0);
        let err = load(&rt, STORE, &[map]).expect_err("rejected");
        let text = chain(&err);
        assert!(matches!(err, Error::Verify(_)), "{text}");
        assert!(text.contains("write into read-only map `ro`"), "{text}");
    }
    // The C example's pinned map is read-only to the verifier of `moat verify` too.
    let rt = runtime(&pool, Engine::Jit);
    let verdicts = rt
        .verify_object(&pool_counter(), ObjectOptions::default())
        .expect("parses");
    assert!(verdicts.iter().all(|(_, v)| v.is_ok()));
}

#[test]
fn unverified_direct_stores_into_pool_values_fault_and_leave_the_pool_intact() {
    let (_path, pool) = new_pool("unverified");
    for engine in ENGINES {
        let mut rt = runtime(&pool, engine);
        rt.set_verification(Verification::Off);
        let map = rt
            .pool_map(MapDef::new(MapType::Hash, 4, 8, 4).with_name("ro"))
            .expect("pool map");
        map.update(&1u32.to_ne_bytes(), &7u64.to_ne_bytes(), BPF_ANY)
            .expect("host update");
        let prog = load(&rt, STORE, std::slice::from_ref(&map)).expect("loads unverified");
        assert_eq!(prog.engine(), engine);
        let err = prog.run(&mut [0; 8]).expect_err("refused store");
        assert!(
            matches!(&err, Error::Run(r) if matches!(r.kind, RunErrorKind::OutOfBounds { write: true, len: 8, .. })),
            "{engine:?}: {err}"
        );
        assert_eq!(
            map.lookup(&1u32.to_ne_bytes()).expect("value"),
            7u64.to_ne_bytes()
        );
        pool.verify().expect("intact");
    }
}

#[test]
fn access_lists_are_checked_at_load_and_by_the_helpers() {
    // Reads key 1 (returning its first byte, or 255 if absent), then writes key 2: returns the
    // update's result in the high half.
    const RW: &str = "
        stw [%r10-4], 1
        lddw %r1, map_idx(0)
        mov %r2, %r10
        add %r2, -4
        call 1
        mov %r6, 255
        jeq %r0, 0, write
        ldxb %r6, [%r0]
    write:
        stw [%r10-4], 2
        stdw [%r10-16], 5
        lddw %r1, map_idx(0)
        mov %r2, %r10
        add %r2, -4
        mov %r3, %r10
        add %r3, -16
        mov %r4, 0
        call 2
        lsh %r0, 32
        or %r0, %r6
        exit
    ";
    let (_path, pool) = new_pool("acl");
    let other = Principal::program([0xee; 8]);
    for engine in ENGINES {
        let rt = runtime(&pool, engine);
        let name = format!("acl-{engine:?}");
        let owned = pool
            .create_map(&PoolDef::new(&name, 4, 8, 4).with_owner(other))
            .expect("map owned by another program");
        owned
            .update(&1u32.to_ne_bytes(), &3u64.to_ne_bytes(), BPF_ANY)
            .expect("owner writes");
        let map = rt
            .pool_map(MapDef::new(MapType::Hash, 4, 8, 4).with_name(&name))
            .expect("resolves");
        let bytes = moat_isa::assemble_bytes(RW).expect("assembles");
        let me = Principal::program(moat::program_tag(&bytes));
        let err = rt
            .load_with_maps(&bytes, ProgType::Buffer, std::slice::from_ref(&map))
            .expect_err("no access");
        let text = chain(&err);
        assert!(
            text.contains(&format!("pool map `{name}`"))
                && text.contains(&format!("{me} may not open map `{name}`")),
            "{text}"
        );
        // Read access for this program's tag: it loads, reads, and its update is -EACCES.
        owned
            .set_acl(&[AclEntry {
                grantee: Grantee::Program(me.tag.expect("program")),
                perms: Perms::READ,
            }])
            .expect("grant");
        let prog = rt
            .load_with_maps(&bytes, ProgType::Buffer, std::slice::from_ref(&map))
            .expect("loads with read access");
        let r0 = prog.run(&mut [0; 8]).expect("runs");
        assert_eq!(r0 & 0xff, 3, "{engine:?}: read");
        assert_eq!((r0 >> 32) as i32, -13, "{engine:?}: -EACCES");
        // Revoked while loaded: the lookup finds nothing.
        owned.set_acl(&[]).expect("revoke");
        assert_eq!(prog.run(&mut [0; 8]).expect("runs") & 0xff, 255);
    }
}

#[test]
fn incompatible_or_unpoolable_pinned_maps_are_clear_errors() {
    let (_path, pool) = new_pool("incompatible");
    pool.create_map(&PoolDef::new("pool_counts", 4, 8, 257))
        .expect("a different pool_counts");
    let rt = runtime(&pool, Engine::Jit);
    let err = rt
        .load_object(&pool_counter(), ObjectOptions::default())
        .expect_err("incompatible");
    let text = chain(&err);
    assert!(
        matches!(
            &err,
            Error::Pool {
                name,
                source: PoolMapError::Incompatible {
                    field: "value_size",
                    pool: 8,
                    wanted: 16
                }
            } if name == "pool_counts"
        ),
        "{text}"
    );
    assert!(text.contains("pool map `pool_counts`") && text.contains("value_size"));
    // A ring buffer named for the pool: only hash maps can live there.
    let mut rt = runtime(&pool, Engine::Jit);
    rt.set_pool_maps(["events"]);
    let events = std::fs::read(common::workspace_root().join("examples/c/events.o")).expect("obj");
    let err = rt
        .load_object(&events, ObjectOptions::default())
        .expect_err("not a hash map");
    let text = chain(&err);
    assert!(
        text.contains("pool map `events`") && text.contains("not ringbuf maps"),
        "{text}"
    );
}

#[test]
fn sealed_pool_maps_refuse_program_updates() {
    const UPDATE: &str = "
        stw [%r10-4], 1
        stdw [%r10-16], 5
        lddw %r1, map_idx(0)
        mov %r2, %r10
        add %r2, -4
        mov %r3, %r10
        add %r3, -16
        mov %r4, 0
        call 2
        exit
    ";
    let (_path, pool) = new_pool("sealed");
    let sealed = pool
        .create_map(&PoolDef::new("sealed", 4, 8, 4))
        .expect("map");
    sealed
        .update(&1u32.to_ne_bytes(), &1u64.to_ne_bytes(), BPF_ANY)
        .expect("before sealing");
    sealed.seal().expect("seal");
    for engine in ENGINES {
        let rt = runtime(&pool, engine);
        let map = rt
            .pool_map(MapDef::new(MapType::Hash, 4, 8, 4).with_name("sealed"))
            .expect("pool map");
        let prog = load(&rt, UPDATE, std::slice::from_ref(&map)).expect("loads");
        assert_eq!(prog.run(&mut [0; 8]).expect("runs") as i64, -1, "-EPERM");
        assert_eq!(
            map.lookup(&1u32.to_ne_bytes()).expect("value"),
            1u64.to_ne_bytes()
        );
    }
}

#[test]
fn host_side_map_operations_and_tail_calls_see_one_pool_map() {
    let (_path, pool) = new_pool("host");
    let rt = runtime(&pool, Engine::Jit);
    let obj = rt
        .load_object(&pool_counter(), ObjectOptions::default())
        .expect("loads");
    let prog = obj.program("count_packets").expect("program");
    for _ in 0..3 {
        prog.run(&mut udp_frame()).expect("runs");
    }
    let map = obj.map("pool_counts").expect("object map");
    let backend = moat::PoolBackend::of(map).expect("in the pool");
    assert_eq!(backend.pool_map().name(), "pool_counts");
    assert_eq!(map.len(), 2);
    let mut keys: Vec<u32> = map
        .keys()
        .map(|k| u32::from_ne_bytes(k.try_into().expect("4 bytes")))
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, [17, ALL]);
    let value = map.lookup(&ALL.to_ne_bytes()).expect("value");
    assert_eq!(value[..8], 3u64.to_ne_bytes());
    // The program's own handle (its principal) and the object's are one map.
    assert_eq!(prog.maps()[0].identity(), map.identity());
    assert_eq!(map.delete(&17u32.to_ne_bytes()), Ok(()));
    assert_eq!(counts(&pool, 17), (0, 0));
}

/// `counter.o`'s `counters` map in the pool: `(packets, bytes)` of `proto`.
fn counter_values(pool: &Pool, proto: u32) -> (u64, u64) {
    let map = pool.map("counters").expect("counters");
    let v = map.lookup(&proto.to_ne_bytes()).expect("counted");
    (
        u64::from_ne_bytes(v[..8].try_into().expect("8 bytes")),
        u64::from_ne_bytes(v[8..].try_into().expect("8 bytes")),
    )
}

#[test]
fn atomic_counters_on_pool_values_apply_in_place_on_both_engines() {
    // The common idiom, unchanged: `__sync_fetch_and_add` on a looked-up value (issue 20).
    let object =
        std::fs::read(common::workspace_root().join("examples/c/counter.o")).expect("object");
    let (path, pool) = new_pool("atomics");
    let mut frame = udp_frame();
    let mut expected = 0u64;
    for engine in ENGINES {
        let mut rt = runtime(&pool, engine);
        rt.set_pool_maps(["counters"]);
        let obj = rt
            .load_object(&object, ObjectOptions::default())
            .expect("counter.o loads with its map in the pool");
        let prog = obj.program("count_packets").expect("program");
        for _ in 0..500 {
            assert_eq!(prog.run(&mut frame).expect("runs"), 2, "XDP_PASS");
        }
        expected += 500;
        assert_eq!(
            counter_values(&pool, 17),
            (expected, expected * 42),
            "{engine:?}"
        );
    }
    // Another opener of the file sees the counts; the pool is consistent.
    let other = Pool::open(&path).expect("second open");
    assert_eq!(counter_values(&other, 17), (1000, 42_000));
    pool.verify().expect("consistent");
}

/// With the verifier off: an atomic on the key next to a pool value (r0 - 8 is the key's slot).
const ATOMIC_ON_KEY: &str = "
    stw [%r10-4], 1
    mov %r2, %r10
    add %r2, -4
    lddw %r1, map_idx(0)
    call 1
    jeq %r0, 0, out
    mov %r1, 1
    lock add [%r0-8], %r1
out:
    mov %r0, 0
    exit
";

#[test]
fn atomics_reach_only_pool_values_never_keys_or_links() {
    let (_path, pool) = new_pool("atomic-key");
    for engine in ENGINES {
        let mut rt = runtime(&pool, engine);
        rt.set_verification(Verification::Off);
        let map = rt
            .pool_map(MapDef::new(MapType::Hash, 4, 8, 4).with_name("keys"))
            .expect("pool map");
        map.update(&1u32.to_ne_bytes(), &7u64.to_ne_bytes(), BPF_ANY)
            .expect("host update");
        let prog = load(&rt, ATOMIC_ON_KEY, std::slice::from_ref(&map)).expect("loads unverified");
        let err = prog.run(&mut [0; 8]).expect_err("refused atomic");
        assert!(
            matches!(&err, Error::Run(r) if matches!(r.kind, RunErrorKind::BadAtomic { len: 8, .. })),
            "{engine:?}: {err}"
        );
        // The key is intact: the element is still found under it.
        assert_eq!(
            map.lookup(&1u32.to_ne_bytes()).expect("value"),
            7u64.to_ne_bytes()
        );
        pool.verify().expect("intact");
    }
}
