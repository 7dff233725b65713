//! The scheduler end to end: each mechanism preempts a long task so that a short one submitted
//! after it finishes first (or, without preemption, does not); a preempted task's registers and
//! vector state survive any number of preemptions; eBPF policies decide; user interrupts are
//! reported unavailable. Orderings are asserted, never durations.

use moat_sched::{
    Config, Edf, Fcfs, Mechanism, Policy, ProgramPolicy, RoundRobin, SchedError, Scheduler,
    TimerMode,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn scheduler(mechanism: Mechanism, policy: Box<dyn Policy>) -> Scheduler {
    Scheduler::new(
        Config {
            mechanism,
            base_quantum: Duration::from_micros(50),
            ..Config::default()
        },
        policy,
    )
    .expect("starts")
}

/// Submits a 30 ms task, then (once it runs) a short one; returns the order they ended in.
fn long_then_short(sched: &Scheduler, cooperative: bool) -> Vec<&'static str> {
    let order = Arc::new(Mutex::new(Vec::new()));
    let started = Arc::new(AtomicBool::new(false));
    let clock = *sched.clock();
    let (o, s) = (order.clone(), started.clone());
    sched.spawn(
        move || {
            s.store(true, Ordering::SeqCst);
            if cooperative {
                clock.spin_cooperatively(30_000_000, 2_000);
            } else {
                clock.spin(30_000_000);
            }
            moat_sched::no_preempt(|| o.lock().expect("lock").push("long"));
        },
        None,
    );
    while !started.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    let o = order.clone();
    sched.spawn(
        move || moat_sched::no_preempt(|| o.lock().expect("lock").push("short")),
        None,
    );
    sched.wait_idle();
    let order = order.lock().expect("lock").clone();
    order
}

#[test]
fn a_timer_signal_preempts_a_long_task() {
    let sched = scheduler(Mechanism::Signal, Box::new(RoundRobin));
    assert_eq!(long_then_short(&sched, false), ["short", "long"]);
    let stats = sched.stats();
    assert!(stats.preemptions > 0 && stats.requests > 0, "{stats:?}");
}

#[test]
fn cooperative_checkpoints_preempt_a_long_task() {
    let sched = scheduler(Mechanism::Cooperative, Box::new(RoundRobin));
    assert_eq!(long_then_short(&sched, true), ["short", "long"]);
    assert!(sched.stats().preemptions > 0);
}

#[test]
fn without_preemption_tasks_run_to_their_end() {
    let sched = scheduler(Mechanism::None, Box::new(Fcfs));
    assert_eq!(long_then_short(&sched, false), ["long", "short"]);
    assert_eq!(sched.stats().preemptions, 0);
}

#[test]
fn an_external_timer_works_as_well() {
    let sched = Scheduler::new(
        Config {
            mechanism: Mechanism::Signal,
            timer: TimerMode::External,
            ..Config::default()
        },
        Box::new(RoundRobin),
    )
    .expect("starts");
    // `wait_idle` ticks the timer.
    assert_eq!(long_then_short(&sched, false), ["short", "long"]);
}

/// Floating-point and vector work whose result does not depend on how often it is preempted.
fn float_work(n: u64) -> f64 {
    let mut acc = 0.0f64;
    let mut v = [0.5f64; 8];
    for i in 0..n {
        let x = (i as f64).sqrt();
        for (k, lane) in v.iter_mut().enumerate() {
            *lane = (*lane * 1.000_001 + x * k as f64).fract();
        }
        acc += v.iter().sum::<f64>();
    }
    acc
}

#[test]
fn preempted_tasks_keep_their_registers_and_vector_state() {
    let expected = float_work(300_000);
    let sched = Scheduler::new(
        Config {
            mechanism: Mechanism::Signal,
            base_quantum: Duration::from_micros(5),
            ..Config::default()
        },
        Box::new(RoundRobin),
    )
    .expect("starts");
    let results = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..4 {
        let r = results.clone();
        sched.spawn(
            move || {
                let got = float_work(300_000);
                moat_sched::no_preempt(|| r.lock().expect("lock").push(got));
            },
            None,
        );
    }
    sched.wait_idle();
    assert!(sched.stats().preemptions > 0);
    assert_eq!(*results.lock().expect("lock"), [expected; 4]);
}

#[test]
fn an_ebpf_policy_decides() {
    for name in ["edf", "rr", "fcfs", "adaptive"] {
        let policy = ProgramPolicy::bundled(name)
            .expect("bundled")
            .expect("loads");
        let sched = scheduler(Mechanism::None, Box::new(policy));
        assert_eq!(sched.policy_name(), format!("ebpf-{name}"));
        let order = Arc::new(Mutex::new(Vec::new()));
        let (started, release) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (s, r) = (started.clone(), release.clone());
        sched.spawn(
            move || {
                s.store(true, Ordering::SeqCst);
                while !r.load(Ordering::SeqCst) {
                    std::hint::spin_loop();
                }
            },
            None,
        );
        while !started.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        for (label, deadline_ms) in [(1u64, 30u64), (2, 10), (3, 20)] {
            let o = order.clone();
            sched.spawn(
                move || o.lock().expect("lock").push(label),
                Some(Duration::from_millis(deadline_ms)),
            );
        }
        release.store(true, Ordering::SeqCst);
        sched.wait_idle();
        let order = order.lock().expect("lock").clone();
        let expected = if name == "edf" { [2, 3, 1] } else { [1, 2, 3] };
        assert_eq!(order, expected, "{name}");
    }
}

#[test]
fn rust_and_ebpf_edf_agree_on_a_loaded_worker() {
    let count = Arc::new(AtomicU64::new(0));
    let sched = scheduler(Mechanism::Signal, Box::new(Edf));
    for _ in 0..100 {
        let c = count.clone();
        sched.spawn(
            move || {
                c.fetch_add(1, Ordering::Relaxed);
            },
            Some(Duration::from_millis(1)),
        );
    }
    sched.wait_idle();
    assert_eq!(count.load(Ordering::Relaxed), 100);
}

#[test]
fn user_interrupts_are_reported_unavailable_not_emulated() {
    let err = Scheduler::new(
        Config {
            mechanism: Mechanism::Uintr,
            ..Config::default()
        },
        Box::new(Fcfs),
    )
    .expect_err("no uintr here");
    assert!(matches!(
        err,
        SchedError::Unavailable {
            mechanism: Mechanism::Uintr,
            ..
        }
    ));
}

/// A task running a long eBPF loop (JIT code, which the signal handler never preempts) is
/// preempted at the loop's back-edge and resumed later, under both mechanisms.
#[test]
fn ebpf_programs_in_tasks_are_preempted_at_their_polling_points() {
    let mut rt = moat::Runtime::new();
    rt.set_engine(moat::Engine::Jit);
    rt.set_isolation(moat::Isolation::None);
    rt.set_verification(moat::Verification::Off);
    rt.set_budget(u64::MAX);
    let prog = rt
        .load_asm("mov %r0, 0\nloop:\nadd %r0, 1\njlt %r0, 200000000, loop\nexit")
        .expect("loads");
    for mechanism in [Mechanism::Cooperative, Mechanism::Signal] {
        let sched = scheduler(mechanism, Box::new(RoundRobin));
        let order = Arc::new(Mutex::new(Vec::new()));
        let started = Arc::new(AtomicBool::new(false));
        let (o, s, p) = (order.clone(), started.clone(), prog.clone());
        sched.spawn(
            move || {
                s.store(true, Ordering::SeqCst);
                let r0 = p.run(&mut [0u8; 8]).expect("runs to its end");
                moat_sched::no_preempt(|| o.lock().expect("lock").push(r0));
            },
            None,
        );
        while !started.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let o = order.clone();
        sched.spawn(
            move || moat_sched::no_preempt(|| o.lock().expect("lock").push(1)),
            None,
        );
        sched.wait_idle();
        assert_eq!(
            *order.lock().expect("lock"),
            [1, 200_000_000],
            "{mechanism}"
        );
        assert!(sched.stats().preemptions > 0);
    }
}
