//! Criterion benchmark of moat's maps against the Linux kernel's (issue 4): hash map lookup and update
//! from a program and from the host (1 and 2 threads), array lookup from a program, and ring-buffer
//! output throughput.
//!
//! Run with `cargo bench -p moat-bench --bench maps` (about three minutes: 1 s warm-up and 2 s of
//! measurement per benchmark are configured below; criterion's `--warm-up-time` and
//! `--measurement-time` override them). Without root (`bpf()` unusable) the kernel benchmarks are
//! skipped.
//!
//! # From a program
//!
//! Each program below is assembled once; moat loads the bytecode with the map as `map_idx(0)`
//! ([`moat::Runtime::load_with_maps`], run with [`moat::LoadedProgram::run`] on a 64-byte packet) on
//! each of its engines (`moat_interp`, and `moat_jit` where the JIT is supported),
//! the kernel loads the very same bytecode with that `lddw` rewritten to the kernel map's descriptor
//! (`BPF_PSEUDO_MAP_FD`) and runs it with `BPF_PROG_TEST_RUN` and a repeat count: the kernel's timing
//! is its own average per run (`duration`, whole nanoseconds), the syscall excluded. Every program's
//! result is checked in both before anything is timed.
//!
//! The programs are tc classifiers (`BPF_PROG_TYPE_SCHED_CLS`, moat's `SchedCls`), not XDP: an XDP
//! test run with a repeat count above 1 first swaps the program into the XDP dispatcher
//! (`bpf_prog_change_xdp`), which waits for an RCU grace period — about 16 ms of wall time per call
//! here, against 3 µs for a tc test run. Criterion sizes its samples by wall time during warm-up, so
//! XDP left it with a handful of iterations per sample, each carrying the ~0.7 µs fixed cost of a test
//! run. The programs do not read their context, so the type changes nothing else.
//!
//! * `empty`: `r0 = 0` — the per-run overhead of each runtime (moat builds the `__sk_buff` context on
//!   every run; the kernel builds the skb once per test run and repeats only the program).
//! * `hash_lookup` / `hash_update` / `array_lookup`: one `bpf_map_lookup_elem` (or
//!   `bpf_map_update_elem` with `BPF_ANY` of an existing key) per run.
//! * `…_x100`: a counted loop of 100 lookups (updates) of keys 0..99 per run, so the per-operation cost
//!   shows without the per-run overhead; criterion's throughput is in operations.
//! * `…_2threads`: two threads run the program at once (moat: two threads calling `run`; kernel: two
//!   threads each in `BPF_PROG_TEST_RUN`); the time is the slower thread's time per run. Both threads
//!   use key 7, so updates contend for the same element (the kernel's bucket lock, moat's map lock).
//!
//! # From the host
//!
//! `host_hash_lookup` / `host_hash_update`: moat's [`moat::Map::lookup_into`] / [`moat::Map::update`]
//! against the kernel map through the syscalls (`moat_kernel::Map::lookup` / `update`), with 1 and 2
//! threads (each thread does every iteration on its own half of the keys; the time is the slower
//! thread's time per operation, so perfect scaling shows as the 1-thread figure).
//!
//! # Ring buffer
//!
//! `ringbuf_output`: a program copying 64 bytes from its stack with `bpf_ringbuf_output` per run.
//! `moat_<engine>_consumer`: a host thread drains the ring with [`moat::Map::ringbuf_consume`] while
//! the program runs, yielding when the ring is empty (outputs refused because the ring was full are
//! counted and printed as drops). `moat_<engine>` and `kernel`: no consumer, as the kernel's ring
//! cannot be read without `mmap`; the ring (64 MiB) is replaced outside the timing before it can fill,
//! so every output succeeds and both measure the producer's cost.

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use moat::{Engine, LoadedProgram, Map, MapDef, MapType, ProgType, Runtime};
use moat_isa::{Insn, LddwKind};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Entries of the hash and array maps; keys `0..KEYS` are present, value = key as `u64`.
const MAX_ENTRIES: u32 = 1024;
/// Present keys.
const KEYS: u32 = 1000;
/// Size of each ring-buffer record's payload.
const RECORD: usize = 64;
/// Ring size for the runs without a consumer (holds 932 067 records of 64 + 8 bytes).
const BIG_RING: u32 = 64 << 20;
/// Ring size for moat with a consumer.
const CONSUMED_RING: u32 = 4 << 20;
/// The packet both runtimes run on (the programs do not read it).
const PACKET_LEN: usize = 64;

/// `r0 = 0`.
const EMPTY: &str = "mov %r0, 0\nexit";

/// One lookup of key 7; returns 1 if found.
const LOOKUP: &str = "
    stw [%r10-4], 7
    lddw %r1, map_idx(0)
    mov %r2, %r10
    add %r2, -4
    call 1
    mov %r1, %r0
    mov %r0, 0
    jeq %r1, 0, out
    mov %r0, 1
out:
    exit";

/// Lookups of keys 0..99; returns 100 if all were found. A miss leaves at once (rather than being
/// counted) so that verifiers explore one path per iteration, not one per combination of outcomes.
const LOOKUP_X100: &str = "
    mov %r6, 0
loop:
    stxw [%r10-4], %r6
    lddw %r1, map_idx(0)
    mov %r2, %r10
    add %r2, -4
    call 1
    jeq %r0, 0, miss
    add %r6, 1
    jlt %r6, 100, loop
    mov %r0, %r6
    exit
miss:
    mov %r0, 0
    exit";

/// One update of key 7 to 42 (`BPF_ANY`); returns the helper's result (0).
const UPDATE: &str = "
    stw [%r10-4], 7
    stdw [%r10-16], 42
    lddw %r1, map_idx(0)
    mov %r2, %r10
    add %r2, -4
    mov %r3, %r10
    add %r3, -16
    mov %r4, 0
    call 2
    exit";

/// Updates of keys 0..99 (value = key); returns 0, or the first failure's error.
const UPDATE_X100: &str = "
    mov %r6, 0
loop:
    stxw [%r10-4], %r6
    stxdw [%r10-16], %r6
    lddw %r1, map_idx(0)
    mov %r2, %r10
    add %r2, -4
    mov %r3, %r10
    add %r3, -16
    mov %r4, 0
    call 2
    jne %r0, 0, fail
    add %r6, 1
    jlt %r6, 100, loop
fail:
    exit";

/// `bpf_ringbuf_output` of 64 bytes from the stack; returns its result (0, or `-EAGAIN` when full).
const RINGBUF_OUTPUT: &str = "
    stdw [%r10-64], 1
    stdw [%r10-56], 2
    stdw [%r10-48], 3
    stdw [%r10-40], 4
    stdw [%r10-32], 5
    stdw [%r10-24], 6
    stdw [%r10-16], 7
    stdw [%r10-8], 8
    lddw %r1, map_idx(0)
    mov %r2, %r10
    add %r2, -64
    mov %r3, 64
    mov %r4, 0
    call 130
    exit";

fn assemble(source: &str) -> Vec<u8> {
    moat_isa::assemble_bytes(source).unwrap_or_else(|e| panic!("benchmark program: {e}"))
}

/// The bytecode with `map_idx(0)` turned into `BPF_PSEUDO_MAP_FD` of `fd`.
fn with_map_fd(bytecode: &[u8], fd: i32) -> Vec<u8> {
    let insns: Vec<Insn> = moat_isa::decode(bytecode)
        .expect("benchmark programs decode")
        .into_iter()
        .map(|(_, insn)| match insn {
            Insn::LoadImm64 {
                dst,
                kind: LddwKind::MapIdx,
                imm: 0,
                next_imm,
            } => Insn::LoadImm64 {
                dst,
                kind: LddwKind::MapFd,
                imm: fd,
                next_imm,
            },
            other => other,
        })
        .collect();
    moat_isa::encode(&insns)
}

fn key(k: u32) -> [u8; 4] {
    k.to_ne_bytes()
}

fn value(v: u64) -> [u8; 8] {
    v.to_ne_bytes()
}

/// A moat map of `map_type` (u32 keys, u64 values) with keys `0..KEYS` set.
fn moat_map(map_type: MapType) -> Arc<Map> {
    let map = Map::create(MapDef::new(map_type, 4, 8, MAX_ENTRIES)).expect("moat map");
    for k in 0..KEYS {
        map.update(&key(k), &value(u64::from(k)), moat::BPF_ANY)
            .expect("moat fill");
    }
    Arc::new(map)
}

/// The kernel's counterpart of [`moat_map`].
fn kernel_map(map_type: u32) -> moat_kernel::Map {
    let map = moat_kernel::create_map(map_type, 4, 8, MAX_ENTRIES, 0).expect("kernel map");
    for k in 0..KEYS {
        map.update(&key(k), &value(u64::from(k)), moat_kernel::BPF_ANY)
            .expect("kernel fill");
    }
    map
}

/// moat's engines on this machine, with their benchmark names: the interpreter, and the JIT where
/// it is supported.
fn engines() -> Vec<(&'static str, Engine)> {
    let mut engines = vec![("moat_interp", Engine::Interp)];
    if Engine::Jit.is_supported() {
        engines.push(("moat_jit", Engine::Jit));
    }
    engines
}

/// A runtime whose programs run with `engine`.
fn runtime(engine: Engine) -> Runtime {
    let mut rt = Runtime::new();
    rt.set_engine(engine);
    rt
}

fn moat_prog(rt: &Runtime, bytecode: &[u8], map: Option<&Arc<Map>>) -> LoadedProgram {
    let maps: Vec<Arc<Map>> = map.into_iter().cloned().collect();
    let prog = rt
        .load_with_maps(bytecode, ProgType::SchedCls, &maps)
        .unwrap_or_else(|e| panic!("moat loads the benchmark program: {e}"));
    assert_eq!(
        prog.engine(),
        rt.engine(),
        "the program runs on the engine asked for"
    );
    prog
}

fn kernel_prog(bytecode: &[u8], map: Option<&moat_kernel::Map>) -> moat_kernel::Program {
    let bytecode = match map {
        Some(map) => with_map_fd(bytecode, map.fd()),
        None => bytecode.to_vec(),
    };
    moat_kernel::load_program(
        &bytecode,
        &moat_kernel::LoadOptions::new(moat_kernel::ProgType::SchedCls),
    )
    .unwrap_or_else(|e| panic!("the kernel loads the benchmark program: {e}"))
}

/// One kernel test run of `repeat` runs: the kernel's own time for them.
fn kernel_time(prog: &moat_kernel::Program, packet: &[u8], repeat: u64) -> Duration {
    let repeat32 = u32::try_from(repeat).unwrap_or(u32::MAX);
    let run = prog
        .test_run(packet, None, repeat32)
        .expect("kernel test run");
    Duration::from_nanos(u64::from(run.duration_ns).saturating_mul(repeat))
}

/// Runs `work(thread, iters)` on two threads started together; the slower thread's time.
fn two_threads(iters: u64, work: impl Fn(usize, u64) -> Duration + Sync) -> Duration {
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let (barrier, work) = (&barrier, &work);
                s.spawn(move || {
                    barrier.wait();
                    work(t, iters)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("benchmark thread"))
            .max()
            .unwrap_or_default()
    })
}

/// Times `iters` runs of a moat program.
fn moat_time(prog: &LoadedProgram, iters: u64) -> Duration {
    let mut packet = [0u8; PACKET_LEN];
    let start = Instant::now();
    for _ in 0..iters {
        black_box(prog.run(&mut packet).expect("moat run"));
    }
    start.elapsed()
}

/// A program benchmark: moat and (if available) the kernel on their own map of `map_type`.
struct ProgBench {
    group: &'static str,
    source: &'static str,
    map_type: Option<(MapType, u32)>,
    expected: u64,
    ops_per_run: u64,
    threads: usize,
}

fn prog_bench(c: &mut Criterion, kernel: bool, bench: &ProgBench) {
    let bytecode = assemble(bench.source);
    let moat_map = bench.map_type.map(|(t, _)| moat_map(t));
    let mut packet = [0u8; PACKET_LEN];
    let progs: Vec<(&str, LoadedProgram)> = engines()
        .into_iter()
        .map(|(name, engine)| {
            let prog = moat_prog(&runtime(engine), &bytecode, moat_map.as_ref());
            assert_eq!(
                prog.run(&mut packet).expect("moat run"),
                bench.expected,
                "{}: {name}",
                bench.group
            );
            (name, prog)
        })
        .collect();
    let kernel_map = bench
        .map_type
        .filter(|_| kernel)
        .map(|(_, t)| kernel_map(t));
    let kprog = kernel.then(|| kernel_prog(&bytecode, kernel_map.as_ref()));
    if let Some(kprog) = &kprog {
        let run = kprog.test_run(&packet, None, 1).expect("kernel test run");
        assert_eq!(
            u64::from(run.retval),
            bench.expected & 0xffff_ffff,
            "{}: kernel",
            bench.group
        );
    }

    let mut group = c.benchmark_group(bench.group);
    group.throughput(Throughput::Elements(bench.ops_per_run));
    let threads = bench.threads;
    for (name, prog) in &progs {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| match threads {
                1 => moat_time(prog, iters),
                _ => two_threads(iters, |_, n| moat_time(prog, n)),
            })
        });
    }
    if let Some(kprog) = &kprog {
        group.bench_function("kernel", |b| {
            b.iter_custom(|iters| match threads {
                1 => kernel_time(kprog, &packet, iters),
                _ => two_threads(iters, |_, n| kernel_time(kprog, &packet, n)),
            })
        });
    }
    group.finish();
}

fn programs(c: &mut Criterion, kernel: bool) {
    let hash = Some((MapType::Hash, moat_kernel::MapType::Hash.as_u32()));
    let array = Some((MapType::Array, moat_kernel::MapType::Array.as_u32()));
    let benches = [
        ("empty", EMPTY, None, 0, 1, 1),
        ("hash_lookup", LOOKUP, hash, 1, 1, 1),
        ("hash_lookup_x100", LOOKUP_X100, hash, 100, 100, 1),
        ("hash_lookup_2threads", LOOKUP, hash, 1, 1, 2),
        ("hash_update", UPDATE, hash, 0, 1, 1),
        ("hash_update_x100", UPDATE_X100, hash, 0, 100, 1),
        ("hash_update_2threads", UPDATE, hash, 0, 1, 2),
        ("array_lookup", LOOKUP, array, 1, 1, 1),
        ("array_lookup_x100", LOOKUP_X100, array, 100, 100, 1),
    ];
    for (group, source, map_type, expected, ops_per_run, threads) in benches {
        prog_bench(
            c,
            kernel,
            &ProgBench {
                group,
                source,
                map_type,
                expected,
                ops_per_run,
                threads,
            },
        );
    }
}

/// The keys thread `t` of `threads` uses: every `threads`-th present key.
fn thread_keys(t: usize, threads: usize) -> Vec<[u8; 4]> {
    (0..KEYS)
        .filter(|k| *k as usize % threads == t)
        .map(key)
        .collect()
}

fn host(c: &mut Criterion, kernel: bool) {
    let moat = moat_map(MapType::Hash);
    let kmap = kernel.then(|| kernel_map(moat_kernel::MapType::Hash.as_u32()));

    let moat_lookup = |t: usize, threads: usize, iters: u64| {
        let keys = thread_keys(t, threads);
        let mut out = [0u8; 8];
        let start = Instant::now();
        for k in keys.iter().cycle().take(iters as usize) {
            moat.lookup_into(k, &mut out).expect("moat lookup");
            black_box(&out);
        }
        start.elapsed()
    };
    let moat_update = |t: usize, threads: usize, iters: u64| {
        let keys = thread_keys(t, threads);
        let v = value(42);
        let start = Instant::now();
        for k in keys.iter().cycle().take(iters as usize) {
            moat.update(k, &v, moat::BPF_ANY).expect("moat update");
        }
        start.elapsed()
    };
    let kernel_lookup = |t: usize, threads: usize, iters: u64| {
        let map = kmap.as_ref().expect("kernel map");
        let keys = thread_keys(t, threads);
        let start = Instant::now();
        for k in keys.iter().cycle().take(iters as usize) {
            black_box(map.lookup(k).expect("kernel lookup"));
        }
        start.elapsed()
    };
    let kernel_update = |t: usize, threads: usize, iters: u64| {
        let map = kmap.as_ref().expect("kernel map");
        let keys = thread_keys(t, threads);
        let v = value(42);
        let start = Instant::now();
        for k in keys.iter().cycle().take(iters as usize) {
            map.update(k, &v, moat_kernel::BPF_ANY)
                .expect("kernel update");
        }
        start.elapsed()
    };

    type Work<'a> = &'a (dyn Fn(usize, usize, u64) -> Duration + Sync);
    let groups: [(&str, Work<'_>, Work<'_>); 2] = [
        ("host_hash_lookup", &moat_lookup, &kernel_lookup),
        ("host_hash_update", &moat_update, &kernel_update),
    ];
    for (name, moat_work, kernel_work) in groups {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(1));
        for threads in [1, 2] {
            let mut engines = vec![("moat", moat_work)];
            if kernel {
                engines.push(("kernel", kernel_work));
            }
            for (engine, work) in engines {
                group.bench_with_input(
                    BenchmarkId::new(engine, format!("{threads}thread")),
                    &threads,
                    |b, &threads| {
                        b.iter_custom(|iters| {
                            if threads == 1 {
                                work(0, 1, iters)
                            } else {
                                two_threads(iters, |t, n| work(t, 2, n))
                            }
                        })
                    },
                );
            }
        }
        group.finish();
    }
}

/// A ring buffer with the output program bound to it, replaced before it can overflow.
struct Ring<M, P> {
    map: M,
    prog: P,
    /// Records written into this ring so far.
    used: u64,
}

/// How many records of [`RECORD`] bytes (plus an 8-byte header) fit in a ring of `size` bytes.
fn ring_capacity(size: u32) -> u64 {
    u64::from(size) / (RECORD as u64 + 8)
}

fn moat_ring(rt: &Runtime, bytecode: &[u8], size: u32) -> Ring<Arc<Map>, LoadedProgram> {
    let map =
        Arc::new(Map::create(MapDef::new(MapType::RingBuf, 0, 0, size)).expect("moat ring buffer"));
    let prog = moat_prog(rt, bytecode, Some(&map));
    Ring { map, prog, used: 0 }
}

fn kernel_ring(bytecode: &[u8]) -> Ring<moat_kernel::Map, moat_kernel::Program> {
    let map = moat_kernel::create_map(moat_kernel::MapType::RingBuf, 0, 0, BIG_RING, 0)
        .expect("kernel ring buffer");
    let prog = kernel_prog(bytecode, Some(&map));
    Ring { map, prog, used: 0 }
}

/// Times `iters` outputs with a host thread draining the ring meanwhile; adds the runs and the
/// outputs refused because the ring was full to `tally`.
fn moat_consumed(
    ring: &Ring<Arc<Map>, LoadedProgram>,
    iters: u64,
    tally: &[AtomicU64; 2],
) -> Duration {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| loop {
            let stopping = stop.load(Ordering::Acquire);
            let n = ring
                .map
                .ringbuf_consume(&mut |r| {
                    black_box(r);
                })
                .expect("consume");
            if n == 0 {
                if stopping {
                    break;
                }
                // A real consumer would sleep in epoll here; yielding keeps the empty polls from
                // hogging the core the producer may need.
                std::thread::yield_now();
            }
        });
        let mut packet = [0u8; PACKET_LEN];
        let mut dropped = 0;
        let start = Instant::now();
        for _ in 0..iters {
            if ring.prog.run(&mut packet).expect("moat run") != 0 {
                dropped += 1;
            }
        }
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Release);
        tally[0].fetch_add(iters, Ordering::Relaxed);
        tally[1].fetch_add(dropped, Ordering::Relaxed);
        elapsed
    })
}

/// Times `iters` outputs without a consumer, replacing the ring (outside the timing) before it fills.
fn moat_unconsumed(
    rt: &Runtime,
    bytecode: &[u8],
    ring: &mut Ring<Arc<Map>, LoadedProgram>,
    iters: u64,
) -> Duration {
    let capacity = ring_capacity(BIG_RING);
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        if ring.used >= capacity {
            *ring = moat_ring(rt, bytecode, BIG_RING);
        }
        let n = left.min(capacity - ring.used);
        let mut packet = [0u8; PACKET_LEN];
        let mut failed = 0u64;
        let start = Instant::now();
        for _ in 0..n {
            if ring.prog.run(&mut packet).expect("moat run") != 0 {
                failed += 1;
            }
        }
        total += start.elapsed();
        assert_eq!(failed, 0, "the ring had room");
        ring.used += n;
        left -= n;
    }
    total
}

/// The kernel's counterpart of [`moat_unconsumed`], timed by the kernel.
fn kernel_unconsumed(
    bytecode: &[u8],
    ring: &mut Ring<moat_kernel::Map, moat_kernel::Program>,
    iters: u64,
) -> Duration {
    let capacity = ring_capacity(BIG_RING);
    let packet = [0u8; PACKET_LEN];
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        if ring.used >= capacity {
            *ring = kernel_ring(bytecode);
        }
        let n = left.min(capacity - ring.used);
        let repeat = u32::try_from(n).unwrap_or(u32::MAX);
        let run = ring
            .prog
            .test_run(&packet, None, repeat)
            .expect("kernel test run");
        assert_eq!(run.retval, 0, "the ring had room");
        total += Duration::from_nanos(u64::from(run.duration_ns) * u64::from(repeat));
        ring.used += u64::from(repeat);
        left -= u64::from(repeat);
    }
    total
}

fn ringbuf(c: &mut Criterion, kernel: bool) {
    let bytecode = assemble(RINGBUF_OUTPUT);
    let mut packet = [0u8; PACKET_LEN];
    for (name, engine) in engines() {
        let ring = moat_ring(&runtime(engine), &bytecode, CONSUMED_RING);
        assert_eq!(ring.prog.run(&mut packet).expect("moat run"), 0);
        let mut records = Vec::new();
        ring.map
            .ringbuf_consume(&mut |r| records.push(r.to_vec()))
            .expect("consume");
        let expected: Vec<u8> = (1u64..=8).flat_map(u64::to_ne_bytes).collect();
        assert_eq!(records, vec![expected], "{name}: the record");
    }
    if kernel {
        let ring = kernel_ring(&bytecode);
        let run = ring.prog.test_run(&packet, None, 1).expect("test run");
        assert_eq!(run.retval, 0, "kernel ringbuf_output");
    }

    let mut group = c.benchmark_group("ringbuf_output_64B");
    group.throughput(Throughput::Elements(1));
    for (name, engine) in engines() {
        let rt = runtime(engine);
        let tally = [AtomicU64::new(0), AtomicU64::new(0)];
        let consumer = format!("{name}_consumer");
        group.bench_function(&consumer, |b| {
            let ring = moat_ring(&rt, &bytecode, CONSUMED_RING);
            b.iter_custom(|iters| moat_consumed(&ring, iters, &tally))
        });
        eprintln!(
            "ringbuf_output_64B/{consumer}: {} of {} outputs dropped (ring full)",
            tally[1].load(Ordering::Relaxed),
            tally[0].load(Ordering::Relaxed)
        );
        group.bench_function(name, |b| {
            let mut ring = moat_ring(&rt, &bytecode, BIG_RING);
            b.iter_custom(|iters| moat_unconsumed(&rt, &bytecode, &mut ring, iters))
        });
    }
    if kernel {
        group.bench_function("kernel", |b| {
            let mut ring = kernel_ring(&bytecode);
            b.iter_custom(|iters| kernel_unconsumed(&bytecode, &mut ring, iters))
        });
    }
    group.finish();
}

fn maps(c: &mut Criterion) {
    let kernel = match moat_kernel::available() {
        Ok(()) => true,
        Err(reason) => {
            eprintln!("kernel skipped: {reason}");
            false
        }
    };
    programs(c, kernel);
    host(c, kernel);
    ringbuf(c, kernel);
}

/// Holds the undocumented `pub fn` that `criterion_group!` generates, out of `missing_docs`' reach.
mod group {
    criterion::criterion_group! {
        name = benches;
        config = criterion::Criterion::default()
            .warm_up_time(std::time::Duration::from_secs(1))
            .measurement_time(std::time::Duration::from_secs(2));
        targets = super::maps
    }
}

criterion_main!(group::benches);
