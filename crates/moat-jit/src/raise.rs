//! Raised loops in compiled code (`moat-raise`): at the header of each loop raised into a plan,
//! generated code calls the plan (`run::jit_raise`) before the loop's own code. The plan checks
//! every range it touches, whole, against the run's memory map — the check every unproven access
//! of the loop would get — and runs only when its preconditions hold (its closed form for the
//! iteration count, no overlap, the loop's instructions within the remaining budget); it then sets
//! the live-out registers, charges the loop's exact instruction count to the budget and continues
//! at the loop's exit. Otherwise the loop's own code runs, so results, memory, errors and the
//! instruction at which a budget runs out are the interpreter's. Back-edges go to the header's own
//! code, after the call: a plan that declines is asked once per entry, not per iteration.

use moat_isa::{Insn, Program};
use moat_raise::RaisedLoop;
use moat_verify::VerifiedProgram;

pub use moat_raise::{LoopReport, Raising};

/// Finds and raises the loops of a verified program (`moat_raise::raise`): what
/// [`crate::JitProgram::new_raised`] takes, with a report on every loop found.
pub fn raise_loops(verified: &VerifiedProgram) -> Raising {
    moat_raise::raise(verified)
}

/// The raised loops that fit `program`: header and latch are instructions, the latch branches
/// back to the header, every exit of the plan is an instruction. Others are dropped (their loops
/// run as compiled), so a plan for another program cannot send code anywhere but an instruction.
pub(crate) fn fitting(program: &Program, raised: Vec<RaisedLoop>) -> Vec<RaisedLoop> {
    let is_insn = |slot: usize| program.index_of_slot(slot).is_some();
    raised
        .into_iter()
        .filter(|l| {
            let latch_back = program
                .index_of_slot(l.latch)
                .and_then(|i| program.insns().get(i))
                .is_some_and(|&(pc, insn)| {
                    matches!(insn, Insn::Ja { .. } | Insn::Jmp { .. })
                        && insn.branch_target(pc) == Some(l.header as i64)
                });
            l.header < l.latch
                && is_insn(l.header)
                && latch_back
                && l.plan.exits.iter().flatten().all(|e| is_insn(e.slot))
        })
        .collect()
}
