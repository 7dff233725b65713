//! Which registers can still matter at each instruction, computed once before the abstract
//! interpretation so that pruning ignores differences that cannot change the verdict — the
//! kernel's register liveness and scalar precision, as a static, conservative analysis.
//!
//! - **Live**: a register that no path from the instruction reads before writing it is dead; an
//!   earlier state covers any value in it.
//! - **Precise**: a scalar whose exact range may decide safety on some path from the instruction:
//!   it (or a value computed from it) reaches an operand of a conditional jump (the branch taken
//!   may depend on it), pointer arithmetic (a pointer's bounds), a store or an atomic operation (a
//!   value written to memory, which later loads may use), a helper or function call's arguments,
//!   the packet offset of `ld_ind`, or the return value where the program type checks it (and
//!   every subprogram's and callback's return value). A scalar that is live but not precise only
//!   flows into arithmetic whose result is never used in one of those ways: two states that differ
//!   only there take the same branches, touch the same memory and write the same bytes, so an
//!   earlier, verified state with any scalar in that register covers the new one. The kernel marks
//!   precision by backtracking from each use it meets; this analysis marks every use any path
//!   could meet, a superset, so it never lets a state prune that the kernel's would not.
//!
//! Which registers may hold pointers (needed to tell pointer arithmetic from scalar arithmetic)
//! comes from a forward may-analysis: `r1` and `r10` at the program's entry, `r1`-`r5` and `r10`
//! at a function's, every loaded value, every call's result, anything moved, added or operated on
//! from one of those.

use moat_isa::{AluOp, AtomicOp, Insn, LddwKind, Operand, Program, Width};

/// Per instruction (by index into [`Program::insns`]): bit `r` set when register `r` may matter.
#[derive(Debug, Clone, Default)]
pub(crate) struct RegUse {
    /// Registers some path reads before writing.
    pub live: Vec<u16>,
    /// Scalars whose range may decide safety on some path.
    pub precise: Vec<u16>,
    /// The frame's 8-byte stack slots (bit `i`: bytes `8i..8i+8` above the frame's lowest) some
    /// path reads before overwriting them whole.
    pub slot_live: Vec<u64>,
    /// Slots whose spilled scalar's range may decide safety on some path.
    pub slot_precise: Vec<u64>,
}

const ARGS: u16 = 0b11_1110; // r1..r5
const CLOBBERED: u16 = 0b11_1111; // r0..r5
const R0: u16 = 1;
const R1: u16 = 1 << 1;
const R6: u16 = 1 << 6;
const R10: u16 = 1 << 10;

fn bit(r: moat_isa::Reg) -> u16 {
    1 << r.index()
}

fn operand(src: &Operand) -> u16 {
    match src {
        Operand::Reg(r) => bit(*r),
        Operand::Imm(_) => 0,
    }
}

/// What one instruction does to registers.
struct Effect {
    /// Registers read.
    uses: u16,
    /// Registers written (or clobbered).
    defs: u16,
    /// Registers whose values flow into the written ones.
    flows: u16,
    /// Registers whose exact value this instruction may rely on for safety.
    seeds: u16,
}

/// The effect of `insn`, given the registers that may hold pointers before it; `main_exit` says
/// whether an `exit` here returns from the program (not from a subprogram or callback);
/// `return_checked` whether the program's return value is range-checked.
fn effect(insn: &Insn, may_ptr: u16, main_exit: bool, return_checked: bool) -> Effect {
    let none = Effect {
        uses: 0,
        defs: 0,
        flows: 0,
        seeds: 0,
    };
    match *insn {
        Insn::Alu {
            op,
            dst,
            src,
            width,
        } => {
            let d = bit(dst);
            let s = operand(&src);
            match op {
                AluOp::Mov | AluOp::MovSx(_) => Effect {
                    uses: s,
                    defs: d,
                    flows: s,
                    seeds: 0,
                },
                _ => {
                    // Arithmetic on (or with) a pointer: the pointer's bounds come from the
                    // scalar, so both operands must be exact.
                    let pointer = width == Width::W64 && (may_ptr & (d | s)) != 0;
                    Effect {
                        uses: d | s,
                        defs: d,
                        flows: d | s,
                        seeds: if pointer && s != 0 { d | s } else { 0 },
                    }
                }
            }
        }
        Insn::Neg { dst, .. } | Insn::Endian { dst, .. } => Effect {
            uses: bit(dst),
            defs: bit(dst),
            flows: bit(dst),
            seeds: 0,
        },
        Insn::Load { dst, src, .. } => Effect {
            uses: bit(src),
            defs: bit(dst),
            flows: 0,
            seeds: 0,
        },
        Insn::Store { dst, src, .. } => {
            let s = operand(&src);
            Effect {
                uses: bit(dst) | s,
                defs: 0,
                flows: 0,
                seeds: s,
            }
        }
        Insn::Atomic { op, dst, src, .. } => {
            let (r0_use, fetch_def) = match op {
                AtomicOp::CmpXchg => (R0, R0),
                AtomicOp::Xchg => (0, bit(src)),
                AtomicOp::Add { fetch }
                | AtomicOp::Or { fetch }
                | AtomicOp::And { fetch }
                | AtomicOp::Xor { fetch } => (0, if fetch { bit(src) } else { 0 }),
            };
            Effect {
                uses: bit(dst) | bit(src) | r0_use,
                defs: fetch_def,
                flows: 0,
                seeds: bit(src) | r0_use,
            }
        }
        Insn::LoadImm64 { dst, .. } => Effect {
            uses: 0,
            defs: bit(dst),
            flows: 0,
            seeds: 0,
        },
        Insn::LoadAbs { .. } => Effect {
            uses: R6,
            defs: CLOBBERED,
            flows: 0,
            seeds: 0,
        },
        Insn::LoadInd { src, .. } => Effect {
            uses: R6 | bit(src),
            defs: CLOBBERED,
            flows: 0,
            seeds: bit(src),
        },
        Insn::Ja { .. } => none,
        Insn::Jmp { dst, src, .. } => {
            let u = bit(dst) | operand(&src);
            Effect {
                uses: u,
                defs: 0,
                flows: 0,
                seeds: u,
            }
        }
        Insn::Call(_) => Effect {
            uses: ARGS,
            defs: CLOBBERED,
            flows: 0,
            seeds: ARGS,
        },
        Insn::CallX { dst } => Effect {
            uses: ARGS | bit(dst),
            defs: CLOBBERED,
            flows: 0,
            seeds: ARGS | bit(dst),
        },
        Insn::Exit => {
            let checked = !main_exit || return_checked;
            Effect {
                uses: R0,
                defs: 0,
                flows: 0,
                seeds: if checked { R0 } else { 0 },
            }
        }
    }
}

/// What a forward may-analysis tracks: registers that may hold any pointer, or a pointer into the
/// current frame's stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tracked {
    AnyPointer,
    StackPointer,
}

/// Registers that may hold a `tracked` pointer after `insn`, from those before it.
fn pointers_after(insn: &Insn, before: u16, tracked: Tracked) -> u16 {
    match *insn {
        Insn::Alu { op, dst, src, .. } => {
            let d = bit(dst);
            let s = operand(&src);
            match op {
                AluOp::Mov | AluOp::MovSx(_) => {
                    if before & s != 0 {
                        before | d
                    } else {
                        before & !d
                    }
                }
                // Whatever a pointer operand becomes, it may stay a pointer.
                _ if before & (d | s) != 0 => before | d,
                _ => before,
            }
        }
        // A spilled pointer may be filled back.
        Insn::Load { dst, .. } => before | bit(dst),
        // Map and function addresses are pointers, never into the stack.
        Insn::LoadImm64 { dst, kind, .. } => {
            if kind == LddwKind::Imm || tracked == Tracked::StackPointer {
                before & !bit(dst)
            } else {
                before | bit(dst)
            }
        }
        Insn::Atomic { op, src, .. } => match op {
            AtomicOp::CmpXchg => before | R0,
            AtomicOp::Xchg => before | bit(src),
            AtomicOp::Add { fetch: true }
            | AtomicOp::Or { fetch: true }
            | AtomicOp::And { fetch: true }
            | AtomicOp::Xor { fetch: true } => before | bit(src),
            _ => before,
        },
        Insn::LoadAbs { .. } | Insn::LoadInd { .. } => before & !CLOBBERED,
        // Helpers return pointers (into maps, never into the stack); a function may return a
        // pointer its caller passed it.
        Insn::Call(moat_isa::CallTarget::Helper(_) | moat_isa::CallTarget::Kfunc(_))
            if tracked == Tracked::StackPointer =>
        {
            before & !CLOBBERED
        }
        Insn::Call(_) | Insn::CallX { .. } => (before & !CLOBBERED) | R0,
        _ => before,
    }
}

/// Successor instruction indices of instruction `i` within its function (calls fall through).
fn successors(prog: &Program, i: usize) -> Vec<usize> {
    let Some(&(pc, insn)) = prog.insns().get(i) else {
        return Vec::new();
    };
    let target = || {
        insn.branch_target(pc)
            .and_then(|t| usize::try_from(t).ok())
            .and_then(|t| prog.index_of_slot(t))
    };
    match insn {
        Insn::Exit => Vec::new(),
        Insn::Ja { .. } => target().into_iter().collect(),
        Insn::Jmp { .. } => {
            let mut v = vec![i + 1];
            v.extend(target());
            v
        }
        _ => vec![i + 1],
    }
}

/// Instructions reachable from a function entry other than the program's own (`entries[1..]`):
/// their `exit` returns to a caller.
fn in_subprograms(prog: &Program, entries: &[usize]) -> Vec<bool> {
    let n = prog.insns().len();
    let mut inside = vec![false; n];
    let mut work: Vec<usize> = entries
        .iter()
        .filter(|&&e| e != 0)
        .filter_map(|&e| prog.index_of_slot(e))
        .collect();
    while let Some(i) = work.pop() {
        if i >= n || inside[i] {
            continue;
        }
        inside[i] = true;
        work.extend(successors(prog, i));
    }
    inside
}

/// Runs both analyses. `entries`: function entry slots (slot 0 first); `return_checked`: whether
/// the program's return value is range-checked at its exit.
pub(crate) fn analyse(prog: &Program, entries: &[usize], return_checked: bool) -> RegUse {
    let insns = prog.insns();
    let n = insns.len();
    let in_sub = in_subprograms(prog, entries);
    // Forward: registers that may hold pointers before each instruction.
    let mut ptr_in = vec![0u16; n];
    let mut seen = vec![false; n];
    let mut work: Vec<usize> = Vec::new();
    for &e in entries {
        if let Some(i) = prog.index_of_slot(e) {
            // r1 (the context) at the program's entry; r1..r5 (arguments) at a function's.
            let start = if e == 0 { R1 | R10 } else { ARGS | R10 };
            ptr_in[i] |= start;
            seen[i] = true;
            work.push(i);
        }
    }
    while let Some(i) = work.pop() {
        let out = pointers_after(&insns[i].1, ptr_in[i], Tracked::AnyPointer);
        for s in successors(prog, i) {
            if s < n && (!seen[s] || ptr_in[s] | out != ptr_in[s]) {
                seen[s] = true;
                ptr_in[s] |= out;
                work.push(s);
            }
        }
    }
    // Forward: registers that may point into the current frame's stack.
    let mut stack_in = vec![0u16; n];
    let mut seen = vec![false; n];
    for &e in entries {
        if let Some(i) = prog.index_of_slot(e) {
            stack_in[i] |= R10;
            seen[i] = true;
            work.push(i);
        }
    }
    while let Some(i) = work.pop() {
        let out = pointers_after(&insns[i].1, stack_in[i], Tracked::StackPointer);
        for s in successors(prog, i) {
            if s < n && (!seen[s] || stack_in[s] | out != stack_in[s]) {
                seen[s] = true;
                stack_in[s] |= out;
                work.push(s);
            }
        }
    }
    // Backward: liveness and precision of registers and stack slots, to a fixed point.
    let mut out = RegUse {
        live: vec![0; n],
        precise: vec![0; n],
        slot_live: vec![0; n],
        slot_precise: vec![0; n],
    };
    let effects: Vec<Effect> = insns
        .iter()
        .enumerate()
        .map(|(i, (_, insn))| effect(insn, ptr_in[i], !in_sub[i], return_checked))
        .collect();
    let succs: Vec<Vec<usize>> = (0..n).map(|i| successors(prog, i)).collect();
    let mut changed = true;
    while changed {
        changed = false;
        for i in (0..n).rev() {
            let mut after = Masks::default();
            for &s in &succs[i] {
                if s < n {
                    after.regs_live |= out.live[s];
                    after.regs_precise |= out.precise[s];
                    after.slots_live |= out.slot_live[s];
                    after.slots_precise |= out.slot_precise[s];
                }
            }
            let before = step(&insns[i].1, &effects[i], stack_in[i], after);
            if before.regs_live != out.live[i]
                || before.regs_precise != out.precise[i]
                || before.slots_live != out.slot_live[i]
                || before.slots_precise != out.slot_precise[i]
            {
                out.live[i] = before.regs_live;
                out.precise[i] = before.regs_precise;
                out.slot_live[i] = before.slots_live;
                out.slot_precise[i] = before.slots_precise;
                changed = true;
            }
        }
    }
    out
}

/// What matters at one point.
#[derive(Debug, Clone, Copy, Default)]
struct Masks {
    regs_live: u16,
    regs_precise: u16,
    slots_live: u64,
    slots_precise: u64,
}

/// The slots bytes `[off, off + size)` from the frame pointer cover, if all inside the frame.
fn slots_of(off: i16, size: usize) -> Option<u64> {
    let first = 512 + i64::from(off);
    let last = first + size as i64 - 1;
    if first < 0 || last >= 512 || size == 0 {
        return None;
    }
    let (a, b) = ((first / 8) as u32, (last / 8) as u32);
    Some((a..=b).fold(0u64, |m, k| m | (1u64 << k)))
}

/// What matters before `insn`, from what matters after it. `stack`: registers that may point into
/// the frame's stack before it.
fn step(insn: &Insn, e: &Effect, stack: u16, after: Masks) -> Masks {
    const ALL: u64 = u64::MAX;
    let mut regs_live = (after.regs_live & !e.defs) | e.uses | R10;
    let mut regs_precise = (after.regs_precise & !e.defs) | e.seeds;
    if after.regs_precise & e.defs != 0 {
        regs_precise |= e.flows;
    }
    let (mut slots_live, mut slots_precise) = (after.slots_live, after.slots_precise);
    match *insn {
        Insn::Store {
            size,
            dst,
            off,
            src,
        } => {
            let s = operand(&src);
            match (dst.index() == 10, slots_of(off, size.bytes())) {
                (true, Some(slots)) => {
                    if size.bytes() == 8 && off % 8 == 0 {
                        // A whole slot written from the frame pointer: a spill (or a number). Its
                        // value matters as much as the slot's does after.
                        if slots_precise & slots == 0 {
                            regs_precise = (regs_precise & !s) | (after.regs_precise & s);
                        }
                        slots_live &= !slots;
                        slots_precise &= !slots;
                    }
                }
                (true, None) => {}
                // Somewhere in the frame, or elsewhere: no slot is known to be overwritten.
                (false, _) => {}
            }
        }
        Insn::Load {
            size,
            dst,
            src,
            off,
            ..
        } => {
            let d_precise = after.regs_precise & bit(dst) != 0;
            if src.index() == 10 {
                if let Some(slots) = slots_of(off, size.bytes()) {
                    slots_live |= slots;
                    if d_precise {
                        slots_precise |= slots;
                    }
                }
            } else if stack & bit(src) != 0 {
                slots_live = ALL;
                if d_precise {
                    slots_precise = ALL;
                }
            }
        }
        Insn::Atomic { size, dst, off, .. } => {
            if dst.index() == 10 {
                if let Some(slots) = slots_of(off, size.bytes()) {
                    slots_live |= slots;
                    slots_precise |= slots;
                }
            } else if stack & bit(dst) != 0 {
                slots_live = ALL;
                slots_precise = ALL;
            }
        }
        // A helper or function given a pointer into the frame may read any slot of it.
        Insn::Call(_) | Insn::CallX { .. } if stack & (ARGS | e.uses) != 0 => {
            slots_live = ALL;
            slots_precise = ALL;
        }
        // The frame ends: nothing in it matters to the caller.
        Insn::Exit => {
            slots_live = 0;
            slots_precise = 0;
        }
        _ => {}
    }
    regs_live |= R10;
    Masks {
        regs_live,
        regs_precise,
        slots_live,
        slots_precise,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog(src: &str) -> Program {
        let bytes = moat_isa::assemble_bytes(src).expect("assembles");
        Program::new(&bytes).expect("valid")
    }

    #[test]
    fn a_sum_that_only_reaches_the_return_is_imprecise() {
        // r1 = n; r2 = i; r3 = sum.
        let p = prog(
            "mov %r2, 1
             mov %r3, 0
             loop:
             jgt %r2, %r1, done
             mov %r0, %r3
             rsh %r0, 3
             xor %r0, %r2
             add %r3, %r0
             add %r2, 1
             ja loop
             done:
             mov %r0, %r3
             exit",
        );
        let u = analyse(&p, &[0], false);
        let done = p.index_of_slot(9).unwrap();
        assert_eq!(
            u.live[done] & 0b1110,
            0b1000,
            "only the sum is live after the loop"
        );
        assert_eq!(u.precise[done] & 0b1110, 0, "and it is not precise");
        // At the loop head, i and n decide the branch.
        let head = p.index_of_slot(2).unwrap();
        assert_eq!(u.precise[head] & 0b110, 0b110);
        assert_eq!(
            u.precise[head] & 0b1000,
            0,
            "the sum never decides anything"
        );
        // Checked return values are precise.
        let u = analyse(&p, &[0], true);
        assert_eq!(u.precise[done] & 0b1000, 0b1000);
    }

    #[test]
    fn spilled_scalars_are_precise_only_if_their_fill_is() {
        // fp-8 holds a number that only reaches the unchecked return value; fp-16 one that is
        // added to a pointer after it is filled.
        let p = prog(
            "ldxw %r3, [%r1+0]
             stxdw [%r10-8], %r3
             stxdw [%r10-16], %r3
             ja +0
             ldxdw %r4, [%r10-16]
             and %r4, 7
             mov %r5, %r10
             add %r5, -32
             add %r5, %r4
             ldxdw %r0, [%r10-8]
             exit",
        );
        let u = analyse(&p, &[0], false);
        let at = |slot: usize| p.index_of_slot(slot).unwrap();
        let (fp8, fp16) = (1u64 << 63, 1u64 << 62);
        assert_eq!(u.slot_live[at(3)] & (fp8 | fp16), fp8 | fp16);
        assert_eq!(u.slot_precise[at(3)] & (fp8 | fp16), fp16);
        // The store to fp-16 makes r3 precise before it; the one to fp-8 alone would not.
        assert_ne!(u.precise[at(2)] & (1 << 3), 0);
        assert_eq!(
            u.slot_live[at(1)] & (fp8 | fp16),
            0,
            "both are written before any read"
        );
    }

    #[test]
    fn scalars_added_to_pointers_stored_or_passed_are_precise() {
        let p = prog(
            "mov %r2, %r1
             ldxw %r3, [%r1+0]
             and %r3, 7
             add %r2, %r3
             ldxb %r0, [%r2+0]
             mov %r4, 5
             stxdw [%r10-8], %r4
             mov %r5, 9
             mov %r6, %r5
             mov %r1, %r6
             call 1
             exit",
        );
        let u = analyse(&p, &[0], false);
        let at = |slot: usize| p.index_of_slot(slot).unwrap();
        assert_ne!(u.precise[at(2)] & (1 << 3), 0, "r3 is added to a pointer");
        assert_ne!(u.precise[at(6)] & (1 << 4), 0, "r4 is stored");
        assert_ne!(
            u.precise[at(8)] & (1 << 5),
            0,
            "r5 reaches a helper argument"
        );
    }
}
