//! Helpers that call back into the program (`bpf_loop`-style) and tail calls, with their limits.

use moat_exec::{HelperError, HelperRegistry, NoMaps, RunErrorKind, MAX_TAIL_CALLS};
use moat_interp::Prepared;
use moat_isa::{assemble_bytes, Program};
use std::sync::{Arc, OnceLock};

fn prepare(src: &str, registry: &HelperRegistry) -> Prepared {
    let program = Program::new(&assemble_bytes(src).expect("assembles")).expect("well formed");
    Prepared::new(&program, registry, &NoMaps).expect("prepares")
}

/// `loop(nr, callback, ctx)`: calls `callback(i, ctx)` until it returns non-zero, like `bpf_loop`.
fn loop_registry() -> HelperRegistry {
    let mut registry = HelperRegistry::new();
    registry.register(181, "bpf_loop", |ctx, args| {
        let mut i = 0;
        while i < args[0] {
            let stop = ctx.call_function(2, args[1], [i, args[2], 0, 0, 0])?;
            i += 1;
            if stop != 0 {
                break;
            }
        }
        Ok(i)
    });
    registry
}

const LOOP_SUM: &str = "
    stdw [%r10-8], 0
    mov %r1, 10
    lddw %r2, code(cb)
    mov %r3, %r10
    add %r3, -8
    call 181
    ldxdw %r0, [%r10-8]
    exit
cb:
    ldxdw %r3, [%r2]
    add %r3, %r1
    stxdw [%r2], %r3
    mov %r0, 0
    exit
";

#[test]
fn callbacks_run_in_their_own_frame_and_reach_the_callers_stack() {
    let prog = prepare(LOOP_SUM, &loop_registry());
    assert_eq!(prog.run(&mut []).expect("runs"), 45);
}

#[test]
fn a_failing_callback_fails_the_helper_with_its_instruction() {
    let src = "
        mov %r1, 3
        lddw %r2, code(+4)
        mov %r3, 0
        call 181
        exit
        ldxdw %r0, [%r2]
        exit";
    let prog = prepare(src, &loop_registry());
    let err = prog
        .run(&mut [])
        .expect_err("null dereference in the callback");
    assert_eq!(err.pc, 4, "the call instruction");
    let RunErrorKind::Helper {
        id: 181,
        source: HelperError::Callback(inner),
        ..
    } = err.kind
    else {
        panic!("unexpected {err:?}");
    };
    assert_eq!(inner.pc, 6);
    assert!(matches!(
        inner.kind,
        RunErrorKind::OutOfBounds { addr: 0, .. }
    ));
}

#[test]
fn tail_calls_replace_the_caller_and_stop_after_the_limit() {
    // Helper 12 tail-calls the program itself; when the limit is reached it returns -1 like the kernel.
    let target: Arc<OnceLock<Arc<Prepared>>> = Arc::new(OnceLock::new());
    let mut registry = HelperRegistry::new();
    let slot = target.clone();
    registry.register(12, "bpf_tail_call", move |ctx, args| {
        let Some(prog) = slot.get() else {
            return Ok(u64::MAX);
        };
        match ctx.tail_call(prog.clone(), args[0]) {
            Ok(()) => Ok(0),
            Err(_) => Ok(u64::MAX),
        }
    });
    // Each run increments a counter in the context, then tail-calls itself; the failing call returns.
    let src = "
        ldxdw %r2, [%r1]
        add %r2, 1
        stxdw [%r1], %r2
        call 12
        mov %r0, 7
        exit";
    let prog = Arc::new(prepare(src, &registry));
    target.set(prog.clone()).ok();
    let mut ctx = [0u8; 8];
    assert_eq!(prog.run(&mut ctx).expect("runs"), 7);
    assert_eq!(u64::from_le_bytes(ctx), u64::from(MAX_TAIL_CALLS) + 1);
}
