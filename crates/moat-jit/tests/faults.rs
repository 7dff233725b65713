//! Hardware faults in generated code: an access the verifier "proved" (here: marked safe by the
//! test, as a buggy verifier would) runs unchecked; when the hardware stops it, the run ends with
//! `MemoryFault` at that instruction and the process, its other runs and the host's own `SIGSEGV`
//! handler keep working.

use moat_exec::{HelperRegistry, Linked, NoMaps, RunErrorKind};
use moat_interp::Prepared;
use moat_isa::asm::assemble_bytes;
use moat_isa::Program;
use moat_jit::{CodeOptions, Confinement, JitProgram, ProvenAccesses, ProvenMemory};
use std::sync::Arc;

/// Compiles `source` with every memory access marked as proven safe.
fn compile_trusting(source: &str) -> JitProgram {
    let program = Program::new(&assemble_bytes(source).expect("assembles")).expect("well formed");
    let registry = HelperRegistry::new();
    let linked = Arc::new(Linked::new(&program, &registry, &NoMaps).expect("links"));
    let prepared = Prepared::lower(linked.clone()).expect("lowers");
    // SAFETY: the point of these tests: wrong proofs, caught by the hardware.
    let proofs = unsafe { ProvenAccesses::assume(0..program.slots(), ProvenMemory::Other, false) };
    JitProgram::new(
        linked,
        Arc::new(prepared),
        &proofs,
        &CodeOptions::new(Confinement::Unconfined),
    )
    .expect("compiles")
}

#[test]
fn an_unchecked_wild_load_ends_the_run_with_a_memory_fault() {
    let jit = compile_trusting(
        "mov r0, 7\n\
         lddw r2, 0x10\n\
         ldxdw r0, [r2+8]\n\
         exit",
    );
    for _ in 0..3 {
        let err = jit.run(&mut [0u8; 8]).expect_err("faults");
        assert_eq!(err.pc, 3, "the ldxdw after the two-slot lddw: {err}");
        assert_eq!(
            err.kind,
            RunErrorKind::MemoryFault {
                addr: 0x18,
                at: moat_exec::Locus::Elsewhere,
                protection_key: false
            },
            "{err}"
        );
    }
    // The process goes on, and so do other programs.
    let fine = compile_trusting("ldxdw r0, [r1]\nexit");
    let mut input = 42u64.to_le_bytes();
    assert_eq!(fine.run(&mut input).expect("runs"), 42);
}

#[test]
fn an_unchecked_wild_store_in_a_called_function_is_stopped_too() {
    let jit = compile_trusting(
        "call local f\n\
         exit\n\
         f:\n\
         mov r1, 0\n\
         stdw [r1+64], 1\n\
         mov r0, 0\n\
         exit",
    );
    let err = jit.run(&mut [0u8; 8]).expect_err("faults");
    assert_eq!(err.pc, 3, "{err}");
    assert!(
        matches!(err.kind, RunErrorKind::MemoryFault { addr: 64, .. }),
        "{err}"
    );
    // Messages name no host address (issue 21): the address is far from the program's memory.
    assert!(
        err.to_string()
            .contains("page fault at an address far from the program's memory"),
        "{err}"
    );
}
