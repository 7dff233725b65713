//! Isolation overhead (issue 7), side by side in one run: the JIT benchmark programs and a
//! helper-heavy program (map lookups in a loop) under `none`, `sfi` and, where the CPU has
//! protection keys, `mpk`; the cost of entering and leaving a domain (an empty program); under `mpk`
//! the cost of a domain switch with and without a layer-2 key reassignment; and 1 000 programs
//! loaded at once (memory, mappings).
//! `cargo run --release -p moat-bench --bin bench_isolation`; on a CPU without PKU, the `mpk`
//! columns come from the emulated guest: `cargo test --release -p moat --test mpk_guest -- --ignored`.

use moat::{Engine, Isolation, LoadedProgram, Runtime};
use moat_bench::jit_programs;
use moat_bench::timing::{calibrate, median_ns};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Nanoseconds per run: the median of 7 batches of `iters` runs.
fn ns_per_run(iters: u128, run: &mut dyn FnMut()) -> f64 {
    median_ns(iters, 7, run)
}

/// Runs per batch: about 100 ms worth.
fn iters_for(run: &mut dyn FnMut()) -> u128 {
    calibrate(Duration::from_millis(100), run)
}

fn runtime(isolation: Isolation, input_len: usize) -> Runtime {
    let mut rt = Runtime::new();
    rt.set_engine(Engine::Jit);
    rt.set_isolation(isolation);
    rt.set_buffer_size(input_len as u64);
    rt
}

/// One table row: the same program under each isolation (the first is the baseline), timed in
/// alternated batches so that drift is shared.
fn compare(name: &str, progs: &[LoadedProgram], input: &[u8]) {
    let mut inputs: Vec<Vec<u8>> = progs.iter().map(|_| input.to_vec()).collect();
    let results: Vec<u64> = progs
        .iter()
        .zip(&mut inputs)
        .map(|(p, i)| p.run(i).expect("runs"))
        .collect();
    assert!(
        results.windows(2).all(|w| w[0] == w[1]),
        "{name}: same result"
    );
    let mut runs: Vec<_> = progs
        .iter()
        .zip(&mut inputs)
        .map(|(p, i)| {
            move || {
                black_box(p.run(black_box(i)).ok());
            }
        })
        .collect();
    let mut columns: Vec<&mut dyn FnMut()> =
        runs.iter_mut().map(|r| r as &mut dyn FnMut()).collect();
    time_row(name, input.len(), &mut columns);
}

/// As [`compare`], the isolated programs running on input placed in their domains.
fn compare_placed(name: &str, progs: &[LoadedProgram], input: &[u8]) {
    let mut baseline = input.to_vec();
    let want = progs[0].run(&mut baseline).expect("runs");
    for p in &progs[1..] {
        let (got, ()) = p
            .run_placed(input.len(), |area| area.copy_from_slice(input), |_| ())
            .expect("runs");
        assert_eq!(got, want, "{name}: same result");
    }
    let mut base = || {
        black_box(progs[0].run(black_box(&mut baseline)).ok());
    };
    let mut placed: Vec<_> = progs[1..]
        .iter()
        .map(|p| {
            move || {
                black_box(p.run_placed(input.len(), |_| (), |_| ()).ok());
            }
        })
        .collect();
    let mut columns: Vec<&mut dyn FnMut()> = std::iter::once(&mut base as &mut dyn FnMut())
        .chain(placed.iter_mut().map(|r| r as &mut dyn FnMut()))
        .collect();
    time_row(name, input.len(), &mut columns);
}

/// Times each column (one run of one program; the first is the baseline) in alternated batches so
/// that drift is shared, and prints the row.
fn time_row(name: &str, input_len: usize, columns: &mut [&mut dyn FnMut()]) {
    let iters = iters_for(columns[0]);
    let mut times: Vec<Vec<f64>> = columns.iter().map(|_| Vec::new()).collect();
    for _ in 0..3 {
        for (column, t) in columns.iter_mut().zip(&mut times) {
            t.push(ns_per_run(iters, *column));
        }
    }
    print_row(name, input_len, &mut times);
}

/// Prints a table row: the median of each column's samples, then each column's overhead over the
/// first.
fn print_row(name: &str, input_len: usize, times: &mut [Vec<f64>]) {
    let medians: Vec<f64> = times
        .iter_mut()
        .map(|t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect();
    let mut row = format!("| {name} | {input_len} |");
    for m in &medians {
        row.push_str(&format!(" {m:.1} |"));
    }
    for m in &medians[1..] {
        row.push_str(&format!(" {:+.1} % |", (m / medians[0] - 1.0) * 100.0));
    }
    println!("{row}");
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
    let mut modes = vec![Isolation::None, Isolation::Sfi];
    match moat::mpk::unavailable() {
        Some(why) => println!("mpk: not measured here ({why})"),
        None => modes.push(Isolation::Mpk),
    }
    let names: Vec<&str> = modes.iter().map(|m| m.name()).collect();
    let mut header = String::from("| program | input bytes |");
    for n in &names {
        header.push_str(&format!(" {n} ns/run |"));
    }
    for n in &names[1..] {
        header.push_str(&format!(" {n} overhead |"));
    }
    println!("\n{header}");
    println!("|{}", "---|".repeat(2 + 2 * names.len() - 1));
    let load_each = |bytecode: &[u8], len: usize| -> Vec<LoadedProgram> {
        modes
            .iter()
            .map(|&m| runtime(m, len).load_bytecode(bytecode).expect("loads"))
            .collect()
    };
    for p in jit_programs() {
        compare(p.name, &load_each(&p.bytecode, p.input.len()), &p.input);
    }
    // The same programs with the host writing the input straight into the domain
    // (`LoadedProgram::run_placed`): no copy in or out. The input is placed once; the programs only
    // read it.
    for p in jit_programs().into_iter().filter(|p| !p.input.is_empty()) {
        let progs = load_each(&p.bytecode, p.input.len());
        compare_placed(&format!("{} (input placed)", p.name), &progs, &p.input);
    }
    let lookup_progs: Vec<LoadedProgram> = modes.iter().map(|&m| lookups(m)).collect();
    compare("map lookups x1000 (unverified)", &lookup_progs, &[]);
    let empty = "mov %r0, 0\nexit";
    for len in [0usize, 1500] {
        let progs: Vec<LoadedProgram> = modes
            .iter()
            .map(|&m| runtime(m, len).load_asm(empty).expect("loads"))
            .collect();
        let name = if len == 0 {
            "empty program, 0-byte input (entry/exit)"
        } else {
            "empty program, 1500-byte input (entry/exit + copy)"
        };
        compare(name, &progs, &vec![0u8; len]);
    }
    if modes.contains(&Isolation::Mpk) {
        key_switches(empty);
    }
    audit_cost(&lookup_progs[0]);

    let mut header = String::from("| 1 000 programs loaded (each with a 4-entry array map) |");
    for n in &names {
        header.push_str(&format!(" {n} |"));
    }
    println!("\n{header}");
    println!("|{}", "---|".repeat(1 + names.len()));
    let mut rows = Vec::new();
    for &isolation in &modes {
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
        rows.push(Footprint {
            load_ms,
            run_us,
            rss_kb: status_kb("VmRSS:").saturating_sub(rss0),
            vm_kb: status_kb("VmSize:").saturating_sub(vm0),
            mappings: mappings().saturating_sub(maps0),
        });
        drop(progs);
    }
    let line = |label: &str, cell: &dyn Fn(&Footprint) -> String| {
        let mut row = format!("| {label} |");
        for r in &rows {
            row.push_str(&format!(" {} |", cell(r)));
        }
        println!("{row}");
    };
    line("load time (ms, all 1 000)", &|r| {
        format!("{:.1}", r.load_ms)
    });
    line("first run of each (µs/program, cold)", &|r| {
        format!("{:.2}", r.run_us)
    });
    line("resident memory added (KiB)", &|r| r.rss_kb.to_string());
    line("virtual memory added (MiB)", &|r| {
        (r.vm_kb / 1024).to_string()
    });
    line("mappings added", &|r| r.mappings.to_string());
}

/// What 1 000 loaded programs cost under one isolation.
struct Footprint {
    load_ms: f64,
    run_us: f64,
    rss_kb: u64,
    vm_kb: u64,
    mappings: usize,
}

/// Dynamic Parameter Auditing of one `bpf_map_lookup_elem` call, against the whole call: the
/// audits are the map-handle decode (tag, index, type: a few compares) and the check of the key
/// pointer against the run's regions, which is measured here with as many regions as the lookup
/// loop's runs have (context, stack window, the map's storage, helper scratch).
fn audit_cost(lookups_none: &LoadedProgram) {
    let mut keys = vec![0u8; 4096];
    let mut map = moat_exec::MemoryMap::new();
    let base = keys.as_mut_ptr() as u64;
    for i in 0..4u64 {
        // SAFETY: `check` below only compares addresses; nothing is read or written through the map,
        // and `keys` outlives it.
        unsafe {
            map.add_raw(moat_exec::Region {
                start: base + i * 1024,
                len: 1024,
                writable: i != 0,
            })
        };
    }
    let time_check = |key: u64| {
        let mut check = || {
            black_box(map.check(black_box(key), black_box(4), false));
        };
        let iters = iters_for(&mut check) * 100;
        ns_per_run(iters, &mut check)
    };
    // Keys usually live on the stack, which `check` tests first (one compare); the worst case is
    // a key in the last region.
    let first = time_check(base + 8);
    let last = time_check(base + 3 * 1024 + 8);
    let mut input = Vec::new();
    let mut run = || {
        black_box(lookups_none.run(black_box(&mut input)).ok());
    };
    let per_lookup = ns_per_run(iters_for(&mut run), &mut run) / 1000.0;
    println!("\n| Dynamic Parameter Auditing (one bpf_map_lookup_elem) | ns |");
    println!("|---|---|");
    println!("| key-pointer check, first region hit (a key on the stack) | {first:.2} |");
    println!("| key-pointer check, last of 4 regions | {last:.2} |");
    println!("| whole lookup, from the loop above (`none`) | {per_lookup:.1} |");
    println!(
        "| audit share of a lookup (first region .. last region) | {:.1} .. {:.1} % |",
        first / per_lookup * 100.0,
        last / per_lookup * 100.0
    );
}

/// Under `mpk`: an empty program's run when its domain keeps its hardware key, and when every run
/// must take a key from another domain (round robin over one domain more than there are keys).
fn key_switches(empty: &str) {
    let rt = runtime(Isolation::Mpk, 0);
    let keys = moat::mpk::key_stats().hardware_keys;
    let progs: Vec<LoadedProgram> = (0..=keys)
        .map(|_| rt.load_asm(empty).expect("loads"))
        .collect();
    let mut one = || {
        black_box(progs[0].run(&mut []).ok());
    };
    let iters = iters_for(&mut one);
    let held = ns_per_run(iters, &mut one);
    let before = moat::mpk::key_stats();
    let mut next = 0;
    let rotating = ns_per_run(iters, &mut || {
        black_box(progs[next].run(&mut []).ok());
        next = (next + 1) % progs.len();
    });
    let after = moat::mpk::key_stats();
    let per_run = (after.reassignments - before.reassignments) as f64
        / (after.activations - before.activations) as f64;
    println!("\n| mpk domain switch ({keys} hardware keys) | ns/run | reassignments/run |");
    println!("|---|---|---|");
    println!("| empty program, domain keeps its key | {held:.1} | 0 |");
    println!(
        "| empty program, round robin over {} domains (key taken from another domain each run) | {rotating:.1} | {per_run:.2} |",
        progs.len()
    );
    println!(
        "| cost of one reassignment (difference) | {:.1} | |",
        (rotating - held) / per_run.max(1e-9)
    );
}
