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

/// Registers that may hold pointers after `insn`, from those before it.
fn pointers_after(insn: &Insn, before: u16) -> u16 {
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
        Insn::Load { dst, .. } => before | bit(dst),
        Insn::LoadImm64 { dst, kind, .. } => {
            if kind == LddwKind::Imm {
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
        let out = pointers_after(&insns[i].1, ptr_in[i]);
        for s in successors(prog, i) {
            if s < n && (!seen[s] || ptr_in[s] | out != ptr_in[s]) {
                seen[s] = true;
                ptr_in[s] |= out;
                work.push(s);
            }
        }
    }
    // Backward: liveness and precision, to a fixed point.
    let mut live = vec![0u16; n];
    let mut precise = vec![0u16; n];
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
            let (mut live_out, mut precise_out) = (0u16, 0u16);
            for &s in &succs[i] {
                if s < n {
                    live_out |= live[s];
                    precise_out |= precise[s];
                }
            }
            let e = &effects[i];
            let live_in = (live_out & !e.defs) | e.uses | R10;
            let mut precise_in = (precise_out & !e.defs) | e.seeds;
            if precise_out & e.defs != 0 {
                precise_in |= e.flows;
            }
            if live_in != live[i] || precise_in != precise[i] {
                live[i] = live_in;
                precise[i] = precise_in;
                changed = true;
            }
        }
    }
    RegUse { live, precise }
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
