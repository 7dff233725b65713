//! Crash tests with real processes (a test binary with its own `main`, `harness = false`): children
//! re-executed from this binary run storms of transactions on a shared pool and are killed with
//! `SIGKILL` at random moments; the parent reopens the pool and checks it against an oracle of the
//! committed transactions. Also: a killed lock holder's lock is taken over and its transaction rolled
//! back, and a stray write into a protected pool faults instead of corrupting it.
//!
//! `MOAT_POOL_CRASH_ITERS` sets the number of kill rounds (default 200).
#![expect(
    unsafe_code,
    reason = "the stray-write child writes through a raw pointer on purpose"
)]

use moat_pool::{
    CreateOptions, Durability, MapDef, OpenOptions, Pool, PoolError, Protection, BPF_ANY,
    BPF_EXIST, BPF_NOEXIST,
};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Keys per child; children own disjoint key ranges of one shared map.
const KEYS: u32 = 24;
const VALUE: usize = 16;

fn splitmix(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[derive(Debug, Clone)]
enum Op {
    Update(u32, [u8; VALUE], u64),
    Delete(u32),
}

/// The `n`th transaction of child `id` in round `round`: deterministic, so the parent can replay it.
fn tx_ops(round: u64, id: u32, n: u64) -> Vec<Op> {
    let mut s = round.wrapping_mul(1_000_003) ^ (u64::from(id) << 40) ^ n.wrapping_mul(7919);
    let count = 1 + splitmix(&mut s) % 3;
    (0..count)
        .map(|_| {
            let key = id * 1000 + (splitmix(&mut s) % u64::from(KEYS)) as u32;
            if splitmix(&mut s).is_multiple_of(4) {
                Op::Delete(key)
            } else {
                let mut v = [0u8; VALUE];
                v[..8].copy_from_slice(&splitmix(&mut s).to_le_bytes());
                v[8..].copy_from_slice(&n.to_le_bytes());
                let flags =
                    [BPF_ANY, BPF_ANY, BPF_NOEXIST, BPF_EXIST][(splitmix(&mut s) % 4) as usize];
                Op::Update(key, v, flags)
            }
        })
        .collect()
}

type Model = BTreeMap<u32, [u8; VALUE]>;

/// The model's version of a transaction: all or nothing, failing on the kernel's flag rules.
fn apply(model: &Model, ops: &[Op]) -> Model {
    let mut next = model.clone();
    for op in ops {
        match *op {
            Op::Update(k, v, f) => {
                let present = next.contains_key(&k);
                if (f == BPF_NOEXIST && present) || (f == BPF_EXIST && !present) {
                    return model.clone();
                }
                next.insert(k, v);
            }
            Op::Delete(k) => {
                if next.remove(&k).is_none() {
                    return model.clone();
                }
            }
        }
    }
    next
}

fn opts() -> OpenOptions {
    OpenOptions {
        durability: Durability::Flush,
        protection: Protection::Mprotect,
    }
}

/// Child: run transactions forever, printing the number completed after each.
fn child_storm(path: &Path, round: u64, id: u32) {
    let pool = Pool::open_with(path, &opts()).expect("child opens");
    let map = pool.map("m").expect("map");
    let mut out = std::io::stdout().lock();
    for n in 0.. {
        let ops = tx_ops(round, id, n);
        let r = pool.transaction(|tx| {
            for op in &ops {
                match op {
                    Op::Update(k, v, f) => tx.update(&map, &k.to_le_bytes(), v, *f)?,
                    Op::Delete(k) => tx.delete(&map, &k.to_le_bytes())?,
                }
            }
            Ok(())
        });
        match r {
            Ok(()) | Err(PoolError::NotFound | PoolError::Exists) => {}
            Err(e) => panic!("child {id}: {e}"),
        }
        // After the transaction returned: n + 1 are done (committed or rolled back as the model says).
        let _ = writeln!(out, "{}", n + 1);
        let _ = out.flush();
    }
}

/// Child: hold the lock in the middle of a transaction until killed.
fn child_hold(path: &Path) {
    let pool = Pool::open_with(path, &opts()).expect("child opens");
    let map = pool.map("m").expect("map");
    let mut tx = pool.begin().expect("begin");
    tx.update(&map, &999u32.to_le_bytes(), &[0xee; VALUE], BPF_ANY)
        .expect("update");
    tx.delete(&map, &1u32.to_le_bytes()).expect("delete");
    println!("ready");
    std::thread::sleep(Duration::from_secs(60));
}

/// Child: write into the pool's mapping outside moat's write paths.
fn child_stray(path: &Path, protection: Protection) {
    let pool = Pool::open_with(
        path,
        &OpenOptions {
            protection,
            ..opts()
        },
    )
    .expect("opens");
    let (addr, len) = pool.mapped_range();
    assert!(len > 200);
    println!("writing");
    let target = (addr + 100) as *mut u8;
    // SAFETY: deliberately a stray write into the pool's own mapping (the header's reserved bytes); with
    // write protection this faults, which is what the test checks.
    unsafe { target.write_volatile(0x5a) };
    println!("wrote");
}

fn spawn(role: &str, path: &Path, extra: &[(&str, String)]) -> Child {
    let mut c = Command::new(std::env::current_exe().expect("exe"));
    c.env("MOAT_POOL_CHILD", role)
        .env("MOAT_POOL_PATH", path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        c.env(k, v);
    }
    c.spawn().expect("spawn child")
}

fn last_count(child: &mut Child) -> u64 {
    let out = child.stdout.take().expect("stdout");
    BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| l.trim().parse().ok())
        .last()
        .unwrap_or(0)
}

fn dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let d = if shm.is_dir() {
        shm.join(format!("moat-pool-crash-{}", std::process::id()))
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("moat-pool-crash-{}", std::process::id()))
    };
    std::fs::create_dir_all(&d).expect("dir");
    d
}

fn read_child_keys(pool: &Pool, id: u32) -> Model {
    let map = pool.map("m").expect("map");
    map.entries()
        .expect("entries")
        .into_iter()
        .filter_map(|(k, v)| {
            let k = u32::from_le_bytes(k.try_into().ok()?);
            (k / 1000 == id).then(|| (k, v.try_into().expect("16 bytes")))
        })
        .collect()
}

/// Two children storm one map; both are killed at random moments; every round the reopened pool must
/// hold, for each child, exactly the transactions it completed, or those plus the one in flight.
fn kill_storm(iters: u64) -> String {
    let d = dir();
    let path = d.join("storm.pool");
    Pool::create(&path, &CreateOptions::with_size(1 << 20)).expect("create");
    {
        let pool = Pool::open_with(&path, &opts()).expect("open");
        pool.create_map(&MapDef::new("m", 4, VALUE as u32, 2 * KEYS))
            .expect("map");
    }
    let mut models = [Model::new(), Model::new()];
    let mut rng = 42u64;
    let (mut in_flight_seen, mut total_tx) = (0u64, 0u64);
    for round in 0..iters {
        let mut kids: Vec<Child> = (0..2u32)
            .map(|id| {
                spawn(
                    "storm",
                    &path,
                    &[
                        ("MOAT_POOL_ROUND", round.to_string()),
                        ("MOAT_POOL_ID", id.to_string()),
                    ],
                )
            })
            .collect();
        std::thread::sleep(Duration::from_micros(2_000 + splitmix(&mut rng) % 25_000));
        let first = (splitmix(&mut rng) % 2) as usize;
        kids[first].kill().expect("kill");
        // The other keeps going for a moment: it may have to take over the dead child's lock.
        std::thread::sleep(Duration::from_micros(splitmix(&mut rng) % 8_000));
        kids[1 - first].kill().expect("kill");
        let mut counts = [0u64; 2];
        for (id, kid) in kids.iter_mut().enumerate() {
            counts[id] = last_count(kid);
            let status = kid.wait().expect("wait");
            assert_eq!(
                status.signal(),
                Some(libc::SIGKILL),
                "child {id} died on its own: {status:?}"
            );
        }
        let pool = Pool::open_with(&path, &opts()).expect("reopen after kill");
        pool.verify()
            .unwrap_or_else(|e| panic!("round {round}: verify: {e}"));
        for id in 0..2u32 {
            let got = read_child_keys(&pool, id);
            let mut m = models[id as usize].clone();
            for n in 0..counts[id as usize] {
                m = apply(&m, &tx_ops(round, id, n));
            }
            total_tx += counts[id as usize];
            let next = apply(&m, &tx_ops(round, id, counts[id as usize]));
            if got == m {
                models[id as usize] = m;
            } else if got == next {
                in_flight_seen += 1;
                models[id as usize] = next;
            } else {
                panic!("round {round} child {id}: after {} transactions the pool holds {got:?}\nexpected {m:?}\nor {next:?}", counts[id as usize]);
            }
        }
    }
    let steals = Pool::inspect(&path).expect("inspect").lock_steals;
    std::fs::remove_file(&path).expect("rm");
    format!("{iters} rounds, {total_tx} transactions reported, {in_flight_seen} in-flight transactions found committed, {steals} lock takeovers")
}

/// A process killed while holding the lock mid-transaction: the next opener waits, takes the lock over,
/// rolls the transaction back.
fn dead_holder_is_recovered() -> String {
    let d = dir();
    let path = d.join("hold.pool");
    Pool::create(&path, &CreateOptions::with_size(1 << 20)).expect("create");
    {
        let pool = Pool::open_with(&path, &opts()).expect("open");
        let m = pool
            .create_map(&MapDef::new("m", 4, VALUE as u32, 8))
            .expect("map");
        m.update(&1u32.to_le_bytes(), &[1; VALUE], BPF_ANY)
            .expect("seed");
    }
    let mut kid = spawn("hold", &path, &[]);
    let mut out = BufReader::new(kid.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("ready");
    assert_eq!(line.trim(), "ready");
    let info = Pool::inspect(&path).expect("inspect");
    assert!(info.lock_holder.is_some(), "the child holds the lock");
    assert!(matches!(
        info.log,
        moat_pool::LogState::Pending {
            committed: false,
            ..
        }
    ));
    let pid = kid.id();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        kid.kill().expect("kill");
        kid.wait().expect("wait")
    });
    // Blocks on the live holder, then takes over once it is dead.
    let t = std::time::Instant::now();
    let pool = Pool::open_with(&path, &opts()).expect("open after holder death");
    let waited = t.elapsed();
    killer.join().expect("killer");
    assert!(
        waited >= Duration::from_millis(50),
        "open waited for the live holder ({waited:?})"
    );
    assert!(
        pool.recovered().rolled_back > 0,
        "the holder's transaction was rolled back"
    );
    let m = pool.map("m").expect("map");
    assert_eq!(m.lookup(&1u32.to_le_bytes()).expect("kept"), [1; VALUE]);
    assert!(matches!(
        m.lookup(&999u32.to_le_bytes()),
        Err(PoolError::NotFound)
    ));
    pool.verify().expect("verify");
    let steals = pool.info().expect("info").lock_steals;
    assert_eq!(steals, 1);
    drop(m);
    drop(pool);
    std::fs::remove_file(&path).expect("rm");
    format!("holder pid {pid} killed; open waited {waited:?}, took over, rolled back")
}

/// A stray host write into a protected pool faults (SIGSEGV) and the pool stays intact; unprotected,
/// the same write lands and the next open reports the damage.
fn stray_write_faults() -> String {
    let d = dir();
    let path = d.join("stray.pool");
    Pool::create(&path, &CreateOptions::with_size(1 << 20)).expect("create");
    for protection in [Protection::Mprotect, Protection::TempMapping] {
        let mut kid = spawn(
            "stray",
            &path,
            &[("MOAT_POOL_PROT", format!("{protection:?}"))],
        );
        let status = kid.wait().expect("wait");
        assert_eq!(
            status.signal(),
            Some(libc::SIGSEGV),
            "{protection:?}: {status:?}"
        );
        Pool::open(&path)
            .expect("intact after the faulting stray write")
            .verify()
            .expect("verify");
    }
    let mut kid = spawn("stray", &path, &[("MOAT_POOL_PROT", "None".into())]);
    assert!(
        kid.wait().expect("wait").success(),
        "unprotected, the write lands"
    );
    let err = Pool::open(&path).expect_err("damaged");
    assert!(
        matches!(
            err,
            PoolError::BadHeaderField { .. } | PoolError::HeaderChecksum { .. }
        ),
        "{err}"
    );
    std::fs::remove_file(&path).expect("rm");
    format!("protected: SIGSEGV, pool intact; unprotected: corruption reported as `{err}`")
}

fn main() {
    if let Ok(role) = std::env::var("MOAT_POOL_CHILD") {
        let path = PathBuf::from(std::env::var("MOAT_POOL_PATH").expect("path"));
        let num = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match role.as_str() {
            "storm" => child_storm(&path, num("MOAT_POOL_ROUND"), num("MOAT_POOL_ID") as u32),
            "hold" => child_hold(&path),
            "stray" => {
                let p = match std::env::var("MOAT_POOL_PROT").as_deref() {
                    Ok("None") => Protection::None,
                    Ok("TempMapping") => Protection::TempMapping,
                    _ => Protection::Mprotect,
                };
                child_stray(&path, p);
            }
            other => panic!("unknown child role {other}"),
        }
        return;
    }
    // Run only the named test when a filter is given (cargo test passes filters as arguments).
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let iters = std::env::var("MOAT_POOL_CRASH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    type Test = (&'static str, Box<dyn Fn() -> String>);
    let tests: [Test; 3] = [
        (
            "dead_holder_is_recovered",
            Box::new(dead_holder_is_recovered),
        ),
        ("stray_write_faults", Box::new(stray_write_faults)),
        ("kill_storm", Box::new(move || kill_storm(iters))),
    ];
    let mut passed = 0;
    for (name, f) in &tests {
        if !filter.is_empty() && !filter.iter().any(|x| name.contains(x.as_str())) {
            continue;
        }
        let t = std::time::Instant::now();
        let note = f();
        println!("test {name} ... ok ({:.1?}): {note}", t.elapsed());
        passed += 1;
    }
    let _ = std::fs::remove_dir_all(dir());
    println!("{passed} passed, 0 failed");
}
