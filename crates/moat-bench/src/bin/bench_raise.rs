//! The loop-raising benchmark of issue 16: memory loops (copy, fill, compare, checksum, find,
//! reductions) on moat's JIT with raising (the default) and without (`--no-raise`), rbpf 0.4's JIT,
//! the Linux kernel's JIT (`BPF_PROG_TEST_RUN`) and the same loops written in Rust the way C would
//! write them (`native`: rustc/LLVM `-O3`, the repository's only native harness), measured side by
//! side in one run; then the time synthesis takes per raised loop, and the cost of looking for
//! loops in a program of 10 000 instructions with none. Prints markdown for BENCHMARKS.md.
//!
//! Usage: `cargo run --release -p moat-bench --bin bench_raise [MILLIS]` (default 200 ms batches).
//! As `bench_jit`: engines take turns batch by batch, 9 rounds, fastest batch reported.

use moat_bench::timing::{calibrate, time_batch};
use moat_bench::{internet_checksum, packet, BenchProgram, KernelEngine};
use std::hint::black_box;
use std::time::{Duration, Instant};

const ROUNDS: usize = 9;

/// 1500 bytes: letters repeating every 750 bytes (so the two halves compare equal), no zero and no
/// '/' before the ones each program plants.
fn letters() -> Vec<u8> {
    (0..1500).map(|i| b'a' + (i % 750 % 26) as u8).collect()
}

/// The benchmark's programs, each with its input; the expected result is what moat's interpreter
/// returns (every engine is checked against it).
fn programs() -> Vec<BenchProgram> {
    let program = |name, source: &'static str, input: Vec<u8>| BenchProgram {
        name,
        source,
        bytecode: moat_isa::assemble_bytes(source)
            .unwrap_or_else(|e| panic!("programs/{name}: {e}")),
        input,
        expected: 0,
    };
    let mut strcmp = letters();
    strcmp[700] = 0;
    strcmp[1450] = 0;
    let mut memcmp = letters();
    memcmp[1450] = b'#';
    let mut strlen = letters();
    strlen[1400] = 0;
    let mut memchr = letters();
    memchr[1400] = b'/';
    vec![
        program(
            "no loop (`mov r0, 0; exit`)",
            "mov %r0, 0\nexit\n",
            packet(),
        ),
        program(
            "copy (8 bytes a step)",
            include_str!("../../programs/memcpy.asm"),
            packet(),
        ),
        program(
            "copy (a byte a step)",
            include_str!("../../programs/raise/copy_bytes.asm"),
            packet(),
        ),
        program(
            "fill",
            include_str!("../../programs/raise/fill.asm"),
            packet(),
        ),
        program("strcmp", include_str!("../../programs/strcmp.asm"), strcmp),
        program(
            "memcmp",
            include_str!("../../programs/raise/memcmp.asm"),
            memcmp,
        ),
        program(
            "checksum",
            include_str!("../../programs/checksum.asm"),
            packet(),
        ),
        program(
            "sum of be16",
            include_str!("../../programs/raise/sum_be16.asm"),
            packet(),
        ),
        program(
            "sum of be16, pointer form",
            include_str!("../../programs/raise/sum_be16_ptr.asm"),
            packet(),
        ),
        program(
            "xor of u32",
            include_str!("../../programs/raise/xor32.asm"),
            packet(),
        ),
        program(
            "strlen",
            include_str!("../../programs/raise/strlen.asm"),
            strlen,
        ),
        program(
            "memchr",
            include_str!("../../programs/raise/memchr.asm"),
            memchr,
        ),
    ]
}

/// The same loop in Rust, as C would write it (a clang `-O2` build of the C loop gets the same
/// LLVM treatment).
#[expect(
    clippy::manual_memcpy,
    reason = "the loop as C writes it; LLVM turns it into a memcpy as it does for clang"
)]
fn native(name: &str, input: &mut [u8]) -> u64 {
    let input = black_box(input);
    match name {
        "no loop (`mov r0, 0; exit`)" => 0,
        "copy (8 bytes a step)" => {
            let (src, dst) = input.split_at_mut(752);
            for i in (0..744).step_by(8) {
                dst[i..i + 8].copy_from_slice(&src[i..i + 8]);
            }
            u64::from(u32::from_le_bytes([
                input[1492],
                input[1493],
                input[1494],
                input[1495],
            ]))
        }
        "copy (a byte a step)" => {
            let (src, dst) = input.split_at_mut(752);
            for i in 0..744 {
                dst[i] = src[i];
            }
            u64::from(input[1495])
        }
        "fill" => {
            for b in input.iter_mut() {
                *b = 0x5a;
            }
            u64::from(input[1499])
        }
        "strcmp" => {
            let (a, b) = input.split_at(750);
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
        "memcmp" => {
            let (a, b) = input.split_at(750);
            let mut i = 0;
            while i < 740 && a[i] == b[i] {
                i += 1;
            }
            i as u64
        }
        "checksum" => internet_checksum(input),
        "sum of be16" | "sum of be16, pointer form" => {
            let mut sum = 0u64;
            for c in input.chunks_exact(2) {
                sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
            }
            sum
        }
        "xor of u32" => {
            let mut acc = 0u32;
            for c in input[..1496].chunks_exact(4) {
                acc ^= u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
            u64::from(acc)
        }
        "strlen" => {
            let mut i = 0;
            while i < 1499 && input[i] != 0 {
                i += 1;
            }
            i as u64
        }
        "memchr" => {
            let mut i = 0;
            while i < 1500 && input[i] != b'/' {
                i += 1;
            }
            i as u64
        }
        _ => unreachable!("no native form of {name}"),
    }
}

/// A program loaded into moat for the JIT, raised or not.
struct Moat {
    prog: moat::LoadedProgram,
    input: Vec<u8>,
}

impl Moat {
    fn new(program: &BenchProgram, engine: moat::Engine, raise: bool) -> Moat {
        let mut rt = moat::Runtime::new();
        rt.set_engine(engine);
        rt.set_raise(raise);
        rt.set_isolation(moat::Isolation::None);
        rt.set_buffer_size(program.input.len() as u64);
        Moat {
            prog: rt
                .load_bytecode(&program.bytecode)
                .unwrap_or_else(|e| panic!("{}: {e}", program.name)),
            input: program.input.clone(),
        }
    }

    /// One run on the input as the last run left it (every program does the same work on it:
    /// those that write write the same bytes again).
    fn run(&mut self) -> u64 {
        self.prog.run(&mut self.input).expect("runs")
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
        // SAFETY: rbpf's JIT does not check memory accesses; every program here touches only its
        // 1500-byte input (bounds fixed in the program), and returned what moat's checked
        // interpreter returned on the same input before this runs.
        unsafe { self.vm.execute_program_jit(input).expect("rbpf jit runs") }
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "n/a".into()
    }
}

/// The plan each loop of `program` was raised into, and the synthesis time of the slowest loop
/// (release build, best of 5).
fn raising(program: &BenchProgram) -> (String, f64) {
    let m = Moat::new(program, moat::Engine::Jit, true);
    let loops = m.prog.jit_loops().unwrap_or_default();
    let plan = loops
        .iter()
        .map(|l| match &l.raised {
            Some(p) => format!("`{}`", p.split(", n").next().unwrap_or(p)),
            None => "not raised".into(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    if loops.is_empty() {
        return ("no loop".into(), 0.0);
    }
    let verified = m.prog.verified().expect("verified");
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        let r = moat_jit::raise::raise_loops(verified);
        let us = start.elapsed().as_secs_f64() * 1e6 / r.reports.len().max(1) as f64;
        black_box(r);
        best = best.min(us);
    }
    (plan, best)
}

fn row(program: &mut BenchProgram, batch: Duration, kernel_ok: bool) -> String {
    let mut interp = Moat::new(program, moat::Engine::Interp, false);
    program.expected = interp.run();
    let mut raised = Moat::new(program, moat::Engine::Jit, true);
    let mut plain = Moat::new(program, moat::Engine::Jit, false);
    assert_eq!(raised.run(), program.expected, "{}: raised", program.name);
    assert_eq!(plain.run(), program.expected, "{}: unraised", program.name);
    let rbpf = RbpfJit::new(program).expect("rbpf jit compiles");
    let (mut rbpf_input, mut native_input) = (program.input.clone(), program.input.clone());
    assert_eq!(
        rbpf.run(&mut rbpf_input),
        program.expected,
        "{}: rbpf",
        program.name
    );
    assert_eq!(
        native(program.name, &mut native_input),
        program.expected,
        "{}: native",
        program.name
    );
    let kernel = kernel_ok
        .then(|| KernelEngine::new(program).ok())
        .flatten()
        .filter(|k| {
            k.run(1)
                .is_ok_and(|r| u64::from(r.retval) == program.expected & 0xffff_ffff)
        });
    type Runner<'r> = Box<dyn FnMut() + 'r>;
    let mut engines: Vec<Runner<'_>> = vec![
        Box::new(|| {
            black_box(raised.run());
        }),
        Box::new(|| {
            black_box(plain.run());
        }),
        Box::new(|| {
            black_box(rbpf.run(&mut rbpf_input));
        }),
        Box::new(|| {
            black_box(native(program.name, &mut native_input));
        }),
    ];
    let iters: Vec<u128> = engines
        .iter_mut()
        .map(|r| calibrate(batch, r.as_mut()))
        .collect();
    let kernel_repeat = kernel.as_ref().map(|k| {
        let probe = k.run(1000).expect("kernel test run");
        u32::try_from((batch.as_nanos() / u128::from(probe.duration_ns.max(1))).max(1))
            .unwrap_or(u32::MAX)
    });
    let mut best = vec![f64::INFINITY; engines.len()];
    let mut kernel_ns = f64::INFINITY;
    for _ in 0..ROUNDS {
        for (i, run) in engines.iter_mut().enumerate() {
            best[i] = best[i].min(time_batch(iters[i], run.as_mut()));
        }
        if let (Some(k), Some(repeat)) = (&kernel, kernel_repeat) {
            kernel_ns = kernel_ns.min(f64::from(k.run(repeat).expect("kernel").duration_ns));
        }
    }
    drop(engines);
    let (r, u, b, n) = (best[0], best[1], best[2], best[3]);
    let k = if kernel.is_some() {
        format!("{kernel_ns:.0}")
    } else {
        "n/a".into()
    };
    let (plan, synth_us) = raising(program);
    format!(
        "| {} | {plan} | {r:.0} | {u:.0} | {b:.0} | {k} | {n:.0} | {} | {} | {} | {} | {synth_us:.0} |",
        program.name,
        ratio(u, r),
        ratio(r, n),
        ratio(r, kernel_ns),
        ratio(u, n),
    )
}

/// Looking for loops in a straight-line program of 10 000 instructions (none to raise): µs per
/// 1 000 instructions, on top of verification and compilation.
fn search_cost() -> String {
    let mut src = String::from("mov %r0, 0\nmov %r2, 1\n");
    for i in 0..1250 {
        src += &format!(
            "add %r0, {i}\nmul %r2, 3\nxor %r0, %r2\nstxdw [%r10-{}], %r0\nldxdw %r3, [%r10-{}]\n\
             jgt %r3, %r2, +1\nrsh %r3, 7\nadd %r0, %r3\n",
            8 + 8 * (i % 60),
            8 + 8 * (i % 60)
        );
    }
    src += "exit\n";
    let bytes = moat_isa::assemble_bytes(&src).expect("assembles");
    let mut rt = moat::Runtime::new();
    rt.set_isolation(moat::Isolation::None);
    rt.set_buffer_size(0);
    let prog = rt.load_bytecode(&bytes).expect("loads");
    let verified = prog.verified().expect("verified");
    let insns = verified.program().insns().len() as f64;
    let mut best = Duration::MAX;
    for _ in 0..20 {
        let start = Instant::now();
        black_box(moat_jit::raise::raise_loops(verified));
        best = best.min(start.elapsed());
    }
    format!(
        "Looking for loops in a straight-line program of {insns} instructions (none found): \
         {:.1} µs per 1 000 instructions.\n",
        best.as_secs_f64() * 1e6 / (insns / 1000.0)
    )
}

/// Time per byte against length: `fill`, `memchr` (no match) and the big-endian word sum over
/// `len` bytes (the loop bound is `len`), on moat raised, unraised and native.
fn sweep(batch: Duration) -> String {
    let mut out = String::from(
        "| loop | bytes | moat raised ns/byte | moat unraised ns/byte | native ns/byte | unraised / raised | raised / native |\n|---|--:|--:|--:|--:|--:|--:|\n",
    );
    for len in [64usize, 256, 1024, 4096] {
        let loops: [(&str, String); 3] = [
            (
                "fill",
                format!("mov %r3, 0\nloop:\nmov %r4, %r1\nadd %r4, %r3\nstb [%r4], 0x5a\nadd %r3, 1\njlt %r3, {len}, loop\nmov %r0, 0\nexit\n"),
            ),
            (
                "memchr",
                format!("mov %r3, 0\nloop:\nmov %r4, %r1\nadd %r4, %r3\nldxb %r5, [%r4]\njeq %r5, 0x2f, done\nadd %r3, 1\njlt %r3, {len}, loop\ndone:\nmov %r0, %r3\nexit\n"),
            ),
            (
                "sum of be16",
                format!("mov %r0, 0\nmov %r3, 0\nloop:\nmov %r4, %r1\nadd %r4, %r3\nldxh %r5, [%r4]\nbe16 %r5\nadd %r0, %r5\nadd %r3, 2\njlt %r3, {len}, loop\nexit\n"),
            ),
        ];
        for (name, source) in loops {
            let program = BenchProgram {
                name,
                source: "",
                bytecode: moat_isa::assemble_bytes(&source).expect("assembles"),
                input: letters().into_iter().cycle().take(len).collect(),
                expected: 0,
            };
            let mut raised = Moat::new(&program, moat::Engine::Jit, true);
            let mut plain = Moat::new(&program, moat::Engine::Jit, false);
            let mut native_input = program.input.clone();
            let native_run = |input: &mut [u8]| -> u64 {
                match name {
                    "fill" => {
                        for b in input.iter_mut() {
                            *b = 0x5a;
                        }
                        0
                    }
                    "memchr" => {
                        let mut i = 0;
                        while i < input.len() && input[i] != b'/' {
                            i += 1;
                        }
                        i as u64
                    }
                    _ => input
                        .chunks_exact(2)
                        .map(|c| u64::from(u16::from_be_bytes([c[0], c[1]])))
                        .sum(),
                }
            };
            let want = raised.run();
            assert_eq!(plain.run(), want, "{name} {len}");
            assert_eq!(native_run(&mut native_input.clone()), want, "{name} {len}");
            type Runner<'r> = Box<dyn FnMut() + 'r>;
            let mut engines: Vec<Runner<'_>> = vec![
                Box::new(|| {
                    black_box(raised.run());
                }),
                Box::new(|| {
                    black_box(plain.run());
                }),
                Box::new(|| {
                    black_box(native_run(black_box(&mut native_input)));
                }),
            ];
            let iters: Vec<u128> = engines
                .iter_mut()
                .map(|r| calibrate(batch / 4, r.as_mut()))
                .collect();
            let mut best = [f64::INFINITY; 3];
            for _ in 0..ROUNDS {
                for (i, run) in engines.iter_mut().enumerate() {
                    best[i] = best[i].min(time_batch(iters[i], run.as_mut()));
                }
            }
            let per = |ns: f64| ns / len as f64;
            out += &format!(
                "| {name} | {len} | {:.3} | {:.3} | {:.3} | {} | {} |\n",
                per(best[0]),
                per(best[1]),
                per(best[2]),
                ratio(best[1], best[0]),
                ratio(best[0], best[2]),
            );
        }
    }
    out
}

fn main() {
    let millis: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let batch = Duration::from_millis(millis);
    let mut all = programs();
    let kernel_ok = match KernelEngine::new(&all[0]) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("kernel skipped: {e}");
            false
        }
    };
    println!(
        "| loop | raised into | moat raised ns | moat unraised ns | rbpf JIT ns | kernel JIT ns | native ns | unraised / raised | raised / native | raised / kernel | unraised / native | synthesis µs per loop |"
    );
    println!("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for program in &mut all {
        println!("{}", row(program, batch, kernel_ok));
    }
    println!();
    println!("{}", sweep(batch));
    println!("{}", search_cost());
}
