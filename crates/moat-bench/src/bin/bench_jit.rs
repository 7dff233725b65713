//! The JIT benchmark of issue 6: moat's JIT, moat's interpreter, rbpf 0.4's JIT, the Linux kernel's
//! JIT (`BPF_PROG_TEST_RUN` with a repeat count) and native Rust on the same programs, measured side
//! by side in one run; then JIT compile time per 1 000 instructions and the executable memory of
//! 1 000 small programs, packed versus one mapping each. Prints markdown for BENCHMARKS.md.
//!
//! Usage: `cargo run --release -p moat-bench --bin bench_jit [MILLIS]` (default 200 ms batches).
//! As `bench_table`: engines take turns batch by batch, 9 rounds, fastest batch reported.

use moat_bench::timing::{calibrate, time_batch};
use moat_bench::{
    fnv1a_folded, internet_checksum, is_prime, jit_programs, BenchProgram, KernelEngine, MoatEngine,
};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROUNDS: usize = 9;

/// The same algorithm in Rust, on the same input.
fn native(name: &str, input: &mut [u8]) -> u64 {
    match name {
        "loop_sum" => (0..black_box(10_000u64)).fold(0, |a, b| a.wrapping_add(black_box(b))),
        "prime" => u64::from(is_prime(black_box(10_000_019))),
        "checksum" => internet_checksum(black_box(input)),
        "fnv1a" => fnv1a_folded(black_box(input)),
        "memcpy" => {
            let (src, dst) = input.split_at_mut(752);
            dst[..744].copy_from_slice(&src[..744]);
            u64::from(u32::from_le_bytes([
                input[1492],
                input[1493],
                input[1494],
                input[1495],
            ]))
        }
        "strcmp" => {
            let s = black_box(&*input);
            let (a, b) = (&s[..750], &s[750..]);
            let mut i = 0;
            loop {
                let (x, y) = (a[i], b[i]);
                if x != y {
                    break u64::from(x).wrapping_sub(u64::from(y));
                }
                if x == 0 || i + 1 >= 749 {
                    break 0;
                }
                i += 1;
            }
        }
        _ => 0,
    }
}

/// rbpf's JIT through `EbpfVmRaw` (`r1` = the input's address).
struct RbpfJit<'a> {
    vm: rbpf::EbpfVmRaw<'a>,
}

impl<'a> RbpfJit<'a> {
    fn new(program: &'a BenchProgram) -> std::io::Result<RbpfJit<'a>> {
        let mut vm = rbpf::EbpfVmRaw::new(Some(&program.bytecode))?;
        vm.jit_compile()?;
        Ok(RbpfJit { vm })
    }

    fn run(&self, input: &mut [u8]) -> u64 {
        // SAFETY: rbpf's JIT does not check memory accesses; every benchmark program only touches
        // the input, whose length (1500 bytes, or none for loop_sum/prime) is fixed in the program
        // and asserted equal to what moat's checked engines ran without error.
        unsafe { self.vm.execute_program_jit(input).expect("rbpf jit runs") }
    }
}

fn fmt_ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "n/a".into()
    }
}

fn row(program: &BenchProgram, batch: Duration, kernel_ok: bool) -> String {
    let mut jit = MoatEngine::with_engine(program, moat::Engine::Jit).expect("moat jit loads");
    let mut interp = MoatEngine::with_engine(program, moat::Engine::Interp).expect("moat loads");
    let rbpf = RbpfJit::new(program).expect("rbpf jit compiles");
    let mut rbpf_input = program.input.clone();
    let mut native_input = program.input.clone();
    assert_eq!(jit.run().expect("jit runs"), program.expected, "moat jit");
    assert_eq!(
        interp.run().expect("interp runs"),
        program.expected,
        "moat interp"
    );
    assert_eq!(rbpf.run(&mut rbpf_input), program.expected, "rbpf jit");
    assert_eq!(
        native(program.name, &mut native_input),
        program.expected,
        "native"
    );
    let kernel = kernel_ok.then(|| {
        let k = KernelEngine::new(program).expect("the kernel loads");
        let run = k.run(1).expect("kernel test run");
        assert_eq!(
            u64::from(run.retval),
            program.expected & 0xffff_ffff,
            "kernel"
        );
        k
    });
    type Runner<'r> = Box<dyn FnMut() + 'r>;
    let mut engines: Vec<(&str, Runner<'_>)> = vec![
        (
            "jit",
            Box::new(|| {
                black_box(jit.run().expect("jit"));
            }),
        ),
        (
            "interp",
            Box::new(|| {
                black_box(interp.run().expect("interp"));
            }),
        ),
        (
            "rbpf",
            Box::new(|| {
                black_box(rbpf.run(&mut rbpf_input));
            }),
        ),
        (
            "native",
            Box::new(|| {
                black_box(native(program.name, &mut native_input));
            }),
        ),
    ];
    let iters: Vec<u128> = engines
        .iter_mut()
        .map(|(_, r)| calibrate(batch, r.as_mut()))
        .collect();
    let kernel_repeat = kernel.as_ref().map(|k| {
        let probe = k.run(1000).expect("kernel test run");
        u32::try_from((batch.as_nanos() / u128::from(probe.duration_ns.max(1))).max(1))
            .unwrap_or(u32::MAX)
    });
    let mut best = vec![f64::INFINITY; engines.len()];
    let mut kernel_ns = f64::INFINITY;
    for _ in 0..ROUNDS {
        for (i, (_, run)) in engines.iter_mut().enumerate() {
            best[i] = best[i].min(time_batch(iters[i], run.as_mut()));
        }
        if let (Some(k), Some(repeat)) = (&kernel, kernel_repeat) {
            kernel_ns = kernel_ns.min(f64::from(k.run(repeat).expect("kernel").duration_ns));
        }
    }
    let (j, i, r, n) = (best[0], best[1], best[2], best[3]);
    let kernel_col = if kernel.is_some() {
        format!("{kernel_ns:.0}")
    } else {
        "n/a".into()
    };
    format!(
        "| {} | {j:.0} | {i:.0} | {r:.0} | {kernel_col} | {n:.0} | {} | {} | {} | {} |",
        program.name,
        fmt_ratio(i, j),
        fmt_ratio(r, j),
        fmt_ratio(j, kernel_ns),
        fmt_ratio(j, n),
    )
}

/// A straight-line program of about `n` instructions mixing ALU, loads, stores and branches.
fn big_program(n: usize) -> Vec<u8> {
    let mut src = String::from("mov %r0, 0\nmov %r2, 1\n");
    for i in 0..n / 8 {
        src += &format!(
            "add %r0, {i}\nmul %r2, 3\nxor %r0, %r2\nstxdw [%r10-{}], %r0\nldxdw %r3, [%r10-{}]\n\
             jgt %r3, %r2, +1\nrsh %r3, 7\nadd %r0, %r3\n",
            8 + 8 * (i % 60),
            8 + 8 * (i % 60)
        );
    }
    src += "exit\n";
    moat_isa::assemble_bytes(&src).expect("assembles")
}

/// Links and compiles `program` with nothing proven (the budget counted, every access checked).
fn compile_unverified(
    program: &moat_isa::Program,
    registry: &moat_exec::HelperRegistry,
    fallback: Arc<dyn moat_exec::ProgramRunner>,
) -> moat_jit::JitProgram {
    let linked = moat_exec::Linked::new(program, registry, &moat_exec::NoMaps).unwrap();
    moat_jit::JitProgram::new(
        Arc::new(linked),
        fallback,
        &moat_jit::ProvenAccesses::none(),
        &moat_jit::CodeOptions::new(moat_jit::Confinement::Unconfined),
    )
    .unwrap()
}

fn compile_times() -> String {
    let bytes = big_program(10_000);
    let program = moat_isa::Program::new(&bytes).expect("well formed");
    let insns = program.insns().len() as f64;
    let registry = moat_exec::HelperRegistry::new();
    let time = |f: &mut dyn FnMut()| {
        let mut best = Duration::MAX;
        for _ in 0..20 {
            let start = Instant::now();
            f();
            best = best.min(start.elapsed());
        }
        best.as_nanos() as f64 / 1000.0 / (insns / 1000.0)
    };
    let prepare = time(&mut || {
        black_box(moat_interp::Prepared::new(&program, &registry, &moat_exec::NoMaps).unwrap());
    });
    let prepared: Arc<dyn moat_exec::ProgramRunner> =
        Arc::new(moat_interp::Prepared::new(&program, &registry, &moat_exec::NoMaps).unwrap());
    let jit = time(&mut || {
        black_box(compile_unverified(&program, &registry, prepared.clone()));
    });
    // rbpf's JIT has a fixed-size code buffer: use the largest of these programs it takes.
    let (rbpf_insns, rbpf) = [2_000, 1_000, 500, 250]
        .into_iter()
        .find_map(|n| {
            let small = big_program(n);
            let fits = std::panic::catch_unwind(|| {
                let mut vm = rbpf::EbpfVmRaw::new(Some(&small)).unwrap();
                vm.jit_compile().is_ok()
            })
            .unwrap_or(false);
            fits.then(|| {
                let count = (small.len() / 8) as f64;
                let mut best = Duration::MAX;
                for _ in 0..20 {
                    let start = Instant::now();
                    let mut vm = rbpf::EbpfVmRaw::new(Some(&small)).unwrap();
                    vm.jit_compile().unwrap();
                    black_box(&vm);
                    best = best.min(start.elapsed());
                }
                (count, best.as_nanos() as f64 / 1000.0 / (count / 1000.0))
            })
        })
        .unwrap_or((0.0, f64::NAN));
    let code = compile_unverified(&program, &registry, prepared).code_len();
    format!(
        "| program of {insns} instructions | µs per 1 000 instructions |\n|---|--:|\n\
         | moat interpreter: linking + lowering (`Prepared::new`) | {prepare:.1} |\n\
         | moat JIT: linking + code generation + placement (`Linked::new` + `JitProgram::new`) | {jit:.1} |\n\
         | rbpf JIT (`EbpfVmRaw::new` + `jit_compile`, includes its verifier; {rbpf_insns} instructions, its buffer's limit) | {rbpf:.1} |\n\n\
         moat's code: {code} bytes ({:.1} bytes per instruction).\n",
        code as f64 / insns
    )
}

/// Lines of /proc/self/maps that are moat-jit's memfd chunks.
fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .map_or(0, |m| m.lines().filter(|l| l.contains("moat-jit")).count())
}

fn code_memory() -> String {
    let src = include_str!("../../programs/loop_sum.asm");
    let program = moat_isa::Program::new(&moat_isa::assemble_bytes(src).unwrap()).unwrap();
    let registry = moat_exec::HelperRegistry::new();
    let progs: Vec<moat_jit::JitProgram> = (0..1000)
        .map(|_| {
            let p = moat_interp::Prepared::new(&program, &registry, &moat_exec::NoMaps).unwrap();
            compile_unverified(&program, &registry, Arc::new(p))
        })
        .collect();
    let after = (moat_jit::code_stats(), mappings());
    let codes: Vec<Vec<u8>> = progs.iter().map(|p| p.code().to_vec()).collect();
    let each = moat_jit::codemem::one_mapping_per_program(&codes).expect("maps");
    let code_bytes: usize = codes.iter().map(Vec::len).sum();
    drop(progs);
    let freed = moat_jit::code_stats();
    format!(
        "1 000 copies of `loop_sum` ({} bytes of code each, {code_bytes} in all):\n\n\
         | strategy | mappings | bytes mapped |\n|---|--:|--:|\n\
         | moat prog pack (2 MiB memfd chunks, RW + RX views; {} bytes allocated) | {} ({} in /proc/self/maps) | {} |\n\
         | one mapping per program (mmap + mprotect) | {} | {} |\n\n\
         After dropping the 1 000 programs: {} bytes still allocated in {} chunk(s).\n",
        codes.first().map_or(0, Vec::len),
        after.0.used_bytes,
        after.0.mappings,
        after.1,
        after.0.mapped_bytes,
        each.mappings,
        each.mapped_bytes,
        freed.used_bytes,
        freed.chunks,
    )
}

fn main() {
    let millis: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let batch = Duration::from_millis(millis);
    let kernel_ok = match KernelEngine::new(&jit_programs()[0]) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("kernel skipped: {e}");
            false
        }
    };
    println!(
        "| program | moat JIT ns | moat interp ns | rbpf JIT ns | kernel JIT ns | native ns | interp / JIT | rbpf / JIT | JIT / kernel | JIT / native |"
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for program in jit_programs() {
        println!("{}", row(&program, batch, kernel_ok));
    }
    println!();
    println!("{}", compile_times());
    println!("{}", code_memory());
}
