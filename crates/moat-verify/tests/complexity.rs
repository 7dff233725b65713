//! Verification stays bounded in time and memory on programs built to blow it up.
//!
//! Regression: a ~1 300-instruction program (8 nested calls, 2^8 distinct paths, then a thousand
//! jump targets) made the verifier store up to 64 full multi-frame states at every jump target plus a
//! cloned state per pending branch: 4 GB and 145 s here (13 GB and over 300 s in the report); with
//! one frame and 4 000 jump targets, 26 s and 1.7 GB. States now share unchanged frames and stacks
//! (`Rc`), and the analysis refuses a program ("program too complex") once its states take more
//! than `MAX_STATE_BYTES`, its comparisons of states more than `MAX_COMPARE_WORK`, or more than
//! `MAX_PENDING_BRANCHES` branches wait to be explored; past a quarter of the memory budget, stored
//! states that keep failing to prune are evicted as the kernel does.
//!
//! The generators take their sizes as parameters. Timings are not asserted; to measure one program
//! in a release build: `cargo test --release -p moat-verify --test complexity -- --nocapture NAME`
//! (each test prints its verdict, statistics and time), under `/usr/bin/time -v` for the peak RSS.

use moat_isa::Program;
use moat_verify::{
    verify, Context, Env, Reason, Stats, MAX_COMPARE_WORK, MAX_PENDING_BRANCHES, MAX_STATE_BYTES,
};
use std::fmt::Write;
use std::time::Instant;

/// `diamonds` two-way branches on bits of `r1`, each setting a different bit of `r6` on one side:
/// 2^`diamonds` paths with pairwise different states, none covering another (the programs below
/// compare `r6` at their end, so its value matters everywhere and no path's state prunes another's).
fn diamonds(s: &mut String, diamonds: u32) {
    s.push_str("mov %r6, 0\n");
    for i in 0..diamonds {
        let bit = 1u32 << i;
        let _ = writeln!(
            s,
            "mov %r7, %r1\nand %r7, {bit}\njeq %r7, 0, +1\nor %r6, {bit}"
        );
    }
}

/// `targets` instructions that are each a jump target (`ja +0`), so each is a pruning point where
/// every path that reaches it is compared and possibly stored; with `write`, a register changes
/// before each, so no two stored states share their frame.
fn jump_targets(s: &mut String, targets: u32, write: bool) {
    for t in 0..targets {
        if write {
            let _ = writeln!(s, "mov %r7, {t}");
        }
        s.push_str("ja +0\n");
    }
}

/// `frames` nested functions (the main one included) each holding a few stack slots and registers;
/// the innermost one branches `diamonds` times, then passes `targets` jump targets.
fn nested(frames: u32, diamonds_n: u32, targets: u32) -> String {
    nested_with(frames, diamonds_n, targets, false)
}

fn nested_with(frames: u32, diamonds_n: u32, targets: u32, write: bool) -> String {
    let mut s = String::from("ldxdw %r1, [%r1+0]\n");
    for f in 0..frames {
        let _ = writeln!(
            s,
            "stdw [%r10-8], {f}\nstdw [%r10-16], {f}\nmov %r8, {f}\nmov %r9, %r10"
        );
        if f + 1 < frames {
            let _ = writeln!(s, "call local f{}\nexit\nf{}:", f + 1, f + 1);
        }
    }
    diamonds(&mut s, diamonds_n);
    jump_targets(&mut s, targets, write);
    // A branch on r6 (both ways lead on): its exact value is used.
    s.push_str("jeq %r6, -1, +0\nmov %r0, %r6\nexit\n");
    s
}

/// `frames` nested functions; the innermost one runs a loop of `iterations` (proven bound) whose body
/// passes `targets` jump targets, each after writing a stack slot and a register: every state of the
/// loop is still being explored when the next iteration comes, so none can be evicted, and each has
/// its own copy of the innermost frame and stack.
fn loop_with_stack_writes(frames: u32, targets: u32, iterations: u32) -> String {
    let mut s = String::from("ldxdw %r1, [%r1+0]\n");
    for f in 0..frames {
        let _ = writeln!(s, "stdw [%r10-8], {f}\nmov %r8, {f}");
        if f + 1 < frames {
            let _ = writeln!(s, "call local f{}\nexit\nf{}:", f + 1, f + 1);
        }
    }
    s.push_str("mov %r6, 0\nloop:\n");
    for t in 0..targets {
        let slot = 8 * (1 + t % 40);
        let _ = writeln!(s, "stxdw [%r10-{slot}], %r6\nmov %r7, {t}\nja +0");
    }
    let _ = writeln!(
        s,
        "add %r6, 1\njlt %r6, {iterations}, loop\nmov %r0, 0\nexit"
    );
    s
}

/// `branches` conditional jumps in a row whose both sides continue alike (a comparison of two
/// unknown numbers, which refines neither): each leaves a branch waiting to be explored until the
/// path it continues with ends, and is then pruned.
fn branch_sequence(branches: u32) -> String {
    let mut s = String::from("ldxdw %r2, [%r1+0]\nldxdw %r1, [%r1+0]\n");
    for _ in 0..branches {
        s.push_str("jeq %r1, %r2, +0\n");
    }
    s.push_str("mov %r0, 0\nexit\n");
    s
}

/// Verifies `source`: its statistics, and why it was refused (`None`: accepted).
fn check(name: &str, source: &str) -> (Stats, Option<Reason>) {
    check_in(name, source, Context::Buffer { size: 8 })
}

/// [`check`] with the program's context.
fn check_in(name: &str, source: &str, context: Context) -> (Stats, Option<Reason>) {
    let program =
        Program::new(&moat_isa::assemble_bytes(source).expect("assembles")).expect("valid");
    let env = Env::new(context);
    let start = Instant::now();
    let result = verify(&program, &env);
    let elapsed = start.elapsed();
    let out = match result {
        Ok(v) => (v.stats(), None),
        Err(r) => (r.stats, Some(r.error.reason.clone())),
    };
    println!(
        "{name}: {} instructions, {} in {elapsed:?}: {:?}",
        program.slots(),
        out.1
            .as_ref()
            .map_or("accepted".to_string(), |r| format!("refused ({r})")),
        out.0
    );
    out
}

/// Whether `r` is the refusal of a program too complex to verify.
fn too_complex(r: &Reason) -> bool {
    matches!(r, Reason::TooComplex { .. })
}

/// These programs' states take a few MiB at most now; before, gigabytes.
const SMALL: u64 = 64 << 20;

/// Every budget held: what one stored state or comparison round may add past a check is small.
fn bounded(stats: &Stats) {
    assert!(
        stats.peak_state_bytes <= MAX_STATE_BYTES + (64 << 10),
        "{stats:?}"
    );
    assert!(
        stats.compare_work <= MAX_COMPARE_WORK + (1 << 20),
        "{stats:?}"
    );
    assert!(
        stats.peak_pending <= MAX_PENDING_BRANCHES as u64,
        "{stats:?}"
    );
}

/// The verdict on a blow-up program: accepted, or refused as too complex; either way within every
/// budget and with small states.
fn accepted_or_too_complex(name: &str, source: &str) {
    let (stats, reason) = check(name, source);
    assert!(reason.as_ref().is_none_or(too_complex), "{reason:?}");
    bounded(&stats);
    assert!(stats.peak_state_bytes < SMALL, "{stats:?}");
}

#[test]
fn nested_calls_with_diamonds_and_jump_targets() {
    // 8 frames, 2^8 paths, 1 200 jump targets: about 1 300 instructions. No state covers another,
    // so every path is verified to the end, comparing states at every jump target.
    accepted_or_too_complex(
        "nested_calls_with_diamonds_and_jump_targets",
        &nested(8, 8, 1200),
    );
}

#[test]
fn nested_calls_with_thousands_of_jump_targets() {
    let source = nested(8, 8, 4000);
    let (stats, reason) = check("nested_calls_with_thousands_of_jump_targets", &source);
    assert!(reason.as_ref().is_some_and(too_complex), "{reason:?}");
    bounded(&stats);
    assert!(stats.peak_state_bytes < SMALL, "{stats:?}");
}

#[test]
fn one_frame_with_thousands_of_jump_targets() {
    let source = nested(1, 8, 4000);
    let (stats, reason) = check("one_frame_with_thousands_of_jump_targets", &source);
    assert!(reason.as_ref().is_some_and(too_complex), "{reason:?}");
    bounded(&stats);
    assert!(stats.peak_state_bytes < SMALL, "{stats:?}");
}

#[test]
fn diamonds_whose_values_decide_nothing_prune() {
    // As one_frame_with_thousands_of_jump_targets, but r6 only reaches the (unchecked) return
    // value: the two sides of each diamond differ in a scalar that decides nothing (and in r7,
    // dead), so the second is pruned where they join (register precision and liveness, as the
    // kernel): one path of 4 000 jump targets instead of 2^8.
    let mut source = String::from("ldxdw %r1, [%r1+0]\n");
    diamonds(&mut source, 8);
    jump_targets(&mut source, 4000, false);
    source.push_str("mov %r0, %r6\nexit\n");
    let (stats, reason) = check("diamonds_whose_values_decide_nothing_prune", &source);
    assert!(reason.is_none(), "{reason:?}");
    assert!(stats.pruned >= 8, "{stats:?}");
    assert!(stats.insns_processed < 20_000, "{stats:?}");
}

#[test]
fn pointers_with_different_ids_prune_when_their_ids_pair() {
    // XDP: 10 diamonds whose two sides each move a packet pointer by a variable amount (r5 gets a
    // new id on every path: ids are handed out as paths reach the `add`), bounds-checked and read
    // after all of them. Paths joining after a diamond differ only in r5's id; pairing ids (the
    // kernel's `check_ids`) prunes the second side, where comparing ids for equality followed all
    // 2^10 paths.
    let mut s = String::from(
        "ldxw %r2, [%r1+0]\nldxw %r3, [%r1+4]\nldxw %r6, [%r1+12]\nmov %r4, %r6\nand %r4, 15\n\
         mov %r5, %r2\n",
    );
    for i in 0..10 {
        let bit = 1u32 << i;
        let _ = writeln!(
            s,
            "mov %r7, %r6\nand %r7, {bit}\njeq %r7, 0, +2\nadd %r5, %r4\nja +1\nadd %r5, %r4"
        );
    }
    s.push_str("mov %r0, 0\nmov %r8, %r5\nadd %r8, 1\njgt %r8, %r3, +1\nldxb %r0, [%r5+0]\nexit\n");
    let (stats, reason) = check_in(
        "pointers_with_different_ids_prune_when_their_ids_pair",
        &s,
        Context::xdp(),
    );
    assert!(reason.is_none(), "{reason:?}");
    assert!(stats.pruned >= 10, "{stats:?}");
    assert!(stats.insns_processed < 1_000, "{stats:?}");
}

#[test]
fn states_that_do_not_prune_are_evicted() {
    // As nested_calls_with_diamonds_and_jump_targets, but each stored state has its own frame: past
    // a quarter of the memory budget, the states that keep failing to prune are evicted.
    let source = nested_with(8, 8, 1200, true);
    let (stats, reason) = check("states_that_do_not_prune_are_evicted", &source);
    assert!(reason.as_ref().is_none_or(too_complex), "{reason:?}");
    bounded(&stats);
    assert!(stats.evicted > 0, "{stats:?}");
}

#[test]
fn states_beyond_the_memory_budget_are_refused() {
    // 64 stored states (the most per instruction) at each of 1 000 jump targets, each with its own
    // frame and stack of 40 slots: over 300 MiB.
    let source = loop_with_stack_writes(8, 1000, 100);
    let (stats, reason) = check("states_beyond_the_memory_budget_are_refused", &source);
    assert!(
        matches!(reason, Some(Reason::TooComplex { limit, .. }) if limit == MAX_STATE_BYTES),
        "{reason:?}"
    );
    bounded(&stats);
}

#[test]
fn long_branch_sequences_are_refused() {
    let (stats, reason) = check("long_branch_sequences_are_refused", &branch_sequence(9000));
    assert!(
        matches!(reason, Some(Reason::TooComplex { limit, .. }) if limit == MAX_PENDING_BRANCHES as u64),
        "{reason:?}"
    );
    bounded(&stats);
    // A sequence the kernel's limit allows is verified.
    let (_, reason) = check(
        "long_branch_sequences_are_refused (8 000)",
        &branch_sequence(8000),
    );
    assert!(reason.is_none(), "{reason:?}");
}
