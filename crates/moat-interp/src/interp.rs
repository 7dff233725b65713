//! The interpreter proper: lowering a checked [`Program`] to a flat operation array, and the run loop.
//!
//! Lowering resolves jump targets to operation indices, helper ids to their implementations and `lddw`
//! pseudo sources to values, so the loop does one dispatch per instruction. Every memory access goes
//! through [`MemoryMap`]; the loop counts executed instructions against a budget.

use moat_exec::{
    Buffer, HelperCtx, HelperFn, HelperRegistry, LddwResolver, LinkError, Linked, MemoryMap,
    ProgramRunner, RunError, RunErrorKind, RunState, MAX_CALL_DEPTH, ORDER, STACK_FRAME_SIZE,
};
use moat_isa::{
    AluOp, AtomicOp, CallTarget, Endian, Insn, JmpCond, Operand, Program, Size, SxBits, Width,
};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum K {
    Add64I,
    Add64R,
    Sub64I,
    Sub64R,
    Mul64I,
    Mul64R,
    Div64I,
    Div64R,
    SDiv64I,
    SDiv64R,
    Or64I,
    Or64R,
    And64I,
    And64R,
    Lsh64I,
    Lsh64R,
    Rsh64I,
    Rsh64R,
    Mod64I,
    Mod64R,
    SMod64I,
    SMod64R,
    Xor64I,
    Xor64R,
    Mov64I,
    Mov64R,
    Arsh64I,
    Arsh64R,
    Add32I,
    Add32R,
    Sub32I,
    Sub32R,
    Mul32I,
    Mul32R,
    Div32I,
    Div32R,
    SDiv32I,
    SDiv32R,
    Or32I,
    Or32R,
    And32I,
    And32R,
    Lsh32I,
    Lsh32R,
    Rsh32I,
    Rsh32R,
    Mod32I,
    Mod32R,
    SMod32I,
    SMod32R,
    Xor32I,
    Xor32R,
    Mov32I,
    Mov32R,
    Arsh32I,
    Arsh32R,
    MovSx8x64,
    MovSx16x64,
    MovSx32x64,
    MovSx8x32,
    MovSx16x32,
    Neg64,
    Neg32,
    Le16,
    Le32,
    Le64,
    Be16,
    Be32,
    Be64,
    Ldx8,
    Ldx16,
    Ldx32,
    Ldx64,
    Ldxs8,
    Ldxs16,
    Ldxs32,
    St8,
    St16,
    St32,
    St64,
    Stx8,
    Stx16,
    Stx32,
    Stx64,
    AAdd32,
    AOr32,
    AAnd32,
    AXor32,
    AFAdd32,
    AFOr32,
    AFAnd32,
    AFXor32,
    AXchg32,
    ACmpXchg32,
    AAdd64,
    AOr64,
    AAnd64,
    AXor64,
    AFAdd64,
    AFOr64,
    AFAnd64,
    AFXor64,
    AXchg64,
    ACmpXchg64,
    Lddw,
    LdAbs8,
    LdAbs16,
    LdAbs32,
    LdInd8,
    LdInd16,
    LdInd32,
    Ja,
    Jeq64I,
    Jeq64R,
    Jgt64I,
    Jgt64R,
    Jge64I,
    Jge64R,
    Jset64I,
    Jset64R,
    Jne64I,
    Jne64R,
    Jsgt64I,
    Jsgt64R,
    Jsge64I,
    Jsge64R,
    Jlt64I,
    Jlt64R,
    Jle64I,
    Jle64R,
    Jslt64I,
    Jslt64R,
    Jsle64I,
    Jsle64R,
    Jeq32I,
    Jeq32R,
    Jgt32I,
    Jgt32R,
    Jge32I,
    Jge32R,
    Jset32I,
    Jset32R,
    Jne32I,
    Jne32R,
    Jsgt32I,
    Jsgt32R,
    Jsge32I,
    Jsge32R,
    Jlt32I,
    Jlt32R,
    Jle32I,
    Jle32R,
    Jslt32I,
    Jslt32R,
    Jsle32I,
    Jsle32R,
    CallHelper,
    CallLocal,
    CallX,
    Exit,
}

/// One lowered operation. `target` is an operation index (jumps, local calls) or a helper slot.
#[derive(Debug, Clone, Copy)]
struct Op {
    kind: K,
    dst: u8,
    src: u8,
    off: i16,
    target: u32,
    imm: u64,
}

/// A linked program lowered for the interpreter. Cheap to run many times, and to clone.
#[derive(Clone)]
pub struct Prepared {
    ops: Arc<[Op]>,
    /// Slot index of each operation, for error reports.
    slot_of: Arc<[usize]>,
    /// Operation index of each slot (code addresses are slot indices).
    op_of_slot: Arc<[Option<u32>]>,
    linked: Arc<Linked>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("ops", &self.ops.len())
            .field("budget", &self.linked.budget())
            .finish()
    }
}

fn alu_kind(width: Width, op: AluOp, reg: bool) -> K {
    use K::*;
    let pick = |i: K, r: K| if reg { r } else { i };
    match (width, op) {
        (Width::W64, AluOp::Add) => pick(Add64I, Add64R),
        (Width::W64, AluOp::Sub) => pick(Sub64I, Sub64R),
        (Width::W64, AluOp::Mul) => pick(Mul64I, Mul64R),
        (Width::W64, AluOp::Div) => pick(Div64I, Div64R),
        (Width::W64, AluOp::SDiv) => pick(SDiv64I, SDiv64R),
        (Width::W64, AluOp::Or) => pick(Or64I, Or64R),
        (Width::W64, AluOp::And) => pick(And64I, And64R),
        (Width::W64, AluOp::Lsh) => pick(Lsh64I, Lsh64R),
        (Width::W64, AluOp::Rsh) => pick(Rsh64I, Rsh64R),
        (Width::W64, AluOp::Mod) => pick(Mod64I, Mod64R),
        (Width::W64, AluOp::SMod) => pick(SMod64I, SMod64R),
        (Width::W64, AluOp::Xor) => pick(Xor64I, Xor64R),
        (Width::W64, AluOp::Mov) => pick(Mov64I, Mov64R),
        (Width::W64, AluOp::Arsh) => pick(Arsh64I, Arsh64R),
        (Width::W64, AluOp::MovSx(SxBits::B8)) => MovSx8x64,
        (Width::W64, AluOp::MovSx(SxBits::B16)) => MovSx16x64,
        (Width::W64, AluOp::MovSx(SxBits::B32)) => MovSx32x64,
        (Width::W32, AluOp::Add) => pick(Add32I, Add32R),
        (Width::W32, AluOp::Sub) => pick(Sub32I, Sub32R),
        (Width::W32, AluOp::Mul) => pick(Mul32I, Mul32R),
        (Width::W32, AluOp::Div) => pick(Div32I, Div32R),
        (Width::W32, AluOp::SDiv) => pick(SDiv32I, SDiv32R),
        (Width::W32, AluOp::Or) => pick(Or32I, Or32R),
        (Width::W32, AluOp::And) => pick(And32I, And32R),
        (Width::W32, AluOp::Lsh) => pick(Lsh32I, Lsh32R),
        (Width::W32, AluOp::Rsh) => pick(Rsh32I, Rsh32R),
        (Width::W32, AluOp::Mod) => pick(Mod32I, Mod32R),
        (Width::W32, AluOp::SMod) => pick(SMod32I, SMod32R),
        (Width::W32, AluOp::Xor) => pick(Xor32I, Xor32R),
        (Width::W32, AluOp::Mov) => pick(Mov32I, Mov32R),
        (Width::W32, AluOp::Arsh) => pick(Arsh32I, Arsh32R),
        // The decoder refuses movsx from 32 bits into a 32-bit destination; treat it as a plain move.
        (Width::W32, AluOp::MovSx(SxBits::B8)) => MovSx8x32,
        (Width::W32, AluOp::MovSx(SxBits::B16)) => MovSx16x32,
        (Width::W32, AluOp::MovSx(SxBits::B32)) => Mov32R,
    }
}

fn jmp_kind(width: Width, cond: JmpCond, reg: bool) -> K {
    use K::*;
    let pick = |i: K, r: K| if reg { r } else { i };
    match (width, cond) {
        (Width::W64, JmpCond::Eq) => pick(Jeq64I, Jeq64R),
        (Width::W64, JmpCond::Gt) => pick(Jgt64I, Jgt64R),
        (Width::W64, JmpCond::Ge) => pick(Jge64I, Jge64R),
        (Width::W64, JmpCond::Set) => pick(Jset64I, Jset64R),
        (Width::W64, JmpCond::Ne) => pick(Jne64I, Jne64R),
        (Width::W64, JmpCond::Sgt) => pick(Jsgt64I, Jsgt64R),
        (Width::W64, JmpCond::Sge) => pick(Jsge64I, Jsge64R),
        (Width::W64, JmpCond::Lt) => pick(Jlt64I, Jlt64R),
        (Width::W64, JmpCond::Le) => pick(Jle64I, Jle64R),
        (Width::W64, JmpCond::Slt) => pick(Jslt64I, Jslt64R),
        (Width::W64, JmpCond::Sle) => pick(Jsle64I, Jsle64R),
        (Width::W32, JmpCond::Eq) => pick(Jeq32I, Jeq32R),
        (Width::W32, JmpCond::Gt) => pick(Jgt32I, Jgt32R),
        (Width::W32, JmpCond::Ge) => pick(Jge32I, Jge32R),
        (Width::W32, JmpCond::Set) => pick(Jset32I, Jset32R),
        (Width::W32, JmpCond::Ne) => pick(Jne32I, Jne32R),
        (Width::W32, JmpCond::Sgt) => pick(Jsgt32I, Jsgt32R),
        (Width::W32, JmpCond::Sge) => pick(Jsge32I, Jsge32R),
        (Width::W32, JmpCond::Lt) => pick(Jlt32I, Jlt32R),
        (Width::W32, JmpCond::Le) => pick(Jle32I, Jle32R),
        (Width::W32, JmpCond::Slt) => pick(Jslt32I, Jslt32R),
        (Width::W32, JmpCond::Sle) => pick(Jsle32I, Jsle32R),
    }
}

fn atomic_kind(size: Size, op: AtomicOp) -> K {
    use K::*;
    let w64 = size == Size::DW;
    let pick = |a: K, b: K| if w64 { b } else { a };
    match op {
        AtomicOp::Add { fetch: false } => pick(AAdd32, AAdd64),
        AtomicOp::Or { fetch: false } => pick(AOr32, AOr64),
        AtomicOp::And { fetch: false } => pick(AAnd32, AAnd64),
        AtomicOp::Xor { fetch: false } => pick(AXor32, AXor64),
        AtomicOp::Add { fetch: true } => pick(AFAdd32, AFAdd64),
        AtomicOp::Or { fetch: true } => pick(AFOr32, AFOr64),
        AtomicOp::And { fetch: true } => pick(AFAnd32, AFAnd64),
        AtomicOp::Xor { fetch: true } => pick(AFXor32, AFXor64),
        AtomicOp::Xchg => pick(AXchg32, AXchg64),
        AtomicOp::CmpXchg => pick(ACmpXchg32, ACmpXchg64),
    }
}

fn operand(src: Operand) -> (bool, u8, u64) {
    match src {
        Operand::Reg(r) => (true, r.num(), 0),
        Operand::Imm(i) => (false, 0, i64::from(i) as u64),
    }
}

impl Prepared {
    /// Links `program` ([`Linked::new`]) and lowers it.
    pub fn new(
        program: &Program,
        registry: &HelperRegistry,
        resolver: &dyn LddwResolver,
    ) -> Result<Prepared, LinkError> {
        Prepared::lower(Arc::new(Linked::new(program, registry, resolver)?))
    }

    /// Lowers a linked program: jump targets become operation indices, helpers and `lddw` values
    /// come from `linked`.
    pub fn lower(linked: Arc<Linked>) -> Result<Prepared, LinkError> {
        let program = linked.program();
        let mut op_of_slot = vec![None; program.slots()];
        for (i, (pc, _)) in program.insns().iter().enumerate() {
            op_of_slot[*pc] = Some(i as u32);
        }
        // `Program::new` guarantees every branch target is an instruction start.
        let op_at = |pc: usize, target: Option<i64>| -> Result<u32, LinkError> {
            target
                .and_then(|t| usize::try_from(t).ok())
                .and_then(|t| op_of_slot.get(t).copied().flatten())
                .ok_or(LinkError::BadBranch { pc })
        };
        let mut ops = Vec::with_capacity(program.insns().len());
        let mut slot_of = Vec::with_capacity(program.insns().len());
        for &(pc, insn) in program.insns() {
            let blank = Op {
                kind: K::Exit,
                dst: 0,
                src: 0,
                off: 0,
                target: 0,
                imm: 0,
            };
            let op = match insn {
                Insn::Alu {
                    width,
                    op,
                    dst,
                    src,
                } => {
                    let (reg, s, imm) = operand(src);
                    Op {
                        kind: alu_kind(width, op, reg),
                        dst: dst.num(),
                        src: s,
                        imm,
                        ..blank
                    }
                }
                Insn::Neg { width, dst } => Op {
                    kind: if width == Width::W64 {
                        K::Neg64
                    } else {
                        K::Neg32
                    },
                    dst: dst.num(),
                    ..blank
                },
                Insn::Endian { kind, bits, dst } => {
                    let kind = match (kind, bits) {
                        (Endian::ToLe, 16) => K::Le16,
                        (Endian::ToLe, 32) => K::Le32,
                        (Endian::ToLe, _) => K::Le64,
                        (_, 16) => K::Be16,
                        (_, 32) => K::Be32,
                        (_, _) => K::Be64,
                    };
                    Op {
                        kind,
                        dst: dst.num(),
                        ..blank
                    }
                }
                Insn::Load {
                    size,
                    signed,
                    dst,
                    src,
                    off,
                } => {
                    let kind = match (size, signed) {
                        (Size::B, false) => K::Ldx8,
                        (Size::H, false) => K::Ldx16,
                        (Size::W, false) => K::Ldx32,
                        (Size::DW, _) => K::Ldx64,
                        (Size::B, true) => K::Ldxs8,
                        (Size::H, true) => K::Ldxs16,
                        (Size::W, true) => K::Ldxs32,
                    };
                    Op {
                        kind,
                        dst: dst.num(),
                        src: src.num(),
                        off,
                        ..blank
                    }
                }
                Insn::Store {
                    size,
                    dst,
                    off,
                    src,
                } => {
                    let (reg, s, imm) = operand(src);
                    let kind = match (size, reg) {
                        (Size::B, false) => K::St8,
                        (Size::H, false) => K::St16,
                        (Size::W, false) => K::St32,
                        (Size::DW, false) => K::St64,
                        (Size::B, true) => K::Stx8,
                        (Size::H, true) => K::Stx16,
                        (Size::W, true) => K::Stx32,
                        (Size::DW, true) => K::Stx64,
                    };
                    Op {
                        kind,
                        dst: dst.num(),
                        src: s,
                        off,
                        imm,
                        ..blank
                    }
                }
                Insn::Atomic {
                    size,
                    op,
                    dst,
                    off,
                    src,
                } => Op {
                    kind: atomic_kind(size, op),
                    dst: dst.num(),
                    src: src.num(),
                    off,
                    ..blank
                },
                Insn::LoadImm64 { dst, .. } => {
                    // `Linked::new` resolved every `lddw`.
                    let value = linked.lddw_value(pc).unwrap_or(0);
                    Op {
                        kind: K::Lddw,
                        dst: dst.num(),
                        imm: value,
                        ..blank
                    }
                }
                Insn::LoadAbs { size, imm } => Op {
                    kind: match size {
                        Size::B => K::LdAbs8,
                        Size::H => K::LdAbs16,
                        _ => K::LdAbs32,
                    },
                    imm: i64::from(imm) as u64,
                    ..blank
                },
                Insn::LoadInd { size, src, imm } => Op {
                    kind: match size {
                        Size::B => K::LdInd8,
                        Size::H => K::LdInd16,
                        _ => K::LdInd32,
                    },
                    src: src.num(),
                    imm: i64::from(imm) as u64,
                    ..blank
                },
                Insn::Ja { .. } => Op {
                    kind: K::Ja,
                    target: op_at(pc, insn.branch_target(pc))?,
                    ..blank
                },
                Insn::Jmp {
                    width,
                    cond,
                    dst,
                    src,
                    ..
                } => {
                    let (reg, s, imm) = operand(src);
                    Op {
                        kind: jmp_kind(width, cond, reg),
                        dst: dst.num(),
                        src: s,
                        imm,
                        target: op_at(pc, insn.branch_target(pc))?,
                        ..blank
                    }
                }
                Insn::Call(CallTarget::Helper(_)) => Op {
                    kind: K::CallHelper,
                    // `Linked::new` resolved every helper call.
                    target: linked.helper_index(pc).unwrap_or(u32::MAX),
                    ..blank
                },
                Insn::Call(CallTarget::Local(_)) => Op {
                    kind: K::CallLocal,
                    target: op_at(pc, insn.branch_target(pc))?,
                    ..blank
                },
                Insn::Call(CallTarget::Kfunc(id)) => return Err(LinkError::Kfunc { pc, id }),
                Insn::CallX { dst } => Op {
                    kind: K::CallX,
                    dst: dst.num(),
                    ..blank
                },
                Insn::Exit => blank,
            };
            ops.push(op);
            slot_of.push(pc);
        }
        Ok(Prepared {
            ops: ops.into(),
            slot_of: slot_of.into(),
            op_of_slot: op_of_slot.into(),
            linked,
        })
    }

    /// The linked program.
    pub fn linked(&self) -> &Arc<Linked> {
        &self.linked
    }

    /// Runs the program on a context buffer: `r1` = its address, `r2` = its length.
    pub fn run(&self, ctx: &mut [u8]) -> Result<u64, RunError> {
        let args = [ctx.as_mut_ptr() as u64, ctx.len() as u64, 0, 0, 0];
        self.run_with(
            &mut [Buffer {
                bytes: ctx,
                writable: true,
            }],
            args,
        )
    }

    /// Runs the program with `buffers` accessible (the first is the packet of legacy `ldabs`/`ldind`
    /// loads) and `r1`-`r5` = `args`.
    pub fn run_with(&self, buffers: &mut [Buffer<'_>], args: [u64; 5]) -> Result<u64, RunError> {
        MemoryMap::with_buffers(buffers, &self.linked, |mem| self.run_in(mem, args))
    }

    /// Runs the program with the regions of `mem` (besides its own stack) and `r1`-`r5` = `args`.
    /// The first region, if any, is the packet for the legacy `ldabs`/`ldind` loads.
    fn run_in(&self, mem: &mut MemoryMap, args: [u64; 5]) -> Result<u64, RunError> {
        moat_exec::with_stack(self.linked.budget(), mem, |mem, state| {
            let top = state.stack_top();
            self.exec(mem, args, top, 0, 0, state)
        })
    }

    fn err(&self, op_index: usize, kind: RunErrorKind) -> RunError {
        RunError {
            pc: self.slot_of.get(op_index).copied().unwrap_or(usize::MAX),
            kind,
        }
    }

    /// Runs from operation `entry` in a fresh frame whose `r10` is `frame_top`; `depth` frames are
    /// already in use below it (callers of a callback). Returns `r0` at the entry function's exit.
    pub(crate) fn exec(
        &self,
        mem: &mut MemoryMap,
        args: [u64; 5],
        frame_top: u64,
        entry: usize,
        depth: usize,
        state: &mut RunState,
    ) -> Result<u64, RunError> {
        struct Frame {
            ret: usize,
            saved: [u64; 4],
        }
        let mut frames: Vec<Frame> = Vec::new();
        let mut r = [0u64; 16];
        r[1..6].copy_from_slice(&args);
        r[10] = frame_top;
        mem.enter_frame(frame_top, state);
        let packet = mem.regions().first().map_or((0, 0), |p| (p.start, p.len));
        let ops = &self.ops[..];
        let mut pc = entry;
        macro_rules! d {
            ($op:expr) => {
                r[usize::from($op.dst & 15)]
            };
        }
        macro_rules! s {
            ($op:expr) => {
                r[usize::from($op.src & 15)]
            };
        }
        macro_rules! addr {
            ($base:expr, $op:expr) => {
                $base.wrapping_add($op.off as i64 as u64)
            };
        }
        macro_rules! oob {
            ($at:expr, $addr:expr, $len:expr, $write:expr) => {
                return Err(self.err(
                    $at,
                    RunErrorKind::OutOfBounds {
                        addr: $addr,
                        at: mem.locate($addr),
                        len: $len,
                        write: $write,
                    },
                ))
            };
        }
        macro_rules! load {
            ($op:expr, $at:expr, $n:literal, $conv:expr) => {{
                let a = addr!(s!($op), $op);
                match mem.load::<$n>(a) {
                    Some(b) => d!($op) = $conv(b),
                    None => oob!($at, a, $n, false),
                }
            }};
        }
        macro_rules! store {
            ($op:expr, $at:expr, $n:literal, $bytes:expr) => {{
                let a = addr!(d!($op), $op);
                if mem.store::<$n>(a, $bytes).is_none() {
                    oob!($at, a, $n, true);
                }
            }};
        }
        macro_rules! atomic {
            ($op:expr, $at:expr, 64, $method:ident, $fetch:expr) => {{
                let a = addr!(d!($op), $op);
                let v = s!($op);
                match mem.atomic64(a, |c| c.$method(v, ORDER)) {
                    Some(old) => {
                        if $fetch {
                            s!($op) = old;
                        }
                    }
                    None => {
                        return Err(self.err(
                            $at,
                            RunErrorKind::BadAtomic {
                                addr: a,
                                at: mem.locate(a),
                                len: 8,
                            },
                        ))
                    }
                }
            }};
            ($op:expr, $at:expr, 32, $method:ident, $fetch:expr) => {{
                let a = addr!(d!($op), $op);
                let v = s!($op) as u32;
                match mem.atomic32(a, |c| c.$method(v, ORDER)) {
                    Some(old) => {
                        if $fetch {
                            s!($op) = u64::from(old);
                        }
                    }
                    None => {
                        return Err(self.err(
                            $at,
                            RunErrorKind::BadAtomic {
                                addr: a,
                                at: mem.locate(a),
                                len: 4,
                            },
                        ))
                    }
                }
            }};
        }
        // Returns from the current function: to the caller's frame, or out of `exec`.
        macro_rules! exit_function {
            () => {
                match frames.pop() {
                    None => return Ok(r[0]),
                    Some(frame) => {
                        r[6..10].copy_from_slice(&frame.saved);
                        r[10] += STACK_FRAME_SIZE as u64;
                        mem.enter_frame(r[10], state);
                        pc = frame.ret;
                    }
                }
            };
        }
        macro_rules! jump {
            ($op:expr, $cond:expr) => {
                if $cond {
                    pc = $op.target as usize;
                }
            };
        }
        loop {
            let at = pc;
            // `Program::new` guarantees the last instruction cannot fall through, so this never fails.
            let Some(&op) = ops.get(pc) else {
                return Err(self.err(at.saturating_sub(1), RunErrorKind::FellOffEnd));
            };
            if state.budget() == 0 {
                return Err(self.err(
                    at,
                    RunErrorKind::Budget {
                        budget: self.linked.budget(),
                    },
                ));
            }
            state.set_budget(state.budget() - 1);
            pc += 1;
            let imm = op.imm;
            match op.kind {
                K::Add64I => d!(op) = d!(op).wrapping_add(imm),
                K::Add64R => d!(op) = d!(op).wrapping_add(s!(op)),
                K::Sub64I => d!(op) = d!(op).wrapping_sub(imm),
                K::Sub64R => d!(op) = d!(op).wrapping_sub(s!(op)),
                K::Mul64I => d!(op) = d!(op).wrapping_mul(imm),
                K::Mul64R => d!(op) = d!(op).wrapping_mul(s!(op)),
                K::Div64I => d!(op) = d!(op).checked_div(imm).unwrap_or(0),
                K::Div64R => d!(op) = d!(op).checked_div(s!(op)).unwrap_or(0),
                K::SDiv64I => d!(op) = sdiv64(d!(op), imm),
                K::SDiv64R => d!(op) = sdiv64(d!(op), s!(op)),
                K::Or64I => d!(op) |= imm,
                K::Or64R => d!(op) |= s!(op),
                K::And64I => d!(op) &= imm,
                K::And64R => d!(op) &= s!(op),
                K::Lsh64I => d!(op) = d!(op).wrapping_shl(imm as u32),
                K::Lsh64R => d!(op) = d!(op).wrapping_shl(s!(op) as u32),
                K::Rsh64I => d!(op) = d!(op).wrapping_shr(imm as u32),
                K::Rsh64R => d!(op) = d!(op).wrapping_shr(s!(op) as u32),
                K::Mod64I => d!(op) = d!(op).checked_rem(imm).unwrap_or(d!(op)),
                K::Mod64R => d!(op) = d!(op).checked_rem(s!(op)).unwrap_or(d!(op)),
                K::SMod64I => d!(op) = smod64(d!(op), imm),
                K::SMod64R => d!(op) = smod64(d!(op), s!(op)),
                K::Xor64I => d!(op) ^= imm,
                K::Xor64R => d!(op) ^= s!(op),
                K::Mov64I => d!(op) = imm,
                K::Mov64R => d!(op) = s!(op),
                K::Arsh64I => d!(op) = (d!(op) as i64).wrapping_shr(imm as u32) as u64,
                K::Arsh64R => d!(op) = (d!(op) as i64).wrapping_shr(s!(op) as u32) as u64,
                K::Add32I => d!(op) = u64::from((d!(op) as u32).wrapping_add(imm as u32)),
                K::Add32R => d!(op) = u64::from((d!(op) as u32).wrapping_add(s!(op) as u32)),
                K::Sub32I => d!(op) = u64::from((d!(op) as u32).wrapping_sub(imm as u32)),
                K::Sub32R => d!(op) = u64::from((d!(op) as u32).wrapping_sub(s!(op) as u32)),
                K::Mul32I => d!(op) = u64::from((d!(op) as u32).wrapping_mul(imm as u32)),
                K::Mul32R => d!(op) = u64::from((d!(op) as u32).wrapping_mul(s!(op) as u32)),
                K::Div32I => {
                    d!(op) = u64::from((d!(op) as u32).checked_div(imm as u32).unwrap_or(0))
                }
                K::Div32R => {
                    d!(op) = u64::from((d!(op) as u32).checked_div(s!(op) as u32).unwrap_or(0))
                }
                K::SDiv32I => d!(op) = sdiv32(d!(op), imm),
                K::SDiv32R => d!(op) = sdiv32(d!(op), s!(op)),
                K::Or32I => d!(op) = u64::from(d!(op) as u32 | imm as u32),
                K::Or32R => d!(op) = u64::from(d!(op) as u32 | s!(op) as u32),
                K::And32I => d!(op) = u64::from(d!(op) as u32 & imm as u32),
                K::And32R => d!(op) = u64::from(d!(op) as u32 & s!(op) as u32),
                K::Lsh32I => d!(op) = u64::from((d!(op) as u32).wrapping_shl(imm as u32)),
                K::Lsh32R => d!(op) = u64::from((d!(op) as u32).wrapping_shl(s!(op) as u32)),
                K::Rsh32I => d!(op) = u64::from((d!(op) as u32).wrapping_shr(imm as u32)),
                K::Rsh32R => d!(op) = u64::from((d!(op) as u32).wrapping_shr(s!(op) as u32)),
                K::Mod32I => d!(op) = mod32(d!(op), imm),
                K::Mod32R => d!(op) = mod32(d!(op), s!(op)),
                K::SMod32I => d!(op) = smod32(d!(op), imm),
                K::SMod32R => d!(op) = smod32(d!(op), s!(op)),
                K::Xor32I => d!(op) = u64::from(d!(op) as u32 ^ imm as u32),
                K::Xor32R => d!(op) = u64::from(d!(op) as u32 ^ s!(op) as u32),
                K::Mov32I => d!(op) = u64::from(imm as u32),
                K::Mov32R => d!(op) = u64::from(s!(op) as u32),
                K::Arsh32I => d!(op) = u64::from((d!(op) as i32).wrapping_shr(imm as u32) as u32),
                K::Arsh32R => {
                    d!(op) = u64::from((d!(op) as i32).wrapping_shr(s!(op) as u32) as u32)
                }
                K::MovSx8x64 => d!(op) = s!(op) as i8 as i64 as u64,
                K::MovSx16x64 => d!(op) = s!(op) as i16 as i64 as u64,
                K::MovSx32x64 => d!(op) = s!(op) as i32 as i64 as u64,
                K::MovSx8x32 => d!(op) = u64::from(s!(op) as i8 as i32 as u32),
                K::MovSx16x32 => d!(op) = u64::from(s!(op) as i16 as i32 as u32),
                K::Neg64 => d!(op) = d!(op).wrapping_neg(),
                K::Neg32 => d!(op) = u64::from((d!(op) as u32).wrapping_neg()),
                K::Le16 => d!(op) = u64::from(d!(op) as u16),
                K::Le32 => d!(op) = u64::from(d!(op) as u32),
                K::Le64 => {}
                K::Be16 => d!(op) = u64::from((d!(op) as u16).swap_bytes()),
                K::Be32 => d!(op) = u64::from((d!(op) as u32).swap_bytes()),
                K::Be64 => d!(op) = d!(op).swap_bytes(),
                K::Ldx8 => load!(op, at, 1, |b: [u8; 1]| u64::from(b[0])),
                K::Ldx16 => load!(op, at, 2, |b| u64::from(u16::from_le_bytes(b))),
                K::Ldx32 => load!(op, at, 4, |b| u64::from(u32::from_le_bytes(b))),
                K::Ldx64 => load!(op, at, 8, u64::from_le_bytes),
                K::Ldxs8 => load!(op, at, 1, |b: [u8; 1]| b[0] as i8 as i64 as u64),
                K::Ldxs16 => load!(op, at, 2, |b| i16::from_le_bytes(b) as i64 as u64),
                K::Ldxs32 => load!(op, at, 4, |b| i32::from_le_bytes(b) as i64 as u64),
                K::St8 => store!(op, at, 1, [imm as u8]),
                K::St16 => store!(op, at, 2, (imm as u16).to_le_bytes()),
                K::St32 => store!(op, at, 4, (imm as u32).to_le_bytes()),
                K::St64 => store!(op, at, 8, imm.to_le_bytes()),
                K::Stx8 => store!(op, at, 1, [s!(op) as u8]),
                K::Stx16 => store!(op, at, 2, (s!(op) as u16).to_le_bytes()),
                K::Stx32 => store!(op, at, 4, (s!(op) as u32).to_le_bytes()),
                K::Stx64 => store!(op, at, 8, s!(op).to_le_bytes()),
                K::AAdd64 => atomic!(op, at, 64, fetch_add, false),
                K::AOr64 => atomic!(op, at, 64, fetch_or, false),
                K::AAnd64 => atomic!(op, at, 64, fetch_and, false),
                K::AXor64 => atomic!(op, at, 64, fetch_xor, false),
                K::AFAdd64 => atomic!(op, at, 64, fetch_add, true),
                K::AFOr64 => atomic!(op, at, 64, fetch_or, true),
                K::AFAnd64 => atomic!(op, at, 64, fetch_and, true),
                K::AFXor64 => atomic!(op, at, 64, fetch_xor, true),
                K::AXchg64 => atomic!(op, at, 64, swap, true),
                K::AAdd32 => atomic!(op, at, 32, fetch_add, false),
                K::AOr32 => atomic!(op, at, 32, fetch_or, false),
                K::AAnd32 => atomic!(op, at, 32, fetch_and, false),
                K::AXor32 => atomic!(op, at, 32, fetch_xor, false),
                K::AFAdd32 => atomic!(op, at, 32, fetch_add, true),
                K::AFOr32 => atomic!(op, at, 32, fetch_or, true),
                K::AFAnd32 => atomic!(op, at, 32, fetch_and, true),
                K::AFXor32 => atomic!(op, at, 32, fetch_xor, true),
                K::AXchg32 => atomic!(op, at, 32, swap, true),
                K::ACmpXchg64 => {
                    let a = addr!(d!(op), op);
                    let (expected, new) = (r[0], s!(op));
                    match mem.atomic64(a, |c| {
                        match c.compare_exchange(expected, new, ORDER, ORDER) {
                            Ok(v) | Err(v) => v,
                        }
                    }) {
                        Some(old) => r[0] = old,
                        None => {
                            return Err(self.err(
                                at,
                                RunErrorKind::BadAtomic {
                                    addr: a,
                                    at: mem.locate(a),
                                    len: 8,
                                },
                            ))
                        }
                    }
                }
                K::ACmpXchg32 => {
                    let a = addr!(d!(op), op);
                    let (expected, new) = (r[0] as u32, s!(op) as u32);
                    match mem.atomic32(a, |c| {
                        match c.compare_exchange(expected, new, ORDER, ORDER) {
                            Ok(v) | Err(v) => v,
                        }
                    }) {
                        Some(old) => r[0] = u64::from(old),
                        None => {
                            return Err(self.err(
                                at,
                                RunErrorKind::BadAtomic {
                                    addr: a,
                                    at: mem.locate(a),
                                    len: 4,
                                },
                            ))
                        }
                    }
                }
                K::Lddw => d!(op) = imm,
                K::LdAbs8 | K::LdAbs16 | K::LdAbs32 | K::LdInd8 | K::LdInd16 | K::LdInd32 => {
                    let base = match op.kind {
                        K::LdInd8 | K::LdInd16 | K::LdInd32 => s!(op),
                        _ => 0,
                    };
                    let off = base.wrapping_add(imm);
                    let n: u64 = match op.kind {
                        K::LdAbs8 | K::LdInd8 => 1,
                        K::LdAbs16 | K::LdInd16 => 2,
                        _ => 4,
                    };
                    // Like the kernel, an out-of-bounds legacy packet load ends the program with 0.
                    if off > packet.1 || n > packet.1 - off {
                        return Ok(0);
                    }
                    let a = packet.0 + off;
                    r[0] = match n {
                        1 => mem.load::<1>(a).map(|b| u64::from(b[0])),
                        2 => mem.load::<2>(a).map(|b| u64::from(u16::from_be_bytes(b))),
                        _ => mem.load::<4>(a).map(|b| u64::from(u32::from_be_bytes(b))),
                    }
                    .ok_or_else(|| {
                        self.err(
                            at,
                            RunErrorKind::OutOfBounds {
                                addr: a,
                                at: mem.locate(a),
                                len: n,
                                write: false,
                            },
                        )
                    })?;
                    // The legacy loads clobber r1-r5 like a call.
                    r[1..6].fill(0);
                }
                K::Ja => pc = op.target as usize,
                K::Jeq64I => jump!(op, d!(op) == imm),
                K::Jeq64R => jump!(op, d!(op) == s!(op)),
                K::Jgt64I => jump!(op, d!(op) > imm),
                K::Jgt64R => jump!(op, d!(op) > s!(op)),
                K::Jge64I => jump!(op, d!(op) >= imm),
                K::Jge64R => jump!(op, d!(op) >= s!(op)),
                K::Jset64I => jump!(op, d!(op) & imm != 0),
                K::Jset64R => jump!(op, d!(op) & s!(op) != 0),
                K::Jne64I => jump!(op, d!(op) != imm),
                K::Jne64R => jump!(op, d!(op) != s!(op)),
                K::Jsgt64I => jump!(op, (d!(op) as i64) > imm as i64),
                K::Jsgt64R => jump!(op, (d!(op) as i64) > s!(op) as i64),
                K::Jsge64I => jump!(op, (d!(op) as i64) >= imm as i64),
                K::Jsge64R => jump!(op, (d!(op) as i64) >= s!(op) as i64),
                K::Jlt64I => jump!(op, d!(op) < imm),
                K::Jlt64R => jump!(op, d!(op) < s!(op)),
                K::Jle64I => jump!(op, d!(op) <= imm),
                K::Jle64R => jump!(op, d!(op) <= s!(op)),
                K::Jslt64I => jump!(op, (d!(op) as i64) < imm as i64),
                K::Jslt64R => jump!(op, (d!(op) as i64) < s!(op) as i64),
                K::Jsle64I => jump!(op, (d!(op) as i64) <= imm as i64),
                K::Jsle64R => jump!(op, (d!(op) as i64) <= s!(op) as i64),
                K::Jeq32I => jump!(op, d!(op) as u32 == imm as u32),
                K::Jeq32R => jump!(op, d!(op) as u32 == s!(op) as u32),
                K::Jgt32I => jump!(op, d!(op) as u32 > imm as u32),
                K::Jgt32R => jump!(op, d!(op) as u32 > s!(op) as u32),
                K::Jge32I => jump!(op, d!(op) as u32 >= imm as u32),
                K::Jge32R => jump!(op, d!(op) as u32 >= s!(op) as u32),
                K::Jset32I => jump!(op, d!(op) as u32 & imm as u32 != 0),
                K::Jset32R => jump!(op, d!(op) as u32 & s!(op) as u32 != 0),
                K::Jne32I => jump!(op, d!(op) as u32 != imm as u32),
                K::Jne32R => jump!(op, d!(op) as u32 != s!(op) as u32),
                K::Jsgt32I => jump!(op, (d!(op) as i32) > imm as i32),
                K::Jsgt32R => jump!(op, (d!(op) as i32) > s!(op) as i32),
                K::Jsge32I => jump!(op, (d!(op) as i32) >= imm as i32),
                K::Jsge32R => jump!(op, (d!(op) as i32) >= s!(op) as i32),
                K::Jlt32I => jump!(op, (d!(op) as u32) < imm as u32),
                K::Jlt32R => jump!(op, (d!(op) as u32) < s!(op) as u32),
                K::Jle32I => jump!(op, d!(op) as u32 <= imm as u32),
                K::Jle32R => jump!(op, d!(op) as u32 <= s!(op) as u32),
                K::Jslt32I => jump!(op, (d!(op) as i32) < imm as i32),
                K::Jslt32R => jump!(op, (d!(op) as i32) < s!(op) as i32),
                K::Jsle32I => jump!(op, (d!(op) as i32) <= imm as i32),
                K::Jsle32R => jump!(op, (d!(op) as i32) <= s!(op) as i32),
                K::CallHelper => {
                    // Linking resolved every called helper.
                    let Some(helper) = self.linked.helpers().get(op.target as usize) else {
                        return Err(self.err(
                            at,
                            RunErrorKind::BadCallTarget {
                                target: u64::from(op.target),
                            },
                        ));
                    };
                    let call = HelperCall {
                        at,
                        id: helper.id,
                        name: &helper.name,
                        func: &helper.func,
                    };
                    match self.call_helper(mem, call, &r, depth + frames.len(), state)? {
                        HelperOutcome::Return(v) => r[0] = v,
                        HelperOutcome::TailCalled(v) => {
                            r[0] = v;
                            exit_function!();
                        }
                    }
                }
                K::CallX => {
                    let target = d!(op);
                    if is_code_address(target) {
                        let Some(dest) = self.function_at(target) else {
                            return Err(self.err(at, RunErrorKind::BadCallTarget { target }));
                        };
                        self.push_frame(depth + frames.len(), &mut r, mem, state, at)?;
                        frames.push(Frame {
                            ret: pc,
                            saved: [r[6], r[7], r[8], r[9]],
                        });
                        pc = dest;
                    } else {
                        let helper = u32::try_from(target)
                            .ok()
                            .and_then(|id| self.linked.registry().get(id).map(|h| (id, h)));
                        let Some((id, helper)) = helper else {
                            return Err(self.err(at, RunErrorKind::BadCallTarget { target }));
                        };
                        let call = HelperCall {
                            at,
                            id,
                            name: &helper.name,
                            func: &helper.func,
                        };
                        match self.call_helper(mem, call, &r, depth + frames.len(), state)? {
                            HelperOutcome::Return(v) => r[0] = v,
                            HelperOutcome::TailCalled(v) => {
                                r[0] = v;
                                exit_function!();
                            }
                        }
                    }
                }
                K::CallLocal => {
                    self.push_frame(depth + frames.len(), &mut r, mem, state, at)?;
                    frames.push(Frame {
                        ret: pc,
                        saved: [r[6], r[7], r[8], r[9]],
                    });
                    pc = op.target as usize;
                }
                K::Exit => exit_function!(),
            }
        }
    }

    /// Checks the depth and moves `r10` and the stack window down one frame.
    fn push_frame(
        &self,
        callers: usize,
        r: &mut [u64; 16],
        mem: &mut MemoryMap,
        state: &RunState,
        at: usize,
    ) -> Result<(), RunError> {
        if callers + 1 >= MAX_CALL_DEPTH {
            return Err(self.err(at, RunErrorKind::CallDepth));
        }
        r[10] -= STACK_FRAME_SIZE as u64;
        mem.enter_frame(r[10], state);
        Ok(())
    }

    fn call_helper(
        &self,
        mem: &mut MemoryMap,
        call: HelperCall<'_>,
        r: &[u64; 16],
        callers: usize,
        state: &mut RunState,
    ) -> Result<HelperOutcome, RunError> {
        let mut tail_call = None;
        let result = {
            let mut ctx = HelperCtx::new(
                &mut *mem,
                self,
                r[10],
                callers + 1,
                &mut *state,
                &mut tail_call,
            );
            (call.func)(&mut ctx, [r[1], r[2], r[3], r[4], r[5]])
        };
        // A callback may have moved the stack window: restore the caller's.
        mem.enter_frame(r[10], state);
        let value = result.map_err(|source| {
            self.err(
                call.at,
                RunErrorKind::Helper {
                    id: call.id,
                    name: call.name.to_string(),
                    source,
                },
            )
        })?;
        let Some((next, ctx_arg)) = tail_call else {
            return Ok(HelperOutcome::Return(value));
        };
        // The tail-called program replaces the rest of the current function, in its frame.
        let v = next.run_tail(mem, ctx_arg, r[10], callers, state)?;
        mem.enter_frame(r[10], state);
        Ok(HelperOutcome::TailCalled(v))
    }

    /// The operation index of the function at code address `addr` (from `lddw rX, code(off)`).
    pub(crate) fn function_at(&self, addr: u64) -> Option<usize> {
        let slot = self.linked.function_at(addr)?;
        self.op_of_slot
            .get(slot)
            .copied()
            .flatten()
            .map(|i| i as usize)
    }
}

/// Whether `value` carries the tag of code addresses (a function, or a bad one: either way not a
/// helper id).
fn is_code_address(value: u64) -> bool {
    value & 0xffff_0000_0000_0000 == moat_exec::CODE_ADDRESS_TAG
}

struct HelperCall<'a> {
    at: usize,
    id: u32,
    name: &'a str,
    func: &'a Arc<HelperFn>,
}

enum HelperOutcome {
    /// The helper returned this value.
    Return(u64),
    /// The helper tail-called another program, which returned this value.
    TailCalled(u64),
}

fn sdiv64(a: u64, b: u64) -> u64 {
    if b == 0 {
        0
    } else {
        (a as i64).wrapping_div(b as i64) as u64
    }
}

fn smod64(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        (a as i64).wrapping_rem(b as i64) as u64
    }
}

fn sdiv32(a: u64, b: u64) -> u64 {
    let (a, b) = (a as i32, b as i32);
    if b == 0 {
        0
    } else {
        u64::from(a.wrapping_div(b) as u32)
    }
}

fn mod32(a: u64, b: u64) -> u64 {
    let (a, b) = (a as u32, b as u32);
    u64::from(a.checked_rem(b).unwrap_or(a))
}

fn smod32(a: u64, b: u64) -> u64 {
    let (a, b) = (a as i32, b as i32);
    if b == 0 {
        u64::from(a as u32)
    } else {
        u64::from(a.wrapping_rem(b) as u32)
    }
}

impl ProgramRunner for Prepared {
    fn is_function(&self, addr: u64) -> bool {
        self.function_at(addr).is_some()
    }

    fn run_function(
        &self,
        mem: &mut MemoryMap,
        addr: u64,
        args: [u64; 5],
        frame_top: u64,
        depth: usize,
        state: &mut RunState,
    ) -> Result<u64, RunError> {
        let Some(entry) = self.function_at(addr) else {
            return Err(RunError {
                pc: 0,
                kind: RunErrorKind::BadCallTarget { target: addr },
            });
        };
        self.exec(mem, args, frame_top, entry, depth, state)
    }

    fn run_tail(
        &self,
        mem: &mut MemoryMap,
        ctx: u64,
        frame_top: u64,
        depth: usize,
        state: &mut RunState,
    ) -> Result<u64, RunError> {
        self.exec(mem, [ctx, 0, 0, 0, 0], frame_top, 0, depth, state)
    }
}
