//! moat-sched's mechanisms (issue 17): the cost of one preemption per mechanism, the lateness of
//! preemption past the quantum, the cost of a cooperative checkpoint, of one scheduling decision
//! (Rust policy and eBPF program) and of one task, and what user interrupts would need.
//!
//! *Cost of one preemption*: a fixed amount of compute (not of time: a preempted task's work
//! must not shrink) runs as one task without preemption and then under each mechanism at quanta
//! of 5, 10 and 50 µs; (time − time without) / preemptions, where time is the worker thread's
//! CPU time from the task's start to its end (`CLOCK_THREAD_CPUTIME_ID`: the task, the signal's
//! delivery and handler, the trampoline, the switches and the worker's decisions, all on that
//! thread — and not the time other processes of a busy machine take the core away). *Lateness*: from the end of the
//! quantum to the task being switched out (timer detection + signal delivery or next checkpoint
//! + switch), from the scheduler's statistics.
//!
//! Run: `cargo run --release -p moat-bench --bin bench_sched [ROUNDS]` (default 5; the best
//! round of each row).

use moat_sched::{
    checkpoint, Adaptive, Config, Fcfs, Mechanism, Policy, ProgramPolicy, RoundRobin, SchedView,
    Scheduler, TaskMeta, TimerMode,
};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Compute in units of `STEP` xorshift rounds, with a checkpoint after each unit when asked.
fn work(units: u64, checkpoints: bool) -> u64 {
    const STEP: u64 = 64;
    let mut x = black_box(0x9e37_79b9_7f4a_7c15u64);
    for _ in 0..units {
        for _ in 0..STEP {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        if checkpoints {
            checkpoint();
        }
    }
    x
}

/// The calling thread's CPU time (ns).
fn cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Runs `work(units)` as one task; returns (seconds, stats).
fn one_task(
    mechanism: Mechanism,
    quantum_us: u64,
    units: u64,
    checkpoints: bool,
) -> (f64, moat_sched::Stats) {
    let policy: Box<dyn Policy> = if quantum_us == 0 {
        Box::new(Fcfs)
    } else {
        Box::new(RoundRobin)
    };
    let sched = Scheduler::new(
        Config {
            workers: 1,
            mechanism,
            base_quantum: Duration::from_micros(quantum_us.max(1)),
            timer: TimerMode::Thread,
            ..Config::default()
        },
        policy,
    )
    .expect("scheduler");
    let took = Arc::new(AtomicU64::new(0));
    let t = took.clone();
    sched.spawn(
        move || {
            let start = cpu_ns();
            black_box(work(units, checkpoints));
            t.store(cpu_ns() - start, Ordering::SeqCst);
        },
        None,
    );
    sched.wait_idle();
    let stats = sched.stats();
    (took.load(Ordering::SeqCst) as f64 / 1e9, stats)
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    println!(
        "user interrupts: {}\n",
        Mechanism::Uintr
            .availability()
            .err()
            .unwrap_or_else(|| "available".into())
    );
    // Calibrate ~200 ms of work.
    let t0 = Instant::now();
    black_box(work(100_000, false));
    let units = (100_000.0 * 0.2 / t0.elapsed().as_secs_f64()) as u64;

    println!("| mechanism | quantum | worker CPU time (ms) | preemptions | cost per preemption (µs) | lateness past quantum, mean (µs) |");
    println!("|---|--:|--:|--:|--:|--:|");
    for (mechanism, checkpoints) in [(Mechanism::Signal, false), (Mechanism::Cooperative, true)] {
        let base = (0..rounds)
            .map(|_| one_task(Mechanism::None, 0, units, checkpoints).0)
            .fold(f64::MAX, f64::min);
        println!("| {mechanism} (none) | — | {:.2} | 0 | — | — |", base * 1e3);
        for q in [5u64, 10, 50] {
            let runs: Vec<(f64, moat_sched::Stats)> = (0..rounds)
                .map(|_| one_task(mechanism, q, units, checkpoints))
                .collect();
            let (time, stats) = runs
                .iter()
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .copied()
                .expect("rounds");
            let p = stats.preemptions.max(1) as f64;
            println!(
                "| {mechanism} | {q} µs | {:.2} | {} | {:.2} | {:.2} |",
                time * 1e3,
                stats.preemptions,
                (time - base) * 1e6 / p,
                stats.overrun_ns as f64 / stats.overruns.max(1) as f64 / 1e3,
            );
        }
    }

    // A checkpoint that finds no request: one load and a branch.
    let n = 200_000_000u64;
    let sched = Scheduler::new(
        Config {
            mechanism: Mechanism::Cooperative,
            ..Config::default()
        },
        Box::new(Fcfs),
    )
    .expect("scheduler");
    let took = Arc::new(AtomicU64::new(0));
    let t = took.clone();
    sched.spawn(
        move || {
            let start = Instant::now();
            for _ in 0..n {
                checkpoint();
                black_box(());
            }
            t.store(start.elapsed().as_nanos() as u64, Ordering::SeqCst);
        },
        None,
    );
    sched.wait_idle();
    println!(
        "\nA checkpoint without a request: {:.2} ns.",
        took.load(Ordering::SeqCst) as f64 / n as f64
    );
    drop(sched);

    // One decision over 32 candidates.
    let tasks: Vec<TaskMeta> = (0..32)
        .map(|i| TaskMeta {
            arrival: i * 7 % 13,
            deadline: u64::MAX - i,
            service: i,
            enqueued: (i * 31) % 17,
        })
        .collect();
    let view = SchedView {
        now: 1000,
        queue_len: 32,
        base_quantum: 50_000,
        min_quantum: 5_000,
        tasks: &tasks,
    };
    let program = ProgramPolicy::bundled("adaptive")
        .expect("bundled")
        .expect("loads");
    for (name, policy) in [("Rust", &Adaptive as &dyn Policy), ("eBPF (JIT)", &program)] {
        let n = 1_000_000;
        let start = Instant::now();
        for _ in 0..n {
            black_box(policy.pick(black_box(&view)));
        }
        println!(
            "One adaptive decision over 32 candidates, {name}: {:.0} ns.",
            start.elapsed().as_nanos() as f64 / n as f64
        );
    }

    // Empty tasks through one worker: spawn, decide, start, end.
    let sched = Scheduler::new(
        Config {
            mechanism: Mechanism::None,
            ..Config::default()
        },
        Box::new(Fcfs),
    )
    .expect("scheduler");
    let n = 1_000_000;
    let start = Instant::now();
    for _ in 0..n {
        sched.spawn(|| {}, None);
    }
    sched.wait_idle();
    println!(
        "Empty tasks, submitted from one thread, run by one worker: {:.0} ns per task.",
        start.elapsed().as_nanos() as f64 / n as f64
    );
}
