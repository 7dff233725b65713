//! Poll hooks (issue 17): a polling point that finds its run's flag set asks the thread's hook,
//! which may switch to other work, and the run goes on with every register intact — JIT code is
//! preempted and resumed rather than stopped — or stops with `Interrupted` when the hook says so.

use moat_exec::{HelperRegistry, Linked, NoMaps, RunErrorKind};
use moat_interp::Prepared;
use moat_isa::asm::assemble_bytes;
use moat_isa::Program;
use moat_jit::{set_poll_hook, CodeOptions, Confinement, Interrupter, JitProgram, ProvenAccesses};
use std::cell::Cell;
use std::sync::Arc;

fn compile(source: &str, count_budget: bool) -> JitProgram {
    let program = Program::new(&assemble_bytes(source).expect("assembles")).expect("well formed");
    let mut linked = Linked::new(&program, &HelperRegistry::new(), &NoMaps).expect("links");
    linked.set_budget(u64::MAX);
    let linked = Arc::new(linked);
    let prepared = Prepared::lower(linked.clone()).expect("lowers");
    let options = CodeOptions {
        time_bounded: !count_budget,
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

thread_local! {
    static CALLS: Cell<u32> = const { Cell::new(0) };
}

/// Counts its calls and asks for another interrupt the first few times, so the run is
/// "preempted" repeatedly; every register must survive.
fn resume_hook() -> bool {
    let n = CALLS.get() + 1;
    CALLS.set(n);
    if n < 5 {
        Interrupter::for_current_thread().interrupt();
    }
    true
}

fn stop_hook() -> bool {
    false
}

/// A loop that keeps every eBPF register live across its back-edge.
const LOOP: &str = "
    mov %r0, 0
    mov %r1, 1
    mov %r2, 2
    mov %r3, 3
    mov %r4, 4
    mov %r5, 5
    mov %r6, 6
    mov %r7, 7
    mov %r8, 8
    mov %r9, 0
loop:
    add %r0, %r1
    add %r0, %r2
    add %r0, %r3
    add %r0, %r4
    add %r0, %r5
    add %r0, %r6
    add %r0, %r7
    add %r0, %r8
    add %r9, 1
    jlt %r9, 1000, loop
    exit";

#[test]
fn a_resuming_hook_lets_the_run_go_on_with_its_registers() {
    for count_budget in [false, true] {
        let jit = compile(LOOP, count_budget);
        CALLS.set(0);
        // Runs register for interrupts while the thread has an interrupter.
        let interrupter = Interrupter::for_current_thread();
        let previous = set_poll_hook(Some(resume_hook));
        interrupter.interrupt();
        let r0 = jit.run(&mut [0u8; 8]).expect("runs to its end");
        set_poll_hook(previous);
        assert_eq!(r0, 36 * 1000, "budget counted: {count_budget}");
        assert_eq!(CALLS.get(), 5);
        assert!(!interrupter.pending());
    }
}

#[test]
fn a_stopping_hook_stops_the_run() {
    let jit = compile(LOOP, false);
    let interrupter = Interrupter::for_current_thread();
    let previous = set_poll_hook(Some(stop_hook));
    interrupter.interrupt();
    let err = jit.run(&mut [0u8; 8]).expect_err("stopped");
    set_poll_hook(previous);
    assert_eq!(err.kind, RunErrorKind::Interrupted);
}
