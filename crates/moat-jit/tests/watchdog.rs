//! The watchdog (time budgets, issue 17): it stops a run that outlives its budget at a polling
//! point, leaves runs that end in time alone, and tells its own interrupts from the host's. Only
//! that runs stop is tested, never how soon (`bench_time_budget` measures the overshoot).

use moat_exec::{HelperRegistry, Linked, NoMaps, RunErrorKind};
use moat_interp::Prepared;
use moat_isa::asm::assemble_bytes;
use moat_isa::Program;
use moat_jit::{CodeOptions, Confinement, Interrupter, JitProgram, ProvenAccesses, Watchdog};
use std::sync::Arc;
use std::time::Duration;

/// Compiles `source` as an unverified program, bounded in time rather than by an instruction count.
fn compile(source: &str) -> JitProgram {
    let program = Program::new(&assemble_bytes(source).expect("assembles")).expect("well formed");
    let mut linked = Linked::new(&program, &HelperRegistry::new(), &NoMaps).expect("links");
    linked.set_budget(1000);
    let linked = Arc::new(linked);
    let prepared = Prepared::lower(linked.clone()).expect("lowers");
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

#[test]
fn an_endless_loop_without_an_instruction_budget_is_stopped_by_the_watchdog() {
    let jit = compile("mov r0, 0\nloop:\nadd r0, 1\nja loop\nexit");
    let dog = Watchdog::new().expect("starts");
    for budget in [1, 50, 1000] {
        let armed = dog.arm(Duration::from_micros(budget));
        let err = jit.run(&mut [0u8; 8]).expect_err("stopped");
        assert!(armed.disarm(), "the watchdog fired");
        assert_eq!((err.pc, err.kind), (2, RunErrorKind::Interrupted));
    }
}

#[test]
fn time_bounded_code_counts_no_instructions() {
    // 3 000 instructions against an instruction budget of 1 000.
    let jit = compile("mov r0, 0\nloop:\nadd r0, 1\njlt r0, 1000, loop\nexit");
    let dog = Watchdog::new().expect("starts");
    for _ in 0..100 {
        let armed = dog.arm(Duration::from_secs(10));
        assert_eq!(jit.run(&mut [0u8; 8]).expect("runs"), 1000);
        assert!(!armed.disarm());
    }
}

#[test]
fn an_interrupt_of_the_host_is_not_the_watchdogs() {
    let jit = compile("mov r0, 0\nloop:\nadd r0, 1\nja loop\nexit");
    let dog = Watchdog::new().expect("starts");
    let armed = dog.arm(Duration::from_secs(10));
    Interrupter::for_current_thread().interrupt();
    let err = jit.run(&mut [0u8; 8]).expect_err("interrupted");
    assert_eq!(err.kind, RunErrorKind::Interrupted);
    assert!(!armed.disarm());
}

#[test]
fn watchdogs_on_many_threads_stop_each_threads_own_run() {
    let jit = Arc::new(compile("mov r0, 0\nloop:\nadd r0, 1\nja loop\nexit"));
    let dog = Arc::new(Watchdog::new().expect("starts"));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (jit, dog) = (jit.clone(), dog.clone());
            std::thread::spawn(move || {
                let armed = dog.arm(Duration::from_micros(100 * (i + 1)));
                let err = jit.run(&mut [0u8; 8]).expect_err("stopped");
                (armed.disarm(), err.kind)
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("joins"), (true, RunErrorKind::Interrupted));
    }
}
