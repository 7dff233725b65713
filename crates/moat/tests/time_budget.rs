//! Time budgets (issue 17): a JIT run past the runtime's time budget is stopped by the watchdog at
//! a polling point with a typed error, counted like an isolation violation, and the budget replaces
//! the instruction count of unverified JIT programs. Only that runs stop is tested here, never how
//! soon: the overshoot is measured by `bench_time_budget`.

use moat::{Engine, Error, Runtime};
use std::time::Duration;

/// An endless loop; without a buffer size it is not verified, so only a budget ends it.
const ENDLESS: &str = "mov r0, 0\nloop:\nadd r0, 1\nja loop\nexit";

fn runtime(budget: Duration) -> Runtime {
    let mut rt = Runtime::new();
    rt.set_engine(Engine::Jit);
    rt.set_time_budget(Some(budget)).expect("watchdog starts");
    rt
}

#[test]
fn an_endless_loop_is_stopped_with_a_typed_error_and_counted() {
    let rt = runtime(Duration::from_millis(2));
    let prog = rt.load_asm(ENDLESS).expect("loads");
    assert_eq!(prog.time_budget(), Some(Duration::from_millis(2)));
    let err = prog.run(&mut [0u8; 8]).expect_err("stopped");
    let Error::TimeBudget { budget, pc, .. } = err else {
        panic!("not a time-budget error: {err:?}");
    };
    assert_eq!(
        (budget, pc),
        (Duration::from_millis(2), 2),
        "at the back-edge"
    );
    assert_eq!((prog.overruns(), prog.violations()), (1, 1));
}

#[test]
fn repeated_overruns_disable_the_program() {
    let mut rt = runtime(Duration::from_micros(200));
    rt.set_violation_limit(2);
    let prog = rt.load_asm(ENDLESS).expect("loads");
    for _ in 0..2 {
        assert!(matches!(
            prog.run(&mut [0u8; 8]),
            Err(Error::TimeBudget { .. })
        ));
    }
    assert!(matches!(
        prog.run(&mut [0u8; 8]),
        Err(Error::Disabled { violations: 2, .. })
    ));
}

#[test]
fn runs_within_the_budget_are_untouched_and_leave_no_request_behind() {
    let rt = runtime(Duration::from_secs(10));
    let short = rt
        .load_asm("mov r0, 0\nloop:\nadd r0, 1\njlt r0, 1000, loop\nexit")
        .expect("loads");
    for _ in 0..1000 {
        assert_eq!(short.run(&mut [0u8; 8]).expect("runs"), 1000);
    }
    assert_eq!((short.overruns(), short.violations()), (0, 0));
}

#[test]
fn the_time_budget_replaces_the_instruction_budget_of_jit_programs_only() {
    let mut rt = runtime(Duration::from_millis(50));
    rt.set_budget(1000);
    // A loop of 3 000 instructions: past the instruction budget, far within the time budget.
    let counted = "mov r0, 0\nloop:\nadd r0, 1\njlt r0, 1000, loop\nexit";
    let jit = rt.load_asm(counted).expect("loads");
    assert_eq!(jit.run(&mut [0u8; 8]).expect("no instruction budget"), 1000);
    rt.set_engine(Engine::Interp);
    let interp = rt.load_asm(counted).expect("loads");
    assert_eq!(interp.time_budget(), None);
    let err = interp.run(&mut [0u8; 8]).expect_err("instruction budget");
    assert!(
        matches!(&err, Error::Run(e) if matches!(e.kind, moat::RunErrorKind::Budget { .. })),
        "{err:?}"
    );
}

/// A verified program whose time goes into `bpf_loop` callbacks without loops of their own
/// (`examples/c/slow_probe.o`: 2^22 steps) stops too: entering a callback is a polling point, and
/// the interrupted callback stops the run at the `bpf_loop` call.
#[test]
fn a_run_spent_in_bpf_loop_callbacks_is_stopped() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/c/slow_probe.o"
    ))
    .expect("example object");
    let rt = runtime(Duration::from_micros(200));
    let object = rt
        .load_object(
            &bytes,
            moat::ObjectOptions {
                prog_type: Some(moat::ProgType::Tracing),
            },
        )
        .expect("verified and loaded");
    let prog = object.program("slow").expect("program");
    let mut regs = [0u8; 168];
    let err = prog.run(&mut regs).expect_err("stopped");
    let Error::TimeBudget { pc, .. } = err else {
        panic!("not a time-budget error: {err:?}");
    };
    let program = moat_isa::Program::new(&prog.bytecode()).expect("decodes");
    let call = program.insns().iter().find(|(slot, _)| *slot == pc);
    assert!(
        matches!(call, Some((_, moat_isa::Insn::Call(_)))),
        "stopped at instruction {pc}: {call:?}"
    );
    assert_eq!(prog.overruns(), 1);
    // The request was taken: the next short run on this thread is not stopped.
    let short = rt.load_asm("mov r0, 7\nexit").expect("loads");
    assert_eq!(short.run(&mut [0u8; 8]).expect("runs"), 7);
}
