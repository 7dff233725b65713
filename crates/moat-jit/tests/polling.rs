//! Polling points: JIT code checks the run's interrupt flag at loop back-edges and calls, verified
//! code (no budget) and budget-counting code alike, so another thread can stop a run
//! ([`moat_jit::Interrupter`]) — the mechanism of time budgets and preemption.

use moat_exec::{HelperRegistry, Linked, NoMaps, RunErrorKind};
use moat_interp::Prepared;
use moat_isa::asm::assemble_bytes;
use moat_isa::Program;
use moat_jit::{CodeOptions, Confinement, Interrupter, JitProgram, ProvenAccesses, ProvenMemory};
use std::sync::Arc;
use std::time::Duration;

/// Compiles `source`; `terminates` claims (as the verifier would) that it needs no budget.
fn compile(source: &str, terminates: bool, polling: bool) -> JitProgram {
    let program = Program::new(&assemble_bytes(source).expect("assembles")).expect("well formed");
    let registry = HelperRegistry::new();
    let mut linked = Linked::new(&program, &registry, &NoMaps).expect("links");
    linked.set_budget(u64::MAX);
    let linked = Arc::new(linked);
    let prepared = Prepared::lower(linked.clone()).expect("lowers");
    // SAFETY: no access is claimed; the claimed termination is false on purpose for the loops
    // below, which only an interrupt ends (the test would hang, not corrupt memory, if it failed).
    let proofs = unsafe { ProvenAccesses::assume([], ProvenMemory::Other, terminates) };
    let options = CodeOptions {
        polling,
        ..CodeOptions::new(Confinement::Unconfined)
    };
    JitProgram::new(linked, Arc::new(prepared), &proofs, &options).expect("compiles")
}

/// Runs `jit` on this thread and interrupts it from another after a moment.
fn interrupted_run(jit: &JitProgram) -> Result<u64, moat_exec::RunError> {
    let interrupter = Interrupter::for_current_thread();
    let watcher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        interrupter.interrupt();
    });
    let result = jit.run(&mut [0u8; 8]);
    watcher.join().expect("watcher");
    result
}

#[test]
fn an_endless_loop_in_code_without_a_budget_stops_at_its_back_edge() {
    let jit = compile("mov r0, 0\nloop:\nadd r0, 1\nja loop\nexit", true, true);
    let err = interrupted_run(&jit).expect_err("interrupted");
    assert_eq!(err.kind, RunErrorKind::Interrupted);
    assert_eq!(err.pc, 2, "the back-edge: {err}");
    // The request was delivered: the next run goes on (here: to its end).
    let short = compile("mov r0, 7\nexit", true, true);
    assert_eq!(short.run(&mut [0u8; 8]).expect("runs"), 7);
}

#[test]
fn a_budget_counting_loop_stops_at_its_conditional_back_edge() {
    let jit = compile(
        "mov r0, 0\nloop:\nadd r0, 1\njne r0, 0, loop\nexit",
        false,
        true,
    );
    let err = interrupted_run(&jit).expect_err("interrupted");
    assert_eq!(err.kind, RunErrorKind::Interrupted);
    assert_eq!(err.pc, 2, "{err}");
}

#[test]
fn a_request_before_the_run_stops_it_at_its_first_call() {
    let jit = compile("call local f\nexit\nf:\nmov r0, 1\nexit", true, true);
    let interrupter = Interrupter::for_current_thread();
    interrupter.interrupt();
    let err = jit.run(&mut [0u8; 8]).expect_err("interrupted");
    assert_eq!((err.pc, err.kind), (0, RunErrorKind::Interrupted));
    assert_eq!(jit.run(&mut [0u8; 8]).expect("runs"), 1);
    // A withdrawn request stops nothing.
    interrupter.interrupt();
    interrupter.clear();
    assert_eq!(jit.run(&mut [0u8; 8]).expect("runs"), 1);
}

#[test]
fn code_without_polling_points_is_not_interrupted() {
    let jit = compile(
        "mov r0, 0\nloop:\nadd r0, 1\njlt r0, 100000, loop\nexit",
        true,
        false,
    );
    let interrupter = Interrupter::for_current_thread();
    interrupter.interrupt();
    assert_eq!(jit.run(&mut [0u8; 8]).expect("runs"), 100_000);
    interrupter.clear();
}
