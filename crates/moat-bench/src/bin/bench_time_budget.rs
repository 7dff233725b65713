//! Time budgets (issue 17): how far past its budget a runaway JIT run is stopped, and what the
//! budget costs runs that end in time.
//!
//! *Overshoot*: an endless loop runs under a time budget again and again; each run's wall time
//! (from the call to its error) minus the budget is its overshoot, reported as percentiles. Rows:
//! the facade (`Runtime::set_time_budget`, its default watchdog) at several budgets, and the bare
//! watchdog (`moat_jit::Watchdog::with_spin`) at 50 µs with different spin margins, to show what the
//! spinning buys over a sleep alone. *Cost*: a short verified program with and without a budget.
//!
//! Run: `cargo run --release -p moat-bench --bin bench_time_budget [RUNS]` (default 2000 runs per
//! row).

use moat::{Engine, Error, Runtime};
use moat_exec::{HelperRegistry, Linked, NoMaps, RunErrorKind};
use moat_isa::{assemble_bytes, Program};
use moat_jit::{CodeOptions, Confinement, JitProgram, ProvenAccesses, Watchdog};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ENDLESS: &str = "mov r0, 0\nloop:\nadd r0, 1\nja loop\nexit";

/// Percentiles of `samples` (ns), sorted in place: p50, p99, p99.9, max.
fn percentiles(samples: &mut [f64]) -> [f64; 4] {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    [at(0.5), at(0.99), at(0.999), at(1.0)]
}

fn row(name: &str, budget: Duration, samples: &mut [f64], within: f64) {
    let [p50, p99, p999, max] = percentiles(samples);
    let inside = samples.iter().filter(|&&s| s <= within).count() as f64 / samples.len() as f64;
    println!(
        "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} % |",
        format_args!("{budget:?}"),
        p50 / 1e3,
        p99 / 1e3,
        p999 / 1e3,
        max / 1e3,
        inside * 100.0
    );
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let within = 5_000.0;
    println!("Overshoot past the budget (µs), {runs} runs per row; last column: runs stopped within 5 µs.\n");
    println!("| watchdog | budget | p50 | p99 | p99.9 | max | ≤ 5 µs |");
    println!("|---|--:|--:|--:|--:|--:|--:|");
    for budget_us in [10, 50, 200, 1000] {
        let budget = Duration::from_micros(budget_us);
        let mut rt = Runtime::new();
        rt.set_engine(Engine::Jit);
        rt.set_isolation(moat::Isolation::None);
        rt.set_violation_limit(0);
        rt.set_time_budget(Some(budget)).expect("watchdog");
        let prog = rt.load_asm(ENDLESS).expect("loads");
        let mut input = [0u8; 8];
        let mut samples: Vec<f64> = (0..runs)
            .map(|_| {
                let start = Instant::now();
                let result = prog.run(&mut input);
                let took = start.elapsed();
                assert!(
                    matches!(result, Err(Error::TimeBudget { .. })),
                    "{result:?}"
                );
                took.as_nanos() as f64 - budget.as_nanos() as f64
            })
            .collect();
        row("facade (default: spin 60 µs)", budget, &mut samples, within);
    }
    // The bare watchdog at 50 µs with several spin margins.
    let jit = endless_jit();
    let budget = Duration::from_micros(50);
    for spin_us in [0, 10, 30, 60] {
        let dog = Watchdog::with_spin(Duration::from_micros(spin_us)).expect("watchdog");
        let mut samples: Vec<f64> = (0..runs)
            .map(|_| {
                let start = Instant::now();
                let armed = dog.arm(budget);
                let err = jit.run(&mut [0u8; 8]).expect_err("stopped");
                let took = start.elapsed();
                assert!(armed.disarm() && err.kind == RunErrorKind::Interrupted);
                took.as_nanos() as f64 - budget.as_nanos() as f64
            })
            .collect();
        row(
            &format!("moat-jit, spin {spin_us} µs"),
            budget,
            &mut samples,
            within,
        );
    }
    cost();
}

/// The endless loop compiled as unverified, time-bounded code.
fn endless_jit() -> JitProgram {
    let program = Program::new(&assemble_bytes(ENDLESS).expect("assembles")).expect("program");
    let linked = Arc::new(Linked::new(&program, &HelperRegistry::new(), &NoMaps).expect("links"));
    let prepared = moat_interp::Prepared::lower(linked.clone()).expect("lowers");
    let options = CodeOptions {
        time_bounded: true,
        ..CodeOptions::new(Confinement::Unconfined)
    };
    JitProgram::new(
        linked,
        Arc::new(prepared),
        &ProvenAccesses::none(),
        &options,
    )
    .expect("compiles")
}

/// What arming and disarming costs a run that ends in time: a short verified loop (100
/// iterations) through the facade, without and with a (generous) budget, alternated batches.
fn cost() {
    let source = "mov r0, 0\nloop:\nadd r0, 1\njlt r0, 100, loop\nexit";
    let load = |budget: Option<Duration>| {
        let mut rt = Runtime::new();
        rt.set_engine(Engine::Jit);
        rt.set_isolation(moat::Isolation::None);
        rt.set_buffer_size(8);
        rt.set_time_budget(budget).expect("watchdog");
        rt.load_asm(source).expect("loads")
    };
    let (plain, timed) = (load(None), load(Some(Duration::from_millis(10))));
    let (mut a, mut b) = ([0u8; 8], [0u8; 8]);
    let mut run_plain = || {
        black_box(plain.run(black_box(&mut a)).ok());
    };
    let mut run_timed = || {
        black_box(timed.run(black_box(&mut b)).ok());
    };
    let iters = moat_bench::timing::calibrate(Duration::from_millis(200), &mut run_plain);
    let (mut best_plain, mut best_timed) = (f64::MAX, f64::MAX);
    for _ in 0..9 {
        best_plain = best_plain.min(moat_bench::timing::time_batch(iters, &mut run_plain));
        best_timed = best_timed.min(moat_bench::timing::time_batch(iters, &mut run_timed));
    }
    println!(
        "\nA run that ends in time (100-iteration loop, facade): {best_plain:.1} ns without a \
         budget, {best_timed:.1} ns with one ({:+.1} ns for arming and disarming).",
        best_timed - best_plain
    );
}
