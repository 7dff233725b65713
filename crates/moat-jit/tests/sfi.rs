//! Software fault isolation of proven accesses (issue 21): with proofs claimed wrongly — as a buggy
//! verifier would make them — code without a budget (the verified kind, `r12` = the run context)
//! and code with one both keep every access inside the program's domain or its own regions.

use moat_exec::{Buffer, HelperRegistry, Linked, NoMaps, RunErrorKind};
use moat_interp::Prepared;
use moat_isa::asm::assemble_bytes;
use moat_isa::Program;
use moat_isolate::{Domain, Isolation, GUARD};
use moat_jit::{CodeOptions, Confinement, JitProgram, ProvenAccesses, ProvenMemory, Sfi, Zone};
use std::sync::Arc;

/// Compiles `source` for `domain` with every access claimed proven.
fn compile(source: &str, domain: &Domain, terminates: bool) -> JitProgram {
    let program = Program::new(&assemble_bytes(source).expect("assembles")).expect("well formed");
    let linked = Arc::new(Linked::new(&program, &HelperRegistry::new(), &NoMaps).expect("links"));
    let prepared = Prepared::lower(linked.clone()).expect("lowers");
    // SAFETY: wrong proofs on purpose; the code is confined by `Sfi`, which is what is tested.
    let proofs =
        unsafe { ProvenAccesses::assume(0..program.slots(), ProvenMemory::Other, terminates) };
    let arena = Zone {
        start: domain.base(),
        len: domain.size(),
        guard: GUARD as u64,
    };
    let sfi = Sfi {
        arena,
        context_and_packet: arena,
    };
    JitProgram::new(
        linked,
        Arc::new(prepared),
        &proofs,
        &CodeOptions::new(Confinement::Sfi(sfi)),
    )
    .expect("compiles")
}

/// Runs `jit` on 64 bytes of `domain`'s context area, `r1` its address.
fn run_in(domain: &Domain, jit: &JitProgram) -> Result<u64, moat_exec::RunError> {
    domain
        .with_context_area(64, |area| {
            area.fill(0x11);
            let args = [area.as_mut_ptr() as u64, 64, 0, 0, 0];
            jit.run_with(
                &mut [Buffer {
                    bytes: area,
                    writable: true,
                }],
                args,
            )
        })
        .unwrap_or_else(|_| panic!("context area free"))
}

#[test]
fn wrongly_proven_accesses_stay_confined_with_and_without_a_budget() {
    let domain = Domain::new(Isolation::Sfi).expect("domain");
    let secret = Box::new(0x5ec2e7u64);
    let host = std::ptr::addr_of!(*secret) as u64;
    for terminates in [true, false] {
        // Inside the domain: runs as proven, unchecked by a typed check.
        let fine = compile("ldxdw %r0, [%r1+8]\nexit", &domain, terminates);
        assert_eq!(run_in(&domain, &fine).expect("runs"), 0x1111_1111_1111_1111);
        // Host memory: the confinement check fails, the complete check refuses it.
        let src = format!("lddw %r2, {host:#x}\nldxdw %r0, [%r2]\nexit");
        let err = run_in(&domain, &compile(&src, &domain, terminates)).expect_err("refused");
        assert_eq!(err.pc, 2, "{err}");
        assert!(
            matches!(err.kind, RunErrorKind::OutOfBounds { .. }),
            "{err}"
        );
        // A store too, and through a register checked earlier in the block, then moved away.
        let src =
            format!("stdw [%r1+0], 1\nlddw %r1, {host:#x}\nstdw [%r1+0], 2\nmov %r0, 0\nexit");
        let err = run_in(&domain, &compile(&src, &domain, terminates)).expect_err("refused");
        assert_eq!(err.pc, 3, "{err}");
        // Unallocated arena of its own domain: the hardware stops it (a page fault).
        let src = "mov %r2, %r1\nadd %r2, 0x1000000\nldxdw %r0, [%r2]\nexit";
        let err = run_in(&domain, &compile(src, &domain, terminates)).expect_err("faults");
        assert_eq!(err.pc, 2, "{err}");
        assert!(
            matches!(err.kind, RunErrorKind::MemoryFault { .. }),
            "{err}"
        );
    }
    assert_eq!(*secret, 0x5ec2e7);
}
