//! Structurally checked programs: decoded bytecode whose jumps, calls and register use are well formed.
//!
//! These are the checks every engine needs before it may run bytecode at all, verified or not: every jump
//! and local call lands on an instruction (never past the end, never inside `lddw`), `r10` is never
//! written, kfunc calls are refused, and no register is read before it is written on some path (a must-be-
//! initialised data-flow analysis over the control-flow graph, with the eBPF calling convention: a call
//! defines `r0` and clobbers `r1`–`r5`; a local function starts with `r1`–`r5` and `r10` defined).
//! The safety proofs proper (memory bounds, pointer types, termination) are the verifier's.

use crate::insn::{decode, AtomicOp, CallTarget, DecodeError, Insn, Operand, Reg};
use thiserror::Error;

/// Why bytecode is not a well-formed program.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProgramError {
    /// The bytes do not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The program has no instructions.
    #[error("program is empty")]
    Empty,
    /// A jump or call target is outside the program.
    #[error("instruction {pc}: jump target {target} is outside the program (0..{len})")]
    JumpOutOfRange {
        /// The jump's slot.
        pc: usize,
        /// The computed target slot.
        target: i64,
        /// Program length in slots.
        len: usize,
    },
    /// A jump or call lands on the second slot of `lddw`.
    #[error("instruction {pc}: jump target {target} is the middle of lddw")]
    JumpIntoLddw {
        /// The jump's slot.
        pc: usize,
        /// The target slot.
        target: usize,
    },
    /// An instruction writes the read-only frame pointer.
    #[error("instruction {pc}: writes the read-only frame pointer r10")]
    WritesFramePointer {
        /// The instruction's slot.
        pc: usize,
    },
    /// A register is read before it is written on some path.
    #[error("instruction {pc}: reads uninitialised register r{reg}")]
    UninitRegister {
        /// The instruction's slot.
        pc: usize,
        /// The register number.
        reg: u8,
    },
    /// Execution can run past the last instruction.
    #[error("instruction {pc}: execution falls through the end of the program")]
    FallsOffEnd {
        /// The last instruction's slot.
        pc: usize,
    },
    /// A kfunc call (kernel function by BTF id) has no meaning in userspace.
    #[error("instruction {pc}: kfunc calls (BTF id {id}) are not supported")]
    Kfunc {
        /// The call's slot.
        pc: usize,
        /// The BTF id.
        id: i32,
    },
}

/// A decoded program whose structure has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    insns: Vec<(usize, Insn)>,
    slots: usize,
    /// Slot index of each instruction start, `None` for the second slot of `lddw`.
    index_of_slot: Vec<Option<usize>>,
}

/// Registers defined at program entry: the context `r1`, its length `r2` and the frame pointer `r10`.
const PROGRAM_ENTRY: u16 = 0b100_0000_0110;
/// Registers defined at the entry of a local function: the arguments `r1`-`r5` and `r10`.
const FUNCTION_ENTRY: u16 = 0b100_0011_1110;

fn bit(r: Reg) -> u16 {
    1 << r.num()
}

impl Program {
    /// Decodes and checks bytecode.
    pub fn new(bytes: &[u8]) -> Result<Program, ProgramError> {
        let insns = decode(bytes)?;
        let slots = bytes.len() / crate::INSN_SIZE;
        Program::from_insns(insns, slots)
    }

    /// Decodes and checks the structure only, leaving register initialisation to a path-sensitive
    /// verifier that runs next (the must-be-initialised analysis of [`Program::new`] cannot see
    /// which paths are feasible).
    pub fn new_for_verifier(bytes: &[u8]) -> Result<Program, ProgramError> {
        let insns = decode(bytes)?;
        let slots = bytes.len() / crate::INSN_SIZE;
        let program = Program::build(insns, slots)?;
        program.check_structure()?;
        Ok(program)
    }

    fn build(insns: Vec<(usize, Insn)>, slots: usize) -> Result<Program, ProgramError> {
        if insns.is_empty() {
            return Err(ProgramError::Empty);
        }
        let mut index_of_slot = vec![None; slots];
        for (i, (pc, _)) in insns.iter().enumerate() {
            if let Some(s) = index_of_slot.get_mut(*pc) {
                *s = Some(i);
            }
        }
        Ok(Program {
            insns,
            slots,
            index_of_slot,
        })
    }

    fn from_insns(insns: Vec<(usize, Insn)>, slots: usize) -> Result<Program, ProgramError> {
        let program = Program::build(insns, slots)?;
        program.check_structure()?;
        program.check_init()?;
        Ok(program)
    }

    /// The instructions with their slot indices.
    pub fn insns(&self) -> &[(usize, Insn)] {
        &self.insns
    }

    /// The program length in 8-byte slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The index into [`Program::insns`] of the instruction starting at `slot`.
    pub fn index_of_slot(&self, slot: usize) -> Option<usize> {
        self.index_of_slot.get(slot).copied().flatten()
    }

    /// Bytecode of the program.
    pub fn to_bytes(&self) -> Vec<u8> {
        let insns: Vec<Insn> = self.insns.iter().map(|(_, i)| *i).collect();
        crate::encode(&insns)
    }

    fn target_index(&self, pc: usize, target: i64) -> Result<usize, ProgramError> {
        let slot = usize::try_from(target)
            .ok()
            .filter(|t| *t < self.slots)
            .ok_or(ProgramError::JumpOutOfRange {
                pc,
                target,
                len: self.slots,
            })?;
        self.index_of_slot(slot)
            .ok_or(ProgramError::JumpIntoLddw { pc, target: slot })
    }

    fn check_structure(&self) -> Result<(), ProgramError> {
        for (i, &(pc, insn)) in self.insns.iter().enumerate() {
            if let Some(target) = insn.branch_target(pc) {
                self.target_index(pc, target)?;
            }
            if let Insn::Call(CallTarget::Kfunc(id)) = insn {
                return Err(ProgramError::Kfunc { pc, id });
            }
            if let Insn::LoadImm64 {
                kind: crate::LddwKind::Code,
                imm,
                ..
            } = insn
            {
                self.target_index(pc, relative(pc, imm))?;
            }
            if written(&insn).is_some_and(|w| w & bit(Reg::R10) != 0) {
                return Err(ProgramError::WritesFramePointer { pc });
            }
            let last = i + 1 == self.insns.len();
            if last && !matches!(insn, Insn::Exit | Insn::Ja { .. }) {
                return Err(ProgramError::FallsOffEnd { pc });
            }
        }
        Ok(())
    }

    /// Successor instruction indices of instruction `i` (local calls fall through: the callee is
    /// analysed from its own entry).
    fn successors(&self, i: usize) -> Vec<usize> {
        let (pc, insn) = self.insns[i];
        let next = i + 1;
        let target = || {
            insn.branch_target(pc)
                .and_then(|t| usize::try_from(t).ok())
                .and_then(|t| self.index_of_slot(t))
        };
        match insn {
            Insn::Exit => vec![],
            Insn::Ja { .. } => target().into_iter().collect(),
            Insn::Jmp { .. } => {
                let mut v = vec![next];
                v.extend(target());
                v
            }
            _ => vec![next],
        }
    }

    /// Must-be-initialised analysis: a forward data-flow over all functions.
    fn check_init(&self) -> Result<(), ProgramError> {
        let n = self.insns.len();
        // Function entries: instruction 0 and every local call / code-pointer target.
        let mut entries = vec![0usize];
        for &(pc, insn) in &self.insns {
            let target = match insn {
                Insn::Call(CallTarget::Local(_)) => insn.branch_target(pc),
                Insn::LoadImm64 {
                    kind: crate::LddwKind::Code,
                    imm,
                    ..
                } => Some(relative(pc, imm)),
                _ => None,
            };
            if let Some(idx) = target
                .and_then(|t| usize::try_from(t).ok())
                .and_then(|t| self.index_of_slot(t))
            {
                entries.push(idx);
            }
        }
        // `state[i]` is the set of registers defined on every path to i; `None` = not reached yet.
        let mut state: Vec<Option<u16>> = vec![None; n];
        let mut work = Vec::new();
        for &e in &entries {
            state[e] = Some(if e == 0 {
                PROGRAM_ENTRY
            } else {
                FUNCTION_ENTRY
            });
            work.push(e);
        }
        // Bound the iteration: each state can only lose bits, 11 per instruction.
        let mut fuel = n.saturating_mul(12).saturating_add(16);
        while let Some(i) = work.pop() {
            if fuel == 0 {
                break;
            }
            fuel -= 1;
            let Some(defined) = state[i] else { continue };
            let (pc, insn) = self.insns[i];
            let read = reads(&insn);
            let missing = read & !defined;
            if missing != 0 {
                return Err(ProgramError::UninitRegister {
                    pc,
                    reg: u8::try_from(missing.trailing_zeros()).unwrap_or(u8::MAX),
                });
            }
            let out = transfer(&insn, defined);
            for s in self.successors(i) {
                let Some(slot) = state.get_mut(s) else {
                    continue;
                };
                let merged = match *slot {
                    None => out,
                    Some(old) => old & out,
                };
                if *slot != Some(merged) {
                    *slot = Some(merged);
                    work.push(s);
                }
            }
        }
        Ok(())
    }
}

fn op_reads(src: Operand) -> u16 {
    match src {
        Operand::Reg(r) => bit(r),
        Operand::Imm(_) => 0,
    }
}

/// Registers an instruction reads.
fn reads(insn: &Insn) -> u16 {
    match *insn {
        Insn::Alu {
            op: crate::AluOp::Mov | crate::AluOp::MovSx(_),
            src,
            ..
        } => op_reads(src),
        Insn::Alu { dst, src, .. } => bit(dst) | op_reads(src),
        Insn::Neg { dst, .. } | Insn::Endian { dst, .. } => bit(dst),
        Insn::Load { src, .. } => bit(src),
        Insn::Store { dst, src, .. } => bit(dst) | op_reads(src),
        Insn::Atomic { dst, src, op, .. } => {
            let cmp = if op == AtomicOp::CmpXchg {
                bit(Reg::R0)
            } else {
                0
            };
            bit(dst) | bit(src) | cmp
        }
        Insn::LoadImm64 { .. } | Insn::Ja { .. } => 0,
        // Legacy packet loads read the context in r6.
        Insn::LoadAbs { .. } => 1 << 6,
        Insn::LoadInd { src, .. } => (1 << 6) | bit(src),
        Insn::Jmp { dst, src, .. } => bit(dst) | op_reads(src),
        Insn::Call(_) => 0,
        Insn::CallX { dst } => bit(dst),
        Insn::Exit => bit(Reg::R0),
    }
}

/// Registers an instruction writes, `None` for calls (handled by the calling convention).
fn written(insn: &Insn) -> Option<u16> {
    Some(match *insn {
        Insn::Alu { dst, .. }
        | Insn::Neg { dst, .. }
        | Insn::Endian { dst, .. }
        | Insn::Load { dst, .. }
        | Insn::LoadImm64 { dst, .. } => bit(dst),
        Insn::Atomic { op, src, .. } => match op {
            AtomicOp::CmpXchg => bit(Reg::R0),
            AtomicOp::Xchg
            | AtomicOp::Add { fetch: true }
            | AtomicOp::Or { fetch: true }
            | AtomicOp::And { fetch: true }
            | AtomicOp::Xor { fetch: true } => bit(src),
            _ => 0,
        },
        Insn::LoadAbs { .. } | Insn::LoadInd { .. } => bit(Reg::R0),
        Insn::Call(_) | Insn::CallX { .. } => return None,
        _ => 0,
    })
}

fn transfer(insn: &Insn, defined: u16) -> u16 {
    match written(insn) {
        Some(w) => defined | w,
        // A call defines r0 and clobbers r1-r5 (the legacy packet loads also clobber them).
        None => (defined & !0b11_1110) | 1,
    }
}

/// The slot `pc + 1 + off` (an `lddw` code reference's target), saturating far outside any program.
fn relative(pc: usize, off: i32) -> i64 {
    i64::try_from(pc).map_or(i64::MAX, |pc| pc + 1 + i64::from(off))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble_bytes;

    fn check(src: &str) -> Result<Program, ProgramError> {
        Program::new(&assemble_bytes(src).expect("assembles"))
    }

    #[test]
    fn uninitialised_reads_are_found_on_any_path() {
        assert_eq!(
            check("or %r0, %r10\nexit").unwrap_err(),
            ProgramError::UninitRegister { pc: 0, reg: 0 }
        );
        assert_eq!(
            check("jeq %r1, 0, +1\nmov %r0, 1\nexit").unwrap_err(),
            ProgramError::UninitRegister { pc: 2, reg: 0 }
        );
        assert_eq!(
            check("mov %r0, 1\ncall 1\nmov %r0, %r1\nexit").unwrap_err(),
            ProgramError::UninitRegister { pc: 2, reg: 1 }
        );
        check("mov %r6, 1\ncall local f\nadd %r0, %r6\nexit\nf:\nmov %r0, %r1\nexit").expect("ok");
    }

    #[test]
    fn structural_errors_name_the_instruction() {
        assert!(matches!(
            check("mov %r0, 0\nja +5\nexit"),
            Err(ProgramError::JumpOutOfRange { pc: 1, .. })
        ));
        assert_eq!(
            check("mov %r0, 0\nja +1\nlddw %r0, 1\nexit").unwrap_err(),
            ProgramError::JumpIntoLddw { pc: 1, target: 3 }
        );
        assert_eq!(
            check("mov %r10, 0\nexit").unwrap_err(),
            ProgramError::WritesFramePointer { pc: 0 }
        );
        assert_eq!(
            check("mov %r0, 0").unwrap_err(),
            ProgramError::FallsOffEnd { pc: 0 }
        );
    }
}
