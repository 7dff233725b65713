//! Criterion benchmark: each program of `moat_bench::programs` on moat's interpreter (`moat_interp`),
//! rbpf's interpreter (`rbpf_interp`) and, when `bpf()` is usable, the kernel's JIT (`kernel`, timed by
//! the kernel itself: `BPF_PROG_TEST_RUN` with a repeat count reports its average per run).
//!
//! Run with `cargo bench -p moat-bench --bench interp`.

use criterion::{criterion_main, Criterion};
use moat_bench::{programs, KernelEngine, MoatEngine, RbpfEngine};
use std::hint::black_box;
use std::time::Duration;

fn interp(c: &mut Criterion) {
    let kernel_ok = match moat_kernel::available() {
        Ok(()) => true,
        Err(reason) => {
            eprintln!("kernel skipped: {reason}");
            false
        }
    };
    for program in programs() {
        let mut moat = MoatEngine::new(&program).expect("moat loads");
        let rbpf = RbpfEngine::new(&program).expect("rbpf loads");
        assert_eq!(moat.run().expect("moat runs"), program.expected);
        assert_eq!(rbpf.run().expect("rbpf runs"), program.expected);
        let kernel = if kernel_ok {
            let kernel = KernelEngine::new(&program).expect("the kernel loads");
            let run = kernel.run(1).expect("kernel test run");
            assert_eq!(u64::from(run.retval), program.expected);
            Some(kernel)
        } else {
            None
        };

        let mut group = c.benchmark_group(program.name);
        group.bench_function("moat_interp", |b| {
            b.iter(|| black_box(moat.run().expect("moat runs")))
        });
        group.bench_function("rbpf_interp", |b| {
            b.iter(|| black_box(rbpf.run().expect("rbpf runs")))
        });
        if let Some(kernel) = &kernel {
            group.bench_function("kernel", |b| {
                b.iter_custom(|iters| {
                    let repeat = u32::try_from(iters).unwrap_or(u32::MAX);
                    let run = kernel.run(repeat).expect("kernel test run");
                    Duration::from_nanos(u64::from(run.duration_ns).saturating_mul(iters))
                })
            });
        }
        group.finish();
    }
}

/// Holds the undocumented `pub fn` that `criterion_group!` generates, out of `missing_docs`' reach.
mod group {
    criterion::criterion_group!(benches, super::interp);
}

criterion_main!(group::benches);
