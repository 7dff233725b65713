//! Persistent pool maps used by programs (issue 8), side by side in one run: lookup latency (p50, p99)
//! of host lookups and of program lookups (JIT) on a pool map and on an in-memory hash map — idle, and
//! while another process updates the same pool map — and the cost of an update made by a program and
//! of an atomic add on a looked-up value (in place on the pool map).
//! `cargo run --release -p moat-bench --bin bench_pool [SAMPLES]` (default 200 000 per measurement; a
//! tenth of that for the locked lookups and the pool updates, which take longer each).
//!
//! The pool is a file in `/dev/shm` opened with the defaults (`Durability::Auto`, `mprotect` write
//! windows), as `moat run --pool` opens it. The updating process is this binary run again with
//! `--updater POOL`: it overwrites the map's values in a loop, each update a durable transaction.

use moat::pool::{CreateOptions, Pool};
use moat::{Engine, LoadedProgram, Map, MapDef, MapType, ProgType, Runtime, BPF_ANY};
use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Keys in the maps, all present.
const KEYS: u32 = 1024;

/// Looks up the `u32` key at the start of the input; returns the value (0 if absent).
const LOOKUP: &str = "
    ldxw %r7, [%r1]
    stxw [%r10-4], %r7
    lddw %r1, map_idx(0)
    mov %r2, %r10
    add %r2, -4
    call 1
    jeq %r0, 0, miss
    ldxdw %r0, [%r0]
    exit
miss:
    mov %r0, 0
    exit
";

/// Stores the input's 8 bytes under the `u32` key at its start; returns the helper's result.
const UPDATE: &str = "
    ldxw %r7, [%r1]
    stxw [%r10-4], %r7
    ldxdw %r8, [%r1]
    stxdw [%r10-16], %r8
    lddw %r1, map_idx(0)
    mov %r2, %r10
    add %r2, -4
    mov %r3, %r10
    add %r3, -16
    mov %r4, 0
    call 2
    exit
";

/// The counter idiom: looks up the `u32` key at the start of the input and adds 1 to its value with
/// an atomic (`__sync_fetch_and_add`); returns 0.
const ADD: &str = "
    ldxw %r7, [%r1]
    stxw [%r10-4], %r7
    lddw %r1, map_idx(0)
    mov %r2, %r10
    add %r2, -4
    call 1
    jeq %r0, 0, miss
    mov %r1, 1
    lock add [%r0+0], %r1
miss:
    mov %r0, 0
    exit
";

/// The updating process: overwrites every key's value in turn, forever; prints the count every 1 000.
fn updater(path: &Path) {
    let pool = Arc::new(Pool::open(path).expect("updater opens the pool"));
    let map = pool.shared_map("bench").expect("map");
    let mut out = std::io::stdout().lock();
    for n in 1u64.. {
        let key = (n % u64::from(KEYS)) as u32;
        map.update(&key.to_ne_bytes(), &n.to_ne_bytes(), BPF_ANY)
            .expect("update");
        if n.is_multiple_of(1000) {
            let _ = writeln!(out, "{n}");
            let _ = out.flush();
        }
    }
}

/// What one `Instant::now` + `elapsed` costs (median of many), to subtract from per-operation times.
fn timer_overhead() -> f64 {
    let mut t: Vec<u128> = (0..100_000)
        .map(|_| {
            let s = Instant::now();
            s.elapsed().as_nanos()
        })
        .collect();
    t.sort_unstable();
    t[t.len() / 2] as f64
}

/// p50 and p99 of `samples` timed calls of `op(i)`, in ns, less the timer's cost.
fn latency(samples: usize, overhead: f64, mut op: impl FnMut(u32)) -> (f64, f64) {
    for i in 0..samples / 10 {
        op(i as u32 % KEYS);
    }
    let mut t: Vec<f64> = (0..samples)
        .map(|i| {
            // A stride through the keys, so consecutive operations touch different elements.
            let key = (i as u32).wrapping_mul(97) % KEYS;
            let s = Instant::now();
            op(key);
            s.elapsed().as_nanos() as f64
        })
        .collect();
    t.sort_by(f64::total_cmp);
    let at = |q: f64| (t[((t.len() - 1) as f64 * q) as usize] - overhead).max(0.0);
    (at(0.50), at(0.99))
}

fn program(rt: &Runtime, src: &str, map: &Arc<Map>) -> LoadedProgram {
    let bytes = moat_isa::assemble_bytes(src).expect("assembles");
    let prog = rt
        .load_with_maps(&bytes, ProgType::Buffer, std::slice::from_ref(map))
        .expect("loads");
    assert!(prog.verified().is_some() && prog.engine() == Engine::Jit);
    prog
}

/// The measurements of one map: host lookups, program lookups, program updates.
struct Maps {
    map: Arc<Map>,
    lookup: LoadedProgram,
    update: LoadedProgram,
    add: LoadedProgram,
}

impl Maps {
    fn new(rt: &Runtime, map: Arc<Map>) -> Maps {
        for k in 0..KEYS {
            map.update(&k.to_ne_bytes(), &u64::from(k).to_ne_bytes(), BPF_ANY)
                .expect("fill");
        }
        Maps {
            lookup: program(rt, LOOKUP, &map),
            update: program(rt, UPDATE, &map),
            add: program(rt, ADD, &map),
            map,
        }
    }

    fn host_lookup(&self, samples: usize, overhead: f64) -> (f64, f64) {
        let mut out = [0u8; 8];
        latency(samples, overhead, |k| {
            black_box(self.map.lookup_into(&k.to_ne_bytes(), &mut out)).expect("present");
        })
    }

    fn prog_lookup(&self, samples: usize, overhead: f64) -> (f64, f64) {
        let mut input = [0u8; 8];
        latency(samples, overhead, |k| {
            input[..4].copy_from_slice(&k.to_ne_bytes());
            black_box(self.lookup.run(&mut input)).expect("runs");
        })
    }

    fn prog_update(&self, samples: usize, overhead: f64) -> (f64, f64) {
        let mut input = [0u8; 8];
        latency(samples, overhead, |k| {
            input[..4].copy_from_slice(&k.to_ne_bytes());
            let r0 = self.update.run(&mut input).expect("runs");
            assert_eq!(r0, 0, "update succeeds");
        })
    }

    fn prog_add(&self, samples: usize, overhead: f64) -> (f64, f64) {
        let mut input = [0u8; 8];
        latency(samples, overhead, |k| {
            input[..4].copy_from_slice(&k.to_ne_bytes());
            black_box(self.add.run(&mut input)).expect("runs");
        })
    }
}

fn cell((p50, p99): (f64, f64)) -> String {
    format!("{p50:.0} / {p99:.0}")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let (Some("--updater"), Some(path)) = (args.get(1).map(String::as_str), args.get(2)) {
        updater(Path::new(path));
        return;
    }
    let samples: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("moat-bench-pool-{}.pool", std::process::id()));
    let _ = std::fs::remove_file(&path);
    Pool::create(&path, &CreateOptions::with_size(16 << 20)).expect("create pool");
    let pool = Arc::new(Pool::open(&path).expect("open pool"));
    let mut rt = Runtime::new();
    rt.set_engine(Engine::Jit);
    rt.set_buffer_size(8);
    rt.set_pool(pool.clone());
    let def = MapDef::new(MapType::Hash, 4, 8, KEYS * 2).with_name("bench");
    let memory = Maps::new(&rt, rt.create_map(def.clone()).expect("in-memory map"));
    let pooled = Maps::new(&rt, rt.pool_map(def).expect("pool map"));
    let locked = pool.map("bench").expect("locked handle");
    let overhead = timer_overhead();
    let mode = pool.mode();
    println!(
        "pool {} ({:?} protection, {}), {KEYS} keys, {samples} samples per cell; timer overhead {overhead:.0} ns subtracted",
        path.display(),
        mode.protection,
        if mode.msync { "msync durability" } else { "flush durability" },
    );
    let mut out = [0u8; 8];
    // Fewer samples: under contention each waits for the updater's transactions.
    let mut locked_lookup = || {
        latency(samples / 10, overhead, |k| {
            black_box(locked.lookup_into(&k.to_ne_bytes(), &mut out)).expect("present");
        })
    };
    let idle = [
        memory.host_lookup(samples, overhead),
        pooled.host_lookup(samples, overhead),
        locked_lookup(),
        memory.prog_lookup(samples, overhead),
        pooled.prog_lookup(samples, overhead),
    ];
    // Another process storms the same pool map with updates while this one looks up.
    let mut child = Command::new(std::env::current_exe().expect("this binary"))
        .arg("--updater")
        .arg(&path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("updater starts");
    let stdout = child.stdout.take().expect("piped");
    let counter = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| l.trim().parse::<u64>().ok())
            .last()
            .unwrap_or(0)
    });
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let busy = [
        memory.host_lookup(samples, overhead),
        pooled.host_lookup(samples, overhead),
        locked_lookup(),
        memory.prog_lookup(samples, overhead),
        pooled.prog_lookup(samples, overhead),
    ];
    let elapsed = started.elapsed();
    child.kill().expect("stop the updater");
    child.wait().expect("reaped");
    let updates = counter.join().unwrap_or(0);
    let update_samples = samples / 10;
    let updates_memory = memory.prog_update(samples, overhead);
    let updates_pool = pooled.prog_update(update_samples, overhead);
    let adds_memory = memory.prog_add(samples, overhead);
    let adds_pool = pooled.prog_add(samples, overhead);
    println!();
    println!(
        "| lookup (ns, p50 / p99) | in-memory hash, idle | in-memory hash, updater running \
         | pool map, idle | pool map, other process updating it |"
    );
    println!("|---|--:|--:|--:|--:|");
    let rows = [
        ("host, `Map::lookup_into`", Some(0), 1),
        (
            "host, `PoolMap::lookup_into` (locked, the path before)",
            None,
            2,
        ),
        (
            "program (JIT), `bpf_map_lookup_elem` + load, whole run",
            Some(3),
            4,
        ),
    ];
    for (name, memory, pool) in rows {
        let (a, b) = memory.map_or(("—".into(), "—".into()), |m| {
            (cell(idle[m]), cell(busy[m]))
        });
        println!(
            "| {name} | {a} | {b} | {} | {} |",
            cell(idle[pool]),
            cell(busy[pool])
        );
    }
    println!();
    println!(
        "updater: ~{updates} durable updates in the {:.1} s of the busy column ({:.0} per second)",
        elapsed.as_secs_f64() + 0.2,
        updates as f64 / (elapsed.as_secs_f64() + 0.2)
    );
    println!();
    println!(
        "| update from a program (JIT), whole run (ns, p50 / p99) | in-memory hash | pool map |"
    );
    println!("|---|--:|--:|");
    println!(
        "| `bpf_map_update_elem` of an existing key | {} | {} |",
        cell(updates_memory),
        cell(updates_pool)
    );
    println!(
        "| `bpf_map_lookup_elem` + `lock add` on the value (the counter idiom; in place on the pool) | {} | {} |",
        cell(adds_memory),
        cell(adds_pool)
    );
    drop(locked);
    drop((memory, pooled, rt, pool));
    let _ = std::fs::remove_file(&path);
}
