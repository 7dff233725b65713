//! The loop IR: natural loops with one entry found in a verified program, each expressed as
//! induction variables, loop-carried values, memory accesses (base, induction variable, offset,
//! size, stride and the range the verifier proved) and exits; plus the reference semantics of a
//! loop (its body's instructions, evaluated one by one) against which synthesis checks candidates.
//!
//! A loop is expressible when its body is the straight-line code `[header, latch]` (no branch from
//! outside lands inside it but on the header), the latch jumps back to the header, every other
//! branch of the body leaves the loop, and the body holds only ALU operations (no signed division),
//! byte swaps, loads and stores whose address is an invariant base plus one induction variable plus
//! a constant. Anything else (calls, atomics, nested control flow, data-dependent addresses) is left
//! alone, with the reason recorded.

use moat_isa::{AluOp, Endian, Insn, JmpCond, Operand, Program, Reg, Size, SxBits, Width};
use moat_verify::{MemAccess, VerifiedProgram};

/// Registers `r0`-`r10`.
pub const REGS: usize = 11;

/// An induction variable: a register whose only write in the body is `reg += step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Induction {
    /// The register.
    pub reg: usize,
    /// What each iteration adds.
    pub step: i64,
}

/// A memory access of the body: `size` bytes at `base + iv + off` (values at the start of the
/// iteration; `iv` already stepped when the access follows the increment, folded into `off`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The slot of the load or store.
    pub slot: usize,
    /// Whether it stores.
    pub write: bool,
    /// Bytes accessed.
    pub size: usize,
    /// The loop-invariant base register (the induction variable itself where the pointer is).
    pub base: usize,
    /// The induction variable indexing it.
    pub iv: usize,
    /// Constant offset.
    pub off: i64,
    /// Bytes between the addresses of consecutive iterations.
    pub stride: i64,
    /// The ranges the verifier proved this access stays in, over every path.
    pub proven: Vec<MemAccess>,
}

/// The exit the iteration count depends on: `iv + off` compared with an invariant bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    /// Index in the body of the branch.
    pub at: usize,
    /// The induction variable.
    pub iv: usize,
    /// Added to the iteration's starting value of `iv` before the comparison.
    pub off: i64,
    /// The loop continues while `cond(iv + off, bound)` holds.
    pub cond: JmpCond,
    /// The bound: an immediate or an invariant register.
    pub bound: Bound,
}

/// The bound of a counted exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// A constant.
    Imm(i64),
    /// A register the body never writes.
    Reg(usize),
}

/// One natural loop, expressed.
#[derive(Debug, Clone)]
pub struct LoopIr {
    /// Slot of the header (the back-edge's target and the only entry).
    pub header: usize,
    /// Slot of the latch (the back-edge).
    pub latch: usize,
    /// The body's instructions, header to latch, with their slots.
    pub body: Vec<(usize, Insn)>,
    /// Where the loop can leave to (slots), in order of first appearance.
    pub exits: Vec<usize>,
    /// Induction variables.
    pub ivs: Vec<Induction>,
    /// Registers carried from one iteration to the next (read before written, and written),
    /// induction variables excluded.
    pub carried: Vec<usize>,
    /// Registers the body reads before writing (its inputs).
    pub live_in: Vec<usize>,
    /// Registers the body writes that some exit's code reads (the loop's live-out values).
    pub live_out: Vec<usize>,
    /// Memory accesses.
    pub accesses: Vec<Access>,
    /// The exit bounding the iteration count.
    pub counted: Counted,
}

/// A loop found but not expressible, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unexpressed {
    /// Slot of the header.
    pub header: usize,
    /// Slot of the latch.
    pub latch: usize,
    /// Why the loop IR cannot express it.
    pub reason: String,
}

/// Finds the natural loops of `verified` and expresses those the IR can.
pub fn find_loops(verified: &VerifiedProgram) -> (Vec<LoopIr>, Vec<Unexpressed>) {
    let program = verified.program();
    // Liveness only once a back-edge is found: a program without loops costs one pass.
    let mut live: Option<Vec<u16>> = None;
    let insns = program.insns();
    let mut found = Vec::new();
    let mut left = Vec::new();
    for (l, &(pc, insn)) in insns.iter().enumerate() {
        let Some(target) = insn.branch_target(pc) else {
            continue;
        };
        if matches!(insn, Insn::Call(_)) || target > pc as i64 || target < 0 {
            continue;
        }
        let Some(h) = program.index_of_slot(target as usize) else {
            continue;
        };
        let header = target as usize;
        let live = live.get_or_insert_with(|| liveness(program));
        match express(verified, live, h, l) {
            Ok(ir) => found.push(ir),
            Err(reason) => left.push(Unexpressed {
                header,
                latch: pc,
                reason,
            }),
        }
    }
    (found, left)
}

/// Registers live before each instruction (bit set over `r0`-`r10`), by instruction index.
pub fn liveness(program: &Program) -> Vec<u16> {
    let insns = program.insns();
    let n = insns.len();
    let succ = |i: usize| -> Vec<usize> {
        let (pc, insn) = insns[i];
        let mut s = Vec::new();
        let falls = !matches!(insn, Insn::Ja { .. } | Insn::Exit);
        if falls && i + 1 < n {
            s.push(i + 1);
        }
        if !matches!(insn, Insn::Call(_)) {
            if let Some(t) = insn
                .branch_target(pc)
                .and_then(|t| usize::try_from(t).ok())
                .and_then(|t| program.index_of_slot(t))
            {
                s.push(t);
            }
        }
        s
    };
    let succs: Vec<Vec<usize>> = (0..n).map(succ).collect();
    let (uses, defs): (Vec<u16>, Vec<u16>) = insns.iter().map(|&(_, i)| use_def(i)).unzip();
    let mut live = vec![0u16; n];
    let mut changed = true;
    while changed {
        changed = false;
        for i in (0..n).rev() {
            let out = succs[i].iter().fold(0u16, |a, &s| a | live[s]);
            let new = uses[i] | (out & !defs[i]);
            if new != live[i] {
                live[i] = new;
                changed = true;
            }
        }
    }
    live
}

fn bit(r: Reg) -> u16 {
    1 << r.index()
}

/// Registers an instruction reads and writes (conservative: calls read `r1`-`r5`).
fn use_def(insn: Insn) -> (u16, u16) {
    let op = |o: Operand| match o {
        Operand::Reg(r) => bit(r),
        Operand::Imm(_) => 0,
    };
    let args = 0b11_1110u16;
    match insn {
        Insn::Alu {
            op: AluOp::Mov | AluOp::MovSx(_),
            dst,
            src,
            ..
        } => (op(src), bit(dst)),
        Insn::Alu { dst, src, .. } => (bit(dst) | op(src), bit(dst)),
        Insn::Neg { dst, .. } | Insn::Endian { dst, .. } => (bit(dst), bit(dst)),
        Insn::Load { dst, src, .. } => (bit(src), bit(dst)),
        Insn::Store { dst, src, .. } => (bit(dst) | op(src), 0),
        Insn::Atomic {
            op: aop, dst, src, ..
        } => {
            let def = match aop {
                moat_isa::AtomicOp::CmpXchg => 1,
                _ => bit(src),
            };
            (bit(dst) | bit(src) | 1, def)
        }
        Insn::LoadImm64 { dst, .. } => (0, bit(dst)),
        Insn::LoadAbs { .. } => (1 << 6, 0b11_1111),
        Insn::LoadInd { src, .. } => (bit(src) | 1 << 6, 0b11_1111),
        Insn::Ja { .. } => (0, 0),
        Insn::Jmp { dst, src, .. } => (bit(dst) | op(src), 0),
        Insn::Call(_) => (args, 0b11_1111),
        Insn::CallX { dst } => (args | bit(dst), 0b11_1111),
        Insn::Exit => (1, 0),
    }
}

/// Symbolic value of a register within one iteration: `base + iv + off` (each optional) or
/// anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sym {
    Affine {
        base: Option<usize>,
        iv: Option<usize>,
        off: i64,
    },
    Opaque,
}

fn express(verified: &VerifiedProgram, live: &[u16], h: usize, l: usize) -> Result<LoopIr, String> {
    let program = verified.program();
    let insns = program.insns();
    let header = insns[h].0;
    let latch = insns[l].0;
    let inside = |slot: i64| slot > header as i64 && slot <= latch as i64;
    // One entry: nothing outside lands inside but on the header.
    for (i, &(pc, insn)) in insns.iter().enumerate() {
        if (h..=l).contains(&i) && !matches!(insn, Insn::Call(_)) {
            continue;
        }
        if let Some(t) = insn.branch_target(pc) {
            if inside(t) || (matches!(insn, Insn::Call(_)) && (inside(t) || t == header as i64)) {
                return Err(format!("entered from slot {pc} as well"));
            }
        }
        if let Insn::LoadImm64 {
            kind: moat_isa::LddwKind::Code,
            imm,
            ..
        } = insn
        {
            let t = pc as i64 + 1 + i64::from(imm);
            if inside(t) || t == header as i64 {
                return Err(format!("its code address is taken at slot {pc}"));
            }
        }
    }
    let body: Vec<(usize, Insn)> = insns[h..=l].to_vec();
    let mut exits = Vec::new();
    let mut writes = [0usize; REGS];
    let mut read_first = 0u16;
    let mut written = 0u16;
    for (k, &(pc, insn)) in body.iter().enumerate() {
        let last = k + 1 == body.len();
        match insn {
            Insn::Alu {
                op: AluOp::SDiv | AluOp::SMod,
                ..
            } => return Err(format!("signed division at slot {pc}")),
            Insn::Alu { .. }
            | Insn::Neg { .. }
            | Insn::Endian { .. }
            | Insn::Load { .. }
            | Insn::Store { .. } => {}
            Insn::Jmp { .. } | Insn::Ja { .. } => {
                let t = insn.branch_target(pc).unwrap_or(-1);
                if last {
                    if t != header as i64 {
                        return Err("the latch does not jump to the header".into());
                    }
                    if matches!(insn, Insn::Jmp { .. }) {
                        push_unique(&mut exits, latch + 1);
                    }
                } else if matches!(insn, Insn::Ja { .. }) {
                    return Err(format!("unconditional jump inside the body at slot {pc}"));
                } else if inside(t) || t == header as i64 {
                    return Err(format!("control flow inside the body at slot {pc}"));
                } else {
                    push_unique(&mut exits, usize::try_from(t).map_err(|_| "bad target")?);
                }
            }
            other => return Err(format!("{} at slot {pc}", describe(other))),
        }
        let (u, d) = use_def(insn);
        read_first |= u & !written;
        written |= d;
        for (r, w) in writes.iter_mut().enumerate() {
            if d & (1 << r) != 0 {
                *w += 1;
            }
        }
    }
    if exits.is_empty() {
        return Err("no exit".into());
    }
    // Induction variables: written once, by `add reg, imm` or `sub reg, imm` (64-bit), and read
    // first.
    let mut ivs = Vec::new();
    for &(_, insn) in &body {
        if let Insn::Alu {
            width: Width::W64,
            op: op @ (AluOp::Add | AluOp::Sub),
            dst,
            src: Operand::Imm(step),
        } = insn
        {
            let r = dst.index();
            let step = if op == AluOp::Sub {
                -i64::from(step)
            } else {
                i64::from(step)
            };
            if writes[r] == 1 && read_first & (1 << r) != 0 && step != 0 {
                ivs.push(Induction { reg: r, step });
            }
        }
    }
    let carried: Vec<usize> = (0..REGS)
        .filter(|&r| {
            read_first & (1 << r) != 0 && writes[r] > 0 && !ivs.iter().any(|iv| iv.reg == r)
        })
        .collect();
    let live_in: Vec<usize> = (0..REGS).filter(|&r| read_first & (1 << r) != 0).collect();
    let exit_live = exits.iter().fold(0u16, |a, &e| {
        a | program
            .index_of_slot(e)
            .and_then(|i| live.get(i))
            .copied()
            .unwrap_or(0x7ff)
    });
    let live_out: Vec<usize> = (0..REGS)
        .filter(|&r| exit_live & written & (1 << r) != 0)
        .collect();
    // Symbolic pass: addresses and the counted exit.
    let mut sym = [Sym::Opaque; REGS];
    for (r, s) in sym.iter_mut().enumerate() {
        *s = if let Some(_iv) = ivs.iter().find(|iv| iv.reg == r) {
            Sym::Affine {
                base: None,
                iv: Some(r),
                off: 0,
            }
        } else if writes[r] == 0 {
            Sym::Affine {
                base: Some(r),
                iv: None,
                off: 0,
            }
        } else {
            Sym::Opaque
        };
    }
    let facts = verified.facts();
    let mut accesses = Vec::new();
    let mut counted = None;
    for (k, &(pc, insn)) in body.iter().enumerate() {
        match insn {
            Insn::Load { size, src, off, .. }
            | Insn::Store {
                size,
                dst: src,
                off,
                ..
            } => {
                let write = matches!(insn, Insn::Store { .. });
                // A pointer that is itself the induction variable is its own base.
                let Sym::Affine {
                    base,
                    iv: Some(iv),
                    off: o,
                } = add_off(sym[src.index()], i64::from(off))
                else {
                    return Err(format!(
                        "the address at slot {pc} is not an invariant base plus an induction variable"
                    ));
                };
                let step = ivs.iter().find(|v| v.reg == iv).map_or(0, |v| v.step);
                accesses.push(Access {
                    slot: pc,
                    write,
                    size: size.bytes(),
                    base: base.unwrap_or(iv),
                    iv,
                    off: o,
                    stride: step,
                    proven: facts.accesses.get(&pc).cloned().unwrap_or_default(),
                });
            }
            Insn::Jmp {
                width: Width::W64,
                cond,
                dst,
                src,
                off: _,
            } if counted.is_none() => {
                let last = k + 1 == body.len();
                let bound = match src {
                    Operand::Imm(i) => Some(Bound::Imm(i64::from(i))),
                    Operand::Reg(r) if writes[r.index()] == 0 => Some(Bound::Reg(r.index())),
                    Operand::Reg(_) => None,
                };
                if let (
                    Sym::Affine {
                        base: None,
                        iv: Some(iv),
                        off,
                    },
                    Some(bound),
                ) = (sym[dst.index()], bound)
                {
                    // The loop continues while the latch's condition holds, or while a body
                    // exit's does not.
                    let cond = if last { Some(cond) } else { negate(cond) };
                    if let Some(cond) = cond {
                        if k == 0 || last {
                            counted = Some(Counted {
                                at: k,
                                iv,
                                off,
                                cond,
                                bound,
                            });
                        }
                    }
                }
            }
            _ => {}
        }
        step_sym(&mut sym, insn);
    }
    let counted = counted.ok_or("no exit compares an induction variable with a bound")?;
    Ok(LoopIr {
        header,
        latch,
        body,
        exits,
        ivs,
        carried,
        live_in,
        live_out,
        accesses,
        counted,
    })
}

fn push_unique(v: &mut Vec<usize>, x: usize) {
    if !v.contains(&x) {
        v.push(x);
    }
}

fn describe(insn: Insn) -> &'static str {
    match insn {
        Insn::Atomic { .. } => "an atomic",
        Insn::Call(_) | Insn::CallX { .. } => "a call",
        Insn::Exit => "an exit",
        Insn::LoadImm64 { .. } => "a 64-bit immediate load",
        Insn::LoadAbs { .. } | Insn::LoadInd { .. } => "a legacy packet load",
        _ => "an instruction the loop IR does not model",
    }
}

fn negate(c: JmpCond) -> Option<JmpCond> {
    Some(match c {
        JmpCond::Eq => JmpCond::Ne,
        JmpCond::Ne => JmpCond::Eq,
        JmpCond::Ge => JmpCond::Lt,
        JmpCond::Gt => JmpCond::Le,
        JmpCond::Lt => JmpCond::Ge,
        JmpCond::Le => JmpCond::Gt,
        JmpCond::Sge => JmpCond::Slt,
        JmpCond::Sgt => JmpCond::Sle,
        JmpCond::Slt => JmpCond::Sge,
        JmpCond::Sle => JmpCond::Sgt,
        JmpCond::Set => return None,
    })
}

fn add_off(s: Sym, d: i64) -> Sym {
    match s {
        Sym::Affine { base, iv, off } => match off.checked_add(d) {
            Some(off) => Sym::Affine { base, iv, off },
            None => Sym::Opaque,
        },
        Sym::Opaque => Sym::Opaque,
    }
}

fn step_sym(sym: &mut [Sym; REGS], insn: Insn) {
    let (_, defs) = use_def(insn);
    let new = match insn {
        Insn::Alu {
            width: Width::W64,
            op,
            dst,
            src,
        } => {
            let a = sym[dst.index()];
            let b = match src {
                Operand::Imm(i) => Sym::Affine {
                    base: None,
                    iv: None,
                    off: i64::from(i),
                },
                Operand::Reg(r) => sym[r.index()],
            };
            match op {
                AluOp::Mov => b,
                AluOp::Add => add_sym(a, b),
                AluOp::Sub => match b {
                    Sym::Affine {
                        base: None,
                        iv: None,
                        off,
                    } => off.checked_neg().map_or(Sym::Opaque, |n| add_off(a, n)),
                    _ => Sym::Opaque,
                },
                _ => Sym::Opaque,
            }
        }
        _ => Sym::Opaque,
    };
    for (r, s) in sym.iter_mut().enumerate() {
        if defs & (1 << r) != 0 {
            *s = new;
        }
    }
}

fn add_sym(a: Sym, b: Sym) -> Sym {
    match (a, b) {
        (
            Sym::Affine {
                base: b1,
                iv: i1,
                off: o1,
            },
            Sym::Affine {
                base: b2,
                iv: i2,
                off: o2,
            },
        ) => {
            let base = match (b1, b2) {
                (Some(_), Some(_)) => return Sym::Opaque,
                (x, y) => x.or(y),
            };
            let iv = match (i1, i2) {
                (Some(_), Some(_)) => return Sym::Opaque,
                (x, y) => x.or(y),
            };
            o1.checked_add(o2)
                .map_or(Sym::Opaque, |off| Sym::Affine { base, iv, off })
        }
        _ => Sym::Opaque,
    }
}

/// Memory as the loop's reference semantics and the raised operations see it: bytes at addresses,
/// checked by the implementation.
pub trait Memory {
    /// The `len` bytes at `addr`, if they may all be read.
    fn read(&self, addr: u64, len: u64) -> Option<&[u8]>;
    /// The `len` bytes at `addr`, if they may all be written.
    fn write(&mut self, addr: u64, len: u64) -> Option<&mut [u8]>;
    /// Copies `len` bytes from `src` to `dst` (the ranges do not overlap), if allowed.
    fn copy(&mut self, dst: u64, src: u64, len: u64) -> Option<()>;
}

/// How a run of the reference semantics ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefEnd {
    /// Left the loop to `slot` after `insns` instructions (as the interpreter counts them against
    /// the run's budget).
    Exit {
        /// The slot the loop left to.
        slot: usize,
        /// Instructions run, the exit's branch included.
        insns: u64,
    },
    /// An access outside memory at `slot`.
    Fault(usize),
    /// More than the fuel's worth of instructions.
    Fuel,
}

/// Runs the loop from its header on `regs` and `mem`, instruction by instruction, as the
/// interpreter would; at most `fuel` instructions.
pub fn run_reference(
    ir: &LoopIr,
    regs: &mut [u64; REGS],
    mem: &mut dyn Memory,
    fuel: u64,
) -> RefEnd {
    let mut spent = 0u64;
    loop {
        for (k, &(pc, insn)) in ir.body.iter().enumerate() {
            spent += 1;
            if spent > fuel {
                return RefEnd::Fuel;
            }
            let last = k + 1 == ir.body.len();
            match insn {
                Insn::Alu {
                    width,
                    op,
                    dst,
                    src,
                } => {
                    let b = match src {
                        Operand::Imm(i) => i64::from(i) as u64,
                        Operand::Reg(r) => regs[r.index()],
                    };
                    let d = &mut regs[dst.index()];
                    *d = alu(width, op, *d, b);
                }
                Insn::Neg { width, dst } => {
                    let d = &mut regs[dst.index()];
                    *d = match width {
                        Width::W64 => d.wrapping_neg(),
                        Width::W32 => u64::from((*d as u32).wrapping_neg()),
                    };
                }
                Insn::Endian { kind, bits, dst } => {
                    let d = &mut regs[dst.index()];
                    *d = endian(kind, bits, *d);
                }
                Insn::Load {
                    size,
                    signed,
                    dst,
                    src,
                    off,
                } => {
                    let addr = regs[src.index()].wrapping_add(i64::from(off) as u64);
                    let Some(bytes) = mem.read(addr, size.bytes() as u64) else {
                        return RefEnd::Fault(pc);
                    };
                    regs[dst.index()] = load_value(bytes, size, signed);
                }
                Insn::Store {
                    size,
                    dst,
                    off,
                    src,
                } => {
                    let addr = regs[dst.index()].wrapping_add(i64::from(off) as u64);
                    let v = match src {
                        Operand::Imm(i) => i64::from(i) as u64,
                        Operand::Reg(r) => regs[r.index()],
                    };
                    let n = size.bytes();
                    let Some(bytes) = mem.write(addr, n as u64) else {
                        return RefEnd::Fault(pc);
                    };
                    bytes.copy_from_slice(&v.to_le_bytes()[..n]);
                }
                Insn::Jmp {
                    width,
                    cond,
                    dst,
                    src,
                    ..
                } => {
                    let b = match src {
                        Operand::Imm(i) => i64::from(i) as u64,
                        Operand::Reg(r) => regs[r.index()],
                    };
                    let taken = compare(width, cond, regs[dst.index()], b);
                    if last {
                        if !taken {
                            return RefEnd::Exit {
                                slot: ir.latch + 1,
                                insns: spent,
                            };
                        }
                    } else if taken {
                        let t = insn.branch_target(pc).unwrap_or(0);
                        return RefEnd::Exit {
                            slot: usize::try_from(t).unwrap_or(0),
                            insns: spent,
                        };
                    }
                }
                _ => {}
            }
        }
    }
}

/// An ALU operation with eBPF semantics (unsigned division and modulo; no signed ones).
pub fn alu(width: Width, op: AluOp, a: u64, b: u64) -> u64 {
    let w64 = width == Width::W64;
    let (a, b) = if w64 {
        (a, b)
    } else {
        (a & 0xffff_ffff, b & 0xffff_ffff)
    };
    let mask = if w64 { 63 } else { 31 };
    let r = match op {
        AluOp::Add => a.wrapping_add(b),
        AluOp::Sub => a.wrapping_sub(b),
        AluOp::Mul => a.wrapping_mul(b),
        AluOp::Div => a.checked_div(b).unwrap_or(0),
        AluOp::Mod => a.checked_rem(b).unwrap_or(a),
        AluOp::Or => a | b,
        AluOp::And => a & b,
        AluOp::Xor => a ^ b,
        AluOp::Lsh => a << (b & mask),
        AluOp::Rsh => a >> (b & mask),
        AluOp::Arsh => {
            if w64 {
                ((a as i64) >> (b & mask)) as u64
            } else {
                u64::from(((a as u32 as i32) >> (b & mask)) as u32)
            }
        }
        AluOp::Mov => b,
        AluOp::MovSx(bits) => match bits {
            SxBits::B8 => a_sx(b, 8),
            SxBits::B16 => a_sx(b, 16),
            SxBits::B32 => a_sx(b, 32),
        },
        AluOp::SDiv | AluOp::SMod => 0,
    };
    if w64 {
        r
    } else {
        r & 0xffff_ffff
    }
}

fn a_sx(v: u64, bits: u32) -> u64 {
    let s = 64 - bits;
    (((v << s) as i64) >> s) as u64
}

fn endian(kind: Endian, bits: u8, v: u64) -> u64 {
    match (kind, bits) {
        (Endian::ToLe, 16) => v & 0xffff,
        (Endian::ToLe, 32) => v & 0xffff_ffff,
        (Endian::ToLe, _) => v,
        (_, 16) => u64::from((v as u16).swap_bytes()),
        (_, 32) => u64::from((v as u32).swap_bytes()),
        (_, _) => v.swap_bytes(),
    }
}

/// The value a load of `size` bytes reads.
pub fn load_value(bytes: &[u8], size: Size, signed: bool) -> u64 {
    let mut b = [0u8; 8];
    let n = size.bytes().min(bytes.len());
    b[..n].copy_from_slice(&bytes[..n]);
    let v = u64::from_le_bytes(b);
    if signed && n < 8 {
        a_sx(v, (n * 8) as u32)
    } else {
        v
    }
}

/// A conditional jump's comparison.
pub fn compare(width: Width, cond: JmpCond, a: u64, b: u64) -> bool {
    let (a, b) = if width == Width::W64 {
        (a, b)
    } else {
        (a & 0xffff_ffff, b & 0xffff_ffff)
    };
    let (sa, sb) = if width == Width::W64 {
        (a as i64, b as i64)
    } else {
        (i64::from(a as u32 as i32), i64::from(b as u32 as i32))
    };
    match cond {
        JmpCond::Eq => a == b,
        JmpCond::Ne => a != b,
        JmpCond::Gt => a > b,
        JmpCond::Ge => a >= b,
        JmpCond::Lt => a < b,
        JmpCond::Le => a <= b,
        JmpCond::Set => a & b != 0,
        JmpCond::Sgt => sa > sb,
        JmpCond::Sge => sa >= sb,
        JmpCond::Slt => sa < sb,
        JmpCond::Sle => sa <= sb,
    }
}
