//! Prints a markdown table of ns per run for each benchmark program on moat's interpreter, rbpf's
//! interpreter and the kernel's JIT, with ratios, for BENCHMARKS.md.
//!
//! Usage: `cargo run --release -p moat-bench --bin bench_table [MILLIS]`. After a calibration run,
//! each engine times `ROUNDS` batches of about `MILLIS` milliseconds (default 200), the engines taking
//! turns batch by batch so a burst of load from elsewhere hits them alike. The table shows each engine's
//! fastest batch: on a shared, noisy machine the minimum is the most reproducible statistic. The kernel
//! column is the kernel's own average per run (`BPF_PROG_TEST_RUN` with a repeat count); it reads `n/a`
//! when `bpf()` is unusable.

use moat_bench::timing::{calibrate, time_batch};
use moat_bench::{executed_insns, programs, BenchProgram, KernelEngine, MoatEngine, RbpfEngine};
use std::hint::black_box;
use std::time::Duration;

/// Timed batches per engine and program; the fastest is reported.
const ROUNDS: usize = 9;

fn row(program: &BenchProgram, batch: Duration, kernel_ok: bool) -> String {
    let mut moat = MoatEngine::new(program).expect("moat loads");
    let rbpf = RbpfEngine::new(program).expect("rbpf loads");
    assert_eq!(moat.run().expect("moat runs"), program.expected, "moat");
    assert_eq!(rbpf.run().expect("rbpf runs"), program.expected, "rbpf");
    let kernel = kernel_ok.then(|| {
        let kernel = KernelEngine::new(program).expect("the kernel loads");
        let run = kernel.run(1).expect("kernel test run");
        assert_eq!(u64::from(run.retval), program.expected, "kernel");
        kernel
    });
    let insns = executed_insns(program).expect("moat loads");

    let mut run_moat = || {
        black_box(moat.run().expect("moat runs"));
    };
    let mut run_rbpf = || {
        black_box(rbpf.run().expect("rbpf runs"));
    };
    let moat_iters = calibrate(batch, &mut run_moat);
    let rbpf_iters = calibrate(batch, &mut run_rbpf);
    let kernel_repeat = kernel.as_ref().map(|k| {
        let probe = k.run(1000).expect("kernel test run");
        let per_run = u128::from(probe.duration_ns.max(1));
        u32::try_from((batch.as_nanos() / per_run).max(1)).unwrap_or(u32::MAX)
    });
    let (mut moat_ns, mut rbpf_ns, mut kernel_ns) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    for _ in 0..ROUNDS {
        moat_ns = moat_ns.min(time_batch(moat_iters, &mut run_moat));
        rbpf_ns = rbpf_ns.min(time_batch(rbpf_iters, &mut run_rbpf));
        if let (Some(k), Some(repeat)) = (&kernel, kernel_repeat) {
            let run = k.run(repeat).expect("kernel test run");
            kernel_ns = kernel_ns.min(f64::from(run.duration_ns));
        }
    }
    let (kernel_col, moat_vs_kernel) = if kernel.is_some() {
        (
            format!("{kernel_ns:.0}"),
            format!("{:.1}×", moat_ns / kernel_ns),
        )
    } else {
        ("n/a".to_string(), "n/a".to_string())
    };
    format!(
        "| {} | {insns} | {moat_ns:.0} | {:.2} | {rbpf_ns:.0} | {:.2} | {kernel_col} | **{:.2}×** | {moat_vs_kernel} |",
        program.name,
        moat_ns / insns as f64,
        rbpf_ns / insns as f64,
        rbpf_ns / moat_ns,
    )
}

fn main() {
    let millis: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("MILLIS must be a number"))
        .unwrap_or(200);
    let batch = Duration::from_millis(millis);
    let kernel_ok = match moat_kernel::available() {
        Ok(()) => true,
        Err(reason) => {
            eprintln!("kernel skipped: {reason}");
            false
        }
    };
    println!(
        "| program | insns/run | moat interp ns/run | moat ns/insn | rbpf interp ns/run | rbpf ns/insn | kernel JIT ns/run | rbpf / moat | moat / kernel |"
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    for program in programs() {
        println!("{}", row(&program, batch, kernel_ok));
    }
}
