//! `mpk` isolation where the CPU and kernel have protection keys (on this project's CI machine,
//! which has none, `mpk_guest.rs` runs this file inside an emulated guest whose CPU has them).
//!
//! The verifier can have bugs: `moat::testing::simulate_verifier_bug` makes the JIT trust chosen memory
//! accesses as a buggy verifier would, so no software check runs for them. Under `mpk` the hardware
//! must still stop them: confined code runs with PKRU allowing its own domain's key only.

use moat::{
    Domain, Engine, Error, Isolation, LoadedProgram, Map, MapDef, MapType, ProgType, RunErrorKind,
    Runtime, Verification,
};
use std::sync::Arc;

fn mpk_runtime() -> Option<Runtime> {
    if let Some(why) = moat::mpk::unavailable() {
        println!("skipped: mpk unavailable here ({why}); mpk_guest.rs runs this file in a guest");
        return None;
    }
    let mut rt = Runtime::new();
    rt.set_engine(Engine::Jit);
    rt.set_isolation(Isolation::Mpk);
    rt.set_verification(Verification::Off);
    Some(rt)
}

/// Assembles and loads `src` as a buffer program of its own domain.
fn load(rt: &Runtime, src: &str) -> LoadedProgram {
    rt.load_with_maps(
        &moat_isa::assemble_bytes(src).expect("assembles"),
        ProgType::Buffer,
        &[],
    )
    .expect("loads")
}

/// The error of a run that the hardware stopped at `pc`, touching `addr`.
fn assert_pkey_fault(result: Result<u64, Error>, pc: usize, addr: u64) {
    match result {
        Err(Error::Run(e)) => {
            assert_eq!(e.pc, pc, "{e}");
            assert!(
                matches!(
                    e.kind,
                    RunErrorKind::MemoryFault {
                        addr: a,
                        protection_key: true,
                        ..
                    } if a == addr
                ),
                "{e}"
            );
        }
        other => panic!("expected a protection-key fault at {pc}, got {other:?}"),
    }
}

#[test]
fn a_verifier_bug_cannot_reach_host_memory() {
    let Some(mut rt) = mpk_runtime() else { return };
    let heap = Box::new([0xaau8; 64]);
    let addr = heap.as_ptr() as u64;
    // Slot 2: the access after the two-slot lddw.
    // SAFETY: isolation test: the attacker's accesses are meant to escape a wrong proof.
    unsafe { moat::testing::simulate_verifier_bug(&mut rt, vec![2]) };
    let read = load(&rt, &format!("lddw r2, {addr:#x}\nldxdw r0, [r2]\nexit"));
    assert_pkey_fault(read.run(&mut [0u8; 8]), 2, addr);
    let write = load(
        &rt,
        &format!("lddw r2, {addr:#x}\nstdw [r2], 0x77\nmov r0, 0\nexit"),
    );
    assert_pkey_fault(write.run(&mut [0u8; 8]), 2, addr);
    assert!(heap.iter().all(|&b| b == 0xaa), "host heap intact");
    assert_eq!(write.violations(), 1);
    // Without the bug, the software check stops the same program first.
    // SAFETY: claims nothing: clears the simulated proofs.
    unsafe { moat::testing::simulate_verifier_bug(&mut rt, Vec::new()) };
    let checked = rt
        .load_with_maps(&write.bytecode(), ProgType::Buffer, &[])
        .expect("loads");
    match checked.run(&mut [0u8; 8]) {
        Err(Error::Run(e)) => assert!(matches!(e.kind, RunErrorKind::OutOfBounds { .. }), "{e}"),
        other => panic!("{other:?}"),
    }
}

/// A program of its own domain whose array map counts its runs (atomically: runs of one program on
/// several threads proceed at once, each on its own run area) and returns the new count.
fn counter(rt: &Runtime) -> (LoadedProgram, Arc<Map>, Domain) {
    let domain = Domain::new(Isolation::Mpk).expect("domain");
    let map = Arc::new(
        Map::create_in(MapDef::new(MapType::Array, 4, 8, 1), domain.memory()).expect("map"),
    );
    let bytes = moat_isa::assemble_bytes(
        "lddw %r2, map_idx_value(0, 0)\nmov %r0, 1\nlock fetch add [%r2], %r0\nadd %r0, 1\nexit",
    )
    .expect("asm");
    let program = rt
        .load_in_domain(
            &bytes,
            ProgType::Buffer,
            std::slice::from_ref(&map),
            &domain,
        )
        .expect("loads");
    (program, map, domain)
}

#[test]
fn a_verifier_bug_cannot_reach_another_domains_map() {
    let Some(mut rt) = mpk_runtime() else { return };
    let (victim, victim_map, _vd) = counter(&rt);
    assert_eq!(victim.run(&mut [0u8; 8]).expect("victim"), 1);
    let target = victim_map
        .lookup_ptr(&0u32.to_ne_bytes(), 0)
        .expect("value")
        .as_ptr() as u64;
    // SAFETY: isolation test: the attacker's accesses are meant to escape a wrong proof.
    unsafe { moat::testing::simulate_verifier_bug(&mut rt, vec![2]) };
    let attacker = load(
        &rt,
        &format!("lddw r2, {target:#x}\nstdw [r2], 1000\nmov r0, 0\nexit"),
    );
    assert_pkey_fault(attacker.run(&mut [0u8; 8]), 2, target);
    assert_eq!(
        victim_map.lookup(&0u32.to_ne_bytes()).expect("value"),
        1u64.to_ne_bytes()
    );
    assert_eq!(victim.run(&mut [0u8; 8]).expect("victim"), 2);
}

#[test]
fn more_programs_than_keys_run_isolated_at_once() {
    let Some(mut rt) = mpk_runtime() else { return };
    rt.set_verification(Verification::Privileged);
    rt.set_buffer_size(8);
    const PROGRAMS: usize = 40;
    const ROUNDS: usize = 25;
    const THREADS: usize = 4;
    let programs: Vec<_> = (0..PROGRAMS).map(|_| counter(&rt)).collect();
    let before = moat::mpk::key_stats();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let programs = &programs;
            s.spawn(move || {
                moat::mpk::open_host_access();
                for round in 0..ROUNDS {
                    for i in 0..PROGRAMS {
                        let (p, _, _) = &programs[(i * 7 + t + round) % PROGRAMS];
                        p.run(&mut [0u8; 8]).expect("runs");
                    }
                }
            });
        }
    });
    for (i, (_, map, _)) in programs.iter().enumerate() {
        let count = u64::from_ne_bytes(
            map.lookup(&0u32.to_ne_bytes())
                .expect("value")
                .try_into()
                .expect("8 bytes"),
        );
        assert_eq!(count, (ROUNDS * THREADS) as u64, "program {i}");
    }
    let after = moat::mpk::key_stats();
    println!(
        "{PROGRAMS} programs on {} hardware keys: {before:?} -> {after:?}",
        after.hardware_keys
    );
    assert!(after.hardware_keys < PROGRAMS);
    assert!(after.reassignments - before.reassignments >= PROGRAMS as u64);
    // Isolation holds across reassignments: program 0's map is out of reach of a buggy program.
    let target = programs[0]
        .1
        .lookup_ptr(&0u32.to_ne_bytes(), 0)
        .expect("value")
        .as_ptr() as u64;
    rt.set_verification(Verification::Off);
    // SAFETY: isolation test: the attacker's accesses are meant to escape a wrong proof.
    unsafe { moat::testing::simulate_verifier_bug(&mut rt, vec![2]) };
    let attacker = load(&rt, &format!("lddw r2, {target:#x}\nldxdw r0, [r2]\nexit"));
    assert_pkey_fault(attacker.run(&mut [0u8; 8]), 2, target);
}

#[test]
fn the_run_anchor_is_read_only_for_the_program() {
    let Some(mut rt) = mpk_runtime() else { return };
    // %r2 = the run anchor (the page above the context, which is the page above the eBPF stack):
    // where the host's stack pointer and the run's Rust objects are kept. A buggy verifier lets
    // the store through; the anchor's protection key lets the program read but not write it.
    let src = "mov %r2, %r10\nadd %r2, 4096\nldxdw %r0, [%r2]\nstdw [%r2], 0\nmov %r0, 0\nexit";
    // SAFETY: isolation test: the attacker's accesses are meant to escape a wrong proof.
    unsafe { moat::testing::simulate_verifier_bug(&mut rt, vec![2, 3]) };
    let program = load(&rt, src);
    match program.run(&mut [0u8; 8]) {
        Err(Error::Run(e)) => {
            assert_eq!(e.pc, 3, "the store, not the load: {e}");
            assert!(
                matches!(
                    e.kind,
                    RunErrorKind::MemoryFault {
                        protection_key: true,
                        ..
                    }
                ),
                "{e}"
            );
        }
        other => panic!("expected a protection-key fault, got {other:?}"),
    }
    // The runtime is intact: the same domain's next run and other programs work.
    let fine = load(&rt, "mov %r0, 5\nexit");
    assert_eq!(fine.run(&mut [0u8; 8]).expect("runs"), 5);
}

#[test]
fn callbacks_and_helpers_run_confined_without_stack_growth() {
    let Some(mut rt) = mpk_runtime() else { return };
    rt.set_budget(50_000_000);
    // 50 000 callback invocations from bpf_loop: each is an entry nested in the helper; none may
    // leave native stack behind.
    let src = "mov %r6, 0\nstxdw [%r10-8], %r6\nmov %r1, 50000\nlddw %r2, code(cb)\nmov %r3, %r10\nadd %r3, -8\nmov %r4, 0\ncall 181\nldxdw %r0, [%r10-8]\nexit\ncb:\nldxdw %r0, [%r2]\nadd %r0, %r1\nstxdw [%r2], %r0\nmov %r0, 0\nexit";
    let program = load(&rt, src);
    for _ in 0..3 {
        assert_eq!(
            program.run(&mut [0u8; 8]).expect("runs"),
            (0..50_000u64).sum::<u64>()
        );
    }
}
