//! Isolation overhead (issue 7), side by side in one run: the JIT benchmark programs and a
//! helper-heavy program (map lookups in a loop) under `none` and `sfi`, the cost of entering and
//! leaving a domain (an empty program), and 1 000 programs loaded at once (memory, mappings).
//! `cargo run --release -p moat-bench --bin bench_isolation`.

use moat::{Engine, Isolation, LoadedProgram, Runtime};
use moat_bench::jit_programs;
use std::hint::black_box;
use std::time::Instant;

/// Nanoseconds per run: the median of 7 batches of `iters` runs.
fn ns_per_run(iters: u32, run: &mut dyn FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                run();
            }
            start.elapsed().as_nanos() as f64 / f64::from(iters)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[3]
}

fn iters_for(run: &mut dyn FnMut()) -> u32 {
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed().as_millis() < 20 {
        run();
        n += 1;
    }
    (n * 5).max(10)
}

fn runtime(isolation: Isolation, input_len: usize) -> Runtime {
    let mut rt = Runtime::new();
    rt.set_engine(Engine::Jit);
    rt.set_isolation(isolation);
    rt.set_buffer_size(input_len as u64);
    rt
}

fn compare(name: &str, none: &LoadedProgram, sfi: &LoadedProgram, input: &[u8]) {
    let mut a = input.to_vec();
    let mut b = input.to_vec();
    let ra = none.run(&mut a).expect("none runs");
    let rb = sfi.run(&mut b).expect("sfi runs");
    assert_eq!(ra, rb, "{name}: same result");
    let mut run_none = || {
        black_box(none.run(black_box(&mut a)).ok());
    };
    let iters = iters_for(&mut run_none);
    // Alternate to share drift between the two.
    let (mut tn, mut ts) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        tn.push(ns_per_run(iters, &mut || {
            black_box(none.run(black_box(&mut a)).ok());
        }));
        ts.push(ns_per_run(iters, &mut || {
            black_box(sfi.run(black_box(&mut b)).ok());
        }));
    }
    tn.sort_by(f64::total_cmp);
    ts.sort_by(f64::total_cmp);
    let (n, s) = (tn[1], ts[1]);
    println!(
        "| {name} | {} | {n:.1} | {s:.1} | {:+.1} % |",
        input.len(),
        (s / n - 1.0) * 100.0
    );
}

const LOOKUPS: &str = "mov %r6, 0
mov %r7, 0
mov %r8, 0
loop:
stxw [%r10-4], %r6
lddw %r1, map_idx(0)
mov %r2, %r10
add %r2, -4
call 1
jeq %r0, 0, +2
ldxdw %r1, [%r0]
add %r7, %r1
add %r6, 1
and %r6, 255
add %r8, 1
jlt %r8, 1000, loop
mov %r0, %r7
exit";

fn lookups(isolation: Isolation) -> LoadedProgram {
    let mut rt = runtime(isolation, 0);
    rt.set_verification(moat::Verification::Off);
    let def = moat::MapDef::new(moat::MapType::Hash, 4, 8, 256);
    let map = match isolation {
        Isolation::None => std::sync::Arc::new(moat::Map::create(def).expect("map")),
        _ => {
            // The map in the program's domain, as objects get them.
            let domain = moat::Domain::new(isolation).expect("domain");
            let map = std::sync::Arc::new(moat::Map::create_in(def, domain.memory()).expect("map"));
            for k in 0u32..256 {
                map.update(&k.to_ne_bytes(), &u64::from(k).to_ne_bytes(), 0)
                    .expect("fill");
            }
            let bytes = moat_isa::assemble_bytes(LOOKUPS).expect("assembles");
            return rt
                .load_in_domain(
                    &bytes,
                    moat::ProgType::Buffer,
                    std::slice::from_ref(&map),
                    &domain,
                )
                .expect("loads");
        }
    };
    for k in 0u32..256 {
        map.update(&k.to_ne_bytes(), &u64::from(k).to_ne_bytes(), 0)
            .expect("fill");
    }
    let bytes = moat_isa::assemble_bytes(LOOKUPS).expect("assembles");
    rt.load_with_maps(&bytes, moat::ProgType::Buffer, &[map])
        .expect("loads")
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap_or_default()
        .lines()
        .count()
}

fn main() {
    println!("isolation detected here: {}", Isolation::detect());
    if let Some(why) = moat_isolate_unavailable() {
        println!("mpk: not measured ({why})");
    }
    println!("\n| program | input bytes | none ns/run | sfi ns/run | sfi overhead |");
    println!("|---|---|---|---|---|");
    for p in jit_programs() {
        let none = runtime(Isolation::None, p.input.len())
            .load_bytecode(&p.bytecode)
            .expect("loads");
        let sfi = runtime(Isolation::Sfi, p.input.len())
            .load_bytecode(&p.bytecode)
            .expect("loads");
        compare(p.name, &none, &sfi, &p.input);
    }
    compare(
        "map lookups x1000 (unverified)",
        &lookups(Isolation::None),
        &lookups(Isolation::Sfi),
        &[],
    );
    let empty = "mov %r0, 0\nexit";
    compare(
        "empty program, 0-byte input (entry/exit)",
        &runtime(Isolation::None, 0).load_asm(empty).expect("loads"),
        &runtime(Isolation::Sfi, 0).load_asm(empty).expect("loads"),
        &[],
    );
    compare(
        "empty program, 1500-byte input (entry/exit + copy)",
        &runtime(Isolation::None, 1500)
            .load_asm(empty)
            .expect("loads"),
        &runtime(Isolation::Sfi, 1500)
            .load_asm(empty)
            .expect("loads"),
        &[0u8; 1500],
    );

    println!("\n| 1 000 programs loaded (each with a 4-entry array map) | none | sfi |");
    println!("|---|---|---|");
    let mut rows = Vec::new();
    for isolation in [Isolation::None, Isolation::Sfi] {
        let (rss0, maps0) = (status_kb("VmRSS:"), mappings());
        let (vm0, t0) = (status_kb("VmSize:"), Instant::now());
        let mut rt = runtime(isolation, 8);
        rt.set_verification(moat::Verification::Off);
        let src = "lddw %r1, map_idx(0)\nmov %r0, 0\nexit";
        let bytes = moat_isa::assemble_bytes(src).expect("assembles");
        let progs: Vec<LoadedProgram> = (0..1000)
            .map(|_| {
                let def = moat::MapDef::new(moat::MapType::Array, 4, 8, 4);
                match isolation {
                    Isolation::None => {
                        let map = std::sync::Arc::new(moat::Map::create(def).expect("map"));
                        rt.load_with_maps(&bytes, moat::ProgType::Buffer, &[map])
                    }
                    _ => {
                        let d = moat::Domain::new(isolation).expect("domain");
                        let map = std::sync::Arc::new(
                            moat::Map::create_in(def, d.memory()).expect("map"),
                        );
                        rt.load_in_domain(&bytes, moat::ProgType::Buffer, &[map], &d)
                    }
                }
                .expect("loads")
            })
            .collect();
        let load_ms = t0.elapsed().as_secs_f64() * 1e3;
        let t1 = Instant::now();
        for p in &progs {
            black_box(p.run(&mut [0u8; 8]).expect("runs"));
        }
        let run_us = t1.elapsed().as_secs_f64() * 1e6 / 1000.0;
        rows.push((
            load_ms,
            run_us,
            status_kb("VmRSS:").saturating_sub(rss0),
            status_kb("VmSize:").saturating_sub(vm0),
            mappings().saturating_sub(maps0),
        ));
        drop(progs);
    }
    let (n, s) = (rows[0], rows[1]);
    println!("| load time (ms, all 1 000) | {:.1} | {:.1} |", n.0, s.0);
    println!(
        "| first run of each (µs/program, cold) | {:.2} | {:.2} |",
        n.1, s.1
    );
    println!("| resident memory added (KiB) | {} | {} |", n.2, s.2);
    println!(
        "| virtual memory added (MiB) | {} | {} |",
        n.3 / 1024,
        s.3 / 1024
    );
    println!("| mappings added | {} | {} |", n.4, s.4);
}

fn moat_isolate_unavailable() -> Option<String> {
    match moat::Domain::new(Isolation::Mpk) {
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    }
}
